"""The run key: the one path and partition key of a DAG run's data, derived from its run id.

``{{ ds_nodash }}`` is undefined for a run without a logical date (``airflow dags trigger`` without ``-l``, a
REST trigger with ``logical_date: null``) and equal for two runs of one day, so paths keyed by it fail or
overwrite each other. The run id is unique per DAG, set for every kind of run and kept by a rerun (clearing
a task keeps its run), so a key derived from it gives each run its own data and each rerun the same data.
Use it in templates as ``{{ run_id | run_key }}`` with ``user_defined_filters=RUN_KEY_FILTERS``.
"""

from __future__ import annotations

import hashlib
import re

#: What a path segment, an object-store key part and a Delta partition value all accept.
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_READABLE_LEN = 64


def run_key(run_id: str) -> str:
    """``manual__2026-01-02T03:04:05.6+00:00`` -> ``manual__2026-01-02T03-04-05.6-00-00-1c9d4e7a``.

    The readable part is the run id with unsafe characters replaced; the hash suffix (of the exact run id)
    keeps two run ids apart that differ only in replaced characters.
    """
    if not run_id or not str(run_id).strip():
        raise ValueError("run_id is empty: a run key needs the DAG run's id")
    readable = _UNSAFE.sub("-", str(run_id)).strip("-.")[:_READABLE_LEN] or "run"
    digest = hashlib.sha256(str(run_id).encode()).hexdigest()[:8]
    return f"{readable}-{digest}"


RUN_KEY_FILTERS = {"run_key": run_key}
