"""The train stage: Ray Train + DeepSpeed ZeRO on 2 CPU workers, export, LoRA, S3, fault recovery.

Each training test runs tens of optimizer steps of the tiny model on a small fixed set of
chat examples (ZeRO-3 ~40 ms/step; most of a test is Ray Train start-up).
"""

from __future__ import annotations

import glob
import json
import os

import pyarrow as pa
import pytest
import torch

from humanllm_ray import storage
from humanllm_ray.config import load_config
from humanllm_ray.stage import write_table
from humanllm_ray.tasks.build import EXAMPLE_SCHEMA

TOPICS = ["bread", "chess", "rain", "bikes", "tea", "jazz", "maps", "stars"]


def _example(i: int, user_text: str, assistant_text: str, system_text: str = "You are simulating one specific person.") -> dict:
    return {
        "example_id": f"ex{i:03d}",
        "task": "writing_imitation",
        "variant": "title_to_post",
        "user_id": f"u{i % 4}",
        "platform": "reddit",
        "split": "train",
        "messages": [
            {"role": "system", "content": system_text},
            {"role": "user", "content": user_text},
            {"role": "assistant", "content": assistant_text},
        ],
        "meta": "{}",
    }


def write_train_examples(tasks_uri: str, n: int = 48, n_too_long: int = 2) -> None:
    """A small fixed set with a learnable pattern (a few with an over-long user turn, which
    gets shortened), plus examples whose system turn alone exceeds max_length (their
    assistant turn is cut away -> quarantined as too_long)."""
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        prompt = f"Write a post about {topic}."
        if i % 12 == 0:
            prompt = "old history " * 300 + prompt
        rows.append(_example(i, prompt, f"I love {topic}. {topic} makes my day better."))
    for j in range(n_too_long):
        rows.append(_example(n + j, "Say something.", "short answer here", system_text="long system " * 400))
    write_table(pa.Table.from_pylist(rows, schema=EXAMPLE_SCHEMA), storage.join(tasks_uri, "train", "part-0.parquet"))


def _config(root: str, *overrides: str):
    base = [
        f"run.root={root}",
        "run.progress=false",
        "train.num_workers=2",
        "train.cpus_per_worker=0.5",
        "train.micro_batch_size=4",
        "train.max_length=128",
        "train.max_steps=16",
        "train.checkpoint_every=8",
    ]
    return load_config(overrides=base + list(overrides))


