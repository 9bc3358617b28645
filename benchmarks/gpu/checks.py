"""The GPU figures in one unattended run (``benchmarks/gpu/run.sh``): one JSON object on stdout.

- ``gpu``: what the GPU is (name, memory, capability, torch and CUDA versions), or null without one;
- ``amp_training``: training samples/s with AMP, our trainer vs a hand-written torch AMP loop (amp_loop.py),
  target ratio >= 0.95;
- ``checkpoint_large``: blocked time per checkpoint of the ~105M-parameter model on the GPU vs a synchronous save
  (benchmarks/training_checkpoint_large.py, ``SHAPES["cuda"]``), target <= 10%;
- ``embeddings``: rows/s through Ray vs a single process (benchmarks/preprocessing_embeddings.py, its last JSON
  object's ``ratio_vs_single_process``), target >= 0.9.

Each check runs in its own process, in its own session, under its own timeout, all inside :data:`BUDGET_S`, so
the whole run stays under 8 minutes; a check that fails, crashes or times out reports its error in its entry and
the others still run. Exit 1 when a check errored or missed its target. Without a CUDA GPU every check is
``{"skipped": "no CUDA GPU: ..."}`` and the exit code is 0, in seconds. Nothing is downloaded (the embedding model
ships in an installed package; the Hugging Face libraries are told to stay offline).

    benchmarks/gpu/run.sh [--only amp_training] [--budget-s 440] [--embed-rows 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
#: Seconds all checks together may take; with start-up and the GPU probe the run stays under 8 minutes.
BUDGET_S = 440.0
#: Seconds a timed-out check gets to clean up after SIGINT (a Ray cluster to stop) before SIGKILL.
GRACE_S = 15.0
EMBED_ROWS = 20000
TARGET_EMBED_RATIO = 0.9
TAIL_CHARS = 2000


@dataclass(frozen=True)
class Options:
    """What the command line may change about the checks."""

    embed_rows: int = EMBED_ROWS


@dataclass(frozen=True)
class Check:
    name: str
    timeout_s: float
    command: Callable[[Options], list[str]]
    #: Turns the command's last JSON object into the check's entry (adds ``ok`` and the target).
    judge: Callable[[dict[str, Any]], dict[str, Any]]


def _self(name: str) -> Callable[[Options], list[str]]:
    return lambda _: [sys.executable, "-m", "benchmarks.gpu.checks", "--check", name]


def _embeddings_command(options: Options, device: bool = True) -> list[str]:
    script = REPO / "benchmarks" / "preprocessing_embeddings.py"
    cmd = [sys.executable, str(script), "--rows", str(options.embed_rows)]
    return [*cmd, "--device", "cuda"] if device else cmd


def judge_embeddings(found: dict[str, Any]) -> dict[str, Any]:
    """The embeddings script's report, gated on ``ratio_vs_single_process`` >= :data:`TARGET_EMBED_RATIO`."""
    ratio = found.get("ratio_vs_single_process")
    entry = dict(found) | {"target_ratio_at_least": TARGET_EMBED_RATIO}
    if not isinstance(ratio, int | float):
        entry.setdefault("error", "the embeddings benchmark printed no ratio_vs_single_process")
        entry["ok"] = False
    else:
        entry["ok"] = "error" not in found and ratio >= TARGET_EMBED_RATIO
    return entry


def _as_reported(found: dict[str, Any]) -> dict[str, Any]:
    found.setdefault("ok", False)
    return found


CHECKS = (
    Check("amp_training", 170.0, _self("amp_training"), _as_reported),
    Check("checkpoint_large", 130.0, _self("checkpoint_large"), _as_reported),
    Check("embeddings", 150.0, _embeddings_command, judge_embeddings),
)


# -- the checks themselves (each in its own process: ``--check NAME``) ---------------------------------------------


def amp_training() -> dict[str, Any]:
    from benchmarks.gpu.amp_loop import GPU_SIZE, compare

    return compare(GPU_SIZE)


def checkpoint_large() -> dict[str, Any]:
    from benchmarks.training_checkpoint_large import SHAPES, measure

    report = measure(SHAPES["cuda"])
    # The brief's gate on a GPU is the blocked share; the wall overhead (a 3% target on CPU) is reported beside it.
    report["gated"] = ["blocked_share_of_synchronous_save"]
    report["ok"] = report["blocked_ok"]
    return report


IN_PROCESS: dict[str, Callable[[], dict[str, Any]]] = {
    "amp_training": amp_training,
    "checkpoint_large": checkpoint_large,
}


def run_in_process(name: str) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING)
    try:
        report = IN_PROCESS[name]()
    except Exception as exc:
        report = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-4000:]}
    print(json.dumps(report, indent=2), flush=True)
    return 0 if report.get("ok") else 1


# -- the driver ----------------------------------------------------------------------------------------------------


