from __future__ import annotations

import sys

from local_airflow.cli import main

sys.exit(main())
