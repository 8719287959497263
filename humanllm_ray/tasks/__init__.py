"""The six SFT tasks of HumanLLM (DESIGN.md §1) built from curated timelines and QC'd synthesis.

``run(cfg, curated_uri=None, qc_uri=None, output_uri=None)`` is the stage; builders live
one per file in ``builders/`` and register themselves (see ``registry.py``).
"""

from .build import EXAMPLE_SCHEMA
from .registry import available, get_builder, register
from .stage import SPLITS, run

__all__ = ["EXAMPLE_SCHEMA", "SPLITS", "available", "get_builder", "register", "run"]
