"""Shared fixtures: one local Ray for the session, and a real S3-compatible server (moto).

The S3 endpoint and dummy credentials are put in the environment at import time, before
any Ray worker starts, so every process of the test session (driver, Ray workers, Ray
Train workers, `humanllm` subprocesses) reaches the same server.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_REALDATA = REPO_ROOT.parent / "shared" / "realdata"


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _s3_port() -> int:
    """A free port for moto's server, chosen now (the endpoint goes into the environment before
    any process starts) but taken only when the first S3 test starts it. So it is picked below
    the kernel's ephemeral range and above Ray's worker ports (10002-19999): a port the kernel
    hands out for ``bind(0)`` (Ray, vLLM and gRPC take dozens in between) was once taken by one
    of them first, moto exited, and the S3 test hung on the other process's socket."""
    import random

    low, high = 20000, min(_ephemeral_low(), 32768)
    for port in random.Random(os.getpid()).sample(range(low, high), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # every one tried was taken: an ephemeral port, as before
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_S3_PORT = _s3_port()
S3_ENDPOINT = f"http://127.0.0.1:{_S3_PORT}"
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ["AWS_ENDPOINT_URL"] = S3_ENDPOINT
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")


@pytest.fixture(scope="session")
def ray_local():
    """A 2-CPU local Ray shared by every test that needs one, its workers on the Arrow memory
    pool the stages run with and its GCS keeping as many task events (``run.arrow_memory_pool``'s
    and ``run.ray_task_events_max``'s defaults, as ``runtime.init_ray`` sets them)."""
    import ray

    from humanllm_ray import runtime
    from humanllm_ray.config import RunConfig

    runtime.prepare_local_ray(RunConfig())
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server on 127.0.0.1, started for the session; yields its endpoint URL."""
    exe = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or shutil.which("moto_server")
    if exe is None:
        pytest.fail("moto_server not installed: install the dev extra (pip install -e .[dev])")
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(_S3_PORT)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    # Ready when moto itself answers an S3 call: a bare connect would also succeed against
    # another process holding the port, and the tests would then hang on it.
    import urllib.request

    deadline = time.time() + 60
    while True:
        if proc.poll() is not None:
            pytest.fail(f"moto_server exited with {proc.returncode} at start (port {_S3_PORT} taken?)")
        try:
            with urllib.request.urlopen(S3_ENDPOINT + "/", timeout=2) as reply:
                if b"ListAllMyBucketsResult" in reply.read():
                    break
        except OSError:
            pass
        if time.time() > deadline:
            proc.kill()
            pytest.fail(f"moto_server did not answer on {S3_ENDPOINT} within 60 s")
        time.sleep(0.2)
    yield S3_ENDPOINT
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture()
def s3_bucket(s3_server):
    """A fresh bucket on the moto server; yields 's3://<bucket>'."""
    import uuid

    import s3fs

    name = f"test-{uuid.uuid4().hex[:10]}"
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_server})
    fs.mkdir(name)
    yield f"s3://{name}"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The embedded tiny base model (built once per machine, cached)."""
    from humanllm_ray.config import load_config
    from humanllm_ray.model import ensure_base_model

    return ensure_base_model(load_config())


def realdata_dir(*parts: str) -> Path:
    """A folder under ../shared/realdata, or skip the test with the reason."""
    path = SHARED_REALDATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (../shared/realdata ships beside the repo in CI)")
    return path
