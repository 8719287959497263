"""The drop table routed to the records scratch files that hold its rows.

Dedup ends with the drop table (one row per duplicate to drop; ``dedup.DROP_SCHEMA``): the
driver's table, or sorted pieces the workers made. The timelines shuffle's map tasks, one per
records scratch file, mark the drops among their rows. Given the whole table, each of them
searched all of it: the table sat in the object store, ~160 bytes a drop (~10 MB at 1M records,
~0.7 GB at 55M), mapped by every map worker, so the one part of curate's memory that grew with
the corpus (bench/README.md, curate Round 12).

Here one small shuffle sends each drop to its file instead. The record pass wrote one signatures
file per records file (``signatures-<stem>`` beside ``records-<stem>``), holding the ``_ord`` of
each row that passed, and a drop's ``key`` is the full 64-bit hash whose masked value is that
``_ord`` (``dedup.ord_of``). So:

* map: each signatures file as ``(_jkey=_ord, file=its index)`` rows, each drop piece as
  ``(_jkey=key & ORD_MASK, file=-1, the drop row)``; shuffled on ``_jkey``;
* reduce: each drop joined to the files whose rows share its ``_jkey`` (more than one only when
  ``_ord`` collides, which a test forces; the map task confirms every hit on the uid), written
  partitioned by file index, a map side of its own (``dataops._RunWriter(by_value=True)``);
* the driver keeps the second index (file, byte range), and a timelines map task reads only
  its own file's drops: O(rows of a file), at any corpus size.

Every drop must reach a file: the reduces count the drops they matched, and a shortfall is an
error, not a record silently kept.
"""

from __future__ import annotations

import logging
import posixpath
import time
from typing import Dict, List

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import storage
from ..ingest.dataops import (MAP_INDEX_SCHEMA, ShufflePartition, _RunWriter, by_key_partition,
                              file_list_dataset, files_per_task, parquet_file_list, partitions_for, shuffle_index)
from . import dedup

log = logging.getLogger("humanllm")

ROUTE_SCHEMA = pa.schema([("_jkey", pa.uint64()), ("file", pa.int32()), ("key", pa.uint64()), ("uid", pa.string()),
                          ("reason", pa.string()), ("detail", pa.string())])
# Rows per partition of the routing shuffle: a signature's row is ~30 bytes (its string columns
# null), so ~15 MB a partition; drops are ~7% of the rows.
ROUTE_ROWS_PER_PARTITION = 500_000
# What a routing reduce returns: its map index (one row, empty lists when no drop matched a file)
# and how many of its partition's drops found a file.
ROUTE_INDEX_SCHEMA = MAP_INDEX_SCHEMA.append(pa.field("matched", pa.int64()))
# A file-list item that stands for drop piece i (an object ref), not a file.
_PIECE = "drops-piece:"
# Signature rows read at a time by the map side (two numbers each).
_SIG_SLICE_ROWS = 65_536


def scratch_stem(path: str) -> str:
    """``<stem>`` of a ``records-<stem>.parquet`` or ``signatures-<stem>.parquet`` scratch file."""
    return posixpath.basename(path).rsplit(".", 1)[0].split("-", 1)[1]


def _drop_rows(piece: pa.Table, mask: int) -> pa.Table:
    key = piece.column("key").to_numpy(zero_copy_only=False).astype(np.uint64)
    return pa.table({"_jkey": pa.array(key & np.uint64(mask), pa.uint64()),
                     "file": pa.array(np.full(len(key), -1, np.int32)), "key": pa.array(key, pa.uint64()),
                     "uid": piece.column("uid"), "reason": piece.column("reason"), "detail": piece.column("detail")},
                    schema=ROUTE_SCHEMA)


def _route_map(file_of: Dict[str, int], refs: list, fs, mask: int):
    """``map_fn`` of the routing shuffle over a batch of the file list: a signatures file's
    ords with its file index, or a drop piece's rows."""
    import pyarrow.parquet as pq

    def rows(batch: pa.Table):
        for path in batch.column("path").to_pylist():
            if path.startswith(_PIECE):
                yield _drop_rows(dedup.read_piece(refs[int(path[len(_PIECE):])]), mask)
                continue
            i = file_of[scratch_stem(path)]
            for rb in pq.ParquetFile(path, filesystem=fs).iter_batches(batch_size=_SIG_SLICE_ROWS, columns=["_ord"]):
                n = rb.num_rows
                none = pa.nulls(n, pa.string())
                yield pa.table({"_jkey": rb.column(0).cast(pa.uint64()), "file": pa.array(np.full(n, i, np.int32)),
                                "key": pa.nulls(n, pa.uint64()), "uid": none, "reason": none, "detail": none},
                               schema=ROUTE_SCHEMA)

    return rows


