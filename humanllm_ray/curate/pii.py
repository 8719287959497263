"""PII scrubbing: typed placeholders instead of contact details and handles.

``<EMAIL>``, ``<PHONE>``, ``<URL>``, ``<USER>`` (``@handle``, ``u/handle``), ``<ADDRESS>`` (a house
number followed by a street name and a street type). Runs after cleaning, so URLs and
@mentions normally are already gone; the URL/handle rules catch what cleaning kept (e.g. when
``strip_urls`` is off, or ``u/name`` references on Reddit).
"""

from __future__ import annotations

import re
from typing import Dict, Tuple

EMAIL_RE = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
# Candidate phone numbers; accepted only with 9-15 digits (dates and years have fewer).
PHONE_RE = re.compile(
    r"(?<![\w/.-])(?:\+?\d{1,3}[\s.-]?)?(?:\(\d{2,5}\)[\s.-]?|\d{2,5}[\s.-])\d{2,4}[\s.-]?\d{3,5}(?![\w/-])"
)
URL_RE = re.compile(r"(?:\bhttps?://|\bwww\.)[^\s<>\"']+", re.IGNORECASE)
HANDLE_RE = re.compile(r"(?<![\w@])@[A-Za-z0-9_]{2,30}\b")
REDDIT_USER_RE = re.compile(r"(?<![\w/])/?u/[A-Za-z0-9_-]{3,20}\b")
STREET_TYPES = (
    "Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|"
    "Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq"
)
ADDRESS_RE = re.compile(
    r"\b\d{1,5}(?:[A-Za-z])?\s+(?:[NSEW]\.?\s+)?(?:[A-Z][a-z]+\.?\s+){1,3}(?:" + STREET_TYPES + r")\b\.?"
    r"(?:,?\s+(?:Apt|Apartment|Unit|Suite|#)\.?\s*\w+)?"
)


def _phone(m: "re.Match[str]") -> str:
    digits = sum(ch.isdigit() for ch in m.group(0))
    return "<PHONE>" if 9 <= digits <= 15 else m.group(0)


def scrub(text: str) -> Tuple[str, Dict[str, int]]:
    """(scrubbed text, {placeholder: count})."""
    counts: Dict[str, int] = {}
    if not text:
        return text, counts

    def sub(regex, repl, s):
        def f(m):
            r = repl(m) if callable(repl) else repl
            if r != m.group(0):
                counts[r] = counts.get(r, 0) + 1
            return r

        return regex.sub(f, s)

    text = sub(EMAIL_RE, "<EMAIL>", text)
    text = sub(URL_RE, "<URL>", text)
    text = sub(HANDLE_RE, "<USER>", text)
    text = sub(REDDIT_USER_RE, "<USER>", text)
    text = sub(ADDRESS_RE, "<ADDRESS>", text)
    text = sub(PHONE_RE, _phone, text)
    return text, counts
