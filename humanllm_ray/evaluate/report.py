"""Evaluation outputs: report.json, PNG plots and a single-page report.html.

The HTML page is self-contained (CSS inline, images embedded as data URIs), so it reads
the same opened from a laptop, an S3 console download or a CI artifact.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from typing import Any, Dict, List, Optional

from .. import storage
from ..runtime import RunPaths
from ..stage import StageDir

log = logging.getLogger("humanllm")

LOSS_PLOT = "loss_by_task.png"
ACCURACY_PLOT = "item_selection_accuracy.png"
LOSS_CURVE = "loss_curve.png"
GAIN_PLOT = "personalization_gain.png"
PALETTE = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860"]


def _err(value: Optional[float], ci: Optional[List[float]]) -> List[float]:
    if value is None or not ci:
        return [0.0, 0.0]
    return [max(value - ci[0], 0.0), max(ci[1] - value, 0.0)]


def loss_plot(evaluation: Dict[str, Any]) -> Optional[bytes]:
    """Grouped bars: held-out loss per task (and overall) per model, CI error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    models = evaluation["models"]
    tasks = list(evaluation["tasks"]) + ["overall"]
    if not models or not evaluation["tasks"]:
        return None
    width = 0.8 / len(models)
    x = np.arange(len(tasks))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(tasks) + 2), 4.0), dpi=110)
    for k, (label, m) in enumerate(models.items()):
        cells = [m["by_task"].get(t, {}) if t != "overall" else m["overall"] for t in tasks]
        values = [c.get("loss") or 0.0 for c in cells]
        errs = np.array([_err(c.get("loss"), c.get("loss_ci")) for c in cells]).T
        ax.bar(x + (k - (len(models) - 1) / 2) * width, values, width, yerr=errs, capsize=3,
               label=label, color=PALETTE[k % len(PALETTE)])
    ax.set_xticks(x)
    ax.set_xticklabels([t.replace("_", " ") for t in tasks], rotation=15, ha="right")
    ax.set_ylabel("loss (nats / answer token)")
    ax.set_title(f"Held-out loss by task ({int(evaluation['confidence'] * 100)}% bootstrap CI); lower is better", pad=28)
    ax.legend(frameon=False, ncol=len(models), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _png(fig)


def accuracy_plot(evaluation: Dict[str, Any]) -> Optional[bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(label, m["item_selection"]) for label, m in evaluation["models"].items() if m.get("item_selection")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(rows) + 2.5), 3.8), dpi=110)
    for k, (label, acc) in enumerate(rows):
        ax.bar(k, acc["accuracy"], 0.6, yerr=[[v] for v in _err(acc["accuracy"], acc["accuracy_ci"])], capsize=4,
               color=PALETTE[k % len(PALETTE)])
    chance = rows[0][1]["chance"]
    ax.axhline(chance, color="#555", linestyle="--", linewidth=1)
    ax.text(len(rows) - 0.5, chance, f" chance {chance:.2f}", va="bottom", ha="right", color="#555", fontsize=9)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r[0] for r in rows])
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title("Item selection accuracy")
    ax.set_xlabel("pick = most likely answer among the candidates", fontsize=9, color="#555")
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _png(fig)


