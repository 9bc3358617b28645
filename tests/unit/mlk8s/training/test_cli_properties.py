"""Property tests of ``python -m mlk8s.training`` over its flags and inputs (issue 13), asserting the pod contract:
exit 0, 2 or 75; on bad input exit 2 with one line naming what to fix and no traceback; nothing committed lost.

Most examples go through the parser and ``main()`` in this process (cheap); a few through real subprocesses.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlk8s.pod_contract import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from mlk8s.training.cli import main
from mlk8s.training.config import TrainConfig, build_parser, parse_config
from mlk8s.training.task import TaskUsageError
from tests.tally import BAD_INPUT, held
from tests.unit.mlk8s.training.datasets import table, write_parquet

FLAGS = {f.metadata["setting"].flag: f for f in fields(TrainConfig)}
KNOWN = {*FLAGS, "usage"}
PROG = "python -m mlk8s.training: error: "

numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["nan", "inf", "-inf", "1e309", "0", "-0", "1e-320", "0x10", "", " ", "1_000"]),
)
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
values = st.one_of(numbers.map(str), texts)
flag_names = st.sampled_from([*sorted(FLAGS), "--no-such-flag", "-x", "--"])
argvs = st.lists(st.tuples(flag_names, values), max_size=6).map(lambda pairs: [a for pair in pairs for a in pair])


def _in_range(config: TrainConfig) -> bool:
    """Every numeric setting of a parsed config satisfies its declaration."""
    for f in fields(TrainConfig):
        s, value = f.metadata["setting"], getattr(config, f.name)
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if (s.minimum is not None and value < s.minimum) or (s.maximum is not None and value > s.maximum):
            return False
        if s.above is not None and not value > s.above:
            return False
    return True


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv=argvs)
def test_the_parser_accepts_in_range_values_or_names_the_flag_in_one_line(argv: list[str]) -> None:
    try:
        config = parse_config(["--checkpoint-uri", "/c", "--output-uri", "/o", *argv])
    except TaskUsageError as exc:
        assert held(BAD_INPUT, "fuzzed flags (parser)", exc.flag in KNOWN and "\n" not in str(exc)), str(exc)
        return
    assert _in_range(config), config


def test_the_parser_knows_every_declared_flag() -> None:
    text = build_parser().format_help()
    assert all(flag in text for flag in FLAGS)


def _digest(root: Path) -> dict[str, str]:
    found = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.relative_to(root).parts[0].startswith("ckpt-"):
            found[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


@pytest.fixture(scope="module")
def committed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A store with committed checkpoints of a run on good data, which every fuzzed relaunch must leave intact."""
    root = tmp_path_factory.mktemp("committed")
    data = write_parquet(root / "data" / "part-0.parquet", table(40, seed=2)).parent
    args = ["--checkpoint-uri", str(root / "ckpt"), "--output-uri", str(root / "out"), "--data", str(data)]
    args += ["--epochs", "1", "--batch-size", "8", "--task-option", "hidden=4", "--log-level", "ERROR"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLK8S_XCOM_DIR", str(root / "xcom"))
        assert main(args) == EXIT_OK
    return {"root": root, "data": data}


BAD_TABLES: dict[str, Any] = {
    "empty file": lambda: table(0),
    "null label": lambda: table(3, labels=[1, None, 0]),
    "label 1e9": lambda: table(3, labels=[1, 10**9, 0]),
    "negative label": lambda: table(3, labels=[1, -1, 0]),
    "float label": lambda: table(3, labels=[0.5, 1.5, 2.5]),
    "string and int labels": None,  # written as two files below
    "other dimension": lambda: table(3, dim=5),
}


def _bad_data(root: Path, kind: str) -> Path:
    import pyarrow as pa

    directory = root / "bad"
    shutil.rmtree(directory, ignore_errors=True)
    if kind == "string and int labels":
        write_parquet(directory / "a.parquet", table(3))
        write_parquet(directory / "b.parquet", table(3, labels=["x", "y", "z"]))
    elif kind == "other dimension":
        write_parquet(directory / "a.parquet", table(3))
        write_parquet(directory / "b.parquet", table(3, dim=5))
    elif kind == "list<string> embeddings":
        write_parquet(directory / "a.parquet", pa.table({"embedding": [["a"], ["b"]], "label": [0, 1]}))
    elif kind == "not parquet":
        directory.mkdir(parents=True)
        (directory / "a.parquet").write_bytes(b"PAR1 but not really")
    else:
        write_parquet(directory / "a.parquet", BAD_TABLES[kind]())
    return directory


data_kinds = st.sampled_from([*BAD_TABLES, "list<string> embeddings", "not parquet", "good"])
extras = st.lists(
    st.sampled_from(
        [
            ["--seed", "-1"],
            ["--lr", "inf"],
            ["--epochs", "1"],
            ["--batch-size", "0"],
            ["--data-version", "1"],
            ["--data-partition", "run_key=x"],
            ["--task-option", "hidden=0"],
            ["--task-option", "held-out=1"],
            ["--keep-last", "0"],
            ["--log-every-seconds", "nan"],
            ["--storage-timeout-seconds", "-1"],
        ]
    ),
    max_size=2,
).map(lambda parts: [a for part in parts for a in part])


def _check_contract(code: int, err: str, before: dict[str, str], after: dict[str, str]) -> bool:
    lines = err.strip().splitlines()
    if code not in (EXIT_OK, EXIT_USAGE, EXIT_INTERRUPTED) or "Traceback" in err:
        return False
    if code == EXIT_USAGE:
        return bool(lines) and lines[-1].startswith(PROG) and before == after
    return True


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(kind=data_kinds, extra=extras)
def test_a_relaunch_with_fuzzed_flags_and_data_keeps_the_contract(
    committed: dict[str, Path],
    tmp_path: Path,
    xcom: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    extra: list[str],
) -> None:
    work = tmp_path / f"w-{abs(hash((kind, tuple(extra))))}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(committed["root"] / "ckpt", work / "ckpt")
    data = committed["data"] if kind == "good" else _bad_data(work, kind)
    before = _digest(work / "ckpt")
    args = ["--checkpoint-uri", str(work / "ckpt"), "--output-uri", str(work / "out"), "--data", str(data)]
    args += ["--epochs", "1", "--batch-size", "8", "--task-option", "hidden=4", "--log-level", "ERROR", *extra]
    capsys.readouterr()
    code = main(args)
    err = capsys.readouterr().err
    after = _digest(work / "ckpt")
    ok = _check_contract(code, err, before, after)
    if kind != "good" or extra:
        held(BAD_INPUT, "fuzzed relaunch (in process)", ok)
    assert ok, (code, err)


@pytest.mark.slow
@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(kind=data_kinds, extra=extras)
def test_the_command_line_keeps_the_contract_in_a_real_process(
    committed: dict[str, Path], tmp_path: Path, kind: str, extra: list[str]
) -> None:
    import os

    work = tmp_path / f"p-{abs(hash((kind, tuple(extra))))}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(committed["root"] / "ckpt", work / "ckpt")
    data = committed["data"] if kind == "good" else _bad_data(work, kind)
    before = _digest(work / "ckpt")
    cmd = [sys.executable, "-m", "mlk8s.training", "--checkpoint-uri", str(work / "ckpt")]
    cmd += ["--output-uri", str(work / "out"), "--data", str(data), "--epochs", "1", "--batch-size", "8"]
    cmd += ["--task-option", "hidden=4", *extra]
    env = dict(os.environ, MLK8S_XCOM_DIR=str(work / "xcom"))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    ok = _check_contract(proc.returncode, proc.stderr, before, _digest(work / "ckpt"))
    held(BAD_INPUT, "fuzzed relaunch (subprocess)", ok)
    assert ok, (proc.returncode, proc.stderr[-3000:])
