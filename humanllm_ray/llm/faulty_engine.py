"""``faulty``: wraps another engine and corrupts a share of its replies, deterministically.

For tests and drills of the retry / quarantine path on real runs: whether a reply is
corrupted, and how, is a pure function of the prompt's seed (:func:`fault_for_seed`), so a
retry with a new seed may recover, a rerun corrupts exactly the same items, and a test can
compute the expected outcome exactly. Enabled with ``synth.fault_rate`` / ``qc.fault_rate``;
the engine it wraps is ``synth.engine``.

Kinds of corruption, each mapping to one quarantine reason of the generation loop:

* ``truncate`` — the reply cut in half               -> ``unparsed_json``
* ``schema``   — valid JSON of the wrong shape        -> ``schema_invalid``
* ``error``    — no reply, an engine failure          -> ``engine_error``
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, List, Optional, Sequence

from .base import Engine, EngineFailure, Messages, get_engine_class, register_engine

FAULT_KINDS = ("truncate", "schema", "error")


def fault_for_seed(seed: int, rate: float, kinds: Sequence[str] = FAULT_KINDS) -> Optional[str]:
    """The corruption applied to the reply generated with ``seed``, or None."""
    digest = hashlib.sha256(f"humanllm-fault:{int(seed)}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u >= rate or not kinds:
        return None
    return kinds[digest[8] % len(kinds)]


def corrupt(reply: str, kind: str) -> str:
    if kind == "truncate":
        return reply[: len(reply) // 2] if len(reply) > 1 else "{"
    if kind == "schema":
        return json.dumps({"unexpected": "field"})
    if kind == "error":
        return EngineFailure("injected fault")
    raise ValueError(f"unknown fault kind {kind!r}; known: {FAULT_KINDS}")


@register_engine("faulty")
class FaultyEngine(Engine):
    def __init__(self, inner: Engine, rate: float, kinds: Sequence[str] = FAULT_KINDS):
        if not 0.0 <= rate <= 1.0:
            raise ValueError("fault rate must be in [0, 1]")
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {list(FAULT_KINDS)}")
        self.inner = inner
        self.rate = float(rate)
        self.kinds = tuple(kinds)
        self.injected = 0

    @classmethod
    def from_config(cls, cfg: Any) -> "FaultyEngine":
        inner = get_engine_class(cfg.synth.engine).from_config(cfg)
        return cls(inner, cfg.synth.fault_rate, cfg.synth.fault_kinds)

    @classmethod
    def identity(cls, cfg: Any, rate: Optional[float] = None) -> str:
        rate = cfg.synth.fault_rate if rate is None else rate
        inner = get_engine_class(cfg.synth.engine).identity(cfg)
        return f"faulty({rate},{','.join(cfg.synth.fault_kinds)})+{inner}"

    def describe(self) -> str:
        return f"faulty({self.rate})+{self.inner.describe()}"

    def close(self) -> None:
        self.inner.close()

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
        replies = self.inner.generate(
            prompts, schema=schema, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seeds=seeds
        )
        out = []
        for reply, seed in zip(replies, seeds):
            kind = fault_for_seed(seed, self.rate, self.kinds)
            if kind is not None and not isinstance(reply, EngineFailure):
                reply = corrupt(reply, kind)
                self.injected += 1
            out.append(reply)
        return out
