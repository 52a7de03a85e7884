"""Read a `.safetensors` file through a mapping, converting each tensor as it is read, then letting go of it.

Why not `safetensors.safe_open`: its tensors are views of a mapping that stays open until the file is
closed, so every page read counts in the process's RSS until the end (a 2 GB SD1.5 file raised the peak by
2 GB over a pread reader), and a pread reader copies every byte once more (1.4 of 5 s for that file).
Here each tensor is converted (or copied) straight from the mapping into memory whose pages were faulted
in by one call (`prefault.py`), and the mapping's pages are released from the process right after
(`MADV_DONTNEED`; they stay in the page cache): the speed of a mapping, the peak of pread.
The format: 8 bytes little-endian header length, a JSON header {name: {dtype, shape, data_offsets},
"__metadata__": {str: str}}, then the data (https://github.com/huggingface/safetensors).
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from collections.abc import Callable
from pathlib import Path

import torch

from . import prefault
from .errors import WeightsFormatError

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": getattr(torch, "float8_e4m3fn", None),
    "F8_E5M2": getattr(torch, "float8_e5m2", None),
}
MAX_HEADER = 100 * 1024 * 1024  # the format's own limit


def _header(path: Path, data: mmap.mmap) -> tuple[dict, int]:
    if len(data) < 8:
        raise WeightsFormatError(f"{path.name}: not a safetensors file (shorter than its 8-byte header size)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER or 8 + n > len(data):
        raise WeightsFormatError(f"{path.name}: not a safetensors file (header size {n} is impossible)")
    try:
        header = json.loads(bytes(data[8 : 8 + n]))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsFormatError(f"{path.name}: not a safetensors file (unreadable header: {exc})") from exc
    if not isinstance(header, dict):
        raise WeightsFormatError(f"{path.name}: not a safetensors file (the header is not a JSON object)")
    return header, 8 + n


def _view(path: Path, data: mmap.mmap, start: int, key: str, info: dict) -> torch.Tensor:
    """A tensor over the mapping's bytes of `key` (no copy), checked against the file's size."""
    try:
        dtype = DTYPES[info["dtype"]]
        shape = [int(s) for s in info["shape"]]
        lo, hi = (start + int(o) for o in info["data_offsets"])
    except (KeyError, TypeError, ValueError) as exc:
        raise WeightsFormatError(
            f"{path.name}: tensor {key!r} has a malformed header entry {info!r}"
        ) from exc
    if dtype is None:
        raise WeightsFormatError(
            f"{path.name}: tensor {key!r} has dtype {info['dtype']} this torch cannot hold"
        )
    count = 1
    for s in shape:
        count *= s
    size = count * torch.empty((), dtype=dtype).element_size()
    if hi - lo != size or hi > len(data) or lo < start:
        raise WeightsFormatError(f"{path.name}: tensor {key!r} does not fit the file (truncated or corrupt)")
    if size == 0:
        return torch.empty(shape, dtype=dtype)
    raw = torch.frombuffer(data, dtype=torch.uint8, count=size, offset=lo)
    if lo % raw.new_empty((), dtype=dtype).element_size():  # misaligned for its dtype: copy the bytes
        raw = raw.clone()
    return raw.view(dtype).view(shape)


def read_safetensors(
    path: str | os.PathLike, dtype: torch.dtype | None = None, keep: Callable[[str], bool] | None = None
) -> tuple[dict, dict]:
    """(tensors, metadata). With `dtype`, floating tensors come back in it, except those whose key `keep`
    accepts (they stay in the file's dtype). Every tensor owns its memory."""
    path = Path(path)
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            raise WeightsFormatError(f"{path.name}: the file is empty")
        # private (copy-on-write) so torch accepts the buffer as writable; nothing ever writes to it
        data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
    try:
        header, start = _header(path, data)
        metadata = header.pop("__metadata__", None) or {}
        tensors = {}
        for key, info in sorted(header.items(), key=_offset):
            view = _view(path, data, start, key, info)
            convert = dtype is not None and view.is_floating_point() and view.dtype != dtype
            target = dtype if convert and not (keep is not None and keep(key)) else view.dtype
            # one pass over the mapped bytes, into pages mapped in one call (prefault.py)
            tensors[key] = prefault.empty(view.shape, target).copy_(view)
            del view
            _release(data, start + int(info["data_offsets"][0]), start + int(info["data_offsets"][1]))
        return tensors, {str(k): str(v) for k, v in metadata.items()}
    finally:
        try:
            data.close()
        except BufferError:  # a view still alive (an error above): the mapping closes when it is freed
            pass


def _offset(item: tuple[str, object]) -> int:
    """Sort key: read the tensors in file order (sequential pages)."""
    info = item[1]
    try:
        return int(info["data_offsets"][0])  # type: ignore[index]
    except (KeyError, TypeError, ValueError, IndexError):
        return 0


def _release(data: mmap.mmap, lo: int, hi: int) -> None:
    """Drop the pages of [lo, hi) from this process (they stay in the page cache for the next reader)."""
    page = mmap.PAGESIZE
    lo = lo // page * page
    if hi > lo and hasattr(data, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        data.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
