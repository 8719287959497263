"""Publish stage: S3 round trip to identical logits, tamper detection, an interrupted
publish that stays invisible and then completes, idempotent republish, model card."""

from __future__ import annotations

import json
import logging
import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from humanllm_ray import publish, storage
from humanllm_ray.config import load_config
from humanllm_ray.publish import VerificationError

from test_merge import one_torch_thread, perturbed_copy  # noqa: F401 (autouse fixture)

SECRET = "sekrit-Zq81xVw0-do-not-log"


def _cfg(root, *overrides):
    return load_config(overrides=[f"run.root={root}", "run.progress=false", *overrides])


def _logits(model_dir: str) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        return model(torch.tensor([[1, 7, 30, 12, 99, 2]])).logits


def _write_upstream(root) -> None:
    """Stage reports and a test split as the upstream stages would leave them."""
    storage.write_json(
        os.path.join(root, "ingested", "_report.json"),
        {"stage": "ingest", "rows_in": 120, "rows_out": 110, "rows_quarantined": 10, "rows_merged": 0,
         "by_platform": {"reddit": {"in": 70, "out": 65, "quarantined": 5}, "blogger": {"in": 50, "out": 45, "quarantined": 5}}},
    )
    storage.write_json(
        os.path.join(root, "curated", "_report.json"),
        {"stage": "curate", "rows_in": 110, "rows_out": 60, "rows_quarantined": 40, "rows_merged": 10,
         "by_platform": {"reddit": {"in": 65, "out": 31, "quarantined": 30}, "blogger": {"in": 45, "out": 29, "quarantined": 10}}},
    )
    storage.write_json(
        os.path.join(root, "train", "_report.json"),
        {"stage": "train", "rows_in": 40, "rows_out": 40, "rows_quarantined": 0, "rows_merged": 0,
         "zero_stage": 3, "num_workers": 2, "loss_first": 6.1, "loss_last": 3.2, "steps": 20, "resumed_from_step": None},
    )
    os.makedirs(os.path.join(root, "tasks", "test"), exist_ok=True)
    pq.write_table(pa.table({"task": ["social_qa", "social_qa", "item_selection"]}), os.path.join(root, "tasks", "test", "part-0.parquet"))


@pytest.fixture(scope="module")
def merged_model(tiny_model_dir, tmp_path_factory):
    return perturbed_copy(tiny_model_dir, str(tmp_path_factory.mktemp("pub") / "model"), seed=11)


def _run_with_model(tmp_path, model_dir, *overrides):
    root = tmp_path / "run"
    if not (root / "merged" / "model").exists():
        shutil.copytree(model_dir, root / "merged" / "model")
    return root, _cfg(root, *overrides)


