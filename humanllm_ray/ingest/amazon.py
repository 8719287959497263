"""Amazon: Reviews 2023 JSONL (``rating, title, text, asin, parent_asin, user_id, timestamp(ms),
helpful_vote, verified_purchase``), the 2018 McAuley layout (``overall, reviewText, summary,
reviewerID, asin, unixReviewTime, vote, verified``) and item metadata ``meta_<Category>.jsonl``
(2023: ``parent_asin, title, main_category, categories``; 2018: ``asin, title, category, main_cat``).

The layout is detected per line. Metadata lines are side data (``aux``), joined onto reviews by
``parent_asin`` (2018: ``asin``) with a Ray Data groupby; the item title becomes the review's
``context`` and its category ``extra.category`` (without metadata, the category comes from the
file name, e.g. ``All_Beauty_5.json`` -> ``All Beauty``). The same review repeated for several
variant asins (same user, text and time, same parent) collapses to one record (``rows_merged``).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from typing import Any, Dict, Iterator

import pandas as pd

from . import common, schema
from .common import ReadContext

PLATFORM = "amazon"
JOIN_REQUIRES_AUX = True


def file_category(uri: str) -> str:
    name = posixpath.basename(uri.replace("\\", "/"))
    name = re.sub(r"(\.(jsonl|json|ndjson|gz|zst))+$", "", name, flags=re.IGNORECASE)
    name = re.sub(r"^(meta_|reviews_)", "", name, flags=re.IGNORECASE)
    name = re.sub(r"_(5|core|5core)$", "", name)
    return name.replace("_", " ").strip()


def _is_meta(obj: Dict[str, Any], is_meta_file: bool) -> bool:
    if is_meta_file:
        return True
    if any(k in obj for k in ("rating", "overall", "reviewText", "reviewerID", "user_id")):
        return False
    return any(k in obj for k in ("main_category", "main_cat", "categories", "category", "also_buy", "features"))


def _num(v: Any):
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.replace(",", ""))
        except ValueError:
            return None
    return None


class _Bad(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _meta(obj: Dict[str, Any], uri: str, lineno: int) -> Dict[str, Any]:
    key = obj.get("parent_asin") or obj.get("asin")
    if not isinstance(key, str) or not key:
        raise _Bad("missing_field", "metadata without parent_asin/asin")
    cats = obj.get("categories")
    if cats is None:
        cats = obj.get("category")
    if isinstance(cats, str):
        cats = [cats]
    if not isinstance(cats, list):
        cats = []
    cats = [str(c) for c in cats if c is not None and not isinstance(c, (dict, list))]
    main = obj.get("main_category") or obj.get("main_cat") or ""
    title = obj.get("title") or ""
    if not isinstance(title, str) or not isinstance(main, str):
        raise _Bad("bad_type", "metadata title/main_category should be strings")
    payload = {"title": title.strip(), "main_category": main.strip(), "categories": cats,
               "store": str(obj.get("store") or obj.get("brand") or "")}
    return schema.aux(platform=PLATFORM, key=key, payload=payload, source_file=uri, source_line=lineno,
                      record_id=f"amazon-item:{key}")


def _review(obj: Dict[str, Any], uri: str, lineno: int, ctx: ReadContext, category: str) -> Dict[str, Any]:
    fmt = "2018" if ("reviewerID" in obj or "overall" in obj or "reviewText" in obj) else "2023"
    if fmt == "2023":
        uid_raw, text, title = obj.get("user_id"), obj.get("text"), obj.get("title", "")
        rating_raw, ts_raw = obj.get("rating"), obj.get("timestamp")
        helpful, verified = obj.get("helpful_vote", 0), obj.get("verified_purchase")
        parent = obj.get("parent_asin") or ""
        ts_req = "timestamp"
    else:
        uid_raw, text, title = obj.get("reviewerID"), obj.get("reviewText"), obj.get("summary", "")
        rating_raw, ts_raw = obj.get("overall"), obj.get("unixReviewTime")
        helpful, verified = obj.get("vote", 0), obj.get("verified")
        parent = obj.get("parent_asin") or ""  # not in 2018 data: unknown
        ts_req = "unixReviewTime"
        if ts_raw is None and isinstance(obj.get("reviewTime"), str):
            ts_raw = common.parse_any_date(obj["reviewTime"])
    asin = obj.get("asin")
    for name, v in (("user id", uid_raw), ("asin", asin), ("text", text), (ts_req, ts_raw)):
        if v is None:
            raise _Bad("missing_field", f"missing field '{name}'")
    if not isinstance(uid_raw, str) or not isinstance(asin, str) or not isinstance(text, str):
        raise _Bad("bad_type", "user id, asin and text should be strings")
    if title is None:
        title = ""
    if not isinstance(title, str):
        raise _Bad("bad_type", "title should be a string")
    ts = common.epoch_seconds(ts_raw)  # 2023 ms and 2018 s both land in seconds
    if ts is None:
        raise _Bad("bad_timestamp", f"unparsable timestamp {ts_raw!r}"[:200])
    rating = _num(rating_raw)
    if rating_raw is not None and rating is None:
        raise _Bad("bad_type", f"rating not a number: {rating_raw!r}"[:200])
    hv = _num(helpful)
    flags = common.author_flags(uid_raw, ctx)
    flags["bot"] = False  # Amazon ids are opaque strings, not chosen names
    flags["corporate_handle"] = False
    uid = schema.user_hash(ctx.salt, PLATFORM, uid_raw)
    extra = {
        "author_flags": flags,
        "format": fmt,
        "asin": asin,
        "parent_asin": parent if isinstance(parent, str) else str(parent),
        "helpful_vote": int(hv) if hv is not None else 0,
        "verified": bool(verified) if verified is not None else None,
        "category": category,
        "categories": [],
        "has_images": bool(obj.get("images") or obj.get("image")),
    }
    if isinstance(obj.get("style"), dict):
        extra["style"] = {str(k).strip(": "): str(v).strip() for k, v in obj["style"].items()}
    key = extra["parent_asin"] or asin
    return schema.record(
        platform=PLATFORM,
        record_id=f"amazon:{asin}:{uid}:{ts}",
        user_id=uid,
        timestamp=ts,
        kind="review",
        title=title,
        text=text,
        context="",
        item_id=asin,
        rating=rating,
        extra=extra,
        source_file=uri,
        source_line=lineno,
        _key=key,
    )


def read(uri: str, ctx: ReadContext) -> Iterator[Dict[str, Any]]:
    base = posixpath.basename(uri.replace("\\", "/")).lower()
    is_meta_file = base.startswith("meta_") or base.startswith("meta-")
    category = file_category(uri)
    for line in common.iter_lines(uri, ctx):
        if line.status != "ok":
            reason = "line_too_long" if line.status == "too_long" else "truncated_file"
            yield schema.quarantine(reason, platform=PLATFORM, source_file=uri, source_line=line.lineno,
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
            if _is_meta(obj, is_meta_file):
                yield _meta(obj, uri, line.lineno)
            else:
                yield _review(obj, uri, line.lineno, ctx, category)
        except _Bad as bad:
            yield schema.quarantine(bad.reason, platform=PLATFORM, source_file=uri, source_line=line.lineno,
                                    detail=bad.detail, raw=line.data)


def join_side(df: pd.DataFrame) -> pd.Series:
    """The rows ``join`` takes its side data from: item metadata."""
    return df["_status"] == "aux"


def join(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of one shuffle partition (many items): give every review its item's title
    (as context) and category."""
    aux = df[join_side(df)].sort_values("source_line").drop_duplicates("_key")
    if aux.empty:
        return df
    info = {k: json.loads(p or "{}") for k, p in zip(aux["_key"], aux["_payload"])}
    recs = (df["_status"] == "ok") & df["_key"].isin(info.keys())
    if not recs.any():
        return df
    df = df.copy()
    extras, contexts = [], []
    for e, k, c in zip(df.loc[recs, "extra"], df.loc[recs, "_key"], df.loc[recs, "context"]):
        it = info[k]
        d = json.loads(e or "{}")
        cats = it.get("categories") or []
        d["category"] = it.get("main_category") or (cats[0] if cats else "") or d.get("category", "")
        d["categories"] = cats
        if it.get("store"):
            d["store"] = it["store"]
        extras.append(schema.dumps(d))
        contexts.append(it.get("title") or c)
    df.loc[recs, "extra"] = extras
    df.loc[recs, "context"] = contexts
    return df


