"""The merge-method registry.

A merge method is a function of one tensor name's inputs: the matching tensors of
every input model (already float32, same shape), their weights, the reference ("base")
tensor when the method works on task vectors, and the method's parameters. The input
tensors are the engine's own float32 copies: a method may overwrite them and return one
of them (linear and task arithmetic do, so streaming a block allocates nothing). Everything
else — reading shards, validation, dtype, sharding the output, Ray — is the streaming
engine's job (:mod:`humanllm_ray.merge.engine`), so a method stays a few lines of torch.

Adding a method is one file: drop ``methods/<name>.py`` holding a function decorated
with :func:`register`; :func:`load_methods` imports every module of that package, and
the config accepts ``merge.method=<name>`` from the file name alone.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import torch

# fn(tensors, weights, base, params) -> merged tensor (float32, same shape)
MergeFn = Callable[[Sequence[torch.Tensor], Sequence[float], Optional[torch.Tensor], Mapping[str, Any]], torch.Tensor]


@dataclass(frozen=True)
class MergeMethod:
    name: str
    fn: MergeFn
    needs_base: bool = False  # works on task vectors (model - base): the base tensor is passed in
    num_models: Optional[int] = None  # exact number of input models, when the method fixes it
    params: Tuple[str, ...] = field(default_factory=tuple)  # merge.* config keys the method reads
    description: str = ""
    # Each output entry depends only on the same entry of the inputs: the engine may then
    # call the method on row blocks of a tensor instead of the whole tensor (bounded memory).
    elementwise: bool = False

    def __call__(
        self,
        tensors: Sequence[torch.Tensor],
        weights: Sequence[float],
        base: Optional[torch.Tensor],
        params: Mapping[str, Any],
    ) -> torch.Tensor:
        return self.fn(tensors, weights, base, params)


_METHODS: Dict[str, MergeMethod] = {}


def register(
    name: str,
    *,
    needs_base: bool = False,
    num_models: Optional[int] = None,
    params: Tuple[str, ...] = (),
    description: str = "",
    elementwise: bool = False,
) -> Callable[[MergeFn], MergeFn]:
    """Decorator: register ``fn`` as merge method ``name``."""

    def wrap(fn: MergeFn) -> MergeFn:
        if name in _METHODS and _METHODS[name].fn is not fn:
            raise ValueError(f"merge method {name!r} is registered twice")
        _METHODS[name] = MergeMethod(
            name=name,
            fn=fn,
            needs_base=needs_base,
            num_models=num_models,
            params=tuple(params),
            description=description or (fn.__doc__ or "").strip().splitlines()[0],
            elementwise=elementwise,
        )
        return fn

    return wrap


def load_methods() -> Dict[str, MergeMethod]:
    """Import every module in ``humanllm_ray.merge.methods`` (each registers itself)."""
    from . import methods

    for info in pkgutil.iter_modules(methods.__path__):
        importlib.import_module(f"{methods.__name__}.{info.name}")
    return dict(_METHODS)


def get_method(name: str) -> MergeMethod:
    methods = load_methods()
    if name not in methods:
        raise KeyError(f"unknown merge method {name!r}; available: {', '.join(sorted(methods))}")
    return methods[name]


def available_methods() -> Tuple[str, ...]:
    return tuple(sorted(load_methods()))
