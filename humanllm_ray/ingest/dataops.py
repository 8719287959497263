"""Small Ray Data helpers shared by ingest and curate.

Trap (Ray 2.60, 2-CPU local cluster): the default hash shuffle (``ShuffleStrategy.SHUFFLE_V2``)
intermittently aborts a HashShuffleMap worker ("Mutex corrupt: both reader and writer lock
held"); the retried task then hands the reducer a schema-less empty table and the groupby fails
with "Schema at index 1 was different". The sort-based pull shuffle has been reliable, so every
groupby here runs under :func:`stage_data_context`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Callable, Dict, Iterable, List, Optional

import numpy as np
import pyarrow as pa
from ray.data._internal.execution.backpressure_policy import BackpressurePolicy

log = logging.getLogger("humanllm")


@contextlib.contextmanager
def stage_data_context(op_reservation: bool = False, tasks_per_cpu: int = 0):
    """The Ray Data settings a stage's executions run under (restored afterwards).

    * The sort-based pull shuffle for any groupby (bench/curate's one-process stand-in and
      small side paths; the stages' big shuffles go through files, :func:`file_shuffle`).
    * Operator resource reservation off unless ``op_reservation`` (``run.ray_data_op_reservation``).
      Ray 2.60's ``ReservationOpResourceAllocator`` reserves half of the cluster per operator
      "group" for later operators and their outputs; our executions are one fused read -> work
      -> write operator, so that reservation only idled CPUs. Measured on the 2-CPU bench:
      60 map tasks of 100 ms ran one at a time (7.9 s; 3.5 s without it), and curate's
      dedup + timelines at 1M records took 113 s at ~1.2 cores after the MinHash pass instead
      of 97 s (bench/README.md, curate Round 6). The object store stays bounded by Ray Data's
      own budget and by the stages streaming to files.
    * With ``tasks_per_cpu`` (``run.ray_data_tasks_per_cpu``), each task-pool operator holds at
      most that many tasks per cluster CPU submitted and not finished (:class:`TasksPerCPU`)."""
    import ray
    from ray.data._internal.execution.backpressure_policy import (ENABLED_BACKPRESSURE_POLICIES,
                                                                   ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY)
    from ray.data.context import ShuffleStrategy

    ctx = ray.data.DataContext.get_current()
    old = ctx.shuffle_strategy, ctx.op_resource_reservation_enabled
    old_policies = ctx.get_config(ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY, None)
    ctx.shuffle_strategy = ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    ctx.op_resource_reservation_enabled = bool(op_reservation)
    if tasks_per_cpu > 0:
        TasksPerCPU.per_cpu = int(tasks_per_cpu)
        ctx.set_config(ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY, [*ENABLED_BACKPRESSURE_POLICIES, TasksPerCPU])
    try:
        yield
    finally:
        ctx.shuffle_strategy, ctx.op_resource_reservation_enabled = old
        if old_policies is None:
            ctx.remove_config(ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY)
        else:
            ctx.set_config(ENABLED_BACKPRESSURE_POLICIES_CONFIG_KEY, old_policies)


class TasksPerCPU(BackpressurePolicy):
    """A Ray Data backpressure policy: a task-pool operator submits a task only while it has
    fewer than ``per_cpu`` x the cluster's CPUs submitted and not finished.

    Why: with the operator reservation off and maps that return only counts, nothing else
    pushes back, so Ray Data submitted every task of an operator at once, and the driver holds
    each queued task's spec, references and lease request until it runs: ~50 KB a task (700
    one-file tasks: driver +42 MB, and kept; +8 MB at 2 per CPU), so the driver grew with the
    number of files and partitions, that is with the corpus (bench/README.md, curate Rounds 17
    and 18). The limit follows the cluster's CPUs when each task is submitted, so an
    autoscaling cluster still fills as it grows."""

    per_cpu = 4  # set by stage_data_context; a class attribute: Ray Data makes the policy itself

    @property
    def name(self) -> str:
        return "TasksPerCPU"

    def can_add_input(self, op) -> bool:
        from ray.data._internal.execution.operators.task_pool_map_operator import TaskPoolMapOperator

        if not isinstance(op, TaskPoolMapOperator):
            return True
        cpus = self._resource_manager.get_global_limits().cpu or 1
        return op.metrics.num_tasks_running < max(2, int(self.per_cpu * cpus))


# Ray remote arguments every Ray Data operator a stage builds through this module carries (see
# :func:`worker_max_tasks`); empty: Ray Data's defaults. Ray Data fuses two maps only when their
# remote arguments are equal, so a stage sets them once for all its operators, not per map.
_TASK_ARGS: Dict[str, object] = {}


def task_args() -> Dict[str, object]:
    """The remote arguments the current stage gives its Ray Data operators (``**task_args()``)."""
    return dict(_TASK_ARGS)


@contextlib.contextmanager
def worker_max_tasks(n: int):
    """Within this block, every Ray Data operator built here runs its tasks with Ray's
    ``max_calls=n``: a worker process exits after n tasks of one operator and Ray starts a
    fresh one (0: never). Why: a long-lived worker keeps the high-water mark of every task it
    ran (arenas fragment; :func:`release_memory` gives back only whole free pages), so its
    resident size grew with the number of tasks, that is with the corpus (bench/README.md,
    curate Rounds 12 and 22). Set on the driver where the Datasets are built (threads building
    them inside the block share it)."""
    old = dict(_TASK_ARGS)
    if n:
        _TASK_ARGS["max_calls"] = int(n)
    try:
        yield
    finally:
        _TASK_ARGS.clear()
        _TASK_ARGS.update(old)


_LIBC = None


def release_memory() -> None:
    """Give the memory a finished task freed back to the OS: Arrow's pool and glibc's heap both
    keep freed pages for reuse, so a long-lived Ray worker's resident size is the high-water
    mark of every task it ever ran (~130 MB per worker after ingest at 300k records, measured).
    Called at the end of the big per-block tasks; costs milliseconds. With Arrow on the system
    allocator (``run.arrow_memory_pool``, the default) the trim reaches Arrow's buffers too;
    mimalloc's ``release_unused`` gave back less (bench/README.md, curate Round 14)."""
    global _LIBC
    import ctypes

    pa.default_memory_pool().release_unused()
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL("libc.so.6")
        except OSError:  # not glibc (macOS, musl): the Arrow pool release is all there is
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_RETIRE = None
_AWAIT_EXIT = None
_RETIRED = 0  # worker processes retire_idle_workers made exit in this driver, for the stages' reports


def workers_retired() -> int:
    """How many worker processes :func:`retire_idle_workers` has retired in this driver so far."""
    return _RETIRED


