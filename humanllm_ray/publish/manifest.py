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
# {name}/_by_content/{content sha256}.json -> {"version", "manifest_sha256"}: which version
# holds this content (written after that version's manifest; the publisher's dedup, not a
# reader's trust: readers go by manifests only). "_" never starts a version name.
CONTENT_INDEX = "_by_content"
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


def model_files(local_dir: str) -> Dict[str, str]:
    """{relative path: local path} of the files to publish from a model folder (hidden
    files, ``*.tmp*`` and the publisher's own README.md / manifest.json left out)."""
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
    return paths


def hash_order(paths: Dict[str, str]) -> list:
    """Largest first, so the longest serial hash starts at once."""
    return sorted(paths, key=lambda rel: (-os.path.getsize(paths[rel]), rel))


def hash_folder(local_dir: str, threads: int | None = None) -> Dict[str, FileEntry]:
    """{relative path: {sha256, bytes}} for the files to publish from a model folder.

    Files are hashed on a few threads: hashlib releases the GIL on large updates, so the
    shards of a sharded checkpoint hash in parallel (sha256 of one file is inherently serial).
    """
    paths = model_files(local_dir)
    threads = threads or min(8, os.cpu_count() or 1)
    order = hash_order(paths)
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        entries = dict(zip(order, pool.map(lambda rel: hash_file(paths[rel]), order)))
    return {rel: entries[rel] for rel in sorted(entries)}


def listing_key(entries: Iterable[Tuple[str, int, Any]]) -> str:
    """sha256 over (relative path, size, change stamp) of a folder's files, without reading
    them: the stamp is the modification time (local) or the ETag (object stores).

    It names an upload before the content hash is known (see ``store.publish_model``) and
    tells the publish stage whether its input changed. Identical content copied elsewhere
    gets another key; a file rewritten with the same size and the same mtime keeps its key
    (the same trade-off as make or rsync's quick check).
    """
    digest = hashlib.sha256()
    for rel, size, stamp in sorted(entries):
        digest.update(f"{rel}\0{size}\0{stamp}\n".encode())
    return digest.hexdigest()


def local_listing_key(local_dir: str) -> str:
    out = []
    for rel, path in model_files(local_dir).items():
        st = os.stat(path)
        out.append((rel, st.st_size, st.st_mtime_ns))
    return listing_key(out)


def content_hash(files: Dict[str, FileEntry]) -> str:
    """One sha256 over the files' paths, hashes and sizes: identical weights, identical hash."""
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(f"{rel}\0{files[rel]['sha256']}\0{files[rel]['bytes']}\n".encode())
    return digest.hexdigest()


def default_version(files: Dict[str, FileEntry]) -> str:
    """The content-hash version name (versions published before upload ids, and the
    fallback when an upload id is taken by other content)."""
    return content_hash(files)[:12]


def upload_version(key: str) -> str:
    """The default version of a new publish: an upload id from ``listing_key`` (known before
    any byte is read, so the upload need not wait for the hash pass)."""
    return key[:12]


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
