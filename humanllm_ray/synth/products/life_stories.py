"""``life_stories``: up to 20 ``{summary, content}`` first-person stories per user.

Each story retells one episode of the user's life that their posts describe, in the first
person: ``summary`` is one line (what the ``scenario_generation`` task turns back into a
story), ``content`` the story itself. Stories are in time order, so the
``profile_generation`` task can ask for the second half from the first.

Bounds: the published schema allows 1..20 stories of a 100-character summary and an
800-character story (~120 words). Fitting to ``synth.max_new_tokens`` x
``synth.chars_per_token`` keeps stories whole and lowers how many may be written (see
``llm.schema.fit_to_budget``): a real model at 2048 tokens x 3.5 may write 7 full stories,
at 8192 x 3.5 all 20; at 1024 x 1.0 (conf/cluster.yaml) only one whole story fits, and the
embedded tiny model (96 x 1.0) gets one story of ~55 characters in all. The prompt states
the fitted count and lengths.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

from ...llm.schema import list_field, object_schema, text_field
from ..names import replace_names
from . import TimelineProduct, register_product

MAX_STORIES = 20
SUMMARY_MAX_CHARS = 100
CONTENT_MAX_CHARS = 800  # ~120 words of English
STORY_FIELDS = ("summary", "content")


def _normalize(text: str) -> str:
    return " ".join(text.lower().split())


@register_product
class LifeStories(TimelineProduct):
    name = "life_stories"
    prompt_version = "life_stories.v1"
    grounded_rule = "is every story an episode the posts actually describe, told consistently with them?"
    leakage_rule = "true if a story copies whole sentences from the posts or names identifying details instead of retelling."
    judge_checks_leakage = True

    def schema(self) -> Dict[str, Any]:
        story = {
            "summary": text_field(SUMMARY_MAX_CHARS, "one line: what happened"),
            "content": text_field(CONTENT_MAX_CHARS, "the story in the first person"),
        }
        return object_schema(
            {"stories": list_field(story, MAX_STORIES, title="story", description="first-person life stories, in time order")},
            title="life_stories",
        )

    def prompt_values(self, cfg: Any) -> Dict[str, Any]:
        stories = self.request_schema(cfg)["properties"]["stories"]
        props = stories["items"]["properties"]
        return {
            "max_stories": stories["maxItems"],
            "summary_chars": props["summary"]["maxLength"],
            "content_chars": props["content"]["maxLength"],
        }

    # -- replies: text lives inside the list --------------------------------------------
    def text_fields(self, payload: Dict[str, Any]) -> Dict[str, str]:
        """Every story's summary and content, keyed ``stories.<i>.<field>``."""
        out: Dict[str, str] = {}
        for i, story in enumerate(payload.get("stories") or []):
            if isinstance(story, dict):
                for k in STORY_FIELDS:
                    if isinstance(story.get(k), str):
                        out[f"stories.{i}.{k}"] = story[k]
        return out

    def postprocess(self, payload: Dict[str, Any]) -> Dict[str, Any]:
        """Names -> placeholders with one mapping over all stories (PersonA is one person)."""
        replaced = replace_names(self.text_fields(payload))
        stories: List[Dict[str, Any]] = []
        for i, story in enumerate(payload.get("stories") or []):
            if isinstance(story, dict):
                story = {**story, **{k: replaced[f"stories.{i}.{k}"] for k in STORY_FIELDS if f"stories.{i}.{k}" in replaced}}
            stories.append(story)
        return {**payload, "stories": stories}

    def render_for_judge(self, payload: Dict[str, Any]) -> str:
        return "\n".join(
            f"Story {i}: {s.get('summary', '')}\n{s.get('content', '')}" for i, s in enumerate(payload.get("stories") or [], 1)
        )

    def rule_violations(self, payload: Dict[str, Any], row: Dict[str, Any], qc: Any) -> List[Tuple[str, str]]:
        out = super().rule_violations(payload, row, qc)
        # A real model's common failure: the same story twice (a loop), or the same summary.
        summaries, contents = set(), set()
        for story in payload.get("stories") or []:
            summary, content = _normalize(story.get("summary", "")), _normalize(story.get("content", ""))
            if summary in summaries or content in contents:
                out.append(("rule_duplicate_story", f"story repeated: {story.get('summary', '')[:80]!r}"))
                break
            summaries.add(summary)
            contents.add(content)
        return out
