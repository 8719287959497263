"""The ``openai`` engine against a real OpenAI-compatible server: ``transformers serve``.

tests/test_llm.py covers the engine's retry policy (429 / 5xx / 400) deterministically with a
hand-written fake server; here the server is the real thing, serving the embedded tiny model
on 127.0.0.1 (``transformers[serving]``, in the dev extra).

What transformers serve (5.23) does with our requests, checked here or in its source:
- it accepts ``response_format`` and ignores it (logged as an unsupported field), so there is
  no schema-constrained decoding: replies of the random tiny model are not JSON, and the
  synthesis retry loop is what turns them into quarantined rows with a reason;
- it decodes with the served model's generation config: the tiny model's says
  ``do_sample=false`` and ``temperature`` does not turn sampling on, so replies are greedy and
  a retry with a new seed gets the same text (``seed`` only reseeds torch's global RNG);
- it runs one ``generate`` at a time on an inference thread: concurrent requests queue there.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pyarrow as pa
import pytest
from synth_fixtures import CURATED_SCHEMA, curated_rows, write_curated

from humanllm_ray.config import load_config
from humanllm_ray.llm import EngineFailure, engine_identity, get_engine_class
from humanllm_ray.llm.openai_engine import OpenAIEngine
from humanllm_ray.llm.schema import SCHEMA_INVALID, UNPARSED, check_reply, validate
from humanllm_ray.stage import read_table
from humanllm_ray.synth import synthesize
from humanllm_ray.synth.generation import ReplySpec, Sampling, generate_with_retries
from humanllm_ray.synth.products import get_product

MAX_NEW_TOKENS = 64  # every product's request schema is fitted to this budget
START_TIMEOUT_S = 240  # importing transformers + fastapi and loading the model; slow on a busy 2-core box


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(path: str, n: int = 40) -> str:
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as exc:
        return f"(no log: {exc})"


@pytest.fixture(scope="module")
def served(tiny_model_dir, tmp_path_factory):
    """``transformers serve`` on a free local port with the tiny model preloaded.

    Yields {"base_url", "model", "start_s"}. The model is pinned (positional argument), so
    the request's ``model`` must be exactly this path; the server answers /health only after
    the model is loaded.
    """
    port = _free_port()
    log_path = str(tmp_path_factory.mktemp("transformers-serve") / "serve.log")
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        # One torch thread: on a shared 2-core machine two threads per token step thrash (64 tokens
        # took ~10 s with the default threads under load, ~1.3 s with one).
        OMP_NUM_THREADS="1",
    )
    cmd = [
        sys.executable, "-m", "transformers.cli.transformers", "serve", str(tiny_model_dir),
        "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--log-level", "warning",
    ]  # fmt: skip
    t0 = time.monotonic()
    with open(log_path, "wb") as log:
        # Its own session: teardown signals the server's whole process group and nothing else.
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def stop() -> None:
        for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue

    health = f"http://127.0.0.1:{port}/health"
    while True:
        if proc.poll() is not None:
            pytest.fail(f"transformers serve exited with {proc.returncode} before answering; log tail:\n{_log_tail(log_path)}")
        try:
            with urllib.request.urlopen(health, timeout=1) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() - t0 > START_TIMEOUT_S:
            stop()
            pytest.fail(f"transformers serve did not answer {health} within {START_TIMEOUT_S} s; log tail:\n{_log_tail(log_path)}")
        time.sleep(0.25)
    start_s = time.monotonic() - t0
    print(f"transformers serve up in {start_s:.1f} s on port {port}")
    try:
        yield {"base_url": f"http://127.0.0.1:{port}/v1", "model": str(tiny_model_dir), "start_s": start_s, "log": log_path}
    finally:
        stop()


def _cfg(*overrides):
    return load_config(
        overrides=["run.progress=false", "synth.products=[persona,social_qa]", f"synth.max_new_tokens={MAX_NEW_TOKENS}", *overrides]
    )


def _openai_overrides(served, concurrency=3):
    return [
        "synth.engine=openai",
        f"synth.openai_base_url={served['base_url']}",
        f"synth.openai_model={served['model']}",
        "synth.openai_api_key_env=HUMANLLM_TEST_SERVE_KEY",
        f"synth.openai_concurrency={concurrency}",
        "synth.openai_timeout_s=120",  # requests queue behind one generate at a time
    ]


def _real_requests(cfg, n_users):
    """Real synthesis requests (persona + social QA prompts and keys), as the stage derives them."""
    table = pa.Table.from_pylist(curated_rows(n_users, 6), schema=CURATED_SCHEMA)
    return synthesize.expand_timelines(table, cfg, engine_identity(cfg)).to_pylist()


class _InFlight:
    """Wraps OpenAIEngine._post_once: the most HTTP requests the engine had open at once."""

    def __init__(self, engine: OpenAIEngine):
        self.now = self.max = 0
        self.lock = threading.Lock()
        inner = engine._post_once

        def counted(body):
            with self.lock:
                self.now += 1
                self.max = max(self.max, self.now)
            try:
                return inner(body)
            finally:
                with self.lock:
                    self.now -= 1

        engine._post_once = counted


def test_engine_against_transformers_serve(served, monkeypatch):
    monkeypatch.setenv("HUMANLLM_TEST_SERVE_KEY", "sk-local-test")  # sent as a bearer header; the server ignores it
    concurrency = 3
    cfg = _cfg(*_openai_overrides(served, concurrency), "synth.max_posts_per_user=2")
    requests = _real_requests(cfg, n_users=2)  # 2 x (persona + 2 social QA) = 6 real prompts
    assert len(requests) == 6 and {r["reply_spec"] for r in requests} == {"persona", "social_qa"}
    engine = get_engine_class("openai").from_config(cfg)
    assert isinstance(engine, OpenAIEngine)
    in_flight = _InFlight(engine)
    specs = {p: ReplySpec(get_product(p).request_schema(cfg), get_product(p).schema(), get_product(p).postprocess) for p in ("persona", "social_qa")}

    # 1. One round, straight through the engine: a text for every prompt, one request each.
    t0 = time.monotonic()
    reply_of = {}  # request_key -> text
    for spec_name in ("persona", "social_qa"):
        rows = [r for r in requests if r["reply_spec"] == spec_name]
        texts = engine.generate(
            [json.loads(r["messages"]) for r in rows],
            schema=specs[spec_name].request_schema,
            max_new_tokens=MAX_NEW_TOKENS,
            temperature=0.3,
            top_p=0.95,
            seeds=list(range(len(rows))),
        )
        assert len(texts) == len(rows)
        reply_of.update({r["request_key"]: t for r, t in zip(rows, texts)})
    direct_s = time.monotonic() - t0
    replies = [reply_of[r["request_key"]] for r in requests]
    failures = [r for r in replies if isinstance(r, EngineFailure)]
    assert not failures, failures
    assert all(isinstance(r, str) and r.strip() for r in replies), replies
    assert engine.http_requests == len(requests) and engine.http_retries == 0
    # Bounded by openai_concurrency, and actually concurrent (the server queues them).
    assert in_flight.max == concurrency, in_flight.max
    # The server took response_format without a 400 (the engine keeps sending it) ...
    assert engine.send_response_format is True
    first_reasons = [check_reply(t, specs[r["reply_spec"]].request_schema)[1] for t, r in zip(replies, requests)]
    n_valid = sum(reason is None for reason in first_reasons)
    # ... and did not honour it: no constrained decoding, so validity is whatever the model gives.
    print(f"direct: {len(replies)} replies in {direct_s:.1f} s, {n_valid} parse+validate; reasons {first_reasons}")

    # 2. The synthesis retry loop over the same engine: every row ends ok (payload valid against
    #    the published schema) or failed with the reason of its last raw reply; exactly one HTTP
    #    request per attempt, and only failed rows are re-sent.
    #    Three of the six requests (one persona, two social QA) keep the test short.
    requests = [next(r for r in requests if r["reply_spec"] == "persona")] + [r for r in requests if r["reply_spec"] == "social_qa"][:2]
    before = engine.http_requests
    max_retries = 1
    results = generate_with_retries(engine, requests, specs, Sampling(MAX_NEW_TOKENS, 0.3, 0.95), max_retries, run_seed=0)
    assert engine.http_requests - before == sum(r["attempts"] for r in results)
    assert engine.http_retries == 0
    same_again = 0
    for req, res in zip(requests, results):
        spec = specs[req["reply_spec"]]
        if res["status"] == "ok":
            assert res["reason"] == "" and validate(json.loads(res["reply"]), spec.published_schema) is None
            continue
        assert res["status"] == "failed" and res["attempts"] == max_retries + 1
        assert res["reason"] in (UNPARSED, SCHEMA_INVALID), res  # the server answered: never engine_error
        assert res["reply"].strip(), res  # the raw reply is kept for the quarantine row
        assert check_reply(res["reply"], spec.request_schema)[1] == res["reason"]
        assert res["detail"].count("attempt ") == max_retries + 1
        same_again += res["reply"] == reply_of[req["request_key"]]
    n_ok = sum(r["status"] == "ok" for r in results)
    print(
        f"retry loop: {n_ok}/{len(results)} ok, {len(results) - n_ok} quarantined "
        f"{sorted(r['reason'] for r in results if r['status'] != 'ok')}; "
        f"{same_again} failed rows got the same text as in step 1 under other seeds (greedy server)"
    )
    engine.close()


def test_server_pinned_to_another_model_fails_each_prompt_once(served):
    """A 4xx from the real server (model name it does not serve) is one EngineFailure per
    prompt, with the server's message, and is not retried."""
    cfg = _cfg(*_openai_overrides(served), "synth.openai_model=not-the-served-model", "synth.openai_backoff_s=0.01")
    engine = get_engine_class("openai").from_config(cfg)
    prompts = [[{"role": "user", "content": f"hello {i}"}] for i in range(3)]
    out = engine.generate(prompts, schema=None, max_new_tokens=8, temperature=0.0, top_p=1.0, seeds=[0, 1, 2])
    assert all(isinstance(r, EngineFailure) and "HTTP 400" in r.error and "not-the-served-model" in r.error for r in out), out
    assert engine.http_requests == 3 and engine.http_retries == 0
    engine.close()


