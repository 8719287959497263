"""The stage contract every pipeline step follows (see DESIGN.md, "Stage contract").

A stage reads dataset URIs and writes one output folder holding

* its data (Parquet, usually under ``data/``),
* ``_quarantine/`` — rejected rows, each with ``reason`` and its source location,
* ``_report.json`` — rows in / out / quarantined / merged, by reason and platform, seconds,
* ``_SUCCESS`` — written last, holding the hash of the config and inputs that produced it.

A stage whose ``_SUCCESS`` matches the current hash is skipped (rerun = no-op). One
without it is reset (its data and quarantine removed; ``_cache``/``_work`` kept so
expensive work such as paid-for LLM calls survives) and run again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterable, List, Optional

from . import storage

log = logging.getLogger("humanllm")

SUCCESS = "_SUCCESS"
REPORT = "_report.json"
QUARANTINE = "_quarantine"

QUARANTINE_COLUMNS = (
    "stage",
    "reason",
    "detail",
    "platform",
    "source_file",
    "source_line",
    "record_id",
    "user_id",
    "raw",
)


def quarantine_schema():
    """The pyarrow schema of quarantine rows (``QUARANTINE_COLUMNS``; ``source_line`` is int64).
    A function so that importing this module does not import pyarrow."""
    import pyarrow as pa

    return pa.schema([(c, pa.int64() if c == "source_line" else pa.string()) for c in QUARANTINE_COLUMNS])


class AccountingError(RuntimeError):
    """rows_in != rows_out + rows_quarantined + rows_merged: a stage lost rows. Always a bug."""


def quarantine_row(
    stage: str,
    reason: str,
    *,
    detail: str = "",
    platform: str = "",
    source_file: str = "",
    source_line: int = -1,
    record_id: str = "",
    user_id: str = "",
    raw: Any = "",
    raw_limit: int = 4000,
) -> Dict[str, Any]:
    """One quarantined row with a fixed schema, so every stage's _quarantine/ reads alike."""
    if not isinstance(raw, str):
        try:
            raw = json.dumps(raw, default=str, ensure_ascii=False)
        except Exception:  # pragma: no cover - raw is best effort context
            raw = repr(raw)
    return {
        "stage": stage,
        "reason": reason,
        "detail": str(detail)[:2000],
        "platform": platform or "",
        "source_file": source_file or "",
        "source_line": int(source_line if source_line is not None else -1),
        "record_id": str(record_id or ""),
        "user_id": str(user_id or ""),
        "raw": raw[:raw_limit],
    }


@dataclass
class StageResult:
    """What a stage body returns; the runner turns it into _report.json."""

    rows_in: int
    rows_out: int
    rows_quarantined: int = 0
    rows_merged: int = 0
    by_reason: Dict[str, int] = field(default_factory=dict)
    by_platform: Dict[str, Dict[str, int]] = field(default_factory=dict)
    extra: Dict[str, Any] = field(default_factory=dict)


class StageDir:
    """Paths and writers for one stage's output folder."""

    def __init__(self, uri: str):
        self.uri = storage.normalize(uri)

    def path(self, *parts: str) -> str:
        return storage.join(self.uri, *parts)

    @property
    def data_uri(self) -> str:
        return self.path("data")

    @property
    def quarantine_uri(self) -> str:
        return self.path(QUARANTINE)

    def success(self) -> Optional[Dict[str, Any]]:
        uri = self.path(SUCCESS)
        if not storage.exists(uri):
            return None
        try:
            return storage.read_json(uri)
        except Exception:
            return {}

    def report(self) -> Optional[Dict[str, Any]]:
        uri = self.path(REPORT)
        return storage.read_json(uri) if storage.exists(uri) else None

    def reset(self, keep: Iterable[str] = ("_cache", "_work")) -> None:
        """Remove a previous, unfinished attempt's outputs (kept: resumable caches)."""
        fs, path = storage.get_fs(self.uri)
        if not fs.exists(path):
            storage.makedirs(self.uri)
            return
        keep = set(keep)
        for entry in fs.ls(path, detail=False):
            name = entry.rstrip("/").rsplit("/", 1)[-1]
            if name in keep:
                continue
            fs.rm(entry, recursive=True)

    def write_quarantine(self, rows: List[Dict[str, Any]], name: str = "part-0") -> int:
        """Write quarantined rows (dicts from quarantine_row) as Parquet; returns the count."""
        if not rows:
            return 0
        import pyarrow as pa

        table = pa.Table.from_pylist([{k: r.get(k) for k in QUARANTINE_COLUMNS} for r in rows])
        write_table(table, storage.join(self.quarantine_uri, f"{name}.parquet"))
        return len(rows)


