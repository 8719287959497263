"""Streaming safetensors I/O: read a tensor (or a block of its rows) with plain file reads,
and write a shard whose header is known up front, one block at a time.

Why not ``safe_open().get_tensor`` / ``save_file``: the former maps the whole file, so
every page a merge reads stays in the process's resident set until the handle closes
(a shard worker would grow to the size of all its inputs); the latter needs the whole
output shard in memory. Here a worker holds one block per input at a time: the header
(names, dtypes, shapes, offsets) of an output shard follows from the plan alone, so it is
written first and the data streams after it. The files are standard safetensors
(8-byte little-endian header length, JSON header padded to 8 bytes, then the data).
"""

from __future__ import annotations

import json
import os
import struct
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

# safetensors dtype name -> (torch dtype name, bytes per element)
ST_DTYPES: Dict[str, Tuple[str, int]] = {
    "F64": ("float64", 8),
    "F32": ("float32", 4),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "I64": ("int64", 8),
    "I32": ("int32", 4),
    "I16": ("int16", 2),
    "I8": ("int8", 1),
    "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
    "F8_E4M3": ("float8_e4m3fn", 1),
    "F8_E5M2": ("float8_e5m2", 1),
}
TORCH_TO_ST = {torch_name: st for st, (torch_name, _) in ST_DTYPES.items()}
MAX_HEADER = 100 * 1024 * 1024


def itemsize(st_dtype: str) -> int:
    if st_dtype not in ST_DTYPES:
        raise ValueError(f"unsupported safetensors dtype {st_dtype}")
    return ST_DTYPES[st_dtype][1]


def numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def row_elems(shape: Sequence[int]) -> int:
    """Elements per leading-dimension row (1 for 0-d and 1-d tensors: a row is an element)."""
    return numel(shape[1:]) if len(shape) > 1 else 1


def num_rows(shape: Sequence[int]) -> int:
    return int(shape[0]) if len(shape) >= 1 else 1


def row_blocks(shape: Sequence[int], bytes_per_elem: int, block_bytes: int) -> List[Tuple[int, int]]:
    """[(start, stop)) leading-dimension row ranges of at most ~block_bytes each (>= 1 row)."""
    rows = num_rows(shape)
    per_row = max(1, row_elems(shape) * bytes_per_elem)
    step = max(1, block_bytes // per_row)
    return [(r, min(rows, r + step)) for r in range(0, rows, step)] or [(0, 0)]


class SafetensorsFile:
    """A safetensors file read by offsets: header parsed once, data read with pread."""

    def __init__(self, path: str):
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        try:
            (length,) = struct.unpack("<Q", self._pread(8, 0))
            if length > MAX_HEADER:
                raise ValueError(f"{path}: safetensors header of {length} bytes is implausible")
            header = json.loads(self._pread(length, 8))
        except Exception:
            os.close(self._fd)
            raise
        self.metadata = header.pop("__metadata__", None) or {}
        self.data_start = 8 + length
        self.entries: Dict[str, Tuple[str, Tuple[int, ...], int, int]] = {
            name: (e["dtype"], tuple(int(d) for d in e["shape"]), int(e["data_offsets"][0]), int(e["data_offsets"][1]))
            for name, e in header.items()
        }

    def _pread(self, n: int, offset: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = os.pread(self._fd, n - len(out), offset + len(out))
            if not chunk:
                raise EOFError(f"{self.path}: truncated (wanted {n} bytes at {offset})")
            out += chunk
        return bytes(out)

    def _readinto(self, view: memoryview, offset: int) -> None:
        done = 0
        while done < len(view):
            got = os.preadv(self._fd, [view[done:]], offset + done)
            if got <= 0:
                raise EOFError(f"{self.path}: truncated at byte {offset + done}")
            done += got

    def keys(self) -> List[str]:
        return list(self.entries)

    def shape(self, name: str) -> Tuple[int, ...]:
        return self.entries[name][1]

    def dtype(self, name: str) -> str:
        return self.entries[name][0]

    def read(self, name: str, rows: Optional[Tuple[int, int]] = None, buffer=None):
        """The tensor ``name`` (or rows [start, stop) of its leading dimension) as a torch
        tensor: a new one, or a view of ``buffer`` (a contiguous tensor of at least that many
        bytes, reused by the caller so that a stream of blocks allocates nothing)."""
        import torch

        st_dtype, shape, begin, end = self.entries[name]
        size = itemsize(st_dtype)
        if rows is None:
            start, stop, out_shape = 0, num_rows(shape), shape
        else:
            start, stop = rows
            out_shape = ((stop - start),) + tuple(shape[1:]) if len(shape) >= 1 else shape
        per_row = row_elems(shape) * size
        nbytes = (stop - start) * per_row if len(shape) >= 1 else end - begin
        offset = self.data_start + begin + start * per_row
        if offset + nbytes > self.data_start + end:
            raise ValueError(f"{self.path}: rows {rows} out of range for {name} {list(shape)}")
        if buffer is not None and buffer.numel() * buffer.element_size() >= nbytes:
            buf = buffer.reshape(-1).view(torch.uint8)[:nbytes]
        else:
            buf = torch.empty(nbytes, dtype=torch.uint8)
        if nbytes:
            self._readinto(memoryview(buf.numpy()).cast("B"), offset)
        return buf.view(getattr(torch, ST_DTYPES[st_dtype][0])).reshape(out_shape)

    def read_raw(self, name: str) -> bytes:
        _, _, begin, end = self.entries[name]
        return self._pread(end - begin, self.data_start + begin)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass


def build_header(entries: Iterable[Tuple[str, str, Sequence[int]]], metadata: Optional[Dict[str, str]] = None) -> Tuple[bytes, Dict[str, int]]:
    """Header bytes (length prefix included) for tensors stored in the given order, and
    each tensor's byte size. ``entries``: (name, safetensors dtype, shape)."""
    header: Dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    sizes: Dict[str, int] = {}
    offset = 0
    for name, st_dtype, shape in entries:
        nbytes = numel(shape) * itemsize(st_dtype)
        header[name] = {"dtype": st_dtype, "shape": [int(d) for d in shape], "data_offsets": [offset, offset + nbytes]}
        sizes[name] = nbytes
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned, as safetensors writes it
    return struct.pack("<Q", len(raw)) + raw, sizes


class Scratch:
    """Reusable flat buffers, one per key, grown on demand: blocks of the same size reuse
    the same memory (no allocation, no page faults) from the second block on."""

    def __init__(self):
        self._buffers: Dict[object, object] = {}

    def get(self, key, numel_: int, dtype):
        import torch

        buf = self._buffers.get(key)
        if buf is None or buf.dtype != dtype or buf.numel() < numel_:
            buf = torch.empty(max(numel_, 1), dtype=dtype)
            self._buffers[key] = buf
        return buf[:numel_]

    def clear(self) -> None:
        self._buffers.clear()


def tensor_bytes(tensor) -> memoryview:
    """A tensor's bytes without a copy (little-endian, C order)."""
    import torch

    flat = tensor.contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy()).cast("B")
