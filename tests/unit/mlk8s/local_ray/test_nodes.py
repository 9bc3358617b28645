"""What a node's ``ray start`` command and environment are: token auth forced on, servers on the chosen host,
no inherited cluster address; what a node record holds; and a reused pid never taken for a node."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mlk8s.local_ray.nodes import MAX_TEMP_DIR_LEN, NodeRecord, NodeSettings, NodeSpec, is_alive, start_node


def settings(**overrides: object) -> NodeSettings:
    kwargs: dict[str, object] = {"temp_dir": Path("/tmp/rl-x"), "token_path": Path("/tmp/rl-x/auth_token")}
    kwargs.update(overrides)
    return NodeSettings(**kwargs)  # type: ignore[arg-type]


def test_token_auth_is_on_whatever_the_caller_inherited() -> None:
    inherited = {"RAY_AUTH_MODE": "disabled", "RAY_AUTH_TOKEN": "someone-elses", "RAY_ADDRESS": "other:6379", "X": "1"}
    env = settings().env(inherited)
    assert env["RAY_AUTH_MODE"] == "token"
    assert env["RAY_AUTH_TOKEN_PATH"] == "/tmp/rl-x/auth_token"
    assert "RAY_AUTH_TOKEN" not in env and "RAY_ADDRESS" not in env
    assert env["X"] == "1"


def test_every_server_binds_to_the_chosen_host() -> None:
    loopback = settings().command(["--head"], "n1")
    assert "--node-ip-address=127.0.0.1" in loopback
    assert loopback[:4] == [sys.executable, "-m", "mlk8s.local_ray.ray_start", "start"]
    assert "--block" in loopback
    assert "--node-ip-address=10.9.0.1" in settings(host="10.9.0.1").command(["--head"], "n1")
    assert not [a for a in settings(host=None).command(["--head"], "n1") if a.startswith("--node-ip-address")]


def test_a_temp_dir_too_long_for_ray_sockets_is_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match=f"at most {MAX_TEMP_DIR_LEN}"):
        settings(temp_dir=Path("/tmp/" + "x" * 80))


def test_node_spec_arguments_and_bad_labels() -> None:
    spec = NodeSpec(2, 1, {"slot": 3.0}, {"mlk8s.io/worker-group": "cpu"})
    assert spec.args() == [
        "--num-cpus=2",
        "--num-gpus=1",
        '--resources={"slot": 3.0}',
        "--labels=mlk8s.io/worker-group=cpu",
    ]
    with pytest.raises(ValueError, match="may not contain"):
        NodeSpec(1, labels={"a=b": "c"})
    with pytest.raises(ValueError, match=">= 0"):
        NodeSpec(-1)


def test_a_record_survives_json_and_a_reused_pid_is_not_the_node() -> None:
    import psutil

    me = psutil.Process(os.getpid())
    record = NodeRecord("w1", "ab" * 28, me.pid, me.create_time(), "/tmp/log", NodeSpec(1, labels={"g": "cpu"}))
    assert NodeRecord.from_json(record.to_json()) == record
    assert is_alive(record)
    reused = NodeRecord("w1", "ab" * 28, me.pid, me.create_time() - 100.0, "/tmp/log", NodeSpec(1))
    assert not is_alive(reused)
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    started = psutil.Process(done.pid).create_time()
    done.wait()
    assert not is_alive(NodeRecord("w2", "cd" * 28, done.pid, started, "/tmp/log", NodeSpec(1)))


def test_a_start_interrupted_before_the_node_registers_ends_the_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing records a node that has not registered, so an interrupted start must not leave it running."""
    import shutil
    import tempfile

    import psutil

    from mlk8s.local_ray import nodes

    temp_dir = Path(tempfile.mkdtemp(prefix="rl-", dir="/tmp"))
    monkeypatch.setattr(
        NodeSettings, "command", lambda self, role, name: [sys.executable, "-c", "import time; time.sleep(120)"]
    )
    spawned: list[int] = []  # only the node process this test starts: the suite's other children are not ours

    class Recording(subprocess.Popen):  # type: ignore[type-arg]
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            spawned.append(self.pid)

    monkeypatch.setattr(nodes.subprocess, "Popen", Recording)

    class InterruptedGcs:
        address = "127.0.0.1:1"

        def nodes(self, timeout_s: float = 5.0) -> list[object]:
            raise KeyboardInterrupt  # what a signal handler raises in the waiting thread

    try:
        with pytest.raises(KeyboardInterrupt):
            start_node(settings(temp_dir=temp_dir), "worker-1", NodeSpec(1), ["--address=x"], InterruptedGcs())  # type: ignore[arg-type]
        assert len(spawned) == 1
        assert not psutil.pid_exists(spawned[0]) or psutil.Process(spawned[0]).status() == psutil.STATUS_ZOMBIE
    finally:
        monkeypatch.undo()
        for pid in spawned:  # the old behaviour left it running: end it (its own session) whatever the outcome
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)