def _load_exported(model_uri: str, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = storage.get_dir(model_uri, str(tmp_path / "exported"))
    model = AutoModelForCausalLM.from_pretrained(local, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(local)
    return local, model, tok


def _checkpoint_weights(checkpoint_uri: str, tmp_path) -> dict:
    """fp32 weights consolidated from the DeepSpeed ZeRO shards of a saved checkpoint."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    local = storage.get_dir(checkpoint_uri, str(tmp_path / "ckpt"))
    state = json.load(open(os.path.join(local, "trainer_state.json")))
    return get_fp32_state_dict_from_zero_checkpoint(local, tag=state["tag"]), state


def _assert_trained(report: dict, *, zero_stage: int, steps: int) -> None:
    assert report["zero_stage"] == zero_stage
    assert report["num_workers"] == 2
    assert report["steps"] == steps
    assert report["loss_last"] < report["loss_first"], (report["loss_first"], report["loss_last"])
    assert report["rows_in"] == report["rows_out"] + report["rows_quarantined"]
    assert report["by_reason"] == {"too_long": 2}
    assert report["tokens_per_s"] > 0


def _assert_metrics(train_uri: str, steps: int) -> list:
    lines = storage.read_text(storage.join(train_uri, "metrics.jsonl")).splitlines()
    history = [json.loads(line) for line in lines]
    assert [m["step"] for m in history] == list(range(1, steps + 1))
    assert all({"loss", "lr", "tokens_per_s", "step_time_s"} <= set(m) for m in history)
    png = storage.read_bytes(storage.join(train_uri, "loss_curve.png"))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return history


# --------------------------------------------------------------------------- unit level


def test_deepspeed_config_files_fill_auto(tmp_path):
    from humanllm_ray.train.ds_config import build_deepspeed_config, config_file, has_own_optimizer

    for stage in (2, 3):
        for offload in (False, True):
            cfg = load_config(overrides=[f"train.zero_stage={stage}", f"train.offload={offload}", "train.bf16=true"])
            ds = build_deepspeed_config(cfg.train, world_size=2, hidden_size=64)
            assert config_file(cfg.train).endswith(f"zero{stage}{'_offload' if offload else ''}.json")
            assert "auto" not in json.dumps(ds)
            assert ds["zero_optimization"]["stage"] == stage
            assert ds["bf16"]["enabled"] is True
            assert ds["train_batch_size"] == cfg.train.micro_batch_size * cfg.train.gradient_accumulation_steps * 2
            assert has_own_optimizer(ds) is offload
            if stage == 3:
                assert ds["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    custom = tmp_path / "ds.json"
    custom.write_text(json.dumps({"train_micro_batch_size_per_gpu": 7, "zero_optimization": {"stage": 1, "x": "auto"}}))
    cfg = load_config(overrides=[f"train.deepspeed_config={custom}"])
    with pytest.raises(ValueError, match="zero_optimization.x"):
        build_deepspeed_config(cfg.train, world_size=1, hidden_size=64)


def test_training_never_builds_deepspeeds_inference_comm_op(tmp_path, monkeypatch):
    """DeepSpeed's CPU backend would g++-build its shared-memory comm op (used only by
    inference_all_reduce) at every training start that misses its build cache, 30-45 s each;
    build_engine marks it incompatible first, and DeepSpeed's own hook then builds nothing."""
    import deepspeed.ops
    from deepspeed.comm.torch import build_shm_op

    from humanllm_ray.train.loop import skip_inference_comm_op

    ops = deepspeed.ops.__compatible_ops__
    monkeypatch.setitem(ops, "deepspeed_shm_comm", ops["deepspeed_shm_comm"])  # restored after
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))  # an empty cache: a build would land here
    skip_inference_comm_op()
    assert build_shm_op() is None
    assert not any(tmp_path.iterdir())


