"""The model card (README.md) of a published version, rendered from the run's own records:
the base model, merge provenance, data funnel, task mix, training report and, when an
evaluation already ran, its metrics. No credentials: only config keys that cannot hold
one are rendered, and URIs lose any user:password part."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

SECRET_KEY = re.compile(r"(key|secret|token|password|passwd|credential|auth)", re.IGNORECASE)
TRAIN_KEYS = (
    "num_workers",
    "zero_stage",
    "use_gpu",
    "bf16",
    "learning_rate",
    "warmup_ratio",
    "epochs",
    "max_steps",
    "micro_batch_size",
    "gradient_accumulation_steps",
    "max_length",
)
TRAIN_REPORT_KEYS = ("steps", "loss_first", "loss_last", "zero_stage", "num_workers", "resumed_from_step", "seconds")


@dataclass
class CardContext:
    name: str
    version: str
    uri: str
    base_model: str
    architecture: Dict[str, Any] = field(default_factory=dict)
    parameters: Optional[int] = None
    merge: Optional[Dict[str, Any]] = None
    stage_funnel: List[Dict[str, Any]] = field(default_factory=list)
    platform_funnel: Dict[str, Any] = field(default_factory=dict)
    task_mix: Dict[str, Dict[str, int]] = field(default_factory=dict)
    train_config: Dict[str, Any] = field(default_factory=dict)
    train_report: Dict[str, Any] = field(default_factory=dict)
    eval_report: Optional[Dict[str, Any]] = None


def model_facts(model_dir: str) -> Dict[str, Any]:
    """Architecture summary and parameter count, from config.json and safetensors headers."""
    from safetensors import safe_open

    facts: Dict[str, Any] = {}
    config_path = os.path.join(model_dir, "config.json")
    if os.path.exists(config_path):
        with open(config_path, encoding="utf-8") as fh:
            config = json.load(fh)
        for key in ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size", "dtype", "tie_word_embeddings"):
            if key in config:
                facts[key] = config[key]
    params = 0
    for fname in sorted(os.listdir(model_dir)):
        if fname.endswith(".safetensors"):
            with safe_open(os.path.join(model_dir, fname), framework="pt") as fh:
                for name in fh.keys():
                    numel = 1
                    for d in fh.get_slice(name).get_shape():
                        numel *= int(d)
                    params += numel
    facts["parameters"] = params
    return facts


def safe_config(block: Dict[str, Any], keys: Optional[tuple] = None) -> Dict[str, Any]:
    out = {}
    for k, v in block.items():
        if keys is not None and k not in keys:
            continue
        if SECRET_KEY.search(k) or isinstance(v, (dict, list)):
            continue
        out[k] = v
    return out


def _table(headers: List[str], rows: List[List[Any]]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt_ci(metric: Dict[str, Any], key: str) -> str:
    value = metric.get(key)
    ci = metric.get(f"{key}_ci")
    if value is None:
        return "–"
    if ci and None not in ci:
        return f"{value:.4g} [{ci[0]:.4g}, {ci[1]:.4g}]"
    return f"{value:.4g}"


def render_model_card(ctx: CardContext) -> str:
    parts: List[str] = []
    parts.append(
        "---\n"
        "library_name: transformers\n"
        "pipeline_tag: text-generation\n"
        f"base_model: {json.dumps(ctx.base_model)}\n"
        "tags: [humanllm, user-simulation, role-play, merged]\n"
        "---\n"
    )
    parts.append(f"# {ctx.name} — version `{ctx.version}`\n")
    parts.append(
        "A HumanLLM-style model that simulates individual people: given a person's profile *P* and a "
        "scenario *E* it produces the behaviour, thought or text *B* that person would (B = f(P, E); "
        "arXiv 2601.15793). It was fine-tuned on tasks built from real social-media user logs and then "
        "merged with its base model to keep general ability.\n"
    )

    parts.append("## Model\n")
    rows = [["base model", ctx.base_model]]
    if ctx.parameters:
        rows.append(["parameters", f"{ctx.parameters:,}"])
    for k, v in ctx.architecture.items():
        if k != "parameters":
            rows.append([k, v])
    if ctx.merge:
        weights = ", ".join(f"{w:g}" for w in ctx.merge.get("weights", []))
        rows.append(["merge", f"{ctx.merge.get('method')} (weights {weights})"])
        for i, m in enumerate(ctx.merge.get("models", [])):
            rows.append([f"merge input {i + 1}", _short(m)])
        if ctx.merge.get("params"):
            rows.append(["merge parameters", json.dumps(ctx.merge["params"], sort_keys=True)])
    rows.append(["published at", ctx.uri])
    parts.append(_table(["property", "value"], rows) + "\n")

    parts.append("## Intended use\n")
    parts.append(
        "- Research on user simulation and social behaviour: predicting what a described person would "
        "write, choose, feel or do in a scenario; generating synthetic but persona-consistent responses "
        "for testing recommender or dialogue systems.\n"
        "- Prompt with the person's profile as the system message and the scenario as the user "
        "message (`humanllm simulate`).\n"
        "- Not for: impersonating a real, identifiable person; decisions about real people (hiring, "
        "credit, moderation); any use presenting generated text as a real person's words.\n"
    )

    parts.append("## Training data\n")
    if ctx.platform_funnel.get("rows"):
        cols = ctx.platform_funnel["columns"]
        parts.append("Records per platform through the pipeline:\n\n")
        parts.append(_table(["platform"] + cols, [[r["platform"]] + [r.get(c) for c in cols] for r in ctx.platform_funnel["rows"]]) + "\n")
    if ctx.stage_funnel:
        parts.append("\nRows through each stage:\n\n")
        parts.append(
            _table(
                ["stage", "in", "out", "quarantined", "merged"],
                [[r["stage"], r["in"], r["out"], r["quarantined"], r["merged"]] for r in ctx.stage_funnel],
            )
            + "\n"
        )
    if ctx.task_mix:
        splits = list(ctx.task_mix)
        tasks = sorted({t for s in ctx.task_mix.values() for t in s})
        parts.append("\nSFT task mix (examples per split; splits are by user, so test users are unseen):\n\n")
        parts.append(_table(["task"] + splits, [[t] + [ctx.task_mix[s].get(t, 0) for s in splits] for t in tasks]) + "\n")
    if not (ctx.platform_funnel.get("rows") or ctx.stage_funnel or ctx.task_mix):
        parts.append("No upstream stage reports were found for this run.\n")

    parts.append("\n## Training\n")
    rows = [[k, v] for k, v in ctx.train_config.items()]
    rows += [[f"result: {k}", v] for k, v in ctx.train_report.items()]
    parts.append(_table(["setting", "value"], rows) + "\n" if rows else "No training report was found.\n")

    parts.append("\n## Evaluation\n")
    models = (ctx.eval_report or {}).get("models") or {}
    if models:
        erows = []
        for label, m in models.items():
            overall = m.get("overall") or {}
            item = m.get("item_selection") or {}
            erows.append([label, _fmt_ci(overall, "loss"), _fmt_ci(overall, "perplexity"), _fmt_ci(item, "accuracy") if item else "–"])
        parts.append("Held-out users (test split); 95% bootstrap confidence intervals:\n\n")
        parts.append(_table(["model", "loss", "perplexity", "item-selection accuracy"], erows) + "\n")
        benchmarks = (ctx.eval_report or {}).get("benchmarks") or {}
        if benchmarks:
            labels = list(models)
            brows = [[family, b.get("items")] + [_fmt_ci(b["models"].get(l) or {}, "accuracy") for l in labels]
                     for family, b in benchmarks.items()]
            parts.append("\nOut-of-domain multiple-choice accuracy:\n\n")
            parts.append(_table(["benchmark", "items"] + labels, brows) + "\n")
    else:
        parts.append("Not evaluated yet when this version was published; see the run's `eval/report.html`.\n")

    parts.append("\n## Limitations\n")
    parts.append(
        "- Simulates patterns in the training users' public posts; it does not know real people and its "
        "outputs are plausible fiction, not facts about anyone.\n"
        "- Users are skewed towards the platforms and periods of the source corpora (English only); "
        "behaviour of under-represented groups is simulated less faithfully.\n"
        "- Synthetic profiles, stories and QA were written by an LLM and filtered by an LLM judge; errors "
        "of both carry over.\n"
        "- The embedded demo configuration trains a tiny model for minutes on CPU: it shows the pipeline, "
        "not the paper's quality.\n"
    )
    parts.append("\n## Privacy\n")
    parts.append(
        "Source records were filtered (deleted/bot/corporate authors dropped), cleaned of URLs and "
        "@mentions, and real names in generated text replaced with placeholders (PersonA, PersonB); user "
        "ids are salted pseudonymous hashes. Residual personal information from public posts may remain "
        "in what the model learned: do not prompt it to reveal or reconstruct information about real, "
        "identifiable people, and honour deletion requests by retraining without the user.\n"
    )
    parts.append("\n## Verification\n")
    parts.append(
        "`manifest.json` lists the sha256 and size of every file in this folder and was written after "
        "them; `humanllm verify <uri>` re-hashes everything, and `humanllm load <uri>` downloads a "
        "verified copy.\n"
    )
    text = "".join(parts)
    # One blank line around every heading, whatever the sections above ended with.
    text = re.sub(r"\n*^(#{1,6} .*)$\n*", r"\n\n\1\n\n", text, flags=re.M)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _short(uri: str) -> str:
    # Local cache paths are long and machine-specific; keep the recognisable tail.
    if "://" in uri:
        return uri
    parts = uri.rstrip("/").split("/")
    return "/".join(parts[-3:]) if len(parts) > 3 else uri
