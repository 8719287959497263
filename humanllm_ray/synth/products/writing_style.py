"""``writing_style``: how a user writes, in one third-person paragraph (<= 100 words).

Length, structure, tone, vocabulary, punctuation and habits of the user's writing, as the
paper's writing-style description; the ``writing_imitation`` task shows it beside the
user's past posts when it exists. Unlike the persona it describes *how* the user writes,
not who they are, so the prompt shows the posts' own text (cut to
``synth.max_chars_per_post`` like every prompt).

Bounds: the published schema allows 700 characters (~100 words); fitted to
``synth.max_new_tokens`` x ``synth.chars_per_token`` a real model at 1024 x 1.0 gets all of
it, the embedded tiny model (96 x 1.0) ~80 characters.
"""

from __future__ import annotations

from typing import Any, Dict

from ...llm.schema import object_schema, text_field
from . import TimelineProduct, register_product, word_bounds

STYLE_MAX_CHARS = 700  # ~100 words of English
STYLE_MAX_WORDS = 100


@register_product
class WritingStyle(TimelineProduct):
    name = "writing_style"
    prompt_version = "writing_style.v1"
    grounded_rule = "does it describe how the posts are actually written (length, structure, tone, vocabulary, punctuation)?"
    leakage_rule = "true if it quotes whole sentences from the posts or names identifying details instead of describing the style."
    judge_checks_leakage = True

    def schema(self) -> Dict[str, Any]:
        return object_schema(
            {"style": text_field(STYLE_MAX_CHARS, "third-person description of how the user writes, at most 100 words")},
            title="writing_style",
        )

    def prompt_values(self, cfg: Any) -> Dict[str, Any]:
        _, hi = word_bounds(self, cfg, STYLE_MAX_WORDS)
        return {"max_words": hi, "max_chars": self.request_schema(cfg)["properties"]["style"]["maxLength"]}
