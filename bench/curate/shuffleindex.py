"""bench/curate/shuffleindex.py: the driver's memory for one shuffle's index: per-piece rows, per-file lists, built in a task.

    python bench/curate/shuffleindex.py [--maps 740] [--parts 1024] [--repeats 2]

A file shuffle's map tasks each return the index of the file they wrote, and the driver gathers
them into one table sorted by partition, which it puts in the object store for the reduce tasks
(``dataops.file_shuffle``). At 10M records the links join had 740 map files x 1024 partitions
(bench/README.md, curate Rounds 13-14). This replays that step at a chosen M x P, on a local
2-CPU Ray cluster, in a fresh driver process per layout:

* ``rows``: the layout before Round 14, one row per piece with the map file's name
  (``file, part, offset, length, rows``), gathered by :func:`rows_shuffle_index` (the code
  that was ``dataops.shuffle_index``, kept here to measure against);
* ``lists``: ``dataops.MAP_INDEX_SCHEMA``, one row per map file with the pieces as lists,
  gathered by ``dataops.shuffle_index`` on the driver and put (Round 14);
* ``task``: each map task writes its index row as its file's footer and returns where it is;
  a task reads the footers into the index, in the object store
  (``dataops.gather_shuffle_index``, Round 15): the driver gets the partitions' ranges only.

The map tasks return synthetic indexes of the real shape (file names as the real scratch paths
are, every partition non-empty); nothing is written but the ``task`` layout's footers. Printed per layout: the driver's PSS after
``ray.init``, its peak while gathering (sampled every 20 ms), after the put, and after
``release_memory``; the index's bytes; and the seconds the gathering took.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
# where the 10M run's links-join map files were (memprofile's work folder): the names are as long
# as they were there; the ``task`` layout writes its footers there and removes them
SCRATCH = os.path.join(ROOT, "bench", "out", "curate-work", "memprofile-10000000", "curated", "_scratch", "dedup",
                       "link-join-replay")


def rows_shuffle_index(parts):
    """The gathering before Round 14 (``dataops.shuffle_index`` at aa6209e), over per-piece rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    index = pa.concat_tables(parts)
    del parts
    files = pc.unique(index.column("file"))
    index = pa.table({"file_id": pc.index_in(index.column("file"), value_set=files),
                      "part": index.column("part"), "offset": index.column("offset"),
                      "length": index.column("length"), "rows": index.column("rows")}).sort_by("part").combine_chunks()
    part_col = index.column("part").to_numpy()
    cuts = np.flatnonzero(np.diff(part_col)) + 1
    los = np.concatenate([[0], cuts]).astype(np.int64)
    his = np.append(los[1:], len(part_col)).astype(np.int64)
    return files, index, los, his


def map_index(layout: str, parts: int):
    """A map task's UDF: the index of one map file with every partition non-empty."""

    def udf(batch):
        import uuid

        import numpy as np
        import pyarrow as pa

        from humanllm_ray.ingest import dataops

        name = f"{SCRATCH}/map-{uuid.uuid4().hex}.arrows"
        rng = np.random.default_rng(int(batch["i"][0]))
        lengths = rng.integers(200, 4000, parts)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        rows = rng.integers(5, 60, parts)
        if layout == "rows":
            return pa.table({"file": [name] * parts, "part": np.arange(parts), "offset": offsets,
                             "length": lengths, "rows": rows})
        index = pa.table({"file": [name], "part": [np.arange(parts, dtype=np.int32)], "offset": [offsets],
                          "length": [lengths], "rows": [rows]}, schema=dataops.MAP_INDEX_SCHEMA)
        if layout == "lists":
            return index
        # task: the index as the file's footer, as _RunWriter.write(index_in_file=True) writes it
        footer = dataops._ipc_bytes(index.drop_columns(["file"]))
        with open(name, "wb") as f:
            f.write(memoryview(footer))
        return pa.table({"file": [name], "footer_offset": [0], "footer_length": [footer.size]},
                        schema=dataops.MAP_POINTER_SCHEMA)

    return udf


