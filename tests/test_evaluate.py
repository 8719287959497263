"""Evaluate stage: metric code on cases with known answers, candidate parsing, and an
end-to-end run on a tiny test split (base vs the published merged model)."""

from __future__ import annotations

import json
import math
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
import torch

from humanllm_ray import evaluate, publish, storage
from humanllm_ray.config import load_config
from humanllm_ray.evaluate.benchmarks import MCItem, choose_letters, load_benchmarks
from humanllm_ray.evaluate.metrics import accuracy_summary, loss_summary, paired_loss_delta
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
        assert nll == pytest.approx(-math.log(p) * n, rel=1e-5)
    summary = loss_summary([s for s, _ in scores], [n for _, n in scores], samples=200)
    assert summary["loss"] == pytest.approx(-math.log(p), rel=1e-5)
    assert summary["perplexity"] == pytest.approx(1 / p, rel=1e-5)
    assert summary["loss_ci"] == pytest.approx([-math.log(p)] * 2, rel=1e-5)  # every token alike: no spread
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


def _test_split(root: str) -> list:
    items = ["Stainless kettle", "Ceramic teapot", "Travel mug", "Glass jar"]
    prompt = "They are shopping in the category \"Kitchen\" again. Which one of these items do they buy?\n" + "\n".join(
        f"{'ABCD'[k]}) {t}" for k, t in enumerate(items)
    ) + "\n\nAnswer with the letter and the item name."
    rows = []
    for n in range(3):
        rows.append(dict(task="social_qa", messages=chat(f"Scenario {n}: a friend cancels plans. How do you feel?", "Honestly relieved, I needed a quiet night."), meta="{}"))
        rows.append(dict(task="writing_imitation", messages=chat(f"Write a post about topic {n}.", "Today I finally fixed my bike and rode to the lake."), meta="{}"))
        answer = n % 4
        rows.append(dict(task="item_selection", messages=chat(prompt, f"{'ABCD'[answer]}) {items[answer]}"),
                         meta=json.dumps({"candidates": [{"title": t} for t in items], "answer_index": answer})))
    rows.append(dict(task="social_qa", messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "no answer here"}], meta="{}"))
    out = []
    for i, r in enumerate(rows):
        out.append(dict(example_id=f"ex{i:03d}", variant="default", user_id=f"u{i % 3}", platform="reddit" if i % 2 else "amazon", split="test", **r))
    table = pa.Table.from_pylist(out)
    write_table(table, os.path.join(root, "tasks", "test", "part-0.parquet"))
    return out


def _reference_loss(model_dir: str, rows) -> float:
    """Independent: HF's own loss with labels = -100 outside the answer."""
    from transformers import AutoModelForCausalLM

    tok = load_tokenizer(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
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

    assert report["rows_in"] == len(rows) == 10
    assert report["rows_out"] == 9 and report["rows_quarantined"] == 1
    assert report["by_reason"] == {"no_answer_tokens": 1}
    assert report["rows_in"] == report["rows_out"] + report["rows_quarantined"] + report["rows_merged"]
    assert report["models"]["merged"].startswith("published") and pub["version"] in report["models"]["merged"]

    result = json.loads((root / "eval" / "report.json").read_text())
    assert set(result["models"]) == {"base", "merged"}
    assert result["tasks"] == {"item_selection": 3, "social_qa": 3, "writing_imitation": 3}
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
    assert page.count("data:image/png;base64,") == 3  # loss by task, accuracy, training curve
    assert "amazon" in page and "Data funnel" in page and "Out-of-domain benchmarks" in page
    for name in ("loss_by_task.png", "item_selection_accuracy.png", "loss_curve.png", "_SUCCESS"):
        assert (root / "eval" / name).exists(), name
    scores = pa.parquet.read_table(root / "eval" / "data" / "scores.parquet")
    assert scores.num_rows == 2 * 9
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
    assert set(result["tasks"]) == {"item_selection", "social_qa", "writing_imitation"}
    assert result["models"]["merged"]["source"] == f"published {pub['published_uri']}"
    assert storage.exists(f"{root}/eval/report.html") and storage.exists(f"{root}/eval/_SUCCESS")
