"""Text cleaning: HTML entities, URLs, @mentions, emoji, corpus artefacts, whitespace.

:func:`clean_text` returns the cleaned text and the fraction of (non-space) characters the
cleaning removed; the curate stage drops a record when that fraction is over
``curate.max_removed_fraction`` (the reference rule: "drop if cleaning removed over half").
Entity decoding and whitespace changes do not count as removal: the fraction is measured
against the entity-decoded text, on non-whitespace characters.
"""

from __future__ import annotations

import html
import re
from typing import Tuple

URL_RE = re.compile(
    r"(?:\bhttps?://|\bftp://|\bwww\.)[^\s<>\"'\]\)]+|\b[a-z0-9.-]+\.(?:com|org|net|io|ly|co|gl|me)/[^\s<>\"']*",
    re.IGNORECASE,
)
MENTION_RE = re.compile(r"(?<![\w@.])@[A-Za-z0-9_]{1,30}\b:?")
# Blog Authorship Corpus replaced every link with the token "urlLink".
URLLINK_RE = re.compile(r"\burlLink\b")
EMOJI_RE = re.compile(
    "["
    "\U0001f000-\U0001faff"  # mahjong .. symbols & pictographs extended-A (emoji, flags)
    "\U00002600-\U000027bf"  # misc symbols, dingbats
    "\U0001f1e6-\U0001f1ff"  # regional indicators
    "\U00002b00-\U00002bff"  # arrows, stars
    "\U0000fe00-\U0000fe0f"  # variation selectors
    "\U0000200d"  # zero width joiner
    "\U000020e3"  # combining keycap
    "\U000e0020-\U000e007f"  # tags
    "]+"
)
TAG_RE = re.compile(r"</?(?:br|p|div|span|b|i|em|strong|a|font|u|img)\b[^>]*>", re.IGNORECASE)
SPACES_RE = re.compile(r"[ \t\u00a0\u2000-\u200b\u3000]+")
NEWLINES_RE = re.compile(r"\n\s*\n\s*\n+")
CTRL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def unescape(text: str) -> str:
    """Decode HTML entities (twice: scraped text is often double-escaped, '&amp;quot;')."""
    if "&" not in text:
        return text
    out = html.unescape(text)
    if "&" in out and out != text:
        out = html.unescape(out)
    return out


def _nonspace_len(s: str) -> int:
    # str.split() splits on exactly the characters str.isspace() accepts (checked over every
    # code point), in C rather than a Python loop over the characters
    return len("".join(s.split()))


def normalize_space(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = CTRL_RE.sub("", text)
    text = SPACES_RE.sub(" ", text)
    text = "\n".join(line.strip() for line in text.split("\n"))
    text = NEWLINES_RE.sub("\n\n", text)
    return text.strip()


def clean_text(text: str, *, strip_urls: bool = True, strip_mentions: bool = True,
               strip_emoji: bool = True) -> Tuple[str, float]:
    """(cleaned text, removed fraction in [0, 1])."""
    if not text:
        return "", 0.0
    base = unescape(text)
    out = TAG_RE.sub(" ", base)
    out = URLLINK_RE.sub(" ", out)
    if strip_urls:
        out = URL_RE.sub(" ", out)
    if strip_mentions:
        out = MENTION_RE.sub(" ", out)
    if strip_emoji:
        out = EMOJI_RE.sub(" ", out)
    out = normalize_space(out)
    # tidy punctuation left dangling by removals: "  ,", "( )", leading "- "
    out = re.sub(r" +([,.;:!?])", r"\1", out)
    out = re.sub(r"\(\s*\)", "", out)
    out = re.sub(r"^[\s:\-–|,]+", "", out)
    before = _nonspace_len(normalize_space(base))
    after = _nonspace_len(out)
    removed = 0.0 if before == 0 else max(0.0, 1.0 - after / before)
    return out, removed


def normalize_for_hash(text: str) -> str:
    """Case-, punctuation- and whitespace-insensitive form used for duplicate detection."""
    t = text.lower()
    t = re.sub(r"[^\w\s]", " ", t)
    t = re.sub(r"_", " ", t)
    return " ".join(t.split())