def test_tokenize_masks_all_but_the_assistant_turn(tiny_model_dir):
    from humanllm_ray.model import load_tokenizer
    from humanllm_ray.train.data import IGNORE_INDEX, tokenize_chat

    tok = load_tokenizer(tiny_model_dir)
    msgs = _example(0, "Write a post about tea.", "I love tea.")["messages"]
    enc = tokenize_chat(tok, msgs, max_length=512)
    target = [t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != IGNORE_INDEX]
    assert tok.decode(target) == "I love tea.<|im_end|>"
    assert enc["reason"] == "" and not enc["truncated"]
    # A system turn alone longer than max_length: nothing to shorten, the target is cut away.
    long_system = _example(0, "Hi.", "I love tea.", system_text="rules " * 200)["messages"]
    first_target = next(i for i, lab in enumerate(tokenize_chat(tok, long_system, 4096)["labels"]) if lab != IGNORE_INDEX)
    kept_one = tokenize_chat(tok, long_system, max_length=first_target + 1)
    assert kept_one["reason"] == "" and kept_one["n_target_tokens"] >= 1 and kept_one["truncated"]
    cut = tokenize_chat(tok, long_system, max_length=first_target // 2)
    assert cut["reason"] == "too_long" and cut["truncated"] and cut["n_target_tokens"] == 0


def test_tokenize_task_on_a_node_without_the_model_folder(tiny_model_dir, tmp_path, monkeypatch):
    """Multi-node without a shared file system: the driver's model_dir does not exist where a
    tokenize task runs; the shipped tokenizer files give the very same rows."""
    import pyarrow as pa

    from humanllm_ray.train import data as train_data

    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the node's cache starts empty
    rows = pa.Table.from_pylist([_example(i, f"Write about tea, take {i}.", f"Tea is good {i}.") for i in range(3)])
    files = train_data.tokenizer_files(tiny_model_dir)
    assert "tokenizer_config.json" in files and sum(map(len, files.values())) < 5_000_000
    here = train_data.tokenize_batch(rows, model_dir=tiny_model_dir, max_length=256)
    elsewhere = train_data.tokenize_batch(
        rows, model_dir=str(tmp_path / "driver-only" / "model"), max_length=256, tokenizer_files=files
    )
    assert elsewhere.to_pylist() == here.to_pylist()
    assert list((tmp_path / "home" / ".cache" / "humanllm_ray" / "tokenizers").iterdir())  # cached per content
    with pytest.raises(Exception):  # and without the files the task cannot pretend
        train_data.tokenize_batch(rows, model_dir=str(tmp_path / "driver-only" / "model"), max_length=256)


def test_overlong_prompt_is_shortened_from_its_head_keeping_the_target(tiny_model_dir):
    from humanllm_ray.model import load_tokenizer
    from humanllm_ray.train.data import IGNORE_INDEX, TRIM_MARKER, tokenize_chat

    tok = load_tokenizer(tiny_model_dir)
    history = " ".join(f"oldpost{i}" for i in range(400))
    msgs = _example(0, history + " Now write about tea.", "I love tea.")["messages"]
    enc = tokenize_chat(tok, msgs, max_length=96)
    assert enc["truncated"] and enc["reason"] == "" and len(enc["input_ids"]) <= 96
    text = tok.decode(enc["input_ids"])
    assert TRIM_MARKER.strip() in text and "Now write about tea." in text and "oldpost0 " not in text
    target = [t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != IGNORE_INDEX]
    assert tok.decode(target) == "I love tea.<|im_end|>"


def test_packed_rows_do_not_attend_across_examples(tiny_model_dir):
    """A packed row (position ids, no attention mask) gives each example the same logits as
    running it alone: transformers builds a block-diagonal mask from the position ids."""
    from humanllm_ray.model import load_model, load_tokenizer
    from humanllm_ray.train.data import TOKENIZED_SCHEMA, collate, pack_batch, tokenize_chat

    tok = load_tokenizer(tiny_model_dir)
    model = load_model(tiny_model_dir).eval()
    encs = [tokenize_chat(tok, _example(i, f"Post about {t}.", f"{t} is fine.")["messages"], 64) for i, t in enumerate(TOPICS[:3])]
    rows = [{"example_id": str(i), "task": "t", "platform": "p", "user_id": "u", "n_tokens": len(e["input_ids"]), **e} for i, e in enumerate(encs)]
    packed = pack_batch(pa.Table.from_pylist(rows, schema=TOKENIZED_SCHEMA), max_length=64 * 3)
    assert packed.num_rows == 1 and packed["n_examples"][0].as_py() == 3
    batch = collate({k: packed[k].to_numpy(zero_copy_only=False) for k in ("input_ids", "labels", "position_ids")}, tok.pad_token_id)
    with torch.no_grad():
        packed_logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0]
        offset = 0
        for e in encs:
            alone = model(input_ids=torch.tensor([e["input_ids"]]), use_cache=False).logits[0]
            n = len(e["input_ids"])
            torch.testing.assert_close(packed_logits[offset : offset + n], alone, atol=1e-4, rtol=1e-4)
            offset += n


# --------------------------------------------------------------------------- Ray Train runs


