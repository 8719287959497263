"""Prompt budgets: build prompts that fit the model's context, measured in its own tokens.

A prompt that does not fit ``max_position_embeddings - max_new_tokens`` cannot be answered
(the engine returns ``engine_error``). Character limits alone cannot prevent that: the
same 3000 characters are ~750 tokens for a tokenizer trained on English and ~3000 for a
byte-level one. So when the engine runs a local model (``hf``, ``vllm``) prompts are
measured with that model's tokenizer and chat template, and products drop or cut source
posts until the prompt fits; the ``source_text`` a row records is what the prompt showed.
For ``openai`` (a remote model of unknown size) only the character limits apply.
"""

from __future__ import annotations

import functools
import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

log = logging.getLogger("humanllm")

Messages = List[Dict[str, str]]
MARGIN_TOKENS = 8  # slack for special tokens the template adds at generation time


@functools.lru_cache(maxsize=4)
def _tokenizer_and_positions(model_dir: str) -> Tuple[Any, int]:
    import json
    import os

    from ..model import load_tokenizer

    tok = load_tokenizer(model_dir)
    with open(os.path.join(model_dir, "config.json")) as fh:
        positions = int(json.load(fh).get("max_position_embeddings") or 0)
    return tok, positions


class PromptBudget:
    """Whether a chat prompt fits: characters of source text, and tokens when a tokenizer is known."""

    def __init__(self, max_source_chars: int, tokenizer: Any = None, max_prompt_tokens: Optional[int] = None):
        self.max_source_chars = int(max_source_chars)
        self.tokenizer = tokenizer
        self.max_prompt_tokens = max_prompt_tokens

    @classmethod
    def for_config(cls, cfg: Any, max_new_tokens: int, max_source_chars: int) -> "PromptBudget":
        if cfg.synth.engine not in ("hf", "vllm"):
            return cls(max_source_chars)
        from ..model import ensure_base_model

        tok, positions = _tokenizer_and_positions(ensure_base_model(cfg))
        if positions <= 0:
            return cls(max_source_chars)
        return cls(max_source_chars, tok, positions - int(max_new_tokens) - MARGIN_TOKENS)

    def prompt_tokens(self, messages: Messages) -> Optional[int]:
        if self.tokenizer is None:
            return None
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def fits(self, messages: Messages) -> bool:
        n = self.prompt_tokens(messages)
        return n is None or n <= self.max_prompt_tokens


def cut_text(text: str, max_chars: int) -> str:
    """text cut at a word boundary to at most max_chars (marked with ' ...')."""
    if len(text) <= max_chars:
        return text
    return text[: max(0, max_chars - 4)].rsplit(" ", 1)[0] + " ..."


def largest_fitting(n: int, fits: Callable[[int], bool]) -> int:
    """The largest k in 1..n with fits(k) (fits is monotone: more is bigger); 0 if none."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def fit_text(text: str, build: Callable[[str], Messages], budget: PromptBudget, min_chars: int = 40) -> Tuple[str, Messages]:
    """Cut ``text`` (within budget.max_source_chars) until ``build(text)`` fits; returns both.

    If even ``min_chars`` does not fit, the shortest version is returned anyway: the engine
    then reports ``engine_error`` for it, which quarantines the item with that reason.
    """
    text = cut_text(text, budget.max_source_chars)
    messages = build(text)
    if budget.fits(messages):
        return text, messages
    floor = min(min_chars, len(text))
    n = largest_fitting(len(text) - floor, lambda k: budget.fits(build(cut_text(text, floor + k))))
    text = cut_text(text, floor + n)
    return text, build(text)
