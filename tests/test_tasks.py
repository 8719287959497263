"""The build-tasks stage on a small hand-made curated + QC fixture (Ray Data, 2-CPU local Ray)."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pytest

from humanllm_ray import storage
from humanllm_ray.config import load_config
from humanllm_ray.stage import read_table, write_table
from humanllm_ray.tasks import SPLITS, available
from humanllm_ray.tasks.build import build_user_examples
from humanllm_ray.tasks.common import BuildContext, normalize_for_match, split_for_user

SIX_TASKS = [
    "writing_imitation",
    "personalized_commenting",
    "item_selection",
    "social_qa",
    "profile_generation",
    "scenario_generation",
]

RECORD_TYPE = pa.struct(
    [
        ("record_id", pa.string()),
        ("timestamp", pa.int64()),
        ("kind", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("context", pa.string()),
        ("item_id", pa.string()),
        ("rating", pa.float64()),
        ("extra", pa.string()),
    ]
)
CURATED_SCHEMA = pa.schema(
    [
        ("user_id", pa.string()),
        ("platform", pa.string()),
        ("chunk", pa.int64()),
        ("n_records", pa.int64()),
        ("records", pa.list_(RECORD_TYPE)),
    ]
)
QC_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("user_id", pa.string()),
        ("platform", pa.string()),
        ("product", pa.string()),
        ("payload", pa.string()),
        ("source_record_ids", pa.list_(pa.string())),
        ("provenance", pa.string()),
        ("judge", pa.string()),
    ]
)

TOPICS = ["garden", "bikes", "coffee", "chess", "hiking", "baking", "jazz", "astronomy", "pottery", "running"]


def _sentence(user: str, n: int) -> str:
    topic = TOPICS[n % len(TOPICS)]
    return (
        f"Entry {n} by {user}: this week I spent most evenings on {topic} and learned something new "
        f"about patience, mistakes and small wins. Number {n} of my notes, written for nobody in particular "
        f"but honest all the same about {topic}."
    )


def _rec(user, n, kind, *, title="", text=None, context="", item_id="", rating=None, extra="{}"):
    return {
        "record_id": f"{user}-r{n}",
        "timestamp": 1_600_000_000 + 3600 * n,
        "kind": kind,
        "title": title,
        "text": text if text is not None else _sentence(user, n),
        "context": context,
        "item_id": item_id,
        "rating": rating,
        "extra": extra,
    }


# item_id -> (category, title): three categories; "Garden" has a single item, so item
# selection there cannot find negatives (insufficient_candidates).
CATALOG = {
    **{f"B{i:02d}": ("Books", f"Paperback novel number {i} about the sea") for i in range(12)},
    **{f"E{i:02d}": ("Electronics", f"USB gadget model {i} with a long cable") for i in range(12)},
    "G00": ("Garden", "Stainless steel garden trowel with wooden grip"),
}


def _amazon_records(user: str, item_ids):
    recs = []
    for n, iid in enumerate(item_ids):
        category, title = CATALOG[iid]
        recs.append(
            _rec(
                user,
                n,
                "review",
                title=f"My take, part {n}",
                context=title,
                item_id=iid,
                rating=float(1 + n % 5),
                extra=json.dumps({"category": category}),
            )
        )
    return recs


def _write_parquet(rows, schema, uri: str) -> None:
    write_table(pa.Table.from_pylist(rows, schema=schema), uri)


def make_fixture(root: str) -> dict:
    """6+ users x 8 records across platforms (incl. Amazon and Reddit comments) + QC items.

    Two deliberate leaks: u_reddit_a's last post is a prefix of an earlier post (the
    history contains the target), and one social QA item whose answer is in its scenario.
    """
    users = {}
    # Reddit A: titled posts and comments, split across two timeline chunks.
    recs = []
    for n in range(8):
        if n % 2 == 0:
            recs.append(_rec("u_reddit_a", n, "post", title=f"Question {n} about my hobby", context="r/hobbies"))
        else:
            recs.append(
                _rec("u_reddit_a", n, "comment", context=f"Parent post {n}: what do you all think about {TOPICS[n]}?")
            )
    leaked = _sentence("u_reddit_a", 2)
    recs.append(_rec("u_reddit_a", 8, "post", text=leaked[: len(leaked) // 2]))  # earlier post contains it
    users["u_reddit_a"] = ("reddit", recs)
    # Reddit B: mostly comments.
    users["u_reddit_b"] = (
        "reddit",
        [_rec("u_reddit_b", n, "comment", context=f"Someone asked about {TOPICS[n]} and bread") for n in range(8)],
    )
    users["u_tw"] = ("twitter", [_rec("u_tw", n, "tweet") for n in range(8)])
    users["u_blog"] = ("blogger", [_rec("u_blog", n, "post") for n in range(8)])
    users["u_amz_1"] = ("amazon", _amazon_records("u_amz_1", ["B00", "E00", "B01", "E01", "B02", "E02", "B03", "E03"]))
    users["u_amz_2"] = ("amazon", _amazon_records("u_amz_2", ["B04", "E04", "B05", "E05", "B06", "E06", "B07", "E07"]))
    users["u_amz_3"] = ("amazon", _amazon_records("u_amz_3", ["B08", "E08", "B09", "E09", "B10", "E10", "B11", "G00"]))

    rows = []
    for user, (platform, recs) in users.items():
        chunks = [recs[:4], recs[4:]] if user == "u_reddit_a" else [recs]
        for chunk_no, chunk in enumerate(chunks):
            rows.append(
                {"user_id": user, "platform": platform, "chunk": chunk_no, "n_records": len(chunk), "records": chunk}
            )
    # Reverse chunk order on disk: the builder must merge and re-sort by time.
    _write_parquet(rows[::-1], CURATED_SCHEMA, storage.join(root, "curated", "data", "part-0.parquet"))

    def qc(item_id, user, platform, product, payload, sources):
        return {
            "item_id": item_id,
            "user_id": user,
            "platform": platform,
            "product": product,
            "payload": json.dumps(payload),
            "source_record_ids": sources,
            "provenance": "fixture",
            "judge": "{}",
        }

    items = [
        qc("p-a", "u_reddit_a", "reddit", "persona", {"persona": "PersonA is a patient hobbyist who asks careful questions."}, ["u_reddit_a-r0", "u_reddit_a-r2"]),
        qc("p-b", "u_reddit_b", "reddit", "persona", {"persona": "PersonB is a blunt baker who comments on everything."}, ["u_reddit_b-r0"]),
        qc("p-tw", "u_tw", "twitter", "persona", {"persona": "PersonC tweets long reflective notes."}, ["u_tw-r1"]),
        qc("p-amz", "u_amz_1", "amazon", "persona", {"persona": "PersonD buys books and gadgets in pairs."}, ["u_amz_1-r0"]),
        qc("qa-a1", "u_reddit_a", "reddit", "social_qa", {"scenario": "A friend borrowed PersonA's hobby tools and returned them broken.", "question": "How did PersonA feel afterwards?", "answer": "Annoyed at first, then relieved that nobody got hurt."}, ["u_reddit_a-r2"]),
        qc("qa-a2", "u_reddit_a", "reddit", "social_qa", {"scenario": "PersonA lost the chess final and said it was fine, mostly a lesson.", "question": "What did PersonA say?", "answer": "it was fine, mostly a lesson"}, ["u_reddit_a-r4"]),
        qc("qa-b1", "u_reddit_b", "reddit", "social_qa", {"scenario": "PersonB's sourdough starter died during a heat wave.", "question": "What did PersonB do next?", "answer": "Started a new starter the same evening and kept it in the cellar."}, ["u_reddit_b-r3"]),
        qc("st-blog", "u_blog", "blogger", "life_stories", {"stories": [{"summary": "Learning to bake", "content": "I burned three loaves before one came out right."}, {"summary": "First race", "content": "I ran my first 10k in the rain and finished last, grinning."}, {"summary": "Night sky", "content": "I bought a small telescope and found Saturn on the second night."}]}, ["u_blog-r1"]),
        qc("p-blog", "u_blog", "blogger", "persona", {"persona": "PersonE keeps a diary-like blog about hobbies."}, ["u_blog-r0"]),
        qc("pr-a", "u_reddit_a", "reddit", "profile", {"profile": "PersonA is a patient hobbyist in their thirties who moved cities twice and took up chess after an injury."}, ["u_reddit_a-r0"]),
        # A profile without a persona (posts_to_profile) and a writing style (writing imitation context).
        qc("pr-amz2", "u_amz_2", "amazon", "profile", {"profile": "The user reviews books and gadgets in pairs, fairly and briefly, and moved house last year."}, ["u_amz_2-r0", "u_amz_2-r1"]),
        qc("ws-tw", "u_tw", "twitter", "writing_style", {"style": "Long reflective tweets in plain lowercase, numbered like diary entries."}, ["u_tw-r0"]),
    ]
    _write_parquet(items, QC_SCHEMA, storage.join(root, "qc", "data", "part-0.parquet"))
    return {"users": users, "qc": items}


def _config(root: str, **tasks_overrides):
    overrides = [f"run.root={root}", "run.progress=false", "tasks.val_fraction=0.25", "tasks.test_fraction=0.25"]
    overrides += [f"tasks.{k}={v}" for k, v in tasks_overrides.items()]
    return load_config(overrides=overrides)


def _read_splits(out_uri: str) -> dict:
    return {split: read_table(storage.join(out_uri, split)).to_pylist() for split in SPLITS}


@pytest.fixture(scope="module")
def built(ray_local, tmp_path_factory):
    from humanllm_ray.tasks import run

    root = str(tmp_path_factory.mktemp("tasks_run"))
    fixture = make_fixture(root)
    cfg = _config(root)
    report = run(cfg)
    return {"root": root, "cfg": cfg, "report": report, "rows": _read_splits(report["output"]), **fixture}


def test_every_configured_task_yields_examples(built):
    report = built["report"]
    assert sorted(built["cfg"].tasks.tasks) == sorted(SIX_TASKS)
    assert set(SIX_TASKS) <= set(available())
    all_rows = [r for rows in built["rows"].values() for r in rows]
    for task in SIX_TASKS:
        assert sum(report["per_task"][task].values()) > 0, task
        assert any(r["task"] == task for r in all_rows), task
    # Variants that depend on the inputs we provided.
    variants = {(r["task"], r["variant"]) for r in all_rows}
    for expected in [
        ("writing_imitation", "title_to_post"),
        ("writing_imitation", "item_to_review"),
        ("writing_imitation", "continuation"),
        ("profile_generation", "posts_to_persona"),
        ("profile_generation", "persona_to_profile"),
        ("profile_generation", "posts_to_profile"),
        ("profile_generation", "past_to_future_stories"),
        ("scenario_generation", "question_to_scenario"),
        ("scenario_generation", "summary_to_story"),
    ]:
        assert expected in variants, expected
    for r in all_rows:
        assert [m["role"] for m in r["messages"]] == ["system", "user", "assistant"]
        assert all(m["content"].strip() for m in r["messages"])
        assert isinstance(json.loads(r["meta"]), dict)
    assert report["tokens"]["all"]["n"] == report["rows_out"]
    assert 0 < report["tokens"]["all"]["p50"] <= report["tokens"]["all"]["max"]


def test_profile_and_style_products_feed_their_tasks(built):
    rows = [r for rows in built["rows"].values() for r in rows]
    profile = {(r["user_id"], r["variant"]): r for r in rows if r["task"] == "profile_generation"}
    # With a persona the profile is its expansion; without one it is written from the posts.
    assert profile[("u_reddit_a", "persona_to_profile")]["messages"][2]["content"].startswith("PersonA is a patient")
    from_posts = profile[("u_amz_2", "posts_to_profile")]
    assert json.loads(from_posts["meta"])["post_record_ids"] == ["u_amz_2-r0", "u_amz_2-r1"]
    assert ("u_amz_2", "posts_to_persona") not in profile  # no persona, no fallback to it
    # Writing imitation shows the style description when the user has one, and only then.
    style = "Long reflective tweets in plain lowercase"
    for r in (r for r in rows if r["task"] == "writing_imitation"):
        meta = json.loads(r["meta"])
        if r["user_id"] == "u_tw":
            assert r["messages"][1]["content"].startswith(f"Writing style: {style}")
            assert meta["style_item_id"] == "ws-tw"
        else:
            assert "Writing style:" not in r["messages"][1]["content"] and "style_item_id" not in meta
    # The style lets the user's first tweet, with no earlier writing, be a target too.
    assert any(r["user_id"] == "u_tw" and not json.loads(r["meta"])["history_record_ids"] for r in rows if r["task"] == "writing_imitation")


def test_accounting_and_quarantine(built):
    report = built["report"]
    written = sum(len(rows) for rows in built["rows"].values())
    assert report["rows_out"] == written
    assert report["rows_in"] == report["rows_out"] + report["rows_quarantined"] + report["rows_merged"]
    quarantine = read_table(os.path.join(report["output"], "_quarantine")).to_pylist()
    assert len(quarantine) == report["rows_quarantined"]
    reasons = sorted((q["user_id"], json.loads(q["raw"])["task"], q["reason"]) for q in quarantine)
    # Exactly the fixture's planted faults: a post that is a prefix of an earlier post in its
    # history, a QA answer quoted in its scenario, and a category with a single item.
    assert reasons == [
        ("u_amz_3", "item_selection", "insufficient_candidates"),
        ("u_reddit_a", "social_qa", "target_in_context"),
        ("u_reddit_a", "writing_imitation", "target_in_context"),
    ]
    assert report["by_reason"] == {"insufficient_candidates": 1, "target_in_context": 2}


def test_users_never_cross_splits(built):
    users = {split: {r["user_id"] for r in rows} for split, rows in built["rows"].items()}
    assert not users["train"] & users["val"]
    assert not users["train"] & users["test"]
    assert not users["val"] & users["test"]
    seed = built["cfg"].tasks.seed
    for split, rows in built["rows"].items():
        for r in rows:
            assert r["split"] == split == split_for_user(r["user_id"], seed, 0.25, 0.25)
    assert built["report"]["users"] == {s: len(u) for s, u in users.items()}


def test_target_never_in_context(built):
    for rows in built["rows"].values():
        for r in rows:
            system, user, assistant = (m["content"] for m in r["messages"])
            if r["task"] == "item_selection":
                continue  # the answer is one of the options by design; checked below
            assert normalize_for_match(assistant) not in normalize_for_match(system + "\n" + user), r["example_id"]


def test_item_selection_candidates(built):
    k = built["cfg"].tasks.item_candidates
    examples = [r for rows in built["rows"].values() for r in rows if r["task"] == "item_selection"]
    assert len(examples) >= 6
    positions = []
    for r in examples:
        meta = json.loads(r["meta"])
        cands = meta["candidates"]
        assert len(cands) == k
        assert len({c["item_id"] for c in cands}) == k
        assert {CATALOG[c["item_id"]][0] for c in cands} == {meta["category"]}  # all same category
        answer = cands[meta["answer_index"]]
        assert answer["item_id"] == meta["item_id"]
        assistant = r["messages"][2]["content"]
        assert assistant.startswith(f"{meta['answer_letter']}) ") and answer["title"] in assistant
        owned = {rec["item_id"] for rec in built["users"][r["user_id"]][1]}
        assert not (set(c["item_id"] for c in cands) - {meta["item_id"]}) & owned  # negatives not owned
        history_block = r["messages"][1]["content"].split("They are shopping")[0]
        assert answer["title"] not in history_block
        positions.append(meta["answer_index"])
    assert len(set(positions)) > 1  # shuffled, not always the same slot


def test_rebuild_is_deterministic_and_copes_without_qc(built, tmp_path):
    """Same inputs + seed -> the same examples (incl. answer positions); without QC output the
    synthesis-based tasks are empty but the stage still succeeds."""
    from humanllm_ray.tasks import run

    out = str(tmp_path / "tasks_again")
    again = run(built["cfg"], curated_uri=os.path.join(built["root"], "curated"), output_uri=out)
    first = {r["example_id"]: (r["messages"], r["meta"]) for rows in built["rows"].values() for r in rows}
    second = {r["example_id"]: (r["messages"], r["meta"]) for rows in _read_splits(out).values() for r in rows}
    assert first == second and again["rows_out"] == built["report"]["rows_out"]

    no_qc = run(built["cfg"], qc_uri=str(tmp_path / "absent_qc"), output_uri=str(tmp_path / "tasks_no_qc"))
    assert no_qc["rows_in"] == no_qc["rows_out"] + no_qc["rows_quarantined"]
    assert sum(no_qc["per_task"]["social_qa"].values()) == 0
    assert sum(no_qc["per_task"]["scenario_generation"].values()) == 0
    assert sum(no_qc["per_task"]["writing_imitation"].values()) > 0


def test_registry_adding_a_task_is_one_function(tiny_model_dir):
    """A newly registered builder is picked up by name; rows carry the stage's verdicts."""
    from humanllm_ray.tasks.common import Candidate
    from humanllm_ray.tasks.registry import _BUILDERS, register

    @register("echo_last_post_test")
    def _echo(user, ctx):
        last = user.records[-1]
        yield Candidate("echo_last_post_test", "leaky", user.user_id, user.platform, last.record_id, "sys", last.text, last.text)
        yield Candidate("echo_last_post_test", "clean", user.user_id, user.platform, "x", "sys", "say hi", "hello there, friend")

    try:
        recs = [_rec("u1", n, "post") for n in range(3)]
        group = pa.Table.from_pylist(
            [{"user_id": "u1", "platform": "reddit", "chunk": 0, "n_records": 3, "records": recs}], schema=CURATED_SCHEMA
        )
        ctx = BuildContext(max_history=2, max_chars_per_post=200, item_candidates=4, max_examples_per_user=8, seed=1)
        out = build_user_examples(
            group, task_names=["echo_last_post_test"], ctx=ctx, qc_by_user={}, model_dir=tiny_model_dir,
            val_fraction=0.0, test_fraction=0.0,
        ).to_pylist()
        verdicts = {r["variant"]: r["reason"] for r in out}
        assert verdicts == {"leaky": "target_in_context", "clean": ""}
        assert all(r["split"] == "train" for r in out)
        assert next(r for r in out if r["variant"] == "clean")["n_tokens"] > 0
    finally:
        _BUILDERS.pop("echo_last_post_test", None)


