"""Merge stage: every method against an independent torch computation, sharded output
through Ray, S3 in and out, tied embeddings, and validation that fails before writing."""

from __future__ import annotations

import json
import math
import os
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from humanllm_ray import merge, storage
from humanllm_ray.config import load_config
from humanllm_ray.merge import MergeError, merge_models

ATOL = 1e-6


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny tensors on a shared 2-core box: a second intra-op thread only spins and contends."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------- helpers


def perturbed_copy(base_dir: str, out_dir: str, seed: int, scale: float = 0.05) -> str:
    """A stand-in for a fine-tuned model: the tiny base with seeded noise on every weight."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    model.save_pretrained(out_dir)
    for name in os.listdir(base_dir):  # tokenizer files
        if name.startswith("tokenizer") or name.endswith(".jinja"):
            shutil.copy(os.path.join(base_dir, name), out_dir)
    return out_dir


def read_state(model_dir: str) -> dict:
    """All tensors of a model folder (single file or sharded), for comparisons."""
    out = {}
    for fname in sorted(os.listdir(model_dir)):
        if fname.endswith(".safetensors"):
            with safe_open(os.path.join(model_dir, fname), framework="pt") as fh:
                for k in fh.keys():
                    out[k] = fh.get_tensor(k)
    return out


def assert_states_close(actual: dict, expected: dict, atol: float = ATOL) -> None:
    assert set(actual) == set(expected)
    for name in expected:
        assert actual[name].shape == expected[name].shape, name
        assert torch.allclose(actual[name].float(), expected[name].float(), atol=atol, rtol=0), (
            name,
            (actual[name].float() - expected[name].float()).abs().max().item(),
        )


# Independent references (written from the papers' definitions, not from the module).


def ref_linear(states, weights):
    return {k: sum(w * s[k] for w, s in zip(weights, states)) / sum(weights) for k in states[0]}


def ref_task_arithmetic(states, weights, base):
    return {k: base[k] + sum(w * (s[k] - base[k]) for w, s in zip(weights, states)) for k in base}


def ref_ties(states, weights, base, density):
    out = {}
    for k in base:
        deltas = []
        for s in states:
            d = (s[k] - base[k]).flatten()
            keep = math.ceil(density * d.numel())
            threshold = torch.sort(d.abs(), descending=True).values[keep - 1]
            deltas.append(torch.where(d.abs() >= threshold, d, torch.zeros_like(d)))
        elected = torch.sign(sum(w * d for w, d in zip(weights, deltas)))
        num = torch.zeros_like(deltas[0])
        den = torch.zeros_like(deltas[0])
        for w, d in zip(weights, deltas):
            agree = ((torch.sign(d) == elected) & (d != 0)).float()
            num += w * d * agree
            den += w * agree
        merged = torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(num))
        out[k] = base[k] + merged.reshape(base[k].shape)
    return out


def ref_slerp(a_state, b_state, t):
    out = {}
    for k in a_state:
        a, b = a_state[k].flatten().double(), b_state[k].flatten().double()
        cos = torch.dot(a, b) / (a.norm() * b.norm())
        if abs(cos.item()) > 0.9995:
            v = (1 - t) * a + t * b
        else:
            omega = torch.arccos(cos)
            v = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
        out[k] = v.float().reshape(a_state[k].shape)
    return out


@pytest.fixture(scope="module")
def models(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("merge-inputs")
    sft = perturbed_copy(tiny_model_dir, str(root / "sft"), seed=1)
    sft2 = perturbed_copy(tiny_model_dir, str(root / "sft2"), seed=2)
    far = perturbed_copy(tiny_model_dir, str(root / "far"), seed=3, scale=1.0)  # exercises true slerp
    return {"base": tiny_model_dir, "sft": sft, "sft2": sft2, "far": far}


# --------------------------------------------------------------------------- methods vs references


def test_registry_lists_the_four_methods():
    assert {"linear", "task_arithmetic", "ties", "slerp"} <= set(merge.available_methods())
    with pytest.raises(KeyError, match="unknown merge method"):
        merge.get_method("nope")


def test_linear_matches_torch(models, tmp_path):
    out = tmp_path / "linear"
    summary = merge_models([models["sft"], models["base"]], str(out), method="linear", weights=[0.5, 0.5])
    expected = ref_linear([read_state(models["sft"]), read_state(models["base"])], [0.5, 0.5])
    assert_states_close(read_state(str(out)), expected)
    assert summary.tensors == len(expected) and summary.shards == 1
    # Unequal weights are normalized: 3:1 is 0.75/0.25.
    out2 = tmp_path / "linear31"
    merge_models([models["sft"], models["base"]], str(out2), method="linear", weights=[3.0, 1.0])
    expected = ref_linear([read_state(models["sft"]), read_state(models["base"])], [0.75, 0.25])
    assert_states_close(read_state(str(out2)), expected)


def test_blocked_streaming_equals_whole_tensor_merge(models, tmp_path):
    """Elementwise methods stream big tensors in row blocks: any block size gives the same bytes."""
    import filecmp

    for method, base in (("linear", None), ("task_arithmetic", models["base"])):
        whole, blocked = tmp_path / f"{method}-whole", tmp_path / f"{method}-blocked"
        kwargs = dict(method=method, weights=[0.7, 0.4], base=base, max_shard_bytes=3_000_000)
        merge_models([models["sft"], models["sft2"]], str(whole), **kwargs)
        merge_models([models["sft"], models["sft2"]], str(blocked), block_bytes=3000, **kwargs)
        names = sorted(os.listdir(whole))
        assert filecmp.cmpfiles(whole, blocked, names, shallow=False)[0] == names


def test_streamed_shards_are_standard_safetensors(models, tmp_path):
    """The engine writes shard headers itself: safetensors' own loader and save_file agree."""
    from safetensors.torch import load_file

    out = tmp_path / "m"
    merge_models([models["sft"], models["base"]], str(out), dtype="bfloat16")
    loaded = load_file(str(out / "model.safetensors"))
    save_file(loaded, str(tmp_path / "resaved.safetensors"), metadata={"format": "pt"})
    with safe_open(str(out / "model.safetensors"), framework="pt") as fh:
        assert fh.metadata() == {"format": "pt"}
    assert os.path.getsize(out / "model.safetensors") == os.path.getsize(tmp_path / "resaved.safetensors")


