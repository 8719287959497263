"""The training loop every Ray Train worker runs: DeepSpeed ZeRO over Ray's process group.

Per optimizer step a worker takes ``gradient_accumulation_steps`` micro-batches from its
Ray Data shard; DeepSpeed steps the optimizer and the (cosine, warmup) LR schedule on the
accumulation boundary. Every step's metrics are kept (and saved with checkpoints, so the
history survives a restart); ``ray.train.report`` gets them every ``report_every`` steps
(see TrainConfig for why not every step). Every ``checkpoint_every`` steps (and at the
end) each rank writes its DeepSpeed shard into its
own temporary folder and reports it, and Ray Train merges the ranks' folders into one
checkpoint in storage. A restarted worker group (``FailureConfig``) resumes from the newer of
``ray.train.get_checkpoint()`` and the newest complete checkpoint in the run's storage folder
(see :func:`newest_complete_checkpoint`): weights, optimizer, schedule, step, metric history,
and the position in the data (by skipping the micro-batches already consumed this epoch).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..config import HumanLLMConfig

log = logging.getLogger("humanllm")

TRAINER_STATE = "trainer_state.json"
# Collated tensors the model takes (packed batches carry position_ids instead of a mask).
MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids", "labels")


@dataclass(frozen=True)
class LoopSpec:
    """Everything a worker needs, decided once by the driver (so all ranks agree)."""

    cfg: HumanLLMConfig
    base_model_dir: str  # resolved by the driver (see resolve_base_model)
    total_steps: int
    micro_batches_per_epoch: int  # per worker; equal on every rank (equal streaming split)
    model_uri: str  # where rank 0 exports the final model
    fail_at_step: Optional[int] = None  # test hook: the last rank dies once, after this step
    # test hook: "before_checkpoint" (dies before this step's checkpoint, if one is due) or
    # "after_checkpoint" (right after this step's checkpoint report, before the controller takes it)
    fail_point: str = "before_checkpoint"
    run_uri: Optional[str] = None  # the Ray Train run folder in storage (its checkpoint_* folders)


@dataclass
class TrainerState:
    step: int = 0  # optimizer steps completed
    history: List[Dict[str, Any]] = field(default_factory=list)
    resumed_from_step: Optional[int] = None
    resumed_from: Optional[str] = None  # "ray" (registered checkpoint) or "storage" (found by a scan)


def resolve_base_model(spec: LoopSpec) -> str:
    """The base model folder on this worker's node.

    The driver's folder when this node has it (single node, shared cache); otherwise resolve
    it here. Building the tiny model must not happen in a worker if it can be avoided:
    under an initialized process group transformers' save_pretrained writes only on global
    rank 0, so a rank-1 build would cache a folder without weights.
    """
    from ..model import ensure_base_model

    if os.path.exists(os.path.join(spec.base_model_dir, "config.json")):
        return spec.base_model_dir
    return ensure_base_model(spec.cfg)


def _lr_schedule(total_steps: int, warmup_ratio: float):
    """Linear warmup then cosine decay, built by DeepSpeed on its base optimizer."""
    from transformers import get_cosine_schedule_with_warmup

    warmup = int(math.ceil(warmup_ratio * total_steps))
    return lambda optimizer: get_cosine_schedule_with_warmup(optimizer, warmup, total_steps)


def _micro_batches(shard, spec: LoopSpec, start_micro: int, pad_token_id: int) -> Iterator[Tuple[int, dict]]:
    """(epoch, padded micro-batch) forever, starting ``start_micro`` micro-batches in.

    Every rank yields exactly ``micro_batches_per_epoch`` per epoch: DeepSpeed's collectives
    need all ranks to step together, so a shard that runs short is an error, not a skip.
    """
    from .data import collate

    tcfg = spec.cfg.train
    epoch, skip = divmod(start_micro, spec.micro_batches_per_epoch)
    while True:
        seen = 0
        batches = shard.iter_batches(
            batch_size=tcfg.micro_batch_size,
            batch_format="numpy",
            local_shuffle_buffer_size=8 * tcfg.micro_batch_size,
            local_shuffle_seed=spec.cfg.run.seed + epoch,
        )
        for batch in batches:
            if seen >= spec.micro_batches_per_epoch:
                break
            if seen >= skip:
                yield epoch, collate(batch, pad_token_id)
            seen += 1
        if seen < spec.micro_batches_per_epoch:
            raise RuntimeError(
                f"data shard gave {seen} micro-batches in epoch {epoch}, planned {spec.micro_batches_per_epoch}"
            )
        epoch, skip = epoch + 1, 0


def skip_inference_comm_op() -> None:
    """Keep DeepSpeed from building its shared-memory comm op in this process.

    That op serves only ``inference_all_reduce`` (DeepSpeed-Inference's tensor parallelism on
    CPU); training's collectives go through torch.distributed (gloo here, NCCL on GPUs), with or
    without it. Yet DeepSpeed's CPU backend JIT-compiles it with g++ whenever it wraps the
    process group and finds no build of its own in ~/.cache/torch_extensions: 30-45 s of every
    training start on 2 CPUs where the cache misses (a fresh machine, another venv, or a job run
    from another context, each of which rebuilds it; measured: an 8-step train stage took 91 s
    with the build and 44 s without). DeepSpeed builds it only for ops it lists as compatible
    (``deepspeed.comm.torch.build_shm_op``), so this lists it as not. Harmless on GPUs, where
    the CUDA backend never builds it.
    """
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def build_engine(cfg: HumanLLMConfig, model_dir: str, *, world_size: int, total_steps: int):
    """(DeepSpeed engine, effective DeepSpeed config) for ``model_dir``, as every run builds it.

    Needs torch.distributed initialized (Ray Train's process group, or any other launcher's:
    bench/train runs this same function under torchrun).
    """
    import deepspeed
    import torch

    from ..model import load_model
    from .ds_config import build_deepspeed_config, has_own_optimizer
    from .export import lora_wrap

    tcfg = cfg.train
    torch.manual_seed(cfg.run.seed)
    # fp32 weights in; DeepSpeed casts to bf16 itself when bf16 is on (fp32 master copy).
    model = load_model(model_dir, "float32")
    model.config.use_cache = False
    if tcfg.lora.enabled:
        model = lora_wrap(model, tcfg.lora)
    ds_config = build_deepspeed_config(tcfg, world_size=world_size, hidden_size=model.config.hidden_size)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = (
        None
        if has_own_optimizer(ds_config)
        else torch.optim.AdamW(trainable, lr=tcfg.learning_rate, weight_decay=tcfg.weight_decay)
    )
    skip_inference_comm_op()
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        model_parameters=trainable,
        lr_scheduler=_lr_schedule(total_steps, tcfg.warmup_ratio),
        config=ds_config,
    )
    return engine, ds_config


def train_step(engine, batches: Iterator[Tuple[int, dict]], accum: int, world: int) -> Dict[str, Any]:
    """One optimizer step: ``accum`` micro-batches from ``batches``, then the loss/token all-reduce.

    Returns the step's metrics (epoch, mean loss over ranks, lr, tokens over ranks, timing).
    The timed span includes fetching and collating the micro-batches.
    """
    import torch
    import torch.distributed as dist

    started = time.perf_counter()
    lr = float(engine.get_lr()[0])
    loss_sum, tokens, epoch = 0.0, 0, 0
    for _ in range(accum):
        epoch, mb = next(batches)
        inputs = {k: mb[k].to(engine.device) for k in MODEL_INPUTS if k in mb}
        out = engine(**inputs, use_cache=False)
        engine.backward(out.loss)
        engine.step()  # optimizer + LR schedule step only on the accumulation boundary
        loss_sum += float(out.loss.detach().float())
        tokens += mb["n_tokens"]
    totals = torch.tensor([loss_sum / accum, float(tokens)], dtype=torch.float64)
    dist.all_reduce(totals)
    seconds = time.perf_counter() - started
    return {
        "epoch": epoch,
        "loss": float(totals[0]) / world,
        "lr": lr,
        "tokens": int(totals[1]),
        "tokens_per_s": float(totals[1]) / seconds if seconds > 0 else 0.0,
        "step_time_s": seconds,
    }


def _report_metrics(state: TrainerState, window: int) -> Dict[str, Any]:
    """This step's metrics plus the mean loss and throughput over the steps since the last report."""
    recent = state.history[-max(1, window) :]
    return {
        **state.history[-1],
        "loss_window_mean": sum(m["loss"] for m in recent) / len(recent),
        "tokens_per_s_window": sum(m["tokens"] for m in recent) / max(1e-9, sum(m["step_time_s"] for m in recent)),
    }