def test_run_root_on_s3(ray_local, s3_bucket, built):
    """The same fixture under an s3:// run root gives the same examples, written to S3."""
    from humanllm_ray.tasks import run

    root = f"{s3_bucket}/run"
    make_fixture(root)
    report = run(_config(root))
    assert report["output"] == f"{root}/tasks"
    assert storage.exists(f"{root}/tasks/_SUCCESS") and storage.exists(f"{root}/tasks/_quarantine")
    on_s3 = {r["example_id"]: r["messages"] for rows in _read_splits(report["output"]).values() for r in rows}
    local = {r["example_id"]: r["messages"] for rows in built["rows"].values() for r in rows}
    assert on_s3 == local


# -- the post filter over post_tags (the paper keeps medium/high quality, harmless posts) ---


def _tag_row(user, platform, record_id, quality, harmless, reason="The post reads clearly and stays on topic."):
    """One QC-passed post_tags item, shaped as synthesis + QC write it (item id, payload
    validated against the product's published schema, source = the tagged record)."""
    from humanllm_ray.llm.schema import validate
    from humanllm_ray.synth.products import get_product

    payload = {"reason": reason, "quality": quality, "harmless": harmless}
    assert validate(payload, get_product("post_tags").schema()) is None
    return {
        "item_id": f"{user}:post_tags:{record_id}",
        "user_id": user,
        "platform": platform,
        "product": "post_tags",
        "payload": json.dumps(payload, separators=(",", ":")),
        "source_record_ids": [record_id],
        "provenance": "fixture",
        "judge": "",
    }


