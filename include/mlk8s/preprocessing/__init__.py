"""Ray preprocessing on a pod: documents in, cleaned text, features and embeddings out, committed exactly once
to a Delta Lake table.

Entry point: ``python -m mlk8s.preprocessing --input URI --output TABLE_URI [--partition KEY=VALUE]
[--pipeline SPEC]``. Downstream jobs read the table with any Delta reader (deltalake, Polars, DuckDB, Spark,
``ray.data.read_delta``) or with :func:`read_output` / :func:`iter_output` (checksums verified; outputs of the
old manifest layout too), never by listing the directory. Names are imported on first use, so
``python -m mlk8s.preprocessing.samples`` and DAG files stay light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CommitError": "errors",
    "CorruptOutputError": "errors",
    "FencedError": "errors",
    "InputError": "errors",
    "OutputError": "errors",
    "SpecError": "errors",
    "MANIFEST": "output",
    "committed_files": "output",
    "iter_output": "output",
    "open_output": "output",
    "read_manifest": "output",
    "read_output": "output",
    "documents": "samples",
    "write_documents": "samples",
    "open_input": "sources",
    "DEFAULT_SPEC": "spec",
    "PipelineSpec": "spec",
    "load_spec": "spec",
    "parse_spec": "spec",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"mlk8s.preprocessing.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'mlk8s.preprocessing' has no attribute {name!r}")