def test_synth_stage_with_openai_engine_accounts_exactly(served, ray_local, tmp_path):
    """synth.engine=openai end to end on 2 users over Ray actors; rows_in = out + quarantined."""
    root = str(tmp_path)
    write_curated(os.path.join(root, "curated"), n_users=2, n_records=6)
    max_retries = 1
    cfg = _cfg(
        f"run.root={root}",
        *_openai_overrides(served, concurrency=2),
        "synth.max_posts_per_user=1",
        f"synth.max_retries={max_retries}",
        "synth.pool.batch_size=4",
    )
    expected = len(_real_requests(cfg, n_users=2))
    assert expected == 4  # 2 users x (persona + 1 social QA)
    t0 = time.monotonic()
    r = synthesize.run(cfg)
    stage_s = time.monotonic() - t0
    assert r["engine"] == "openai" and r["engine_identity"] == engine_identity(cfg)
    assert r["rows_in"] == expected == r["rows_out"] + r["rows_quarantined"] and r["rows_merged"] == 0
    assert r["requests_sent"] == expected and r["cache_hits"] == 0
    assert sum(r["by_reason"].values()) == r["rows_quarantined"]
    assert set(r["by_reason"]) <= {UNPARSED, SCHEMA_INVALID}, r["by_reason"]  # every request was answered

    rows = read_table(os.path.join(root, "synth", "data")).to_pylist()
    assert len(rows) == r["rows_out"]
    attempts_ok = 0
    for row in rows:
        assert validate(json.loads(row["payload"]), get_product(row["product"]).schema()) is None
        prov = json.loads(row["provenance"])
        assert prov["engine"] == "openai"
        attempts_ok += prov["attempts"]
    q_dir = os.path.join(root, "synth", "_quarantine")
    quarantined = read_table(q_dir).to_pylist() if os.path.exists(q_dir) else []
    assert len(quarantined) == r["rows_quarantined"]
    for q in quarantined:
        assert q["stage"] == "synth" and q["reason"] in r["by_reason"] and q["raw"].strip()
        assert f"after {max_retries + 1} attempt(s)" in q["detail"]
    # Exactly one generation per attempt: ok rows' attempts + every retry of the quarantined ones.
    assert r["generations"] == attempts_ok + (max_retries + 1) * len(quarantined)
    print(f"synth stage over transformers serve: {r['rows_out']} out, {r['rows_quarantined']} quarantined {r['by_reason']}, {stage_s:.1f} s")