def test_zero3_trains_exports_consolidated_weights(ray_local, tmp_path):
    from humanllm_ray.model import ensure_base_model, load_model
    from humanllm_ray.train import run

    root = str(tmp_path / "run")
    write_train_examples(os.path.join(root, "tasks"))
    cfg = _config(root, "train.zero_stage=3")
    report = run(cfg)
    _assert_trained(report, zero_stage=3, steps=16)
    assert report["resumed_from_step"] is None and report["lora"] is False
    history = _assert_metrics(report["output"], 16)
    assert history[0]["lr"] < max(m["lr"] for m in history)  # warmup
    assert history[-1]["lr"] < max(m["lr"] for m in history)  # cosine decay

    local, model, tok = _load_exported(report["model_uri"], tmp_path)
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= set(os.listdir(local))
    assert tok.chat_template and tok.eos_token == "<|im_end|>"
    # The export is the trained weights: equal to the fp32 weights consolidated from the
    # final ZeRO-3 checkpoint's shards (written by the two workers separately).
    ckpt_weights, state = _checkpoint_weights(report["checkpoint_uri"], tmp_path)
    assert state["step"] == 16
    shards = glob.glob(os.path.join(storage.get_dir(report["checkpoint_uri"], str(tmp_path / "c2")), "step16", "*optim_states.pt"))
    assert len(shards) == 2  # one ZeRO partition per worker
    exported = model.state_dict()
    assert set(ckpt_weights) <= set(exported)
    for name, tensor in ckpt_weights.items():
        assert torch.equal(exported[name], tensor.float()), name
    base = load_model(ensure_base_model(cfg)).state_dict()
    assert not torch.equal(base["model.embed_tokens.weight"], exported["model.embed_tokens.weight"])

    # A rerun with the same config and inputs is a no-op.
    again = run(cfg)
    assert again["skipped"] is True


def test_zero2_packing_with_checkpoints_on_s3(ray_local, s3_bucket, tmp_path):
    from humanllm_ray.train import run

    root = f"{s3_bucket}/run"
    write_train_examples(f"{root}/tasks")
    cfg = _config(root, "train.zero_stage=2", "train.packing=true", "train.max_length=256", "train.max_steps=12")
    report = run(cfg)
    assert report["zero_stage"] == 2 and report["steps"] == 12
    assert report["loss_last"] < report["loss_first"]
    assert report["packed_rows"] < report["rows_out"]  # several examples per packed row
    assert report["checkpoint_uri"].startswith(f"{s3_bucket}/run/train/checkpoints/")
    assert report["model_uri"] == f"{s3_bucket}/run/train/model"
    assert storage.exists(f"{report['checkpoint_uri']}/trainer_state.json")
    _assert_metrics(report["output"], 12)
    _, model, _ = _load_exported(report["model_uri"], tmp_path)
    ckpt_weights, _ = _checkpoint_weights(report["checkpoint_uri"], tmp_path)
    exported = model.state_dict()
    for name, tensor in ckpt_weights.items():
        assert torch.equal(exported[name], tensor.float()), name


def test_lora_trains_adapters_and_exports_a_plain_model(ray_local, tmp_path):
    from humanllm_ray.model import ensure_base_model, load_model
    from humanllm_ray.train import run

    root = str(tmp_path / "run")
    write_train_examples(os.path.join(root, "tasks"))
    cfg = _config(root, "train.zero_stage=3", "train.lora.enabled=true", "train.learning_rate=1e-2", "train.max_steps=12", "train.checkpoint_every=0")
    report = run(cfg)
    assert report["lora"] is True and report["steps"] == 12
    assert report["loss_last"] < report["loss_first"]
    local, model, _ = _load_exported(report["model_uri"], tmp_path)
    exported = model.state_dict()
    assert not any("lora" in k for k in exported)
    assert type(model).__name__ == "LlamaForCausalLM"
    base = load_model(ensure_base_model(cfg)).state_dict()
    assert set(base) == set(exported)
    changed = {k for k in base if not torch.equal(base[k], exported[k])}
    # Adapters were on attention projections only: exactly those weights moved (folded in).
    assert changed and all(k.split(".")[-2] in {"q_proj", "k_proj", "v_proj", "o_proj"} for k in changed)


