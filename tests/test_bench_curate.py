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


def test_shuffle_index_replay_runs_both_layouts(tmp_path):
    """bench/curate/shuffleindex.py (the driver's memory for a shuffle's index: per-piece rows,
    per-file lists, built in a task) at a tiny shape: every layout gathers every piece."""
    out = tmp_path / "replay.json"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", "curate", "shuffleindex.py"), "--maps", "6",
                           "--parts", "16", "--repeats", "1", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert sorted(r["layout"] for r in got) == ["lists", "rows", "task"]
    assert all(r["pieces"] == 6 * 16 and r["partitions"] == 16 and r["index_mb"] > 0 for r in got)


def test_memprofile_samples_the_run_from_outside_the_driver(tmp_path):
    """bench/curate/memprofile.py at 3k records: the phases and the samples come back, every
    sample has the driver, and the sampler (a process of its own) is not in what it measures."""
    out = tmp_path / "mem.json"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", "curate", "memprofile.py"), "--n", "3000",
                           "--every", "0.5", "--data-root", str(tmp_path / "data"), "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads(out.read_text())
    assert set(got["phases"]) == {"ray_up", "ingest_done", "curate_done"} and len(got["samples"]) >= 3
    for sample in got["samples"]:
        names = [p["name"] for p in sample["procs"]]
        assert "driver" in names and not any("--sampler" in n for n in names)
    assert "peak PSS" in proc.stdout
    # the stages' log lines cut the run into its four phases, in order, each with a peak
    sys.path.insert(0, os.path.join(REPO, "bench", "curate"))
    import memprofile

    cut = memprofile.phase_peaks(got["samples"], got["phases"], got["marks"])
    assert [c[0] for c in cut] == ["ingest", "record pass", "dedup", "route + timelines"]
    assert all(a[2] == b[1] for a, b in zip(cut, cut[1:])) and cut[-1][2] <= got["phases"]["curate_done"]
    assert "peak PSS by phase" in proc.stdout and "route + timelines" in proc.stdout
