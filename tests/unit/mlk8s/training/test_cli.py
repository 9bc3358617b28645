"""Bad input is refused before training starts, with exit code 2 and a message naming the flag; nothing
already in the checkpoint location is touched."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mlk8s.pod_contract import EXIT_OK, EXIT_USAGE
from mlk8s.training.cli import main
from tests.tally import BAD_INPUT, FAULT, held

TINY = ["--epochs", "1", "--batch-size", "256", "--task-option", "hidden=8", "--task-option", "layers=1"]


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def run_main(tmp_path: Path, *extra: str) -> int:
    args = ["--checkpoint-uri", str(tmp_path / "ckpt"), "--output-uri", str(tmp_path / "out"), *TINY, *extra]
    try:
        return main(args)
    except SystemExit as exc:  # argparse's own errors
        return int(exc.code or 0)


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--epochs", "-1"], "--epochs"),
        (["--batch-size", "0"], "--batch-size"),
        (["--lr", "0"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--keep-last", "0"], "--keep-last"),
        (["--checkpoint-every-steps", "-5"], "--checkpoint-every-steps"),
        (["--termination-grace-seconds", "-1"], "--termination-grace-seconds"),
        (["--threads", "0"], "--threads"),
        (["--task-option", "novalue"], "--task-option"),
        (["--task-option", "bogus=1"], "--task-option"),
        (["--task-option", "hidden=abc"], "--task-option"),
        (["--task-option", "dropout=1.5"], "--task-option"),
        (["--task", "no_such_package.module:Task"], "--task"),
        (["--task", "mlk8s.training.example:NoSuchClass"], "--task"),
        (["--task", "tests.unit.mlk8s.training.tasks:NotATask"], "--task"),
        (["--task", "notdotted"], "--task"),
        (["--data", "/definitely/not/here.parquet"], "--data"),
        (["--data", "/any.parquet", "--task-option", "shifts=1"], "--task-option"),
        (["--task-option", "shifts=3"], "--task-option"),
        (["--device", "tpu"], "--device"),
        (["--seed", "-1"], "--seed"),
        (["--lr", "inf"], "--lr"),
        (["--termination-grace-seconds", "nan"], "--termination-grace-seconds"),
        (["--storage-timeout-seconds", "0"], "--storage-timeout-seconds"),
        (["--data-version", "3"], "--data-version"),
        (["--data-partition", "run_key=x"], "--data-partition"),
        (["--log-level", "loud"], "--log-level"),
    ],
)
def test_bad_flag_is_refused_before_training(
    tmp_path: Path, xcom: Path, capsys: pytest.CaptureFixture[str], extra: list[str], flag: str
) -> None:
    code = run_main(tmp_path, *extra)
    err = capsys.readouterr().err
    ok = code == EXIT_USAGE and flag in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert held(BAD_INPUT, f"flag {flag}", ok and not (tmp_path / "ckpt" / "generations").exists()), err
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_missing_required_uri_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--output-uri", "/tmp/x"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "--checkpoint-uri" in err and len(err.strip().splitlines()) == 1


def test_cuda_without_a_gpu_is_a_usage_error(tmp_path: Path, xcom: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code = run_main(tmp_path, "--device", "cuda")
    assert held(BAD_INPUT, "flag --device", code == EXIT_USAGE and "--device" in capsys.readouterr().err)


@pytest.mark.parametrize("flag", ["--checkpoint-uri", "--output-uri"])
def test_unwritable_uri_is_a_usage_error(
    tmp_path: Path, xcom: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("keep me")
    uris = {"--checkpoint-uri": str(tmp_path / "ckpt"), "--output-uri": str(tmp_path / "out")}
    uris[flag] = str(blocker / "sub")
    code = main([a for kv in uris.items() for a in kv] + TINY)
    ok = code == EXIT_USAGE and flag in capsys.readouterr().err
    assert held(BAD_INPUT, f"unwritable {flag}", ok and blocker.read_text() == "keep me")


def test_parquet_without_the_expected_columns(tmp_path: Path, xcom: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"vector": [[1.0, 2.0]], "label": [1]}), tmp_path / "d.parquet")
    code = run_main(tmp_path, "--data", str(tmp_path / "d.parquet"))
    err = capsys.readouterr().err
    assert held(BAD_INPUT, "data without the columns", code == EXIT_USAGE and "--data" in err and "embedding" in err)


def test_unwritable_result_dir_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("MLK8S_XCOM_DIR", str(blocker / "xcom"))
    code = run_main(tmp_path)
    assert held(BAD_INPUT, "unwritable result dir", code == EXIT_USAGE and "MLK8S_XCOM_DIR" in capsys.readouterr().err)


def test_resume_with_different_flags_is_refused_and_keeps_checkpoints(
    tmp_path: Path, xcom: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(tmp_path, "--seed", "1", "--task-option", "shifts=0") == EXIT_OK
    result = json.loads((xcom / "return.json").read_text())
    assert result["status"] == "done" and result["steps"] == 6
    checkpoints = {k: v for k, v in tree_digest(tmp_path / "ckpt").items() if k.startswith("ckpt-")}
    code = run_main(tmp_path, "--seed", "2", "--task-option", "shifts=0")
    err = capsys.readouterr().err
    after = {k: v for k, v in tree_digest(tmp_path / "ckpt").items() if k.startswith("ckpt-")}
    ok = code == EXIT_USAGE and "--seed" in err and "--checkpoint-uri" in err and after == checkpoints
    assert held(BAD_INPUT, "resume with other flags", ok)


def test_help_documents_every_flag() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mlk8s.training", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for flag in (
        "--checkpoint-uri",
        "--output-uri",
        "--epochs",
        "--seed",
        "--checkpoint-every-steps",
        "--keep-last",
        "--termination-grace-seconds",
        "--batch-size",
        "--lr",
        "--data",
        "--task",
        "--device",
        "--amp",
    ):
        assert flag in out
    assert "75" in out


def test_zombie_is_fenced_off_and_exits_with_an_error(tmp_path: Path, xcom: Path) -> None:
    from mlk8s.checkpoint import CheckpointStore
    from mlk8s.pod_contract import EXIT_ERROR
    from tests.unit.mlk8s.training.tasks import SupersededTask

    SupersededTask.checkpoint_uri = str(tmp_path / "ckpt")
    SupersededTask.claim_at_step, SupersededTask.steps_seen = 3, 0
    code = run_main(
        tmp_path,
        "--task",
        "tests.unit.mlk8s.training.tasks:SupersededTask",
        "--batch-size",
        "128",
        "--checkpoint-every-steps",
        "5",
        "--log-level",
        "ERROR",
    )
    store = CheckpointStore(str(tmp_path / "ckpt"))
    ok = code == EXIT_ERROR and store.generations() == [1, 2] and store.list_checkpoints() == []
    assert held(FAULT, "zombie trainer after a newer claim", ok), "the zombie committed after a newer claim"
    assert not (tmp_path / "out" / "model.safetensors").exists()


def _write(tmp_path: Path, table: object) -> str:
    import pyarrow.parquet as pq

    path = tmp_path / "bad.parquet"
    pq.write_table(table, path)  # type: ignore[arg-type]
    return str(path)


def _bad_tables() -> list[tuple[str, object, str]]:
    import pyarrow as pa

    return [
        ("label-1e9", pa.table({"embedding": [[0.5, 1.0]] * 3, "label": [0, 1, 10**9]}), "bad.parquet row 3: 'label'"),
        ("list-string", pa.table({"embedding": [["a", "b"]], "label": [1]}), "column 'embedding' has type list<"),
        ("nan", pa.table({"embedding": [[0.5, 1.0], [float("nan"), 1.0]], "label": [0, 1]}), "row 2: 'embedding'"),
        ("ragged", pa.table({"embedding": [[0.5, 1.0], [1.0]], "label": [0, 1]}), "row 2: 'embedding' has 1 values"),
    ]


@pytest.mark.parametrize("case", [c[0] for c in _bad_tables()])
def test_bad_rows_are_one_line_naming_file_and_row(
    tmp_path: Path, xcom: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    _, table, message = next(c for c in _bad_tables() if c[0] == case)
    data = _write(tmp_path, table)
    code = main(["--checkpoint-uri", str(tmp_path / "ckpt"), "--output-uri", str(tmp_path / "out"), "--data", data])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    ok = code == EXIT_USAGE and last.startswith("python -m mlk8s.training: error: --data: ") and message in last
    assert held(BAD_INPUT, f"data: {case}", ok and "Traceback" not in err), err


def test_debug_adds_the_traceback(tmp_path: Path, xcom: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, table, _ = _bad_tables()[0]
    data = _write(tmp_path, table)
    args = ["--checkpoint-uri", str(tmp_path / "c"), "--output-uri", str(tmp_path / "o"), "--data", data]
    assert main([*args, "--log-level", "debug"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("python -m mlk8s.training: error: --data")


class Blackhole:
    """A TCP endpoint on loopback that accepts connections and never answers: a store that went away."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        for conn in self.held:
            conn.close()
        self.sock.close()


