"""The cluster configs users submit with: checked against the schemas they must satisfy."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from humanllm_ray.config import load_config

REPO = Path(__file__).resolve().parents[1]


def test_aws_launcher_config_satisfies_rays_schema():
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    cfg = yaml.safe_load((REPO / "cluster" / "aws.yaml").read_text())
    jsonschema.validate(cfg, schema)
    types = cfg["available_node_types"]
    assert cfg["head_node_type"] in types
    # The stage-specific worker types the docs and jobs refer to.
    assert {"cpu-curate", "gpu-synth", "gpu-train"} <= set(types)
    for name, spec in types.items():
        assert "IamInstanceProfile" in spec["node_config"], f"{name}: S3 access comes from an instance profile"


def _check_worker_groups(groups):
    assert groups, "at least one worker group"
    for g in groups:
        for key in ("groupName", "rayStartParams", "template"):
            assert key in g, f"worker group missing {key}"
        assert g["minReplicas"] <= g.get("replicas", 0) <= g["maxReplicas"]
        assert g["template"]["spec"]["containers"], g["groupName"]


@pytest.mark.parametrize("name", ["raycluster.yaml", "rayjob.yaml"])
def test_kuberay_manifests_have_required_fields(name):
    doc = yaml.safe_load((REPO / "cluster" / "kuberay" / name).read_text())
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["metadata"]["name"]
    if doc["kind"] == "RayCluster":
        spec = doc["spec"]
    else:
        assert doc["kind"] == "RayJob"
        assert doc["spec"]["entrypoint"].startswith("python jobs/")
        spec = doc["spec"]["rayClusterSpec"]
    head = spec["headGroupSpec"]
    assert "rayStartParams" in head and head["template"]["spec"]["containers"]
    _check_worker_groups(spec["workerGroupSpecs"])


def test_cluster_profile_carries_the_papers_settings():
    cfg = load_config([str(REPO / "conf" / "cluster.yaml")])
    assert cfg.train.zero_stage == 3 and cfg.train.use_gpu and cfg.train.bf16
    assert cfg.train.learning_rate == 5e-6 and cfg.train.epochs == 3 and cfg.train.max_length == 8192
    effective_batch = cfg.train.num_workers * cfg.train.micro_batch_size * cfg.train.gradient_accumulation_steps
    assert effective_batch == 64
    assert cfg.synth.engine == "vllm" and cfg.synth.pool.num_gpus_per_actor >= 1
    assert cfg.run.root.startswith("s3://") and cfg.merge.weights == [0.5, 0.5]


@pytest.mark.parametrize("job", ["pipeline", "curate", "synthesize", "train", "merge_publish"])
def test_job_entrypoints_show_help(job):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, str(REPO / "jobs" / f"{job}.py"), "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--stages" in proc.stdout
