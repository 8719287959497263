"""The engine interface and its registry.

An engine turns a batch of chat prompts (lists of ``{"role", "content"}`` messages) into a
batch of reply texts, optionally constrained to a JSON schema. Engines know nothing about
products, retries or caching: the caller (``synth.generation``) parses, validates and
retries, so every backend gets the same quality control.

Adding an engine is one file in this package named ``*_engine.py`` that subclasses
:class:`Engine` and decorates it with ``@register_engine("name")``; the package imports
every such module on first use.
"""

from __future__ import annotations

import abc
import importlib
import logging
import pkgutil
from typing import Any, Dict, List, Optional, Type

log = logging.getLogger("humanllm")

Messages = List[Dict[str, str]]


class EngineUnavailable(RuntimeError):
    """The engine's backend is not installed or not reachable (a setup problem, not a bad reply)."""


class EngineFailure(str):
    """A per-prompt failure inside an otherwise successful batch.

    It *is* a ``str`` (empty), so ``generate`` still returns ``list[str]`` and a caller that
    ignores failures merely sees an unparseable reply; callers that care check
    ``isinstance(reply, EngineFailure)`` and read ``.error``. The generation loop turns it
    into the ``engine_error`` quarantine reason and does not cache it (errors are transient).
    """

    error: str

    def __new__(cls, error: str) -> "EngineFailure":
        obj = super().__new__(cls, "")
        obj.error = str(error)
        return obj

    def __repr__(self) -> str:
        return f"EngineFailure({self.error!r})"

    def __reduce__(self):  # survive pickling across Ray processes with the message intact
        return (EngineFailure, (self.error,))


class Engine(abc.ABC):
    """One backend. Subclasses implement :meth:`generate` and :meth:`from_config`."""

    name: str = "?"

    @abc.abstractmethod
    def generate(
        self,
        prompts: List[Messages],
        *,
        schema: Optional[dict],
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        seeds: List[int],
    ) -> List[str]:
        """One reply per prompt, in order. ``seeds[i]`` seeds prompt i's sampling.

        A failure that concerns one prompt is returned in its slot as an
        :class:`EngineFailure`; an exception means the whole call failed.
        """

    @classmethod
    @abc.abstractmethod
    def from_config(cls, cfg: Any) -> "Engine":
        """Build the engine from the full HumanLLMConfig (called once per Ray actor)."""

    @classmethod
    @abc.abstractmethod
    def identity(cls, cfg: Any) -> str:
        """A stable string naming engine + model, without loading anything.

        It enters request-cache keys, so two configs that would produce different replies
        must have different identities.
        """

    def describe(self) -> str:
        return self.name

    def close(self) -> None:
        """Release backend resources (threads, GPU memory); optional."""


_REGISTRY: Dict[str, Type[Engine]] = {}
_DISCOVERED = False


def register_engine(name: str):
    """Class decorator: make an Engine subclass available as ``synth.engine=name``."""

    def deco(cls: Type[Engine]) -> Type[Engine]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"engine {name!r} registered twice ({_REGISTRY[name].__module__}, {cls.__module__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _discover() -> None:
    """Import every ``*_engine`` module of this package once (they register themselves).

    Engine modules import their heavy dependencies (torch, vllm, requests) lazily, so
    discovery is cheap and a missing optional backend only fails when it is used.
    """
    global _DISCOVERED
    if _DISCOVERED:
        return
    package = importlib.import_module(__package__)
    for mod in pkgutil.iter_modules(package.__path__):
        if mod.name.endswith("_engine"):
            importlib.import_module(f"{__package__}.{mod.name}")
    _DISCOVERED = True


def get_engine_class(name: str) -> Type[Engine]:
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; registered: {sorted(_REGISTRY)}") from None


def available_engines() -> List[str]:
    _discover()
    return sorted(_REGISTRY)
