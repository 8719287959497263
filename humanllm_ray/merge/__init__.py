"""Merge stage: combine the fine-tuned model with the base, streaming tensor by tensor.

The paper merges its SFT model with the base instruct model linearly (0.5/0.5) to keep
general ability; ``merge.method`` also offers task arithmetic, TIES and SLERP (one file
each under ``methods/``). Output: the stage folder ``{run.root}/merged`` with the model
in ``model/`` (Hugging Face layout, sharded safetensors + index when over
``merge.max_shard_bytes``), plus ``_report.json`` and ``_SUCCESS``.

    merge.models=[A, B]        default: [{run.root}/train/model, model.base]
                               ("sft" and "base" are accepted as names for those two)
    merge.weights=[0.5, 0.5]   merge.method=linear|task_arithmetic|ties|slerp

An entry of merge.models may be a peft LoRA adapter folder (adapter_config.json +
adapter_model.safetensors): it is folded into its base first (its recorded
base_model_name_or_path, else model.base), tensor by tensor as the shards are computed,
then merged as usual (see :mod:`humanllm_ray.merge.lora`).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import List, Optional

from .. import storage
from ..config import HumanLLMConfig
from ..runtime import RunPaths, init_ray
from ..stage import StageDir, StageResult, run_stage
from .engine import MergePlan, MergeSummary, execute_plan, merge_models, plan_merge
from .lora import fold_lora, is_adapter_dir
from .registry import MergeMethod, available_methods, get_method, register
from .sources import MergeError, source_fingerprint

__all__ = [
    "run",
    "merge_models",
    "plan_merge",
    "execute_plan",
    "MergeError",
    "MergePlan",
    "MergeSummary",
    "MergeMethod",
    "register",
    "get_method",
    "available_methods",
    "resolve_models",
    "fold_lora",
]

log = logging.getLogger("humanllm")

MODEL_SUBDIR = "model"


def trained_model_uri(cfg: HumanLLMConfig) -> str:
    return storage.join(RunPaths.from_config(cfg).train, MODEL_SUBDIR)


def _resolve_name(cfg: HumanLLMConfig, ref: str) -> str:
    from ..model import ensure_base_model

    if ref == "base":
        return ensure_base_model(cfg)
    if ref in ("sft", "train"):
        return trained_model_uri(cfg)
    return storage.normalize(ref)


def resolve_models(cfg: HumanLLMConfig) -> List[str]:
    """merge.models as URIs; the default is [trained model, base model] (the paper's pair)."""
    refs = list(cfg.merge.models) or ["sft", "base"]
    return [_resolve_name(cfg, ref) for ref in refs]


def run(cfg: HumanLLMConfig, output_uri: Optional[str] = None) -> dict:
    """Run the merge stage; returns its report. Raises MergeError before writing anything
    when the inputs do not fit together (architecture, shapes, vocab, missing tensors)."""
    from ..model import ensure_base_model

    storage.configure(cfg.s3)
    paths = RunPaths.from_config(cfg)
    out_uri = storage.normalize(output_uri or cfg.merge.output or paths.merged)
    models = resolve_models(cfg)
    method = get_method(cfg.merge.method)
    base = _resolve_name(cfg, cfg.merge.base_model or "base") if method.needs_base else None
    for uri in models + ([base] if base else []):
        if not storage.exists(storage.join(uri, "config.json")) and not is_adapter_dir(uri):
            hint = " (run the train stage first)" if uri == trained_model_uri(cfg) else ""
            raise MergeError(f"merge input {uri} is not a model folder (no config.json) nor a LoRA adapter folder{hint}")

    # Validate and plan before run_stage touches the output folder: a bad input must leave
    # no trace (not even an empty stage folder).
    plan = plan_merge(
        models,
        method=cfg.merge.method,
        weights=cfg.merge.weights,
        base=base,
        params=asdict(cfg.merge),
        max_shard_bytes=cfg.merge.max_shard_bytes,
        dtype=cfg.merge.dtype,
        cache_dir=cfg.model.cache_dir,
        lora_base=lambda: ensure_base_model(cfg),  # only for adapters whose recorded base is not here
    )
    use_ray = cfg.merge.use_ray and len(plan.shards) > 1
    if use_ray:
        init_ray(cfg)

    # LoRA inputs fold into a base: its files are inputs of the stage too.
    lora_bases = [s.lora.base_uri for s in plan.inputs + ([plan.base] if plan.base else []) if s.lora is not None]
    fingerprint = {
        "merge": {k: v for k, v in asdict(cfg.merge).items() if k not in ("output", "use_ray", "num_cpus_per_shard")},
        "models": {uri: source_fingerprint(uri) for uri in dict.fromkeys(models + ([base] if base else []) + lora_bases)},
    }
    upstream = [paths.train] if trained_model_uri(cfg) in models and storage.exists(paths.train) else []

    def body(stage_dir: StageDir) -> StageResult:
        model_uri = stage_dir.path(MODEL_SUBDIR)
        summary = execute_plan(
            plan,
            model_uri,
            s3_cfg=cfg.s3,
            use_ray=use_ray,
            num_cpus_per_shard=cfg.merge.num_cpus_per_shard,
            models=models,
        )
        log.info(
            "merge: %s of %d models -> %s (%d tensors, %d shard(s), %.1f MB)",
            summary.method,
            len(models),
            model_uri,
            summary.tensors,
            summary.shards,
            summary.bytes / 1e6,
        )
        return StageResult(
            rows_in=plan.num_tensors,
            rows_out=summary.tensors,
            extra={
                "method": summary.method,
                "weights": summary.weights,
                "models": summary.models,
                "base_model": summary.base,
                "params": summary.params,
                "shards": summary.shards,
                "bytes": summary.bytes,
                "model_uri": summary.model_uri,
            },
        )

    return run_stage("merge", out_uri, body, fingerprint=fingerprint, inputs=upstream)
