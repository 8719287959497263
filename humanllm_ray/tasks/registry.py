"""The task registry: adding a task is one file in ``tasks/builders/``.

A builder is a function ``(user: UserTimeline, ctx: BuildContext) -> Iterable[Candidate]``
decorated with ``@register("name")``. Every module in ``tasks/builders/`` is imported on
first lookup, so a new file registers itself; ``tasks.tasks`` in the config selects which
builders run.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Callable, Dict, Iterable, List

from .common import BuildContext, Candidate, UserTimeline

Builder = Callable[[UserTimeline, BuildContext], Iterable[Candidate]]

_BUILDERS: Dict[str, Builder] = {}
_loaded = False


def register(name: str) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        if name in _BUILDERS and _BUILDERS[name] is not fn:
            raise ValueError(f"task {name!r} registered twice")
        _BUILDERS[name] = fn
        return fn

    return deco


def _load_builders() -> None:
    global _loaded
    if _loaded:
        return
    from . import builders

    for mod in pkgutil.iter_modules(builders.__path__):
        importlib.import_module(f"{builders.__name__}.{mod.name}")
    _loaded = True


def available() -> List[str]:
    _load_builders()
    return sorted(_BUILDERS)


def get_builder(name: str) -> Builder:
    _load_builders()
    if name not in _BUILDERS:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(sorted(_BUILDERS))}")
    return _BUILDERS[name]