def gpu_info() -> tuple[dict[str, Any] | None, str]:
    """What the GPU is, or (None, why there is none)."""
    import torch

    if not torch.cuda.is_available():
        return None, (
            f"torch.cuda.is_available() is False (torch {torch.__version__}, built for CUDA {torch.version.cuda}, "
            f"{torch.cuda.device_count()} device(s) visible)"
        )
    props = torch.cuda.get_device_properties(0)
    return {
        "name": torch.cuda.get_device_name(0),
        "total_memory_bytes": props.total_memory,
        "total_memory_gib": round(props.total_memory / 2**30, 1),
        "capability": f"{props.major}.{props.minor}",
        "multiprocessors": props.multi_processor_count,
        "device_count": torch.cuda.device_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }, ""


def last_json_object(text: str) -> dict[str, Any] | None:
    """The last JSON object in a command's stdout: one line, or indented over several (a line starting with '{')."""
    decoder = json.JSONDecoder()
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    for i in range(len(lines) - 1, -1, -1):
        if not lines[i].lstrip().startswith("{"):
            continue
        start = offsets[i] + len(lines[i]) - len(lines[i].lstrip())
        try:
            found, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            continue
        if isinstance(found, dict):
            return found
    return None


def _env() -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO), str(REPO / "include"), str(REPO / "plugins"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    # No network on a lent GPU machine: never try a download, fail fast instead.
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0")
    # Deterministic cuBLAS (as the training CLI sets it), before CUDA initialises in the check's process.
    env.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return env


def _tail(text: str) -> str:
    return text[-TAIL_CHARS:]


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def run_command(cmd: Sequence[str], timeout_s: float) -> tuple[int | None, str, str]:
    """(exit code, stdout, stderr); None for a timeout. The command runs in its own session: on timeout it gets
    SIGINT (so its ``finally`` stops what it started), then SIGKILL after :data:`GRACE_S`."""
    proc = subprocess.Popen(
        list(cmd),
        cwd=REPO,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        return None, out, err


def run_check(check: Check, timeout_s: float, options: Options = Options()) -> dict[str, Any]:
    started = time.monotonic()
    cmd = check.command(options)
    rc, out, err = run_command(cmd, timeout_s)
    note = None
    if check.name == "embeddings" and rc == 2 and "unrecognized arguments: --device" in err:
        note = "preprocessing_embeddings.py does not accept --device yet: ran without it"
        left = timeout_s - (time.monotonic() - started)
        rc, out, err = run_command(_embeddings_command(options, device=False), left) if left > 10 else (None, "", "")
    seconds = round(time.monotonic() - started, 1)
    if rc is None:
        entry: dict[str, Any] = {"ok": False, "error": f"timed out after {timeout_s:.0f}s", "stderr_tail": _tail(err)}
    else:
        found = last_json_object(out)
        if found is None:
            entry = {"ok": False, "error": f"exit code {rc} and no JSON object on stdout", "stderr_tail": _tail(err)}
        else:
            entry = check.judge(found)
            if rc != 0 and entry.get("ok"):
                entry |= {"ok": False, "error": f"exit code {rc}", "stderr_tail": _tail(err)}
            elif "error" in entry and "stderr_tail" not in entry:
                entry["stderr_tail"] = _tail(err)
    if note:
        entry["note"] = note
    entry["seconds"] = seconds
    return entry


def drive(names: Sequence[str], budget_s: float, options: Options = Options()) -> tuple[dict[str, Any], int]:
    started = time.monotonic()
    report: dict[str, Any] = {"figure": "GPU checks (benchmarks/gpu/run.sh)", "budget_s": budget_s}
    try:
        gpu, why = gpu_info()
    except Exception as exc:  # torch missing or broken: nothing can be measured, and that is an error
        report |= {"gpu": None, "ok": False, "error": f"cannot probe the GPU: {type(exc).__name__}: {exc}"}
        return report, 1
    report["gpu"] = gpu
    checks: dict[str, Any] = {}
    report["checks"] = checks
    for check in CHECKS:
        if check.name not in names:
            continue
        if gpu is None:
            checks[check.name] = {"skipped": f"no CUDA GPU: {why}"}
            continue
        left = budget_s - (time.monotonic() - started) - GRACE_S
        timeout = min(check.timeout_s, left)
        if timeout < 10:
            checks[check.name] = {"ok": False, "error": f"no time left in the {budget_s:.0f}s budget"}
            continue
        print(f"gpu checks: {check.name} (timeout {timeout:.0f}s)", file=sys.stderr, flush=True)
        checks[check.name] = run_check(check, timeout, options)
    report["ok"] = all(c.get("ok") is True or "skipped" in c for c in checks.values())
    report["seconds"] = round(time.monotonic() - started, 1)
    return report, 0 if report["ok"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = [c.name for c in CHECKS]
    parser.add_argument("--only", action="append", choices=names, help="run only this check (repeatable)")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="seconds all checks together may take")
    parser.add_argument("--embed-rows", type=int, default=EMBED_ROWS, help="documents for the embeddings check")
    parser.add_argument("--check", choices=sorted(IN_PROCESS), help=argparse.SUPPRESS)  # one check, in this process
    args = parser.parse_args(argv)
    if args.check:
        return run_in_process(args.check)
    report, code = drive(args.only or names, args.budget_s, Options(embed_rows=args.embed_rows))
    print(json.dumps(report, indent=2), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