def child(layout: str, maps: int, parts: int) -> None:
    import psutil
    import ray

    from humanllm_ray.ingest import dataops

    me = psutil.Process()

    def pss() -> int:
        return me.memory_full_info().pss >> 20

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    # a warm-up so that Ray Data's own first-use allocations are not counted
    ray.data.range(4, override_num_blocks=2).map_batches(lambda b: b).take_all()
    dataops.release_memory()
    before = pss()
    seen, stop = [before], threading.Event()

    def loop():
        while not stop.is_set():
            seen.append(pss())
            stop.wait(0.02)

    threading.Thread(target=loop, daemon=True).start()
    t0 = time.monotonic()
    os.makedirs(SCRATCH, exist_ok=True)
    ds = ray.data.from_items([{"i": i} for i in range(maps)], override_num_blocks=maps).map_batches(
        map_index(layout, parts), batch_size=1, batch_format="pyarrow")
    if layout == "task":
        shared, los, his, _rows, _files = dataops.gather_shuffle_index(ds)
        # its size, read in a task: a get here would map the index's pages into the driver
        nbytes, n_pieces = ray.get(ray.remote(num_cpus=0)(
            lambda got: (got["index"].nbytes + got["files"].nbytes, got["index"].num_rows)).remote(shared))
    else:
        got = [t for t in ds.iter_batches(batch_format="pyarrow", batch_size=None) if t.num_rows]
        gather = rows_shuffle_index if layout == "rows" else dataops.shuffle_index
        files, index, los, his = gather(got)
        del got
        shared = ray.put({"files": files, "index": index})
        nbytes = index.nbytes + files.nbytes
        n_pieces = index.num_rows
        del files, index
    secs = time.monotonic() - t0
    after_put = pss()
    stop.set()
    dataops.release_memory()
    released = pss()
    del shared
    if layout == "task":
        import shutil

        shutil.rmtree(SCRATCH, ignore_errors=True)
    print(json.dumps({"layout": layout, "maps": maps, "parts": parts, "pieces": n_pieces, "index_mb": nbytes / 2**20,
                      "pss_before": before, "pss_peak": max(seen), "pss_after_put": after_put,
                      "pss_after_release": released, "seconds": secs, "partitions": len(los)}), flush=True)
    ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--maps", type=int, default=740)
    ap.add_argument("--parts", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "shuffleindex.json"))
    ap.add_argument("--layouts", nargs="+", default=["rows", "lists", "task"], choices=["rows", "lists", "task"])
    ap.add_argument("--child", choices=["rows", "lists", "task"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.maps, args.parts)
        return
    results = []
    for r in range(args.repeats):
        for layout in (args.layouts if r % 2 == 0 else args.layouts[::-1]):
            out = subprocess.run([sys.executable, __file__, "--child", layout, "--maps", str(args.maps),
                                  "--parts", str(args.parts)], capture_output=True, text=True, cwd=ROOT,
                                 env={**os.environ, "PYTHONPATH": ROOT})
            line = [x for x in out.stdout.splitlines() if x.startswith("{")]
            if out.returncode or not line:
                sys.exit(f"{layout} child failed ({out.returncode}):\n{out.stderr[-3000:]}")
            res = json.loads(line[-1])
            results.append(res)
            print(f"{layout:5s} {res['pieces']:>9,} pieces  index {res['index_mb']:6.1f} MB  driver PSS "
                  f"{res['pss_before']} -> peak {res['pss_peak']} (+{res['pss_peak'] - res['pss_before']}), after put "
                  f"{res['pss_after_put']} (+{res['pss_after_put'] - res['pss_before']}), after release "
                  f"{res['pss_after_release']} (+{res['pss_after_release'] - res['pss_before']})  "
                  f"{res['seconds']:.1f} s", flush=True)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
