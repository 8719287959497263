"""Connected components of dedup's verified pairs, computed in the workers.

Why: dedup keeps one row per group of duplicates, and a group is a connected component of the
graph of verified pairs. Done on the driver (scipy over all pairs, :func:`drops_from_pairs`),
that step held ~3.5x the pairs' Arrow size: +229 MB for the 316k pairs of 3M records, the
driver's share of that run's peak (bench/README.md, curate Round 9), and some GB at the paper's
10x scale (~6M pairs). Here every step is a shuffle whose partitions are bounded by
:data:`ROWS_PER_PARTITION`, so no process holds more than one partition of the graph.

Algorithm: Kiveris et al., "Connected Components in MapReduce and Beyond" (SoCC 2014), the
alternating one: a Large-Star step then a Small-Star step, each one shuffle keyed by node,
repeated until neither changes an edge; then every component is a star around its smallest
node. O(log^2 n) rounds in the worst case; dedup's graphs are near-stars already (each LSH
bucket links its members to its earliest row), so a round or two does it.

Nodes are *labels*, strings that sort in keeper order and carry what the drop table needs::

    <timestamp + 2^63 as 20 digits><row uid>\\x1e<exact hash>

so the smallest node of a component is its keeper (earliest timestamp, then smallest uid), and
the final star edges (node, smallest) are the drop rows, with no vertex table to join. Within a
partition the labels are ranked once (dictionary-encoded, the dictionary sorted) and the steps
run on integer ranks with numpy.

Each step's reduce writes its edges to Parquet under the step's scratch folder, named after
their content (a retried task rewrites the same file; two partitions that emit the very same
edges write one file, which is as good as two since the next step makes edges distinct), and
returns only (edges, changed) counts to the driver.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Dict, List, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import storage
from ..ingest.dataops import (by_key_partition, mix64, partitions_for, read_parquet_files, release_memory, task_args,
                              write_part)

log = logging.getLogger("humanllm")

# An undirected edge between two labels, x > y (the larger first).
EDGE_SCHEMA = pa.schema([("x", pa.string()), ("y", pa.string())])
# A node and one neighbour: the rows a step's shuffle groups by ``node`` (``_key``: a 64-bit
# hash of it that the shuffle partitions by; see :func:`node_keys`).
ADJ_SCHEMA = pa.schema([("node", pa.string()), ("nb", pa.string()), ("_key", pa.uint64())])
STEP_COUNTS_SCHEMA = pa.schema([("edges", pa.int64()), ("changed", pa.int64()), ("distinct", pa.int64())])
# Adjacency rows per shuffle partition: ~300 bytes a row (two labels of ~150), so ~15 MB. A
# reduce task holds ~2x the partition on top (the dictionary of labels, the ranks, the output:
# +109 MB at 200k rows, replayed); a step's output files are its partitions, and the next
# step's map tasks read one each.
ROWS_PER_PARTITION = 50_000
# A bound on rounds (O(log^2 n) in theory; dedup's graphs take 1-3): a loop past it is a bug.
MAX_ROUNDS = 64
_TS_BIAS = 1 << 63
_SEP = "\x1e"
_TS_DIGITS = 20


def labels(ts: pa.Array, uid: pa.Array, exact_hash: pa.Array) -> pa.Array:
    """The node label of each row (see the module docstring): sorts as (timestamp, uid). The
    timestamp's bits with the sign bit flipped read as an unsigned number in timestamp order."""
    ts = pc.fill_null(ts, 0).cast(pa.int64())
    ts = ts.combine_chunks() if isinstance(ts, pa.ChunkedArray) else ts
    biased = pc.bit_wise_xor(ts.view(pa.uint64()), pa.scalar(_TS_BIAS, pa.uint64()))
    digits = pc.utf8_lpad(pc.cast(biased, pa.string()), width=_TS_DIGITS, padding="0")
    return pc.binary_join_element_wise(digits, pc.cast(uid, pa.string()), pa.scalar(_SEP),
                                       pc.cast(pc.fill_null(exact_hash, ""), pa.string()), pa.scalar(""))


def label_parts(label: pa.Array) -> Tuple[pa.Array, pa.Array]:
    """(uid, exact hash) of each label."""
    rest = pc.utf8_slice_codeunits(label, _TS_DIGITS)
    parts = pc.split_pattern(rest, _SEP, max_splits=1, reverse=True)
    return pc.list_element(parts, 0), pc.list_element(parts, 1)


def edges_of_pairs(pairs: pa.Table) -> pa.Table:
    """:data:`EDGE_SCHEMA` rows of verified pairs (``dedup.PAIR_SCHEMA``)."""
    la = labels(pairs.column("ts_a"), pairs.column("uid_a"), pairs.column("hash_a"))
    lb = labels(pairs.column("ts_b"), pairs.column("uid_b"), pairs.column("hash_b"))
    a_big = pc.greater(la, lb)
    return pa.table({"x": pc.if_else(a_big, la, lb), "y": pc.if_else(a_big, lb, la)}, schema=EDGE_SCHEMA)