def gain_plot(evaluation: Dict[str, Any]) -> Optional[bytes]:
    """Grouped bars: personalization gain per task (and overall) per model, CI error bars."""
    pers = evaluation.get("personalization") or {}
    models = pers.get("models") or {}
    tasks = list(pers.get("tasks") or {})
    if not models or not tasks:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    groups = tasks + ["overall"]
    width = 0.8 / len(models)
    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.8 * len(groups) + 2), 3.8), dpi=110)
    for k, (label, m) in enumerate(models.items()):
        cells = [(m.get("by_task") or {}).get(g, {}) if g != "overall" else (m.get("overall") or {}) for g in groups]
        values = [c.get("gain") or 0.0 for c in cells]
        errs = np.array([_err(c.get("gain"), c.get("gain_ci")) for c in cells]).T
        ax.bar(x + (k - (len(models) - 1) / 2) * width, values, width, yerr=errs, capsize=3,
               label=label, color=PALETTE[k % len(PALETTE)])
    ax.axhline(0, color="#555", linewidth=1)
    ax.set_xticks(x)
    ax.set_xticklabels([g.replace("_", " ") for g in groups], rotation=10, ha="right")
    ax.set_ylabel("loss without − loss with (nats/token)")
    ax.set_title(f"Personalization gain ({int(evaluation['confidence'] * 100)}% bootstrap CI); higher = uses the person more", pad=28)
    ax.legend(frameon=False, ncol=len(models), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return _png(fig)


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_outputs(stage_dir: StageDir, evaluation: Dict[str, Any], paths: RunPaths) -> Dict[str, Any]:
    """Write report.json, the plots, the copied training loss curve and report.html."""
    from ..publish.lineage import platform_funnel, stage_funnel, stage_reports

    images: Dict[str, bytes] = {}
    for name, make in ((LOSS_PLOT, loss_plot), (ACCURACY_PLOT, accuracy_plot), (GAIN_PLOT, gain_plot)):
        png = make(evaluation)
        if png:
            images[name] = png
    curve_uri = storage.join(paths.train, LOSS_CURVE)
    if storage.exists(curve_uri):
        images[LOSS_CURVE] = storage.read_bytes(curve_uri)
    for name, png in images.items():
        storage.write_bytes(stage_dir.path(name), png)

    reports = stage_reports(paths)
    evaluation = dict(evaluation, plots=sorted(images))
    storage.write_json(stage_dir.path("report.json"), evaluation)
    page = render_html(evaluation, images, funnel_by_platform(reports, platform_funnel), stage_funnel(reports), reports.get("train"))
    storage.write_text(stage_dir.path("report.html"), page)
    return {
        "report_json": stage_dir.path("report.json"),
        "report_html": stage_dir.path("report.html"),
        "plots": [stage_dir.path(n) for n in sorted(images)],
    }


def funnel_by_platform(reports: Dict[str, Any], platform_funnel) -> Dict[str, Any]:
    """The per-platform record funnel (raw records, then each stage's output) plus, where the
    curate report gives it, the number of users kept per platform."""
    funnel = platform_funnel(reports)
    curated = (reports.get("curated") or {}).get("by_platform") or {}
    users = {p: c.get("users") for p, c in curated.items() if isinstance(c, dict) and c.get("users") is not None}
    if users and funnel.get("rows"):
        funnel = {"columns": list(funnel["columns"]) + ["users after curate"],
                  "rows": [dict(r, **{"users after curate": users.get(r["platform"])}) for r in funnel["rows"]]}
    return funnel


# --------------------------------------------------------------------------- HTML

CSS = """
body{font:15px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1d2330;
 background:#f6f7f9;margin:0}
main{max-width:980px;margin:0 auto;padding:28px 20px 60px}
h1{font-size:24px;margin:0 0 4px}
h2{font-size:18px;margin:34px 0 10px;padding-bottom:4px;border-bottom:1px solid #dde1e7}
.sub{color:#667085;font-size:13px}
.headline{border-radius:10px;padding:18px 20px;margin:20px 0;font-size:17px;border-left:6px solid}
.lower{background:#e9f7ef;border-color:#2e9d5b}.higher{background:#fdecec;border-color:#c94a4a}
.indistinguishable,.none{background:#f1f3f6;border-color:#8a94a6}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{background:#fff;border:1px solid #e3e6eb;border-radius:10px;padding:12px 16px;min-width:170px;flex:1}
.card .label{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:#667085}
.card .big{font-size:26px;font-weight:600}
.card .ci{font-size:12px;color:#667085}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #e3e6eb;border-radius:8px;font-size:14px}
th,td{padding:7px 10px;text-align:right;border-bottom:1px solid #eef0f3}
th:first-child,td:first-child,th.l,td.l{text-align:left}
th{background:#fafbfc;font-weight:600}
td .ci{color:#8a94a6;font-size:12px}
.best{font-weight:600;color:#1f7a45}
img{max-width:100%;background:#fff;border:1px solid #e3e6eb;border-radius:8px;margin:8px 0}
.note{color:#667085;font-size:13px}
"""


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return html.escape(str(value))


def _with_ci(metric: Optional[Dict[str, Any]], key: str, best: bool = False) -> str:
    if not metric or metric.get(key) is None:
        return "–"
    ci = metric.get(f"{key}_ci")
    inner = _fmt(metric[key])
    if best:
        inner = f'<span class="best">{inner}</span>'
    if ci:
        inner += f' <span class="ci">[{_fmt(ci[0])}, {_fmt(ci[1])}]</span>'
    return inner


def _img(images: Dict[str, bytes], name: str, alt: str) -> str:
    if name not in images:
        return ""
    data = base64.b64encode(images[name]).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


class _Page:
    """HTML assembly with one <section id=...> per topic (tests and readers can find them)."""

    def __init__(self) -> None:
        self.out: List[str] = []
        self._open = False

    def section(self, sid: str, title: str) -> None:
        self.close()
        self.out.append(f"<section id='{sid}'><h2>{html.escape(title)}</h2>")
        self._open = True

    def close(self) -> None:
        if self._open:
            self.out.append("</section>")
            self._open = False

    def add(self, *parts: str) -> None:
        self.out.extend(p for p in parts if p)


def _ci_pair(ci: Optional[List[float]], signed: bool = False) -> str:
    if not ci:
        return ""
    f = (lambda v: f"{v:+.3f}") if signed else _fmt
    return f' <span class="ci">[{f(ci[0])}, {f(ci[1])}]</span>'


def _signed(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:+.3f}"


def _personalization_html(page: _Page, evaluation: Dict[str, Any], images: Dict[str, bytes], pct: int) -> None:
    pers = evaluation.get("personalization")
    if not pers:
        return
    models = pers["models"]
    page.section("personalization", "Personalization gain")
    page.add("<table><tr><th>task</th><th>examples (strippable)</th>"
             + "".join(f"<th>{html.escape(l)}</th>" for l in models) + "</tr>")
    tasks = list(pers["tasks"]) + ["overall"]
    for t in tasks:
        info = pers["tasks"].get(t)
        n = f"{info['examples']} ({info['strippable']})" if info else str(sum(v["strippable"] for v in pers["tasks"].values()))
        cells = []
        for m in models.values():
            g = m.get("overall") if t == "overall" else (m.get("by_task") or {}).get(t)
            if not g or g.get("gain") is None:
                cells.append("<td>–</td>")
                continue
            cls = {"helps": "best"}.get(g["verdict"], "")
            cells.append(f"<td><span class='{cls}'>{_signed(g['gain'])}</span>{_ci_pair(g['gain_ci'], True)}"
                         f"<br><span class=ci>with {_fmt(g['loss_with'])} · without {_fmt(g['loss_without'])}</span></td>")
        label = "<b>overall</b>" if t == "overall" else html.escape(t.replace("_", " "))
        page.add(f"<tr><td>{label}</td><td>{n}</td>{''.join(cells)}</tr>")
    page.add("</table>")
    comps = pers.get("comparisons") or {}
    if comps:
        page.add("<table style='margin-top:10px'><tr><th>gain difference</th>" + "".join(
            f"<th>{html.escape(t.replace('_', ' '))}</th>" for t in tasks) + "</tr>")
        for c in comps.values():
            row = []
            for t in tasks:
                d = c.get("overall") if t == "overall" else (c.get("by_task") or {}).get(t)
                row.append(f"<td>{_signed((d or {}).get('delta'))}{_ci_pair((d or {}).get('delta_ci'), True)}</td>")
            page.add(f"<tr><td>{html.escape(c['model'])} − {html.escape(c['reference'])}</td>{''.join(row)}</tr>")
        page.add("</table>")
    page.add(f"<p class=note>gain = loss of the person's real text (assistant turn) after a generic prompt − its loss after "
             f"the prompt with their persona/history, nats per token; {pct}% paired bootstrap CI over examples. Positive = "
             f"the model uses what it knows about the person. {html.escape(pers['method'])}</p>")
    page.add(_img(images, GAIN_PLOT, "personalization gain by task"))


def _style_html(page: _Page, evaluation: Dict[str, Any]) -> None:
    style = evaluation.get("style")
    if not style:
        return
    page.section("style", "Style similarity")
    page.add("<table><tr><th>model</th><th class=l>task</th><th>n</th><th>char 3-gram (own)</th><th>other user</th><th>lift</th>"
             "<th>function words (own)</th><th>other user</th><th>lift</th></tr>")
    for label, m in style["models"].items():
        for t, c in m["by_task"].items():
            cells = []
            for measure in ("char3", "function_words"):
                own, other, lift = c[measure], c[f"{measure}_other"], c[f"{measure}_lift"]
                cells.append(f"<td>{_fmt(own['mean'])}{_ci_pair(own['mean_ci'])}</td><td>{_fmt(other['mean'])}</td>"
                             f"<td>{_signed(lift['delta'])}{_ci_pair(lift['delta_ci'], True)}</td>")
            page.add(f"<tr><td>{html.escape(label)}</td><td class=l>{html.escape(t.replace('_', ' '))}</td><td>{c['examples']}</td>{''.join(cells)}</tr>")
    page.add("</table>")
    page.add(f"<p class=note>{html.escape(style['method'])}</p>")
    samples = [(label, s) for label, m in style["models"].items() for s in m.get("samples", [])][:4]
    if samples:
        page.add("<table><tr><th>model / task</th><th style='text-align:left'>generation</th><th style='text-align:left'>real text</th></tr>")
        for label, s in samples:
            page.add(f"<tr><td>{html.escape(label)} · {html.escape(s['task'].replace('_', ' '))}</td>"
                     f"<td style='text-align:left'>{html.escape(s['generation'][:240])}</td>"
                     f"<td style='text-align:left'>{html.escape(s['real'][:240])}</td></tr>")
        page.add("</table>")


def _judge_html(page: _Page, evaluation: Dict[str, Any]) -> None:
    judge = evaluation.get("judge")
    if not judge:
        return
    page.section("judge", "LLM-judge scores")
    if judge.get("noise"):
        page.add("<p class=note><b>The judge is the untrained embedded tiny model: these scores are noise.</b> "
                 "Set model.base / synth.engine to a real judge.</p>")
    page.add("<table><tr><th>model</th><th class=l>task</th><th>items</th><th>unparsed</th>"
             + "".join(f"<th>{html.escape(d.replace('_', ' '))} (1–5)</th>" for d in judge["dimensions"]) + "</tr>")
    for label, by_task in judge["models"].items():
        for t, c in by_task.items():
            page.add(f"<tr><td>{html.escape(label)}</td><td class=l>{html.escape(t.replace('_', ' '))}</td><td>{c['items']}</td>"
                     f"<td>{c['unparsed']}</td>" + "".join(
                         f"<td>{_fmt(c[d]['mean'], 2)}{_ci_pair(c[d]['mean_ci'])}</td>" for d in judge["dimensions"]) + "</tr>")
    page.add(f"</table><p class=note>Judge engine {html.escape(str(judge['engine']))}; each model answers greedily, the judge "
             "compares the answer with the reference (the person's real answer, or the profile built from their posts).</p>")


def _checklists_html(page: _Page, evaluation: Dict[str, Any]) -> None:
    ck = evaluation.get("checklists")
    if not ck:
        return
    page.section("checklists", "Role-play checklists")
    if ck.get("noise"):
        page.add("<p class=note><b>The judge is the untrained embedded tiny model: these scores are noise.</b></p>")
    page.add(f"<p>{ck['scenarios']} scenario(s), {ck['characters']} character(s) from {html.escape(', '.join(ck['splits']))}; "
             f"judge: <b>{html.escape(ck['judge_description'])}</b></p>")
    page.add("<table><tr><th>turns by</th><th>characters</th><th>turns</th><th>scenario-level</th><th>pattern-level</th>"
             "<th>all items</th><th>turn rate</th></tr>")
    for source, e in ck["sources"].items():
        name = "reference (dataset turns)" if source == "reference" else source
        cells = "".join(f"<td>{_fmt(e[l]['score'])}{_ci_pair(e[l]['score_ci'])}<br><span class=ci>{e[l]['satisfied']}/{e[l]['judged']} items</span></td>"
                        for l in ("scenario", "pattern", "all"))
        page.add(f"<tr><td>{html.escape(name)}</td><td>{e['characters']}</td><td>{e['turns']}</td>{cells}"
                 f"<td>{_fmt(e['all']['turn_rate'])}</td></tr>")
    page.add("</table><p class=note>Per character: share of its checklist items the judge finds shown in at least one of "
             "its turns (thought [..], action (..), speech); mean over characters with a bootstrap CI. Turn rate = share of "
             "(turn, item) pairs answered yes.</p>")


def render_html(
    evaluation: Dict[str, Any],
    images: Dict[str, bytes],
    platforms: Dict[str, Any],
    stages: List[Dict[str, Any]],
    train_report: Optional[Dict[str, Any]] = None,
) -> str:
    models = evaluation["models"]
    tasks = list(evaluation["tasks"])
    pct = int(round(evaluation["confidence"] * 100))
    head = evaluation["headline"]
    page = _Page()
    page.add(
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width,initial-scale=1'>",
        "<title>HumanLLM evaluation</title><style>", CSS, "</style></head><body><main>",
        "<h1>HumanLLM evaluation</h1>",
        f"<div class=sub>{evaluation['examples']:,} held-out examples (test users never seen in training) · "
        f"{len(tasks)} task(s) · {pct}% bootstrap CIs over examples ({evaluation['bootstrap_samples']:,} resamples) · "
        f"{html.escape(str(evaluation.get('created_at', '')))}</div>",
        f"<div id='headline' class='headline {html.escape(head['verdict'])}'>{html.escape(head['text'])}"
        + (f"<div class=sub style='margin-top:6px'>{html.escape(head['personalization'])}</div>" if head.get("personalization") else "")
        + "</div>",
    )

    # At-a-glance cards, one per model.
    page.add("<div class=cards>")
    for label, m in models.items():
        o = m["overall"]
        acc = m.get("item_selection")
        extra = ""
        if acc:
            extra = f"<div class=ci>item selection {_fmt(acc['accuracy'], 2)} (chance {_fmt(acc['chance'], 2)})</div>"
        gain = (((evaluation.get("personalization") or {}).get("models") or {}).get(label) or {}).get("overall") or {}
        if gain.get("gain") is not None:
            extra += f"<div class=ci>personalization gain {_signed(gain['gain'])}</div>"
        page.add(
            f"<div class=card><div class=label>{html.escape(label)}</div>"
            f"<div class=big>{_fmt(o['loss'])}</div>"
            f"<div class=ci>loss [{_fmt((o.get('loss_ci') or [None])[0])}, {_fmt((o.get('loss_ci') or [None, None])[1])}] · "
            f"perplexity {_fmt(o['perplexity'], 1)}</div>{extra}</div>"
        )
    page.add("</div>")

    comparisons = evaluation.get("comparisons") or {}
    if comparisons:
        page.section("comparisons", "Paired comparisons")
        page.add("<table><tr><th>model vs reference</th><th>Δ loss</th>"
                 f"<th>{pct}% CI</th><th>verdict</th></tr>")
        for c in comparisons.values():
            verdict = {"lower": "better (lower loss)", "higher": "worse (higher loss)"}.get(c["verdict"], c["verdict"])
            ci = c.get("delta_ci") or [None, None]
            page.add(
                f"<tr><td>{html.escape(c['model'])} vs {html.escape(c['reference'])}</td><td>{_fmt(c['delta'])}</td>"
                f"<td>[{_fmt(ci[0])}, {_fmt(ci[1])}]</td><td>{html.escape(verdict)}</td></tr>"
            )
        page.add("</table><p class=note>Δ = loss(model) − loss(reference) on the same examples; the CI resamples "
                 "examples jointly for both models.</p>")

    page.section("loss-by-task", "Held-out loss by task")
    page.add("<table><tr><th>task</th><th>examples</th>" + "".join(f"<th>{html.escape(l)}</th>" for l in models) + "</tr>")
    for t in tasks + ["overall"]:
        cells = [m["overall"] if t == "overall" else m["by_task"].get(t) for m in models.values()]
        values = [c["loss"] for c in cells if c and c.get("loss") is not None]
        best = min(values) if len(values) > 1 else None
        n = evaluation["tasks"].get(t, evaluation["examples"]) if t != "overall" else evaluation["examples"]
        row = "".join(f"<td>{_with_ci(c, 'loss', best is not None and c and c.get('loss') == best)}</td>" for c in cells)
        label = "<b>overall</b>" if t == "overall" else html.escape(t.replace("_", " "))
        page.add(f"<tr><td>{label}</td><td>{_fmt(n)}</td>{row}</tr>")
    page.add("</table><p class=note>Mean negative log-likelihood per answer token (assistant turns only), in nats; "
             "perplexity = e<sup>loss</sup>. Best per row in green.</p>")
    page.add(_img(images, LOSS_PLOT, "held-out loss by task"))

    _personalization_html(page, evaluation, images, pct)
    _style_html(page, evaluation)
    _judge_html(page, evaluation)

    if any(m.get("item_selection") for m in models.values()):
        page.section("item-selection", "Item selection")
        page.add("<table><tr><th>model</th><th>accuracy</th><th>chance</th><th>examples</th></tr>")
        for label, m in models.items():
            acc = m.get("item_selection")
            if acc:
                page.add(f"<tr><td>{html.escape(label)}</td><td>{_with_ci(acc, 'accuracy')}</td>"
                         f"<td>{_fmt(acc['chance'])}</td><td>{_fmt(acc['examples'])}</td></tr>")
        page.add("</table><p class=note>The pick is the candidate whose answer has the highest log-likelihood "
                 "under the model; chance = mean of 1 / number of candidates.</p>")
        page.add(_img(images, ACCURACY_PLOT, "item selection accuracy"))

    benchmarks = evaluation.get("benchmarks") or {}
    if benchmarks:
        page.section("benchmarks", "Out-of-domain benchmarks")
        page.add("<table><tr><th>benchmark</th><th>items</th>"
                 + "".join(f"<th>{html.escape(l)}</th>" for l in models) + "<th>chance</th></tr>")
        for family, b in benchmarks.items():
            cells = [b["models"].get(label) for label in models]
            chance = next((c["chance"] for c in cells if c and c.get("chance") is not None), None)
            page.add(f"<tr><td>{html.escape(family)}</td><td>{_fmt(b['items'])}</td>"
                     + "".join(f"<td>{_with_ci(c, 'accuracy')}</td>" for c in cells) + f"<td>{_fmt(chance)}</td></tr>")
        page.add("</table><p class=note>Multiple choice, asked zero-shot; the pick is the option letter with the "
                 "highest next-token probability.</p>")

    _checklists_html(page, evaluation)

    if LOSS_CURVE in images or train_report:
        page.section("training", "Training")
        if train_report:
            facts = [(k, train_report.get(k)) for k in ("steps", "loss_first", "loss_last", "zero_stage", "num_workers")]
            page.add("<p>" + " · ".join(f"{html.escape(k)} <b>{_fmt(v)}</b>" for k, v in facts if v is not None) + "</p>")
        page.add(_img(images, LOSS_CURVE, "training loss curve"))

    page.section("funnel", "Data funnel by platform")
    if platforms.get("rows"):
        cols = platforms["columns"]
        page.add("<table><tr><th>platform</th>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>")
        for r in platforms["rows"]:
            page.add(f"<tr><td>{html.escape(r['platform'])}</td>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>")
        page.add("</table><p class=note>Raw records read by ingest, then what each stage kept (curate: records; "
                 "synthesize/qc: synthesized items; build-tasks: examples), from the stages' _report.json.</p>")
    else:
        page.add("<p class=note>No stage under this run root reported per-platform counts (ingest/curate did not run here).</p>")
    if stages:
        page.section("pipeline", "Pipeline")
        page.add("<table><tr><th>stage</th><th>in</th><th>out</th><th>quarantined</th><th>merged</th></tr>")
        for st in stages:
            page.add(f"<tr><td>{html.escape(st['stage'])}</td><td>{_fmt(st['in'])}</td><td>{_fmt(st['out'])}</td>"
                     f"<td>{_fmt(st['quarantined'])}</td><td>{_fmt(st['merged'])}</td></tr>")
        page.add("</table>")

    page.section("models", "Models")
    page.add("<table><tr><th>model</th><th>source</th></tr>")
    for label, m in models.items():
        page.add(f"<tr><td>{html.escape(label)}</td><td style='text-align:left'>{html.escape(str(m['source']))}</td></tr>")
    page.add("</table>")
    page.close()
    page.add("</main></body></html>")
    return "\n".join(page.out)
