"""bench/curate/cpuprofile.py: where a Ray ingest + curate run leaves a core idle, phase by phase.

    python bench/curate/cpuprofile.py --n 1000000 [--every 1] [--out bench/out/cpuprofile-1m.json]

Runs ``ingest.run`` then ``curate.run`` in this process on a local 2-CPU Ray cluster, on the corpus
``run.py`` generates, and reads the machine's busy time from /proc/stat every ``--every`` seconds
(run it on a quiet machine: every process counts). Each log line of the stages marks where a phase
starts; the summary gives, per phase, its wall time, the cores it kept busy and the core-seconds it
left idle, which is what separates the Ray path's wall time from its CPU time divided by two.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def busy_jiffies() -> tuple[int, int]:
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    idle = cpu[3] + cpu[4]  # idle + iowait
    return sum(cpu) - idle, sum(cpu)


class PhaseLog(logging.Handler):
    """Keeps every humanllm log line with its time, to cut the CPU samples into phases."""

    def __init__(self, t0: float):
        super().__init__(logging.INFO)
        self.t0, self.lines = t0, []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("humanllm"):
            self.lines.append((time.monotonic() - self.t0, f"{record.name.split('.')[-1]}: {record.getMessage()[:90]}"))


def main() -> None:
    sys.path.insert(0, HERE)
    import run as bench  # noqa: E402  (bench/curate/run.py: corpus and config helpers)

    args, cfg = bench.profile_setup(__doc__, "cpuprofile", every=1.0)
    ncpu = os.cpu_count() or 1
    hz = os.sysconf("SC_CLK_TCK")

    samples, stop = [], threading.Event()
    import ray

    from humanllm_ray import curate, ingest

    ray.init(address="local", num_cpus=2, include_dashboard=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    t0 = time.monotonic()
    phase_log = PhaseLog(t0)
    logging.getLogger().addHandler(phase_log)

    def loop():
        last_t, (last_busy, _) = time.monotonic(), busy_jiffies()
        while not stop.wait(args.every):
            now, (busy, _) = time.monotonic(), busy_jiffies()
            samples.append((round(now - t0, 2), round((busy - last_busy) / hz / (now - last_t), 3)))
            last_t, last_busy = now, busy

    threading.Thread(target=loop, daemon=True).start()
    phase_log.lines.append((0.0, "ingest: start"))
    ingest.run(cfg)
    phase_log.lines.append((time.monotonic() - t0, "curate: start"))
    if not args.ingest_only:
        curate.run(cfg)
    end = time.monotonic() - t0
    stop.set()
    ray.shutdown()

    marks = phase_log.lines + [(end, "end")]
    print(f"\n{'start s':>8} {'wall s':>7} {'cores':>6} {'idle core-s':>11}  phase (the log line that opened it)")
    rows, total_idle = [], 0.0
    for (ts, line), (te, _) in zip(marks, marks[1:]):
        inside = [c for t, c in samples if ts < t <= te]
        cores = sum(inside) / len(inside) if inside else float("nan")
        idle = (ncpu - cores) * (te - ts) if inside else 0.0
        total_idle += idle
        rows.append({"start": ts, "wall": te - ts, "cores": cores, "idle_core_s": idle, "phase": line})
        print(f"{ts:8.1f} {te - ts:7.1f} {cores:6.2f} {idle:11.1f}  {line}")
    used = sum(c * args.every for _, c in samples)
    print(f"\nwall {end:.1f} s, machine busy {used:.0f} core-s of {ncpu * end:.0f}; idle {total_idle:.0f} core-s")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"n": args.n, "wall_s": end, "samples": samples, "phases": rows}, f)


if __name__ == "__main__":
    main()
