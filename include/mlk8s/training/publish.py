"""The final model: ``model.safetensors``, then ``model.json`` beside it, written last as the marker that the
weights are complete. Non-finite weights are never published."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mlk8s.checkpoint import sha256
from mlk8s.storage import Location, call, make_dirs, write_atomic
from mlk8s.training.numerics import NonFiniteError, non_finite

if TYPE_CHECKING:
    import torch

MODEL_FILE = "model.safetensors"
MODEL_INFO_FILE = "model.json"


def publish(output: Location, model: torch.nn.Module, info: dict[str, Any]) -> Location:
    """Write the model and ``info`` (plus the weights' URI and sha256, added to ``info``); returns the model file."""
    from safetensors.torch import save

    bad = non_finite(model.named_parameters())
    if bad:
        raise NonFiniteError(
            f"the final weights hold NaN or infinity (in {', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); "
            "nothing was published. Lower --lr, or check the data"
        )
    weights = save({k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()})
    call(output, f"creating {output.uri}", make_dirs, output)
    model_loc = output.child(MODEL_FILE)
    call(output, f"writing {model_loc.uri}", write_atomic, model_loc, weights)
    info.update(model_uri=model_loc.uri, weights_sha256=sha256(weights))
    marker = output.child(MODEL_INFO_FILE)
    body = json.dumps(info, sort_keys=True, indent=2).encode()
    call(output, f"writing {marker.uri}", write_atomic, marker, body)
    return model_loc