def _route_reduce(n_files: int, out_uri: str):
    """Reduce of the routing shuffle: the partition's drops joined to their files, written by
    file index (one byte range per file); returns a :data:`ROUTE_INDEX_SCHEMA` row, whose
    ``matched`` counts the partition's drops that found a file."""

    def fn(part: pa.Table) -> pa.Table:
        is_sig = pc.greater_equal(part.column("file"), 0)
        sig = part.filter(is_sig)
        drops = part.filter(pc.invert(is_sig))
        del part
        index, matched = MAP_INDEX_SCHEMA.empty_table(), 0
        if drops.num_rows and sig.num_rows:
            sig_key = sig.column("_jkey").to_numpy()
            order = np.argsort(sig_key, kind="stable")
            sig_key, sig_file = sig_key[order], sig.column("file").to_numpy()[order]
            drop_key = drops.column("_jkey").to_numpy()
            lo, hi = np.searchsorted(sig_key, drop_key, "left"), np.searchsorted(sig_key, drop_key, "right")
            owner, pos = dedup._ranges(lo, hi)
            # one row per (drop, file): a file holding two rows of one _ord needs the drop once
            pair = np.unique(owner.astype(np.int64) * n_files + sig_file[pos])
            owner, file = pair // n_files, (pair % n_files).astype(np.int32)
            routed = drops.select(["key", "uid", "reason", "detail"]).take(pa.array(owner)).append_column(
                "file", pa.array(file, pa.int32()))
            writer = _RunWriter(n_files, "file", by_value=True)
            writer.add(routed)
            index = writer.write(out_uri)
            matched = int(np.count_nonzero(hi > lo))
        if not index.num_rows:
            index = pa.table({"file": [""], "part": [[]], "offset": [[]], "length": [[]], "rows": [[]]},
                             schema=MAP_INDEX_SCHEMA)
        return index.append_column("matched", pa.array([matched], pa.int64()))

    return fn


class RoutedDrops:
    """Where each records scratch file's drops are (:func:`route_drops`); :meth:`pieces_for`
    reads one file's, in a timelines map task."""

    def __init__(self, file_of: Dict[str, int], shared=None):
        self.file_of = file_of
        self._shared = shared  # {"files", "index", "at": {file index: (lo, hi)}}, or its object ref

    def pieces_for(self, path: str) -> List[pa.Table]:
        """The drop rows (``dedup.DROP_SCHEMA``, sorted by key) of the records file ``path``, as
        a list of pieces for ``dedup.lookup_drops``; none when it has none."""
        if self._shared is None:
            return []
        i = self.file_of.get(scratch_stem(path))
        if i is None:
            return []
        got = self._shared
        if not isinstance(got, dict):
            import ray

            got = ray.get(got)
        if i not in got["at"]:
            return []
        lo, hi = got["at"][i]
        table = ShufflePartition.of_index(got["files"], got["index"], lo, hi).read(dedup.DROP_SCHEMA.names)
        return [table.sort_by("key").cast(dedup.DROP_SCHEMA)]


def route_drops(drops: list, n_dropped: int, signatures_uri: str, scratch_uri: str,
                n_rows: int) -> RoutedDrops:
    """The drop table (``drops``: ``dedup.find_duplicates``' pieces, see ``dedup.read_piece``;
    it drops ``n_dropped`` rows) routed to the records scratch files, through a shuffle under
    ``scratch_uri`` (``n_rows``: the signature rows, for its partition count)."""
    import ray

    sig_paths, fs = parquet_file_list([signatures_uri])
    file_of = {scratch_stem(p): i for i, p in enumerate(sig_paths)}
    if not drops or not n_dropped:
        return RoutedDrops(file_of)
    t0 = time.monotonic()
    refs = [ray.put(p) if isinstance(p, pa.Table) and ray.is_initialized() else p for p in drops]
    items = sig_paths + [f"{_PIECE}{i}" for i in range(len(refs))]
    out_uri = storage.join(scratch_uri, "by-file")
    storage.makedirs(out_uri)
    n = partitions_for(n_rows + n_dropped, ROUTE_ROWS_PER_PARTITION)
    reduced = by_key_partition(file_list_dataset(items), n, _route_reduce(len(sig_paths), out_uri), key="_jkey",
                               batch_format="pyarrow", scratch_uri=storage.join(scratch_uri, "by-key"),
                               map_fn=_route_map(file_of, refs, fs, dedup.ORD_MASK),
                               files_per_task=files_per_task(len(items)))
    rows = [t for t in reduced.iter_batches(batch_format="pyarrow", batch_size=None) if t.num_rows]
    del refs
    found = pa.concat_tables(rows) if rows else ROUTE_INDEX_SCHEMA.empty_table()
    matched = int(pc.sum(found.column("matched")).as_py() or 0)
    if matched != n_dropped:
        raise RuntimeError(f"curate: {n_dropped - matched} of {n_dropped} duplicates to drop matched no records "
                           f"scratch file (signatures under {signatures_uri}); refusing to keep them silently")
    has_pieces = pc.greater(pc.list_value_length(found.column("part")), 0)
    files, index, los, his = shuffle_index([found.drop_columns(["matched"]).filter(has_pieces)])
    parts = index.column("part").to_numpy()
    at = {int(parts[lo]): (int(lo), int(hi)) for lo, hi in zip(los, his)}
    shared: object = {"files": files, "index": index, "at": at}
    if ray.is_initialized():
        shared = ray.put(shared)
    log.info("curate: %d duplicates routed to %d of %d records files (%.1f s)", n_dropped, len(at), len(sig_paths),
             time.monotonic() - t0)
    return RoutedDrops(file_of, shared)


__all__ = ["route_drops", "RoutedDrops", "ROUTE_SCHEMA", "scratch_stem"]
