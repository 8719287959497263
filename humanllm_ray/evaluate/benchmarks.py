"""Out-of-domain multiple-choice benchmarks (the paper's social-intelligence evaluation):
ToMBench, SocialIQA, MotiveBench in their native files, plus a generic JSONL format.

Each item is asked as one chat turn listing lettered options; the model's pick is the
letter with the highest next-token probability after the assistant prefix (one forward
pass per item, no length bias between options). ``eval.benchmarks`` takes files,
folders or globs, local or ``s3://``; items are grouped by benchmark family and capped at
``eval.benchmark_max_items`` per family, taken round-robin over its files.

Generic JSONL: one ``{"question": str, "options": [str, ...], "answer": int | "B",
"context": str?}`` per line.
"""

from __future__ import annotations

import json
import logging
import math
import posixpath
import string
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import torch

from .. import storage

log = logging.getLogger("humanllm")

LETTERS = string.ascii_uppercase
INSTRUCTION = "Answer the multiple-choice question about people and their minds. Reply with the letter of the best option only."


@dataclass
class MCItem:
    benchmark: str  # family: ToMBench, SocialIQA, MotiveBench, or the file stem
    source: str  # file it came from
    item_id: str
    context: str
    question: str
    options: List[str]
    answer: int


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and str(value).strip() != ""


def _letter_index(answer: Any, n: int) -> Optional[int]:
    if isinstance(answer, bool):
        return None
    if isinstance(answer, int):
        return answer if 0 <= answer < n else None
    text = str(answer).strip().strip("().").upper()
    if len(text) == 1 and text in LETTERS[:n]:
        return LETTERS.index(text)
    if text.isdigit() and 0 <= int(text) < n:
        return int(text)
    return None


def _strip_letter(option: str) -> str:
    text = option.strip()
    if len(text) > 2 and text[0] in LETTERS and text[1] in ".)" and text[2] == " ":
        return text[3:].strip()
    return text


def _read_text(uri: str) -> str:
    return storage.read_bytes(uri).decode("utf-8", errors="replace")


def _tombench(rows: List[Dict[str, Any]], source: str) -> List[MCItem]:
    items = []
    for n, row in enumerate(rows):
        options = [row.get(f"OPTION-{c}") for c in "ABCD"]
        options = [str(o) for o in options if _present(o)]  # unused options are NaN
        answer = _letter_index(row.get("答案\nANSWER"), len(options))
        if answer is None or len(options) < 2:
            continue
        items.append(MCItem("ToMBench", source, f"{posixpath.basename(source)}#{n}", str(row.get("STORY", "")),
                            str(row.get("QUESTION", "")), options, answer))
    return items


def _socialiqa(rows: List[Dict[str, Any]], source: str) -> List[MCItem]:
    labels_uri = source[: -len(".jsonl")] + "-labels.lst"
    if not storage.exists(labels_uri):
        log.warning("benchmarks: %s has no labels file (%s); skipped", source, labels_uri)
        return []
    labels = [line.strip() for line in _read_text(labels_uri).splitlines() if line.strip()]
    items = []
    for n, (row, label) in enumerate(zip(rows, labels)):
        options = [str(row[k]) for k in ("answerA", "answerB", "answerC") if _present(row.get(k))]
        answer = int(label) - 1  # 1-based in the AI2 files
        if 0 <= answer < len(options):
            items.append(MCItem("SocialIQA", source, f"{posixpath.basename(source)}#{n}", str(row.get("context", "")),
                                str(row.get("question", "")), options, answer))
    return items


def _motivebench(rows: List[Dict[str, Any]], source: str) -> List[MCItem]:
    items = []
    prefixes = ("Motivation Reasoning Question", "Behavior Reasoning Question", "Motivation and Behavior Reasoning Question")
    for row in rows:
        for k, key in enumerate(prefixes, 1):
            options = [_strip_letter(str(o)) for o in row.get(f"Options {k}") or []]
            answer = _letter_index(row.get(f"Correct Answer {k}"), len(options))
            if key in row and answer is not None and len(options) >= 2:
                items.append(MCItem("MotiveBench", source, f"{posixpath.basename(source)}#{row.get('idx')}.{k}", "",
                                    str(row[key]), options, answer))
    return items


