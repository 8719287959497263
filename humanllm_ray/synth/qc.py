"""The ``qc`` stage: rule checks, then an LLM judge, over every synthesized item.

``{run.root}/synth/data`` -> ``{run.root}/qc``:

1. **Rules** (cheap, no LLM; :meth:`Product.rule_violations`): the payload still parses and
   validates, word bounds per product (``qc.min_words`` / ``qc.max_words``: ``rule_too_short``,
   ``rule_too_long``), no raw names left (``rule_raw_name``), a per-user item (persona,
   profile, life stories, writing style) has at least ``qc.min_posts_for_profile`` source
   posts (``rule_too_few_posts``), a social QA answer is not written into its scenario
   (``rule_answer_in_scenario``), no life story is told twice (``rule_duplicate_story``).
   Items that break a rule are quarantined without asking the judge. A word minimum the
   item's generation budget could not hold is not applied (:meth:`Product.min_words`,
   budget from its provenance).
2. **Judge**: the same engine and actor-pool machinery as synthesis
   (:mod:`.generation`: cache, seeds, retries) re-reads each item against its source posts —
   the ``source_text`` column the synth stage carries, exactly what the generator saw — and
   answers ``{reason, grounded: 1-5, coherent: 1-5, leakage: bool, harmless: bool}``
   (reason first: the verdict follows the rationale). Products that are themselves
   judgements (``Product.judged = False``: post tags) pass on the rules alone; their
   ``judge`` column says ``{"judged": false}`` and the report counts them as ``unjudged``.
3. **Verdict** against ``QCConfig`` thresholds: ``judge_not_grounded``, ``judge_incoherent``,
   ``judge_leakage`` (products where leakage applies), ``judge_harmful``; a judge reply that
   never validates is ``judge_unparsed_json`` / ``judge_schema_invalid`` / ``judge_engine_error``.

   Verdicts reject items when ``qc.enforce_judge`` resolves true; by default they do, except
   when the judge is the untrained embedded tiny model (``model.base=tiny``): its scores are
   noise, so the judge still runs on every item and its verdict is stored (``judge`` column,
   report ``judge_findings``) but only the rules reject — the demo keeps training data.

Passed items go to ``data/`` with the synth columns plus ``judge`` (the judge's JSON);
failures to ``_quarantine/`` with every reason in ``detail`` (``reason`` is the first).
Thresholds are applied after the cache, so tightening them re-judges nothing.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Dict, List, Optional, Tuple

import pyarrow as pa
import pyarrow.compute as pc

from .. import storage
from ..config import HumanLLMConfig, to_dict
from ..llm import engine_identity
from ..llm.schema import check_reply, fit_to_budget, object_schema, schema_hash, text_field
from ..prompts import load_prompt
from ..runtime import RunPaths, init_ray
from ..stage import StageDir, StageResult, quarantine_row, run_stage
from .budget import PromptBudget, fit_text
from .generation import (
    OK,
    RESULT_FIELDS,
    PoolSpec,
    ReplySpec,
    Sampling,
    columns_frame,
    conform,
    messages_hash,
    request_key,
    run_requests,
    write_dataset,
)
from .products import get_product
from .synthesize import QUARANTINE_SCHEMA, SYNTH_FIELDS, prepare_model, stage_data_uri

log = logging.getLogger("humanllm")
STAGE = "qc"
JUDGE_PROMPT = "judge.v1"
JUDGE_SPEC = "judge"

JUDGE_SCHEMA = object_schema(
    {
        "reason": text_field(200, "one short sentence on the main weakness"),
        "grounded": {"type": "integer", "minimum": 1, "maximum": 5},
        "coherent": {"type": "integer", "minimum": 1, "maximum": 5},
        "leakage": {"type": "boolean"},
        "harmless": {"type": "boolean"},
    },
    title="judge",
)

QC_FIELDS = SYNTH_FIELDS + [pa.field("judge", pa.string())]
QC_SCHEMA = pa.schema(QC_FIELDS)
QC_COLUMNS = [f.name for f in QC_FIELDS]
SYNTH_COLUMNS = [f.name for f in SYNTH_FIELDS]

JUDGE_REQUEST_SCHEMA = pa.schema(
    SYNTH_FIELDS
    + [pa.field("request_key", pa.string()), pa.field("reply_spec", pa.string()), pa.field("messages", pa.string())]
)

# Columns the rule pass adds: the first failed rule (or "") and all of them.
RULE_FIELDS = [pa.field("rule_reason", pa.string()), pa.field("rule_detail", pa.string())]


def judge_request_schema(cfg: HumanLLMConfig) -> Dict[str, Any]:
    return fit_to_budget(JUDGE_SCHEMA, cfg.qc.max_new_tokens, cfg.synth.chars_per_token)


def _sampling(cfg: HumanLLMConfig) -> Sampling:
    return Sampling(cfg.qc.max_new_tokens, cfg.qc.temperature, cfg.qc.top_p)


def rule_check(row: Dict[str, Any], qc: Any) -> List[Tuple[str, str]]:
    """(reason, detail) of every rule the synthesized row breaks."""
    try:
        product = get_product(row["product"])
    except ValueError as exc:
        return [("rule_unknown_product", str(exc))]
    payload, reason, detail = check_reply(row.get("payload") or "", product.schema())
    if reason is not None:
        return [(f"rule_{reason}", detail)]
    return product.rule_violations(payload, row, qc)


def apply_rules(batch: pa.Table, cfg: HumanLLMConfig) -> pa.Table:
    reasons, details = [], []
    for row in batch.select(["product", "payload", "source_record_ids", "provenance"]).to_pylist():
        broken = rule_check(row, cfg.qc)
        reasons.append(broken[0][0] if broken else "")
        details.append("; ".join(f"{r}: {d}" for r, d in broken)[:2000])
    return batch.append_column(RULE_FIELDS[0], pa.array(reasons, pa.string())).append_column(
        RULE_FIELDS[1], pa.array(details, pa.string())
    )


def _is_judged(product: str) -> bool:
    try:
        return get_product(product).judged
    except ValueError:  # unknown products never pass the rules
        return True


def _passed_rules(batch: pa.Table, judged: Optional[bool] = None) -> pa.Table:
    """Rows that passed the rules; with ``judged`` set, only those of (non-)judged products."""
    batch = batch.filter(pc.equal(batch.column("rule_reason"), ""))
    if judged is not None:
        keep = [_is_judged(p) is judged for p in batch.column("product").to_pylist()]
        batch = batch.filter(pa.array(keep, pa.bool_()))
    return batch


def build_judge_requests(batch: pa.Table, cfg: HumanLLMConfig, engine_id: str) -> pa.Table:
    """Rows that passed the rules (of judged products) -> judge requests (synth columns pass through)."""
    template = load_prompt(JUDGE_PROMPT)
    sampling = _sampling(cfg).as_dict()
    judge_schema_hash = schema_hash(judge_request_schema(cfg))
    batch = _passed_rules(batch, judged=True)
    budget = PromptBudget.for_config(cfg, cfg.qc.max_new_tokens, cfg.qc.max_source_chars)
    keys, specs, messages = [], [], []
    for row in batch.select(["item_id", "product", "payload", "platform", "source_text"]).to_pylist():
        product = get_product(row["product"])
        payload = json.loads(row["payload"])

        def build(sources: str) -> List[Dict[str, str]]:
            return template.render(
                platform=row["platform"],
                sources=sources,
                product=product.name.replace("_", " "),
                item=product.render_for_judge(payload),
                grounded_rule=product.grounded_rule,
                leakage_rule=product.leakage_rule,
            )

        # The judge sees as much of the generator's evidence as its context holds.
        _, msgs = fit_text(row["source_text"] or "", build, budget)
        text = json.dumps(msgs, ensure_ascii=False)
        keys.append(
            request_key(
                item_id=row["item_id"],
                payload=messages_hash(row["payload"]),
                prompt_hash=template.hash,
                messages=messages_hash(text),
                schema=judge_schema_hash,
                engine=engine_id,
                sampling=sampling,
                max_retries=cfg.qc.max_retries,
                run_seed=cfg.run.seed,
            )
        )
        specs.append(JUDGE_SPEC)
        messages.append(text)
    out = batch.select(SYNTH_COLUMNS)
    out = out.append_column("request_key", pa.array(keys, pa.string()))
    out = out.append_column("reply_spec", pa.array(specs, pa.string()))
    return out.append_column("messages", pa.array(messages, pa.string()))


def verdict(judge: Dict[str, Any], product: str, qc: Any) -> List[Tuple[str, str]]:
    """(reason, detail) for every threshold the judge's scores miss."""
    out: List[Tuple[str, str]] = []
    if judge.get("judged") is False:  # qc.enabled=false: nothing to miss
        return out
    if judge["grounded"] < qc.min_grounded:
        out.append(("judge_not_grounded", f"grounded {judge['grounded']} < {qc.min_grounded}"))
    if judge["coherent"] < qc.min_coherent:
        out.append(("judge_incoherent", f"coherent {judge['coherent']} < {qc.min_coherent}"))
    if qc.reject_leakage and judge["leakage"] and get_product(product).judge_checks_leakage:
        out.append(("judge_leakage", "judge found leakage"))
    if qc.reject_harmful and not judge["harmless"]:
        out.append(("judge_harmful", "judge found it harmful"))
    return out


