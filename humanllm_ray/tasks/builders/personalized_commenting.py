"""Task 5, personalized commenting: persona + past comments + another user's post -> the comment.

Targets are the user's comments whose parent post (``context``) is known. Variants:
``persona_and_history`` when synthesis produced a persona, else ``history``; a comment
with neither a persona nor an earlier comment has nothing personal to condition on and
is skipped. Post tags (``tasks.enforce_post_tags``): a target comment tagged low quality or
harmful is rejected (quarantined as ``post_low_quality`` / ``post_harmful``) and never shown
as history.
"""

from __future__ import annotations

from typing import Iterator

from ..common import (
    SYSTEM_SIMULATE,
    BuildContext,
    Candidate,
    UserTimeline,
    clip,
    format_history,
    most_recent,
    most_recent_kept,
    persona_block,
)
from ..registry import register


@register("personalized_commenting")
def build(user: UserTimeline, ctx: BuildContext) -> Iterator[Candidate]:
    comments = [r for r in user.records if r.kind == "comment" and r.text.strip()]
    persona = persona_block(user)
    built = []
    for i, target in enumerate(comments):
        if not target.context.strip():
            continue  # no post to reply to
        earlier = [r for r in comments[:i] if r.text != target.text and ctx.usable(user, r)]
        history = most_recent(earlier, ctx.max_history)
        if not history and not persona:
            continue
        parts = [persona]
        if history:
            parts.append(f"Comments this person wrote before:\n\n{format_history(history, ctx, with_context=True)}\n\n")
        # The parent post can be long; it gets twice a post's budget since it is the stimulus.
        parts.append(f"Another user posted:\n\n{clip(target.context, 2 * ctx.max_chars_per_post)}\n\n")
        parts.append("Write this person's comment on that post.")
        built.append(ctx.tag_posts(
            Candidate(
                task="personalized_commenting",
                variant="persona_and_history" if persona else "history",
                user_id=user.user_id,
                platform=target.platform,
                key=target.record_id,
                system=SYSTEM_SIMULATE,
                prompt="".join(parts),
                target=target.text.strip(),
                meta={
                    "target_record_id": target.record_id,
                    "history_record_ids": [r.record_id for r in history],
                    "persona_item_id": user.persona.item_id if user.persona else None,
                },
            ),
            user,
            [target.record_id],
        ))
    yield from most_recent_kept(built, ctx.max_examples_per_user)
