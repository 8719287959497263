#!/usr/bin/env python
"""Benchmark: our publish (publish_model, through s3fs) against plain boto3 upload_file,
same files, same S3-compatible server (moto, started here on 127.0.0.1 on a free port with
dummy credentials; nothing else is contacted).

Contestants, run interleaved (order alternating each repeat), each into a fresh bucket:

  boto3          boto3.client("s3").upload_file for every file (boto3's default
                 TransferConfig: 8 MiB parts, 10 threads) — the upload alone;
  ours-upload    publish_model(files=<precomputed manifest entries>): upload, card,
                 size check, manifest, latest pointer — our publish minus the hashing;
  ours           publish_model end to end, sha256 of every file (the manifest) included.
                 This is what the publish stage does; on S3 the hash pass runs on threads
                 while the files go up (the version is an upload id, not the content hash).
  ours-hashfirst hash_folder, then publish_model(files=...): the hash pass before the
                 first byte, as publish did before the overlap (for comparison).

Throughput is total file bytes / wall seconds; the ratio is ours / boto3 (goal >= 0.9).
Medians over --repeats go to bench/out/publish.json with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(port: int) -> subprocess.Popen:
    exe = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or shutil.which("moto_server")
    if exe is None:
        raise SystemExit("moto_server not found: pip install 'moto[server]' (the project's dev extra)")
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto_server did not start")


def make_files(folder: Path, sizes_mb) -> int:
    """A model-like folder: a few large random files and a config; returns total bytes."""
    spec = json.dumps(list(sizes_mb))
    marker = folder / ".bench-spec"
    if marker.exists() and marker.read_text() == spec:
        return sum(f.stat().st_size for f in folder.iterdir() if not f.name.startswith("."))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    n = len(sizes_mb)
    for i, mb in enumerate(sizes_mb):
        with open(folder / f"model-{i + 1:05d}-of-{n:05d}.safetensors", "wb") as fh:
            left = int(mb * 1024 * 1024)
            while left:
                chunk = os.urandom(min(left, 8 * 1024 * 1024))
                fh.write(chunk)
                left -= len(chunk)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "bench": True}) + "\n")
    marker.write_text(spec)
    return sum(f.stat().st_size for f in folder.iterdir() if not f.name.startswith("."))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/humanllm-bench-publish")
    parser.add_argument("--sizes-mb", default="160,96,48,16,1", help="file sizes in MiB, comma-separated (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--contestants", default="boto3,ours-upload,ours,ours-hashfirst", help="of boto3, ours-upload, ours, ours-hashfirst, and ours-upload@MB / ours@MB (publish with multipart_threshold=MB MiB); default: %(default)s")
    parser.add_argument("--multipart-threshold-mb", type=int, default=None, help="our multipart threshold (default: publish_model's own default)")
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "publish.json"))
    args = parser.parse_args(argv)

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
    )
    folder = Path(args.workdir) / "model"
    total = make_files(folder, [float(x) for x in args.sizes_mb.split(",")])
    files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    print(f"{len(files)} files, {total / 1e6:.0f} MB; moto on {endpoint}", flush=True)

    import boto3

    from humanllm_ray.publish.manifest import hash_folder
    from humanllm_ray.publish.store import publish_model

    moto = start_moto(port)
    client = boto3.client("s3", endpoint_url=endpoint)
    entries = hash_folder(str(folder))  # for ours-upload (hashing timed separately in "ours")

    def fresh_bucket() -> str:
        name = f"bench-{uuid.uuid4().hex[:10]}"
        client.create_bucket(Bucket=name)
        return name

    def drop_bucket(name: str) -> None:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys})
        client.delete_bucket(Bucket=name)

    def run_boto3(bucket: str) -> None:
        for f in files:
            client.upload_file(str(f), bucket, f"plain/{f.name}")

    def run_ours(bucket: str, precomputed: bool, threshold_mb=None) -> None:
        threshold_mb = threshold_mb or args.multipart_threshold_mb
        kwargs = {"multipart_threshold": threshold_mb * 1024 * 1024} if threshold_mb else {}
        publish_model(str(folder), f"s3://{bucket}/models", "bench", files=dict(entries) if precomputed else None, **kwargs)

    def run_hashfirst(bucket: str) -> None:
        kwargs = {"multipart_threshold": args.multipart_threshold_mb * 1024 * 1024} if args.multipart_threshold_mb else {}
        publish_model(str(folder), f"s3://{bucket}/models", "bench", files=hash_folder(str(folder)), **kwargs)

    names = [n.strip() for n in args.contestants.split(",")]
    runners = {"boto3": run_boto3, "ours-hashfirst": run_hashfirst}
    for n in names:
        kind, _, mb = n.partition("@")
        if kind in ("ours", "ours-upload"):
            runners[n] = (lambda precomputed, mb: lambda b: run_ours(b, precomputed, mb))(kind == "ours-upload", int(mb) if mb else None)
        elif n not in runners:
            raise SystemExit(f"unknown contestant {n!r}")
    results = {n: [] for n in names}
    load_before = os.getloadavg()
    try:
        for rep in range(args.repeats + 1):  # repeat 0 warms the page cache and the clients; not counted
            order = names if rep % 2 == 0 else names[::-1]
            for name in order:
                bucket = fresh_bucket()
                start = time.perf_counter()
                runners[name](bucket)
                wall = time.perf_counter() - start
                load1 = os.getloadavg()[0]
                print(f"repeat {rep}{' (warm-up)' if rep == 0 else ''} {name:12s} {wall:6.2f}s  {total / wall / 1e6:7.1f} MB/s  load {load1:.2f}", flush=True)
                if rep > 0:
                    results[name].append({"wall_s": wall, "mb_per_s": total / wall / 1e6, "load1": load1})
                drop_bucket(bucket)
    finally:
        moto.terminate()
        try:
            moto.wait(timeout=10)
        except subprocess.TimeoutExpired:
            moto.kill()
    load_after = os.getloadavg()

    summary = {n: {"wall_s_median": statistics.median(r["wall_s"] for r in runs), "mb_per_s_median": statistics.median(r["mb_per_s"] for r in runs), "runs": runs} for n, runs in results.items()}
    import s3fs

    report = {
        "bench": "publish",
        "files": {f.name: f.stat().st_size for f in files},
        "total_mb": total / 1e6,
        "server": "moto_server (127.0.0.1)",
        "s3fs_version": s3fs.__version__,
        "boto3_version": boto3.__version__,
        "repeats": args.repeats,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "nproc": os.cpu_count(),
        "results": summary,
    }
    if "boto3" in summary:
        for n in summary:
            if n != "boto3":
                report[f"{n}_vs_boto3_throughput"] = summary[n]["mb_per_s_median"] / summary["boto3"]["mb_per_s_median"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "results"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
