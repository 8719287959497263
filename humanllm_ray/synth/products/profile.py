"""``profile``: one third-person paragraph of 100-400 words per user, from their posts.

The paper's profile is the persona (traits, values, interests, tone) plus a few salient
life events. Synthesis is one pass over every product, so the profile is written from the
same posts the persona is (not from the persona itself); the ``profile_generation`` task
then pairs the two (persona -> profile).

Bounds: the published schema allows 2800 characters (~400 words); the engine is asked for
that fitted to ``synth.max_new_tokens`` x ``synth.chars_per_token``. A real model at
1024 tokens x 1.0 (conf/cluster.yaml) gets ~1010 characters (~150 words), at 2048 x 3.5 the
full 2800; the embedded tiny model (96 x 1.0) gets ~80 characters. QC's 100-word minimum
(``qc.min_words.profile``) applies whenever the budget holds 100 words (~600 characters);
below that only a 3-word floor does (see ``Product.min_words``). The prompt states the
same bounds.
"""

from __future__ import annotations

from typing import Any, Dict

from ...llm.schema import object_schema, text_field
from . import TimelineProduct, register_product, word_bounds

PROFILE_MAX_CHARS = 2800  # ~400 words of English
PROFILE_MAX_WORDS = 400


@register_product
class Profile(TimelineProduct):
    name = "profile"
    prompt_version = "profile.v1"
    grounded_rule = "are the traits it claims and every life event it tells supported by the posts?"
    leakage_rule = "true if it copies whole sentences from the posts or names identifying details instead of summarizing."
    judge_checks_leakage = True

    def schema(self) -> Dict[str, Any]:
        return object_schema(
            {"profile": text_field(PROFILE_MAX_CHARS, "third-person paragraph, 100 to 400 words, with a few life events")},
            title="profile",
        )

    def prompt_values(self, cfg: Any) -> Dict[str, Any]:
        lo, hi = word_bounds(self, cfg, PROFILE_MAX_WORDS)
        return {"min_words": lo, "max_words": hi, "max_chars": self.request_schema(cfg)["properties"]["profile"]["maxLength"]}
