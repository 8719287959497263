"""Duplicate removal: exact (normalized-text hash) and near (MinHash LSH), with Ray Data.

1. ``map_batches``: a datasketch MinHash signature per record (character 5-gram shingles of the
   normalized text, so short tweets still compare well; word 3-grams for texts over 1000
   characters, to keep long blog posts cheap) and its exact hash. datasketch 2.x
   ``scheme="affine32"``; stored as uint32 bytes. Rows are identified by record_id + source
   location, so the same record read twice (a tweet id present in two files) is a duplicate too.
2. ``map_batches``: explode each signature into ``minhash_bands`` band keys (r = num_perm /
   bands values per band, hashed) plus one ``x:<exact hash>`` key.
3. a shuffle on the band key (``by_key_partition``, a groupby on band buckets): inside a bucket
   every member is linked to the bucket's earliest record (a star, so a huge bucket costs O(n),
   not O(n^2)); only buckets with two or more members emit anything.
4. driver: band links are verified (estimated Jaccard >= ``near_dup_threshold``) on the few
   signatures involved, union-find joins the links; in each component the earliest record
   (timestamp, record_id) is kept and the others are ``exact_duplicate`` (same normalized text
   as the keeper) or ``near_duplicate``. Only links and involved signatures reach the driver.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa

from .. import storage
from ..ingest.dataops import by_key_partition, num_partitions, spill
from .clean import normalize_for_hash

log = logging.getLogger("humanllm")

SEED = 1
SCHEME = "affine32"  # datasketch 2.x: 32-bit hash values

SIG_SCHEMA = pa.schema(
    [("record_id", pa.string()), ("timestamp", pa.int64()), ("_hash", pa.string()), ("_sig", pa.binary())]
)
BAND_SCHEMA = pa.schema(
    [("bkey", pa.string()), ("record_id", pa.string()), ("timestamp", pa.int64()), ("_hash", pa.string())]
)
EDGE_SCHEMA = pa.schema(
    [
        ("a", pa.string()), ("a_ts", pa.int64()), ("a_hash", pa.string()),
        ("b", pa.string()), ("b_ts", pa.int64()), ("b_hash", pa.string()),
        ("exact", pa.bool_()),
    ]
)

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


def signatures_udf(num_perm: int):
    def udf(batch: pa.Table) -> pa.Table:
        cols = {c: batch.column(c).to_pylist()
                for c in ("record_id", "source_file", "source_line", "timestamp", "platform", "kind", "title", "text")}
        uids = [row_uid(r, f, ln) for r, f, ln in zip(cols["record_id"], cols["source_file"], cols["source_line"])]
        hashes, sigs = [], []
        for p, k, t, x in zip(cols["platform"], cols["kind"], cols["title"], cols["text"]):
            norm = normalize_for_hash(body_of(p or "", k or "", t or "", x or ""))
            hashes.append(exact_hash(norm))
            sigs.append(signature(norm, num_perm).tobytes())
        return pa.table({"record_id": uids, "timestamp": cols["timestamp"], "_hash": hashes,
                         "_sig": sigs}, schema=SIG_SCHEMA)

    return udf


def bands_udf(num_perm: int, bands: int):
    r = max(1, num_perm // max(1, bands))

    def udf(batch: pa.Table) -> pa.Table:
        keys, rids, tss, hs = [], [], [], []
        for rid, ts, h, sig in zip(
            batch.column("record_id").to_pylist(), batch.column("timestamp").to_pylist(),
            batch.column("_hash").to_pylist(), batch.column("_sig").to_pylist(),
        ):
            hv = np.frombuffer(sig, dtype=np.uint32)
            keys.append("x:" + h)
            rids.append(rid)
            tss.append(ts)
            hs.append(h)
            for i in range(bands):
                chunk = hv[i * r:(i + 1) * r]
                if len(chunk) == 0:
                    break
                keys.append(f"{i}:" + hashlib.sha1(chunk.tobytes()).hexdigest()[:16])
                rids.append(rid)
                tss.append(ts)
                hs.append(h)
        return pa.table({"bkey": keys, "record_id": rids, "timestamp": tss, "_hash": hs}, schema=BAND_SCHEMA)

    return udf


def edges_fn(df) -> pa.Table:
    """One shuffle partition of band rows: link every bucket member to the bucket's earliest."""
    if df.empty:
        return EDGE_SCHEMA.empty_table()
    df = df[df["bkey"].duplicated(keep=False)]
    if df.empty:
        return EDGE_SCHEMA.empty_table()
    df = df.sort_values(["bkey", "timestamp", "record_id"])
    first = df.groupby("bkey", sort=False)[["record_id", "timestamp", "_hash"]].transform("first")
    mask = first["record_id"].to_numpy() != df["record_id"].to_numpy()
    a, b = first[mask], df[mask]
    return pa.table(
        {
            "a": a["record_id"].astype(str).tolist(),
            "a_ts": a["timestamp"].astype("int64").tolist(),
            "a_hash": a["_hash"].astype(str).tolist(),
            "b": b["record_id"].astype(str).tolist(),
            "b_ts": b["timestamp"].astype("int64").tolist(),
            "b_hash": b["_hash"].astype(str).tolist(),
            "exact": b["bkey"].str.startswith("x:").tolist(),
        },
        schema=EDGE_SCHEMA,
    )