def write_table(table: Any, uri: str) -> None:
    """Write one pyarrow Table as a Parquet file at uri (local or remote)."""
    import pyarrow.parquet as pq

    fs, path = storage.get_fs(uri)
    if not storage.is_remote(uri):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with fs.open(path, "wb") as fh:
        pq.write_table(table, fh)


def read_table(uri: str):
    """Read every Parquet file below uri into one pyarrow Table (small data: reports, tests)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = storage.ls_files(uri, suffix=".parquet")
    if not files:
        return pa.table({})
    tables = []
    for f in files:
        fs, path = storage.get_fs(f)
        with fs.open(path, "rb") as fh:
            tables.append(pq.read_table(fh))
    return pa.concat_tables(tables, promote_options="default")


def run_stage(
    name: str,
    output_uri: str,
    body: Callable[[StageDir], StageResult],
    *,
    fingerprint: Any,
    inputs: Iterable[str] = (),
    force: bool = False,
    keep: Iterable[str] = ("_cache", "_work"),
) -> Dict[str, Any]:
    """Run ``body`` under the stage contract and return its report.

    ``fingerprint`` is anything JSON-able that determines the output (the stage's config
    block, upstream ``_SUCCESS`` hashes, ...). Input stage folders listed in ``inputs``
    contribute their own ``_SUCCESS`` hash, so a changed upstream re-runs downstream.
    ``keep`` names entries of the output folder that survive the reset of an unfinished
    attempt (resumable state, e.g. the train stage's ``checkpoints``).
    """
    from .config import config_hash

    out = StageDir(output_uri)
    upstream = {}
    for uri in inputs:
        s = StageDir(uri).success()
        upstream[storage.normalize(uri)] = (s or {}).get("hash")
    digest = config_hash({"stage": name, "fingerprint": fingerprint, "upstream": upstream})

    done = out.success()
    if done is not None and done.get("hash") == digest and not force:
        report = out.report() or {}
        report["skipped"] = True
        log.info("stage %s: already done at %s (hash %s), skipping", name, out.uri, digest)
        return report

    if done is not None:
        log.info("stage %s: inputs or config changed since the last run; recomputing", name)
    out.reset(keep=keep)
    log.info("stage %s: writing %s", name, out.uri)
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    result = body(out)
    seconds = time.perf_counter() - t0

    accounted = result.rows_out + result.rows_quarantined + result.rows_merged
    if result.rows_in != accounted:
        raise AccountingError(
            f"stage {name}: rows_in={result.rows_in} but out+quarantined+merged={accounted} "
            f"({result.rows_out}+{result.rows_quarantined}+{result.rows_merged})"
        )
    report = {
        "stage": name,
        "rows_in": result.rows_in,
        "rows_out": result.rows_out,
        "rows_quarantined": result.rows_quarantined,
        "rows_merged": result.rows_merged,
        "by_reason": dict(sorted(result.by_reason.items())),
        "by_platform": result.by_platform,
        "seconds": round(seconds, 3),
        "rows_per_s": round(result.rows_in / seconds, 2) if seconds > 0 else None,
        "started_at": started.isoformat(),
        "output": out.uri,
        "inputs": sorted(upstream),
        "hash": digest,
        "skipped": False,
        **result.extra,
    }
    storage.write_json(out.path(REPORT), report)
    # _SUCCESS last: a reader that sees it can trust everything above.
    storage.write_json(out.path(SUCCESS), {"hash": digest, "finished_at": datetime.now(timezone.utc).isoformat()})
    log.info(
        "stage %s: in=%d out=%d quarantined=%d merged=%d in %.1fs",
        name,
        result.rows_in,
        result.rows_out,
        result.rows_quarantined,
        result.rows_merged,
        seconds,
    )
    return report


def count_reasons(rows: Iterable[Dict[str, Any]]) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for r in rows:
        counts[r["reason"]] = counts.get(r["reason"], 0) + 1
    return counts