CHECKPOINT_DIR = "checkpoint_{step:06d}"
# Written by each rank into the checkpoint folder in storage after its ray.train.report returned,
# i.e. after its shard was uploaded (Ray Train v2 uploads synchronously inside report).
RANK_DONE = "_rank_done/{rank}-of-{world}"


def _mark_rank_done(spec: LoopSpec, step: int, rank: int, world: int) -> None:
    from .. import storage

    if spec.run_uri:
        folder = storage.join(spec.run_uri, CHECKPOINT_DIR.format(step=step))
        storage.write_text(storage.join(folder, RANK_DONE.format(rank=rank, world=world)), str(step))


def newest_complete_checkpoint(run_uri: str) -> Tuple[int, Optional[str]]:
    """(step, uri) of the newest checkpoint folder under ``run_uri`` that every rank finished
    uploading (trainer state present, one done-marker per rank of the world that saved it);
    (0, None) when there is none.

    Why: Ray Train v2 registers a checkpoint only when its controller takes the workers'
    reports, which it polls every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S. A worker that dies after
    uploading its shard but before that poll takes the report with it, and
    ``ray.train.get_checkpoint()`` in the restarted group returns the checkpoint before. The
    shards are in storage all the same; this finds them. A folder a rank died while writing
    has no marker from that rank and is skipped."""
    from .. import storage

    states, marks = {}, {}
    for f in storage.ls_files(run_uri):  # one recursive listing
        rel = f[len(run_uri.rstrip("/")) + 1:].replace("\\", "/")
        m = re.fullmatch(r"checkpoint_(\d+)/(.+)", rel)
        if not m:
            continue
        step, name = int(m.group(1)), m.group(2)
        if name == TRAINER_STATE:
            states[step] = storage.join(run_uri, f"checkpoint_{m.group(1)}")
        done = re.fullmatch(r"_rank_done/(\d+)-of-(\d+)", name)
        if done:
            marks.setdefault(step, set()).add((int(done.group(1)), int(done.group(2))))
    for step in sorted(states, reverse=True):
        worlds = {w for _r, w in marks.get(step, ())}
        if len(worlds) == 1:
            world = worlds.pop()
            if {(r, world) for r in range(world)} <= marks[step]:
                return step, states[step]
    return 0, None


