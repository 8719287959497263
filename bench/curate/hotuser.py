"""bench/curate/hotuser.py: what one heavy user costs the timelines reduce that holds it.

    python bench/curate/hotuser.py [--light-rows 20000] [--hot 12000 120000] [--repeat 1] [--out FILE]

The corpus's users follow a Zipf-like law with a fixed exponent (``gen.py``), so its heaviest
user holds a fixed share of a platform's records: ~12k kept records at 1M, ~120k at 10M (the
3M corpus's heaviest has 36,507). All of a user's records land in one timelines partition, and
the task that reduces it plans the whole partition from its narrow columns
(``timelines.plan``) before it builds the timelines a group of rows at a time. Round 21 found
the 10M run's largest timelines reduce worker at 395 MB RSS against 1M's ~295.

For each ``--hot`` size, and with the heap given back between the groups of a partition of
several (``curate.TIMELINES_TRIM_GROUPS``) and without (the baseline), a fresh process builds
one partition as the timelines shuffle's map side leaves it (``timelines.with_plan_columns``):
``--light-rows`` records of ordinary users (2-40 records each) plus one user with ``--hot``
records at a human pace and with varied openings (so the bot rules look at every record and
reject nothing), held as a table (``TablePartition``). It resets its RSS high-water mark
(``VmHWM``), runs ``timelines.plan``, reads the peak, resets it again and runs the whole
reduce as the stage does (``curate._timelines_writer``: plan, then assemble and write a group
of rows at a time, to a temporary folder). Reported: RSS before, each step's peak above it,
and the seconds. The partition itself is in the RSS before, not in the peaks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def build(light_rows: int, hot: int, seed: int = 1):
    """One timelines partition's rows (``timelines.SHUFFLE_COLUMNS``) as a pyarrow Table."""
    import numpy as np
    import pyarrow as pa

    from humanllm_ray.config import CurateConfig
    from humanllm_ray.curate import timelines

    rng = np.random.default_rng(seed)
    vocab = np.array("the a tea rain job gig train book cat dog run late early news game song film city "
                     "went saw made took gave found kept left home work park shop river road".split())
    sizes = []
    while sum(sizes) < light_rows:
        sizes.append(int(rng.integers(2, 41)))
    users = [f"u{k:07d}" for k, n in enumerate(sizes) for _ in range(n)] + ["hotuser"] * hot
    n = len(users)
    hot_ts = 1_400_000_000 + np.cumsum(rng.integers(600, 86_400, hot))  # minutes to a day apart: not a burst
    ts = np.concatenate([rng.integers(1_300_000_000, 1_700_000_000, n - hot), hot_ts])

    def text():
        return " ".join(vocab[rng.integers(0, len(vocab), int(rng.integers(30, 120)))])

    tbl = pa.table({
        "user_id": users, "platform": ["reddit"] * n, "record_id": [f"r{i:09d}" for i in range(n)],
        "timestamp": ts.astype(np.int64), "kind": ["comment"] * n, "title": [""] * n,
        "text": [text() for _ in range(n)], "context": ["a subreddit"] * n, "item_id": [None] * n,
        "rating": pa.array([None] * n, pa.float64()), "extra": ["{}"] * n,
        "source_file": ["reddit/RC_2015-01.zst"] * n, "source_line": np.arange(n, dtype=np.int64),
    })
    perm = rng.permutation(n)  # a shuffle partition holds its rows in map order, not by user
    return timelines.with_plan_columns(tbl.take(pa.array(perm)), CurateConfig())


def one(light_rows: int, hot: int, trim: bool) -> dict:
    """Build the partition and measure plan and the whole reduce, in this process."""
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    import hotjoin
    import psutil

    from humanllm_ray import curate
    from humanllm_ray.config import CurateConfig
    from humanllm_ray.curate import timelines
    from humanllm_ray.ingest import dataops

    curate.TIMELINES_TRIM_GROUPS = trim
    cfg = CurateConfig()
    tbl = build(light_rows, hot)
    part = curate.TablePartition(tbl)
    dataops.release_memory()
    before = psutil.Process().memory_info().rss / 2**20
    hotjoin.reset_peak_rss()
    t0 = time.perf_counter()
    p = timelines.plan(part.read(timelines.PLAN_COLUMNS), cfg.min_records_per_user, cfg.timeline_max_tokens, cfg)
    plan_s = time.perf_counter() - t0
    plan_peak = hotjoin.peak_rss() / 2**20 - before
    rejected = int((p.rejected >= 0).sum())
    del p
    dataops.release_memory()
    with tempfile.TemporaryDirectory(prefix="hotuser-") as folder:
        hotjoin.reset_peak_rss()
        t0 = time.perf_counter()
        counts = curate._timelines_writer(cfg, os.path.join(folder, "data"), os.path.join(folder, "q"))(part)
        reduce_s = time.perf_counter() - t0
        reduce_peak = hotjoin.peak_rss() / 2**20 - before
    return {"light_rows": light_rows, "hot": hot, "trim": trim, "rows": tbl.num_rows, "rss_before_mb": round(before, 1),
            "plan_peak_above_mb": round(plan_peak, 1), "plan_s": round(plan_s, 2),
            "reduce_peak_above_mb": round(reduce_peak, 1), "reduce_s": round(reduce_s, 2),
            "rejected_rows": rejected, "kept_records": sum(counts.column("records").to_pylist())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--light-rows", type=int, default=20000, help="ordinary users' records in the partition")
    ap.add_argument("--hot", type=int, nargs="+", default=[12000, 120000], help="the heavy user's records")
    ap.add_argument("--out", default=None, help="write the figures as JSON here")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each (size, trim) pair, interleaved")
    ap.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # the child process's run
    ap.add_argument("--trim", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.light_rows, args.one, bool(args.trim))))
        return
    results = []
    for _ in range(args.repeat):
        for hot in args.hot:
            for trim in (0, 1):  # a fresh process each: a heap's high-water mark stays with its process
                out = subprocess.run([sys.executable, __file__, "--light-rows", str(args.light_rows), "--one", str(hot),
                                      "--trim", str(trim)], check=True, capture_output=True, text=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                results.append(r)
                print(f"hot user {hot:>7,} records ({r['rows']:,} rows), trim {'on ' if trim else 'off'}: "
                      f"RSS before {r['rss_before_mb']:.0f} MB; plan +{r['plan_peak_above_mb']:.1f} MB "
                      f"({r['plan_s']:.2f} s); whole reduce +{r['reduce_peak_above_mb']:.1f} MB "
                      f"({r['reduce_s']:.2f} s)", flush=True)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"results": results}, f, indent=1)


if __name__ == "__main__":
    main()
