"""Streaming, sharded merge: plan on the driver, compute each output shard independently.

Memory is bounded by design: a shard worker holds one tensor per input model (plus the
base tensor for task-vector methods) while computing, and the output shard it is
filling — never a whole model. Shards are independent, so they run as parallel Ray
tasks when there are several (each task opens the inputs itself and writes its own
shard); the driver writes the index and the non-weight files after all shards landed.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import storage
from .lora import AdapterReader, BaseFallback, LoraSpec
from .registry import MergeMethod, get_method
from .sources import INDEX_FILE, SINGLE_FILE, MergeError, ModelSource, check_compatible, natural_key, open_source
from .stio import ST_DTYPES, TORCH_TO_ST, SafetensorsFile, Scratch, build_header, numel, row_blocks, tensor_bytes

log = logging.getLogger("humanllm")

# safetensors dtype names <-> torch dtype names
SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}
DTYPE_BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}
INT_BYTES = {"I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
# Elementwise methods (linear, task arithmetic) read, merge and write big tensors in row
# blocks of about this many float32 bytes: a worker's memory does not grow with the model.
BLOCK_BYTES = 16 * 1024 * 1024

# Files of an input folder that describe that folder (weights, publishing metadata): not
# copied to the merged model, whose own weights and index are written fresh.
NOT_COPIED = {INDEX_FILE, "manifest.json", "README.md", "pytorch_model.bin.index.json"}


@dataclass(frozen=True)
class InputSpec:
    """What a shard worker needs to read one input: a URI it can resolve on its own node."""

    uri: str
    local_dir: str
    files: Dict[str, str]  # tensor name (output layout) -> file within the folder
    stored: Dict[str, str]  # tensor name (output layout) -> name stored in that file
    lora: Optional[LoraSpec] = None  # a LoRA adapter input: uri/files are its base's, folded on read

    def folder(self, cache_dir: str) -> str:
        # The driver's local copy may not exist on another node: resolve again there.
        if os.path.isdir(self.local_dir):
            return self.local_dir
        from ..model import resolve_model_dir

        return resolve_model_dir(self.uri, cache_dir)


@dataclass(frozen=True)
class ShardPlan:
    filename: str
    tensors: List[str]
    nbytes: int


@dataclass
class MergePlan:
    method: str
    weights: List[float]
    params: Dict[str, Any]
    inputs: List[InputSpec]
    base: Optional[InputSpec]
    shards: List[ShardPlan]
    out_dtypes: Dict[str, Optional[str]]  # tensor -> torch dtype name for float tensors, None = copy as is
    first_model_dir: str
    dtype: Optional[str]
    cache_dir: str = "~/.cache/humanllm_ray"
    shapes: Dict[str, Tuple[int, ...]] = field(default_factory=dict)  # output tensor shapes
    in_dtypes: Dict[str, str] = field(default_factory=dict)  # safetensors dtype of the first input

    @property
    def num_tensors(self) -> int:
        return sum(len(s.tensors) for s in self.shards)

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.shards)


@dataclass
class MergeSummary:
    model_uri: str
    method: str
    weights: List[float]
    models: List[str]
    base: Optional[str]
    shards: int
    tensors: int
    bytes: int
    params: Dict[str, Any] = field(default_factory=dict)


def _spec(source: ModelSource, names: Sequence[str]) -> InputSpec:
    stored = {n: source.stored_name(n) for n in names}
    return InputSpec(
        uri=source.weights_uri,
        local_dir=source.local_dir,
        files={n: source.tensors[stored[n]].file for n in names},
        stored=stored,
        lora=source.lora,
    )


def plan_merge(
    models: Sequence[str],
    *,
    method: str = "linear",
    weights: Optional[Sequence[float]] = None,
    base: Optional[str] = None,
    params: Optional[Dict[str, Any]] = None,
    max_shard_bytes: int = 2_000_000_000,
    dtype: Optional[str] = None,
    cache_dir: str = "~/.cache/humanllm_ray",
    lora_base: BaseFallback = None,
) -> MergePlan:
    """Validate the inputs and assign output tensors to shards. Reads headers only; writes nothing.

    An input that is a peft LoRA adapter folder is folded into its base while read
    (:mod:`humanllm_ray.merge.lora`); ``lora_base`` is the base (a URI or a callable giving
    one) for adapters whose recorded ``base_model_name_or_path`` does not open here.
    """
    merge_method: MergeMethod = get_method(method)
    models = list(models)
    if len(models) < 1:
        raise MergeError("merge needs at least one input model")
    if merge_method.num_models is not None and len(models) != merge_method.num_models:
        raise MergeError(f"merge method {method!r} takes exactly {merge_method.num_models} models, got {len(models)}")
    weights = [float(w) for w in (weights if weights is not None else [1.0 / len(models)] * len(models))]
    if len(weights) != len(models):
        raise MergeError(f"merge.weights has {len(weights)} entries for {len(models)} models")
    if dtype is not None and dtype not in DTYPE_BYTES:
        raise MergeError(f"merge.dtype {dtype!r} is not one of {sorted(DTYPE_BYTES)}")
    if merge_method.needs_base and not base:
        raise MergeError(f"merge method {method!r} needs a base model (merge.base_model or model.base)")
    if max_shard_bytes <= 0:
        raise MergeError("merge.max_shard_bytes must be positive")

    sources = [open_source(uri, cache_dir, lora_base) for uri in models]
    base_source = None
    if merge_method.needs_base:
        base_source = open_source(base, cache_dir, lora_base)  # type: ignore[arg-type]
        names = check_compatible(sources + [base_source])
    else:
        names = check_compatible(sources)
    names = sorted(names, key=natural_key)

    layout = sources[0]
    out_dtypes: Dict[str, Optional[str]] = {}
    sizes: Dict[str, int] = {}
    for name in names:
        info = layout.tensors[name]
        numel = 1
        for d in info.shape:
            numel *= d
        if info.is_float:
            out_dtypes[name] = dtype or SAFETENSORS_DTYPES[info.dtype]
            sizes[name] = numel * DTYPE_BYTES[out_dtypes[name]]
        else:
            out_dtypes[name] = None  # integer buffers (e.g. position ids) are copied, not averaged
            sizes[name] = numel * INT_BYTES.get(info.dtype, 8)

    # Greedy, in layer order: a shard closes when the next tensor would overflow it. A
    # tensor larger than the limit gets a shard of its own (it cannot be split).
    groups: List[List[str]] = [[]]
    group_bytes = [0]
    for name in names:
        if groups[-1] and group_bytes[-1] + sizes[name] > max_shard_bytes:
            groups.append([])
            group_bytes.append(0)
        groups[-1].append(name)
        group_bytes[-1] += sizes[name]
    total = len(groups)
    shards = [
        ShardPlan(
            filename=SINGLE_FILE if total == 1 else f"model-{i + 1:05d}-of-{total:05d}.safetensors",
            tensors=group,
            nbytes=nbytes,
        )
        for i, (group, nbytes) in enumerate(zip(groups, group_bytes))
    ]
    plan_params = {key: (params or {}).get(key) for key in merge_method.params if key in (params or {})}
    return MergePlan(
        method=method,
        weights=weights,
        params=plan_params,
        inputs=[_spec(s, names) for s in sources],
        base=_spec(base_source, names) if base_source is not None else None,
        shards=shards,
        out_dtypes=out_dtypes,
        first_model_dir=layout.local_dir,
        dtype=dtype,
        cache_dir=cache_dir,
        shapes={name: tuple(layout.tensors[name].shape) for name in names},
        in_dtypes={name: layout.tensors[name].dtype for name in names},
    )


class _TensorReader:
    """One input's files, opened lazily; reads one tensor (or a block of its rows) at a time
    with plain file reads, folding a LoRA adapter in when the input is one."""

    def __init__(self, spec: InputSpec, cache_dir: str):
        self.spec = spec
        self.folder = spec.folder(cache_dir)
        self._files: Dict[str, SafetensorsFile] = {}
        self._adapter = AdapterReader(spec.lora, cache_dir) if spec.lora is not None else None

    def _file(self, name: str) -> SafetensorsFile:
        fname = self.spec.files[name]
        if fname not in self._files:
            self._files[fname] = SafetensorsFile(os.path.join(self.folder, fname))
        return self._files[fname]

    def get(self, name: str, rows: Optional[Tuple[int, int]] = None, scratch: Optional[Scratch] = None):
        """Tensor ``name`` (or a row block of it) in float32. With ``scratch``, the result
        lives in this reader's reusable buffers (valid until the next call)."""
        import torch

        stored = self.spec.stored[name]
        raw_buf = f32_buf = None
        if scratch is not None:
            rows_n = (rows[1] - rows[0]) if rows is not None else None
            shape = self._shape(name)
            n = numel(shape) if rows_n is None else rows_n * numel(shape[1:])
            f32_buf = scratch.get((id(self), "f32"), n, torch.float32)
            raw_buf = scratch.get((id(self), "raw"), n * 4, torch.uint8)
        if self._adapter is not None and self._adapter.replaces(stored):
            tensor = self._adapter.read_replacement(stored, rows, buffer=raw_buf)
        else:
            # float32 on disk: read straight into the float32 buffer.
            direct = f32_buf is not None and self._file(name).dtype(stored) == "F32"
            tensor = self._file(name).read(stored, rows, buffer=f32_buf if direct else raw_buf)
        if f32_buf is not None:
            if tensor.data_ptr() != f32_buf.data_ptr():
                f32_buf = f32_buf.view(tensor.shape)
                f32_buf.copy_(tensor)
                tensor = f32_buf
        else:
            tensor = tensor.to(torch.float32)
        if self._adapter is not None:
            tensor = self._adapter.apply(stored, tensor, rows)  # in place on float32
        return tensor

    def _shape(self, name: str) -> Tuple[int, ...]:
        stored = self.spec.stored[name]
        if self._adapter is not None and self._adapter.replaces(stored):
            return self._adapter.shape(stored)
        return self._file(name).shape(stored)

    def raw(self, name: str) -> bytes:
        """The stored bytes of a tensor that is copied, not merged (integer buffers)."""
        stored = self.spec.stored[name]
        if self._adapter is not None and self._adapter.replaces(stored):
            return self._adapter.read_replacement_raw(stored)
        return self._file(name).read_raw(stored)

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()
        if self._adapter is not None:
            self._adapter.close()


