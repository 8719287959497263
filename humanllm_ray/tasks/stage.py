"""The build-tasks stage: curated timelines + QC-passed synthesis -> chat SFT examples.

Ray Data groups the curated rows by user (a user's timeline may span several chunk rows)
and runs every configured task builder on each group; QC items ride along as a per-user
lookup (synthesis output is orders of magnitude smaller than the logs). Item selection
needs negatives from other users, so a bounded per-category catalog sample is built in a
first pass. Splits are by user (hash of user_id), written to ``{tasks}/{train,val,test}/``.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
from collections import defaultdict
from typing import Any, Dict, List, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import storage
from ..config import HumanLLMConfig, config_hash
from ..runtime import RunPaths, init_ray
from ..stage import StageDir, StageResult, quarantine_schema, run_stage, write_table
from .build import EXAMPLE_SCHEMA, build_user_examples
from .common import POST_TAGS, BuildContext, PostFilter, parse_payload
from .registry import get_builder

log = logging.getLogger("humanllm")

STAGE = "tasks"
SPLITS = ("train", "val", "test")


def data_dir(stage_uri: str) -> str:
    """A stage folder's ``data/`` when it has one, else the folder itself (a bare Parquet dir)."""
    candidate = storage.join(stage_uri, "data")
    return candidate if storage.exists(candidate) else stage_uri


def _read_parquet(uri: str, columns: Optional[List[str]] = None):
    import ray

    path, fs = storage.arrow_fs(uri)
    return ray.data.read_parquet(path, filesystem=fs, columns=columns)


def load_qc_items(qc_uri: str) -> Dict[str, List[Dict[str, Any]]]:
    """QC-passed items grouped by user; an absent or empty QC output means no items."""
    uri = data_dir(qc_uri)
    if not storage.ls_files(uri, suffix=".parquet"):
        log.info("tasks: no QC items at %s; synthesis-based tasks will be empty", uri)
        return {}
    wanted = ["item_id", "user_id", "product", "payload", "source_record_ids"]
    by_user: Dict[str, List[Dict[str, Any]]] = defaultdict(list)
    for batch in _read_parquet(uri).iter_batches(batch_format="pyarrow"):
        present = [c for c in wanted if c in batch.column_names]
        for row in batch.select(present).to_pylist():
            by_user[str(row["user_id"])].append(row)
    return dict(by_user)


def post_tags_enforced(cfg: HumanLLMConfig) -> bool:
    """tasks.enforce_post_tags, with None resolved as qc.enforce_judge is: enforce unless the
    tagger is the untrained embedded tiny model, whose tags are noise."""
    from ..synth.qc import untrained_model_verdicts

    if cfg.tasks.enforce_post_tags is not None:
        return bool(cfg.tasks.enforce_post_tags)
    return not untrained_model_verdicts(cfg)


def post_filter(cfg: HumanLLMConfig) -> PostFilter:
    return PostFilter(
        enforce=post_tags_enforced(cfg),
        min_quality=int(cfg.tasks.min_post_quality),
        reject_harmful=bool(cfg.tasks.reject_harmful_posts),
    )


def tag_counts(qc_by_user: Dict[str, List[Dict[str, Any]]], pf: PostFilter) -> Dict[str, int]:
    """What the QC-passed post tags say, post by post (enforced or not)."""
    counts: Dict[str, int] = defaultdict(int)
    for items in qc_by_user.values():
        for item in items:
            if item.get("product") == POST_TAGS:
                counts["tags"] += 1
                counts[pf.status(parse_payload(item.get("payload")))] += 1
    return dict(counts)


def _catalog_rows(batch: pa.Table) -> pa.Table:
    """(category, item_id, title) of every Amazon record in a batch of curated rows."""
    out = {"category": [], "item_id": [], "title": []}
    for row in batch.to_pylist():
        if row.get("platform") != "amazon":
            continue
        for rec in row.get("records") or []:
            try:
                category = json.loads(rec.get("extra") or "{}").get("category")
            except (TypeError, ValueError, AttributeError):
                category = None
            if category and rec.get("item_id") and (rec.get("context") or "").strip():
                out["category"].append(str(category))
                out["item_id"].append(str(rec["item_id"]))
                out["title"].append(str(rec["context"]).strip())
    return pa.table(out, schema=pa.schema([("category", pa.string()), ("item_id", pa.string()), ("title", pa.string())]))


