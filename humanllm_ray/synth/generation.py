"""LLM requests over a Ray Data actor pool: seeds, retries, validation, request cache.

Synthesis and the QC judge both reduce to the same thing: a dataset of *requests* (rows
with ``request_key``, ``reply_spec`` and ``messages`` plus any passthrough columns) becomes
a dataset of *results* (the same rows plus :data:`RESULT_FIELDS`). This module does that:

1. requests whose key is in the stage's ``_cache/`` are answered from it (never re-sent);
2. the rest go through ``map_batches`` over an actor pool; each actor builds its engine once;
3. each reply is parsed (json) and validated (jsonschema) against the schema it was asked
   for, post-processed (names -> placeholders) and validated again against the product's
   published schema; a failure is retried with a new seed up to ``max_retries`` times,
   then the row is marked failed with the reason of its last attempt (``unparsed_json``,
   ``schema_invalid``, ``engine_error``) and the raw reply;
4. as each batch finishes its actor writes the batch's results to ``_cache/`` (one small
   Parquet file per batch), so a killed run resumes without paying for those requests
   again. Engine errors are not cached: they are transient by nature.

Seeds are a pure function of (run seed, request key, attempt) — :func:`attempt_seed` — so
reruns and tests are deterministic.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import pyarrow as pa
import pyarrow.compute as pc

from .. import storage
from ..llm import EngineFailure, build_engine
from ..llm.schema import ENGINE_ERROR, SCHEMA_INVALID, check_reply, dumps, validate

log = logging.getLogger("humanllm")

REQUEST_COLUMNS = ("request_key", "reply_spec", "messages")
RESULT_FIELDS = [
    pa.field("status", pa.string()),  # "ok" | "failed"
    pa.field("reason", pa.string()),  # "" when ok, else the last attempt's reason code
    pa.field("detail", pa.string()),  # per-attempt reasons and messages
    pa.field("reply", pa.string()),  # ok: canonical payload JSON; failed: the last raw reply
    pa.field("attempts", pa.int32()),
    pa.field("seed", pa.int64()),  # seed of the last attempt
]
RESULT_COLUMNS = [f.name for f in RESULT_FIELDS]
OK, FAILED = "ok", "failed"


@dataclass(frozen=True)
class ReplySpec:
    """What a reply must look like, for one ``reply_spec`` name."""

    request_schema: Dict[str, Any]  # asked of the engine (budget-fitted)
    published_schema: Dict[str, Any]  # the payload after postprocess must satisfy this
    postprocess: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None


@dataclass(frozen=True)
class Sampling:
    max_new_tokens: int
    temperature: float
    top_p: float

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PoolSpec:
    """Everything the actor pool needs besides the config (kept small: it is pickled to actors)."""

    specs: Dict[str, ReplySpec]
    sampling: Sampling
    max_retries: int
    fault_rate: float
    cache_uri: Optional[str]


def attempt_seed(run_seed: int, request_key: str, attempt: int) -> int:
    """The sampling seed of attempt ``attempt`` (0-based) of a request: deterministic, 63-bit."""
    digest = hashlib.sha256(f"{int(run_seed)}:{request_key}:{int(attempt)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


def request_key(**parts: Any) -> str:
    """sha256 over everything that determines a reply (sorted JSON of the parts)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def messages_hash(messages_json: str) -> str:
    return hashlib.sha256(messages_json.encode("utf-8")).hexdigest()[:16]


# -- the retry loop (pure: testable without Ray) ----------------------------------------


@dataclass
class _State:
    attempts: int = 0
    seed: int = 0
    ok: bool = False
    payload: str = ""
    reason: str = ""
    raw: str = ""
    history: List[str] = field(default_factory=list)


def _check(reply: str, spec: ReplySpec) -> Tuple[Optional[str], str, str]:
    """(payload JSON or None, reason, detail) for one reply."""
    if isinstance(reply, EngineFailure):
        return None, ENGINE_ERROR, reply.error
    obj, reason, detail = check_reply(reply, spec.request_schema)
    if reason is not None:
        return None, reason, detail
    if spec.postprocess is not None:
        obj = spec.postprocess(obj)
        problem = validate(obj, spec.published_schema)
        if problem is not None:
            return None, SCHEMA_INVALID, f"after postprocess: {problem}"
    return dumps(obj), "", ""


