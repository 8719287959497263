"""Ingest: native social-media files -> the common LogRecord table (see ``schema.py``).

Platform registry: every module in this package that defines ``PLATFORM`` and ``read(uri, ctx)``
is a platform (adding one = adding one file). Optional hooks:

* ``join(group_df) -> group_df`` with ``JOIN_REQUIRES_AUX``: rows sharing ``_key`` (a reddit link
  id, an Amazon parent item, a Twitter user) are grouped by a shuffle through files (``dataops.file_shuffle``)
  so side data (parent submissions, item metadata, user descriptions) reaches the records
  without any per-record file scan;
* ``join_side(df) -> bool Series`` over the columns ``JOIN_SIDE_COLUMNS``: which rows carry the
  side data. With it a partition of over twice ``ingest.rows_per_file`` rows is joined a chunk
  of records at a time against all of its side rows (:func:`join_in_chunks`), so one hot key (a
  best-selling item, a megathread) does not set a worker's memory;
* ``dedup_key(df) -> Series`` and ``dedup(group_df) -> group_df``: collapse copies (Amazon variant
  duplicates), marking them ``_status = merged``.

Flow (all Ray Data): list input files -> pack them into read tasks -> ``from_items`` -> ``map_batches``
reader (files read in parallel across the cluster, streamed, emitting records / quarantine / aux
rows in one schema with a ``_status`` column) -> per-platform join and dedup -> write
``data/*.parquet`` (LogRecords), ``_quarantine/*.parquet`` and ``aux/*.parquet`` (side data).

Accounting: rows_in = every input unit read (record, malformed line, side-data line); rows_out =
records written; rows_quarantined; rows_merged = variant duplicates collapsed + side-data rows
joined into records (reported separately in ``merged_detail``).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import pkgutil
import posixpath
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pyarrow as pa

from .. import stage, storage
from ..config import DEMO_CORPUS_DIR, HumanLLMConfig, to_dict
from . import schema
from .common import ReadContext
from .dataops import (SCRATCH, PartWriter, TableGather, block_counts, by_key_partition, col_in, content_name,
                      file_list_dataset, files_per_task, iter_parquet_slices, largest_first, parquet_file_list,
                      partitions_for, path_stem, per_file_udf, read_parquet_files, read_parquet_sources, release_memory,
                      spill, stage_data_context, sum_counts, tally_dataset, task_args, worker_max_tasks, write_part)
from .schema import LOG_RECORD_COLUMNS, LOG_RECORD_SCHEMA, READ_SCHEMA

log = logging.getLogger("humanllm")

# ingest settings that change how the stage runs, not its output (left out of its fingerprint)
RUNTIME_ONLY = ("worker_max_tasks",)
INGEST_VERSION = 1  # bump when reader output changes, so old _SUCCESS markers stop matching
SKIP_NAMES = ("readme", "license", "manifest", "sources")


@dataclass
class Platform:
    name: str
    read: Callable[[str, ReadContext], Iterator[Dict[str, Any]]]
    join: Optional[Callable] = None
    join_requires_aux: bool = True
    join_side: Optional[Callable] = None
    dedup_key: Optional[Callable] = None
    dedup: Optional[Callable] = None


REGISTRY: Dict[str, Platform] = {}


def register(module: Any) -> None:
    REGISTRY[module.PLATFORM] = Platform(
        name=module.PLATFORM,
        read=module.read,
        join=getattr(module, "join", None),
        join_requires_aux=getattr(module, "JOIN_REQUIRES_AUX", True),
        join_side=getattr(module, "join_side", None),
        dedup_key=getattr(module, "dedup_key", None),
        dedup=getattr(module, "dedup", None),
    )


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        if info.name in ("schema", "common", "dataops") or info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "PLATFORM") and hasattr(mod, "read"):
            register(mod)


_discover()


# ----------------------------------------------------------------------------- inputs


def _is_data_file(uri: str) -> bool:
    name = posixpath.basename(uri.replace("\\", "/"))
    low = name.lower()
    return not (low.startswith((".", "_")) or low.startswith(SKIP_NAMES) or low.endswith((".md", ".tsv.sha256")))


def input_files(cfg: HumanLLMConfig) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    for platform in sorted(REGISTRY):
        patterns = list((cfg.ingest.sources or {}).get(platform) or [])
        if not patterns and cfg.ingest.use_demo_corpus:
            demo = DEMO_CORPUS_DIR / platform
            if demo.exists():
                patterns = [str(demo)]
        files = [f for f in storage.expand(patterns) if _is_data_file(f)] if patterns else []
        if files:
            out[platform] = files
    return out


def _file_stamp(uri: str) -> Dict[str, Any]:
    fs, path = storage.get_fs(uri)
    info = fs.info(path)
    stamp = info.get("mtime") or info.get("LastModified") or info.get("ETag") or info.get("last_modified")
    return {"file": uri, "size": info.get("size"), "mtime": str(stamp)}


INPUT_FILES_SCHEMA = pa.schema([("platform", pa.string()), ("file", pa.string()), ("size", pa.int64())])


def stamp_files(files: Dict[str, List[str]]) -> Tuple[str, pa.Table]:
    """Every input file's platform, name and size as one Arrow table, and a digest of each
    file's (platform, name, size, modification stamp) for the stage's fingerprint, so a changed
    or added file reruns ingest.

    Why not a list of stamp dicts: at ~800 bytes of Python objects a file, the 49k files of a
    10M-record corpus held ~40 MB in the driver for the whole of ingest, and freeing them left
    pymalloc's arenas fragmented (bench/README.md, curate Round 16). Here each stamp is
    transient and the table holds ~100 bytes a file in one Arrow buffer."""
    digest = hashlib.sha256()
    parts = []
    for platform in sorted(files):
        sizes = []
        for uri in files[platform]:
            st = _file_stamp(uri)
            digest.update(json.dumps([platform, st["file"], st["size"], st["mtime"]]).encode() + b"\n")
            sizes.append(st["size"] or 0)
        parts.append(pa.table({"platform": pa.array([platform] * len(sizes), pa.string()),
                               "file": pa.array(files[platform], pa.string()),
                               "size": pa.array(sizes, pa.int64())}, schema=INPUT_FILES_SCHEMA))
    table = pa.concat_tables(parts) if parts else INPUT_FILES_SCHEMA.empty_table()
    return digest.hexdigest(), table


def read_context(cfg: HumanLLMConfig) -> ReadContext:
    return ReadContext(
        salt=cfg.ingest.user_salt,
        max_line_bytes=cfg.ingest.max_line_bytes,
        max_document_bytes=cfg.ingest.max_document_bytes,
        zstd_window_log_max=cfg.ingest.zstd_window_log_max,
        bot_authors=list(cfg.curate.bot_authors),
        corporate_handle_keywords=list(cfg.ingest.corporate_handle_keywords),
        s3_options=storage.s3_options(),
    )


# ----------------------------------------------------------------------------- Ray UDFs


def _read_to_raw(raw_uri: str, rows_per_file: int, ctx: ReadContext) -> Callable[[pa.Table], pa.Table]:
    """map_batches UDF: each input row is a bin of files; their rows are read in chunks of
    ``ctx.batch_rows`` and written to the raw scratch as they come (:class:`_RawSink`); the
    task returns only their counts.

    The reading and the writing are one function, not two fused ``map_batches``: between fused
    operators Ray Data re-shapes a generator's output into blocks of up to
    ``target_max_block_size`` (128 MiB), so the writer got (and copied, per platform and
    status) blocks of that size, the largest thing in the workers at 1M records (~490 MB PSS
    in one read worker; bench/README.md, curate Round 7). Here a task holds at most about
    ``rows_per_file`` rows per platform and status group."""

    def udf(batch: pa.Table) -> pa.Table:
        sink = _RawSink(raw_uri, rows_per_file)
        for files, platforms in zip(batch.column("files").to_pylist(), batch.column("platforms").to_pylist()):
            for uri, platform in zip(files, platforms):
                for chunk in _read_one(uri, platform, ctx):
                    sink.add(chunk)
        return sink.close()

    return udf


def _read_one(uri: str, platform: str, ctx: ReadContext) -> Iterator[pa.Table]:
    plat = REGISTRY[platform]
    buf: List[Dict[str, Any]] = []
    try:
        for row in plat.read(uri, ctx):
            row.setdefault("platform", platform)
            row.setdefault("source_file", uri)
            buf.append(row)
            if len(buf) >= ctx.batch_rows:
                yield schema.to_table(buf)
                buf = []
    except Exception as exc:  # an unexpected reader failure: quarantine, never crash the stage
        log.exception("reader %s failed on %s", platform, uri)
        buf.append(schema.quarantine("read_error", platform=platform, source_file=uri, source_line=0,
                                     detail=f"{type(exc).__name__}: {exc}"))
    if buf:
        yield schema.to_table(buf)


def pack_files(input_table: pa.Table, n_bins: int, target_bytes: int = 64 << 20) -> List[Dict[str, Any]]:
    """Greedy bin packing of files (``stamp_files``'s table) into read tasks: big files alone,
    small ones (a folder of blogs) together, so a task's start-up cost is paid per
    ~target_bytes, not per file. Largest first, ties by name: the same bins on every run."""
    if not input_table.num_rows:
        return []
    import pyarrow.compute as pc

    total = pc.sum(input_table.column("size")).as_py() or 0
    n = max(1, min(input_table.num_rows, max(n_bins, -(-total // target_bytes))))
    bins: List[Dict[str, Any]] = [{"files": [], "platforms": [], "bytes": 0} for _ in range(n)]
    ordered = input_table.sort_by([("size", "descending"), ("file", "ascending")])
    for size, uri, p in zip(ordered.column("size").to_pylist(), ordered.column("file").to_pylist(),
                            ordered.column("platform").to_pylist()):
        b = min(bins, key=lambda x: x["bytes"])
        b["files"].append(uri)
        b["platforms"].append(p)
        b["bytes"] += size
    return [b for b in bins if b["files"]]


def _read_rows(df) -> pa.Table:
    """A pandas frame of reader rows (any extra columns dropped) as a READ_SCHEMA table."""
    return pa.Table.from_pandas(df[schema.READ_COLUMNS], schema=READ_SCHEMA, preserve_index=False)


def _set_dedup_key(fn: Callable):
    def udf(df):
        df = df.copy()
        if len(df):
            df["_key"] = fn(df)
        return _read_rows(df)

    return udf


# ----------------------------------------------------------------------------- stage


def run(cfg: HumanLLMConfig, output_uri: Optional[str] = None) -> Dict[str, Any]:
    """Run the ingest stage; returns its report (``skipped=True`` when already done)."""
    from .. import runtime

    storage.configure(cfg.s3)
    out_uri = output_uri or runtime.RunPaths.from_config(cfg).ingested
    files_digest, input_table = stamp_files(input_files(cfg))
    # Listing and stamping a folder of small files (49k blogs at 10M bench records) makes and
    # frees ~1 kB of Python objects per file, which glibc kept in the driver through the whole
    # ingest (RSS 169 -> 213 MB, 176 once given back; the 10M ingest's driver median -5 to
    # -10 MB PSS, bench/README.md curate Round 22).
    release_memory()
    fingerprint = {
        "version": INGEST_VERSION,
        # how the work is run, not what it makes: a change does not redo an ingest
        "ingest": {k: v for k, v in to_dict(cfg)["ingest"].items() if k not in RUNTIME_ONLY},
        "bot_authors": list(cfg.curate.bot_authors),
        "files": files_digest,
    }

    def body(sd: stage.StageDir) -> stage.StageResult:
        runtime.init_ray(cfg)
        with stage_data_context(cfg.run.ray_data_op_reservation, cfg.run.ray_data_tasks_per_cpu), \
                worker_max_tasks(cfg.ingest.worker_max_tasks):
            return _ingest(cfg, input_table, sd)

    return stage.run_stage("ingest", out_uri, body, fingerprint=fingerprint, inputs=[])


# What a platform's ``join_side`` is given: enough to tell side rows (aux rows, a Reddit
# submission) from the records they are joined to, a small part of each row.
JOIN_SIDE_COLUMNS = ["_status", "kind"]


def join_in_chunks(plat: Platform, chunk_rows: int, direct_uri: Optional[str] = None) -> Callable:
    """by_key_partition hook (``batch_format="partition"``): ``plat.join`` over one partition of
    the join's shuffle, as a READ_SCHEMA table.

    A key's rows all land in one partition, and keys are skewed: at 10M bench/curate records
    the best-selling Amazon item has 44,539 reviews (5.6k at 1M), so one partition of ~20k-row
    ones held ~65k; at the paper's 10x scale that item alone would be ~250k rows, and a real
    Reddit megathread more. Joined whole, a partition is held as pandas frames (``join`` copies
    it) and its output as Arrow: ~2.5x its Arrow size above the task's start
    (``bench/curate/hotjoin.py``: 418 MB for a 272k-row, 166 MB partition; 147 MB in chunks,
    bench/README.md curate Round 19).

    So a partition of over twice ``chunk_rows`` rows is joined in chunks: the narrow
    ``JOIN_SIDE_COLUMNS`` of every row, then the side rows (``plat.join_side``: one or a few per
    key, bounded by the partition's keys, not its rows), then the records a slice at a time
    (a slice is one map task's piece, each decompressed once), joined with all the side rows
    in chunks of whole slices, as few as make ``chunk_rows`` records. Each chunk's output goes
    to its own Parquet file under ``direct_uri`` (about ``chunk_rows`` rows, so the passes
    after it keep one block per file of ordinary size) and the task returns no rows; without
    ``direct_uri`` it returns the chunks' rows. The side rows come out once, from ``join`` over
    them alone: the contract this needs of ``join`` is that a side row's output depends only
    on the side rows, and a record's only on itself and its key's side rows. Partitions of
    ordinary size are joined whole: in chunks they cost more (with the bound at ``chunk_rows``
    itself, half of the 10M Reddit join's partitions went through chunks and ingest's peak rose
    1,325 -> 1,398 MB). Without ``join_side`` a platform's partitions are all joined whole."""
    marker = "_side_row"

    def fn(part) -> pa.Table:
        if plat.join_side is None or part.num_rows <= 2 * chunk_rows:
            return _read_rows(plat.join(part.read().to_pandas()))
        import pandas as pd

        is_side = np.asarray(plat.join_side(part.read(JOIN_SIDE_COLUMNS).to_pandas()), bool)
        side = part.take(np.flatnonzero(is_side)).to_pandas()
        out: List[pa.Table] = []

        def emit(table: pa.Table) -> None:
            if direct_uri is None:
                out.append(table)
            else:  # named by content: a retried task rewrites the same files
                write_part(table, direct_uri, content_name(table, _ROW_IDENTITY, prefix="joined"))

        emit(_read_rows(plat.join(side)))
        side[marker] = True

        def joined(pieces: List[pa.Table]) -> pa.Table:
            chunk = pa.concat_tables(pieces).to_pandas()
            chunk[marker] = False
            both = plat.join(pd.concat([side, chunk], ignore_index=True))
            return _read_rows(both[~both[marker].astype(bool)])

        # the records in slice order, each slice decompressed once (a chunk taken by row
        # numbers would read every slice again per chunk: a hot key's rows are in all of them)
        pieces, n = [], 0
        for i in range(part.num_slices):
            records = ~is_side[part.starts[i]:part.starts[i + 1]]
            if not records.any():
                continue
            piece = part.read_slice(i)
            pieces.append(piece if records.all() else piece.filter(pa.array(records)))
            n += pieces[-1].num_rows
            del piece
            if n >= chunk_rows:
                emit(joined(pieces))
                pieces, n = [], 0
        if pieces:
            emit(joined(pieces))
        return pa.concat_tables(out) if out else READ_SCHEMA.empty_table()

    return fn


def join_dedup_plan(pre: Dict[tuple, int], name: str, plat: Any) -> Tuple[bool, bool, int, int]:
    """(needs_join, needs_dedup, keyed rows, record rows) of platform ``name``, from counts keyed
    by (platform, _status, has_key "0"/"1"): a platform with nothing to join or collapse skips
    its shuffle. bench/curate's one-process path makes the same decision with it."""
    n_aux = sum(n for (p, s, _k), n in pre.items() if p == name and s == "aux")
    n_keyed = sum(n for (p, s, k), n in pre.items() if p == name and s in ("ok", "aux") and k == "1")
    needs_join = plat.join is not None and n_keyed > 0 and (n_aux > 0 or not plat.join_requires_aux)
    n_recs = sum(n for (p, s, _k), n in pre.items() if p == name and s == "ok")
    return needs_join, plat.dedup is not None and n_recs > 1, n_keyed, n_recs


def _ingest(cfg: HumanLLMConfig, input_table: pa.Table, sd: stage.StageDir) -> stage.StageResult:
    import ray

    ctx = read_context(cfg)
    n_files = input_table.num_rows
    if not n_files:
        log.warning("ingest: no input files")
        return stage.StageResult(rows_in=0, rows_out=0, extra={"files": 0})
    t0 = time.monotonic()
    cpus = int(ray.cluster_resources().get("CPU", 2))
    items = pack_files(input_table, n_bins=2 * cpus)
    per_platform = input_table.group_by("platform").aggregate([("file", "count")]).sort_by("platform")
    log.info("ingest: %d files in %d read tasks (%s)", n_files, len(items),
             ", ".join(f"{p}: {n}" for p, n in zip(per_platform.column("platform").to_pylist(),
                                                    per_platform.column("file_count").to_pylist())))
    # One block per bin of files so bins are read in parallel; readers stream their rows out,
    # to scratch files (not the object store: memory stays flat as the input grows), one folder
    # per platform and status group (see _RawSink), and return only their counts.
    scratch = sd.path(SCRATCH)
    raw_uri = storage.join(scratch, "raw")
    storage.rm(raw_uri)
    bins = ray.data.from_items(items, override_num_blocks=len(items))  # each bin a block in the object store
    n_read_tasks = len(items)
    del items  # the bins' file names are in those blocks now; not held in the driver through ingest
    release_memory()  # and the heap they were built in given back (RSS 194 -> 179 MB at 49k files)
    pre = tally_dataset(
        bins.map_batches(_read_to_raw(raw_uri, cfg.ingest.rows_per_file, ctx), batch_size=1, batch_format="pyarrow",
                         **task_args()),
        ["platform", "_status", "_has_key"])
    log.info("ingest: read %d rows (%.1f s)", sum(pre.values()), time.monotonic() - t0)

    def shuffle_platform(name: str, plat: Platform) -> Tuple[List[str], int]:
        """The platform's join and/or variant dedup, written to its own part folders (none:
        nothing to shuffle), and the number of files the join wrote itself (its partitions too
        big to join whole, :func:`join_in_chunks`). Partitions hold about
        ``ingest.rows_per_file`` rows: a reduce task holds its partition as a pandas frame (~3x
        its Arrow size), and a worker's heap keeps the high-water mark of its largest task, so
        the partition size, not the input, should set it (50k rows a partition had made the
        workers' peak grow with the input); a hot key's partition is joined in chunks."""
        needs_join, needs_dedup, n_keyed, n_recs = join_dedup_plan(pre, name, plat)
        if not (needs_join or needs_dedup):
            return [], 0
        mine = read_parquet_files(raw_folder(raw_uri, name, main=True), READ_SCHEMA)
        # the joined rows of partitions too big to join whole, written by the join's tasks
        direct = storage.join(scratch, f"joined-direct-{name}") if needs_join else None
        if needs_join:
            storage.rm(direct)
            mine = by_key_partition(mine, partitions_for(n_keyed, cfg.ingest.rows_per_file, most=4096),
                                    join_in_chunks(plat, cfg.ingest.rows_per_file, direct), schema=READ_SCHEMA,
                                    batch_format="partition", scratch_uri=storage.join(scratch, f"shuffle-join-{name}"))
        if needs_dedup:
            if needs_join:
                joined = storage.join(scratch, f"joined-{name}")
                spill(mine, joined, READ_SCHEMA, cfg.ingest.rows_per_file)
                mine = read_parquet_sources([joined, direct], READ_SCHEMA)
            recs = mine.filter(expr=col_in("_status", "ok"), **task_args()).map_batches(
                _set_dedup_key(plat.dedup_key), batch_format="pandas", **task_args())
            others = mine.filter(expr=~col_in("_status", "ok"), **task_args())
            recs = by_key_partition(recs, partitions_for(n_recs, cfg.ingest.rows_per_file, most=4096), plat.dedup,
                                    schema=READ_SCHEMA,
                                    scratch_uri=storage.join(scratch, f"shuffle-dedup-{name}"))
            # two writes, not ``recs.union(others)``: a union is not fused with the write after
            # it, so every block of both went through the object store
            out = {"recs": recs, "others": others}
        else:
            out = {"all": mine}
        part_uris = [storage.join(scratch, f"part-{name}", k) for k in out]
        for uri, part in zip(part_uris, out.values()):
            spill(part, uri, READ_SCHEMA, cfg.ingest.rows_per_file)
        n_direct = len(storage.ls_files(direct, suffix=".parquet")) if direct else 0
        if direct and not needs_dedup:  # the join's own files, when no dedup read them
            part_uris.append(direct)
        log.info("ingest: %s %s (%.1f s)%s", name,
                 " + ".join(x for x, on in (("join", needs_join), ("dedup", needs_dedup)) if on), time.monotonic() - t0,
                 f"; {n_direct} files of joined rows from partitions joined in chunks" if n_direct else "")
        return part_uris, n_direct

    # The platforms' shuffles run side by side (threads, each its own Ray Data executions): one
    # after another, each one's start and tail left a core idle (ingest averaged ~1.2 cores
    # after the read at 1M records). Each reads its own platform's raw folder.
    # (Before the shuffles went through files this was not possible: Ray 2.60's hash shuffle
    # aborted workers when two ran at once.)
    from concurrent.futures import ThreadPoolExecutor

    names = sorted(REGISTRY)
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        results = list(pool.map(lambda n: shuffle_platform(n, REGISTRY[n]), names))
    shuffled = {n for n, (uris, _) in zip(names, results) if uris}
    parts = [uri for uris, _ in results for uri in uris]
    join_chunk_files = {n: k for n, (_, k) in zip(names, results) if k}
    # The final rows, read by one fused read -> write task per file: every platform's raw rows
    # but the records and side data of the shuffled platforms (those went through their join /
    # dedup: their folders are not read again), plus the shuffled platforms' part files.
    # Not ``rest.union(*parts)``: a union is not fused with the map after it, so every block
    # of its inputs went through the object store (~650 MB at 1M records, measured).
    platforms = sorted({p for (p, _s, _k) in pre})
    final_files, final_fs = parquet_file_list(
        [raw_folder(raw_uri, p, main=True) for p in platforms if p not in shuffled]
        + [raw_folder(raw_uri, p, main=False) for p in platforms] + parts)
    final_files = largest_first(final_files, final_fs)

    # One pass over the final rows writes all three outputs and counts them: records to data/,
    # quarantined rows to _quarantine/, joined side data to aux/ (four passes before: a count,
    # then one filtered read of every row per output; ~40 s of 85 at 1M records).
    storage.makedirs(sd.data_uri)  # present even when every row was quarantined
    writer = _final_writer(sd.data_uri, sd.quarantine_uri, sd.path("aux"), final_fs)
    per_task = files_per_task(len(final_files))  # small files: several a task
    counts = tally_dataset(file_list_dataset(final_files).map_batches(writer, batch_size=per_task,
                                                                      batch_format="pyarrow", **task_args()),
                           ["platform", "_status", "_reason"]) if final_files else {}
    log.info("ingest: final rows written (%.1f s)", time.monotonic() - t0)
    n_q = sum(n for (_p, s, _r), n in counts.items() if s == "quarantine")
    n_aux = sum(n for (_p, s, _r), n in counts.items() if s == "aux")

    storage.rm(scratch)
    # The driver's share of ingest (file lists, shuffle indexes, Ray Data's execution state) is
    # freed by now, but glibc keeps the pages for reuse: at 10M records the driver went into
    # curate 59 MB bigger than it needed to (bench/README.md, curate Round 12).
    release_memory()

    by_platform: Dict[str, Dict[str, int]] = {}
    by_reason: Dict[str, int] = {}
    merged_detail: Dict[str, int] = {}
    for (p, s, r), n in counts.items():
        bp = by_platform.setdefault(p, {"in": 0, "out": 0, "quarantined": 0, "merged": 0})
        bp["in"] += n
        if s == "ok":
            bp["out"] += n
        elif s == "quarantine":
            bp["quarantined"] += n
            by_reason[r] = by_reason.get(r, 0) + n
        else:  # merged duplicates and joined side data
            bp["merged"] += n
            key = r if s == "merged" else f"{p}_side_data_joined"
            merged_detail[key] = merged_detail.get(key, 0) + n
    rows_in = sum(counts.values())
    rows_out = sum(n for (_p, s, _r), n in counts.items() if s == "ok")
    rows_merged = sum(n for (_p, s, _r), n in counts.items() if s in ("merged", "aux"))
    return stage.StageResult(
        rows_in=rows_in,
        rows_out=rows_out,
        rows_quarantined=n_q,
        rows_merged=rows_merged,
        by_reason=by_reason,
        by_platform=by_platform,
        extra={"files": n_files, "read_tasks": n_read_tasks, "join_chunk_files": join_chunk_files,
               "merged_detail": merged_detail, "aux_rows": n_aux,
               "schema": [f"{f.name}:{f.type}" for f in LOG_RECORD_SCHEMA]},
    )


RAW_COUNT_SCHEMA = pa.schema([("platform", pa.string()), ("_status", pa.string()), ("_has_key", pa.string()),
                              ("n", pa.int64())])
_ROW_IDENTITY = ["source_file", "source_line", "record_id", "_status"]


def raw_folder(raw_uri: str, platform: str, main: bool) -> str:
    """Where the read rows of ``platform`` go in the raw scratch: ``{platform}-main`` holds its
    records and side data (status ok/aux: what its join and variant dedup read), and
    ``{platform}-other`` the rest (quarantined rows), which only the final pass reads."""
    return storage.join(raw_uri, f"{platform}-{'main' if main else 'other'}")


class _RawSink:
    """Writes read rows to the raw scratch, split by platform and status group
    (:func:`raw_folder`) into files of ``rows_per_file`` rows (the last of a group may hold
    fewer), and counts them by (platform, _status, _has_key): what ``join_dedup_plan`` decides
    on, with no second pass over the rows.

    Split because each platform's shuffle reads only its own records and the final pass skips
    the ones that went through a shuffle: with one mixed folder each of them read every raw row
    (three full reads at 1M records, where one now reads each row once). It buffers at most
    about ``rows_per_file`` rows per group. Files are named by content, and the rows come in
    the same order on every attempt, so a retried read task rewrites the same files. It also
    holds up to ``GATHER_ROWS`` rows of small chunks before it splits them."""

    # Reader chunks smaller than this are gathered before they are split and counted: a blog
    # file is a chunk of a few rows, and per-chunk kernel calls (a group-by, two filters per
    # platform) were most of the sink's cost on a bin of 829 blogs (bench/README.md, curate
    # Round 28). The rows and their order, so the files written, are the same.
    GATHER_ROWS = 4096

    def __init__(self, raw_uri: str, rows_per_file: int):
        self.raw_uri, self.rows_per_file = raw_uri, max(1, int(rows_per_file))
        self.buffers: Dict[Tuple[str, bool], List[pa.Table]] = {}
        self.buffered: Dict[Tuple[str, bool], int] = {}
        self.counts: List[pa.Table] = []
        self.gathered = TableGather(self.GATHER_ROWS, lambda t: t.num_rows)

    def add(self, batch: pa.Table) -> None:
        if batch.num_rows and self.gathered.add(batch):
            self._split()

    def _split(self) -> None:
        import pyarrow.compute as pc

        batch = self.gathered.take()
        if batch is None:
            return
        self.counts.append(block_counts(_with_key_flag(batch), ["platform", "_status", "_has_key"], RAW_COUNT_SCHEMA))
        main = pc.fill_null(pc.is_in(batch.column("_status"), value_set=pa.array(["ok", "aux"])), False)
        for platform in pc.unique(batch.column("platform")).to_pylist():
            mine = pc.equal(batch.column("platform"), platform)
            for is_main, mask in ((True, pc.and_(mine, main)), (False, pc.and_(mine, pc.invert(main)))):
                rows = batch.filter(pc.fill_null(mask, False))
                if rows.num_rows:
                    key = (platform, is_main)
                    self.buffers.setdefault(key, []).append(rows)
                    self.buffered[key] = self.buffered.get(key, 0) + rows.num_rows
                    if self.buffered[key] >= self.rows_per_file:
                        self._write(key, whole_files_only=True)

    def _write(self, key: Tuple[str, bool], whole_files_only: bool = False) -> None:
        rows = pa.concat_tables(self.buffers.pop(key))
        self.buffered.pop(key, None)
        n, size = rows.num_rows, self.rows_per_file
        end = n - n % size if whole_files_only else n
        for off in range(0, end, size):
            piece = rows.slice(off, min(size, end - off))
            write_part(piece, raw_folder(self.raw_uri, key[0], key[1]), content_name(piece, _ROW_IDENTITY, "raw"))
        if end < n:
            self.buffers[key] = [rows.slice(end)]
            self.buffered[key] = n - end
        release_memory()

    def close(self) -> pa.Table:
        """Writes what is buffered; returns the counts of every row added, a row per key (not
        per chunk: a task that read 900 blog files returned ~2,000 rows)."""
        self._split()
        for key in sorted(self.buffers):
            self._write(key)
        counts, self.counts = self.counts, []
        return sum_counts(counts, ["platform", "_status", "_has_key"], RAW_COUNT_SCHEMA)


AUX_COLUMNS = ["platform", "record_id", "_key", "_payload", "source_file", "source_line"]
COUNT_SCHEMA = pa.schema([("platform", pa.string()), ("_status", pa.string()), ("_reason", pa.string()),
                          ("n", pa.int64())])


def _final_writer(data_uri: str, quarantine_uri: str, aux_uri: str, fs=None) -> Callable[[pa.Table], pa.Table]:
    """map_batches UDF over the final rows' file list (``dataops.file_list_dataset``): streams
    each file a slice of ``PY_SLICE_ROWS`` rows at a time, writing its records, quarantine rows
    and aux rows to one Parquet file each (none for an empty part), and returns the file's
    counts by (platform, _status, _reason).

    A task holds one slice, not the file: a whole file's block and its three filtered copies
    were the 1M-record run's peak once curate streamed (bench/README.md curate Round 8). The
    outputs are named after the input file, so a task that Ray retries after its worker died
    rewrites the same files instead of adding copies. An input is at most one scratch file
    (``ingest.rows_per_file`` rows), so data files stay bounded for curate's one-task-per-file
    record pass."""
    targets = {"ok": data_uri, "quarantine": quarantine_uri, "aux": aux_uri}
    schemas = {"ok": LOG_RECORD_SCHEMA, "quarantine": stage.quarantine_schema(),
               "aux": pa.schema([READ_SCHEMA.field(c) for c in AUX_COLUMNS])}
    makers = {"ok": _to_log_records, "quarantine": _to_quarantine, "aux": lambda t: t.select(AUX_COLUMNS)}

    def one_file(path: str) -> pa.Table:
        import pyarrow.compute as pc

        name = f"part-{path_stem(path)}.parquet"
        writers = {st: PartWriter(targets[st], name, schemas[st]) for st in targets}
        counts = []
        try:
            for piece in iter_parquet_slices(path, fs, READ_SCHEMA):
                status = piece.column("_status")
                for st, make in makers.items():
                    writers[st].write(make(piece.filter(pc.equal(status, st))))
                counts.append(block_counts(piece, ["platform", "_status", "_reason"], COUNT_SCHEMA))
        finally:
            for w in writers.values():
                w.close()
        return pa.concat_tables(counts) if counts else COUNT_SCHEMA.empty_table()

    return per_file_udf(one_file, COUNT_SCHEMA)


def _with_key_flag(batch: pa.Table) -> pa.Table:
    import pyarrow.compute as pc

    has = pc.if_else(pc.not_equal(batch.column("_key"), ""), "1", "0")
    return pa.table({"platform": batch.column("platform"), "_status": batch.column("_status"), "_has_key": has})


def _to_log_records(batch: pa.Table) -> pa.Table:
    return batch.select(LOG_RECORD_COLUMNS).cast(LOG_RECORD_SCHEMA)


def _to_quarantine(batch: pa.Table) -> pa.Table:
    n = batch.num_rows
    return pa.table(
        {
            "stage": pa.array(["ingest"] * n, pa.string()),
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


__all__ = ["run", "REGISTRY", "Platform", "register", "input_files", "LOG_RECORD_SCHEMA", "LOG_RECORD_COLUMNS"]
