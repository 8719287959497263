"""Task 1, profile generation.

Variants, by which synthesis products the user has:
* ``persona_to_profile``     — persona -> the detailed profile (``profile`` product);
* ``past_to_future_stories`` — the first half of the user's life stories (``life_stories``
  product, [{summary, content}] in time order) -> the second half;
* ``posts_to_profile``       — the user's posts -> the profile, when there is a profile
  but no persona to expand (e.g. QC rejected the persona);
* ``posts_to_persona``       — the fallback when synthesis made only a persona (e.g.
  ``synth.products=[persona, social_qa]``): the posts the persona was written from (else
  the most recent ones) -> the persona.
Posts shown in a prompt leave out those tagged low quality or harmful when
``tasks.enforce_post_tags`` holds (the targets here are synthesis items, not posts).
"""

from __future__ import annotations

from typing import Iterator, List

from ..common import (
    SYSTEM_SIMULATE,
    BuildContext,
    Candidate,
    UserTimeline,
    format_history,
    most_recent,
    persona_block,
)
from ..registry import register

SYSTEM_PROFILER = "You write concise, faithful third-person descriptions of people from what they wrote."
LIFE_STORIES = "life_stories"  # the synthesis product (synth/products/life_stories.py)


def _posts_behind(user: UserTimeline, item, ctx: BuildContext):
    """The posts a synthesis item was written from (else the user's most recent ones)."""
    authored = [r for r in user.authored() or [r for r in user.records if r.text.strip()] if ctx.usable(user, r)]
    sources = set(item.source_record_ids)
    grounded = [r for r in authored if r.record_id in sources]
    return most_recent(grounded or authored, ctx.max_history)


def stories_of(payload: dict) -> List[dict]:
    stories = payload.get("stories")
    if not isinstance(stories, list):
        return []
    out = []
    for s in stories:
        if isinstance(s, dict) and str(s.get("content") or "").strip():
            out.append({"summary": str(s.get("summary") or "").strip(), "content": str(s["content"]).strip()})
    return out


def _format_stories(stories: List[dict], start: int = 1) -> str:
    return "\n\n".join(f"[{n}] {s['summary']}\n{s['content']}" for n, s in enumerate(stories, start))


@register("profile_generation")
def build(user: UserTimeline, ctx: BuildContext) -> Iterator[Candidate]:
    base = dict(task="profile_generation", user_id=user.user_id, platform=user.platform)
    persona_item = user.persona
    built = []

    for item in sorted(user.products("profile"), key=lambda i: i.item_id):
        profile = str(item.payload.get("profile") or "").strip()
        if not profile:
            continue
        if persona_item:
            built.append(
                Candidate(
                    **base,
                    variant="persona_to_profile",
                    key=item.item_id,
                    system=SYSTEM_PROFILER,
                    prompt=f"{persona_block(user)}Expand this persona into a detailed profile of the person, "
                    "with a few salient life events.",
                    target=profile,
                    meta={"qc_item_id": item.item_id, "persona_item_id": persona_item.item_id},
                )
            )
            continue
        posts = _posts_behind(user, item, ctx)
        if posts:
            built.append(
                Candidate(
                    **base,
                    variant="posts_to_profile",
                    key=item.item_id,
                    system=SYSTEM_PROFILER,
                    prompt=f"Posts by one person:\n\n{format_history(posts, ctx)}\n\n"
                    "Describe this person in one third-person paragraph: traits, values, interests, "
                    "emotional tone, and a few salient life events.",
                    target=profile,
                    meta={"qc_item_id": item.item_id, "post_record_ids": [r.record_id for r in posts]},
                )
            )

    for item in sorted(user.products(LIFE_STORIES), key=lambda i: i.item_id):
        stories = stories_of(item.payload)
        if len(stories) < 2:
            continue
        half = len(stories) // 2
        past, future = stories[:half], stories[half:]
        built.append(
            Candidate(
                **base,
                variant="past_to_future_stories",
                key=item.item_id,
                system=SYSTEM_SIMULATE,
                prompt=f"{persona_block(user)}Stories from this person's life so far:\n\n{_format_stories(past)}\n\n"
                "Tell what happens to them next, as first-person stories in the same format.",
                target=_format_stories(future, start=half + 1),
                meta={"qc_item_id": item.item_id, "n_past": len(past), "n_future": len(future)},
            )
        )

    if persona_item is not None:
        posts = _posts_behind(user, persona_item, ctx)
        if posts:
            built.append(
                Candidate(
                    **base,
                    variant="posts_to_persona",
                    key=persona_item.item_id,
                    system=SYSTEM_PROFILER,
                    prompt=f"Posts by one person:\n\n{format_history(posts, ctx)}\n\n"
                    "Describe this person in one third-person paragraph of at most 100 words: "
                    "traits, values, interests, emotional tone.",
                    target=user.persona_text,
                    meta={"qc_item_id": persona_item.item_id, "post_record_ids": [r.record_id for r in posts]},
                )
            )
    yield from most_recent(built, ctx.max_examples_per_user)
