"""bench/curate/run.py: ingest + curate throughput with Ray against the same code in one process,
peak memory at two input sizes, and records/s per core for each step.

    python bench/curate/run.py [--sizes 100000 1000000] [--seed 1] [--repeats 1] [--local-sizes N ...]
                               [--ceiling-repeats 3] [--probe-repeats 3] [--set KEY=VALUE ...]
                               [--out bench/out/curate.json]
    python bench/curate/run.py --merge A.json B.json ... --out bench/out/curate.json   # combine rounds

For each size the corpus is generated once (``gen.py``, cached under bench/out/curate-data/), then
two fresh child processes run on it, order alternating between repeats:

* ``ray``: the real stages, ``humanllm_ray.ingest.run`` then ``humanllm_ray.curate.run``, on a
  local Ray cluster of 2 CPUs started by the child (``ray.init(address="local", num_cpus=2)``, so
  it never joins another cluster on the machine);
* ``local``: the same functions called in one plain process, no Ray runtime: the platform
  readers (``ingest._read_one``), the platform join / variant-dedup hooks, the record-pass UDF
  (``curate._record_pass_udf``), ``dedup.find_duplicates``, ``curate._split_kept_udf``,
  ``curate._timelines_writer`` (``timelines.build_tables``) and the same schema/quarantine helpers. Where the stage code takes a Ray
  Dataset (``find_duplicates``, ``by_key_partition``), it gets ``LocalDataset``: the handful of
  Dataset methods it calls (``map_batches``, ``select_columns``, ``groupby().map_groups``,
  ``materialize``, ``take_all``, ``iter_batches``) run sequentially on pyarrow tables. Dedup and timeline logic are
  therefore the module's own, not a re-implementation. It writes the same Parquet outputs.

Both children report the records they kept, per-reason quarantine counts, users, timelines and a
digest of the sorted kept record ids: the run fails loudly if the two paths disagree.

The parent samples the child's whole process tree (driver, GCS, raylet, Ray workers) every 0.5 s
with psutil: summed RSS (what the brief asks; it counts shared object-store pages once per process
that maps them) and summed PSS (shared pages split between the processes: closer to real use),
plus the 1-minute load average during the run. Per-step records/s per core come from the local
child's CPU time (``time.process_time``) for each step. Results: ``bench/out/curate.json``; a
markdown table goes to stdout.

The 2-process ceiling (after the largest size): the record pass, the dominant step, on 12k records
of the corpus, run alone and then as two copies at once (1 BLAS thread each). 2 x alone / pair
wall is the most any 2-CPU parallel run can gain over one process on this machine at that moment
(two vCPUs of a shared host are not two free cores).

The machine speed probe (``--probe-repeats``, default 3): the same measurement as the ceiling
(alone, then two copies at once), before the first child of a size and after each child. A shared
host's speed drifts between the two halves of a pair; the probes around each run say by how much,
and the table prints beside the measured speed-up the speed-up with the local run scaled to the
ray run's machine speed, and that as a share of the 2-process speed-up around the ray run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Any, Callable, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PLATFORMS = ("reddit", "twitter", "blogger", "amazon")


# ============================================================================ local (no Ray) path


class LocalDataset:
    """The few ``ray.data.Dataset`` methods that ``dedup.find_duplicates`` and
    ``dataops.by_key_partition`` call, run lazily and sequentially on pyarrow tables in this
    process. ``timers`` collects the CPU seconds spent inside each UDF (by its qualified name)."""

    def __init__(self, blocks: Callable[[], Any], timers: Dict[str, float]):
        self._blocks = blocks
        self.timers = timers

    @classmethod
    def of(cls, tables, timers: Dict[str, float]) -> "LocalDataset":
        tables = [t for t in (tables if isinstance(tables, list) else [tables]) if t.num_rows]
        return cls(lambda: iter(tables), timers)

    def iter_blocks(self):
        return self._blocks()

    def _timed(self, name: str, fn, *a, **kw):
        t0 = time.process_time()
        try:
            return fn(*a, **kw)
        finally:
            self.timers[name] += time.process_time() - t0

    def map_batches(self, fn, batch_format: str = "pyarrow", batch_size: Optional[int] = None,
                    fn_kwargs: Optional[dict] = None, **_ignored) -> "LocalDataset":
        import pandas as pd
        import pyarrow as pa

        name = getattr(fn, "__qualname__", repr(fn))
        size = batch_size or 4096

        def gen():
            for block in self.iter_blocks():
                for off in range(0, max(block.num_rows, 1), size):
                    piece = block.slice(off, size)
                    arg = piece.to_pandas() if batch_format == "pandas" else piece
                    out = self._timed(name, fn, arg, **(fn_kwargs or {}))
                    if isinstance(out, pd.DataFrame):
                        out = pa.Table.from_pandas(out, preserve_index=False)
                    yield out

        return LocalDataset(gen, self.timers)

    def select_columns(self, cols: List[str]) -> "LocalDataset":
        return LocalDataset(lambda: (b.select(cols) for b in self.iter_blocks()), self.timers)

    def materialize(self) -> "LocalDataset":
        blocks = list(self.iter_blocks())
        return LocalDataset(lambda: iter(blocks), self.timers)

    def to_table(self):
        import pyarrow as pa

        blocks = [b for b in self.iter_blocks() if b.num_rows]
        return pa.concat_tables(blocks, promote_options="default") if blocks else None

    def take_all(self) -> List[Dict[str, Any]]:
        return [row for b in self.iter_blocks() for row in b.to_pylist()]

    def count(self) -> int:
        return sum(b.num_rows for b in self.iter_blocks())

    def iter_batches(self, batch_format: str = "pyarrow", batch_size: Optional[int] = None, **_ignored):
        for b in self.iter_blocks():
            yield b.to_pandas() if batch_format == "pandas" else b

    def groupby(self, key: str, num_partitions: Optional[int] = None) -> "_LocalGrouped":
        return _LocalGrouped(self, key)


class _LocalGrouped:
    def __init__(self, ds: LocalDataset, key: str):
        self.ds, self.key = ds, key

    def map_groups(self, fn, batch_format: str = "pandas", **_ignored) -> LocalDataset:
        """Bucket rows by key (the shuffle), then call fn once per key with a pandas frame (or a
        pyarrow Table with batch_format="pyarrow")."""
        import numpy as np
        import pandas as pd
        import pyarrow as pa

        ds, key = self.ds, self.key
        name = getattr(fn, "__qualname__", repr(fn))

        def gen():
            buckets: Dict[Any, list] = defaultdict(list)
            for block in ds.iter_blocks():
                t0 = time.process_time()
                if block.num_rows:
                    keys = block.column(key).to_numpy()
                    order = np.argsort(keys, kind="stable")
                    sk = keys[order]
                    block = block.take(pa.array(order))
                    cuts = [0] + list(np.flatnonzero(sk[1:] != sk[:-1]) + 1) + [len(sk)]
                    for s, e in zip(cuts[:-1], cuts[1:]):
                        buckets[sk[s].item() if hasattr(sk[s], "item") else sk[s]].append(block.slice(s, e - s))
                ds.timers["shuffle"] += time.process_time() - t0
            for k in sorted(buckets):
                t0 = time.process_time()
                part = pa.concat_tables(buckets.pop(k))
                part = part if batch_format == "pyarrow" else part.to_pandas()
                ds.timers["shuffle"] += time.process_time() - t0
                out = ds._timed(name, fn, part)
                if isinstance(out, pd.DataFrame):
                    out = pa.Table.from_pandas(out, preserve_index=False)
                yield out

        return LocalDataset(gen, ds.timers)


class Steps:
    """Wall and CPU seconds per named step."""

    def __init__(self):
        self.wall: Dict[str, float] = defaultdict(float)
        self.cpu: Dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str):
        w, c = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[name] += time.perf_counter() - w
            self.cpu[name] += time.process_time() - c


def _write_parquet(table, folder: str, rows_per_file: int = 200_000) -> None:
    import pyarrow.parquet as pq

    os.makedirs(folder, exist_ok=True)
    if table is None or table.num_rows == 0:
        return
    for i, off in enumerate(range(0, table.num_rows, rows_per_file)):
        pq.write_table(table.slice(off, rows_per_file), os.path.join(folder, f"part-{i:05d}.parquet"))


def _cfg(data: str, root: str, *overrides: str):
    from humanllm_ray import runtime
    from humanllm_ray.config import load_config

    ov = [f"run.root={root}", "ingest.use_demo_corpus=false", "run.progress=false", "run.num_cpus=2"]
    if os.environ.get("BENCH_ARROW_POOL"):  # --arrow-pool, for both paths' children
        ov.append(f"run.arrow_memory_pool={os.environ['BENCH_ARROW_POOL']}")
    for p in PLATFORMS:
        d = os.path.join(data, p)
        ov.append(f"ingest.sources.{p}=[{d}]" if os.path.isdir(d) else f"ingest.sources.{p}=[]")
    ov += json.loads(os.environ.get("BENCH_SET", "[]"))  # --set, for both paths' children: after the defaults above, so it wins
    cfg = load_config(overrides=ov + list(overrides))
    # the stages' Arrow pool and the GCS's task-event cap, as init_ray sets them, for the Ray
    # each child starts itself
    runtime.prepare_local_ray(cfg.run)
    return cfg


def _eq(col: str, value: str):
    import pyarrow.compute as pc

    return lambda t: pc.equal(t.column(col), value)


def local_ingest(cfg, out_dir: str, steps: Steps, timers: Dict[str, float]) -> Dict[str, Any]:
    """humanllm_ray.ingest._ingest, step for step, without Ray."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from humanllm_ray import ingest
    from humanllm_ray.ingest import schema as ischema
    from humanllm_ray.ingest.dataops import by_key_partition, partitions_for

    ctx = ingest.read_context(cfg)
    files = ingest.input_files(cfg)
    with steps("read_parse"):
        blocks = [t for p in sorted(files) for f in files[p] for t in ingest._read_one(f, p, ctx)]
        raw = pa.concat_tables(blocks)
        del blocks
    with steps("ingest_join"):
        has_key = pc.not_equal(raw.column("_key"), "")
        pre: Dict[tuple, int] = defaultdict(int)
        for p, s, k in zip(raw.column("platform").to_pylist(), raw.column("_status").to_pylist(), has_key.to_pylist()):
            pre[(p, s, "1" if k else "0")] += 1
        parts = []
        rest_mask = pa.array([True] * raw.num_rows)
        ok_or_aux = pc.is_in(raw.column("_status"), value_set=pa.array(["ok", "aux"]))
        for name, plat in sorted(ingest.REGISTRY.items()):
            needs_join, needs_dedup, n_keyed, n_recs = ingest.join_dedup_plan(pre, name, plat)
            if not (needs_join or needs_dedup):
                continue
            mask = pc.and_(pc.equal(raw.column("platform"), name), ok_or_aux)
            rest_mask = pc.and_(rest_mask, pc.invert(mask))
            mine = LocalDataset.of(raw.filter(mask), timers)
            if needs_join:
                mine = by_key_partition(mine, partitions_for(n_keyed, cfg.ingest.rows_per_file, most=4096), plat.join,
                                        schema=ischema.READ_SCHEMA)
            if needs_dedup:
                mt = mine.to_table()
                is_ok = pc.equal(mt.column("_status"), "ok")
                recs = LocalDataset.of(mt.filter(is_ok), timers).map_batches(
                    ingest._set_dedup_key(plat.dedup_key), batch_format="pandas")
                recs = by_key_partition(recs, partitions_for(n_recs, cfg.ingest.rows_per_file, most=4096), plat.dedup,
                                        schema=ischema.READ_SCHEMA)
                mine = LocalDataset.of([t for t in (recs.to_table(), mt.filter(pc.invert(is_ok))) if t is not None],
                                       timers)
            t = mine.to_table()
            if t is not None:
                parts.append(t.cast(ischema.READ_SCHEMA))
        final = pa.concat_tables([raw.filter(rest_mask)] + parts)
        del raw, parts
    with steps("ingest_write"):
        status = final.column("_status")
        records = ingest._to_log_records(final.filter(pc.equal(status, "ok")))
        _write_parquet(records, os.path.join(out_dir, "ingested", "data"))
        q = final.filter(pc.equal(status, "quarantine"))
        _write_parquet(ingest._to_quarantine(q), os.path.join(out_dir, "ingested", "_quarantine"))
        aux = final.filter(pc.equal(status, "aux"))
        _write_parquet(aux.select(ingest.AUX_COLUMNS),
                       os.path.join(out_dir, "ingested", "aux"))
    by_status: Dict[str, int] = defaultdict(int)
    for s in status.to_pylist():
        by_status[s] += 1
    return {"rows_in": final.num_rows, "rows_out": by_status["ok"], "rows_quarantined": by_status["quarantine"],
            "rows_merged": by_status["merged"] + by_status["aux"]}


