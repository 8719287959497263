"""Curate under faults: nothing lost, nothing stuck.

1. A real Ray worker running a curate task is SIGKILLed mid-stage: Ray Data resubmits the
   task and the stage's output equals a clean run's.
2. The `humanllm curate` driver is SIGKILLed mid-stage: a rerun equals a clean run, and a
   third invocation skips the finished stage.

Both kills land at a known point: curate's fault hook (``curate.FAULT_HOLD``, a marker under
the stage's ``_work/``) makes each record-pass task announce its worker pid and wait, so
the kill never races a sub-second task. The kill itself comes from outside, with SIGKILL,
at a process verified to be a Ray worker of this test session's cluster running the
record-pass operator (its proctitle ``ray::...MapBatches(udf)``).
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from humanllm_ray import config, storage
from humanllm_ray.stage import read_table

pytestmark = [pytest.mark.usefixtures("ray_local"), pytest.mark.timeout(600)]

RECORD_PASS_OP = "MapBatches(udf)"  # Ray Data's name for curate's record-pass map_batches


def _cfg(root: Path, *overrides: str):
    return config.load_config(overrides=[f"run.root={root}", "run.progress=false", *overrides])


# ----------------------------------------------------------------------------- helpers


def _snapshot(out_uri: str) -> dict:
    """What a curate output holds, in a form two runs can be compared by."""
    tl = read_table(storage.join(out_uri, "data")).to_pylist()
    q = read_table(storage.join(out_uri, "_quarantine"))
    q = q.to_pylist() if q.num_columns else []
    report = storage.read_json(storage.join(out_uri, "_report.json"))
    return {
        "kept": {r["record_id"] for t in tl for r in t["records"]},
        "n_kept_rows": sum(len(t["records"]) for t in tl),
        "quarantine": collections.Counter((r["reason"], r["record_id"]) for r in q),
        "quarantine_rows": sorted(tuple(sorted(r.items())) for r in q),
        "timelines": sorted(tl, key=lambda t: (t["platform"], t["user_id"], t["chunk"])),
        "report": report,
    }


def _assert_same_as_clean(got: dict, clean: dict) -> None:
    assert got["kept"] == clean["kept"], (len(got["kept"]), len(clean["kept"]))
    assert got["n_kept_rows"] == len(got["kept"]), "a kept record appears twice"
    assert got["quarantine"] == clean["quarantine"], got["quarantine"] - clean["quarantine"]
    assert got["quarantine_rows"] == clean["quarantine_rows"]
    assert got["timelines"] == clean["timelines"]
    rep, ref = got["report"], clean["report"]
    assert rep["rows_in"] == rep["rows_out"] + rep["rows_quarantined"] + rep["rows_merged"], rep
    assert sum(rep["by_reason"].values()) == rep["rows_quarantined"], rep
    for p, c in rep["by_platform"].items():
        assert c["in"] == c["out"] + c["quarantined"], (p, c)
    for key in ("rows_in", "rows_out", "rows_quarantined", "rows_merged", "by_reason", "by_platform", "users",
                "timelines", "dedup"):
        assert rep[key] == ref[key], (key, rep[key], ref[key])
    # every ingested record is accounted for exactly once: kept or quarantined
    assert rep["rows_in"] == len(got["kept"]) + sum(got["quarantine"].values())
    assert not got["kept"] & {rid for _reason, rid in got["quarantine"]}


def _hold_marker(out_uri: str) -> str:
    from humanllm_ray.curate import FAULT_HOLD

    return storage.join(out_uri, *FAULT_HOLD)


def _arm(out_uri: str) -> str:
    marker = _hold_marker(out_uri)
    storage.write_text(marker, "armed by tests/test_curate_faults.py\n")
    return marker


def _announced_pids(marker: str) -> list:
    fault_dir = os.path.dirname(marker)
    if not os.path.isdir(fault_dir):
        return []
    prefix = os.path.basename(marker) + ".pid-"
    return [int(n[len(prefix):]) for n in sorted(os.listdir(fault_dir)) if n.startswith(prefix)]


def _wait_announced(marker: str, timeout: float, alive=lambda: True) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        pids = _announced_pids(marker)
        if pids:
            return pids[0]
        time.sleep(0.05)
    raise AssertionError(f"no record-pass task reached the fault hook within {timeout}s ({marker})")


def _session_dir() -> str:
    import ray

    return ray._private.worker._global_node.get_session_dir_path()


def _curate_worker(pid: int) -> psutil.Process:
    """The process, after checking it is a Ray worker of *this* session's cluster (a child
    of our raylet) inside curate's record-pass task: never signal anything else."""
    proc = psutil.Process(pid)
    raylet = proc.parent()
    assert raylet is not None and _session_dir() in " ".join(raylet.cmdline()), (
        f"pid {pid} is not a worker of this test's Ray cluster")
    title = " ".join(proc.cmdline())
    assert title.startswith("ray::") and RECORD_PASS_OP in title, title
    return proc


