"""TIES merging (Yadav et al., 2023): trim, elect sign, disjoint merge of task vectors.

1. trim: keep each task vector's ``density`` fraction of largest-magnitude entries;
2. elect: per entry, the sign of the weighted sum of the trimmed task vectors;
3. disjoint merge: average (weighted) only the entries whose sign agrees with the
   elected one, so opposite updates do not cancel into noise.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import torch

from ..registry import register


def trim_to_density(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Zero all but the ``density`` fraction of largest-|x| entries (ties at the threshold kept)."""
    if density >= 1.0:
        return delta
    numel = delta.numel()
    keep = int(math.ceil(density * numel))
    if keep <= 0:
        return torch.zeros_like(delta)
    magnitude = delta.abs().flatten()
    # kthvalue is 1-indexed from the smallest: the keep-th largest is the (n-keep+1)-th smallest.
    threshold = magnitude.kthvalue(numel - keep + 1).values
    return delta * (delta.abs() >= threshold)


@register("ties", needs_base=True, params=("density", "normalize"))
def ties(
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    base: Optional[torch.Tensor],
    params: Mapping[str, Any],
) -> torch.Tensor:
    """TIES: trimmed, sign-elected, disjoint weighted mean of task vectors, added to base."""
    assert base is not None
    density = float(params.get("density", 0.5))
    trimmed = [trim_to_density(t - base, density) for t in tensors]
    weighted = [float(w) * d for w, d in zip(weights, trimmed)]
    elected = torch.sign(torch.stack(weighted).sum(dim=0))
    merged = torch.zeros_like(base)
    weight_sum = torch.zeros_like(base)
    for w, d, wd in zip(weights, trimmed, weighted):
        agrees = (torch.sign(d) == elected) & (d != 0)
        merged += wd * agrees
        weight_sum += float(w) * agrees
    if params.get("normalize", True):
        # Entries where no model agrees stay at the base value (merged is 0 there).
        merged = torch.where(weight_sum > 0, merged / weight_sum.clamp_min(1e-12), merged)
    return base + merged
