"""LLM synthesis (post tags, persona, profile, life stories, social QA, writing style) and
its quality control (rules + LLM judge).

``synth.run(cfg)`` and ``synth.qc.run(cfg)`` are the two stages; products live in
:mod:`.products`, the shared request machinery (actor pool, retries, cache) in
:mod:`.generation`.
"""

from __future__ import annotations

from typing import Any, Dict, Optional


def run(cfg: Any, input_uri: Optional[str] = None, output_uri: Optional[str] = None) -> Dict[str, Any]:
    """The synth stage (see :mod:`.synthesize`)."""
    from .synthesize import run as _run

    return _run(cfg, input_uri, output_uri)


def run_qc(cfg: Any, input_uri: Optional[str] = None, output_uri: Optional[str] = None) -> Dict[str, Any]:
    """The qc stage (see :mod:`.qc`)."""
    from .qc import run as _run

    return _run(cfg, input_uri, output_uri)