def build_catalog(curated_ds, per_category: int) -> Dict[str, List[tuple]]:
    """A deterministic bounded sample of items per category: the ``per_category`` items with
    the smallest hash of item_id, so memory stays bounded however large the dump is."""
    heaps: Dict[str, list] = defaultdict(list)
    seen: Dict[str, set] = defaultdict(set)
    items = curated_ds.select_columns(["platform", "records"]).map_batches(_catalog_rows, batch_format="pyarrow")
    for batch in items.iter_batches(batch_format="pyarrow"):
        for category, item_id, title in zip(*(batch[c].to_pylist() for c in ("category", "item_id", "title"))):
            if item_id in seen[category]:
                continue
            key = -int(hashlib.sha256(item_id.encode()).hexdigest()[:12], 16)  # max-heap of the smallest hashes
            heap = heaps[category]
            if len(heap) < per_category:
                heapq.heappush(heap, (key, item_id, title))
                seen[category].add(item_id)
            elif key > heap[0][0]:
                _, dropped, _ = heapq.heapreplace(heap, (key, item_id, title))
                seen[category].discard(dropped)
                seen[category].add(item_id)
    return {c: sorted((iid, t) for _k, iid, t in heap) for c, heap in heaps.items()}


def _token_stats(lengths) -> Dict[str, float]:
    arr = np.asarray(list(lengths), dtype=np.float64)
    if arr.size == 0:
        return {"n": 0}
    return {
        "n": int(arr.size),
        "mean": round(float(arr.mean()), 1),
        "p50": float(np.percentile(arr, 50)),
        "p95": float(np.percentile(arr, 95)),
        "max": int(arr.max()),
    }


def _to_quarantine(batch: pa.Table) -> pa.Table:
    rows = []
    for r in batch.to_pylist():
        rows.append(
            {
                "stage": STAGE,
                "reason": r["reason"],
                "detail": r["detail"],
                "platform": r["platform"],
                "source_file": "",
                "source_line": -1,
                "record_id": r["example_id"],
                "user_id": r["user_id"],
                "raw": json.dumps(
                    {"task": r["task"], "variant": r["variant"], "messages": r["messages"], "meta": r["meta"]},
                    ensure_ascii=False,
                )[:4000],
            }
        )
    return pa.Table.from_pylist(rows, schema=quarantine_schema())


def _write_dataset(ds, uri: str, empty_schema: pa.Schema) -> None:
    """Write a Ray dataset as Parquet under uri; an empty one still leaves a readable
    (schema-only) file, so downstream readers of every split find one."""
    path, fs = storage.arrow_fs(uri)
    if ds.count() == 0:
        write_table(empty_schema.empty_table(), storage.join(uri, "part-empty.parquet"))
        return
    ds.write_parquet(path, filesystem=fs)