def _generic(rows: List[Dict[str, Any]], source: str) -> List[MCItem]:
    name = posixpath.splitext(posixpath.basename(source))[0]
    items = []
    for n, row in enumerate(rows):
        options = [str(o) for o in (row.get("options") or row.get("choices") or [])]
        answer = _letter_index(row.get("answer", row.get("label")), len(options))
        if row.get("question") and answer is not None and len(options) >= 2:
            items.append(MCItem(name, source, str(row.get("id", f"{name}#{n}")), str(row.get("context", "")),
                                str(row["question"]), options, answer))
    return items


def load_benchmark_file(uri: str) -> List[MCItem]:
    """Items of one benchmark file, its format recognised from its fields."""
    text = _read_text(uri)
    if uri.endswith(".jsonl"):
        # Python's json accepts ToMBench's bare NaN values, which strict parsers reject.
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    elif uri.endswith(".json"):
        data = json.loads(text)
        rows = data if isinstance(data, list) else []
    else:
        return []
    rows = [r for r in rows if isinstance(r, dict)]
    if not rows:
        return []
    first = rows[0]
    if "OPTION-A" in first:
        return _tombench(rows, uri)
    if "answerA" in first:
        return _socialiqa(rows, uri)
    if "Options 1" in first:
        return _motivebench(rows, uri)
    return _generic(rows, uri)


def load_benchmarks(patterns: Sequence[str], max_items: int) -> Dict[str, List[MCItem]]:
    """{family: items} from files / folders / globs, capped per family (round-robin over files)."""
    per_file: Dict[str, List[List[MCItem]]] = {}
    for uri in storage.expand(patterns):
        if not uri.endswith((".json", ".jsonl")):
            continue
        try:
            items = load_benchmark_file(uri)
        except (ValueError, UnicodeDecodeError) as exc:
            log.warning("benchmarks: could not parse %s: %s", uri, exc)
            continue
        if items:
            per_file.setdefault(items[0].benchmark, []).append(items)
    out: Dict[str, List[MCItem]] = {}
    for family, files in sorted(per_file.items()):
        queues = [list(reversed(f)) for f in files]
        picked: List[MCItem] = []
        while len(picked) < max_items and any(queues):
            for q in queues:
                if q and len(picked) < max_items:
                    picked.append(q.pop())
        out[family] = picked
    return out


def item_messages(item: MCItem) -> List[Dict[str, str]]:
    options = "\n".join(f"{LETTERS[k]}) {o}" for k, o in enumerate(item.options))
    body = f"{item.context.strip()}\n\n" if item.context.strip() else ""
    body += f"Question: {item.question.strip()}\n{options}\n\nAnswer with the letter only."
    return [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": body}]


@torch.no_grad()
def choose_letters(model, tokenizer, items: Sequence[MCItem], max_length: int, batch_size: int = 8) -> List[Optional[int]]:
    """The option each item's answer starts with most probably (None if letters are not single tokens)."""
    letter_ids = []
    for letter in LETTERS[: max((len(i.options) for i in items), default=0)]:
        ids = tokenizer.encode(letter, add_special_tokens=False)
        letter_ids.append(ids[0] if len(ids) == 1 else None)
    prompts = []
    for item in items:
        ids = tokenizer.apply_chat_template(item_messages(item), tokenize=True, return_dict=True, add_generation_prompt=True)["input_ids"]
        prompts.append(list(ids)[-max_length:])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    picks: List[Optional[int]] = [None] * len(items)
    order = sorted(range(len(items)), key=lambda i: len(prompts[i]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            ids[row, : len(prompts[i])] = torch.tensor(prompts[i])
            attention[row, : len(prompts[i])] = 1
        logits = model(input_ids=ids, attention_mask=attention).logits
        for row, i in enumerate(chunk):
            last = logits[row, len(prompts[i]) - 1].float()
            candidates = letter_ids[: len(items[i].options)]
            if any(c is None for c in candidates):
                continue
            scores = [float(last[c]) for c in candidates]
            picks[i] = max(range(len(scores)), key=scores.__getitem__)
    return picks
