"""bench/curate/drvprobe.py: what the driver keeps after ingest.

    python bench/curate/drvprobe.py --n 10000000      # TM=1 also traces Python's allocations

Runs ``ingest.run`` alone on a local 2-CPU Ray cluster, on the corpus ``run.py`` generates, and
prints the driver's PSS after ``ray.init``, its peak during ingest, after ingest, and after
``dataops.release_memory()`` (glibc trim + Arrow's pool). With ``TM=1`` tracemalloc runs from
after ``ray.init``: its total is what Python itself allocated during ingest, so the rest of the
growth is native memory (bench/README.md, curate Round 12).
"""

from __future__ import annotations

import collections
import gc
import os
import sys
import threading
import tracemalloc

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    sys.path.insert(0, HERE)
    import psutil
    import run as bench  # noqa: E402  (bench/curate/run.py: corpus and config helpers)

    _args, cfg = bench.profile_setup(__doc__, "drvprobe", every=5.0)
    me = psutil.Process()

    def pss() -> int:
        return me.memory_full_info().pss >> 20

    seen, stop = [], threading.Event()

    def loop():
        while not stop.is_set():
            seen.append(pss())
            stop.wait(5)

    import ray

    from humanllm_ray import ingest
    from humanllm_ray.ingest.dataops import release_memory

    ray.init(address="local", num_cpus=2, include_dashboard=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    if os.environ.get("TM"):
        tracemalloc.start(12)
    print("driver PSS after ray.init", pss(), "MB", flush=True)
    threading.Thread(target=loop, daemon=True).start()
    ingest.run(cfg)
    stop.set()
    gc.collect()
    print("driver PSS after ingest", pss(), "MB; peak during", max(seen or [0]), "MB", flush=True)
    release_memory()
    print("driver PSS after release_memory", pss(), "MB", flush=True)
    if tracemalloc.is_tracing():
        snap = tracemalloc.take_snapshot()
        print("Python allocations since ray.init, still held:", sum(s.size for s in snap.statistics("filename")) >> 20,
              "MB")
        for st in snap.statistics("traceback")[:5]:
            print(f"{st.size >> 10} KB in {st.count} blocks:", *st.traceback.format()[-4:], sep="\n  ")
    print("objects by type:", collections.Counter(type(o).__name__ for o in gc.get_objects()).most_common(8))
    ray.shutdown()


if __name__ == "__main__":
    main()
