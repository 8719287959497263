"""bench/curate/run.py on a tiny generated corpus: its one-process path must keep running the
stage modules' current functions (it broke once, unnoticed, when dedup started counting links
with ``Dataset.count``), and both paths must keep exactly the same records."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_pair_runs_and_both_paths_agree(tmp_path):
    out = tmp_path / "pair.json"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", "curate", "run.py"), "--sizes", "3000",
                           "--ceiling-repeats", "0", "--data-root", str(tmp_path / "data"),
                           "--work", str(tmp_path / "work"), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    size = json.loads(out.read_text())["sizes"][0]
    assert size["check"]["same"] is True, size["check"]
    assert {r["mode"] for r in size["runs"]} == {"ray", "local"}
    ray_run = next(r for r in size["runs"] if r["mode"] == "ray")
    assert ray_run["curate"]["rows_out"] > 0 and ray_run["curate"]["dedup"]["candidate_links"] > 0
