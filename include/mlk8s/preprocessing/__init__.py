"""Ray preprocessing on a pod: documents in, cleaned text, features and embeddings out, committed exactly once.

Entry point: ``python -m mlk8s.preprocessing --input URI --output URI [--pipeline SPEC]``. Downstream jobs
read the committed output with :func:`read_output` (or :func:`committed_files`), never by listing the
directory. Names are imported on first use, so ``python -m mlk8s.preprocessing.samples`` and DAG files stay
light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "MANIFEST": "output",
    "CommitError": "errors",
    "committed_files": "output",
    "read_manifest": "output",
    "read_output": "output",
    "documents": "samples",
    "write_documents": "samples",
    "InputError": "errors",
    "open_input": "sources",
    "DEFAULT_SPEC": "spec",
    "PipelineSpec": "spec",
    "SpecError": "errors",
    "load_spec": "spec",
    "parse_spec": "spec",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"mlk8s.preprocessing.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'mlk8s.preprocessing' has no attribute {name!r}")
