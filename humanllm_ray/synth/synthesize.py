"""The ``synth`` stage: curated timelines -> schema-valid synthesized items.

``{run.root}/curated/data`` -> ``{run.root}/synth``:

* ``data/*.parquet`` — one row per valid item: ``item_id`` (``{user}:{product}`` for the
  per-user products — persona, profile, life_stories, writing_style — and
  ``{user}:{product}:{record_id}`` for the per-post ones — social_qa, post_tags),
  ``user_id``, ``platform``, ``product``, ``payload`` (the schema-valid JSON text, names
  replaced by placeholders), ``source_record_ids``,
  ``source_text`` (the posts exactly as the prompt showed them: the QC judge re-reads them,
  so QC needs no join with the curated data), ``provenance`` (JSON: engine, model,
  prompt_version, prompt_hash, schema_hash, temperature, top_p, max_new_tokens,
  chars_per_token, seed, attempts);
* ``_quarantine/`` — items whose replies never parsed / validated (``unparsed_json``,
  ``schema_invalid``, ``engine_error``) with the last raw reply;
* ``_cache/`` — the request cache (kept across resets; see :mod:`.generation`).

Which posts feed synthesis: each user's first timeline chunk (``chunk == 0``). Curate cuts
timelines into chunks of ``curate.timeline_max_tokens`` (6000 by default), far more than
one prompt shows, so later chunks would only add more of the same user; reading one row
per user keeps the expansion a per-row map (no shuffle). Their rows are counted in the
report as ``timelines_unused``.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Dict, List, Optional

import pyarrow as pa

from .. import storage
from ..config import HumanLLMConfig, to_dict
from ..llm import engine_identity
from ..llm.schema import schema_hash
from ..runtime import RunPaths, init_ray
from ..stage import StageDir, StageResult, quarantine_row, quarantine_schema, run_stage
from .budget import PromptBudget
from .generation import (
    FAILED,
    OK,
    PoolSpec,
    ReplySpec,
    Sampling,
    columns_frame,
    messages_hash,
    request_key,
    run_requests,
    write_dataset,
)
from .products import Product, get_product

log = logging.getLogger("humanllm")
STAGE = "synth"

REQUEST_FIELDS = [
    pa.field("request_key", pa.string()),
    pa.field("reply_spec", pa.string()),
    pa.field("messages", pa.string()),
    pa.field("item_id", pa.string()),
    pa.field("user_id", pa.string()),
    pa.field("platform", pa.string()),
    pa.field("product", pa.string()),
    pa.field("source_record_ids", pa.list_(pa.string())),
    pa.field("source_text", pa.string()),
    pa.field("prompt_version", pa.string()),
    pa.field("prompt_hash", pa.string()),
]
REQUEST_SCHEMA = pa.schema(REQUEST_FIELDS)

SYNTH_FIELDS = [
    pa.field("item_id", pa.string()),
    pa.field("user_id", pa.string()),
    pa.field("platform", pa.string()),
    pa.field("product", pa.string()),
    pa.field("payload", pa.string()),
    pa.field("source_record_ids", pa.list_(pa.string())),
    pa.field("source_text", pa.string()),
    pa.field("provenance", pa.string()),
]
SYNTH_SCHEMA = pa.schema(SYNTH_FIELDS)
SYNTH_COLUMNS = [f.name for f in SYNTH_FIELDS]


def _products(cfg: HumanLLMConfig) -> List[Product]:
    if not cfg.synth.products:
        raise ValueError("config key 'synth.products' is empty")
    return [get_product(name) for name in cfg.synth.products]


def _sampling(cfg: HumanLLMConfig) -> Sampling:
    return Sampling(cfg.synth.max_new_tokens, cfg.synth.temperature, cfg.synth.top_p)


def expand_timelines(batch: pa.Table, cfg: HumanLLMConfig, engine_id: str) -> pa.Table:
    """Curated timeline rows -> synthesis requests (one per user x product x source item)."""
    sampling = _sampling(cfg).as_dict()
    products = _products(cfg)
    schema_hashes = {p.name: schema_hash(p.request_schema(cfg)) for p in products}
    budget = PromptBudget.for_config(cfg, cfg.synth.max_new_tokens, cfg.synth.max_prompt_chars)
    rows: List[Dict[str, Any]] = []
    for timeline in batch.to_pylist():
        if int(timeline.get("chunk") or 0) != 0:
            continue
        timeline["records"] = timeline.get("records") or []
        for product in products:
            for req in product.requests(timeline, cfg, budget):
                messages = json.dumps(req.messages, ensure_ascii=False)
                ids = [str(r["record_id"]) for r in req.source_records]
                key = request_key(
                    item_id=req.item_id,
                    product=product.name,
                    source_record_ids=ids,
                    prompt_hash=product.prompt.hash,
                    messages=messages_hash(messages),
                    schema=schema_hashes[product.name],
                    engine=engine_id,
                    sampling=sampling,
                    max_retries=cfg.synth.max_retries,
                    run_seed=cfg.run.seed,
                )
                rows.append(
                    {
                        "request_key": key,
                        "reply_spec": product.name,
                        "messages": messages,
                        "item_id": req.item_id,
                        "user_id": timeline["user_id"],
                        "platform": timeline["platform"],
                        "product": product.name,
                        "source_record_ids": ids,
                        "source_text": req.source_text,
                        "prompt_version": product.prompt.version,
                        "prompt_hash": product.prompt.hash,
                    }
                )
    return pa.Table.from_pylist(rows, schema=REQUEST_SCHEMA)


def _keep_users(batch: pa.Table, users: pa.Array) -> pa.Table:
    import pyarrow.compute as pc

    return batch.filter(pc.is_in(batch.column("user_id"), value_set=users))


def to_synth_rows(batch: pa.Table, cfg: HumanLLMConfig, engine_id: str) -> pa.Table:
    """Valid results -> output rows with provenance."""
    out = []
    sampling = _sampling(cfg)
    schema_hashes = {p.name: schema_hash(p.request_schema(cfg)) for p in _products(cfg)}
    for r in batch.to_pylist():
        if r["status"] != OK:
            continue
        provenance = {
            "engine": cfg.synth.engine,
            "model": engine_id,
            "prompt_version": r["prompt_version"],
            "prompt_hash": r["prompt_hash"],
            "schema_hash": schema_hashes[r["product"]],
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_new_tokens": sampling.max_new_tokens,
            "chars_per_token": cfg.synth.chars_per_token,  # with max_new_tokens: the fitted schema, QC's word minimums
            "seed": r["seed"],
            "attempts": r["attempts"],
        }
        out.append({**{k: r[k] for k in SYNTH_COLUMNS if k in r}, "payload": r["reply"], "provenance": json.dumps(provenance)})
    return pa.Table.from_pylist(out, schema=SYNTH_SCHEMA)


def to_quarantine_rows(batch: pa.Table, stage: str, source: str) -> pa.Table:
    out = []
    for r in batch.to_pylist():
        if r["status"] != FAILED:
            continue
        q = quarantine_row(
            stage,
            r["reason"],
            detail=f"{r.get('product') or r.get('reply_spec')} after {r['attempts']} attempt(s): {r['detail']}",
            platform=r.get("platform") or "",
            source_file=source,
            record_id=r.get("item_id") or "",
            user_id=r.get("user_id") or "",
            raw=r.get("reply") or "",
        )
        out.append(q)
    return pa.Table.from_pylist(out, schema=QUARANTINE_SCHEMA)


QUARANTINE_SCHEMA = quarantine_schema()


def stage_data_uri(uri: str) -> str:
    """A stage folder's data/ when it has one, else the URI itself (a bare Parquet folder)."""
    data = storage.join(uri, "data")
    return data if storage.exists(data) else uri


