"""Duplicate removal: exact (normalized-text hash) and near (MinHash LSH), with Ray Data.

1. ``map_batches``: a datasketch MinHash signature per record (character 5-gram shingles of the
   normalized text, so short tweets still compare well; word 3-grams for texts over 1000
   characters, to keep long blog posts cheap), its exact hash and ``_ord``, a 64-bit hash of
   the row's identity. datasketch 2.x ``scheme="affine32"``; stored as uint32 bytes. Rows are
   identified by record_id + source location, so the same record read twice (a tweet id
   present in two files) is a duplicate too. Curate makes the signatures inside its record
   pass (``signatures=``), from the rows that passed, while it has them in hand.
2. ``map_batches``: explode each signature into ``minhash_bands`` band keys (r = num_perm /
   bands values per band) plus one exact-hash key, all 64-bit integers: a band row is
   (key, _ord, timestamp), 24 bytes. Why integers: the band rows are the one all-to-all
   shuffle of dedup (bands + 1 rows per record: 11.7M at 1M records); with strings (row uid,
   hex keys) they were ~200 bytes a row and filled the object store.
3. a shuffle on the key (``by_key_partition``): inside a bucket every member is linked to the
   bucket's earliest (timestamp, _ord) (a star, so a huge bucket costs O(n), not O(n^2)); only
   buckets with two or more members emit anything. Links are (a, b) pairs of ``_ord``.
4. driver: the distinct links (numpy arrays, 16 bytes a link) go to the workers through the
   object store. A map over the signatures sends each row a link involves to its partner: the
   link's ``a`` row once per link to the ``b`` ord, the ``b`` row to its own ord; a shuffle on
   that ord (``verify_reduce_fn``) pairs them and verifies each pair on the real rows: the
   same exact hash (``exact_duplicate``), else an estimated Jaccard >= ``near_dup_threshold``.
   An ord that stands for several rows pairs all of them (a self-link (o, o) pairs the
   distinct rows sharing o), so a 64-bit key or ``_ord`` collision can add a comparison, never
   a drop. The verified pairs (uids, timestamps, hashes) stream to scratch files.
5. connected components of the verified pairs; in each, the earliest record (timestamp, then
   row uid) is kept and the others are ``exact_duplicate`` (same normalized text as the
   keeper) or ``near_duplicate``. Up to ``DRIVER_COMPONENTS_MAX_PAIRS`` pairs the driver does
   it (scipy); past that the workers do (:mod:`.components`, Large-Star/Small-Star shuffles)
   and write the drop table as sorted Parquet pieces the driver only names. Curate then
   routes each drop to the records file that holds its row (:mod:`.drop_route`).
   Driver memory is O(links) (16 bytes each) and never holds a signature.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import storage
from ..ingest.dataops import (by_key_partition, by_slices, file_list_dataset, files_per_task, iter_parquet_slices,
                              largest_first, mix64, parquet_file_list, partitions_for, read_parquet_files,
                              release_memory, retire_idle_workers, spill, task_args)
from . import components
from .clean import normalize_for_hash

log = logging.getLogger("humanllm")

SEED = 1
SCHEME = "affine32"  # datasketch 2.x: 32-bit hash values

SIG_SCHEMA = pa.schema(
    [("record_id", pa.string()), ("timestamp", pa.int64()), ("_hash", pa.string()), ("_sig", pa.binary()),
     ("_ord", pa.uint64())]
)
BAND_SCHEMA = pa.schema([("bkey", pa.uint64()), ("_ord", pa.uint64()), ("timestamp", pa.int64())])
EDGE_SCHEMA = pa.schema([("a", pa.uint64()), ("b", pa.uint64()), ("n", pa.int64())])
# Band rows per shuffle partition: 24 bytes a row, so ~12 MB, and ~0.15 s of edges_fn (whose
# sort keys and orders take ~4x the partition). The 50k rows of ``num_partitions`` (sized for
# record rows of ~1 KB) made 235 partitions of 1.2 MB at 1M records, each a Ray task whose
# fixed cost outweighed its work; 1M rows made the reduce workers the peak of dedup at 1M
# records (~315 MB each; bench/README.md, curate Round 8).
BAND_ROWS_PER_PARTITION = 500_000
# Records per partition of the distinct-links shuffle. Its rows are per-band-partition
# distinct candidate pairs (24 bytes each), and a reduce task holds ~130 bytes a row
# (np.unique's sort). There were 0.9 a record at 1M records and 1.6 at 3M (more duplicates
# in a bigger corpus): with 1M records a partition, the 3M run's reduce workers reached
# ~420 MB (bench/README.md, curate Round 9); at 250k a partition is ~0.2-0.4M rows.
LINK_RECORDS_PER_PARTITION = 250_000
# Rows (about links + their distinct b ords) per partition of the verify shuffle. A row
# carries its uid, exact hash and 512-byte signature (~650 bytes), and the reduce holds a few
# copies (the two sides, the pairs' takes): at the 50k rows of ``num_partitions`` its workers
# were the 1M-record run's peak (350 MB, against ~230 MB at 100k records, whose partitions
# were 7k rows; bench/README.md curate Round 8).
VERIFY_ROWS_PER_PARTITION = 15_000
# Verified pairs up to which the driver finds their connected components itself (scipy, one
# process: +102 MB RSS, transient, at 70k pairs, replayed); past it the workers do
# (:mod:`.components`: 8 small shuffles, 7.6-8.7 s, at 3M records), so the driver's share of
# dedup stops growing with the corpus. 1M records make ~70k pairs, 3M ~316k.
DRIVER_COMPONENTS_MAX_PAIRS = 100_000
# Distinct candidate links up to which the driver gathers them and broadcasts them to the verify
# map through the object store (16 bytes each: 64 MB here). bench/curate's corpus makes 0.25 a
# record at 1M records and 0.40 at 3M (a bigger corpus has more duplicates), so the paper's 10x
# (55M records) would put 0.35 GB or more on the driver. Past it the links meet the signatures
# in a shuffle join in the workers instead (:func:`link_join_fn`): one more shuffle, of every
# signature row (forced: +2 s of dedup at 1M records, +12 s at 3M), and the driver holds only counts.
DRIVER_LINKS_MAX = 4_000_000

# Masks applied to the 64-bit band keys and row ords. Full width in production; a test narrows
# ORD_MASK to force ord collisions and checks they never cause a wrong drop. Read when the
# UDFs are built (driver side), so a test's change travels to the workers in the closures.
KEY_MASK = 0xFFFFFFFFFFFFFFFF
ORD_MASK = 0xFFFFFFFFFFFFFFFF

_TEMPLATES: Dict[int, object] = {}


def body_of(platform: str, kind: str, title: str, text: str) -> str:
    """What duplicates are judged on: title + selftext for Reddit submissions, else the text."""
    if platform == "reddit" and kind == "post":
        return ((title or "") + "\n" + (text or "")).strip()
    return text or ""


def exact_hash(normalized: str) -> str:
    return hashlib.sha1(normalized.encode("utf-8", "replace")).hexdigest()[:20]


LONG_TEXT = 1000


def shingles(normalized: str) -> List[bytes]:
    if len(normalized) > LONG_TEXT:
        words = normalized.split()
        return list({" ".join(words[i:i + 3]).encode("utf-8") for i in range(len(words) - 2)})
    if len(normalized) <= 5:
        return [normalized.encode("utf-8")]
    return list({normalized[i:i + 5].encode("utf-8") for i in range(len(normalized) - 4)})


def signature(normalized: str, num_perm: int) -> np.ndarray:
    """MinHash hash values (uint32) of a normalized text."""
    from datasketch import MinHash

    tpl = _TEMPLATES.get(num_perm)
    if tpl is None:
        tpl = _TEMPLATES[num_perm] = MinHash(num_perm=num_perm, seed=SEED, scheme=SCHEME)
    m = tpl.copy()
    m.update_batch(shingles(normalized))
    return np.asarray(m.hashvalues, dtype=np.uint32)


def row_uid(record_id: str, source_file: str, source_line: int) -> str:
    """Row identity for dedup: record_id plus where it was read."""
    return f"{record_id}\x1f{source_file}\x1f{source_line}"


def uid_record_id(uid: str) -> str:
    return uid.split("\x1f", 1)[0]


UID_COLUMNS = ["record_id", "source_file", "source_line"]


def ord_of(uid: str, mask: int = ORD_MASK) -> int:
    """A row's 64-bit ``_ord``: a stable hash of its uid (the same in every run and process)."""
    return int.from_bytes(hashlib.blake2b(uid.encode("utf-8", "replace"), digest_size=8).digest(), "little") & mask