def _out_st_dtype(plan: MergePlan, name: str) -> str:
    out_dtype = plan.out_dtypes[name]
    return TORCH_TO_ST[out_dtype] if out_dtype is not None else plan.in_dtypes[name]


def _merged_blocks(
    plan: MergePlan, method: MergeMethod, name: str, readers, base_reader, block_bytes: int, scratch: Optional[Scratch] = None
):
    """The merged tensor ``name`` as a sequence of consecutive leading-dimension row blocks
    (one block for methods that need the whole tensor), each in the output dtype.

    With ``scratch``, elementwise methods run on reused buffers: each yielded block is
    only valid until the next one is requested (the writer consumes it at once)."""
    import torch

    out_dtype = plan.out_dtypes[name]
    shape = plan.shapes[name]
    if out_dtype is None:
        yield readers[0].raw(name)  # integer buffers (e.g. position ids) are copied, not averaged
        return
    # Elementwise methods go block by block: memory is a few blocks, whatever the tensor.
    blocked = method.elementwise and len(shape) >= 1
    blocks = row_blocks(shape, 4, block_bytes) if blocked else [None]
    if not blocked:
        scratch = None  # whole-tensor methods keep their inputs' memory to themselves
    torch_out = getattr(torch, out_dtype)
    for rows in blocks:
        # Compute in float32 whatever the storage dtype: bf16 sums lose precision fast.
        tensors = [r.get(name, rows, scratch) for r in readers]
        base = base_reader.get(name, rows, scratch) if base_reader is not None else None
        in_shape = tuple(tensors[0].shape)
        merged = method(tensors, plan.weights, base, plan.params)
        if tuple(merged.shape) != in_shape:
            raise MergeError(f"merge method {plan.method!r} changed the shape of {name!r}")
        del tensors, base
        if scratch is not None:
            out = scratch.get("out", merged.numel(), torch_out).view(merged.shape)
            out.copy_(merged)
        else:
            out = merged.to(torch_out).contiguous()
        del merged
        yield out
        del out


