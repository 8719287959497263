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

Beyond held-out loss, the stage measures whether a model learned *people*:

* personalization gain on writing imitation / personalized commenting — loss of the person's
  real text without vs with their persona/history (:mod:`.personalization`), and the style
  similarity of a short greedy generation to the real text (vs another user's text);
* optional LLM-judge scores of generated social-QA answers and profiles (``eval.judge``,
  :mod:`.judge`, the QC engine);
* optional role-play checklists from the psychological-patterns dataset (``eval.checklists``,
  :mod:`.checklists`), judged by the LLM judge or the lexical ``keyword`` baseline.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import storage
from ..config import HumanLLMConfig
from ..runtime import RunPaths
from ..stage import StageDir, StageResult, quarantine_row, read_table, run_stage, write_table
from .metrics import (
    accuracy_summary,
    gain_difference,
    loss_summary,
    mean_summary,
    paired_loss_delta,
    paired_mean_delta,
    personalization_gain,
)
from .scoring import answer_nll, candidate_answers, encode_chat, greedy_generate, with_answer
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
class _Plan:
    """What each model does beyond scoring the examples (decided once, shared by all models)."""

    stripped: Dict[int, List[Dict[str, str]]]  # position -> the conversation without persona/history
    not_strippable: Dict[str, int]  # task -> examples with nothing recognisable to strip
    style: List[int]  # positions to generate a short answer for (style similarity)
    judged: List[int]  # positions whose generated answer the LLM judge scores
    slots: List[Any]  # checklists.RoleplaySlot: in-character turns to generate


@dataclass
class _ModelScores:
    nll: List[float]
    tokens: List[int]
    correct: Dict[int, bool]  # example position -> item-selection hit
    choices: Dict[int, int]
    unscorable: Dict[int, str]  # example position -> reason
    benchmark_hits: Dict[str, List[Tuple[bool, int]]]  # family -> (correct, options) per scorable item
    nll_without: Dict[int, Tuple[float, int]] = field(default_factory=dict)  # position -> (nll, tokens)
    generations: Dict[int, str] = field(default_factory=dict)  # style generations
    answers: Dict[int, str] = field(default_factory=dict)  # answers for the judge
    turns: List[str] = field(default_factory=list)  # one in-character turn per plan slot


def _score_model(
    model_info: EvalModel,
    examples: Sequence[Dict[str, Any]],
    cfg: HumanLLMConfig,
    benchmarks: Dict[str, list],
    plan: Optional[_Plan] = None,
) -> _ModelScores:
    from ..model import load_model, load_tokenizer
    from .benchmarks import choose_letters
    from .judge import prompt_of

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
    result = _ModelScores(nll, tokens, correct, choices, unscorable, benchmark_hits)

    if plan is not None:
        # Personalization gain: the same target after the generic prompt.
        without = [i for i in sorted(plan.stripped) if i not in unscorable]
        if without:
            enc_wo = [encode_chat(tokenizer, plan.stripped[i], max_length) for i in without]
            for i, (s, n) in zip(without, answer_nll(model, enc_wo, pad_id, batch)):
                result.nll_without[i] = (s, n)
        gen_batch = max(1, min(batch, 8))
        style = [i for i in plan.style if i not in unscorable]
        if style and cfg.eval.style_max_new_tokens > 0:
            texts = greedy_generate(model, tokenizer, [prompt_of(examples[i]) for i in style], cfg.eval.style_max_new_tokens,
                                    batch_size=gen_batch, max_length=max_length)
            result.generations = dict(zip(style, texts))
        judged = [i for i in plan.judged if i not in unscorable]
        if judged:
            texts = greedy_generate(model, tokenizer, [prompt_of(examples[i]) for i in judged], cfg.eval.judge_answer_max_new_tokens,
                                    batch_size=gen_batch, max_length=max_length)
            result.answers = dict(zip(judged, texts))
        if plan.slots:
            result.turns = greedy_generate(model, tokenizer, [s.messages for s in plan.slots], cfg.eval.checklist_max_new_tokens,
                                           batch_size=gen_batch, max_length=max_length)
    log.info("evaluate: scored %s on %d examples", model_info.label, len(scorable))
    del model
    return result


def make_plan(cfg: HumanLLMConfig, examples: Sequence[Dict[str, Any]], dataset: Any = None) -> _Plan:
    from .judge import reference_for
    from .personalization import strip_personal_context

    ev = cfg.eval
    stripped: Dict[int, List[Dict[str, str]]] = {}
    not_strippable: Dict[str, int] = {}
    style: List[int] = []
    for i, ex in enumerate(examples):
        task = str(ex.get("task"))
        if task not in ev.personalization_tasks:
            continue
        style.append(i)
        wo = strip_personal_context(ex.get("messages") or [])
        if wo is None:
            not_strippable[task] = not_strippable.get(task, 0) + 1
        else:
            stripped[i] = wo
    judged: List[int] = []
    if ev.judge:
        per_task: Dict[str, int] = {}
        for i, ex in enumerate(examples):
            task = str(ex.get("task"))
            if task in ev.judge_tasks and per_task.get(task, 0) < ev.judge_max_items and reference_for(ex):
                per_task[task] = per_task.get(task, 0) + 1
                judged.append(i)
    slots: List[Any] = []
    if dataset is not None:
        from .checklists import plan_slots

        slots = plan_slots(dataset, ev.checklist_max_scenarios, ev.checklist_max_turns)
    return _Plan(stripped, not_strippable, style, judged, slots)


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
    dataset = None
    if cfg.eval.checklists:
        from .checklists import load_pattern_dataset

        dataset = load_pattern_dataset(cfg.eval.checklists, cfg.eval.checklist_splits, cfg.eval.checklist_variations)
    plan = make_plan(cfg, examples, dataset)
    uses_engine = cfg.eval.judge and plan.judged or (plan.slots and cfg.eval.checklist_judge == "llm")

    fingerprint = {
        "eval": asdict(cfg.eval),
        "dtype": cfg.model.dtype,
        "seed": cfg.run.seed,
        "models": {m.label: m.identity for m in models},
        "examples": [str(e.get("example_id")) for e in examples],
        "benchmarks": {family: [i.item_id for i in items] for family, items in benchmarks.items()},
        "judge_engine": _judge_identity(cfg) if uses_engine else None,
        "checklist_slots": [[s.scenario.scenario_id, s.character, s.turn_index, s.reference] for s in plan.slots],
    }
    upstream = [u for u in (paths.tasks, paths.merged, paths.publish, paths.train) if storage.exists(u)]

    def body(stage_dir: StageDir) -> StageResult:
        per_model = {m.label: _score_model(m, examples, cfg, benchmarks, plan) for m in models}
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
        extras = _judge_and_checklists(cfg, models, per_model, examples, kept, plan, dataset)
        evaluation.update(_personalization(cfg, models, per_model, examples, kept, plan))
        evaluation.update(extras.pop("summary"))
        evaluation["headline"] = headline(evaluation)
        _write_scores(stage_dir, models, per_model, examples, kept)
        _write_extras(stage_dir, extras)
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
                "personalization_examples": len([i for i in plan.stripped if i in set(kept)]),
                "judged_items": len(plan.judged) * len(models) if cfg.eval.judge else 0,
                "checklist_turns": len(plan.slots) * len(models),
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


def _judge_identity(cfg: HumanLLMConfig) -> str:
    from .judge import identity

    return identity(cfg)


def _boot(cfg: HumanLLMConfig) -> Dict[str, Any]:
    return dict(samples=cfg.eval.bootstrap_samples, confidence=cfg.eval.confidence, seed=cfg.run.seed)


def _personalization(cfg, models, per_model, examples, kept, plan: _Plan) -> Dict[str, Any]:
    """report.json's ``personalization`` (gain per task, per model, and vs the base) and
    ``style`` (similarity of generations to the real text, own vs another user's)."""
    from .judge import reference_for
    from .personalization import STRIP_METHOD, style_table

    boot = _boot(cfg)
    kept_set = set(kept)
    tasks = [t for t in cfg.eval.personalization_tasks if any(examples[i].get("task") == t for i in kept)]
    pers: Dict[str, Any] = {
        "method": STRIP_METHOD,
        "tasks": {
            t: {
                "examples": sum(1 for i in kept if examples[i].get("task") == t),
                "strippable": sum(1 for i in plan.stripped if i in kept_set and examples[i].get("task") == t),
                "not_strippable": plan.not_strippable.get(t, 0),
            }
            for t in tasks
        },
        "models": {},
        "comparisons": {},
    }

    def columns(s: _ModelScores, idx: List[int]):
        idx = [i for i in idx if i in s.nll_without]
        return idx, ([s.nll[i] for i in idx], [s.tokens[i] for i in idx],
                     [s.nll_without[i][0] for i in idx], [s.nll_without[i][1] for i in idx])

    groups = {t: [i for i in sorted(plan.stripped) if i in kept_set and examples[i].get("task") == t] for t in tasks}
    groups["overall"] = [i for t in tasks for i in groups[t]]
    if not groups["overall"]:
        groups = {}
    for m in models:
        s = per_model[m.label]
        entry: Dict[str, Any] = {"by_task": {}}
        for g, idx in groups.items():
            _idx, (nw, tw, no, to) = columns(s, idx)
            value = personalization_gain(nw, tw, no, to, **boot)
            if g == "overall":
                entry["overall"] = value
            else:
                entry["by_task"][g] = value
        pers["models"][m.label] = entry
    labels = [m.label for m in models]
    if REFERENCE in labels and groups:
        for label in labels:
            if label == REFERENCE:
                continue
            comp: Dict[str, Any] = {"model": label, "reference": REFERENCE, "by_task": {}}
            for g, idx in groups.items():
                idx = [i for i in idx if i in per_model[label].nll_without and i in per_model[REFERENCE].nll_without]
                _a, a = columns(per_model[label], idx)
                _b, b = columns(per_model[REFERENCE], idx)
                value = gain_difference(a, b, **boot)
                if g == "overall":
                    comp["overall"] = value
                else:
                    comp["by_task"][g] = value
            pers["comparisons"][f"{label}_vs_{REFERENCE}"] = comp

    style: Dict[str, Any] = {
        "method": "char3 = cosine of character 3-gram counts; function_words = cosine of function-word counts; "
                  f"generation: greedy, {cfg.eval.style_max_new_tokens} new tokens from the prompt with persona/history; "
                  f"real text cut to {cfg.eval.style_max_chars} characters; other = the same generation vs another "
                  "held-out user's real text on the same task; lift = own - other (paired bootstrap).",
        "max_new_tokens": cfg.eval.style_max_new_tokens,
        "models": {},
    }
    users = {i: str(examples[i].get("user_id") or i) for i in range(len(examples))}
    task_of = {i: str(examples[i].get("task")) for i in range(len(examples))}
    reals = {i: reference_for(examples[i]) or "" for i in range(len(examples))}
    for m in models:
        gens = {i: t for i, t in per_model[m.label].generations.items() if i in kept_set}
        if not gens:
            continue
        table = style_table(gens, reals, users, task_of, cfg.eval.style_max_chars)
        entry = {"by_task": {}, "samples": []}
        for t in sorted({task_of[i] for i in table}):
            idx = [i for i in sorted(table) if task_of[i] == t]
            cell: Dict[str, Any] = {"examples": len(idx)}
            for measure in ("char3", "function_words"):
                own = [table[i]["own"][measure] for i in idx]
                other = [table[i]["other"][measure] for i in idx]
                cell[measure] = mean_summary(own, **boot)
                cell[f"{measure}_other"] = mean_summary(other, **boot)
                cell[f"{measure}_lift"] = paired_mean_delta(own, other, **boot)
            entry["by_task"][t] = cell
            for i in idx[:2]:
                entry["samples"].append({"task": t, "example_id": str(examples[i].get("example_id")),
                                         "generation": gens[i][:400], "real": reals[i][:400],
                                         "char3": table[i]["own"]["char3"]})
        style["models"][m.label] = entry
    out: Dict[str, Any] = {"personalization": pers if groups else None, "style": style if style["models"] else None}
    return out


def _judge_and_checklists(cfg, models, per_model, examples, kept, plan: _Plan, dataset) -> Dict[str, Any]:
    """Judge the generated answers and in-character turns (the engine is built once, only
    when something needs it). Returns {"summary": report keys, "judge_rows", "checklist_rows"}."""
    from .judge import EngineHolder, JudgeItem, DIMENSIONS, is_noise_judge, judge_items, reference_for, user_text

    boot = _boot(cfg)
    holder = EngineHolder(cfg)
    summary: Dict[str, Any] = {"judge": None, "checklists": None}
    judge_rows: List[Dict[str, Any]] = []
    checklist_rows: List[Dict[str, Any]] = []
    kept_set = set(kept)
    try:
        if cfg.eval.judge and plan.judged:
            items: List[JudgeItem] = []
            owners: List[str] = []
            for m in models:
                for i, answer in per_model[m.label].answers.items():
                    if i in kept_set:
                        ex = examples[i]
                        items.append(JudgeItem(i, str(ex.get("task")), user_text(ex), reference_for(ex) or "", answer))
                        owners.append(m.label)
            verdicts = judge_items(holder, items, cfg)
            entry: Dict[str, Any] = {
                "engine": _judge_identity(cfg),
                "noise": is_noise_judge(cfg),
                "dimensions": list(DIMENSIONS),
                "scale": [1, 5],
                "models": {},
            }
            for m in models:
                by_task: Dict[str, Any] = {}
                for t in sorted({it.task for it, o in zip(items, owners) if o == m.label}):
                    rows = [(it, v) for it, v, o in zip(items, verdicts, owners) if o == m.label and it.task == t]
                    cell: Dict[str, Any] = {"items": len(rows), "unparsed": sum(1 for _it, v in rows if v is None)}
                    for d in DIMENSIONS:
                        cell[d] = mean_summary([v[d] if v else None for _it, v in rows], **boot)
                    by_task[t] = cell
                entry["models"][m.label] = by_task
            summary["judge"] = entry
            for it, v, o in zip(items, verdicts, owners):
                ex = examples[it.position]
                judge_rows.append({"example_id": str(ex.get("example_id")), "task": it.task, "model": o, "answer": it.answer,
                                   "verdict": json.dumps(v) if v is not None else None})
        if dataset is not None and plan.slots:
            from .checklists import make_judge, requests_for, score_requests, summarize_scores

            judge = make_judge(cfg.eval.checklist_judge, cfg, holder)
            requests = []
            for m in models:
                requests += requests_for(dataset, plan.slots, m.label, per_model[m.label].turns)
            if cfg.eval.checklist_reference:
                requests += requests_for(dataset, plan.slots, "reference", [s.reference for s in plan.slots])
            answers = judge.judge(requests)
            per_character = score_requests(requests, answers)
            summary["checklists"] = {
                "dataset": dataset.root,
                "splits": list(cfg.eval.checklist_splits),
                "judge": judge.identity(),
                "judge_description": judge.description,
                "noise": cfg.eval.checklist_judge == "llm" and is_noise_judge(cfg),
                "scenarios": len({s.scenario.scenario_id for s in plan.slots}),
                "characters": len({(s.scenario.scenario_id, s.character) for s in plan.slots}),
                "sources": summarize_scores(per_character, boot),
                "samples": [{"source": r.source, "scenario_id": r.scenario_id, "character": r.character, "turn": r.raw[:400],
                             "thought": r.parts.thought, "action": r.parts.action, "speech": r.parts.speech,
                             "items": [i.question for i in r.items], "answers": a}
                            for r, a in list(zip(requests, answers))[:: max(1, len(requests) // 4)][:4]],
            }
            for r, a in zip(requests, answers):
                checklist_rows.append({"source": r.source, "scenario_id": r.scenario_id, "character": r.character,
                                       "turn_index": r.turn_index, "turn": r.raw, "thought": r.parts.thought,
                                       "action": r.parts.action, "speech": r.parts.speech,
                                       "items": json.dumps([{"question": i.question, "level": i.level, "source": i.source} for i in r.items]),
                                       "answers": json.dumps(a)})
    finally:
        holder.close()
    return {"summary": summary, "judge_rows": judge_rows, "checklist_rows": checklist_rows}


def _write_extras(stage_dir: StageDir, extras: Dict[str, Any]) -> None:
    import pyarrow as pa

    for name, key in (("judge.parquet", "judge_rows"), ("checklists.parquet", "checklist_rows")):
        rows = extras.get(key) or []
        if rows:
            write_table(pa.Table.from_pylist(rows), storage.join(stage_dir.data_uri, name))


def headline(summary: Dict[str, Any]) -> Dict[str, Any]:
    """One sentence answering: does the merged model beat the base on held-out loss? Plus,
    when measured, one on whether it uses the person's profile/history (``personalization``)."""
    out = _loss_headline(summary)
    text = _personalization_headline(summary)
    if text:
        out["personalization"] = text
    return out


def _personalization_headline(summary: Dict[str, Any]) -> Optional[str]:
    pers = summary.get("personalization") or {}
    models = pers.get("models") or {}
    label = "merged" if "merged" in models else next((l for l in models if l != REFERENCE), next(iter(models), None))
    if label is None:
        return None
    g = models[label].get("overall") or {}
    if g.get("gain") is None:
        return None
    pct = int(round(summary.get("confidence", 0.95) * 100))
    lo, hi = g["gain_ci"]
    verb = {"helps": "lowers", "hurts": "raises"}.get(g["verdict"], "does not measurably change")
    text = (f"Personalization: knowing the person's profile/history {verb} the {label} model's loss on their real text "
            f"(gain {g['gain']:+.3f} nats/token, {pct}% CI [{lo:+.3f}, {hi:+.3f}], {g['examples']} examples)")
    comp = (pers.get("comparisons") or {}).get(f"{label}_vs_{REFERENCE}", {}).get("overall") or {}
    if comp.get("delta") is not None:
        clo, chi = comp["delta_ci"]
        text += f"; vs {REFERENCE}: {comp['delta']:+.3f} [{clo:+.3f}, {chi:+.3f}]"
    return text + "."


def _loss_headline(summary: Dict[str, Any]) -> Dict[str, Any]:
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

    from .judge import reference_for
    from .personalization import style_scores

    rows = []
    for m in models:
        s = per_model[m.label]
        for i in kept:
            ex = examples[i]
            wo = s.nll_without.get(i)
            gen = s.generations.get(i)
            style = style_scores(gen, reference_for(ex) or "") if gen is not None else {}
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
                    "nll_without": wo[0] if wo else None,
                    "tokens_without": wo[1] if wo else None,
                    "generation": gen,
                    "style_char3": style.get("char3"),
                    "style_function_words": style.get("function_words"),
                }
            )
    schema = pa.schema(
        [
            ("example_id", pa.string()), ("task", pa.string()), ("variant", pa.string()), ("platform", pa.string()),
            ("user_id", pa.string()), ("model", pa.string()), ("nll", pa.float64()), ("tokens", pa.int64()),
            ("correct", pa.bool_()), ("num_choices", pa.int64()), ("nll_without", pa.float64()),
            ("tokens_without", pa.int64()), ("generation", pa.string()), ("style_char3", pa.float64()),
            ("style_function_words", pa.float64()),
        ]
    )
    write_table(pa.Table.from_pylist(rows, schema=schema), storage.join(stage_dir.data_uri, "scores.parquet"))
