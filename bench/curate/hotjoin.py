"""bench/curate/hotjoin.py: memory of ingest's join reduce on a partition that holds a hot key,
joined whole (what ingest did before Round 19) against in chunks (``ingest.join_in_chunks``).

    python bench/curate/hotjoin.py [--hot 5000 45000 250000] [--chunk-rows 20000] [--out FILE]

A key's rows all land in one shuffle partition, and keys are skewed: bench/curate's best-selling
Amazon item has ~5.6k reviews at 1M records, 44,539 at 10M, and would have ~250k at the
paper's 10x scale (55M). For each hot-key size H this builds one Amazon join partition, as
ingest's shuffle writes it (``dataops._RunWriter``: LZ4 Arrow IPC, ``--slice-rows`` rows from
each of many map files, the partition's piece of one map task's output each): item
metadata (aux rows) for 2,000 items, H reviews of the hot item and ``chunk_rows`` reviews
spread over the others, review texts from gen.py's generator. Then, in a fresh process per
run, the Amazon platform's reduce reads and joins it: whole (the platform without
``join_side``), in chunks returned as one table, and in chunks written to files as ingest
runs it (``direct_uri``); each reports its peak RSS above the RSS it had just before
(``VmHWM``, reset just before: the process's high-water mark, what a worker's heap keeps), the seconds, and
a digest of its output rows (the three must give the same rows).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def build_partition(folder: str, hot: int, others: int, slice_rows: int, n_items: int = 2000, seed: int = 1) -> str:
    """Write the partition's map files under ``folder``, ``slice_rows`` rows from each (the
    partition's piece of one map task's output); return the path of its index (IPC)."""
    import numpy as np
    import pyarrow as pa

    sys.path.insert(0, HERE)
    import gen

    from humanllm_ray.ingest import dataops, schema

    r = random.Random(seed)
    nr = np.random.default_rng(seed)
    text = gen.Text(r)
    cats = sorted(gen.AMAZON_CATS)
    written = []

    def write_map_file(table: pa.Table) -> None:
        runs = dataops._RunWriter(1, "_key")
        runs.add(table)
        written.append(runs.write(folder))

    rows = [dict(platform="amazon", record_id=f"meta{i}", _status="aux", _key=f"item{i}", source_line=i,
                 _payload=json.dumps({"title": f"Item {i} " + text.body("tech", 1),
                                      "main_category": cats[i % len(cats)],
                                      "categories": [cats[i % len(cats)], "x"], "store": f"Store {i % 97}"}))
             for i in range(n_items)]
    items = np.concatenate([np.zeros(hot, np.int64), nr.integers(1, n_items, others)])
    nr.shuffle(items)
    for j, item in enumerate(items.tolist()):
        cat = cats[item % len(cats)]
        rows.append(dict(platform="amazon", record_id=f"r{j}", user_id=f"u{j % 7919}", timestamp=1609459200 + j,
                         kind="review", title=text.body(gen.AMAZON_CATS[cat], 1)[:60],
                         text=text.body(gen.AMAZON_CATS[cat], gen.n_sentences(r, 1.4, 0.8, hi=40)),
                         context="", item_id=f"item{item}", rating=float(1 + j % 5),
                         extra=json.dumps({"category": cat, "helpful_vote": j % 3}), source_file="Books.jsonl",
                         source_line=j, _status="ok", _key=f"item{item}"))
        if len(rows) >= slice_rows:
            write_map_file(schema.to_table(rows))
            rows = []
    if rows:
        write_map_file(schema.to_table(rows))
    written = pa.concat_tables(written)
    path = os.path.join(folder, "index.arrow")
    with pa.OSFile(path, "wb") as f, pa.ipc.new_stream(f, written.schema) as w:
        w.write_table(written)
    return path


def load_index(index_path: str):
    """``dataops.shuffle_index`` of the map files ``build_partition`` wrote: (files, index, los, his)."""
    import pyarrow as pa

    from humanllm_ray.ingest import dataops

    with pa.OSFile(index_path, "rb") as f:
        written = pa.ipc.open_stream(f).read_all()
    return dataops.shuffle_index([written])


def reset_peak_rss() -> None:
    """Reset this process's RSS high-water mark (Linux: ``clear_refs`` 5), so that the peak read
    after the reduce is the reduce's own, not the imports' before it."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss() -> int:
    """This process's RSS high-water mark (``VmHWM``) since the last reset, bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reduce_once(index_path: str, mode: str, chunk_rows: int) -> dict:
    """Run in a fresh process: read the partition and join it (``mode``: whole | chunks)."""
    import dataclasses

    import psutil
    import pyarrow as pa

    from humanllm_ray import ingest
    from humanllm_ray.ingest import dataops

    files, index, los, his = load_index(index_path)
    part = dataops.ShufflePartition.of_index(files, index, int(los[0]), int(his[0]),
                                             cache_bytes=dataops.PARTITION_CACHE_BYTES)
    plat = ingest.REGISTRY["amazon"]
    if mode == "whole":
        plat = dataclasses.replace(plat, join_side=None)
    direct = None
    if mode == "written":  # what ingest runs: the chunks' rows go to files, the task returns none
        import tempfile

        direct = tempfile.mkdtemp(prefix="hotjoin-out-", dir=os.path.dirname(index_path))
    fn = ingest.join_in_chunks(plat, chunk_rows, direct)
    import gc

    gc.collect()
    before = psutil.Process().memory_info().rss
    reset_peak_rss()
    t0 = time.perf_counter()
    out = fn(part)
    seconds = time.perf_counter() - t0
    peak = peak_rss()
    files = 0
    if direct is not None:
        import glob

        import pyarrow.parquet as pq

        paths = sorted(glob.glob(os.path.join(direct, "*.parquet")))
        files = len(paths)
        out = pa.concat_tables([out] + [pq.read_table(p).cast(out.schema) for p in paths])
    rows = sorted(zip(out.column("record_id").to_pylist(), out.column("context").to_pylist(),
                      out.column("extra").to_pylist(), out.column("_status").to_pylist()))
    digest = hashlib.sha1(json.dumps(rows).encode()).hexdigest()[:16]
    return {"mode": mode, "rows": part.num_rows, "out_rows": out.num_rows,
            "peak_above_mb": round((peak - before) / 2**20, 1),
            "seconds": round(seconds, 2), "digest": digest, "files": files,
            "arrow_mb": round(part.read().nbytes / 2**20, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hot", type=int, nargs="+", default=[5000, 45000, 250000], help="reviews of the hot item")
    ap.add_argument("--chunk-rows", type=int, default=20000, help="ingest.rows_per_file (its default)")
    ap.add_argument("--slice-rows", type=int, default=2000,
                    help="rows each map file gives the partition (ingest: a 20k-row raw file over ~10+ partitions)")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    ap.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(reduce_once(args.child[0], args.child[1], int(args.child[2]))))
        return
    results = []
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")  # what ingest's workers run with (run.arrow_memory_pool)
    for hot in args.hot:
        with tempfile.TemporaryDirectory(prefix="hotjoin-") as folder:
            index_path = build_partition(folder, hot, args.chunk_rows, args.slice_rows)
            for mode in ("whole", "chunks", "written"):
                got = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", index_path, mode,
                                      str(args.chunk_rows)], check=True, capture_output=True, text=True, env=env)
                row = dict(hot=hot, **json.loads(got.stdout.strip().splitlines()[-1]))
                results.append(row)
                print(json.dumps(row), flush=True)
    print("\n| hot key's rows | partition rows | Arrow MB | whole: peak above, MB | chunks returned | "
          "chunks written (ingest) | whole / written | whole s | written s | same rows |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for hot in args.hot:
        w, c, d = [next(r for r in results if r["hot"] == hot and r["mode"] == m)
                   for m in ("whole", "chunks", "written")]
        same = w["digest"] == c["digest"] == d["digest"] and w["out_rows"] == c["out_rows"] == d["out_rows"]
        print(f"| {hot:,} | {w['rows']:,} | {w['arrow_mb']} | {w['peak_above_mb']} | {c['peak_above_mb']} | "
              f"{d['peak_above_mb']} ({d['files']} files) | {w['peak_above_mb'] / max(d['peak_above_mb'], 0.1):.2f}x | "
              f"{w['seconds']} | {d['seconds']} | {'yes' if same else 'NO'} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"chunk_rows": args.chunk_rows, "slice_rows": args.slice_rows, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