# u_reddit_a: r0 post (low quality), r1 comment (medium), r2 post (high, grounds qa-1),
# r3 comment (harmful), r4 post (low, grounds qa-2); later records untagged.
# u_reddit_b: r2 comment tagged quality 1 and harmful (harmful wins).
PLANTED_TAGS = [
    ("u_reddit_a", "reddit", "u_reddit_a-r0", 2, True),
    ("u_reddit_a", "reddit", "u_reddit_a-r1", 3, True),
    ("u_reddit_a", "reddit", "u_reddit_a-r2", 5, True),
    ("u_reddit_a", "reddit", "u_reddit_a-r3", 4, False),
    ("u_reddit_a", "reddit", "u_reddit_a-r4", 1, True),
    ("u_reddit_b", "reddit", "u_reddit_b-r2", 1, False),
]
DROPPED = {"u_reddit_a-r0": "post_low_quality", "u_reddit_a-r3": "post_harmful", "u_reddit_a-r4": "post_low_quality", "u_reddit_b-r2": "post_harmful"}
PER_POST_TASKS = ["writing_imitation", "personalized_commenting", "social_qa", "scenario_generation"]


def _build_reddit_a(tiny_model_dir, enforce, min_quality=3):
    from humanllm_ray.tasks.common import PostFilter

    fixture_users = {}
    recs = []
    for n in range(8):
        if n % 2 == 0:
            recs.append(_rec("u_reddit_a", n, "post", title=f"Question {n} about my hobby", context="r/hobbies"))
        else:
            recs.append(_rec("u_reddit_a", n, "comment", context=f"Parent post {n}: what about {TOPICS[n]}?"))
    fixture_users["u_reddit_a"] = recs
    group = pa.Table.from_pylist(
        [{"user_id": "u_reddit_a", "platform": "reddit", "chunk": 0, "n_records": len(recs), "records": recs}],
        schema=CURATED_SCHEMA,
    )
    qa = lambda item_id, rid, n: {  # noqa: E731
        "item_id": item_id, "user_id": "u_reddit_a", "platform": "reddit", "product": "social_qa",
        "payload": json.dumps({"scenario": f"PersonA spent evening {n} fixing a bike with a friend.",
                               "question": "How did PersonA feel about it?", "answer": f"Proud, in a quiet way, number {n}."}),
        "source_record_ids": [rid],
    }
    items = [_tag_row(*t) for t in PLANTED_TAGS if t[0] == "u_reddit_a"] + [qa("qa-1", "u_reddit_a-r2", 1), qa("qa-2", "u_reddit_a-r4", 2)]
    ctx = BuildContext(
        max_history=4, max_chars_per_post=300, item_candidates=4, max_examples_per_user=8, seed=1,
        post_filter=PostFilter(enforce=enforce, min_quality=min_quality),
    )
    rows = build_user_examples(
        group, task_names=PER_POST_TASKS, ctx=ctx, qc_by_user={"u_reddit_a": items}, model_dir=tiny_model_dir,
        val_fraction=0.0, test_fraction=0.0,
    ).to_pylist()
    return recs, rows


