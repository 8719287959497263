"""Task arithmetic (Ilharco et al., 2023): add weighted task vectors to the base.

A model equal to the base contributes a zero task vector, so the default
``merge.models=[sft, base]`` with weights [0.5, 0.5] equals the linear 0.5/0.5 merge.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch

from ..registry import register


@register("task_arithmetic", needs_base=True, elementwise=True)
def task_arithmetic(
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    base: Optional[torch.Tensor],
    params: Mapping[str, Any],
) -> torch.Tensor:
    """base + sum_i w_i * (model_i - base); weights are scales, not normalized."""
    assert base is not None
    # In place on the engine's float32 buffers (see registry): task vectors first, then the sum.
    deltas = [tensor.sub_(base) for tensor in tensors]
    for delta, weight in zip(deltas, weights):
        base.add_(delta, alpha=float(weight))
    return base