def untrained_model_verdicts(cfg: HumanLLMConfig) -> bool:
    """True when the LLM's judgements are noise: the embedded tiny model (random weights)
    served by hf/vllm. Decides the default of qc.enforce_judge and tasks.enforce_post_tags."""
    return cfg.model.base == "tiny" and cfg.synth.engine in ("hf", "vllm")


def judge_enforced(cfg: HumanLLMConfig) -> bool:
    """qc.enforce_judge, with None resolved: enforce unless the judge is the untrained tiny model."""
    if cfg.qc.enforce_judge is not None:
        return bool(cfg.qc.enforce_judge)
    return not untrained_model_verdicts(cfg)


def judge_findings(r: Dict[str, Any], qc: Any) -> List[Tuple[str, str]]:
    """Every reason the judge gives to reject a judged row (empty: it passes)."""
    if r["status"] != OK:
        return [(f"judge_{r['reason']}", f"after {r['attempts']} attempt(s): {r['detail']}")]
    return verdict(json.loads(r["reply"]), r["product"], qc)


def split_judged(batch: pa.Table, cfg: HumanLLMConfig, enforce: bool, want: str, source: str) -> pa.Table:
    """Judged results -> passed rows (``want="pass"``) or quarantine rows (``want="fail"``)."""
    passed, failed = [], []
    for r in batch.to_pylist():
        reasons = judge_findings(r, cfg.qc) if enforce else []
        if not reasons:
            passed.append({**{k: r[k] for k in SYNTH_COLUMNS}, "judge": r["reply"] if r["status"] == OK else ""})
        else:
            failed.append(_quarantine(r, reasons, source, raw=r["reply"]))
    if want == "pass":
        return pa.Table.from_pylist(passed, schema=QC_SCHEMA)
    return pa.Table.from_pylist(failed, schema=QUARANTINE_SCHEMA)