def signatures_udf(num_perm: int, ord_mask: Optional[int] = None):
    """map_batches UDF: :func:`signature_rows` over a block, slice by slice."""

    def udf(batch: pa.Table) -> pa.Table:
        out = by_slices(lambda piece: signature_rows(piece, num_perm, ord_mask), batch)
        del batch
        release_memory()
        return out

    return udf


def signature_rows(batch: pa.Table, num_perm: int, ord_mask: Optional[int] = None) -> pa.Table:
    """``SIG_SCHEMA`` rows of a batch of records: uid, timestamp, exact hash, MinHash signature
    and ``_ord`` (``ord_mask`` default: :data:`ORD_MASK` as it is at call time; tests narrow it)."""
    mask = ORD_MASK if ord_mask is None else ord_mask
    cols = {c: batch.column(c).to_pylist()
            for c in ("record_id", "source_file", "source_line", "timestamp", "platform", "kind", "title", "text")}
    uids = [row_uid(r, f, ln) for r, f, ln in zip(cols["record_id"], cols["source_file"], cols["source_line"])]
    hashes, sigs = [], []
    for p, k, t, x in zip(cols["platform"], cols["kind"], cols["title"], cols["text"]):
        norm = normalize_for_hash(body_of(p or "", k or "", t or "", x or ""))
        hashes.append(exact_hash(norm))
        sigs.append(signature(norm, num_perm).tobytes())
    return pa.table({"record_id": uids, "timestamp": cols["timestamp"], "_hash": hashes,
                     "_sig": sigs, "_ord": [ord_of(u, mask) for u in uids]}, schema=SIG_SCHEMA)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def band_keys(hv: np.ndarray, bands: int, exact_hex: List[str], key_mask: Optional[int] = None) -> np.ndarray:
    """(bands + 1, n) uint64 bucket keys for n signatures ``hv`` (n, num_perm) uint32: one per
    band (its r values hashed together with the band number) and, last, one per exact hash.
    Keys only pick candidates: every link is verified on the real rows, so a collision costs a
    comparison, never a wrong drop."""
    n, num_perm = hv.shape
    r = max(1, num_perm // max(1, bands))
    nb = min(bands, num_perm // r)
    mask = np.uint64(KEY_MASK if key_mask is None else key_mask)
    keys = np.empty((nb + 1, n), dtype=np.uint64)
    with np.errstate(over="ignore"):
        vals = hv.astype(np.uint64)
        for i in range(nb):
            h = np.full(n, mix64(np.array([np.uint64(i + 1) * _GOLDEN], dtype=np.uint64))[0], dtype=np.uint64)
            for j in range(i * r, (i + 1) * r):
                h = mix64(h ^ vals[:, j])
            keys[i] = h & mask
        # the exact-hash key: 64 bits of the sha1 prefix, in its own key space (band number nb + 1)
        ex = np.array([int(x[:16], 16) for x in exact_hex], dtype=np.uint64)
        keys[nb] = mix64(ex ^ (np.uint64(nb + 1) * _GOLDEN)) & mask
    return keys


def bands_udf(num_perm: int, bands: int, key_mask: Optional[int] = None):
    mask = KEY_MASK if key_mask is None else key_mask

    def udf(batch: pa.Table) -> pa.Table:
        import pyarrow.compute as pc

        n = batch.num_rows
        if n == 0:
            return BAND_SCHEMA.empty_table()
        hv = _sig_matrix(batch.column("_sig"), num_perm)
        keys = band_keys(hv, bands, batch.column("_hash").to_pylist(), mask)
        reps = keys.shape[0]
        ords = batch.column("_ord").to_numpy(zero_copy_only=False).astype(np.uint64)
        ts = pc.fill_null(batch.column("timestamp"), 0).to_numpy(zero_copy_only=False).astype(np.int64)
        return pa.table({"bkey": pa.array(keys.reshape(-1), pa.uint64()),
                         "_ord": pa.array(np.tile(ords, reps), pa.uint64()),
                         "timestamp": pa.array(np.tile(ts, reps), pa.int64())}, schema=BAND_SCHEMA)

    return udf


def edges_fn(df) -> pa.Table:
    """One shuffle partition of band rows: link every bucket member to the bucket's earliest
    (timestamp, _ord). Members with the center's own ``_ord`` are linked too (a self-link
    (o, o)): an ord can stand for several rows, which the driver expands."""
    if df.empty:
        return EDGE_SCHEMA.empty_table()
    key = df["bkey"].to_numpy(dtype=np.uint64)
    ords = df["_ord"].to_numpy(dtype=np.uint64)
    ts = df["timestamp"].to_numpy(dtype=np.int64)
    order = np.lexsort((ords, ts, key))
    key, ords = key[order], ords[order]
    start = np.ones(len(key), dtype=bool)
    start[1:] = key[1:] != key[:-1]
    group = np.cumsum(start) - 1
    first = np.flatnonzero(start)
    member = ~start  # every row but the center of its bucket (so only buckets of 2+ emit)
    a, b = ords[first[group[member]]], ords[member]
    # distinct unordered pairs of this partition, with how many bucket links each stands for (a
    # near-duplicate pair shares several bands): ~4.6x fewer rows reach the driver at 1M
    pairs, counts = np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1), axis=0, return_counts=True)
    return pa.table({"a": pa.array(pairs[:, 0], pa.uint64()), "b": pa.array(pairs[:, 1], pa.uint64()),
                     "n": pa.array(counts.astype(np.int64), pa.int64())}, schema=EDGE_SCHEMA)


