"""Config layering and CLI behaviour that needs no Ray."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from humanllm_ray.config import ConfigError, config_hash, load_config


def test_defaults_and_overrides_layer(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("train:\n  num_workers: 3\n  zero_stage: 2\n")
    cfg = load_config([str(extra)], ["train.num_workers=5", "run.root=/tmp/x"])
    assert cfg.train.num_workers == 5  # override beats file
    assert cfg.train.zero_stage == 2  # file beats default
    assert cfg.run.root == "/tmp/x"
    assert cfg.merge.weights == [0.5, 0.5]  # the paper's merge


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.no_such_key=1", "train.no_such_key"),
        ("train.num_workers=two", "train.num_workers"),
        ("synth.engine=gpt", "synth.engine"),
        ("merge.method=average", "merge.method"),
    ],
)
def test_bad_key_or_type_is_one_line_error_naming_the_key(override, key):
    with pytest.raises(ConfigError) as info:
        load_config(overrides=[override])
    msg = str(info.value)
    assert key in msg and "\n" not in msg


def test_missing_config_file_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config([str(tmp_path / "nope.yaml")])


def test_config_hash_tracks_values():
    a = load_config(overrides=["train.epochs=1"])
    b = load_config(overrides=["train.epochs=2"])
    assert config_hash(a.train) != config_hash(b.train)
    assert config_hash(a.train) == config_hash(load_config(overrides=["train.epochs=1"]).train)


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "humanllm_ray.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def test_cli_bad_key_fails_fast_before_any_work(tmp_path):
    root = tmp_path / "run"
    proc = _cli("run", f"run.root={root}", "train.zero_stag=3")
    assert proc.returncode == 2
    assert "train.zero_stag" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not root.exists()  # nothing started, nothing written


def test_cli_config_show_prints_merged_config():
    proc = _cli("config", "show", "train.num_workers=7")
    assert proc.returncode == 0, proc.stderr
    assert "num_workers: 7" in proc.stdout
    assert "zero_stage: 3" in proc.stdout


def test_cli_help_lists_every_stage():
    proc = _cli("--help")
    assert proc.returncode == 0
    for stage in ("run", "ingest", "curate", "synthesize", "qc", "build-tasks", "train", "merge", "publish", "evaluate"):
        assert stage in proc.stdout


_RAY_PROBE = """
import json, logging, sys
import psutil
import pyarrow as pa
import ray
from humanllm_ray import runtime
from humanllm_ray.config import load_config

runtime.init_ray(load_config(overrides=["run.num_cpus=1"] + sys.argv[1:]))

@ray.remote
def in_a_worker():
    import pyarrow as pa
    return pa.default_memory_pool().backend_name, logging.getLogger(runtime._TRAIN_PG_CLEANER_LOGGER).level

names = ("gcs_server", "raylet/raylet")
ray_procs = [p for p in psutil.Process().children(recursive=True) if any(n in " ".join(p.cmdline()) for n in names)]
pool, cleaner_level = ray.get(in_a_worker.remote())
print(json.dumps({
    "driver_pool": pa.default_memory_pool().backend_name, "worker_pool": pool, "cleaner_level": cleaner_level,
    "ray_procs": len(ray_procs),
    "env": {var: sorted({p.environ().get(var) for p in ray_procs}, key=str)
            for var in ("RAY_task_events_max_num_task_in_gcs", "RAY_enable_metrics_collection")},
}))
ray.shutdown()
"""


# One local Ray per case, each checking every run.* setting init_ray hands to Ray (a Ray start
# is ~11 s of a loaded CI run; one per setting and value took 9 of them).
@pytest.mark.parametrize("override,want", [
    ([], {"pool": "system", "task_events": "1000", "metrics": "0"}),
    (["run.arrow_memory_pool=jemalloc", "run.ray_task_events_max=2500", "run.ray_metrics=true"],
     {"pool": "jemalloc", "task_events": "2500", "metrics": None}),
    (["run.arrow_memory_pool=null", "run.ray_task_events_max=null"],
     {"pool": "mimalloc", "task_events": None, "metrics": "0"}),
], ids=["defaults", "set", "null"])
def test_run_settings_reach_the_local_ray_and_its_workers(tmp_path, override, want):
    """What init_ray starts gets the run.* settings:
    - run.arrow_memory_pool is Arrow's pool in the driver and in the workers (default: the
      system allocator, which release_memory's malloc_trim can give back; null leaves
      pyarrow's own default, mimalloc);
    - the GCS keeps the task events of run.ray_task_events_max tasks (null: Ray's own default,
      nothing set);
    - the GCS and raylet (and so the workers) collect no metrics unless run.ray_metrics is on
      (then nothing is set: Ray's default, on);
    - a local Ray serves no State API (no dashboard), so Ray Train's placement-group cleaner
      would warn every second of training: init_ray's worker setup hook raises that logger to
      ERROR in each worker it starts (checked in one)."""
    import json

    drop = ("ARROW_DEFAULT_MEMORY_POOL", "RAY_ADDRESS", "RAY_task_events_max_num_task_in_gcs",
            "RAY_enable_metrics_collection")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    proc = subprocess.run([sys.executable, "-c", _RAY_PROBE, *override], capture_output=True, text=True,
                          timeout=300, cwd=str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["ray_procs"] >= 2, got  # a GCS and a raylet were found
    assert got["driver_pool"] == got["worker_pool"] == want["pool"], got
    assert got["env"] == {"RAY_task_events_max_num_task_in_gcs": [want["task_events"]],
                          "RAY_enable_metrics_collection": [want["metrics"]]}, got
    assert got["cleaner_level"] == logging.ERROR, got


def test_run_ray_task_events_max_rejects_a_non_positive_cap():
    with pytest.raises(ConfigError, match="run.ray_task_events_max"):
        load_config(overrides=["run.ray_task_events_max=0"])


def test_run_arrow_memory_pool_rejects_an_unknown_allocator():
    with pytest.raises(ConfigError, match="run.arrow_memory_pool"):
        load_config(overrides=["run.arrow_memory_pool=tcmalloc"])
