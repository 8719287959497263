"""bench/curate/drvprobe.py: what the driver keeps after ingest.

    python bench/curate/drvprobe.py --n 10000000      # TM=1 also traces Python's allocations
    REPORT_EVERY=20 python bench/curate/drvprobe.py --n 10000000   # the heap's split every 20 s
                                                      # (with TM=1, the lines that grew since)

Runs ``ingest.run`` alone on a local 2-CPU Ray cluster (set up as the job's own: Arrow pool,
GCS cap, metrics off), on the corpus ``run.py`` generates, and prints the driver's PSS after ``ray.init``, its
peak during ingest, after ingest, and after ``dataops.release_memory()`` (glibc trim + Arrow's
pool), with where its memory is: glibc's heap in use and free-but-kept (mallinfo2), pymalloc's
arenas and what live objects use of them, and the resident anonymous mappings by kind. More
arenas or free-kept memory for the same bytes in use is fragmentation, not held objects. With ``TM=1`` tracemalloc runs from
after ``ray.init``: its total is what Python itself allocated during ingest, so the rest of the
growth is native memory (bench/README.md, curate Round 12). With ``MEMRAY=FILE`` (memray
installed) memray tracks the driver's native allocations, Ray's C++ included, over ingest and
prints the largest call sites held at the driver's high-water mark.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import gc
import os
import sys
import threading
import time
import tracemalloc

HERE = os.path.dirname(os.path.abspath(__file__))


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]


def python_arenas() -> str:
    """pymalloc's arenas (1 MiB mmaps outside glibc's malloc, so not in mallinfo2): how many are
    mapped and how much of them live objects use; many arenas for few bytes is fragmentation."""
    r, w = os.pipe()
    saved = os.dup(2)
    os.dup2(w, 2)  # sys._debugmallocstats writes to C's stderr
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(w)
    with os.fdopen(r) as f:
        text = f.read()
    want = {"# arenas allocated current": "arenas", "# bytes in allocated blocks": "in use"}
    got = {}
    for line in text.splitlines():
        for key, name in want.items():
            if line.startswith(key):
                got[name] = int(line.split("=")[1].replace(",", ""))
    return f"pymalloc {got.get('arenas', 0)} arenas, {got.get('in use', 0) >> 20} MB in use"


def heap_report() -> str:
    """glibc's view of the driver's heap (all arenas): in use, free but kept, mmapped; and the
    resident anonymous memory split by mapping kind, so a growth can be told apart as held
    objects (in use), fragmentation (free but kept) or memory outside malloc (Arrow, Ray's
    plasma client, thread stacks)."""
    out = []
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        mi = libc.mallinfo2()
        out.append(f"malloc in use {mi.uordblks >> 20} MB, free kept {mi.fordblks >> 20} MB, "
                   f"mmapped {mi.hblkhd >> 20} MB")
    except (OSError, AttributeError):
        out.append("mallinfo2: not glibc")
    out.append(python_arenas())
    kinds: collections.Counter = collections.Counter()
    kind, size = None, 0
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                name = head[5] if len(head) > 5 else "[anon]"
                size = hi - lo
                kind = name if name.startswith("[") else None
                if kind == "[anon]":
                    kind = "[anon 64MB-arena]" if size == 64 << 20 or (lo % (64 << 20) == 0 and size < 64 << 20) \
                        else "[anon other]"
            elif head[0] == "Rss:" and kind:
                kinds[kind] += int(head[1]) >> 10
    out.append("resident " + ", ".join(f"{k} {v} MB" for k, v in kinds.most_common(5)))
    return "; ".join(out)


def memray_report(path: str, top: int = 12) -> None:
    """The call sites holding the most at the driver's high-water mark (memray's records there),
    each with the innermost frames of its mixed native + Python stack; heap allocations
    (malloc and kin) apart from mmap regions, whose size is address space, not resident pages."""
    import memray

    kinds: dict = {"heap": [], "mmap": []}
    for r in memray.FileReader(path).get_high_watermark_allocation_records(merge_threads=True):
        allocator = memray.AllocatorType(r.allocator).name
        kinds["mmap" if allocator == "MMAP" else "heap"].append((r, allocator))
    print(f"memray at the driver's high-water mark: heap {sum(r.size for r, _ in kinds['heap']) >> 20} MB, "
          f"mmap regions {sum(r.size for r, _ in kinds['mmap']) >> 20} MB")
    for kind, recs in kinds.items():
        print(f"largest {kind} call sites:")
        for r, allocator in sorted(recs, key=lambda ra: -ra[0].size)[:top]:
            frames = [f"{fn} ({os.path.basename(file)}:{line})" for fn, file, line in r.hybrid_stack_trace(max_stacks=24)]
            print(f"  {r.size >> 10} KB in {r.n_allocations} allocations ({allocator}):", *frames, sep="\n      ")


def print_top_tracebacks(snap, n: int, frames: int) -> None:
    """tracemalloc's ``n`` largest allocation tracebacks in ``snap``, innermost ``frames`` each."""
    for st in snap.statistics("traceback")[:n]:
        print(f"{st.size >> 10} KB in {st.count} blocks:", *st.traceback.format()[-frames:], sep="\n  ")