def test_publish_to_s3_then_load_gives_identical_logits(merged_model, s3_bucket, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    caplog.set_level(logging.DEBUG, logger="humanllm")
    root, cfg = _run_with_model(
        tmp_path, merged_model, f"publish.uri={s3_bucket}/models",
        # 10 MiB: the 12.5 MB weights file goes up as a multipart upload.
        "publish.multipart_threshold_bytes=10485760",
    )
    _write_upstream(str(root))
    report = publish.run(cfg)

    version = report["version"]
    assert report["published_uri"] == f"{s3_bucket}/models/humanllm-tiny/{version}"
    assert report["rows_in"] == report["rows_out"] + report["rows_quarantined"] + report["rows_merged"]
    manifest = storage.read_json(f"{report['published_uri']}/manifest.json")
    local_files = sorted(f for f in os.listdir(merged_model))
    assert sorted(manifest["files"]) == sorted(local_files + ["README.md"])
    assert report["rows_out"] == len(manifest["files"])
    assert storage.read_json(f"{s3_bucket}/models/humanllm-tiny/latest")["version"] == version
    assert manifest["base_model"]["name"] == "humanllm-tiny" and manifest["config_hash"]
    assert (root / "publish" / "_SUCCESS").exists()

    assert publish.verify(f"{s3_bucket}/models/humanllm-tiny")["version"] == version
    local = publish.load(f"{s3_bucket}/models/humanllm-tiny", str(tmp_path / "cache"))
    assert torch.equal(_logits(local), _logits(merged_model))

    card = storage.read_text(f"{report['published_uri']}/README.md")
    for expected in ("reddit", "blogger", "social_qa", "item_selection", "loss_last", "Privacy", "Intended use"):
        assert expected in card, expected
    texts = [card, json.dumps(manifest), json.dumps(report), caplog.text]
    assert not any(SECRET in t for t in texts), "a credential leaked into a card, manifest, report or log"


def test_verify_and_load_refuse_a_tampered_version(merged_model, tmp_path):
    root, cfg = _run_with_model(tmp_path, merged_model)
    report = publish.run(cfg)
    version_dir = report["published_uri"]
    assert publish.verify(version_dir)["verified"] is True

    config_path = os.path.join(version_dir, "config.json")
    original = open(config_path, "rb").read()
    open(config_path, "wb").write(original.replace(b'"hidden_act": "silu"', b'"hidden_act": "gelu"'))
    with pytest.raises(VerificationError, match="config.json does not match"):
        publish.verify(version_dir)
    with pytest.raises(VerificationError, match="config.json"):
        publish.load(version_dir, str(tmp_path / "cache"))
    assert not os.path.exists(tmp_path / "cache" / "humanllm-tiny" / report["version"])

    open(config_path, "wb").write(original)
    publish.verify(version_dir)
    open(os.path.join(version_dir, "extra.safetensors"), "wb").write(b"x")
    with pytest.raises(VerificationError, match="not in the manifest"):
        publish.verify(version_dir)
    os.remove(os.path.join(version_dir, "extra.safetensors"))
    os.remove(os.path.join(version_dir, "manifest.json"))
    with pytest.raises(VerificationError, match="no manifest.json"):
        publish.verify(version_dir)


class Interrupted(RuntimeError):
    pass


def test_interrupted_publish_is_invisible_and_a_rerun_completes(merged_model, s3_bucket, tmp_path):
    store = f"{s3_bucket}/store"
    root, cfg = _run_with_model(tmp_path, merged_model, f"publish.uri={store}")
    first = publish.run(cfg)
    v1 = first["version"]

    # New weights -> a new content version; the publish dies after two files.
    root2 = tmp_path / "run2"
    perturbed_copy(merged_model, str(root2 / "merged" / "model"), seed=12)
    cfg2 = _cfg(root2, f"publish.uri={store}")
    uploaded = []

    def die_after_two(rel):
        uploaded.append(rel)
        if len(uploaded) == 2:
            raise Interrupted("killed")

    with pytest.raises(Interrupted):
        publish.run(cfg2, on_file_uploaded=die_after_two)

    versions = [p.rsplit("/", 1)[-1] for p in storage.get_fs(store)[0].ls(f"{store[5:]}/humanllm-tiny")]
    v2 = next(v for v in versions if v not in (v1, "latest", "_by_content"))
    v2_uri = f"{store}/humanllm-tiny/{v2}"
    landed = {f.rsplit("/", 1)[-1] for f in storage.ls_files(v2_uri)}
    # Files go up concurrently, so others may land before the cancel: at least the two
    # reported, never the card (written after every file) and never the manifest.
    assert len(landed) >= 2 and set(uploaded) <= landed  # some files landed ...
    assert "README.md" not in landed
    assert not storage.exists(f"{v2_uri}/manifest.json")  # ... but no manifest
    assert storage.read_json(f"{store}/humanllm-tiny/latest")["version"] == v1  # latest unchanged
    assert not (root2 / "publish" / "_SUCCESS").exists()
    with pytest.raises(VerificationError, match="unfinished"):
        publish.verify(v2_uri)
    loaded = publish.load(f"{store}/humanllm-tiny", str(tmp_path / "cache"))  # readers still get v1
    assert loaded.endswith(v1) and torch.equal(_logits(loaded), _logits(merged_model))

    # The rerun completes the same version: its name (an upload id) comes from the input's
    # listing, not from anything the interrupted attempt left behind.
    second = publish.run(cfg2)
    assert second["version"] == v2 and not second["skipped"]
    assert storage.read_json(f"{store}/humanllm-tiny/latest")["version"] == v2
    assert publish.verify(f"{store}/humanllm-tiny")["version"] == v2


def test_republishing_identical_weights_is_idempotent(merged_model, tmp_path):
    store = str(tmp_path / "store")
    root, cfg = _run_with_model(tmp_path, merged_model, f"publish.uri={store}")
    first = publish.run(cfg)
    manifest_before = open(os.path.join(first["published_uri"], "manifest.json"), "rb").read()

    # Another run (its own stage folder) publishing the same weights to the same store.
    root2 = tmp_path / "other-run"
    shutil.copytree(merged_model, root2 / "merged" / "model")
    second = publish.run(_cfg(root2, f"publish.uri={store}"))
    assert second["version"] == first["version"]
    assert second["files_uploaded"] == 0 and second["rows_merged"] == second["rows_in"] > 0
    assert second["manifest_sha256"] == first["manifest_sha256"]
    assert open(os.path.join(first["published_uri"], "manifest.json"), "rb").read() == manifest_before

    # An explicit version overrides the content hash.
    third = publish.run(_cfg(root2, f"publish.uri={store}", "publish.version=v1.0"))
    assert third["version"] == "v1.0" and third["files_uploaded"] > 0
    assert publish.verify(os.path.join(store, "humanllm-tiny"))["version"] == "v1.0"


def test_s3_publish_hashes_while_uploading_and_dedups_identical_content(merged_model, s3_bucket, tmp_path):
    """On S3 the hash pass overlaps the upload; the manifest's hashes are still those of the
    files, a rerun is a no-op, and the same content from another folder (another upload id)
    ends on the version already published, with its partial upload removed."""
    from humanllm_ray.publish.manifest import hash_folder
    from humanllm_ray.publish.store import publish_model

    store = f"{s3_bucket}/models"
    first = publish_model(merged_model, store, "m", multipart_threshold=10 * 1024 * 1024)
    manifest = storage.read_json(f"{first.uri}/manifest.json")
    for rel, entry in hash_folder(merged_model).items():
        assert manifest["files"][rel] == entry
    assert publish.verify(f"{store}/m")["version"] == first.version
    index = storage.read_json(f"{store}/m/_by_content/{manifest['content_sha256']}.json")
    assert index == {"version": first.version, "manifest_sha256": first.manifest_sha256}

    again = publish_model(merged_model, store, "m")  # same folder: same upload id, already complete
    assert (again.version, again.files_uploaded, again.manifest_sha256) == (first.version, 0, first.manifest_sha256)

    copy = tmp_path / "copy"
    shutil.copytree(merged_model, copy)  # same bytes, new mtimes: another upload id
    os.utime(copy / "config.json", ns=(1, 1))
    other = publish_model(str(copy), store, "m")
    assert other.version == first.version and other.files_uploaded == 0
    names = {p.rsplit("/", 1)[-1] for p in storage.get_fs(store)[0].ls(f"{store[5:]}/m")}
    assert names == {first.version, "latest", "_by_content"}, (names, [storage.ls_files(f"{store}/m/{n}") for n in names])  # the partial upload is gone
    assert storage.read_bytes(f"{first.uri}/manifest.json") == json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"


def test_upload_id_taken_by_other_content_falls_back_to_the_content_name(merged_model, s3_bucket, tmp_path):
    """Same paths, sizes and mtimes but other bytes (a rewrite that kept the mtime): the
    published version is never overwritten; the new content gets its content-hash name."""
    from humanllm_ray.publish.manifest import default_version, hash_folder
    from humanllm_ray.publish.store import publish_model

    store = f"{s3_bucket}/models"
    folder = tmp_path / "m"
    shutil.copytree(merged_model, folder)
    first = publish_model(str(folder), store, "m")
    config = folder / "config.json"
    st = config.stat()
    data = config.read_bytes()
    config.write_bytes(data.replace(b'"silu"', b'"gelu"'))
    os.utime(config, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = publish_model(str(folder), store, "m")
    assert second.version == default_version(hash_folder(str(folder))) != first.version
    assert publish.verify(first.uri)["version"] == first.version  # untouched
    assert publish.verify(f"{store}/m")["version"] == second.version


def test_missing_merged_model_is_a_clear_error(tmp_path):
    with pytest.raises(publish.PublishError, match="run the merge stage first"):
        publish.run(_cfg(tmp_path / "run"))
    with pytest.raises(VerificationError, match="nothing published"):
        publish.verify(str(tmp_path / "nowhere"))


def test_part_checksum_mode_keeps_a_sha256_over_plain_http():
    """Bodies go with UNSIGNED-PAYLOAD plus a signed checksum header computed off the event
    loop; over http that checksum must be a sha256 (as strong as the signed payload it
    replaces), over https CRC32 is what botocore itself sends."""
    from humanllm_ray.publish.store import _part_checksum_mode

    assert _part_checksum_mode("auto", "http://127.0.0.1:5000") == "sha256"
    assert _part_checksum_mode("crc32", "http://127.0.0.1:5000") == "sha256"
    assert _part_checksum_mode("auto", "https://s3.eu-west-1.amazonaws.com") == "crc32"
    assert _part_checksum_mode("sha256", "https://s3.eu-west-1.amazonaws.com") == "sha256"
    assert _part_checksum_mode("botocore", "http://127.0.0.1:5000") is None
    with pytest.raises(publish.PublishError, match="part_checksum"):
        _part_checksum_mode("md5", "https://x")


@pytest.mark.parametrize("part_checksum", ["auto", "botocore"])
def test_s3_publish_sends_each_body_with_its_checksum(merged_model, s3_bucket, tmp_path, part_checksum):
    """Every uploaded object lands intact (verify re-hashes it) with either checksum mode;
    with "auto" over http each PUT carries the sha256 of its body, which the store keeps."""
    import base64
    import hashlib

    import boto3

    from humanllm_ray.publish.store import publish_model

    store = f"{s3_bucket}/models"
    sizes = {f: os.path.getsize(os.path.join(merged_model, f)) for f in os.listdir(merged_model)}
    threshold = 5 * 1024 * 1024 if max(sizes.values()) >= 10 * 1024 * 1024 else 64 * 1024 * 1024
    result = publish_model(merged_model, store, "m", multipart_threshold=threshold, part_checksum=part_checksum)
    assert publish.verify(f"{store}/m")["version"] == result.version
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    bucket, prefix = result.uri[len("s3://") :].split("/", 1)
    head = client.head_object(Bucket=bucket, Key=f"{prefix}/config.json", ChecksumMode="ENABLED")
    if part_checksum == "auto":
        data = open(os.path.join(merged_model, "config.json"), "rb").read()
        assert head["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    big = max(sizes, key=sizes.get)
    if sizes[big] >= threshold:  # multipart: created with the algorithm, every part carried it
        head = client.head_object(Bucket=bucket, Key=f"{prefix}/{big}", ChecksumMode="ENABLED")
        assert ("ChecksumSHA256" in head) == (part_checksum == "auto")