def _fetch_sigs(sig_ds, ids: set) -> Dict[str, np.ndarray]:
    import pyarrow.compute as pc

    value_set = pa.array(sorted(ids), pa.string())

    def pick(batch: pa.Table) -> pa.Table:
        return batch.filter(pc.is_in(batch.column("record_id"), value_set=value_set))

    return {row["record_id"]: np.frombuffer(row["_sig"], dtype=np.uint32)
            for row in sig_ds.map_batches(pick, batch_format="pyarrow").take_all()}


def find_duplicates(ds, ccfg, n_rows: int = 0,
                    scratch_uri: Optional[str] = None) -> Tuple[Dict[str, Tuple[str, str]], Dict[str, int]]:
    """({row uid: (reason, detail)} for the rows to drop (see :func:`row_uid`), stats) over a Ray
    Dataset of records (LogRecord columns, cleaned text) that passed the record filters. Inside
    this module the ``record_id`` column of signature/band/edge rows holds the row uid.

    The signatures are read twice (bands, then the verification of band links): with
    ``scratch_uri`` they are streamed to Parquet there and read back (flat memory); without
    it they are materialized (bench/curate's one-process path)."""
    num_perm, bands = ccfg.minhash_num_perm, ccfg.minhash_bands
    sig = ds.select_columns(UID_COLUMNS + ["timestamp", "platform", "kind", "title", "text"]).map_batches(
        signatures_udf(num_perm), batch_format="pyarrow"
    )
    if scratch_uri:
        sig = spill(sig, storage.join(scratch_uri, "signatures"), SIG_SCHEMA, ccfg.rows_per_file)
    else:
        sig = sig.materialize()
    band_rows = sig.map_batches(bands_udf(num_perm, bands), batch_format="pyarrow")
    n_keys = max(1, n_rows) * (bands + 1)
    edges = by_key_partition(band_rows, num_partitions(n_keys), edges_fn, key="bkey")
    # Columnar on the driver: a pair of near-duplicates is linked once per shared band, so the
    # candidate links are several times the distinct pairs; they are collapsed per batch as they
    # arrive (pyarrow tables, not a list of row dicts: ~10x less driver memory at 1M records).
    exact_links: set = set()
    band_links: set = set()
    info: Dict[str, Tuple[int, str]] = {}
    n_candidates = 0
    for batch in edges.iter_batches(batch_format="pyarrow", batch_size=65_536):
        if not batch.num_rows:
            continue
        n_candidates += batch.num_rows
        a, b = batch.column("a").to_pylist(), batch.column("b").to_pylist()
        for x, y, ex in zip(a, b, batch.column("exact").to_pylist()):
            (exact_links if ex else band_links).add((x, y))
        for ids, ts, hs in ((a, batch.column("a_ts").to_pylist(), batch.column("a_hash").to_pylist()),
                            (b, batch.column("b_ts").to_pylist(), batch.column("b_hash").to_pylist())):
            for x, t, h in zip(ids, ts, hs):
                if x not in info:
                    info[x] = (int(t), h)
    band_links -= exact_links
    verified = set(exact_links)
    if band_links:
        sigs = _fetch_sigs(sig, {x for pair in band_links for x in pair})
        for a, b in band_links:
            sa, sb = sigs.get(a), sigs.get(b)
            if sa is not None and sb is not None and float(np.mean(sa == sb)) >= ccfg.near_dup_threshold:
                verified.add((a, b))

    parent: Dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in verified:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
    comps: Dict[str, List[str]] = {}
    for x in list(parent):
        comps.setdefault(find(x), []).append(x)
    drops: Dict[str, Tuple[str, str]] = {}
    for members in comps.values():
        keeper = min(members, key=lambda m: (info[m][0], m))
        for m in members:
            if m != keeper:
                reason = "exact_duplicate" if info[m][1] == info[keeper][1] else "near_duplicate"
                drops[m] = (reason, f"duplicate of {uid_record_id(keeper)}")
    stats = {"candidate_links": n_candidates, "verified_links": len(verified)}
    for reason, _ in drops.values():
        stats[reason] = stats.get(reason, 0) + 1
    log.info("dedup: %d candidate links, %d verified, %d records dropped", n_candidates, len(verified), len(drops))
    return drops, stats