def _target_post(row):
    meta = json.loads(row["meta"])
    return meta.get("target_record_id") or (meta.get("source_record_ids") or [None])[0]


def test_post_tags_enforced_drop_low_quality_and_harmful_posts(tiny_model_dir):
    recs, rows = _build_reddit_a(tiny_model_dir, enforce=True)
    by_post = {}
    for r in rows:
        by_post.setdefault(_target_post(r), []).append(r)
    # Every example built from a failing post is rejected with the tag's reason, across the tasks.
    for rid, reason in DROPPED.items():
        for r in by_post.get(rid, []):
            assert r["reason"] == reason and r["post_tag"] == reason, (rid, r["task"])
            assert "tagged quality" in r["detail"]
    assert {(r["task"], _target_post(r)) for r in rows if r["reason"].startswith("post_")} == {
        # r0 (the first post) has no history and no style: never a candidate; r2 loses its
        # only history (r0) and is no writing_imitation candidate either.
        ("writing_imitation", "u_reddit_a-r4"),
        ("personalized_commenting", "u_reddit_a-r3"),
        ("social_qa", "u_reddit_a-r4"),
        ("scenario_generation", "u_reddit_a-r4"),
    }
    # Passing and untagged posts are kept and say so; the failing ones never appear as history.
    kept = [r for r in rows if not r["reason"]]
    assert {r["post_tag"] for r in kept} == {"tag_ok", "untagged"}
    assert {_target_post(r) for r in kept if r["post_tag"] == "tag_ok"} == {"u_reddit_a-r2"}  # via its QA item
    assert {_target_post(r) for r in kept if r["post_tag"] == "untagged"} >= {"u_reddit_a-r5", "u_reddit_a-r6"}
    dropped_texts = [normalize_for_match(recs[int(rid.rsplit("r", 1)[1])]["text"]) for rid in DROPPED if rid.startswith("u_reddit_a")]
    for r in kept:
        meta = json.loads(r["meta"])
        assert not set(meta.get("history_record_ids", [])) & set(DROPPED), r["example_id"]
        prompt = normalize_for_match(r["messages"][1]["content"])
        assert not any(t[:120] in prompt for t in dropped_texts), r["example_id"]


