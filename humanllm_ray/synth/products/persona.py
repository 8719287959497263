"""``persona``: one third-person paragraph (<= 100 words) per user, from their posts.

Traits, values, interests and emotional tone, as in the paper's persona step. The prompt
shows up to ``synth.max_posts_per_persona`` of the user's posts (oldest first, within
``synth.max_prompt_chars``); QC later requires ``qc.min_posts_for_profile`` of them.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from ...llm.schema import object_schema, text_field
from ..budget import PromptBudget, fit_text, largest_fitting
from . import Product, ProductRequest, register_product, render_records

PERSONA_MAX_CHARS = 700  # ~100 words of English


@register_product
class Persona(Product):
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

    def requests(self, timeline: Dict[str, Any], cfg: Any, budget: PromptBudget) -> List[ProductRequest]:
        records = [r for r in timeline["records"] if (r.get("text") or "").strip()]
        records = records[: cfg.synth.max_posts_per_persona]
        if not records:
            return []
        max_chars = self.request_schema(cfg)["properties"]["persona"]["maxLength"]

        def build(text: str, n_posts: int):
            return self.prompt.render(n_posts=n_posts, platform=timeline["platform"], posts=text, max_chars=max_chars)

        def shown(k: int):
            text, recs = render_records(records[:k], cfg.synth.max_chars_per_post, budget.max_source_chars)
            return text, recs, build(text, len(recs))

        # As many posts as fit the model's context; if not even one does, cut that one.
        k = largest_fitting(len(records), lambda k: budget.fits(shown(k)[2]))
        if k > 0:
            text, recs, messages = shown(k)
        else:
            text, recs, _ = shown(1)
            text, messages = fit_text(text, lambda t: build(t, 1), budget)
        return [ProductRequest(f"{timeline['user_id']}:persona", recs, text, messages)]

    def rule_violations(self, payload: Dict[str, Any], row: Dict[str, Any], qc: Any) -> List[Tuple[str, str]]:
        out = super().rule_violations(payload, row, qc)
        n_posts = len(row.get("source_record_ids") or [])
        if n_posts < qc.min_posts_for_profile:
            out.append(("rule_too_few_posts", f"{n_posts} source posts < {qc.min_posts_for_profile}"))
        return out