def _sigkill_and_wait(proc: psutil.Process, timeout: float = 30) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=timeout)  # raises psutil.TimeoutExpired if it survived
    assert not proc.is_running()


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def ingested_and_clean(tmp_path_factory):
    """The demo corpus ingested once, and a clean curate of it as the reference."""
    from humanllm_ray import curate, ingest

    root = tmp_path_factory.mktemp("curate_faults")
    cfg = _cfg(root)
    ingest.run(cfg)
    clean_uri = str(root / "curated_clean")
    rep = curate.run(cfg, output_uri=clean_uri)
    assert rep["skipped"] is False and rep["rows_in"] > 0 and rep["rows_out"] > 0
    clean = _snapshot(clean_uri)
    assert clean["kept"] and clean["quarantine"]
    return cfg, root, clean


# ----------------------------------------------------------------------------- 1. worker killed


def test_worker_killed_mid_curation_output_equals_clean_run(ingested_and_clean):
    from humanllm_ray import curate

    cfg, root, clean = ingested_and_clean
    out_uri = str(root / "curated_worker_killed")
    marker = _arm(out_uri)
    killed: dict = {}

    def killer():
        try:
            pid = _wait_announced(marker, timeout=240)
            proc = _curate_worker(pid)
            killed["title"] = " ".join(proc.cmdline()).strip()
            _sigkill_and_wait(proc)
            killed["pid"] = pid
        except BaseException as exc:  # reported by the main thread
            killed["error"] = exc
        finally:
            storage.rm(marker)  # release the retry (and any other held task)

    t = threading.Thread(target=killer, name="curate-worker-killer", daemon=True)
    t.start()
    t0 = time.monotonic()
    rep = curate.run(cfg, output_uri=out_uri)
    t.join(timeout=60)
    print(f"\ncurate with a killed worker: {time.monotonic() - t0:.1f}s; killed {killed}")

    assert "error" not in killed, killed.get("error")
    assert killed.get("pid"), "the worker was never killed: the test would pass vacuously"
    assert not psutil.pid_exists(killed["pid"])
    assert rep["skipped"] is False
    # the killed attempt produced nothing: everything below came from Ray's retry of the task
    _assert_same_as_clean(_snapshot(out_uri), clean)


def test_recycled_record_pass_workers_output_equals_clean_run(ingested_and_clean):
    """curate.worker_max_files=1: Ray replaces the record pass's worker after every file (its
    max_calls), so each file runs in a process of its own, and the output is the clean run's."""
    from humanllm_ray import curate

    cfg, root, clean = ingested_and_clean
    out_uri = str(root / "curated_recycled")
    rep = curate.run(_cfg(root, "curate.worker_max_files=1"), output_uri=out_uri)
    n_files = rep["record_pass_files"]
    print(f"\nrecord pass: {n_files} files on {rep['record_pass_workers']} processes "
          f"(clean run, worker_max_files={cfg.curate.worker_max_files}: {clean['report']['record_pass_workers']})")
    # more files than the 2 CPUs' long-lived workers, so a pass that kept its workers would differ
    assert n_files >= 4, "too few ingested files to tell recycled workers from long-lived ones"
    assert rep["record_pass_workers"] == n_files
    assert clean["report"]["record_pass_workers"] < n_files
    _assert_same_as_clean(_snapshot(out_uri), clean)