# ---- variant duplicates: same (user, time, text) under one parent item


def dedup_key(df: pd.DataFrame) -> pd.Series:
    return (
        df["user_id"].astype(str)
        + "|"
        + df["timestamp"].astype(str)
        + "|"
        + df["text"].astype(str).map(lambda t: hashlib.sha1(t.strip().encode("utf-8", "replace")).hexdigest()[:16])
    )


def dedup(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of one shuffle partition, ``_key`` = dedup key (user, time, text). Within each set of
    copies keep the first (by record_id) per parent_asin; copies whose parent is unknown (2018
    data) fold into the first kept record. Collapsed rows get ``_status = merged``."""
    ok = df["_status"] == "ok"
    dup = ok & df["_key"].duplicated(keep=False)
    if not dup.any():
        return df
    df = df.copy()
    sub = df[dup].sort_values(["_key", "record_id"])
    parents = [json.loads(e or "{}").get("parent_asin") or "" for e in sub["extra"]]
    status, detail = {}, {}
    variants: Dict[Any, list] = {}
    cur_key, first, by_parent = None, None, {}
    for idx, key, rid, item, parent in zip(sub.index, sub["_key"], sub["record_id"], sub["item_id"], parents):
        if key != cur_key:
            cur_key, first, by_parent = key, None, {}
        if first is None:
            first, by_parent[parent] = idx, idx
            continue
        target = by_parent.get(parent) if parent else first
        if target is None:
            by_parent[parent] = idx
            continue
        status[idx] = "merged"
        detail[idx] = f"same review as {df.at[target, 'record_id']}"
        variants.setdefault(target, []).append(item)
    merged_idx = list(status)
    df.loc[merged_idx, "_status"] = "merged"
    df.loc[merged_idx, "_reason"] = "variant_duplicate"
    df.loc[merged_idx, "_detail"] = [detail[i] for i in merged_idx]
    for idx, vs in variants.items():
        d = json.loads(df.at[idx, "extra"] or "{}")
        d["variant_asins"] = sorted(set(vs))
        df.at[idx, "extra"] = schema.dumps(d)
    return df
