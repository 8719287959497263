"""Timelines built a group at a time from a partition read on demand: the same timelines and
quarantine as the whole-partition rule, with a heavy user split across groups."""

import random
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from humanllm_ray import storage
from humanllm_ray.config import CurateConfig
from humanllm_ray.curate import timelines
from humanllm_ray.ingest import dataops


def test_openings_match_the_python_rule():
    """Arrow's vectorized openings equal the plain rule (strip, lower, digit runs to "#", first
    N characters) on the texts that matter, including a digit run longer than the prefix that
    is normalised first and leading whitespace past it."""
    rng = random.Random(3)
    words = ["Daily", "update", "#12:", "the", "MARKETS", "moved", "été", "Ünïcode", "42", "x1y2", "\t", "  "]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 12))) for _ in range(300)]
    texts += [None, "", "   ", "7" * 1000 + " then words after a long number", " " * 400 + "Late Start 99 here",
              "a" * 23, "ab 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17"]
    got = timelines.openings(pa.array(texts, pa.string()), 24).to_pylist()
    want = [re.sub(r"\d+", "#", (t or "").strip().lower())[:24] for t in texts]
    assert got == want
    assert got[-4] == "# then words after a lon"  # the whole text was needed
    assert timelines.openings(pa.array(["abc"]), 0).to_pylist() == [""]


def _rows(seed: int):
    """Users of every kind: many light ones, some with too few records, one heavy user of
    several chunks, one heavy template bot, ties in time, nulls, an over-budget record."""
    rng = random.Random(seed)
    rows = []

    def add(uid, n, text, platform="reddit", step=3600):
        for i in range(n):
            rows.append({"user_id": uid, "platform": platform, "record_id": f"{uid}-{i:05d}",
                         "timestamp": None if rng.random() < 0.02 else 1000 + step * (i - (rng.random() < 0.1)),
                         "kind": "post", "title": None if rng.random() < 0.5 else "a title",
                         "text": text(i), "context": "", "item_id": None, "rating": rng.choice([None, 3.0]),
                         "extra": "{}", "source_file": f"file{rng.randint(0, 3)}.jsonl", "source_line": len(rows)})

    vocab = "the a tea rain job gig train book cat dog run late early news game song film city".split()

    def words(k):
        return " ".join(rng.choice(vocab) for _ in range(k))

    for u in range(30):
        add(f"light{u:02d}", rng.choice([2, 5, 6, 9, 14]), lambda i: words(rng.randint(5, 300)))
    add("heavy", 400, lambda i: ("long " * 4000) if i == 7 else words(rng.randint(10, 400)))
    add("botty", 120, lambda i: f"Daily update #{i}: the markets moved {i} points", platform="twitter")
    rng.shuffle(rows)
    return rows


def _slices_on_disk(tbl: pa.Table, tmp_path, n_slices: int) -> dataops.ShufflePartition:
    """A partition as file_shuffle leaves it: its rows in slices, one LZ4 IPC stream each, at
    byte ranges of two map files (with other bytes around them)."""
    cuts = np.linspace(0, tbl.num_rows, n_slices + 1).astype(int)
    files, offsets, lengths, rows = [], [], [], []
    for f in range(2):
        path = str(tmp_path / f"map-{f}.arrows")
        with open(path, "wb") as fh:
            fh.write(b"other partitions' bytes")
            for s in range(f, n_slices, 2):
                piece = tbl.slice(cuts[s], cuts[s + 1] - cuts[s])
                piece = piece.append_column("_part", pa.array([0] * piece.num_rows, pa.int64()))
                buf = dataops._ipc_bytes(piece)
                files.append(path)
                offsets.append(fh.tell())
                lengths.append(buf.size)
                rows.append(piece.num_rows)
                fh.write(memoryview(buf))
    # file_shuffle lists a partition's slices by map file; rows are numbered in that order
    return dataops.ShufflePartition(files, offsets, lengths, rows, cache_bytes=0)


def _written(uri: str) -> pa.Table:
    files = storage.ls_files(uri, suffix=".parquet")
    return pa.concat_tables([pq.read_table(f) for f in files]) if files else None


