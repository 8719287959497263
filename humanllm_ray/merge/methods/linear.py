"""Linear (weighted average) merge — the paper's step: 0.5 x SFT + 0.5 x base instruct,
which keeps most of the base model's general ability while adding the simulation skill."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch

from ..registry import register


@register("linear", params=("normalize",), elementwise=True)
def linear(
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    base: Optional[torch.Tensor],
    params: Mapping[str, Any],
) -> torch.Tensor:
    """Weighted sum of the inputs, divided by the sum of weights when ``normalize``."""
    # In place on the engine's float32 buffers (see registry): no allocation per block.
    out = tensors[0].mul_(float(weights[0]))
    for tensor, weight in zip(tensors[1:], weights[1:]):
        out.add_(tensor, alpha=float(weight))
    if params.get("normalize", True):
        total = float(sum(weights))
        if total == 0.0:
            raise ValueError("linear merge: weights sum to 0, cannot normalize")
        out.div_(total)
    return out