def distinct_links_fn(part: pa.Table) -> pa.Table:
    """by_key_partition hook over edge rows keyed by ``a``: the partition's distinct (a, b)
    pairs, with the bucket links each stands for summed. A pair linked in several bands comes
    from several band partitions, but always with the same ``a`` (edges_fn orders each pair),
    so it lands in one partition here and the pairs of all partitions are distinct."""
    if not part.num_rows:
        return EDGE_SCHEMA.empty_table()
    a = part.column("a").to_numpy().astype(np.uint64)
    b = part.column("b").to_numpy().astype(np.uint64)
    n = part.column("n").to_numpy().astype(np.int64)
    pairs, inverse = np.unique(np.stack([a, b], axis=1), axis=0, return_inverse=True)
    counts = np.bincount(inverse.reshape(-1), weights=n, minlength=len(pairs)).astype(np.int64)
    return pa.table({"a": pa.array(pairs[:, 0], pa.uint64()), "b": pa.array(pairs[:, 1], pa.uint64()),
                     "n": pa.array(counts, pa.int64())}, schema=EDGE_SCHEMA)


def _candidate_count(links) -> int:
    """The candidate links a links Dataset's distinct links stand for, summed in the workers
    (one row per block comes back): the join path's count, where the driver never gathers them."""
    def count(batch: pa.Table) -> pa.Table:
        return pa.table({"n": [int(pc.sum(batch.column("n")).as_py() or 0)]})

    return sum(int(r["n"]) for r in links.map_batches(count, batch_format="pyarrow", **task_args()).take_all())


def _distinct_links(links) -> Tuple[np.ndarray, np.ndarray, int]:
    """The distinct (a, b) ord links (rows of :func:`distinct_links_fn`'s partitions) as two
    uint64 arrays, and the candidate count. The driver only concatenates: the links arrive
    distinct, so it holds 16 bytes per distinct link and no sort of all the candidates."""
    a_parts, b_parts = [], []
    n_candidates = 0
    for batch in links.iter_batches(batch_format="pyarrow", batch_size=None):
        if not batch.num_rows:
            continue
        n_candidates += int(pc.sum(batch.column("n")).as_py() or 0)
        a_parts.append(batch.column("a").to_numpy().astype(np.uint64))
        b_parts.append(batch.column("b").to_numpy().astype(np.uint64))
    if not a_parts:
        empty = np.empty(0, dtype=np.uint64)
        return empty, empty, 0
    return np.concatenate(a_parts), np.concatenate(b_parts), n_candidates


