"""Task 6, item selection: persona and/or purchase history + candidates -> the item bought.

Targets are Amazon reviews (a review implies a purchase) of items with a category. The
negatives are other items of the same category from the catalog sample, never items this
user reviewed; the answer's position among the candidates is drawn from a RNG seeded by
(seed, user, record), so rebuilding gives the same example. ``meta`` keeps the candidates
and the answer index for accuracy scoring.

The bought item is *meant* to be in the prompt (it is one of the candidates), so the
leakage check here looks only at the purchase history: the item must not already be there.
"""

from __future__ import annotations

import random
import string
from typing import Iterator

from ..common import SYSTEM_SIMULATE, BuildContext, Candidate, UserTimeline, clip, most_recent, persona_block
from ..registry import register


def _history_line(n: int, title: str, rating) -> str:
    stars = f" (rated {rating:g}/5)" if rating is not None else ""
    return f"[{n}] {title}{stars}"


@register("item_selection")
def build(user: UserTimeline, ctx: BuildContext) -> Iterator[Candidate]:
    purchases = [r for r in user.records if r.platform == "amazon" and r.item_id and r.context.strip()]
    owned_ids = {r.item_id for r in purchases}
    persona = persona_block(user)
    letters = string.ascii_uppercase
    n_candidates = max(2, min(ctx.item_candidates, len(letters)))
    built = []
    for i, target in enumerate(purchases):
        category = target.category
        if not category:
            continue
        history = most_recent(purchases[:i], ctx.max_history)
        if not history and not persona:
            continue
        title = clip(target.context, 200)
        meta = {"target_record_id": target.record_id, "category": category, "item_id": target.item_id}
        common = dict(
            task="item_selection",
            variant="persona_and_history" if persona and history else ("history" if history else "persona"),
            user_id=user.user_id,
            platform=target.platform,
            key=target.record_id,
            system=SYSTEM_SIMULATE,
        )
        # Negatives: same category, not owned by this user, not a same-titled duplicate listing.
        pool = sorted(
            (item_id, t)
            for item_id, t in ctx.catalog.get(category, [])
            if item_id not in owned_ids and clip(t, 200).lower() != title.lower()
        )
        if len(pool) < n_candidates - 1:
            built.append(
                Candidate(
                    **common,
                    prompt="",
                    target=title,
                    meta=meta,
                    rejected="insufficient_candidates",
                    rejected_detail=f"category {category!r} has {len(pool)} other items, need {n_candidates - 1}",
                )
            )
            continue
        rng = random.Random(f"{ctx.seed}|item_selection|{user.user_id}|{target.record_id}")
        negatives = rng.sample(pool, n_candidates - 1)
        answer_index = rng.randrange(n_candidates)
        candidates = list(negatives)
        candidates.insert(answer_index, (target.item_id, target.context))
        history_text = "\n".join(_history_line(n, clip(r.context, 200), r.rating) for n, r in enumerate(history, 1))
        options = "\n".join(f"{letters[k]}) {clip(t, 200)}" for k, (_iid, t) in enumerate(candidates))
        prompt = persona
        if history:
            prompt += f"Items this person bought before, oldest first:\n{history_text}\n\n"
        prompt += (
            f"They are shopping in the category \"{category}\" again. Which one of these items do they buy?\n"
            f"{options}\n\nAnswer with the letter and the item name."
        )
        built.append(
            Candidate(
                **common,
                prompt=prompt,
                target=f"{letters[answer_index]}) {title}",
                meta={
                    **meta,
                    "candidates": [{"item_id": iid, "title": t} for iid, t in candidates],
                    "answer_index": answer_index,
                    "answer_letter": letters[answer_index],
                    "history_record_ids": [r.record_id for r in history],
                },
                # Only the history may not contain the bought item; the options must.
                leak_context=persona + history_text,
                leak_target=title,
            )
        )
    yield from most_recent(built, ctx.max_examples_per_user)