def _retire_task(hold_s: float) -> int:
    # runs with max_calls=1: the worker exits once this returns. The hold keeps the tasks of
    # one call running side by side, so each takes a different idle worker.
    time.sleep(hold_s)
    import os

    return os.getpid()


def _await_exit_task(pids: List[int], timeout_s: float) -> int:
    """How many of ``pids`` (processes of this node) are still alive after up to ``timeout_s``."""
    import psutil

    def alive(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE  # a zombie's memory is freed
        except psutil.Error:
            return False

    deadline = time.monotonic() + timeout_s
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if alive(p)]
    return len(left)


def retire_idle_workers(before: str, hold_s: float = 0.2, timeout_s: float = 30.0,
                        wait_in_driver: bool = True) -> int:
    """Make this job's idle Ray worker processes exit, so the next pass (``before``, for the
    log) starts on fresh ones, and return how many exited.

    Why: a worker that ran a pass keeps that pass's high-water mark (glibc's and Python's
    arenas fragment; :func:`release_memory` gives back only whole free pages), and Ray reuses it
    for every later task of the job. At 10M records the two workers that ran dedup's biggest
    partitions went on into the timelines ~60-100 MB heavier than at 1M on partitions of the
    same size, and the workers that ran ingest held 273-316 MB into curate's record pass
    (bench/README.md, curate Rounds 13 and 15). ``max_calls`` on the pass's own maps would
    replace them too, but it counts tasks, not memory or time, and Ray Data fuses only maps
    with equal remote arguments, so it would have to be threaded through every fused map.

    How: per alive node, one task per CPU of a function with ``max_calls=1`` (Ray exits the
    worker after it), held ``hold_s`` so they run at once; the raylet hands a task an idle
    worker of the job before starting one, so the idle workers are what exits (and a missing
    one is started and exits: a cost, never a fault). ``num_cpus=0`` so a busy node does not
    make the call wait. Then it waits until those processes are gone: without it the next
    pass's new workers started while the old ones were still exiting, and the hand-over was the
    100k-record run's dedup peak (+62 MB). On the driver's own node the driver waits itself; on
    another node one task does, whose worker is then the next pass's there. (A task on the
    driver's node too had to start a worker first: a call and the next pass's first two tasks
    took 3.54 s against 2.83 s with the driver waiting, bench/curate/taskcost.py's medians;
    ``wait_in_driver=False`` waits in a task there too, for that benchmark.) Costs a worker
    start-up (~1 s, in parallel) per call."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if not ray.is_initialized():
        return 0
    global _RETIRE, _AWAIT_EXIT, _RETIRED
    t0 = time.monotonic()
    if _RETIRE is None:
        _RETIRE = ray.remote(max_calls=1, num_cpus=0, max_retries=0)(_retire_task)
        _AWAIT_EXIT = ray.remote(num_cpus=0, max_retries=0)(_await_exit_task)
    refs: Dict[str, list] = {}
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        on_node = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        refs[node["NodeID"]] = [_RETIRE.options(scheduling_strategy=on_node).remote(hold_s)
                                for _ in range(max(1, int(node.get("Resources", {}).get("CPU", 0))))]
    here = ray.get_runtime_context().get_node_id() if wait_in_driver else None
    try:
        pids = {node: sorted(set(ray.get(r))) for node, r in refs.items()}
        waits = [_AWAIT_EXIT.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
                 .remote(p, timeout_s) for node, p in pids.items() if node != here]
        left = _await_exit_task(pids[here], timeout_s) if here in pids else 0
        left += sum(ray.get(waits))
    except ray.exceptions.RayError as e:  # a node that left meanwhile: nothing to retire there
        log.warning("ray: retiring idle workers before %s: %s", before, e)
        return 0
    n = sum(len(p) for p in pids.values())
    log.info("ray: %d worker processes retired before %s%s (%.1f s)", n, before,
             f", {left} still exiting after {timeout_s:.0f} s" if left else "", time.monotonic() - t0)
    _RETIRED += n - left
    return n - left


# Rows a Python-level UDF turns into dicts and strings at a time. A task gets a whole file's
# block (``ingest.rows_per_file``, 20k rows), and a worker keeps the high-water mark of its
# Python heap; converting the block slice by slice keeps that mark set by this constant, not by
# the file size (at 100k records the files averaged 9k rows, at 1M 17.5k, and the workers' peak
# grew with them; bench/README.md, curate Round 7).
PY_SLICE_ROWS = 2048


def by_slices(fn: Callable[[pa.Table], pa.Table], batch: pa.Table, rows: int = 0) -> pa.Table:
    """``fn`` over ``batch`` in slices of ``rows`` rows (default :data:`PY_SLICE_ROWS`), outputs
    concatenated: per-row Python work whose peak memory is one slice's, not the block's. The
    result keeps one chunk per slice (no copy into one buffer per column)."""
    rows = rows or PY_SLICE_ROWS
    if batch.num_rows <= rows:
        return fn(batch)
    return pa.concat_tables([fn(batch.slice(off, rows)) for off in range(0, batch.num_rows, rows)])


def num_partitions(n_rows: int) -> int:
    """Shuffle partitions for n rows: few on small data (each costs a task), more on big."""
    return partitions_for(n_rows, 50_000, most=256)


def count_by(ds, cols: List[str]) -> Dict[tuple, int]:
    """Exact counts over (small-cardinality) columns, summed from per-block partial counts
    (cheaper than a groupby shuffle). Keys are tuples of strings."""

    def part(batch: pa.Table) -> pa.Table:
        df = batch.select(cols).to_pandas()
        if df.empty:
            return pa.table({**{c: pa.array([], pa.string()) for c in cols}, "n": pa.array([], pa.int64())})
        g = df.groupby(cols, dropna=False).size().reset_index(name="n")
        for c in cols:
            g[c] = g[c].astype(str)
        g["n"] = g["n"].astype("int64")
        return pa.Table.from_pandas(g, preserve_index=False)

    # select first: only these columns travel through the per-block count tasks
    return tally_dataset(ds.select_columns(cols, **task_args()).map_batches(part, batch_format="pyarrow", **task_args()),
                         cols)


def block_counts(batch: pa.Table, keys: List[str], schema: pa.Schema) -> pa.Table:
    """A block's row counts by ``keys`` as a table of ``schema`` (the keys, then ``n``): what a
    map task that writes its rows itself returns instead of them."""
    g = batch.select(keys).group_by(keys).aggregate([([], "count_all")])
    return pa.table({**{k: g.column(k) for k in keys}, "n": g.column("count_all").cast(pa.int64())}, schema=schema)


def sum_counts(tables: List[pa.Table], keys: List[str], schema: pa.Schema, value: str = "n") -> pa.Table:
    """Count tables (``keys``, then ``value``) summed into one row per key: what a task that
    counted a chunk at a time returns, so that its rows are as many as its keys, not its chunks."""
    if not tables:
        return schema.empty_table()
    g = pa.concat_tables(tables).group_by(keys).aggregate([(value, "sum")])
    return pa.table({**{k: g.column(k) for k in keys}, value: g.column(f"{value}_sum").cast(pa.int64())},
                    schema=schema)


def tally(rows, keys: List[str], value: str = "n") -> Dict[tuple, int]:
    """Sum per-block count rows (dicts with ``keys`` and ``value``) into {key tuple: total}."""
    totals: Dict[tuple, int] = {}
    for row in rows:
        k = tuple(row[c] for c in keys)
        totals[k] = totals.get(k, 0) + int(row[value])
    return totals


def tally_dataset(ds, keys: List[str], value: str = "n") -> Dict[tuple, int]:
    """:func:`tally` of a Dataset of count rows (its execution included), a block at a time.

    Why not ``tally(ds.take_all(), ...)``: ``take_all`` first makes a Python dict of every row
    the tasks returned and keeps them all, so the driver grew with the tasks' rows. Ingest's
    read returned a count row per file read (~100k rows, 49k files at 10M records): the driver
    grew ~45 MB through the read, the largest part of its 1M -> 10M growth (bench/README.md,
    curate Round 18). Here a block's rows are summed in Arrow and only the totals are kept."""
    totals: Dict[tuple, int] = {}
    for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        if not batch.num_rows:
            continue
        g = batch.group_by(keys).aggregate([(value, "sum")])
        for *k, n in zip(*(g.column(c).to_pylist() for c in keys), g.column(f"{value}_sum").to_pylist()):
            totals[tuple(k)] = totals.get(tuple(k), 0) + int(n)
    return totals


