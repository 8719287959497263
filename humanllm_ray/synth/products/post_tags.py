"""``post_tags``: ``{reason, quality: 1-5, harmless}`` for every qualified post.

The paper tags each post's quality (high / medium / low) and harmlessness and keeps the
medium/high, harmless ones. Here quality is 1-5 (1-2 low, 3 medium, 4-5 high; see
:func:`keep`), ``reason`` comes first so the scores follow a rationale, as in the judge.
Every post of ``synth.min_post_chars`` or more in the user's first timeline chunk is tagged
(curate bounds a chunk by ``curate.timeline_max_tokens``; ``synth.max_tagged_posts_per_user``
caps it, as the embedded demo default does), one request per post; the item id
is ``{user}:post_tags:{record_id}``.

QC: a tag is itself a judgement of its post, so QC applies only the rule checks (schema,
no raw names in ``reason``, word bounds) and does not send it to the judge
(``judged = False``): a second LLM call per post would double the most numerous product's
cost for little. A tag that calls its post harmful is a valid tag, not a harmful item.

Downstream: the tasks stage filters on them (``tasks.min_post_quality``,
``tasks.reject_harmful_posts``, ``tasks.enforce_post_tags``; tasks/common.PostFilter, the
same rule as :func:`keep` at its default threshold): examples built from a post tagged low
or harmful are quarantined there (``post_low_quality`` / ``post_harmful``), such posts are
left out of prompt histories, untagged posts are kept. By default this is enforced unless
the tagger is the untrained tiny model, whose tags are noise (as ``qc.enforce_judge``).
Synthesis itself runs every product in one pass, so it still spends social QA requests on
posts that tasks later drops (skipping them would need a second pass, tags first).

Bounds: ``reason`` is at most 160 characters (~25 words); the embedded tiny model (96
tokens x 1.0) gets ~50 characters of it, the integer and the boolean always fit.
"""

from __future__ import annotations

from typing import Any, Dict, List

from ...llm.schema import object_schema, text_field
from ..budget import PromptBudget, fit_text
from . import Product, ProductRequest, qualified_posts, register_product, render_record

KEEP_MIN_QUALITY = 3  # medium or high, as the paper keeps


def keep(payload: Dict[str, Any]) -> bool:
    """The paper's filter: a post tagged medium/high quality and harmless is kept."""
    return int(payload.get("quality") or 0) >= KEEP_MIN_QUALITY and payload.get("harmless") is True


@register_product
class PostTags(Product):
    name = "post_tags"
    prompt_version = "post_tags.v1"
    judged = False
    grounded_rule = "does the tag's reason describe the post?"  # unused: post tags are not judged

    def schema(self) -> Dict[str, Any]:
        return object_schema(
            {
                "reason": text_field(160, "one short sentence on the post's quality and harmlessness"),
                "quality": {"type": "integer", "minimum": 1, "maximum": 5},
                "harmless": {"type": "boolean"},
            },
            title="post_tags",
        )

    def requests(self, timeline: Dict[str, Any], cfg: Any, budget: PromptBudget) -> List[ProductRequest]:
        out = []
        posts = qualified_posts(timeline["records"], cfg.synth.min_post_chars)
        cap = cfg.synth.max_tagged_posts_per_user
        for rec in posts if cap is None else posts[: max(0, int(cap))]:
            text = render_record(rec, cfg.synth.max_chars_per_post)
            text, messages = fit_text(text, lambda t: self.prompt.render(platform=timeline["platform"], post=t), budget)
            out.append(ProductRequest(f"{timeline['user_id']}:post_tags:{rec['record_id']}", [rec], text, messages))
        return out

    def render_for_judge(self, payload: Dict[str, Any]) -> str:
        return f"Quality {payload.get('quality')}/5, harmless: {payload.get('harmless')}. {payload.get('reason', '')}"
