"""The pipeline is the composition of its stages, in order.

Each stage is a function ``run(cfg) -> report`` reading the previous stage's URI and
writing its own under ``run.root`` (DESIGN.md, "Run layout"); finished stages skip
themselves (their ``_SUCCESS`` matches), so running the pipeline again is a no-op and
a killed run resumes at the first unfinished stage.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

from . import storage
from .config import HumanLLMConfig
from .runtime import init_ray

log = logging.getLogger("humanllm")


@dataclass(frozen=True)
class Stage:
    name: str  # CLI subcommand
    module: str  # module holding run(cfg, ...)
    uses_ray: bool = True

    def load(self) -> Callable[..., dict]:
        return getattr(importlib.import_module(self.module), "run")


STAGES: List[Stage] = [
    Stage("ingest", "humanllm_ray.ingest"),
    Stage("curate", "humanllm_ray.curate"),
    Stage("synthesize", "humanllm_ray.synth"),
    Stage("qc", "humanllm_ray.synth.qc"),
    Stage("build-tasks", "humanllm_ray.tasks"),
    Stage("train", "humanllm_ray.train"),
    Stage("merge", "humanllm_ray.merge"),
    Stage("publish", "humanllm_ray.publish", uses_ray=False),
    Stage("evaluate", "humanllm_ray.evaluate", uses_ray=False),
]
STAGE_NAMES = [s.name for s in STAGES]


def get_stage(name: str) -> Stage:
    for s in STAGES:
        if s.name == name:
            return s
    raise KeyError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")


def run_stage(cfg: HumanLLMConfig, name: str) -> dict:
    stage = get_stage(name)
    storage.configure(cfg.s3)
    if stage.uses_ray:
        init_ray(cfg)
    return stage.load()(cfg)


def run_pipeline(
    cfg: HumanLLMConfig,
    stages: Optional[Sequence[str]] = None,
    on_stage_done: Optional[Callable[[str, dict], None]] = None,
) -> Dict[str, dict]:
    """Run the named stages (default: all, in order); returns {stage: report}."""
    storage.configure(cfg.s3)
    names = list(stages) if stages else STAGE_NAMES
    reports: Dict[str, dict] = {}
    for name in names:
        log.info("=== %s ===", name)
        report = run_stage(cfg, name)
        reports[name] = report
        if on_stage_done is not None:
            on_stage_done(name, report)
    return reports
