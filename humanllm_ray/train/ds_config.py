"""DeepSpeed configs: JSON files in ``conf/deepspeed/`` with ``"auto"`` placeholders filled
from :class:`TrainConfig` (the Hugging Face convention, so the same files work there).

``train.deepspeed_config`` (a path or URI) replaces the packaged file. Only values written
as ``"auto"`` are filled; anything spelled out in the file wins. An ``"auto"`` left with no
value fails loudly, naming the key.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Dict

from .. import storage
from ..config import CONF_DIR, TrainConfig

DEEPSPEED_CONF_DIR = CONF_DIR / "deepspeed"
AUTO = "auto"


def config_file(tcfg: TrainConfig) -> str:
    """The DeepSpeed JSON to use: the override, else zero{stage}[_offload].json.

    Stages 0 and 1 have no file of their own: they reuse zero2's settings with the stage
    replaced (see :func:`build_deepspeed_config`).
    """
    if tcfg.deepspeed_config:
        return tcfg.deepspeed_config
    stage = tcfg.zero_stage if tcfg.zero_stage in (2, 3) else 2
    suffix = "_offload" if tcfg.offload else ""
    return str(DEEPSPEED_CONF_DIR / f"zero{stage}{suffix}.json")


def load_raw(tcfg: TrainConfig) -> Dict[str, Any]:
    raw = json.loads(storage.read_text(config_file(tcfg)))
    if not tcfg.deepspeed_config and tcfg.zero_stage in (0, 1):
        raw.setdefault("zero_optimization", {})["stage"] = tcfg.zero_stage
    return raw


def auto_values(tcfg: TrainConfig, *, world_size: int, hidden_size: int) -> Dict[str, Any]:
    """Dotted config key -> value for every placeholder we know how to fill."""
    return {
        "train_micro_batch_size_per_gpu": tcfg.micro_batch_size,
        "gradient_accumulation_steps": tcfg.gradient_accumulation_steps,
        "train_batch_size": tcfg.micro_batch_size * tcfg.gradient_accumulation_steps * world_size,
        "gradient_clipping": tcfg.gradient_clipping,
        "bf16.enabled": bool(tcfg.bf16),
        "fp16.enabled": False,
        "optimizer.params.lr": tcfg.learning_rate,
        "optimizer.params.weight_decay": tcfg.weight_decay,
        # Bucket sizes scale with the model width (the values Hugging Face's integration uses).
        "zero_optimization.reduce_bucket_size": hidden_size * hidden_size,
        "zero_optimization.stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
        "zero_optimization.stage3_param_persistence_threshold": 10 * hidden_size,
    }


def _fill(node: Any, values: Dict[str, Any], path: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _fill(v, values, f"{path}.{k}" if path else k) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, values, path) for v in node]
    if node == AUTO:
        if path not in values:
            raise ValueError(f"DeepSpeed config: no value for \"auto\" at {path!r}")
        return values[path]
    return node


def build_deepspeed_config(tcfg: TrainConfig, *, world_size: int, hidden_size: int) -> Dict[str, Any]:
    """The effective DeepSpeed config dict for this run."""
    return _fill(copy.deepcopy(load_raw(tcfg)), auto_values(tcfg, world_size=world_size, hidden_size=hidden_size))


def zero_stage_of(ds_config: Dict[str, Any]) -> int:
    return int(ds_config.get("zero_optimization", {}).get("stage", 0))


def has_own_optimizer(ds_config: Dict[str, Any]) -> bool:
    """Offload configs name DeepSpeed's optimizer (CPU Adam); the others take a torch AdamW."""
    return "optimizer" in ds_config
