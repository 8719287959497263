"""dedup's connected components in the workers (curate.components, Large-Star / Small-Star over
file shuffles) against scipy in one process (dedup.drops_from_pairs): the same components, the
same keepers (earliest timestamp, then smallest uid), the same drop table, on graphs made to be
hard for it (long chains numbered against the keeper order, cycles, a big star, ties)."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from humanllm_ray.curate import components, dedup
from humanllm_ray.ingest.dataops import write_part


def _pairs(edges, ts, hashes):
    """PAIR_SCHEMA rows for edges between node numbers (uid "n<k>")."""
    uid = [dedup.row_uid(f"n{k}", "f.jsonl", k) for k in range(len(ts))]
    a, b = [e[0] for e in edges], [e[1] for e in edges]
    return pa.table({"uid_a": [uid[i] for i in a], "uid_b": [uid[j] for j in b],
                     "ts_a": pa.array([ts[i] for i in a], pa.int64()), "ts_b": pa.array([ts[j] for j in b], pa.int64()),
                     "hash_a": [hashes[i] for i in a], "hash_b": [hashes[j] for j in b]}, schema=dedup.PAIR_SCHEMA)


def _graph(seed: int):
    """Edges (each possibly listed twice, either way round), timestamps and exact hashes of a
    mix of components, and the expected {dropped uid: keeper record_id}."""
    rng = random.Random(seed)
    n = 600
    ts = [rng.randrange(-50, 50) for _ in range(n)]  # ties, and timestamps before 1970
    hashes = [f"h{rng.randrange(3)}" for _ in range(n)]
    nodes = list(range(n))
    rng.shuffle(nodes)
    edges, groups, at = [], [], 0
    # chains (a path has the largest diameter for its size), cycles, stars, random clusters
    for size, shape in [(120, "chain"), (60, "chain"), (40, "cycle"), (150, "star"), (30, "random"),
                        (25, "random")] + [(rng.randrange(2, 6), "random") for _ in range(40)]:
        g = nodes[at:at + size]
        at += size
        if len(g) < 2:
            continue
        groups.append(g)
        if shape == "chain":
            edges += list(zip(g, g[1:]))
        elif shape == "cycle":
            edges += list(zip(g, g[1:] + g[:1]))
        elif shape == "star":
            edges += [(g[len(g) // 2], v) for v in g if v != g[len(g) // 2]]
        else:
            edges += [(g[i], g[rng.randrange(i)]) for i in range(1, len(g))]  # a random tree
            edges += [(rng.choice(g), rng.choice(g)) for _ in range(len(g) // 3)]
    edges = [(a, b) for a, b in edges if a != b]
    edges += [(b, a) for a, b in rng.sample(edges, 30)]  # the same pair both ways round
    rng.shuffle(edges)
    expected = {}
    for g in groups:
        keeper = min(g, key=lambda k: (ts[k], dedup.row_uid(f"n{k}", "f.jsonl", k)))
        for k in g:
            if k != keeper:
                expected[dedup.row_uid(f"n{k}", "f.jsonl", k)] = (
                    "exact_duplicate" if hashes[k] == hashes[keeper] else "near_duplicate", f"duplicate of n{keeper}")
    distinct = len({(min(a, b), max(a, b)) for a, b in edges})
    return _pairs(edges, ts, hashes), expected, distinct


def test_labels_sort_in_keeper_order_and_give_back_uid_and_hash():
    ts = pa.array([5, -3, None, 1 << 40, 5, -(1 << 62)], pa.int64())
    uid = pa.array(["b", "a", "c", "d", "a\x1fz\x1f9", "e"])
    lab = components.labels(ts, uid, pa.array(["h1", "h2", None, "h4", "h5", "h6"]))
    keyed = sorted(range(6), key=lambda i: ((ts[i].as_py() or 0), uid[i].as_py()))
    assert sorted(range(6), key=lambda i: lab[i].as_py()) == keyed
    back_uid, back_hash = components.label_parts(lab)
    assert back_uid.to_pylist() == uid.to_pylist()
    assert back_hash.to_pylist() == ["h1", "h2", "", "h4", "h5", "h6"]


def test_node_keys_are_a_function_of_the_label_read_from_the_arrow_buffer():
    """The shuffle partitions adjacency rows by node_keys: equal labels, equal keys, whatever
    the array's chunks and offset; short and non-ASCII labels too; distinct labels spread."""
    lab = components.labels(pa.array(list(range(500)) * 2, pa.int64()),
                            pa.array([dedup.row_uid(f"r{i}", "f.jsonl", i) for i in range(500)] * 2),
                            pa.array([f"{i:020x}" for i in range(500)] * 2))
    keys = components.node_keys(lab)
    assert (keys[:500] == keys[500:]).all() and len(set(keys[:500].tolist())) == 500
    assert (components.node_keys(pa.chunked_array([lab[:7], lab[7:]])) == keys).all()
    assert (components.node_keys(lab.slice(3)) == keys[3:]).all()
    odd = pa.array(["a", "é" * 20, "a", "x" * 40])
    k = components.node_keys(odd)
    assert k[0] == k[2] and len({k[0], k[1], k[3]}) == 3