def rule_quarantine(batch: pa.Table, source: str) -> pa.Table:
    rows = []
    for r in batch.to_pylist():
        if r["rule_reason"]:
            rows.append(_quarantine(r, [(r["rule_reason"], r["rule_detail"])], source, raw=r["payload"]))
    return pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA)


def _quarantine(r: Dict[str, Any], reasons: List[Tuple[str, str]], source: str, raw: str) -> Dict[str, Any]:
    return quarantine_row(
        STAGE,
        reasons[0][0],
        detail=f"{r['product']}: " + "; ".join(f"{a}: {b}" for a, b in reasons),
        platform=r.get("platform") or "",
        source_file=source,
        record_id=r["item_id"],
        user_id=r.get("user_id") or "",
        raw=raw or "",
    )


def fingerprint(cfg: HumanLLMConfig) -> Dict[str, Any]:
    qc = to_dict(cfg)["qc"]
    qc.pop("pool", None)
    return {
        "qc": qc,
        "engine": engine_identity(cfg, cfg.qc.fault_rate),
        "chars_per_token": cfg.synth.chars_per_token,
        "judge_prompt": load_prompt(JUDGE_PROMPT).hash,
        "run_seed": cfg.run.seed,
    }


def run(cfg: HumanLLMConfig, input_uri: Optional[str] = None, output_uri: Optional[str] = None) -> Dict[str, Any]:
    storage.configure(cfg.s3)
    init_ray(cfg)
    import ray

    ray.data.DataContext.get_current().enable_progress_bars = bool(cfg.run.progress)
    paths = RunPaths.from_config(cfg)
    input_uri = storage.normalize(input_uri or paths.synth)
    output_uri = storage.normalize(output_uri or paths.qc)
    engine_id = engine_identity(cfg, cfg.qc.fault_rate)

    def body(out: StageDir) -> StageResult:
        data_uri = stage_data_uri(input_uri)
        path, fs = storage.arrow_fs(data_uri)
        items = ray.data.read_parquet(path, filesystem=fs)
        checked = items.map_batches(apply_rules, fn_kwargs={"cfg": cfg}, batch_format="pyarrow").materialize()
        summary = columns_frame(checked, ["product", "platform", "rule_reason"])
        n_in = len(summary)
        rule_failed = summary[summary["rule_reason"] != ""]
        passed = summary[summary["rule_reason"] == ""]
        n_unjudged = int((~passed["product"].map(_is_judged).astype(bool)).sum()) if len(passed) else 0

        if not cfg.qc.enabled:
            log.warning("qc.enabled=false: items pass on rules alone, without the judge")
        if cfg.qc.enabled and len(passed) > n_unjudged:
            prepare_model(cfg)
            requests = checked.map_batches(
                build_judge_requests, fn_kwargs={"cfg": cfg, "engine_id": engine_id}, batch_format="pyarrow"
            )
            pool_spec = PoolSpec(
                specs={JUDGE_SPEC: ReplySpec(judge_request_schema(cfg), JUDGE_SCHEMA, None)},
                sampling=_sampling(cfg),
                max_retries=cfg.qc.max_retries,
                fault_rate=cfg.qc.fault_rate,
                cache_uri=out.path("_cache"),
            )
            judged, stats = run_requests(cfg, requests, JUDGE_REQUEST_SCHEMA, pool_spec, cfg.qc.pool)
            if n_unjudged:  # e.g. post tags: they pass on the rules alone
                judged = judged.union(_unjudged(checked, judged=False)).materialize()
        elif cfg.qc.enabled:
            judged = _unjudged(checked, judged=False)
            stats = {"requests": 0, "cache_hits": 0, "requests_sent": 0, "generations": 0}
        else:
            # Rules only: every rule-passing item "passes the judge" with no verdict.
            judged, stats = _unjudged(checked), {"requests": 0, "cache_hits": 0, "requests_sent": 0, "generations": 0}

        enforce = judge_enforced(cfg)
        outcome = columns_frame(
            judged.map_batches(_outcome, fn_kwargs={"cfg": cfg}, batch_format="pyarrow"), OUTCOME_SCHEMA.names
        )
        outcome["qc_reason"] = outcome["finding"] if enforce else ""
        n_pass = int((outcome["qc_reason"] == "").sum())
        judge_failed = outcome[outcome["qc_reason"] != ""]
        if not enforce and cfg.qc.enabled:
            log.warning(
                "qc: the judge is the untrained tiny model, its verdicts are recorded but not enforced "
                "(qc.enforce_judge=true to enforce them)"
            )

        split = {"cfg": cfg, "enforce": enforce, "source": data_uri}
        good = judged.map_batches(split_judged, fn_kwargs={**split, "want": "pass"}, batch_format="pyarrow")
        write_dataset(good, out.data_uri, n_pass, QC_SCHEMA)
        if len(rule_failed):
            bad = checked.map_batches(rule_quarantine, fn_kwargs={"source": data_uri}, batch_format="pyarrow")
            write_dataset(bad, storage.join(out.quarantine_uri, "rules"), len(rule_failed), QUARANTINE_SCHEMA)
        if len(judge_failed):
            bad = judged.map_batches(split_judged, fn_kwargs={**split, "want": "fail"}, batch_format="pyarrow")
            write_dataset(bad, storage.join(out.quarantine_uri, "judge"), len(judge_failed), QUARANTINE_SCHEMA)

        by_reason: Dict[str, int] = {}
        for reason in list(rule_failed["rule_reason"]) + list(judge_failed["qc_reason"]):
            by_reason[reason] = by_reason.get(reason, 0) + 1
        by_platform: Dict[str, Dict[str, int]] = {}
        for platform, g in summary.groupby("platform"):
            by_platform[str(platform)] = {"in": int(len(g)), "out": 0, "quarantined": 0}
        for platform, g in outcome.groupby("platform"):
            by_platform[str(platform)]["out"] = int((g["qc_reason"] == "").sum())
        for d in by_platform.values():
            d["quarantined"] = d["in"] - d["out"]
        by_product: Dict[str, Dict[str, int]] = {
            str(p): {"in": int(len(g)), "out": 0} for p, g in summary.groupby("product")
        }
        for p, g in outcome.groupby("product"):
            by_product[str(p)]["out"] = int((g["qc_reason"] == "").sum())
        scored = outcome[outcome["grounded"] > 0]
        extra = {
            "engine": cfg.synth.engine,
            "engine_identity": engine_id,
            "cache_hits": stats["cache_hits"],
            "requests_sent": stats["requests_sent"],
            "generations": stats["generations"],
            "judged": stats["requests"],
            "unjudged": n_unjudged if cfg.qc.enabled else int(len(passed)),
            "rule_failed": int(len(rule_failed)),
            "by_product": by_product,
            "judge_means": {
                "grounded": round(float(scored["grounded"].mean()), 3) if len(scored) else None,
                "coherent": round(float(scored["coherent"].mean()), 3) if len(scored) else None,
            },
            "judge_prompt": JUDGE_PROMPT,
            "judge_enforced": enforce,
            # What the judge found, enforced or not (with enforcement these equal the judge_* by_reason).
            "judge_findings": {str(k): int(v) for k, v in outcome[outcome["finding"] != ""]["finding"].value_counts().items()},
        }
        return StageResult(
            rows_in=n_in,
            rows_out=n_pass,
            rows_quarantined=int(len(rule_failed) + len(judge_failed)),
            by_reason=by_reason,
            by_platform=by_platform,
            extra=extra,
        )

    return run_stage(STAGE, output_uri, body, fingerprint=fingerprint(cfg), inputs=[input_uri])


