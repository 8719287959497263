"""Scoring a causal LM on chat examples: answer-token NLL and candidate log-likelihoods.

Only the assistant's tokens count (the same tokens the SFT loss trained on); the
system/user prompt is context. The mask comes from the chat template's generation
markers, or — for templates without them — from the length of the prompt rendered with
``add_generation_prompt``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch


@dataclass
class Encoded:
    input_ids: List[int]
    target_mask: List[int]  # 1 where the token is part of an assistant answer

    @property
    def num_targets(self) -> int:
        # The first token is never predicted (nothing precedes it).
        return int(sum(self.target_mask[1:]))


def encode_chat(tokenizer, messages: Sequence[Dict[str, str]], max_length: int) -> Encoded:
    """Tokenize a conversation with its answer mask; keep the *end* when too long (the answer)."""
    messages = [{"role": m["role"], "content": m["content"]} for m in messages]
    enc = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids = list(enc["input_ids"])
    mask = list(enc.get("assistant_masks") or [0] * len(ids))
    if not any(mask) and messages and messages[-1]["role"] == "assistant":
        prompt = tokenizer.apply_chat_template(
            messages[:-1], tokenize=True, return_dict=True, add_generation_prompt=True
        )["input_ids"]
        mask = [0] * len(prompt) + [1] * (len(ids) - len(prompt))
    if len(ids) > max_length:
        ids, mask = ids[-max_length:], mask[-max_length:]
    return Encoded(ids, mask)


@torch.no_grad()
def answer_nll(model, encoded: Sequence[Encoded], pad_id: int, batch_size: int = 8) -> List[Tuple[float, int]]:
    """(summed NLL over answer tokens, number of answer tokens) per example, in input order."""
    results: List[Optional[Tuple[float, int]]] = [None] * len(encoded)
    # Similar lengths together: less padding, fewer wasted FLOPs.
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(encoded[i].input_ids) for i in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        target = torch.zeros((len(chunk), width), dtype=torch.bool)
        for row, i in enumerate(chunk):
            n = len(encoded[i].input_ids)
            ids[row, :n] = torch.tensor(encoded[i].input_ids)
            attention[row, :n] = 1
            target[row, :n] = torch.tensor(encoded[i].target_mask, dtype=torch.bool)
        ids, attention = ids.to(device), attention.to(device)
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1].float()
        labels = ids[:, 1:]
        token_nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none"
        ).reshape(labels.shape)
        mask = target[:, 1:].to(device) & attention[:, 1:].bool()
        sums = (token_nll * mask).sum(dim=1)
        counts = mask.sum(dim=1)
        for row, i in enumerate(chunk):
            results[i] = (float(sums[row]), int(counts[row]))
    return results  # type: ignore[return-value]


# --------------------------------------------------------------------------- item selection

_OPTION = re.compile(r"^\s*\(?([A-Z])[\)\.:]\s+(.*\S)\s*$")


def _candidate_text(candidate: Any) -> str:
    if isinstance(candidate, dict):
        for key in ("title", "text", "name", "item", "content"):
            if candidate.get(key):
                return str(candidate[key])
        return json.dumps(candidate, sort_keys=True)
    return str(candidate)


def parse_meta(meta: Any) -> Dict[str, Any]:
    if isinstance(meta, dict):
        return meta
    if not meta:
        return {}
    try:
        value = json.loads(meta)
    except (TypeError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def candidate_answers(messages: Sequence[Dict[str, str]], meta: Any) -> Optional[Tuple[List[str], int]]:
    """The assistant answers to compare for an item-selection example, and the right one's index.

    Each alternative is the answer the model would give for that candidate, in the gold
    answer's own format: when the prompt lists lettered options ("B) title") and the gold
    answer is its option line, the alternatives are the other option lines exactly as the
    prompt shows them; otherwise the gold item's text inside the gold answer is replaced by
    each candidate's. None when the example does not say which candidate is right.
    """
    meta = parse_meta(meta)
    candidates = meta.get("candidates")
    answer = meta.get("answer_index", meta.get("answer"))
    if not isinstance(candidates, list) or len(candidates) < 2:
        return None
    if isinstance(answer, str) and not answer.isdigit():
        letter = answer.strip().strip("()").upper()[:1]
        answer = ord(letter) - ord("A") if letter else None
    if answer is None or not 0 <= int(answer) < len(candidates):
        return None
    answer = int(answer)
    gold = next((m["content"] for m in reversed(messages) if m["role"] == "assistant"), None)
    prompt = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    if gold is None:
        return None

    letters = [chr(ord("A") + k) for k in range(len(candidates))]
    options: Dict[str, str] = {}
    for line in prompt.splitlines():
        match = _OPTION.match(line)
        if match and match.group(1) in letters and match.group(1) not in options:
            options[match.group(1)] = line.strip()
    if len(options) == len(candidates) and gold.strip() == options[letters[answer]]:
        return [options[letter] for letter in letters], answer

    texts = [_candidate_text(c) for c in candidates]
    if texts[answer] and texts[answer] in gold:
        return [gold.replace(texts[answer], t) for t in texts], answer
    gold_option = _OPTION.match(gold)
    if gold_option is None and gold.strip().strip("()").upper() == letters[answer]:
        return [gold.replace(letters[answer], letter) for letter in letters], answer
    return None


def with_answer(messages: Sequence[Dict[str, str]], answer: str) -> List[Dict[str, str]]:
    """The conversation with its last assistant turn replaced by ``answer``."""
    out = [dict(m) for m in messages]
    for m in reversed(out):
        if m["role"] == "assistant":
            m["content"] = answer
            break
    return out


# --------------------------------------------------------------------------- generation


@torch.no_grad()
def greedy_generate(
    model,
    tokenizer,
    prompts: Sequence[Sequence[Dict[str, str]]],
    max_new_tokens: int,
    *,
    batch_size: int = 8,
    max_length: int = 1024,
) -> List[str]:
    """Greedy continuations of chat prompts (each ends before the assistant turn), batched with
    left padding. A prompt longer than ``max_length - max_new_tokens`` keeps its end."""
    if not prompts:
        return []
    keep = max(8, int(max_length) - int(max_new_tokens))
    encoded = []
    for messages in prompts:
        msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
        ids = tokenizer.apply_chat_template(msgs, tokenize=True, return_dict=True, add_generation_prompt=True)["input_ids"]
        encoded.append(list(ids)[-keep:])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.append(tokenizer.eos_token_id)
    device = next(model.parameters()).device
    out: List[str] = [""] * len(prompts)
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    for start in range(0, len(order), max(1, batch_size)):
        chunk = order[start : start + batch_size]
        width = max(len(encoded[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        attention = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            n = len(encoded[i])
            ids[row, width - n :] = torch.tensor(encoded[i])
            attention[row, width - n :] = 1
        generated = model.generate(
            input_ids=ids.to(device),
            attention_mask=attention.to(device),
            max_new_tokens=int(max_new_tokens),
            do_sample=False,
            pad_token_id=pad,
            eos_token_id=eos or None,
        )
        texts = tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
        for i, text in zip(chunk, texts):
            out[i] = text.strip()
    return out
