"""Task 2, scenario generation.

Variants:
* ``question_to_scenario`` — from each social QA item: persona + the question asked about
  the person -> the scenario it was asked in (the answer is withheld: it is the behaviour
  the scenario must not give away);
* ``summary_to_story``     — from ``life_stories`` items: persona + a story's one-line summary
  -> the first-person story.
Post tags (``tasks.enforce_post_tags``): a social QA item grounded in a post tagged low
quality or harmful is rejected (quarantined as ``post_low_quality`` / ``post_harmful``).
"""

from __future__ import annotations

from typing import Iterator

from ..common import SYSTEM_SIMULATE, BuildContext, Candidate, UserTimeline, most_recent_kept, persona_block
from ..registry import register
from .profile_generation import LIFE_STORIES, stories_of
from .social_qa import qa_fields

SYSTEM_SCENARIO = "You write realistic, specific everyday situations that a given person could find themselves in."


@register("scenario_generation")
def build(user: UserTimeline, ctx: BuildContext) -> Iterator[Candidate]:
    persona = persona_block(user)
    base = dict(task="scenario_generation", user_id=user.user_id, platform=user.platform)
    built = []
    for item in sorted(user.products("social_qa"), key=lambda i: i.item_id):
        fields = qa_fields(item.payload)
        if fields is None:
            continue
        scenario, question, _answer = fields
        built.append(ctx.tag_posts(
            Candidate(
                **base,
                variant="question_to_scenario",
                key=item.item_id,
                system=SYSTEM_SCENARIO,
                prompt=f"{persona}Later this person was asked: {question}\n\n"
                "Describe the situation they were in, in the third person, without saying how they reacted.",
                target=scenario,
                meta={"qc_item_id": item.item_id, "source_record_ids": list(item.source_record_ids)},
            ),
            user,
            item.source_record_ids,
        ))
    if persona:
        for item in sorted(user.products(LIFE_STORIES), key=lambda i: i.item_id):
            for n, story in enumerate(stories_of(item.payload)):
                if not story["summary"]:
                    continue
                built.append(
                    Candidate(
                        **base,
                        variant="summary_to_story",
                        key=f"{item.item_id}#{n}",
                        system=SYSTEM_SIMULATE,
                        prompt=f"{persona}In one line: {story['summary']}\n\nTell this story in the first person.",
                        target=story["content"],
                        meta={"qc_item_id": item.item_id, "story_index": n},
                    )
                )
    yield from most_recent_kept(built, ctx.max_examples_per_user)
