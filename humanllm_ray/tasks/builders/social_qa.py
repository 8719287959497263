"""Task 3, social QA: persona + scenario + question -> answer.

One example per QC-passed ``social_qa`` item ({scenario, question, answer}, grounded in one
of the user's posts). Variant ``persona`` when the user has a persona, else ``no_persona``.
Post tags (``tasks.enforce_post_tags``): an item grounded in a post tagged low quality or
harmful is rejected (quarantined as ``post_low_quality`` / ``post_harmful``).
"""

from __future__ import annotations

from typing import Iterator

from ..common import SYSTEM_SIMULATE, BuildContext, Candidate, UserTimeline, most_recent_kept, persona_block
from ..registry import register


def qa_fields(payload: dict):
    """(scenario, question, answer) stripped, or None when any is missing."""
    values = tuple(str(payload.get(k) or "").strip() for k in ("scenario", "question", "answer"))
    return values if all(values) else None


@register("social_qa")
def build(user: UserTimeline, ctx: BuildContext) -> Iterator[Candidate]:
    persona = persona_block(user)
    built = []
    for item in sorted(user.products("social_qa"), key=lambda i: i.item_id):
        fields = qa_fields(item.payload)
        if fields is None:
            continue
        scenario, question, answer = fields
        built.append(ctx.tag_posts(
            Candidate(
                task="social_qa",
                variant="persona" if persona else "no_persona",
                user_id=user.user_id,
                platform=user.platform,
                key=item.item_id,
                system=SYSTEM_SIMULATE,
                prompt=f"{persona}Scenario: {scenario}\n\nQuestion: {question}\n\nAnswer as this person.",
                target=answer,
                meta={"qc_item_id": item.item_id, "source_record_ids": list(item.source_record_ids)},
            ),
            user,
            item.source_record_ids,
        ))
    yield from most_recent_kept(built, ctx.max_examples_per_user)
