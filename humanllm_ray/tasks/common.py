"""What every task builder shares: a user's timeline, candidate examples, prompt helpers.

A builder sees one :class:`UserTimeline` (all curated records of a user, merged across
timeline chunks and sorted by time, plus that user's QC-passed synthesis items) and
yields :class:`Candidate` examples. The stage turns candidates into rows, rejecting any
whose target text appears in its own prompt.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

SYSTEM_SIMULATE = (
    "You are simulating one specific person. Answer exactly as this person would: "
    "their voice, their views, their habits."
)

# Record kinds a person authors as standalone writing (comments are replies, handled by
# personalized_commenting).
AUTHORED_KINDS = ("post", "tweet", "review")


@dataclass(frozen=True)
class Record:
    record_id: str
    timestamp: int
    kind: str
    platform: str
    title: str
    text: str
    context: str
    item_id: str
    rating: Optional[float]
    extra: Dict[str, Any]

    @property
    def category(self) -> str:
        return str(self.extra.get("category") or "")


@dataclass(frozen=True)
class QCItem:
    """One QC-passed synthesis product (persona, social_qa, profile, stories, style, ...)."""

    item_id: str
    product: str
    payload: Dict[str, Any]
    source_record_ids: tuple


POST_TAGS = "post_tags"  # the synthesis product (synth/products/post_tags.py)

# What a post's tag says (Candidate.post_tag, the report's post_tags.examples): a per-post
# example's post has no tag (tagging disabled, capped, or the tag quarantined) and is kept,
# or its tag passes, or fails for one of the two reasons (harmful wins when both fail).
POST_UNTAGGED = "untagged"
POST_TAG_OK = "tag_ok"
REASON_POST_LOW_QUALITY = "post_low_quality"
REASON_POST_HARMFUL = "post_harmful"
_SEVERITY = {"": 0, POST_UNTAGGED: 1, POST_TAG_OK: 2, REASON_POST_LOW_QUALITY: 3, REASON_POST_HARMFUL: 4}


@dataclass(frozen=True)
class PostFilter:
    """The paper's post filter over ``post_tags``: keep medium/high quality, harmless posts.

    ``enforce`` False (the unit-test default; the stage resolves tasks.enforce_post_tags)
    records each per-post example's verdict in ``post_tag`` but drops nothing."""

    enforce: bool = False
    min_quality: int = 3  # 1-5 scale: 1-2 low, 3 medium, 4-5 high
    reject_harmful: bool = True

    def status(self, tag: Optional[Dict[str, Any]]) -> str:
        if tag is None:
            return POST_UNTAGGED
        if self.reject_harmful and tag.get("harmless") is not True:
            return REASON_POST_HARMFUL
        try:
            quality = int(tag.get("quality") or 0)
        except (TypeError, ValueError):
            quality = 0
        if quality < self.min_quality:
            return REASON_POST_LOW_QUALITY
        return POST_TAG_OK


@dataclass
class UserTimeline:
    user_id: str
    platform: str
    records: List[Record]  # sorted by (timestamp, record_id)
    items: List[QCItem] = field(default_factory=list)

    def products(self, name: str) -> List[QCItem]:
        return [i for i in self.items if i.product == name]

    @property
    def persona(self) -> Optional[QCItem]:
        """The user's persona item, if synthesis made one (the first by item_id, for determinism)."""
        found = sorted(self.products("persona"), key=lambda i: i.item_id)
        for item in found:
            if str(item.payload.get("persona") or "").strip():
                return item
        return None

    @property
    def persona_text(self) -> str:
        item = self.persona
        return str(item.payload["persona"]).strip() if item else ""

    def authored(self) -> List[Record]:
        return [r for r in self.records if r.kind in AUTHORED_KINDS and r.text.strip()]

    @property
    def post_tags(self) -> Dict[str, Dict[str, Any]]:
        """record_id -> the QC-passed ``post_tags`` payload ({reason, quality, harmless})."""
        cached = self.__dict__.get("_post_tags")
        if cached is None:
            cached = {}
            for item in sorted(self.products(POST_TAGS), key=lambda i: i.item_id):
                rid = item.source_record_ids[0] if item.source_record_ids else item.item_id.rsplit(f":{POST_TAGS}:", 1)[-1]
                cached.setdefault(str(rid), item.payload)
            self.__dict__["_post_tags"] = cached
        return cached


@dataclass
class Candidate:
    """One example before the leakage check.

    ``target`` is the assistant turn. ``leak_context`` is the prompt text the target must
    not appear in; builders leave it None (= system + user turn) unless the prompt by
    design contains the answer (item selection lists the bought item among candidates).
    ``leak_target`` is the text checked, when it is not the whole target (the item's name
    rather than "B) name").
    """

    task: str
    variant: str
    user_id: str
    platform: str
    key: str  # what makes the example unique within (task, variant, user): a record or item id
    system: str
    prompt: str
    target: str
    meta: Dict[str, Any] = field(default_factory=dict)
    leak_context: Optional[str] = None
    leak_target: Optional[str] = None
    # Set by a builder for a candidate it found but could not complete (e.g. too few
    # negatives): the stage quarantines it under this reason instead of dropping it.
    rejected: Optional[str] = None
    rejected_detail: str = ""
    # For an example built from individual posts: what their post_tags say (POST_UNTAGGED,
    # POST_TAG_OK or a REASON_POST_* code), set by BuildContext.tag_posts; "" otherwise.
    post_tag: str = ""

    @property
    def example_id(self) -> str:
        raw = f"{self.task}|{self.variant}|{self.user_id}|{self.key}"
        return hashlib.sha256(raw.encode()).hexdigest()[:20]

    def leaks(self) -> bool:
        """True when the target (or leak_target) appears in the prompt it must not be in."""
        context = self.leak_context if self.leak_context is not None else f"{self.system}\n{self.prompt}"
        target = self.leak_target if self.leak_target is not None else self.target
        return target_in_context(target, context)

    def messages(self) -> List[Dict[str, str]]:
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.prompt},
            {"role": "assistant", "content": self.target},
        ]