def _sig_matrix(col, num_perm: int) -> np.ndarray:
    """The ``_sig`` binary column (num_perm uint32 each) as an (n, num_perm) array: a view of the
    Arrow buffer (no Python bytes object per row, no copy)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    if n == 0:
        return np.empty((0, num_perm), np.uint32)
    odt = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=odt)[arr.offset:arr.offset + n + 1]
    width = num_perm * 4
    if not (np.diff(offsets) == width).all():
        raise ValueError(f"dedup: MinHash signatures are not all {width} bytes")
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    return data.view(np.uint32).reshape(n, num_perm)  # a view: the caller keeps the column alive


VERIFY_SCHEMA = pa.schema([("_vkey", pa.uint64()), ("_side", pa.int8()), ("uid", pa.string()),
                           ("timestamp", pa.int64()), ("_hash", pa.string()), ("_sig", pa.binary())])
PAIR_SCHEMA = pa.schema([("uid_a", pa.string()), ("uid_b", pa.string()), ("ts_a", pa.int64()), ("ts_b", pa.int64()),
                         ("hash_a", pa.string()), ("hash_b", pa.string())])


def _ranges(lo: np.ndarray, hi: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """For ranges [lo[i], hi[i]): (i repeated once per position, the positions), back to back."""
    reps = hi - lo
    owner = np.repeat(np.arange(len(lo)), reps)
    starts = np.repeat(lo - np.concatenate([[0], np.cumsum(reps)[:-1]]), reps)
    return owner, starts + np.arange(len(owner))


def _links_by_a(a: np.ndarray, b: np.ndarray) -> Dict[str, np.ndarray]:
    """The distinct links as the verify map needs them: sorted by ``a`` (with their ``b``), and
    the sorted distinct ``b`` ords."""
    order = np.argsort(a, kind="stable")
    return {"a": np.ascontiguousarray(a[order]), "b": np.ascontiguousarray(b[order]), "bs": np.unique(b)}


def verify_map_udf(links):
    """map_batches UDF over signature rows: with ``links`` (see :func:`_links_by_a`; an ObjectRef
    under Ray, read zero-copy from the object store), each row that is the ``a`` of some links
    is sent once per link to its ``b`` (side 1, keyed by b), and each row that is some link's
    ``b`` is sent to itself (side 0, keyed by its own ord). Rows no link involves send nothing."""

    def udf(batch: pa.Table) -> pa.Table:
        L = links
        if not isinstance(L, dict):
            import ray

            L = ray.get(L)
        n = batch.num_rows
        if n == 0 or len(L["a"]) == 0:
            return VERIFY_SCHEMA.empty_table()
        ords = batch.column("_ord").to_numpy(zero_copy_only=False).astype(np.uint64)
        # a row per (row, link where it is a), with that link's b
        src, at = _ranges(np.searchsorted(L["a"], ords, "left"), np.searchsorted(L["a"], ords, "right"))
        targets = L["b"][at]
        pos = np.minimum(np.searchsorted(L["bs"], ords), len(L["bs"]) - 1)
        as_b = np.flatnonzero(L["bs"][pos] == ords)
        take = np.concatenate([src, as_b])
        keys = np.concatenate([targets, ords[as_b]])
        side = np.concatenate([np.ones(len(src), np.int8), np.zeros(len(as_b), np.int8)])
        if not len(take):
            return VERIFY_SCHEMA.empty_table()
        rows = batch.select(["record_id", "timestamp", "_hash", "_sig"]).take(pa.array(take))
        return pa.table({"_vkey": pa.array(keys, pa.uint64()), "_side": pa.array(side, pa.int8()),
                         "uid": rows.column("record_id"), "timestamp": rows.column("timestamp"),
                         "_hash": rows.column("_hash"), "_sig": rows.column("_sig")}, schema=VERIFY_SCHEMA)

    return udf


# Rows of the links join: a signature row keyed by its ord (_kind 0), a link keyed by its a
# with its b in _other (_kind 1), a link keyed by its b (_kind 2).
JOIN_SCHEMA = pa.schema([("_jkey", pa.uint64()), ("_kind", pa.int8()), ("_other", pa.uint64()),
                         ("uid", pa.string()), ("timestamp", pa.int64()), ("_hash", pa.string()),
                         ("_sig", pa.binary())])


def join_signature_rows(batch: pa.Table) -> pa.Table:
    """map_batches UDF: signature rows (:data:`SIG_SCHEMA`) as links-join rows keyed by their ord."""
    n = batch.num_rows
    return pa.table({"_jkey": batch.column("_ord").cast(pa.uint64()), "_kind": pa.array(np.zeros(n, np.int8)),
                     "_other": pa.array(np.zeros(n, np.uint64)), "uid": batch.column("record_id"),
                     "timestamp": batch.column("timestamp"), "_hash": batch.column("_hash"),
                     "_sig": batch.column("_sig")}, schema=JOIN_SCHEMA)


def join_link_rows(batch: pa.Table) -> pa.Table:
    """map_batches UDF: distinct links (:data:`EDGE_SCHEMA`) as two links-join rows each, one
    keyed by a (with b) and one keyed by b."""
    n = batch.num_rows
    a = batch.column("a").to_numpy(zero_copy_only=False).astype(np.uint64)
    b = batch.column("b").to_numpy(zero_copy_only=False).astype(np.uint64)
    none = pa.nulls(2 * n, pa.string())
    return pa.table({"_jkey": pa.array(np.concatenate([a, b]), pa.uint64()),
                     "_kind": pa.array(np.repeat(np.array([1, 2], np.int8), n)),
                     "_other": pa.array(np.concatenate([b, np.zeros(n, np.uint64)]), pa.uint64()),
                     "uid": none, "timestamp": pa.nulls(2 * n, pa.int64()), "_hash": none,
                     "_sig": pa.nulls(2 * n, pa.binary())}, schema=JOIN_SCHEMA)


def _join_rows_from_files(signatures_uri: str, links_uri: str):
    """The links join's input as one Dataset: a task per signature or links file that reads it
    and makes its join rows, fused with the shuffle's map. A ``union`` of the two Datasets is
    not fused, so every block went through the object store: at 3M records the two workers
    kept 233 + 321 MB of its pages mapped to the end of the run (bench/README.md, curate Round 10)."""
    from ..ingest.dataops import file_list_dataset, parquet_file_list, per_file_udf

    sig_paths, fs = parquet_file_list([signatures_uri])
    link_paths, _ = parquet_file_list([links_uri])
    is_link = set(link_paths)

    def one_file(path: str) -> pa.Table:
        import pyarrow.parquet as pq

        if path in is_link:
            return join_link_rows(pq.read_table(path, filesystem=fs, columns=EDGE_SCHEMA.names).cast(EDGE_SCHEMA))
        return join_signature_rows(pq.read_table(path, filesystem=fs, columns=SIG_SCHEMA.names).cast(SIG_SCHEMA))

    return file_list_dataset(sig_paths + link_paths).map_batches(per_file_udf(one_file, JOIN_SCHEMA), batch_size=1,
                                                                 batch_format="pyarrow", **task_args())


def link_join_fn(part: pa.Table) -> pa.Table:
    """by_key_partition hook over links-join rows keyed by ord: the verify rows
    :func:`verify_map_udf` makes from the broadcast links, made here from the links that share
    the partition's ords. Each signature row is sent once per link whose ``a`` is its ord (side
    1, keyed by the link's b) and once to itself if its ord is some link's ``b`` (side 0)."""
    if not part.num_rows:
        return VERIFY_SCHEMA.empty_table()
    kind = part.column("_kind").to_numpy(zero_copy_only=False)
    sig = part.filter(pa.array(kind == 0))
    keys = part.column("_jkey").to_numpy(zero_copy_only=False).astype(np.uint64)
    la, lb = keys[kind == 1], part.column("_other").to_numpy(zero_copy_only=False).astype(np.uint64)[kind == 1]
    bs = np.unique(keys[kind == 2])
    ords = sig.column("_jkey").to_numpy(zero_copy_only=False).astype(np.uint64)
    order = np.argsort(ords, kind="stable")
    sorted_ords = ords[order]
    link, at = _ranges(np.searchsorted(sorted_ords, la, "left"), np.searchsorted(sorted_ords, la, "right"))
    as_b = (np.flatnonzero(bs[np.minimum(np.searchsorted(bs, ords), len(bs) - 1)] == ords)
            if len(bs) else np.empty(0, np.int64))
    take = np.concatenate([order[at], as_b]).astype(np.int64)
    if not len(take):
        return VERIFY_SCHEMA.empty_table()
    rows = sig.select(["uid", "timestamp", "_hash", "_sig"]).take(pa.array(take))
    return pa.table({"_vkey": pa.array(np.concatenate([lb[link], ords[as_b]]), pa.uint64()),
                     "_side": pa.array(np.concatenate([np.ones(len(at), np.int8), np.zeros(len(as_b), np.int8)])),
                     "uid": rows.column("uid"), "timestamp": rows.column("timestamp"),
                     "_hash": rows.column("_hash"), "_sig": rows.column("_sig")}, schema=VERIFY_SCHEMA)


def verify_reduce_fn(num_perm: int, threshold: float):
    """by_key_partition hook: pair every side-1 row (a link's ``a``) with every side-0 row of its
    key (the link's ``b``; several rows when the ord collides) and keep the pairs that are
    duplicates: the same exact hash, else an estimated Jaccard >= threshold. A row is never
    paired with itself (a self-link (o, o) pairs only the distinct rows sharing ord o)."""

    def fn(part: pa.Table) -> pa.Table:
        if not part.num_rows:
            return PAIR_SCHEMA.empty_table()
        side = part.column("_side").to_numpy(zero_copy_only=False)
        left, right = part.filter(pa.array(side == 1)), part.filter(pa.array(side == 0))
        kl = left.column("_vkey").to_numpy(zero_copy_only=False).astype(np.uint64)
        kr = right.column("_vkey").to_numpy(zero_copy_only=False).astype(np.uint64)
        # for each left row, the right rows of its key: sort the right side, then ranges
        order = np.argsort(kr, kind="stable")
        skr = kr[order]
        i, at = _ranges(np.searchsorted(skr, kl, "left"), np.searchsorted(skr, kl, "right"))
        j = order[at]
        if not len(i):
            return PAIR_SCHEMA.empty_table()
        ua = left.column("uid").take(pa.array(i))
        ub = right.column("uid").take(pa.array(j))
        differ = pc.not_equal(ua, ub).to_numpy(zero_copy_only=False)
        ha = pc.fill_null(left.column("_hash"), "").combine_chunks().take(pa.array(i))
        hb = pc.fill_null(right.column("_hash"), "").combine_chunks().take(pa.array(j))
        ok = pc.equal(ha, hb).to_numpy(zero_copy_only=False)
        sa, sb = _sig_matrix(left.column("_sig"), num_perm), _sig_matrix(right.column("_sig"), num_perm)
        todo = np.flatnonzero(~ok & differ)
        for s in range(0, len(todo), 16_384):
            k = todo[s:s + 16_384]
            ok[k] = np.mean(sa[i[k]] == sb[j[k]], axis=1) >= threshold
        keep = pa.array(ok & differ)
        ts_a = pc.fill_null(left.column("timestamp"), 0).take(pa.array(i))
        ts_b = pc.fill_null(right.column("timestamp"), 0).take(pa.array(j))
        return pa.table({"uid_a": ua.filter(keep), "uid_b": ub.filter(keep), "ts_a": ts_a.filter(keep),
                         "ts_b": ts_b.filter(keep), "hash_a": ha.filter(keep), "hash_b": hb.filter(keep)},
                        schema=PAIR_SCHEMA)

    return fn


# The rows dedup drops, sorted by ``key`` (a full 64-bit hash of the row uid, whatever
# ORD_MASK is): curate's map side finds a block's rows in it with a binary search and confirms
# each hit on the uid, so a key collision never drops the wrong row. A table and not a dict:
# it reaches every task through the object store, read zero-copy (at the paper's 10x scale,
# ~3.7M rows; a dict of them was pickled into every task's closure).
DROP_SCHEMA = pa.schema([("key", pa.uint64()), ("uid", pa.string()), ("reason", pa.string()),
                         ("detail", pa.string())])
_FULL = 0xFFFFFFFFFFFFFFFF


def drop_key(uids) -> np.ndarray:
    """The uint64 ``key`` of each row uid (see :data:`DROP_SCHEMA`): a list, or an Arrow string
    array, which is read 8,192 uids at a time (the driver builds the drop table from it
    without a Python string per dropped row at once)."""
    if isinstance(uids, (pa.Array, pa.ChunkedArray)):
        n = len(uids)
        out = np.empty(n, np.uint64)
        for s in range(0, n, 8192):
            part = uids.slice(s, 8192).to_pylist()
            out[s:s + len(part)] = drop_key(part)
        return out
    return np.fromiter((ord_of(u, _FULL) for u in uids), dtype=np.uint64, count=len(uids))


def drop_table(drop_uids: pa.Array, keep_uids: pa.Array, same_text: np.ndarray) -> pa.Table:
    """The :data:`DROP_SCHEMA` table for dropped rows, their keepers, and whether each has the
    keeper's exact normalized text. Built with Arrow kernels: the reason and the "duplicate of
    <keeper's record_id>" detail are never Python strings."""
    keys = drop_key(drop_uids)
    idx = pa.array(np.argsort(keys, kind="stable"))
    reason = pc.if_else(pa.array(np.asarray(same_text, bool)), pa.scalar("exact_duplicate"),
                        pa.scalar("near_duplicate"))
    keeper_rid = pc.list_element(pc.split_pattern(keep_uids, "\x1f", max_splits=1), 0)  # uid_record_id
    detail = pc.binary_join_element_wise(pa.scalar("duplicate of "), keeper_rid, pa.scalar(""))
    return pa.table({"key": pa.array(keys, pa.uint64()).take(idx), "uid": drop_uids.take(idx).cast(pa.string()),
                     "reason": reason.take(idx).cast(pa.string()), "detail": detail.take(idx).cast(pa.string())},
                    schema=DROP_SCHEMA)


def find_drops(drops: pa.Table, uids: List[str], mine: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray]:
    """(positions in ``uids``, rows of ``drops``) of the uids that are in the drop table
    (``mine``: their :func:`drop_key`, when the caller has them already)."""
    n = len(uids)
    if not n or not drops.num_rows:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    keys = drops.column("key").to_numpy()
    if mine is None:
        mine = drop_key(uids)
    lo, hi = np.searchsorted(keys, mine, "left"), np.searchsorted(keys, mine, "right")
    hit = np.flatnonzero(hi > lo)
    if not len(hit):
        return np.empty(0, np.int64), np.empty(0, np.int64)
    owner, pos = _ranges(lo[hit], hi[hit])
    at = hit[owner]
    same = pc.equal(pa.array([uids[i] for i in at], pa.string()),
                    drops.column("uid").take(pa.array(pos))).to_numpy(zero_copy_only=False)
    return at[same], pos[same]


def lookup_drops(pieces, uids: List[str]) -> Tuple[np.ndarray, List[str], List[str]]:
    """(positions in ``uids``, their reasons, their details) of the uids that the drop table
    holds, given as pieces (:func:`find_duplicates`' first result, the refs already read)."""
    at_parts, reasons, details = [], [], []
    mine = drop_key(uids) if uids else None  # hashed once for every piece
    for piece in pieces:
        at, rows = find_drops(piece, uids, mine)
        if len(at):
            at_parts.append(at)
            reasons += piece.column("reason").take(pa.array(rows)).to_pylist()
            details += piece.column("detail").take(pa.array(rows)).to_pylist()
    return (np.concatenate(at_parts) if at_parts else np.empty(0, np.int64)), reasons, details


def drops_as_dict(pieces) -> Dict[str, Tuple[str, str]]:
    """{row uid: (reason, detail)}: the drop table (a table, or pieces of one; see
    :func:`read_piece`) for reading (tests, small runs)."""
    out: Dict[str, Tuple[str, str]] = {}
    for piece in ([pieces] if isinstance(pieces, pa.Table) else pieces):
        piece = read_piece(piece)
        out.update({u: (r, d) for u, r, d in zip(*(piece.column(c).to_pylist() for c in ("uid", "reason", "detail")))})
    return out


def _mem() -> str:
    """The driver's resident size and Arrow pool, for the phase log lines."""
    try:
        import psutil

        rss = psutil.Process().memory_info().rss
    except Exception:  # psutil is optional here
        rss = 0
    return f"driver RSS {rss >> 20} MB, arrow {pa.total_allocated_bytes() >> 20} MB"


# Signature rows a map task makes band or verify rows from at a time (one file's ~18k rows at
# 1M records: a slice's band rows are ~26x it, ~5 MB at this size).
SIG_SLICE_ROWS = 8192


class _SignatureFiles:
    """The signature files under a folder as the input of dedup's shuffles: their file list,
    several small files a map task (``dataops.files_per_task``), each streamed a slice at a
    time into the map's rows (``rows_of``: a map_batches UDF over signature rows, given only
    ``columns``). A Dataset of the signatures instead (one block per file, mapped) made one map
    task per file, whose Ray cost per task was more than their work at 1M records (bench/README.md,
    curate Round 28)."""

    def __init__(self, uri: str):
        paths, self.fs = parquet_file_list([uri])
        self.paths = largest_first(paths, self.fs)

    def shuffle_input(self, rows_of: Callable[[pa.Table], pa.Table], columns: List[str]):
        """``by_key_partition`` keyword arguments: the file list, its ``map_fn``, ``files_per_task``."""
        fs, schema = self.fs, pa.schema([SIG_SCHEMA.field(c) for c in columns])

        def map_fn(batch: pa.Table) -> Iterator[pa.Table]:
            for path in batch.column("path").to_pylist():
                for piece in iter_parquet_slices(path, fs, schema, SIG_SLICE_ROWS):
                    out = rows_of(piece)
                    del piece
                    if out.num_rows:
                        yield out
                    del out

        return {"ds": file_list_dataset(self.paths), "map_fn": map_fn,
                "files_per_task": files_per_task(len(self.paths))}


def find_duplicates(ds, ccfg, n_rows: int = 0, scratch_uri: Optional[str] = None,
                    signatures=None, signatures_uri: Optional[str] = None) -> Tuple[List, Dict[str, int]]:
    """(the rows to drop, stats) over a Ray Dataset of records (LogRecord columns, cleaned
    text) that passed the record filters. Inside this module the ``record_id`` column of
    signature rows holds the row uid (see :func:`row_uid`).

    The signatures are read twice (bands, then the rows the links involve). ``signatures``,
    a Dataset of :data:`SIG_SCHEMA` rows already made (curate makes them in its record pass),
    replaces ``ds`` (``signatures_uri``: the folder it reads, which the links join then reads
    file by file); else they are made from ``ds`` here and, with ``scratch_uri``, streamed to
    Parquet there and read back (flat memory), or without it materialized (bench/curate's
    one-process path).

    The rows to drop are a list of pieces of one :data:`DROP_SCHEMA` table, each sorted by
    ``key`` (:func:`read_piece` reads one, :func:`lookup_drops` searches them): the table
    itself when the driver found the components (up to :data:`DRIVER_COMPONENTS_MAX_PAIRS`
    verified pairs), else the Parquet files the workers wrote, which the driver never reads.
    The count dropped is :func:`dropped_count` of the stats."""
    num_perm, bands = ccfg.minhash_num_perm, ccfg.minhash_bands
    if signatures is not None:
        sig = signatures
    else:
        sig = ds.select_columns(UID_COLUMNS + ["timestamp", "platform", "kind", "title", "text"]).map_batches(
            signatures_udf(num_perm, ORD_MASK), batch_format="pyarrow", **task_args()
        )
        if scratch_uri:
            signatures_uri = storage.join(scratch_uri, "signatures")
            sig = spill(sig, signatures_uri, SIG_SCHEMA, ccfg.rows_per_file)
        else:
            sig = sig.materialize()
    # with the signatures in files (the stage), the band and verify maps read them file by file
    sig_files = _SignatureFiles(signatures_uri) if scratch_uri and signatures_uri else None
    if sig_files is not None:
        band_input = sig_files.shuffle_input(bands_udf(num_perm, bands, KEY_MASK),
                                             ["timestamp", "_hash", "_sig", "_ord"])
    else:
        band_input = {"ds": sig.map_batches(bands_udf(num_perm, bands, KEY_MASK), batch_format="pyarrow",
                                            **task_args())}
    n_keys = max(1, n_rows) * (bands + 1)
    band_ds = band_input.pop("ds")
    edges = by_key_partition(band_ds, partitions_for(n_keys, BAND_ROWS_PER_PARTITION), edges_fn, key="bkey",
                             scratch_uri=storage.join(scratch_uri, "bands") if scratch_uri else None, **band_input)
    # The same pair comes from each band it shares: a second, small shuffle by ``a`` makes
    # the links distinct in the workers, so the driver never sorts all the candidates.
    links = by_key_partition(edges, partitions_for(n_rows, LINK_RECORDS_PER_PARTITION), distinct_links_fn, key="a",
                             batch_format="pyarrow",
                             scratch_uri=storage.join(scratch_uri, "links") if scratch_uri else None)
    # the distinct links go to files (or the object store) first, so that they are counted
    # (from the files' footers) before anything gathers them
    if scratch_uri:
        links_uri = storage.join(scratch_uri, "distinct-links")
        links = spill(links, links_uri, EDGE_SCHEMA, 4 * ccfg.rows_per_file)
        n_links = _parquet_rows(links_uri)
    else:
        links = links.materialize()
        n_links = links.count()
    if n_links == 0:
        log.info("dedup: 0 candidate links")
        return [], {"candidate_links": 0, "verified_links": 0}
    retire = ccfg.retire_workers and n_rows >= ccfg.retire_workers_min_records
    if scratch_uri and retire:
        # the links' reduce held the biggest partitions of dedup (their rows per record grow
        # with the corpus's duplicates): the verification starts on fresh workers
        retire_idle_workers("dedup's verification")

    shared = None
    if n_links <= DRIVER_LINKS_MAX:
        # Verify in the workers: the links go to every task through the object store (16 bytes
        # each, read zero-copy), each signature row a link involves meets its partner in a
        # shuffle keyed by the partner's ord, and only the verified pairs come back. The driver
        # never holds a signature: its memory is O(links) + O(verified rows), where fetching the
        # involved rows was ~0.6 KB per row (164 MB for 260k rows at 1M records).
        a, b, n_candidates = _distinct_links(links)
        log.info("dedup: %d candidate links, %d distinct (%s)", n_candidates, n_links, _mem())
        shared = _links_by_a(a, b)
        n_verify = n_links + len(shared["bs"])
        del a, b
        if scratch_uri:
            import ray

            if ray.is_initialized():
                shared = ray.put(shared)
        if sig_files is not None:
            verify_input = sig_files.shuffle_input(verify_map_udf(shared), ["record_id", "timestamp", "_hash", "_sig",
                                                                            "_ord"])
        else:
            verify_input = {"ds": sig.map_batches(verify_map_udf(shared), batch_format="pyarrow", **task_args())}
    else:
        # Past DRIVER_LINKS_MAX the same verify rows come from a shuffle join of the links
        # with every signature row, by ord, so the driver never holds the links.
        n_candidates = _candidate_count(links)
        log.info("dedup: %d candidate links, %d distinct (%s)", n_candidates, n_links, _mem())
        if scratch_uri and signatures_uri:
            joined = _join_rows_from_files(signatures_uri, links_uri)
        else:
            joined = sig.map_batches(join_signature_rows, batch_format="pyarrow", **task_args()).union(
                links.map_batches(join_link_rows, batch_format="pyarrow", **task_args()))
        verify_input = {"ds": by_key_partition(joined, partitions_for(n_rows + 2 * n_links, VERIFY_ROWS_PER_PARTITION),
                                               link_join_fn, key="_jkey", batch_format="pyarrow",
                                               scratch_uri=storage.join(scratch_uri, "link-join") if scratch_uri
                                               else None)}
        n_verify = 2 * n_links
        log.info("dedup: %d links joined with the signatures in the workers (%s)", n_links, _mem())
    del links
    to_verify = verify_input.pop("ds")
    verified = by_key_partition(to_verify, partitions_for(n_verify, VERIFY_ROWS_PER_PARTITION),
                                verify_reduce_fn(num_perm, ccfg.near_dup_threshold),
                                key="_vkey", batch_format="pyarrow",
                                scratch_uri=storage.join(scratch_uri, "verify") if scratch_uri else None,
                                **verify_input)
    if scratch_uri:
        # the verified pairs stream to files; only their count comes to the driver
        pairs_uri = storage.join(scratch_uri, "pairs")
        spill(verified, pairs_uri, PAIR_SCHEMA, ccfg.rows_per_file)
        del shared, verified, to_verify, verify_input
        n_pairs = _parquet_rows(pairs_uri)
        log.info("dedup: %d verified row pairs (%s)", n_pairs, _mem())
        if n_pairs > DRIVER_COMPONENTS_MAX_PAIRS:
            if retire:
                retire_idle_workers("dedup's components")
            return _drops_in_workers(pairs_uri, n_pairs, storage.join(scratch_uri, "components"), n_candidates)
        verified = read_parquet_files(pairs_uri, PAIR_SCHEMA)
    parts = [t for t in verified.iter_batches(batch_format="pyarrow") if t.num_rows]
    pairs = pa.concat_tables(parts) if parts else PAIR_SCHEMA.empty_table()
    del parts
    if not pairs.num_rows:
        return [], {"candidate_links": n_candidates, "verified_links": 0}

    drops, n_verified, n_exact = drops_from_pairs(pairs)
    del pairs
    log.info("dedup: %d candidate links, %d verified, %d records dropped (%s)", n_candidates, n_verified,
             drops.num_rows, _mem())
    return [drops], _drop_stats(n_candidates, n_verified, drops.num_rows, n_exact)


def _drop_stats(n_candidates: int, n_verified: int, n_dropped: int, n_exact: int) -> Dict[str, int]:
    stats = {"candidate_links": n_candidates, "verified_links": n_verified}
    if n_exact:
        stats["exact_duplicate"] = n_exact
    if n_dropped - n_exact:
        stats["near_duplicate"] = int(n_dropped - n_exact)
    return stats


def dropped_count(stats: Dict[str, int]) -> int:
    """Rows dedup drops, from :func:`find_duplicates`' stats."""
    return int(stats.get("exact_duplicate", 0)) + int(stats.get("near_duplicate", 0))


def _parquet_rows(uri: str) -> int:
    """Rows of the Parquet files under ``uri``, from their footers."""
    import pyarrow.parquet as pq

    from ..ingest.dataops import parquet_file_list

    paths, fs = parquet_file_list([uri])
    return sum(pq.ParquetFile(p, filesystem=fs).metadata.num_rows for p in paths)


_PIECE_COUNTS = pa.schema([("dropped", pa.int64()), ("exact", pa.int64())])


def _drop_piece_writer(out_uri: str):
    """map_batches UDF over final star edges (node, its keeper): their drop rows, sorted,
    written to one Parquet file under ``out_uri`` (named by content: a retry rewrites it);
    returns the counts."""
    from ..ingest.dataops import content_name, write_part

    def udf(edges: pa.Table) -> pa.Table:
        table, n_exact = drop_rows(edges.column("x"), edges.column("y"))
        write_part(table, out_uri, content_name(table, ["uid"], "drops"))
        return pa.table({"dropped": [table.num_rows], "exact": [n_exact]}, schema=_PIECE_COUNTS)

    return udf


def read_piece(piece) -> pa.Table:
    """A piece of the drop table in hand: a table, an object ref (read in place from the object
    store) or the URI of a Parquet file of it (:func:`_drops_in_workers`)."""
    if isinstance(piece, pa.Table):
        return piece
    if isinstance(piece, str):
        import pyarrow.parquet as pq

        path, fs = storage.arrow_fs(piece)
        return pq.read_table(path, filesystem=fs, columns=DROP_SCHEMA.names).cast(DROP_SCHEMA)
    import ray

    return ray.get(piece)


def _drops_in_workers(pairs_uri: str, n_pairs: int, scratch_uri: str, n_candidates: int):
    """The drop table as Parquet files (their URIs are the pieces), from the components the
    workers find (:mod:`.components`): the driver holds their names and a few counts, and
    nothing of it sits in the object store (there it was ~160 bytes a drop, ~0.6 GB at 55M
    records, mapped until the last timelines map task ended)."""
    final, n_verified = components.star_edges(pairs_uri, n_pairs, scratch_uri)
    drops_uri = storage.join(scratch_uri, "drops")
    storage.rm(drops_uri)
    counts = read_parquet_files(final, components.EDGE_SCHEMA).map_batches(
        _drop_piece_writer(drops_uri), batch_format="pyarrow", **task_args()).take_all()
    n_dropped = sum(int(r["dropped"]) for r in counts)
    n_exact = sum(int(r["exact"]) for r in counts)
    pieces = storage.ls_files(drops_uri, suffix=".parquet") if n_dropped else []
    log.info("dedup: %d candidate links, %d verified, %d records dropped in %d pieces (%s)", n_candidates,
             n_verified, n_dropped, len(pieces), _mem())
    return pieces, _drop_stats(n_candidates, n_verified, n_dropped, n_exact)


def drops_from_pairs(pairs: pa.Table) -> Tuple[pa.Table, int, int]:
    """(the drop table, distinct verified links, exact duplicates among the drops) from the
    verified row pairs (:data:`PAIR_SCHEMA`), in this process: the connected components of the
    pairs' graph (scipy), each keeping its earliest row (then the smallest uid) and dropping
    the rest. Rows are ranked by the same node labels as :mod:`.components` (which does this in
    the workers for many pairs), so both ways pick the same keepers.

    A row is a node, named by its uid: the uids are dictionary-encoded, and each distinct row's
    label is built once, from its first pair, to rank the nodes. (Labels of both sides of every
    pair, then their dictionary, then splitting the drops' labels back into uid and hash held
    ~1.5x more: 70k pairs, replayed, +74 MB PSS over the pairs against +51; bench/README.md,
    curate Round 11.)"""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    def both(a: str, b: str) -> pa.ChunkedArray:
        return pa.chunked_array(pairs.column(a).chunks + pairs.column(b).chunks, pairs.schema.field(a).type)

    enc = pc.dictionary_encode(both("uid_a", "uid_b")).combine_chunks()
    uids, idx = enc.dictionary, enc.indices.to_numpy().astype(np.int64)
    del enc
    m, n = len(uids), pairs.num_rows
    first = np.empty(m, np.int64)  # each node's first row among the pairs' two sides
    first[idx[::-1]] = np.arange(len(idx) - 1, -1, -1)
    first = pa.array(first)
    hashes = both("hash_a", "hash_b").take(first)
    order = pc.sort_indices(components.labels(both("ts_a", "ts_b").take(first), uids, hashes)).to_numpy()
    del first
    rank_of = np.empty(m, np.int64)
    rank_of[order] = np.arange(m)
    a, b = rank_of[idx[:n]], rank_of[idx[n:]]
    del idx, rank_of
    # Arrow's pool and glibc keep freed pages: give the labels' back before the next step
    release_memory()
    x, y = components.distinct(np.maximum(a, b), np.minimum(a, b))
    del a, b
    graph = coo_matrix((np.ones(len(x), dtype=np.int8), (x, y)), shape=(m, m))
    _, comp = connected_components(graph, directed=False)
    del graph
    # ranks are in label order, so a component's smallest rank is its keeper
    _, first_of = np.unique(comp, return_index=True)
    keeper = first_of[comp]
    dropped = np.flatnonzero(keeper != np.arange(m))
    node_d, node_k = pa.array(order[dropped]), pa.array(order[keeper[dropped]])
    same = pc.equal(hashes.take(node_d), hashes.take(node_k)).to_numpy(zero_copy_only=False)
    drops = drop_table(uids.take(node_d), uids.take(node_k), same)
    del uids, hashes
    release_memory()
    return drops, int(len(x)), int(same.sum())


def drop_rows(dropped: pa.Array, keepers: pa.Array) -> Tuple[pa.Table, int]:
    """(the :data:`DROP_SCHEMA` table, how many are exact duplicates) of dropped rows and their
    keepers, both given as :mod:`.components` node labels."""
    uid_d, hash_d = components.label_parts(dropped)
    uid_k, hash_k = components.label_parts(keepers)
    same = pc.equal(hash_d, hash_k).to_numpy(zero_copy_only=False)
    return drop_table(uid_d, uid_k, same), int(same.sum())
