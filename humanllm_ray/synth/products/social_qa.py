"""``social_qa``: ``{aspect, scenario, question, answer}`` from one post.

The question asks about an action, emotion or thought of the author that the scenario does
not state; the answer is what the post says they did, felt or thought. ``aspect`` (action |
emotion | thought) makes the model commit to what it asks about before writing, and lets
the task builders balance the three. Up to ``synth.max_posts_per_user`` posts per user are
used, spread evenly over the user's timeline (posts of ``synth.min_post_chars`` or more).
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Tuple

from ...llm.schema import object_schema, text_field
from ..budget import PromptBudget, fit_text
from . import Product, ProductRequest, qualified_posts, register_product, render_record

ASPECTS = ["action", "emotion", "thought"]


def spread(items: List[Any], k: int) -> List[Any]:
    """k items evenly spaced over the list (all of them when k >= len)."""
    if k >= len(items):
        return list(items)
    if k <= 0:
        return []
    step = len(items) / k
    return [items[int(i * step)] for i in range(k)]


def _normalize(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


@register_product
class SocialQA(Product):
    name = "social_qa"
    prompt_version = "social_qa.v1"
    grounded_rule = "does the post support the answer, and does the scenario match the situation in the post?"
    leakage_rule = "true if the scenario or the question already states or clearly implies the answer."
    judge_checks_leakage = True

    def schema(self) -> Dict[str, Any]:
        return object_schema(
            {
                "aspect": {"type": "string", "enum": ASPECTS},
                "scenario": text_field(600, "third-person situation, without the answer"),
                "question": text_field(200, "about the author's action, emotion or thought"),
                "answer": text_field(400, "what the author did, felt or thought, per the post"),
            },
            title="social_qa",
        )

    def requests(self, timeline: Dict[str, Any], cfg: Any, budget: PromptBudget) -> List[ProductRequest]:
        posts = qualified_posts(timeline["records"], cfg.synth.min_post_chars)
        out = []
        for rec in spread(posts, cfg.synth.max_posts_per_user):
            text = render_record(rec, cfg.synth.max_chars_per_post)
            text, messages = fit_text(text, lambda t: self.prompt.render(platform=timeline["platform"], post=t), budget)
            out.append(ProductRequest(f"{timeline['user_id']}:social_qa:{rec['record_id']}", [rec], text, messages))
        return out

    def render_for_judge(self, payload: Dict[str, Any]) -> str:
        return (
            f"Scenario: {payload.get('scenario', '')}\n"
            f"Question (about the user's {payload.get('aspect', '?')}): {payload.get('question', '')}\n"
            f"Answer: {payload.get('answer', '')}"
        )

    def rule_violations(self, payload: Dict[str, Any], row: Dict[str, Any], qc: Any) -> List[Tuple[str, str]]:
        out = super().rule_violations(payload, row, qc)
        # A cheap leakage check the judge cannot miss: the answer written into the scenario.
        answer = _normalize(payload.get("answer", ""))
        if len(answer.split()) >= 3 and answer in _normalize(payload.get("scenario", "") + " " + payload.get("question", "")):
            out.append(("rule_answer_in_scenario", "the answer appears verbatim in the scenario or question"))
        return out
