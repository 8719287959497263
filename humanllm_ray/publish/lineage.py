"""What the upstream stages say about the data behind a model, for model cards and reports.

Everything here reads the stage folders' ``_report.json`` (and the task splits' ``task``
column); a stage that has not run is simply absent from the result.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, Dict, List

from .. import storage
from ..runtime import RunPaths

log = logging.getLogger("humanllm")

# Stage folder -> label, in pipeline order.
STAGE_FOLDERS = OrderedDict(
    [
        ("ingested", "ingest"),
        ("curated", "curate"),
        ("synth", "synthesize"),
        ("qc", "qc"),
        ("tasks", "build-tasks"),
        ("train", "train"),
        ("merged", "merge"),
    ]
)
SPLITS = ("train", "val", "test")


def stage_reports(paths: RunPaths) -> Dict[str, Dict[str, Any]]:
    """{stage folder: its _report.json} for the stages that finished under the run root."""
    out: Dict[str, Dict[str, Any]] = {}
    for folder in STAGE_FOLDERS:
        uri = storage.join(paths.root, folder, "_report.json")
        try:
            if storage.exists(uri):
                out[folder] = storage.read_json(uri)
        except Exception as exc:  # a broken upstream report must not block publishing
            log.warning("could not read %s: %s", uri, exc)
    return out


def stage_funnel(reports: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per finished stage: rows in / out / quarantined / merged."""
    rows = []
    for folder, label in STAGE_FOLDERS.items():
        r = reports.get(folder)
        if r is None:
            continue
        rows.append(
            {
                "stage": label,
                "in": r.get("rows_in"),
                "out": r.get("rows_out"),
                "quarantined": r.get("rows_quarantined"),
                "merged": r.get("rows_merged"),
            }
        )
    return rows


def platform_funnel(reports: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """Per-platform record counts through the stages that report ``by_platform``.

    Returns {"columns": [label, ...], "rows": [{"platform": p, label: n, ...}, ...]}, where
    the first column is the raw records read by ingest and each later one a stage's output.
    """
    columns: List[str] = []
    table: Dict[str, Dict[str, Any]] = {}
    for folder, label in STAGE_FOLDERS.items():
        by_platform = (reports.get(folder) or {}).get("by_platform") or {}
        if not by_platform:
            continue
        if not columns:
            columns.append("raw records")
            for platform, counts in by_platform.items():
                table.setdefault(platform, {})["raw records"] = _count(counts, "in")
        columns.append(f"after {label}")
        for platform, counts in by_platform.items():
            table.setdefault(platform, {})[f"after {label}"] = _count(counts, "out")
    rows = [{"platform": p, **table[p]} for p in sorted(table)]
    return {"columns": columns, "rows": rows}


def _count(counts: Any, key: str) -> Any:
    if isinstance(counts, dict):
        return counts.get(key)
    return counts if key == "out" else None


def task_mix(paths: RunPaths) -> Dict[str, Dict[str, int]]:
    """{split: {task: examples}} counted from the task splits (only the ``task`` column is read)."""
    import pyarrow.parquet as pq

    mix: Dict[str, Dict[str, int]] = {}
    for split in SPLITS:
        counts: Dict[str, int] = {}
        for uri in storage.ls_files(storage.join(paths.tasks, split), suffix=".parquet"):
            fs, path = storage.get_fs(uri)
            try:
                with fs.open(path, "rb") as fh:
                    column = pq.read_table(fh, columns=["task"]).column("task").to_pylist()
            except Exception as exc:
                log.warning("could not read the task column of %s: %s", uri, exc)
                continue
            for task in column:
                counts[task] = counts.get(task, 0) + 1
        if counts:
            mix[split] = dict(sorted(counts.items()))
    return mix
