"""The walking skeleton, end to end: `humanllm run` on the embedded default.

These run the real CLI in a subprocess (its own local Ray, DeepSpeed on CPU, the tiny
model) against a local run root; the S3 variant runs as a Ray job in test_cluster_jobs.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from humanllm_ray import storage

# A full run is a few minutes on an idle 2-core machine; allow for a busy one.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]

STAGE_DIRS = ["ingested", "curated", "synth", "qc", "tasks", "train", "merged", "publish", "eval"]

# The embedded default, shrunk where it only buys speed: fewer synthesis items (two of the
# six products, for 12 of the ~36 users: the others are tested in test_synth.py) and 24 steps
# of one epoch's 41 (still past the step-20 checkpoint; loss falls from ~8.4 to ~7.3 by then;
# the training paths are tested in test_train.py).
FAST = ["synth.products=[persona,social_qa]", "synth.max_users=12", "synth.max_posts_per_user=1", "train.epochs=1",
        "train.max_steps=24", "run.progress=false"]


def humanllm(*args, env=None, timeout=1800):
    proc = subprocess.run(
        [sys.executable, "-m", "humanllm_ray.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if proc.returncode != 0:
        raise AssertionError(f"humanllm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def check_reports(root: str):
    reports = {}
    for name in STAGE_DIRS:
        uri = storage.join(root, name)
        assert storage.exists(storage.join(uri, "_SUCCESS")), f"{name}: no _SUCCESS"
        report = storage.read_json(storage.join(uri, "_report.json"))
        assert report["rows_in"] == report["rows_out"] + report["rows_quarantined"] + report["rows_merged"], name
        reports[name] = report
    return reports


def assert_generates(model_dir: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    msgs = [{"role": "user", "content": "Write a short post about your weekend."}]
    enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=8, do_sample=False)
    assert out.shape[1] > enc["input_ids"].shape[1]


def published_versions(publish_uri: str, name: str):
    fs, path = storage.get_fs(storage.join(publish_uri, name))
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False) if fs.isdir(p))


def test_run_embedded_default_end_to_end(tmp_path):
    root = str(tmp_path / "run")
    proc = humanllm("run", f"run.root={root}", *FAST)
    reports = check_reports(root)

    # Real work happened in every stage.
    assert reports["ingested"]["by_platform"].keys() >= {"reddit", "twitter", "blogger", "amazon"}
    assert reports["curated"]["users"] >= 30
    assert reports["synth"]["rows_out"] > 0 and reports["qc"]["rows_out"] > 0
    assert reports["tasks"]["rows_out"] > 0
    train = reports["train"]
    assert train["zero_stage"] == 3 and train["num_workers"] == 2
    assert train["steps"] > 0 and train["loss_last"] < train["loss_first"]

    # The published model: manifest present, loads with plain transformers and generates.
    pub = reports["publish"]["published_uri"]
    manifest = storage.read_json(storage.join(pub, "manifest.json"))
    assert "config.json" in manifest["files"]
    assert_generates(pub)

    # Evaluation compared base and merged on held-out users.
    ev = storage.read_json(storage.join(root, "eval", "report.json"))
    assert {"base", "merged"} <= set(ev["models"])
    assert "published model" in proc.stdout
    # Ray Train's placement-group cleaner stays quiet on a local Ray (runtime.quiet_train_pg_cleaner).
    assert "State API may be temporarily unavailable" not in proc.stderr

    # A rerun with the same config is a no-op and publishes nothing new.
    versions = published_versions(storage.join(root, "published"), "humanllm-tiny")
    mtime = Path(root, "published", "humanllm-tiny", "latest").stat().st_mtime_ns
    again = humanllm("run", f"run.root={root}", *FAST, "--json")
    rerun = json.loads(again.stdout[again.stdout.index("\n{") :])
    not_skipped = [name for name, r in rerun.items() if not r.get("skipped")]
    assert not_skipped == [], f"stages that ran again on an identical rerun: {not_skipped}\n{again.stderr[-3000:]}"
    assert published_versions(storage.join(root, "published"), "humanllm-tiny") == versions
    assert Path(root, "published", "humanllm-tiny", "latest").stat().st_mtime_ns == mtime


# The full run against S3 (run root and published model in a bucket) is
# tests/test_cluster_jobs.py::test_ray_job_submit_runs_the_pipeline_on_s3: it goes through
# `ray job submit` as a cluster run does, and one full run there saves CI several minutes.