def run(
    cfg: HumanLLMConfig,
    curated_uri: Optional[str] = None,
    qc_uri: Optional[str] = None,
    output_uri: Optional[str] = None,
) -> Dict[str, Any]:
    """Build the configured SFT tasks; returns the stage report."""
    from ..model import ensure_base_model

    storage.configure(cfg.s3)
    init_ray(cfg)
    paths = RunPaths.from_config(cfg)
    curated_uri = storage.normalize(curated_uri or paths.curated)
    qc_uri = storage.normalize(qc_uri or paths.qc)
    output_uri = storage.normalize(output_uri or paths.tasks)
    tcfg = cfg.tasks
    task_names = list(tcfg.tasks)
    for name in task_names:
        get_builder(name)  # unknown task names fail before any work
    if tcfg.val_fraction < 0 or tcfg.test_fraction < 0 or tcfg.val_fraction + tcfg.test_fraction >= 1:
        raise ValueError("tasks.val_fraction + tasks.test_fraction must be in [0, 1)")
    if not 1 <= int(tcfg.min_post_quality) <= 5:
        raise ValueError("tasks.min_post_quality must be in 1..5 (the post_tags quality scale; 1 keeps every quality)")
    pf = post_filter(cfg)
    if not pf.enforce:
        log.info(
            "tasks: post tags are counted but not enforced (the tagger is the untrained tiny model, or "
            "tasks.enforce_post_tags=false); tasks.enforce_post_tags=true drops low-quality/harmful posts"
        )

    def body(out: StageDir) -> StageResult:
        model_dir = ensure_base_model(cfg)
        curated = _read_parquet(data_dir(curated_uri))
        catalog = build_catalog(curated, tcfg.catalog_items_per_category) if "item_selection" in task_names else {}
        qc_by_user = load_qc_items(qc_uri)
        ctx = BuildContext(
            max_history=tcfg.max_history,
            max_chars_per_post=tcfg.max_chars_per_post,
            item_candidates=tcfg.item_candidates,
            max_examples_per_user=tcfg.max_examples_per_user,
            seed=tcfg.seed,
            catalog=catalog,
            post_filter=pf,
        )
        candidates = (
            curated.groupby("user_id", num_partitions=tcfg.num_partitions)
            .map_groups(
                build_user_examples,
                batch_format="pyarrow",
                fn_kwargs=dict(
                    task_names=task_names,
                    ctx=ctx,
                    qc_by_user=qc_by_user,
                    model_dir=model_dir,
                    val_fraction=tcfg.val_fraction,
                    test_fraction=tcfg.test_fraction,
                ),
            )
            .materialize()
        )
        summary = candidates.select_columns(
            ["task", "split", "platform", "user_id", "n_tokens", "reason", "post_tag"]
        ).to_pandas()
        kept_mask = summary["reason"] == ""

        kept = candidates.map_batches(
            lambda t: t.filter(pc.equal(t["reason"], "")), batch_format="pyarrow"
        ).select_columns(EXAMPLE_SCHEMA.names)
        for split in SPLITS:
            part = kept.map_batches(lambda t, s=split: t.filter(pc.equal(t["split"], s)), batch_format="pyarrow")
            _write_dataset(part, out.path(split), EXAMPLE_SCHEMA)
        rejected = candidates.map_batches(
            lambda t: t.filter(pc.not_equal(t["reason"], "")), batch_format="pyarrow"
        ).map_batches(_to_quarantine, batch_format="pyarrow")
        n_quarantined = int((~kept_mask).sum())
        if n_quarantined:
            path, fs = storage.arrow_fs(out.quarantine_uri)
            rejected.write_parquet(path, filesystem=fs)

        kept_rows = summary[kept_mask]
        by_platform: Dict[str, Dict[str, int]] = {}
        for platform, grp in summary.groupby("platform"):
            ok = int((grp["reason"] == "").sum())
            by_platform[str(platform)] = {"in": len(grp), "out": ok, "quarantined": len(grp) - ok}
        per_task = {
            task: {split: int(((kept_rows["task"] == task) & (kept_rows["split"] == split)).sum()) for split in SPLITS}
            for task in task_names
        }
        empty = [t for t, counts in per_task.items() if sum(counts.values()) == 0]
        if empty:
            log.warning("tasks: no examples for %s (missing inputs, e.g. no amazon or synthesis items)", empty)
        return StageResult(
            rows_in=len(summary),
            rows_out=int(kept_mask.sum()),
            rows_quarantined=n_quarantined,
            by_reason={str(k): int(v) for k, v in summary[~kept_mask]["reason"].value_counts().items()},
            by_platform=by_platform,
            extra={
                "tasks": task_names,
                "per_task": per_task,
                "per_task_quarantined": {
                    str(k): int(v) for k, v in summary[~kept_mask]["task"].value_counts().items()
                },
                "tokens": {
                    "all": _token_stats(kept_rows["n_tokens"]),
                    **{t: _token_stats(g["n_tokens"]) for t, g in kept_rows.groupby("task")},
                },
                "users": {split: int(kept_rows[kept_rows["split"] == split]["user_id"].nunique()) for split in SPLITS},
                "users_in": int(summary["user_id"].nunique()) if len(summary) else 0,
                # The post filter: per-post examples by what their post's tag says (with
                # enforcement the post_low_quality / post_harmful counts equal by_reason's;
                # without, they are what it would drop), and the tags themselves, per post.
                "post_tags": {
                    "enforced": pf.enforce,
                    "min_quality": pf.min_quality,
                    "reject_harmful": pf.reject_harmful,
                    "examples": {
                        str(k): int(v) for k, v in summary[summary["post_tag"] != ""]["post_tag"].value_counts().items()
                    },
                    "examples_by_task": {
                        str(task): {str(k): int(v) for k, v in grp["post_tag"].value_counts().items()}
                        for task, grp in summary[summary["post_tag"] != ""].groupby("task")
                    },
                    "posts": tag_counts(qc_by_user, pf),
                },
                "catalog_categories": len(catalog),
                "qc_users": len(qc_by_user),
                "tokenizer": model_dir,
                "splits": {split: out.path(split) for split in SPLITS},
            },
        )

    fingerprint = {
        "tasks": config_hash(tcfg),
        "model": cfg.model.base,
        "tiny": config_hash(cfg.model.tiny),
        "post_tags_enforced": post_tags_enforced(cfg),  # None resolves by model and engine
    }
    return run_stage(STAGE, output_uri, body, fingerprint=fingerprint, inputs=[curated_uri, qc_uri])
