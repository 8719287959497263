"""``persona``: one third-person paragraph (<= 100 words) per user, from their posts.

Traits, values, interests and emotional tone, as in the paper's persona step. The prompt
shows up to ``synth.max_posts_per_persona`` of the user's posts (oldest first, within
``synth.max_prompt_chars``); QC later requires ``qc.min_posts_for_profile`` of them (both
from :class:`TimelineProduct`).
"""

from __future__ import annotations

from typing import Any, Dict

from ...llm.schema import object_schema, text_field
from . import TimelineProduct, register_product

PERSONA_MAX_CHARS = 700  # ~100 words of English


@register_product
class Persona(TimelineProduct):
    name = "persona"
    prompt_version = "persona.v1"
    grounded_rule = "is every trait, value, interest and tone it claims supported by the posts?"
    leakage_rule = "true if it copies whole sentences from the posts or names identifying details instead of summarizing."
    judge_checks_leakage = True

    def schema(self) -> Dict[str, Any]:
        return object_schema(
            {"persona": text_field(PERSONA_MAX_CHARS, "third-person paragraph, at most 100 words")},
            title="persona",
        )

    def prompt_values(self, cfg: Any) -> Dict[str, Any]:
        return {"max_chars": self.request_schema(cfg)["properties"]["persona"]["maxLength"]}
