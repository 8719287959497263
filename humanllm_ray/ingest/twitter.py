"""Twitter: Sentiment140 CSV, tweet JSON (JSONL v1.1/v2 objects or a search response with
``statuses``), and the two-table layout (a users table ``user, id, followers, description,
location`` plus a tweets table ``user, id, tweet, date``).

Format is detected per file from its first bytes. Users-table rows are side data (``aux``):
the platform join (a Ray Data groupby on the pseudonymous user id) copies the author
description onto that user's tweets, where curation looks for corporate accounts.
"""

from __future__ import annotations

import csv
import json
from typing import Any, Dict, Iterator, List, Optional

import pandas as pd

from . import common, schema
from .common import ReadContext

PLATFORM = "twitter"
JOIN_REQUIRES_AUX = True  # only worth a shuffle when a users table was read

S140_HEADERS = (
    ["0", "1", "2", "3", "4", "5"],
    ["target", "ids", "date", "flag", "user", "text"],
    ["polarity", "id", "date", "query", "user", "text"],
    ["sentiment", "id", "date", "query", "user", "text"],
)
USER_COLS = ("user", "username", "screen_name", "author", "handle", "user_name")
TEXT_COLS = ("tweet", "text", "full_text", "content")
ID_COLS = ("id", "id_str", "tweet_id", "status_id")
DATE_COLS = ("date", "created_at", "timestamp", "time", "datetime")


def _q(reason, uri, lineno, detail="", raw=""):
    return schema.quarantine(reason, platform=PLATFORM, source_file=uri, source_line=lineno, detail=detail, raw=raw)


def _csv_row(text: str) -> Optional[List[str]]:
    try:
        rows = list(csv.reader([text]))
    except csv.Error:
        return None
    return rows[0] if len(rows) == 1 else None


def _tweet_record(*, uri, lineno, handle, tid, text, ts, ctx, extra) -> Dict[str, Any]:
    extra = dict(extra)
    extra["author_flags"] = common.author_flags(handle, ctx)
    uid = schema.user_hash(ctx.salt, PLATFORM, handle)
    return schema.record(
        platform=PLATFORM,
        record_id=f"twitter:{tid}",
        user_id=uid,
        timestamp=ts,
        kind="tweet",
        title="",
        text=text,
        context="",
        extra=extra,
        source_file=uri,
        source_line=lineno,
        _key=uid,
    )


# --------------------------------------------------------------------------- Sentiment140


def _read_s140(uri: str, ctx: ReadContext, has_header: bool) -> Iterator[Dict[str, Any]]:
    for line in common.iter_lines(uri, ctx):
        if line.status != "ok":
            reason = "line_too_long" if line.status == "too_long" else "truncated_file"
            yield _q(reason, uri, line.lineno, line.detail, line.data)
            continue
        if has_header and line.lineno == 1:
            continue
        if not line.data.strip():
            continue
        text, enc = common.decode_legacy(line.data)
        row = _csv_row(text.lstrip("\ufeff"))
        if row is None or len(row) != 6:
            yield _q("bad_csv", uri, line.lineno, f"expected 6 CSV fields, got {len(row) if row else 'unparsable'}", text)
            continue
        polarity, tid, date, query, user, body = row
        if not tid.strip().isdigit():
            yield _q("bad_type", uri, line.lineno, f"tweet id not numeric: {tid!r}"[:200], text)
            continue
        if not user.strip():
            yield _q("missing_field", uri, line.lineno, "empty user", text)
            continue
        ts = common.parse_twitter_date(date)
        if ts is None:
            yield _q("bad_timestamp", uri, line.lineno, f"unparsable date {date!r}"[:200], text)
            continue
        extra: Dict[str, Any] = {"polarity": polarity, "query": query, "format": "sentiment140"}
        if enc != "utf-8":
            extra["encoding"] = enc
        yield _tweet_record(uri=uri, lineno=line.lineno, handle=user.strip(), tid=tid.strip(), text=body, ts=ts,
                            ctx=ctx, extra=extra)


# --------------------------------------------------------------------------- tables


def _pick(header: List[str], names) -> Optional[int]:
    low = [h.strip().lower() for h in header]
    for n in names:
        if n in low:
            return low.index(n)
    return None


