"""The simulator's command line: bad input is one line naming the flag and exit 2, the JSON it prints, run time
that follows tasks rather than simulated seconds, and the contract under fuzzing."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mlk8s.scaling import TRACE_HEADER
from mlk8s.scaling.simulate import main


def write(tmp_path: Path, body: str, header: str = ",".join(TRACE_HEADER)) -> Path:
    path = tmp_path / "trace.csv"
    path.write_text(header + "\n" + body)
    return path


def test_cli_reports_bad_input_as_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "0,5,1,0\n")
    with pytest.raises(SystemExit) as exit_:
        main(["--trace", str(path), "--cpu-min", "3", "--cpu-max", "2"])
    assert exit_.value.code == 2
    assert "max_workers" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--trace", str(path), "--pod-start-s", "-1"])
    assert "--pod-start-s" in capsys.readouterr().err


def test_cli_prints_one_json_object_with_every_documented_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "0,30,1,0\n0,30,1,0\n40,60,2,1\n")
    assert main(["--trace", str(path), "--pod-start-s", "20"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tasks"] == 3 and out["pod_start_s"] == 20
    assert set(out["policies"]) == {"policy", "fixed_pool", "idle_timeout"}
    for figures in out["policies"].values():
        assert set(figures) >= {"worker_hours", "gpu_worker_hours", "queue_wait_s", "scale_events"}
        assert set(figures["queue_wait_s"]) == {"p50", "p95", "max"}
        assert all(math.isfinite(v) for v in figures["queue_wait_s"].values())
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    for field in ("--trace", "--pod-start-s", "worker_hours", "gpu_worker_hours", "p95", "scale_events"):
        assert field in help_text


# --- issue 13: run time follows tasks and decisions, not simulated seconds -----------------------------


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """main()'s exit status, stdout and stderr; a usage error (SystemExit) counts as its status."""
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.timeout(60)
def test_a_trace_stamped_with_unix_time_replays_like_the_same_trace_from_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [(0.0, 30.0, 1, 0), (40.0, 60.0, 2, 0), (45.0, 20.0, 1, 1), (4000.0, 10.0, 1, 0)]
    epoch = 1_767_225_600.0  # 2026-01-01T00:00:00Z
    relative = write(tmp_path, "".join(f"{s},{d},{c},{g}\n" for s, d, c, g in rows))
    absolute = tmp_path / "epoch.csv"
    absolute.write_text(",".join(TRACE_HEADER) + "\n" + "".join(f"{s + epoch},{d},{c},{g}\n" for s, d, c, g in rows))
    code, out, _ = run_cli(["--trace", str(relative)], capsys)
    assert code == 0
    code, out_epoch, _ = run_cli(["--trace", str(absolute)], capsys)
    assert code == 0
    assert json.loads(out_epoch)["policies"] == json.loads(out)["policies"]


@pytest.mark.timeout(60)
def test_a_ten_day_quiet_gap_is_not_a_stall(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, f"0,30,1,0\n{10 * 86400},30,1,0\n")
    code, out, err = run_cli(["--trace", str(path)], capsys)
    assert (code, err) == (0, "")
    ours = json.loads(out)["policies"]["policy"]
    assert ours["queue_wait_s"]["max"] <= 60  # each task waits for one pod start at most
    assert ours["worker_hours"] < 1  # the quiet ten days cost nothing


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--interval-s", "1e-6"], ["--interval-s=1e-06", "from 1 to 86400"]),
        (["--interval-s", "1e308"], ["--interval-s=1e+308"]),
        (["--interval-s", "nan"], ["--interval-s=nan"]),
        (["--pod-start-s", "-1"], ["--pod-start-s=-1"]),
        (["--pod-start-s", "inf"], ["--pod-start-s=inf"]),
        (["--window-s", "1e12"], ["--window-s"]),
        (["--cpu-max", "1000000000"], ["--cpu-max=1000000000", "integer from 0 to 1000"]),
        (["--cpu-worker-cpus", "0"], ["--cpu-worker-cpus=0.0", "above 0"]),
        (["--gpu-capacity", "0"], ["--gpu-capacity=0"]),
        (["--dagrun-period-s", "0.001"], ["--dagrun-period-s=0.001"]),
        (["--dagrun-period-s", "600", "--prewarm-s", "600"], ["--prewarm-s=600", "shorter than --dagrun-period-s"]),
        (["--dagrun-period-s", "60"], ["--dagrun-period-s=60", "DAG runs", "at most 100,000 runs"]),
        (["--interval-s", "fast"], ["--interval-s", "invalid float value"]),
        (["--cpu-min", "1.5"], ["--cpu-min", "invalid int value"]),
        (["--no-such-flag"], ["unrecognized arguments"]),
    ],
)
def test_absurd_flag_values_are_refused_in_one_line_naming_the_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], words: list[str]
) -> None:
    path = write(tmp_path, f"0,30,1,0\n{1e8},30,1,0\n")  # three years: 60 s DAG runs are too many
    code, out, err = run_cli(["--trace", str(path), *flags], capsys)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("python -m mlk8s.scaling.simulate: error: "), err
    for word in words:
        assert word in err


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("1767225600000,30,1,0\n", ["submit_s", "millisecond"]),
        ("0,30,64,0\n", ["no CPU worker group"]),
        ("0,30,1,1\n", ["no GPU worker group"]),
        ("0,30,\udcff,0\n", ["cannot be read as CSV", "UTF-8"]),
        (None, ["folder.csv: not a file"]),
    ],
)
def test_a_trace_that_cannot_be_replayed_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str | None, words: list[str]
) -> None:
    if body is None:  # a folder where the trace should be
        path = tmp_path / "folder.csv"
        path.mkdir()
    else:
        path = tmp_path / "trace.csv"
        path.write_bytes((",".join(TRACE_HEADER) + "\n" + body).encode("utf-8", "surrogateescape"))
    code, _, err = run_cli(["--trace", str(path), "--gpu-max", "0"], capsys)
    assert code == 2 and err.count("\n") == 1
    for word in words:
        assert word in err


