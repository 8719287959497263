"""bench/curate/gcsprobe.py: the GCS's memory against the number of tasks a job has run.

    python bench/curate/gcsprobe.py --caps none 10000 1000

For each cap on the task events the GCS keeps (``RAY_task_events_max_num_task_in_gcs``, what
``run.ray_task_events_max`` sets; ``none``: Ray's default, 100,000), starts a local 2-CPU Ray,
runs 40,000 trivial tasks in rounds of 500 and prints the PSS of the GCS and the raylet after
2k, 10k, 20k and 40k tasks. A curate run's task count follows its corpus (bounded-size blocks),
so what the GCS keeps per task is what makes it grow with the input (bench/README.md, curate
Round 16).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CHECKPOINTS = (2000, 10000, 20000, 40000)


def child(cap: str) -> None:
    import psutil
    import ray

    if cap != "none":
        os.environ["RAY_task_events_max_num_task_in_gcs"] = cap
    ray.init(address="local", num_cpus=2, include_dashboard=False)

    def pss() -> dict:
        out = {}
        for p in psutil.Process().children(recursive=True):
            try:
                cmd = " ".join(p.cmdline())
                for name in ("gcs_server", "raylet"):
                    if f"/{name} " in cmd or cmd.endswith(f"/{name}"):
                        out[name] = p.memory_full_info().pss >> 20
            except psutil.Error:
                pass
        return out

    @ray.remote
    def noop(i: int) -> int:
        return i

    rows = [{"cap": cap, "tasks": 0, **pss()}]
    done = 0
    for n in CHECKPOINTS:
        while done < n:
            ray.get([noop.remote(j) for j in range(500)])
            done += 500
        time.sleep(3)  # the workers' task events reach the GCS in batches, every second
        rows.append({"cap": cap, "tasks": done, **pss()})
    ray.shutdown()
    print(json.dumps(rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--caps", nargs="+", default=["none", "10000", "1000"])
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child)
    rows = []
    for cap in args.caps:  # each in its own process: the cap is read when the GCS starts
        env = {k: v for k, v in os.environ.items() if k != "RAY_task_events_max_num_task_in_gcs"}
        out = subprocess.run([sys.executable, __file__, "--child", cap], env=env, check=True,
                             capture_output=True, text=True).stdout
        rows += json.loads(out.strip().splitlines()[-1])
    print(f"{'cap':>8} {'tasks':>7} {'gcs MB':>7} {'raylet MB':>9}")
    for r in rows:
        print(f"{r['cap']:>8} {r['tasks']:>7} {r.get('gcs_server', '?'):>7} {r.get('raylet', '?'):>9}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
