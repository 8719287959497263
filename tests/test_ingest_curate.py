"""Ingest + curate: the demo corpus end to end, malformed input, other formats, rerun, real data."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import os
from pathlib import Path

import pyarrow as pa
import pytest

from humanllm_ray import config, storage
from humanllm_ray.config import DEMO_CORPUS_DIR
from humanllm_ray.stage import read_table

from conftest import SHARED_REALDATA, realdata_dir

pytestmark = pytest.mark.usefixtures("ray_local")


def _cfg(root: Path, *overrides: str):
    return config.load_config(overrides=[f"run.root={root}", "run.progress=false", *overrides])


def _run_both(cfg):
    from humanllm_ray import curate, ingest

    return ingest.run(cfg), curate.run(cfg)


def _report(uri: str) -> dict:
    return storage.read_json(os.path.join(uri, "_report.json"))


def _assert_accounting(rep: dict) -> None:
    assert rep["rows_in"] == rep["rows_out"] + rep["rows_quarantined"] + rep["rows_merged"], rep
    assert sum(rep["by_reason"].values()) == rep["rows_quarantined"], rep
    for p, c in rep["by_platform"].items():
        assert c["in"] == c["out"] + c["quarantined"] + c.get("merged", 0), (p, c)


def _quarantine(uri: str):
    t = read_table(os.path.join(uri, "_quarantine"))
    return t.to_pylist() if t.num_columns else []


# ----------------------------------------------------------------------------- demo corpus


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_run")
    cfg = _cfg(root)
    ing, cur = _run_both(cfg)
    return cfg, root, ing, cur


def test_demo_accounting_and_reports(demo):
    cfg, root, ing, cur = demo
    for stage_dir in ("ingested", "curated"):
        rep = _report(str(root / stage_dir))
        _assert_accounting(rep)
        assert (root / stage_dir / "_SUCCESS").exists()
        assert rep["skipped"] is False
    assert cur["rows_merged"] == 0
    assert cur["rows_in"] == ing["rows_out"]
    assert set(ing["by_platform"]) == {"reddit", "twitter", "blogger", "amazon"}


def test_demo_timelines(demo):
    from humanllm_ray.curate import TIMELINE_SCHEMA
    from humanllm_ray.ingest import LOG_RECORD_SCHEMA

    cfg, root, ing, cur = demo
    records = read_table(str(root / "ingested" / "data"))
    assert records.schema.equals(LOG_RECORD_SCHEMA), records.schema
    tl = read_table(str(root / "curated" / "data"))
    assert tl.schema.equals(TIMELINE_SCHEMA), tl.schema
    rows = tl.to_pylist()
    per_user: dict = {}
    for r in rows:
        assert r["n_records"] == len(r["records"]) > 0
        ts = [x["timestamp"] for x in r["records"]]
        assert ts == sorted(ts)
        per_user.setdefault((r["platform"], r["user_id"]), 0)
        per_user[(r["platform"], r["user_id"])] += r["n_records"]
    assert sum(per_user.values()) == cur["rows_out"]
    print("\ndemo kept:", {p: (c["users"], c["out"]) for p, c in cur["by_platform"].items()})
    assert len(per_user) >= 30 and cur["users"] == len(per_user)
    for platform in ("reddit", "twitter", "blogger", "amazon"):
        counts = [n for (p, _u), n in per_user.items() if p == platform]
        assert counts, f"no kept {platform} users"
        assert min(counts) >= cfg.curate.min_records_per_user
    # pseudonymous ids only
    assert all(len(u) == 16 and all(c in "0123456789abcdef" for c in u) for _p, u in per_user)


def test_demo_specific_facts(demo):
    cfg, root, ing, cur = demo
    q = _quarantine(str(root / "curated"))
    by_reason = cur["by_reason"]
    for reason in ("deleted_author", "bot_author", "removed_text", "not_top_level", "short_question", "retweet",
                   "ad", "too_few_records_user"):
        assert by_reason.get(reason, 0) >= 1, (reason, by_reason)
    # AutoModerator and [deleted] are gone, with reasons and source locations
    bots = [r for r in q if r["reason"] == "bot_author" and r["platform"] == "reddit"]
    assert bots and all(r["source_file"] and r["source_line"] > 0 for r in bots)
    records = read_table(str(root / "ingested" / "data")).to_pylist()
    by_id = {r["record_id"]: r for r in records}
    # raw handles never leave ingest
    comments_file = DEMO_CORPUS_DIR / "reddit"
    raw_lines = []
    import zstandard

    for f in sorted(comments_file.iterdir()):
        data = f.read_bytes()
        if f.suffix == ".zst":
            data = zstandard.ZstdDecompressor().stream_reader(data).read()
        raw_lines += [json.loads(line) for line in data.decode().splitlines() if line.strip()]
    handles = {o["author"] for o in raw_lines}
    assert not handles & {r["user_id"] for r in records}
    assert not any(h in r["extra"] for h in handles if len(h) > 6 for r in records if r["platform"] == "reddit")
    # a string created_utc is parsed into an int timestamp
    str_ts = [o for o in raw_lines if isinstance(o.get("created_utc"), str)]
    assert str_ts
    for o in str_ts:
        prefix = "t1_" if "body" in o else "t3_"
        rec = by_id[f"reddit:{prefix}{o['id']}"]
        assert rec["timestamp"] == int(o["created_utc"])
    # reddit comments carry their submission as context (joined by link id)
    assert any(" | " in r["context"] for r in records if r["platform"] == "reddit" and r["kind"] == "comment")
    # the Latin-1 blog is decoded (not mojibake, not dropped)
    latin = [f for f in (DEMO_CORPUS_DIR / "blogger").iterdir() if not _is_utf8(f.read_bytes())]
    assert latin, "the demo corpus should hold one non-UTF-8 blog"
    blog_id = latin[0].name.split(".")[0]
    blog_recs = [r for r in records if r["record_id"].startswith(f"blogger:{blog_id}:")]
    assert blog_recs and any("é" in r["text"] for r in blog_recs)
    assert not any("\ufffd" in r["text"] or "Ã©" in r["text"] for r in blog_recs)
    tl = read_table(str(root / "curated" / "data")).to_pylist()
    assert blog_recs[0]["user_id"] in {t["user_id"] for t in tl}
    # the variant duplicate (same review under two asins of one parent) collapsed to one record
    assert ing["merged_detail"].get("variant_duplicate", 0) >= 1
    keys = [(r["user_id"], r["timestamp"], r["text"]) for r in records if r["platform"] == "amazon"]
    assert len(keys) == len(set(keys))
    # amazon reviews are joined to their item metadata
    amazon = [r for r in records if r["platform"] == "amazon"]
    assert all(r["context"] and json.loads(r["extra"])["category"] for r in amazon)
    cats = {}
    for r in amazon:
        cats.setdefault(json.loads(r["extra"])["category"], set()).add(r["item_id"])
    assert sum(1 for items in cats.values() if len(items) >= 6) >= 2, cats
    # PII became placeholders in what curate keeps
    texts = [x["text"] for t in tl for x in t["records"]]
    assert any("<EMAIL>" in t for t in texts) and any("<PHONE>" in t for t in texts)
    assert not any("@example.com" in t for t in texts)
    # every kept record is cleaned: no HTML entities or urlLink tokens
    assert not any("&quot;" in t or "&amp;" in t or "urlLink" in t for t in texts)


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def test_rerun_is_noop(demo):
    cfg, root, ing, cur = demo
    ing2, cur2 = _run_both(cfg)
    assert ing2["skipped"] is True and cur2["skipped"] is True
    assert ing2["rows_out"] == ing["rows_out"] and cur2["rows_out"] == cur["rows_out"]
    # how the stages run their tasks is not part of what they make: a different cap is still a no-op
    from humanllm_ray import curate, ingest

    ing3 = ingest.run(_cfg(root, "ingest.worker_max_tasks=3"))
    assert ing3["skipped"] is True
    cur3 = curate.run(_cfg(root, "curate.worker_max_tasks=3"))
    assert cur3["skipped"] is True


def _kept_and_quarantined(root: Path):
    tl = read_table(str(root / "curated" / "data")).to_pylist()
    kept = sorted(r["record_id"] for t in tl for r in t["records"])
    q = sorted((r["reason"], r["record_id"]) for r in _quarantine(str(root / "curated")))
    return kept, q


def test_small_files_parallel_passes_same_result(demo, tmp_path, monkeypatch):
    """Ingest writes bounded files (one record-pass task each) and curate streams its passes
    through scratch files instead of the object store: with tiny files the stages must keep
    exactly the record set and quarantine of the default run, and leave no scratch behind.
    Timeline partitions of ~8 records (many reduce tasks), each built a group of at most 3
    sorted rows at a time from the map files, give exactly the same timelines. Workers replaced
    every 3 tasks of an operator (``ingest.worker_max_tasks``, ``curate.worker_max_tasks``),
    and idle workers retired between curate's passes (by default only from 50k records), change
    nothing either. Nor do the small-file passes (ingest's final write, dedup's band and verify
    maps, the drop routing, the timelines' map side, the quarantine count) giving several files
    to a task (``dataops.files_per_task``; the demo's default run has too few files for it)."""
    import pyarrow.parquet as pq

    from humanllm_ray.ingest import dataops

    cfg, root, ing, cur = demo
    monkeypatch.setattr(dataops, "SMALL_FILE_TASKS_PER_CPU", 1)
    small = _cfg(tmp_path, "ingest.rows_per_file=40", "curate.rows_per_file=40", "curate.timeline_rows_per_partition=8",
                 "curate.timeline_group_rows=3", "ingest.worker_max_tasks=3", "curate.worker_max_tasks=3",
                 "curate.retire_workers_min_records=0")
    ing2, cur2 = _run_both(small)
    files = storage.ls_files(str(tmp_path / "ingested" / "data"), suffix=".parquet")
    rows = [pq.ParquetFile(f).metadata.num_rows for f in files]
    assert sum(rows) == ing["rows_out"] == ing2["rows_out"]
    assert max(rows) <= 40 and len(files) >= ing["rows_out"] // 40, rows
    assert dataops.files_per_task(len(files)) >= 2, len(files)  # the passes over these did group files
    assert _kept_and_quarantined(tmp_path) == _kept_and_quarantined(root)
    for key in ("rows_out", "rows_quarantined", "by_reason", "users", "timelines", "dedup"):
        assert cur2[key] == cur[key], key
    # the demo's ~300 records are below curate.retire_workers_min_records: no pass retired workers
    assert cur["workers_retired"] == 0 and cur2["workers_retired"] >= 3 * 2, (cur, cur2)
    # the report names each pass's time (speed itself is measured in bench/curate, not here)
    for rep in (cur, cur2):
        assert set(rep["pass_seconds"]) == {"record_pass", "dedup", "drop_route", "timelines", "accounting"}
        assert all(isinstance(v, float) and v >= 0 for v in rep["pass_seconds"].values()), rep

    def timelines_of(d):
        return sorted((t["user_id"], t["chunk"], [r["record_id"] for r in t["records"]])
                      for t in read_table(str(d / "curated" / "data")).to_pylist())

    assert timelines_of(tmp_path) == timelines_of(root)
    # groups of 3 rows hold one timeline each (a timeline is never split): a file each
    assert len(storage.ls_files(str(tmp_path / "curated" / "data"), suffix=".parquet")) == cur["timelines"]
    for d in (root, tmp_path):
        for stage_dir in ("ingested", "curated"):
            assert not (d / stage_dir / "_scratch").exists()


def test_ingest_joins_hot_keys_in_chunks_with_the_same_records(tmp_path):
    """A generated corpus (bench/curate's generator, native formats) whose early Reddit thread
    draws most comments and whose best-selling item most reviews: with join partitions of ~25
    rows (chunks past 50), those keys' partitions are joined in chunks and written by the join's own tasks
    (Reddit: read by the final pass; Amazon: by its variant dedup), and ingest writes exactly the
    records, contexts and quarantine of a run that joins every partition whole."""
    import sys

    from humanllm_ray import ingest

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench" / "curate"))
    import gen

    data = tmp_path / "corpus"
    gen.generate(str(data), 3000, 1)
    ov = ["ingest.use_demo_corpus=false"] + [f"ingest.sources.{p}=[{data / p}]" for p in ("reddit", "amazon")]

    def records(root, *more):
        rep = ingest.run(_cfg(root, *ov, *more))
        _assert_accounting(rep)
        rows = read_table(str(root / "ingested" / "data")).to_pylist()
        return rep, sorted((r["record_id"], r["context"], r["extra"]) for r in rows), \
            sorted((r["reason"], r["source_file"], r["source_line"]) for r in _quarantine(str(root / "ingested")))

    whole, want, want_q = records(tmp_path / "whole")
    chunked, got, got_q = records(tmp_path / "chunked", "ingest.rows_per_file=25")
    assert not whole["join_chunk_files"]
    assert set(chunked["join_chunk_files"]) == {"reddit", "amazon"}, chunked["join_chunk_files"]
    assert got == want and got_q == want_q
    assert sum(" | " in c for _i, c, _e in got) > 100  # comments did get their submissions
    assert chunked["merged_detail"] == whole["merged_detail"]


def test_record_pass_writer_streams_and_signs_the_passed_rows(demo, tmp_path, monkeypatch):
    """The record pass streams each ingested file a slice at a time (its workers' memory is set
    by the slice, not the file size) and makes the MinHash signatures of the rows that passed:
    the rows must not depend on the slicing, the scratch file must hold every row in order, the
    signatures must be exactly dedup's of the passed rows, and a retried task must rewrite the
    same two files."""
    import math

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from humanllm_ray import curate
    from humanllm_ray.curate import dedup
    from humanllm_ray.ingest import dataops

    cfg, root, _ing, _cur = demo
    block = read_table(str(root / "ingested" / "data")).slice(0, 300)
    src = tmp_path / "ingested" / "part-0.parquet"
    src.parent.mkdir()
    pq.write_table(block, src, row_group_size=100)  # several row groups, as a big file has
    whole = curate._record_pass_udf(cfg.curate)(block)
    monkeypatch.setattr(dataops, "PY_SLICE_ROWS", 7)
    sliced = curate._record_pass_udf(cfg.curate)(block)
    assert sliced.num_rows == block.num_rows and sliced.equals(whole)

    rec_uri, sig_uri = str(tmp_path / "records"), str(tmp_path / "signatures")
    writer = curate._record_pass_writer(cfg.curate, None, rec_uri, sig_uri)
    files = pa.table({"path": [str(src)]})
    counts = writer(files)
    writer(files)  # a retry
    rec_files = storage.ls_files(rec_uri, suffix=".parquet")
    assert len(rec_files) == 1 and len(storage.ls_files(sig_uri, suffix=".parquet")) == 1
    # streamed: one row group per slice of 7 rows (row groups of 100 do not line up with them)
    assert pq.ParquetFile(rec_files[0]).metadata.num_row_groups == math.ceil(300 / 7)
    assert read_table(rec_uri).equals(whole)
    assert sum(counts.column("n").to_pylist()) == block.num_rows
    passed = whole.filter(pc.equal(whole.column("_reason"), ""))
    assert 0 < passed.num_rows < block.num_rows
    want = dedup.signatures_udf(cfg.curate.minhash_num_perm)(passed).sort_by("record_id")
    got = read_table(sig_uri).sort_by("record_id")
    assert got.num_rows == passed.num_rows and got.equals(want.cast(got.schema))


def test_split_kept_slices_stream_like_the_block_udf(demo, tmp_path, monkeypatch):
    """The timelines shuffle's map side streams each records-scratch file a slice at a time: the
    qualified rows it yields and the rejected rows (filters and duplicates) it quarantines must
    be exactly those of the one-block UDF, in one quarantine file that a retry rewrites."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from humanllm_ray import curate
    from humanllm_ray.curate import dedup
    from humanllm_ray.ingest import dataops

    cfg, root, _ing, _cur = demo
    work = curate._record_pass_udf(cfg.curate)(read_table(str(root / "ingested" / "data")).slice(0, 300))
    src = tmp_path / "records" / "records-0.parquet"
    src.parent.mkdir()
    pq.write_table(work, src, row_group_size=64)
    passed = work.filter(pc.equal(work.column("_reason"), ""))
    uids = [dedup.row_uid(r, f, ln) for r, f, ln in zip(*(passed.column(c).to_pylist() for c in dedup.UID_COLUMNS))]
    # the drop table in two pieces, as the workers' components step makes it
    drops = [dedup.drop_table(pa.array(uids[i:i + 3]), pa.array(uids[6 + i:9 + i]), np.array([True, False, True][:3]))
             for i in (0, 3)]

    want = curate._split_kept_udf(drops, str(tmp_path / "q-block"), cfg.curate)(work)
    monkeypatch.setattr(dataops, "PY_SLICE_ROWS", 7)
    slices = curate._split_kept_slices(drops, None, str(tmp_path / "q-stream"), cfg.curate)
    files = pa.table({"path": [str(src)]})
    pieces = list(slices(files))
    assert len(pieces) == -(-work.num_rows // 7)  # one per slice: the file is never held whole
    got = pa.concat_tables(pieces)
    assert pa.concat_tables(list(slices(files))).equals(got)  # a retry
    assert got.num_rows == passed.num_rows - 6 and got.equals(want.cast(got.schema))
    assert len(storage.ls_files(str(tmp_path / "q-stream"), suffix=".parquet")) == 1
    keys = [("source_file", "ascending"), ("source_line", "ascending")]
    q_stream = read_table(str(tmp_path / "q-stream")).sort_by(keys)
    q_block = read_table(str(tmp_path / "q-block")).sort_by(keys)
    assert q_stream.num_rows == work.num_rows - got.num_rows
    assert q_stream.to_pylist() == q_block.cast(q_stream.schema).to_pylist()
    assert {"exact_duplicate", "near_duplicate"} <= set(q_stream.column("reason").to_pylist())


def test_final_writer_streams_and_retry_rewrites_same_files(tmp_path, monkeypatch):
    """Ingest's one-pass writer streams each final-rows file a slice at a time and names its
    outputs after the input file: a task Ray retries (worker killed after writing) overwrites
    its own files instead of adding copies, each output holds every row of its status in
    order, and the counts cover every row by status."""
    import pyarrow.parquet as pq

    from humanllm_ray import ingest
    from humanllm_ray.ingest import dataops
    from humanllm_ray.ingest import schema as ischema

    statuses = [("ok", ""), ("ok", ""), ("quarantine", "bad_json"), ("aux", ""), ("merged", "variant_duplicate")]
    rows = [dict(platform="reddit", record_id=f"reddit:{i}", user_id="u", source_file="f", source_line=i,
                 _status=st, _reason=r, _key="k" if st == "aux" else "", _payload="{}" if st == "aux" else "")
            for i, (st, r) in enumerate(statuses * 3)]
    src = tmp_path / "raw" / "raw-0.parquet"
    src.parent.mkdir()
    pq.write_table(ischema.to_table(rows), src)
    monkeypatch.setattr(dataops, "PY_SLICE_ROWS", 4)  # 15 rows: four slices
    dirs = [str(tmp_path / d) for d in ("data", "_quarantine", "aux")]
    udf = ingest._final_writer(*dirs)
    files_in = pa.table({"path": [str(src)]})
    first = udf(files_in)
    udf(files_in)  # the retry
    files = {d: storage.ls_files(d, suffix=".parquet") for d in dirs}
    assert [len(f) for f in files.values()] == [1, 1, 1], files
    assert [pq.read_table(f[0]).num_rows for f in files.values()] == [6, 3, 3]
    data = pq.read_table(files[dirs[0]][0])
    assert data.schema.names == ischema.LOG_RECORD_SCHEMA.names
    assert data.column("source_line").to_pylist() == [0, 1, 5, 6, 10, 11]
    # one row group per slice that holds records (the fourth, rows 12-14, holds none)
    assert pq.ParquetFile(files[dirs[0]][0]).metadata.num_row_groups == 3
    counts = {}
    for r in first.to_pylist():
        counts[(r["_status"], r["_reason"])] = counts.get((r["_status"], r["_reason"]), 0) + r["n"]
    assert counts == {("ok", ""): 6, ("quarantine", "bad_json"): 3, ("aux", ""): 3,
                      ("merged", "variant_duplicate"): 3}
    empty = tmp_path / "raw" / "raw-empty.parquet"
    pq.write_table(ischema.to_table(rows).slice(0, 0), empty)
    assert udf(pa.table({"path": [str(empty)]})).num_rows == 0


def test_input_files_stamped_in_a_table_and_digest_follows_the_files(tmp_path):
    """The ingest fingerprint's digest changes when a file changes or is added, and only then;
    every file lands in exactly one read bin, the largest first."""
    from humanllm_ray import ingest

    folder = tmp_path / "blogs"
    folder.mkdir()
    sizes = {"a.xml": 5000, "b.xml": 10, "c.xml": 700, "d.xml": 700}
    for name, n in sizes.items():
        (folder / name).write_bytes(b"x" * n)
    files = {"blogger": sorted(str(p) for p in folder.iterdir()), "twitter": []}
    digest, table = ingest.stamp_files(files)
    assert table.schema == ingest.INPUT_FILES_SCHEMA and table.num_rows == 4
    assert dict(zip([os.path.basename(f) for f in table.column("file").to_pylist()],
                    table.column("size").to_pylist())) == sizes
    assert ingest.stamp_files(files)[0] == digest  # nothing changed: the same fingerprint

    (folder / "b.xml").write_bytes(b"y" * 11)
    changed, _ = ingest.stamp_files(files)
    assert changed != digest
    (folder / "e.xml").write_bytes(b"z")
    added, _ = ingest.stamp_files({"blogger": sorted(str(p) for p in folder.iterdir())})
    assert added not in (digest, changed)

    bins = ingest.pack_files(table, n_bins=2)
    placed = [f for b in bins for f in b["files"]]
    assert sorted(placed) == sorted(files["blogger"])
    assert bins[0]["files"][0].endswith("a.xml")  # largest first, alone in the emptiest bin
    assert all(p == "blogger" for b in bins for p in b["platforms"])
    assert sum(b["bytes"] for b in bins) == sum(sizes.values())
    assert ingest.pack_files(ingest.INPUT_FILES_SCHEMA.empty_table(), n_bins=2) == []


def test_raw_writer_splits_by_platform_and_status_and_counts(tmp_path):
    """The readers' writer puts each platform's records and side data (what its join / dedup
    reads) apart from its quarantined rows, in files of at most rows_per_file rows named by
    content (a retried read task rewrites them), and returns the counts join_dedup_plan needs."""
    import pyarrow.parquet as pq

    from humanllm_ray import ingest
    from humanllm_ray.ingest import schema as ischema
    from humanllm_ray.ingest.dataops import tally

    spec = [("reddit", "ok", "t3_a"), ("reddit", "ok", "t3_a"), ("reddit", "ok", ""), ("reddit", "aux", "t3_a"),
            ("reddit", "quarantine", ""), ("amazon", "ok", "B1"), ("amazon", "quarantine", "")]
    rows = [dict(platform=p, record_id=f"{p}:{i}", user_id="u", source_file=f"{p}.jsonl", source_line=i, _status=st,
                 _reason="bad_json" if st == "quarantine" else "", _key=k, _payload="{}" if st == "aux" else "")
            for i, (p, st, k) in enumerate(spec)]
    block = ischema.to_table(rows)
    raw = str(tmp_path / "raw")

    def udf(b):  # one read task's block, written and counted
        sink = ingest._RawSink(raw, rows_per_file=2)
        sink.add(b)
        return sink.close()

    counts = udf(block)
    udf(block)  # the retry
    got = {}
    for plat in ("reddit", "amazon"):
        for main in (True, False):
            files = storage.ls_files(ingest.raw_folder(raw, plat, main), suffix=".parquet")
            got[(plat, main)] = sorted(pq.read_table(f).num_rows for f in files)
            for f in files:
                statuses = set(pq.read_table(f).column("_status").to_pylist())
                assert statuses <= ({"ok", "aux"} if main else {"quarantine"}), (f, statuses)
    assert got == {("reddit", True): [2, 2], ("reddit", False): [1], ("amazon", True): [1], ("amazon", False): [1]}
    assert tally(counts.to_pylist(), ["platform", "_status", "_has_key"]) == {
        ("reddit", "ok", "1"): 2, ("reddit", "ok", "0"): 1, ("reddit", "aux", "1"): 1, ("reddit", "quarantine", "0"): 1,
        ("amazon", "ok", "1"): 1, ("amazon", "quarantine", "0"): 1}
    assert udf(block.slice(0, 0)).num_rows == 0

    # what the read tasks do: rows arrive in chunks and are written as they come, each group
    # holding at most about rows_per_file rows; the same files and counts result
    streamed = str(tmp_path / "streamed")
    sink = ingest._RawSink(streamed, rows_per_file=2)
    for i in range(block.num_rows):
        sink.add(block.slice(i, 1))
        assert all(sum(t.num_rows for t in g) < 2 for g in sink.buffers.values())
    streamed_counts = sink.close()
    assert tally(streamed_counts.to_pylist(), ["platform", "_status", "_has_key"]) == tally(counts.to_pylist(), [
        "platform", "_status", "_has_key"])
    # a row per key, not per chunk added: a task that reads 900 files returns a handful of rows
    assert streamed_counts.num_rows == 6 and streamed_counts.schema.equals(ingest.RAW_COUNT_SCHEMA)
    for plat in ("reddit", "amazon"):
        for main in (True, False):
            a = read_table(ingest.raw_folder(raw, plat, main)).sort_by("record_id")
            b = read_table(ingest.raw_folder(streamed, plat, main)).sort_by("record_id")
            assert a.equals(b), (plat, main)
            files = storage.ls_files(ingest.raw_folder(streamed, plat, main), suffix=".parquet")
            assert sorted(pq.read_table(f).num_rows for f in files) == got[(plat, main)]


def test_file_shuffle_puts_each_key_in_one_partition(ray_local, tmp_path, monkeypatch):
    """by_key_partition through files (what ingest and curate use): every key's rows reach one
    reduce call, together; the result matches the groupby path's; a stray file in the shuffle
    folder (a killed map attempt's) is never read; empty input gives no rows."""
    import pyarrow.parquet as pq
    import ray

    from humanllm_ray.ingest import dataops
    from humanllm_ray.ingest.dataops import by_key_partition

    n_rows = 5000
    tbl = pa.table({"k": [f"key{i % 37}" for i in range(n_rows)], "v": list(range(n_rows))})
    ds = ray.data.from_arrow([tbl.slice(o, 700) for o in range(0, n_rows, 700)])  # 8 map blocks
    scratch = str(tmp_path / "shuffle")
    os.makedirs(scratch)
    pq.write_table(pa.table({"k": ["key0"], "v": [-1], "_part": [0]}), os.path.join(scratch, "map-stray.parquet"))

    def per_key(part: pa.Table) -> pa.Table:
        g = part.group_by("k").aggregate([("v", "sum"), ([], "count_all")])
        return pa.table({"k": g.column("k"), "s": g.column("v_sum"), "n": g.column("count_all"),
                         "calls": pa.array([1] * g.num_rows, pa.int64())})

    def rows(out):
        return sorted((r["k"], r["s"], r["n"]) for r in out)

    got = by_key_partition(ds, 5, per_key, key="k", batch_format="pyarrow", scratch_uri=scratch).take_all()
    want = [(f"key{j}", sum(range(j, n_rows, 37)), len(range(j, n_rows, 37))) for j in range(37)]
    assert rows(got) == sorted(want)  # one output row per key: no key split across partitions
    assert rows(by_key_partition(ds, 5, per_key, key="k", batch_format="pyarrow").take_all()) == sorted(want)
    # pandas hook with a schema, as ingest's joins use it
    schema = pa.schema([("k", pa.string()), ("n", pa.int64())])
    pd_out = by_key_partition(ds, 3, lambda df: df.groupby("k", as_index=False).size().rename(columns={"size": "n"}),
                              key="k", schema=schema, scratch_uri=str(tmp_path / "shuffle-pd")).take_all()
    assert sorted((r["k"], r["n"]) for r in pd_out) == sorted((k, n) for k, _s, n in want)
    empty = ray.data.from_arrow(tbl.slice(0, 0))
    assert by_key_partition(empty, 4, per_key, key="k", batch_format="pyarrow",
                            scratch_uri=str(tmp_path / "shuffle-empty")).take_all() == []

    # rows made inside the map task (map_fn: curate's timelines map reads its files so), in
    # runs of a few hundred bytes, so each map file holds several IPC streams per partition
    def pieces_of(batch: pa.Table):
        for lo in batch.column("lo").to_pylist():
            for o in range(lo, min(lo + 1000, n_rows), 90):
                yield tbl.slice(o, min(90, lo + 1000 - o))

    starts = ray.data.from_items([{"lo": lo} for lo in range(0, n_rows, 1000)], override_num_blocks=5)
    monkeypatch.setattr(dataops, "SHUFFLE_RUN_BYTES", 600)
    got = by_key_partition(starts, 5, per_key, key="k", batch_format="pyarrow", scratch_uri=str(tmp_path / "runs"),
                           map_fn=pieces_of).take_all()
    assert rows(got) == sorted(want)
    assert rows(by_key_partition(starts, 5, per_key, key="k", batch_format="pyarrow", map_fn=pieces_of).take_all()) \
        == sorted(want)


def _hot_key_rows(platform: str):
    """READ_SCHEMA rows of one platform's join with a hot key: Amazon reviews (item meta as aux
    rows; one item with 400 reviews, an item without meta, a quarantined row) or Reddit comments
    (submissions as the side rows; one thread with 400 comments, one without its submission)."""
    from humanllm_ray.ingest import schema

    rows = []
    if platform == "amazon":
        for i, n in enumerate([400, 12, 7]):
            rows.append(dict(platform="amazon", record_id=f"meta{i}", _status="aux", _key=f"item{i}", source_line=i,
                             _payload=json.dumps({"title": f"Item {i}", "main_category": f"Cat{i}", "store": "S"})))
            rows += [dict(platform="amazon", record_id=f"r{i}-{j}", kind="review", _status="ok", _key=f"item{i}",
                          text=f"review {j}", extra=json.dumps({"category": "orig"}), context="c", source_line=j)
                     for j in range(n)]
        rows += [dict(platform="amazon", record_id=f"nometa{j}", kind="review", _status="ok", _key="item9",
                      text="x", extra="{}", context="keep") for j in range(30)]
    else:
        for i, n in enumerate([400, 12, 7]):
            rows.append(dict(platform="reddit", record_id=f"t3_{i}", kind="post", _status="ok", _key=f"t3_{i}",
                             title=f"Thread {i}", text=f"body {i}", context="r/x"))
            rows += [dict(platform="reddit", record_id=f"c{i}-{j}", kind="comment", _status="ok", _key=f"t3_{i}",
                          text=f"comment {j}", context="r/x") for j in range(n)]
        rows += [dict(platform="reddit", record_id=f"orphan{j}", kind="comment", _status="ok", _key="t3_9",
                      text="x", context="r/y") for j in range(30)]
    rows.append(dict(platform=platform, record_id="bad", _status="quarantine", _reason="malformed_json",
                     _key=rows[1]["_key"]))
    return schema.to_table(rows)


@pytest.mark.parametrize("platform", ["amazon", "reddit"])
def test_join_of_a_hot_key_holds_a_chunk_of_its_partition_at_a_time(ray_local, tmp_path, platform):
    """Ingest's join shuffle (join_in_chunks): a partition of over twice the chunk is joined a
    chunk of records at a time against all its side rows, and gives exactly the rows of the
    whole-partition join (each side row once, every record with its side data), returned or,
    as ingest runs it, written to files of at most a chunk each. Each join call sees at most a
    chunk plus the side rows; without ``join_side`` the hot key's 400 rows go to one call."""
    import dataclasses

    import pyarrow.parquet as pq
    import ray

    from humanllm_ray import ingest
    from humanllm_ray.ingest.dataops import by_key_partition
    from humanllm_ray.ingest.schema import READ_SCHEMA

    tbl = _hot_key_rows(platform)
    plat = ingest.REGISTRY[platform]
    want = sorted(pa.Table.from_pandas(plat.join(tbl.to_pandas())[READ_SCHEMA.names], schema=READ_SCHEMA,
                                       preserve_index=False).to_pylist(), key=lambda r: r["record_id"])
    hot = "Item 0" if platform == "amazon" else "Thread 0"
    assert sum(hot in r["context"] for r in want) == 400  # the join does join (not a no-op)

    def joined(platform_hooks, tag, direct=None):
        calls = str(tmp_path / f"calls-{tag}")
        os.makedirs(calls)

        def recording_join(df):
            with open(os.path.join(calls, f"{os.getpid()}-{len(os.listdir(calls))}-{len(df)}"), "w"):
                pass
            return plat.join(df)

        hooks = dataclasses.replace(platform_hooks, join=recording_join)
        # map blocks of 20 rows: a partition's slice (one map task's piece) holds 20 at most
        ds = ray.data.from_arrow([tbl.slice(o, 20) for o in range(0, tbl.num_rows, 20)])
        # chunks of 50 records for a partition of over 100 rows (the hot key's holds 400)
        out = by_key_partition(ds, 2, ingest.join_in_chunks(hooks, 50, direct), schema=READ_SCHEMA,
                               batch_format="partition", scratch_uri=str(tmp_path / f"shuffle-{tag}")).take_all()
        if direct:  # what ingest runs: a big partition's chunks are written to files there
            files = storage.ls_files(direct, suffix=".parquet")
            assert files and all(pq.read_metadata(f).num_rows <= bound for f in files)
            out += pa.concat_tables([pq.read_table(f) for f in files]).to_pylist()
        return sorted(out, key=lambda r: r["record_id"]), max(int(n.rsplit("-", 1)[1]) for n in os.listdir(calls))

    bound = 50 + 19 + 3  # whole slices up to a chunk of 50 records, and the side rows (3 at most)
    got, biggest = joined(plat, "chunks")
    assert got == want
    assert biggest <= bound
    got, biggest = joined(plat, "direct", str(tmp_path / "direct"))
    assert got == want and biggest <= bound
    got, biggest = joined(dataclasses.replace(plat, join_side=None), "whole")
    assert got == want and biggest > 400


def test_run_writer_puts_a_partitions_runs_in_one_byte_range(tmp_path):
    """A shuffle map task's runs: each partition's rows, from every run, sit in one byte range
    of the map file (several IPC streams back to back), in the order they were added, and a
    ShufflePartition reads them, whole, by columns or by rows."""
    import numpy as np

    from humanllm_ray.ingest import dataops

    rng = np.random.default_rng(3)
    tbl = pa.table({"k": [f"u{int(x)}" for x in rng.integers(0, 50, 3000)], "v": np.arange(3000),
                    "t": [("w" * int(x)) for x in rng.integers(0, 40, 3000)]})
    runs = dataops._RunWriter(4, "k", run_bytes=5000)
    for o in range(0, tbl.num_rows, 170):
        runs.add(tbl.slice(o, 170))
    runs.add(tbl.slice(0, 0))
    written = runs.write(str(tmp_path))
    assert written.num_rows == 1  # one index row per map file, its pieces as lists
    parts = written.column("part")[0].as_py()
    assert parts == sorted(set(parts))  # one range each
    files, index, los, his = dataops.shuffle_index([written])
    assert len(files) == 1 and index.column("part").to_pylist() == parts and list(his - los) == [1] * len(parts)
    assert sum(index.column("rows").to_pylist()) == tbl.num_rows
    want_part = dataops._part_udf(4, "k")(tbl).column("_part").to_numpy()
    n_streams = 0
    for r in index.to_pylist():
        r["file"] = files[r["file_id"]].as_py()
        with open(r["file"], "rb") as fh:
            fh.seek(r["offset"])
            reader = pa.BufferReader(fh.read(r["length"]))
        streams = 0
        while reader.tell() < reader.size():
            pa.ipc.open_stream(reader).read_all()
            streams += 1
        n_streams = max(n_streams, streams)
        part = dataops.ShufflePartition([r["file"]], [r["offset"]], [r["length"]], [r["rows"]])
        want = tbl.filter(pa.array(want_part == r["part"]))
        assert part.read().equals(want)
        assert part.read(["v"]).column("v").equals(want.column("v"))
        pick = rng.permutation(part.num_rows)[:40]
        assert part.take(pick, ["t", "k"]).equals(want.select(["t", "k"]).take(pa.array(pick)))
        assert part.read(with_part=True).column("_part").to_pylist() == [r["part"]] * r["rows"]
    assert n_streams > 5  # the runs of a partition are back to back in its range
    assert dataops._RunWriter(4, "k").write(str(tmp_path / "none")).num_rows == 0


def test_map_files_carry_their_index_and_a_task_builds_the_shuffle_index(tmp_path, ray_local):
    """A map file written with its index as a footer gives back, from that footer, the same index
    row as the plain write; the index built from the footers in a Ray task
    (``gather_shuffle_index``) equals ``shuffle_index`` of those rows, and the partitions' bytes
    before the footer read as before."""
    import numpy as np
    import ray

    from humanllm_ray.ingest import dataops

    rng = np.random.default_rng(5)
    tables = [pa.table({"k": [f"u{int(x)}" for x in rng.integers(0, 40, 700)], "v": rng.integers(0, 99, 700)})
              for _ in range(3)]
    plain, pointers = [], []
    (tmp_path / "plain").mkdir()
    (tmp_path / "footer").mkdir()
    for t in tables:
        for in_file, out in ((False, plain), (True, pointers)):
            w = dataops._RunWriter(6, "k", run_bytes=2000)
            for o in range(0, t.num_rows, 100):
                w.add(t.slice(o, 100))
            out.append(w.write(str(tmp_path / ("plain" if not in_file else "footer")), index_in_file=in_file))
    assert all(p.schema.equals(dataops.MAP_POINTER_SCHEMA) for p in pointers)
    back = dataops.read_map_footers(pa.concat_tables(pointers))
    for got, want in zip(back, plain):  # same pieces, only the files' names differ
        assert got.schema.equals(dataops.MAP_INDEX_SCHEMA)
        assert got.drop_columns(["file"]).equals(want.drop_columns(["file"]))
    files, index, los, his = dataops.shuffle_index(back)

    ds = ray.data.from_items([{"i": i} for i in range(len(pointers))], override_num_blocks=len(pointers))
    ptr = {i: p for i, p in enumerate(pointers)}
    mapped = ds.map_batches(lambda b: ptr[int(b["i"][0].as_py())], batch_size=1, batch_format="pyarrow")
    shared, t_los, t_his, n_rows, n_files = dataops.gather_shuffle_index(mapped)
    built = ray.get(shared)

    def pieces(files, index):  # the map files come back in Ray Data's order, not the pointers'
        names = files.take(index.column("file_id")).to_pylist()
        cols = [index.column(c).to_pylist() for c in ("part", "offset", "length", "rows")]
        return sorted(zip(names, *cols))

    assert pieces(built["files"], built["index"]) == pieces(files, index)
    assert built["index"].column("part").equals(index.column("part"))  # sorted by partition
    assert t_los.tolist() == los.tolist() and t_his.tolist() == his.tolist()
    assert n_rows == sum(t.num_rows for t in tables) and n_files == 3
    want = pa.concat_tables(tables)
    want_part = dataops._part_udf(6, "k")(want).column("_part").to_numpy()
    parts = index.column("part").to_numpy()
    for lo, hi in zip(los.tolist(), his.tolist()):
        got = dataops.ShufflePartition.of_index(built["files"], built["index"], lo, hi).read()
        mine = want.filter(pa.array(want_part == parts[lo]))
        assert sorted(zip(*got.to_pydict().values())) == sorted(zip(*mine.to_pydict().values()))
    assert dataops._RunWriter(4, "k").write(str(tmp_path / "none"), index_in_file=True).num_rows == 0


def test_the_shuffle_index_task_waits_for_a_cpu_rather_than_start_a_worker_beside_busy_ones(tmp_path, ray_local):
    """While tasks hold every CPU, ``gather_shuffle_index``'s task waits for one of them to end:
    it takes a CPU, so it runs in a worker the node already has. With ``num_cpus=0`` it ran at
    once in a worker process started beside the busy ones (~105 MB while it ran), and that
    was ingest's peak at 1M and 10M records (bench/README.md, curate Round 18)."""
    import time

    import ray

    from humanllm_ray.ingest import dataops

    w = dataops._RunWriter(3, "k", run_bytes=2000)
    w.add(pa.table({"k": ["a", "b", "c", "d"], "v": [1, 2, 3, 4]}))
    mapped = ray.data.from_arrow(w.write(str(tmp_path), index_in_file=True))  # in the store: no task to run

    @ray.remote(num_cpus=1)
    def hold(seconds: float) -> float:
        time.sleep(seconds)
        return time.time()

    holders = [hold.remote(6.0) for _ in range(int(ray.cluster_resources()["CPU"]))]
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) > 0:  # every CPU held before the index is asked for
        assert time.monotonic() < deadline, "the holding tasks never started"
        time.sleep(0.1)
    shared, los, _his, n_rows, n_files = dataops.gather_shuffle_index(mapped)
    built_at = time.time()
    ended = ray.get(holders)
    assert (n_rows, n_files, len(los)) == (4, 1, len(set(ray.get(shared)["index"].column("part").to_pylist())))
    assert built_at >= min(ended), "the index task ran while every CPU was held: in a worker started beside them"


def test_tally_dataset_sums_count_blocks_like_tally_of_their_rows(ray_local):
    """``tally_dataset`` (a block at a time, in Arrow) gives what ``tally`` gives over every row
    the tasks returned, null keys and empty blocks included, and ``sum_counts`` folds a task's
    chunk counts into a row per key without changing the totals."""
    import numpy as np
    import ray

    from humanllm_ray.ingest import dataops

    rng = np.random.default_rng(3)
    schema = pa.schema([("platform", pa.string()), ("_status", pa.string()), ("n", pa.int64())])
    blocks = []
    for b in range(12):
        k = int(rng.integers(0, 30)) if b % 4 else 0  # every 4th block empty
        blocks.append(pa.table({"platform": [["reddit", "amazon", None][int(x)] for x in rng.integers(0, 3, k)],
                                "_status": [["ok", "quarantine"][int(x)] for x in rng.integers(0, 2, k)],
                                "n": rng.integers(0, 1000, k).astype(np.int64)}, schema=schema))
    want = dataops.tally([r for b in blocks for r in b.to_pylist()], ["platform", "_status"])
    ds = ray.data.from_arrow(blocks)
    assert dataops.tally_dataset(ds, ["platform", "_status"]) == want
    assert len(want) == 6 and (None, "ok") in want
    summed = dataops.sum_counts(blocks, ["platform", "_status"], schema)
    assert summed.schema.equals(schema) and summed.num_rows == len(want)
    assert dataops.tally(summed.to_pylist(), ["platform", "_status"]) == want
    assert dataops.sum_counts([], ["platform", "_status"], schema).num_rows == 0


def test_stage_data_context_holds_each_operator_to_its_tasks_per_cpu(ray_local):
    """Under ``stage_data_context(tasks_per_cpu=1)`` an operator has at most 1 x the cluster's
    CPUs tasks submitted and not finished; without it Ray Data submits them all at once (with
    the reservation off, as the stages run). Seen with tasks that need no CPU, which run as
    soon as they are submitted: their overlap is what was in flight."""
    import time

    import ray

    from humanllm_ray.ingest import dataops

    def spans(tasks_per_cpu: int):
        def udf(batch: pa.Table) -> pa.Table:
            t0 = time.time()
            time.sleep(2.5)  # long enough to overlap the few seconds Ray takes to start workers
            return pa.table({"start": [t0], "end": [time.time()]})

        with dataops.stage_data_context(False, tasks_per_cpu):
            rows = ray.data.from_items([{"i": i} for i in range(6)], override_num_blocks=6).map_batches(
                udf, batch_size=1, batch_format="pyarrow", num_cpus=0).take_all()
        assert len(rows) == 6
        return max(sum(1 for r in rows if r["start"] <= t < r["end"]) for t in (r["start"] for r in rows))

    cpus = int(ray.cluster_resources()["CPU"])
    assert spans(1) <= cpus
    assert spans(0) > cpus  # the same map without the cap: what the cap is for
    # the context restores Ray Data's own policies
    from ray.data._internal.execution.backpressure_policy import ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY
    assert ray.data.DataContext.get_current().get_config(ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY, None) is None


def test_shuffle_index_flattens_map_rows_by_partition():
    """The map tasks' one-row indexes (lists of pieces) become one flat table sorted by
    partition, each piece naming its map file by position, each partition one contiguous range."""
    import numpy as np

    from humanllm_ray.ingest import dataops

    maps = [pa.table({"file": [f], "part": [p], "offset": [o], "length": [ln], "rows": [r]},
                     schema=dataops.MAP_INDEX_SCHEMA)
            for f, p, o, ln, r in [("m0", [0, 2, 5], [0, 10, 30], [10, 20, 5], [1, 2, 3]),
                                   ("m1", [2], [0], [7], [4]),
                                   ("m2", [0, 5], [0, 3], [3, 9], [5, 6])]]
    files, index, los, his = dataops.shuffle_index(maps)
    assert files.to_pylist() == ["m0", "m1", "m2"]
    rows = [(files[r["file_id"]].as_py(), r["part"], r["offset"], r["length"], r["rows"]) for r in index.to_pylist()]
    assert rows == [("m0", 0, 0, 10, 1), ("m2", 0, 0, 3, 5), ("m0", 2, 10, 20, 2), ("m1", 2, 0, 7, 4),
                    ("m0", 5, 30, 5, 3), ("m2", 5, 3, 9, 6)]
    assert los.tolist() == [0, 2, 4] and his.tolist() == [2, 4, 6]
    part = dataops.ShufflePartition.of_index(files, index, int(los[1]), int(his[1]))
    assert part.num_rows == 6 and part.slice_rows.tolist() == [2, 4]
    empty_files, empty, lo0, hi0 = dataops.shuffle_index([])
    assert len(empty_files) == 0 and empty.num_rows == 0 and len(lo0) == len(hi0) == 0
    assert np.issubdtype(index.column("file_id").to_numpy().dtype, np.int32)


def test_retire_idle_workers_makes_the_next_pass_start_on_fresh_processes(ray_local):
    """The workers that ran a Ray Data pass have exited when the call returns (so the next
    pass's workers never overlap them), and the next pass runs on other processes."""
    import numpy as np
    import psutil
    import ray

    from humanllm_ray.ingest.dataops import retire_idle_workers

    def pids():
        ds = ray.data.range(6, override_num_blocks=6).map_batches(
            lambda b: {"pid": np.full(len(b["id"]), os.getpid())}, batch_size=None)
        return {int(r["pid"]) for r in ds.take_all()}

    def alive(pid):
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    first = pids()
    assert first and os.getpid() not in first and all(alive(p) for p in first)
    assert retire_idle_workers("a test") == int(ray.cluster_resources()["CPU"])  # one per CPU, distinct
    assert not [p for p in first if alive(p)], "a retired worker was still running when the call returned"
    assert not pids() & first


def test_worker_max_tasks_replaces_a_worker_after_n_tasks_and_keeps_the_maps_fused(ray_local, tmp_path):
    """Within ``worker_max_tasks(n)`` every operator built through dataops runs with Ray's
    max_calls=n: no worker process runs more than n of its tasks, the file read and the map
    after it stay one fused operator (equal remote arguments), and the setting ends with the
    block."""
    import numpy as np
    import pyarrow.parquet as pq

    from humanllm_ray.ingest import dataops

    schema = pa.schema([("x", pa.int64())])
    for i in range(6):
        pq.write_table(pa.table({"x": [i]}, schema=schema), tmp_path / f"f{i}.parquet")

    def pids(batch: pa.Table) -> pa.Table:
        return pa.table({"x": batch.column("x"), "pid": np.full(batch.num_rows, os.getpid())})

    def run():
        ds = dataops.read_parquet_sources([str(tmp_path)], schema).map_batches(
            pids, batch_format="pyarrow", **dataops.task_args()).materialize()
        rows = ds.take_all()
        assert sorted(r["x"] for r in rows) == list(range(6))
        ops = [line for line in ds.stats().splitlines() if line.startswith("Operator")]
        assert any("MapBatches(read)->MapBatches(pids)" in op for op in ops), ops
        per_pid = {}
        for r in rows:
            per_pid[r["pid"]] = per_pid.get(r["pid"], 0) + 1
        return per_pid

    assert dataops.task_args() == {}
    with dataops.worker_max_tasks(2):
        assert dataops.task_args() == {"max_calls": 2}
        capped = run()
    assert dataops.task_args() == {}
    assert max(capped.values()) <= 2 and len(capped) >= 3, capped
    with dataops.worker_max_tasks(0):  # 0: Ray's default, workers are reused
        assert dataops.task_args() == {}


# ----------------------------------------------------------------------------- malformed input


def _malformed_sources(d: Path) -> dict:
    import zstandard

    (d / "reddit").mkdir(parents=True)
    good = {"author": "some_user", "body": "x" * 250, "created_utc": 1600000000, "id": "abc1", "link_id": "t3_zz",
            "parent_id": "t3_zz", "score": 3, "subreddit": "test"}
    lines = [
        json.dumps(good).encode(),
        b'{"author": "a", "body": "truncated line", "created_utc": 16000',  # truncated JSON
        b'{"author": "b", "body": "caf\xe9 latin-1 byte", "created_utc": 1600000001, "id": "u1"}',  # invalid UTF-8
        b'{"author": "c", "body": "bare", "score": NaN, "created_utc": 1600000002, "id": "n1"}',  # bare NaN
        json.dumps({"author": "d", "body": "no time", "id": "m1"}).encode(),  # missing field
        json.dumps({"author": "e", "body": "typed", "created_utc": 1600000003, "id": "t1", "score": "lots"}).encode(),
        json.dumps({"author": "f", "body": "y" * 5000, "created_utc": 1600000004, "id": "l1"}).encode(),  # too long
        b"[1, 2, 3]",  # not an object
    ]
    (d / "reddit" / "bad.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    payload = b"".join(  # incompressible enough to span several zstd blocks
        json.dumps(dict(good, id=f"z{i}", body=hashlib.sha256(str(i).encode()).hexdigest() * 6)).encode() + b"\n"
        for i in range(2000))
    comp = zstandard.ZstdCompressor().compress(payload)
    (d / "reddit" / "cut.zst").write_bytes(comp[: len(comp) // 2])  # truncated .zst

    (d / "blogger").mkdir()
    (d / "blogger" / "777.male.30.Arts.Leo.xml").write_bytes(
        b"<Blog>\r\n<date>01,May,2004</date>\r\n<post>\r\nA fine first post that is long enough to count as a "
        b"record and has an & in it.\r\n</post>\r\n<date>02,Smarch,2004</date>\r\n<post>\r\nbad month\r\n</post>\r\n"
        b"<date>03,May,2004</date>\r\n<post>\r\nnever closed, the file just ends here"
    )
    (d / "amazon").mkdir()
    (d / "amazon" / "Toys.jsonl").write_text(
        json.dumps({"rating": "five", "title": "t", "text": "z" * 120, "asin": "A1", "parent_asin": "A1",
                    "user_id": "U1", "timestamp": 1600000000000}) + "\n"
        + json.dumps({"rating": 4.0, "title": "t", "asin": "A1", "user_id": "U2", "timestamp": 1600000000000}) + "\n"
    )
    (d / "twitter").mkdir()
    (d / "twitter" / "s140.csv").write_bytes(
        b'"0","1","Mon Apr 06 22:19:45 PDT 2009","NO_QUERY","u1","a perfectly normal tweet about my day at work"\r\n'
        b'"0","2","Mon Apr 06 22:19:45 PDT 2009","NO_QUERY","only five fields"\r\n'
        b'"4","3","yesterday-ish","NO_QUERY","u2","a tweet with a date nobody can parse at all"\r\n'
    )
    return {p: [str(d / p)] for p in ("reddit", "twitter", "blogger", "amazon")}


def test_malformed_input_is_quarantined(tmp_path):
    from humanllm_ray import curate, ingest

    srcs = _malformed_sources(tmp_path / "in")
    ov = [f"ingest.sources.{p}=[{','.join(v)}]" for p, v in srcs.items()] + ["ingest.max_line_bytes=2000"]
    cfg = _cfg(tmp_path / "run", *ov)
    rep = ingest.run(cfg)
    _assert_accounting(rep)
    q = _quarantine(rep["output"])
    reasons = {r["reason"] for r in q}
    expected = {"bad_json", "invalid_utf8", "nan_value", "missing_field", "bad_type", "line_too_long",
                "truncated_file", "bad_xml", "bad_timestamp", "bad_csv"}
    assert expected <= reasons, reasons
    for r in q:
        assert r["source_file"] and r["stage"] == "ingest"
    by = {(os.path.basename(r["source_file"]), r["reason"]): r for r in q}
    assert by[("bad.ndjson", "bad_json")]["source_line"] == 2
    assert by[("bad.ndjson", "invalid_utf8")]["source_line"] == 3
    assert by[("bad.ndjson", "nan_value")]["source_line"] == 4
    assert by[("bad.ndjson", "line_too_long")]["source_line"] == 7
    assert ("cut.zst", "truncated_file") in by
    assert ("777.male.30.Arts.Leo.xml", "bad_xml") in by
    assert ("777.male.30.Arts.Leo.xml", "bad_timestamp") in by
    # what could be read still came through: good lines, the zst prefix, the first blog post
    assert rep["by_platform"]["reddit"]["out"] >= 500
    assert rep["by_platform"]["blogger"]["out"] == 1
    cur = curate.run(cfg)
    _assert_accounting(cur)
    assert cur["rows_in"] == rep["rows_out"]


# ----------------------------------------------------------------------------- other formats


def test_other_formats_and_duplicates(tmp_path, monkeypatch):
    """Tweet JSON (JSONL and a search response), users+tweets tables, Sentiment140 with the
    0..5 header, Amazon 2018 (.gz) with 2018 metadata, bz2; exact and near duplicates."""
    from humanllm_ray import curate, ingest

    d = tmp_path / "in"
    (d / "twitter").mkdir(parents=True)
    (d / "amazon").mkdir()
    (d / "reddit").mkdir()
    (d / "blogger").mkdir()
    tw = {"id_str": "900", "created_at": "Sun Aug 31 00:29:15 +0000 2014", "lang": "en",
          "full_text": "Walked the whole river path this morning and counted eleven herons, a personal record",
          "user": {"screen_name": "heron_counter", "description": "birds, rivers, tea"}}
    (d / "twitter" / "tweets.jsonl").write_text(json.dumps(tw) + "\n")
    (d / "twitter" / "search.json").write_text(json.dumps(
        {"statuses": [dict(tw, id_str="901", full_text="Official store account: buy now and save on every order"),
                      dict(tw, id_str="902", user={"screen_name": "acme_store_official", "description": "Official"})],
         "search_metadata": {"count": 2}}, indent=2))
    (d / "twitter" / "users.csv").write_text(
        "user,id,followers,description,location\nmaker_mo,1,10,Official brand account of Mo's Shop LLC,NYC\n")
    (d / "twitter" / "tweets.csv").write_text(
        'user,id,tweet,date\nmaker_mo,77,"New candles are in, hand poured, come smell them this weekend at the market",'
        '2020-05-01 10:00:00\n')
    (d / "twitter" / "s140h.csv").write_bytes(
        b'0,1,2,3,4,5\r\n"4","5","Tue Apr 07 10:00:00 PDT 2009","NO_QUERY","dup_a","the ferry was late again but the sunset over the water made up for every minute of it"\r\n'
        b'"4","6","Tue Apr 07 11:00:00 PDT 2009","NO_QUERY","dup_b","The ferry was late again, but the sunset over the water made up for every minute of it!"\r\n'
        b'"4","7","Tue Apr 07 12:00:00 PDT 2009","NO_QUERY","dup_c","the ferry was so late again but the sunset over the water made up for every minute of it"\r\n'
    )
    r18 = {"overall": 5.0, "verified": True, "reviewTime": "09 1, 2016", "reviewerID": "A3CIUOJXQ5VDQ2",
           "asin": "B0000530HU", "reviewerName": "X", "summary": "Five Stars", "unixReviewTime": 1472688000,
           "reviewText": "Smells clean, lasts all day, and a single bottle went a long way for me this summer.",
           "vote": "1,204", "style": {"Size:": " 7.0 oz"}}
    with gzip.open(d / "amazon" / "All_Beauty_5.json.gz", "wt") as f:
        f.write(json.dumps(r18) + "\n" + json.dumps(dict(r18, asin="B0000530HV")) + "\n")
    (d / "amazon" / "meta_All_Beauty.json").write_text(json.dumps(
        {"asin": "B0000530HU", "title": "Classic Ice Blue Aftershave", "category": ["Beauty", "Aftershave"],
         "main_cat": "All Beauty", "also_buy": []}) + "\n")
    sub = {"author": "bz_user", "created_utc": 1500000000.0, "id": "s1", "is_self": True, "title": "A bz2 post",
           "selftext": "text " * 80, "score": 5, "num_comments": 3, "subreddit": "test"}
    (d / "reddit" / "RS.bz2").write_bytes(bz2.compress((json.dumps(sub) + "\n").encode()))

    srcs = {p: [str(d / p)] for p in ("reddit", "twitter", "blogger", "amazon")}
    ov = [f"ingest.sources.{p}=[{','.join(v)}]" for p, v in srcs.items()] + ["curate.min_records_per_user=1"]
    cfg = _cfg(tmp_path / "run", *ov)
    rep = ingest.run(cfg)
    _assert_accounting(rep)
    assert rep["rows_quarantined"] == 0, rep["by_reason"]
    recs = {r["record_id"]: r for r in read_table(str(tmp_path / "run" / "ingested" / "data")).to_pylist()}
    assert {"twitter:900", "twitter:901", "twitter:902", "twitter:77", "twitter:5", "reddit:t3_s1"} <= set(recs)
    assert recs["twitter:900"]["timestamp"] == 1409444955
    assert recs["twitter:5"]["timestamp"] == 1239123600  # 10:00 PDT
    assert json.loads(recs["twitter:77"]["extra"])["author_description"].startswith("Official brand")
    assert json.loads(recs["twitter:902"]["extra"])["author_flags"]["corporate_handle"] is True
    amazon = [r for r in recs.values() if r["platform"] == "amazon"]
    assert len(amazon) == 1 and rep["merged_detail"]["variant_duplicate"] == 1  # 2018 variant copies
    a = amazon[0]
    assert a["rating"] == 5.0 and a["timestamp"] == 1472688000 and a["context"] == "Classic Ice Blue Aftershave"
    assert json.loads(a["extra"])["helpful_vote"] == 1204 and json.loads(a["extra"])["category"] == "All Beauty"
    cur = curate.run(cfg)
    _assert_accounting(cur)
    q = {r["record_id"]: r["reason"] for r in _quarantine(cur["output"])}
    assert q["twitter:77"] == "corporate_account" and q["twitter:902"] == "corporate_account"
    assert q["twitter:901"] == "ad"
    assert q["twitter:6"] == "exact_duplicate"  # same text as twitter:5 after normalization
    assert q["twitter:7"] == "near_duplicate"
    assert "twitter:5" not in q and "twitter:900" not in q

    # dedup's connected components found in the workers (curate.components) instead of on the
    # driver, so the drop table reaches the tasks as object-store pieces: the same output
    from humanllm_ray.curate import components, dedup

    in_workers = []
    real = components.star_edges
    monkeypatch.setattr(dedup, "DRIVER_COMPONENTS_MAX_PAIRS", 0)
    monkeypatch.setattr(dedup, "DRIVER_LINKS_MAX", 0)  # and the links joined with the signatures there
    monkeypatch.setattr(components, "star_edges", lambda *a: in_workers.append(a[1]) or real(*a))
    cur2 = curate.run(cfg, output_uri=str(tmp_path / "curated_cc_in_workers"))
    assert in_workers == [cur["dedup"]["verified_links"]] and in_workers[0] >= 2
    q2 = {r["record_id"]: r["reason"] for r in _quarantine(cur2["output"])}
    assert q2 == q
    for key in ("rows_out", "by_reason", "users", "timelines", "dedup"):
        assert cur2[key] == cur[key], key
    tl = sorted(r["record_id"] for t in read_table(str(tmp_path / "run" / "curated" / "data")).to_pylist()
                for r in t["records"])
    tl2 = sorted(r["record_id"] for t in read_table(cur2["output"] + "/data").to_pylist() for r in t["records"])
    assert tl2 == tl and tl


# ----------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_realdata_all_platforms(tmp_path):
    from humanllm_ray import curate, ingest

    base = realdata_dir()
    files = {
        "reddit": [base / "reddit/tanaym42_anlp-project/RC_2006-01.zst",
                   base / "reddit/tanaym42_anlp-project/AskMen_submissions.ndjson",
                   base / "reddit/ibrahimabdelaal_Reddit-dataset-analysis-using-Hadoop/sample1.txt"],
        "twitter": [base / "twitter/subuppaluru_RNN/training.1600000.processed.noemoticon.csv",
                    base / "twitter/simdjson_simdjson/jsonexamples/twitter.json"],
        "blogger": [base / "blogger/muhwagua_color-bert/blogs"],
        "amazon": [base / "amazon/OoEthanoO_LSTMSentimentModel/All_Beauty_5.json"],
    }
    for p, fs in files.items():
        for f in fs:
            if not f.exists():
                pytest.skip(f"real data file missing: {f}")
    ov = [f"ingest.sources.{p}=[{','.join(str(f) for f in fs)}]" for p, fs in files.items()]
    cfg = _cfg(tmp_path, *ov)
    ing, cur = _run_both(cfg)
    _assert_accounting(ing)
    _assert_accounting(cur)
    assert cur["rows_in"] == ing["rows_out"]
    for p in files:
        assert ing["by_platform"][p]["out"] > 0, (p, ing["by_platform"])
        assert cur["by_platform"][p]["out"] > 0, (p, cur["by_platform"])
        assert cur["by_platform"][p]["users"] > 0, (p, cur["by_platform"])
    print("\nrealdata kept:", {p: (c["users"], c["out"]) for p, c in cur["by_platform"].items()})
    # known properties of these files (SOURCES.md)
    assert ing["merged_detail"]["variant_duplicate"] >= 3000  # All_Beauty_5 repeats reviews per variant
    assert cur["by_reason"]["bot_author"] >= 1 and cur["by_reason"]["deleted_author"] >= 1
    assert cur["by_reason"]["not_english"] >= 50  # the Japanese/Chinese search response
    assert SHARED_REALDATA.exists()


# ----------------------------------------------------------------------------- S3


def test_ingest_curate_on_s3(tmp_path, s3_bucket):
    """Sources and run root on an S3-compatible server (moto): readers open files through
    fsspec/s3fs in the Ray workers and stages write Parquet through pyarrow's fsspec bridge."""
    from humanllm_ray import curate, ingest

    fs, _ = storage.get_fs(s3_bucket)
    src = f"{s3_bucket}/raw"
    for platform in ("twitter", "blogger"):
        for f in sorted((DEMO_CORPUS_DIR / platform).iterdir()):
            fs.put_file(str(f), f"{src.split('://', 1)[1]}/{platform}/{f.name}")
    ov = [f"ingest.sources.twitter=[{src}/twitter/]", f"ingest.sources.blogger=[{src}/blogger/]",
          "ingest.use_demo_corpus=false"]
    cfg = config.load_config(overrides=[f"run.root={s3_bucket}/run", "run.progress=false", *ov])
    ing, cur = _run_both(cfg)
    _assert_accounting(ing)
    _assert_accounting(cur)
    assert set(ing["by_platform"]) == {"twitter", "blogger"}
    assert cur["by_platform"]["twitter"]["users"] > 0 and cur["by_platform"]["blogger"]["users"] > 0
    assert storage.exists(f"{s3_bucket}/run/curated/_SUCCESS")
    tl = read_table(f"{s3_bucket}/run/curated/data")
    assert tl.num_rows == cur["timelines"]
    assert _run_both(cfg)[1]["skipped"] is True


def test_bot_like_users_are_quarantined_whole():
    """Behavioural bot check: name-less automated accounts (bursts seconds apart, or one
    template) go whole to quarantine as bot_like_user; a person posting at human pace with
    varied text stays, and so does a day-resolution platform whose timestamps all tie."""
    from humanllm_ray.config import CurateConfig
    from humanllm_ray.curate import timelines

    cfg = CurateConfig()
    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike".split()

    def user(uid, platform, times, texts):
        return [
            {"user_id": uid, "platform": platform, "timestamp": t, "record_id": f"{uid}-{i}", "kind": "post",
             "title": "", "text": x, "context": "", "item_id": "", "rating": None, "extra": "",
             "source_file": "f", "source_line": i}
            for i, (t, x) in enumerate(zip(times, texts))
        ]

    human_texts = [" ".join(words[i:] + words[:i]) + f" thought number {i}" for i in range(10)]
    rows = (
        user("burst", "twitter", [1000 + 2 * i for i in range(10)], human_texts)
        + user("template", "reddit", [1000 + 3600 * i for i in range(10)],
               [f"Daily update #{i}: the markets moved {i} points today" for i in range(10)])
        + user("person", "reddit", [1000 + 3600 * i for i in range(10)], human_texts)
        + user("daydates", "amazon", [86400] * 10, human_texts)
    )
    tbl = pa.Table.from_pylist(rows)
    tl, q = timelines.build_tables(tbl, cfg.min_records_per_user, cfg.timeline_max_tokens, cfg)
    assert set(tl.column("user_id").to_pylist()) == {"person", "daydates"}
    qrows = q.to_pylist()
    assert {r["user_id"]: r["reason"] for r in qrows} == {"burst": "bot_like_user", "template": "bot_like_user"}
    burst = [r for r in qrows if r["user_id"] == "burst"]
    assert len(burst) == 10 and "gaps between posts" in burst[0]["detail"]
    template = [r for r in qrows if r["user_id"] == "template"]
    assert "same 24 characters" in template[0]["detail"]

    # Each check can be turned off.
    cfg.bot_burst_fraction = 0
    cfg.bot_template_fraction = 0
    tl, q = timelines.build_tables(tbl, cfg.min_records_per_user, cfg.timeline_max_tokens, cfg)
    assert q.num_rows == 0 and len(set(tl.column("user_id").to_pylist())) == 4


def _reference_timelines(rows, min_records, max_tokens):
    """The timeline rule written the plain way (a dict per record): sort each user's records
    by (timestamp, record_id), drop users under min_records, cut greedily at max_tokens."""
    by_user: dict = {}
    for r in rows:
        by_user.setdefault(r["user_id"], []).append(r)
    out, rejected = [], []
    for uid in sorted(by_user):
        recs = sorted(by_user[uid], key=lambda r: (r["timestamp"], r["record_id"]))
        if len(recs) < min_records:
            rejected += [(uid, r["record_id"]) for r in recs]
            continue
        chunks, cur, used = [], [], 0
        for r in recs:
            t = (len(r["title"] or "") + len(r["text"] or "") + len(r["context"] or "")) // 4 + 1
            if cur and used + t > max_tokens:
                chunks.append(cur)
                cur, used = [], 0
            cur.append(r)
            used += t
        chunks.append(cur)
        out += [(uid, i, [r["record_id"] for r in ch]) for i, ch in enumerate(chunks)]
    return out, sorted(rejected)


def test_timelines_match_the_plain_rule():
    """build_tables (columnar: Arrow sort, offsets, numpy token counts) gives exactly the
    timelines of the plain per-record rule on random users: order, chunk cuts (including a
    record over the budget alone in its chunk), kept fields and nulls, rejected users."""
    import random

    from humanllm_ray.curate import timelines

    rng = random.Random(7)
    rows = []
    for u in range(40):
        for i in range(rng.choice([1, 3, 6, 9, 25])):
            long = rng.random() < 0.05
            rows.append({"user_id": f"user{u:02d}", "platform": "reddit", "record_id": f"r{u}-{i}",
                         "timestamp": rng.choice([1000, 2000, 3000 + i]), "kind": "post",
                         "title": None if rng.random() < 0.3 else "héllo wörld",
                         "text": ("é" * rng.randint(1, 900)) if not long else "x" * 5000,
                         "context": "", "item_id": None, "rating": rng.choice([None, 4.0]), "extra": "{}",
                         "source_file": "f.jsonl", "source_line": len(rows)})
    rng.shuffle(rows)
    tl, q = timelines.build_tables(pa.Table.from_pylist(rows), 6, 600, None)
    assert tl.schema.equals(timelines.TIMELINE_SCHEMA)
    want, want_rejected = _reference_timelines(rows, 6, 600)
    got = sorted((t["user_id"], t["chunk"], [r["record_id"] for r in t["records"]]) for t in tl.to_pylist())
    assert got == want and any(c > 0 for _u, c, _ids in got)
    assert tl.column("n_records").to_pylist() == [len(x) for x in tl.column("records").to_pylist()]
    by_id = {r["record_id"]: r for r in rows}
    for t in tl.to_pylist():
        for rec in t["records"]:
            src = by_id[rec["record_id"]]
            assert rec["title"] == (src["title"] or "") and rec["item_id"] == "" and rec["rating"] == src["rating"]
            assert rec["text"] == src["text"]
    assert sorted(zip(q.column("user_id").to_pylist(), q.column("record_id").to_pylist())) == want_rejected
    assert set(q.column("reason").to_pylist()) == {"too_few_records_user"}
    assert q.column("source_line").to_pylist() == [by_id[r]["source_line"] for r in q.column("record_id").to_pylist()]
    empty_tl, empty_q = timelines.build_tables(pa.Table.from_pylist(rows).slice(0, 0), 6, 600, None)
    assert empty_tl.num_rows == 0 and empty_q.num_rows == 0


def test_timelines_writer_retry_rewrites_same_files(tmp_path):
    """Curate's timelines task writes its partition's timelines and rejected users itself: a
    retried task overwrites the same files, and its counts cover the partition."""
    from humanllm_ray import curate
    from humanllm_ray.config import CurateConfig

    rows = [{"user_id": f"u{u}", "platform": "twitter", "record_id": f"t{u}-{i}", "timestamp": 10_000 * i,
             "kind": "tweet", "title": "", "text": ["morning run", "new job!", "rainy", "books", "tea time", "late train", "gig", "naps"][i]
             + f" and more from user {u}",
             "context": "", "item_id": "", "rating": None, "extra": "{}", "source_file": "f", "source_line": i}
            for u in range(3) for i in range(8 if u else 2)]
    ccfg = CurateConfig()
    fn = curate._timelines_writer(ccfg, str(tmp_path / "data"), str(tmp_path / "_quarantine"))
    tbl = pa.Table.from_pylist(rows)
    first = fn(tbl)
    fn(tbl)
    assert len(storage.ls_files(str(tmp_path / "data"), suffix=".parquet")) == 1
    assert len(storage.ls_files(str(tmp_path / "_quarantine"), suffix=".parquet")) == 1
    assert first.to_pylist() == [{"platform": "twitter", "users": 2, "timelines": 2, "records": 16}]


def test_files_per_task_leaves_tasks_per_cpu_within_a_bound(ray_local, monkeypatch):
    """A small-file pass gives a task as many files as leave SMALL_FILE_TASKS_PER_CPU tasks per
    CPU, at least 1 and at most MAX_FILES_PER_TASK (what a task gathers stays bounded as the
    corpus grows); outside Ray, one file a task."""
    from humanllm_ray.ingest import dataops

    cpus = int(ray_local.cluster_resources()["CPU"])
    per_cpu, most = dataops.SMALL_FILE_TASKS_PER_CPU, dataops.MAX_FILES_PER_TASK
    assert [dataops.files_per_task(n) for n in (0, 1, per_cpu * cpus - 1)] == [1, 1, 1]
    assert dataops.files_per_task(3 * per_cpu * cpus) == min(3, most)
    assert dataops.files_per_task(3 * per_cpu * cpus + per_cpu * cpus - 1) == min(3, most)
    assert dataops.files_per_task(100 * most * per_cpu * cpus) == most
    monkeypatch.setattr(ray_local, "is_initialized", lambda: False)
    assert dataops.files_per_task(10_000) == 1


def test_largest_first_orders_file_tasks_by_size_then_name(tmp_path):
    """Per-file maps start their tasks in this order, so the biggest files go first and the
    pass does not end on one big file running alone."""
    import pyarrow.fs as pafs

    from humanllm_ray.ingest import dataops

    sizes = {"a.parquet": 10, "b.parquet": 300, "c.parquet": 10, "d.parquet": 2000}
    for name, n in sizes.items():
        (tmp_path / name).write_bytes(b"x" * n)
    paths = [str(tmp_path / n) for n in sorted(sizes)]
    want = [str(tmp_path / n) for n in ("d.parquet", "b.parquet", "a.parquet", "c.parquet")]
    assert dataops.largest_first(paths) == want
    assert dataops.largest_first(paths, pafs.LocalFileSystem()) == want
    assert dataops.largest_first(paths[:1]) == paths[:1]
