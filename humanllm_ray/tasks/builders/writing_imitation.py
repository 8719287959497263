"""Task 4, writing imitation: past posts x a new topic (or the first half) -> the post.

Variants, chosen by what the target record has:
* ``title_to_post``  — a titled post (Reddit submission): the title (and subreddit) -> body;
* ``item_to_review`` — an Amazon review: the item's name and the rating -> the review;
* ``continuation``   — untitled text (tweets, blog posts): its first half -> the second half
  (the target is only the part not shown, so it can never sit in its own prompt).
The history is the user's most recent earlier writing on the same platform. When synthesis
made a ``writing_style`` description of the user, the prompt opens with it (``meta`` names
its item), and a target with no earlier writing is conditioned on the description alone.
Post tags (``tasks.enforce_post_tags``): a target post tagged low quality or harmful is
rejected (quarantined as ``post_low_quality`` / ``post_harmful``) and never shown as history.
"""

from __future__ import annotations

from typing import Iterator, Optional

from ..common import (
    SYSTEM_SIMULATE,
    BuildContext,
    Candidate,
    QCItem,
    UserTimeline,
    format_history,
    most_recent,
    most_recent_kept,
)
from ..registry import register

MIN_CONTINUATION_WORDS = 16  # shorter texts have no meaningful "second half"


def style_item(user: UserTimeline) -> Optional[QCItem]:
    """The user's writing style description (``writing_style`` product), if any."""
    for item in sorted(user.products("writing_style"), key=lambda i: i.item_id):
        if str(item.payload.get("style") or "").strip():
            return item
    return None


def _split_in_half(text: str):
    words = text.split()
    half = len(words) // 2
    return " ".join(words[:half]), " ".join(words[half:])


@register("writing_imitation")
def build(user: UserTimeline, ctx: BuildContext) -> Iterator[Candidate]:
    authored = user.authored()
    style = style_item(user)
    # One paragraph (the style schema allows no newline), like the persona's: evaluation strips it.
    style_block = f"Writing style: {str(style.payload['style']).strip()}\n\n" if style else ""
    built = []
    for i, target in enumerate(authored):
        earlier = [
            r for r in authored[:i] if r.platform == target.platform and r.text != target.text and ctx.usable(user, r)
        ]
        history = most_recent(earlier, ctx.max_history)
        if not history and not style:
            continue  # nothing to imitate from yet
        intro = style_block
        if history:
            intro += f"Here is writing this person posted before:\n\n{format_history(history, ctx)}\n\n"
        meta = {"target_record_id": target.record_id, "history_record_ids": [r.record_id for r in history]}
        if style:
            meta["style_item_id"] = style.item_id
        if target.platform == "amazon" and target.context:
            variant = "item_to_review"
            rating = f" and rated it {target.rating:g}/5" if target.rating is not None else ""
            prompt = intro + f"They bought \"{target.context.strip()}\"{rating}. Write their review."
            text = target.text.strip()
        elif target.title.strip():
            variant = "title_to_post"
            where = f" in {target.context.strip()}" if target.context.strip() else ""
            prompt = intro + f"Write their new post{where} titled \"{target.title.strip()}\"."
            text = target.text.strip()
        else:
            if len(target.text.split()) < MIN_CONTINUATION_WORDS:
                continue
            variant = "continuation"
            first, text = _split_in_half(target.text.strip())
            prompt = intro + f"They started a new post:\n\n{first}\n\nContinue it exactly as they would."
        built.append(ctx.tag_posts(
            Candidate(
                task="writing_imitation",
                variant=variant,
                user_id=user.user_id,
                platform=target.platform,
                key=target.record_id,
                system=SYSTEM_SIMULATE,
                prompt=prompt,
                target=text,
                meta=meta,
            ),
            user,
            [target.record_id],
        ))
    yield from most_recent_kept(built, ctx.max_examples_per_user)
