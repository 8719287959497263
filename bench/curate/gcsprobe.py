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

import json
import os
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
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import run as bench  # noqa: E402  (bench/curate/run.py: the probes' shared command line and driver)

    bench.probe_main(__doc__, os.path.abspath(__file__), child, "caps", ["none", "10000", "1000"],
                     "RAY_task_events_max_num_task_in_gcs", ["cap", "tasks", "gcs_server", "raylet"])


if __name__ == "__main__":
    main()
