"""``python -m mlk8s.preprocessing``: see :mod:`mlk8s.preprocessing.cli`."""

import sys

from mlk8s.preprocessing.cli import main

sys.exit(main())