def main() -> None:
    sys.path.insert(0, HERE)
    import psutil
    import run as bench  # noqa: E402  (bench/curate/run.py: corpus and config helpers)

    _args, cfg = bench.profile_setup(__doc__, "drvprobe", every=5.0)
    me = psutil.Process()

    def pss() -> int:
        return me.memory_full_info().pss >> 20

    seen, stop = [], threading.Event()
    traced_peak = {"bytes": 0, "snap": None, "pss": 0}

    report_every = float(os.environ.get("REPORT_EVERY") or 0)
    started = time.monotonic()
    last_report = [started]
    last_snap = [None]

    def loop():
        while not stop.is_set():
            seen.append(pss())
            if report_every and time.monotonic() - last_report[0] >= report_every:
                # when the driver grows, not only how much: glibc's arenas, pymalloc's, or outside malloc
                last_report[0] = time.monotonic()
                print(f"  t={last_report[0] - started:6.0f} s PSS {seen[-1]} MB; {heap_report()}", flush=True)
                if tracemalloc.is_tracing():  # and which Python lines the growth since the last report is
                    snap = tracemalloc.take_snapshot()
                    if last_snap[0] is not None:
                        for st in snap.compare_to(last_snap[0], "lineno")[:4]:
                            print(f"      {st.size_diff >> 10:+6d} KB {st.count_diff:+7d} blocks: {st.traceback[0]}")
                    last_snap[0] = snap
            if tracemalloc.is_tracing():
                # The live Python objects at their largest during ingest (not only what is still
                # held after): a snapshot whenever the traced total passes its last high by 4 MB.
                now = tracemalloc.get_traced_memory()[0]
                if now > traced_peak["bytes"] + (4 << 20):
                    traced_peak.update(bytes=now, snap=tracemalloc.take_snapshot(), pss=seen[-1])
            stop.wait(5)

    import ray

    from humanllm_ray import ingest, runtime
    from humanllm_ray.ingest.dataops import release_memory

    runtime.prepare_local_ray(cfg.run)  # as the job's own ray.init does
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    if os.environ.get("TM"):
        tracemalloc.start(12)
    print("driver PSS after ray.init", pss(), "MB;", heap_report(), flush=True)
    threading.Thread(target=loop, daemon=True).start()
    tracker = contextlib.nullcontext()
    if os.environ.get("MEMRAY"):
        import memray

        # Aggregated: the high-water mark and what was live then, without a record per call.
        tracker = memray.Tracker(os.environ["MEMRAY"], native_traces=True,
                                 file_format=memray.FileFormat.AGGREGATED_ALLOCATIONS)
    with tracker:
        ingest.run(cfg)
    stop.set()
    gc.collect()
    print("driver PSS after ingest", pss(), "MB; peak during", max(seen or [0]), "MB", flush=True)
    import pyarrow as pa

    # Arrow's C++ paths that take no pool (Acero: group_by, joins) use Arrow's process default,
    # fixed at first use from ARROW_DEFAULT_MEMORY_POOL, whatever pa.set_memory_pool said later.
    print("Arrow pools in the driver (MB, high / now):", ", ".join(
        f"{name} {pool.max_memory() >> 20} / {pool.bytes_allocated() >> 20}"
        for name, pool in (("system", pa.system_memory_pool()), ("mimalloc", pa.mimalloc_memory_pool()))),
        flush=True)
    release_memory()
    print("driver PSS after release_memory", pss(), "MB;", heap_report(), flush=True)
    if traced_peak["snap"] is not None:
        print(f"Python allocations at their high during ingest: {traced_peak['bytes'] >> 20} MB "
              f"(driver PSS then {traced_peak['pss']} MB); largest by line:")
        for st in traced_peak["snap"].statistics("lineno")[:12]:
            print(f"  {st.size >> 10} KB in {st.count} blocks: {st.traceback[0]}")
        print_top_tracebacks(traced_peak["snap"], 4, 8)
    if tracemalloc.is_tracing():
        snap = tracemalloc.take_snapshot()
        print("Python allocations since ray.init, still held:", sum(s.size for s in snap.statistics("filename")) >> 20,
              "MB")
        print_top_tracebacks(snap, 5, 4)
    if os.environ.get("MEMRAY"):
        memray_report(os.environ["MEMRAY"])
    print("objects by type:", collections.Counter(type(o).__name__ for o in gc.get_objects()).most_common(8))
    ray.shutdown()


if __name__ == "__main__":
    main()