def fingerprint(cfg: HumanLLMConfig) -> Dict[str, Any]:
    synth = to_dict(cfg)["synth"]
    synth.pop("pool", None)  # pool size changes speed, not output
    for k in ("openai_concurrency", "openai_timeout_s", "openai_max_attempts", "openai_backoff_s", "hf_max_batch_size"):
        synth.pop(k, None)
    return {
        "synth": synth,
        "engine": engine_identity(cfg),
        "prompts": {p.name: p.prompt.hash for p in _products(cfg)},
        "run_seed": cfg.run.seed,
    }


def prepare_model(cfg: HumanLLMConfig) -> None:
    """Build / download the base model once on the driver, before actors race for it."""
    if cfg.synth.engine in ("hf", "vllm"):
        from ..model import ensure_base_model

        ensure_base_model(cfg)


def run(cfg: HumanLLMConfig, input_uri: Optional[str] = None, output_uri: Optional[str] = None) -> Dict[str, Any]:
    storage.configure(cfg.s3)
    init_ray(cfg)
    import ray

    ray.data.DataContext.get_current().enable_progress_bars = bool(cfg.run.progress)
    paths = RunPaths.from_config(cfg)
    input_uri = storage.normalize(input_uri or paths.curated)
    output_uri = storage.normalize(output_uri or paths.synth)
    _products(cfg)  # unknown product names fail here, before any work
    engine_id = engine_identity(cfg)

    def body(out: StageDir) -> StageResult:
        prepare_model(cfg)
        data_uri = stage_data_uri(input_uri)
        path, fs = storage.arrow_fs(data_uri)
        curated = ray.data.read_parquet(path, filesystem=fs).materialize()
        chunks = columns_frame(curated, ["chunk"])["chunk"]
        requests = curated.map_batches(
            expand_timelines, fn_kwargs={"cfg": cfg, "engine_id": engine_id}, batch_format="pyarrow"
        ).materialize()
        users_total = users_kept = None
        if cfg.synth.max_users is not None:
            users = sorted(set(columns_frame(requests, ["user_id"])["user_id"]))
            users_total, users_kept = len(users), min(len(users), cfg.synth.max_users)
            keep = pa.array(users[: cfg.synth.max_users], pa.string())
            requests = requests.map_batches(_keep_users, fn_kwargs={"users": keep}, batch_format="pyarrow")

        products = _products(cfg)
        pool_spec = PoolSpec(
            specs={
                p.name: ReplySpec(p.request_schema(cfg), p.schema(), p.postprocess) for p in products
            },
            sampling=_sampling(cfg),
            max_retries=cfg.synth.max_retries,
            fault_rate=cfg.synth.fault_rate,
            cache_uri=out.path("_cache"),
        )
        results, stats = run_requests(cfg, requests, REQUEST_SCHEMA, pool_spec, cfg.synth.pool)

        summary = columns_frame(results, ["product", "platform", "status", "reason"])
        n_ok = int((summary["status"] == OK).sum())
        n_failed = int((summary["status"] == FAILED).sum())
        good = results.map_batches(to_synth_rows, fn_kwargs={"cfg": cfg, "engine_id": engine_id}, batch_format="pyarrow")
        write_dataset(good, out.data_uri, n_ok, SYNTH_SCHEMA)
        if n_failed:
            bad = results.map_batches(to_quarantine_rows, fn_kwargs={"stage": STAGE, "source": data_uri}, batch_format="pyarrow")
            write_dataset(bad, out.quarantine_uri, n_failed, QUARANTINE_SCHEMA)

        failed = summary[summary["status"] == FAILED]
        by_reason = {str(k): int(v) for k, v in failed["reason"].value_counts().items()}
        by_platform: Dict[str, Dict[str, int]] = {}
        for (platform, status), n in summary.groupby(["platform", "status"]).size().items():
            d = by_platform.setdefault(str(platform), {"in": 0, "out": 0, "quarantined": 0})
            d["in"] += int(n)
            d["out" if status == OK else "quarantined"] += int(n)
        per_product = {
            str(p): {"requests": int(len(g)), "valid": int((g["status"] == OK).sum())} for p, g in summary.groupby("product")
        }
        extra = {
            "engine": cfg.synth.engine,
            "engine_identity": engine_id,
            "cache_hits": stats["cache_hits"],
            "requests_sent": stats["requests_sent"],
            "generations": stats["generations"],
            "products": {p: v["valid"] for p, v in per_product.items()},
            "by_product": per_product,
            "timelines": int(len(chunks)),
            "timelines_unused": int((chunks != 0).sum()),  # later chunks of long timelines (see module doc)
            "prompt_versions": {p.name: p.prompt.version for p in products},
        }
        if users_total is not None:
            extra["users_total"], extra["users_kept"] = users_total, users_kept
        return StageResult(
            rows_in=stats["requests"],
            rows_out=n_ok,
            rows_quarantined=n_failed,
            by_reason=by_reason,
            by_platform=by_platform,
            extra=extra,
        )

    return run_stage(STAGE, output_uri, body, fingerprint=fingerprint(cfg), inputs=[input_uri])
