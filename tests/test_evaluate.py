"""Evaluate stage: metric code on cases with known answers, candidate parsing, and an
end-to-end run on a tiny test split (base vs the published merged model)."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
import torch

from humanllm_ray import evaluate, publish, storage
from humanllm_ray.config import load_config
from humanllm_ray.evaluate.benchmarks import MCItem, choose_letters, load_benchmarks
from humanllm_ray.evaluate.metrics import accuracy_summary, loss_summary, paired_loss_delta
from humanllm_ray.evaluate.personalization import strip_personal_context
from humanllm_ray.evaluate.scoring import answer_nll, candidate_answers, encode_chat
from humanllm_ray.model import load_tokenizer
from humanllm_ray.stage import write_table

from conftest import realdata_dir
from test_merge import one_torch_thread, perturbed_copy  # noqa: F401 (autouse fixture)

SYSTEM = "You are simulating one specific person. Answer exactly as this person would: their voice, their views, their habits."


def chat(user: str, answer: str):
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": user},
        {"role": "assistant", "content": answer},
    ]


# --------------------------------------------------------------------------- known-answer metric cases


class LookaheadModel(torch.nn.Module):
    """Puts probability ``p`` on the true next token (it peeks at the input) and spreads the
    rest uniformly: every scored token then has NLL exactly -ln(p)."""

    def __init__(self, vocab: int, p: float):
        super().__init__()
        self.vocab, self.p = vocab, p
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):
        b, t = input_ids.shape
        probs = torch.full((b, t, self.vocab), (1 - self.p) / (self.vocab - 1))
        nxt = torch.cat([input_ids[:, 1:], input_ids[:, :1]], dim=1)
        probs.scatter_(2, nxt.unsqueeze(-1), self.p)
        return SimpleNamespace(logits=probs.log())


@pytest.mark.parametrize("p", [0.5, 0.9])
def test_answer_nll_on_a_known_distribution(tiny_model_dir, p):
    tok = load_tokenizer(tiny_model_dir)
    convs = [chat("Where do you go on weekends?", "Hiking, mostly."), chat("Hi", "A much longer answer about my cat and my garden today.")]
    encoded = [encode_chat(tok, c, max_length=512) for c in convs]
    for enc, conv in zip(encoded, convs):  # the mask covers the answer (and its end token) only
        answer_ids = [i for i, m in zip(enc.input_ids, enc.target_mask) if m]
        assert tok.decode(answer_ids) == conv[-1]["content"] + "<|im_end|>"
    scores = answer_nll(LookaheadModel(len(tok), p), encoded, pad_id=tok.pad_token_id, batch_size=2)  # padded batch
    for (nll, n), enc in zip(scores, encoded):
        assert n == enc.num_targets > 0
        # answer_nll's float32 log-softmax sums ~vocab small probabilities: ~1e-4 relative error.
        assert nll == pytest.approx(-math.log(p) * n, rel=3e-4)
    summary = loss_summary([s for s, _ in scores], [n for _, n in scores], samples=200)
    assert summary["loss"] == pytest.approx(-math.log(p), rel=3e-4)
    assert summary["perplexity"] == pytest.approx(1 / p, rel=3e-4)
    assert summary["loss_ci"] == pytest.approx([-math.log(p)] * 2, rel=3e-4)  # every token alike: no spread
    assert summary["tokens"] == sum(e.num_targets for e in encoded)


def test_truncation_keeps_the_answer(tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir)
    enc = encode_chat(tok, chat("word " * 400, "my answer"), max_length=32)
    assert len(enc.input_ids) == 32 and enc.num_targets > 0


def test_accuracy_and_chance():
    s = accuracy_summary([True, False, True, True], [4, 4, 2, 4], samples=500)
    assert s["accuracy"] == 0.75 and s["examples"] == 4
    assert s["chance"] == pytest.approx((0.25 * 3 + 0.5) / 4)
    lo, hi = s["accuracy_ci"]
    assert 0.0 <= lo <= 0.75 <= hi <= 1.0


def test_bootstrap_ci_shape():
    rng = np.random.default_rng(0)
    small = rng.random(100) < 0.7
    large = rng.random(2000) < 0.7
    a = accuracy_summary(small, [2] * len(small), samples=1000, seed=1)
    b = accuracy_summary(large, [2] * len(large), samples=1000, seed=1)
    for s in (a, b):
        assert s["accuracy_ci"][0] < s["accuracy"] < s["accuracy_ci"][1]
    width = lambda s: s["accuracy_ci"][1] - s["accuracy_ci"][0]
    assert width(b) < width(a) / 2  # ~ 1/sqrt(n): 20x the data, ~4.5x narrower
    expected = 2 * 1.96 * math.sqrt(b["accuracy"] * (1 - b["accuracy"]) / len(large))
    assert width(b) == pytest.approx(expected, rel=0.2)  # matches the normal approximation
    assert accuracy_summary(small, [2] * 100, seed=1) == a  # seeded: reproducible
    assert accuracy_summary([], [])["accuracy"] is None


def test_paired_delta():
    nll_b = [2.0, 4.0, 6.0, 3.0]
    tok = [2, 2, 3, 1]
    same = paired_loss_delta(nll_b, tok, nll_b, tok, samples=300)
    assert same["delta"] == 0 and same["delta_ci"] == [0, 0] and same["verdict"] == "indistinguishable"
    better = paired_loss_delta([x * 0.5 for x in nll_b], tok, nll_b, tok, samples=300)
    assert better["delta"] == pytest.approx(0.5 * sum(nll_b) / sum(tok) - sum(nll_b) / sum(tok))
    assert better["verdict"] == "lower" and better["delta_ci"][1] < 0
    assert paired_loss_delta(nll_b, tok, [x * 2 for x in nll_b], tok, samples=300)["verdict"] == "lower"
    with pytest.raises(ValueError):
        paired_loss_delta([1.0], [1], [1.0, 2.0], [1, 1])


def test_candidate_answers_formats():
    prompt = "Which one do they buy?\nA) Red kettle\nB) Blue teapot\nC) Green mug\n\nAnswer with the letter and the item name."
    meta = {"candidates": [{"title": "Red kettle"}, {"title": "Blue teapot"}, {"title": "Green mug"}], "answer_index": 1}
    answers, right = candidate_answers(chat(prompt, "B) Blue teapot"), json.dumps(meta))
    assert answers == ["A) Red kettle", "B) Blue teapot", "C) Green mug"] and right == 1
    # Titles only: the gold title inside the answer is swapped for each candidate's.
    answers, right = candidate_answers(chat("pick one", "I would buy the Green mug."), {"candidates": ["Red kettle", "Blue teapot", "Green mug"], "answer": 2})
    assert answers[0] == "I would buy the Red kettle." and right == 2
    # A bare letter answer.
    answers, right = candidate_answers(chat("pick", "C"), {"candidates": ["x", "y", "z"], "answer_letter": "C", "answer": "C"})
    assert answers == ["A", "B", "C"] and right == 2
    assert candidate_answers(chat("pick", "B) Blue teapot"), {"candidates": ["a"], "answer_index": 0}) is None
    assert candidate_answers(chat("pick", "B) Blue teapot"), "not json") is None


# --------------------------------------------------------------------------- end to end


# Prompts in the task builders' exact layout (tasks/builders/writing_imitation.py and
# personalized_commenting.py), so the personalization gain strips them as it would real ones.
WI_PROMPTS = [
    "Here is writing this person posted before:\n\n[1] Bike commute diary\nRode in the rain again, fixed a flat at the lake.\n\n"
    "Write their new post in r/bicycling titled \"Finally fixed the gears\".",
    "Here is writing this person posted before:\n\n[1] Rode to the lake at dawn, cold hands, worth it.\n\n"
    "They started a new post:\n\nToday I finally fixed my bike\n\nContinue it exactly as they would.",
    "Here is writing this person posted before:\n\n[1] Great kettle\nBoils fast, loud whistle.\n\n"
    "They bought \"Travel mug\" and rated it 4/5. Write their review.",
]
WI_TARGETS = [
    "Today I finally fixed my bike and rode to the lake.",
    "and rode to the lake before work, hands frozen but happy.",
    "Keeps coffee hot on the whole ride to the lake. Lid leaks a bit.",
]
PC_PROMPTS = [
    "Persona: A night-shift nurse who loves birds and dry jokes.\n\nComments this person wrote before:\n\n[1] (replying to: Owls at night) "
    "Saw two barn owls on my walk home from a shift.\n\nAnother user posted:\n\nWhat birds visit your feeder?\n\nWrite this person's comment on that post.",
    "Persona: A night-shift nurse who loves birds and dry jokes.\n\nAnother user posted:\n\nAnyone else work nights?\n\n"
    "Write this person's comment on that post.",
]
PC_TARGETS = [
    "Mostly sparrows, one very judgmental crow, and a robin that shows up after my shifts.",
    "Twelve years of nights. The birds are the only ones awake with me at five.",
]


def _test_split(root: str) -> list:
    items = ["Stainless kettle", "Ceramic teapot", "Travel mug", "Glass jar"]
    prompt = "They are shopping in the category \"Kitchen\" again. Which one of these items do they buy?\n" + "\n".join(
        f"{'ABCD'[k]}) {t}" for k, t in enumerate(items)
    ) + "\n\nAnswer with the letter and the item name."
    rows = []
    for n in range(3):
        rows.append(dict(task="social_qa", messages=chat(f"Scenario {n}: a friend cancels plans. How do you feel?", "Honestly relieved, I needed a quiet night."), meta="{}"))
        rows.append(dict(task="writing_imitation", messages=chat(WI_PROMPTS[n], WI_TARGETS[n]), meta="{}"))
        answer = n % 4
        rows.append(dict(task="item_selection", messages=chat(prompt, f"{'ABCD'[answer]}) {items[answer]}"),
                         meta=json.dumps({"candidates": [{"title": t} for t in items], "answer_index": answer})))
    rows.append(dict(task="social_qa", messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "no answer here"}], meta="{}"))
    for n in range(2):
        rows.append(dict(task="personalized_commenting", messages=chat(PC_PROMPTS[n], PC_TARGETS[n]), meta="{}"))
    out = []
    for i, r in enumerate(rows):
        out.append(dict(example_id=f"ex{i:03d}", variant="default", user_id=f"u{i % 3}", platform="reddit" if i % 2 else "amazon", split="test", **r))
    table = pa.Table.from_pylist(out)
    write_table(table, os.path.join(root, "tasks", "test", "part-0.parquet"))
    return out


_HF_MODELS: dict = {}  # the last model _reference_loss loaded (one at a time)


def _reference_loss(model_dir: str, rows) -> float:
    """Independent: HF's own loss with labels = -100 outside the answer."""
    from transformers import AutoModelForCausalLM

    if model_dir not in _HF_MODELS:
        _HF_MODELS.clear()
        _HF_MODELS[model_dir] = (load_tokenizer(model_dir), AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32))
    tok, model = _HF_MODELS[model_dir]
    total, count = 0.0, 0
    for r in rows:
        enc = tok.apply_chat_template(r["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
        ids = torch.tensor([enc["input_ids"]])
        labels = torch.where(torch.tensor([enc["assistant_masks"]]) == 1, ids, torch.full_like(ids, -100))
        n = int((labels[0, 1:] != -100).sum())
        with torch.no_grad():
            total += float(model(input_ids=ids, labels=labels).loss) * n
        count += n
    return total / count


def test_evaluate_end_to_end_base_vs_published_merged(tiny_model_dir, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = tmp_path / "run"
    rows = _test_split(str(root))
    merged = perturbed_copy(tiny_model_dir, str(root / "merged" / "model"), seed=21, scale=0.02)
    storage.write_json(str(root / "ingested" / "_report.json"), {"stage": "ingest", "rows_in": 9, "rows_out": 8, "rows_quarantined": 1, "rows_merged": 0,
                                                                 "by_platform": {"amazon": {"in": 5, "out": 4, "quarantined": 1}, "reddit": {"in": 4, "out": 4, "quarantined": 0}}})
    fig, ax = plt.subplots()
    ax.plot([5, 4, 3])
    os.makedirs(root / "train", exist_ok=True)
    fig.savefig(root / "train" / "loss_curve.png")
    plt.close(fig)

    bench = tmp_path / "bench.jsonl"
    bench.write_text("\n".join(json.dumps({"question": f"Q{n}: how does Ana feel?", "options": ["happy", "sad", "angry"], "answer": n % 3}) for n in range(5)))
    cfg = load_config(overrides=[f"run.root={root}", "run.progress=false", "eval.bootstrap_samples=200", "eval.batch_size=4",
                                 f"eval.benchmarks=[{bench}]"])
    pub = publish.run(cfg)
    report = evaluate.run(cfg)

    assert report["rows_in"] == len(rows) == 12
    assert report["rows_out"] == 11 and report["rows_quarantined"] == 1
    assert report["by_reason"] == {"no_answer_tokens": 1}
    assert report["rows_in"] == report["rows_out"] + report["rows_quarantined"] + report["rows_merged"]
    assert report["models"]["merged"].startswith("published") and pub["version"] in report["models"]["merged"]

    result = json.loads((root / "eval" / "report.json").read_text())
    assert set(result["models"]) == {"base", "merged"}
    assert result["tasks"] == {"item_selection": 3, "personalized_commenting": 2, "social_qa": 3, "writing_imitation": 3}
    for label, m in result["models"].items():
        for task, metric in list(m["by_task"].items()) + [("overall", m["overall"])]:
            lo, hi = metric["loss_ci"]
            assert lo <= metric["loss"] <= hi, (label, task)
            assert metric["perplexity"] == pytest.approx(math.exp(metric["loss"]))
        acc = m["item_selection"]
        assert acc["examples"] == 3 and acc["chance"] == 0.25 and 0 <= acc["accuracy"] <= 1
    scored = [r for r in rows if r["messages"][-1]["role"] == "assistant"]
    assert result["models"]["base"]["overall"]["loss"] == pytest.approx(_reference_loss(tiny_model_dir, scored), rel=1e-4)
    assert result["models"]["merged"]["overall"]["loss"] == pytest.approx(_reference_loss(merged, scored), rel=1e-4)
    assert "merged_vs_base" in result["comparisons"]
    assert result["benchmarks"]["bench"]["items"] == 5
    for label in ("base", "merged"):
        b = result["benchmarks"]["bench"]["models"][label]
        assert b["examples"] == 5 and b["chance"] == pytest.approx(1 / 3)

    page = (root / "eval" / "report.html").read_text()
    assert result["headline"]["text"] in page.replace("&#x27;", "'") and "held-out loss" in result["headline"]["text"]
    assert page.count("data:image/png;base64,") == 4  # loss by task, accuracy, personalization gain, training curve
    assert "amazon" in page and "Data funnel" in page and "Out-of-domain benchmarks" in page
    for name in ("loss_by_task.png", "item_selection_accuracy.png", "personalization_gain.png", "loss_curve.png", "_SUCCESS"):
        assert (root / "eval" / name).exists(), name
    scores = pa.parquet.read_table(root / "eval" / "data" / "scores.parquet")
    assert scores.num_rows == 2 * 11

    # Personalization gain = loss(real text | generic prompt) - loss(real text | persona/history
    # prompt), checked against HF's own loss on the stripped conversations.
    pers = result["personalization"]
    assert pers["tasks"] == {"personalized_commenting": {"examples": 2, "strippable": 2, "not_strippable": 0},
                             "writing_imitation": {"examples": 3, "strippable": 3, "not_strippable": 0}}
    for label, model_dir in (("base", tiny_model_dir), ("merged", merged)):
        for task in ("writing_imitation", "personalized_commenting"):
            task_rows = [r for r in scored if r["task"] == task]
            g = pers["models"][label]["by_task"][task]
            with_loss = _reference_loss(model_dir, task_rows)
            without_loss = _reference_loss(model_dir, [dict(r, messages=strip_personal_context(r["messages"])) for r in task_rows])
            assert g["loss_with"] == pytest.approx(with_loss, rel=1e-4)
            assert g["loss_without"] == pytest.approx(without_loss, rel=1e-4)
            assert g["gain"] == pytest.approx(without_loss - with_loss, abs=1e-4)
            assert g["gain_ci"][0] <= g["gain"] <= g["gain_ci"][1] and g["examples"] == len(task_rows)
        assert pers["models"][label]["overall"]["examples"] == 5
    diff = pers["comparisons"]["merged_vs_base"]["overall"]
    gains = {l: pers["models"][l]["overall"]["gain"] for l in ("base", "merged")}
    assert diff["delta"] == pytest.approx(gains["merged"] - gains["base"], abs=1e-9)
    assert "Personalization:" in result["headline"]["personalization"]
    style = result["style"]["models"]["base"]["by_task"]
    assert set(style) == {"writing_imitation", "personalized_commenting"}
    for cell in style.values():
        for measure in ("char3", "function_words"):
            assert cell[measure]["examples"] + 0 <= cell["examples"]
            if cell[measure]["mean"] is not None:
                assert 0.0 <= cell[measure]["mean"] <= 1.0
    gens = scores.to_pandas().dropna(subset=["generation"])
    assert set(gens["task"]) == {"writing_imitation", "personalized_commenting"} and len(gens) == 2 * 5
    assert result["judge"] is None and result["checklists"] is None  # both off by default
    assert "Personalization gain" in page and "Style similarity" in page
    assert evaluate.run(cfg)["skipped"] is True


class PrefersLetter(torch.nn.Module):
    """Every next-token distribution peaks on one token: the model always answers that letter."""

    def __init__(self, vocab: int, token: int):
        super().__init__()
        self.vocab, self.token = vocab, token
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):
        logits = torch.zeros(*input_ids.shape, self.vocab)
        logits[..., self.token] = 5.0
        return SimpleNamespace(logits=logits)


def test_choose_letters_and_accuracy(tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir)
    items = [MCItem("toy", "f", str(n), "Ana lost her keys.", "How does she feel?", ["fine", "upset", "calm", "bored"], n % 4) for n in range(8)]
    items.append(MCItem("toy", "f", "short", "", "Two options only?", ["yes", "no"], 1))
    model = PrefersLetter(len(tok), tok.encode("C", add_special_tokens=False)[0])
    picks = choose_letters(model, tok, items, max_length=256, batch_size=3)
    assert picks[:8] == [2] * 8
    assert picks[8] in (0, 1)  # 'C' is not an option there: the best of A/B
    s = accuracy_summary([p == i.answer for p, i in zip(picks, items)][:8], [4] * 8)
    assert s["accuracy"] == 0.25 and s["chance"] == 0.25


@pytest.mark.realdata
def test_real_benchmarks_load():
    root = realdata_dir("benchmarks")
    loaded = load_benchmarks([str(root / "ToMBench" / "data"), str(root / "SocialIQA"), str(root / "MotiveBench")], max_items=100000)
    assert len(loaded["SocialIQA"]) == 1954  # dev has labels; the unlabeled test file is skipped
    assert len(loaded["MotiveBench"]) == 600  # 200 scenarios x 3 questions
    assert len(loaded["ToMBench"]) >= 2800
    for items in loaded.values():
        for item in items:
            assert 2 <= len(item.options) <= 26 and 0 <= item.answer < len(item.options) and item.question
    assert not any(o.startswith(("A. ", "B. ")) for i in loaded["MotiveBench"] for o in i.options)
    capped = load_benchmarks([str(root / "ToMBench" / "data")], max_items=40)["ToMBench"]
    assert len(capped) == 40 and len({i.source for i in capped}) == 20  # round-robin over the 20 task files


def test_simulate_answers_in_character(tiny_model_dir, tmp_path):
    messages = evaluate.simulation_messages("  Maya, 34, a night-shift nurse who loves birds.  ", "Your neighbour asks you to water plants.")
    assert messages[0]["role"] == "system" and messages[0]["content"].endswith("Profile: Maya, 34, a night-shift nurse who loves birds.")
    assert messages[1] == {"role": "user", "content": "Your neighbour asks you to water plants."}

    store = tmp_path / "store"
    shutil.copytree(tiny_model_dir, tmp_path / "m")
    publish.publish_model(str(tmp_path / "m"), str(store), "sim")
    out1 = evaluate.simulate(str(store / "sim"), "Maya loves birds.", "What do you do on Sunday?", max_new_tokens=8, cache_dir=str(tmp_path / "c"))
    out2 = evaluate.simulate(tiny_model_dir, "Maya loves birds.", "What do you do on Sunday?", max_new_tokens=8)
    assert isinstance(out1, str) and out1 == out2  # greedy: the same weights answer the same


def test_publish_and_evaluate_on_an_s3_run_root(tiny_model_dir, s3_bucket, tmp_path):
    """run.root=s3://...: the merged model, test split, published model and eval outputs all
    live on S3 (moto); publish hashes a fresh download, evaluate loads the verified copy."""
    local = tmp_path / "staging"
    rows = _test_split(str(local))
    perturbed_copy(tiny_model_dir, str(local / "merged" / "model"), seed=31, scale=0.02)
    root = f"{s3_bucket}/run"
    storage.put_dir(str(local), root)

    cfg = load_config(overrides=[
        f"run.root={root}", "run.progress=false", f"model.cache_dir={tmp_path / 'cache'}",
        "eval.max_examples=4", "eval.bootstrap_samples=50",
    ])
    pub = publish.run(cfg)
    assert pub["published_uri"].startswith(f"{root}/published/humanllm-tiny/")
    assert publish.verify(pub["published_uri"])["verified"]

    report = evaluate.run(cfg)
    assert report["rows_in"] == 4 and report["rows_out"] == 4  # round-robin: every task, no unscorable row
    result = storage.read_json(f"{root}/eval/report.json")
    assert set(result["models"]) == {"base", "merged"}
    assert set(result["tasks"]) == {"item_selection", "personalized_commenting", "social_qa", "writing_imitation"}
    assert result["models"]["merged"]["source"] == f"published {pub['published_uri']}"
    assert storage.exists(f"{root}/eval/report.html") and storage.exists(f"{root}/eval/_SUCCESS")


# --------------------------------------------------------------------------- personalization, style, judge


def _builder_candidates(style: str = ""):
    """Real task-builder output for one user: titled posts, an untitled long post, comments
    (and, given ``style``, a writing_style item)."""
    from humanllm_ray.tasks.common import BuildContext, QCItem, Record, UserTimeline
    from humanllm_ray.tasks.registry import get_builder

    def rec(n, kind, title="", text="", context=""):
        return Record(f"r{n}", 1_600_000_000 + n, kind, "reddit", title, text, context, "", None, {})

    long_text = "I finally fixed the gears on my old bike after weeks of putting it off and then rode all the way to the lake before work."
    records = [
        rec(0, "post", "Bike diary", "Rode in the rain again and fixed a flat by the lake."),
        rec(1, "comment", text="Saw two barn owls walking home from my shift.", context="Owls at night, post yours"),
        rec(2, "post", "Finally fixed the gears", "Took me three evenings but the shifting is smooth now."),
        rec(3, "post", "", long_text),
        rec(4, "comment", text="Mostly sparrows and one very judgmental crow.", context="What birds visit your feeder?"),
    ]
    persona = QCItem("u1:persona", "persona", {"persona": "A night-shift nurse who loves birds and bikes."}, ("r0",))
    items = [persona] + ([QCItem("u1:writing_style", "writing_style", {"style": style}, ("r0",))] if style else [])
    user = UserTimeline("u1", "reddit", records, items)
    ctx = BuildContext(max_history=2, max_chars_per_post=300, item_candidates=4, max_examples_per_user=8, seed=1)
    return [c for task in ("writing_imitation", "personalized_commenting") for c in get_builder(task)(user, ctx)]


def test_strip_personal_context_on_builder_prompts():
    cands = _builder_candidates()
    variants = {(c.task, c.variant) for c in cands}
    assert {("writing_imitation", "title_to_post"), ("writing_imitation", "continuation"),
            ("personalized_commenting", "persona_and_history")} <= variants
    for c in cands:
        messages = c.messages()
        stripped = strip_personal_context(messages)
        assert stripped is not None, (c.task, c.variant)
        user = stripped[1]["content"]
        assert stripped[0] == messages[0] and stripped[2] == messages[2]  # system and target verbatim
        assert "Persona:" not in user and "before:" not in user
        assert "Rode in the rain" not in user and "barn owls" not in user  # the history is gone
        assert messages[1]["content"].endswith(user)  # what is left is the prompt's own tail
        if c.variant == "title_to_post":
            assert user.startswith("Write their new post") and c.meta["history_record_ids"]
        elif c.variant == "continuation":
            assert user.startswith("They started a new post:\n\nI finally fixed the gears")
        else:
            assert user.startswith("Another user posted:\n\n") and user.endswith("Write this person's comment on that post.")
    # A writing style description is personal context too, with or without a history after it.
    styled = [c for c in _builder_candidates(style="Short upbeat sentences in lowercase.") if c.task == "writing_imitation"]
    assert any(not c.meta["history_record_ids"] for c in styled)  # the first post: the style alone
    for c in styled:
        assert c.messages()[1]["content"].startswith("Writing style: Short upbeat")
        stripped = strip_personal_context(c.messages())
        assert stripped is not None and "upbeat" not in stripped[1]["content"] and "before:" not in stripped[1]["content"]
    # Nothing personal to remove: not strippable (left out of the gain, counted).
    assert strip_personal_context(chat("Write a post about bikes.", "ok")) is None
    assert strip_personal_context(chat("Here is writing this person posted before:\n\n[1] x", "ok")) is None  # no stimulus found
    assert strip_personal_context([{"role": "user", "content": "Persona: x\n\nScenario: y"}]) is None  # no target


def test_personalization_gain_arithmetic():
    from humanllm_ray.evaluate.metrics import gain_difference, mean_summary, paired_mean_delta, personalization_gain

    g = personalization_gain([2.0, 4.0], [2, 2], [4.0, 6.0], [2, 2], samples=300)
    assert g["loss_with"] == 1.5 and g["loss_without"] == 2.5 and g["gain"] == pytest.approx(1.0)
    assert g["gain_ci"][0] > 0 and g["verdict"] == "helps" and g["examples"] == 2 and g["tokens"] == 4
    assert personalization_gain([3.0], [1], [1.0], [1], samples=50)["verdict"] == "hurts"
    assert personalization_gain([], [], [], [])["gain"] is None
    a = ([2.0, 4.0], [2, 2], [4.0, 6.0], [2, 2])  # gain 1.0
    b = ([2.0, 4.0], [2, 2], [3.0, 5.0], [2, 2])  # gain 0.5
    d = gain_difference(a, b, samples=300)
    assert d["delta"] == pytest.approx(0.5) and d["verdict"] == "larger" and d["delta_ci"] == pytest.approx([0.5, 0.5])
    m = mean_summary([0.2, None, 0.4], samples=200)
    assert m["mean"] == pytest.approx(0.3) and m["examples"] == 2
    assert paired_mean_delta([0.5, 0.7, None], [0.1, 0.2, 0.3], samples=200)["delta"] == pytest.approx(0.45)


def test_style_similarity_measures():
    from humanllm_ray.evaluate.personalization import (
        char_ngram_cosine,
        function_word_cosine,
        other_user_partner,
        style_scores,
        style_table,
    )

    assert char_ngram_cosine("The cat sat.", "the  CAT sat.") == pytest.approx(1.0)
    assert char_ngram_cosine("aaaa", "zzzz") == 0.0 and char_ngram_cosine("", "x y") is None
    # 'abcd' -> ' ab','abc','bcd','cd '; 'abce' -> ' ab','abc','bce','ce ': 2 of 4 shared, cosine 2/4.
    assert char_ngram_cosine("abcd", "abce") == pytest.approx(0.5)
    assert function_word_cosine("I think that it is fine", "it is that I think, yo") == pytest.approx(1.0)
    assert function_word_cosine("Gears! Lake! Owls!", "and the") is None  # no function word on one side
    assert function_word_cosine("and and the", "the") == pytest.approx(1 / math.sqrt(5))  # (2,1)·(0,1)/(√5·1)
    assert style_scores("abc", "abcdef" * 10, max_chars=3)["char3"] == pytest.approx(1.0)  # real cut to 3 chars
    assert other_user_partner([0, 1, 2], {0: "u", 1: "u", 2: "v"}) == {0: 2, 1: 2, 2: 0}
    assert other_user_partner([5], {5: "u"}) == {5: None}
    table = style_table({0: "abcd", 1: "zzzz"}, {0: "abcd", 1: "zzzz"}, {0: "u1", 1: "u2"}, {0: "t", 1: "t"}, 600)
    assert table[0]["own"]["char3"] == pytest.approx(1.0) and table[0]["other"]["char3"] == 0.0 and table[0]["partner"] == 1


def test_greedy_generate_matches_simulate(tiny_model_dir):
    from humanllm_ray.evaluate.scoring import greedy_generate
    from humanllm_ray.model import load_model

    tok = load_tokenizer(tiny_model_dir)
    model = load_model(tiny_model_dir).eval()
    prompts = [evaluate.simulation_messages("Maya loves birds.", "What do you do on Sunday?"),
               evaluate.simulation_messages("Omar, a retired chess teacher with strong opinions about openings.", "A stranger asks for advice.")]
    batched = greedy_generate(model, tok, prompts, 8, batch_size=2)  # left-padded together
    assert batched[0] == evaluate.simulate(tiny_model_dir, "Maya loves birds.", "What do you do on Sunday?", max_new_tokens=8)
    assert batched == [greedy_generate(model, tok, [p], 8)[0] for p in prompts]


def test_llm_judge_on_three_items(tiny_model_dir):
    """The judge path for social QA / profile generation, for real: the hf engine on the tiny
    model, schema-constrained, so every reply parses into the judge schema (its scores are noise)."""
    from humanllm_ray.evaluate.judge import DIMENSIONS, EngineHolder, JudgeItem, is_noise_judge, judge_items, judge_messages

    cfg = load_config(overrides=["eval.judge=true", "eval.judge_max_new_tokens=64"])
    items = [
        JudgeItem(0, "social_qa", "Scenario: a friend cancels plans.\n\nQuestion: How do you feel?", "Relieved, honestly.", "Quite relieved."),
        JudgeItem(1, "social_qa", "Scenario: the bus is late.\n\nQuestion: What do you do?", "Walk to work.", ""),
        JudgeItem(2, "profile_generation", "Posts by one person: ...", "A nurse who loves birds.", "A nurse, likes birds."),
    ]
    msgs = judge_messages(items[1])
    assert msgs[0]["role"] == "system" and "(empty)" in msgs[1]["content"] and "Walk to work." in msgs[1]["content"]
    holder = EngineHolder(cfg)
    try:
        verdicts = judge_items(holder, items, cfg)
    finally:
        holder.close()
    assert len(verdicts) == 3 and is_noise_judge(cfg)
    for v in verdicts:
        assert v is not None and set(v) == {"reason", *DIMENSIONS}
        assert all(1 <= v[d] <= 5 for d in DIMENSIONS)


def test_cli_simulate_answers(tiny_model_dir, tmp_path):
    import subprocess
    import sys

    profile = tmp_path / "profile.txt"
    profile.write_text("Maya, 34, a night-shift nurse who loves birds and dry jokes.\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, "-m", "humanllm_ray.cli", "simulate", "--model", tiny_model_dir, "--profile", str(profile),
         "--scenario", "Your neighbour asks you to water her plants while she is away.", "--max-new-tokens", "8"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    answer = proc.stdout.strip()
    assert answer, f"no answer on stdout; stderr: {proc.stderr[-2000:]}"
    expected = evaluate.simulate(tiny_model_dir, profile.read_text(), "Your neighbour asks you to water her plants while she is away.", max_new_tokens=8)
    assert answer == expected  # the CLI prints exactly what simulate() answers
