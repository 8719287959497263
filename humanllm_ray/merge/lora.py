"""LoRA folding: a peft adapter folder as a merge input, folded into its base on the fly.

An entry of ``merge.models`` that is a peft LoRA adapter folder (``adapter_config.json`` +
``adapter_model.safetensors``) is read as the model ``W + scale * B @ A`` of its base,
tensor by tensor while the output shards are computed: no folded copy is written and no
whole model is loaded. The base is the adapter's ``base_model_name_or_path`` when that
is a model folder here (or a URI), else the fallback the caller gives (the merge stage
passes ``model.base`` through :func:`humanllm_ray.model.ensure_base_model`).

What is folded (peft's own ``merge_and_unload`` arithmetic, in float32):
- ``<module>.lora_A.weight`` [r, in] / ``lora_B.weight`` [out, r] of a Linear:
  ``W += scale * B @ A`` (transposed when ``fan_in_fan_out``, GPT-2 Conv1D layout);
  ``lora_B.bias`` (``lora_bias=True``): ``bias += scale * lora_B.bias``;
- ``<module>.lora_embedding_A`` [r, num] / ``lora_embedding_B`` [dim, r] of an Embedding:
  ``W += scale * (B @ A).T``;
- scale = lora_alpha / r (lora_alpha / sqrt(r) with ``use_rslora``), per module through
  ``rank_pattern`` / ``alpha_pattern``;
- full tensors the adapter stores (``modules_to_save``, ``bias="lora_only"|"all"``, the
  embedding copy peft saves as ``<module>.base_layer.weight``) replace the base tensor.
Anything else (DoRA magnitudes, trainable tokens, conv LoRA, LoRA on raw parameters) is
refused with a MergeError before anything is written.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple, Union

from .. import storage

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."

# A base for adapters whose own base_model_name_or_path cannot be opened here: a URI, or a
# callable returning one (so the stage builds/fetches model.base only when it is needed).
BaseFallback = Union[None, str, Callable[[], str]]


def _error(msg: str) -> Exception:
    from .sources import MergeError

    return MergeError(msg)


def is_adapter_dir(uri: str) -> bool:
    """A peft adapter folder (adapter_config.json and no config.json of a full model)."""
    return storage.exists(storage.join(uri, ADAPTER_CONFIG)) and not storage.exists(storage.join(uri, "config.json"))


def resolve_adapter_dir(uri: str, cache_dir: str = "~/.cache/humanllm_ray") -> str:
    """A local folder holding the adapter (s3:// adapters are fetched to the cache once)."""
    if not storage.is_remote(uri):
        path = storage.normalize(uri)
        if not os.path.exists(os.path.join(path, ADAPTER_CONFIG)):
            raise _error(f"not a peft adapter folder (no {ADAPTER_CONFIG}): {uri}")
        return path
    from ..model import resolve_model_dir

    return resolve_model_dir(uri, cache_dir)  # remote: cached by URI + listing, no config.json needed


@dataclass(frozen=True)
class LoraDelta:
    """How to fold one base tensor: W (+)= scale * op(B @ A)."""

    kind: str  # "linear" | "embedding" | "bias"
    a: Optional[str]  # adapter tensor names (None for "bias")
    b: str
    scale: float
    transpose: bool  # (B @ A).T: fan_in_fan_out linears and embeddings


@dataclass(frozen=True)
class LoraSpec:
    """What a shard worker needs to fold one adapter into the base tensors it reads."""

    uri: str
    local_dir: str
    base_uri: str
    deltas: Dict[str, LoraDelta]  # base tensor name (as stored in the base) -> delta
    replace: Dict[str, str] = field(default_factory=dict)  # base tensor name -> adapter tensor stored whole
    weights_file: str = ADAPTER_WEIGHTS

    def folder(self, cache_dir: str) -> str:
        if os.path.isdir(self.local_dir):
            return self.local_dir
        return resolve_adapter_dir(self.uri, cache_dir)


def read_adapter_config(local_dir: str) -> Dict[str, Any]:
    with open(os.path.join(local_dir, ADAPTER_CONFIG), encoding="utf-8") as fh:
        config = json.load(fh)
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise _error(f"{local_dir}: peft_type {peft_type} is not LoRA; only LoRA adapters can be folded")
    if config.get("use_dora"):
        raise _error(f"{local_dir}: DoRA adapters (use_dora=true) are not supported by the streaming fold")
    if config.get("target_parameters"):
        raise _error(f"{local_dir}: LoRA on raw parameters (target_parameters) is not supported")
    if config.get("layer_replication"):
        raise _error(f"{local_dir}: layer_replication changes the model's layout; not supported")
    return config


def resolve_base(adapter_uri: str, config: Dict[str, Any], fallback: BaseFallback) -> str:
    """The base model an adapter folds into: its recorded base when that opens here, else the fallback."""
    recorded = config.get("base_model_name_or_path")
    if recorded:
        candidates = [recorded]
        if not storage.is_remote(recorded) and not os.path.isabs(os.path.expanduser(recorded)):
            # A relative path is relative to the adapter folder (then to the working directory).
            if not storage.is_remote(adapter_uri):
                candidates.insert(0, os.path.join(storage.normalize(adapter_uri), recorded))
        for cand in candidates:
            try:
                if storage.exists(storage.join(cand, "config.json")):
                    return storage.normalize(cand)
            except Exception:  # a hub name such as "meta-llama/Llama-3.1-8B" is no URI we can open
                continue
    if fallback is not None:
        return storage.normalize(fallback() if callable(fallback) else fallback)
    raise _error(
        f"LoRA adapter {adapter_uri}: its base_model_name_or_path {recorded!r} is not a model folder here "
        "and no fallback base was given (set model.base)"
    )


def _scale(config: Dict[str, Any], module: str) -> Tuple[float, int]:
    from peft.utils.other import get_pattern_key  # peft's own regex rule for rank/alpha patterns

    rank_pattern = config.get("rank_pattern") or {}
    alpha_pattern = config.get("alpha_pattern") or {}
    r = int(rank_pattern.get(get_pattern_key(rank_pattern.keys(), module), config["r"]))
    alpha = float(alpha_pattern.get(get_pattern_key(alpha_pattern.keys(), module), config["lora_alpha"]))
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    return scale, r


def _base_name(stored: str) -> str:
    """Adapter tensor name -> base tensor name for tensors stored whole."""
    name = stored[len(PEFT_PREFIX) :] if stored.startswith(PEFT_PREFIX) else stored
    name = name.replace(".base_layer.", ".").replace(".modules_to_save.", ".")
    return re.sub(r"\.modules_to_save\.[^.]+\.", ".", name)


_LORA_KEY = re.compile(r"^(?P<module>.+)\.(?P<part>lora_A\.weight|lora_B\.weight|lora_B\.bias|lora_embedding_A|lora_embedding_B)$")


def plan_adapter(
    adapter_uri: str,
    local_dir: str,
    base_uri: str,
    base_tensors: Dict[str, Any],
    config: Dict[str, Any],
) -> LoraSpec:
    """Match every adapter tensor to a base tensor and check shapes (headers only)."""
    from safetensors import safe_open

    weights = os.path.join(local_dir, ADAPTER_WEIGHTS)
    if not os.path.exists(weights):
        if os.path.exists(os.path.join(local_dir, "adapter_model.bin")):
            raise _error(f"{adapter_uri} holds only adapter_model.bin; save the adapter with safe_serialization=True")
        raise _error(f"{adapter_uri}: no {ADAPTER_WEIGHTS}")
    shapes: Dict[str, Tuple[int, ...]] = {}
    with safe_open(weights, framework="pt") as fh:
        for key in fh.keys():
            shapes[key] = tuple(int(d) for d in fh.get_slice(key).get_shape())

    pieces: Dict[str, Dict[str, str]] = {}
    replace: Dict[str, str] = {}
    for key in shapes:
        m = _LORA_KEY.match(key)
        if m:
            module = m.group("module")
            module = module[len(PEFT_PREFIX) :] if module.startswith(PEFT_PREFIX) else module
            pieces.setdefault(module, {})[m.group("part")] = key
            continue
        if any(tag in key for tag in ("lora_", "magnitude_vector", "trainable_tokens", "token_adapter")):
            raise _error(f"{adapter_uri}: adapter tensor {key!r} is of a kind the streaming fold does not support")
        target = _base_name(key)
        if target not in base_tensors:
            raise _error(f"{adapter_uri}: adapter tensor {key!r} has no counterpart {target!r} in the base {base_uri}")
        if shapes[key] != tuple(base_tensors[target].shape):
            raise _error(
                f"{adapter_uri}: adapter tensor {key!r} has shape {list(shapes[key])} "
                f"but {target!r} in the base {base_uri} has {list(base_tensors[target].shape)}"
            )
        replace[target] = key

    fan_in_fan_out = bool(config.get("fan_in_fan_out", False))
    deltas: Dict[str, LoraDelta] = {}
    for module, parts in sorted(pieces.items()):
        scale, r = _scale(config, module)
        if "lora_A.weight" in parts or "lora_B.weight" in parts:
            a, b = parts.get("lora_A.weight"), parts.get("lora_B.weight")
            kind, transpose = "linear", fan_in_fan_out
        else:
            a, b = parts.get("lora_embedding_A"), parts.get("lora_embedding_B")
            kind, transpose = "embedding", True
        if a is None or b is None:
            raise _error(f"{adapter_uri}: module {module!r} has only one of its LoRA A/B matrices")
        a_shape, b_shape = shapes[a], shapes[b]
        if len(a_shape) != 2 or len(b_shape) != 2:
            raise _error(f"{adapter_uri}: {module!r} is not a 2-D LoRA (conv LoRA is not supported)")
        if a_shape[0] != b_shape[1]:
            raise _error(f"{adapter_uri}: {module!r}: lora_A {list(a_shape)} and lora_B {list(b_shape)} disagree on the rank")
        if a_shape[0] != r:
            raise _error(f"{adapter_uri}: {module!r} has rank {a_shape[0]} but adapter_config says r={r}")
        target = f"{module}.weight"
        if target not in base_tensors:
            raise _error(f"{adapter_uri}: LoRA target {target!r} is not in the base {base_uri}")
        delta_shape = (b_shape[0], a_shape[1])
        if transpose:
            delta_shape = delta_shape[::-1]
        if delta_shape != tuple(base_tensors[target].shape):
            raise _error(
                f"{adapter_uri}: LoRA on {target!r} gives a {list(delta_shape)} update "
                f"but the base {base_uri} holds {list(base_tensors[target].shape)}"
                + (" (check fan_in_fan_out)" if kind == "linear" else "")
            )
        deltas[target] = LoraDelta(kind=kind, a=a, b=b, scale=scale, transpose=transpose)
        if "lora_B.bias" in parts:
            bias = f"{module}.bias"
            if bias not in base_tensors:
                raise _error(f"{adapter_uri}: lora_B.bias for {module!r} but the base has no {bias!r}")
            deltas[bias] = LoraDelta(kind="bias", a=None, b=parts["lora_B.bias"], scale=scale, transpose=False)
    if not deltas and not replace:
        raise _error(f"{adapter_uri}: the adapter holds no LoRA tensors")
    return LoraSpec(uri=adapter_uri, local_dir=local_dir, base_uri=base_uri, deltas=deltas, replace=replace)


class AdapterReader:
    """Folds one adapter into base tensors as they are read (a tensor, or a block of its
    leading-dimension rows, at a time)."""

    def __init__(self, spec: LoraSpec, cache_dir: str):
        from .stio import SafetensorsFile

        self.spec = spec
        self._file = SafetensorsFile(os.path.join(spec.folder(cache_dir), spec.weights_file))
        self._ab: Dict[str, Tuple[Any, Any]] = {}  # the last module's A and B (float32), reused across its row blocks

    def replaces(self, stored_name: str) -> bool:
        return stored_name in self.spec.replace

    def read_replacement(self, stored_name: str, rows: Optional[Tuple[int, int]] = None, buffer=None):
        return self._file.read(self.spec.replace[stored_name], rows, buffer=buffer)

    def shape(self, stored_name: str) -> Tuple[int, ...]:
        return self._file.shape(self.spec.replace[stored_name])

    def read_replacement_raw(self, stored_name: str) -> bytes:
        return self._file.read_raw(self.spec.replace[stored_name])

    def _matrices(self, delta: LoraDelta):
        import torch

        key = f"{delta.a}|{delta.b}"
        if key not in self._ab:
            self._ab.clear()
            a = self._file.read(delta.a).to(torch.float32) if delta.a is not None else None
            self._ab[key] = (a, self._file.read(delta.b).to(torch.float32))
        return self._ab[key]

    def apply(self, stored_name: str, tensor, rows: Optional[Tuple[int, int]] = None):
        """The folded tensor (or rows [start, stop) of it) for base tensor ``stored_name``.
        ``tensor`` is float32 and owned by the caller: the update is added in place."""
        delta = self.spec.deltas.get(stored_name)
        if delta is None:
            return tensor
        out = tensor
        a, b = self._matrices(delta)
        if delta.kind == "bias":
            return out.add_(b if rows is None else b[rows[0] : rows[1]], alpha=delta.scale)
        if delta.transpose:
            # W is (B @ A).T: its rows are A's columns.
            update = (b @ (a if rows is None else a[:, rows[0] : rows[1]])).T
        else:
            update = (b if rows is None else b[rows[0] : rows[1]]) @ a
        return out.add_(update, alpha=delta.scale)

    def close(self) -> None:
        self._file.close()
        self._ab.clear()


def fold_lora(
    adapter_uri: str,
    output_uri: str,
    *,
    base: Optional[str] = None,
    dtype: Optional[str] = None,
    max_shard_bytes: int = 2_000_000_000,
    cache_dir: str = "~/.cache/humanllm_ray",
    use_ray: bool = False,
    s3_cfg: Any = None,
    **engine_kwargs: Any,
):
    """Write the folded model (base + adapter) to ``output_uri``, shard by shard.

    The streaming engine with this one input and weight 1: each output tensor is the base
    tensor with its LoRA update added, exactly (x * 1 / 1 is exact in float32).
    """
    from .engine import merge_models

    return merge_models(
        [adapter_uri],
        output_uri,
        method="linear",
        weights=[1.0],
        dtype=dtype,
        max_shard_bytes=max_shard_bytes,
        cache_dir=cache_dir,
        use_ray=use_ray,
        s3_cfg=s3_cfg,
        lora_base=base,
        **engine_kwargs,
    )

