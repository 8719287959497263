"""Per-user chronological timelines and the user-level filter.

Records that survived the record filters and dedup are shuffled by ``user_id``
(``by_key_partition``, i.e. a groupby on the user); per user they are sorted by
(timestamp, record_id). A user with fewer than ``curate.min_records_per_user`` qualified records
is dropped whole (``too_few_records_user``; the reference keeps users with >= 6 Reddit /
> 5 Twitter records), and so is one whose records look automated (``bot_like_user``: bursts
of posts seconds apart, or most posts opening with the same template; see ``bot_like``).
Kept timelines are cut into chunks of at most ``timeline_max_tokens`` approximate tokens
(chars / 4 of title + text + context); a single longer record gets a chunk of its own.

A partition holds every record of its users, and users are skewed (a few hold tens of
thousands of records), so a task does not build its partition whole. The map side adds each
record's token count and normalised opening (``with_plan_columns``); the task reads only those
narrow columns for every row and decides every user (``plan``: sort order, rejections, chunk
cuts), then reads, builds and writes the records a group of rows at a time (``groups``,
``assemble``). Greedy chunking restarts at every cut, so groups cut between timelines give the
same timelines as one pass over the user.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

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


# What the shuffle adds per record so that a partition's decisions need only narrow columns
# (``PLAN_COLUMNS``): its approximate token count and its normalised opening (see ``openings``).
SHUFFLE_COLUMNS = INPUT_COLUMNS + ["tokens", "opening"]
PLAN_COLUMNS = ["user_id", "platform", "timestamp", "record_id", "tokens", "opening"]
# Code points of a text's start that ``openings`` normalises before falling back to the whole
# text (a digit run folds to one "#", so the opening can need more of the text than it shows).
_OPENING_PREFIX = 256


def openings(texts: pa.Array, chars: int) -> pa.Array:
    """Each text's first ``chars`` characters once stripped, lower-cased and with every run of
    digits folded to "#" ("Daily update #12: ..." posts share one opening): what ``bot_like``
    compares. Vectorized in Arrow; a text's first ``_OPENING_PREFIX`` code points are enough
    unless folding left fewer than ``chars`` characters of them, and then the whole text is used,
    so the result is always that of the whole text."""
    import pyarrow.compute as pc

    texts = pc.fill_null(texts, "")
    if chars <= 0:
        return pa.array([""] * len(texts), pa.string())

    def norm(x):
        x = pc.utf8_lower(pc.utf8_trim_whitespace(x))
        return pc.utf8_slice_codeunits(pc.replace_substring_regex(x, r"\p{Nd}+", "#"), 0, chars)

    out = norm(pc.utf8_slice_codeunits(texts, 0, _OPENING_PREFIX))
    short = pc.and_(pc.less(pc.utf8_length(out), chars), pc.greater(pc.utf8_length(texts), _OPENING_PREFIX))
    if pc.any(short).as_py():
        out = pc.if_else(short, norm(texts), out)
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


def with_plan_columns(tbl: pa.Table, cfg: Any = None) -> pa.Table:
    """Qualified records (``INPUT_COLUMNS``) -> ``SHUFFLE_COLUMNS``: plus ``tokens`` (chars / 4
    of title + text + context, + 1) and ``opening`` (``openings``; "" when the template check is
    off). The map side of the timelines shuffle adds them, from the rows it has in hand."""
    import pyarrow.compute as pc

    tbl = tbl.select(INPUT_COLUMNS)
    chars = None
    for c in ("title", "text", "context"):
        n = pc.fill_null(pc.utf8_length(tbl.column(c)), 0).cast(pa.int64())
        chars = n if chars is None else pc.add(chars, n)
    tokens = pc.add(pc.divide(chars, 4), 1) if tbl.num_rows else pa.array([], pa.int64())
    width = int(cfg.bot_template_chars) if cfg is not None and cfg.bot_template_fraction > 0 else 0
    opening = openings(tbl.column("text").combine_chunks(), width) if tbl.num_rows else pa.array([], pa.string())
    return tbl.append_column("tokens", tokens).append_column("opening", opening)


def bot_like(platform: str, timestamps: List[int], opening_list: List[str], cfg: Any) -> Optional[str]:
    """Why a user's qualified records look automated (see CurateConfig.bot_*), or None.

    ``timestamps`` are sorted epoch seconds; ``opening_list`` the records' ``openings`` in the
    same order."""
    if cfg is None or len(timestamps) < max(2, int(cfg.bot_min_records)):
        return None
    if cfg.bot_burst_fraction > 0 and platform in set(cfg.bot_burst_platforms):
        gaps = [b - a for a, b in zip(timestamps, timestamps[1:])]
        fast = sum(1 for g in gaps if g < cfg.bot_burst_gap_s)
        if fast / len(gaps) >= cfg.bot_burst_fraction:
            return f"{fast}/{len(gaps)} gaps between posts under {cfg.bot_burst_gap_s}s"
    if cfg.bot_template_fraction > 0 and cfg.bot_template_chars > 0:
        opening, n = Counter(opening_list).most_common(1)[0]
        if len(opening) >= cfg.bot_template_chars and n / len(opening_list) >= cfg.bot_template_fraction:
            return (f"{n}/{len(opening_list)} records open with the same {cfg.bot_template_chars} characters: "
                    f"{opening!r}")
    return None


@dataclass
class PartitionPlan:
    """One shuffle partition's decisions, made from its narrow ``PLAN_COLUMNS`` alone.

    Rows are numbered as the partition holds them; ``order`` lists them sorted by (user,
    timestamp, record_id), and every other array here counts in that sorted order. Each kept
    user's rows are timelines ``[tl_start, tl_end)`` (chunk ``tl_chunk``); each rejected user's
    rows have ``rejected[pos] = k``, their reason and detail ``reasons[k]``; kept rows have -1."""

    order: Any
    tl_start: Any
    tl_end: Any
    tl_user: List[str]
    tl_platform: List[str]
    tl_chunk: List[int]
    rejected: Any
    reasons: List[Tuple[str, str]]
    counts: Dict[str, Dict[str, int]] = field(default_factory=dict)  # platform -> users, timelines, records

    @property
    def num_rows(self) -> int:
        return len(self.order)


def plan(keys: pa.Table, min_records: int, max_tokens: int, bot_cfg: Any = None) -> PartitionPlan:
    """Decide a partition from its narrow columns: sort order, rejected users (too few records,
    ``bot_like``) and each kept user's chunk cuts. Holds ~60 bytes per row, however many rows
    one user has; the records themselves are read afterwards, a group at a time (``assemble``).
    Only the per-user decisions loop in Python, over users and integer token counts."""
    import numpy as np
    import pyarrow.compute as pc

    n = keys.num_rows
    order = pc.sort_indices(keys.select(["user_id", "timestamp", "record_id"]),
                            sort_keys=[("user_id", "ascending"), ("timestamp", "ascending"),
                                       ("record_id", "ascending")])

    def sorted_col(name: str) -> pa.Array:
        col = keys.column(name).take(order)
        return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col

    users = pc.fill_null(sorted_col("user_id"), "")
    if n > 1:
        change = pc.not_equal(users.slice(1), users.slice(0, n - 1)).to_numpy(zero_copy_only=False)
        starts = np.concatenate([[0], np.flatnonzero(change) + 1]).astype(np.int64)
    else:
        starts = np.zeros(min(n, 1), np.int64)
    ends = np.append(starts[1:], n).astype(np.int64)
    first_rows = order.take(pa.array(starts, pa.int64()))
    platforms = pc.fill_null(keys.column("platform").take(first_rows), "").to_pylist()
    user_ids = users.take(pa.array(starts, pa.int64())).to_pylist()
    del users
    ts = pc.fill_null(sorted_col("timestamp"), 0).to_numpy().astype(np.int64)
    tokens = pc.fill_null(sorted_col("tokens"), 1).to_numpy().astype(np.int64)
    heads = pc.fill_null(sorted_col("opening"), "") if bot_cfg is not None else None

    rejected = np.full(n, -1, np.int32)
    reasons: List[Tuple[str, str]] = []
    tl_start: List[int] = []
    tl_end: List[int] = []
    tl_user: List[str] = []
    tl_platform: List[str] = []
    tl_chunk: List[int] = []
    counts: Dict[str, Dict[str, int]] = {}
    for u, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
        cnt = e - s
        why, reason = None, ""
        if cnt < min_records:
            reason, why = "too_few_records_user", f"user has {cnt} qualified records < {min_records}"
        elif heads is not None:
            why = bot_like(platforms[u], ts[s:e].tolist(), heads.slice(s, cnt).to_pylist(), bot_cfg)
            reason = "bot_like_user" if why else ""
        if why:
            rejected[s:e] = len(reasons)
            reasons.append((reason, why))
            continue
        cuts = _chunk_cuts(tokens[s:e], max_tokens)
        for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
            tl_start.append(s + a)
            tl_end.append(s + b)
            tl_user.append(user_ids[u])
            tl_platform.append(platforms[u])
            tl_chunk.append(i)
        c = counts.setdefault(platforms[u], {"users": 0, "timelines": 0, "records": 0})
        c["users"] += 1
        c["timelines"] += len(cuts) - 1
        c["records"] += cnt
    return PartitionPlan(order=order.to_numpy().astype(np.int64), tl_start=np.asarray(tl_start, np.int64),
                         tl_end=np.asarray(tl_end, np.int64), tl_user=tl_user, tl_platform=tl_platform,
                         tl_chunk=tl_chunk, rejected=rejected, reasons=reasons, counts=counts)


def groups(p: PartitionPlan, group_rows: int) -> List[Tuple[int, int]]:
    """Cut the sorted rows into ranges of at most ``group_rows`` rows that ``assemble`` builds
    one at a time: cuts fall between timelines or anywhere among a rejected user's rows, so a
    user of any size is split; a single timeline longer than ``group_rows`` gets a range alone."""
    import numpy as np

    n = p.num_rows
    allowed = np.zeros(n + 1, bool)
    allowed[p.tl_start] = True
    allowed[:n] |= p.rejected >= 0
    allowed[n] = True
    breaks = np.flatnonzero(allowed)
    out, lo = [], 0
    while lo < n:
        j = int(np.searchsorted(breaks, min(lo + max(1, group_rows), n), side="right")) - 1
        hi = int(breaks[j])
        if hi <= lo:
            hi = int(breaks[np.searchsorted(breaks, lo, side="right")])
        out.append((lo, hi))
        lo = hi
    return out


def assemble(p: PartitionPlan, lo: int, hi: int,
             fetch: Callable[[Any], pa.Table]) -> Tuple[pa.Table, pa.Table]:
    """Sorted rows [lo, hi) of a planned partition (a range from ``groups``) -> (timelines as
    ``TIMELINE_SCHEMA`` rows, quarantine rows of rejected users' records). ``fetch(rows)``
    returns the partition's rows numbered ``rows``, in that order, with ``INPUT_COLUMNS``; it
    is called once, for this range's rows only."""
    import numpy as np
    import pyarrow.compute as pc

    span = p.rejected[lo:hi]
    kept_pos = np.flatnonzero(span < 0) + lo
    q_pos = np.flatnonzero(span >= 0) + lo
    wide = fetch(p.order[np.concatenate([kept_pos, q_pos])])
    t_lo, t_hi = np.searchsorted(p.tl_start, [lo, hi], side="left").tolist()
    sizes = p.tl_end[t_lo:t_hi] - p.tl_start[t_lo:t_hi]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
    assert int(offsets[-1]) == len(kept_pos), "a group must hold whole timelines"

    kept = wide.slice(0, len(kept_pos))
    arrays = []
    for f in RECORD_STRUCT:  # the fetched buffers themselves where they already fit (no copy)
        col = kept.column(f.name)
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if col.type != f.type:
            col = col.cast(f.type)
        if pa.types.is_string(f.type) and col.null_count:
            col = pc.fill_null(col, "")
        arrays.append(col)
    del kept
    records = pa.ListArray.from_arrays(pa.array(offsets, pa.int32()),
                                       pa.StructArray.from_arrays(arrays, fields=list(RECORD_STRUCT)))
    del arrays
    timelines = pa.table({"user_id": pa.array(p.tl_user[t_lo:t_hi], pa.string()),
                          "platform": pa.array(p.tl_platform[t_lo:t_hi], pa.string()),
                          "chunk": pa.array(p.tl_chunk[t_lo:t_hi], pa.int64()),
                          "n_records": pa.array(sizes.astype(np.int64)), "records": records}, schema=TIMELINE_SCHEMA)
    if not len(q_pos):
        return timelines, QUARANTINE_SCHEMA.empty_table()
    rej = wide.slice(len(kept_pos))
    which = pa.array(span[span >= 0])
    m = rej.num_rows
    quarantine = pa.table({
        "stage": pa.array(["curate"] * m, pa.string()),
        "reason": pa.array([r for r, _ in p.reasons], pa.string()).take(which),
        "detail": pa.array([d for _, d in p.reasons], pa.string()).take(which),
        "platform": rej.column("platform"), "source_file": rej.column("source_file"),
        "source_line": rej.column("source_line"), "record_id": rej.column("record_id"),
        "user_id": rej.column("user_id"), "raw": pa.array([""] * m, pa.string()),
    }).cast(QUARANTINE_SCHEMA)
    return timelines, quarantine


def build_tables(tbl: pa.Table, min_records: int, max_tokens: int,
                 bot_cfg: Any = None) -> Tuple[pa.Table, pa.Table]:
    """One partition's qualified records (every record of each user it holds), whole, ->
    (timelines as ``TIMELINE_SCHEMA`` rows, quarantine rows of the rejected users' records):
    ``plan`` and one ``assemble`` over all of it. The stage's tasks assemble a group at a time
    (curate's ``_timelines_writer``); this is the same rule in one call."""
    if tbl.num_rows == 0:
        return TIMELINE_SCHEMA.empty_table(), QUARANTINE_SCHEMA.empty_table()
    if "tokens" not in tbl.column_names:
        tbl = with_plan_columns(tbl, bot_cfg)
    p = plan(tbl.select(PLAN_COLUMNS), min_records, max_tokens, bot_cfg)
    return assemble(p, 0, p.num_rows, lambda rows: tbl.select(INPUT_COLUMNS).take(pa.array(rows)))


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
