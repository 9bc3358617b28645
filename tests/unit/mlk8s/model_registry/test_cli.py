"""``python -m mlk8s.model_registry``: evaluate decides on the same held-out rows, publish moves the pointer only
as evaluated, reruns are no-ops, and bad input exits 2 naming the flag before anything is written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlk8s.model_registry.cli import main
from mlk8s.pod_contract import EXIT_ERROR, EXIT_OK, EXIT_USAGE

from .conftest import options


@pytest.fixture(autouse=True)
def _keep_torch_threads() -> Iterator[None]:
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def xcom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLK8S_XCOM_DIR", str(tmp_path / "xcom"))
    return tmp_path / "xcom" / "return.json"


def flags(name: str) -> list[str]:
    return [f for opt in options(name) for f in ("--task-option", opt)]


def run(xcom: Path, *argv: str) -> tuple[int, dict]:
    xcom.unlink(missing_ok=True)
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    return code, json.loads(xcom.read_text()) if xcom.exists() else {}


def evaluate(xcom: Path, registry: Path, model: Path, name: str, *extra: str) -> tuple[int, dict]:
    return run(xcom, "evaluate", "--registry", str(registry), "--candidate", str(model), *flags(name), *extra)


def publish(xcom: Path, registry: Path, model: Path, name: str, expect: str) -> tuple[int, dict]:
    return run(
        xcom, "publish", "--registry", str(registry), "--candidate", str(model), *flags(name), "--expect-live", expect
    )


def test_nightly_sequence_publishes_only_models_that_are_not_worse(
    trained: dict[str, Path], tmp_path: Path, xcom: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = tmp_path / "registry"
    # Night 1: nothing is live, the weak model goes live.
    code, first = evaluate(xcom, registry, trained["weak"], "weak")
    assert code == EXIT_OK and first["decision"] == "publish" and first["published"] is None
    code, pub = publish(xcom, registry, trained["weak"], "weak", "none")
    assert code == EXIT_OK and pub["moved"] is True
    weak_sha = pub["live"]["weights_sha256"]
    # Night 2: the strong model is scored against the live weak one on the same rows, and wins.
    code, second = evaluate(xcom, registry, trained["strong"], "strong")
    assert code == EXIT_OK and second["decision"] == "publish", second["reason"]
    assert second["published"]["weights_sha256"] == weak_sha
    assert second["candidate"]["metrics"]["held_out_accuracy"] > second["published"]["metrics"]["held_out_accuracy"]
    assert second["held_out_rows"] == 359
    code, pub2 = publish(xcom, registry, trained["strong"], "strong", weak_sha)
    assert code == EXIT_OK and pub2["moved"] and pub2["live"]["replaces_sha256"] == weak_sha
    # Night 3: the weak model again is worse than the live strong one: kept out.
    code, third = evaluate(xcom, registry, trained["weak"], "weak")
    assert code == EXIT_OK and third["decision"] == "keep" and "is worse than" in third["reason"]
    # A rerun of night 2's publish is a no-op; show prints the live model.
    code, again = publish(xcom, registry, trained["strong"], "strong", weak_sha)
    assert code == EXIT_OK and again["moved"] is False
    capsys.readouterr()
    assert main(["show", "--registry", str(registry)]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["live"]["weights_sha256"] == pub2["live"]["weights_sha256"]


def test_evaluate_logs_the_metrics_and_the_decision(
    trained: dict[str, Path], tmp_path: Path, xcom: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = evaluate(xcom, tmp_path / "registry", trained["weak"], "weak")
    assert code == EXIT_OK
    err = capsys.readouterr().err
    assert "mlk8s: evaluated candidate held_out_accuracy=0.1114 against no live model: publish" in err


def test_a_live_model_of_other_shapes_is_kept_unless_forced(
    trained: dict[str, Path], tmp_path: Path, xcom: Path
) -> None:
    registry = tmp_path / "registry"
    assert publish(xcom, registry, trained["wide"], "weak", "none")[0] == EXIT_OK  # recorded with the wrong options
    code, result = evaluate(xcom, registry, trained["strong"], "strong")
    assert code == EXIT_OK and result["decision"] == "keep" and "cannot be scored on this data" in result["reason"]
    code, forced = evaluate(xcom, registry, trained["strong"], "strong", "--force", "True")
    assert code == EXIT_OK and forced["decision"] == "publish"


def test_publish_against_a_moved_pointer_fails_and_keeps_it(
    trained: dict[str, Path], tmp_path: Path, xcom: Path
) -> None:
    registry = tmp_path / "registry"
    publish(xcom, registry, trained["weak"], "weak", "none")
    before = (registry / "published.json").read_bytes()
    code, result = publish(xcom, registry, trained["strong"], "strong", "none")
    assert code == EXIT_ERROR and result == {}
    assert (registry / "published.json").read_bytes() == before


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--metric", "f1"], "--metric"),
        (["--tolerance", "-1"], "--tolerance"),
        (["--threads", "0"], "--threads"),
        (["--force", "yes"], "--force"),
        (["--task-option", "novalue"], "--task-option"),
        (["--task-option", "bogus=1"], "--task-option"),
        (["--data", "/definitely/not/here.parquet"], "--data"),
        (["--data-partition", "run_key=r1"], "--data-partition"),  # part of a table, but no table
        (["--data", "/t", "--data-partition", "novalue"], "--data-partition"),
        (["--data", "/t", "--data-version", "-1"], "--data-version"),
    ],
)
def test_bad_evaluate_input_exits_2_naming_the_flag(
    trained: dict[str, Path],
    tmp_path: Path,
    xcom: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    flag: str,
) -> None:
    code, result = evaluate(xcom, tmp_path / "registry", trained["weak"], "weak", *extra)
    assert code == EXIT_USAGE and result == {}
    assert flag in capsys.readouterr().err
    assert not (tmp_path / "registry").exists()


def test_a_candidate_that_is_no_model_exits_2(tmp_path: Path, xcom: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run(xcom, "evaluate", "--registry", str(tmp_path / "r"), "--candidate", str(tmp_path))
    assert code == EXIT_USAGE and "--candidate" in capsys.readouterr().err
    code, _ = run(
        xcom, "publish", "--registry", str(tmp_path / "r"), "--candidate", str(tmp_path), "--expect-live", "none"
    )
    assert code == EXIT_USAGE
    assert not (tmp_path / "r" / "published.json").exists()


def test_a_registry_uri_pyarrow_cannot_resolve_exits_2(
    trained: dict[str, Path], xcom: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = run(xcom, "show", "--registry", "nosuchscheme://bucket/x")
    assert code == EXIT_USAGE and "--registry" in capsys.readouterr().err
