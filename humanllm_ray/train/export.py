"""Export the trained weights as a plain Hugging Face model folder (safetensors).

Under ZeRO-3 no rank holds whole parameters, so every rank takes part in gathering them
(``_zero3_consolidated_16bit_state_dict``, which needs
``stage3_gather_16bit_weights_on_model_save``) and rank 0 receives the full dict. Under
ZeRO-0/1/2 each rank has the whole module. Rank 0 then loads the dict into a fresh copy of
the base architecture (with the LoRA wrapper when training used one, folded back with
``merge_and_unload``), so the export is an ordinary model any transformers can load.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from typing import Any, Dict, Optional

from .. import storage

log = logging.getLogger("humanllm")

# Parameters a model may legitimately lack in its state dict (tied to another one).
_TIED_SUFFIXES = ("lm_head.weight",)


def gather_state_dict(engine) -> Optional[Dict[str, Any]]:
    """The full state dict on rank 0 (None elsewhere). Collective under ZeRO-3: call on all ranks."""
    import torch.distributed as dist

    if engine.zero_optimization_partition_weights():
        state = engine._zero3_consolidated_16bit_state_dict()
        return state if dist.get_rank() == 0 else None
    if dist.get_rank() != 0:
        return None
    return {k: v.detach().clone() for k, v in engine.module.state_dict().items()}


def lora_wrap(model, lora_cfg):
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    config = PeftLoraConfig(
        r=lora_cfg.r,
        lora_alpha=lora_cfg.alpha,
        lora_dropout=lora_cfg.dropout,
        target_modules=list(lora_cfg.target_modules),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def export_hf_model(
    state_dict: Dict[str, Any], *, base_model_dir: str, dest_uri: str, lora_cfg=None, dtype: str = "float32"
) -> str:
    """Write base architecture + trained weights (+ base tokenizer, generation config) to dest_uri."""
    from ..model import load_model, load_tokenizer, torch_dtype

    model = load_model(base_model_dir, "float32")
    if lora_cfg is not None and lora_cfg.enabled:
        model = lora_wrap(model, lora_cfg)
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    missing = [k for k in missing if not k.endswith(_TIED_SUFFIXES)]
    if missing or unexpected:
        raise RuntimeError(f"trained state dict does not fit the base model: missing={missing[:5]} unexpected={unexpected[:5]}")
    if lora_cfg is not None and lora_cfg.enabled:
        model = model.merge_and_unload()
    model = model.to(torch_dtype(dtype))
    tmp = tempfile.mkdtemp(prefix="humanllm-export-")
    try:
        model.save_pretrained(tmp, safe_serialization=True)  # also writes generation_config.json
        load_tokenizer(base_model_dir).save_pretrained(tmp)
        if storage.exists(dest_uri):
            storage.rm(dest_uri)
        storage.put_dir(tmp, dest_uri)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported trained model (%d tensors) to %s", len(state_dict), dest_uri)
    return dest_uri
