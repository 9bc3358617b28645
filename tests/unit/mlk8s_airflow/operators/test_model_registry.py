"""The evaluate and publish pods' exec arrays, and the live model's report, on both paths of the decision."""

from __future__ import annotations

import pytest

from mlk8s.model_registry.cli import build_parser
from mlk8s_airflow.operators.model_registry import evaluate_arguments, live_model_report, publish_arguments


def test_evaluate_arguments_are_what_the_pod_cli_parses() -> None:
    args = evaluate_arguments(
        registry_uri="s3://b/models/m",
        candidate_uri="s3://b/models/m/candidates/r1",
        data_uri="s3://b/runs/r1/features",
        task_options={"hidden": 128, "dropout": 0.2},
        metric="held_out_loss",
        goal="min",
        tolerance="0.01",
        force="True",  # a rendered boolean Param
    )
    parsed = build_parser().parse_args(args)
    assert (parsed.command, parsed.registry, parsed.candidate, parsed.data) == (
        "evaluate",
        "s3://b/models/m",
        "s3://b/models/m/candidates/r1",
        "s3://b/runs/r1/features",
    )
    assert (parsed.metric, parsed.goal, parsed.tolerance, parsed.force) == ("held_out_loss", "min", 0.01, "true")
    assert parsed.task_option == ["dropout=0.2", "hidden=128"]
    assert (parsed.data_partition, parsed.data_version) == ([], None)


def test_evaluate_reads_the_partition_and_version_training_read() -> None:
    common = {"registry_uri": "/r", "candidate_uri": "/r/c", "data_uri": "/f", "task_options": {}}
    common |= {"metric": "held_out_accuracy", "goal": "max", "tolerance": 0, "force": False}
    args = evaluate_arguments(**common, data_partition={"run_key": "manual-1"}, data_version="7")
    parsed = build_parser().parse_args(args)
    assert (parsed.data_partition, parsed.data_version) == (["run_key=manual-1"], 7)
    assert "--data-version" not in evaluate_arguments(**common, data_version="")  # rendered empty: the latest
    with pytest.raises(ValueError, match="data_version 'latest' is not a Delta table version"):
        evaluate_arguments(**common, data_version="latest")


def test_publish_arguments_carry_the_compare_and_swap_and_the_run_key() -> None:
    args = publish_arguments(
        registry_uri="/r", candidate_uri="/r/candidates/k", expect_live="", run_key="k", task_options={}
    )
    parsed = build_parser().parse_args(args)
    assert (parsed.command, parsed.expect_live, parsed.run_key) == ("publish", "none", "k")


EVALUATION = {
    "decision": "keep",
    "reason": "worse",
    "candidate": {"weights_sha256": "new"},
    "published": {"weights_sha256": "old", "run_key": "r0"},
}


def test_the_report_names_the_kept_model_when_nothing_was_published() -> None:
    report = live_model_report(EVALUATION, None)
    assert report["live"]["weights_sha256"] == "old" and report["candidate_published"] is False
    assert report["reason"] == "worse"


def test_the_report_names_the_candidate_once_published() -> None:
    report = live_model_report(
        {**EVALUATION, "decision": "publish"}, {"moved": True, "live": {"weights_sha256": "new"}}
    )
    assert report["live"]["weights_sha256"] == "new" and report["candidate_published"] is True


def test_nothing_live_and_nothing_published_reports_none() -> None:
    assert live_model_report({**EVALUATION, "published": None}, None)["live"] is None
    with pytest.raises(ValueError, match="no evaluation result"):
        live_model_report(None, None)
