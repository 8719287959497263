"""bench/train worker: one training run under one launcher; rank 0 writes a JSON result.

    python bench/train/worker.py ray      --result R.json --spec S.json   # Ray Train TorchTrainer
    python bench/train/worker.py ray_loop --result R.json --spec S.json   # the stage's own loop + Ray Data
    torchrun --standalone --nproc_per_node 2 bench/train/worker.py torchrun --result R.json --spec S.json

``ray`` and ``torchrun`` run the same function (:func:`bench_worker`): the production
``build_engine`` (model load + DeepSpeed ZeRO init) and ``train_step`` (micro-batches,
forward/backward/step, loss/token all-reduce) from ``humanllm_ray.train.loop``, on the same
fixed synthetic token rows collated by the production ``collate``; only the launcher and the
process group's creator differ (Ray Train vs torchrun, both gloo). ``ray_loop`` runs the
unmodified ``train_loop_per_worker`` the train stage runs (Ray Data shard, reports, final
checkpoint, export) on the same rows.

Timestamps are ``time.time()`` (one machine, so comparable across processes); the driver
passes its launch time in the spec so start-up can be split into launcher / engine / steps.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from typing import Any, Dict, Iterator, List, Tuple


def load_cfg(spec: Dict[str, Any]):
    from humanllm_ray.config import load_config

    return load_config(overrides=list(spec["overrides"]))


def synthetic_rows(n_rows: int, seq_len: int, vocab: int, seed: int, prompt_frac: float = 0.25):
    """Fixed-length random token rows; labels mask the first ``prompt_frac`` (an SFT prompt)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(3, vocab, size=(n_rows, seq_len), dtype=np.int32)  # skip the special tokens
    labels = ids.copy()
    labels[:, : int(seq_len * prompt_frac)] = -100
    return ids, labels


def _memory_batches(ids, labels, micro_batch: int, pad_token_id: int) -> Iterator[Tuple[int, dict]]:
    """(epoch, collated micro-batch) forever over this rank's rows, collated per step like the stage."""
    import numpy as np

    from humanllm_ray.train.data import collate

    n = len(ids) // micro_batch
    epoch = 0
    while True:
        for i in range(n):
            sl = slice(i * micro_batch, (i + 1) * micro_batch)
            batch = {
                "input_ids": np.array(list(ids[sl]), dtype=object),
                "labels": np.array(list(labels[sl]), dtype=object),
            }
            yield epoch, collate(batch, pad_token_id)
        epoch += 1


def bench_worker(config: Dict[str, Any]) -> None:
    """Same body under Ray Train and under torchrun (torch.distributed already initialized)."""
    t_entry = time.time()
    import torch
    import torch.distributed as dist

    from humanllm_ray.model import ensure_base_model, load_tokenizer
    from humanllm_ray.train.loop import build_engine, train_step

    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.distributed")
    spec = config["spec"]
    cfg = load_cfg(spec)
    tcfg = cfg.train
    if tcfg.torch_threads:
        torch.set_num_threads(tcfg.torch_threads)
    rank, world = dist.get_rank(), dist.get_world_size()
    warmup, steps = spec["warmup_steps"], spec["steps"]

    model_dir = ensure_base_model(cfg)  # built by the driver beforehand: a cache hit here
    tokenizer = load_tokenizer(model_dir)
    engine, ds_config = build_engine(cfg, model_dir, world_size=world, total_steps=warmup + steps)
    t_engine = time.time()

    ids, labels = synthetic_rows(spec["n_rows"], spec["seq_len"], len(tokenizer), cfg.run.seed)
    batches = _memory_batches(ids[rank::world], labels[rank::world], tcfg.micro_batch_size, tokenizer.pad_token_id)
    accum = tcfg.gradient_accumulation_steps
    engine.train()
    history: List[Dict[str, Any]] = []
    for _ in range(warmup):
        history.append(train_step(engine, batches, accum, world))
    dist.barrier()
    t_steps = time.time()
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(steps):
        history.append(train_step(engine, batches, accum, world))
    dist.barrier()
    timed_s = time.perf_counter() - started
    # CPU seconds this process (all its threads) used per timed step, mean over ranks: less
    # sensitive than wall time to other tenants' load on a shared machine.
    cpu = torch.tensor([time.process_time() - cpu_started], dtype=torch.float64)
    dist.all_reduce(cpu)
    t_end = time.time()
    if rank == 0:
        result = {
            "launcher": config["launcher"],
            "world_size": world,
            "torch_threads": torch.get_num_threads(),
            "zero_stage": int(ds_config["zero_optimization"]["stage"]),
            "params": sum(getattr(p, "ds_numel", p.numel()) for p in engine.module.parameters()),
            "model_dir": model_dir,
            "steps": steps,
            "warmup_steps": warmup,
            "steps_per_s": steps / timed_s,
            "timed_s": timed_s,
            "tokens_per_s": sum(m["tokens"] for m in history[warmup:]) / timed_s,
            "step_time_s_sum": sum(m["step_time_s"] for m in history[warmup:]),
            "cpu_s_per_step": float(cpu[0]) / world / steps,
            "loss_first": history[0]["loss"],
            "loss_last": history[-1]["loss"],
            "t_entry": t_entry,
            "t_engine": t_engine,
            "t_steps": t_steps,
            "t_end": t_end,
            "history": history,
        }
        with open(config["result_path"], "w") as fh:
            json.dump(result, fh)


