from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _restore_process_globals() -> Iterator[None]:
    """The trainer sets torch's determinism and threads, signal handlers and root logging for the whole
    process, as a pod entrypoint should; tests run it in-process, so put everything back afterwards."""
    import torch

    deterministic = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    root = logging.getLogger()
    root_handlers, root_level = list(root.handlers), root.level
    yield
    torch.use_deterministic_algorithms(deterministic)
    torch.set_num_threads(threads)
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    root.handlers[:] = root_handlers
    root.setLevel(root_level)


@pytest.fixture
def xcom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "xcom"
    monkeypatch.setenv("MLK8S_XCOM_DIR", str(directory))
    return directory
