"""bench/curate/taskcost.py: what Ray costs per task in a pass of small per-file tasks, and
per worker retirement, on a local 2-CPU Ray.

    python bench/curate/taskcost.py [--files 54] [--rows 18000] [--repeats 3]

1. Writes ``--files`` Parquet files of ``--rows`` rows each (a user id and ~400 characters of
   text, like curate's scratch files at 1M bench records), then reads each file and sums its
   text lengths: in one plain process, and as Ray Data map tasks over
   ``dataops.file_list_dataset`` with 1, ``dataops.files_per_task`` and more files a task.
2. Times ``dataops.retire_idle_workers`` plus the next two 0.5 s tasks (what a pass after a
   retirement waits for), with the wait for the old workers' exit in a task on their node (the
   old way) and in the driver (the current one, on the driver's node).

Prints the wall seconds of each (bench/README.md, curate Round 28).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def write_files(folder: str, n_files: int, rows: int) -> list:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(1)
    words = np.array(["the", "a", "people", "think", "about", "this", "really", "good", "day", "never", "city",
                      "weekend", "after", "work", "because", "phone", "friends", "coffee", "late", "again"])
    paths = []
    for i in range(n_files):
        text = [" ".join(rng.choice(words, 80)) for _ in range(rows)]
        users = [f"u{x:06d}" for x in rng.integers(0, 20_000, rows)]
        path = os.path.join(folder, f"part-{i:04d}.parquet")
        pq.write_table(pa.table({"user_id": users, "text": text}), path)
        paths.append(path)
    return paths


def one_file(path: str):
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    t = pq.read_table(path, columns=["user_id", "text"])
    return pa.table({"n": [pc.sum(pc.utf8_length(t.column("text"))).as_py()]})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=54)
    ap.add_argument("--rows", type=int, default=18_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    import pyarrow as pa
    import ray

    from humanllm_ray.ingest import dataops

    with tempfile.TemporaryDirectory() as folder:
        paths = write_files(folder, args.files, args.rows)
        ray.init(address="local", num_cpus=2, include_dashboard=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        udf = dataops.per_file_udf(one_file, pa.schema([("n", pa.int64())]))
        k = dataops.files_per_task(len(paths))
        sizes = sorted({1, k, 2 * k, max(1, len(paths) // 2)})
        # a first pass starts the workers; not counted
        dataops.file_list_dataset(paths).map_batches(udf, batch_size=1, batch_format="pyarrow").take_all()
        times = {"one process": []}
        times.update({f"ray, {s} file(s) a task": [] for s in sizes})
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            for p in paths:
                one_file(p)
            times["one process"].append(time.perf_counter() - t0)
            for s in sizes:
                t0 = time.perf_counter()
                dataops.file_list_dataset(paths).map_batches(udf, batch_size=s, batch_format="pyarrow").take_all()
                times[f"ray, {s} file(s) a task"].append(time.perf_counter() - t0)
        print(f"{len(paths)} files of {args.rows} rows; files_per_task = {k} on this cluster")
        for name, ts in times.items():
            print(f"  {name:24s} median {statistics.median(ts):5.2f} s  ({', '.join(f'{t:.2f}' for t in ts)})")

        @ray.remote
        def half_second() -> int:
            time.sleep(0.5)
            return os.getpid()

        def retire_then_two(driver_waits: bool) -> float:
            t0 = time.perf_counter()
            dataops.retire_idle_workers("taskcost", wait_in_driver=driver_waits)
            ray.get([half_second.remote() for _ in range(2)])
            return time.perf_counter() - t0

        ray.get([half_second.remote() for _ in range(2)])
        got = {True: [], False: []}
        for _ in range(args.repeats):
            for mode in (False, True):
                got[mode].append(retire_then_two(mode))
        for mode, name in ((False, "wait in a task"), (True, "wait in the driver")):
            ts = got[mode]
            print(f"  retire + next 2 tasks, {name:18s} median {statistics.median(ts):5.2f} s"
                  f"  ({', '.join(f'{t:.2f}' for t in ts)})")
        ray.shutdown()


if __name__ == "__main__":
    main()
