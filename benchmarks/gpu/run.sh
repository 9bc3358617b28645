#!/usr/bin/env bash
# The GPU checks (benchmarks/gpu/checks.py): prints one JSON object; exit 1 when a check errored or missed its
# target. Without a CUDA GPU every check is skipped with the reason and the exit code is 0.
# Python: $PYTHON, else the project's .venv/bin/python, else python3 on PATH. Extra flags go to checks.py
# (--only NAME, --budget-s SECONDS).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PY="${PYTHON:-.venv/bin/python}"
if [[ -z "${PYTHON:-}" && ! -x "$PY" ]]; then
    echo "gpu checks: $PY not found, using python3 on PATH" >&2
    PY=python3
fi
export PYTHONPATH="$PWD:$PWD/include:$PWD/plugins${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m benchmarks.gpu.checks "$@"
