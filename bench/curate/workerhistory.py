"""bench/curate/workerhistory.py: does a worker's memory creep with the number of join reduces it runs?

    python bench/curate/workerhistory.py [--slice-rows 90] [--tasks 250] [--partitions 6] [--out FILE]

A Ray worker is reused for every task of a job, and at 10M records each of ingest's two workers
runs ~10x as many shuffle reduces as at 1M (and the reads before them). Round 20 found the
10M ingest's reduce workers' RSS peaks ~35-45 MB above 1M's; this isolates one suspect. One
plain process (no Ray) builds ``--partitions`` Amazon join partitions as ingest's shuffle writes
them (``hotjoin.build_partition``: LZ4 Arrow IPC, ``--slice-rows`` rows from each map file:
~90 at 10M records, ~900 at 1M), then runs ``--tasks`` reduces in a row, cycling over them,
exactly as a reduce task does (``ingest.join_in_chunks``, which joins a partition of this size
whole and returns it, then ``dataops.release_memory``), and records after each its RSS and the task's own RSS peak
(``VmHWM``, reset before it). Creep is the later tasks' figures against the first ones'.
The Arrow pool is the system allocator, as ingest's workers run (``run.arrow_memory_pool``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

CHECKPOINTS = (1, 5, 10, 25, 50, 100, 150, 200, 250, 300, 400, 500)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slice-rows", type=int, default=90, help="rows each map file gives a partition")
    ap.add_argument("--tasks", type=int, default=250, help="reduces run in a row in one process")
    ap.add_argument("--partitions", type=int, default=6, help="distinct partitions cycled over")
    ap.add_argument("--out", default=None, help="write every task's figures as JSON here")
    args = ap.parse_args()
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")  # before pyarrow is imported

    import hotjoin
    import psutil

    from humanllm_ray import ingest
    from humanllm_ray.ingest import dataops

    with tempfile.TemporaryDirectory(prefix="workerhistory-") as folder:
        t0 = time.time()
        parts = []
        for k in range(args.partitions):  # ~19-22k rows each, a few hundred of one hot item
            sub = os.path.join(folder, str(k))
            os.makedirs(sub)
            index_path = hotjoin.build_partition(sub, 300 + 200 * k, 18000 + 800 * k, args.slice_rows, seed=k + 1)
            parts.append(hotjoin.load_index(index_path))
        print(f"built {args.partitions} partitions in {time.time() - t0:.1f} s", flush=True)
        reduce_fn = ingest.join_in_chunks(ingest.REGISTRY["amazon"], 20000, os.path.join(folder, "out"))
        dataops.release_memory()
        proc = psutil.Process()
        start_mb = proc.memory_info().rss / 2**20
        rows = []
        for t in range(args.tasks):
            files, index, los, his = parts[t % len(parts)]
            part = dataops.ShufflePartition.of_index(files, index, int(los[0]), int(his[0]),
                                                     cache_bytes=dataops.PARTITION_CACHE_BYTES)
            hotjoin.reset_peak_rss()
            out = reduce_fn(part)
            del out, part
            dataops.release_memory()
            rows.append({"task": t + 1, "rss_mb": round(proc.memory_info().rss / 2**20, 1),
                         "peak_mb": round(hotjoin.peak_rss() / 2**20, 1)})

    print(f"slice rows {args.slice_rows}; RSS before the first task {start_mb:.1f} MB")
    print("| after task | RSS, MB | this task's peak, MB | largest peak so far, MB |")
    print("|---:|---:|---:|---:|")
    for n in CHECKPOINTS:
        if n <= len(rows):
            r = rows[n - 1]
            print(f"| {n} | {r['rss_mb']} | {r['peak_mb']} | {max(x['peak_mb'] for x in rows[:n])} |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"slice_rows": args.slice_rows, "start_mb": round(start_mb, 1), "rows": rows}, f)


if __name__ == "__main__":
    main()
