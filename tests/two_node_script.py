"""Two Ray nodes on this machine (ray.cluster_utils.Cluster): ingest + curate on the demo
corpus, then the train stage (ZeRO-3, 2 workers) on a small task set; prints one JSON line.

    python tests/two_node_script.py WORK_DIR

Run by tests/test_cluster_jobs.py in a subprocess: a driver can be connected to one Ray
cluster only, and the pytest session may already hold its own local Ray.

Resources are chosen so the scheduler has to use both nodes: each node has 3 CPUs and each
training worker asks for 2, so the two workers cannot share a node and each node keeps one
CPU free for the Ray Data tasks that feed them. The curate record pass runs as Ray Data
tasks, which Ray Data schedules with the SPREAD strategy, but only if there are several: it
runs one task per ingested Parquet file (``ingest.rows_per_file`` rows each, lowered here to
500). Copies of the demo tweets make ~6,200 records, so ~13 record-pass tasks.

RAY_TMPDIR points at a private folder: ray.cluster_utils.Cluster records its address in
$RAY_TMPDIR/ray/ray_current_cluster (default /tmp/ray/...), where any `ray.init()` without
an address on this machine would otherwise find it and try to join it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time

# x 75 demo tweets + ~240 other demo records = ~6,200 records: ~13 record-pass tasks of 500
# rows (ingest.rows_per_file=500). With 3 tasks all of them once landed on one node: the tasks run one at a time under
# Ray Data's per-operator resource budget, and SPREAD's round robin is shared with every
# other task in flight, so a few tasks can all fall on one node.
TWEET_COPIES = 80
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # test_train.write_train_examples
# Before ray is imported (see the module docstring). Unix socket paths under it must stay
# short (< 108 bytes), hence /tmp.
OWN_TMPDIR = None if os.environ.get("RAY_TMPDIR") else tempfile.mkdtemp(prefix="hl2n-", dir="/tmp")
if OWN_TMPDIR:
    os.environ["RAY_TMPDIR"] = OWN_TMPDIR


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main(work_dir: str) -> int:
    import ray
    from ray.cluster_utils import Cluster

    from humanllm_ray.config import load_config
    from humanllm_ray.pipeline import run_pipeline
    from humanllm_ray.runtime import setup_logging

    setup_logging("WARNING")
    node_args = {"num_cpus": 3, "object_store_memory": 300 * 1024**2}
    started = time.perf_counter()
    # Free ports for what would otherwise take a fixed one (dashboard 8265, its agent 52365).
    head_args = {**node_args, "include_dashboard": False, "dashboard_port": _free_port(),
                 "dashboard_agent_listen_port": _free_port()}
    cluster = Cluster(initialize_head=True, head_node_args=head_args)
    try:
        cluster.add_node(**node_args)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])

        root = os.path.join(work_dir, "run")
        common = [
            f"run.root={root}",
            f"run.ray_address={cluster.address}",
            "run.progress=false",
            "run.log_level=WARNING",
        ]
        # The curate record pass runs one task per ingested file of ingest.rows_per_file rows:
        # add copies of the demo tweets so there are enough tasks to spread (the copies end in
        # curate's duplicate quarantine; the record pass still sees them all).
        from humanllm_ray.config import DEMO_CORPUS_DIR

        copies = os.path.join(work_dir, "tweets")
        os.makedirs(copies, exist_ok=True)
        for i in range(TWEET_COPIES):
            shutil.copy(DEMO_CORPUS_DIR / "twitter" / "sentiment140_demo.csv", os.path.join(copies, f"copy{i:02d}.csv"))
        cfg = load_config(overrides=common + [f"ingest.sources.twitter=[{copies}/]", "ingest.rows_per_file=500"])
        reports = run_pipeline(cfg, ["ingest", "curate"])

        # A tiny task set written directly (the synthesis stages are not under test here).
        from test_train import write_train_examples

        write_train_examples(os.path.join(root, "tasks"))
        tcfg = load_config(
            overrides=common
            + [
                "train.num_workers=2",
                "train.cpus_per_worker=2",
                "train.torch_threads=1",
                "train.zero_stage=3",
                "train.micro_batch_size=4",
                "train.max_length=128",
                "train.max_steps=4",
                "train.checkpoint_every=0",
            ]
        )
        reports.update(run_pipeline(tcfg, ["train"]))
        cur, tr = reports["curate"], reports["train"]
        print(
            "RESULT "
            + json.dumps(
                {
                    "cluster_nodes": nodes,
                    "curate_nodes": cur.get("nodes"),
                    "curate_rows_in": cur["rows_in"],
                    "train_worker_nodes": tr.get("worker_nodes"),
                    "train_steps": tr["steps"],
                    "train_loss_first": tr["loss_first"],
                    "train_loss_last": tr["loss_last"],
                    "seconds": round(time.perf_counter() - started, 1),
                }
            ),
            flush=True,
        )
        return 0
    finally:
        ray.shutdown()
        cluster.shutdown()  # stops exactly the two nodes started above
        if OWN_TMPDIR:
            shutil.rmtree(OWN_TMPDIR, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
