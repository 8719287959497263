"""Reddit: Pushshift / Arctic-Shift style NDJSON (plain, .zst, .gz), submissions and comments.

Submissions (``title``/``selftext``) become ``kind=post``; comments (``body``) ``kind=comment``.
Comments get their parent submission's title and text as ``context`` through the platform join
(a Ray Data groupby on the link id, see :func:`join`), when the submission is in the input.
Quirks handled: ``created_utc`` as int, float or string; ``[deleted]`` authors; ids with or without
``t1_``/``t3_`` prefixes; missing ``is_self`` (inferred); ``edited`` as bool or epoch.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, Optional

import pandas as pd

from . import common, schema
from .common import ReadContext

PLATFORM = "reddit"
JOIN_REQUIRES_AUX = False  # parents are ordinary records (submissions)
CONTEXT_PARENT_CHARS = 1500


class _Bad(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _req_str(obj: Dict[str, Any], key: str, *, allow_none: bool = False) -> str:
    if key not in obj:
        raise _Bad("missing_field", f"missing field '{key}'")
    v = obj[key]
    if v is None and allow_none:
        return ""
    if not isinstance(v, str):
        raise _Bad("bad_type", f"field '{key}' should be a string, got {type(v).__name__}")
    return v


def _opt_int(obj: Dict[str, Any], key: str) -> Optional[int]:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v == v:
        return int(v)
    if isinstance(v, str) and v.strip().lstrip("-").isdigit():
        return int(v.strip())
    raise _Bad("bad_type", f"field '{key}' should be an integer, got {v!r}"[:300])


def _opt_str(obj: Dict[str, Any], key: str) -> str:
    v = obj.get(key)
    if v is None:
        return ""
    if isinstance(v, (dict, list)):
        raise _Bad("bad_type", f"field '{key}' should be a string")
    return str(v)


def _strip_prefix(i: str) -> str:
    return i.split("_", 1)[1] if len(i) > 3 and i[:3] in ("t1_", "t3_") else i


def _convert(obj: Dict[str, Any], uri: str, lineno: int, ctx: ReadContext) -> Dict[str, Any]:
    author = _req_str(obj, "author", allow_none=True)
    if "created_utc" not in obj:
        raise _Bad("missing_field", "missing field 'created_utc'")
    ts = common.epoch_seconds(obj["created_utc"])
    if ts is None:
        raise _Bad("bad_timestamp", f"created_utc not an epoch: {obj['created_utc']!r}"[:300])
    rid = obj.get("id") or obj.get("name")
    if not isinstance(rid, str) or not rid:
        raise _Bad("missing_field" if rid in (None, "") else "bad_type", "missing or non-string field 'id'")
    rid = _strip_prefix(rid)
    subreddit = _opt_str(obj, "subreddit")
    flags = common.author_flags(author, ctx)
    user_id = schema.user_hash(ctx.salt, PLATFORM, author)
    is_comment = "body" in obj and "title" not in obj
    if not is_comment and "title" not in obj:
        raise _Bad("unknown_record", "neither a submission (title) nor a comment (body)")
    extra: Dict[str, Any] = {
        "author_flags": flags,
        "subreddit": subreddit,
        "score": _opt_int(obj, "score"),
        "distinguished": _opt_str(obj, "distinguished"),
        "stickied": bool(obj.get("stickied") or False),
    }
    if is_comment:
        body = _req_str(obj, "body", allow_none=True)
        link_id = _opt_str(obj, "link_id")
        parent_id = _opt_str(obj, "parent_id")
        extra.update({"link_id": link_id, "parent_id": parent_id, "num_comments": None, "is_self": None})
        return schema.record(
            platform=PLATFORM,
            record_id=f"reddit:t1_{rid}",
            user_id=user_id,
            timestamp=ts,
            kind="comment",
            title="",
            text=body,
            context=f"r/{subreddit}" if subreddit else "",
            extra=extra,
            source_file=uri,
            source_line=lineno,
            _key=link_id,
        )
    title = _req_str(obj, "title", allow_none=True)
    selftext = _opt_str(obj, "selftext")
    is_self = obj.get("is_self")
    if is_self is None:
        url = _opt_str(obj, "url")
        is_self = bool(selftext) or "/comments/" in url
    elif not isinstance(is_self, bool):
        raise _Bad("bad_type", f"field 'is_self' should be a boolean, got {is_self!r}"[:300])
    extra.update(
        {
            "link_id": f"t3_{rid}",
            "parent_id": "",
            "num_comments": _opt_int(obj, "num_comments"),
            "is_self": bool(is_self),
            "over_18": bool(obj.get("over_18") or False),
            "removed_by_category": _opt_str(obj, "removed_by_category"),
        }
    )
    return schema.record(
        platform=PLATFORM,
        record_id=f"reddit:t3_{rid}",
        user_id=user_id,
        timestamp=ts,
        kind="post",
        title=title,
        text=selftext,
        context=f"r/{subreddit}" if subreddit else "",
        extra=extra,
        source_file=uri,
        source_line=lineno,
        _key=f"t3_{rid}",
    )


def read(uri: str, ctx: ReadContext) -> Iterator[Dict[str, Any]]:
    for line in common.iter_lines(uri, ctx):
        if line.status == "too_long":
            yield schema.quarantine("line_too_long", platform=PLATFORM, source_file=uri, source_line=line.lineno,
                                    detail=line.detail, raw=line.data)
            continue
        if line.status == "truncated":
            yield schema.quarantine("truncated_file", platform=PLATFORM, source_file=uri, source_line=line.lineno,
                                    detail=line.detail, raw=line.data)
            continue
        if not line.data.strip():
            continue
        obj, reason, detail = common.parse_json_line(line.data)
        if not reason and not isinstance(obj, dict):
            reason, detail = "bad_type", f"line is JSON {type(obj).__name__}, not an object"
        if reason:
            yield schema.quarantine(reason, platform=PLATFORM, source_file=uri, source_line=line.lineno,
                                    detail=detail, raw=line.data)
            continue
        try:
            yield _convert(obj, uri, line.lineno, ctx)
        except _Bad as bad:
            yield schema.quarantine(bad.reason, platform=PLATFORM, source_file=uri, source_line=line.lineno,
                                    detail=bad.detail, raw=line.data)


def _parent_context(title: str, body: str) -> str:
    title = (title or "").strip()
    body = (body or "").strip()
    if body.lower() in ("[removed]", "[deleted]"):
        body = ""
    if len(body) > CONTEXT_PARENT_CHARS:
        body = body[:CONTEXT_PARENT_CHARS].rsplit(" ", 1)[0] + " ..."
    return title + ("\n" + body if body else "")


def join_side(df: pd.DataFrame) -> pd.Series:
    """The rows ``join`` takes its context from: the submissions."""
    return (df["kind"] == "post") & (df["_status"] == "ok")


def join(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of one shuffle partition (many link ids): give every comment its submission's
    title and text as context, after the subreddit."""
    posts = df[join_side(df)]
    if posts.empty:
        return df
    posts = posts.sort_values("record_id").drop_duplicates("_key")
    parent = {k: _parent_context(t, x) for k, t, x in zip(posts["_key"], posts["title"], posts["text"])}
    is_child = (df["kind"] == "comment") & (df["_status"] == "ok") & df["_key"].isin(parent.keys())
    if not is_child.any():
        return df
    df = df.copy()
    df.loc[is_child, "context"] = [
        (c + " | " if c else "") + parent[k]
        for c, k in zip(df.loc[is_child, "context"].astype(str), df.loc[is_child, "_key"])
    ]
    return df