def local_curate(cfg, out_dir: str, steps: Steps, timers: Dict[str, float]) -> Dict[str, Any]:
    """humanllm_ray.curate._curate, step for step, without Ray."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from humanllm_ray import curate
    from humanllm_ray.curate import dedup
    from humanllm_ray.ingest.dataops import by_key_partition, partitions_for
    from humanllm_ray.ingest.schema import LOG_RECORD_SCHEMA

    ccfg = cfg.curate
    with steps("curate_read"):
        ds = pq.read_table(os.path.join(out_dir, "ingested", "data"), schema=LOG_RECORD_SCHEMA)
    n_in = ds.num_rows
    with steps("record_pass"):
        udf = curate._record_pass_udf(ccfg)
        work = pa.concat_tables([udf(ds.slice(off, 1024)) for off in range(0, n_in, 1024)])
    del ds
    passed = work.filter(pc.equal(work.column("_reason"), ""))
    n_pass = passed.num_rows
    dropped: List[Any] = []
    stats: Dict[str, int] = {}
    before = dict(timers)
    with steps("dedup"):
        if n_pass > 1:
            dropped, stats = dedup.find_duplicates(LocalDataset.of(passed, timers), ccfg, n_pass)
    dedup_timers = {k: round(v - before.get(k, 0.0), 3) for k, v in timers.items() if v - before.get(k, 0.0) > 0}
    curated = os.path.join(out_dir, "curated")
    q_dir = os.path.join(curated, "_quarantine")
    with steps("mark_dups"):  # curate._split_kept_udf: rejected records to quarantine, the rest on
        split = curate._split_kept_udf(dropped, q_dir, ccfg)
        kept = pa.concat_tables([split(work.slice(off, 20_000)) for off in range(0, work.num_rows, 20_000)])
    del work
    n_kept = n_pass - dedup.dropped_count(stats)
    with steps("timelines"):  # the shuffle by user, then per partition: build, write, count
        by_key_partition(LocalDataset.of(kept, timers), partitions_for(n_kept, ccfg.timeline_rows_per_partition),
                         curate._timelines_writer(ccfg, os.path.join(curated, "data"), q_dir), key="user_id",
                         batch_format="pyarrow").to_table()
    del kept
    good = pq.read_table(os.path.join(curated, "data"))
    quarantine = pq.read_table(q_dir, columns=["reason"])
    by_reason: Dict[str, int] = defaultdict(int)
    for r in quarantine.column("reason").to_pylist():
        by_reason[r] += 1
    return {"rows_in": n_in, "passed_record_pass": n_pass, "kept_after_dedup": n_kept,
            "rows_quarantined": quarantine.num_rows, "by_reason": dict(sorted(by_reason.items())),
            "dedup": stats, "dedup_cpu_by_udf": dedup_timers, **summarize_timelines(good)}


def summarize_timelines(tbl) -> Dict[str, Any]:
    """Kept records, users, timelines and a digest of the sorted kept record ids."""
    import pyarrow.compute as pc

    recs = pc.list_flatten(tbl.column("records"))
    ids = sorted(pc.struct_field(recs, "record_id").to_pylist()) if len(recs) else []
    h = hashlib.sha1("\n".join(ids).encode()).hexdigest()[:16]
    users = int(pc.sum(pc.equal(tbl.column("chunk"), 0)).as_py() or 0)
    return {"rows_out": len(ids), "users": users, "timelines": tbl.num_rows, "kept_digest": h}


def exact_hash_cpu(out_dir: str, cfg) -> Dict[str, float]:
    """CPU seconds of the exact-duplicate key alone (normalize + sha1 per passed record, the
    same dedup.body_of / clean.normalize_for_hash / dedup.exact_hash calls), measured after the
    timed pipeline so the MinHash share of find_duplicates can be separated."""
    import pyarrow.parquet as pq

    from humanllm_ray.curate import clean, dedup

    t = pq.read_table(os.path.join(out_dir, "ingested", "data"), columns=["platform", "kind", "title", "text"])
    cols = [t.column(c).to_pylist() for c in ("platform", "kind", "title", "text")]
    t0 = time.process_time()
    hashes = {dedup.exact_hash(clean.normalize_for_hash(dedup.body_of(p or "", k or "", ti or "", x or "")))
              for p, k, ti, x in zip(*cols)}
    cpu = time.process_time() - t0
    return {"records": t.num_rows, "cpu_s": cpu, "distinct": len(hashes)}


def pipeline_done_marker(root: str) -> str:
    """The file a child creates when its timed pipeline is over (see ``TreeSampler``)."""
    return os.path.join(root, "_bench_pipeline_done")


def _pipeline_done(root: str) -> None:
    with open(pipeline_done_marker(root), "w") as fh:
        fh.write("done\n")


def child_local(data: str, root: str) -> Dict[str, Any]:
    from humanllm_ray import runtime

    runtime.setup_logging("WARNING")
    cfg = _cfg(data, root)
    steps, timers = Steps(), defaultdict(float)
    t0, c0 = time.perf_counter(), time.process_time()
    ing = local_ingest(cfg, root, steps, timers)
    cur = local_curate(cfg, root, steps, timers)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    _pipeline_done(root)
    exact = exact_hash_cpu(root, cfg)
    return {"mode": "local", "pipeline_s": wall, "cpu_s": cpu, "ingest": ing, "curate": cur,
            "steps_wall_s": dict(steps.wall), "steps_cpu_s": dict(steps.cpu), "exact_hash": exact}


def child_ceiling(data: str, n_records: int = 12000) -> Dict[str, Any]:
    """The record pass (the dominant step) on the first n_records of the corpus, timed: run
    alone and as two copies at once, it tells how much 2 processes can gain on this machine."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from humanllm_ray import curate, ingest

    cfg = _cfg(data, "/nonexistent")
    ctx = ingest.read_context(cfg)
    files = ingest.input_files(cfg)
    tables = []
    for p in sorted(files):  # a slice of every platform
        for t in ingest._read_one(files[p][0], p, ctx):
            t = t.filter(pc.equal(t.column("_status"), "ok")).slice(0, n_records // len(files))
            tables.append(ingest._to_log_records(t))
            break
    recs = pa.concat_tables(tables)
    udf = curate._record_pass_udf(cfg.curate)
    udf(recs.slice(0, 20))  # warm: langid model load
    w, c = time.perf_counter(), time.process_time()
    for off in range(0, recs.num_rows, 1024):
        udf(recs.slice(off, 1024))
    return {"records": recs.num_rows, "wall_s": time.perf_counter() - w, "cpu_s": time.process_time() - c}


def _launch_ceiling_child(data: str, work: str, tag: str):
    """(result path, process) of one ``--child ceiling`` run (the 12k-record record pass)."""
    os.makedirs(work, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    res = os.path.join(work, f"ceiling-{tag}.json")
    return res, subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", "ceiling", "--data", data,
                                  "--root", work, "--result", res], cwd=REPO, env=env)


