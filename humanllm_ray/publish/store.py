"""Publishing to and reading from the model store (a local folder or ``s3://``).

Layout: ``{root}/{name}/{version}/`` holds the Hugging Face files, ``README.md`` and
``manifest.json``; ``{root}/{name}/latest`` is a small JSON pointer to a version;
``{root}/{name}/_by_content/{sha256}.json`` names the version holding a given content
(the publisher's dedup; readers trust manifests only).

Write order is the whole consistency story (S3 has no rename): model files, then the
card, then ``manifest.json``, then ``latest``. A reader trusts only a manifest'ed version,
so an interrupted publish is invisible (no manifest, ``latest`` unchanged), and a rerun
simply uploads again and finishes. On S3 the sha256 pass for the manifest runs during the
upload, not before it (see :func:`publish_model` for the version rule that allows it).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple

import fsspec
from fsspec.asyn import sync

from .. import storage
from .manifest import (
    CARD,
    CONTENT_INDEX,
    LATEST,
    MANIFEST,
    MANIFEST_FORMAT,
    FileEntry,
    check_segment,
    content_hash,
    default_version,
    hash_file,
    hash_folder,
    hash_order,
    hash_stream,
    local_listing_key,
    model_files,
    sha256_bytes,
    total_bytes,
    upload_version,
)

log = logging.getLogger("humanllm")

VERIFIED_MARKER = ".humanllm_verified"  # in a load() cache folder: the manifest sha it was checked against


class PublishError(RuntimeError):
    """Publishing failed or was asked to do something unsafe."""


class VerificationError(PublishError):
    """A published version cannot be trusted: no manifest, or a file that does not match it."""


@dataclass
class PublishResult:
    uri: str  # the version folder
    name: str
    version: str
    files: int  # files in the version (model files + card)
    files_uploaded: int
    files_reused: int  # already there, byte-identical (an idempotent republish)
    bytes: int
    manifest_sha256: str
    latest_uri: str


def redact(uri: str) -> str:
    """Drop any user:password@ part of a URI before it reaches a log, manifest or card."""
    if "://" in uri and "@" in uri.split("://", 1)[1].split("/", 1)[0]:
        scheme, rest = uri.split("://", 1)
        host_and_path = rest.split("@", 1)[1]
        return f"{scheme}://{host_and_path}"
    return uri


# --------------------------------------------------------------------------- helpers


def _read_manifest(version_uri: str) -> Optional[Tuple[Dict[str, Any], bytes]]:
    uri = storage.join(version_uri, MANIFEST)
    if not storage.exists(uri):
        return None
    data = storage.read_bytes(uri)
    try:
        manifest = json.loads(data)
    except json.JSONDecodeError as exc:
        raise VerificationError(f"{redact(uri)} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise VerificationError(f"{redact(uri)} has no 'files' table")
    return manifest, data


def _remote_files(version_uri: str) -> Dict[str, int]:
    """{relative path: size} of what is stored under a version folder."""
    fs, root = storage.get_fs(version_uri)
    if not fs.exists(root):
        return {}
    out = {}
    for path, info in fs.find(root, detail=True).items():
        if info.get("type") == "directory":
            continue
        rel = path[len(root) :].lstrip("/").replace(os.sep, "/")
        out[rel] = int(info.get("size") or 0)
    return out


# Hash threads while uploading: a quarter of the cores, at least 1 (sha256 runs at ~1-2
# GB/s a thread, ahead of most uploads; the rest of the CPU goes to the upload, which signs
# and checksums every byte itself). bench/publish on 2 loaded cores: 1 thread 7.8 s, 2 threads
# 9.3 s (medians of 4, noisy).
HASH_THREADS = max(1, min(4, (os.cpu_count() or 1) // 4))
MIN_PART = 5 * 1024 * 1024  # S3's smallest part (all but the last)
PART_SIZE = 8 * 1024 * 1024  # boto3's default part size
MAX_PARTS = 10_000


def _s3_chunksize(size: int, multipart_threshold: int) -> int:
    """s3fs's chunksize for a file: it uploads in parts (up to max_concurrency at once, each
    retried on its own) when size >= 2 x chunksize, else with one PUT.

    Files at or over the threshold go up in ~8 MiB parts (boto3's default). Larger parts
    measured slower (bench/publish: 32 MiB parts gave ~0.7x boto3's throughput, 8 MiB ~1.0x):
    fewer parts in flight, and each big request is one long serial transfer."""
    if size >= multipart_threshold:
        chunk = max(MIN_PART, min(PART_SIZE, size // 2))
        return max(chunk, -(-size // MAX_PARTS))
    return max(MIN_PART, size // 2 + 1)  # one PUT


def _upload_file(src: str, dest_uri: str, multipart_threshold: int) -> None:
    """One file, on its own (local copies, and non-S3 remotes)."""
    fs, path = storage.get_fs(dest_uri)
    if storage.is_remote(dest_uri):
        kwargs = {}
        if dest_uri.startswith(("s3://", "s3a://")):
            kwargs["chunksize"] = _s3_chunksize(os.path.getsize(src), multipart_threshold)
        fs.put_file(src, path, **kwargs)
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    shutil.copyfile(src, tmp)
    os.replace(tmp, path)


PART_CHECKSUMS = ("auto", "sha256", "crc32", "botocore")


def _part_checksum_mode(part_checksum: str, endpoint_url: str) -> Optional[str]:
    """The checksum each part / PUT carries, computed on the read threads (None: botocore's own).

    With a precomputed ``x-amz-checksum-*`` header the payload is sent as UNSIGNED-PAYLOAD:
    the header is covered by the SigV4 signature and S3 rejects a body that does not match
    it (BadDigest). Over plain http that header must be a sha256 (what the signed payload
    guaranteed; a CRC32 can be forged), so "crc32" and "auto" mean sha256 there; over https
    "auto" is CRC32, what botocore itself sends over TLS (UNSIGNED-PAYLOAD + CRC32)."""
    if part_checksum not in PART_CHECKSUMS:
        raise PublishError(f"publish part_checksum must be one of {PART_CHECKSUMS}, not {part_checksum!r}")
    if part_checksum == "botocore":
        return None
    https = endpoint_url.lower().startswith("https://")
    if part_checksum == "sha256" or not https:
        return "sha256"
    return "crc32"


def _checksum_args(mode: Optional[str], body: bytes) -> Dict[str, str]:
    """PutObject / UploadPart parameters: the algorithm (x-amz-sdk-checksum-algorithm, as
    botocore sends it) and the value; botocore computes nothing when the value is given."""
    if mode == "sha256":
        return {"ChecksumAlgorithm": "SHA256", "ChecksumSHA256": base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")}
    if mode == "crc32":
        return {"ChecksumAlgorithm": "CRC32", "ChecksumCRC32": base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode("ascii")}
    return {}


def _pread_exact(fd: int, length: int, offset: int) -> bytearray:
    """``length`` bytes at ``offset``, read straight into a bytearray.

    A bytearray body, not bytes: botocore wraps a bytes body in a BytesIO, which then costs
    the event loop a copy of every part (aiohttp's BytesIOPayload takes ``getbuffer()`` of a
    BytesIO that shares its bytes) plus one more per 256 KiB chunk it reads out of it, and
    an ``Expect: 100-continue`` round trip per request (added for file-like bodies only)."""
    body = bytearray(length)
    view = memoryview(body)
    done = 0
    while done < length:
        if hasattr(os, "preadv"):
            n = os.preadv(fd, [view[done:]], offset + done)
        else:  # pragma: no cover - platforms without preadv
            chunk = os.pread(fd, length - done, offset + done)
            n = len(chunk)
            view[done : done + n] = chunk
        if n == 0:
            raise PublishError(f"short read ({done} of {length} bytes at {offset}): the file changed during the upload")
        done += n
    view.release()
    return body


def _unsigned_payload_fs(uri: str) -> Any:
    """The store's S3 filesystem with payload signing off, for requests that carry their own
    ``x-amz-checksum-*`` header (see :func:`_part_checksum_mode`); the same credentials,
    endpoint and retries as :func:`storage.get_fs`. Used only for PutObject / UploadPart."""
    protocol = uri.split("://", 1)[0]
    kwargs = storage._fs_kwargs(protocol)
    config = dict(kwargs.get("config_kwargs") or {})
    config["s3"] = {**config.get("s3", {}), "payload_signing_enabled": False}
    kwargs["config_kwargs"] = config
    return fsspec.filesystem(protocol, **kwargs)


def _upload_files_s3(
    items: List[Tuple[str, str, str]],
    multipart_threshold: int,
    max_inflight: int,
    on_done: Optional[Callable[[str], None]],
    side: Optional[Callable[[], Awaitable[None]]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
    part_checksum: str = "auto",
) -> None:
    """Upload (local file, s3 URI, label) items with one window of ``max_inflight`` requests shared
    by all files and all their parts.

    Why not ``fs.put_file`` per file: s3fs sends a file's parts in batches of
    ``max_concurrency`` and waits for the whole batch, and files go one after another, so
    the pipe drains at every batch and every small file (bench/publish measured ~0.7-0.86x
    of boto3's ``upload_file``). Here a part starts as soon as any request finishes, small
    files ride along with the big ones, and memory stays at ``max_inflight`` parts (each
    part is read only once it holds a slot). Requests go through s3fs's ``_call_s3``, so
    its retries, credentials and endpoint handling are the same as everywhere else.
    ``on_done(label)`` runs in completion order; if it (or any request) raises, the other
    uploads are cancelled and started multipart uploads aborted. ``side()`` is a coroutine
    run alongside the uploads (the publisher's hash pass); if it raises, the uploads are
    cancelled the same way. Once ``should_stop()`` is true, no further request is sent but
    those in flight finish (a cancelled PUT may still land on the server after the cancel;
    a drained one cannot), then unfinished multipart uploads are aborted.

    ``part_checksum`` (see :func:`_part_checksum_mode`): each body's checksum is computed on
    the thread that reads it, so the event loop, which all requests share, does no per-byte
    work; left to botocore ("botocore"), the loop sha256-signs every body over http and
    CRC32s it (py-spy of bench/publish over http: ~28% and ~14% of the loop thread's
    samples, plus ~9% copying bytes bodies, see :func:`_pread_exact`).
    """
    if not items:
        return
    fs, _ = storage.get_fs(items[0][1])
    sem = asyncio.Semaphore(max(1, max_inflight))
    mode = _part_checksum_mode(part_checksum, str(fs.s3.meta.endpoint_url))  # fs.s3: connects once
    data_fs = _unsigned_payload_fs(items[0][1]) if mode else fs

    def read_sync(fd: int, length: int, offset: int) -> Tuple[bytearray, Dict[str, str]]:
        body = _pread_exact(fd, length, offset)
        return body, _checksum_args(mode, body)

    async def read(fd: int, length: int, offset: int) -> Tuple[bytearray, Dict[str, str]]:
        return await asyncio.to_thread(read_sync, fd, length, offset)

    def check_stop() -> None:
        if should_stop is not None and should_stop():
            raise _Stopped()

    async def put_one(src: str, uri: str, label: str) -> None:
        bucket, key, _ = fs.split_path(uri)
        size = os.path.getsize(src)
        fd = os.open(src, os.O_RDONLY)
        try:
            if size < multipart_threshold:
                async with sem:
                    check_stop()
                    body, checksum = await read(fd, size, 0)
                    await data_fs._call_s3("put_object", Bucket=bucket, Key=key, Body=body, **checksum)
            else:
                part = _s3_chunksize(size, multipart_threshold)
                check_stop()
                algorithm = {"ChecksumAlgorithm": mode.upper()} if mode else {}
                mpu = await fs._call_s3("create_multipart_upload", Bucket=bucket, Key=key, **algorithm)
                upload_id = mpu["UploadId"]

                async def put_part(number: int, offset: int) -> Dict[str, Any]:
                    async with sem:
                        check_stop()
                        body, checksum = await read(fd, min(part, size - offset), offset)
                        out = await data_fs._call_s3(
                            "upload_part", Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body, **checksum
                        )
                    checksum.pop("ChecksumAlgorithm", None)  # not a part field
                    return {"PartNumber": number, "ETag": out["ETag"], **checksum}

                try:
                    async with asyncio.TaskGroup() as tg:
                        tasks = [tg.create_task(put_part(i + 1, off)) for i, off in enumerate(range(0, size, part))]
                    await fs._call_s3(
                        "complete_multipart_upload",
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload_id,
                        MultipartUpload={"Parts": [t.result() for t in tasks]},
                    )
                except BaseException:
                    # An unfinished multipart upload is invisible but billed: abort it (best effort).
                    try:
                        await asyncio.shield(fs._call_s3("abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id))
                    except Exception:  # pragma: no cover - the original error matters more
                        pass
                    raise
        except BaseException as exc:
            if _only_stopped(exc):  # should_stop(): its multipart upload was aborted above
                return
            raise
        finally:
            os.close(fd)
        if on_done is not None:
            on_done(label)

    async def put_all() -> None:
        async with asyncio.TaskGroup() as tg:
            if side is not None:
                tg.create_task(side())
            for src, uri, label in items:
                tg.create_task(put_one(src, uri, label))

    try:
        sync(fs.loop, put_all)
    except BaseExceptionGroup as group:  # re-raise the first cause, not the TaskGroup wrapper
        raise group.exceptions[0] from None
    finally:
        for _, uri, _ in items:  # listings cached before the upload are stale now
            fs.invalidate_cache(storage.get_fs(uri)[1])


def _write_latest(name_uri: str, version: str, manifest_sha: str) -> str:
    uri = storage.join(name_uri, LATEST)
    pointer = {"version": version, "manifest_sha256": manifest_sha, "updated_at": _now()}
    storage.write_json(uri, pointer)
    return uri


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------- publish


class _Stopped(Exception):
    """A file's upload stopped before sending a request (``should_stop``)."""


def _only_stopped(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_stopped(e) for e in exc.exceptions)
    return isinstance(exc, _Stopped)


class _Identical(Exception):
    """The content being uploaded is already published as another version (``found``)."""

    def __init__(self, found: Tuple[str, str, Dict[str, Any], bytes]):
        super().__init__(found[1])
        self.found = found


def _find_identical(name_uri: str, files: Dict[str, FileEntry]) -> Optional[Tuple[str, str, Dict[str, Any], bytes]]:
    """(version folder, version, manifest, manifest bytes) of a published version holding
    exactly these files: the one the content index names, else the content-hash version
    (the default name before upload ids). None if there is none."""
    sha = content_hash(files)
    candidates = []
    index_uri = storage.join(name_uri, CONTENT_INDEX, f"{sha}.json")
    if storage.exists(index_uri):
        try:
            candidates.append(check_segment("version", str(storage.read_json(index_uri).get("version", ""))))
        except Exception as exc:  # a damaged index entry only costs the dedup
            log.warning("publish: ignoring content index entry %s: %s", redact(index_uri), exc)
    candidates.append(default_version(files))
    for version in dict.fromkeys(candidates):
        version_uri = storage.join(name_uri, version)
        try:
            found = _read_manifest(version_uri)
        except VerificationError:
            continue
        if found is not None and _same_model(found[0], files, _remote_files(version_uri)):
            return version_uri, version, found[0], found[1]
    return None


def _published_contents(name_uri: str) -> Tuple[set, set]:
    """(content sha256s in the content index, version folder names) under ``{name}``: two
    listings, so that the check after hashing costs no request unless it may match."""
    fs, root = storage.get_fs(name_uri)
    out = []
    for path in (root, f"{root}/{CONTENT_INDEX}"):
        try:
            names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False, refresh=True)]
        except FileNotFoundError:
            names = []
        out.append(names)
    fs.invalidate_cache(root)
    return {n[: -len(".json")] for n in out[1] if n.endswith(".json")}, set(out[0])


def publish_model(
    local_dir: str,
    root_uri: str,
    name: str,
    *,
    version: Optional[str] = None,
    card: Optional[Callable[[str, str], str]] = None,
    manifest_extra: Optional[Dict[str, Any]] = None,
    multipart_threshold: int = 64 * 1024 * 1024,
    max_inflight: int = 10,
    on_file_uploaded: Optional[Callable[[str], None]] = None,
    files: Optional[Dict[str, FileEntry]] = None,
    source_key: Optional[str] = None,
    part_checksum: str = "auto",
) -> PublishResult:
    """Publish the model folder ``local_dir`` as ``{root_uri}/{name}/{version}``.

    Version rule. ``version`` given: that name. Otherwise an *upload id*, the first 12 hex
    of ``source_key`` (default: ``listing_key`` of ``local_dir``: paths, sizes, mtimes), so
    the upload can start before the content is hashed and a rerun of an interrupted publish
    of the same folder lands on, and completes, the same version. Identical content is
    still published once: when the files' sha256s match a published version (the one
    ``{name}/_by_content/{content sha256}.json`` names, or the content-hash version name
    used before upload ids), that version is the result and nothing new is kept: on S3
    no further request is sent once the hash pass finds it (two listings taken before the
    upload tell whether a match is possible), and the partial upload is removed. If the upload id is already a version holding other content (same paths,
    sizes and mtimes), the content-hash name is used instead.

    On S3 the sha256 of every file is computed on threads while the files go up (the hash
    pass no longer delays the first byte), in one window of ``max_inflight`` requests shared
    by all files and parts; the manifest, written last, holds those hashes. Locally, and
    whenever the target version already has a manifest to compare against, hashing comes
    first. ``files`` (precomputed hashes) skips hashing. ``card(version, uri)`` renders
    README.md. ``on_file_uploaded(relpath)`` is called after each upload, in completion
    order (progress; tests use it to interrupt a publish part-way). ``part_checksum``: the
    checksum every S3 body carries, computed off the event loop ("auto": sha256 over http,
    CRC32 over https; "botocore": leave it to botocore, see :func:`_part_checksum_mode`).
    """
    check_segment("name", name)
    paths = model_files(local_dir) if files is None else {rel: os.path.join(local_dir, rel) for rel in files}
    if not paths:
        raise PublishError(f"nothing to publish: {local_dir} holds no files")
    explicit = version is not None
    version = check_segment("version", version or upload_version(source_key or local_listing_key(local_dir)))
    name_uri = storage.join(storage.normalize(root_uri), name)
    version_uri = storage.join(name_uri, version)
    on_s3 = version_uri.startswith(("s3://", "s3a://"))

    existing = _read_manifest(version_uri)
    if files is None and (existing is not None or not on_s3):
        files = hash_folder(local_dir)
    if files is not None:
        found = None
        if existing is not None and _same_model(existing[0], files, _remote_files(version_uri)):
            found = (version_uri, version, existing[0], existing[1])
        elif not explicit:
            found = _find_identical(name_uri, files)
            if found is None and existing is not None:
                # The upload id names a version of other content: fall back to the content name.
                version = check_segment("version", default_version(files))
                version_uri = storage.join(name_uri, version)
                existing = _read_manifest(version_uri)
        if found is not None:
            return _already_published(name_uri, found)

    card_bytes = (card(version, redact(version_uri)) if card else f"# {name} {version}\n").encode("utf-8")
    if existing is not None:
        # Retire the old manifest first: from here until the new one lands, readers refuse
        # this version instead of trusting a mix of old and new files.
        log.warning("publish: replacing the contents of %s (different files)", redact(version_uri))
        storage.rm(storage.join(version_uri, MANIFEST))
    uploaded = 0

    def done(rel: str) -> None:
        nonlocal uploaded
        uploaded += 1
        log.debug("publish: uploaded %s", rel)
        if on_file_uploaded is not None:
            on_file_uploaded(rel)

    if on_s3:
        items = [(paths[rel], storage.join(version_uri, rel), rel) for rel in sorted(paths)]
        if files is not None:
            _upload_files_s3(items, multipart_threshold, max_inflight, done, part_checksum=part_checksum)
        else:
            try:
                files = _upload_and_hash_s3(
                    items, paths, name_uri, multipart_threshold, max_inflight, done, dedup=not explicit, part_checksum=part_checksum
                )
            except _Identical as same:
                log.info("publish: content already published as %s; removing the partial upload %s", same.found[1], redact(version_uri))
                storage.rm(version_uri, recursive=True)
                return _already_published(name_uri, same.found)
    else:
        for rel in sorted(paths):
            _upload_file(paths[rel], storage.join(version_uri, rel), multipart_threshold)
            done(rel)
    storage.write_bytes(storage.join(version_uri, CARD), card_bytes)
    uploaded += 1
    if on_file_uploaded is not None:
        on_file_uploaded(CARD)

    entries = dict(files)
    entries[CARD] = {"sha256": sha256_bytes(card_bytes), "bytes": len(card_bytes)}
    stored = _remote_files(version_uri)
    # Left-overs of an earlier, different attempt at this version would be unlisted files.
    for rel in sorted(set(stored) - set(entries) - {MANIFEST}):
        log.info("publish: removing stale %s from %s", rel, redact(version_uri))
        storage.rm(storage.join(version_uri, rel))
    short = [rel for rel, e in entries.items() if stored.get(rel) != e["bytes"]]
    if short:
        raise PublishError(f"upload incomplete: size mismatch after upload for {short[:3]} in {redact(version_uri)}")

    content_sha = content_hash(files)
    manifest = {
        "format": MANIFEST_FORMAT,
        "name": name,
        "version": version,
        "content_sha256": content_sha,
        "files": {rel: entries[rel] for rel in sorted(entries)},
        "total_bytes": total_bytes(entries.values()),
        "created_at": _now(),
        **(manifest_extra or {}),
    }
    manifest_bytes = (json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n").encode()
    storage.write_bytes(storage.join(version_uri, MANIFEST), manifest_bytes)  # last: the version is now trusted
    manifest_sha = sha256_bytes(manifest_bytes)
    # After the manifest (an index entry never names an unfinished version), before latest.
    storage.write_json(storage.join(name_uri, CONTENT_INDEX, f"{content_sha}.json"), {"version": version, "manifest_sha256": manifest_sha})
    latest_uri = _write_latest(name_uri, version, manifest_sha)  # only after the manifest
    log.info("publish: %s -> %s (latest)", redact(version_uri), version)
    return PublishResult(
        uri=version_uri,
        name=name,
        version=version,
        files=len(manifest["files"]),
        files_uploaded=uploaded,
        files_reused=0,
        bytes=int(manifest["total_bytes"]),
        manifest_sha256=manifest_sha,
        latest_uri=latest_uri,
    )


def _already_published(name_uri: str, found: Tuple[str, str, Dict[str, Any], bytes]) -> PublishResult:
    """The no-op result: this content is published as ``found``; ``latest`` points to it."""
    version_uri, version, manifest, manifest_bytes = found
    log.info("publish: %s is already published with identical files; nothing to upload", redact(version_uri))
    manifest_sha = sha256_bytes(manifest_bytes)
    latest_uri = _write_latest(name_uri, version, manifest_sha)  # its manifest exists
    return PublishResult(
        uri=version_uri,
        name=str(manifest.get("name") or name_uri.rstrip("/").rsplit("/", 1)[-1]),
        version=version,
        files=len(manifest["files"]),
        files_uploaded=0,
        files_reused=len(manifest["files"]),
        bytes=int(manifest.get("total_bytes") or total_bytes(manifest["files"].values())),
        manifest_sha256=manifest_sha,
        latest_uri=latest_uri,
    )


def _upload_and_hash_s3(
    items: List[Tuple[str, str, str]],
    paths: Dict[str, str],
    name_uri: str,
    multipart_threshold: int,
    max_inflight: int,
    on_done: Callable[[str], None],
    *,
    dedup: bool,
    part_checksum: str = "auto",
) -> Dict[str, FileEntry]:
    """Upload ``items`` while hashing ``paths`` on threads (largest file first); returns the
    manifest entries. With ``dedup``, once every file is hashed the content is looked up
    among the published versions; on a match no further request is sent, the requests in
    flight finish, unfinished multipart uploads are aborted and :class:`_Identical` is raised
    (the caller then removes what landed).

    The hash threads read the files themselves rather than the upload's parts: sha256 must
    see a file in order while parts go up in any order, and the second read comes from the
    page cache the first one filled."""
    order = hash_order(paths)
    pool = ThreadPoolExecutor(max_workers=max(1, min(HASH_THREADS, len(order))), thread_name_prefix="publish-hash")
    result: Dict[str, FileEntry] = {}
    candidate: List[bool] = []
    landed: set = set()
    # Listed before the upload, while the connections are idle: inside the window every
    # connection is busy, and a lookup there waited ~0.8 s for one (measured on moto).
    known_shas, known_versions = _published_contents(name_uri) if dedup else (set(), set())

    def done(label: str) -> None:
        landed.add(label)
        on_done(label)

    async def hash_all() -> None:
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        entries = await asyncio.gather(*(loop.run_in_executor(pool, hash_file, paths[rel]) for rel in order))
        result.update({rel: entries[i] for i, rel in enumerate(order)})
        log.debug("publish: hashed %d files in %.2f s, during the upload", len(order), time.perf_counter() - t0)
        if content_hash(result) in known_shas or default_version(result) in known_versions:
            candidate.append(True)  # maybe published already: stop sending; what is in flight drains

    try:
        _upload_files_s3(
            items, multipart_threshold, max_inflight, done, side=hash_all, should_stop=lambda: bool(candidate), part_checksum=part_checksum
        )
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    if candidate:
        found = _find_identical(name_uri, dict(result))
        if found is not None:
            raise _Identical(found)
        rest = [item for item in items if item[2] not in landed]
        log.info("publish: the content index named a version that does not hold this content; uploading the other %d files", len(rest))
        _upload_files_s3(rest, multipart_threshold, max_inflight, done, part_checksum=part_checksum)
    return {rel: result[rel] for rel in sorted(result)}


def _same_model(manifest: Dict[str, Any], files: Dict[str, FileEntry], stored: Dict[str, int]) -> bool:
    """The version already holds exactly these model files (sizes checked on the store)."""
    listed = {rel: e for rel, e in manifest["files"].items() if rel != CARD}
    if set(listed) != set(files):
        return False
    for rel, entry in files.items():
        if listed[rel].get("sha256") != entry["sha256"] or int(listed[rel].get("bytes", -1)) != entry["bytes"]:
            return False
    return all(stored.get(rel) == int(e["bytes"]) for rel, e in manifest["files"].items())


# --------------------------------------------------------------------------- read side


def resolve_version(uri: str) -> Tuple[str, Dict[str, Any], bytes]:
    """(version folder, manifest, manifest bytes) for a version folder or a ``{name}`` folder
    (whose ``latest`` pointer names the version). Raises VerificationError if untrusted."""
    uri = storage.normalize(uri)
    found = _read_manifest(uri)
    if found is not None:
        return uri, found[0], found[1]
    pointer_uri = storage.join(uri, LATEST)
    if storage.exists(pointer_uri):
        pointer = storage.read_json(pointer_uri)
        version = check_segment("version", str(pointer.get("version", "")))
        version_uri = storage.join(uri, version)
        found = _read_manifest(version_uri)
        if found is None:
            raise VerificationError(f"{redact(uri)}/latest points to {version}, which has no {MANIFEST}; refusing it")
        return version_uri, found[0], found[1]
    if _remote_files(uri):
        raise VerificationError(
            f"no {MANIFEST} in {redact(uri)}: the version is unfinished (an interrupted publish) "
            "or was never published; refusing it"
        )
    raise VerificationError(f"nothing published at {redact(uri)} (no {MANIFEST} and no {LATEST} pointer)")


def verify(uri: str) -> Dict[str, Any]:
    """Re-hash every file of a published version against its manifest.

    ``uri`` is a version folder or a ``{name}`` folder (then ``latest`` is verified).
    Raises VerificationError on a missing manifest, a missing, changed or unlisted file.
    """
    version_uri, manifest, manifest_bytes = resolve_version(uri)
    stored = _remote_files(version_uri)
    listed = manifest["files"]
    missing = sorted(set(listed) - set(stored))
    if missing:
        raise VerificationError(f"{redact(version_uri)}: files listed in the manifest are missing: {missing}")
    unlisted = sorted(set(stored) - set(listed) - {MANIFEST})
    if unlisted:
        raise VerificationError(f"{redact(version_uri)}: files not in the manifest: {unlisted}")
    for rel in sorted(listed):
        fs, path = storage.get_fs(storage.join(version_uri, rel))
        with fs.open(path, "rb") as fh:
            sha, size = hash_stream(fh)
        _check_entry(version_uri, rel, listed[rel], sha, size)
    log.info("verify: %s OK (%d files)", redact(version_uri), len(listed))
    return {
        "verified": True,
        "uri": redact(version_uri),
        "name": manifest.get("name"),
        "version": manifest.get("version"),
        "files": len(listed),
        "bytes": total_bytes(listed.values()),
        "manifest_sha256": sha256_bytes(manifest_bytes),
        "created_at": manifest.get("created_at"),
    }


def _check_entry(version_uri: str, rel: str, entry: FileEntry, sha: str, size: int) -> None:
    if size != int(entry["bytes"]) or sha != entry["sha256"]:
        raise VerificationError(
            f"{redact(version_uri)}: {rel} does not match the manifest "
            f"(sha256 {sha[:12]}…, {size} bytes; expected {entry['sha256'][:12]}…, {entry['bytes']} bytes)"
        )


def load(uri: str, cache_dir: Optional[str] = None) -> str:
    """A local, verified copy of a published version, ready for ``from_pretrained``.

    Each file is hashed while it downloads into a temporary folder that is renamed into
    place only when everything matches; a cached copy is reused when it was verified
    against the same manifest.
    """
    version_uri, manifest, manifest_bytes = resolve_version(uri)
    manifest_sha = sha256_bytes(manifest_bytes)
    name = check_segment("name", str(manifest.get("name") or "model"))
    version = check_segment("version", str(manifest.get("version") or version_uri.rstrip("/").rsplit("/", 1)[-1]))
    cache_root = os.path.expanduser(cache_dir or os.path.join("~/.cache/humanllm_ray", "published"))
    target = os.path.join(cache_root, name, version)
    listed = manifest["files"]

    if _cached_copy_ok(target, manifest_sha, listed):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{version}-", dir=os.path.dirname(target))
    try:
        for rel in sorted(listed):
            dst = os.path.join(tmp, rel)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            fs, path = storage.get_fs(storage.join(version_uri, rel))
            with fs.open(path, "rb") as src, open(dst, "wb") as sink:
                sha, size = hash_stream(src, sink)
            _check_entry(version_uri, rel, listed[rel], sha, size)
        with open(os.path.join(tmp, MANIFEST), "wb") as fh:
            fh.write(manifest_bytes)
        with open(os.path.join(tmp, VERIFIED_MARKER), "w") as fh:
            fh.write(manifest_sha)
        if os.path.exists(target):
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process (a Ray worker loading the same version) finished first.
            if not _cached_copy_ok(target, manifest_sha, listed):
                raise
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("load: %s verified -> %s", redact(version_uri), target)
    return target


def _cached_copy_ok(target: str, manifest_sha: str, listed: Dict[str, FileEntry]) -> bool:
    marker = os.path.join(target, VERIFIED_MARKER)
    if not os.path.exists(marker):
        return False
    with open(marker) as fh:
        if fh.read().strip() != manifest_sha:
            return False
    # Hashed when downloaded; a size check catches truncation or replacement since then.
    return all(
        os.path.exists(os.path.join(target, rel)) and os.path.getsize(os.path.join(target, rel)) == int(e["bytes"])
        for rel, e in listed.items()
    )


def is_published(uri: str) -> bool:
    """Whether uri is a version folder with a manifest or a name folder with a latest pointer."""
    uri = storage.normalize(uri)
    return storage.exists(storage.join(uri, MANIFEST)) or storage.exists(storage.join(uri, LATEST))
