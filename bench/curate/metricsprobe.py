"""bench/curate/metricsprobe.py: what Ray's metrics keep per Ray Data execution.

    python bench/curate/metricsprobe.py --modes on off

Each Ray Data execution registers its operators with Ray Data's stats actor, which sets ~40
Prometheus gauges per operator tagged with the dataset's name; every new tag set is a new
series, kept by the actor's and the node's metrics agent's metric stores for the life of the
cluster. A curate run's number of executions grows with its corpus (dedup's connected
components take a few more rounds at 10M records), so these do too. For each mode (``on``:
Ray's default; ``off``: ``RAY_enable_metrics_collection=0``) this starts a local 2-CPU Ray,
runs 120 small three-operator executions and prints the PSS of the stats actor, the dashboard
agent, the GCS and the driver after 0, 20, 60 and 120 of them (bench/README.md, curate Round 16).
"""

from __future__ import annotations

import json
import os
import sys
import time

CHECKPOINTS = (20, 60, 120)
ENV = "RAY_enable_metrics_collection"


def child(mode: str) -> None:
    import psutil
    import pyarrow as pa
    import ray

    if mode == "off":
        os.environ[ENV] = "0"
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    me = psutil.Process()

    def pss() -> dict:
        out = {"driver": me.memory_full_info().pss >> 20}
        for p in me.children(recursive=True):
            try:
                cmd = " ".join(p.cmdline())
                name = ("stats_actor" if "_StatsActor" in cmd else "dashboard_agent" if "DashboardAgent" in cmd
                        or "dashboard/agent.py" in cmd else "gcs" if "/gcs_server " in cmd else None)
                if name:
                    out[name] = out.get(name, 0) + (p.memory_full_info().pss >> 20)
            except psutil.Error:
                pass
        return out

    def one(batch: pa.Table) -> pa.Table:
        return batch

    rows = [{"mode": mode, "executions": 0, **pss()}]
    done = 0
    for n in CHECKPOINTS:
        while done < n:
            (ray.data.from_items([{"i": i} for i in range(8)], override_num_blocks=4)
             .map_batches(one, batch_format="pyarrow").random_shuffle()
             .map_batches(one, batch_format="pyarrow").take_all())
            done += 1
        time.sleep(6)  # metrics are reported every few seconds
        rows.append({"mode": mode, "executions": done, **pss()})
    ray.shutdown()
    print(json.dumps(rows))


def main() -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import run as bench  # noqa: E402  (bench/curate/run.py: the probes' shared command line and driver)

    bench.probe_main(__doc__, os.path.abspath(__file__), child, "modes", ["on", "off"], ENV,
                     ["mode", "executions", "stats_actor", "dashboard_agent", "gcs", "driver"], choices=["on", "off"])


if __name__ == "__main__":
    main()