def col_in(column: str, *values: str):
    """A Ray Data predicate expression: column is one of values."""
    from ray.data.expressions import col

    expr = None
    for v in values:
        e = col(column) == v
        expr = e if expr is None else (expr | e)
    return expr


def columns_of(schema: pa.Schema, *names: str) -> pa.Schema:
    """The named fields of ``schema``: a projection for :func:`read_parquet_files`."""
    return pa.schema([schema.field(n) for n in names])


def to_schema(schema: pa.Schema) -> Callable[[pa.Table], pa.Table]:
    """A pyarrow map_batches UDF that selects and casts to schema (typed even when empty)."""

    def udf(batch: pa.Table) -> pa.Table:
        if batch.num_rows == 0 and batch.num_columns == 0:
            return schema.empty_table()
        return batch.select(schema.names).cast(schema)

    return udf


def _part_udf(n: int, key: str):
    def udf(batch: pa.Table) -> pa.Table:
        import pandas as pd

        keys = batch.column(key).to_pandas()
        part = (pd.util.hash_pandas_object(keys, index=False).to_numpy() % n).astype("int64")
        return batch.append_column("_part", pa.array(part, pa.int64()))

    return udf


def _value_part_udf(key: str):
    def udf(batch: pa.Table) -> pa.Table:
        return batch.append_column("_part", batch.column(key).cast(pa.int64()))

    return udf


def by_key_partition(ds, n: int, fn: Callable, key: str = "_key", schema: pa.Schema = None,
                     batch_format: str = "pandas", scratch_uri: Optional[str] = None,
                     map_fn: Optional[Callable[[pa.Table], Iterable[pa.Table]]] = None, files_per_task: int = 1):
    """Shuffle rows so that all rows sharing ``key`` land in one of n partitions, then call
    ``fn(partition)`` once per partition (many keys per call, so the hook can work vectorized
    instead of paying a call per key). The partition is a pandas frame, or a pyarrow Table with
    ``batch_format="pyarrow"``, or with ``batch_format="partition"`` an object that reads it on
    demand (:class:`ShufflePartition`: some columns, or some rows), for a hook whose partition
    may be too big to hold whole. With ``schema`` a pandas result is cast to it.

    With ``scratch_uri`` the shuffle goes through files there (:func:`file_shuffle`): the map
    side runs when this is called and the result reads them lazily. Without it, a Ray Data
    groupby (sort-based, through the object store) does it: bench/curate's one-process path,
    whose stand-in Dataset has a groupby.

    ``map_fn(batch)``, an iterator of tables, makes the rows to shuffle from each of ``ds``'s
    batches (a file list, say) inside the shuffle's map task, so they are written a run at a
    time instead of held whole (see :func:`file_shuffle`), ``files_per_task`` of those batches'
    rows to a map task."""

    def call(batch):
        if batch_format == "partition":  # fn reads the partition itself (ShufflePartition)
            out = fn(batch if isinstance(batch, ShufflePartition) else TablePartition(batch.drop_columns(["_part"])))
        elif batch_format == "pyarrow":
            out = fn(batch.drop_columns(["_part"]))
        else:
            out = fn(batch.drop(columns=["_part"]))
            if schema is not None:
                out = pa.Table.from_pandas(out[schema.names], schema=schema, preserve_index=False)
        del batch
        release_memory()
        return out

    if scratch_uri is not None:
        return file_shuffle(ds, n, key, scratch_uri, call, batch_format, schema, map_fn=map_fn,
                            files_per_task=files_per_task)
    if map_fn is not None:
        ds = ds.map_batches(_concat_udf(map_fn), batch_size=max(1, int(files_per_task)), batch_format="pyarrow",
                            **task_args())
    return ds.map_batches(_part_udf(n, key), batch_format="pyarrow", **task_args()).groupby(
        "_part", num_partitions=n
    ).map_groups(call, batch_format="pyarrow" if batch_format == "partition" else batch_format)


# What a shuffle map task returns: one row per map file, the byte range (offset, length) and
# row count of each of its non-empty partitions as lists, so the file's name crosses once and
# not once per piece. As one row per piece, the names made the blocks the driver gathered ~5x
# the index (~120 MB for the links join at 10M records, 740 map files x 1024 partitions);
# replayed at that shape (bench/curate/shuffleindex.py), the driver's peak over the step went
# +131 -> +80 MB and what it kept after it +72 -> +39 MB (bench/README.md, curate Round 14).
MAP_INDEX_SCHEMA = pa.schema([("file", pa.string()), ("part", pa.list_(pa.int32())),
                              ("offset", pa.list_(pa.int64())), ("length", pa.list_(pa.int64())),
                              ("rows", pa.list_(pa.int64()))])