_KEY_BYTES = 32


def node_keys(label) -> np.ndarray:
    """A 64-bit hash of each label (the same label, the same key), from its last 32 bytes (the
    exact hash and the end of the uid: its source line; bytes before a shorter label's start
    count as zeros), read straight from the Arrow buffer 8,192 labels at a time. Why: the
    shuffle's default partitioner hashes the key column through pandas, which made a Python
    string of every label: +137 MB for a map task of 100k edges (replayed)."""
    arr = label.combine_chunks() if isinstance(label, pa.ChunkedArray) else label
    n = len(arr)
    out = np.empty(n, np.uint64)
    if not n:
        return out
    odt = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], odt)[arr.offset:arr.offset + n + 1].astype(np.int64)
    data = np.frombuffer(arr.buffers()[2], np.uint8)
    span = np.arange(-_KEY_BYTES, 0, dtype=np.int64)
    for s in range(0, n, 8192):
        stop = min(n, s + 8192)
        start, end = offsets[s:stop], offsets[s + 1:stop + 1]
        at = end[:, None] + span  # the last 32 byte positions of each label
        inside = at >= start[:, None]
        window = np.where(inside, data[np.maximum(at, 0)], 0).astype(np.uint8)
        words = np.ascontiguousarray(window).view(np.uint64)  # (rows, 4)
        h = np.zeros(len(words), np.uint64)
        for j in range(words.shape[1]):
            h = mix64(h ^ words[:, j])
        out[s:s + len(h)] = h
    return out


class Names:
    """rank -> label, as the dictionary of labels and its sort order: no sorted copy of the
    labels is made, only the labels taken at the end."""

    def __init__(self, dictionary: pa.Array, order: np.ndarray):
        self.dictionary, self.order = dictionary, order

    def __len__(self) -> int:
        return len(self.order)

    def take(self, ranks: np.ndarray) -> pa.Array:
        return self.dictionary.take(pa.array(self.order[np.asarray(ranks, np.int64)]))


def ranked(*cols: pa.Array) -> Tuple[List[np.ndarray], Names]:
    """The labels of ``cols`` as integer ranks (equal labels equal ranks, the rank order the
    label order), and the labels by rank."""
    chunks = [c for col in cols for c in (col.chunks if isinstance(col, pa.ChunkedArray) else [col])]
    enc = pc.dictionary_encode(pa.chunked_array(chunks, pa.string())).combine_chunks()
    order = pc.sort_indices(enc.dictionary).to_numpy()
    rank_of = np.empty(len(order), np.int64)
    rank_of[order] = np.arange(len(order))
    idx = rank_of[enc.indices.to_numpy()]
    out, at = [], 0
    for col in cols:
        out.append(idx[at:at + len(col)])
        at += len(col)
    return out, Names(enc.dictionary, order)


