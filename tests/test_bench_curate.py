"""bench/curate/run.py on a tiny generated corpus: its one-process path must keep running the
stage modules' current functions (it broke once, unnoticed, when dedup started counting links
with ``Dataset.count``), and both paths must keep exactly the same records."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_pair_runs_and_both_paths_agree(tmp_path):
    """A pair at 3k records; --set reaches the stages (idle workers retired between curate's
    passes at 3k records, where by default that starts at 50k); the machine speed probe runs
    before and after each child, and the Ray run reports curate's time by pass."""
    out = tmp_path / "pair.json"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", "curate", "run.py"), "--sizes", "3000",
                           "--ceiling-repeats", "0", "--data-root", str(tmp_path / "data"),
                           "--work", str(tmp_path / "work"), "--out", str(out),
                           "--probe-repeats", "1", "--set", "curate.retire_workers_min_records=0"],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["set"] == ["curate.retire_workers_min_records=0"]
    size = result["sizes"][0]
    assert size["check"]["same"] is True, size["check"]
    assert {r["mode"] for r in size["runs"]} == {"ray", "local"}
    ray_run = next(r for r in size["runs"] if r["mode"] == "ray")
    assert ray_run["curate"]["rows_out"] > 0 and ray_run["curate"]["dedup"]["candidate_links"] > 0
    assert ray_run["curate"]["workers_retired"] > 0
    passes = ray_run["curate"]["pass_seconds"]
    assert set(passes) == {"record_pass", "dedup", "drop_route", "timelines", "accounting"}, passes
    # driver, raylet, GCS and at least the two workers of each retired-and-restarted pass
    assert ray_run["processes_seen"] > 5
    first, second = size["runs"]
    assert first["probe_s_before"] > 0 and second["probe_s_after"] > 0 and first["ceiling_after"] > 0
    assert first["probe_s_after"] == second["probe_s_before"]  # one probe between the two runs
    probe = size["probe"]
    assert abs(probe["speedup_at_ray_speed"] * probe["local_over_ray"] - size["speedup"]) < 1e-9
    assert abs(probe["efficiency"] * probe["ray_ceiling"] - probe["speedup_at_ray_speed"]) < 1e-9
    assert "machine speed probe" in proc.stdout


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
    # memcompare.py cuts ingest at its read and compares runs by their samples' spread too
    import memcompare

    # a run with twice the samples (each twice): every phase keeps its samples, however short
    # (ingest's joins last ~1 s at 3k records, and a run with every other sample had none there)
    got2 = dict(got, samples=[s for s in got["samples"] for _ in (0, 1)])
    both = memcompare.compare({"all": got, "twice": got2})
    cut2 = memcompare.phases_of(got)
    assert [c[0] for c in cut2] == ["ingest read", "ingest joins + final", "record pass", "dedup", "route + timelines"]
    assert cut2[0][1] == cut[0][1] and cut2[0][2] == cut2[1][1] and cut2[1][2] <= cut[0][2]
    # a phase is compared where it has samples (ingest's joins last ~1 s here: one sample in a
    # loaded CI run); the longer ones always do
    assert {"ingest read", "record pass", "dedup"} <= set(both) <= {c[0] for c in cut2}
    for ph, by_run in both.items():
        w = by_run["all"]["window"]
        assert w == by_run["all"]["samples"] and by_run["twice"]["samples"] == 2 * w, ph
        assert by_run["twice"]["median"] == by_run["all"]["median"], ph
        for r in by_run.values():
            assert r["median"] <= r["p90"] <= r["peak"] and r["window_peak_mean"] <= r["peak"], ph
            assert r["median_by_kind"]["driver"] > 0, ph


def test_sharded_corpus_keeps_shards_apart(tmp_path):
    """gen.py --shards: each shard's users, submissions, tweets, blogs and items are its own (no
    id in two shards), and the shards' records add up to N, platform by platform."""
    import csv
    import glob

    import zstandard

    out = tmp_path / "k3"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", "curate", "gen.py"), "--n", "9000",
                           "--seed", "2", "--shards", "3", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    manifest = json.loads((out / "gen.json").read_text())
    assert manifest["shards"] == 3 and sum(manifest["records"].values()) == 9000

    def ids(k):
        got = {"reddit_user": set(), "reddit_id": set(), "tweet_user": set(), "tweet_id": set(), "blog": set(),
               "amazon_user": set(), "item": set()}
        for f in glob.glob(str(out / "reddit" / f"s{k:02d}" / "*")):
            data = open(f, "rb").read()
            if f.endswith(".zst"):
                data = zstandard.ZstdDecompressor().decompressobj().decompress(data)
            for line in data.splitlines():
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue  # gen.py's malformed lines
                got["reddit_id"].add(obj["id"])
                if obj["author"] not in ("[deleted]", "AutoModerator"):
                    got["reddit_user"].add(obj["author"])
        for f in glob.glob(str(out / "twitter" / f"s{k:02d}" / "*.csv")):
            for row in csv.reader(open(f, newline="", encoding="utf-8")):
                if len(row) == 6:
                    got["tweet_id"].add(row[1])
                    got["tweet_user"].add(row[4])
        got["blog"] = {os.path.basename(f).split(".")[0] for f in glob.glob(str(out / "blogger" / f"s{k:02d}" / "*"))}
        for f in glob.glob(str(out / "amazon" / f"s{k:02d}" / "*.jsonl")):
            for line in open(f, encoding="utf-8"):
                obj = json.loads(line)
                got["item"].add(obj["parent_asin"])
                if "user_id" in obj:
                    got["amazon_user"].add(obj["user_id"])
                    got["item"].add(obj["asin"])
        return got

    shards = [ids(k) for k in range(3)]
    for key in shards[0]:
        assert all(s[key] for s in shards), key
        for a in range(3):
            for b in range(a + 1, 3):
                assert not shards[a][key] & shards[b][key], (key, a, b)


def test_hot_user_bench_runs_and_trim_keeps_the_counts(tmp_path):
    """bench/curate/hotuser.py at a tiny shape: both arms (heap given back between groups and
    not) run the stage's timelines reduce on the same partition and keep the same records."""
    out = tmp_path / "hot.json"
    proc = subprocess.run([sys.executable, os.path.join(REPO, "bench", "curate", "hotuser.py"), "--light-rows", "3000",
                           "--hot", "60000", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = json.loads(out.read_text())["results"]
    assert [r["trim"] for r in got] == [False, True]
    assert got[0]["kept_records"] == got[1]["kept_records"] > 60000 - 1
    assert all(r["reduce_peak_above_mb"] > 0 for r in got)