def test_the_command_exits_2_without_a_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, "0,30,1,0\n")
    done = subprocess.run(
        [sys.executable, "-m", "mlk8s.scaling.simulate", "--trace", str(path), "--interval-s", "1e-6"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == "" and "Traceback" not in done.stderr
    assert done.stderr.strip().endswith("(see --help)") and done.stderr.count("\n") == 1


# --- the contract under fuzzing: exit 0 with the JSON, or exit 2 with one line; never a traceback ------

NUMBERS = st.one_of(
    st.integers(-3, 2000).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["0", "1", "1e-6", "1e308", "-0", "nan", "inf", "-inf", "1_0", " 5", "", "x", "0x10", "1e"]),
)
FLAG_NAMES = [
    "--pod-start-s",
    "--interval-s",
    "--cpu-min",
    "--cpu-max",
    "--cpu-worker-cpus",
    "--gpu-min",
    "--gpu-max",
    "--gpu-worker-cpus",
    "--gpu-worker-gpus",
    "--window-s",
    "--airflow-lead-s",
    "--backlog-grace-workers",
    "--dagrun-period-s",
    "--dagrun-first-s",
    "--prewarm-s",
    "--prewarm-workers",
    "--pending-timeout-s",
    "--gpu-capacity",
    "--idle-timeout-s",
    "--cold-start-cost-s",
    "--warm-pool",
]
# Values that pass the range checks most of the time, so the fuzz also reaches the replay.
PLAUSIBLE = st.one_of(
    st.integers(0, 12).map(str), st.sampled_from(["0.5", "1", "10", "60", "300", "600", "1e4", "on", "off"])
)
GARBAGE = st.sampled_from(["", "-1", "0", "nan", "inf", "1e12", "abc", " 3 ", "1,2"])


@st.composite
def trace_rows(draw: st.DrawFn) -> str:
    """A good row most of the time (on a clock from 0 or Unix time), else one with a bad or missing cell."""
    base = draw(st.sampled_from([0.0, 0.0, 1.7e9]))
    cells = [
        f"{base + draw(st.floats(0, 20_000)):.1f}",
        f"{draw(st.floats(0.1, 3000)):.1f}",
        draw(st.sampled_from(["1", "1", "2", "0.5", "4"])),
        draw(st.sampled_from(["0", "0", "0", "1"])),
    ]
    if draw(st.integers(0, 39)) == 0:
        cells[draw(st.integers(0, 3))] = draw(GARBAGE)
    if draw(st.integers(0, 59)) == 0:
        cells = cells[: draw(st.integers(0, 3))]
    return ",".join(cells)


headers = st.sampled_from([",".join(TRACE_HEADER)] * 8 + ["submit_s,duration_s,cpus", "a,b,c,d", ""])
flag_values = st.one_of(PLAUSIBLE, PLAUSIBLE, PLAUSIBLE, NUMBERS)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    header=headers,
    body=st.lists(trace_rows(), max_size=12),
    flags=st.lists(st.tuples(st.sampled_from(FLAG_NAMES), flag_values), max_size=5),
)
def test_fuzzed_flags_and_traces_exit_0_with_json_or_2_with_one_line(
    tmp_path_factory: pytest.TempPathFactory,
    capsys: pytest.CaptureFixture[str],
    header: str,
    body: list[str],
    flags: list[tuple[str, str]],
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "trace.csv"
    path.write_text(header + "\n" + "\n".join(body) + "\n")
    argv = ["--trace", str(path)] + [f"{name}={value}" for name, value in flags]
    code, out, err = run_cli(argv, capsys)  # any other exception fails the test: a traceback
    event(f"exit {code}")
    if code == 0:
        figures = json.loads(out)
        assert err == ""
        for result in figures["policies"].values():
            assert all(math.isfinite(v) for v in result["queue_wait_s"].values())
            assert math.isfinite(result["worker_hours"]) and result["worker_hours"] >= 0
    else:
        assert code == 2, (code, err)
        assert out == "" and err.count("\n") == 1 and "error: " in err, err