def _checkpoint_step(checkpoint) -> int:
    if checkpoint is None:
        return 0
    m = re.search(r"checkpoint_(\d+)$", checkpoint.path.rstrip("/"))
    return int(m.group(1)) if m else 0


def _resume_checkpoint(spec: LoopSpec, rank: int):
    """The checkpoint this worker group resumes from, the same on every rank (rank 0 decides
    and broadcasts): the newer of Ray Train's registered one and the newest complete one in
    storage. Returns (checkpoint or None, "ray" / "storage" / None)."""
    import ray.train
    import torch.distributed as dist

    from .. import storage

    registered = ray.train.get_checkpoint()
    choice = [None]
    if rank == 0 and spec.run_uri:
        step, uri = newest_complete_checkpoint(spec.run_uri)
        if uri and step > _checkpoint_step(registered):
            choice = [uri]
    if dist.is_available() and dist.is_initialized():
        dist.broadcast_object_list(choice, src=0)
    if choice[0]:
        path, fs = storage.arrow_fs(choice[0])
        return ray.train.Checkpoint(path=path, filesystem=fs), "storage"
    return registered, ("ray" if registered is not None else None)


def _save_checkpoint(engine, state: TrainerState, rank: int, metrics: Dict[str, Any], spec: LoopSpec,
                     world: int) -> None:
    import ray.train

    tmp = tempfile.mkdtemp(prefix="humanllm-ckpt-")
    try:
        tag = f"step{state.step}"
        engine.save_checkpoint(tmp, tag=tag, client_state={"step": state.step})
        if rank == 0:
            with open(os.path.join(tmp, TRAINER_STATE), "w") as fh:
                json.dump({"step": state.step, "tag": tag, "history": state.history}, fh)
        ray.train.report(
            metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp),
            checkpoint_dir_name=CHECKPOINT_DIR.format(step=state.step)
        )
        _mark_rank_done(spec, state.step, rank, world)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _restore(engine, checkpoint) -> TrainerState:
    with checkpoint.as_directory() as folder:
        with open(os.path.join(folder, TRAINER_STATE)) as fh:
            saved = json.load(fh)
        load_path, _client = engine.load_checkpoint(
            folder, tag=saved["tag"], load_optimizer_states=True, load_lr_scheduler_states=True
        )
        if load_path is None:
            raise RuntimeError(f"DeepSpeed could not load checkpoint {saved['tag']} from {checkpoint.path}")
    return TrainerState(step=int(saved["step"]), history=list(saved["history"]), resumed_from_step=int(saved["step"]))