def test_one_round_of_the_steps_on_a_path():
    """Large-Star then Small-Star on the path 3-1-2-0 (node k = label "k"): the steps of the
    paper, edge for edge."""
    def adj(pairs, both):
        rows = [(x, y) for x, y in pairs] + ([(y, x) for x, y in pairs] if both else [])
        node = pa.array([str(a) for a, _ in rows])
        return pa.table({"node": node, "nb": [str(b) for _, b in rows], "_key": components.node_keys(node)},
                        schema=components.ADJ_SCHEMA)

    path = [(3, 1), (2, 1), (2, 0)]  # (larger, smaller)
    out, changed, distinct = components.large_star(adj(path, True))
    got = sorted(zip(out.column("x").to_pylist(), out.column("y").to_pylist()))
    # node 1 (neighbours 3, 2; min 1): (3,1), (2,1); node 0: (2,0); node 2 (min 0): nothing larger
    assert got == [("2", "0"), ("2", "1"), ("3", "1")] and changed == 0 and distinct == 3
    out, changed, _ = components.small_star(adj(got, False))
    got = sorted(zip(out.column("x").to_pylist(), out.column("y").to_pylist()))
    # node 2 (smaller neighbours 0, 1): 1 -> 0 and 2 -> 0; node 3: (3, 1)
    assert got == [("1", "0"), ("2", "0"), ("3", "1")] and changed == 1


@pytest.mark.parametrize("seed", [0, 1])
def test_components_in_workers_equal_the_driver(ray_local, tmp_path, monkeypatch, seed):
    pairs, expected, distinct = _graph(seed)
    local, n_verified, n_exact = dedup.drops_from_pairs(pairs)
    assert dedup.drops_as_dict(local) == expected and n_verified == distinct
    assert n_exact == sum(r == "exact_duplicate" for r, _ in expected.values())

    # several partitions per step and several pair files
    monkeypatch.setattr(components, "ROWS_PER_PARTITION", 150)
    pairs_uri = str(tmp_path / "pairs")
    for i in range(0, pairs.num_rows, 200):
        write_part(pairs.slice(i, 200), pairs_uri, f"pairs-{i}.parquet")
    refs, stats = dedup._drops_in_workers(pairs_uri, pairs.num_rows, str(tmp_path / "cc"), 7)
    assert len(refs) > 1
    assert dedup.drops_as_dict(refs) == expected
    assert stats == {"candidate_links": 7, "verified_links": distinct, "exact_duplicate": n_exact,
                     "near_duplicate": len(expected) - n_exact}
    pieces = [dedup.read_piece(p) for p in refs]  # Parquet files the workers wrote
    assert all(isinstance(p, str) for p in refs)
    for piece in pieces:  # each piece sorted by key, for lookup_drops' binary search
        keys = piece.column("key").to_numpy()
        assert (keys[1:] >= keys[:-1]).all()
    uids = list(expected)[::3] + [dedup.row_uid("stranger", "g.jsonl", 1)]
    at, reasons, details = dedup.lookup_drops(pieces, uids)
    assert {uids[i]: (r, d) for i, r, d in zip(at.tolist(), reasons, details)} == {u: expected[u] for u in uids[:-1]}


def test_a_long_chain_needs_several_rounds_and_converges(ray_local, tmp_path, monkeypatch):
    """A path whose labels alternate high and low converges only after several rounds; the
    log shows the rounds and the result is one component kept at its smallest node."""
    n = 64
    order = [k for pair in zip(range(n // 2), range(n - 1, n // 2 - 1, -1)) for k in pair]  # 0, 63, 1, 62, ...
    edges = list(zip(order, order[1:]))
    pairs = _pairs(edges, [0] * n, ["h"] * n)
    monkeypatch.setattr(components, "ROWS_PER_PARTITION", 40)
    pairs_uri = str(tmp_path / "pairs")
    write_part(pairs, pairs_uri, "pairs.parquet")
    rounds = []
    real_step = components.run_step
    monkeypatch.setattr(components, "run_step", lambda *a, **kw: rounds.append(a[2]) or real_step(*a, **kw))
    final, n_verified = components.star_edges(pairs_uri, pairs.num_rows, str(tmp_path / "cc"))
    assert n_verified == n - 1 and len(rounds) >= 4
    from humanllm_ray.ingest.dataops import read_parquet_files

    star = pa.concat_tables(list(read_parquet_files(final, components.EDGE_SCHEMA).iter_batches(
        batch_format="pyarrow", batch_size=None)))
    keeper = components.labels(pa.array([0]), pa.array([dedup.row_uid("n0", "f.jsonl", 0)]), pa.array(["h"]))[0]
    assert star.num_rows == n - 1 and pc.all(pc.equal(star.column("y"), keeper)).as_py()
    assert sorted(np.unique(star.column("x").to_numpy(zero_copy_only=False))) == sorted(star.column("x").to_pylist())
