"""report.html as a browser shows it: an evaluate run on a tiny fixture (every optional part
switched on: personalization, style, the LLM judge on 1 item per task, checklists with the
keyword baseline judge), then headless Chromium renders the page: its sections are there,
the per-platform funnel shows the ingest/curate counts, and every <img> decoded and has a
non-empty box on the screenshot."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pyarrow as pa
import pytest

from humanllm_ray import evaluate, storage
from humanllm_ray.config import load_config
from humanllm_ray.stage import write_table

from test_evaluate import _test_split, chat
from test_merge import one_torch_thread, perturbed_copy  # noqa: F401 (autouse fixture)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "humanllm_patterns"
SECTIONS = ("headline", "loss-by-task", "personalization", "style", "judge", "item-selection", "checklists", "training", "funnel", "pipeline")
INGEST = {"amazon": {"in": 116, "out": 85, "quarantined": 0, "merged": 31}, "reddit": {"in": 87, "out": 80, "quarantined": 7, "merged": 0}}
CURATE = {"amazon": {"in": 85, "out": 61, "quarantined": 24, "users": 9}, "reddit": {"in": 80, "out": 52, "quarantined": 28, "users": 7}}
PROBE = """<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.map.call(document.images, function (i) {
    var r = i.getBoundingClientRect();
    return {alt: i.alt, complete: i.complete, natural: [i.naturalWidth, i.naturalHeight],
            box: [r.left, r.top, r.width, r.height], data_uri: i.src.indexOf('data:image/png;base64,') === 0};
  });
  var sections = Array.prototype.map.call(document.querySelectorAll('section,#headline'), function (s) {
    var r = s.getBoundingClientRect();
    return {id: s.id, height: r.height, visible: r.height > 0 && getComputedStyle(s).display !== 'none'};
  });
  var funnel = Array.prototype.map.call(document.querySelectorAll('#funnel tr'), function (tr) {
    return Array.prototype.map.call(tr.children, function (c) { return c.textContent.trim(); });
  });
  var tables = {};
  Array.prototype.forEach.call(document.querySelectorAll('table'), function (t) {
    var s = t.closest('section');
    var key = s ? s.id : '(outside any section)';
    tables[key] = (tables[key] || 0) + 1;
  });
  var headings = {};
  Array.prototype.forEach.call(document.querySelectorAll('section'), function (s) {
    var first = s.firstElementChild;
    headings[s.id] = first && first.tagName === 'H2' ? first.textContent : null;
  });
  var out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({title: document.title, imgs: imgs, sections: sections, funnel: funnel, tables: tables, headings: headings,
                                    height: document.documentElement.scrollHeight});
  document.body.appendChild(out);
});
</script>"""


def chromium_binary():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _chromium(args, timeout=180):
    exe = chromium_binary()
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", "--force-device-scale-factor=1", f"--user-data-dir={profile}", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def rendered_run(tiny_model_dir, tmp_path_factory):
    """An evaluate run with every report section, on the tiny model and a perturbed copy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = tmp_path_factory.mktemp("render") / "run"
    rows = _test_split(str(root))
    extra = [dict(example_id="ex900", task="profile_generation", variant="posts_to_persona", user_id="u9", platform="reddit",
                  split="test", meta="{}",
                  messages=chat("Posts by one person:\n\n[1] Night shifts again. The owls keep me company.\n\nDescribe this person.",
                                "A night-shift nurse who loves birds and keeps a dry sense of humour."))]
    write_table(pa.Table.from_pylist(extra, schema=pa.Table.from_pylist(rows).schema), str(root / "tasks" / "test" / "part-1.parquet"))
    perturbed_copy(tiny_model_dir, str(root / "merged" / "model"), seed=5, scale=0.02)
    for folder, stage, by_platform in (("ingested", "ingest", INGEST), ("curated", "curate", CURATE)):
        rin = sum(v["in"] for v in by_platform.values())
        rout = sum(v["out"] for v in by_platform.values())
        rq = sum(v["quarantined"] for v in by_platform.values())
        storage.write_json(str(root / folder / "_report.json"), {"stage": stage, "rows_in": rin, "rows_out": rout, "rows_quarantined": rq,
                                                                 "rows_merged": rin - rout - rq, "by_platform": by_platform})
    os.makedirs(root / "train", exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot([5.1, 4.2, 3.3, 3.0])
    fig.savefig(root / "train" / "loss_curve.png")
    plt.close(fig)
    storage.write_json(str(root / "train" / "_report.json"), {"stage": "train", "rows_in": 10, "rows_out": 10, "rows_quarantined": 0,
                                                              "rows_merged": 0, "steps": 4, "loss_first": 5.1, "loss_last": 3.0,
                                                              "zero_stage": 2, "num_workers": 2})
    cfg = load_config(overrides=[
        f"run.root={root}", "run.progress=false", "eval.compare=[base,merged]", "eval.bootstrap_samples=100",
        "eval.batch_size=4", "eval.style_max_new_tokens=12", "eval.judge=true", "eval.judge_max_items=1",
        "eval.judge_answer_max_new_tokens=12", "eval.judge_max_new_tokens=64", f"eval.checklists={FIXTURES}",
        "eval.checklist_judge=keyword", "eval.checklist_max_scenarios=1", "eval.checklist_max_turns=1",
        "eval.checklist_max_new_tokens=16",
    ])
    report = evaluate.run(cfg)
    return root, report


def test_report_json_has_the_new_metrics(rendered_run):
    root, report = rendered_run
    result = json.loads((root / "eval" / "report.json").read_text())
    assert report["rows_out"] == 12 and report["checklist_turns"] == 2 * 2  # Lena + Marcus, 1 turn each, 2 models
    for label in ("base", "merged"):
        g = result["personalization"]["models"][label]["overall"]
        assert g["examples"] == 5 and g["gain_ci"][0] <= g["gain"] <= g["gain_ci"][1]
        assert set(result["style"]["models"][label]["by_task"]) == {"writing_imitation", "personalized_commenting"}
        judged = result["judge"]["models"][label]
        assert set(judged) == {"social_qa", "profile_generation"}
        for cell in judged.values():
            assert cell["items"] == 1 and cell["unparsed"] == 0  # schema-constrained: the reply parses
            assert 1 <= cell["consistency"]["mean"] <= 5 and 1 <= cell["persona_fit"]["mean"] <= 5
    assert result["judge"]["noise"] is True  # the untrained tiny model judged: the report says so
    ck = result["checklists"]
    assert ck["judge"] == "keyword:0.5" and "not an LLM" in ck["judge_description"]
    assert ck["scenarios"] == 1 and ck["characters"] == 2 and set(ck["sources"]) == {"base", "merged", "reference"}
    ref = ck["sources"]["reference"]  # Lena's and Marcus's first dataset turns (see test_checklists)
    assert ref["all"]["satisfied"] == 1 and ref["all"]["judged"] == 7 and ref["all"]["score"] == pytest.approx((1 / 4 + 0) / 2)
    for name in ("scores.parquet", "judge.parquet", "checklists.parquet"):
        assert (root / "eval" / "data" / name).exists(), name


def test_report_renders_in_headless_chromium(rendered_run, tmp_path):
    if chromium_binary() is None:
        pytest.skip("no chromium/chrome binary on PATH (Debian: apt-get install chromium); the HTML is still checked by test_evaluate")
    root, _report = rendered_run
    page = (root / "eval" / "report.html").read_text()
    probe_html = tmp_path / "probe.html"
    probe_html.write_text(page.replace("</body>", PROBE + "</body>"))

    dom = _chromium(["--virtual-time-budget=10000", "--dump-dom", probe_html.as_uri()]).stdout
    start = dom.index('<pre id="probe">') + len('<pre id="probe">')
    probe = json.loads(dom[start : dom.index("</pre>", start)].replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    assert probe["title"] == "HumanLLM evaluation"
    visible = {s["id"] for s in probe["sections"] if s["visible"]}
    assert set(SECTIONS) <= visible, set(SECTIONS) - visible

    # Every table sits in its own section, under that section's heading (an unclosed <table>
    # would pull the next heading and notes out of place).
    assert page.count("<table") == page.count("</table>")
    assert probe["tables"] == {"comparisons": 1, "loss-by-task": 1, "personalization": 2, "style": 2, "judge": 1,
                               "item-selection": 1, "checklists": 1, "funnel": 1, "pipeline": 1, "models": 1}
    assert probe["headings"]["judge"] == "LLM-judge scores" and probe["headings"]["funnel"] == "Data funnel by platform"
    assert all(probe["headings"].values()), probe["headings"]

    # The funnel shows the per-platform counts from the ingest and curate reports.
    header, *rows = probe["funnel"]
    assert header == ["platform", "raw records", "after ingest", "after curate", "users after curate"]
    assert {r[0]: r[1:] for r in rows} == {"amazon": ["116", "85", "61", "9"], "reddit": ["87", "80", "52", "7"]}

    # Every image decoded (embedded data URI, non-zero natural size) and laid out with a box.
    imgs = probe["imgs"]
    assert {i["alt"] for i in imgs} == {"held-out loss by task", "personalization gain by task", "item selection accuracy", "training loss curve"}
    for img in imgs:
        assert img["data_uri"] and img["complete"] and min(img["natural"]) > 0, img
        assert img["box"][2] > 50 and img["box"][3] > 50, img

    # The screenshot: a full-height window so every image's box is on it; each box has ink.
    from PIL import Image

    height = int(min(probe["height"] + 40, 16000))
    shot = tmp_path / "report.png"
    _chromium(["--virtual-time-budget=10000", f"--window-size=1100,{height}", f"--screenshot={shot}", probe_html.as_uri()])
    image = Image.open(shot).convert("L")
    assert image.size == (1100, height)
    for img in imgs:
        left, top, width, h = img["box"]
        region = image.crop((int(left), int(top), int(left + width), int(top + h)))
        lo, hi = region.getextrema()
        assert hi - lo > 100, (img["alt"], region.getextrema())  # a plot, not a blank box
    assert Image.open(shot).convert("L").getextrema() != (255, 255)