def _read_table(uri: str, ctx: ReadContext, kind: str) -> Iterator[Dict[str, Any]]:
    csv.field_size_limit(max(ctx.max_line_bytes, 131072))
    stream = common.open_text_stream(uri, ctx)
    reader = csv.reader(stream)
    try:
        header = next(reader)
    except (StopIteration, csv.Error, common.TruncatedInput) as exc:
        yield _q("bad_csv", uri, 1, f"no readable header: {exc}")
        return
    header = [h.lstrip("\ufeff") for h in header]
    iu, ii, it, idt = _pick(header, USER_COLS), _pick(header, ID_COLS), _pick(header, TEXT_COLS), _pick(header, DATE_COLS)
    idesc, iloc, ifol = _pick(header, ("description", "bio")), _pick(header, ("location",)), _pick(header, ("followers", "followers_count"))
    last = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            yield _q("bad_csv", uri, reader.line_num, str(exc))
            last = reader.line_num
            continue
        except common.TruncatedInput as exc:
            yield _q("truncated_file", uri, last + 1, str(exc))
            break
        lineno = reader.line_num
        last = lineno
        if not row or all(not c.strip() for c in row):
            continue
        row = [common.fix_surrogates(c)[0] for c in row]
        raw = ",".join(row)
        if len(row) != len(header):
            yield _q("bad_csv", uri, lineno, f"expected {len(header)} fields, got {len(row)}", raw)
            continue
        handle = row[iu].strip() if iu is not None else ""
        if not handle:
            yield _q("missing_field", uri, lineno, "empty user", raw)
            continue
        if kind == "users":
            payload = {
                "description": row[idesc] if idesc is not None else "",
                "location": row[iloc] if iloc is not None else "",
                "followers": row[ifol] if ifol is not None else "",
            }
            yield schema.aux(platform=PLATFORM, key=schema.user_hash(ctx.salt, PLATFORM, handle), payload=payload,
                             source_file=uri, source_line=lineno,
                             record_id=f"twitter-user:{schema.user_hash(ctx.salt, PLATFORM, handle)}")
            continue
        tid = row[ii].strip() if ii is not None else ""
        body = row[it] if it is not None else None
        if body is None or not tid:
            yield _q("missing_field", uri, lineno, "missing tweet id or text", raw)
            continue
        ts = common.parse_twitter_date(row[idt]) if idt is not None else None
        if ts is None:
            yield _q("bad_timestamp", uri, lineno, f"unparsable date {row[idt] if idt is not None else None!r}"[:200], raw)
            continue
        yield _tweet_record(uri=uri, lineno=lineno, handle=handle, tid=tid, text=body, ts=ts, ctx=ctx,
                            extra={"format": "tweets_table"})


# --------------------------------------------------------------------------- JSON


def _from_json(obj: Any, uri: str, lineno: int, ctx: ReadContext) -> Dict[str, Any]:
    raw = obj
    if not isinstance(obj, dict):
        return _q("bad_type", uri, lineno, f"tweet is JSON {type(obj).__name__}, not an object", raw)
    tid = obj.get("id_str") or obj.get("id")
    if tid is None or isinstance(tid, (dict, list, bool)):
        return _q("missing_field", uri, lineno, "missing field 'id'/'id_str'", raw)
    ext = obj.get("extended_tweet") if isinstance(obj.get("extended_tweet"), dict) else {}
    text = ext.get("full_text") or obj.get("full_text") or obj.get("text")
    if text is None:
        return _q("missing_field", uri, lineno, "missing field 'text'/'full_text'", raw)
    if not isinstance(text, str):
        return _q("bad_type", uri, lineno, "field 'text' should be a string", raw)
    user = obj.get("user")
    extra: Dict[str, Any] = {"format": "tweet_json"}
    if isinstance(user, dict):
        handle = user.get("screen_name") or user.get("id_str") or str(user.get("id") or "")
        if user.get("description"):
            extra["author_description"] = str(user.get("description"))
        if user.get("followers_count") is not None:
            extra["followers"] = user.get("followers_count")
    else:
        handle = str(obj.get("author_id") or obj.get("user_id") or obj.get("screen_name") or "")
    if not handle:
        return _q("missing_field", uri, lineno, "missing field 'user'", raw)
    created = obj.get("created_at")
    ts = common.parse_twitter_date(created) if isinstance(created, str) else common.epoch_seconds(created)
    if ts is None:
        if "timestamp_ms" in obj:
            ts = common.epoch_seconds(obj.get("timestamp_ms"))
        if ts is None:
            return _q("bad_timestamp" if created is not None else "missing_field", uri, lineno,
                      f"unparsable created_at {created!r}"[:200], raw)
    if obj.get("lang"):
        extra["lang"] = str(obj.get("lang"))
    if isinstance(obj.get("retweeted_status"), dict):
        extra["is_retweet"] = True
    if obj.get("in_reply_to_status_id_str") or obj.get("in_reply_to_status_id"):
        extra["in_reply_to"] = str(obj.get("in_reply_to_status_id_str") or obj.get("in_reply_to_status_id"))
    return _tweet_record(uri=uri, lineno=lineno, handle=str(handle), tid=str(tid), text=text, ts=ts, ctx=ctx,
                         extra=extra)


