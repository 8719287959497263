"""Curate: ingested LogRecords -> per-user chronological timelines of qualified records.

Flow (Ray Data throughout):

1. ``map_batches`` record pass: raw-text rule filters (authors, removed text, Reddit score /
   self-post / top-level, retweets, ads; ``filters.py``), cleaning (``clean.py``: entities, URLs,
   @mentions, emoji; drop if it removed over half), PII placeholders (``pii.py``), cleaned-text
   rules (short questions, per-platform/per-format minimum lengths), language id (``lang.py``).
2. duplicate removal (``dedup.py``): exact hash + MinHash LSH, bands grouped by a shuffle.
3. timelines (``timelines.py``): shuffle by user, drop users with too few records or bot-like
   behaviour, sort, chunk; each task decides from narrow columns, then builds a group at a time.

Output ``{run.root}/curated/data/*.parquet``: one row per (user, chunk) with the records as a
list of structs sorted by time (schema ``timelines.TIMELINE_SCHEMA``). Every dropped record is in
``_quarantine/`` with its reason code and source location; rows_in == rows_out +
rows_quarantined exactly (rows_merged = 0).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any, Dict, Iterator, List, Optional

import pyarrow as pa

from .. import stage, storage
from ..config import HumanLLMConfig, to_dict
from ..ingest.dataops import (SCRATCH, PartWriter, TablePartition, block_counts, by_key_partition, by_slices,
                              content_name, count_by, file_list_dataset, files_per_task, iter_parquet_slices,
                              largest_first, parquet_file_list, partitions_for, path_stem, per_file_udf,
                              read_parquet_files, release_memory, retire_idle_workers, stage_data_context,
                              tally_dataset, worker_max_tasks, workers_retired, write_part)
from ..ingest.schema import LOG_RECORD_COLUMNS, LOG_RECORD_FIELDS, LOG_RECORD_SCHEMA
from . import clean, dedup, drop_route, filters, pii, timelines
from .timelines import TIMELINE_SCHEMA

log = logging.getLogger("humanllm")

CURATE_VERSION = 1
# Settings that change how the stage runs, not what it writes: left out of its fingerprint,
# so changing one does not redo a finished curate.
RUNTIME_ONLY = ("worker_max_tasks", "retire_workers_min_records")
WORK_SCHEMA = pa.schema(
    LOG_RECORD_FIELDS
    + [pa.field("_reason", pa.string()), pa.field("_detail", pa.string()), pa.field("_raw", pa.string()),
       # the Ray node that ran the record pass for this row; only counted into the report
       # (extra["nodes"]), never written out: data and quarantine select their own columns
       pa.field("_node", pa.string())]
)


# Fault-injection hook for tests/test_curate_faults.py ("nothing lost, nothing stuck").
# A test arms it by creating this marker under the stage's _work folder (which survives the
# reset of an unfinished attempt) before the stage starts. Each record-pass task that finds
# it announces its worker pid next to it (``<marker>.pid-<pid>``) and waits until the marker
# is removed, so the test can SIGKILL that real Ray worker from outside while it is inside a
# curate task, at a known point, instead of racing a sub-second task. The driver looks for
# the marker once per stage run; unarmed, the tasks never touch it.
FAULT_HOLD = ("_work", "fault", "record_pass.hold")
FAULT_HOLD_MAX_S = 300.0  # an abandoned marker delays a task, it never blocks it for good


def _fault_hold(marker: str) -> None:
    if not storage.exists(marker):
        return
    storage.write_text(f"{marker}.pid-{os.getpid()}", str(os.getpid()))
    deadline = time.monotonic() + FAULT_HOLD_MAX_S
    while storage.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.05)


def _record_pass_udf(ccfg):
    """map_batches UDF: filters + cleaning + PII + language for a block of LogRecords, slice by
    slice (the one-process path of bench/curate; the stage streams files, _record_pass_writer)."""

    def udf(batch: pa.Table) -> pa.Table:
        import ray

        # where this batch runs (counted into the report's "nodes"); "" when called outside Ray
        node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
        return by_slices(lambda piece: _record_pass_rows(ccfg, piece, node_id), batch)

    return udf


def _record_pass_rows(ccfg, batch: pa.Table, node_id: str) -> pa.Table:
    """The record pass over one slice of rows, as ``WORK_SCHEMA`` rows."""
    out = {c: [] for c in WORK_SCHEMA.names}
    for r in batch.select(LOG_RECORD_COLUMNS).to_pylist():
        try:
            extra = json.loads(r["extra"] or "{}")
        except ValueError:
            extra = {}
        rec = filters.Rec(platform=r["platform"], kind=r["kind"], title=str(r["title"] or ""),
                          text=str(r["text"] or ""), extra=extra)
        reason, detail = filters.first_failure(rec, ccfg, "raw")
        title, text, context = rec.title, rec.text, str(r["context"] or "")
        if not reason:
            title, _ = clean.clean_text(rec.title)
            text, removed = clean.clean_text(rec.text)
            context, _ = clean.clean_text(context)
            if ccfg.scrub_pii:
                title, _ = pii.scrub(title)
                text, _ = pii.scrub(text)
                context, _ = pii.scrub(context)
            rec.clean_title, rec.clean_text, rec.removed_fraction = title, text, removed
            reason, detail = filters.first_failure(rec, ccfg, "clean")
            if not reason:
                reason, detail = filters.first_failure(rec, ccfg, "lang")
        r["title"], r["text"], r["context"] = title, text, context
        rating = r["rating"]
        r["rating"] = None if rating is None or rating != rating else float(rating)  # NaN -> null
        r["_reason"], r["_detail"] = reason, detail
        raw = (rec.title + "\n" + rec.text).strip()[:4000] if reason else ""
        r["_raw"] = pii.scrub(raw)[0] if raw and ccfg.scrub_pii else raw  # excerpts leave curate scrubbed too
        r["_node"] = node_id
        for c in WORK_SCHEMA.names:
            out[c].append(r[c])
    return pa.table(out, schema=WORK_SCHEMA)


def _mark_dups_udf(drops):
    """map_batches UDF: sets ``_reason``/``_detail``/``_raw`` of the batch's rows that are in
    ``drops`` (pieces of a ``dedup.DROP_SCHEMA`` table: tables, object refs or Parquet files;
    ``dedup.read_piece``), read at the first call and kept for the next ones."""
    held: List[List[pa.Table]] = []

    def udf(batch: pa.Table) -> pa.Table:
        if not held:
            held.append([p for p in map(dedup.read_piece, drops) if p.num_rows])
        pieces = held[0]
        if not pieces or not batch.num_rows:
            return batch
        return by_slices(lambda piece: _mark_rows(pieces, piece), batch)

    return udf


def _mark_rows(pieces: List[pa.Table], batch: pa.Table) -> pa.Table:
    """:func:`_mark_dups_udf` over one slice of rows."""
    rids = [dedup.row_uid(r, f, ln) for r, f, ln in zip(*(batch.column(c).to_pylist() for c in dedup.UID_COLUMNS))]
    at, hit_reason, hit_detail = dedup.lookup_drops(pieces, rids)
    if not len(at):
        return batch
    reasons = batch.column("_reason").to_pylist()
    details = batch.column("_detail").to_pylist()
    raws = batch.column("_raw").to_pylist()
    texts = batch.column("text").to_pylist()
    for i, reason, detail in zip(at.tolist(), hit_reason, hit_detail):
        reasons[i], details[i] = reason, detail
        raws[i] = (texts[i] or "")[:4000]  # already cleaned and scrubbed
    batch = batch.set_column(batch.schema.get_field_index("_reason"), "_reason", pa.array(reasons, pa.string()))
    batch = batch.set_column(batch.schema.get_field_index("_detail"), "_detail", pa.array(details, pa.string()))
    return batch.set_column(batch.schema.get_field_index("_raw"), "_raw", pa.array(raws, pa.string()))


def _work_to_quarantine(batch: pa.Table) -> pa.Table:
    n = batch.num_rows
    return pa.table(
        {
            "stage": pa.array(["curate"] * n, pa.string()),
            "reason": batch.column("_reason"),
            "detail": batch.column("_detail"),
            "platform": batch.column("platform"),
            "source_file": batch.column("source_file"),
            "source_line": batch.column("source_line"),
            "record_id": batch.column("record_id"),
            "user_id": batch.column("user_id"),
            "raw": batch.column("_raw"),
        }
    )


# What the record pass returns per block, instead of its rows (they go to scratch files).
PASS_COUNT_SCHEMA = pa.schema([("platform", pa.string()), ("_reason", pa.string()), ("_node", pa.string()),
                               ("n", pa.int64())])
# ... and which worker process ran each file (the report's record_pass_workers: how many
# processes the pass used, which curate.worker_max_files raises above the CPUs).
PASS_WORKER_SCHEMA = PASS_COUNT_SCHEMA.append(pa.field("_worker", pa.string()))
# What the timelines step returns per partition, instead of its timelines (they go to data/).
TIMELINE_COUNT_SCHEMA = pa.schema([("platform", pa.string()), ("users", pa.int64()), ("timelines", pa.int64()),
                                   ("records", pa.int64())])
_IDENTITY = ["source_file", "source_line", "record_id"]


def _record_pass_writer(ccfg, fs, scratch_uri: str, signatures_uri: str, hold_marker: Optional[str] = None):
    """map_batches UDF over the list of ingested files (``dataops.file_list_dataset``): the
    record pass over each file, streamed a slice of ``PY_SLICE_ROWS`` rows at a time, its rows
    written to one scratch file and the MinHash signatures of those that passed
    (``dedup.signature_rows``) to another; returns only the counts by (platform, _reason, _node).

    Streaming: a task holds one slice of decoded rows and the two writers' current row group,
    not the file (a whole-file block made each worker's high-water mark grow with the files'
    size, ``ingest.rows_per_file``: bench/README.md, curate Round 8). The signatures are made
    here, from the rows in hand, rather than by a pass of their own over the records scratch
    (Round 7). Both files are named after the input file: a retried task overwrites them."""
    import pyarrow.compute as pc

    mask = dedup.ORD_MASK  # as set now, in the driver (tests narrow it)

    def one_file(path: str) -> pa.Table:
        import ray

        if hold_marker:
            _fault_hold(hold_marker)
        # where this file runs (counted into the report's "nodes"); "" when called outside Ray
        node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
        stem = path_stem(path)
        counts = []
        with PartWriter(scratch_uri, f"records-{stem}.parquet", WORK_SCHEMA) as records, \
                PartWriter(signatures_uri, f"signatures-{stem}.parquet", dedup.SIG_SCHEMA) as signatures:
            for piece in iter_parquet_slices(path, fs, LOG_RECORD_SCHEMA):
                work = _record_pass_rows(ccfg, piece, node_id)
                records.write(work)
                passed = work.filter(pc.equal(work.column("_reason"), ""))
                if passed.num_rows:
                    signatures.write(dedup.signature_rows(passed, ccfg.minhash_num_perm, mask))
                counts.append(block_counts(work, ["platform", "_reason", "_node"], PASS_COUNT_SCHEMA))
                del work, passed, piece
        if not counts:
            return PASS_WORKER_SCHEMA.empty_table()
        counts = pa.concat_tables(counts)
        return counts.append_column("_worker", pa.array([f"{node_id}:{os.getpid()}"] * counts.num_rows, pa.string()))

    return per_file_udf(one_file, PASS_WORKER_SCHEMA)


def _split_kept_udf(drops, quarantine_uri: str, ccfg=None):
    """map_batches UDF over a block of record-pass results (bench/curate's one-process path;
    the stage streams files, :func:`_split_kept_slices`): marks duplicates, writes the block's
    rejected records (filters, duplicates) to ``_quarantine/`` and returns the qualified
    records, only the columns the timelines step needs (``timelines.with_plan_columns``)."""
    import pyarrow.compute as pc

    mark = _mark_dups_udf(drops)

    def udf(batch: pa.Table) -> pa.Table:
        batch = mark(batch)
        ok = pc.equal(batch.column("_reason"), "")
        rejected = batch.filter(pc.invert(ok))
        write_part(_work_to_quarantine(rejected), quarantine_uri, content_name(rejected, _IDENTITY, "records"))
        out = timelines.with_plan_columns(batch.filter(ok), ccfg)
        del batch, rejected
        release_memory()
        return out

    return udf


def _split_kept_slices(drops, fs, quarantine_uri: str, ccfg=None):
    """The map side of the timelines shuffle (``by_key_partition``'s ``map_fn``), over a batch
    of the records scratch's file list (``dataops.file_list_dataset``): each file streamed a
    slice at a time, duplicates marked, rejected records (filters, duplicates) written to one
    ``_quarantine/`` file named after the scratch file (a retry overwrites it), and the
    qualified records yielded slice by slice, only the columns the timelines step needs, with
    each record's token count and opening (``timelines.with_plan_columns``). The shuffle's map
    task sorts and compresses them a run at a time, so it never holds the file's rows whole
    (bench/README.md, curate Rounds 8 and 11).

    ``drops``: the drop table's pieces, searched whole, or a :class:`drop_route.RoutedDrops`,
    from which each file reads only its own drops (Round 12)."""
    import posixpath

    import pyarrow.compute as pc

    routed = isinstance(drops, drop_route.RoutedDrops)
    mark = None if routed else _mark_dups_udf(drops)

    def slices(batch: pa.Table) -> Iterator[pa.Table]:
        for path in batch.column("path").to_pylist():
            mark_file = _mark_dups_udf(drops.pieces_for(path)) if routed else mark
            name = "rejected-" + posixpath.basename(path)
            with PartWriter(quarantine_uri, name, timelines.QUARANTINE_SCHEMA) as quarantine:
                for piece in iter_parquet_slices(path, fs, WORK_SCHEMA):
                    piece = mark_file(piece)
                    ok = pc.equal(piece.column("_reason"), "")
                    quarantine.write(_work_to_quarantine(piece.filter(pc.invert(ok))))
                    kept = timelines.with_plan_columns(piece.filter(ok), ccfg)
                    del piece
                    yield kept
                    del kept

    return slices


# Give the heap back after the plan and after each group in a timelines partition of several
# groups (``_timelines_writer``); bench/curate/hotuser.py turns it off for its baseline.
TIMELINES_TRIM_GROUPS = True


def _timelines_writer(ccfg, data_uri: str, quarantine_uri: str, group_rows: int = 0):
    """by_key_partition hook (``batch_format="partition"``): one partition's qualified records
    -> timelines written to data/, the records of rejected users to _quarantine/ (files named by
    content, so a retried task rewrites the same files), and the partition's counts by platform
    returned. Also takes a pyarrow Table (the one-process path, tests).

    One user's records all land in one partition and users are skewed (the heaviest user of
    bench/curate's 3M corpus has 36,507 kept records, a partition of 10k-record ones held 46k),
    so the task does not hold its partition whole: it reads the narrow ``timelines.PLAN_COLUMNS``
    of every row, decides every user (``timelines.plan``), then reads, builds and writes the
    records a group of at most ``group_rows`` sorted rows at a time (default:
    ``timeline_group_rows``, else twice ``timeline_rows_per_partition``, so a partition of
    ordinary size is one group), a big user's timelines split across groups at chunk boundaries."""
    group_rows = group_rows or int(ccfg.timeline_group_rows) or 2 * int(ccfg.timeline_rows_per_partition)

    def fn(part) -> pa.Table:
        if isinstance(part, pa.Table):
            part = TablePartition(part if "tokens" in part.column_names else timelines.with_plan_columns(part, ccfg))
        if not part.num_rows:
            return TIMELINE_COUNT_SCHEMA.empty_table()
        plan = timelines.plan(part.read(timelines.PLAN_COLUMNS), ccfg.min_records_per_user,
                              ccfg.timeline_max_tokens, ccfg)
        ranges = timelines.groups(plan, group_rows)
        # A partition of several groups holds a heavy user: the plan's freed scratch and each
        # written group's stay in the heap and pile up, group after group, unless given back
        # (a 140k-row partition's reduce peaked 55 MB above its start, 42 with this;
        # bench/curate/hotuser.py). One group (any partition without a heavy user): nothing
        # piles up within the task, and by_key_partition gives the heap back after this hook.
        trim = TIMELINES_TRIM_GROUPS and len(ranges) > 1
        if trim:
            release_memory()
        for lo, hi in ranges:
            tl, q = timelines.assemble(plan, lo, hi, lambda rows: part.take(rows, timelines.INPUT_COLUMNS))
            write_part(tl, data_uri, content_name(tl, ["user_id", "chunk", "n_records"], "timelines"))
            write_part(q, quarantine_uri, content_name(q, _IDENTITY, "users"))
            del tl, q
            if trim:
                release_memory()
        platforms = sorted(plan.counts)
        return pa.table({"platform": platforms,
                         **{k: [plan.counts[p][k] for p in platforms] for k in ("users", "timelines", "records")}},
                        schema=TIMELINE_COUNT_SCHEMA)

    return fn


def run(cfg: HumanLLMConfig, input_uri: Optional[str] = None, output_uri: Optional[str] = None) -> Dict[str, Any]:
    """Run the curate stage over ``{input_uri}/data`` (default: the run's ingested/)."""
    from .. import runtime

    storage.configure(cfg.s3)
    runtime.init_ray(cfg)
    paths = runtime.RunPaths.from_config(cfg)
    in_uri = storage.normalize(input_uri) if input_uri else paths.ingested
    out_uri = output_uri or paths.curated
    fingerprint = {"version": CURATE_VERSION,
                   "curate": {k: v for k, v in to_dict(cfg)["curate"].items() if k not in RUNTIME_ONLY}}

    def body(sd: stage.StageDir) -> stage.StageResult:
        # Every operator built in the stage runs its tasks with max_calls=curate.worker_max_tasks,
        # except the record pass's, which passes its own (curate.worker_max_files).
        with stage_data_context(cfg.run.ray_data_op_reservation, cfg.run.ray_data_tasks_per_cpu), \
                worker_max_tasks(cfg.curate.worker_max_tasks):
            return _curate(cfg, in_uri, sd)

    return stage.run_stage("curate", out_uri, body, fingerprint=fingerprint, inputs=[in_uri])


def _ingested_files(in_uri: str):
    """(paths, pyarrow filesystem) of the ingested Parquet files, largest first (the record
    pass's tasks start in this order: :func:`dataops.largest_first`); no paths when there are none."""
    paths, fs = parquet_file_list([storage.join(in_uri, "data")])
    return largest_first(paths, fs), fs


def _input_records(in_uri: str, unknown: int) -> int:
    """The ingested records under ``in_uri`` as its ``_report.json`` counts them (``unknown``
    where it has none: input written by something other than the ingest stage)."""
    report = storage.join(in_uri, "_report.json")
    try:
        return int(storage.read_json(report)["rows_out"]) if storage.exists(report) else unknown
    except (KeyError, TypeError, ValueError):
        return unknown


def _curate(cfg: HumanLLMConfig, in_uri: str, sd: stage.StageDir) -> stage.StageResult:
    ccfg = cfg.curate
    files, fs = _ingested_files(in_uri)
    if not files:
        log.warning("curate: no ingested records under %s", in_uri)
        return stage.StageResult(rows_in=0, rows_out=0, extra={"users": 0, "timelines": 0, "nodes": {}})
    t0 = time.monotonic()
    scratch = sd.path(SCRATCH)
    storage.rm(scratch)
    records_uri = storage.join(scratch, "records")

    # 1. record filters, cleaning, PII, language: one task per ingested file, each writing its
    # results to one scratch file and returning its counts. A task whose worker dies (OOM kill,
    # lost node, SIGKILL) is resubmitted: Ray Data's tasks default to max_retries=-1 (retry
    # system failures without limit; ray/data/_internal/remote_fn.py), so nothing is set here.
    hold = sd.path(*FAULT_HOLD)
    hold = hold if storage.exists(hold) else None
    # Each pass starts on fresh Ray workers (curate.retire_workers): one that ran ingest, or the
    # pass before, keeps that pass's retained heap (dataops.retire_idle_workers).
    retired_before = workers_retired()
    retire = ccfg.retire_workers and _input_records(in_uri, ccfg.retire_workers_min_records) >= \
        ccfg.retire_workers_min_records
    if retire:
        retire_idle_workers("curate's record pass")
    # One task per ingested file (batch_size=1), which it streams: see _record_pass_writer. A
    # worker is replaced after curate.worker_max_files files, so its retained heap is bounded by
    # that many files, not by the corpus's size (config.py says what was measured).
    signatures_uri = storage.join(scratch, "dedup", "signatures")
    by_worker = tally_dataset(file_list_dataset(files).map_batches(
        _record_pass_writer(ccfg, fs, records_uri, signatures_uri, hold), batch_size=1,
        batch_format="pyarrow", max_calls=ccfg.worker_max_files or None), ["platform", "_reason", "_node", "_worker"])
    n_workers = len({w for (_p, _r, _node, w) in by_worker})
    in_counts: Dict[str, int] = {}
    nodes: Dict[str, int] = {}  # records processed by the record pass per Ray node (the spread)
    for (p, _r, node, _w), n in by_worker.items():
        in_counts[p] = in_counts.get(p, 0) + n
        nodes[node] = nodes.get(node, 0) + n
    n_in = sum(in_counts.values())
    n_pass = sum(n for (_p, r, _node, _w), n in by_worker.items() if r == "")
    log.info("curate: record pass: %d records, %d passed the record rules, %d files on %d worker processes "
             "(%.1f s)", n_in, n_pass, len(files), n_workers, time.monotonic() - t0)
    # wall seconds of each pass, in the report: which pass a slower run lost its time in
    pass_seconds: Dict[str, float] = {}
    t_pass = t0

    def lap(name: str) -> None:
        nonlocal t_pass
        now = time.monotonic()
        pass_seconds[name] = round(now - t_pass, 2)
        t_pass = now

    lap("record_pass")

    # 2. duplicates among the records that passed
    drops: List[Any] = []
    dedup_stats: Dict[str, int] = {}
    retire = ccfg.retire_workers and n_in >= ccfg.retire_workers_min_records
    if n_pass > 1:
        if retire:
            retire_idle_workers("dedup")
        drops, dedup_stats = dedup.find_duplicates(None, ccfg, n_pass, scratch_uri=storage.join(scratch, "dedup"),
                                                   signatures=read_parquet_files(signatures_uri, dedup.SIG_SCHEMA),
                                                   signatures_uri=signatures_uri)
    n_dropped = dedup.dropped_count(dedup_stats)
    release_memory()  # the driver's share of dedup (links, pairs, components) is done with
    log.info("curate: duplicates: %d of %d dropped (%.1f s)", n_dropped, n_pass, time.monotonic() - t0)
    lap("dedup")

    # 3. the records scratch read once more: rejected records to _quarantine/, qualified ones
    # shuffled by user into partitions of about timeline_rows_per_partition records, each cut
    # into timelines and written to data/ (rejected users' records to _quarantine/) by its task.
    # Each of those map tasks reads one records file and gets that file's drops only: the drop
    # table is routed to the files first (drop_route), so no task holds or maps all of it.
    routed = drop_route.route_drops(drops, n_dropped, signatures_uri, storage.join(scratch, "route"), n_pass)
    del drops
    release_memory()  # the driver's drop table, routed (~10 MB at 1M records)
    lap("drop_route")

    n_kept = n_pass - n_dropped
    if retire:
        retire_idle_workers("the timelines")
    # the records scratch streamed file by file (one task each; see _split_kept_slices)
    work_files, work_fs = parquet_file_list([records_uri])
    work_files = largest_first(work_files, work_fs)
    kept_slices = _split_kept_slices(routed, work_fs, sd.quarantine_uri, ccfg)
    tl_counts = by_key_partition(file_list_dataset(work_files), partitions_for(n_kept, ccfg.timeline_rows_per_partition),
                                 _timelines_writer(ccfg, sd.data_uri, sd.quarantine_uri), key="user_id",
                                 batch_format="partition", scratch_uri=storage.join(scratch, "by-user"),
                                 map_fn=kept_slices, files_per_task=files_per_task(len(work_files))).take_all()
    out_counts: Dict[str, int] = {}
    user_counts: Dict[str, int] = {}
    n_timelines = 0
    for row in tl_counts:
        p = row["platform"]
        out_counts[p] = out_counts.get(p, 0) + int(row["records"])
        user_counts[p] = user_counts.get(p, 0) + int(row["users"])
        n_timelines += int(row["timelines"])

    log.info("curate: timelines: %d records of %d users in %d timelines (%.1f s)", sum(out_counts.values()),
             sum(user_counts.values()), n_timelines, time.monotonic() - t0)
    lap("timelines")
    # quarantine counted from what is on disk: every rejected record of every step
    q_counts: Dict[tuple, int] = {}
    n_q_files = len(storage.ls_files(sd.quarantine_uri, suffix=".parquet"))
    if n_q_files:
        # ~3 files per records file (the record pass's, the duplicates', the rejected users'):
        # several to a task (dataops.files_per_task)
        q_counts = count_by(read_parquet_files(sd.quarantine_uri, _Q_COUNT_SCHEMA, files_per_task(n_q_files)),
                            ["platform", "reason"])
    else:
        storage.rm(sd.quarantine_uri)
    n_q = sum(q_counts.values())
    storage.rm(scratch)
    lap("accounting")

    by_platform: Dict[str, Dict[str, int]] = {}

    def plat(p: str) -> Dict[str, int]:
        return by_platform.setdefault(p, {"in": 0, "out": 0, "quarantined": 0, "users": 0})

    for p, n in in_counts.items():
        plat(p)["in"] += n
    for p, n in out_counts.items():
        plat(p)["out"] += n
    for p, n in user_counts.items():
        plat(p)["users"] += n
    by_reason: Dict[str, int] = {}
    for (p, r), n in q_counts.items():
        plat(p)["quarantined"] += n
        by_reason[r] = by_reason.get(r, 0) + n
    return stage.StageResult(
        rows_in=n_in,
        rows_out=sum(out_counts.values()),
        rows_quarantined=n_q,
        rows_merged=0,
        by_reason=by_reason,
        by_platform=by_platform,
        extra={"users": sum(user_counts.values()), "timelines": n_timelines, "dedup": dedup_stats, "nodes": nodes,
               "record_pass_files": len(files), "record_pass_workers": n_workers,
               "workers_retired": workers_retired() - retired_before,
               "pass_seconds": pass_seconds,
               "schema": [f"{f.name}:{f.type}" for f in TIMELINE_SCHEMA]},
    )


_Q_COUNT_SCHEMA = pa.schema([("platform", pa.string()), ("reason", pa.string())])


__all__ = ["run", "TIMELINE_SCHEMA", "filters", "clean", "pii", "dedup", "timelines"]
