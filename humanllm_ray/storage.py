"""One way to reach every URI: local paths, file:// and s3:// through fsspec.

Every stage reads and writes through these helpers, so a run root on S3 behaves
exactly like a local folder. S3 endpoint and region come from the ``s3`` config
block (or ``AWS_ENDPOINT_URL``); credentials only from the standard AWS
environment / profile chain, never from config files.
"""

from __future__ import annotations

import json
import os
import posixpath
from typing import Any, Iterable, List, Optional, Tuple

import fsspec

_S3_OPTIONS: dict = {}


def configure(s3_cfg: Any = None) -> None:
    """Remember S3 options for this process (the pipeline calls it once with cfg.s3).

    Ray workers get the options through :func:`s3_options` captured in closures, and
    also through the environment (``AWS_ENDPOINT_URL``) set here, which Ray passes on
    to workers it starts later.
    """
    global _S3_OPTIONS
    opts: dict = {}
    if s3_cfg is not None:
        if getattr(s3_cfg, "endpoint_url", None):
            opts["endpoint_url"] = s3_cfg.endpoint_url
            os.environ.setdefault("AWS_ENDPOINT_URL", s3_cfg.endpoint_url)
        if getattr(s3_cfg, "region", None):
            opts["region"] = s3_cfg.region
        if getattr(s3_cfg, "profile", None):
            opts["profile"] = s3_cfg.profile
    _S3_OPTIONS = opts


def s3_options() -> dict:
    opts = dict(_S3_OPTIONS)
    if "endpoint_url" not in opts and os.environ.get("AWS_ENDPOINT_URL"):
        opts["endpoint_url"] = os.environ["AWS_ENDPOINT_URL"]
    return opts


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def _fs_kwargs(protocol: str, opts: Optional[dict] = None) -> dict:
    if protocol not in ("s3", "s3a"):
        return {}
    opts = s3_options() if opts is None else opts
    kwargs: dict = {}
    client_kwargs: dict = {}
    if opts.get("endpoint_url"):
        client_kwargs["endpoint_url"] = opts["endpoint_url"]
    # Passing region_name together with a custom endpoint breaks bucket creation on
    # S3-compatible servers (InvalidLocationConstraint), so only send it for AWS proper.
    if opts.get("region") and not opts.get("endpoint_url"):
        client_kwargs["region_name"] = opts["region"]
    if client_kwargs:
        kwargs["client_kwargs"] = client_kwargs
    if opts.get("profile"):
        kwargs["profile"] = opts["profile"]
    # Retries on throttling / 5xx are botocore's job; give it more attempts than the default.
    kwargs["config_kwargs"] = {"retries": {"max_attempts": 8, "mode": "adaptive"}}
    return kwargs


def get_fs(uri: str, opts: Optional[dict] = None) -> Tuple[fsspec.AbstractFileSystem, str]:
    """Return (filesystem, path-within-filesystem) for a URI or local path."""
    if "://" in uri:
        protocol = uri.split("://", 1)[0]
    else:
        protocol = "file"
    fs = fsspec.filesystem(protocol, **_fs_kwargs(protocol, opts))
    if protocol == "file":
        path = uri[len("file://") :] if uri.startswith("file://") else uri
        path = os.path.abspath(os.path.expanduser(path))
    else:
        path = fs._strip_protocol(uri)
    return fs, path


def arrow_fs(uri: str):
    """(path, pyarrow filesystem or None) for Ray Data read/write calls."""
    if not is_remote(uri):
        _, path = get_fs(uri)
        return path, None
    import pyarrow.fs as pafs

    fs, path = get_fs(uri)
    return path, pafs.PyFileSystem(pafs.FSSpecHandler(fs))


def join(uri: str, *parts: str) -> str:
    if is_remote(uri):
        return posixpath.join(uri.rstrip("/"), *[p.strip("/") for p in parts])
    return os.path.join(uri, *parts)


def normalize(uri: str) -> str:
    """Absolute local path for local URIs; remote URIs unchanged."""
    if is_remote(uri):
        return uri.rstrip("/")
    return get_fs(uri)[1]


def exists(uri: str) -> bool:
    fs, path = get_fs(uri)
    return fs.exists(path)


def makedirs(uri: str) -> None:
    fs, path = get_fs(uri)
    if not is_remote(uri):
        fs.makedirs(path, exist_ok=True)


def rm(uri: str, recursive: bool = True) -> None:
    fs, path = get_fs(uri)
    if fs.exists(path):
        fs.rm(path, recursive=recursive)


def read_bytes(uri: str) -> bytes:
    fs, path = get_fs(uri)
    with fs.open(path, "rb") as fh:
        return fh.read()


def write_bytes(uri: str, data: bytes) -> None:
    """Write a small file. Local writes go through a temp file + rename so a reader
    never sees half a file; S3 PUTs are atomic per object already."""
    fs, path = get_fs(uri)
    if is_remote(uri):
        with fs.open(path, "wb") as fh:
            fh.write(data)
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def read_json(uri: str) -> Any:
    return json.loads(read_bytes(uri))


def write_json(uri: str, obj: Any) -> None:
    write_bytes(uri, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def ls_files(uri: str, suffix: str = "") -> List[str]:
    """All files below uri (recursive), as URIs in the same scheme, sorted."""
    fs, path = get_fs(uri)
    if not fs.exists(path):
        return []
    if fs.isfile(path):
        found = [path]
    else:
        found = [p for p in fs.find(path) if not fs.isdir(p)]
    out = []
    for p in sorted(found):
        if suffix and not p.endswith(suffix):
            continue
        out.append(_unstrip(uri, p))
    return out


def _unstrip(uri: str, path: str) -> str:
    if is_remote(uri):
        return uri.split("://", 1)[0] + "://" + path
    return path


def expand(patterns: Iterable[str]) -> List[str]:
    """Expand globs (local or s3) into a sorted list of file URIs; plain folders expand recursively."""
    out: List[str] = []
    for pat in patterns:
        fs, path = get_fs(pat)
        if any(ch in path for ch in "*?["):
            matches = [p for p in fs.glob(path) if not fs.isdir(p)]
        elif fs.exists(path) and fs.isdir(path):
            matches = [p for p in fs.find(path) if not fs.isdir(p)]
        elif fs.exists(path):
            matches = [path]
        else:
            raise FileNotFoundError(f"no such input: {pat}")
        out.extend(_unstrip(pat, p) for p in sorted(matches))
    return out


def put_dir(local_dir: str, uri: str) -> None:
    """Upload a local folder to uri (or copy it locally)."""
    fs, path = get_fs(uri)
    for root, _dirs, files in os.walk(local_dir):
        for name in sorted(files):
            src = os.path.join(root, name)
            rel = os.path.relpath(src, local_dir)
            dst = posixpath.join(path, rel.replace(os.sep, "/")) if is_remote(uri) else os.path.join(path, rel)
            if not is_remote(uri):
                os.makedirs(os.path.dirname(dst), exist_ok=True)
            fs.put_file(src, dst)


def get_dir(uri: str, local_dir: str) -> str:
    """Download a remote folder to local_dir (no-op for local URIs: returns the local path)."""
    if not is_remote(uri):
        return get_fs(uri)[1]
    fs, path = get_fs(uri)
    os.makedirs(local_dir, exist_ok=True)
    for p in fs.find(path):
        if fs.isdir(p):
            continue
        rel = posixpath.relpath(p, path)
        dst = os.path.join(local_dir, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        fs.get_file(p, dst)
    return local_dir