def _open_readers(plan: MergePlan):
    readers = [_TensorReader(spec, plan.cache_dir) for spec in plan.inputs]
    base_reader = _TensorReader(plan.base, plan.cache_dir) if plan.base is not None else None
    return readers, base_reader


def compute_shard(plan: MergePlan, shard: ShardPlan, block_bytes: int = BLOCK_BYTES) -> Dict[str, Any]:
    """Merge the tensors of one shard in memory; returns {name: tensor} in the output dtype.
    (The engine streams shards to disk with :func:`stream_shard`; this is for inspection.)"""
    import torch

    method = get_method(plan.method)
    readers, base_reader = _open_readers(plan)
    out: Dict[str, Any] = {}
    try:
        for name in shard.tensors:
            parts = list(_merged_blocks(plan, method, name, readers, base_reader, block_bytes))  # no scratch: fresh tensors
            if isinstance(parts[0], bytes):
                st = plan.in_dtypes[name]
                flat = torch.frombuffer(bytearray(parts[0]), dtype=getattr(torch, ST_DTYPES[st][0]))
                out[name] = flat.reshape(plan.shapes[name]).clone()
            else:
                out[name] = torch.cat(parts) if len(parts) > 1 else parts[0]
    finally:
        for r in readers + ([base_reader] if base_reader else []):
            r.close()
    return out