def test_task_arithmetic_matches_torch(models, tmp_path):
    out = tmp_path / "ta"
    weights = [0.7, 0.4]
    merge_models([models["sft"], models["sft2"]], str(out), method="task_arithmetic", weights=weights, base=models["base"])
    expected = ref_task_arithmetic([read_state(models["sft"]), read_state(models["sft2"])], weights, read_state(models["base"]))
    assert_states_close(read_state(str(out)), expected)


def test_task_arithmetic_with_the_base_as_input_equals_linear(models, tmp_path):
    merge_models([models["sft"], models["base"]], str(tmp_path / "ta"), method="task_arithmetic", weights=[0.5, 0.5], base=models["base"])
    merge_models([models["sft"], models["base"]], str(tmp_path / "lin"), method="linear", weights=[0.5, 0.5])
    assert_states_close(read_state(str(tmp_path / "ta")), read_state(str(tmp_path / "lin")))


def test_ties_matches_torch(models, tmp_path):
    out = tmp_path / "ties"
    weights, density = [0.6, 0.4], 0.3
    merge_models(
        [models["sft"], models["sft2"]],
        str(out),
        method="ties",
        weights=weights,
        base=models["base"],
        params={"density": density, "normalize": True},
    )
    base = read_state(models["base"])
    expected = ref_ties([read_state(models["sft"]), read_state(models["sft2"])], weights, base, density)
    actual = read_state(str(out))
    assert_states_close(actual, expected)
    # Trimming really happened: about 1 - density of the entries kept the base value... at
    # least where both task vectors were trimmed away.
    w = "model.layers.0.mlp.up_proj.weight"
    unchanged = (actual[w] == base[w]).float().mean().item()
    assert 0.3 < unchanged < 0.7


@pytest.mark.parametrize("pair", [("sft", "base"), ("far", "base")])
def test_slerp_matches_torch(models, tmp_path, pair):
    a, b = models[pair[0]], models[pair[1]]
    out = tmp_path / "slerp"
    merge_models([a, b], str(out), method="slerp", params={"t": 0.3})
    assert_states_close(read_state(str(out)), ref_slerp(read_state(a), read_state(b), 0.3), atol=1e-5)