def _ray_init() -> None:
    import ray

    # address="local": always a fresh single-node cluster of our own, never another
    # engineer's running one (ray.shutdown() at the end stops only this one).
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=True,
        runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu", "PYTHONPATH": os.environ.get("PYTHONPATH", "")}},
    )


def run_ray(spec: Dict[str, Any], result_path: str) -> None:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cfg = load_cfg(spec)
    _ray_init()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-train-ray-") as storage:
            trainer = TorchTrainer(
                bench_worker,
                train_loop_config={"spec": spec, "result_path": result_path, "launcher": "ray"},
                scaling_config=ScalingConfig(
                    num_workers=cfg.train.num_workers, resources_per_worker={"CPU": cfg.train.cpus_per_worker}
                ),
                run_config=RunConfig(name="bench-train", storage_path=storage),
            )
            trainer.fit()
    finally:
        ray.shutdown()


def run_ray_loop(spec: Dict[str, Any], result_path: str) -> None:
    """The train stage's TorchTrainer call, minus tokenization: same loop, Ray Data shard, checkpoint, export."""
    import math

    import pyarrow as pa
    import ray
    import ray.data
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from humanllm_ray.model import ensure_base_model, load_tokenizer
    from humanllm_ray.train.loop import LoopSpec, train_loop_per_worker

    cfg = load_cfg(spec)
    tcfg = cfg.train
    _ray_init()
    try:
        model_dir = ensure_base_model(cfg)
        ids, labels = synthetic_rows(spec["n_rows"], spec["seq_len"], len(load_tokenizer(model_dir)), cfg.run.seed)
        table = pa.table(
            {
                "input_ids": pa.array([r.tolist() for r in ids], type=pa.list_(pa.int32())),
                "labels": pa.array([r.tolist() for r in labels], type=pa.list_(pa.int32())),
            }
        )
        ds = ray.data.from_arrow(table).randomize_block_order(seed=cfg.run.seed)
        total = spec["warmup_steps"] + spec["steps"]
        with tempfile.TemporaryDirectory(prefix="bench-train-rayloop-") as tmp:
            trainer = TorchTrainer(
                train_loop_per_worker,
                train_loop_config={
                    "spec": LoopSpec(
                        cfg=cfg,
                        base_model_dir=model_dir,
                        total_steps=total,
                        micro_batches_per_epoch=math.ceil((spec["n_rows"] // tcfg.num_workers) / tcfg.micro_batch_size),
                        model_uri=os.path.join(tmp, "model"),
                    )
                },
                scaling_config=ScalingConfig(
                    num_workers=tcfg.num_workers, resources_per_worker={"CPU": tcfg.cpus_per_worker}
                ),
                run_config=RunConfig(
                    name="bench-train-loop",
                    storage_path=os.path.join(tmp, "ckpt"),
                    checkpoint_config=CheckpointConfig(num_to_keep=1),
                ),
                datasets={"train": ds},
            )
            result = trainer.fit()
        out = result.return_value
        hist = out["history"]
        warm = spec["warmup_steps"]
        step_sum = sum(m["step_time_s"] for m in hist[warm:])
        with open(result_path, "w") as fh:
            json.dump(
                {
                    "launcher": "ray_loop",
                    "world_size": out["world_size"],
                    "zero_stage": out["zero_stage"],
                    "steps": spec["steps"],
                    "warmup_steps": warm,
                    # No per-step wall clock in the stage loop: steady state = summed in-step time
                    # (data fetch + fwd/bwd/step + all-reduce; excludes ray.train.report calls).
                    "steps_per_s": spec["steps"] / step_sum,
                    "step_time_s_sum": step_sum,
                    "tokens_per_s": sum(m["tokens"] for m in hist[warm:]) / step_sum,
                    # Whole loop incl. the report every report_every steps and the final checkpoint.
                    "loop_seconds": out["loop_seconds"],
                    "loop_steps_per_s": total / out["loop_seconds"],
                    "loss_first": hist[0]["loss"],
                    "loss_last": hist[-1]["loss"],
                    "history": hist,
                },
                fh,
            )
    finally:
        ray.shutdown()


def run_torchrun(spec: Dict[str, Any], result_path: str) -> None:
    import torch.distributed as dist

    # Ray Train's TorchTrainer on CPU makes a gloo group the same way (env:// rendezvous).
    dist.init_process_group(backend="gloo")
    try:
        bench_worker({"spec": spec, "result_path": result_path, "launcher": "torchrun"})
        # Leave together: rank 1 tearing gloo down while rank 0 still writes the result once
        # aborted at exit ("terminate called without an active exception", 1 run in ~15).
        dist.barrier()
    finally:
        dist.destroy_process_group()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("launcher", choices=["ray", "ray_loop", "torchrun"])
    ap.add_argument("--result", required=True, help="JSON file rank 0 writes")
    ap.add_argument("--spec", required=True, help="JSON run spec written by bench/train/run.py")
    args = ap.parse_args(argv)
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    with open(args.spec) as fh:
        spec = json.load(fh)
    {"ray": run_ray, "ray_loop": run_ray_loop, "torchrun": run_torchrun}[args.launcher](spec, args.result)


if __name__ == "__main__":
    sys.exit(main())