def test_post_tags_not_enforced_keep_everything_but_record_the_verdict(tiny_model_dir):
    _recs, rows = _build_reddit_a(tiny_model_dir, enforce=False)
    assert not any(r["reason"].startswith("post_") for r in rows)
    verdicts = {(r["task"], _target_post(r)): r["post_tag"] for r in rows}
    assert verdicts[("writing_imitation", "u_reddit_a-r4")] == "post_low_quality"
    assert verdicts[("personalized_commenting", "u_reddit_a-r3")] == "post_harmful"
    assert verdicts[("social_qa", "u_reddit_a-r2")] == "tag_ok"
    assert verdicts[("writing_imitation", "u_reddit_a-r6")] == "untagged"
    # Unenforced, a failing post still serves as history (the pre-filter behaviour).
    assert any("u_reddit_a-r0" in json.loads(r["meta"]).get("history_record_ids", []) for r in rows)
    # min_quality 1 (keep every quality) still rejects the harmful comment when enforced.
    _recs, loose = _build_reddit_a(tiny_model_dir, enforce=True, min_quality=1)
    assert sorted({r["reason"] for r in loose if r["reason"].startswith("post_")}) == ["post_harmful"]


def test_most_recent_kept_gives_a_rejected_slot_to_an_older_post():
    from humanllm_ray.tasks.common import Candidate, most_recent_kept

    cands = [Candidate("t", "v", "u", "p", str(i), "s", "prompt", f"target {i}") for i in range(6)]
    cands[4].rejected = "post_low_quality"
    cands[0].rejected = "post_harmful"  # older than the window: not reported
    out = most_recent_kept(cands, 3)
    assert [c.key for c in out] == ["2", "3", "4", "5"]
    assert most_recent_kept(cands, 0) == []


