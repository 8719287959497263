"""Synthesis and QC stages on a small curated dataset, over a real local Ray actor pool."""

from __future__ import annotations

import json
import os
import shutil

import pyarrow as pa
import pytest
from synth_fixtures import CURATED_SCHEMA, curated_rows, write_curated

from humanllm_ray import storage
from humanllm_ray.config import load_config
from humanllm_ray.llm import engine_identity
from humanllm_ray.llm.faulty_engine import fault_for_seed
from humanllm_ray.llm.schema import ENGINE_ERROR, SCHEMA_INVALID, UNPARSED, schema_hash, validate
from humanllm_ray.stage import read_table
from humanllm_ray.synth import qc, synthesize
from humanllm_ray.synth.generation import attempt_seed
from humanllm_ray.synth.products import get_product

N_USERS, N_RECORDS = 4, 6
FAST = [
    "run.progress=false",
    "synth.products=[persona,social_qa]",  # the other products: test_new_products_end_to_end
    "synth.max_new_tokens=64",
    "qc.max_new_tokens=96",
    "synth.pool.batch_size=4",
    "qc.pool.batch_size=4",
]


def _cfg(root, *overrides):
    return load_config(overrides=[f"run.root={root}", *FAST, *overrides])


def _expected_requests(cfg):
    """Requests the fixture timelines must yield, counted independently of the code under test."""
    n = 0
    for row in curated_rows(N_USERS, N_RECORDS, short_user=True):
        qualified = [r for r in row["records"] if len(r["text"]) >= cfg.synth.min_post_chars]
        n += 1 + min(cfg.synth.max_posts_per_user, len(qualified))  # persona + social QA
    return n


@pytest.fixture(scope="module")
def run_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("synth-run"))
    write_curated(os.path.join(root, "curated"), n_users=N_USERS, n_records=N_RECORDS, short_user=True)
    return root


@pytest.fixture(scope="module")
def synth_report(ray_local, run_root):
    return synthesize.run(_cfg(run_root))


@pytest.fixture(scope="module")
def qc_report(synth_report, run_root):
    return qc.run(_cfg(run_root))


def _quarantine(stage_dir):
    q = os.path.join(stage_dir, "_quarantine")
    return read_table(q).to_pylist() if os.path.exists(q) else []


def test_synth_payloads_valid_and_accounted(synth_report, run_root):
    cfg = _cfg(run_root)
    r = synth_report
    assert r["rows_in"] == _expected_requests(cfg) == 12
    assert r["rows_in"] == r["rows_out"] + r["rows_quarantined"] + r["rows_merged"]
    assert r["requests_sent"] == r["rows_in"] and r["cache_hits"] == 0
    rows = read_table(os.path.join(run_root, "synth", "data")).to_pylist()
    assert len(rows) == r["rows_out"] == sum(r["products"].values())
    assert len(_quarantine(os.path.join(run_root, "synth"))) == r["rows_quarantined"] == sum(r["by_reason"].values())
    assert len({row["item_id"] for row in rows}) == len(rows)
    for row in rows:
        product = get_product(row["product"])
        assert validate(json.loads(row["payload"]), product.schema()) is None, row["payload"]
        prov = json.loads(row["provenance"])
        assert prov["prompt_version"] == product.prompt_version and prov["prompt_hash"] == product.prompt.hash
        assert prov["attempts"] >= 1 and prov["max_new_tokens"] == 64 and prov["engine"] == "hf"
        assert row["source_text"] and row["source_record_ids"]
        if row["product"] == "social_qa":
            assert row["item_id"] == f"{row['user_id']}:social_qa:{row['source_record_ids'][0]}"
        else:
            assert row["item_id"] == f"{row['user_id']}:persona"
    personas = {row["user_id"]: row for row in rows if row["product"] == "persona"}
    assert len(personas["user03"]["source_record_ids"]) == 2  # the short timeline


def test_qc_rules_and_judge(qc_report, synth_report, run_root):
    r = qc_report
    assert r["rows_in"] == synth_report["rows_out"]
    assert r["rows_in"] == r["rows_out"] + r["rows_quarantined"]
    # The short user's persona has 2 source posts < qc.min_posts_for_profile=3.
    assert r["by_reason"].get("rule_too_few_posts") == 1
    assert r["judged"] == r["rows_in"] - r["rule_failed"] == r["requests_sent"]
    # Default: the tiny random model's verdicts are recorded, not enforced.
    assert r["judge_enforced"] is False
    assert not any(k.startswith("judge_") for k in r["by_reason"])
    rows = read_table(os.path.join(run_root, "qc", "data")).to_pylist()
    assert len(rows) == r["rows_out"] > 0
    for row in rows:
        assert validate(json.loads(row["judge"]), qc.JUDGE_SCHEMA) is None
        assert validate(json.loads(row["payload"]), get_product(row["product"]).schema()) is None
    quarantined = _quarantine(os.path.join(run_root, "qc"))
    assert sorted(q["reason"] for q in quarantined) == sorted(k for k, n in r["by_reason"].items() for _ in range(n))
    assert quarantined[0]["record_id"] == "user03:persona"


