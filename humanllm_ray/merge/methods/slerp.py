"""Spherical linear interpolation between exactly two models (Shoemake, 1985).

Each tensor is treated as one vector; ``merge.t`` is the fraction of the way from
``merge.models[0]`` (t=0) to ``merge.models[1]`` (t=1). Nearly parallel (or zero)
vectors fall back to linear interpolation, where the sphere is numerically flat.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import torch

from ..registry import register

PARALLEL_DOT = 0.9995  # |cos| above this: use lerp (sin(theta) ~ 0 would amplify noise)


def slerp_vectors(t: float, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a_norm = a.norm()
    b_norm = b.norm()
    if a_norm == 0 or b_norm == 0:
        return (1 - t) * a + t * b
    dot = float(torch.clamp((a / a_norm * (b / b_norm)).sum(), -1.0, 1.0))
    if abs(dot) > PARALLEL_DOT:
        return (1 - t) * a + t * b
    theta = math.acos(dot)
    sin_theta = math.sin(theta)
    scale_a = math.sin((1 - t) * theta) / sin_theta
    scale_b = math.sin(t * theta) / sin_theta
    return scale_a * a + scale_b * b


@register("slerp", num_models=2, params=("t",))
def slerp(
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    base: Optional[torch.Tensor],
    params: Mapping[str, Any],
) -> torch.Tensor:
    """Spherical interpolation of two models at fraction ``t`` (weights are not used)."""
    a, b = tensors
    return slerp_vectors(float(params.get("t", 0.5)), a, b)