def test_shuffle_partition_reads_columns_and_rows(tmp_path):
    tbl = timelines.with_plan_columns(pa.Table.from_pylist(_rows(1)), CurateConfig())
    part = _slices_on_disk(tbl, tmp_path, 7)
    whole = part.read()
    assert part.num_rows == tbl.num_rows == whole.num_rows and "_part" not in whole.column_names
    assert sorted(whole.column("record_id").to_pylist()) == sorted(tbl.column("record_id").to_pylist())
    assert part.read(["user_id", "tokens"]).column_names == ["user_id", "tokens"]
    pick = np.random.default_rng(0).permutation(part.num_rows)[:333]
    assert part.take(pick, ["record_id", "text"]).equals(whole.select(["record_id", "text"]).take(pa.array(pick)))
    assert part.take(np.array([], np.int64)).num_rows == 0


@pytest.mark.parametrize("group_rows", [1, 37, 150, 10_000])
def test_groups_give_the_whole_partitions_timelines(tmp_path, group_rows):
    """The stage's reduce (curate._timelines_writer) on a partition read from map files, in
    groups of at most group_rows rows, writes exactly the timelines and quarantine rows of
    build_tables on the whole partition, and returns the same counts; the heavy user's
    timelines and the bot's quarantine rows are spread over several groups' files."""
    from humanllm_ray import curate

    cfg = CurateConfig(timeline_max_tokens=2000)
    rows = _rows(2)
    tbl = pa.Table.from_pylist(rows)
    want_tl, want_q = timelines.build_tables(tbl, cfg.min_records_per_user, cfg.timeline_max_tokens, cfg)
    assert len(set(want_tl.column("user_id").to_pylist())) > 10
    assert {"too_few_records_user", "bot_like_user"} == set(want_q.column("reason").to_pylist())
    heavy = [t for t in want_tl.to_pylist() if t["user_id"] == "heavy"]
    assert len(heavy) > 5 and any(t["n_records"] == 1 for t in heavy)  # chunks, one over-budget record alone

    p = timelines.plan(timelines.with_plan_columns(tbl, cfg).select(timelines.PLAN_COLUMNS),
                       cfg.min_records_per_user, cfg.timeline_max_tokens, cfg)
    ranges = timelines.groups(p, group_rows)
    assert ranges[0][0] == 0 and ranges[-1][1] == len(rows)
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    longest = int((p.tl_end - p.tl_start).max())
    assert all(hi - lo <= max(group_rows, longest) for lo, hi in ranges)

    part = _slices_on_disk(timelines.with_plan_columns(tbl, cfg), tmp_path, 9)
    data, quarantine = str(tmp_path / "data"), str(tmp_path / "_quarantine")
    counts = curate._timelines_writer(cfg, data, quarantine, group_rows=group_rows)(part)
    got_tl, got_q = _written(data), _written(quarantine)

    def tl_rows(t):
        return sorted((r["user_id"], r["chunk"], r["n_records"], [tuple(sorted(x.items())) for x in r["records"]])
                      for r in t.to_pylist())

    assert tl_rows(got_tl) == tl_rows(want_tl)
    assert sorted(map(str, got_q.to_pylist())) == sorted(map(str, want_q.cast(got_q.schema).to_pylist()))
    n_files = len(storage.ls_files(data, suffix=".parquet"))
    assert (n_files > 1) == (len(ranges) > 1)
    if group_rows < 150:
        heavy_files = {f for f in storage.ls_files(data, suffix=".parquet")
                       if "heavy" in pq.read_table(f, columns=["user_id"]).column(0).to_pylist()}
        assert len(heavy_files) > 1  # one user's timelines written by several groups
    want_counts = {}
    for t in want_tl.to_pylist():
        c = want_counts.setdefault(t["platform"], {"users": set(), "timelines": 0, "records": 0})
        c["users"].add(t["user_id"])
        c["timelines"] += 1
        c["records"] += t["n_records"]
    assert {r["platform"]: (r["users"], r["timelines"], r["records"]) for r in counts.to_pylist()} == {
        k: (len(v["users"]), v["timelines"], v["records"]) for k, v in want_counts.items()}
    # a retried task rewrites the same files
    again = curate._timelines_writer(cfg, data, quarantine, group_rows=group_rows)(part)
    assert again.equals(counts) and len(storage.ls_files(data, suffix=".parquet")) == n_files
