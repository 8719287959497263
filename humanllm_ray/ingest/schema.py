"""The common LogRecord schema every platform reader produces.

One row = one thing a person wrote, with a pseudonymous author id:

=============  =========  ==================================================================
column         type       meaning
=============  =========  ==================================================================
platform       string     reddit | twitter | blogger | amazon
record_id      string     platform-unique id, e.g. ``reddit:t1_abc``, ``twitter:1467810369``,
                          ``blogger:1234567:0003``, ``amazon:B00X:1f2e...:1600000000``
user_id        string     sha256(salt + platform + raw handle)[:16]; the raw handle never
                          leaves ingest (flags that need it are in ``extra.author_flags``)
timestamp      int64      epoch seconds, UTC
kind           string     post | comment | review | tweet
title          string     submission / review title ("" when none)
text           string     body text (raw: HTML entities, URLs, @mentions still in)
context        string     what the text answers or is about: for a reddit comment
                          ``r/<sub> | <parent title>\\n<parent text>``; for a submission
                          ``r/<sub>``; for an Amazon review the item title; else ""
item_id        string     Amazon asin; "" when none
rating         float64    Amazon star rating; null when none
extra          string     JSON object of platform fields the filters need (see below)
source_file    string     URI of the file the record came from
source_line    int64      1-based line (or ``<post>`` line for blogs) in that file
=============  =========  ==================================================================

``extra`` keys: always ``author_flags`` = {deleted, bot, corporate_handle} (computed from the raw
handle before hashing). reddit: ``subreddit, score, num_comments, is_self, parent_id, link_id,
distinguished``; twitter: ``polarity`` (Sentiment140), ``author_description``, ``lang`` when known;
blogger: ``gender, age, industry, sign``; amazon: ``category, categories, helpful_vote, verified,
parent_asin, asin, format`` (``2018`` or ``2023``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Dict, Iterable, List, Optional

import pyarrow as pa

LOG_RECORD_FIELDS = [
    pa.field("platform", pa.string()),
    pa.field("record_id", pa.string()),
    pa.field("user_id", pa.string()),
    pa.field("timestamp", pa.int64()),
    pa.field("kind", pa.string()),
    pa.field("title", pa.string()),
    pa.field("text", pa.string()),
    pa.field("context", pa.string()),
    pa.field("item_id", pa.string()),
    pa.field("rating", pa.float64()),
    pa.field("extra", pa.string()),
    pa.field("source_file", pa.string()),
    pa.field("source_line", pa.int64()),
]
LOG_RECORD_SCHEMA = pa.schema(LOG_RECORD_FIELDS)
LOG_RECORD_COLUMNS = [f.name for f in LOG_RECORD_FIELDS]

KINDS = ("post", "comment", "review", "tweet")
PLATFORMS = ("reddit", "twitter", "blogger", "amazon")

# Internal schema of what readers emit: a LogRecord plus routing columns.
#   _status: ok (a record) | quarantine (a rejected input unit) | aux (side data to join:
#            Amazon item metadata, Twitter user table rows) | merged (collapsed into another row)
#   _reason/_detail/_raw: quarantine reason code, message and raw input excerpt
#   _key:    join key for the platform's join step (reddit link id, amazon item id, ...)
#   _payload: JSON for aux rows
READ_FIELDS = LOG_RECORD_FIELDS + [
    pa.field("_status", pa.string()),
    pa.field("_reason", pa.string()),
    pa.field("_detail", pa.string()),
    pa.field("_raw", pa.string()),
    pa.field("_key", pa.string()),
    pa.field("_payload", pa.string()),
]
READ_SCHEMA = pa.schema(READ_FIELDS)
READ_COLUMNS = [f.name for f in READ_FIELDS]

_DEFAULTS: Dict[str, Any] = {
    "platform": "",
    "record_id": "",
    "user_id": "",
    "timestamp": 0,
    "kind": "",
    "title": "",
    "text": "",
    "context": "",
    "item_id": "",
    "rating": None,
    "extra": "{}",
    "source_file": "",
    "source_line": -1,
    "_status": "ok",
    "_reason": "",
    "_detail": "",
    "_raw": "",
    "_key": "",
    "_payload": "",
}


def user_hash(salt: str, platform: str, handle: str) -> str:
    """Pseudonymous, stable user id: sha256(salt + platform + raw handle)[:16]."""
    return hashlib.sha256(f"{salt}{platform}{handle}".encode("utf-8", "surrogatepass")).hexdigest()[:16]


def to_table(rows: Iterable[Dict[str, Any]]) -> pa.Table:
    """Reader rows (dicts with any subset of READ_COLUMNS) -> a table with READ_SCHEMA."""
    cols: Dict[str, List[Any]] = {c: [] for c in READ_COLUMNS}
    for r in rows:
        for c in READ_COLUMNS:
            v = r.get(c, _DEFAULTS[c])
            if v is None and c != "rating":
                v = _DEFAULTS[c]
            cols[c].append(v)
    return pa.table(cols, schema=READ_SCHEMA)


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, default=str)


def empty_read_table() -> pa.Table:
    return READ_SCHEMA.empty_table()


def record(**kw: Any) -> Dict[str, Any]:
    """A record row; ``extra`` may be given as a dict."""
    extra = kw.get("extra")
    if isinstance(extra, dict):
        kw["extra"] = dumps(extra)
    kw.setdefault("_status", "ok")
    return kw


def quarantine(
    reason: str,
    *,
    platform: str,
    source_file: str,
    source_line: int,
    detail: str = "",
    raw: Any = "",
    record_id: str = "",
    user_id: str = "",
) -> Dict[str, Any]:
    if isinstance(raw, (bytes, bytearray)):
        raw = bytes(raw[:4000]).decode("utf-8", "replace")
    elif not isinstance(raw, str):
        raw = dumps(raw)
    return {
        "platform": platform,
        "record_id": record_id,
        "user_id": user_id,
        "source_file": source_file,
        "source_line": int(source_line),
        "_status": "quarantine",
        "_reason": reason,
        "_detail": str(detail)[:2000],
        "_raw": raw[:4000],
    }


def aux(*, platform: str, key: str, payload: Dict[str, Any], source_file: str, source_line: int,
        record_id: str = "") -> Dict[str, Any]:
    return {
        "platform": platform,
        "record_id": record_id,
        "_status": "aux",
        "_key": key,
        "_payload": dumps(payload),
        "source_file": source_file,
        "source_line": int(source_line),
    }


def opt_str(v: Optional[Any]) -> str:
    return "" if v is None else str(v)