def generate_with_retries(
    engine: Any,
    rows: Sequence[Dict[str, Any]],
    specs: Dict[str, ReplySpec],
    sampling: Sampling,
    max_retries: int,
    run_seed: int,
) -> List[Dict[str, Any]]:
    """One result dict (RESULT_COLUMNS) per request row, in order."""
    states = [_State() for _ in rows]
    pending = list(range(len(rows)))
    for attempt in range(max_retries + 1):
        if not pending:
            break
        by_spec: Dict[str, List[int]] = {}
        for i in pending:
            by_spec.setdefault(rows[i]["reply_spec"], []).append(i)
        for spec_name, idxs in by_spec.items():
            spec = specs[spec_name]
            seeds = [attempt_seed(run_seed, rows[i]["request_key"], attempt) for i in idxs]
            prompts = [json.loads(rows[i]["messages"]) for i in idxs]
            try:
                replies = engine.generate(
                    prompts,
                    schema=spec.request_schema,
                    max_new_tokens=sampling.max_new_tokens,
                    temperature=sampling.temperature,
                    top_p=sampling.top_p,
                    seeds=seeds,
                )
                if len(replies) != len(idxs):
                    raise RuntimeError(f"engine returned {len(replies)} replies for {len(idxs)} prompts")
            except Exception as exc:  # the whole call failed: every prompt in it gets another try
                log.warning("engine call failed (%d prompts): %s: %s", len(idxs), type(exc).__name__, exc)
                replies = [EngineFailure(f"{type(exc).__name__}: {exc}")] * len(idxs)
            for i, seed, reply in zip(idxs, seeds, replies):
                st = states[i]
                st.attempts += 1
                st.seed = seed
                try:
                    payload, reason, detail = _check(reply, spec)
                except Exception as exc:  # a postprocess bug must not kill the batch
                    payload, reason, detail = None, SCHEMA_INVALID, f"postprocess failed: {type(exc).__name__}: {exc}"
                if payload is not None:
                    st.ok, st.payload, st.reason = True, payload, ""
                else:
                    st.reason, st.raw = reason, str(reply)
                    st.history.append(f"attempt {attempt + 1}: {reason}: {detail}"[:400])
        pending = [i for i in pending if not states[i].ok]
    return [
        {
            "status": OK if st.ok else FAILED,
            "reason": st.reason,
            "detail": " | ".join(st.history)[:2000],
            "reply": st.payload if st.ok else st.raw,
            "attempts": st.attempts,
            "seed": st.seed,
        }
        for st in states
    ]


# -- request cache ----------------------------------------------------------------------


class RequestCache:
    """Results by request key, as small Parquet files under a stage's ``_cache/``."""

    def __init__(self, uri: str):
        self.uri = uri

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        import pyarrow.parquet as pq

        keys = "\n".join(sorted(table.column("request_key").to_pylist()))
        name = hashlib.sha256(keys.encode()).hexdigest()[:24]
        buf = io.BytesIO()
        pq.write_table(table, buf)
        # write_bytes is atomic (temp + rename locally, one PUT on S3): a reader never sees half a file.
        storage.write_bytes(storage.join(self.uri, f"{name}.parquet"), buf.getvalue())

    def load(self, keys: set) -> Optional[pa.Table]:
        """Cached results for these keys (first copy of each key), or None."""
        import pyarrow.parquet as pq

        tables = []
        for f in storage.ls_files(self.uri, suffix=".parquet"):
            try:
                tables.append(pq.read_table(io.BytesIO(storage.read_bytes(f))))
            except Exception as exc:  # a damaged cache file costs a re-request, never the run
                log.warning("request cache: skipping unreadable %s (%s)", f, exc)
        if not tables:
            return None
        table = pa.concat_tables(tables, promote_options="permissive")
        table = table.filter(pc.is_in(table.column("request_key"), value_set=pa.array(sorted(keys), pa.string())))
        if table.num_rows == 0:
            return None
        seen, keep = set(), []
        for i, k in enumerate(table.column("request_key").to_pylist()):
            if k not in seen:
                seen.add(k)
                keep.append(i)
        return table.take(keep)


def cacheable(results: Sequence[Dict[str, Any]]) -> List[bool]:
    return [r["reason"] != ENGINE_ERROR for r in results]


# -- the actor --------------------------------------------------------------------------


def _set_torch_threads(n: int) -> None:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return
    torch.set_num_threads(max(1, int(n)))


class GenerationActor:
    """Ray Data callable class: holds one engine, answers batches of requests."""

    def __init__(self, cfg: Any, pool_spec: PoolSpec, torch_threads: int):
        storage.configure(cfg.s3)
        # Ray sets OMP_NUM_THREADS=1 in workers; use the CPU share this actor was given.
        _set_torch_threads(torch_threads)
        self.cfg = cfg
        self.spec = pool_spec
        self.engine = build_engine(cfg, pool_spec.fault_rate)
        self.cache = RequestCache(pool_spec.cache_uri) if pool_spec.cache_uri else None
        log.info("generation actor ready: %s", self.engine.describe())

    def close(self) -> None:
        """Release the engine now (idempotent). For vLLM this stops its engine-core processes
        and their KV cache (on a GPU, memory the next stage needs) explicitly, instead of
        leaving them to vLLM's finalizers when the actor process exits."""
        engine, self.engine = getattr(self, "engine", None), None
        if engine is not None:
            try:
                engine.close()
            except Exception as exc:  # teardown must not raise; the process is exiting anyway
                log.warning("closing engine %s failed: %s: %s", engine.describe(), type(exc).__name__, exc)

    def __del__(self) -> None:
        # Ray Data's teardown hook (Ray 2.60): when the pool's handles are released the actor
        # exits gracefully and MapWorker.__ray_shutdown__ drops the UDF instance, which runs
        # this. Not run on ray.kill (a forced shutdown) or a crash.
        self.close()

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.select(list(REQUEST_COLUMNS)).to_pylist()
        results = generate_with_retries(
            self.engine, rows, self.spec.specs, self.spec.sampling, self.spec.max_retries, self.cfg.run.seed
        )
        out = batch
        for f in RESULT_FIELDS:
            out = out.append_column(f, pa.array([r[f.name] for r in results], type=f.type))
        if self.cache is not None:
            self.cache.write(out.filter(pa.array(cacheable(results), pa.bool_())))
        return out