def test_post_tags_enforcement_default_follows_the_judge():
    from humanllm_ray.tasks.stage import post_tags_enforced

    assert post_tags_enforced(load_config()) is False  # the untrained tiny model's tags are noise
    assert post_tags_enforced(load_config(overrides=["synth.engine=vllm"])) is False
    assert post_tags_enforced(load_config(overrides=["model.base=/models/Qwen2.5-7B-Instruct"])) is True
    assert post_tags_enforced(load_config(overrides=["synth.engine=openai"])) is True
    assert post_tags_enforced(load_config(overrides=["tasks.enforce_post_tags=true"])) is True
    assert post_tags_enforced(load_config(overrides=["model.base=/m", "tasks.enforce_post_tags=false"])) is False


@pytest.mark.parametrize("enforce", [True, None])
def test_stage_post_tag_filter_report_and_quarantine(ray_local, tmp_path, enforce):
    """The stage on the fixture plus post tag rows: enforced, the failing posts' examples are
    quarantined by reason and the accounting identity holds; by default (tiny model) the
    tags are only counted."""
    from humanllm_ray.tasks import run

    root = str(tmp_path)
    fixture = make_fixture(root)
    tags = [_tag_row(*t) for t in PLANTED_TAGS]
    _write_parquet(fixture["qc"] + tags, QC_SCHEMA, storage.join(root, "qc", "data", "part-0.parquet"))
    overrides = {} if enforce is None else {"enforce_post_tags": "true"}
    report = run(_config(root, **overrides))
    pt = report["post_tags"]
    assert pt["enforced"] is bool(enforce) and pt["min_quality"] == 3
    assert pt["posts"] == {"tags": 6, "tag_ok": 2, "post_low_quality": 2, "post_harmful": 2}
    assert report["rows_in"] == report["rows_out"] + report["rows_quarantined"] + report["rows_merged"]
    quarantine = read_table(os.path.join(report["output"], "_quarantine")).to_pylist()
    assert len(quarantine) == report["rows_quarantined"]
    dropped = sorted((json.loads(q["raw"])["task"], q["reason"]) for q in quarantine if q["reason"].startswith("post_"))
    findings = {k: v for k, v in pt["examples"].items() if k.startswith("post_")}
    assert findings and sum(findings.values()) >= 4
    assert pt["examples"]["untagged"] > 0
    if enforce:
        assert {k: report["by_reason"].get(k, 0) for k in findings} == findings
        assert ("personalized_commenting", "post_harmful") in dropped and ("social_qa", "post_low_quality") in dropped
        # The planted faults other than tags are still found (one may coincide with a dropped post).
        assert report["by_reason"]["insufficient_candidates"] == 1
        kept = [r for rows in _read_splits(report["output"]).values() for r in rows]
        kept_posts = {_target_post(r) for r in kept if r["task"] in PER_POST_TASKS}
        assert not kept_posts & set(DROPPED)
    else:
        assert not dropped and not set(findings) & set(report["by_reason"])
        assert report["by_reason"] == {"insufficient_candidates": 1, "target_in_context": 2}
