"""curate.lang scores langid's model on a text's non-zero features only: the labels and
probabilities must be langid's own (``LanguageIdentifier.classify``), text for text."""

from __future__ import annotations

import csv
import json

import pytest

from humanllm_ray.curate import lang

from conftest import realdata_dir

# languages, scripts and the texts that break tokenisers: no features at all, one byte,
# emoji, digits, mixed scripts, markup, a long text
TEXTS = [
    "Hello there, how are you doing today?", "Hola, ¿cómo estás hoy? Muy bien, gracias.",
    "Guten Morgen, wie geht es dir?", "Bonjour à tous, je suis très content d'être ici.",
    "Buongiorno, come stai oggi?", "Olá, tudo bem com você?", "Привет, как дела?",
    "今日はとても良い天気ですね。", "我今天很高兴见到你。",
    "안녕하세요, 만나서 반갑습니다.", "مرحبا كيف حالك اليوم",
    "שלום, מה שלומך?", "Γεια σου, τι κάνεις;", "नमस्ते, आप कैसे हैं?",
    "x", "?", "12345 67890", "😀😀😀 🎉", "\x00\x01", "<p>&amp; lol</p>", "http://t.co/abc @user #tag",
    "the " * 600, "ok ok ok ok ok, NO WAY!!!", "Ich glaube, the weather ist schön today.",
]


def _agree(texts):
    ident = lang._identifier()
    for t in texts:
        t = t[:2000].lower()
        want_label, want_prob = ident.classify(t)
        got_label, got_prob = lang.classify_text(ident, t)
        assert got_label == want_label, t
        assert got_prob == pytest.approx(float(want_prob), rel=1e-12, abs=1e-300), t
    return len(texts)


def test_classify_text_is_langids_classify():
    assert _agree(TEXTS) == len(TEXTS)
    assert lang.classify("Привет, как дела?")[0] == "ru"
    assert lang.classify("   ") == (None, 0.0)


def test_classify_text_agrees_on_real_tweets():
    twitter = realdata_dir("twitter")
    search = twitter / "simdjson_simdjson" / "jsonexamples" / "twitter.json"
    s140 = twitter / "subuppaluru_RNN" / "training.1600000.processed.noemoticon.csv"
    with open(search, encoding="utf-8") as fh:
        texts = [s["text"] for s in json.load(fh)["statuses"]]  # mostly Japanese
    with open(s140, encoding="latin-1", newline="") as fh:
        for i, row in enumerate(csv.reader(fh)):
            if i >= 1500:
                break
            texts.append(row[-1])
    assert _agree(texts) > 1500