def _read_jsonl(uri: str, ctx: ReadContext) -> Iterator[Dict[str, Any]]:
    for line in common.iter_lines(uri, ctx):
        if line.status != "ok":
            reason = "line_too_long" if line.status == "too_long" else "truncated_file"
            yield _q(reason, uri, line.lineno, line.detail, line.data)
            continue
        if not line.data.strip():
            continue
        obj, reason, detail = common.parse_json_line(line.data)
        if reason:
            yield _q(reason, uri, line.lineno, detail, line.data)
            continue
        yield _from_json(obj, uri, line.lineno, ctx)


def _read_json_document(uri: str, ctx: ReadContext) -> Iterator[Dict[str, Any]]:
    """A whole JSON document: {"statuses": [...]}, {"data": [...]} or a list of tweets.
    source_line is the 1-based position of the tweet in that list."""
    try:
        data = common.read_document(uri, ctx)
    except common.ReadError as exc:
        yield _q("file_too_large", uri, 0, str(exc))
        return
    except common.TruncatedInput as exc:
        yield _q("truncated_file", uri, 0, str(exc))
        return
    obj, reason, detail = common.parse_json_line(data)
    if reason:
        yield _q(reason, uri, 0, detail, data[:4000])
        return
    items = None
    if isinstance(obj, list):
        items = obj
    elif isinstance(obj, dict):
        for k in ("statuses", "data", "tweets"):
            if isinstance(obj.get(k), list):
                items = obj[k]
                break
        if items is None and ("text" in obj or "full_text" in obj):
            items = [obj]
    if items is None:
        yield _q("unknown_format", uri, 0, "JSON document without a list of tweets", data[:4000])
        return
    for i, t in enumerate(items, start=1):
        yield _from_json(t, uri, i, ctx)


# --------------------------------------------------------------------------- dispatch


def sniff(head: bytes) -> str:
    text = head.decode("utf-8", "replace").lstrip("\ufeff")
    stripped = text.lstrip()
    if not stripped:
        return "empty"
    first_line = text.split("\n", 1)[0].rstrip("\r")
    if stripped[0] in "[{":
        try:
            if isinstance(json.loads(first_line), dict):
                return "jsonl"
        except ValueError:
            pass
        return "json"
    row = _csv_row(first_line)
    if not row:
        return "unknown"
    low = [c.strip().lower() for c in row]
    if low in S140_HEADERS:
        return "s140_header"
    if len(row) == 6 and row[0].strip() in ("0", "2", "4"):
        return "s140"
    if _pick(row, USER_COLS) is not None and _pick(row, TEXT_COLS) is not None:
        return "tweets_table"
    if _pick(row, USER_COLS) is not None and (_pick(row, ("description", "bio")) is not None
                                              or _pick(row, ("followers", "followers_count")) is not None):
        return "users_table"
    return "unknown"


def read(uri: str, ctx: ReadContext) -> Iterator[Dict[str, Any]]:
    fmt = sniff(common.peek(uri, ctx))
    if fmt == "empty":
        return
    if fmt == "s140":
        yield from _read_s140(uri, ctx, has_header=False)
    elif fmt == "s140_header":
        yield from _read_s140(uri, ctx, has_header=True)
    elif fmt == "jsonl":
        yield from _read_jsonl(uri, ctx)
    elif fmt == "json":
        yield from _read_json_document(uri, ctx)
    elif fmt == "tweets_table":
        yield from _read_table(uri, ctx, "tweets")
    elif fmt == "users_table":
        yield from _read_table(uri, ctx, "users")
    else:
        yield _q("unknown_format", uri, 0, "not Sentiment140 CSV, tweet JSON or a users/tweets table",
                 common.peek(uri, ctx, 400))


def join_side(df: pd.DataFrame) -> pd.Series:
    """The rows ``join`` takes its side data from: users-table rows."""
    return df["_status"] == "aux"


def join(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of one shuffle partition (many users): copy the users-table description,
    location and follower count onto each user's tweets."""
    aux = df[join_side(df)].sort_values("source_line").drop_duplicates("_key")
    if aux.empty:
        return df
    info = {k: json.loads(p or "{}") for k, p in zip(aux["_key"], aux["_payload"])}
    recs = (df["_status"] == "ok") & df["_key"].isin(info.keys())
    if not recs.any():
        return df
    df = df.copy()
    new_extra = []
    for e, k in zip(df.loc[recs, "extra"], df.loc[recs, "_key"]):
        d = json.loads(e or "{}")
        u = info[k]
        if u.get("description") and not d.get("author_description"):
            d["author_description"] = u["description"]
        if u.get("location"):
            d.setdefault("location", u["location"])
        if u.get("followers") not in (None, ""):
            d.setdefault("followers", u["followers"])
        new_extra.append(schema.dumps(d))
    df.loc[recs, "extra"] = new_extra
    return df
