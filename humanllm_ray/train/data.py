"""Training data on the Ray Data side: tokenize with the chat template, mask, truncate, pack;
and on the worker side: pad a micro-batch into tensors.

Labels are -100 everywhere except the assistant turn (the chat template's
``{% generation %}`` span, returned as ``assistant_masks``), so the loss is the model's
behaviour given the person and the situation, never the prompt.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import shutil
from typing import Any, Dict, List, Optional

import numpy as np
import pyarrow as pa

IGNORE_INDEX = -100
REASON_TOO_LONG = "too_long"  # truncation to max_length left no assistant token
REASON_NO_TARGET = "no_target"  # the chat template marked no assistant token at all

TOKENIZED_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("task", pa.string()),
        ("platform", pa.string()),
        ("user_id", pa.string()),
        ("input_ids", pa.list_(pa.int32())),
        ("labels", pa.list_(pa.int32())),
        ("n_tokens", pa.int64()),  # after truncation
        ("n_target_tokens", pa.int64()),  # assistant tokens left after truncation
        ("truncated", pa.bool_()),
        ("reason", pa.string()),  # "" when trainable
    ]
)

PACKED_SCHEMA = pa.schema(
    [
        ("input_ids", pa.list_(pa.int32())),
        ("labels", pa.list_(pa.int32())),
        ("position_ids", pa.list_(pa.int32())),
        ("n_examples", pa.int64()),
    ]
)


@functools.lru_cache(maxsize=2)
def _tokenizer(model_dir: str):
    from ..model import load_tokenizer

    return load_tokenizer(model_dir)


def tokenizer_files(model_dir: str) -> Dict[str, bytes]:
    """The tokenizer of ``model_dir`` as {file name: bytes}, as ``save_pretrained`` writes it.

    The driver ships these with the tokenize tasks: on a multi-node cluster without a shared
    file system, ``model_dir`` (a path on the driver's disk) does not exist where a task
    runs. A tokenizer is a few MB, sent once per task, against the model's gigabytes."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hl-tok-") as tmp:
        _tokenizer(model_dir).save_pretrained(tmp)
        out = {}
        for name in sorted(os.listdir(tmp)):
            with open(os.path.join(tmp, name), "rb") as fh:
                out[name] = fh.read()
    return out


def _local_tokenizer_dir(model_dir: str, files: Optional[Dict[str, bytes]]) -> str:
    """``model_dir`` where it exists on this node; else the shipped files, written once per
    content into the node's cache (atomically: concurrent tasks may race to write it)."""
    if files is None or os.path.exists(os.path.join(model_dir, "tokenizer_config.json")):
        return model_dir
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    final = os.path.join(os.path.expanduser("~/.cache/humanllm_ray/tokenizers"), digest.hexdigest()[:16])
    if not os.path.exists(os.path.join(final, "tokenizer_config.json")):
        os.makedirs(os.path.dirname(final), exist_ok=True)
        tmp = f"{final}.tmp-{os.getpid()}"
        os.makedirs(tmp, exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(tmp, name), "wb") as fh:
                fh.write(data)
        try:
            os.replace(tmp, final)
        except OSError:  # another task got there first: its copy is identical
            shutil.rmtree(tmp, ignore_errors=True)
    return final


TRIM_MARKER = "[...] "
_TRIM_ROUNDS = 4  # re-tokenizations allowed while shortening a prompt
_TRIM_SLACK_TOKENS = 8  # cut a little more than the estimate: BPE merges shift at the cut


def _encode(tokenizer, messages: List[Dict[str, str]]):
    enc = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    return list(enc["input_ids"]), list(enc["assistant_masks"])


def _trim_prompt(tokenizer, messages: List[Dict[str, str]], max_length: int):
    """Shorten the last user turn from its start until the chat fits max_length.

    Task prompts put the oldest context first (history) and the instruction last, and the
    target comes after them, so cutting the prompt's head loses the least; plain right
    truncation would cut the target itself. Returns (messages, ids, mask).
    """
    ids, mask = _encode(tokenizer, messages)
    user_turns = [i for i, m in enumerate(messages) if m["role"] == "user"]
    if not user_turns:
        return messages, ids, mask
    turn = user_turns[-1]
    content = messages[turn]["content"]
    for _ in range(_TRIM_ROUNDS):
        excess = len(ids) - max_length
        if excess <= 0 or not content:
            break
        n_content_tokens = max(1, len(tokenizer(content, add_special_tokens=False)["input_ids"]))
        cut = math.ceil(len(content) * (excess + _TRIM_SLACK_TOKENS) / n_content_tokens)
        content = content[cut:]
        messages = [dict(m) for m in messages]
        messages[turn]["content"] = TRIM_MARKER + content if content else ""
        ids, mask = _encode(tokenizer, messages)
    return messages, ids, mask


def tokenize_chat(tokenizer, messages: List[Dict[str, str]], max_length: int) -> Dict[str, Any]:
    """input_ids and labels of one chat example, at most max_length tokens.

    Too long: first the prompt is shortened from its head (see :func:`_trim_prompt`), then
    whatever still does not fit is cut from the right; an example left with no assistant
    token is marked ``too_long``.
    """
    ids, mask = _encode(tokenizer, messages)
    had_target = any(mask)
    truncated = len(ids) > max_length
    if truncated:
        _, ids, mask = _trim_prompt(tokenizer, messages, max_length)
    ids, mask = ids[:max_length], mask[:max_length]
    labels = [tok if m else IGNORE_INDEX for tok, m in zip(ids, mask)]
    n_target = int(sum(mask))
    reason = "" if n_target else (REASON_TOO_LONG if had_target else REASON_NO_TARGET)
    return {"input_ids": ids, "labels": labels, "n_target_tokens": n_target, "truncated": truncated, "reason": reason}


def tokenize_batch(
    batch: pa.Table, *, model_dir: str, max_length: int, tokenizer_files: Optional[Dict[str, bytes]] = None
) -> pa.Table:
    """Ray Data map_batches body over task rows (example_id, task, platform, user_id, messages).

    ``tokenizer_files`` (from :func:`tokenizer_files`) stand in for ``model_dir`` on a node
    that does not have it."""
    tokenizer = _tokenizer(_local_tokenizer_dir(model_dir, tokenizer_files))
    out = []
    for row in batch.select(["example_id", "task", "platform", "user_id", "messages"]).to_pylist():
        enc = tokenize_chat(tokenizer, row["messages"], max_length)
        out.append(
            {
                "example_id": row["example_id"],
                "task": row["task"],
                "platform": row["platform"],
                "user_id": row["user_id"],
                "n_tokens": len(enc["input_ids"]),
                **enc,
            }
        )
    return pa.Table.from_pylist(out, schema=TOKENIZED_SCHEMA)


def pack_batch(batch: pa.Table, *, max_length: int) -> pa.Table:
    """Greedy first-fit packing of tokenized examples into rows of at most max_length tokens.

    Each example keeps its own position ids (restarting at 0); the worker passes them with no
    attention mask, which transformers turns into a block-diagonal causal mask, so packed
    examples do not attend to each other. Packing happens within a Ray Data batch, so it
    streams; a larger batch packs tighter.
    """
    bins: List[Dict[str, list]] = []
    for ids, labels in zip(batch["input_ids"].to_pylist(), batch["labels"].to_pylist()):
        for b in bins:
            if len(b["input_ids"]) + len(ids) <= max_length:
                break
        else:
            b = {"input_ids": [], "labels": [], "position_ids": [], "n_examples": 0}
            bins.append(b)
        b["input_ids"] += ids
        b["labels"] += labels
        b["position_ids"] += list(range(len(ids)))
        b["n_examples"] += 1
    return pa.Table.from_pylist(bins, schema=PACKED_SCHEMA)


def collate(batch: Dict[str, np.ndarray], pad_token_id: int) -> Dict[str, Any]:
    """Pad a micro-batch (numpy dict of ragged int arrays) into torch tensors.

    Unpacked rows get an attention mask; packed rows get position ids instead (padding is a
    segment of its own, restarting at 0, with labels -100).
    """
    import torch

    rows_ids = [np.asarray(x, dtype=np.int64) for x in batch["input_ids"]]
    rows_labels = [np.asarray(x, dtype=np.int64) for x in batch["labels"]]
    width = max(len(x) for x in rows_ids)
    n = len(rows_ids)
    input_ids = np.full((n, width), pad_token_id, dtype=np.int64)
    labels = np.full((n, width), IGNORE_INDEX, dtype=np.int64)
    for i, (ids, lab) in enumerate(zip(rows_ids, rows_labels)):
        input_ids[i, : len(ids)] = ids
        labels[i, : len(lab)] = lab
    out: Dict[str, Any] = {"input_ids": torch.from_numpy(input_ids), "labels": torch.from_numpy(labels)}
    if "position_ids" in batch:
        positions = np.zeros((n, width), dtype=np.int64)
        for i, pos in enumerate(batch["position_ids"]):
            pos = np.asarray(pos, dtype=np.int64)
            positions[i, : len(pos)] = pos
            positions[i, len(pos) :] = np.arange(width - len(pos))
        out["position_ids"] = torch.from_numpy(positions)
        out["n_tokens"] = int(sum(len(x) for x in rows_ids))
    else:
        attention = np.zeros((n, width), dtype=np.int64)
        for i, ids in enumerate(rows_ids):
            attention[i, : len(ids)] = 1
        out["attention_mask"] = torch.from_numpy(attention)
        out["n_tokens"] = int(attention.sum())
    return out
