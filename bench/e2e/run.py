"""bench/e2e: wall time and peak memory of `humanllm run` on the embedded default, per stage.

Each stage runs as its own `humanllm <stage>` process on a fresh run root, so its wall
time includes what a user pays (Python + Ray start) and its peak memory is the peak
summed RSS of the whole process tree (driver, raylet, Ray workers, train workers),
sampled every 0.2 s with psutil.

    python bench/e2e/run.py [--root DIR] [--out bench/out/e2e.json] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import psutil

STAGES = ["ingest", "curate", "synthesize", "qc", "build-tasks", "train", "merge", "publish", "evaluate"]


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def run_measured(cmd):
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ps = psutil.Process(proc.pid)
    peak = [0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss(ps))
            time.sleep(0.2)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    out, _ = proc.communicate()
    stop.set()
    t.join()
    if proc.returncode != 0:
        sys.stderr.write(out[-5000:])
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode})")
    return time.perf_counter() - t0, peak[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="bench/out/e2e-run")
    ap.add_argument("--out", default="bench/out/e2e.json")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    shutil.rmtree(args.root, ignore_errors=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    rows = []
    for stage in STAGES:
        cmd = [sys.executable, "-m", "humanllm_ray.cli", stage, f"run.root={args.root}", "run.progress=false", *args.overrides]
        seconds, peak = run_measured(cmd)
        with open(os.path.join(args.root, {"build-tasks": "tasks", "synthesize": "synth", "ingest": "ingested", "curate": "curated", "merge": "merged", "evaluate": "eval"}.get(stage, stage), "_report.json")) as fh:
            rep = json.load(fh)
        rows.append({"stage": stage, "wall_s": round(seconds, 1), "stage_s": rep.get("seconds"), "peak_rss_mb": round(peak / 2**20), "rows_in": rep.get("rows_in"), "rows_out": rep.get("rows_out")})
        print(f"{stage:12s} wall {seconds:6.1f}s  in-stage {rep.get('seconds', 0):6.1f}s  peak RSS {peak / 2**20:7.0f} MB", flush=True)
    total = sum(r["wall_s"] for r in rows)
    result = {"stages": rows, "total_wall_s": round(total, 1), "cpus": os.cpu_count(), "overrides": args.overrides}
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"total {total:.1f}s (goal < 600 s on 2 cores); results in {args.out}")


if __name__ == "__main__":
    main()
