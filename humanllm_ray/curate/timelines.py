"""Per-user chronological timelines and the user-level filter.

Records that survived the record filters and dedup are shuffled by ``user_id``
(``by_key_partition``, i.e. a groupby on the user); per user they are sorted by
(timestamp, record_id). A user with fewer than ``curate.min_records_per_user`` qualified records
is dropped whole (``too_few_records_user``; the reference keeps users with >= 6 Reddit /
> 5 Twitter records), and so is one whose records look automated (``bot_like_user``: bursts
of posts seconds apart, or most posts opening with the same template; see ``bot_like``).
Kept timelines are cut into chunks of at most ``timeline_max_tokens`` approximate tokens
(chars / 4 of title + text + context); a single longer record gets a chunk of its own.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, List, Optional, Tuple

import pyarrow as pa

from ..stage import quarantine_schema

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
# What the shuffle carries per qualified record: the timeline fields plus what a quarantine
# row of a rejected user needs.
INPUT_COLUMNS = ["user_id", "platform", "record_id", "timestamp", "kind", "title", "text", "context", "item_id",
                 "rating", "extra", "source_file", "source_line"]
RECORD_FIELDS = [f.name for f in RECORD_STRUCT]
QUARANTINE_SCHEMA = quarantine_schema()


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


def build_tables(tbl: pa.Table, min_records: int, max_tokens: int,
                 bot_cfg: Any = None) -> Tuple[pa.Table, pa.Table]:
    """One shuffle partition's qualified records (every record of each user it holds) ->
    (timelines as ``TIMELINE_SCHEMA`` rows, quarantine rows of the rejected users' records).

    Columnar on purpose: the partition's sort order is computed as indices, user boundaries and
    token counts in numpy, and the records list is assembled from offsets, taking the kept rows
    one column at a time. A partition then costs about its Arrow size plus one column in
    flight, not a sorted copy of the whole partition, a filtered copy of that and a Python
    object per record (the timelines step held the 1M-record run's peak: bench/README.md,
    curate Round 8). Only the per-user decisions (too few records, ``bot_like``, chunk cuts)
    loop in Python, over users and integer token counts; ``bot_like`` gets one user's texts at
    a time."""
    import numpy as np
    import pyarrow.compute as pc

    if tbl.num_rows == 0:
        return TIMELINE_SCHEMA.empty_table(), QUARANTINE_SCHEMA.empty_table()
    n = tbl.num_rows
    order = pc.sort_indices(tbl.select(["user_id", "timestamp", "record_id"]),
                            sort_keys=[("user_id", "ascending"), ("timestamp", "ascending"),
                                       ("record_id", "ascending")])

    def sorted_col(name: str) -> pa.Array:
        col = tbl.column(name).take(order)
        return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col

    users = pc.fill_null(sorted_col("user_id"), "")
    if n > 1:
        change = pc.not_equal(users.slice(1), users.slice(0, n - 1)).to_numpy(zero_copy_only=False)
        starts = np.concatenate([[0], np.flatnonzero(change) + 1]).astype(np.int64)
    else:
        starts = np.zeros(1, np.int64)
    ends = np.append(starts[1:], n)
    first_rows = order.take(pa.array(starts))
    platforms = pc.fill_null(tbl.column("platform").take(first_rows), "").to_pylist()
    user_ids = users.take(pa.array(starts)).to_pylist()
    del users
    ts = pc.fill_null(sorted_col("timestamp"), 0).to_numpy().astype(np.int64)
    tokens = np.ones(n, np.int64)  # approx_tokens: chars / 4 of title + text + context, + 1
    chars = np.zeros(n, np.int64)
    for c in ("title", "text", "context"):
        chars += pc.fill_null(pc.utf8_length(tbl.column(c)), 0).combine_chunks().take(order).to_numpy(
            zero_copy_only=False).astype(np.int64)
    tokens += chars // 4
    texts = pc.fill_null(sorted_col("text"), "")  # also the records' text column below

    keep = np.zeros(n, bool)
    offsets = [0]  # chunk boundaries within the kept rows
    tl_user: List[str] = []
    tl_platform: List[str] = []
    tl_chunk: List[int] = []
    q_index: List[np.ndarray] = []
    q_reason: List[str] = []
    q_detail: List[str] = []
    for u, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
        cnt = e - s
        why, reason = None, ""
        if cnt < min_records:
            reason, why = "too_few_records_user", f"user has {cnt} qualified records < {min_records}"
        elif bot_cfg is not None:
            why = bot_like(platforms[u], ts[s:e].tolist(), texts.slice(s, cnt).to_pylist(), bot_cfg)
            reason = "bot_like_user" if why else ""
        if why:
            q_index.append(np.arange(s, e))
            q_reason += [reason] * cnt
            q_detail += [why] * cnt
            continue
        keep[s:e] = True
        base = offsets[-1]
        cuts = _chunk_cuts(tokens[s:e], max_tokens)
        for i, cut in enumerate(cuts[1:]):
            offsets.append(base + cut)
            tl_user.append(user_ids[u])
            tl_platform.append(platforms[u])
            tl_chunk.append(i)

    kept_at = pa.array(np.flatnonzero(keep))
    kept_rows = order.take(kept_at)
    arrays = []
    for f in RECORD_STRUCT:  # one column in flight at a time
        if f.name == "text":
            col = texts.take(kept_at)
        else:
            col = tbl.column(f.name).take(kept_rows)
            col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        col = col.cast(f.type)
        if pa.types.is_string(f.type):
            col = pc.fill_null(col, "")
        arrays.append(col)
    del texts
    records = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()),
                                       pa.StructArray.from_arrays(arrays, fields=list(RECORD_STRUCT)))
    del arrays
    off = np.asarray(offsets, np.int64)
    timelines = pa.table({"user_id": pa.array(tl_user, pa.string()), "platform": pa.array(tl_platform, pa.string()),
                          "chunk": pa.array(tl_chunk, pa.int64()), "n_records": pa.array(off[1:] - off[:-1]),
                          "records": records}, schema=TIMELINE_SCHEMA)

    if not q_index:
        return timelines, QUARANTINE_SCHEMA.empty_table()
    rej = tbl.select(["platform", "source_file", "source_line", "record_id", "user_id"]).take(
        order.take(pa.array(np.concatenate(q_index))))
    m = rej.num_rows
    quarantine = pa.table({
        "stage": pa.array(["curate"] * m, pa.string()), "reason": pa.array(q_reason, pa.string()),
        "detail": pa.array(q_detail, pa.string()), "platform": rej.column("platform"),
        "source_file": rej.column("source_file"), "source_line": rej.column("source_line"),
        "record_id": rej.column("record_id"), "user_id": rej.column("user_id"),
        "raw": pa.array([""] * m, pa.string()),
    }).cast(QUARANTINE_SCHEMA)
    return timelines, quarantine


def _chunk_cuts(tokens, max_tokens: int) -> List[int]:
    """Cut points (0 ... len) of one user's records into chunks of at most max_tokens (greedy, in
    time order; a record longer than the budget gets a chunk of its own)."""
    n = len(tokens)
    if int(tokens.sum()) <= max_tokens:
        return [0, n]
    cuts = [0]
    used = 0
    for i, tk in enumerate(tokens.tolist()):
        if i > cuts[-1] and used + tk > max_tokens:
            cuts.append(i)
            used = 0
        used += tk
    cuts.append(n)
    return cuts
