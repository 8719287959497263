"""Curate: ingested LogRecords -> per-user chronological timelines of qualified records.

Flow (Ray Data throughout):

1. ``map_batches`` record pass: raw-text rule filters (authors, removed text, Reddit score /
   self-post / top-level, retweets, ads; ``filters.py``), cleaning (``clean.py``: entities, URLs,
   @mentions, emoji; drop if it removed over half), PII placeholders (``pii.py``), cleaned-text
   rules (short questions, per-platform/per-format minimum lengths), language id (``lang.py``).
2. duplicate removal (``dedup.py``): exact hash + MinHash LSH, bands grouped by a shuffle.
3. timelines (``timelines.py``): shuffle by user, drop users with too few records, sort, chunk.

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
from typing import Any, Dict, Optional

import pyarrow as pa

from .. import stage, storage
from ..config import HumanLLMConfig, to_dict
from ..ingest.dataops import (SCRATCH, by_key_partition, col_in, columns_of, count_by, num_partitions,
                              read_parquet_files, spill, stable_shuffle, sum_by)
from ..ingest.schema import LOG_RECORD_COLUMNS, LOG_RECORD_FIELDS, LOG_RECORD_SCHEMA
from . import clean, dedup, filters, pii, timelines
from .timelines import TIMELINE_SCHEMA

log = logging.getLogger("humanllm")

CURATE_VERSION = 1
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


def _record_pass_udf(ccfg, hold_marker: Optional[str] = None):
    """map_batches UDF: filters + cleaning + PII + language for a batch of LogRecords."""

    def udf(batch: pa.Table) -> pa.Table:
        import ray

        if hold_marker:
            _fault_hold(hold_marker)

        # where this batch runs (counted into the report's "nodes"); "" when called outside Ray
        node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
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

    return udf


def _mark_dups_udf(dropped: Dict[str, Any]):
    def udf(batch: pa.Table) -> pa.Table:
        if not dropped:
            return batch
        rids = [dedup.row_uid(r, f, ln) for r, f, ln in zip(*(batch.column(c).to_pylist() for c in dedup.UID_COLUMNS))]
        reasons = batch.column("_reason").to_pylist()
        details = batch.column("_detail").to_pylist()
        raws = batch.column("_raw").to_pylist()
        texts = batch.column("text").to_pylist()
        for i, rid in enumerate(rids):
            if rid in dropped:
                reasons[i], details[i] = dropped[rid]
                raws[i] = (texts[i] or "")[:4000]  # already cleaned and scrubbed
        batch = batch.set_column(batch.schema.get_field_index("_reason"), "_reason", pa.array(reasons, pa.string()))
        batch = batch.set_column(batch.schema.get_field_index("_detail"), "_detail", pa.array(details, pa.string()))
        return batch.set_column(batch.schema.get_field_index("_raw"), "_raw", pa.array(raws, pa.string()))

    return udf


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


def run(cfg: HumanLLMConfig, input_uri: Optional[str] = None, output_uri: Optional[str] = None) -> Dict[str, Any]:
    """Run the curate stage over ``{input_uri}/data`` (default: the run's ingested/)."""
    from .. import runtime

    storage.configure(cfg.s3)
    runtime.init_ray(cfg)
    paths = runtime.RunPaths.from_config(cfg)
    in_uri = storage.normalize(input_uri) if input_uri else paths.ingested
    out_uri = output_uri or paths.curated
    fingerprint = {"version": CURATE_VERSION, "curate": to_dict(cfg)["curate"]}

    def body(sd: stage.StageDir) -> stage.StageResult:
        with stable_shuffle():
            return _curate(cfg, in_uri, sd)

    return stage.run_stage("curate", out_uri, body, fingerprint=fingerprint, inputs=[in_uri])


def _read_records(in_uri: str):
    data_uri = storage.join(in_uri, "data")
    if not storage.ls_files(data_uri, suffix=".parquet"):
        return None
    # one block per ingested file: the record pass runs one task per file (ingest.rows_per_file)
    return read_parquet_files(data_uri, LOG_RECORD_SCHEMA)


def _curate(cfg: HumanLLMConfig, in_uri: str, sd: stage.StageDir) -> stage.StageResult:
    ccfg = cfg.curate
    ds = _read_records(in_uri)
    if ds is None:
        log.warning("curate: no ingested records under %s", in_uri)
        return stage.StageResult(rows_in=0, rows_out=0, extra={"users": 0, "timelines": 0, "nodes": {}})
    scratch = sd.path(SCRATCH)
    storage.rm(scratch)
    # counts read only their columns (the Parquet projection), not whole records
    in_counts = count_by(read_parquet_files(storage.join(in_uri, "data"), columns_of(LOG_RECORD_SCHEMA, "platform")),
                         ["platform"])
    n_in = sum(in_counts.values())

    # 1. record filters, cleaning, PII, language: one task per ingested file, streamed to
    # scratch. A task whose worker dies (OOM kill, lost node, SIGKILL) is resubmitted: Ray
    # Data's tasks default to max_retries=-1 (retry system failures without limit;
    # ray/data/_internal/remote_fn.py), so nothing is set here.
    hold = sd.path(*FAULT_HOLD)
    hold = hold if storage.exists(hold) else None
    # batch_size=None: the whole file's block per call. A batch size would make Ray bundle that
    # many rows of the fused file-list input (one row per file) into one task: all files, one core.
    work = spill(ds.map_batches(_record_pass_udf(ccfg, hold), batch_format="pyarrow", batch_size=None),
                 storage.join(scratch, "records"), WORK_SCHEMA, ccfg.rows_per_file)
    pass_counts = count_by(
        read_parquet_files(storage.join(scratch, "records"), columns_of(WORK_SCHEMA, "_reason", "_node")),
        ["_reason", "_node"])
    n_pass = sum(n for (r, _node), n in pass_counts.items() if r == "")
    # records processed by the record pass per Ray node (shows the work spread over a cluster)
    nodes: Dict[str, int] = {}
    for (_r, node), n in pass_counts.items():
        nodes[node] = nodes.get(node, 0) + n

    # 2. duplicates among the records that passed
    passed = work.filter(expr=col_in("_reason", ""))
    dropped: Dict[str, Any] = {}
    dedup_stats: Dict[str, int] = {}
    if n_pass > 1:
        dropped, dedup_stats = dedup.find_duplicates(passed, ccfg, n_pass, scratch_uri=storage.join(scratch, "dedup"))
    # lazy: re-read from scratch by each of the two passes below
    work = work.map_batches(_mark_dups_udf(dropped), batch_format="pyarrow")

    # 3. timelines per user (kept users' rows and rejected users' rows, told apart by _reason)
    kept = work.filter(expr=col_in("_reason", ""))
    n_kept = n_pass - len(dropped)
    tl = by_key_partition(
        kept, num_partitions(n_kept), timelines.build_fn(ccfg.min_records_per_user, ccfg.timeline_max_tokens, ccfg),
        key="user_id",
    )
    tl = spill(tl, storage.join(scratch, "timelines"), timelines.TIMELINE_WORK_SCHEMA, ccfg.rows_per_file)
    good = tl.filter(expr=col_in("_reason", "")).map_batches(timelines.strip_work_columns, batch_format="pyarrow")
    path, fs = storage.arrow_fs(sd.data_uri)
    good.write_parquet(path, filesystem=fs)

    # quarantine: rejected records (filters, duplicates) + records of rejected users, written
    # straight to _quarantine/ and counted from there
    q_records = work.filter(expr=~col_in("_reason", "")).map_batches(_work_to_quarantine, batch_format="pyarrow")
    q_users = tl.filter(expr=~col_in("_reason", "")).map_batches(timelines.explode_qrows, batch_format="pyarrow")
    qpath, qfs = storage.arrow_fs(sd.quarantine_uri)
    q_records.union(q_users).write_parquet(qpath, filesystem=qfs, max_rows_per_file=max(1, int(ccfg.rows_per_file)))
    q_counts: Dict[tuple, int] = {}
    if storage.ls_files(sd.quarantine_uri, suffix=".parquet"):
        q_counts = count_by(read_parquet_files(sd.quarantine_uri, _Q_COUNT_SCHEMA), ["platform", "reason"])
    else:
        storage.rm(sd.quarantine_uri)
    n_q = sum(q_counts.values())

    tl_kept = read_parquet_files(
        storage.join(scratch, "timelines"),
        columns_of(timelines.TIMELINE_WORK_SCHEMA, "platform", "chunk", "n_records", "_reason"),
    ).filter(expr=col_in("_reason", ""))
    out_counts = sum_by(tl_kept, ["platform"], "n_records")
    chunk_counts = count_by(tl_kept.map_batches(_chunk0, batch_format="pyarrow"), ["platform", "first"])
    storage.rm(scratch)
    by_platform: Dict[str, Dict[str, int]] = {}
    for (p,), n in in_counts.items():
        by_platform.setdefault(p, {"in": 0, "out": 0, "quarantined": 0, "users": 0})["in"] += n
    for (p,), n in out_counts.items():
        by_platform.setdefault(p, {"in": 0, "out": 0, "quarantined": 0, "users": 0})["out"] += n
    by_reason: Dict[str, int] = {}
    for (p, r), n in q_counts.items():
        by_platform.setdefault(p, {"in": 0, "out": 0, "quarantined": 0, "users": 0})["quarantined"] += n
        by_reason[r] = by_reason.get(r, 0) + n
    users = 0
    n_timelines = 0
    for (p, first), n in chunk_counts.items():
        n_timelines += n
        if first == "1":
            by_platform.setdefault(p, {"in": 0, "out": 0, "quarantined": 0, "users": 0})["users"] += n
            users += n
    n_out = sum(out_counts.values())
    return stage.StageResult(
        rows_in=n_in,
        rows_out=n_out,
        rows_quarantined=n_q,
        rows_merged=0,
        by_reason=by_reason,
        by_platform=by_platform,
        extra={"users": users, "timelines": n_timelines, "dedup": dedup_stats, "nodes": nodes,
               "schema": [f"{f.name}:{f.type}" for f in TIMELINE_SCHEMA]},
    )


_Q_COUNT_SCHEMA = pa.schema([("platform", pa.string()), ("reason", pa.string())])


def _chunk0(batch: pa.Table) -> pa.Table:
    import pyarrow.compute as pc

    first = pc.if_else(pc.equal(batch.column("chunk"), 0), "1", "0")
    return pa.table({"platform": batch.column("platform"), "first": first})


__all__ = ["run", "TIMELINE_SCHEMA", "filters", "clean", "pii", "dedup", "timelines"]
