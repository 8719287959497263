"""Publish stage: the merged model to ``{publish.uri}/{name}/{version}/`` with a model card
and a manifest, then the ``{name}/latest`` pointer.

``version`` defaults to an upload id derived from the input's listing (paths, sizes,
mtimes or ETags), so the upload starts while the files are still being hashed and a rerun
after an interruption completes the same version; publishing content that is already
published (same sha256 of every file) is a no-op that lands on that version.
``publish.version`` overrides the name. See :func:`store.publish_model`.
The stage folder ``{run.root}/publish`` holds the report (rows = files) and ``_SUCCESS``.

Readers: :func:`verify` re-hashes a version against its manifest; :func:`load` returns a
local verified copy for ``AutoModelForCausalLM.from_pretrained``. Both accept a version
folder or a ``{name}`` folder (resolved through ``latest``).
"""

from __future__ import annotations

import logging
import tempfile
from contextlib import contextmanager
from dataclasses import asdict
from typing import Callable, Iterator, Optional

from .. import storage
from ..config import HumanLLMConfig, config_hash, to_dict
from ..runtime import RunPaths
from ..stage import StageDir, StageResult, run_stage
from .card import TRAIN_KEYS, TRAIN_REPORT_KEYS, CardContext, model_facts, render_model_card, safe_config
from .lineage import platform_funnel, stage_funnel, stage_reports, task_mix
from .manifest import GENERATED, listing_key, local_listing_key
from .store import (
    PublishError,
    PublishResult,
    VerificationError,
    is_published,
    load,
    publish_model,
    redact,
    resolve_version,
    verify,
)

__all__ = [
    "run",
    "verify",
    "load",
    "publish_model",
    "resolve_version",
    "is_published",
    "model_folder",
    "published_name_uri",
    "PublishError",
    "PublishResult",
    "VerificationError",
]

log = logging.getLogger("humanllm")


def model_folder(uri: str) -> str:
    """The model inside a merge stage folder (``{uri}/model``), or ``uri`` if it is one."""
    uri = storage.normalize(uri)
    nested = storage.join(uri, "model")
    if storage.exists(storage.join(nested, "config.json")):
        return nested
    if storage.exists(storage.join(uri, "config.json")):
        return uri
    raise PublishError(f"no model at {redact(uri)} (expected {redact(nested)}/config.json); run the merge stage first")


def published_name_uri(cfg: HumanLLMConfig) -> str:
    """``{publish.uri}/{publish.name}``: where ``latest`` and the versions of this model live."""
    return storage.join(RunPaths.from_config(cfg).publish_uri(cfg), cfg.publish.name)


def source_key(model_uri: str) -> str:
    """``listing_key`` of the model folder where it lives (local: mtimes; object store:
    ETags), without reading the files: the stage's change check and the upload id."""
    if not storage.is_remote(model_uri):
        return local_listing_key(storage.normalize(model_uri))
    fs, root = storage.get_fs(model_uri)
    entries = []
    for path, info in fs.find(root, detail=True).items():
        if info.get("type") == "directory":
            continue
        rel = path[len(root) :].lstrip("/")
        parts = rel.split("/")
        if any(p.startswith(".") for p in parts) or ".tmp" in parts[-1] or rel in GENERATED:
            continue
        stamp = info.get("ETag") or info.get("etag") or info.get("LastModified") or info.get("mtime") or ""
        entries.append((rel, int(info.get("size") or 0), str(stamp)))
    return listing_key(entries)


@contextmanager
def _local_copy(model_uri: str) -> Iterator[str]:
    """The model folder itself when local; a fresh temporary download when remote (never a
    cache: what gets hashed and published must be what is there now)."""
    if not storage.is_remote(model_uri):
        yield storage.normalize(model_uri)
        return
    with tempfile.TemporaryDirectory(prefix="humanllm-publish-") as tmp:
        yield storage.get_dir(model_uri, tmp)


def _merge_info(merged_uri: str) -> Optional[dict]:
    """How the model was merged, from the merge stage's report (None for a bare model folder)."""
    report = StageDir(merged_uri).report()
    if not report or report.get("stage") != "merge":
        return None
    info = {k: report.get(k) for k in ("method", "weights", "models", "base_model", "params")}
    info["models"] = [redact(m) for m in info.get("models") or []]
    return info


