"""Input models for a merge: what each holds, read from headers only, and the checks that
must pass before any output is written.

Only ``config.json`` and the safetensors headers are read here (names, shapes, dtypes),
never tensor data, so planning a merge of two 8B models costs a few kilobytes of I/O.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

from .. import storage
from ..model import resolve_model_dir

if TYPE_CHECKING:
    from .lora import BaseFallback, LoraSpec

log = logging.getLogger("humanllm")

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"

# Config keys that must agree for two checkpoints to be the same architecture. vocab_size
# is checked through the embedding tensors' shapes instead, so the error names the tensor.
ARCHITECTURE_KEYS = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "head_dim",
)

# Where the input-embedding matrix lives, by family; a tied checkpoint stores no lm_head.
EMBEDDING_NAMES = ("model.embed_tokens.weight", "transformer.wte.weight", "gpt_neox.embed_in.weight", "embed_tokens.weight")
LM_HEAD_NAMES = ("lm_head.weight", "embed_out.weight")


class MergeError(ValueError):
    """The inputs cannot be merged (or the request is invalid); raised before writing."""


@dataclass(frozen=True)
class TensorInfo:
    file: str  # file name within the model folder
    shape: Tuple[int, ...]
    dtype: str  # safetensors dtype name: F32, BF16, F16, I64, ...

    @property
    def is_float(self) -> bool:
        return self.dtype in ("F64", "F32", "F16", "BF16")


@dataclass
class ModelSource:
    """One input model: where it is, its config, and the tensors its safetensors hold."""

    uri: str  # as given (a local path or s3://)
    local_dir: str  # a local folder holding it (s3 inputs are cached copies)
    config: Dict
    tensors: Dict[str, TensorInfo]
    aliases: Dict[str, str] = field(default_factory=dict)  # missing name -> stored name (tied lm_head)
    # A LoRA adapter input: config/tensors/local_dir are its base's, folded on read.
    lora: Optional["LoraSpec"] = None

    @property
    def weights_uri(self) -> str:
        """Where the stored tensors live (the base of an adapter input)."""
        return self.lora.base_uri if self.lora is not None else self.uri

    @property
    def tied(self) -> bool:
        return bool(self.config.get("tie_word_embeddings", False))

    def stored_name(self, name: str) -> str:
        return self.aliases.get(name, name)

    def info(self, name: str) -> Optional[TensorInfo]:
        return self.tensors.get(self.stored_name(name))


def open_source(uri: str, cache_dir: str = "~/.cache/humanllm_ray", lora_base: "BaseFallback" = None) -> ModelSource:
    """Read a model folder's config and safetensors headers (s3 folders are fetched to the cache).

    A peft LoRA adapter folder opens as its base model with the adapter attached (folded
    tensor by tensor when read); ``lora_base`` is the base for adapters whose recorded
    ``base_model_name_or_path`` cannot be opened here.
    """
    from safetensors import safe_open

    from . import lora

    if lora.is_adapter_dir(uri):
        adapter_dir = lora.resolve_adapter_dir(uri, cache_dir)
        adapter_cfg = lora.read_adapter_config(adapter_dir)
        base_uri = lora.resolve_base(uri, adapter_cfg, lora_base)
        if lora.is_adapter_dir(base_uri):
            raise MergeError(f"LoRA adapter {uri}: its base {base_uri} is itself an adapter (fold that one first)")
        base = open_source(base_uri, cache_dir)
        spec = lora.plan_adapter(uri, adapter_dir, base.uri, base.tensors, adapter_cfg)
        log.info("merge: %s is a LoRA adapter (%d tensors folded, %d replaced) on %s", uri, len(spec.deltas), len(spec.replace), base.uri)
        return ModelSource(uri=uri, local_dir=base.local_dir, config=base.config, tensors=base.tensors, lora=spec)

    local_dir = resolve_model_dir(uri, cache_dir)
    with open(os.path.join(local_dir, "config.json"), encoding="utf-8") as fh:
        config = json.load(fh)
    files = weight_files(local_dir, uri)
    tensors: Dict[str, TensorInfo] = {}
    for fname in files:
        with safe_open(os.path.join(local_dir, fname), framework="pt") as handle:
            for name in handle.keys():
                if name in tensors:
                    raise MergeError(f"tensor {name!r} is stored twice in {uri} ({tensors[name].file}, {fname})")
                piece = handle.get_slice(name)
                tensors[name] = TensorInfo(fname, tuple(int(d) for d in piece.get_shape()), str(piece.get_dtype()))
    return ModelSource(uri=uri, local_dir=local_dir, config=config, tensors=tensors)


def weight_files(local_dir: str, uri: str) -> List[str]:
    """The safetensors files of a model folder: from its index, or the single file."""
    index = os.path.join(local_dir, INDEX_FILE)
    if os.path.exists(index):
        with open(index, encoding="utf-8") as fh:
            weight_map = json.load(fh)["weight_map"]
        files = sorted(set(weight_map.values()))
        missing = [f for f in files if not os.path.exists(os.path.join(local_dir, f))]
        if missing:
            raise MergeError(f"{uri}: shards listed in {INDEX_FILE} are missing: {missing}")
        return files
    if os.path.exists(os.path.join(local_dir, SINGLE_FILE)):
        return [SINGLE_FILE]
    found = sorted(f for f in os.listdir(local_dir) if f.endswith(".safetensors"))
    if found:
        return found
    if any(f.endswith(".bin") for f in os.listdir(local_dir)):
        raise MergeError(f"{uri} holds only PyTorch .bin weights; save it with safe_serialization=True")
    raise MergeError(f"{uri} holds no safetensors weights")


def _embedding_name(source: ModelSource) -> Optional[str]:
    for name in EMBEDDING_NAMES:
        if name in source.tensors:
            return name
    return None


def check_compatible(sources: Sequence[ModelSource]) -> List[str]:
    """Validate that every source can be merged tensor by tensor with the first.

    Returns the output tensor names (the first model's layout). Raises MergeError naming
    the config key or tensor at the first disagreement. A tied model (no stored lm_head)
    serves its input embedding as lm_head, so tied and untied checkpoints still merge.
    """
    layout = sources[0]
    for other in sources[1:]:
        for key in ARCHITECTURE_KEYS:
            a, b = layout.config.get(key), other.config.get(key)
            if a != b:
                raise MergeError(
                    f"architecture mismatch: config {key}={a!r} in {layout.uri} but {b!r} in {other.uri}"
                )

    names = list(layout.tensors)
    for other in sources[1:]:
        for head in LM_HEAD_NAMES:
            if head in layout.tensors and head not in other.tensors and other.tied:
                embedding = _embedding_name(other)
                if embedding is not None:
                    other.aliases[head] = embedding
        for name in names:
            mine = layout.tensors[name]
            theirs = other.info(name)
            if theirs is None:
                raise MergeError(f"tensor {name!r} is missing from {other.uri} (present in {layout.uri})")
            if theirs.shape != mine.shape:
                hint = ""
                if name in EMBEDDING_NAMES or name in LM_HEAD_NAMES:
                    hint = f" (vocab sizes differ: {mine.shape[0]} vs {theirs.shape[0]})"
                raise MergeError(
                    f"tensor {name!r}: shape {list(mine.shape)} in {layout.uri} "
                    f"but {list(theirs.shape)} in {other.uri}{hint}"
                )
            if mine.is_float != theirs.is_float:
                raise MergeError(f"tensor {name!r}: dtype {mine.dtype} in {layout.uri} but {theirs.dtype} in {other.uri}")
        extra = sorted(set(other.tensors) - set(names) - set(other.aliases.values()))
        for name in list(extra):
            # The output is tied like the first model: an untied lm_head elsewhere has no slot.
            if name in LM_HEAD_NAMES and layout.tied:
                log.warning("merge: %s stores %s but the output is tied (as %s); ignored", other.uri, name, layout.uri)
                extra.remove(name)
        if extra:
            raise MergeError(
                f"tensor {extra[0]!r} is in {other.uri} but not in {layout.uri}"
                + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
            )
    return names


_NUMBER = re.compile(r"(\d+)")


def natural_key(name: str) -> Tuple:
    """'layers.10' after 'layers.9', so shards hold whole, consecutive layers."""
    return tuple(int(p) if p.isdigit() else p for p in _NUMBER.split(name))


def source_fingerprint(uri: str) -> List[Tuple[str, int, str]]:
    """(file, bytes, version) for every file of a model folder: cheap change detection for
    the stage fingerprint (mtime locally, ETag on S3), without reading weights."""
    fs, path = storage.get_fs(uri)
    out = []
    for f in storage.ls_files(uri):
        info = fs.info(storage.get_fs(f)[1])
        stamp = info.get("ETag") or info.get("mtime") or info.get("LastModified") or ""
        rel = f[len(storage.normalize(uri)) :].lstrip("/")
        out.append((rel, int(info.get("size") or 0), str(stamp)))
    return out
