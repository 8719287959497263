"""Base model resolution: the embedded tiny model, a local folder, or an s3:// URI.

``model.base=tiny`` builds a small Llama from :class:`TinyModelConfig` with a byte-level
BPE tokenizer trained (with ``tokenizers``) on the demo corpus, saves both in Hugging
Face layout and caches the folder by content hash, so every process — driver, Ray
actors, Ray Train workers — resolves the same weights without any hub download.
Any other value is a Hugging Face model folder (local or ``s3://``, downloaded once to
the cache).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, List, Optional

from . import storage
from .config import DEMO_CORPUS_DIR, HumanLLMConfig, TinyModelConfig, config_hash

log = logging.getLogger("humanllm")

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
PAD_TOKEN, IM_START, IM_END = SPECIAL_TOKENS

# ChatML. The {% generation %} markers let transformers return an assistant-token mask
# (apply_chat_template(..., return_assistant_tokens_mask=True)) for loss masking.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# A little fixed text so the tokenizer always learns the JSON and prompt vocabulary the
# pipeline itself produces, whatever corpus it is trained on.
_SEED_TEXT = """
{"persona": "", "scenario": "", "question": "", "answer": "", "grounded": 5, "coherent": 5, "leakage": false}
You are simulating a specific person. Write the next post in their voice. Persona: Profile: Scenario:
Question: Answer: Which item did this user buy? Candidates: A) B) C) D) The user wrote:
system user assistant true false null 0 1 2 3 4 5 6 7 8 9 , . ! ? ; : ' " ( ) [ ] { } - _ / \\
"""


def _corpus_texts(corpus_dir: Path) -> Iterator[str]:
    yield _SEED_TEXT
    for path in sorted(corpus_dir.rglob("*")):
        if not path.is_file() or path.suffix in (".md", ".py"):
            continue
        data = path.read_bytes()
        if path.suffix == ".zst":
            import zstandard

            try:
                data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
            except zstandard.ZstdError:
                continue
        text = data.decode("utf-8", errors="replace")
        # tokenizers trains on an iterator of strings; feed lines so memory stays small.
        for line in text.splitlines():
            if line.strip():
                yield line


def _corpus_digest(corpus_dir: Path) -> str:
    h = hashlib.sha256(_SEED_TEXT.encode())
    for path in sorted(corpus_dir.rglob("*")):
        if path.is_file() and path.suffix not in (".md", ".py"):
            h.update(str(path.relative_to(corpus_dir)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def train_tokenizer(texts: Iterator[str], vocab_size: int):
    """Byte-level BPE trained on ``texts``, wrapped as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        bos_token=None,
        unk_token=None,
        model_max_length=4096,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_tiny_model(out_dir: str, tiny: TinyModelConfig, corpus_dir: Path = DEMO_CORPUS_DIR, seed: int = 0) -> str:
    """Train the tokenizer, build a seeded random Llama, save both to out_dir (HF layout)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = train_tokenizer(_corpus_texts(corpus_dir), tiny.vocab_size)
    head_dim = tiny.hidden_size // tiny.num_attention_heads
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=tiny.hidden_size,
        intermediate_size=tiny.intermediate_size,
        num_hidden_layers=tiny.num_hidden_layers,
        num_attention_heads=tiny.num_attention_heads,
        num_key_value_heads=tiny.num_key_value_heads,
        head_dim=head_dim,
        max_position_embeddings=tiny.max_position_embeddings,
        tie_word_embeddings=tiny.tie_word_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.convert_tokens_to_ids(IM_START),
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, do_sample=False
    )
    os.makedirs(out_dir, exist_ok=True)
    # is_main_process=True: inside a Ray Train worker of rank > 0 transformers would
    # otherwise skip writing the weights, and an empty folder would enter the cache.
    model.save_pretrained(out_dir, safe_serialization=True, is_main_process=True)
    tokenizer.save_pretrained(out_dir)
    n_params = sum(p.numel() for p in model.parameters())
    with open(os.path.join(out_dir, "humanllm_tiny.json"), "w") as fh:
        json.dump({"params": n_params, "tiny": tiny.__dict__, "seed": seed}, fh, indent=2)
    log.info("built tiny model (%.2f M params, vocab %d) at %s", n_params / 1e6, len(tokenizer), out_dir)
    return out_dir


def _is_complete_model_dir(path: str) -> bool:
    if not os.path.exists(os.path.join(path, "config.json")):
        return False
    names = os.listdir(path)
    return any(n.endswith((".safetensors", ".bin")) or n.endswith(".index.json") for n in names)


def _atomic_build(final_dir: str, build) -> str:
    """Build into a temp folder beside final_dir and rename, so concurrent processes
    (Ray actors and train workers resolving the same base) never see half a model.
    A cached folder without weights (from an interrupted or faulty build) is rebuilt."""
    if _is_complete_model_dir(final_dir):
        return final_dir
    if os.path.exists(final_dir):
        log.warning("model cache %s is incomplete (no weights); rebuilding it", final_dir)
        shutil.rmtree(final_dir, ignore_errors=True)
    parent = os.path.dirname(final_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".build-", dir=parent)
    try:
        build(tmp)
        if not _is_complete_model_dir(tmp):
            raise RuntimeError(f"model build into {tmp} produced no config.json or weights")
        try:
            os.rename(tmp, final_dir)
        except OSError:
            # Another process won the race; theirs is identical (same content hash).
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return final_dir


def tiny_model_dir(cfg: HumanLLMConfig) -> str:
    cache = os.path.expanduser(cfg.model.cache_dir)
    key = f"tiny-{config_hash(cfg.model.tiny)}-{_corpus_digest(DEMO_CORPUS_DIR)}"
    return os.path.join(cache, "models", key)


def ensure_base_model(cfg: HumanLLMConfig) -> str:
    """Local folder of the base model named by cfg.model.base (building or downloading it once)."""
    base = cfg.model.base
    if base == "tiny":
        final = tiny_model_dir(cfg)
        return _atomic_build(final, lambda d: build_tiny_model(d, cfg.model.tiny, seed=cfg.run.seed))
    return resolve_model_dir(base, cfg.model.cache_dir)


def resolve_model_dir(uri: str, cache_dir: str = "~/.cache/humanllm_ray") -> str:
    """A local folder for a model URI: local paths as they are, s3:// downloaded to the cache."""
    if not storage.is_remote(uri):
        path = storage.normalize(uri)
        if not os.path.exists(os.path.join(path, "config.json")):
            raise FileNotFoundError(f"not a Hugging Face model folder (no config.json): {uri}")
        return path
    # Key the cache by the remote content too (sizes + ETags), so a model rewritten at the
    # same URI (a re-run of train or merge) is fetched again instead of served stale.
    fs, path = storage.get_fs(uri)
    listing = sorted(
        (p, str(info.get("size")), str(info.get("ETag") or info.get("LastModified") or ""))
        for p, info in fs.find(path, detail=True).items()
    )
    key = hashlib.sha256((uri + json.dumps(listing)).encode()).hexdigest()[:16]
    final = os.path.join(os.path.expanduser(cache_dir), "remote", key)
    return _atomic_build(final, lambda d: storage.get_dir(uri, d))


def load_tokenizer(model_dir: str):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


def load_model(model_dir: str, dtype: str = "float32"):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype(dtype))


def chat_prompt(tokenizer, messages: List[dict], add_generation_prompt: bool = True) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def model_name(cfg: HumanLLMConfig, model_dir: Optional[str] = None) -> str:
    return "humanllm-tiny" if cfg.model.base == "tiny" else os.path.basename(cfg.model.base.rstrip("/"))
