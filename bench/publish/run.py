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
Each run also records the CPU seconds of this process (the client: all its threads) and of
moto_server: on a small machine they share the cores, so a client that burns more CPU also
slows the server. Medians over --repeats go to bench/out/publish.json (publish-https.json
with --https) with the load average.

--https serves moto over TLS with a self-signed certificate for 127.0.0.1 made here, which
both clients verify (AWS_CA_BUNDLE). Over plain http botocore sha256-signs every request
body (SigV4); over https, as with real S3, it sends UNSIGNED-PAYLOAD plus a CRC32 checksum.
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


def make_cert(folder: Path) -> tuple:
    """A self-signed certificate and key for 127.0.0.1 (the https server); returns their paths."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "moto-cert.pem", folder / "moto-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def start_moto(port: int, tls: tuple = ()) -> subprocess.Popen:
    exe = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or shutil.which("moto_server")
    if exe is None:
        raise SystemExit("moto_server not found: pip install 'moto[server]' (the project's dev extra)")
    extra = ["--ssl-cert", tls[0], "--ssl-key", tls[1]] if tls else []
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port), *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    parser.add_argument("--contestants", default="boto3,ours-upload,ours,ours-hashfirst", help="of boto3, ours-upload, ours, ours-hashfirst, and ours-upload@MB / ours@MB (publish with multipart_threshold=MB MiB), ours-upload:CHECKSUM / ours:CHECKSUM (publish with part_checksum=CHECKSUM: auto, sha256, crc32, botocore; both suffixes may be combined as ours@MB:CHECKSUM); default: %(default)s")
    parser.add_argument("--multipart-threshold-mb", type=int, default=None, help="our multipart threshold (default: publish_model's own default)")
    parser.add_argument("--https", action="store_true", help="serve moto over TLS (self-signed, verified by both clients)")
    parser.add_argument("--out", default=None, help="default: bench/out/publish.json (publish-https.json with --https)")
    args = parser.parse_args(argv)
    args.out = args.out or str(REPO / "bench" / "out" / ("publish-https.json" if args.https else "publish.json"))

    port = free_port()
    endpoint = f"{'https' if args.https else 'http'}://127.0.0.1:{port}"
    tls = make_cert(Path(args.workdir)) if args.https else ()
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
    )
    if tls:
        os.environ["AWS_CA_BUNDLE"] = tls[0]
    folder = Path(args.workdir) / "model"
    total = make_files(folder, [float(x) for x in args.sizes_mb.split(",")])
    files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    print(f"{len(files)} files, {total / 1e6:.0f} MB; moto on {endpoint}", flush=True)

    import boto3

    from humanllm_ray.publish.manifest import hash_folder
    from humanllm_ray.publish.store import publish_model

    import psutil

    moto = start_moto(port, tls)
    moto_ps = psutil.Process(moto.pid)

    def moto_cpu() -> float:
        t = moto_ps.cpu_times()
        return t.user + t.system

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

    def run_ours(bucket: str, precomputed: bool, threshold_mb=None, checksum=None) -> None:
        threshold_mb = threshold_mb or args.multipart_threshold_mb
        kwargs = {"multipart_threshold": threshold_mb * 1024 * 1024} if threshold_mb else {}
        if checksum:
            kwargs["part_checksum"] = checksum
        publish_model(str(folder), f"s3://{bucket}/models", "bench", files=dict(entries) if precomputed else None, **kwargs)

    def run_hashfirst(bucket: str) -> None:
        kwargs = {"multipart_threshold": args.multipart_threshold_mb * 1024 * 1024} if args.multipart_threshold_mb else {}
        publish_model(str(folder), f"s3://{bucket}/models", "bench", files=hash_folder(str(folder)), **kwargs)

    names = [n.strip() for n in args.contestants.split(",")]
    runners = {"boto3": run_boto3, "ours-hashfirst": run_hashfirst}
    for n in names:
        head, _, checksum = n.partition(":")
        kind, _, mb = head.partition("@")
        if kind in ("ours", "ours-upload"):
            runners[n] = (lambda precomputed, mb, checksum: lambda b: run_ours(b, precomputed, mb, checksum))(
                kind == "ours-upload", int(mb) if mb else None, checksum or None
            )
        elif n not in runners:
            raise SystemExit(f"unknown contestant {n!r}")
    results = {n: [] for n in names}
    load_before = os.getloadavg()
    try:
        for rep in range(args.repeats + 1):  # repeat 0 warms the page cache and the clients; not counted
            order = names if rep % 2 == 0 else names[::-1]
            for name in order:
                bucket = fresh_bucket()
                cpu0, srv0 = time.process_time(), moto_cpu()
                start = time.perf_counter()
                runners[name](bucket)
                wall = time.perf_counter() - start
                cpu, srv = time.process_time() - cpu0, moto_cpu() - srv0
                load1 = os.getloadavg()[0]
                print(f"repeat {rep}{' (warm-up)' if rep == 0 else ''} {name:14s} {wall:6.2f}s  {total / wall / 1e6:7.1f} MB/s  cpu client {cpu:5.2f}s server {srv:5.2f}s  load {load1:.2f}", flush=True)
                if rep > 0:
                    results[name].append({"wall_s": wall, "mb_per_s": total / wall / 1e6, "client_cpu_s": cpu, "server_cpu_s": srv, "load1": load1})
                drop_bucket(bucket)
    finally:
        moto.terminate()
        try:
            moto.wait(timeout=10)
        except subprocess.TimeoutExpired:
            moto.kill()
    load_after = os.getloadavg()

    summary = {
        n: {
            "wall_s_median": statistics.median(r["wall_s"] for r in runs),
            "mb_per_s_median": statistics.median(r["mb_per_s"] for r in runs),
            "client_cpu_s_median": statistics.median(r["client_cpu_s"] for r in runs),
            "server_cpu_s_median": statistics.median(r["server_cpu_s"] for r in runs),
            "runs": runs,
        }
        for n, runs in results.items()
    }
    import s3fs

    report = {
        "bench": "publish",
        "files": {f.name: f.stat().st_size for f in files},
        "total_mb": total / 1e6,
        "server": f"moto_server ({endpoint.split(':')[0]}, 127.0.0.1)",
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
    for n, r in summary.items():
        print(f"{n:14s} median {r['mb_per_s_median']:7.1f} MB/s  cpu client {r['client_cpu_s_median']:5.2f}s server {r['server_cpu_s_median']:5.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
