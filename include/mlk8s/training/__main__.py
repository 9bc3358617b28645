from __future__ import annotations

import sys

from mlk8s.training.cli import main

sys.exit(main())
