"""curate.drop_route: the drop table routed to the records scratch files that hold its rows, so
a timelines map task reads its own file's drops instead of searching the whole table."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from humanllm_ray.curate import dedup, drop_route

STEMS = ["a1", "b2", "c3", "d4"]


def _signature_files(root, mask: int):
    """One signatures file per stem (what the record pass writes), 150 rows each; their uids."""
    uids = {}
    for f, stem in enumerate(STEMS):
        mine = [dedup.row_uid(f"r{f}-{i}", f"src{f % 2}.jsonl", i) for i in range(150)]
        n = len(mine)
        pq.write_table(pa.table({"record_id": mine, "timestamp": pa.array(np.arange(n), pa.int64()),
                                 "_hash": ["h"] * n, "_sig": [b"s"] * n,
                                 "_ord": pa.array([dedup.ord_of(u, mask) for u in mine], pa.uint64())},
                                schema=dedup.SIG_SCHEMA), str(root / f"signatures-{stem}.parquet"))
        uids[stem] = mine
    return uids


def _drops(uids):
    """A drop table of every third row of every file (keeper: the row before it), in 3 pieces."""
    dropped = [u for mine in uids.values() for u in mine[1::3]]
    keepers = [u for mine in uids.values() for u in mine[0::3][:len(mine[1::3])]]
    table = dedup.drop_table(pa.array(dropped), pa.array(keepers), np.arange(len(dropped)) % 2 == 0)
    third = table.num_rows // 3
    return table, [table.slice(0, third), table.slice(third, third), table.slice(2 * third)]


@pytest.mark.parametrize("mask", [0xFFFFFFFFFFFFFFFF, 0xFF], ids=["full-ords", "colliding-ords"])
def test_each_file_gets_exactly_its_own_drops(ray_local, tmp_path, monkeypatch, mask):
    """Every file's drops, looked up on its rows, are what the whole table gives them. With
    ords narrowed to 8 bits (600 rows, so most ords collide across files) a drop also reaches
    files that only share its ord, and the lookup's uid check keeps it from marking them."""
    monkeypatch.setattr(dedup, "ORD_MASK", mask)
    (tmp_path / "sig").mkdir()
    uids = _signature_files(tmp_path / "sig", mask)
    whole, pieces = _drops(uids)
    pq.write_table(pieces[1], str(tmp_path / "drops-1.parquet"))
    # every kind of piece: an object ref, a Parquet file (the workers' components), a table
    refs = [ray_local.put(pieces[0]), str(tmp_path / "drops-1.parquet"), pieces[2]]
    routed = drop_route.route_drops(refs, whole.num_rows, str(tmp_path / "sig"), str(tmp_path / "route"), 600)

    extra = 0
    for stem, mine in uids.items():
        got = routed.pieces_for(str(tmp_path / "records" / f"records-{stem}.parquet"))
        assert len(got) == 1 and got[0].schema == dedup.DROP_SCHEMA
        keys = got[0].column("key").to_numpy()
        assert (np.diff(keys.astype(np.float64)) >= 0).all()  # sorted, for the binary search
        at, reasons, details = dedup.lookup_drops(got, mine)
        want_at, want_reasons, want_details = dedup.lookup_drops([whole], mine)
        assert at.tolist() == want_at.tolist() and len(at) == 50
        assert reasons == want_reasons and details == want_details
        own = set(mine)
        routed_uids = got[0].column("uid").to_pylist()
        assert len(routed_uids) == len(set(routed_uids))  # each drop once per file
        extra += sum(u not in own for u in routed_uids)
    # full ords: nothing but the file's own drops; narrowed: the collisions did happen
    assert (extra == 0) if mask == 0xFFFFFFFFFFFFFFFF else (extra > 0)
    assert routed.pieces_for(str(tmp_path / "records-zz.parquet")) == []  # a file with no passed rows


def test_no_drops_and_a_drop_of_no_file(ray_local, tmp_path):
    """No drops: nothing to route, no file gets any. A drop whose row is in no signatures file
    (it cannot happen, short of a bug) is an error, not a duplicate silently kept."""
    (tmp_path / "sig").mkdir()
    uids = _signature_files(tmp_path / "sig", dedup.ORD_MASK)
    routed = drop_route.route_drops([], 0, str(tmp_path / "sig"), str(tmp_path / "route0"), 600)
    assert routed.pieces_for(str(tmp_path / "records-a1.parquet")) == []

    whole, _ = _drops(uids)
    stray = dedup.drop_table(pa.array([dedup.row_uid("nowhere", "x.jsonl", 1)]), pa.array(["k"]), np.array([True]))
    with pytest.raises(RuntimeError, match="1 of 201 duplicates to drop matched no records scratch file"):
        drop_route.route_drops([whole, stray], whole.num_rows + 1, str(tmp_path / "sig"), str(tmp_path / "route1"),
                               600)


def test_route_reduce_counts_a_partition_whose_drops_found_no_file(tmp_path):
    """A routing reduce always returns one index row: its pieces as lists (none when no drop of
    the partition found a file) and the count that did, which route_drops checks."""
    def part(rows):
        return pa.table({"_jkey": pa.array([r[0] for r in rows], pa.uint64()),
                         "file": pa.array([r[1] for r in rows], pa.int32()),
                         "key": pa.array([r[2] for r in rows], pa.uint64()), "uid": [r[3] for r in rows],
                         "reason": [r[4] for r in rows], "detail": [r[4] and "keeper" for r in rows]},
                        schema=drop_route.ROUTE_SCHEMA)

    (tmp_path / "by-file").mkdir()
    reduce = drop_route._route_reduce(3, str(tmp_path / "by-file"))
    none = reduce(part([(7, 0, 0, None, None), (9, -1, 9, "u9", "near_duplicate")]))  # drop 9 meets no row
    assert none.schema == drop_route.ROUTE_INDEX_SCHEMA and none.num_rows == 1
    assert none.column("matched").to_pylist() == [0] and none.column("part").to_pylist() == [[]]
    some = reduce(part([(7, 2, 0, None, None), (7, -1, 7, "u7", "exact_duplicate"),
                        (9, -1, 9, "u9", "exact_duplicate")]))
    assert some.column("matched").to_pylist() == [1] and some.column("part").to_pylist() == [[2]]
    assert some.column("rows").to_pylist() == [[1]] and some.column("file")[0].as_py().endswith(".arrows")
