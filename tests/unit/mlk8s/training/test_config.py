"""The settings list drives both the command line and the resume fingerprint: one declaration per setting."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from mlk8s.training.config import TrainConfig, build_parser, parse_config
from mlk8s.training.task import TaskUsageError

URIS = ["--checkpoint-uri", "/c", "--output-uri", "/o"]


def test_every_setting_has_a_flag_with_help() -> None:
    text = build_parser().format_help()
    for f in fields(TrainConfig):
        assert f.metadata["setting"].flag in text


def test_defaults_of_the_parser_are_the_dataclass_defaults() -> None:
    assert parse_config(URIS) == TrainConfig(checkpoint_uri="/c", output_uri="/o")


def test_fingerprint_holds_exactly_the_settings_declared_to_bind_a_resume() -> None:
    config = parse_config(
        [*URIS, "--task-option", "b=2", "--task-option", "a=1", "--data", "/t", "--data-partition", "k=x"]
    )
    fp = config.fingerprint()
    declared = {f.name for f in fields(TrainConfig) if f.metadata["setting"].resume}
    assert set(fp) == declared
    assert {"seed", "lr", "data", "data_partition", "task_options"} <= declared
    assert "checkpoint_every_steps" not in declared and "keep_last" not in declared
    assert list(fp["task_options"]) == ["a", "b"]


def test_mismatch_names_the_flag_and_treats_missing_keys_as_defaults() -> None:
    config = parse_config([*URIS, "--seed", "3"])
    assert config.mismatch(config.fingerprint()) is None
    old_record = {k: v for k, v in config.fingerprint().items() if k != "data_partition"}
    assert config.mismatch(old_record) is None, "a checkpoint from before --data-partition existed still resumes"
    problem = config.mismatch({**config.fingerprint(), "seed": 4})
    assert problem is not None and problem.flag == "--seed" and "--checkpoint-uri" in str(problem)
    changed = replace(config, data_partition={"run_key": "y"})
    problem = changed.mismatch(config.fingerprint())
    assert problem is not None and problem.flag == "--data-partition"


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--lr", "inf"], "--lr"),
        (["--lr", "-inf"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--termination-grace-seconds", "inf"], "--termination-grace-seconds"),
        (["--heartbeat-seconds", "nan"], "--heartbeat-seconds"),
        (["--seed", "-1"], "--seed"),
        (["--seed", str(2**63)], "--seed"),
        (["--epochs", "x"], "--epochs"),
        (["--threads", "100000"], "--threads"),
        (["--data-version", "-2"], "--data-version"),
        (["--data-partition", "novalue"], "--data-partition"),
        (["--device", "tpu"], "--device"),
        (["--no-such-flag"], "usage"),
    ],
)
def test_bad_values_raise_one_line_naming_the_flag(argv: list[str], flag: str) -> None:
    with pytest.raises(TaskUsageError) as exc:
        parse_config([*URIS, *argv])
    assert exc.value.flag == flag
    assert "\n" not in str(exc.value)


def test_log_level_is_case_insensitive() -> None:
    assert parse_config([*URIS, "--log-level", "debug"]).log_level == "DEBUG"


@pytest.mark.parametrize("argv", [["--data-version", "2"], ["--data-partition", "run_key=x"]])
def test_delta_selections_need_data(argv: list[str]) -> None:
    with pytest.raises(TaskUsageError, match="there is no --data") as exc:
        parse_config([*URIS, *argv])
    assert exc.value.flag == argv[0]