def test_qc_enforced_thresholds_reuse_the_judge_cache(qc_report, run_root):
    r = qc.run(_cfg(run_root, "qc.enforce_judge=true"))
    assert not r["skipped"]
    assert r["requests_sent"] == 0 and r["cache_hits"] == qc_report["judged"]  # nothing re-judged
    assert r["rows_in"] == r["rows_out"] + r["rows_quarantined"]
    rows = read_table(os.path.join(run_root, "qc", "data")).to_pylist()
    for row in rows:
        assert qc.verdict(json.loads(row["judge"]), row["product"], load_config().qc) == []
    judged_out = 0
    for q in _quarantine(os.path.join(run_root, "qc")):
        if q["reason"].startswith("judge_"):
            judged_out += 1
            found = qc.verdict(json.loads(q["raw"]), q["record_id"].split(":")[1], load_config().qc)
            assert found and found[0][0] == q["reason"]
    assert judged_out == sum(n for k, n in r["by_reason"].items() if k.startswith("judge_"))
    assert r["rows_out"] == qc_report["rows_out"] - judged_out


def test_resume_sends_no_cached_request_and_rerun_is_noop(synth_report, run_root):
    synth_dir = os.path.join(run_root, "synth")
    before = {row["item_id"]: row["payload"] for row in read_table(os.path.join(synth_dir, "data")).to_pylist()}
    # Simulate a run killed after the LLM calls: no _SUCCESS, no data.
    os.remove(os.path.join(synth_dir, "_SUCCESS"))
    shutil.rmtree(os.path.join(synth_dir, "data"))
    cfg = _cfg(run_root)
    r = synthesize.run(cfg)
    assert not r["skipped"]
    assert r["requests_sent"] == 0 and r["generations"] == 0
    assert r["cache_hits"] == synth_report["rows_in"]
    after = {row["item_id"]: row["payload"] for row in read_table(os.path.join(synth_dir, "data")).to_pylist()}
    assert after == before
    again = synthesize.run(cfg)
    assert again["skipped"] is True and again["rows_out"] == r["rows_out"]


def test_faulty_engine_retries_then_quarantines_exactly(ray_local, tmp_path):
    root = str(tmp_path)
    write_curated(os.path.join(root, "curated"), n_users=N_USERS, n_records=N_RECORDS, short_user=True)
    rate, retries = 0.5, 1
    cfg = _cfg(root, f"synth.fault_rate={rate}", f"synth.max_retries={retries}")
    # The requests and their keys, as the stage derives them.
    table = pa.Table.from_pylist(curated_rows(N_USERS, N_RECORDS, short_user=True), schema=CURATED_SCHEMA)
    requests = synthesize.expand_timelines(table, cfg, engine_identity(cfg)).to_pylist()
    reason_of = {"truncate": UNPARSED, "schema": SCHEMA_INVALID, "error": ENGINE_ERROR}
    expect_attempts, expect_reasons = {}, {}
    for req in requests:
        faults = [fault_for_seed(attempt_seed(cfg.run.seed, req["request_key"], a), rate) for a in range(retries + 1)]
        ok_at = next((a for a, f in enumerate(faults) if f is None), None)
        if ok_at is None:
            expect_reasons[req["item_id"]] = reason_of[faults[-1]]
        else:
            expect_attempts[req["item_id"]] = ok_at + 1
    assert any(n > 1 for n in expect_attempts.values()), "seeds should exercise a successful retry"
    assert expect_reasons, "seeds should exercise a quarantine"

    r = synthesize.run(cfg)
    assert r["rows_in"] == len(requests)
    assert r["rows_out"] == len(expect_attempts) and r["rows_quarantined"] == len(expect_reasons)
    counts = {}
    for reason in expect_reasons.values():
        counts[reason] = counts.get(reason, 0) + 1
    assert r["by_reason"] == counts
    assert r["generations"] == sum(expect_attempts.values()) + (retries + 1) * len(expect_reasons)
    rows = read_table(os.path.join(root, "synth", "data")).to_pylist()
    assert {row["item_id"]: json.loads(row["provenance"])["attempts"] for row in rows} == expect_attempts
    for row in rows:  # zero unparsed rows downstream
        assert validate(json.loads(row["payload"]), get_product(row["product"]).schema()) is None
    quarantined = _quarantine(os.path.join(root, "synth"))
    assert {q["record_id"]: q["reason"] for q in quarantined} == expect_reasons
    for q in quarantined:
        assert q["stage"] == "synth" and f"after {retries + 1} attempt(s)" in q["detail"]


