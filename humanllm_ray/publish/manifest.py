"""Hashes and the manifest: the one file a reader trusts a published version by.

A version folder is trusted only when its ``manifest.json`` exists and every file it
lists has the listed sha256 and size. The manifest is written last, so an interrupted
publish leaves a folder without one, which every reader refuses.
"""

from __future__ import annotations

import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO, Dict, Iterable, Tuple

MANIFEST = "manifest.json"
LATEST = "latest"
CARD = "README.md"
MANIFEST_FORMAT = "humanllm-ray/manifest/v1"
CHUNK = 8 * 1024 * 1024

# Files the publisher writes itself; an input folder's copies are never uploaded.
GENERATED = (MANIFEST, CARD)

FileEntry = Dict[str, Any]  # {"sha256": hex, "bytes": int}


def hash_stream(fh: BinaryIO, sink: BinaryIO | None = None) -> Tuple[str, int]:
    """sha256 and size of a stream, read in chunks (optionally copying to ``sink``)."""
    digest = hashlib.sha256()
    size = 0
    while True:
        chunk = fh.read(CHUNK)
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
        if sink is not None:
            sink.write(chunk)
    return digest.hexdigest(), size


def hash_file(path: str) -> FileEntry:
    with open(path, "rb") as fh:
        sha, size = hash_stream(fh)
    return {"sha256": sha, "bytes": size}


def hash_folder(local_dir: str, threads: int | None = None) -> Dict[str, FileEntry]:
    """{relative path: {sha256, bytes}} for the files to publish from a model folder.

    Files are hashed on a few threads: hashlib releases the GIL on large updates, so the
    shards of a sharded checkpoint hash in parallel (sha256 of one file is inherently serial).
    """
    paths: Dict[str, str] = {}
    for root, dirs, files in os.walk(local_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or ".tmp" in name:
                continue
            rel = os.path.relpath(os.path.join(root, name), local_dir).replace(os.sep, "/")
            if rel in GENERATED:
                continue
            paths[rel] = os.path.join(root, name)
    threads = threads or min(8, os.cpu_count() or 1)
    # Largest first, so the longest serial hash starts at once.
    order = sorted(paths, key=lambda rel: -os.path.getsize(paths[rel]))
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        entries = dict(zip(order, pool.map(lambda rel: hash_file(paths[rel]), order)))
    return {rel: entries[rel] for rel in sorted(entries)}


def content_hash(files: Dict[str, FileEntry]) -> str:
    """One sha256 over the files' paths, hashes and sizes: identical weights, identical hash."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(f"{rel}\0{files[rel]['sha256']}\0{files[rel]['bytes']}\n".encode())
    return digest.hexdigest()


def default_version(files: Dict[str, FileEntry]) -> str:
    return content_hash(files)[:12]


_SAFE_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def check_segment(kind: str, value: str) -> str:
    """Names and versions become path segments: keep them to a safe alphabet."""
    if not value or not _SAFE_SEGMENT.match(value) or value == LATEST:
        raise ValueError(f"publish {kind} {value!r} is not a valid path segment (letters, digits, . _ + -; not 'latest')")
    return value


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def total_bytes(files: Iterable[FileEntry]) -> int:
    return sum(int(f["bytes"]) for f in files)