def _card_context(
    cfg: HumanLLMConfig, paths: RunPaths, merged_uri: str, local_dir: str, version: str, uri: str
) -> CardContext:
    from ..model import model_name

    reports = stage_reports(paths)
    facts = model_facts(local_dir)
    merge_info = _merge_info(merged_uri)
    eval_report = None
    eval_uri = storage.join(paths.eval, "report.json")
    if storage.exists(eval_uri):
        try:
            eval_report = storage.read_json(eval_uri)
        except Exception as exc:
            log.warning("publish: could not read %s: %s", eval_uri, exc)
    base = model_name(cfg) if cfg.model.base == "tiny" else redact(cfg.model.base)
    if cfg.model.base == "tiny":
        base += " (embedded tiny Llama, random init, tokenizer trained on the demo corpus)"
    return CardContext(
        name=cfg.publish.name,
        version=version,
        uri=uri,
        base_model=base,
        architecture={k: v for k, v in facts.items() if k != "parameters"},
        parameters=facts.get("parameters"),
        merge=merge_info,
        stage_funnel=stage_funnel(reports),
        platform_funnel=platform_funnel(reports),
        task_mix=task_mix(paths),
        train_config=safe_config(asdict(cfg.train), TRAIN_KEYS),
        train_report={k: reports["train"][k] for k in TRAIN_REPORT_KEYS if k in reports.get("train", {})},
        eval_report=eval_report,
    )


def _manifest_extra(cfg: HumanLLMConfig, paths: RunPaths, merged_uri: str, model_uri: str) -> dict:
    from ..model import model_name

    upstream = {}
    for label, folder in (("tasks", paths.tasks), ("train", paths.train), ("merged", paths.merged)):
        success = StageDir(folder).success()
        if success:
            upstream[label] = success.get("hash")
    extra = {
        "base_model": {"ref": redact(cfg.model.base), "name": model_name(cfg)},
        "source": redact(model_uri),
        "config_hash": config_hash(to_dict(cfg)),
        "stage_hashes": upstream,
    }
    merge_info = _merge_info(merged_uri)
    if merge_info:
        extra["merge"] = merge_info
    eval_uri = storage.join(paths.eval, "report.json")
    if storage.exists(eval_uri):
        try:
            extra["metrics"] = {
                label: {"overall": m.get("overall"), "item_selection": m.get("item_selection")}
                for label, m in (storage.read_json(eval_uri).get("models") or {}).items()
            }
        except Exception as exc:
            log.warning("publish: could not read %s: %s", eval_uri, exc)
    return extra


def run(
    cfg: HumanLLMConfig,
    input_uri: Optional[str] = None,
    *,
    on_file_uploaded: Optional[Callable[[str], None]] = None,
) -> dict:
    """Run the publish stage on the merge output (``input_uri``: a merge stage folder or a
    model folder; default ``{run.root}/merged``). ``on_file_uploaded(relpath)`` is called
    after each file lands (progress)."""
    storage.configure(cfg.s3)
    paths = RunPaths.from_config(cfg)
    merged_uri = storage.normalize(input_uri or cfg.merge.output or paths.merged)
    model_uri = model_folder(merged_uri)
    root_uri = paths.publish_uri(cfg)

    # No hash pass here: the stage's change check uses the input's listing, and
    # publish_model hashes every file while uploading (the manifest holds the sha256s).
    key = source_key(model_uri)
    version = cfg.publish.version
    fingerprint = {
        "publish": {k: v for k, v in asdict(cfg.publish).items() if k not in ("multipart_threshold_bytes", "max_inflight_requests", "part_checksum")},
        "root": redact(root_uri),
        "source_listing": key,
    }

    def body(stage_dir: StageDir) -> StageResult:
        # A remote model is downloaded only when the stage runs (not when it is skipped).
        with _local_copy(model_uri) as local_dir:
            result = publish_model(
                local_dir,
                root_uri,
                cfg.publish.name,
                version=version,
                card=lambda v, uri: render_model_card(_card_context(cfg, paths, merged_uri, local_dir, v, uri)),
                manifest_extra=_manifest_extra(cfg, paths, merged_uri, model_uri),
                multipart_threshold=cfg.publish.multipart_threshold_bytes,
                max_inflight=cfg.publish.max_inflight_requests,
                part_checksum=cfg.publish.part_checksum,
                on_file_uploaded=on_file_uploaded,
                source_key=key,
            )
        return StageResult(
            rows_in=result.files,
            rows_out=result.files_uploaded,
            rows_merged=result.files_reused,  # already published, byte-identical
            extra={
                "published_uri": redact(result.uri),
                "name": result.name,
                "version": result.version,
                "bytes": result.bytes,
                "manifest_sha256": result.manifest_sha256,
                "latest_uri": redact(result.latest_uri),
                "files_uploaded": result.files_uploaded,
                "files_reused": result.files_reused,
            },
        )

    return run_stage("publish", paths.publish, body, fingerprint=fingerprint, inputs=[merged_uri])
