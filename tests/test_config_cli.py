"""Config layering and CLI behaviour that needs no Ray."""

from __future__ import annotations

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


_POOL_PROBE = """
import json, sys
import pyarrow as pa
import ray
from humanllm_ray import runtime
from humanllm_ray.config import load_config

cfg = load_config(overrides=["run.num_cpus=1"] + sys.argv[1:])
runtime.init_ray(cfg)

@ray.remote
def worker_pool():
    import pyarrow as pa
    return pa.default_memory_pool().backend_name

print(json.dumps({"driver": pa.default_memory_pool().backend_name, "worker": ray.get(worker_pool.remote())}))
ray.shutdown()
"""


@pytest.mark.parametrize("override,want", [([], "system"), (["run.arrow_memory_pool=jemalloc"], "jemalloc"),
                                           (["run.arrow_memory_pool=null"], "mimalloc")])
def test_run_arrow_memory_pool_reaches_the_driver_and_the_ray_workers(tmp_path, override, want):
    """run.arrow_memory_pool is Arrow's pool in the driver and in the workers init_ray starts
    (default: the system allocator, which release_memory's malloc_trim can give back); null
    leaves pyarrow's own default (mimalloc)."""
    import json

    env = {k: v for k, v in os.environ.items() if k not in ("ARROW_DEFAULT_MEMORY_POOL", "RAY_ADDRESS")}
    proc = subprocess.run([sys.executable, "-c", _POOL_PROBE, *override], capture_output=True, text=True,
                          timeout=300, cwd=str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {"driver": want, "worker": want}


_RAY_ENV_PROBE = """
import json, sys
import psutil
import ray
from humanllm_ray import runtime
from humanllm_ray.config import load_config

runtime.init_ray(load_config(overrides=["run.num_cpus=1"] + sys.argv[2:]))
names = ("gcs_server", "raylet/raylet")
ray_procs = [p for p in psutil.Process().children(recursive=True) if any(n in " ".join(p.cmdline()) for n in names)]
print(json.dumps(sorted({p.environ().get(sys.argv[1]) for p in ray_procs}, key=str) if ray_procs else "no gcs/raylet"))
ray.shutdown()
"""


def _local_ray_env(tmp_path, var: str, override) -> list:
    """The values of ``var`` in the environment of the GCS and raylet that init_ray starts."""
    import json

    env = {k: v for k, v in os.environ.items() if k not in (var, "RAY_ADDRESS")}
    proc = subprocess.run([sys.executable, "-c", _RAY_ENV_PROBE, var, *override], capture_output=True, text=True,
                          timeout=300, cwd=str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("override,want", [([], "1000"), (["run.ray_task_events_max=2500"], "2500"),
                                           (["run.ray_task_events_max=null"], None)])
def test_run_ray_task_events_max_reaches_the_gcs_of_the_local_ray(tmp_path, override, want):
    """The GCS of the Ray that init_ray starts keeps the task events of run.ray_task_events_max
    tasks (null: Ray's own default, nothing set)."""
    assert _local_ray_env(tmp_path, "RAY_task_events_max_num_task_in_gcs", override) == [want]


@pytest.mark.parametrize("override,want", [([], "0"), (["run.ray_metrics=true"], None)])
def test_run_ray_metrics_reaches_the_local_ray(tmp_path, override, want):
    """The GCS and raylet of the Ray that init_ray starts (and so its workers) collect no
    metrics unless run.ray_metrics is on (then nothing is set: Ray's default, on)."""
    assert _local_ray_env(tmp_path, "RAY_enable_metrics_collection", override) == [want]


_HOOK_PROBE = """
import logging
import ray
from humanllm_ray import runtime
from humanllm_ray.config import load_config

runtime.init_ray(load_config(overrides=["run.num_cpus=1"]))
level = ray.get(ray.remote(lambda: logging.getLogger(runtime._TRAIN_PG_CLEANER_LOGGER).level).remote())
print("LEVEL", level)
ray.shutdown()
"""


def test_local_ray_workers_keep_the_train_pg_cleaners_warnings_quiet(tmp_path):
    """A local Ray serves no State API (no dashboard), so Ray Train's placement-group cleaner
    would warn every second of training; init_ray's worker setup hook raises that logger to
    ERROR in each worker it starts (checked in one)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run([sys.executable, "-c", _HOOK_PROBE], capture_output=True, text=True, timeout=300,
                          cwd=str(tmp_path), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LEVEL 40" in proc.stdout, proc.stdout[-2000:]


def test_run_ray_task_events_max_rejects_a_non_positive_cap():
    with pytest.raises(ConfigError, match="run.ray_task_events_max"):
        load_config(overrides=["run.ray_task_events_max=0"])


def test_run_arrow_memory_pool_rejects_an_unknown_allocator():
    with pytest.raises(ConfigError, match="run.arrow_memory_pool"):
        load_config(overrides=["run.arrow_memory_pool=tcmalloc"])
