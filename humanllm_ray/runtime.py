"""Process-level setup shared by the CLI, jobs and tests: logging, Ray, run paths."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Optional

from . import storage
from .config import HumanLLMConfig

log = logging.getLogger("humanllm")


def setup_logging(level: str = "INFO") -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("humanllm").setLevel(level)
    # Ray Data logs every execution plan at INFO; our stages log what they did, so keep
    # Ray's own chatter for debugging sessions.
    if logging.getLevelName(level) != logging.DEBUG:
        # Ray Data configures its own logger (level DEBUG, console INFO) when imported;
        # RAY_DATA_LOG_LEVEL is the knob it honours. Set it to INFO/DEBUG to see plans again.
        os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")
        for name in ("ray.data", "ray.train", "ray.tune"):
            logging.getLogger(name).setLevel(logging.WARNING)


ARROW_POOL_ENV = "ARROW_DEFAULT_MEMORY_POOL"


def use_arrow_memory_pool(name: Optional[str]) -> None:
    """Make ``name`` (``run.arrow_memory_pool``) Arrow's memory pool in this process and in the
    Ray workers started after it: the environment variable reaches a local Ray's workers (they
    inherit it) and a cluster's (``init_ray`` passes it in the runtime env); this process may
    have used Arrow already, so its pool is also set directly. None leaves both alone."""
    if not name:
        return
    import pyarrow as pa

    pools = {"system": pa.system_memory_pool, "mimalloc": pa.mimalloc_memory_pool,
             "jemalloc": pa.jemalloc_memory_pool}
    if name not in pools:
        raise ValueError(f"run.arrow_memory_pool: {name!r} is not one of {sorted(pools)}")
    os.environ[ARROW_POOL_ENV] = name
    pa.set_memory_pool(pools[name]())


TASK_EVENTS_ENV = "RAY_task_events_max_num_task_in_gcs"
METRICS_ENV = "RAY_enable_metrics_collection"


def set_local_ray_env(run) -> None:
    """The settings a Ray started after this reads from the environment, from ``run``
    (``RunConfig``), each unless the environment already says: the GCS's task-event cap
    (``run.ray_task_events_max``; None leaves Ray's default) and, with ``run.ray_metrics``
    off, no metrics collection. Only a Ray this process starts reads them: its GCS, raylet
    and workers inherit them."""
    if run.ray_task_events_max:
        os.environ.setdefault(TASK_EVENTS_ENV, str(int(run.ray_task_events_max)))
    if not run.ray_metrics:
        os.environ.setdefault(METRICS_ENV, "0")


def prepare_local_ray(run) -> None:
    """What ``init_ray`` sets up before it starts a local Ray, for a process that starts one
    itself (the tests' shared Ray, bench/curate's children): ``run`` (``RunConfig``)'s Arrow pool
    and the Ray settings of :func:`set_local_ray_env`."""
    use_arrow_memory_pool(run.arrow_memory_pool)
    set_local_ray_env(run)


# Ray Train's placement-group cleaner (a detached actor beside each training run) asks the
# State API every second whether the run's controller is alive; a local Ray started without its
# dashboard serves no State API, so without this it logs a warning a second for the whole of
# training. It has nothing to guard there: a local Ray's placement groups end with its driver.
_TRAIN_PG_CLEANER_LOGGER = "ray.train.v2._internal.execution.controller.placement_group_cleaner"


def quiet_train_pg_cleaner() -> None:
    """``worker_process_setup_hook`` of a local Ray started by :func:`init_ray` (runs in each of
    its worker processes): the cleaner's State-API warnings off, its errors still shown."""
    logging.getLogger(_TRAIN_PG_CLEANER_LOGGER).setLevel(logging.ERROR)


def init_ray(cfg: HumanLLMConfig) -> None:
    """Join the cluster named by run.ray_address, or start a local one."""
    import ray

    if ray.is_initialized():
        return
    # Quiet, local-first defaults; a real cluster sets its own.
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("DS_ACCELERATOR", "cpu" if not cfg.train.use_gpu else os.environ.get("DS_ACCELERATOR", "cuda"))
    use_arrow_memory_pool(cfg.run.arrow_memory_pool)
    env_vars = {k: v for k, v in os.environ.items()
                if k.startswith(("AWS_", "HUMANLLM_", "DS_ACCELERATOR", "HF_", ARROW_POOL_ENV))}
    runtime_env = {"env_vars": env_vars} if env_vars else {}
    kwargs = dict(ignore_reinit_error=True, log_to_driver=True)
    address = cfg.run.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, runtime_env=runtime_env or None, **kwargs)
    else:
        set_local_ray_env(cfg.run)
        kwargs.update(include_dashboard=False,
                      runtime_env={**runtime_env, "worker_process_setup_hook": f"{__name__}.quiet_train_pg_cleaner"})
        if cfg.run.object_store_memory_mb:
            kwargs["object_store_memory"] = int(cfg.run.object_store_memory_mb) * 2**20
        ray.init(num_cpus=cfg.run.num_cpus, **kwargs)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = bool(cfg.run.progress)
    log.info("ray: %s", ray.cluster_resources())


@dataclass(frozen=True)
class RunPaths:
    """Where each stage writes under run.root (DESIGN.md, "Run layout")."""

    root: str

    @classmethod
    def from_config(cls, cfg: HumanLLMConfig) -> "RunPaths":
        return cls(storage.normalize(cfg.run.root))

    def _j(self, *p: str) -> str:
        return storage.join(self.root, *p)

    @property
    def ingested(self) -> str:
        return self._j("ingested")

    @property
    def curated(self) -> str:
        return self._j("curated")

    @property
    def synth(self) -> str:
        return self._j("synth")

    @property
    def qc(self) -> str:
        return self._j("qc")

    @property
    def tasks(self) -> str:
        return self._j("tasks")

    @property
    def train(self) -> str:
        return self._j("train")

    @property
    def merged(self) -> str:
        return self._j("merged")

    @property
    def publish(self) -> str:
        return self._j("publish")

    @property
    def eval(self) -> str:
        return self._j("eval")

    def publish_uri(self, cfg: HumanLLMConfig) -> str:
        return storage.normalize(cfg.publish.uri) if cfg.publish.uri else self._j("published")

    def checkpoints(self, cfg: HumanLLMConfig) -> str:
        return storage.normalize(cfg.train.storage_path) if cfg.train.storage_path else self._j("train", "checkpoints")


def local_cache_dir(cfg: Optional[HumanLLMConfig] = None) -> str:
    base = cfg.model.cache_dir if cfg is not None else "~/.cache/humanllm_ray"
    path = os.path.expanduser(base)
    os.makedirs(path, exist_ok=True)
    return path