# What a file shuffle's map task returns instead (``_RunWriter.write(index_in_file=True)``): where
# in its file the index row above sits, written after the partitions' bytes. The driver gathers
# only these (a name and two numbers a map file); a task reads the footers and builds the index
# (:func:`gather_shuffle_index`).
MAP_POINTER_SCHEMA = pa.schema([("file", pa.string()), ("footer_offset", pa.int64()), ("footer_length", pa.int64())])
# Arrow IPC buffers compressed with LZ4 (what Spark compresses its shuffle files with): cheap
# to write and read, and 2-4x smaller for the text columns of ingest's joins.
SHUFFLE_COMPRESSION = "lz4"


# Uncompressed bytes of rows a shuffle map task sorts by partition at a time (one "run"). Each
# run's piece of a partition is compressed at once and held until the task writes its file, so
# the task holds its block's rows LZ4-compressed plus one run, not the block twice (sorted copy)
# with the UDF's output before it. Replayed on the timelines map (bench/README.md, curate Round
# 11): no difference at bench/curate's files (8-18k kept rows), 288-312 -> 203-222 MB on a 95k-row
# file, so a task's memory stops following ``ingest.rows_per_file`` through its output. Big
# enough that the band and link shuffles' blocks stay one run.
SHUFFLE_RUN_BYTES = 8 << 20


def _ipc_bytes(table: pa.Table) -> pa.Buffer:
    """``table`` as one self-contained Arrow IPC stream (schema, batches, end marker)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression=SHUFFLE_COMPRESSION)) as w:
        w.write_table(table)
    return sink.getvalue()


def _read_ipc_streams(buf: pa.Buffer, options=None) -> pa.Table:
    """The rows of one or more self-contained IPC streams written back to back (a map task's
    runs of one partition)."""
    reader = pa.BufferReader(buf)
    tables = []
    while reader.tell() < buf.size:
        tables.append(pa.ipc.open_stream(reader, options=options).read_all())
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def _concat_udf(map_fn: Callable[[pa.Table], Iterable[pa.Table]]) -> Callable[[pa.Table], pa.Table]:
    """``map_fn``'s pieces of a batch as one table (the groupby path, which has no runs)."""

    def udf(batch: pa.Table) -> pa.Table:
        return pa.concat_tables(list(map_fn(batch)))

    return udf


class TableGather:
    """Tables held until their total ``measure`` (rows, say, or bytes) reaches ``bound``, then
    taken as one: how a streaming writer turns many small pieces into few kernel calls."""

    def __init__(self, bound: int, measure: Callable[[pa.Table], int]):
        self.bound, self.measure = bound, measure
        self._tables: List[pa.Table] = []
        self._size = 0

    def add(self, table: pa.Table) -> bool:
        """Hold ``table``; whether the bound is reached (time to :meth:`take`)."""
        self._tables.append(table)
        self._size += self.measure(table)
        return self._size >= self.bound

    def take(self) -> Optional[pa.Table]:
        """The held tables as one (None when none), and nothing held after."""
        if not self._tables:
            return None
        out = self._tables[0] if len(self._tables) == 1 else pa.concat_tables(self._tables)
        self._tables, self._size = [], 0
        return out