def measure_ceiling(data: str, work: str, repeats: int = 3) -> Dict[str, Any]:
    """Speed-up two processes get over one on this machine for the record pass (alone vs two
    copies at once, 1 BLAS thread each): the most any 2-CPU parallel run can reach here."""

    def read(res):
        with open(res) as fh:
            return json.load(fh)

    rows = []
    for _ in range(repeats):
        load = os.getloadavg()[0]
        res, p = _launch_ceiling_child(data, work, "alone")
        p.wait()
        alone = read(res)
        (ra, pa_), (rb, pb) = _launch_ceiling_child(data, work, "a"), _launch_ceiling_child(data, work, "b")
        pa_.wait()
        pb.wait()
        a, b = read(ra), read(rb)
        pair_wall = (a["wall_s"] + b["wall_s"]) / 2
        rows.append({"alone_wall_s": alone["wall_s"], "pair_wall_s": [a["wall_s"], b["wall_s"]],
                     "speedup_2proc": 2 * alone["wall_s"] / pair_wall, "records": alone["records"], "load_1min": load})
    sp = sorted(r["speedup_2proc"] for r in rows)
    return {"runs": rows, "median_speedup_2proc": sp[len(sp) // 2], "min": sp[0], "max": sp[-1]}


def speed_probe(data: str, work: str, repeats: int) -> Dict[str, Any]:
    """The machine's speed now: the 12k-record record pass in one process and as two copies at
    once (``measure_ceiling``), ``repeats`` times: the median alone wall is the single process's
    speed, the median 2-process speed-up the most two processes got at that moment. The pair's
    two halves run ~10-20 minutes apart on a shared host whose speed drifts: one session's
    single-process 1M run took 1,028-1,247 s where the session before's took 863-877 on the
    same code, and its 2-process speed-up swung 1.40-2.61x within a minute. Probes before and
    after each child say how fast the machine was around it, so a ratio can be read against the
    drift instead of taken as the code's. A probe is a point sample of ~5-15 s: at 300k its
    single-process wall went 7.5 -> 4.8 s across a 188 s run, and the estimate it gave
    (efficiency 111%) overshot, so it flags drift; it does not correct it."""
    got = measure_ceiling(data, work, repeats)
    walls = sorted(r["alone_wall_s"] for r in got["runs"])
    return {"wall_s": walls[len(walls) // 2], "ceiling": got["median_speedup_2proc"], "runs": got["runs"]}


def probe_adjustment(runs: List[Dict[str, Any]], speedup: float) -> Optional[Dict[str, Any]]:
    """Read the measured speed-up against the probes around the two runs (each run: the mean of
    the probe before and the probe after it). A single process's time scales with the alone
    probe's wall, so ``speedup_at_ray_speed`` is the speed-up with the local time scaled to the
    machine speed around the ray run; divided by the 2-process speed-up around the ray run, it
    gives ``efficiency``: the share of what two processes could gain then that Ray got.
    Estimates from ~5 s probes, printed beside the measured ratio, never instead of it."""
    def around(mode, key):
        xs = [(r[f"{key}_before"] + r[f"{key}_after"]) / 2 for r in runs
              if r["mode"] == mode and r.get(f"{key}_before") and r.get(f"{key}_after")]
        return statistics.median(xs) if xs else None

    ray_p, loc_p, ray_c = around("ray", "probe_s"), around("local", "probe_s"), around("ray", "ceiling")
    if not (ray_p and loc_p and ray_c):
        return None
    at_ray_speed = speedup * ray_p / loc_p
    return {"ray_probe_s": ray_p, "local_probe_s": loc_p, "local_over_ray": loc_p / ray_p,
            "speedup_at_ray_speed": at_ray_speed, "ray_ceiling": ray_c, "efficiency": at_ray_speed / ray_c}


# ============================================================================ Ray path


def child_ray(data: str, root: str) -> Dict[str, Any]:
    import pyarrow.parquet as pq

    from humanllm_ray import curate, ingest, runtime

    runtime.setup_logging("WARNING")
    cfg = _cfg(data, root)
    import ray

    t0 = time.perf_counter()
    # address="local": always a fresh local cluster, never one a `ray start` left on the machine
    osm = os.environ.get("BENCH_OBJECT_STORE_MB")  # run.object_store_memory_mb for the stages
    ray.init(address="local", num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=True,
             **({"object_store_memory": int(osm) * 2**20} if osm else {}))
    ray.data.DataContext.get_current().enable_progress_bars = False
    t1 = time.perf_counter()
    rep_i = ingest.run(cfg)
    t2 = time.perf_counter()
    rep_c = curate.run(cfg)
    t3 = time.perf_counter()
    _pipeline_done(root)
    ray.shutdown()
    good = pq.read_table(os.path.join(root, "curated", "data"))
    summary = summarize_timelines(good)
    return {"mode": "ray", "ray_init_s": t1 - t0, "pipeline_s": t3 - t1, "ingest_s": t2 - t1, "curate_s": t3 - t2,
            "ingest": {k: rep_i.get(k) for k in ("rows_in", "rows_out", "rows_quarantined", "rows_merged", "seconds")},
            "curate": {**{k: rep_c.get(k) for k in ("rows_in", "rows_out", "rows_quarantined", "by_reason", "seconds")},
                       "users": rep_c.get("users"), "timelines": rep_c.get("timelines"), "dedup": rep_c.get("dedup"),
                       "workers_retired": rep_c.get("workers_retired"), "record_pass_workers": rep_c.get("record_pass_workers"),
                       "pass_seconds": rep_c.get("pass_seconds"), "kept_digest": summary["kept_digest"], "summary": summary}}


# ============================================================================ parent


class TreeSampler:
    """Peak summed RSS / PSS of a process tree, CPU seconds of its processes, load average."""

    # Every second, not every half: reading a process's PSS (/proc/pid/smaps_rollup) costs
    # ~1.8 ms, so the Ray tree (10-13 processes) cost the sampler ~35 ms of CPU a second at
    # 0.5 s, ~1.8% of the 2-CPU machine taken from the Ray run only (one process: ~3 ms). The
    # peaks it looks for are plateaus of tens of seconds (see "timeline").
    def __init__(self, pid: int, interval: float = 1.0, done_marker: str = ""):
        import psutil

        self.root = psutil.Process(pid)
        self.interval = interval
        # once the child creates this file its pipeline is over: the peaks stop there, so the
        # child's own check of the output afterwards (reading every kept record for the digest:
        # 2.2 GB in one process at 3M records) is not counted as the pipeline's memory
        self.done_marker = done_marker
        self.peak_rss = self.peak_pss = 0
        self.peak_procs = 0
        self.at_peak: List[Any] = []
        self.cpu: Dict[int, float] = {}
        self.names: Dict[int, str] = {}  # pid -> process name, for CPU by role (raylet, GCS, workers)
        self.load: List[float] = []
        # every ~2 s: (seconds since start, cores busy since the last point, summed PSS MB), to
        # see which phase is serial (cores ~1) and which holds the memory
        self.timeline: List[Any] = []
        self._t0 = time.perf_counter()
        self._last = (0.0, 0.0)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        import psutil

        try:
            procs = [self.root] + self.root.children(recursive=True)
        except psutil.Error:
            return
        rss = pss = 0
        per = []
        for p in procs:
            try:
                mi = p.memory_full_info()
                rss += mi.rss
                pss += getattr(mi, "pss", mi.rss)
                per.append((p.name()[:60], round(mi.rss / 2**20), round(getattr(mi, "pss", mi.rss) / 2**20)))
                ct = p.cpu_times()
                self.cpu[p.pid] = ct.user + ct.system
                # a Ray worker is "python" until it names itself (setproctitle): look again
                # until it has, or all of its CPU is booked to "python"
                if self.names.get(p.pid, "python").startswith("python"):
                    nm = p.name()[:40]
                    # task workers rename themselves per task: one role for all of them
                    self.names[p.pid] = nm if not nm.startswith("ray::") or "Actor" in nm or "Agent" in nm \
                        else "ray::worker"
                    if p.pid == self.root.pid:
                        self.names[p.pid] = "driver"

            except psutil.Error:
                pass
        now = time.perf_counter() - self._t0
        cpu = sum(self.cpu.values())
        if now - self._last[0] >= 2.0:
            busy = (cpu - self._last[1]) / (now - self._last[0])
            self.timeline.append((round(now, 1), round(max(0.0, busy), 2), round(pss / 2**20)))
            self._last = (now, cpu)
        if self.done_marker and os.path.exists(self.done_marker):
            return
        if pss > self.peak_pss:  # who holds the memory at the peak
            self.at_peak = sorted(per, key=lambda x: -x[2])[:10]
        self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
        self.peak_procs = max(self.peak_procs, len(procs))

    def cpu_by_name(self) -> Dict[str, float]:
        out: Dict[str, float] = defaultdict(float)
        for pid, c in self.cpu.items():
            out[self.names.get(pid, "?")] += c
        return {k: round(v, 1) for k, v in sorted(out.items(), key=lambda kv: -kv[1])}

    def _run(self):
        k = 0
        while not self._stop.is_set():
            self._sample()
            if k % 10 == 0:
                self.load.append(os.getloadavg()[0])
            k += 1
            self._stop.wait(self.interval)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


def run_child(mode: str, data: str, root: str) -> Dict[str, Any]:
    import shutil

    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root, exist_ok=True)
    result = os.path.join(root, "_bench_result.json")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", mode, "--data", data, "--root", root,
           "--result", result]
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    env = dict(os.environ)
    if mode == "local":
        # Ray starts its workers with OMP_NUM_THREADS=1 (so OpenBLAS runs one thread); the
        # single process gets the same, or langid's numpy dot spins OpenBLAS threads: 20-100x
        # slower per call on a busy 2-core machine, which would flatter Ray.
        env.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with TreeSampler(proc.pid, done_marker=pipeline_done_marker(root)) as s:
        out, _ = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(out[-6000:])
        raise SystemExit(f"child {mode} failed ({proc.returncode})")
    with open(result) as fh:
        res = json.load(fh)
    res.update({
        "process_wall_s": wall, "peak_rss_mb": s.peak_rss / 2**20, "peak_pss_mb": s.peak_pss / 2**20,
        "peak_processes": s.peak_procs, "at_peak_pss_top": s.at_peak, "timeline": s.timeline,
        "cpu_s_by_process": s.cpu_by_name(), "tree_cpu_s_approx": sum(s.cpu.values()),
        # distinct processes the sampler saw (each replaced Ray worker is a new one)
        "processes_seen": len(s.names),
        "load_1min": {"start": load0[0], "mean": sum(s.load) / max(1, len(s.load)), "max": max(s.load or [0.0]),
                      "end": os.getloadavg()[0]},
    })
    shutil.rmtree(root, ignore_errors=True)  # outputs can be large; the result is kept in memory
    return res


def profile_setup(doc: str, name: str, every: float):
    """The shared start of the one-run profilers (memprofile.py, cpuprofile.py): their command
    line (--n, --seed, --shards, --every, --data-root, --out, --driver-components-max-pairs,
    --driver-links-max), the corpus (generated if missing), a fresh
    work folder bench/out/curate-work/{name}-{n}, and the stages' config on them. Returns
    (args, cfg); the profiler runs curate unless ``args.ingest_only``."""
    import logging
    import shutil

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--shards", type=int, default=1,
                    help="profile gen.py's sharded corpus (--shards: the heaviest user and item the size of "
                         "N/SHARDS records' instead of N's)")
    ap.add_argument("--every", type=float, default=every, help="sampling interval, seconds")
    ap.add_argument("--data-root", default=os.path.join(HERE, "..", "out", "curate-data"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--driver-components-max-pairs", type=int, default=None,
                    help="dedup.DRIVER_COMPONENTS_MAX_PAIRS for this run (0: components always in the workers)")
    ap.add_argument("--driver-links-max", type=int, default=None,
                    help="dedup.DRIVER_LINKS_MAX for this run (0: the candidate links always joined with the "
                         "signatures in the workers)")
    ap.add_argument("--keep-ingest", action="store_true",
                    help="keep the work folder's finished ingest (the stage skips it, as a rerun does) and "
                         "profile curate alone: a 10M-record ingest takes 6-14 min on 2 CPUs")
    ap.add_argument("--ingest-only", action="store_true",
                    help="stop after ingest: its phase alone, at sizes whose curate does not fit a session "
                         "(a 10M-record curate takes ~2 h on 2 CPUs)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="config overrides for this run (curate.worker_max_files=0, ...)")
    args = ap.parse_args()
    from humanllm_ray.curate import dedup

    if args.driver_components_max_pairs is not None:
        dedup.DRIVER_COMPONENTS_MAX_PAIRS = args.driver_components_max_pairs  # read on the driver only
    if args.driver_links_max is not None:
        dedup.DRIVER_LINKS_MAX = args.driver_links_max  # read on the driver only
    data = ensure_data(args.n, args.seed, args.data_root, args.shards)["path"]
    root = os.path.join(HERE, "..", "out", "curate-work", f"{name}-{args.n}")
    if args.keep_ingest:
        for entry in os.listdir(root) if os.path.isdir(root) else []:
            if entry != "ingested":
                shutil.rmtree(os.path.join(root, entry), ignore_errors=True)
    else:
        shutil.rmtree(root, ignore_errors=True)
    logging.basicConfig(level=logging.INFO, format="%(relativeCreated)8.0f ms %(name)s %(message)s")
    return args, _cfg(data, root, *args.set)


def probe_main(doc: str, script: str, child: Callable[[str], None], option: str, default: List[str],
               env_var: str, columns: List[str], choices: Optional[List[str]] = None) -> None:
    """The shared command line and driver of the Ray-settings probes (gcsprobe.py,
    metricsprobe.py): ``--OPTION`` names the modes to compare; each runs as ``script --child
    MODE`` (``child(MODE)``), a fresh process starting its own Ray (the setting, ``env_var``, is
    read when Ray starts, so it is cleared from the inherited environment) and printing its JSON
    rows last. The rows are printed as a table of ``columns`` and saved to ``--out``."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(f"--{option}", nargs="+", default=default, choices=choices)
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    rows: List[Dict] = []
    env = {k: v for k, v in os.environ.items() if k != env_var}
    for mode in getattr(args, option):
        printed = subprocess.run([sys.executable, script, "--child", mode], env=env, check=True,
                                 capture_output=True, text=True).stdout
        rows += json.loads(printed.strip().splitlines()[-1])
    print(" ".join(f"{c:>16}" for c in columns))
    for r in rows:
        print(" ".join(f"{r.get(c, '?')!s:>16}" for c in columns))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


def ensure_data(n: int, seed: int, data_root: str, shards: int = 1) -> Dict[str, Any]:
    from gen import data_name

    out = os.path.join(data_root, data_name(n, seed, shards))
    manifest = os.path.join(out, "gen.json")
    if os.path.exists(manifest):
        with open(manifest) as fh:
            m = json.load(fh)
        if m.get("n") == n and m.get("seed") == seed and m.get("shards", 1) == shards:
            return {"path": out, **m}
    subprocess.run([sys.executable, os.path.join(HERE, "gen.py"), "--n", str(n), "--seed", str(seed),
                    "--shards", str(shards), "--out", out], check=True, cwd=REPO)
    with open(manifest) as fh:
        return {"path": out, **json.load(fh)}


def compare(ray: Dict[str, Any], loc: Dict[str, Any]) -> Dict[str, Any]:
    checks = {
        "ingest_rows_out": (ray["ingest"]["rows_out"], loc["ingest"]["rows_out"]),
        "ingest_rows_quarantined": (ray["ingest"]["rows_quarantined"], loc["ingest"]["rows_quarantined"]),
        "curate_rows_out": (ray["curate"]["rows_out"], loc["curate"]["rows_out"]),
        "curate_users": (ray["curate"]["users"], loc["curate"]["users"]),
        "curate_timelines": (ray["curate"]["timelines"], loc["curate"]["timelines"]),
        "curate_by_reason": (ray["curate"]["by_reason"], loc["curate"]["by_reason"]),
        "kept_digest": (ray["curate"]["kept_digest"], loc["curate"]["kept_digest"]),
    }
    bad = {k: v for k, v in checks.items() if v[0] != v[1]}
    return {"same": not bad, "mismatches": {k: {"ray": v[0], "local": v[1]} for k, v in bad.items()}}


def step_rates(loc: Dict[str, Any], n_input_rows: int) -> List[Dict[str, Any]]:
    """Records/s per core for each step, from the local child's CPU seconds."""
    cpu, cur = loc["steps_cpu_s"], loc["curate"]
    exact = loc["exact_hash"]
    # the exact key is computed for the records that passed the record pass, inside dedup
    exact_cpu = exact["cpu_s"] * cur["passed_record_pass"] / max(1, exact["records"])
    rows = [
        ("read/parse (native files -> records)", n_input_rows, cpu.get("read_parse", 0)),
        ("ingest join + variant dedup + write", loc["ingest"]["rows_in"],
         cpu.get("ingest_join", 0) + cpu.get("ingest_write", 0)),
        ("record pass: filters + clean + PII + lang", cur["rows_in"], cpu.get("record_pass", 0) + cpu.get("curate_read", 0)),
        ("exact dedup (normalize + hash)", cur["passed_record_pass"], exact_cpu),
        ("near-dup MinHash (signatures, bands, LSH groups, verify)", cur["passed_record_pass"],
         cpu.get("dedup", 0) - exact_cpu + cpu.get("mark_dups", 0)),
        ("user filters + timelines (+ write)", cur["kept_after_dedup"], cpu.get("timelines", 0) + cpu.get("curate_write", 0)),
    ]
    return [{"step": s, "records": n, "cpu_s": round(c, 2), "rec_per_s_per_core": round(n / c) if c > 0 else None,
             "core_s_per_input_record": c / max(1, n_input_rows)} for s, n, c in rows]


def fmt_table(results: Dict[str, Any]) -> str:
    lines = ["| input | path | pipeline s (ingest + curate) | rec/s | CPU s (tree) | peak RSS MB (sum) | peak PSS MB "
             "| load 1-min mean (max) | kept |", "|---|---|---:|---:|---:|---:|---:|---|---:|"]
    for size in results["sizes"]:
        for run in size["runs"]:
            n = size["n"]
            split = f" ({run['ingest_s']:.0f} + {run['curate_s']:.0f})" if run["mode"] == "ray" else ""
            lines.append(
                f"| {n:,} | {run['mode']} | {run['pipeline_s']:.1f}{split} | {n / run['pipeline_s']:,.0f} | "
                f"{run['tree_cpu_s_approx']:,.0f} | {run['peak_rss_mb']:,.0f} | {run['peak_pss_mb']:,.0f} | "
                f"{run['load_1min']['mean']:.1f} ({run['load_1min']['max']:.1f}) | {run['curate']['rows_out']:,} |")
    out = ["\n".join(lines), ""]
    for size in results["sizes"]:
        if "speedup" in size:
            out.append(f"n={size['n']:,}: speed-up ray/local = {size['speedup']:.2f}x (goal >= 1.8x); Ray CPU "
                       f"{size['cpu_overhead']:.2f}x the single process's; same output: {size['check']['same']}")
        if "probe" in size:
            p = size["probe"]
            out.append(f"   machine speed probe (12k-record record pass, one process): {p['ray_probe_s']:.2f} s around "
                       f"the ray run, {p['local_probe_s']:.2f} s around the local run ({p['local_over_ray']:.2f}x); "
                       f"speed-up with the local run scaled to the ray run's machine speed: "
                       f"{p['speedup_at_ray_speed']:.2f}x, {p['efficiency']:.0%} of the 2-process speed-up around "
                       f"the ray run ({p['ray_ceiling']:.2f}x) (estimates)")
        if "ceiling" in size:
            c = size["ceiling"]
            out.append(f"   2-process ceiling on this machine (record pass alone vs two copies at once): "
                       f"{c['median_speedup_2proc']:.2f}x (min {c['min']:.2f}, max {c['max']:.2f})")
    if results.get("memory"):
        m = results["memory"]
        out.append(f"peak RSS ray {m['small_n']:,} -> {m['large_n']:,}: {m['rss_small_mb']:,.0f} -> "
                   f"{m['rss_large_mb']:,.0f} MB ({m['rss_ratio']:.2f}x for {m['input_ratio']:.0f}x input); "
                   f"PSS {m['pss_small_mb']:,.0f} -> {m['pss_large_mb']:,.0f} MB ({m['pss_ratio']:.2f}x)")
    with_steps = [s for s in results["sizes"] if "steps" in s]
    if with_steps:
        big = with_steps[-1]
        out += ["", f"per step, n={big['n']:,} (single process, CPU time):", "",
                "| step | records | CPU s | rec/s/core |", "|---|---:|---:|---:|"]
        for r in big["steps"]:
            out.append(f"| {r['step']} | {r['records']:,} | {r['cpu_s']:.1f} | {r['rec_per_s_per_core'] or 0:,} |")
        p = big["plan"]
        out.append(f"\nplan: {p['records']:,} records in 1 h need ~{p['cores_local_cpu']:.0f} cores at the "
                   f"single-process CPU cost ({p['core_s_per_record_local'] * 1e3:.2f} core-ms/record), "
                   f"~{p['cores_ray_cpu']:.0f} at the CPU the Ray run used ({p['core_s_per_record_ray'] * 1e3:.2f} "
                   f"core-ms/record)")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=1, help="ray/local pairs per size, order alternating")
    ap.add_argument("--local-sizes", type=int, nargs="*", default=None,
                    help="sizes that also get the no-Ray baseline (default: all)")
    ap.add_argument("--data-root", default=os.path.join(REPO, "bench", "out", "curate-data"))
    ap.add_argument("--work", default=os.path.join(REPO, "bench", "out", "curate-work"))
    ap.add_argument("--out", default=os.path.join(REPO, "bench", "out", "curate.json"))
    ap.add_argument("--plan-records", type=float, default=55e6)
    ap.add_argument("--object-store-mb", type=int, default=None,
                    help="cap the Ray path's object store (run.object_store_memory_mb); default: Ray's 30%% of RAM")
    ap.add_argument("--arrow-pool", choices=["system", "mimalloc", "jemalloc"], default=None,
                    help="run.arrow_memory_pool for both paths (default: the config's)")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                    help="config overrides for both paths (e.g. ingest.worker_max_tasks=0 curate.worker_max_tasks=0)")
    ap.add_argument("--merge", nargs="+", help="combine result files of earlier runs into --out and print the table")
    ap.add_argument("--ceiling-repeats", type=int, default=3,
                    help="alone/pair runs of the 2-process ceiling measurement (0: skip)")
    ap.add_argument("--probe-repeats", type=int, default=3,
                    help="alone/pair runs of the machine speed probe before and after each child (median; 0: none)")
    ap.add_argument("--child", choices=["ray", "local", "ceiling"], help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--root", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        res = {"ray": child_ray, "local": child_local}[args.child](args.data, args.root) \
            if args.child != "ceiling" else child_ceiling(args.data)
        with open(args.result, "w") as fh:
            json.dump(res, fh, default=str)
        return

    if args.merge:
        parts = []
        for f in args.merge:
            with open(f) as fh:
                parts.append(json.load(fh))
        results = {"machine": parts[0]["machine"], "merged_from": [os.path.basename(f) for f in args.merge],
                   "runs_started": [p["started"] for p in parts],
                   "sizes": sorted((s for p in parts for s in p["sizes"]), key=lambda s: s["n"])}
        if args.ceiling_repeats:
            big = results["sizes"][-1]
            big["ceiling"] = measure_ceiling(ensure_data(big["n"], args.seed, args.data_root)["path"],
                                             os.path.join(args.work, "ceiling"), args.ceiling_repeats)
        finish(results, args.out)
        return

    if args.object_store_mb:
        os.environ["BENCH_OBJECT_STORE_MB"] = str(args.object_store_mb)
    if args.arrow_pool:
        os.environ["BENCH_ARROW_POOL"] = args.arrow_pool
    if args.set:
        os.environ["BENCH_SET"] = json.dumps(args.set)
    results: Dict[str, Any] = {"object_store_mb": args.object_store_mb, "arrow_pool": args.arrow_pool,
                               "set": args.set,
                               "machine": {"cpus": os.cpu_count(), "ray_num_cpus": 2,
                                           "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
                               "started": time.strftime("%Y-%m-%d %H:%M:%S"), "sizes": []}
    for n in args.sizes:
        data = ensure_data(n, args.seed, args.data_root)
        print(f"== n={n:,}: {data['bytes'] / 2**20:.0f} MiB of input in {data['path']}", flush=True)
        runs = []
        with_local = args.local_sizes is None or n in args.local_sizes
        probe_dir = os.path.join(args.work, "probe")
        probe = speed_probe(data["path"], probe_dir, args.probe_repeats) if args.probe_repeats else None
        for rep in range(args.repeats):
            order = ["ray", "local"] if rep % 2 == 0 else ["local", "ray"]
            for mode in order:
                if mode == "local" and not with_local:
                    continue
                r = run_child(mode, data["path"], os.path.join(args.work, f"{mode}-n{n}"))
                r["repeat"] = rep
                if probe:  # the probe after one child is the probe before the next
                    r["probe_s_before"], r["ceiling_before"] = probe["wall_s"], probe["ceiling"]
                    probe = speed_probe(data["path"], probe_dir, args.probe_repeats)
                    r["probe_s_after"], r["ceiling_after"] = probe["wall_s"], probe["ceiling"]
                runs.append(r)
                print(f"   {mode:5s} pipeline {r['pipeline_s']:7.1f} s  peak RSS {r['peak_rss_mb']:7.0f} MB  "
                      f"PSS {r['peak_pss_mb']:7.0f} MB  load {r['load_1min']['mean']:.1f}  kept {r['curate']['rows_out']:,}"
                      + (f"  probe {r['probe_s_before']:.1f} -> {r['probe_s_after']:.1f} s, 2-process "
                         f"{r['ceiling_before']:.2f} -> {r['ceiling_after']:.2f}x" if probe else ""),
                      flush=True)
        ray_runs = [r for r in runs if r["mode"] == "ray"]
        loc_runs = [r for r in runs if r["mode"] == "local"]
        # the median (of an even count, the mean of the middle two: with --repeats 2 the ABBA
        # order's two runs of each path count alike, where the upper one took the larger)
        med = statistics.median
        entry: Dict[str, Any] = {"n": n, "input": {k: data[k] for k in ("records", "bytes", "injected", "platforms")},
                                 "runs": runs, "check": {"same": None}}
        ray_cpu = med([r["tree_cpu_s_approx"] for r in ray_runs])
        entry["ray_cpu_s_per_record"] = ray_cpu / n
        if loc_runs:
            entry["speedup"] = med([r["pipeline_s"] for r in loc_runs]) / med([r["pipeline_s"] for r in ray_runs])
            entry["cpu_overhead"] = ray_cpu / med([r["cpu_s"] for r in loc_runs])
            adj = probe_adjustment(runs, entry["speedup"])
            if adj:
                entry["probe"] = adj
            entry["check"] = check = compare(ray_runs[0], loc_runs[0])
            loc = loc_runs[0]
            entry["steps"] = step_rates(loc, loc["ingest"]["rows_in"])
            core_s_local = loc["cpu_s"] / n
            entry["plan"] = {"records": int(args.plan_records), "core_s_per_record_local": core_s_local,
                             "core_s_per_record_ray": ray_cpu / n,
                             "cores_local_cpu": args.plan_records * core_s_local / 3600,
                             "cores_ray_cpu": args.plan_records * ray_cpu / n / 3600}
        if args.ceiling_repeats and n == args.sizes[-1]:
            entry["ceiling"] = measure_ceiling(data["path"], os.path.join(args.work, "ceiling"), args.ceiling_repeats)
            print(f"   2-process ceiling (record pass alone vs two at once): "
                  f"{entry['ceiling']['median_speedup_2proc']:.2f}x (min {entry['ceiling']['min']:.2f}, "
                  f"max {entry['ceiling']['max']:.2f})", flush=True)
        results["sizes"].append(entry)
        check = entry["check"]
        if check["same"] is False:
            print(f"   MISMATCH between ray and local: {json.dumps(check['mismatches'])[:2000]}", flush=True)
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump(results, fh, indent=1, default=str)
    finish(results, args.out)


def finish(results: Dict[str, Any], out: str) -> None:
    """Memory at the smallest vs the largest size, write the JSON, print the tables."""
    if len(results["sizes"]) >= 2:
        s, l = results["sizes"][0], results["sizes"][-1]
        rs = max(r["peak_rss_mb"] for r in s["runs"] if r["mode"] == "ray")
        rl = max(r["peak_rss_mb"] for r in l["runs"] if r["mode"] == "ray")
        ps = max(r["peak_pss_mb"] for r in s["runs"] if r["mode"] == "ray")
        pl = max(r["peak_pss_mb"] for r in l["runs"] if r["mode"] == "ray")
        results["memory"] = {"small_n": s["n"], "large_n": l["n"], "input_ratio": l["n"] / s["n"],
                             "rss_small_mb": rs, "rss_large_mb": rl, "rss_ratio": rl / rs,
                             "pss_small_mb": ps, "pss_large_mb": pl, "pss_ratio": pl / ps}
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as fh:
        json.dump(results, fh, indent=1, default=str)
    print(fmt_table(results), flush=True)
    if not all(s["check"]["same"] is not False for s in results["sizes"]):
        raise SystemExit("ray and local outputs differ (see the JSON)")


if __name__ == "__main__":
    main()
