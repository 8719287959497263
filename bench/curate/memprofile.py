"""bench/curate/memprofile.py: where a Ray ingest + curate run's memory is, process by process.

    python bench/curate/memprofile.py --n 1000000 [--every 3] [--out bench/out/memprofile-1m.json] [--ingest-only]

Runs ``ingest.run`` then ``curate.run`` in this process on a local 2-CPU Ray cluster, on the corpus
``run.py`` generates (bench/out/curate-data/n{N}-s1, generated here if missing). A sampler
process reads every process of the tree's memory maps (psutil ``memory_maps``) every ``--every``
seconds and records each process's PSS, split into object-store pages (``/dev/shm/plasma*``)
and the rest (its own heap), with its largest mappings, and its peak RSS since the previous
sample (``hwm_mb``: ``VmHWM``, reset after each read), so a task's peak between samples is
not missed (Round 20). The stages' own log lines are kept
with their times (``marks``) and cut the run into phases (ingest, record pass, dedup, route +
timelines); the summary gives each phase's peak and the processes that made it. Summary to
stdout, samples to ``--out``; ``--summarize FILE`` reprints a finished run's summary.

The sampler is a process of its own, left out of the tree it measures, and appends each sample
to ``--out`` + ``.samples.jsonl`` as it goes (a run stopped early keeps them). Until Round 14 it
was a thread of the driver that kept every sample in a list: the driver's figures included
the profiler, which grew with the run's length (~840 samples at 10M records).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _rss_peak_since_last(pid: int):
    """The process's peak RSS (``VmHWM``, MB) since the previous sample, then reset
    (``clear_refs`` 5 resets only that counter). PSS sampled every few seconds misses a
    short task's peak, and more of them in a short run than in a long one; this does not. RSS
    counts shared pages in full, so it is compared process with process, not summed. None
    where the kernel does not allow it."""
    try:
        with open(f"/proc/{pid}/status") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return round(kb / 1024)
    except (OSError, StopIteration, ValueError):
        return None


def sample_tree(root_pid: int, skip: int = 0) -> list:
    import psutil

    rows = []
    me = psutil.Process(root_pid)
    for p in [me] + me.children(recursive=True):
        if p.pid == skip:
            continue
        try:
            shm = other = 0
            maps = {}
            for m in p.memory_maps(grouped=True):
                key = m.path or "[anon]"
                maps[key] = maps.get(key, 0) + m.pss
                if "plasma" in m.path or m.path.startswith("/dev/shm"):
                    shm += m.pss
                else:
                    other += m.pss
            name = "driver" if p.pid == root_pid else " ".join(p.cmdline())[:48]
            top = sorted(maps.items(), key=lambda kv: -kv[1])[:3]
            rows.append({"pid": p.pid, "name": name, "pss_mb": round((shm + other) / 2**20),
                         "store_mb": round(shm / 2**20), "top": [(k[-32:], round(v / 2**20)) for k, v in top],
                         "hwm_mb": _rss_peak_since_last(p.pid)})
        except Exception:  # a process that exited between listing and reading
            pass
    return rows


def sampler(root_pid: int, every: float, t0: float, path: str) -> None:
    """The sampler process: a line of ``path`` per sample (``t``: seconds since the driver's
    ``t0``, wall clock), until the driver ends it (SIGTERM) or exits."""
    import psutil

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    me = os.getpid()
    with open(path, "a") as f:
        while not stop and psutil.pid_exists(root_pid):
            procs = sample_tree(root_pid, skip=me)
            f.write(json.dumps({"t": round(time.time() - t0, 1), "procs": procs}) + "\n")
            f.flush()
            deadline = time.monotonic() + every
            while not stop and time.monotonic() < deadline:
                time.sleep(min(0.2, every))


# A phase ends at the first log line starting with its marker (the stages' own log lines).
PHASE_ENDS = [("ingest", None), ("record pass", "curate: record pass:"), ("dedup", "curate: duplicates:"),
              ("route + timelines", "curate: timelines:")]


def phase_peaks(samples: list, phases: dict, marks: list) -> list:
    """[(phase, start s, end s, peak sample or None)]: the run cut at ``phases["ingest_done"]``
    and at the first mark of each curate phase's end (``PHASE_ENDS``)."""
    ends = [phases.get("ingest_done")]
    for _name, marker in PHASE_ENDS[1:]:
        ends.append(next((m["t"] for m in marks if m["msg"].startswith(marker)), None))
    out, start = [], phases.get("ray_up", 0.0)
    for (name, _marker), end in zip(PHASE_ENDS, ends):
        if end is None:
            break
        inside = [s for s in samples if start <= s["t"] <= end]
        out.append((name, start, end, max(inside, key=lambda s: _total(s, "pss_mb")) if inside else None))
        start = end
    return out


