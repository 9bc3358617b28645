"""Where local pods get their working and XCom directories: a fresh one per pod, like a container's."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path


def scratch_root() -> Path:
    root = Path(os.environ.get("MLK8S_LOCAL_SCRATCH", Path(tempfile.gettempdir()) / "mlk8s-local-pods"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def new_scratch_dir(pod_name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{pod_name}-{int(time.time())}-", dir=scratch_root()))
