"""A local pod's process: exit codes classified, logs streamed, XCom read, stopped as the kubelet stops it."""

from __future__ import annotations

import logging
import signal
import textwrap
import threading
import time
from pathlib import Path

import pytest

from mlk8s.disruption import OutcomeKind
from mlk8s.pod_contract import EXIT_INTERRUPTED
from mlk8s_airflow.backends.local.disruption import LocalDisruption
from mlk8s_airflow.backends.local.process import LocalPodProcess
from mlk8s_airflow.backends.local.process_spec import process_spec_from_pod
from tests.unit.mlk8s_airflow.backends.local.pods import make_pod, run


@pytest.mark.parametrize("code", [1, 3])
def test_nonzero_exit_is_a_failure(tmp_path: Path, code: int) -> None:
    result, _ = run(make_pod([f"import sys; sys.exit({code})"]), tmp_path)
    assert result.returncode == code
    assert result.outcome.kind is OutcomeKind.FAILED


def test_logs_stream_line_by_line_while_the_process_runs(tmp_path: Path) -> None:
    code = "import time\nfor i in range(3):\n    print(f'step {i}', flush=True)\n    time.sleep(0.3)\n"
    seen: list[tuple[float, str]] = []
    result, log = run(make_pod([code]), tmp_path, on_line=lambda line: seen.append((time.monotonic(), line)))
    assert [line for _, line in seen] == ["step 0", "step 1", "step 2"]
    # Each line arrived when it was printed, not all at the end.
    assert seen[-1][0] - seen[0][0] > 0.4
    assert result.outcome.kind is OutcomeKind.SUCCEEDED


def test_stderr_is_in_the_log_too(tmp_path: Path) -> None:
    _, log = run(make_pod(["import sys; print('oops', file=sys.stderr)"]), tmp_path)
    assert "oops" in log.lines


def test_xcom_written_through_the_pod_contract_becomes_the_result(tmp_path: Path) -> None:
    result, _ = run(make_pod(["from mlk8s.pod_contract import write_result; write_result({'rows': 3})"]), tmp_path)
    assert result.xcom == {"rows": 3}


def test_literal_kpo_xcom_path_is_remapped(tmp_path: Path) -> None:
    code = "import json, sys; open(sys.argv[1], 'w').write(json.dumps([1, 2]))"
    result, _ = run(make_pod([code, "/airflow/xcom/return.json"]), tmp_path)
    assert result.xcom == [1, 2]


def test_no_result_file_means_no_xcom(tmp_path: Path) -> None:
    result, _ = run(make_pod(["print('nothing to return')"]), tmp_path)
    assert result.returncode == 0 and result.xcom is None


# The handler writes with os.write: print() from a signal handler can interrupt the main thread's own print
# ("reentrant call inside BufferedWriter") and exit 1 instead of 75.
SLEEPER = textwrap.dedent(
    """
    import os, signal, sys, time
    def on_term(signum, frame):
        os.write(1, b"got SIGTERM, checkpointing\\n")
        os._exit(75)
    signal.signal(signal.SIGTERM, on_term)
    print("ready", flush=True)
    time.sleep(60)
    """
)


def test_sigkill_is_a_disruption(tmp_path: Path) -> None:
    disruption = LocalDisruption(signal="SIGKILL", after_log="^ready$")
    result, _ = run(make_pod([SLEEPER]), tmp_path, disruption=disruption)
    assert result.returncode == -signal.SIGKILL
    assert result.outcome.disrupted and result.disrupted_by_us


def test_sigterm_gives_the_job_its_grace_period(tmp_path: Path) -> None:
    disruption = LocalDisruption(signal="SIGTERM", after_log="^ready$")
    result, log = run(make_pod([SLEEPER], grace=20), tmp_path, disruption=disruption)
    assert result.returncode == EXIT_INTERRUPTED
    assert "got SIGTERM, checkpointing" in log.lines
    assert result.outcome.disrupted


def test_sigterm_then_sigkill_after_the_grace_period(tmp_path: Path) -> None:
    stubborn = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(60)\n"
    disruption = LocalDisruption(signal="SIGTERM", after_log="^ready$")
    result, _ = run(make_pod([stubborn], grace=1), tmp_path, disruption=disruption)
    assert result.returncode == -signal.SIGKILL


def test_terminate_from_another_thread_stops_the_pod(tmp_path: Path) -> None:
    spec = process_spec_from_pod(make_pod([SLEEPER], grace=5), container_name="base", scratch_dir=tmp_path)
    proc = LocalPodProcess(spec, log=logging.getLogger("test"))
    threading.Timer(1.0, proc.terminate).start()
    result = proc.run()
    assert result.returncode == EXIT_INTERRUPTED


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS])
def test_a_crash_is_the_pods_own_failure_not_a_disruption(tmp_path: Path, sig: signal.Signals) -> None:
    """Issue 13: a segfault or abort recurs on every relaunch; on a cluster it is the container's failure."""
    code = f"import os, signal; signal.signal({int(sig)}, signal.SIG_DFL); os.kill(os.getpid(), {int(sig)})"
    result, _ = run(make_pod([code]), tmp_path)
    assert result.returncode == -sig
    assert result.outcome.kind is OutcomeKind.FAILED
    assert sig.name in result.outcome.reason and not result.disrupted_by_us
