"""``hf``: transformers ``generate`` with xgrammar JSON-schema constraints (CPU or GPU).

The embedded default engine. Prompts are rendered with the model's chat template,
left-padded into one batch and decoded together. Sampling is done by
:class:`SeededSampler`, a logits processor that draws each row's token with that row's own
``torch.Generator`` (Gumbel-max over temperature-scaled, top-p-filtered logits), so a reply
depends on its own seed and not on which other prompts share the batch — which is what
makes per-item retries with a new seed and the request cache meaningful.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional

from .base import Engine, EngineFailure, Messages, register_engine
from .schema import SEPARATORS, grammar_schema, schema_hash

log = logging.getLogger("humanllm")


def _sampler_class():
    import torch
    from transformers import LogitsProcessor

    class SeededSampler(LogitsProcessor):
        """Turn greedy decoding into per-row seeded sampling.

        Applied after the grammar mask (disallowed tokens are already -inf, and stay so).
        With temperature 0 it leaves the scores alone: plain greedy decoding.
        """

        def __init__(self, seeds: List[int], temperature: float, top_p: float, device):
            self.temperature = float(temperature)
            self.top_p = float(top_p)
            self.generators = []
            for s in seeds:
                g = torch.Generator(device=device)
                g.manual_seed(int(s) & 0x7FFF_FFFF_FFFF_FFFF)
                self.generators.append(g)

        def __call__(self, input_ids, scores):
            if self.temperature <= 0:
                return scores
            scores = scores.float() / self.temperature
            if self.top_p < 1.0:
                sorted_scores, order = torch.sort(scores, descending=True, dim=-1)
                cum = torch.softmax(sorted_scores, dim=-1).cumsum(dim=-1)
                # Drop tokens once the mass *before* them already reaches top_p (keeps >= 1).
                drop_sorted = (cum - torch.softmax(sorted_scores, dim=-1)) >= self.top_p
                drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
                scores = scores.masked_fill(drop, float("-inf"))
            noise = torch.empty_like(scores)
            for i, g in enumerate(self.generators):
                u = torch.rand(scores.shape[-1], generator=g, device=scores.device, dtype=scores.dtype)
                noise[i] = -torch.log(-torch.log(u.clamp_(1e-10, 1.0 - 1e-7)))
            return scores + noise  # argmax of (logits/T + Gumbel) is a sample from softmax(logits/T)

    return SeededSampler


@register_engine("hf")
class HFEngine(Engine):
    def __init__(
        self,
        model_dir: str,
        *,
        dtype: str = "float32",
        device: Optional[str] = None,
        torch_threads: Optional[int] = None,
        max_batch_size: int = 16,
    ):
        import torch

        from ..model import load_model, load_tokenizer

        if torch_threads:
            # Ray sets OMP_NUM_THREADS=1 in workers; honour what the pool was sized for.
            torch.set_num_threads(int(torch_threads))
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model_dir = model_dir
        self.tokenizer = load_tokenizer(model_dir)
        self.tokenizer.padding_side = "left"
        self.model = load_model(model_dir, dtype)
        self.model.to(self.device)
        self.model.eval()
        self.max_batch_size = max(1, int(max_batch_size))
        self.max_positions = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        # Stop on every end token the model's generation config names, and the tokenizer's;
        # the grammar uses the same set, so a finished JSON reply ends generation at once.
        eos = self.model.generation_config.eos_token_id
        eos = [eos] if isinstance(eos, int) else list(eos or [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in eos:
            eos.append(self.tokenizer.eos_token_id)
        self.eos_token_ids = eos
        self._grammars: Dict[str, Any] = {}
        self._compiler = None
        self._sampler_cls = _sampler_class()

    # -- construction --------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg: Any) -> "HFEngine":
        from ..model import ensure_base_model

        # Torch threads are set by whoever hosts the engine (the Ray actor knows its CPU share).
        return cls(ensure_base_model(cfg), dtype=cfg.model.dtype, max_batch_size=cfg.synth.hf_max_batch_size)

    @classmethod
    def identity(cls, cfg: Any) -> str:
        from ..model import tiny_model_dir

        model = os.path.basename(tiny_model_dir(cfg)) if cfg.model.base == "tiny" else cfg.model.base
        return f"hf:{model}:{cfg.model.dtype}"

    def describe(self) -> str:
        return f"hf:{os.path.basename(self.model_dir.rstrip('/'))}@{self.device}"

    def close(self) -> None:
        """Drop the model and compiled grammars; on a GPU also return the cached memory.

        There are no processes or threads to stop (generate runs in the caller's thread)."""
        self.model = None
        self._grammars = {}
        self._compiler = None
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()

    # -- grammar -------------------------------------------------------------------------
    def _grammar(self, schema: dict):
        key = schema_hash(schema)
        compiled = self._grammars.get(key)
        if compiled is None:
            import xgrammar

            if self._compiler is None:
                info = xgrammar.TokenizerInfo.from_huggingface(
                    self.tokenizer, vocab_size=self.model.config.vocab_size, stop_token_ids=self.eos_token_ids
                )
                self._compiler = xgrammar.GrammarCompiler(info)
            compiled = self._compiler.compile_json_schema(
                grammar_schema(schema), any_whitespace=False, separators=SEPARATORS
            )
            self._grammars[key] = compiled
        return compiled

    # -- generation ----------------------------------------------------------------------
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
        if len(seeds) != len(prompts):
            raise ValueError("one seed per prompt")
        replies: List[str] = [EngineFailure("not generated")] * len(prompts)
        texts = [self.tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
        runnable = []
        for i, text in enumerate(texts):
            n = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
            if self.max_positions and n + max_new_tokens > self.max_positions:
                replies[i] = EngineFailure(
                    f"prompt of {n} tokens + {max_new_tokens} new exceeds the model's {self.max_positions} positions"
                )
            else:
                runnable.append(i)
        for start in range(0, len(runnable), self.max_batch_size):
            idx = runnable[start : start + self.max_batch_size]
            outs = self._generate_batch(
                [texts[i] for i in idx], [seeds[i] for i in idx], schema, max_new_tokens, temperature, top_p
            )
            for i, out in zip(idx, outs):
                replies[i] = out
        return replies

    def _generate_batch(self, texts, seeds, schema, max_new_tokens, temperature, top_p) -> List[str]:
        import torch

        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        processors = []
        if schema is not None:
            import xgrammar.contrib.hf as xgr_hf

            # A fresh processor per call: it holds per-row matcher state.
            processors.append(xgr_hf.LogitsProcessor(self._grammar(schema)))
        processors.append(self._sampler_cls(seeds, temperature, top_p, self.device))
        with torch.inference_mode():
            out = self.model.generate(
                **enc,
                max_new_tokens=int(max_new_tokens),
                do_sample=False,  # SeededSampler does the sampling (per-row seeds)
                logits_processor=processors,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.eos_token_ids,
            )
        new_tokens = out[:, enc["input_ids"].shape[1] :]
        return self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