def distinct(u: np.ndarray, v: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Distinct (u, v) pairs, sorted by u then v."""
    if not len(u):
        return u, v
    p = np.unique(np.stack([u, v], axis=1), axis=0)
    return p[:, 0], p[:, 1]


def _group_min(u: np.ndarray, v: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """For rows sorted by u: (min(u, min of v over the rows of u) per row, whether each row
    is its u's first)."""
    start = np.ones(len(u), bool)
    start[1:] = u[1:] != u[:-1]
    firsts = np.flatnonzero(start)
    mins = np.minimum(np.minimum.reduceat(v, firsts), u[firsts])
    return mins[np.cumsum(start) - 1], start


def large_star(part: pa.Table) -> Tuple[pa.Table, int, int]:
    """Large-Star over one partition of adjacency rows (both directions of every edge): each
    node u links every larger neighbour v to m(u), the smallest of u and its neighbours.
    Returns (edges, changed: edges not already (v, u), distinct undirected edges seen: each
    counted at its smaller end)."""
    (u, v), names = ranked(part.column("node"), part.column("nb"))
    u, v = distinct(u, v)
    m, _ = _group_min(u, v)
    up = v > u
    x, y = v[up], m[up]
    return _edges(names, x, y), int((y != u[up]).sum()), int(up.sum())


def small_star(part: pa.Table) -> Tuple[pa.Table, int, int]:
    """Small-Star over one partition of adjacency rows (each edge once, at its larger end): each
    node u links itself and its (smaller) neighbours to the smallest of them. Returns (edges,
    changed: |N(u)| - 1 summed, the edges that were not there, distinct input edges)."""
    (u, v), names = ranked(part.column("node"), part.column("nb"))
    u, v = distinct(u, v)
    m, start = _group_min(u, v)
    # every neighbour but the smallest links to it, and u links to it (the m of a row is < u)
    nb = v != m
    x = np.concatenate([v[nb], u[start]])
    y = np.concatenate([m[nb], m[start]])
    return _edges(names, x, y), int(nb.sum()), int(len(u))


def _edges(names: Names, x: np.ndarray, y: np.ndarray) -> pa.Table:
    x, y = distinct(x, y)
    return pa.table({"x": names.take(x), "y": names.take(y)}, schema=EDGE_SCHEMA)


STEPS = {"large": large_star, "small": small_star}


def adjacency_udf(step: str):
    """map_batches UDF, the map side of a step: edges (x > y) as adjacency rows, both directions
    for Large-Star, the larger end only for Small-Star."""

    def udf(edges: pa.Table) -> pa.Table:
        if step == "small":
            node, nb = edges.column("x"), edges.column("y")
        else:
            node = pa.chunked_array(edges.column("x").chunks + edges.column("y").chunks, pa.string())
            nb = pa.chunked_array(edges.column("y").chunks + edges.column("x").chunks, pa.string())
        return pa.table({"node": node, "nb": nb, "_key": pa.array(node_keys(node), pa.uint64())}, schema=ADJ_SCHEMA)

    return udf


def _digest_name(table: pa.Table, prefix: str) -> str:
    """A file name from the table's content (its Arrow IPC bytes, uncompressed)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return f"{prefix}-{hashlib.sha1(memoryview(sink.getvalue())).hexdigest()[:24]}.parquet"


def step_writer(step: str, out_uri: str):
    """by_key_partition hook: one step over a partition, its edges written under ``out_uri``,
    one :data:`STEP_COUNTS_SCHEMA` row returned."""
    fn = STEPS[step]

    def reduce(part: pa.Table) -> pa.Table:
        if not part.num_rows:
            return STEP_COUNTS_SCHEMA.empty_table()
        edges, changed, n_distinct = fn(part)
        del part
        write_part(edges, out_uri, _digest_name(edges, "edges"))
        n = edges.num_rows
        del edges
        release_memory()
        return pa.table({"edges": [n], "changed": [changed], "distinct": [n_distinct]}, schema=STEP_COUNTS_SCHEMA)

    return reduce


def run_step(edges_uri: str, n_edges: int, step: str, out_uri: str, shuffle_uri: str) -> Dict[str, int]:
    """One step over the edge files under ``edges_uri``; its edges go to ``out_uri``."""
    rows = n_edges * (2 if step == "large" else 1)
    adj = read_parquet_files(edges_uri, EDGE_SCHEMA).map_batches(adjacency_udf(step), batch_format="pyarrow",
                                                                 **task_args())
    storage.rm(out_uri)
    counts = by_key_partition(adj, partitions_for(rows, ROWS_PER_PARTITION), step_writer(step, out_uri), key="_key",
                              batch_format="pyarrow", scratch_uri=shuffle_uri).take_all()
    storage.rm(shuffle_uri)
    return {k: sum(int(r[k]) for r in counts) for k in STEP_COUNTS_SCHEMA.names}


def star_edges(pairs_uri: str, n_pairs: int, scratch_uri: str) -> Tuple[str, int]:
    """Connected components of the verified pairs under ``pairs_uri`` (``dedup.PAIR_SCHEMA``
    Parquet): (the folder of the final star edges, (node, its component's smallest node), one
    per node that is not the smallest; the count of distinct verified edges)."""
    from .dedup import PAIR_SCHEMA

    t0 = time.monotonic()
    first = storage.join(scratch_uri, "edges-0")
    storage.rm(first)
    read_parquet_files(pairs_uri, PAIR_SCHEMA).map_batches(
        _edges_writer(first), batch_format="pyarrow", **task_args()).materialize()
    current, n_edges, n_verified = first, n_pairs, -1
    for rnd in range(1, MAX_ROUNDS + 1):
        changed = 0
        for step in ("large", "small"):
            out = storage.join(scratch_uri, f"edges-{rnd}-{step}")
            c = run_step(current, n_edges, step, out, storage.join(scratch_uri, "shuffle"))
            if n_verified < 0:
                n_verified = c["distinct"]  # the first Large-Star sees every input edge once
            storage.rm(current)
            current, n_edges = out, c["edges"]
            changed += c["changed"]
        log.info("dedup components: round %d: %d edges, %d changed (%.1f s)", rnd, n_edges, changed,
                 time.monotonic() - t0)
        if not changed:
            return current, n_verified
    raise RuntimeError(f"dedup components: no convergence in {MAX_ROUNDS} rounds")


def _edges_writer(out_uri: str):
    """map_batches UDF: a block of verified pairs as edges, written under ``out_uri``."""

    def udf(pairs: pa.Table) -> pa.Table:
        edges = edges_of_pairs(pairs)
        write_part(edges, out_uri, _digest_name(edges, "edges"))
        return pa.table({"edges": [edges.num_rows]})

    return udf