def test_slerp_needs_exactly_two_models(models, tmp_path):
    with pytest.raises(MergeError, match="exactly 2"):
        merge_models([models["sft"], models["sft2"], models["base"]], str(tmp_path / "x"), method="slerp")
    assert not (tmp_path / "x").exists()


def test_dtype_cast_to_bfloat16(models, tmp_path):
    out = tmp_path / "bf16"
    merge_models([models["sft"], models["base"]], str(out), dtype="bfloat16")
    state = read_state(str(out))
    assert all(t.dtype == torch.bfloat16 for t in state.values())
    expected = ref_linear([read_state(models["sft"]), read_state(models["base"])], [0.5, 0.5])
    for k in expected:
        assert torch.equal(state[k], expected[k].to(torch.bfloat16)), k
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


# --------------------------------------------------------------------------- the stage: shards, Ray, S3


def _stage_cfg(root, *overrides):
    return load_config(overrides=[f"run.root={root}", "run.progress=false", *overrides])


def test_stage_sharded_merge_on_ray_loads_and_matches_in_memory_merge(models, tmp_path, ray_local):
    from transformers import AutoModelForCausalLM

    root = tmp_path / "run"
    shutil.copytree(models["sft"], root / "train" / "model")
    cfg = _stage_cfg(root, f"model.base={models['base']}", "merge.max_shard_bytes=1000000")
    report = merge.run(cfg)

    model_dir = root / "merged" / "model"
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())
    shard_files = sorted(set(index["weight_map"].values()))
    assert len(shard_files) == report["shards"] > 2
    assert all((model_dir / f).exists() for f in shard_files)
    assert not (model_dir / "model.safetensors").exists()
    for f in shard_files:  # every shard respects the limit unless it is one oversized tensor
        with safe_open(str(model_dir / f), framework="pt") as fh:
            if len(list(fh.keys())) > 1:
                assert os.path.getsize(model_dir / f) <= 1_000_000 + 10_000
    assert report["rows_in"] == report["rows_out"] == len(index["weight_map"])
    assert report["rows_in"] == report["rows_out"] + report["rows_quarantined"] + report["rows_merged"]
    assert report["method"] == "linear" and report["weights"] == [0.5, 0.5]
    assert (root / "merged" / "_SUCCESS").exists()
    for f in ("config.json", "generation_config.json", "tokenizer.json", "chat_template.jinja"):
        assert (model_dir / f).exists(), f

    # In-memory reference: both full models loaded, averaged parameter by parameter.
    sft = AutoModelForCausalLM.from_pretrained(models["sft"], dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(models["base"], dtype=torch.float32)
    base_params = dict(base.named_parameters())
    with torch.no_grad():
        for name, p in sft.named_parameters():
            p.copy_(0.5 * p + 0.5 * base_params[name])
    merged = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    ids = torch.tensor([[1, 5, 9, 42, 17, 3, 88, 2]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, sft(ids).logits, atol=1e-5)

    # A rerun with the same config and inputs is a no-op.
    again = merge.run(cfg)
    assert again["skipped"] is True


def test_stage_merge_s3_in_and_out(models, s3_bucket, tmp_path):
    storage.put_dir(models["sft"], f"{s3_bucket}/models/sft")
    cfg = _stage_cfg(
        f"{s3_bucket}/run",
        f"merge.models=[{s3_bucket}/models/sft,base]",
        f"model.base={models['base']}",
        f"model.cache_dir={tmp_path / 'cache'}",
        "merge.max_shard_bytes=4000000",
        "merge.use_ray=false",
    )
    report = merge.run(cfg)
    assert report["model_uri"] == f"{s3_bucket}/run/merged/model"
    local = storage.get_dir(report["model_uri"], str(tmp_path / "dl"))
    expected = ref_linear([read_state(models["sft"]), read_state(models["base"])], [0.5, 0.5])
    assert_states_close(read_state(local), expected)
    assert storage.exists(f"{s3_bucket}/run/merged/_SUCCESS")


def test_tied_and_untied_models_merge(models, tmp_path):
    """A tied checkpoint stores no lm_head: its input embedding serves as the head."""
    tied = tmp_path / "tied"
    shutil.copytree(models["sft2"], tied)
    state = read_state(str(tied))
    del state["lm_head.weight"]
    os.remove(tied / "model.safetensors")
    save_file(state, str(tied / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((tied / "config.json").read_text())
    config["tie_word_embeddings"] = True
    (tied / "config.json").write_text(json.dumps(config))

    out = tmp_path / "out"
    merge_models([models["sft"], str(tied)], str(out), weights=[0.5, 0.5])
    merged = read_state(str(out))
    sft = read_state(models["sft"])
    assert torch.allclose(merged["lm_head.weight"], 0.5 * sft["lm_head.weight"] + 0.5 * state["model.embed_tokens.weight"], atol=ATOL)

    # Tied first: the output is tied too; the other model's lm_head has no slot (warned, ignored).
    out2 = tmp_path / "out2"
    merge_models([str(tied), models["sft"]], str(out2), weights=[0.5, 0.5])
    merged2 = read_state(str(out2))
    assert "lm_head.weight" not in merged2
    assert json.loads((out2 / "config.json").read_text())["tie_word_embeddings"] is True


# --------------------------------------------------------------------------- validation before writing


def _edited_copy(src: str, dst, edit_state=None, edit_config=None) -> str:
    shutil.copytree(src, dst)
    if edit_state:
        state = read_state(str(dst))
        edit_state(state)
        os.remove(os.path.join(dst, "model.safetensors"))
        save_file(state, os.path.join(dst, "model.safetensors"), metadata={"format": "pt"})
    if edit_config:
        config = json.loads(open(os.path.join(dst, "config.json")).read())
        edit_config(config)
        open(os.path.join(dst, "config.json"), "w").write(json.dumps(config))
    return str(dst)


def test_architecture_mismatch_fails_before_writing(models, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    other = tmp_path / "other"
    config = LlamaConfig.from_pretrained(models["base"])
    config.hidden_size = 128
    config.head_dim = 32
    LlamaForCausalLM(config).save_pretrained(str(other))

    root = tmp_path / "run"
    shutil.copytree(models["sft"], root / "train" / "model")
    cfg = _stage_cfg(root, f"model.base={other}")
    with pytest.raises(MergeError, match="hidden_size"):
        merge.run(cfg)
    assert not (root / "merged").exists()


def test_shape_mismatch_names_the_tensor_and_writes_nothing(models, tmp_path):
    name = "model.layers.2.mlp.up_proj.weight"

    def shrink(state):
        state[name] = state[name][:-1].clone()

    bad = _edited_copy(models["sft2"], tmp_path / "bad", edit_state=shrink)
    root = tmp_path / "run"
    shutil.copytree(models["sft"], root / "train" / "model")
    cfg = _stage_cfg(root, f"merge.models=[sft,{bad}]")
    with pytest.raises(MergeError, match=name.replace(".", r"\.")):
        merge.run(cfg)
    assert not (root / "merged").exists()


def test_vocab_mismatch_names_the_embedding(models, tmp_path):
    def grow(state):
        for k in ("model.embed_tokens.weight", "lm_head.weight"):
            state[k] = torch.cat([state[k], state[k][:3]])

    bad = _edited_copy(models["sft2"], tmp_path / "bad", edit_state=grow, edit_config=lambda c: c.update(vocab_size=c["vocab_size"] + 3))
    out = tmp_path / "out"
    with pytest.raises(MergeError, match=r"(lm_head|embed_tokens).*vocab sizes differ"):
        merge_models([models["sft"], bad], str(out))
    assert not out.exists()


def test_missing_tensor_names_the_tensor(models, tmp_path):
    name = "model.layers.1.self_attn.k_proj.weight"
    bad = _edited_copy(models["sft2"], tmp_path / "bad", edit_state=lambda s: s.pop(name))
    out = tmp_path / "out"
    with pytest.raises(MergeError, match=f"{name.replace('.', '[.]')}.*missing"):
        merge_models([models["sft"], bad], str(out))
    assert not out.exists()


def test_missing_trained_model_is_a_clear_error(models, tmp_path):
    cfg = _stage_cfg(tmp_path / "run", f"model.base={models['base']}")
    with pytest.raises(MergeError, match="run the train stage first"):
        merge.run(cfg)
    assert not (tmp_path / "run" / "merged").exists()


def test_merge_output_is_deterministic_and_path_independent(models, tmp_path):
    """Identical inputs give byte-identical model folders wherever they are written, so a
    publish of the result lands on the same content version."""
    import filecmp

    a, b = tmp_path / "a" / "model", tmp_path / "elsewhere" / "b"
    for out in (a, b):
        merge_models([models["sft"], models["base"]], str(out), max_shard_bytes=3_000_000)
    names = sorted(os.listdir(a))
    assert names == sorted(os.listdir(b)) and "model.safetensors.index.json" in names
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert mismatch == [] and errors == []


# --------------------------------------------------------------------------- LoRA folding


def _randomize_lora(peft_model, seed: int) -> None:
    """peft initialises B to zero (a no-op adapter): give every LoRA matrix non-zero values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def make_adapter(base_dir: str, out_dir, seed: int = 0, **lora_kwargs):
    """A peft LoRA adapter on ``base_dir`` with random non-zero A and B; returns (adapter dir,
    the folded state dict from peft's own merge_and_unload)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(**lora_kwargs))
    _randomize_lora(peft_model, seed)
    with torch.no_grad():  # modules_to_save copies: change them too, so replacing is tested
        for name, p in peft_model.named_parameters():
            if "modules_to_save" in name:
                p.add_(0.01)
    peft_model.save_pretrained(str(out_dir))
    merged = peft_model.merge_and_unload()
    return str(out_dir), {k: v.detach().clone() for k, v in merged.state_dict().items()}


def _stored_only(expected: dict, model_dir: str) -> dict:
    """state_dict() lists tied weights twice; compare the tensors the checkpoint stores."""
    stored = read_state(model_dir)
    return {k: v for k, v in expected.items() if k in stored}


@pytest.mark.parametrize("block_bytes", [None, 5000])
def test_lora_fold_matches_peft_merge_and_unload(models, tmp_path, block_bytes):
    """Folded whole, and folded in row blocks of ~5 kB (every big tensor in many blocks)."""
    from humanllm_ray.merge import fold_lora

    adapter, expected = make_adapter(
        models["base"],
        tmp_path / "adapter",
        seed=1,
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj", "down_proj", "embed_tokens"],
        modules_to_save=["lm_head"],
        rank_pattern={"down_proj": 2},
        alpha_pattern={"v_proj": 3},
    )
    adapter_keys = list(safe_open(os.path.join(adapter, "adapter_model.safetensors"), framework="pt").keys())
    assert any(k.startswith("base_model.model.") and k.endswith(".lora_A.weight") for k in adapter_keys)
    assert not os.path.exists(os.path.join(adapter, "config.json"))

    out = tmp_path / "folded"
    kwargs = {"block_bytes": block_bytes} if block_bytes else {}
    summary = fold_lora(adapter, str(out), max_shard_bytes=2_000_000, **kwargs)  # base: adapter_config's base_model_name_or_path
    assert summary.shards > 1
    folded = read_state(str(out))
    assert_states_close(folded, _stored_only(expected, models["base"]))
    base = read_state(models["base"])
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.3.mlp.down_proj.weight", "model.embed_tokens.weight", "lm_head.weight"):
        assert not torch.equal(folded[name], base[name]), name  # the adapter really changed them
    assert torch.equal(folded["model.layers.0.self_attn.k_proj.weight"], base["model.layers.0.self_attn.k_proj.weight"])
    for f in ("config.json", "tokenizer.json"):
        assert (out / f).exists(), f


def test_lora_fold_rslora_and_bf16_output(models, tmp_path):
    from humanllm_ray.merge import fold_lora

    adapter, expected = make_adapter(
        models["base"], tmp_path / "adapter", seed=2, r=8, lora_alpha=16, use_rslora=True, target_modules=["o_proj", "up_proj"]
    )
    fold_lora(adapter, str(tmp_path / "f32"))
    assert_states_close(read_state(str(tmp_path / "f32")), _stored_only(expected, models["base"]))
    fold_lora(adapter, str(tmp_path / "bf16"), dtype="bfloat16")
    state, f32 = read_state(str(tmp_path / "bf16")), read_state(str(tmp_path / "f32"))
    # Folded in float32, cast once at the end (peft's fp32 result can differ by an ulp,
    # which may round to the neighbouring bf16 value, so compare with our fp32 fold).
    for k, v in f32.items():
        assert state[k].dtype == torch.bfloat16 and torch.equal(state[k], v.to(torch.bfloat16)), k


def test_lora_fold_fan_in_fan_out_gpt2(tmp_path):
    """GPT-2 stores Conv1D weights as [in, out]: peft's fan_in_fan_out=True."""
    from transformers import GPT2Config, GPT2LMHeadModel

    base_dir = tmp_path / "gpt2"
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_embd=64, n_layer=2, n_head=2, vocab_size=300, n_positions=64)).save_pretrained(str(base_dir))
    adapter, expected = make_adapter(
        str(base_dir), tmp_path / "adapter", seed=3, r=4, lora_alpha=4, target_modules=["c_attn", "c_proj"], fan_in_fan_out=True
    )
    assert json.loads(open(os.path.join(adapter, "adapter_config.json")).read())["fan_in_fan_out"] is True
    from humanllm_ray.merge import fold_lora

    for block_bytes in (None, 1000):  # whole tensors, and row blocks (the transposed update sliced by columns of A)
        out = tmp_path / f"folded-{block_bytes}"
        fold_lora(adapter, str(out), **({"block_bytes": block_bytes} if block_bytes else {}))
        assert_states_close(read_state(str(out)), _stored_only(expected, str(base_dir)))


def test_stage_merges_a_lora_adapter_with_its_base_on_ray(models, tmp_path, ray_local):
    """merge.models=[adapter, base]: folded first, then the linear 0.5/0.5 merge. The adapter
    names a hub model that is not here, so the stage falls back to model.base."""
    adapter, folded = make_adapter(models["base"], tmp_path / "adapter", seed=4, r=4, lora_alpha=8, target_modules=["q_proj", "gate_proj"])
    cfg_path = os.path.join(adapter, "adapter_config.json")
    adapter_cfg = json.loads(open(cfg_path).read())
    adapter_cfg["base_model_name_or_path"] = "some-org/not-on-this-machine"
    open(cfg_path, "w").write(json.dumps(adapter_cfg))

    root = tmp_path / "run"
    cfg = _stage_cfg(root, f"model.base={models['base']}", f"merge.models=[{adapter},base]", "merge.max_shard_bytes=1000000")
    report = merge.run(cfg)
    assert report["shards"] > 2
    base = read_state(models["base"])
    expected = ref_linear([_stored_only(folded, models["base"]), base], [0.5, 0.5])
    assert_states_close(read_state(str(root / "merged" / "model")), expected)
    assert merge.run(cfg)["skipped"] is True


def test_lora_adapter_that_does_not_fit_fails_before_writing(models, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    other = tmp_path / "other"
    config = LlamaConfig.from_pretrained(models["base"])
    config.hidden_size, config.head_dim = 128, 32
    LlamaForCausalLM(config).save_pretrained(str(other))
    adapter, _ = make_adapter(str(other), tmp_path / "adapter", seed=5, r=2, lora_alpha=2, target_modules=["q_proj"])
    out = tmp_path / "out"
    # The adapter was trained on a 128-wide model; fold it into the 256-wide base instead.
    cfg_path = os.path.join(adapter, "adapter_config.json")
    adapter_cfg = json.loads(open(cfg_path).read())
    adapter_cfg["base_model_name_or_path"] = models["base"]
    open(cfg_path, "w").write(json.dumps(adapter_cfg))
    with pytest.raises(MergeError, match=r"q_proj\.weight.*\[128, 128\] update.*\[256, 256\]"):
        merge_models([adapter, models["base"]], str(out))
    assert not out.exists()

    dora = tmp_path / "dora"
    shutil.copytree(adapter, dora)
    dora_cfg = json.loads((dora / "adapter_config.json").read_text())
    dora_cfg["use_dora"] = True
    (dora / "adapter_config.json").write_text(json.dumps(dora_cfg))
    with pytest.raises(MergeError, match="DoRA"):
        merge_models([str(dora)], str(out))
    assert not out.exists()
