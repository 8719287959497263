"""Evaluate stage: held-out loss / perplexity per task and item-selection accuracy for each
model in ``eval.compare`` (base, merged, sft, or a model URI), with bootstrap CIs; writes
``{run.root}/eval/report.json``, plots, ``report.html`` and per-example scores.

    base    model.base (ensure_base_model)
    merged  the published model (``{publish.uri}/{name}/latest``, verified by publish.load),
            else ``{run.root}/merged/model``
    sft     ``{run.root}/train/model`` when the train stage left one (skipped otherwise)

Examples come from the test split (users never seen in training), up to
``eval.max_examples``, taken round-robin across tasks so every task is represented.
Stage rows are examples: scored, or quarantined when a model cannot score them.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import storage
from ..config import HumanLLMConfig
from ..runtime import RunPaths
from ..stage import StageDir, StageResult, quarantine_row, read_table, run_stage, write_table
from .metrics import accuracy_summary, loss_summary, paired_loss_delta
from .scoring import answer_nll, candidate_answers, encode_chat, with_answer
from .simulation import simulate, simulation_messages

__all__ = ["run", "simulate", "simulation_messages", "resolve_eval_models", "select_examples", "EvalModel"]

log = logging.getLogger("humanllm")

REFERENCE = "base"  # every other model is compared with this one


@dataclass
class EvalModel:
    label: str
    local_dir: str
    source: str  # where it came from, for the report
    identity: Any  # what changes when the weights change (manifest sha or file stamps)


def resolve_eval_models(cfg: HumanLLMConfig, paths: Optional[RunPaths] = None) -> List[EvalModel]:
    """The models named in eval.compare as local folders; missing optional ones are skipped."""
    from .. import publish
    from ..merge.sources import source_fingerprint
    from ..model import ensure_base_model, resolve_model_dir

    paths = paths or RunPaths.from_config(cfg)
    out: List[EvalModel] = []
    for label in cfg.eval.compare:
        if label == "base":
            local = ensure_base_model(cfg)
            out.append(EvalModel(label, local, f"model.base={publish.redact(cfg.model.base)}", source_fingerprint(local)))
        elif label == "merged":
            name_uri = publish.published_name_uri(cfg)
            if publish.is_published(name_uri):
                version_uri, _manifest, raw = publish.resolve_version(name_uri)
                local = publish.load(version_uri, _published_cache(cfg))
                out.append(EvalModel(label, local, f"published {publish.redact(version_uri)}", _sha(raw)))
            else:
                model_uri = publish.model_folder(cfg.merge.output or paths.merged)
                local = resolve_model_dir(model_uri, cfg.model.cache_dir)
                out.append(EvalModel(label, local, publish.redact(model_uri), source_fingerprint(model_uri)))
        elif label == "sft":
            model_uri = storage.join(paths.train, "model")
            if not storage.exists(storage.join(model_uri, "config.json")):
                log.warning("evaluate: no trained model at %s; skipping 'sft'", model_uri)
                continue
            out.append(EvalModel(label, resolve_model_dir(model_uri, cfg.model.cache_dir), model_uri, source_fingerprint(model_uri)))
        elif publish.is_published(label):
            version_uri, _manifest, raw = publish.resolve_version(label)
            local = publish.load(version_uri, _published_cache(cfg))
            out.append(EvalModel(label, local, f"published {publish.redact(version_uri)}", _sha(raw)))
        else:
            local = resolve_model_dir(label, cfg.model.cache_dir)
            out.append(EvalModel(label, local, publish.redact(label), source_fingerprint(label)))
    if not out:
        raise ValueError("eval.compare names no model that exists")
    return out


def _published_cache(cfg: HumanLLMConfig) -> str:
    import os

    return os.path.join(os.path.expanduser(cfg.model.cache_dir), "published")


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def select_examples(rows: Sequence[Dict[str, Any]], max_examples: int) -> List[Dict[str, Any]]:
    """Up to max_examples rows, round-robin over tasks (each task in example_id order), so a
    cap never evaluates only the first task."""
    by_task: Dict[str, List[Dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: (str(r.get("task")), str(r.get("example_id")))):
        by_task.setdefault(str(row.get("task")), []).append(row)
    queues = [list(reversed(v)) for _k, v in sorted(by_task.items())]
    out: List[Dict[str, Any]] = []
    while len(out) < max_examples and any(queues):
        for q in queues:
            if q and len(out) < max_examples:
                out.append(q.pop())
    return out


def _test_split_uri(uri: str) -> str:
    nested = storage.join(uri, "test")
    return nested if storage.ls_files(nested, suffix=".parquet") else uri


@dataclass
class _ModelScores:
    nll: List[float]
    tokens: List[int]
    correct: Dict[int, bool]  # example position -> item-selection hit
    choices: Dict[int, int]
    unscorable: Dict[int, str]  # example position -> reason
    benchmark_hits: Dict[str, List[Tuple[bool, int]]]  # family -> (correct, options) per scorable item


def _score_model(
    model_info: EvalModel, examples: Sequence[Dict[str, Any]], cfg: HumanLLMConfig, benchmarks: Dict[str, list]
) -> _ModelScores:
    from ..model import load_model, load_tokenizer
    from .benchmarks import choose_letters

    tokenizer = load_tokenizer(model_info.local_dir)
    model = load_model(model_info.local_dir, cfg.model.dtype).eval()
    max_length, batch = cfg.eval.max_length, cfg.eval.batch_size
    encoded, unscorable = [], {}
    for i, ex in enumerate(examples):
        try:
            enc = encode_chat(tokenizer, ex["messages"], max_length)
        except Exception as exc:  # malformed messages: quarantined, not fatal
            unscorable[i] = f"unencodable: {exc}"
            enc = None
        if enc is not None and enc.num_targets == 0:
            unscorable[i] = "no_answer_tokens"
        encoded.append(enc)
    scorable = [i for i in range(len(examples)) if i not in unscorable]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores = answer_nll(model, [encoded[i] for i in scorable], pad_id, batch)
    nll, tokens = [0.0] * len(examples), [0] * len(examples)
    for i, (s, n) in zip(scorable, scores):
        nll[i], tokens[i] = s, n

    # Item selection: the answer log-likelihood of each candidate; the most likely is the pick.
    correct: Dict[int, bool] = {}
    choices: Dict[int, int] = {}
    for i in scorable:
        ex = examples[i]
        if ex.get("task") != "item_selection":
            continue
        parsed = candidate_answers(ex["messages"], ex.get("meta"))
        if parsed is None:
            continue
        answers, right = parsed
        alts = [encode_chat(tokenizer, with_answer(ex["messages"], a), max_length) for a in answers]
        loglik = [-s for s, _n in answer_nll(model, alts, pad_id, batch)]
        correct[i] = max(range(len(loglik)), key=loglik.__getitem__) == right
        choices[i] = len(answers)

    benchmark_hits: Dict[str, List[Tuple[bool, int]]] = {}
    for family, items in benchmarks.items():
        picks = choose_letters(model, tokenizer, items, max_length, batch)
        benchmark_hits[family] = [(p == item.answer, len(item.options)) for p, item in zip(picks, items) if p is not None]
    log.info("evaluate: scored %s on %d examples", model_info.label, len(scorable))
    del model
    return _ModelScores(nll, tokens, correct, choices, unscorable, benchmark_hits)


def run(cfg: HumanLLMConfig, input_uri: Optional[str] = None, output_uri: Optional[str] = None) -> dict:
    """Run the evaluate stage. ``input_uri``: the tasks stage folder (or a split folder);
    default ``{run.root}/tasks`` (its ``test/`` split is used)."""
    from . import report as report_mod

    storage.configure(cfg.s3)
    paths = RunPaths.from_config(cfg)
    out_uri = storage.normalize(output_uri or paths.eval)
    split_uri = _test_split_uri(storage.normalize(input_uri or paths.tasks))
    rows = read_table(split_uri).to_pylist()
    if not rows:
        raise FileNotFoundError(f"evaluate: no test examples at {split_uri} (run build-tasks first)")
    examples = select_examples(rows, cfg.eval.max_examples)
    models = resolve_eval_models(cfg, paths)
    from .benchmarks import load_benchmarks

    benchmarks = load_benchmarks(cfg.eval.benchmarks, cfg.eval.benchmark_max_items) if cfg.eval.benchmarks else {}

    fingerprint = {
        "eval": asdict(cfg.eval),
        "dtype": cfg.model.dtype,
        "seed": cfg.run.seed,
        "models": {m.label: m.identity for m in models},
        "examples": [str(e.get("example_id")) for e in examples],
        "benchmarks": {family: [i.item_id for i in items] for family, items in benchmarks.items()},
    }
    upstream = [u for u in (paths.tasks, paths.merged, paths.publish, paths.train) if storage.exists(u)]

    def body(stage_dir: StageDir) -> StageResult:
        per_model = {m.label: _score_model(m, examples, cfg, benchmarks) for m in models}
        bad: Dict[int, str] = {}
        for scores in per_model.values():
            for i, reason in scores.unscorable.items():
                bad.setdefault(i, reason)
        quarantined = [
            quarantine_row(
                "evaluate",
                reason.split(":", 1)[0],
                detail=reason,
                platform=str(examples[i].get("platform") or ""),
                record_id=str(examples[i].get("example_id") or ""),
                user_id=str(examples[i].get("user_id") or ""),
                raw={"task": examples[i].get("task"), "messages": examples[i].get("messages")},
            )
            for i, reason in sorted(bad.items())
        ]
        stage_dir.write_quarantine(quarantined)
        kept = [i for i in range(len(examples)) if i not in bad]

        evaluation = _summarize(cfg, models, per_model, examples, kept, benchmarks)
        _write_scores(stage_dir, models, per_model, examples, kept)
        written = report_mod.write_outputs(stage_dir, evaluation, paths)
        return StageResult(
            rows_in=len(examples),
            rows_out=len(kept),
            rows_quarantined=len(quarantined),
            by_reason=_count_reasons(quarantined),
            by_platform=_by_platform(examples, bad),
            extra={
                "models": {m.label: m.source for m in models},
                "headline": evaluation["headline"]["text"],
                "benchmark_items": {family: len(items) for family, items in benchmarks.items()},
                **written,
            },
        )

    return run_stage("evaluate", out_uri, body, fingerprint=fingerprint, inputs=upstream)


def _count_reasons(rows: Sequence[Dict[str, Any]]) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for r in rows:
        out[r["reason"]] = out.get(r["reason"], 0) + 1
    return out


def _by_platform(examples: Sequence[Dict[str, Any]], bad: Dict[int, str]) -> Dict[str, Dict[str, int]]:
    out: Dict[str, Dict[str, int]] = {}
    for i, ex in enumerate(examples):
        counts = out.setdefault(str(ex.get("platform") or "unknown"), {"in": 0, "out": 0, "quarantined": 0})
        counts["in"] += 1
        counts["quarantined" if i in bad else "out"] += 1
    return out


def _summarize(cfg, models, per_model, examples, kept, benchmarks) -> Dict[str, Any]:
    ev = cfg.eval
    boot = dict(samples=ev.bootstrap_samples, confidence=ev.confidence, seed=cfg.run.seed)
    tasks = sorted({str(examples[i].get("task")) for i in kept})
    summary: Dict[str, Any] = {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "examples": len(kept),
        "tasks": {t: sum(1 for i in kept if examples[i].get("task") == t) for t in tasks},
        "confidence": ev.confidence,
        "bootstrap_samples": ev.bootstrap_samples,
        "models": {},
        "comparisons": {},
    }
    for m in models:
        s = per_model[m.label]
        entry: Dict[str, Any] = {
            "source": m.source,
            "overall": loss_summary([s.nll[i] for i in kept], [s.tokens[i] for i in kept], **boot),
            "by_task": {},
            "item_selection": None,
        }
        for t in tasks:
            idx = [i for i in kept if examples[i].get("task") == t]
            entry["by_task"][t] = loss_summary([s.nll[i] for i in idx], [s.tokens[i] for i in idx], **boot)
        hits = [i for i in kept if i in s.correct]
        if hits:
            entry["item_selection"] = accuracy_summary([s.correct[i] for i in hits], [s.choices[i] for i in hits], **boot)
        summary["models"][m.label] = entry

    labels = [m.label for m in models]
    if REFERENCE in labels:
        ref = per_model[REFERENCE]
        for label in labels:
            if label == REFERENCE:
                continue
            s = per_model[label]
            summary["comparisons"][f"{label}_vs_{REFERENCE}"] = {
                "model": label,
                "reference": REFERENCE,
                **paired_loss_delta(
                    [s.nll[i] for i in kept], [s.tokens[i] for i in kept],
                    [ref.nll[i] for i in kept], [ref.tokens[i] for i in kept],
                    **boot,
                ),
            }
    summary["benchmarks"] = {}
    for family, items in benchmarks.items():
        entry = {"items": len(items), "models": {}}
        for m in models:
            hits = per_model[m.label].benchmark_hits.get(family, [])
            entry["models"][m.label] = accuracy_summary([h for h, _n in hits], [n for _h, n in hits], **boot)
        summary["benchmarks"][family] = entry
    summary["headline"] = headline(summary)
    return summary


def headline(summary: Dict[str, Any]) -> Dict[str, Any]:
    """One sentence answering: does the merged model beat the base on held-out loss?"""
    comparisons = summary.get("comparisons") or {}
    key = "merged_vs_base" if "merged_vs_base" in comparisons else next(iter(comparisons), None)
    if key is None:
        labels = ", ".join(summary.get("models") or {})
        return {"verdict": "none", "text": f"Evaluated {labels} on {summary.get('examples', 0)} held-out examples (no base model to compare with)."}
    c = comparisons[key]
    models = summary["models"]
    a, b = c["model"], c["reference"]
    la, lb = models[a]["overall"]["loss"], models[b]["overall"]["loss"]
    if c["delta"] is None:
        return {"verdict": "none", "text": "No answer tokens were scored."}
    pct = int(round(summary.get("confidence", 0.95) * 100))
    detail = f"held-out loss {la:.3f} vs {lb:.3f} (Δ {c['delta']:+.3f}, {pct}% CI [{c['delta_ci'][0]:+.3f}, {c['delta_ci'][1]:+.3f}], {c['examples']} examples)"
    if c["verdict"] == "lower":
        text = f"Yes — the {a} model beats the {b} model: {detail}."
    elif c["verdict"] == "higher":
        text = f"No — the {a} model is worse than the {b} model: {detail}."
    else:
        text = f"Not distinguishable — {a} vs {b}: {detail}."
    return {"verdict": c["verdict"], "text": text, "comparison": key}


def _write_scores(stage_dir: StageDir, models, per_model, examples, kept) -> None:
    import pyarrow as pa

    rows = []
    for m in models:
        s = per_model[m.label]
        for i in kept:
            ex = examples[i]
            rows.append(
                {
                    "example_id": str(ex.get("example_id")),
                    "task": str(ex.get("task")),
                    "variant": str(ex.get("variant") or ""),
                    "platform": str(ex.get("platform") or ""),
                    "user_id": str(ex.get("user_id") or ""),
                    "model": m.label,
                    "nll": s.nll[i],
                    "tokens": s.tokens[i],
                    "correct": s.correct.get(i),
                    "num_choices": s.choices.get(i),
                }
            )
    schema = pa.schema(
        [
            ("example_id", pa.string()), ("task", pa.string()), ("variant", pa.string()), ("platform", pa.string()),
            ("user_id", pa.string()), ("model", pa.string()), ("nll", pa.float64()), ("tokens", pa.int64()),
            ("correct", pa.bool_()), ("num_choices", pa.int64()),
        ]
    )
    write_table(pa.Table.from_pylist(rows, schema=schema), storage.join(stage_dir.data_uri, "scores.parquet"))
