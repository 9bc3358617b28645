from __future__ import annotations

import sys

from mlk8s.model_registry.cli import main

sys.exit(main())
