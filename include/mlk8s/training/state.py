"""Training state <-> (safetensors bytes, JSON bytes), without pickle.

Optimizer, scheduler and AMP-scaler state dicts are nested Python values with tensors inside. :func:`split`
moves every tensor into a flat name->tensor dict (for safetensors) and leaves a JSON skeleton with
``{"__tensor__": name}`` in its place; tuples and non-string dict keys (the optimizer's int param ids) get
tagged so :func:`join` rebuilds exactly the same structure. RNG states are converted to tensors and lists.
Floats survive JSON exactly (Python writes the shortest repr that round-trips).
"""

from __future__ import annotations

import json
import random
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

TENSORS_FILE = "state.safetensors"
JSON_FILE = "state.json"


def split(obj: Any, prefix: str, tensors: dict[str, torch.Tensor], *, copy: bool = True) -> Any:
    """The JSON skeleton of ``obj``; its tensors go into ``tensors``: copied (detached, on CPU), or, with
    ``copy=False``, as they are (the caller copies them into a snapshot image before they change)."""
    import torch

    scalars = (bool, int, float, str, type(None))

    def walk(obj: Any, prefix: str) -> Any:
        if isinstance(obj, scalars):
            return obj
        if isinstance(obj, torch.Tensor):
            tensors[prefix] = obj.detach().to("cpu", copy=True).contiguous() if copy else obj.detach()
            return {"__tensor__": prefix}
        if isinstance(obj, list | tuple):
            # RNG states are long runs of ints: keep them off the per-item path (this runs on the step thread).
            items = (
                list(obj)
                if all(type(v) in scalars for v in obj)
                else [walk(v, f"{prefix}.{i}") for i, v in enumerate(obj)]
            )
            return {"__tuple__": items} if isinstance(obj, tuple) else items
        if isinstance(obj, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in obj):
                return {k: walk(v, f"{prefix}.{k}") for k, v in obj.items()}
            return {"__dict__": [[k, walk(v, f"{prefix}.{k}")] for k, v in obj.items()]}
        raise TypeError(f"cannot checkpoint a {type(obj).__name__} at {prefix!r}: only tensors and JSON values")

    return walk(obj, prefix)


def join(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`split`."""
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__tuple__" in skeleton:
            return tuple(join(v, tensors) for v in skeleton["__tuple__"])
        if "__dict__" in skeleton:
            return {_key(k): join(v, tensors) for k, v in skeleton["__dict__"]}
        return {k: join(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [join(v, tensors) for v in skeleton]
    return skeleton


def _key(k: Any) -> Any:
    return tuple(k) if isinstance(k, list) else k


def capture_rng() -> dict[str, Any]:
    """Every RNG a training step may draw from: python, numpy, torch CPU and each CUDA device.

    The two Mersenne-Twister key arrays travel as int64 tensors: cheaper to snapshot than 1,249 JSON ints.
    """
    import numpy as np
    import torch

    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    assert isinstance(keys, np.ndarray)
    state: dict[str, Any] = {
        "python": [version, torch.tensor(internal, dtype=torch.int64), gauss],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(int(v) for v in internal.tolist()), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def encode(
    model_state: dict[str, torch.Tensor],
    rest: dict[str, Any],
    *,
    copy: bool = True,
    plain: dict[str, Any] | None = None,
) -> tuple[dict[str, torch.Tensor], Any]:
    """Split a whole training state into the tensors to save and the JSON skeleton; runs in the step thread.

    ``plain`` holds entries that are JSON already (string keys, no tensors, no tuples): they join the skeleton
    as they are, without the walk (the run's history is hundreds of small dicts, walked for nothing otherwise).
    """
    tensors: dict[str, torch.Tensor] = {}
    for k, v in model_state.items():
        tensors[f"model.{k}"] = v.detach().to("cpu", copy=True).contiguous() if copy else v.detach()
    skeleton = split(rest, "state", tensors, copy=copy)
    for key, value in (plain or {}).items():
        skeleton[key] = value
    return tensors, skeleton


def serialize(tensors: dict[str, torch.Tensor], skeleton: Any) -> dict[str, bytes]:
    """The checkpoint's files from copied CPU tensors (for states a snapshot image cannot hold)."""
    from safetensors.torch import save

    return {TENSORS_FILE: save(tensors), JSON_FILE: skeleton_bytes(skeleton)}


def skeleton_bytes(skeleton: Any) -> bytes:
    return json.dumps(skeleton, sort_keys=True).encode()


def deserialize(files: dict[str, bytes]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(model state dict, the rest) from a checkpoint's files."""
    from safetensors.torch import load

    tensors = load(files[TENSORS_FILE])
    rest = join(json.loads(files[JSON_FILE]), tensors)
    model = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    return model, rest
