"""dedup.find_duplicates on a local Ray: exact and near duplicates, the keeper rule, and that a
64-bit key or row-ord collision can add a candidate but never a wrong drop (every link is
verified on the real rows)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from humanllm_ray.config import load_config
from humanllm_ray.curate import dedup

BASE = ("Spent the whole weekend restoring an old oak table with my grandfather; we sanded it by hand, "
        "argued about varnish for an hour and finally settled on a matte finish that shows the grain. "
        "It now sits in the kitchen and everyone who visits asks where we bought it.")
OTHERS = [
    "The train was late again this morning so I read three chapters of a mystery novel on the platform.",
    "Our community garden finally harvested the pumpkins, and the kids carved them into lanterns by dusk.",
    "I tried baking sourdough for the first time and the crust came out far darker than the recipe promised.",
    "Listening to a podcast about deep sea creatures made me want to visit an aquarium this winter break.",
    "We moved the band rehearsal to Thursdays because the drummer picked up a night shift at the hospital.",
    "My cat has decided the printer is her new bed, which makes printing boarding passes rather difficult.",
]


def _rows():
    """(record_id, source_line, timestamp, text) and the expected drops {record_id: (reason, keeper)}."""
    rows = [
        ("r:base", 1, 1000, BASE),
        ("r:exact", 2, 2000, BASE.upper().replace(";", " ;")),  # same normalized text
        ("r:near", 3, 3000, BASE.replace("matte finish", "satin finish")),  # one word changed
        ("r:early_tie_b", 4, 500, OTHERS[0]),  # same timestamp as its copy: the smaller uid is kept
        ("r:early_tie_a", 5, 500, OTHERS[0] + "!"),
        ("r:twice", 6, 4000, OTHERS[1]),  # the same record read twice (another source line)
        ("r:twice", 7, 4000, OTHERS[1]),
    ] + [(f"r:other{i}", 10 + i, 5000 + i, t) for i, t in enumerate(OTHERS[2:])]
    expected = {
        dedup.row_uid("r:exact", "f.jsonl", 2): ("exact_duplicate", "r:base"),
        dedup.row_uid("r:near", "f.jsonl", 3): ("near_duplicate", "r:base"),
        dedup.row_uid("r:early_tie_b", "f.jsonl", 4): ("exact_duplicate", "r:early_tie_a"),
        dedup.row_uid("r:twice", "f.jsonl", 7): ("exact_duplicate", "r:twice"),
    }
    return rows, expected


def _dataset(rows, n_blocks: int = 3):
    import ray

    tbl = pa.table({
        "record_id": [r[0] for r in rows], "source_file": ["f.jsonl"] * len(rows),
        "source_line": pa.array([r[1] for r in rows], pa.int64()),
        "timestamp": pa.array([r[2] for r in rows], pa.int64()), "platform": ["twitter"] * len(rows),
        "kind": ["tweet"] * len(rows), "title": [""] * len(rows), "text": [r[3] for r in rows],
    })
    return ray.data.from_arrow(tbl).repartition(n_blocks)


@pytest.fixture(params=["driver", "join"])
def links_path(request, monkeypatch):
    """Both ways the candidate links reach verification: broadcast from the driver, or (past
    dedup.DRIVER_LINKS_MAX) a shuffle join with the signatures in the workers."""
    if request.param == "join":
        monkeypatch.setattr(dedup, "DRIVER_LINKS_MAX", 0)
    return request.param


def _drops(rows):
    cfg = load_config()
    drops, stats = dedup.find_duplicates(_dataset(rows), cfg.curate, len(rows))
    return {uid: (reason, detail.removeprefix("duplicate of "))
            for uid, (reason, detail) in dedup.drops_as_dict(drops).items()}, stats


def test_exact_near_and_keeper(ray_local, links_path):
    rows, expected = _rows()
    got, stats = _drops(rows)
    assert got == expected
    assert stats["exact_duplicate"] == 3 and stats["near_duplicate"] == 1
    assert stats["candidate_links"] >= stats["verified_links"] >= 4


def test_ord_collisions_change_nothing(ray_local, monkeypatch, links_path):
    """With 2-bit row ords almost every row shares its ord with others: links are expanded to
    the rows behind each ord and verified one by one, so the result is the same."""
    rows, expected = _rows()
    monkeypatch.setattr(dedup, "ORD_MASK", 0x3)
    got, _ = _drops(rows)
    assert got == expected


def test_key_collisions_never_drop_unrelated(ray_local, monkeypatch, links_path):
    """With 1-bit bucket keys every record lands in one of two buckets with unrelated ones: the
    candidates are mostly false, and verification must reject them all. (Which true duplicates
    are still found depends on the star centers, so only 'no wrong drop' is asserted.)"""
    rows, expected = _rows()
    monkeypatch.setattr(dedup, "KEY_MASK", 0x1)
    got, stats = _drops(rows)
    assert stats["candidate_links"] > len(rows) // 2  # collisions really happened
    for uid, verdict in got.items():
        assert expected.get(uid) == verdict, (uid, verdict)


def test_band_keys_are_stable_and_spread():
    """The same signatures give the same keys in any batch; different bands of one signature
    and different signatures do not collide in 64 bits."""
    rng = np.random.default_rng(0)
    hv = rng.integers(0, 2**32, size=(500, 128), dtype=np.uint64).astype(np.uint32)
    hexes = [dedup.exact_hash(f"text {i}") for i in range(500)]
    keys = dedup.band_keys(hv, 16, hexes)
    assert keys.shape == (17, 500)
    assert np.array_equal(keys[:, :10], dedup.band_keys(hv[:10], 16, hexes[:10]))
    assert len(np.unique(keys)) == keys.size
    # one changed value moves exactly its band's key
    hv2 = hv.copy()
    hv2[0, 9] ^= 1  # band 1 (values 8..15)
    moved = dedup.band_keys(hv2[:1], 16, hexes[:1])[:, 0] != keys[:, 0]
    assert moved.tolist() == [i == 1 for i in range(17)]


def test_edges_link_members_to_the_earliest():
    import pandas as pd

    df = pd.DataFrame({"bkey": np.array([7, 7, 7, 9, 11, 11, 13, 13], dtype=np.uint64),
                       "_ord": np.array([30, 10, 20, 40, 50, 50, 10, 20], dtype=np.uint64),
                       "timestamp": np.array([5, 5, 1, 0, 2, 2, 5, 1], dtype=np.int64)})
    e = dedup.edges_fn(df)
    pairs = sorted(zip(e.column("a").to_pylist(), e.column("b").to_pylist(), e.column("n").to_pylist()))
    # bucket 7: earliest is ord 20 (t=1); bucket 9 is alone; bucket 11 holds one ord twice -> self
    # link; bucket 13 links 20-10 again: one unordered pair (smaller ord first) standing for 2 links
    assert pairs == [(10, 20, 2), (20, 30, 1), (50, 50, 1)]
    assert dedup.edges_fn(df.iloc[:0]).num_rows == 0


def test_distinct_links_fn_merges_a_pair_from_several_bands():
    """The links shuffle (keyed by ``a``) gets a pair once per band partition that linked it:
    it keeps each (a, b) once and sums the bucket links it stands for, so the candidate count
    is the same as before the shuffle."""
    part = pa.table({"a": pa.array([10, 20, 10, 10, 50], pa.uint64()), "b": pa.array([20, 30, 20, 40, 50], pa.uint64()),
                     "n": pa.array([2, 1, 3, 1, 1], pa.int64())})
    out = dedup.distinct_links_fn(part)
    rows = sorted(zip(*(out.column(c).to_pylist() for c in ("a", "b", "n"))))
    assert rows == [(10, 20, 5), (10, 40, 1), (20, 30, 1), (50, 50, 1)]
    assert out.schema == dedup.EDGE_SCHEMA and dedup.distinct_links_fn(part.slice(0, 0)).num_rows == 0


def test_drop_table_lookup_confirms_every_key_hit_on_the_uid():
    """The drop list curate ships to its tasks (dedup.DROP_SCHEMA, sorted by a 64-bit hash of
    the row uid): a row is marked only when its uid is in the table, so a hash collision with
    a dropped row never drops it; every dropped row is found, with its reason and keeper."""
    drop_uids = [dedup.row_uid(f"r{i}", "f.jsonl", i) for i in range(50)]
    keep_uids = [dedup.row_uid(f"k{i}", "f.jsonl", 100 + i) for i in range(50)]
    same = np.arange(50) % 2 == 0
    table = dedup.drop_table(pa.array(drop_uids), pa.array(keep_uids), same)
    keys = table.column("key").to_numpy()
    assert (np.diff(keys.astype(np.float64)) >= 0).all() and table.num_rows == 50

    others = [dedup.row_uid(f"o{i}", "g.jsonl", i) for i in range(20)]
    batch = others[:10] + drop_uids[::7] + others[10:]
    at, rows = dedup.find_drops(table, batch)
    found = {batch[i]: (table.column("reason")[r].as_py(), table.column("detail")[r].as_py()) for i, r in zip(at, rows)}
    want = {u: ("exact_duplicate" if j % 2 == 0 else "near_duplicate", f"duplicate of k{j}")
            for j, u in enumerate(drop_uids) if j % 7 == 0}
    assert found == want

    # a collision: a row of the table whose key equals the hash of an unrelated row's uid (a
    # 64-bit collision, forced) does not mark that row; the dropped row itself is still found
    stranger = dedup.row_uid("stranger", "h.jsonl", 1)
    forged = pa.table({"key": pa.array(dedup.drop_key([stranger]), pa.uint64()), "uid": [drop_uids[0]],
                       "reason": ["near_duplicate"], "detail": ["duplicate of x"]}, schema=dedup.DROP_SCHEMA)
    at, rows = dedup.find_drops(forged, [stranger])
    assert len(at) == 0
    both = pa.concat_tables([table, forged]).sort_by("key")
    at, _ = dedup.find_drops(both, [stranger, drop_uids[0]])
    assert at.tolist() == [1]
    assert dedup.find_drops(dedup.DROP_SCHEMA.empty_table(), batch)[0].size == 0

    # the driver hashes an Arrow array of uids in pieces: same keys as the list, across pieces
    many = [dedup.row_uid(f"m{i}", "f.jsonl", i) for i in range(20_000)]
    assert (dedup.drop_key(pa.array(many)) == dedup.drop_key(many)).all()
    assert (dedup.drop_key(pa.chunked_array([many[:5], many[5:]])) == dedup.drop_key(many)).all()


def test_link_join_makes_the_broadcast_verify_rows():
    """The links join (past DRIVER_LINKS_MAX) sends exactly the verify rows the broadcast map
    sends: each signature row once per link from its ord (side 1, to the link's b) and once to
    itself when its ord is some link's b (side 0), with colliding ords, self-links and a hub,
    whichever partitions the ords fall in."""
    rng = np.random.default_rng(5)
    n = 400
    ords = rng.integers(0, 80, n).astype(np.uint64)  # ~5 rows per ord
    sig = pa.table({"record_id": [f"u{i}" for i in range(n)], "timestamp": pa.array(rng.integers(0, 9, n)),
                    "_hash": [f"h{i % 7}" for i in range(n)], "_sig": [bytes(rng.integers(0, 255, 8, np.uint8))
                                                                         for _ in range(n)],
                    "_ord": pa.array(ords, pa.uint64())}, schema=dedup.SIG_SCHEMA)
    a, b = rng.integers(0, 90, 300).astype(np.uint64), rng.integers(0, 90, 300).astype(np.uint64)
    a, b = np.concatenate([a, [3, 5], np.full(40, 7)]), np.concatenate([b, [3, 5], np.arange(40) + 20])
    pairs = np.unique(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1), axis=0)  # as distinct_links_fn
    a, b = pairs[:, 0].astype(np.uint64), pairs[:, 1].astype(np.uint64)
    want = dedup.verify_map_udf(dedup._links_by_a(a, b))(sig)
    links = pa.table({"a": pa.array(a, pa.uint64()), "b": pa.array(b, pa.uint64()),
                      "n": pa.array(np.ones(len(a), np.int64))}, schema=dedup.EDGE_SCHEMA)
    joined = pa.concat_tables([dedup.join_signature_rows(sig), dedup.join_link_rows(links)])
    key = joined.column("_jkey").to_numpy()
    got = pa.concat_tables([dedup.link_join_fn(joined.filter(pa.array(key % 3 == p))) for p in range(3)])

    def rows(t):
        return sorted(zip(*(t.column(c).to_pylist() for c in ("_vkey", "_side", "uid", "timestamp", "_hash", "_sig"))))

    assert got.schema.equals(dedup.VERIFY_SCHEMA) and len(rows(want)) > n
    assert rows(got) == rows(want)
    assert dedup.link_join_fn(joined.slice(0, 0)).num_rows == 0
