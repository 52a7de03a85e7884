"""Backend selection for the attention ops: a registry of backends, each with the checks it needs.

`auto` runs an op on a backend other than torch (SDPA where no probabilities are needed) only where a
recorded GPU benchmark showed it faster for that op and dtype (`MEASURED_FASTER`); none is recorded yet,
so `auto` is torch everywhere. `PAPERNODES_ATTENTION_BACKEND=torch|triton|auto` forces a choice
process-wide; `use_backend(...)` does so within a block. An op a backend does not implement falls back to
the torch reference.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch

ENV_VAR = "PAPERNODES_ATTENTION_BACKEND"


@dataclass
class Backend:
    name: str
    module: str  # relative module name inside kernels/, imported lazily (triton may be absent)
    supports: Callable[[torch.device, torch.dtype], bool]


def _triton_supports(device: torch.device, dtype: torch.dtype) -> bool:
    if dtype not in (torch.float16, torch.bfloat16, torch.float32):
        return False
    try:
        mod = importlib.import_module(".triton_attention", __package__)
    except Exception:
        return False
    return bool(mod.is_available(device, dtype))


# Order = preference for `auto` among the backends measured faster than torch for an op.
_BACKENDS: dict[str, Backend] = {
    "triton": Backend("triton", ".triton_attention", _triton_supports),
    "torch": Backend("torch", ".reference", lambda device, dtype: True),
}
_local = threading.local()

# (backend, op, dtype) measured faster than the torch backend on a GPU (`benchmarks/kernels.py --device
# cuda`, run once with PAPERNODES_ATTENTION_BACKEND=triton and once with =torch); `auto` picks a non-torch
# backend only for these. Add an entry together with the recorded result, e.g.
# ("triton", "attention_with_probs", torch.float16). Empty: no GPU measurement exists yet, and PyTorch's
# SDPA is a strong default on CUDA.
MEASURED_FASTER: set[tuple[str, str, torch.dtype]] = set()


def register_backend(backend: Backend, first: bool = False) -> None:
    """Add a backend (e.g. a vendor kernel); `first=True` makes `auto` prefer it where it is measured faster
    (`MEASURED_FASTER`)."""
    global _BACKENDS
    items = [(backend.name, backend)] + [(k, v) for k, v in _BACKENDS.items() if k != backend.name]
    _BACKENDS = dict(
        items
        if first
        else [(k, v) for k, v in _BACKENDS.items() if k != backend.name] + [(backend.name, backend)]
    )


def requested_backend() -> str:
    forced = getattr(_local, "forced", None)
    return forced or os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"


@contextmanager
def use_backend(name: str):
    """Force a backend inside the block (thread-local), e.g. `with use_backend("torch"):`."""
    if name != "auto" and name not in _BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; known: auto, {', '.join(_BACKENDS)}")
    previous = getattr(_local, "forced", None)
    _local.forced = name
    try:
        yield
    finally:
        _local.forced = previous


def select_backend(device: torch.device, dtype: torch.dtype, op: str | None = None) -> str:
    """The backend for `op` on these inputs: the forced one (checked), else for `auto` the first backend
    measured faster than torch for (op, dtype) that supports them, else torch."""
    name = requested_backend()
    if name == "auto":
        return next(
            (
                b.name
                for b in _BACKENDS.values()
                if b.name != "torch" and (b.name, op, dtype) in MEASURED_FASTER and b.supports(device, dtype)
            ),
            "torch",
        )
    if name not in _BACKENDS:
        raise ValueError(f"{ENV_VAR}={name!r} is not a known backend ({', '.join(_BACKENDS)})")
    if not _BACKENDS[name].supports(device, dtype):
        raise RuntimeError(
            f"attention backend {name!r} was forced but cannot run on {device} with {dtype} "
            "(triton needs CUDA, or TRITON_INTERPRET=1 for CPU testing)"
        )
    return name


def resolve(op: str, device: torch.device, dtype: torch.dtype) -> Callable:
    """The implementation of `op` for these inputs: the selected backend's, else the reference's."""
    name = select_backend(device, dtype, op)
    module = importlib.import_module(_BACKENDS[name].module, __package__)
    fn = getattr(module, op, None)
    if fn is None:
        fn = getattr(importlib.import_module(".reference", __package__), op)
    return fn
