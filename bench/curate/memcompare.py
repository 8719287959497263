"""bench/curate/memcompare.py: memprofile runs of different sizes, compared phase by phase by more than their peaks.

    python bench/curate/memcompare.py RUN.json [RUN.json ...]

A phase's peak (memprofile's summary) is the largest of its samples of the whole tree's PSS,
and the tree's PSS swings by ~100 MB from sample to sample as tasks start and end. A 10M run's
phase lasts ~10x as long as the 1M run's, so its peak is the largest of ~10x as many draws and
comes out higher even where memory does not grow with the input. So, for each phase (ingest
cut at its read and its joins, then curate's phases as memprofile cuts them) and each run, this
prints the samples' median, 90th percentile and peak, and the mean of the peaks of windows of
as many consecutive samples as the shortest run's phase has (like for like with that run's
peak); then the median PSS of each kind of process in that phase (the driver, Ray Data's
workers summed, Ray's actors and agents, Ray's system processes).
"""

from __future__ import annotations

import collections
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# ingest's log lines (``ingest._ingest``) that cut its phase in two: the rows read, then the
# platforms' joins / dedup and the final pass
INGEST_CUTS = [("ingest: read", "ingest read"), ("ingest: final rows written", "ingest joins + final")]
ACTORS = ("StatsActor", "AutoscalingCoordinator", "DashboardAgent", "RuntimeEnvAgent")


def kind(name: str) -> str:
    """A process's kind: the driver, Ray's actors and agents (``ACTORS``), Ray Data's workers
    (any other ``ray::``), or Ray's system processes (raylet, GCS, dashboard, log monitor: the
    sampler keeps 48 characters of a command line, too few to tell them apart)."""
    if name == "driver":
        return "driver"
    if any(k in name for k in ACTORS):
        return "ray actors"
    return "workers" if name.startswith("ray::") else "ray system"


def phases_of(result: dict) -> list:
    """[(phase, start s, end s)]: memprofile's phases, ingest cut at its read's end."""
    import memprofile

    cut = [(name, a, b) for name, a, b, _s in memprofile.phase_peaks(result["samples"], result["phases"],
                                                                     result.get("marks", []))]
    if not cut or cut[0][0] != "ingest":
        return cut
    _, a, b = cut[0]
    marks = result.get("marks", [])
    t_read = next((m["t"] for m in marks if m["msg"].startswith(INGEST_CUTS[0][0])), None)
    t_final = next((m["t"] for m in marks if m["msg"].startswith(INGEST_CUTS[1][0])), None)
    if t_read is None or t_final is None:
        return cut
    # runs saved before session 34 have marks rounded to 0.1 s, which can land just past the phase's end
    t_read, t_final = min(t_read, b), min(t_final, b)
    return [(INGEST_CUTS[0][1], a, t_read), (INGEST_CUTS[1][1], t_read, t_final)] + cut[1:]


def compare(runs: dict) -> dict:
    """{phase: {run: figures}} for the phases every run has."""
    from memprofile import _total

    cut = {name: {ph: (a, b) for ph, a, b in phases_of(r)} for name, r in runs.items()}
    common = [ph for ph, _a, _b in phases_of(next(iter(runs.values()))) if all(ph in c for c in cut.values())]
    out: dict = {}
    for ph in common:
        inside = {name: [s for s in r["samples"] if cut[name][ph][0] <= s["t"] < cut[name][ph][1]]
                  for name, r in runs.items()}
        if not all(inside.values()):
            continue
        w = min(len(v) for v in inside.values())
        out[ph] = {}
        for name, samples in inside.items():
            x = np.array([_total(s, "pss_mb") for s in samples], float)
            wins = [x[i:i + w].max() for i in range(0, len(x) - w + 1, w)]
            per = collections.defaultdict(list)
            for s in samples:
                c: collections.Counter = collections.Counter()
                for p in s["procs"]:
                    c[kind(p["name"])] += p["pss_mb"]
                for k, v in c.items():
                    per[k].append(v)
            out[ph][name] = {"samples": len(x), "seconds": round(cut[name][ph][1] - cut[name][ph][0], 1),
                             "median": float(np.median(x)), "p90": float(np.percentile(x, 90)),
                             "peak": float(x.max()), "window": w, "window_peak_mean": float(np.mean(wins)),
                             "median_by_kind": {k: float(np.median(v)) for k, v in per.items()}}
    return out


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        sys.exit(0 if len(sys.argv) > 1 else 2)
    runs = {}
    for path in sys.argv[1:]:
        with open(path) as f:
            runs[os.path.basename(path).removesuffix(".json")] = json.load(f)
    got = compare(runs)
    width = max(len(n) for n in runs)
    kinds = ["driver", "workers", "ray actors", "ray system"]
    for ph, by_run in got.items():
        print(f"\n{ph} (PSS of the whole tree, MB; window: the shortest run's {next(iter(by_run.values()))['window']} samples)")
        print(f"  {'run':{width}}  {'s':>6} {'n':>4} {'median':>7} {'p90':>6} {'peak':>6} {'win.peak':>8} | median: "
              + " ".join(f"{k:>10}" for k in kinds))
        for name, r in by_run.items():
            mk = r["median_by_kind"]
            print(f"  {name:{width}}  {r['seconds']:6.0f} {r['samples']:4d} {r['median']:7.0f} {r['p90']:6.0f} "
                  f"{r['peak']:6.0f} {r['window_peak_mean']:8.0f} |        "
                  + " ".join(f"{mk.get(k, 0):10.0f}" for k in kinds))


if __name__ == "__main__":
    main()