def test_synth_and_qc_on_s3(ray_local, s3_bucket, tmp_path):
    local = str(tmp_path / "curated")
    write_curated(local, n_users=2, n_records=N_RECORDS)
    root = f"{s3_bucket}/run"
    cfg = _cfg(root, "synth.max_users=1", "synth.max_posts_per_user=1", f"s3.endpoint_url={os.environ['AWS_ENDPOINT_URL']}")
    storage.put_dir(local, f"{root}/curated")
    r = synthesize.run(cfg)
    assert r["users_total"] == 2 and r["users_kept"] == 1
    assert r["rows_in"] == 2 and r["rows_in"] == r["rows_out"] + r["rows_quarantined"]
    assert storage.ls_files(f"{root}/synth/_cache", suffix=".parquet")
    q = qc.run(cfg)
    assert q["rows_in"] == r["rows_out"] and q["rows_in"] == q["rows_out"] + q["rows_quarantined"]
    assert storage.exists(f"{root}/qc/_SUCCESS")
    data = read_table(f"{root}/qc/data")
    assert data.num_rows == q["rows_out"] and "judge" in data.column_names


NEW_PRODUCTS = ["profile", "life_stories", "writing_style", "post_tags"]


def test_new_products_end_to_end(ray_local, tmp_path):
    """profile, life_stories, writing_style and post_tags on 2 users (hf engine, tiny model):
    every row valid under the published schema, exact accounting, provenance, and QC
    (rules + judge; post tags on rules alone)."""
    root = str(tmp_path)
    n_users, n_records = 2, 3
    write_curated(os.path.join(root, "curated"), n_users=n_users, n_records=n_records)
    cfg = _cfg(root, f"synth.products=[{','.join(NEW_PRODUCTS)}]", "synth.pool.batch_size=6")
    expected = dict.fromkeys(NEW_PRODUCTS, 0)
    for row in curated_rows(n_users, n_records):
        for name in ("profile", "life_stories", "writing_style"):
            expected[name] += 1  # one per user
        qualified = sum(len(rec["text"]) >= cfg.synth.min_post_chars for rec in row["records"])
        cap = cfg.synth.max_tagged_posts_per_user
        expected["post_tags"] += qualified if cap is None else min(cap, qualified)

    r = synthesize.run(cfg)
    assert {p: v["requests"] for p, v in r["by_product"].items()} == expected
    assert r["rows_in"] == sum(expected.values()) == r["rows_out"] + r["rows_quarantined"] + r["rows_merged"]
    assert r["prompt_versions"] == {p: f"{p}.v1" for p in NEW_PRODUCTS}
    rows = read_table(os.path.join(root, "synth", "data")).to_pylist()
    assert len(rows) == r["rows_out"] and len(_quarantine(os.path.join(root, "synth"))) == r["rows_quarantined"]
    assert {row["product"] for row in rows} == set(NEW_PRODUCTS)  # every product made valid items
    for row in rows:
        product = get_product(row["product"])
        payload = json.loads(row["payload"])
        assert validate(payload, product.schema()) is None, row["payload"]  # the published schema
        assert validate(payload, product.request_schema(cfg)) is None, row["payload"]  # and the fitted one
        prov = json.loads(row["provenance"])
        assert prov["prompt_version"] == product.prompt_version and prov["prompt_hash"] == product.prompt.hash
        assert prov["schema_hash"] == schema_hash(product.request_schema(cfg))
        assert prov["max_new_tokens"] == 64 and prov["chars_per_token"] == 1.0 and prov["attempts"] >= 1
        assert row["source_text"] and row["source_record_ids"]
        if row["product"] == "post_tags":
            assert row["item_id"] == f"{row['user_id']}:post_tags:{row['source_record_ids'][0]}"
        else:
            assert row["item_id"] == f"{row['user_id']}:{row['product']}" and len(row["source_record_ids"]) == n_records
    # 64 tokens hold one (short) story: the fitted bound, not the published 20.
    assert all(len(json.loads(row["payload"])["stories"]) == 1 for row in rows if row["product"] == "life_stories")

    q = qc.run(cfg)
    assert q["rows_in"] == r["rows_out"] and q["rows_in"] == q["rows_out"] + q["rows_quarantined"]
    assert set(q["by_product"]) == set(NEW_PRODUCTS)
    tags_in = q["by_product"]["post_tags"]["in"]
    tags_rule_failed = sum(1 for x in _quarantine(os.path.join(root, "qc")) if ":post_tags:" in x["record_id"])
    assert q["unjudged"] == tags_in - tags_rule_failed  # post tags skip the judge ...
    assert q["judged"] == q["rows_in"] - q["rule_failed"] - q["unjudged"] == q["requests_sent"]  # ... the rest do not
    passed = read_table(os.path.join(root, "qc", "data")).to_pylist()
    assert len(passed) == q["rows_out"]
    for row in passed:
        judge = json.loads(row["judge"])
        if row["product"] == "post_tags":
            assert judge == {"judged": False}
        else:
            assert validate(judge, qc.JUDGE_SCHEMA) is None