def _outcome(batch: pa.Table, cfg: HumanLLMConfig) -> pa.Table:
    """Small per-item summary of judged rows: product, platform, the judge's first finding, scores."""
    rows = []
    for r in batch.select(["product", "platform", "status", "reason", "detail", "attempts", "reply"]).to_pylist():
        grounded = coherent = 0
        if r["status"] == OK:
            judge = json.loads(r["reply"])
            grounded, coherent = judge.get("grounded", 0), judge.get("coherent", 0)
        findings = judge_findings(r, cfg.qc)
        rows.append(
            {
                "product": r["product"],
                "platform": r["platform"],
                "finding": findings[0][0] if findings else "",
                "grounded": grounded,
                "coherent": coherent,
            }
        )
    return pa.Table.from_pylist(rows, schema=OUTCOME_SCHEMA)


OUTCOME_SCHEMA = pa.schema(
    [("product", pa.string()), ("platform", pa.string()), ("finding", pa.string()), ("grounded", pa.int64()), ("coherent", pa.int64())]
)


def _unjudged(checked: Any, judged: Optional[bool] = None) -> Any:
    """Rule-passing rows shaped like judged ones (same columns), whose ``judge`` says it did
    not run: every such row with qc.enabled=false, else (``judged=False``) those of products
    QC does not judge."""
    no_verdict = json.dumps({"judged": False})
    why = "qc.enabled=false" if judged is None else "product not judged"
    schema = pa.schema(list(JUDGE_REQUEST_SCHEMA) + RESULT_FIELDS)

    def shape(batch: pa.Table) -> pa.Table:
        batch = _passed_rules(batch, judged)
        n = batch.num_rows
        out = batch.select(SYNTH_COLUMNS)
        for name, value, typ in (
            ("request_key", "", pa.string()),
            ("reply_spec", "", pa.string()),
            ("messages", "", pa.string()),
            ("status", OK, pa.string()),
            ("reason", "", pa.string()),
            ("detail", why, pa.string()),
            ("reply", no_verdict, pa.string()),
            ("attempts", 0, pa.int32()),
            ("seed", 0, pa.int64()),
        ):
            out = out.append_column(name, pa.array([value] * n, typ))
        return conform(out, schema)

    return checked.map_batches(shape, batch_format="pyarrow").materialize()