class _RunWriter:
    """A shuffle map task's output: rows added piece by piece, sorted by partition a run of
    about :data:`SHUFFLE_RUN_BYTES` at a time, each run's piece of each partition compressed at
    once; ``write`` puts every partition's pieces back to back in one file (one byte range per
    partition, read by :func:`_read_ipc_streams`) and returns the index rows."""

    def __init__(self, n: int, key: str, run_bytes: int = SHUFFLE_RUN_BYTES, by_value: bool = False):
        # by_value: ``key`` already holds each row's partition (0..n-1), not a key to hash
        self._part_udf = _value_part_udf(key) if by_value else _part_udf(n, key)
        self._pending = TableGather(run_bytes, lambda t: t.nbytes)
        self._pieces: Dict[int, List[pa.Buffer]] = {}
        self._rows: Dict[int, int] = {}

    def add(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        if self._pending.add(table):
            self._flush()

    def _flush(self) -> None:
        run = self._pending.take()
        if run is None:
            return
        run = self._part_udf(run)
        part = run.column("_part").to_numpy()
        order = np.argsort(part, kind="stable")
        run, part = run.take(pa.array(order)), part[order]
        cuts = np.flatnonzero(np.diff(part)) + 1
        for s, e in zip(np.concatenate([[0], cuts]).tolist(), np.concatenate([cuts, [len(part)]]).tolist()):
            p = int(part[s])
            self._pieces.setdefault(p, []).append(_ipc_bytes(run.slice(s, e - s)))
            self._rows[p] = self._rows.get(p, 0) + (e - s)
        del run

    def write(self, scratch_uri: str, index_in_file: bool = False) -> pa.Table:
        """Write the file; return its :data:`MAP_INDEX_SCHEMA` row, or with ``index_in_file``
        append that row to the file (an IPC stream after the partitions' bytes) and return its
        :data:`MAP_POINTER_SCHEMA` row. Empty (no file) when no row was added."""
        import uuid

        from .. import storage

        self._flush()
        if not self._rows:
            return (MAP_POINTER_SCHEMA if index_in_file else MAP_INDEX_SCHEMA).empty_table()
        name = storage.join(scratch_uri, f"map-{uuid.uuid4().hex}.arrows")
        fs, path = storage.get_fs(name)
        parts, offsets, lengths = sorted(self._pieces), [], []
        offset = 0
        with fs.open(path, "wb") as f:
            for p in parts:
                length = 0
                for buf in self._pieces.pop(p):
                    f.write(memoryview(buf))
                    length += buf.size
                offsets.append(offset)
                lengths.append(length)
                offset += length
            index = pa.table({"file": [name], "part": [parts], "offset": [offsets], "length": [lengths],
                              "rows": [[self._rows[p] for p in parts]]}, schema=MAP_INDEX_SCHEMA)
            if not index_in_file:
                return index
            footer = _ipc_bytes(index.drop_columns(["file"]))
            f.write(memoryview(footer))
        return pa.table({"file": [name], "footer_offset": [offset], "footer_length": [footer.size]},
                        schema=MAP_POINTER_SCHEMA)


def read_map_footers(pointers: pa.Table, threads: int = 16) -> List[pa.Table]:
    """The :data:`MAP_INDEX_SCHEMA` rows of the map files named by ``pointers``
    (:data:`MAP_POINTER_SCHEMA`), read from their footers: one ranged read each, on ``threads``
    threads (object storage answers a request at a time; the footers are a few KB to ~40 KB)."""
    from concurrent.futures import ThreadPoolExecutor

    from .. import storage

    def one(row) -> pa.Table:
        name, offset, length = row
        fs, path = storage.get_fs(name)
        table = _read_ipc_streams(pa.py_buffer(fs.cat_file(path, start=offset, end=offset + length)))
        return table.add_column(0, "file", pa.array([name] * table.num_rows, pa.string())).cast(MAP_INDEX_SCHEMA)

    rows = list(zip(*(pointers.column(c).to_pylist() for c in MAP_POINTER_SCHEMA.names)))
    if len(rows) <= 1:
        return [one(r) for r in rows]
    with ThreadPoolExecutor(max_workers=min(threads, len(rows))) as pool:
        return list(pool.map(one, rows))


def shuffle_index(parts: List[pa.Table]):
    """(file names, index, los, his) of a shuffle's map output: ``parts``, the map tasks'
    :data:`MAP_INDEX_SCHEMA` rows, as one flat table, a row per piece (``file_id``, ``part``,
    ``offset``, ``length``, ``rows``) sorted by partition, whose rows ``los[i]`` to ``his[i]`` are
    the i-th non-empty partition's pieces (``ShufflePartition.of_index``).

    The index stays columnar (file ids, not names; no Python row per piece), and each reduce
    task slices its own range of it from the object store. As Python rows it was M map files x
    P partitions dicts on the driver: ~2.8M for the band shuffle at 55M records (2,750 x 1024),
    over a GB, where this is 32 bytes a piece."""
    import pyarrow.compute as pc

    # the map tasks' blocks stay chunks (no combined copy): each column is read out flat once
    maps = pa.concat_tables(parts) if parts else MAP_INDEX_SCHEMA.empty_table()
    del parts
    files = maps.column("file").combine_chunks()
    if not maps.num_rows:
        index = pa.table({"file_id": pa.array([], pa.int32()), "part": pa.array([], pa.int32()),
                          **{c: pa.array([], pa.int64()) for c in ("offset", "length", "rows")}})
        empty = np.empty(0, np.int64)
        return files, index, empty, empty

    def flat(column: str) -> np.ndarray:
        return pc.list_flatten(maps.column(column)).to_numpy()

    counts = pc.list_value_length(maps.column("part")).to_numpy()
    part = flat("part")
    order = np.argsort(part, kind="stable")
    part = part[order]
    index = pa.table({"file_id": pa.array(np.repeat(np.arange(len(files), dtype=np.int32), counts)[order]),
                      "part": pa.array(part), **{c: pa.array(flat(c)[order]) for c in ("offset", "length", "rows")}})
    del maps, order
    cuts = np.flatnonzero(np.diff(part)) + 1
    los = np.concatenate([[0], cuts]).astype(np.int64) if len(part) else np.empty(0, np.int64)
    his = np.append(los[1:], len(part)).astype(np.int64)
    return files, index, los, his


def _index_task(pointers: pa.Table):
    """(``{"files", "index"}``, ``(los, his, rows, map files)``) of a shuffle's map files, from
    their footers (``pointers``: :data:`MAP_POINTER_SCHEMA`): what :func:`gather_shuffle_index`
    runs in a task."""
    import pyarrow.compute as pc

    files, index, los, his = shuffle_index(read_map_footers(pointers))
    n_rows = int(pc.sum(index.column("rows")).as_py() or 0)
    release_memory()  # the footers' tables and the flattening's temporaries
    return {"files": files, "index": index}, (los, his, n_rows, len(files))


_INDEX_TASK = None


def gather_shuffle_index(mapped):
    """(shared, los, his, rows, map files) of a file shuffle's map side ``mapped`` (a Dataset of
    :data:`MAP_POINTER_SCHEMA` rows, run here): ``shared`` is the object ref of ``{"files",
    "index"}`` (:func:`shuffle_index`; the dict itself without Ray), ``los``/``his`` its
    partitions' row ranges.

    The driver gathers only the map files' names and footer positions; a task reads each file's
    index from its footer, builds the index and returns it into the object store, and only the
    partitions' ranges (16 bytes each) come back. Why: each map task's index row (~32 KB at
    1,024 partitions) came back inline into the driver's heap (Ray keeps a task's small returns
    with its owner), and the driver then built and put the index, so at 10M records it grew
    ~150 MB through dedup's shuffles (to 405 MB, the run's largest process, against 185 at 1M;
    bench/README.md curate Round 15). Replayed at the 10M links join's shape (740 map files x
    1,024 partitions, ``bench/curate/shuffleindex.py``): the driver's peak over the step +82-88 ->
    +15-17 MB, what it keeps after it +35-39 -> +9-10. (Building it in a task from the returned rows, passed as arguments, was worse:
    +100, the rows crossing the driver twice.) The task prefers the driver's node, where
    ``ray.put`` used to leave the index; a head node with no CPUs sends it elsewhere (``soft``),
    and a lost node's index is rebuilt from the task's lineage like any task's output.

    It takes a CPU like any task, and waits for one. With ``num_cpus=0`` (until Round 18) it ran
    at once, and while another shuffle's tasks held both CPUs (ingest shuffles its platforms
    concurrently) the raylet started a third worker process for it, ~105 MB for the few
    seconds it ran: that was the whole ingest's peak at 1M and at 10M records (bench/README.md,
    curate Round 18). With a CPU it runs in one of the workers the node already has."""
    import ray

    parts = [t for t in mapped.iter_batches(batch_format="pyarrow", batch_size=None) if t.num_rows]
    pointers = pa.concat_tables(parts).combine_chunks() if parts else MAP_POINTER_SCHEMA.empty_table()
    del parts
    if not ray.is_initialized():  # a stand-in Dataset (bench/curate's one-process path)
        shared, meta = _index_task(pointers)
        return (shared, *meta)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    global _INDEX_TASK
    if _INDEX_TASK is None:
        _INDEX_TASK = ray.remote(num_cpus=1, num_returns=2)(_index_task)
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=True)
    shared, meta = _INDEX_TASK.options(scheduling_strategy=here).remote(pointers)
    los, his, n_rows, n_files = ray.get(meta)
    return shared, los, his, n_rows, n_files


