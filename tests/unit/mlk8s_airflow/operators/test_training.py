"""``training_arguments`` and the pod's parser are two sides of one contract: what the operator builds, the
trainer reads back as the same settings (Delta partition and version included)."""

from __future__ import annotations

import pytest

from mlk8s.training.config import parse_config
from mlk8s_airflow.operators.training import TrainingOperator, training_arguments

BASE = dict(
    checkpoint_uri="s3://b/ck",
    output_uri="s3://b/out",
    epochs=2,
    seed=1,
    checkpoint_every_steps=50,
    keep_last=2,
    termination_grace_seconds=120,
)


def test_the_trainer_reads_back_what_the_operator_builds() -> None:
    args = training_arguments(
        **BASE,
        data_uri="s3://b/embedded",
        data_partition={"run_key": "manual__2026-01-01T00:00:00+00:00"},
        data_version="7",
        task_options={"hidden": 64},
        batch_size=16,
        lr=0.01,
    )
    config = parse_config(args)
    assert config.data == "s3://b/embedded" and config.data_version == 7
    assert config.data_partition == {"run_key": "manual__2026-01-01T00:00:00+00:00"}
    assert (config.epochs, config.seed, config.batch_size, config.lr) == (2, 1, 16, 0.01)
    assert config.task_options == {"hidden": "64"} and config.keep_last == 2


def test_an_empty_version_means_the_latest() -> None:
    args = training_arguments(**BASE, data_uri="/d", data_version="")
    assert "--data-version" not in args and parse_config(args).data_version is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"data_uri": "/d", "data_partition": {"bad key": "x"}}, "data_partition key 'bad key'"),
        ({"data_uri": "/d", "data_version": "latest"}, "data_version 'latest'"),
        ({"data_version": 3}, "set data_uri too"),
        ({"data_partition": {"run_key": "x"}}, "set data_uri too"),
    ],
)
def test_bad_data_selections_are_refused(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        training_arguments(**{**BASE, **kwargs})


def test_partition_and_version_are_templated() -> None:
    assert {"data_partition", "data_version", "data_uri"} <= set(TrainingOperator.template_fields)
    op = TrainingOperator(
        task_id="t",
        image="ghcr.io/acme/mlk8s:0.1.0",
        checkpoint_uri="/c",
        output_uri="/o",
        data_uri="/d",
        data_partition={"run_key": "{{ run_id }}"},
        data_version="{{ params.version }}",
    )
    op.render_template_fields({"run_id": "r1", "params": {"version": 4}})
    assert op.data_partition == {"run_key": "r1"} and str(op.data_version) == "4"
