"""LLM engines behind one interface (see :mod:`.base`): ``hf``, ``vllm``, ``openai``, ``faulty``.

Stages build their engine with :func:`build_engine` (from the config, optionally wrapped
in the fault injector) and name it in cache keys with :func:`engine_identity`.
"""

from __future__ import annotations

from typing import Any, Optional

from .base import (
    Engine,
    EngineFailure,
    EngineUnavailable,
    Messages,
    available_engines,
    get_engine_class,
    register_engine,
)


def build_engine(cfg: Any, fault_rate: Optional[float] = None) -> Engine:
    """The engine named by ``cfg.synth.engine``; wrapped in ``faulty`` when fault_rate > 0.

    ``fault_rate`` defaults to ``cfg.synth.fault_rate``; QC passes ``cfg.qc.fault_rate``.
    """
    rate = cfg.synth.fault_rate if fault_rate is None else fault_rate
    engine = get_engine_class(cfg.synth.engine).from_config(cfg)
    if rate and rate > 0:
        from .faulty_engine import FaultyEngine

        engine = FaultyEngine(engine, rate, cfg.synth.fault_kinds)
    return engine


def engine_identity(cfg: Any, fault_rate: Optional[float] = None) -> str:
    """Stable name of engine + model (+ fault injection), without loading anything."""
    rate = cfg.synth.fault_rate if fault_rate is None else fault_rate
    if rate and rate > 0:
        from .faulty_engine import FaultyEngine

        return FaultyEngine.identity(cfg, rate)
    return get_engine_class(cfg.synth.engine).identity(cfg)


__all__ = [
    "Engine",
    "EngineFailure",
    "EngineUnavailable",
    "Messages",
    "available_engines",
    "build_engine",
    "engine_identity",
    "get_engine_class",
    "register_engine",
]
