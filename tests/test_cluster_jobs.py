"""The pipeline on a real Ray cluster: a `ray start` head taking `ray job submit`, and two
Ray nodes sharing the curate and train work.

Both tests start their own Ray processes, isolated from the session's `ray_local` and from
any other Ray on this machine: a private temp dir (RAY_TMPDIR / --temp-dir, so the address
file other drivers look up is not touched), free ports for everything that would otherwise
take a fixed one (GCS, dashboard, dashboard agent, Ray client server), and at the end only
the processes of that session are stopped — never a global `ray stop`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = os.path.dirname(sys.executable)
RAY = shutil.which("ray", path=VENV_BIN) or shutil.which("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_processes(marker: str):
    """Processes whose command line names ``marker`` (the session's temp dir), and their children."""
    import psutil

    found = {}
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(marker in part for part in (p.info["cmdline"] or [])):
                found[p.pid] = p
                for c in p.children(recursive=True):
                    found[c.pid] = c
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return list(found.values())


def _stop_session(marker: str) -> None:
    """Stop exactly the Ray processes of one session (those under our temp dir)."""
    import psutil

    procs = _session_processes(marker)
    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=15)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)


def _wait_http(url: str, timeout: float = 90) -> None:
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(1)
    raise AssertionError(f"{url} did not answer in {timeout:.0f}s: {last}")


def _isolated_env(tmpdir: str) -> dict:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env["RAY_TMPDIR"] = tmpdir
    env["RAY_AUTH_MODE"] = "disabled"  # the CLI does not send 2.60's auth token (STACK-NOTES)
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")  # the job's `python` is this venv's
    return env


def _submit_when_the_agent_is_up(cmd: list, timeout: float, agent_wait: float = 120, **kw):
    """``ray job submit``, again while the head answers that no job agent is up yet: the
    dashboard answers a few seconds before the dashboard agent registers, and on a loaded CI
    machine a submit in between failed with HTTP 500 "No available agent to submit job" (no job
    was created, so submitting again is safe)."""
    deadline = time.time() + agent_wait
    while True:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
        if proc.returncode == 0 or "No available agent to submit job" not in proc.stdout + proc.stderr \
                or time.time() > deadline:
            return proc
        time.sleep(2)