def train_loop_per_worker(config: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    import ray
    import ray.train
    import torch
    import torch.distributed as dist

    from .. import storage
    from ..model import load_tokenizer
    from .ds_config import zero_stage_of
    from .export import export_hf_model, gather_state_dict

    spec: LoopSpec = config["spec"]
    cfg, tcfg = spec.cfg, spec.cfg.train
    # DeepSpeed calls torch.distributed's deprecated collective names on every step; the
    # FutureWarning per call would flood the driver's log.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.distributed")
    storage.configure(cfg.s3)
    if tcfg.torch_threads:
        torch.set_num_threads(tcfg.torch_threads)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()

    model_dir = resolve_base_model(spec)
    tokenizer = load_tokenizer(model_dir)
    engine, ds_config = build_engine(cfg, model_dir, world_size=world, total_steps=spec.total_steps)

    state = TrainerState()
    checkpoint, source = _resume_checkpoint(spec, rank)
    if checkpoint is not None:
        state = _restore(engine, checkpoint)
        state.resumed_from = source
        if rank == 0:
            log.info("resumed from step %d (%s, found by %s)", state.step, checkpoint.path,
                     "Ray Train" if source == "ray" else "a scan of the run's storage folder")

    accum = tcfg.gradient_accumulation_steps
    batches = _micro_batches(
        ray.train.get_dataset_shard("train"), spec, state.step * accum, tokenizer.pad_token_id
    )
    engine.train()
    loop_started = time.perf_counter()
    for step_index in range(state.step, spec.total_steps):
        metrics = {"step": step_index + 1, **train_step(engine, batches, accum, world)}
        state.step = step_index + 1
        state.history.append(metrics)

        dies_here = spec.fail_at_step == state.step and rank == world - 1 and state.resumed_from_step is None
        if dies_here and spec.fail_point == "before_checkpoint":
            # Test hook (HUMANLLM_TEST_FAIL_AT_STEP): a worker process dies abruptly, once —
            # a restarted group has a checkpoint to resume from and does not fail again.
            log.warning("test hook: worker rank %d exits at step %d", rank, state.step)
            os._exit(1)

        last = state.step == spec.total_steps
        checkpoint_due = last or (tcfg.checkpoint_every > 0 and state.step % tcfg.checkpoint_every == 0)
        if checkpoint_due:  # the final state is always checkpointed
            _save_checkpoint(engine, state, rank, _report_metrics(state, tcfg.report_every), spec, world)
        elif state.step % max(1, tcfg.report_every) == 0:
            ray.train.report(_report_metrics(state, tcfg.report_every))
        if dies_here and spec.fail_point == "after_checkpoint":
            # Test hook: die right after this step's checkpoint report, before the controller's
            # next poll takes it (the case newest_complete_checkpoint exists for).
            log.warning("test hook: worker rank %d exits after its step-%d checkpoint", rank, state.step)
            os._exit(1)

    loop_seconds = time.perf_counter() - loop_started  # this attempt's steps incl. reports/checkpoints
    # Which Ray node each rank ran on (train report: worker_nodes {rank: node_id}); a
    # collective, so every rank takes part; rank 0 keeps the list.
    worker_nodes: List[Any] = [None] * world
    dist.all_gather_object(worker_nodes, (rank, ray.get_runtime_context().get_node_id()))
    state_dict = gather_state_dict(engine)  # collective under ZeRO-3
    if rank != 0:
        return None
    export_hf_model(
        state_dict, base_model_dir=model_dir, dest_uri=spec.model_uri, lora_cfg=tcfg.lora, dtype=cfg.model.dtype
    )
    return {
        "history": state.history,
        "resumed_from_step": state.resumed_from_step,
        "resumed_from": state.resumed_from,
        "steps": state.step,
        "zero_stage": zero_stage_of(ds_config),
        "deepspeed_config": ds_config,
        "world_size": world,
        "loop_seconds": loop_seconds,
        "worker_nodes": {str(r): node for r, node in sorted(worker_nodes)},
    }