# -- driver side ------------------------------------------------------------------------


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Columns of ``schema`` in its order and types (missing ones null): cached rows written
    by an earlier run union cleanly with fresh ones."""
    cols = []
    for f in schema:
        if f.name in table.column_names:
            cols.append(table.column(f.name).cast(f.type))
        else:
            cols.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=schema)


def columns_frame(ds: Any, columns: Sequence[str]):
    """A few columns of a (small-columned) dataset as pandas; an empty dataset still has the columns."""
    return ds.select_columns(list(columns)).to_pandas().reindex(columns=list(columns))


def _drop_keys(batch: pa.Table, keys: pa.Array) -> pa.Table:
    return batch.filter(pc.invert(pc.is_in(batch.column("request_key"), value_set=keys)))


def run_requests(
    cfg: Any, requests_ds: Any, request_schema: pa.Schema, pool_spec: PoolSpec, pool_cfg: Any
) -> Tuple[Any, Dict[str, int]]:
    """Answer every request (from the cache or the actor pool).

    ``request_schema`` is the Arrow schema of ``requests_ds`` (REQUEST_COLUMNS + passthrough);
    it is given, not inferred, because an empty dataset has none. Returns (materialized
    results dataset, stats: requests, cache_hits, requests_sent, generations).
    """
    import ray

    requests_ds = requests_ds.materialize()
    n_requests = requests_ds.count()
    result_schema = pa.schema(list(request_schema) + RESULT_FIELDS)
    keys = set(columns_frame(requests_ds, ["request_key"])["request_key"]) if n_requests else set()

    cached = RequestCache(pool_spec.cache_uri).load(keys) if (pool_spec.cache_uri and keys) else None
    hit_keys = pa.array(sorted(cached.column("request_key").to_pylist()), pa.string()) if cached is not None else None
    n_hits = 0 if hit_keys is None else len(hit_keys)
    n_pending = n_requests - n_hits
    parts = []
    generations = 0
    if n_pending:
        pending = requests_ds
        if hit_keys is not None:
            pending = pending.map_batches(_drop_keys, fn_kwargs={"keys": hit_keys}, batch_format="pyarrow")
        # Enough blocks that every actor of the pool gets work, not so many that tiny blocks dominate.
        blocks = max(1, min(math.ceil(n_pending / pool_cfg.batch_size), max(1, pool_cfg.max_actors) * 8))
        pending = pending.repartition(blocks)
        threads = pool_cfg.torch_threads or max(1, round(pool_cfg.num_cpus_per_actor))
        log.info("generation: %d requests (%d cached), %d to send over %d-%d actors", n_requests, n_hits, n_pending, pool_cfg.min_actors, pool_cfg.max_actors)
        fresh = pending.map_batches(
            GenerationActor,
            fn_constructor_kwargs={"cfg": cfg, "pool_spec": pool_spec, "torch_threads": threads},
            compute=ray.data.ActorPoolStrategy(min_size=pool_cfg.min_actors, max_size=pool_cfg.max_actors),
            num_cpus=pool_cfg.num_cpus_per_actor,
            num_gpus=pool_cfg.num_gpus_per_actor or None,
            batch_size=pool_cfg.batch_size,
            batch_format="pyarrow",
        ).materialize()
        parts.append(fresh)
        generations = int(columns_frame(fresh, ["attempts"])["attempts"].sum())
    if cached is not None:
        parts.append(ray.data.from_arrow(conform(cached, result_schema)))
    if not parts:
        parts.append(ray.data.from_arrow(result_schema.empty_table()))
    results = parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])
    stats = {"requests": n_requests, "cache_hits": n_hits, "requests_sent": n_pending, "generations": generations}
    return results.materialize(), stats


def write_dataset(ds: Any, uri: str, n_rows: int, schema: pa.Schema) -> None:
    """Write a dataset as Parquet under uri; an empty one still leaves one (empty) file with
    the schema, so a downstream reader finds a dataset, not a missing folder."""
    from ..stage import write_table

    if n_rows == 0:
        write_table(schema.empty_table(), storage.join(uri, "part-empty.parquet"))
        return
    path, fs = storage.arrow_fs(uri)
    ds.write_parquet(path, filesystem=fs)