@dataclass(frozen=True)
class BuildContext:
    """Settings and shared lookups every builder gets."""

    max_history: int
    max_chars_per_post: int
    item_candidates: int
    max_examples_per_user: int
    seed: int
    # category -> [(item_id, title)], a bounded deterministic sample of the catalog.
    catalog: Dict[str, List[tuple]] = field(default_factory=dict)
    post_filter: PostFilter = field(default_factory=PostFilter)

    def clip(self, text: str) -> str:
        return clip(text, self.max_chars_per_post)

    # -- post tags ---------------------------------------------------------------------
    def post_status(self, user: "UserTimeline", record_id: str) -> str:
        return self.post_filter.status(user.post_tags.get(str(record_id)))

    def usable(self, user: "UserTimeline", record: Record) -> bool:
        """May this post be shown (history) or used? False only for a failing tag, enforced."""
        return not self.post_filter.enforce or self.post_status(user, record.record_id) in (POST_UNTAGGED, POST_TAG_OK)

    def tag_posts(self, cand: "Candidate", user: "UserTimeline", record_ids: Sequence[str]) -> "Candidate":
        """Mark a per-post example with its posts' tag verdict (the worst of them); enforced,
        a failing one rejects it (the stage quarantines it under REASON_POST_*)."""
        worst, worst_id = POST_UNTAGGED, ""
        for rid in record_ids:
            status = self.post_status(user, rid)
            if _SEVERITY[status] > _SEVERITY[worst]:
                worst, worst_id = status, str(rid)
        cand.post_tag = worst
        if self.post_filter.enforce and worst in (REASON_POST_LOW_QUALITY, REASON_POST_HARMFUL) and not cand.rejected:
            tag = user.post_tags[worst_id]
            cand.rejected = worst
            cand.rejected_detail = (
                f"post {worst_id} tagged quality {tag.get('quality')}/5 (keep >= {self.post_filter.min_quality}), "
                f"harmless {tag.get('harmless')}"
            )
        return cand


# --------------------------------------------------------------------------- helpers


def clip(text: str, max_chars: int) -> str:
    """Shorten to max_chars at a word boundary, marking the cut."""
    text = (text or "").strip()
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars].rsplit(" ", 1)[0]
    return cut + " ..."


_WS = re.compile(r"\s+")


def normalize_for_match(text: str) -> str:
    return _WS.sub(" ", (text or "").lower()).strip()


# A target shorter than this is too generic for a containment test ("yes", "4/5").
MIN_LEAK_CHARS = 12
# Long targets also count as leaked when their opening this long is in the prompt: a
# near-duplicate post in the history should not pass because its last word differs.
LEAK_PREFIX_CHARS = 200


def target_in_context(target: str, context: str) -> bool:
    t = normalize_for_match(target)
    c = normalize_for_match(context)
    if len(t) < MIN_LEAK_CHARS:
        return False
    if t in c:
        return True
    return len(t) >= LEAK_PREFIX_CHARS and t[:LEAK_PREFIX_CHARS] in c


def split_for_user(user_id: str, seed: int, val_fraction: float, test_fraction: float) -> str:
    """train / val / test from a hash of the user id: stable across runs and machines,
    and a user's examples never straddle splits."""
    digest = hashlib.sha256(f"{seed}:{user_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def format_history(records: Iterable[Record], ctx: BuildContext, *, with_context: bool = False) -> str:
    lines = []
    for n, r in enumerate(records, 1):
        head = f"[{n}]"
        if with_context and r.context:
            head += f" (replying to: {clip(r.context, 160)})"
        if r.title:
            head += f" {r.title.strip()}"
        lines.append(f"{head}\n{ctx.clip(r.text)}")
    return "\n\n".join(lines)


def persona_block(user: UserTimeline) -> str:
    text = user.persona_text
    return f"Persona: {text}\n\n" if text else ""


def parse_payload(payload: Any) -> Dict[str, Any]:
    if isinstance(payload, dict):
        return payload
    try:
        value = json.loads(payload or "{}")
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def most_recent(items: List[Any], n: int) -> List[Any]:
    return items[-n:] if n > 0 else []


def most_recent_kept(built: List[Candidate], n: int) -> List[Candidate]:
    """The ``n`` most recent candidates that are not rejected, plus the rejected ones more
    recent than the oldest of those: a rejected example gives its slot to the next older
    post (the cap counts examples kept) and is reported only if it displaced one, so posts
    the cap would have left out anyway are not counted as dropped."""
    out: List[Candidate] = []
    kept = 0
    for cand in reversed(built):
        if kept >= n:
            break
        out.append(cand)
        kept += not cand.rejected
    return out[::-1]