# ----------------------------------------------------------------------------- 2. driver killed


def _cli(args, log_dir: Path, name: str, **popen_kw) -> subprocess.Popen:
    """`humanllm ARGS` in a subprocess; stdout and stderr to log_dir/name.{out,err}."""
    out = open(log_dir / f"{name}.out", "wb")
    err = open(log_dir / f"{name}.err", "wb")
    try:
        return subprocess.Popen([sys.executable, "-m", "humanllm_ray.cli", *args], stdout=out, stderr=err,
                                env=dict(os.environ), **popen_kw)
    finally:
        out.close()
        err.close()


def _cli_run(args, log_dir: Path, name: str, timeout: float = 300) -> str:
    rc = _cli(args, log_dir, name).wait(timeout=timeout)
    out = (log_dir / f"{name}.out").read_text(errors="replace")
    assert rc == 0, f"humanllm {' '.join(args)} exited {rc}:\n{out[-3000:]}\n" + \
        (log_dir / f"{name}.err").read_text(errors="replace")[-6000:]
    return out


def _json_report(out: str) -> dict:
    """The stage report printed by `humanllm curate --json` (after the summary table)."""
    return json.loads(out[out.index("\n{") + 1:])["curate"]


def test_cli_killed_mid_stage_rerun_equals_clean_run_then_noop(ingested_and_clean, tmp_path):
    import ray

    _cfg0, root, clean = ingested_and_clean
    run_root = tmp_path / "run"
    shutil.copytree(root / "ingested", run_root / "ingested")
    out_uri = str(run_root / "curated")
    # Join this session's Ray cluster instead of starting one: a SIGKILLed driver that had
    # started its own local Ray would leave that cluster running. A joined driver's death is
    # noticed by the cluster, which ends its job and the job's workers.
    args = ["curate", f"run.root={run_root}", "run.progress=false",
            f"run.ray_address={ray.get_runtime_context().gcs_address}", "--json"]
    logs = tmp_path

    marker = _arm(out_uri)
    t0 = time.monotonic()
    proc = _cli(args, logs, "killed", start_new_session=True)  # its own process group
    try:
        held = _wait_announced(marker, timeout=240, alive=lambda: proc.poll() is None)
        held_worker = _curate_worker(held)
        # the stage has started and is mid-work: output folder there, _SUCCESS not
        assert os.path.isdir(out_uri) and not os.path.exists(os.path.join(out_uri, "_SUCCESS"))
        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:  # only if an assertion above failed before the kill
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    t_kill = time.monotonic() - t0
    assert not os.path.exists(os.path.join(out_uri, "_SUCCESS"))
    assert not os.path.exists(os.path.join(out_uri, "_report.json"))
    # nothing stuck: the dead driver's tasks (still held in the hook; both CPUs' tasks may have
    # reached it) are ended by the cluster
    held_worker.wait(timeout=60)
    announced = _announced_pids(marker)
    for pid in set(announced) - {held}:
        if psutil.pid_exists(pid):
            psutil.Process(pid).wait(timeout=60)
    storage.rm(marker)

    t1 = time.monotonic()
    rerun = _json_report(_cli_run(args, logs, "rerun"))
    t_rerun = time.monotonic() - t1
    assert rerun["skipped"] is False
    assert held in announced and _announced_pids(marker) == announced, "the rerun was held although the marker was gone"
    _assert_same_as_clean(_snapshot(out_uri), clean)

    success = Path(out_uri, "_SUCCESS").read_bytes()
    files = {p: p.stat().st_mtime_ns for p in Path(out_uri).rglob("*") if p.is_file()}
    t2 = time.monotonic()
    third = _cli_run(args, logs, "noop")
    t_noop = time.monotonic() - t2
    assert _json_report(third)["skipped"] is True
    assert "skipped (done)" in third
    assert Path(out_uri, "_SUCCESS").read_bytes() == success
    assert {p: p.stat().st_mtime_ns for p in Path(out_uri).rglob("*") if p.is_file()} == files
    print(f"\nkilled after {t_kill:.1f}s, rerun {t_rerun:.1f}s, no-op {t_noop:.1f}s")
