"""Per-user chronological timelines and the user-level filter.

Records that survived the record filters and dedup are shuffled by ``user_id``
(``by_key_partition``, i.e. a groupby on the user); per user they are sorted by
(timestamp, record_id). A user with fewer than ``curate.min_records_per_user`` qualified records
is dropped whole (``too_few_records_user``; the reference keeps users with >= 6 Reddit /
> 5 Twitter records), and so is one whose records look automated (``bot_like_user``: bursts
of posts seconds apart, or most posts opening with the same template; see ``bot_like``). Kept timelines are cut into chunks of at most ``timeline_max_tokens``
approximate tokens (chars / 4 of title + text + context); a single longer record gets a chunk
of its own.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Dict, List, Optional

import pyarrow as pa

from ..stage import QUARANTINE_COLUMNS

RECORD_STRUCT = pa.struct(
    [
        ("record_id", pa.string()),
        ("timestamp", pa.int64()),
        ("kind", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("context", pa.string()),
        ("item_id", pa.string()),
        ("rating", pa.float64()),
        ("extra", pa.string()),
    ]
)
TIMELINE_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("platform", pa.string()),
        ("chunk", pa.int64()),
        ("n_records", pa.int64()),
        ("records", pa.list_(RECORD_STRUCT)),
    ]
)
QROW_STRUCT = pa.struct([(c, pa.int64() if c == "source_line" else pa.string()) for c in QUARANTINE_COLUMNS])
# What the grouping step emits: timelines, plus one row per rejected user carrying its
# quarantine rows (_reason != "").
TIMELINE_WORK_SCHEMA = pa.schema(
    list(TIMELINE_SCHEMA) + [pa.field("_reason", pa.string()), pa.field("_qrows", pa.list_(QROW_STRUCT))]
)
RECORD_FIELDS = [f.name for f in RECORD_STRUCT]


def approx_tokens(rec: Dict[str, Any]) -> int:
    return (len(rec.get("title") or "") + len(rec.get("text") or "") + len(rec.get("context") or "")) // 4 + 1


def chunk_records(records: List[Dict[str, Any]], max_tokens: int) -> List[List[Dict[str, Any]]]:
    chunks: List[List[Dict[str, Any]]] = []
    cur: List[Dict[str, Any]] = []
    used = 0
    for r in records:
        t = approx_tokens(r)
        if cur and used + t > max_tokens:
            chunks.append(cur)
            cur, used = [], 0
        cur.append(r)
        used += t
    if cur:
        chunks.append(cur)
    return chunks


_DIGITS = re.compile(r"\d+")


def bot_like(platform: str, timestamps: List[int], texts: List[str], cfg: Any) -> Optional[str]:
    """Why a user's qualified records look automated (see CurateConfig.bot_*), or None.

    ``timestamps`` are sorted epoch seconds; ``texts`` the records' texts in the same order.
    """
    if cfg is None or len(timestamps) < max(2, int(cfg.bot_min_records)):
        return None
    if cfg.bot_burst_fraction > 0 and platform in set(cfg.bot_burst_platforms):
        gaps = [b - a for a, b in zip(timestamps, timestamps[1:])]
        fast = sum(1 for g in gaps if g < cfg.bot_burst_gap_s)
        if fast / len(gaps) >= cfg.bot_burst_fraction:
            return f"{fast}/{len(gaps)} gaps between posts under {cfg.bot_burst_gap_s}s"
    if cfg.bot_template_fraction > 0 and cfg.bot_template_chars > 0:
        openings = Counter(_DIGITS.sub("#", (t or "").strip().lower())[: cfg.bot_template_chars] for t in texts)
        opening, n = openings.most_common(1)[0]
        if len(opening) >= cfg.bot_template_chars and n / len(texts) >= cfg.bot_template_fraction:
            return f"{n}/{len(texts)} records open with the same {cfg.bot_template_chars} characters: {opening!r}"
    return None


def _reject_user(rows, user_id, platform, g, reason: str, detail: str) -> None:
    """One work row carrying the quarantine rows of every record of a rejected user."""
    q = [
        {
            "stage": "curate", "reason": reason, "detail": detail, "platform": platform,
            "source_file": str(sf), "source_line": int(sl), "record_id": str(rid), "user_id": str(user_id), "raw": "",
        }
        for rid, sf, sl in zip(g["record_id"], g["source_file"], g["source_line"])
    ]
    for k, v in (("user_id", user_id), ("platform", platform), ("chunk", -1), ("n_records", len(g)),
                 ("records", []), ("_reason", reason), ("_qrows", q)):
        rows[k].append(v)


def build_fn(min_records: int, max_tokens: int, bot_cfg: Any = None):
    def fn(df) -> pa.Table:
        import pandas as pd

        rows: Dict[str, List[Any]] = {f.name: [] for f in TIMELINE_WORK_SCHEMA}
        if df.empty:
            return TIMELINE_WORK_SCHEMA.empty_table()
        df = df.sort_values(["user_id", "timestamp", "record_id"])
        for user_id, g in df.groupby("user_id", sort=False):
            platform = str(g["platform"].iloc[0])
            n = len(g)
            if n < min_records:
                _reject_user(rows, user_id, platform, g, "too_few_records_user",
                             f"user has {n} qualified records < {min_records}")
                continue
            why = bot_like(platform, [int(t) for t in g["timestamp"]], [str(t or "") for t in g["text"]], bot_cfg)
            if why:
                _reject_user(rows, user_id, platform, g, "bot_like_user", why)
                continue
            recs = []
            for t in g[RECORD_FIELDS].itertuples(index=False, name=None):
                d = dict(zip(RECORD_FIELDS, t))
                d["timestamp"] = int(d["timestamp"])
                rating = d.get("rating")
                d["rating"] = None if rating is None or pd.isna(rating) else float(rating)
                for k in ("record_id", "kind", "title", "text", "context", "item_id", "extra"):
                    d[k] = "" if d[k] is None or (not isinstance(d[k], str) and pd.isna(d[k])) else str(d[k])
                recs.append(d)
            for i, ch in enumerate(chunk_records(recs, max_tokens)):
                for k, v in (("user_id", user_id), ("platform", platform), ("chunk", i), ("n_records", len(ch)),
                             ("records", ch), ("_reason", ""), ("_qrows", [])):
                    rows[k].append(v)
        return pa.table(rows, schema=TIMELINE_WORK_SCHEMA)

    return fn


def explode_qrows(batch: pa.Table) -> pa.Table:
    """Rejected-user rows -> their quarantine rows."""
    q = batch.column("_qrows").combine_chunks().flatten()  # struct array of all quarantine rows
    return pa.table({c: q.field(c) for c in QUARANTINE_COLUMNS})


def strip_work_columns(batch: pa.Table) -> pa.Table:
    return batch.select(TIMELINE_SCHEMA.names).cast(TIMELINE_SCHEMA)
