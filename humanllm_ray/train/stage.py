"""The train stage: SFT on the task examples with Ray Train + DeepSpeed ZeRO.

Driver side, in order:
1. Ray Data tokenizes ``{tasks}/train`` with the base model's chat template (labels only on
   the assistant turn), truncates to ``train.max_length`` and quarantines examples left
   with no assistant token (``too_long``); optionally packs them.
2. A ``TorchTrainer`` streams the result into ``train.num_workers`` workers (one equal
   shard each) running :func:`loop.train_loop_per_worker`; checkpoints go to
   ``train.storage_path`` (default ``{train}/checkpoints``, local or ``s3://``) under a run
   name derived from the config and input hash, so a rerun of an unfinished stage resumes
   from its last checkpoint and a changed config starts afresh.
3. Rank 0 exports the consolidated model to ``{train}/model``; the driver writes
   ``metrics.jsonl``, ``loss_curve.png`` and the report.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any, Dict, Optional

import pyarrow as pa
import pyarrow.compute as pc

from .. import storage
from ..config import HumanLLMConfig, config_hash
from ..runtime import RunPaths, init_ray
from ..stage import StageDir, StageResult, quarantine_schema, run_stage
from .data import pack_batch, tokenize_batch, tokenizer_files
from .ds_config import load_raw, zero_stage_of
from .loop import LoopSpec, train_loop_per_worker
from .metrics import mean_of, plot_loss_curve, write_metrics_jsonl

log = logging.getLogger("humanllm")

STAGE = "train"
FAIL_AT_STEP_ENV = "HUMANLLM_TEST_FAIL_AT_STEP"
FAIL_POINT_ENV = "HUMANLLM_TEST_FAIL_POINT"  # before_checkpoint (default) or after_checkpoint
# Rows handed to pack_batch at once: more rows pack tighter, at the cost of memory per task.
PACKING_BATCH_ROWS = 512


def train_split_uri(input_uri: str) -> str:
    """The training split of a tasks stage folder, or input_uri itself if it is a bare Parquet folder."""
    candidate = storage.join(input_uri, "train")
    return candidate if storage.exists(candidate) else input_uri


def _to_quarantine(batch: pa.Table) -> pa.Table:
    rows = [
        {
            "stage": STAGE,
            "reason": r["reason"],
            "detail": f"{r['n_tokens']} tokens kept of a longer example, {r['n_target_tokens']} of them assistant",
            "platform": r["platform"],
            "source_file": "",
            "source_line": -1,
            "record_id": r["example_id"],
            "user_id": r["user_id"],
            "raw": json.dumps({"task": r["task"], "example_id": r["example_id"]}),
        }
        for r in batch.to_pylist()
    ]
    return pa.Table.from_pylist(rows, schema=quarantine_schema())


def _as_uri(path: str, like_uri: str) -> str:
    return f"{like_uri.split('://', 1)[0]}://{path}" if storage.is_remote(like_uri) else path


def _fail_at_step() -> Optional[int]:
    value = os.environ.get(FAIL_AT_STEP_ENV)
    return int(value) if value else None


def _fail_point() -> str:
    return os.environ.get(FAIL_POINT_ENV) or "before_checkpoint"


def run(cfg: HumanLLMConfig, input_uri: Optional[str] = None, output_uri: Optional[str] = None) -> Dict[str, Any]:
    """Fine-tune the base model on the task examples; returns the stage report."""
    storage.configure(cfg.s3)
    init_ray(cfg)
    paths = RunPaths.from_config(cfg)
    input_uri = storage.normalize(input_uri or paths.tasks)
    output_uri = storage.normalize(output_uri or paths.train)
    tcfg = cfg.train
    if tcfg.storage_path:
        checkpoint_root = storage.normalize(tcfg.storage_path)
    else:
        checkpoint_root = storage.join(output_uri, "checkpoints")

    fingerprint = {
        "train": config_hash(tcfg),
        "model": cfg.model.base,
        "tiny": config_hash(cfg.model.tiny),
        "dtype": cfg.model.dtype,
        "seed": cfg.run.seed,
    }
    upstream = (StageDir(input_uri).success() or {}).get("hash")
    run_name = f"sft-{config_hash({'fingerprint': fingerprint, 'input': upstream, 'uri': input_uri})}"

    def body(out: StageDir) -> StageResult:
        import ray.data
        from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer

        from ..model import ensure_base_model

        model_dir = ensure_base_model(cfg)
        path, fs = storage.arrow_fs(train_split_uri(input_uri))
        examples = ray.data.read_parquet(path, filesystem=fs).select_columns(
            ["example_id", "task", "platform", "user_id", "messages"]
        )
        tokenized = examples.map_batches(
            tokenize_batch,
            batch_format="pyarrow",
            fn_kwargs={
                "model_dir": model_dir,
                "max_length": tcfg.max_length,
                # the driver's model_dir may not exist on other nodes (no shared file system)
                "tokenizer_files": tokenizer_files(model_dir),
            },
        ).materialize()
        summary = tokenized.select_columns(["platform", "reason", "n_tokens", "truncated"]).to_pandas()
        ok = summary["reason"] == ""
        n_in, n_ok = len(summary), int(ok.sum())
        if n_in - n_ok:
            rejected = tokenized.map_batches(lambda t: t.filter(pc.not_equal(t["reason"], "")), batch_format="pyarrow")
            qpath, qfs = storage.arrow_fs(out.quarantine_uri)
            rejected.map_batches(_to_quarantine, batch_format="pyarrow").write_parquet(qpath, filesystem=qfs)
        if n_ok == 0:
            raise ValueError(f"train: no trainable examples in {train_split_uri(input_uri)} ({n_in} read)")

        train_ds = tokenized.map_batches(
            lambda t: t.filter(pc.equal(t["reason"], "")).select(["input_ids", "labels"]), batch_format="pyarrow"
        )
        if tcfg.packing:
            train_ds = train_ds.map_batches(
                pack_batch, batch_size=PACKING_BATCH_ROWS, batch_format="pyarrow", fn_kwargs={"max_length": tcfg.max_length}
            ).materialize()
            n_rows = train_ds.count()
        else:
            n_rows = n_ok
        # Shuffle cheaply and streaming-friendly: block order here, a local buffer in the workers.
        train_ds = train_ds.randomize_block_order(seed=cfg.run.seed)

        world = tcfg.num_workers
        rows_per_worker = n_rows // world  # the equal streaming split drops the remainder
        if rows_per_worker == 0:
            raise ValueError(f"train: {n_rows} training rows cannot feed {world} workers")
        micro_per_epoch = math.ceil(rows_per_worker / tcfg.micro_batch_size)
        total_steps = tcfg.max_steps or (tcfg.epochs * micro_per_epoch) // tcfg.gradient_accumulation_steps
        if total_steps < 1:
            raise ValueError("train: fewer micro-batches than gradient_accumulation_steps; nothing to step")
        model_uri = out.path("model")
        log.info(
            "train: %d examples (%d rows) -> %d workers x %d micro-batches/epoch, %d steps, ZeRO-%d",
            n_ok, n_rows, world, micro_per_epoch, total_steps,
            zero_stage_of(load_raw(tcfg)),
        )

        # Ray Train takes a bare path plus a pyarrow filesystem for s3:// (None: local).
        storage_path, storage_fs = storage.arrow_fs(checkpoint_root)
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={
                "spec": LoopSpec(
                    cfg=cfg,
                    base_model_dir=model_dir,
                    total_steps=total_steps,
                    micro_batches_per_epoch=micro_per_epoch,
                    model_uri=model_uri,
                    fail_at_step=_fail_at_step(),
                    fail_point=_fail_point(),
                    run_uri=storage.join(checkpoint_root, run_name),
                )
            },
            scaling_config=ScalingConfig(
                num_workers=world, use_gpu=tcfg.use_gpu, resources_per_worker={"CPU": tcfg.cpus_per_worker}
            ),
            run_config=RunConfig(
                name=run_name,
                storage_path=storage_path,
                storage_filesystem=storage_fs,
                failure_config=FailureConfig(max_failures=tcfg.max_failures),
                checkpoint_config=CheckpointConfig(num_to_keep=tcfg.checkpoints_to_keep),
            ),
            datasets={"train": train_ds},
        )
        result = trainer.fit()
        summary_w0 = result.return_value
        if not summary_w0:
            raise RuntimeError("train: rank 0 returned no training summary")
        history = summary_w0["history"]
        write_metrics_jsonl(history, out.path("metrics.jsonl"))
        plot_loss_curve(history, out.path("loss_curve.png"), resumed_from_step=summary_w0["resumed_from_step"])
        storage.write_json(out.path("deepspeed_config.json"), summary_w0["deepspeed_config"])

        total_tokens = sum(m["tokens"] for m in history)
        total_seconds = sum(m["step_time_s"] for m in history)
        by_platform: Dict[str, Dict[str, int]] = {}
        for platform, grp in summary.groupby("platform"):
            kept = int((grp["reason"] == "").sum())
            by_platform[str(platform)] = {"in": len(grp), "out": kept, "quarantined": len(grp) - kept}
        checkpoint_uri = _as_uri(result.checkpoint.path, checkpoint_root) if result.checkpoint else None
        return StageResult(
            rows_in=n_in,
            rows_out=n_ok,
            rows_quarantined=n_in - n_ok,
            by_reason={str(k): int(v) for k, v in summary[~ok]["reason"].value_counts().items()},
            by_platform=by_platform,
            extra={
                "zero_stage": summary_w0["zero_stage"],
                "num_workers": summary_w0["world_size"],
                "worker_nodes": summary_w0.get("worker_nodes", {}),  # {rank: Ray node id}, last attempt
                "loss_first": history[0]["loss"],
                "loss_last": history[-1]["loss"],
                "loss_first5_mean": mean_of(history, "loss", slice(0, 5)),
                "loss_last5_mean": mean_of(history, "loss", slice(-5, None)),
                "steps": summary_w0["steps"],
                "resumed_from_step": summary_w0["resumed_from_step"],
                # how the resumed checkpoint was found: "ray" (registered) or "storage" (scan)
                "resumed_from": summary_w0.get("resumed_from"),
                # Step throughput (data + forward/backward/optimizer + all-reduce, all workers).
                "tokens_per_s": total_tokens / total_seconds if total_seconds > 0 else None,
                "train_loop_s": summary_w0["loop_seconds"],  # wall time of the last attempt's loop
                "train_tokens": total_tokens,
                "truncated_examples": int(summary[ok]["truncated"].sum()),
                "packed_rows": n_rows if tcfg.packing else None,
                "micro_batches_per_epoch": micro_per_epoch,
                "model_uri": model_uri,
                "checkpoint_uri": checkpoint_uri,
                "checkpoint_root": storage.join(checkpoint_root, run_name),
                "lora": bool(tcfg.lora.enabled),
                "learning_rate": tcfg.learning_rate,
                "base_model": model_dir,
            },
        )

    return run_stage(
        STAGE, output_uri, body, fingerprint=fingerprint, inputs=[input_uri], keep=("_cache", "_work", "checkpoints")
    )
