"""Per-user example building: the function Ray Data maps over each user's group of rows.

Input: one user's curated rows (one per timeline chunk). Output: one row per candidate
example, kept or not: the example columns of :data:`EXAMPLE_SCHEMA` plus ``n_tokens``
(chat-template length under the base tokenizer) and ``reason``/``detail`` (empty when the
example is kept). The stage splits the kept rows by ``split`` and quarantines the rest.
"""

from __future__ import annotations

import functools
import json
import logging
from typing import Any, Dict, List, Sequence

import pyarrow as pa

from .common import BuildContext, Candidate, QCItem, Record, UserTimeline, parse_payload, split_for_user
from .registry import get_builder

log = logging.getLogger("humanllm")

MESSAGES_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))

EXAMPLE_SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("task", pa.string()),
        ("variant", pa.string()),
        ("user_id", pa.string()),
        ("platform", pa.string()),
        ("split", pa.string()),
        ("messages", MESSAGES_TYPE),
        ("meta", pa.string()),
    ]
)

CANDIDATE_SCHEMA = pa.schema(
    list(EXAMPLE_SCHEMA)
    + [
        ("n_tokens", pa.int64()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        # per-post examples: what their post's tag says (common.POST_*), "" for the others
        ("post_tag", pa.string()),
    ]
)

REASON_TARGET_IN_CONTEXT = "target_in_context"
REASON_EMPTY_TARGET = "empty_target"


def _record(raw: Dict[str, Any], platform: str) -> Record:
    extra = raw.get("extra") or "{}"
    try:
        extra_obj = json.loads(extra) if isinstance(extra, str) else dict(extra)
    except (TypeError, ValueError):
        extra_obj = {}
    rating = raw.get("rating")
    return Record(
        record_id=str(raw.get("record_id") or ""),
        timestamp=int(raw.get("timestamp") or 0),
        kind=str(raw.get("kind") or ""),
        platform=platform,
        title=str(raw.get("title") or ""),
        text=str(raw.get("text") or ""),
        context=str(raw.get("context") or ""),
        item_id=str(raw.get("item_id") or ""),
        rating=float(rating) if rating is not None else None,
        extra=extra_obj if isinstance(extra_obj, dict) else {},
    )


def user_timeline(rows: Sequence[Dict[str, Any]], qc_items: Sequence[Dict[str, Any]]) -> UserTimeline:
    """Merge a user's chunk rows into one time-ordered timeline (records deduplicated by id)."""
    records: Dict[str, Record] = {}
    platforms: Dict[str, int] = {}
    for row in rows:
        platform = str(row.get("platform") or "")
        platforms[platform] = platforms.get(platform, 0) + 1
        for raw in row.get("records") or []:
            rec = _record(raw, platform)
            records.setdefault(rec.record_id, rec)
    items = [
        QCItem(
            item_id=str(q.get("item_id") or ""),
            product=str(q.get("product") or ""),
            payload=parse_payload(q.get("payload")),
            source_record_ids=tuple(q.get("source_record_ids") or ()),
        )
        for q in qc_items
    ]
    return UserTimeline(
        user_id=str(rows[0]["user_id"]),
        platform=max(sorted(platforms), key=platforms.get) if platforms else "",
        records=sorted(records.values(), key=lambda r: (r.timestamp, r.record_id)),
        items=items,
    )


@functools.lru_cache(maxsize=2)
def _tokenizer(model_dir: str):
    from ..model import load_tokenizer

    return load_tokenizer(model_dir)


def count_chat_tokens(model_dir: str, messages: List[Dict[str, str]]) -> int:
    enc = _tokenizer(model_dir).apply_chat_template(messages, tokenize=True, return_dict=True)
    return len(enc["input_ids"])


def candidate_row(cand: Candidate, split: str, model_dir: str) -> Dict[str, Any]:
    """A Candidate as an output row, with the leakage / completeness verdict."""
    reason, detail = "", ""
    if cand.rejected:
        reason, detail = cand.rejected, cand.rejected_detail
    elif not cand.target.strip():
        reason = REASON_EMPTY_TARGET
    elif cand.leaks():
        reason, detail = REASON_TARGET_IN_CONTEXT, "the target text appears in its own prompt"
    messages = cand.messages()
    return {
        "example_id": cand.example_id,
        "task": cand.task,
        "variant": cand.variant,
        "user_id": cand.user_id,
        "platform": cand.platform,
        "split": split,
        "messages": messages,
        "meta": json.dumps(cand.meta, ensure_ascii=False, sort_keys=True),
        "n_tokens": count_chat_tokens(model_dir, messages) if not reason else 0,
        "reason": reason,
        "detail": detail,
        "post_tag": cand.post_tag,
    }


def build_user_examples(
    group: pa.Table,
    *,
    task_names: List[str],
    ctx: BuildContext,
    qc_by_user: Dict[str, List[Dict[str, Any]]],
    model_dir: str,
    val_fraction: float,
    test_fraction: float,
) -> pa.Table:
    """map_groups body: every configured task's candidates for one user."""
    rows = group.to_pylist()
    if not rows:
        return CANDIDATE_SCHEMA.empty_table()
    user = user_timeline(rows, qc_by_user.get(str(rows[0]["user_id"]), []))
    split = split_for_user(user.user_id, ctx.seed, val_fraction, test_fraction)
    out = []
    for name in task_names:
        for cand in get_builder(name)(user, ctx):
            out.append(candidate_row(cand, split, model_dir))
    return pa.Table.from_pylist(out, schema=CANDIDATE_SCHEMA)
