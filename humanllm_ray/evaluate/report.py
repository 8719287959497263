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
    for name, make in ((LOSS_PLOT, loss_plot), (ACCURACY_PLOT, accuracy_plot)):
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
    page = render_html(evaluation, images, platform_funnel(reports), stage_funnel(reports), reports.get("train"))
    storage.write_text(stage_dir.path("report.html"), page)
    return {
        "report_json": stage_dir.path("report.json"),
        "report_html": stage_dir.path("report.html"),
        "plots": [stage_dir.path(n) for n in sorted(images)],
    }


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
th:first-child,td:first-child{text-align:left}
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
    out: List[str] = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width,initial-scale=1'>",
        "<title>HumanLLM evaluation</title><style>", CSS, "</style></head><body><main>",
        "<h1>HumanLLM evaluation</h1>",
        f"<div class=sub>{evaluation['examples']:,} held-out examples (test users never seen in training) · "
        f"{len(tasks)} task(s) · {pct}% bootstrap CIs over examples ({evaluation['bootstrap_samples']:,} resamples) · "
        f"{html.escape(str(evaluation.get('created_at', '')))}</div>",
        f"<div class='headline {html.escape(head['verdict'])}'>{html.escape(head['text'])}</div>",
    ]

    # At-a-glance cards, one per model.
    out.append("<div class=cards>")
    best_loss = min((m["overall"]["loss"] for m in models.values() if m["overall"]["loss"] is not None), default=None)
    for label, m in models.items():
        o = m["overall"]
        acc = m.get("item_selection")
        extra = ""
        if acc:
            extra = f"<div class=ci>item selection {_fmt(acc['accuracy'], 2)} (chance {_fmt(acc['chance'], 2)})</div>"
        out.append(
            f"<div class=card><div class=label>{html.escape(label)}</div>"
            f"<div class=big>{_fmt(o['loss'])}</div>"
            f"<div class=ci>loss [{_fmt((o.get('loss_ci') or [None])[0])}, {_fmt((o.get('loss_ci') or [None, None])[1])}] · "
            f"perplexity {_fmt(o['perplexity'], 1)}</div>{extra}</div>"
        )
    out.append("</div>")

    comparisons = evaluation.get("comparisons") or {}
    if comparisons:
        out.append("<h2>Paired comparisons</h2><table><tr><th>model vs reference</th><th>Δ loss</th>"
                   f"<th>{pct}% CI</th><th>verdict</th></tr>")
        for c in comparisons.values():
            verdict = {"lower": "better (lower loss)", "higher": "worse (higher loss)"}.get(c["verdict"], c["verdict"])
            ci = c.get("delta_ci") or [None, None]
            out.append(
                f"<tr><td>{html.escape(c['model'])} vs {html.escape(c['reference'])}</td><td>{_fmt(c['delta'])}</td>"
                f"<td>[{_fmt(ci[0])}, {_fmt(ci[1])}]</td><td>{html.escape(verdict)}</td></tr>"
            )
        out.append("</table><p class=note>Δ = loss(model) − loss(reference) on the same examples; the CI resamples "
                   "examples jointly for both models.</p>")

    out.append("<h2>Held-out loss by task</h2>")
    out.append("<table><tr><th>task</th><th>examples</th>" + "".join(f"<th>{html.escape(l)}</th>" for l in models) + "</tr>")
    for t in tasks + ["overall"]:
        cells = [m["overall"] if t == "overall" else m["by_task"].get(t) for m in models.values()]
        values = [c["loss"] for c in cells if c and c.get("loss") is not None]
        best = min(values) if len(values) > 1 else None
        n = evaluation["tasks"].get(t, evaluation["examples"]) if t != "overall" else evaluation["examples"]
        row = "".join(f"<td>{_with_ci(c, 'loss', best is not None and c and c.get('loss') == best)}</td>" for c in cells)
        label = "<b>overall</b>" if t == "overall" else html.escape(t.replace("_", " "))
        out.append(f"<tr><td>{label}</td><td>{_fmt(n)}</td>{row}</tr>")
    out.append("</table><p class=note>Mean negative log-likelihood per answer token (assistant turns only), in nats; "
               "perplexity = e<sup>loss</sup>. Best per row in green.</p>")
    out.append(_img(images, LOSS_PLOT, "held-out loss by task"))

    if any(m.get("item_selection") for m in models.values()):
        out.append("<h2>Item selection</h2><table><tr><th>model</th><th>accuracy</th><th>chance</th><th>examples</th></tr>")
        for label, m in models.items():
            acc = m.get("item_selection")
            if acc:
                out.append(f"<tr><td>{html.escape(label)}</td><td>{_with_ci(acc, 'accuracy')}</td>"
                           f"<td>{_fmt(acc['chance'])}</td><td>{_fmt(acc['examples'])}</td></tr>")
        out.append("</table><p class=note>The pick is the candidate whose answer has the highest log-likelihood "
                   "under the model; chance = mean of 1 / number of candidates.</p>")
        out.append(_img(images, ACCURACY_PLOT, "item selection accuracy"))

    benchmarks = evaluation.get("benchmarks") or {}
    if benchmarks:
        out.append("<h2>Out-of-domain benchmarks</h2><table><tr><th>benchmark</th><th>items</th>"
                   + "".join(f"<th>{html.escape(l)}</th>" for l in models) + "<th>chance</th></tr>")
        for family, b in benchmarks.items():
            cells = [b["models"].get(label) for label in models]
            chance = next((c["chance"] for c in cells if c and c.get("chance") is not None), None)
            out.append(f"<tr><td>{html.escape(family)}</td><td>{_fmt(b['items'])}</td>"
                       + "".join(f"<td>{_with_ci(c, 'accuracy')}</td>" for c in cells) + f"<td>{_fmt(chance)}</td></tr>")
        out.append("</table><p class=note>Multiple choice, asked zero-shot; the pick is the option letter with the "
                   "highest next-token probability.</p>")

    if LOSS_CURVE in images or train_report:
        out.append("<h2>Training</h2>")
        if train_report:
            facts = [(k, train_report.get(k)) for k in ("steps", "loss_first", "loss_last", "zero_stage", "num_workers")]
            out.append("<p>" + " · ".join(f"{html.escape(k)} <b>{_fmt(v)}</b>" for k, v in facts if v is not None) + "</p>")
        out.append(_img(images, LOSS_CURVE, "training loss curve"))

    if platforms.get("rows"):
        cols = platforms["columns"]
        out.append("<h2>Data funnel by platform</h2><table><tr><th>platform</th>"
                   + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>")
        for r in platforms["rows"]:
            out.append(f"<tr><td>{html.escape(r['platform'])}</td>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>")
        out.append("</table>")
    if stages:
        out.append("<h2>Pipeline</h2><table><tr><th>stage</th><th>in</th><th>out</th><th>quarantined</th><th>merged</th></tr>")
        for s in stages:
            out.append(f"<tr><td>{html.escape(s['stage'])}</td><td>{_fmt(s['in'])}</td><td>{_fmt(s['out'])}</td>"
                       f"<td>{_fmt(s['quarantined'])}</td><td>{_fmt(s['merged'])}</td></tr>")
        out.append("</table>")

    out.append("<h2>Models</h2><table><tr><th>model</th><th>source</th></tr>")
    for label, m in models.items():
        out.append(f"<tr><td>{html.escape(label)}</td><td style='text-align:left'>{html.escape(str(m['source']))}</td></tr>")
    out.append("</table></main></body></html>")
    return "\n".join(out)