def stream_shard(plan: MergePlan, shard: ShardPlan, path: str, block_bytes: int = BLOCK_BYTES) -> int:
    """Write one output shard to the local file ``path``: the header (known from the plan),
    then each tensor's blocks as they are computed. Returns the file size."""
    method = get_method(plan.method)
    header, sizes = build_header(
        ((name, _out_st_dtype(plan, name), plan.shapes[name]) for name in shard.tensors), metadata={"format": "pt"}
    )
    readers, base_reader = _open_readers(plan)
    scratch = Scratch()
    try:
        with open(path, "wb") as sink:
            sink.write(header)
            for name in shard.tensors:
                written = 0
                for block in _merged_blocks(plan, method, name, readers, base_reader, block_bytes, scratch):
                    data = block if isinstance(block, bytes) else tensor_bytes(block)
                    sink.write(data)
                    written += len(data)
                    del block, data
                if written != sizes[name]:
                    raise MergeError(f"{name!r}: wrote {written} bytes, the header promised {sizes[name]}")
    finally:
        scratch.clear()
        for r in readers + ([base_reader] if base_reader else []):
            r.close()
    return os.path.getsize(path)


def write_shard(
    plan: MergePlan, shard: ShardPlan, model_uri: str, s3_cfg: Any = None, block_bytes: int = BLOCK_BYTES
) -> Dict[str, Any]:
    """Compute one shard and store it at ``{model_uri}/{shard.filename}`` (runs in a Ray task)."""
    storage.configure(s3_cfg)
    dest = storage.join(model_uri, shard.filename)
    if storage.is_remote(model_uri):
        tmp_dir = tempfile.mkdtemp(prefix="merge-shard-")
        tmp = os.path.join(tmp_dir, shard.filename)
    else:
        storage.makedirs(model_uri)
        tmp = f"{storage.normalize(dest)}.tmp-{os.getpid()}"
    try:
        nbytes = stream_shard(plan, shard, tmp, block_bytes)
        if storage.is_remote(model_uri):
            fs, path = storage.get_fs(dest)
            fs.put_file(tmp, path)
        else:
            os.replace(tmp, storage.normalize(dest))  # a reader never sees half a shard
    finally:
        if storage.is_remote(model_uri):
            shutil.rmtree(os.path.dirname(tmp), ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)
    log.info("merge: wrote %s (%d tensors, %.1f MB)", shard.filename, len(shard.tensors), nbytes / 1e6)
    return {"filename": shard.filename, "tensors": len(shard.tensors), "bytes": nbytes}