def file_shuffle(ds, n: int, key: str, scratch_uri: str, reduce_fn: Callable, batch_format: str = "pyarrow",
                 schema: Optional[pa.Schema] = None,
                 map_fn: Optional[Callable[[pa.Table], Iterable[pa.Table]]] = None, files_per_task: int = 1):
    """A hash shuffle of ``ds`` into n partitions through files under ``scratch_uri``, then
    ``reduce_fn`` once per non-empty partition (it gets the rows with a ``_part`` column, or
    with ``batch_format="partition"`` a :class:`ShufflePartition` to read them from).

    Why not Ray Data's groupby: its pull-based sort shuffle keeps every map output in the object
    store until the reducers have run, so the store's high-water mark (and the pages Plasma
    keeps resident after it) grows with the input: ~1.1 GB of ingest's 1M-record shuffles and
    +0.47 GB for curate's timelines (bench/README.md, curate Round 5). Here, as in Spark's sort
    shuffle, each map task sorts its block by partition and writes it to one file, each
    partition's rows one byte range of LZ4-compressed Arrow IPC (one stream per sorted run, see
    :class:`_RunWriter`), then its index (partition, offset, length, rows of each piece:
    :data:`MAP_INDEX_SCHEMA`) as the file's footer, and returns where that is. A task reads the
    footers into one Arrow table sorted by partition, in the object store
    (:func:`gather_shuffle_index`: the driver gets only the partitions' row ranges), and each
    reduce task slices its partition's rows
    from it and reads its byte range of every file, one ranged read each, with no footer to
    parse. (Parquet with one row group per partition made every reduce task parse every map
    file's footer, P row groups each: M x P^2 metadata work, most of the band shuffle's reduce
    time at 1M records; bench/README.md curate Round 6.) Memory holds one block per running task,
    at any input size; with ``map_fn`` (rows made from each input batch, e.g. one file each,
    inside the map task) one run of rows plus the task's output compressed; ``files_per_task``
    rows of ``ds`` (files) go to one map task then, which writes one map file for them all (see
    :func:`files_per_task`). The files go with the stage's scratch folder.

    A map task that Ray retries writes a new file (a fresh name); only the index rows of the
    attempt that finished are read, so a dead attempt's file is ignored."""
    import ray

    from .. import storage

    storage.makedirs(scratch_uri)
    run_bytes = SHUFFLE_RUN_BYTES  # read here, on the driver, so a test's change reaches the tasks

    def write_map(batch: pa.Table) -> pa.Table:
        runs = _RunWriter(n, key, run_bytes)
        for piece in (map_fn(batch) if map_fn is not None else [batch]):
            runs.add(piece)
            del piece
        del batch
        out = runs.write(scratch_uri, index_in_file=True)
        del runs
        release_memory()
        return out

    t0 = time.monotonic()
    mapped = (ds.map_batches(write_map, batch_size=max(1, int(files_per_task)), batch_format="pyarrow", **task_args())
              if map_fn is not None
              else ds.map_batches(write_map, batch_format="pyarrow", **task_args()))
    shared, los, his, n_rows_total, n_files = gather_shuffle_index(mapped)
    del mapped

    def read_reduce(batch: pa.Table) -> pa.Table:
        got = shared if isinstance(shared, dict) else ray.get(shared)
        names, idx = got["files"], got["index"]
        out = []
        for lo, hi in zip(batch.column("lo").to_pylist(), batch.column("hi").to_pylist()):
            part = ShufflePartition.of_index(names, idx, lo, hi,
                                             cache_bytes=PARTITION_CACHE_BYTES if batch_format == "partition" else 0)
            if not part.num_rows:
                out.append(schema.empty_table() if schema is not None else pa.table({}))
                continue
            if batch_format == "partition":
                out.append(reduce_fn(part))
                continue
            table = part.read(with_part=True)
            del part
            out.append(reduce_fn(table if batch_format == "pyarrow" else table.to_pandas()))
        return out[0] if len(out) == 1 else pa.concat_tables(out)

    items = [{"lo": lo, "hi": hi} for lo, hi in zip(los.tolist(), his.tolist())] or [{"lo": 0, "hi": 0}]
    log.info("shuffle %s: %d rows from %d map tasks into %d partitions (map side %.1f s)",
             scratch_uri.rstrip("/").rsplit("/", 1)[-1], n_rows_total, n_files, len(los), time.monotonic() - t0)
    # one task per partition (batch_size=1: see read_parquet_files for why not more)
    return ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
        read_reduce, batch_size=1, batch_format="pyarrow", **task_args())


# A partition read in parts keeps its slices' compressed bytes between reads up to this size
# (the timelines' 10k-record partitions are ~4 MB of LZ4): reread from storage above it.
PARTITION_CACHE_BYTES = 64 << 20


