from __future__ import annotations

import os
import sys

from mlk8s.storage import abandoned_calls
from mlk8s.training.cli import main

code = main()
if abandoned_calls():
    # A storage call we stopped waiting for may still block a helper thread in native code, and interpreter
    # shutdown would wait for it (the S3 client's finaliser does): leave now, with the exit code decided.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