def _total(sample: dict, key: str) -> int:
    return sum(p[key] for p in sample["procs"])


def summarize(result: dict) -> None:
    samples, phases, marks = result["samples"], result["phases"], result.get("marks", [])
    peak = max(samples, key=lambda s: _total(s, "pss_mb"))
    print(f"\nphases (s): {json.dumps({k: round(v, 1) for k, v in phases.items()})}")
    print(f"peak PSS {_total(peak, 'pss_mb')} MB at {peak['t']} s, of which object-store pages "
          f"{_total(peak, 'store_mb')} MB")
    for p in sorted(peak["procs"], key=lambda p: -p["pss_mb"])[:6]:
        print(f"  {p['pss_mb']:6d} MB (store {p['store_mb']:5d})  {p['name']}")
    print("\npeak PSS by phase (MB): phase, seconds, peak, object-store pages, largest processes")
    for name, start, end, s in phase_peaks(samples, phases, marks):
        if s is None:
            print(f"  {name:18s} {end - start:8.1f} s  (no sample)")
            continue
        top = ", ".join(f"{p['pss_mb']} {p['name'][:20].strip()}" for p in
                        sorted(s["procs"], key=lambda p: -p["pss_mb"])[:4])
        print(f"  {name:18s} {end - start:8.1f} s  {_total(s, 'pss_mb'):6d}  {_total(s, 'store_mb'):5d}  {top}")
    if any(p.get("hwm_mb") is not None for s in samples for p in s["procs"]):
        print("\npeak RSS of single processes by phase (VmHWM between samples, MB; not summed: RSS counts "
              "shared pages in each)")
        for name, start, end, _s in phase_peaks(samples, phases, marks):
            best = {}
            for s in samples:
                if start < s["t"] <= end:  # a sample reports the interval before it
                    for p in s["procs"]:
                        if p.get("hwm_mb") is not None and p["hwm_mb"] > best.get(p["pid"], (0, ""))[0]:
                            best[p["pid"]] = (p["hwm_mb"], p["name"][:20].strip())
            top = ", ".join(f"{mb} {n}" for mb, n in sorted(best.values(), reverse=True)[:4])
            print(f"  {name:18s} {top}")


class _Marks:
    """A logging handler keeping the stages' log lines with their time since ``t0``."""

    def __init__(self, t0: float):
        import logging

        self.t0, self.marks = t0, []
        self.handler = logging.Handler()
        # Not rounded: a phase's end (``phases``) is taken unrounded right after its last log line,
        # and a mark rounded up past it (9.95 -> 10.0 against 9.98) put that line after its phase.
        self.handler.emit = lambda r: self.marks.append({"t": r.created - self.t0, "msg": r.getMessage()})


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--sampler":
        sampler(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
        return
    if len(sys.argv) > 2 and sys.argv[1] == "--summarize":
        with open(sys.argv[2]) as f:
            summarize(json.load(f))
        return
    sys.path.insert(0, HERE)
    import run as bench  # noqa: E402  (bench/curate/run.py: corpus and config helpers)

    args, cfg = bench.profile_setup(__doc__, "memprofile", every=3.0)
    out = args.out or os.path.join(os.path.dirname(HERE), "out", f"memprofile-{args.n}.json")
    samples_path = out + ".samples.jsonl"
    if os.path.exists(samples_path):
        os.remove(samples_path)
    t0 = time.time()
    phases: dict = {}
    import logging

    marks = _Marks(t0)
    logging.getLogger("humanllm").addHandler(marks.handler)
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--sampler", str(os.getpid()),
                             str(args.every), repr(t0), samples_path])
    import ray

    from humanllm_ray import curate, ingest

    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        phases["ray_up"] = time.time() - t0
        ingest.run(cfg)
        phases["ingest_done"] = time.time() - t0
        if not args.ingest_only:
            curate.run(cfg)
            phases["curate_done"] = time.time() - t0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    ray.shutdown()
    with open(samples_path) as f:
        samples = [json.loads(line) for line in f if line.strip()]
    if not samples:
        sys.exit(f"memprofile: the sampler wrote no sample to {samples_path}")

    result = {"n": args.n, "phases": phases, "marks": marks.marks, "samples": samples}
    summarize(result)
    with open(out + ".tmp", "w") as f:
        json.dump(result, f)
    os.replace(out + ".tmp", out)


if __name__ == "__main__":
    main()
