"""Rule filters (DESIGN.md §1), one small function each, in a registry.

A rule is ``fn(record, cfg) -> detail or None``: a string rejects the record with the rule's
reason code (the string says why). Rules run in registry order and the first rejection wins.
Phases: ``raw`` rules see the ingested text (before cleaning), ``clean`` rules the cleaned and
PII-scrubbed text (so lengths are measured on what the model will actually read), ``lang`` runs
language identification last because it is the most expensive. Any rule can be switched off by
reason code with ``curate.disabled_filters``; thresholds come from CurateConfig.

Adding a rule::

    @rule("my_reason", platforms=("reddit",))
    def _my_rule(r: Rec, cfg: CurateConfig) -> Optional[str]:
        return "why" if ... else None
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..config import CurateConfig


@dataclass
class Rec:
    """What a rule sees of one record."""

    platform: str
    kind: str
    title: str
    text: str
    extra: Dict[str, Any] = field(default_factory=dict)
    clean_title: str = ""
    clean_text: str = ""
    removed_fraction: float = 0.0

    def body(self, cleaned: bool = True) -> str:
        """The text a length/question/language rule looks at: title + selftext for Reddit
        submissions (the reference counts both), the body otherwise."""
        title, text = (self.clean_title, self.clean_text) if cleaned else (self.title, self.text)
        if self.platform == "reddit" and self.kind == "post":
            return (title + "\n" + text).strip()
        return text

    @property
    def flags(self) -> Dict[str, Any]:
        return self.extra.get("author_flags") or {}


@dataclass
class Rule:
    reason: str
    fn: Callable[[Rec, CurateConfig], Optional[str]]
    phase: str = "raw"  # raw | clean | lang
    platforms: Tuple[str, ...] = ()  # empty: all platforms


RULES: List[Rule] = []


def rule(reason: str, *, phase: str = "raw", platforms: Tuple[str, ...] = ()):
    def deco(fn):
        if any(r.reason == reason for r in RULES):
            raise ValueError(f"curate rule {reason!r} registered twice")
        RULES.append(Rule(reason=reason, fn=fn, phase=phase, platforms=tuple(platforms)))
        return fn

    return deco


register = rule  # the name other stages' registries use


def first_failure(rec: Rec, cfg: CurateConfig, phase: str) -> Tuple[str, str]:
    """(reason, detail) of the first rule of ``phase`` that rejects rec, else ("", "")."""
    disabled = set(getattr(cfg, "disabled_filters", []) or [])
    for r in RULES:
        if r.phase != phase or r.reason in disabled:
            continue
        if r.platforms and rec.platform not in r.platforms:
            continue
        detail = r.fn(rec, cfg)
        if detail is not None:
            return r.reason, detail
    return "", ""


def min_chars_key(rec: Rec) -> str:
    if rec.platform == "reddit":
        return "reddit_submission" if rec.kind == "post" else "reddit_comment"
    return rec.platform


def _kw_regex(words: List[str]) -> "re.Pattern[str]":
    parts = [re.escape(w.lower()).replace(r"\ ", r"\s+") for w in words if w.strip()]
    if not parts:
        return re.compile(r"(?!x)x")
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(parts) + r")(?![a-z0-9])")


_RX_CACHE: Dict[Tuple[str, ...], "re.Pattern[str]"] = {}


def kw_regex(words: List[str]) -> "re.Pattern[str]":
    key = tuple(words)
    if key not in _RX_CACHE:
        _RX_CACHE[key] = _kw_regex(list(words))
    return _RX_CACHE[key]


# --------------------------------------------------------------------------- authors (raw)


@rule("deleted_author")
def _deleted_author(r: Rec, cfg: CurateConfig) -> Optional[str]:
    return "author is [deleted]/[removed]" if r.flags.get("deleted") else None


@rule("bot_author")
def _bot_author(r: Rec, cfg: CurateConfig) -> Optional[str]:
    return "author name is a known bot or ends in 'bot'" if r.flags.get("bot") else None


@rule("corporate_account")
def _corporate(r: Rec, cfg: CurateConfig) -> Optional[str]:
    if r.flags.get("corporate_handle"):
        return "handle carries a corporate keyword"
    desc = str(r.extra.get("author_description") or "").lower()
    if desc:
        m = kw_regex(list(cfg.corporate_keywords)).search(desc)
        if m:
            return f"author description mentions '{m.group(0)}'"
    return None


@rule("moderator_post", platforms=("reddit",))
def _moderator(r: Rec, cfg: CurateConfig) -> Optional[str]:
    d = str(r.extra.get("distinguished") or "").lower()
    if d in ("moderator", "admin", "special"):
        return f"distinguished as {d}"
    if r.extra.get("stickied") and r.kind == "post":
        return "stickied post"
    return None


# --------------------------------------------------------------------------- text (raw)

_REMOVED = {"[removed]", "[deleted]", "[ removed ]", "[ deleted ]", "deleted", "removed"}
_REMOVED_PHRASES = ("this comment has been removed", "this post has been removed", "[removed by reddit]",
                    "comment removed by moderator", "this tweet is unavailable", "this post was deleted")


@rule("removed_text")
def _removed(r: Rec, cfg: CurateConfig) -> Optional[str]:
    t = (r.text or "").strip().lower()
    if t in _REMOVED:
        return f"text is {t!r}"
    if any(p in t for p in _REMOVED_PHRASES):
        return "text says it was removed"
    if r.extra.get("removed_by_category"):
        return f"removed_by_category={r.extra.get('removed_by_category')}"
    return None


@rule("not_self_post", platforms=("reddit",))
def _not_self(r: Rec, cfg: CurateConfig) -> Optional[str]:
    if r.kind == "post" and r.extra.get("is_self") is False:
        return "link post (is_self=false)"
    return None


@rule("low_score", platforms=("reddit",))
def _low_score(r: Rec, cfg: CurateConfig) -> Optional[str]:
    if r.kind != "post":
        return None
    score = r.extra.get("score") or 0
    nc = r.extra.get("num_comments") or 0
    if score >= cfg.min_score or nc >= cfg.min_score:
        return None
    return f"score={score} and num_comments={nc} both < {cfg.min_score}"


@rule("not_top_level", platforms=("reddit",))
def _not_top_level(r: Rec, cfg: CurateConfig) -> Optional[str]:
    if r.kind != "comment":
        return None
    parent, link = r.extra.get("parent_id") or "", r.extra.get("link_id") or ""
    if parent and link and parent != link:
        return f"reply to {parent}, not to the submission"
    return None


@rule("retweet", platforms=("twitter",))
def _retweet(r: Rec, cfg: CurateConfig) -> Optional[str]:
    if r.extra.get("is_retweet") or re.match(r"\s*RT\s+@", r.text or ""):
        return "retweet"
    return None


@rule("ad")
def _ad(r: Rec, cfg: CurateConfig) -> Optional[str]:
    if r.platform not in (getattr(cfg, "ad_filter_platforms", None) or ["twitter"]):
        return None
    m = kw_regex(list(cfg.ad_phrases)).search((r.title + " " + r.text).lower())
    return f"ad phrase '{m.group(0)}'" if m else None


# --------------------------------------------------------------------------- cleaned text


@rule("cleaning_removed_most", phase="clean")
def _cleaning(r: Rec, cfg: CurateConfig) -> Optional[str]:
    if r.removed_fraction > cfg.max_removed_fraction:
        return f"cleaning removed {r.removed_fraction:.0%} of the text"
    return None


@rule("short_question", phase="clean")
def _short_question(r: Rec, cfg: CurateConfig) -> Optional[str]:
    body = r.clean_text.strip()
    if not body:
        body = r.clean_title.strip()
    if body.endswith("?") and len(body.split()) < cfg.min_words_question:
        return f"question of {len(body.split())} words"
    return None


@rule("too_short", phase="clean")
def _too_short(r: Rec, cfg: CurateConfig) -> Optional[str]:
    key = min_chars_key(r)
    need = cfg.min_chars.get(key, cfg.min_chars.get(r.platform, 0))
    n = len(r.body())
    if n < need:
        return f"{n} chars < {need} ({key})"
    return None


@rule("not_english", phase="lang")
def _not_english(r: Rec, cfg: CurateConfig) -> Optional[str]:
    if not cfg.languages:
        return None
    from .lang import classify

    lang, prob = classify(r.body())
    if lang is None or lang in cfg.languages:
        return None
    return f"language {lang} (p={prob:.2f})"


def reasons() -> List[str]:
    return [r.reason for r in RULES]
