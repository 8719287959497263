"""bench/curate/memprofile.py: where a Ray ingest + curate run's memory is, process by process.

    python bench/curate/memprofile.py --n 1000000 [--every 3] [--out bench/out/memprofile-1m.json]

Runs ``ingest.run`` then ``curate.run`` in this process on a local 2-CPU Ray cluster, on the corpus
``run.py`` generates (bench/out/curate-data/n{N}-s1, generated here if missing). A thread reads
every process of the tree's memory maps (psutil ``memory_maps``) every ``--every`` seconds and
records each process's PSS, split into object-store pages (``/dev/shm/plasma*``) and the rest
(its own heap), with its largest mappings. The stages' own log lines (one per curate phase)
give the phase times. Summary to stdout, samples to ``--out``.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def sample_tree(root_pid: int) -> list:
    import psutil

    rows = []
    me = psutil.Process(root_pid)
    for p in [me] + me.children(recursive=True):
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
                         "store_mb": round(shm / 2**20), "top": [(k[-32:], round(v / 2**20)) for k, v in top]})
        except Exception:  # a process that exited between listing and reading
            pass
    return rows


def main() -> None:
    sys.path.insert(0, HERE)
    import run as bench  # noqa: E402  (bench/curate/run.py: corpus and config helpers)

    args, cfg = bench.profile_setup(__doc__, "memprofile", every=3.0)

    samples, stop, t0 = [], threading.Event(), time.monotonic()
    phases: dict = {}

    def save():
        if args.out:  # written as it goes too, so a run stopped early (a 10M one) keeps its samples
            with open(args.out + ".tmp", "w") as f:
                json.dump({"n": args.n, "phases": phases, "samples": samples}, f)
            os.replace(args.out + ".tmp", args.out)

    def loop():
        last = time.monotonic()
        while not stop.is_set():
            samples.append({"t": round(time.monotonic() - t0, 1), "procs": sample_tree(os.getpid())})
            if time.monotonic() - last > 60:
                save()
                last = time.monotonic()
            stop.wait(args.every)

    sampler = threading.Thread(target=loop, daemon=True)
    sampler.start()
    import ray

    from humanllm_ray import curate, ingest

    ray.init(address="local", num_cpus=2, include_dashboard=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    phases["ray_up"] = time.monotonic() - t0
    ingest.run(cfg)
    phases["ingest_done"] = time.monotonic() - t0
    curate.run(cfg)
    phases["curate_done"] = time.monotonic() - t0
    stop.set()
    sampler.join()
    ray.shutdown()

    def total(s, k):
        return sum(p[k] for p in s["procs"])

    peak = max(samples, key=lambda s: total(s, "pss_mb"))
    print(f"\nphases (s): {json.dumps({k: round(v, 1) for k, v in phases.items()})}")
    print(f"peak PSS {total(peak, 'pss_mb')} MB at {peak['t']} s, of which object-store pages "
          f"{total(peak, 'store_mb')} MB")
    for p in sorted(peak["procs"], key=lambda p: -p["pss_mb"])[:6]:
        print(f"  {p['pss_mb']:6d} MB (store {p['store_mb']:5d})  {p['name']}")
    save()


if __name__ == "__main__":
    main()