def _run_shards(
    plan: MergePlan, model_uri: str, s3_cfg: Any, use_ray: bool, num_cpus: float, block_bytes: int = BLOCK_BYTES
) -> List[Dict[str, Any]]:
    if not use_ray or len(plan.shards) == 1:
        return [write_shard(plan, shard, model_uri, s3_cfg, block_bytes) for shard in plan.shards]
    import ray

    task = ray.remote(num_cpus=num_cpus, max_retries=2)(write_shard)
    # The plan is shared by every task: put it in the object store once.
    plan_ref = ray.put(plan)
    refs = [task.remote(plan_ref, shard, model_uri, s3_cfg, block_bytes) for shard in plan.shards]
    return ray.get(refs)


def _copy_model_files(plan: MergePlan, model_uri: str) -> int:
    """Config, generation config and tokenizer from the first model; dtype updated if cast."""
    copied = 0
    for root, _dirs, files in os.walk(plan.first_model_dir):
        for fname in sorted(files):
            src = os.path.join(root, fname)
            rel = os.path.relpath(src, plan.first_model_dir).replace(os.sep, "/")
            if fname in NOT_COPIED or fname.endswith((".safetensors", ".bin", ".tmp")) or fname.startswith("."):
                continue
            with open(src, "rb") as fh:
                data = fh.read()
            if rel == "config.json" and plan.dtype:
                config = json.loads(data)
                config["dtype"] = plan.dtype
                config.pop("torch_dtype", None)
                data = (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()
            storage.write_bytes(storage.join(model_uri, rel), data)
            copied += 1
    return copied


def execute_plan(
    plan: MergePlan,
    model_uri: str,
    *,
    s3_cfg: Any = None,
    use_ray: bool = True,
    num_cpus_per_shard: float = 1.0,
    models: Optional[Sequence[str]] = None,
    block_bytes: int = BLOCK_BYTES,
) -> MergeSummary:
    """Write the merged model folder: shards, then the index, then config/tokenizer files."""
    model_uri = storage.normalize(model_uri)
    results = _run_shards(plan, model_uri, s3_cfg, use_ray, num_cpus_per_shard, block_bytes)
    if len(plan.shards) > 1:
        index = {
            "metadata": {"total_size": plan.nbytes},
            "weight_map": {name: shard.filename for shard in plan.shards for name in shard.tensors},
        }
        storage.write_json(storage.join(model_uri, INDEX_FILE), index)
    # No provenance file in the model folder: the folder's bytes must depend on the weights
    # only, so identical merges publish as the same content version. Provenance lives in the
    # stage report.
    _copy_model_files(plan, model_uri)
    return MergeSummary(
        model_uri=model_uri,
        method=plan.method,
        weights=plan.weights,
        models=list(models) if models is not None else [s.uri for s in plan.inputs],
        base=plan.base.uri if plan.base else None,
        shards=len(results),
        tensors=sum(r["tensors"] for r in results),
        bytes=sum(r["bytes"] for r in results),
        params=plan.params,
    )


def merge_models(
    models: Sequence[str],
    output_uri: str,
    *,
    method: str = "linear",
    weights: Optional[Sequence[float]] = None,
    base: Optional[str] = None,
    params: Optional[Dict[str, Any]] = None,
    max_shard_bytes: int = 2_000_000_000,
    dtype: Optional[str] = None,
    use_ray: bool = False,
    num_cpus_per_shard: float = 1.0,
    s3_cfg: Any = None,
    cache_dir: str = "~/.cache/humanllm_ray",
    lora_base: BaseFallback = None,
    block_bytes: int = BLOCK_BYTES,
) -> MergeSummary:
    """Merge Hugging Face model folders (local or s3://) into ``output_uri`` (a model folder).

    Library entry point without the stage bookkeeping; :func:`humanllm_ray.merge.run` is the
    pipeline stage around it. Validation happens first: on a mismatch nothing is written.
    """
    plan = plan_merge(
        models,
        method=method,
        weights=weights,
        base=base,
        params=params,
        max_shard_bytes=max_shard_bytes,
        dtype=dtype,
        cache_dir=cache_dir,
        lora_base=lora_base,
    )
    return execute_plan(
        plan,
        output_uri,
        s3_cfg=s3_cfg,
        use_ray=use_ray,
        num_cpus_per_shard=num_cpus_per_shard,
        models=models,
        block_bytes=block_bytes,
    )