def test_worker_death_resumes_from_last_checkpoint(ray_local, tmp_path, monkeypatch):
    from humanllm_ray.train import run

    monkeypatch.setenv("HUMANLLM_TEST_FAIL_AT_STEP", "7")
    root = str(tmp_path / "run")
    write_train_examples(os.path.join(root, "tasks"))
    cfg = _config(root, "train.zero_stage=3", "train.max_steps=12", "train.checkpoint_every=4", "train.max_failures=2")
    report = run(cfg)
    assert report["resumed_from_step"] == 4  # the last checkpoint before the death at step 7
    assert report["steps"] == 12
    history = _assert_metrics(report["output"], 12)  # steps 5-7 redone once, not duplicated
    assert report["loss_last"] < report["loss_first"]
    _, model, _ = _load_exported(report["model_uri"], tmp_path)
    ckpt_weights, state = _checkpoint_weights(report["checkpoint_uri"], tmp_path)
    assert state["step"] == 12 and len(state["history"]) == 12 and history == state["history"]
    exported = model.state_dict()
    for name, tensor in ckpt_weights.items():
        assert torch.equal(exported[name], tensor.float()), name


def test_death_before_the_checkpoint_is_registered_resumes_from_storage(ray_local, tmp_path, monkeypatch):
    """The last rank dies right after its step-4 checkpoint report, before Ray Train's controller
    polls (and so registers) it: ``ray.train.get_checkpoint()`` in the restarted group has
    nothing, the shards are in storage. Without the storage scan the group restarts from step 0
    and dies here again until max_failures is spent."""
    from humanllm_ray.train import run
    from humanllm_ray.train.loop import newest_complete_checkpoint

    monkeypatch.setenv("HUMANLLM_TEST_FAIL_AT_STEP", "4")
    monkeypatch.setenv("HUMANLLM_TEST_FAIL_POINT", "after_checkpoint")
    root = str(tmp_path / "run")
    write_train_examples(os.path.join(root, "tasks"))
    cfg = _config(root, "train.zero_stage=2", "train.max_steps=8", "train.checkpoint_every=4",
                  "train.max_failures=1", "train.checkpoints_to_keep=3")
    report = run(cfg)
    assert report["resumed_from_step"] == 4
    assert report["resumed_from"] in ("storage", "ray")  # "ray" only if a poll fell in a microsecond window
    assert report["steps"] == 8
    history = _assert_metrics(report["output"], 8)
    step, uri = newest_complete_checkpoint(report["checkpoint_root"])
    assert step == 8 and uri.endswith("checkpoint_000008")
    _, state = _checkpoint_weights(uri, tmp_path)
    assert state["history"] == history


def test_newest_complete_checkpoint_skips_folders_a_rank_did_not_finish(tmp_path):
    from humanllm_ray.train.loop import newest_complete_checkpoint

    run_uri = str(tmp_path / "sft-x")
    assert newest_complete_checkpoint(run_uri) == (0, None)

    def folder(step, ranks, world=2, state=True):
        d = tmp_path / "sft-x" / f"checkpoint_{step:06d}"
        (d / "_rank_done").mkdir(parents=True)
        if state:
            (d / "trainer_state.json").write_text("{}")
        for r in ranks:
            (d / "_rank_done" / f"{r}-of-{world}").write_text(str(step))

    folder(4, [0, 1])
    folder(8, [0, 1])
    folder(12, [0])  # rank 1 died while uploading
    folder(16, [0, 1], state=False)  # no trainer state
    folder(20, [0, 1, 2], world=3)
    (tmp_path / "sft-x" / "checkpoint_000020" / "_rank_done" / "0-of-2").write_text("20")  # mixed worlds
    assert newest_complete_checkpoint(run_uri) == (8, os.path.join(run_uri, "checkpoint_000008"))