def _launch(tmp_path: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    import os

    env = dict(
        os.environ,
        MLK8S_XCOM_DIR=str(tmp_path / "xcom"),
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",  # credentials of our own: no lookup of the instance metadata service
        AWS_EC2_METADATA_DISABLED="true",
    )
    uri = f"s3://bucket/ckpt?region=us-east-1&endpoint_override=127.0.0.1:{port}&scheme=http"
    cmd = [sys.executable, "-m", "mlk8s.training", "--checkpoint-uri", uri, "--output-uri", str(tmp_path / "o")]
    return subprocess.Popen([*cmd, *extra], stderr=subprocess.PIPE, text=True, env=env)


def test_a_store_that_never_answers_ends_in_a_bounded_one_line_error(tmp_path: Path) -> None:
    import time

    from mlk8s.pod_contract import EXIT_ERROR

    hole = Blackhole()
    try:
        started = time.monotonic()
        proc = _launch(tmp_path, hole.port, "--storage-timeout-seconds", "2")
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - started
    finally:
        hole.close()
    last = err.strip().splitlines()[-1]
    ok = proc.returncode == EXIT_ERROR and "s3://bucket/ckpt" in last and "did not finish within 2 s" in last
    assert held(FAULT, "object store that never answers", ok and "Traceback" not in err and took < 30), err


def test_sigterm_during_a_storage_wait_is_honoured(tmp_path: Path) -> None:
    import signal
    import time

    from mlk8s.pod_contract import EXIT_INTERRUPTED

    hole = Blackhole()
    try:
        proc = _launch(tmp_path, hole.port, "--storage-timeout-seconds", "300")
        while not hole.held and proc.poll() is None:  # it is now waiting on the store
            time.sleep(0.05)
        time.sleep(0.2)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        hole.close()
    ok = proc.returncode == EXIT_INTERRUPTED and "stopped while" in err.strip().splitlines()[-1] and took < 10
    assert held(FAULT, "SIGTERM during a storage wait", ok), err