class ShufflePartition:
    """One partition of a :func:`file_shuffle`, read on demand: its slices are the byte ranges
    of the map files that hold its rows (one Arrow IPC stream each), and its rows are numbered
    in slice order. A reduce that cannot hold the partition whole (one user's records all land
    in one partition, and users are skewed) reads a few columns of every row (``read``), decides,
    then takes the rows it needs a group at a time (``take``), each slice read again per group.

    The slices' bytes (LZ4-compressed IPC) are kept between reads when the partition's total is
    under ``cache_bytes``, so a partition of ordinary size is read from storage once."""

    def __init__(self, files: List[str], offsets, lengths, rows, cache_bytes: int = 0):
        self._files = files
        self._offsets = [int(x) for x in offsets]
        self._lengths = [int(x) for x in lengths]
        self.slice_rows = np.asarray(rows, np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.slice_rows)]).astype(np.int64)
        self.num_rows = int(self.starts[-1])
        self._cache: Optional[Dict[int, pa.Buffer]] = {} if sum(self._lengths) <= cache_bytes else None

    @property
    def num_slices(self) -> int:
        return len(self._files)

    def _bytes(self, i: int) -> pa.Buffer:
        from .. import storage

        if self._cache is not None and i in self._cache:
            return self._cache[i]
        fs, path = storage.get_fs(self._files[i])
        buf = pa.py_buffer(fs.cat_file(path, start=self._offsets[i], end=self._offsets[i] + self._lengths[i]))
        if self._cache is not None:
            self._cache[i] = buf
        return buf

    @classmethod
    def of_index(cls, files: pa.Array, index: pa.Table, lo: int, hi: int, cache_bytes: int = 0) -> "ShufflePartition":
        """The partition whose pieces are rows ``lo`` to ``hi`` of a :func:`shuffle_index` index."""
        return cls([files[i].as_py() for i in index.column("file_id").slice(lo, hi - lo).to_pylist()],
                   *(index.column(c).slice(lo, hi - lo).to_numpy() for c in ("offset", "length", "rows")),
                   cache_bytes=cache_bytes)

    def read_slice(self, i: int, columns: Optional[List[str]] = None, with_part: bool = False) -> pa.Table:
        """Slice i's rows, only ``columns`` (default: all but the shuffle's ``_part``, unless
        ``with_part``); only those columns' buffers are decompressed."""
        buf = self._bytes(i)
        if with_part:
            return _read_ipc_streams(buf)
        names = pa.ipc.open_stream(buf).schema.names
        wanted = [c for c in names if c != "_part"] if columns is None else list(columns)
        opts = pa.ipc.IpcReadOptions(included_fields=[names.index(c) for c in wanted])
        return _read_ipc_streams(buf, opts).select(wanted)

    def read(self, columns: Optional[List[str]] = None, with_part: bool = False) -> pa.Table:
        """Every row, only ``columns`` (default: all but ``_part``, unless ``with_part``)."""
        return pa.concat_tables([self.read_slice(i, columns, with_part) for i in range(len(self._files))])

    def take(self, rows: np.ndarray, columns: Optional[List[str]] = None) -> pa.Table:
        """The partition's rows numbered ``rows``, in that order: each slice that holds any of
        them is read once, and only its rows in ``rows`` kept."""
        rows = np.asarray(rows, np.int64)
        which = np.searchsorted(self.starts, rows, side="right") - 1
        by_slice = np.argsort(which, kind="stable")
        # each slice's rows, column by column; then each column put in the asked order and its
        # pieces dropped, so the rows are held about once (plus one column), not twice
        chunks: Dict[str, list] = {}
        schema = None
        for i in np.unique(which).tolist():
            piece = self.read_slice(i, columns).take(pa.array(rows[which == i] - self.starts[i]))
            schema = piece.schema
            for name, col in zip(piece.column_names, piece.columns):
                chunks.setdefault(name, []).extend(col.chunks)
            del piece
        if schema is None:
            return self.read_slice(0, columns).slice(0, 0)
        back = np.empty(len(rows), np.int64)
        back[by_slice] = np.arange(len(rows))
        back = pa.array(back)
        out = []
        for f in schema:
            col = pa.chunked_array(chunks.pop(f.name), f.type).take(back)
            out.append(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
        return pa.Table.from_arrays(out, schema=schema)


class TablePartition:
    """A partition already in hand, with :class:`ShufflePartition`'s reading methods (the
    groupby path of :func:`by_key_partition`, and tests)."""

    def __init__(self, table: pa.Table):
        self._table = table
        self.num_rows = table.num_rows
        self.num_slices = 1
        self.starts = np.array([0, table.num_rows], np.int64)

    def read_slice(self, i: int, columns: Optional[List[str]] = None) -> pa.Table:
        return self.read(columns)

    def read(self, columns: Optional[List[str]] = None) -> pa.Table:
        return self._table if columns is None else self._table.select(columns)

    def take(self, rows: np.ndarray, columns: Optional[List[str]] = None) -> pa.Table:
        return self.read(columns).take(pa.array(np.asarray(rows, np.int64)))


def partitions_for(n_rows: int, rows_per_partition: int, most: int = 1024) -> int:
    """Shuffle partitions so that each holds about ``rows_per_partition`` rows, 2 to ``most``.

    The cap bounds the pull shuffle's objects (input blocks x partitions, all owned by the
    driver); past it partitions grow instead (at the paper's 10x scale, 55M records over 1024
    partitions is ~54k rows each)."""
    return max(2, min(most, n_rows // max(1, rows_per_partition) + 1))


def content_name(batch: pa.Table, columns: List[str], prefix: str = "part") -> str:
    """A Parquet file name derived from the identity columns of a block's rows.

    A map task that writes its own files (instead of returning rows) names them this way: Ray
    retries a task whose worker died, and the retry then overwrites the files of the first
    attempt instead of adding copies (the block's content is the same on every attempt)."""
    import hashlib

    h = hashlib.sha1()
    for c in columns:
        h.update("\x1f".join(map(str, batch.column(c).to_pylist())).encode("utf-8", "replace"))
        h.update(b"\x1e")
    return f"{prefix}-{h.hexdigest()[:24]}.parquet"


def write_part(table: pa.Table, uri: str, name: str) -> None:
    """Write one Parquet file ``{uri}/{name}`` (local path or object store); nothing for no rows."""
    import os

    import pyarrow.parquet as pq

    from .. import storage

    if not table.num_rows:
        return
    path, fs = storage.arrow_fs(uri)
    if fs is None:
        os.makedirs(path, exist_ok=True)
    pq.write_table(table, f"{path.rstrip('/')}/{name}", filesystem=fs)


# Scratch intermediates of a stage attempt live in ``{stage}/_scratch`` (see :func:`spill`). It
# is not in the reset's keep list: a killed attempt's partial files go with its data, so a rerun
# recomputes them from the input; a finished stage removes the folder.
SCRATCH = "_scratch"


def spill(ds, uri: str, schema: pa.Schema, rows_per_file: int):
    """Write ``ds`` as Parquet under ``uri`` and return a lazy Dataset that reads it back.

    Used instead of ``materialize()`` between passes over an intermediate: the write streams
    (blocks go to files as they are made, so the object store holds a window of blocks, not the
    whole dataset, and memory stays flat as the input grows), and every later pass gets one
    read task per file of at most ``rows_per_file`` rows, so it runs in parallel even when the
    producer made one big block."""
    from .. import storage

    storage.rm(uri)
    path, fs = storage.arrow_fs(uri)
    try:
        ds.write_parquet(path, filesystem=fs, max_rows_per_file=max(1, int(rows_per_file)),
                         ray_remote_args=task_args())
    except FileNotFoundError:
        # Ray 2.60 deletes the folder of a write that wrote no rows, and on S3 there is no
        # folder to delete: nothing to spill, which read_parquet_files reads as empty.
        if storage.ls_files(uri, suffix=".parquet"):
            raise
    return read_parquet_files(uri, schema)


def read_parquet_files(uri: str, schema: pa.Schema, files_per_task: int = 1):
    """A Dataset of the Parquet files under ``uri`` with exactly one block per file: the
    columns of ``schema`` (only those are read), cast to it; empty and typed when there are none.

    Why not ``ray.data.read_parquet``: Ray 2.60's Parquet reader (datasource V2) bin-packs
    files into read tasks of up to 128 MiB uncompressed (``RAY_DATA_PARQUET_BIN_PACKING_BYTES``)
    and ignores ``override_num_blocks``, so the files of a 100k-record stage came back as one
    block and the map after it (the record pass, MinHash) ran as one task on one core; each
    call also starts a footer-reader actor pool. Here the files themselves are the unit of
    work, and their size is ours to choose (``rows_per_file``).

    Trap: Ray fuses the file-reading map with the maps after it and bundles input rows up to
    the largest ``batch_size`` among them; the input has one row per file, so a following
    ``map_batches(batch_size=1024)`` would put 1024 files in one task. Maps over this Dataset
    keep the default ``batch_size=None`` (one call per file's block).

    ``files_per_task`` > 1: each read task reads that many files into one block, for a pass
    whose work per file is small (a count over a few columns; see :func:`files_per_task`)."""
    return read_parquet_sources([uri], schema, files_per_task)


def parquet_file_list(uris: List[str]):
    """The Parquet files under the folders ``uris`` (one filesystem): (paths as pyarrow takes
    them, that pyarrow filesystem or None for local paths)."""
    from .. import storage

    paths = [storage.arrow_fs(f)[0] for uri in uris for f in storage.ls_files(uri, suffix=".parquet")]
    return paths, (storage.arrow_fs(uris[0])[1] if uris else None)


def largest_first(paths: List[str], fs=None) -> List[str]:
    """``paths`` (as :func:`parquet_file_list` gives them) ordered by size, largest first, ties
    by name. For a map of one task per file: Ray Data starts the tasks in input order, so with
    the biggest files first the last tasks to start are the shortest, and the pass does not end
    on one big file running alone while the other CPUs idle (longest processing time first).
    Its effect alone is not measured: bench/README.md's curate Round 27 ran with it, within the
    host's drift of the runs without it."""
    import pyarrow.fs as pafs

    if len(paths) < 2:
        return list(paths)
    infos = (fs or pafs.LocalFileSystem()).get_file_info(list(paths))
    sizes = {p: (i.size or 0) for p, i in zip(paths, infos)}
    return sorted(paths, key=lambda p: (-sizes[p], p))


# Passes of one task per scratch file whose work per file is small (a shuffle's map side, a
# count, ingest's final write: ~0.1-0.3 s a file) paid Ray's cost per task more than their
# work: 54 files that one process read in 1.14 s took 2.58 s as 54 Ray tasks on 2 CPUs and
# 1.44 s as 9 (bench/curate/taskcost.py; bench/README.md, curate Round 28). So such a pass
# gives each task several files, leaving about this many tasks per CPU for balance ...
SMALL_FILE_TASKS_PER_CPU = 4
# ... and at most this many files a task: what a task holds grows with its files where it
# gathers their output (a shuffle map holds its output compressed until it writes its file), so
# the bound keeps that a constant as the corpus grows, not a share of it.
MAX_FILES_PER_TASK = 8


def files_per_task(n_files: int) -> int:
    """How many of ``n_files`` small files one task of a per-file pass takes (its ``batch_size``
    over :func:`file_list_dataset`): as many as leave ``SMALL_FILE_TASKS_PER_CPU`` tasks per CPU
    of the cluster, between 1 and ``MAX_FILES_PER_TASK``. 1 outside Ray."""
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 0
    if cpus <= 0:
        return 1
    return max(1, min(MAX_FILES_PER_TASK, n_files // (SMALL_FILE_TASKS_PER_CPU * cpus)))


def file_list_dataset(paths: List[str]):
    """A Dataset of one row (``path``) per file, one block each: the input of a map that reads
    its file itself, one task per file (map it with ``batch_size=1``, or ``files_per_task``
    files a task; see :func:`read_parquet_files` for the trap)."""
    import ray

    return ray.data.from_items([{"path": p} for p in paths], override_num_blocks=max(1, len(paths)))


def per_file_udf(one_file: Callable[[str], pa.Table], schema: pa.Schema) -> Callable[[pa.Table], pa.Table]:
    """map_batches UDF over :func:`file_list_dataset`: ``one_file(path)`` for each of the
    batch's files (one with ``batch_size=1``), results concatenated (an empty ``schema`` table
    for none), and the task's freed memory given back to the OS afterwards."""

    def udf(batch: pa.Table) -> pa.Table:
        out = pa.concat_tables([one_file(p) for p in batch.column("path").to_pylist()] or [schema.empty_table()])
        del batch
        release_memory()
        return out

    return udf


_MIX_M1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_M2 = np.uint64(0x94D049BB133111EB)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer on a uint64 array (wrapping arithmetic): a well-spread 64-bit
    hash, for keys built from integers or bytes without a Python object per row."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * _MIX_M1
        x = (x ^ (x >> np.uint64(27))) * _MIX_M2
        return x ^ (x >> np.uint64(31))


def path_stem(path: str) -> str:
    """A short stable name for an input file: what a per-file task names its outputs after, so
    a retried task overwrites them instead of adding copies."""
    import hashlib

    return hashlib.sha1(path.encode("utf-8", "replace")).hexdigest()[:24]


def iter_parquet_slices(path: str, fs, schema: pa.Schema, rows: int = 0):
    """The rows of one Parquet file, ``rows`` at a time (default :data:`PY_SLICE_ROWS`): the
    columns of ``schema``, cast to it. A task that streams its file this way holds one slice of
    decoded rows (plus a row group's compressed pages), not the file: its memory is the same
    whatever ``ingest.rows_per_file`` made the file's size."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path, filesystem=fs)
    for rb in pf.iter_batches(batch_size=rows or PY_SLICE_ROWS, columns=schema.names):
        yield pa.Table.from_batches([rb]).cast(schema)


class PartWriter:
    """One Parquet file ``{uri}/{name}`` written a table at a time (each a row group): the
    streaming counterpart of :func:`write_part`. The file is created at the first non-empty
    table, so a task with no rows writes nothing; a retried task opens the same name and
    overwrites what its dead attempt left."""

    def __init__(self, uri: str, name: str, schema: pa.Schema):
        self.uri, self.name, self.schema = uri, name, schema
        self.rows = 0
        self._writer = None

    def write(self, table: pa.Table) -> None:
        import os

        import pyarrow.parquet as pq

        from .. import storage

        if not table.num_rows:
            return
        if self._writer is None:
            path, fs = storage.arrow_fs(self.uri)
            if fs is None:
                os.makedirs(path, exist_ok=True)
            self._writer = pq.ParquetWriter(f"{path.rstrip('/')}/{self.name}", self.schema, filesystem=fs)
        self._writer.write_table(table.cast(self.schema))
        self.rows += table.num_rows

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "PartWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_parquet_sources(uris: List[str], schema: pa.Schema, files_per_task: int = 1):
    """:func:`read_parquet_files` over several folders at once: one Dataset, one block per file,
    so a map after it is fused with the read (a ``union`` of per-folder Datasets would not be;
    every block would go through the object store). The folders share one filesystem."""
    import ray

    items, fs = parquet_file_list(uris)
    if not items:
        return ray.data.from_arrow(schema.empty_table())
    items = largest_first(items, fs)

    def read(batch: pa.Table) -> pa.Table:
        import pyarrow.parquet as pq

        tables = [pq.read_table(path, filesystem=fs, columns=schema.names).cast(schema)
                  for path in batch.column("path").to_pylist()]
        return pa.concat_tables(tables) if tables else schema.empty_table()

    return file_list_dataset(items).map_batches(read, batch_size=max(1, int(files_per_task)), batch_format="pyarrow",
                                                **task_args())