# The whole pipeline takes ~5 min on a quiet 2-core machine, several times that on a busy
# one: more than the suite's default 900 s timeout.
@pytest.mark.timeout(3000)
def test_ray_job_submit_runs_the_pipeline_on_s3(tmp_path, s3_bucket):
    """`ray start --head` + `ray job submit` of jobs/pipeline.py, the way a cluster runs it:
    the job joins the cluster (it does not start its own Ray), keeps its run root and the
    published model in object storage (moto's S3 server), runs every stage, and the model
    loads back from the bucket. (This is also the suite's full run against S3.)"""
    assert RAY, "the ray CLI is not installed"
    # /tmp, not tmp_path: Unix socket paths under the session dir must stay < 108 bytes.
    ray_tmp = tempfile.mkdtemp(prefix="hljob-", dir="/tmp")
    env = _isolated_env(ray_tmp)
    gcs_port, dash_port, agent_port, client_port = (_free_port() for _ in range(4))
    dash = f"http://127.0.0.1:{dash_port}"
    root = f"{s3_bucket}/runs/job"
    models = f"{s3_bucket}/models"
    start = subprocess.run(
        [RAY, "start", "--head", "--num-cpus=2", f"--port={gcs_port}", "--node-ip-address=127.0.0.1",
         "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}", f"--dashboard-agent-listen-port={agent_port}",
         f"--ray-client-server-port={client_port}", "--disable-usage-stats", f"--temp-dir={ray_tmp}"],
        env=env, capture_output=True, text=True, timeout=180,
    )
    try:
        assert start.returncode == 0, f"ray start failed:\n{start.stdout[-3000:]}\n{start.stderr[-3000:]}"
        _wait_http(f"{dash}/api/version")  # the dashboard answers a few seconds after `ray start`
        t0 = time.time()
        submit = _submit_when_the_agent_is_up(
            [RAY, "job", "submit", "--address", dash, "--working-dir", str(REPO_ROOT),
             "--runtime-env-json", json.dumps({"excludes": [".venv", ".venv-vllm", "runs", "bench/out", ".git"]}),
             "--", "python", "jobs/pipeline.py", f"run.root={root}", f"publish.uri={models}",
             f"s3.endpoint_url={os.environ['AWS_ENDPOINT_URL']}",
             # 8 users' synthesis and 8 steps: what this test checks is the job's way through the
             # cluster and S3, not how much it synthesizes or trains (test_e2e, test_synth and
             # test_train check those); each step is ~1.5 s on 2 CPUs, each user ~1 s of synthesis + QC.
             "synth.products=[persona,social_qa]", "synth.max_users=8", "synth.max_posts_per_user=1",
             "train.epochs=1", "train.max_steps=8", "run.progress=false"],
            env=env, timeout=2700, cwd=REPO_ROOT,
        )
        out = submit.stdout + submit.stderr
        (tmp_path / "job.log").write_text(out)  # the job's own log, streamed back by `ray job submit`
        print(f"\nray job submit: rc={submit.returncode} in {time.time() - t0:.0f}s (log: {tmp_path / 'job.log'})")
        assert submit.returncode == 0, f"job failed:\n{out[-8000:]}"
        job_id = re.search(r"raysubmit_\w+", out).group(0)
        from ray.job_submission import JobStatus, JobSubmissionClient

        client = JobSubmissionClient(dash)
        assert client.get_job_status(job_id) == JobStatus.SUCCEEDED

        # The job's driver joined this cluster (RAY_ADDRESS set by the job supervisor) ...
        assert "Connecting to existing Ray cluster" in out, out[-4000:]
        assert "Started a local Ray instance" not in out
        # ... with the working dir uploaded to the cluster as a package.
        info = client.get_job_info(job_id)
        assert str(info.runtime_env.get("working_dir", "")).startswith("gcs://"), info.runtime_env

        from humanllm_ray import publish, storage

        storage.configure(None)
        for stage in ("ingested", "curated", "synth", "qc", "tasks", "train", "merged", "publish", "eval"):
            uri = storage.join(root, stage)
            assert storage.exists(storage.join(uri, "_SUCCESS")), f"{stage}: no _SUCCESS in {uri}"
            report = storage.read_json(storage.join(uri, "_report.json"))
            assert report["rows_in"] == report["rows_out"] + report["rows_quarantined"] + report["rows_merged"], stage
        local = publish.load(f"{models}/humanllm-tiny", str(tmp_path / "loaded"))
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tok = AutoTokenizer.from_pretrained(local)
        model = AutoModelForCausalLM.from_pretrained(local)
        enc = tok.apply_chat_template([{"role": "user", "content": "Say hi."}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        out = model.generate(**enc, max_new_tokens=4, do_sample=False)
        assert out.shape[1] > enc["input_ids"].shape[1]
    finally:
        _stop_session(ray_tmp)
        assert not _session_processes(ray_tmp), "processes of the test's Ray head survived"
        shutil.rmtree(ray_tmp, ignore_errors=True)


@pytest.mark.timeout(1800)
def test_two_nodes_share_curate_and_training(tmp_path):
    """ray.cluster_utils.Cluster with two nodes (tests/two_node_script.py, in a subprocess so
    it cannot meet the session's Ray): the curate record pass and the two ZeRO-3 workers run
    on both nodes, as the stage reports show."""
    ray_tmp = tempfile.mkdtemp(prefix="hl2n-", dir="/tmp")
    env = _isolated_env(ray_tmp)
    try:
        proc = subprocess.run(
            [sys.executable, str(REPO_ROOT / "tests" / "two_node_script.py"), str(tmp_path)],
            env=env, capture_output=True, text=True, timeout=1500, cwd=REPO_ROOT,
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"two-node script failed ({proc.returncode}):\n{out[-8000:]}"
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
        assert line, out[-4000:]
        res = json.loads(line[len("RESULT "):])
        print("\ntwo nodes:", json.dumps(res, indent=1))
        nodes = set(res["cluster_nodes"])
        assert len(nodes) == 2
        # curate: every record processed once, on both nodes
        assert set(res["curate_nodes"]) == nodes, res["curate_nodes"]
        assert sum(res["curate_nodes"].values()) == res["curate_rows_in"]
        # train: rank -> node, one worker per node
        assert sorted(res["train_worker_nodes"]) == ["0", "1"]
        assert set(res["train_worker_nodes"].values()) == nodes, res["train_worker_nodes"]
        assert res["train_steps"] == 4
    finally:
        _stop_session(ray_tmp)  # normally a no-op: Cluster.shutdown() stopped its nodes
        shutil.rmtree(ray_tmp, ignore_errors=True)
