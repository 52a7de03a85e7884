"""The `triton` backend: fused attention kernels with the same signatures as `kernels.reference`.

Two kernels, both readable top to bottom:

- `_attn_fwd_kernel`: flash-style forward (query tiles x key tiles, online softmax in fp32) that loops
  over up to N key/value *contexts* in one launch: out = sum_i w_i * softmax(q k_i^T * scale) v_i.
  The wrapper concatenates the contexts' K and V along the key axis and passes the start offset of
  every context (int32, N+1 entries) and their weights (fp32, N). Plain attention is the N=1 case
  (no offset/weight tensors are read then). Optionally it stores the per-row log-sum-exp (base 2) of
  the scores, the statistics pass 2 of `attention_with_probs` needs.
- `_attn_probs_kernel`: one program per (batch, query tile, key tile) loops over the heads, recomputes
  the scores and writes mean_h exp(s - lse) straight into the [B, Lq, Lk] float32 map: the per-head
  probabilities [B, H, Lq, Lk] never exist and no atomics are needed.

Numerics: inputs (fp16/bf16/fp32) are loaded and cast to fp32 before every `tl.dot` (Triton's
interpreter multiplies bf16 bit patterns as integers, see shared KERNELS.md), softmax and
accumulation run in fp32, outputs are written in the input dtype (probabilities in fp32).
`precision=None` (default) picks tf32 for fp16/bf16 inputs and exact "ieee" for fp32 (unless torch
allows tf32 matmuls); `precision="ieee"` gives exact fp32 dots (FMA loops on GPUs: small tiles, slower);
`precision="tf32"` uses tensor cores. fp16/bf16 values are exact in tf32, so for half inputs tf32
only rounds the probabilities entering the P V product.

Tiles: head dims are padded to BLOCK_D in {64, 128, 256} (SD's 40, 64, 80, 160 -> 64, 64, 128, 256)
and masked; other tile sizes per (kernel, BLOCK_D, precision) are in `_TILES`, chosen so that no entry
of `KERNEL_CONFIGS` spills registers or exceeds shared memory on sm_80/sm_90 (test tier c).

Fully masked rows: a query row whose keys are all masked in a context contributes 0 for that context
(torch's SDPA also returns 0 for such rows; `reference.attention_with_probs` returns NaN there,
this backend returns probabilities 0 and output 0).

Key masks are boolean/integer [B, Lk], nonzero = attend (float masks would be additive biases in
SDPA, which this backend does not implement: they are rejected with a ValueError).
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from .reference import Context

try:
    import triton
    import triton.language as tl

    _IMPORT_ERROR: Exception | None = None
except ImportError as _err:  # CPU-only torch builds ship without triton
    import types as _types

    _IMPORT_ERROR = _err
    triton = None
    # Enough of a stand-in for the kernel definitions below to be parsed; they are never launched.
    tl = _types.SimpleNamespace(constexpr=None)

    def _jit(fn=None, **_kwargs):
        return fn if fn is not None else (lambda f: f)

    _jit_decorator = _jit
else:
    _jit_decorator = triton.jit

LOG2E = 1.4426950408889634
SUPPORTED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
PRECISIONS = ("ieee", "tf32")
# Padded head dims the wrappers launch (head dims above the largest are rejected).
BLOCK_DS = (64, 128, 256)
# Head dims and row strides are multiples of this (the wrappers zero-pad other head dims); the kernels
# rely on it so that loads along the head dim vectorise to 16 bytes.
DIM_MULTIPLE = 8
# Offsets are computed in int32 by the kernels the AOT tier checks.
MAX_ELEMENTS = 2**31 - 1


# --------------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------------

# Argument kinds for the AOT signature: "io" = pointer in the input dtype, other strings are
# Triton signature types. Order = the kernel's parameter order (constexprs excluded).
_ARG_KINDS = {
    "fwd": {
        "Q": "io", "K": "io", "V": "io", "Out": "io", "KM": "*i8", "STARTS": "*i32", "WEIGHTS": "*fp32",
        "LSE": "*fp32", "sqb": "i32", "sqh": "i32", "sqm": "i32", "skb": "i32", "skh": "i32", "skn": "i32",
        "svb": "i32", "svh": "i32", "svn": "i32", "sob": "i32", "soh": "i32", "som": "i32", "skmb": "i32",
        "H": "i32", "LQ": "i32", "D": "i32", "DV": "i32", "n_ctx": "i32", "l_total": "i32",
        "qk_scale": "fp32", "has_mask": "i32", "multi": "i32", "store_lse": "i32",
    },
    "probs": {
        "Q": "io", "K": "io", "KM": "*i8", "LSE": "*fp32", "P": "*fp32", "sqb": "i32", "sqh": "i32",
        "sqm": "i32", "skb": "i32", "skh": "i32", "skn": "i32", "skmb": "i32", "spb": "i32", "spm": "i32",
        "H": "i32", "LQ": "i32", "LK": "i32", "D": "i32", "qk_scale": "fp32", "has_mask": "i32",
    },
}  # fmt: skip
# Integer arguments are never specialised by the JIT (on == 1 or % 16): the kernels derive alignment
# from (x // 8) * 8 instead, so the kernel a launch builds is exactly the one the AOT tier checks.
_FWD_INTS = [name for name, kind in _ARG_KINDS["fwd"].items() if kind == "i32"]
_PROBS_INTS = [name for name, kind in _ARG_KINDS["probs"].items() if kind == "i32"]


@_jit_decorator
def _scores(
    q, k_base, km_base, skn, n0, end, D, qk_scale, has_mask,
    BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """Base-2 scores of one key tile, [BLOCK_M, BLOCK_N]; -inf outside [n0, end) and at masked keys."""
    offs_n = n0 + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    col_ok = offs_n < end
    kt_ptrs = k_base + offs_n[None, :] * skn + offs_d[:, None]
    kt = tl.load(kt_ptrs, mask=(offs_d[:, None] < D) & col_ok[None, :], other=0.0).to(tl.float32)
    s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
    km = tl.load(km_base + offs_n, mask=col_ok & (has_mask != 0), other=1)
    return tl.where((col_ok & (km != 0))[None, :], s, float("-inf"))


@_jit_decorator
def _value_tile(v_base, svn, n0, end, DV, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    offs_n = n0 + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    v_ptrs = v_base + offs_n[:, None] * svn + offs_d[None, :]
    return tl.load(v_ptrs, mask=(offs_n[:, None] < end) & (offs_d[None, :] < DV), other=0.0).to(tl.float32)


@_jit_decorator(do_not_specialize=_FWD_INTS)
def _attn_fwd_kernel(
    Q, K, V, Out, KM, STARTS, WEIGHTS, LSE,
    sqb, sqh, sqm,
    skb, skh, skn,
    svb, svh, svn,
    sob, soh, som,
    skmb,
    H, LQ, D, DV, n_ctx, l_total, qk_scale,
    has_mask, multi, store_lse,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """out[b, h, rows] = sum_c w_c * softmax(q k_c^T * scale) v_c for one (batch*head, query tile).

    qk_scale = scale * log2(e): the softmax runs in base 2. The last dim of every tensor is contiguous.
    One context (multi == 0, keys [0, l_total), weight 1): a single online-softmax sweep.
    Several contexts: per context a statistics sweep (row max, row sum) then an accumulation sweep
    adding w_c * exp2(s - m) / l straight into the output tile, so only one [BLOCK_M, BLOCK_D]
    accumulator is ever live (registers, not FLOPs, limit these tiles; see KERNEL_CONFIGS).
    """
    # (x // 8) * 8 == x for these (the wrapper guarantees it) and tells the compiler they are multiples
    # of 8, so masked loads along the head dim vectorise (tl.multiple_of is a no-op on raw arguments).
    sqb, sqh, sqm = (sqb // 8) * 8, (sqh // 8) * 8, (sqm // 8) * 8
    skb, skh, skn = (skb // 8) * 8, (skh // 8) * 8, (skn // 8) * 8
    svb, svh, svn = (svb // 8) * 8, (svh // 8) * 8, (svn // 8) * 8
    sob, soh, som = (sob // 8) * 8, (soh // 8) * 8, (som // 8) * 8
    D, DV = (D // 8) * 8, (DV // 8) * 8
    pid = tl.program_id(0)
    n_qt = tl.cdiv(LQ, BLOCK_M)
    bh = pid // n_qt
    qt = pid % n_qt
    b = bh // H
    h = bh % H

    offs_m = qt * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < LQ
    q_ptrs = Q + b * sqb + h * sqh + offs_m[:, None] * sqm + offs_d[None, :]
    q = tl.load(q_ptrs, mask=row_ok[:, None] & (offs_d[None, :] < D), other=0.0).to(tl.float32)
    k_base = K + b * skb + h * skh
    v_base = V + b * svb + h * svh
    km_base = KM + b * skmb

    out = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    # The running row max starts at a finite sentinel: a tile whose keys are all masked then gives
    # p = exp2(-inf - m) = 0 and alpha = 1 instead of NaN; rows with no key at all end with l = 0.
    m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    if multi != 0:
        for c in range(n_ctx):
            in_range = c < n_ctx  # always true: every load is masked, these included
            start = tl.load(STARTS + c, mask=in_range, other=0)
            end = tl.load(STARTS + c + 1, mask=in_range, other=0)
            w = tl.load(WEIGHTS + c, mask=in_range, other=0.0)
            m_i = tl.full([BLOCK_M], -1.0e30, dtype=tl.float32)
            l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
            for n0 in range(start, end, BLOCK_N):
                s = _scores(
                    q, k_base, km_base, skn, n0, end, D, qk_scale, has_mask, BLOCK_N, BLOCK_D, PRECISION
                )
                m_new = tl.maximum(m_i, tl.max(s, 1))
                l_i = l_i * tl.exp2(m_i - m_new) + tl.sum(tl.exp2(s - m_new[:, None]), 1)
                m_i = m_new
            inv = tl.where(l_i > 0.0, w / tl.where(l_i > 0.0, l_i, 1.0), 0.0)
            for n0 in range(start, end, BLOCK_N):
                s = _scores(
                    q, k_base, km_base, skn, n0, end, D, qk_scale, has_mask, BLOCK_N, BLOCK_D, PRECISION
                )
                p = tl.exp2(s - m_i[:, None]) * inv[:, None]
                v = _value_tile(v_base, svn, n0, end, DV, BLOCK_N, BLOCK_D)
                out += tl.dot(p, v, input_precision=PRECISION)
    else:
        for n0 in range(0, l_total, BLOCK_N):
            s = _scores(
                q, k_base, km_base, skn, n0, l_total, D, qk_scale, has_mask, BLOCK_N, BLOCK_D, PRECISION
            )
            m_new = tl.maximum(m_i, tl.max(s, 1))
            alpha = tl.exp2(m_i - m_new)
            p = tl.exp2(s - m_new[:, None])
            l_i = l_i * alpha + tl.sum(p, 1)
            v = _value_tile(v_base, svn, n0, l_total, DV, BLOCK_N, BLOCK_D)
            out = out * alpha[:, None] + tl.dot(p, v, input_precision=PRECISION)
            m_i = m_new
        out = out * tl.where(l_i > 0.0, 1.0 / tl.where(l_i > 0.0, l_i, 1.0), 0.0)[:, None]

    o_ptrs = Out + b * sob + h * soh + offs_m[:, None] * som + offs_d[None, :]
    tl.store(o_ptrs, out.to(Out.dtype.element_ty), mask=row_ok[:, None] & (offs_d[None, :] < DV))
    # Base-2 log-sum-exp of the (last) context's scores; +inf for fully masked rows so that the
    # probabilities pass computes exp2(s - lse) = 0 there.
    lse = tl.where(l_i > 0.0, m_i + tl.log2(tl.where(l_i > 0.0, l_i, 1.0)), float("inf"))
    tl.store(LSE + bh * LQ + offs_m, lse, mask=row_ok & (store_lse != 0))


@_jit_decorator(do_not_specialize=_PROBS_INTS)
def _attn_probs_kernel(
    Q, K, KM, LSE, P,
    sqb, sqh, sqm,
    skb, skh, skn,
    skmb, spb, spm,
    H, LQ, LK, D, qk_scale, has_mask,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """probs[b, rows, cols] = mean_h exp2(s_h - lse_h) for one (batch, query tile, key tile)."""
    sqb, sqh, sqm = (sqb // 8) * 8, (sqh // 8) * 8, (sqm // 8) * 8  # multiples of 8, see the fwd kernel
    skb, skh, skn = (skb // 8) * 8, (skh // 8) * 8, (skn // 8) * 8
    D = (D // 8) * 8
    pid = tl.program_id(0)
    n_qt = tl.cdiv(LQ, BLOCK_M)
    n_kt = tl.cdiv(LK, BLOCK_N)
    kt_idx = pid % n_kt
    rest = pid // n_kt
    qt = rest % n_qt
    b = rest // n_qt

    offs_m = qt * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = kt_idx * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    row_ok = offs_m < LQ
    col_ok = offs_n < LK
    d_ok = offs_d < D
    km = tl.load(KM + b * skmb + offs_n, mask=col_ok & (has_mask != 0), other=1)
    keep = col_ok & (km != 0)

    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    for h in range(H):
        q_ptrs = Q + b * sqb + h * sqh + offs_m[:, None] * sqm + offs_d[None, :]
        q = tl.load(q_ptrs, mask=row_ok[:, None] & d_ok[None, :], other=0.0).to(tl.float32)
        kt_ptrs = K + b * skb + h * skh + offs_n[None, :] * skn + offs_d[:, None]
        kt = tl.load(kt_ptrs, mask=d_ok[:, None] & col_ok[None, :], other=0.0).to(tl.float32)
        s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
        lse = tl.load(LSE + (b * H + h) * LQ + offs_m, mask=row_ok, other=float("inf"))
        p = tl.exp2(s - lse[:, None])
        acc += tl.where(keep[None, :], p, 0.0)

    p_ptrs = P + b * spb + offs_m[:, None] * spm + offs_n[None, :]
    tl.store(p_ptrs, acc / H, mask=row_ok[:, None] & col_ok[None, :])


# --------------------------------------------------------------------------------------------------
# Launch configurations (the wrappers and the AOT test tier both read them from here)
# --------------------------------------------------------------------------------------------------

_TORCH_TO_TRITON = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}

# (kernel, BLOCK_D, precision) -> (BLOCK_M, BLOCK_N, num_warps, num_stages). Chosen so that no
# configuration spills registers on sm_80/sm_90 (checked by tests/test_kernels_triton.py, tier c).
_TILES: dict[tuple[str, int, str], tuple[int, int, int, int]] = {
    # "ieee" dots lower to FMA loops whose operands live in registers: small tiles only.
    ("fwd", 64, "ieee"): (32, 32, 4, 1),
    ("fwd", 128, "ieee"): (32, 16, 4, 1),
    ("fwd", 256, "ieee"): (16, 16, 4, 1),
    ("fwd", 64, "tf32"): (128, 32, 8, 2),
    ("fwd", 128, "tf32"): (128, 16, 8, 2),
    ("fwd", 256, "tf32"): (32, 32, 8, 2),
    ("probs", 64, "ieee"): (32, 32, 4, 2),
    ("probs", 128, "ieee"): (32, 16, 4, 2),
    ("probs", 256, "ieee"): (32, 16, 4, 1),
    ("probs", 64, "tf32"): (64, 64, 4, 2),
    ("probs", 128, "tf32"): (64, 64, 8, 2),
    ("probs", 256, "tf32"): (32, 64, 8, 2),
}

_KERNELS = {"fwd": _attn_fwd_kernel, "probs": _attn_probs_kernel}


@dataclass(frozen=True)
class KernelConfig:
    """One (kernel, constexpr config, dtype) the wrappers can launch."""

    kernel: str  # "fwd" | "probs"
    dtype: torch.dtype
    constexprs: dict = field(hash=False)
    num_warps: int = 4
    num_stages: int = 2

    @property
    def fn(self):
        return _KERNELS[self.kernel]

    @property
    def name(self) -> str:
        c = self.constexprs
        return (
            f"{self.kernel}-{_TORCH_TO_TRITON[self.dtype]}-{c['PRECISION']}-d{c['BLOCK_D']}"
            f"-m{c['BLOCK_M']}n{c['BLOCK_N']}-w{self.num_warps}s{self.num_stages}"
        )

    def signature(self) -> dict[str, str]:
        """Triton signature for `triton.compile(ASTSource(fn, signature, constexprs))`."""
        io = "*" + _TORCH_TO_TRITON[self.dtype]
        sig = {name: (io if kind == "io" else kind) for name, kind in _ARG_KINDS[self.kernel].items()}
        sig.update({name: "constexpr" for name in self.constexprs})
        return sig

    def pointer_args(self) -> list[str]:
        return [n for n, kind in _ARG_KINDS[self.kernel].items() if kind == "io" or kind.startswith("*")]


def _block_d(d: int) -> int:
    for bd in BLOCK_DS:
        if d <= bd:
            return bd
    raise ValueError(f"triton attention supports head dims up to {BLOCK_DS[-1]}, got {d}")


def _config(kernel: str, dtype: torch.dtype, block_d: int, precision: str | None) -> KernelConfig:
    precision = precision or default_precision(dtype)
    bm, bn, warps, stages = _TILES[(kernel, block_d, precision)]
    constexprs = {"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_D": block_d, "PRECISION": precision}
    return KernelConfig(kernel, dtype, constexprs, warps, stages)


KERNEL_CONFIGS: list[KernelConfig] = [
    _config(kernel, dtype, bd, prec)
    for kernel in ("fwd", "probs")
    for prec in PRECISIONS
    for bd in BLOCK_DS
    for dtype in SUPPORTED_DTYPES
]


# --------------------------------------------------------------------------------------------------
# Wrappers (same signatures as kernels.reference, plus keyword-only `precision`)
# --------------------------------------------------------------------------------------------------


def _interpreting() -> bool:
    """True when the kernels were built by Triton's CPU interpreter (TRITON_INTERPRET=1 at import)."""
    return type(_attn_fwd_kernel).__name__ == "InterpretedFunction"


def is_available(device, dtype: torch.dtype | None = None) -> bool:
    """Can this backend run tensors of `dtype` on `device`? (cuda, or CPU under TRITON_INTERPRET=1)."""
    if triton is None:
        return False
    if dtype is not None and dtype not in SUPPORTED_DTYPES:
        return False
    dev = torch.device(device)
    if dev.type == "cuda":
        return not _interpreting()
    return dev.type == "cpu" and _interpreting() and os.environ.get("TRITON_INTERPRET", "0") == "1"


_DUMMIES: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}


def _dummy(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A 1-element placeholder for pointer arguments a launch never reads (fully masked loads)."""
    key = (device, dtype)
    if key not in _DUMMIES:
        _DUMMIES[key] = torch.zeros(1, dtype=dtype, device=device)
    return _DUMMIES[key]


def _require_backend(q: torch.Tensor) -> None:
    if triton is None:
        raise RuntimeError(f"triton attention needs triton, which failed to import: {_IMPORT_ERROR}")
    if q.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"triton attention supports {SUPPORTED_DTYPES}, got {q.dtype}")
    if not is_available(q.device, q.dtype):
        raise RuntimeError(
            f"triton attention cannot run on {q.device} "
            "(needs cuda, or cpu with TRITON_INTERPRET=1 set before triton is imported)"
        )


def default_precision(dtype: torch.dtype) -> str:
    """tf32 tensor-core dots for fp16/bf16 inputs (their values are exact in tf32); exact ieee for fp32
    unless torch itself allows tf32 matmuls."""
    if dtype in (torch.float16, torch.bfloat16):
        return "tf32"
    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"


def _check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask, what: str = "attention") -> None:
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(
            f"{what} expects [B, H, L, D] tensors, got q{tuple(q.shape)} k{tuple(k.shape)} v{tuple(v.shape)}"
        )
    if k.shape[:3] != v.shape[:3] or q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"{what}: mismatched shapes q{tuple(q.shape)} k{tuple(k.shape)} v{tuple(v.shape)}")
    if k.device != q.device or v.device != q.device:
        raise ValueError(f"{what}: q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    if key_mask is not None:
        if key_mask.shape != (k.shape[0], k.shape[2]):
            raise ValueError(
                f"{what}: key_mask must be [B, Lk] = {(k.shape[0], k.shape[2])}, got {tuple(key_mask.shape)}"
            )
        if key_mask.dtype.is_floating_point or key_mask.dtype.is_complex:
            raise ValueError(f"{what}: key_mask must be bool/integer (True = attend), got {key_mask.dtype}")


def _mask_i8(key_mask: torch.Tensor, device: torch.device) -> torch.Tensor:
    return (key_mask.to(device) != 0).to(torch.int8).contiguous()


def _rows(t: torch.Tensor) -> tuple[int, int, int]:
    """(batch, head, row) strides of a contiguous [B, H, L, D] tensor, written out from its shape.

    torch leaves the strides of size-1 dims arbitrary even for contiguous tensors; the kernels assume
    every stride is a multiple of 8, which the canonical ones are once D is.
    """
    _, h, n, d = t.shape
    return h * n * d, n * d, d


def _pad_last(t: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad the last dim to `size` (head dims must be multiples of DIM_MULTIPLE for the kernels)."""
    t = t.contiguous()
    return t if t.shape[-1] == size else torch.nn.functional.pad(t, (0, size - t.shape[-1]))


def _round_up(n: int, m: int = DIM_MULTIPLE) -> int:
    return (n + m - 1) // m * m


def _launch_fwd(q, k_all, v_all, out, km, starts, weights, lse, n_ctx, scale, precision) -> None:
    """q/k_all/v_all/out contiguous with head dims that are multiples of DIM_MULTIPLE."""
    b, h, lq, d = q.shape
    dv = v_all.shape[-1]
    _check_size(q, k_all, v_all, out)
    cfg = _config("fwd", q.dtype, _block_d(max(d, dv)), precision)
    c = cfg.constexprs
    dev = q.device
    grid = (b * h * triton.cdiv(lq, c["BLOCK_M"]),)
    _attn_fwd_kernel[grid](
        q, k_all, v_all, out,
        km if km is not None else _dummy(dev, torch.int8),
        starts if starts is not None else _dummy(dev, torch.int32),
        weights if weights is not None else _dummy(dev, torch.float32),
        lse if lse is not None else _dummy(dev, torch.float32),
        *_rows(q), *_rows(k_all), *_rows(v_all), *_rows(out),
        km.shape[1] if km is not None else 0,
        h, lq, d, dv, n_ctx, k_all.shape[2], float(scale) * LOG2E,
        int(km is not None), int(starts is not None), int(lse is not None),
        num_warps=cfg.num_warps, num_stages=cfg.num_stages, **c,
    )  # fmt: skip


def _check_size(*tensors: torch.Tensor) -> None:
    for t in tensors:
        if t.numel() > MAX_ELEMENTS:
            raise ValueError(f"triton attention indexes in int32: tensor {tuple(t.shape)} is too large")


def _prepare(q, k, v):
    """Contiguous copies in q's dtype (k/v of another dtype are cast to it), head dims zero-padded to
    multiples of DIM_MULTIPLE.

    Zero columns in q and k leave q k^T unchanged; padded value columns are cut from the output.
    """
    d = _round_up(q.shape[-1])
    dv = _round_up(v.shape[-1])
    return _pad_last(q, d), _pad_last(k.to(q.dtype), d), _pad_last(v.to(q.dtype), dv)


def _unpad(out: torch.Tensor, dv: int) -> torch.Tensor:
    return out if out.shape[-1] == dv else out[..., :dv].contiguous()


def _start(q, k, v, key_mask, precision, scale, what):
    precision = precision or default_precision(q.dtype)
    _check_qkv(q, k, v, key_mask, what=what)
    _check_precision(precision)
    _block_d(max(q.shape[-1], v.shape[-1]))  # rejects head dims above the largest tile
    _require_backend(q)
    return q.shape[-1] ** -0.5 if scale is None else float(scale)


def attention(q, k, v, key_mask=None, scale=None, *, precision: str | None = None) -> torch.Tensor:
    """softmax(q k^T * scale) v in one fused launch; [B, H, Lq, D] x [B, H, Lk, D|Dv]."""
    scale = _start(q, k, v, key_mask, precision, scale, "attention")
    dv = v.shape[-1]
    qp, kp, vp = _prepare(q, k, v)
    b, h, lq, _ = q.shape
    out = torch.empty(b, h, lq, vp.shape[-1], dtype=q.dtype, device=q.device)
    if out.numel():
        km = None if key_mask is None else _mask_i8(key_mask, q.device)
        _launch_fwd(qp, kp, vp, out, km, None, None, None, 1, scale, precision)
    return _unpad(out, dv)


def multi_context_attention(
    q: torch.Tensor, contexts: Sequence[Context], scale=None, *, precision: str | None = None
) -> torch.Tensor:
    """sum_i weight_i * Attn(q, k_i, v_i) in one launch (contexts concatenated along the key axis)."""
    if not contexts:
        raise ValueError("multi_context_attention needs at least one context")
    for i, c in enumerate(contexts):
        _check_qkv(q, c.k, c.v, c.key_mask, what=f"multi_context_attention context {i}")
    dv = contexts[0].v.shape[-1]
    if any(c.v.shape[-1] != dv for c in contexts):
        raise ValueError(
            "multi_context_attention: all contexts need one value dim, got "
            f"{[tuple(c.v.shape) for c in contexts]}"
        )
    scale = _start(q, contexts[0].k, contexts[0].v, None, precision, scale, "multi_context_attention")
    b, h, lq, _ = q.shape
    dev = q.device
    if len(contexts) == 1:
        qp, k_all, v_all = _prepare(q, contexts[0].k, contexts[0].v)
    else:
        qp, k_all, v_all = _prepare(
            q,
            torch.cat([c.k.to(q.dtype) for c in contexts], dim=2),
            torch.cat([c.v.to(q.dtype) for c in contexts], dim=2),
        )
    out = torch.empty(b, h, lq, v_all.shape[-1], dtype=q.dtype, device=dev)
    if out.numel():
        bounds = [0]
        for c in contexts:
            bounds.append(bounds[-1] + c.k.shape[2])
        starts = torch.tensor(bounds, dtype=torch.int32).to(dev)
        weights = torch.tensor([float(c.weight) for c in contexts], dtype=torch.float32).to(dev)
        km = None
        if any(c.key_mask is not None for c in contexts):
            km = torch.cat([
                _mask_i8(c.key_mask, dev) if c.key_mask is not None
                else torch.ones(b, c.k.shape[2], dtype=torch.int8, device=dev)
                for c in contexts
            ], dim=1).contiguous()  # fmt: skip
        _launch_fwd(qp, k_all, v_all, out, km, starts, weights, None, len(contexts), scale, precision)
    return _unpad(out, dv)


def attention_with_probs(
    q, k, v, key_mask=None, scale=None, chunk_size: int | None = None, *, precision: str | None = None
):
    """(out, head-averaged probabilities [B, Lq, Lk] float32) without materialising [B, H, Lq, Lk].

    Pass 1 is the fused forward storing per-row log-sum-exp; pass 2 recomputes the scores per
    (batch, query tile, key tile) and averages exp(s - lse) over heads. `chunk_size` is accepted for
    signature compatibility with the reference; memory is bounded by the tiling regardless.
    """
    if chunk_size is not None and chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    scale = _start(q, k, v, key_mask, precision, scale, "attention_with_probs")
    dv = v.shape[-1]
    qp, kp, vp = _prepare(q, k, v)
    b, h, lq, d = qp.shape
    lk = k.shape[2]
    dev = q.device
    probs = torch.zeros(b, lq, lk, dtype=torch.float32, device=dev)
    if probs.numel() == 0 or h * vp.shape[-1] == 0:  # no queries or no keys: zeros, like masked rows
        return torch.zeros(b, h, lq, dv, dtype=q.dtype, device=dev), probs
    _check_size(probs)
    out = torch.empty(b, h, lq, vp.shape[-1], dtype=q.dtype, device=dev)
    km = None if key_mask is None else _mask_i8(key_mask, dev)
    lse = torch.empty(b * h, lq, dtype=torch.float32, device=dev)
    _launch_fwd(qp, kp, vp, out, km, None, None, lse, 1, scale, precision)

    cfg = _config("probs", q.dtype, _block_d(d), precision)
    c = cfg.constexprs
    grid = (b * triton.cdiv(lq, c["BLOCK_M"]) * triton.cdiv(lk, c["BLOCK_N"]),)
    _attn_probs_kernel[grid](
        qp, kp, km if km is not None else _dummy(dev, torch.int8), lse, probs,
        *_rows(qp), *_rows(kp),
        lk if km is not None else 0, lq * lk, lk,
        h, lq, lk, d, scale * LOG2E, int(km is not None),
        num_warps=cfg.num_warps, num_stages=cfg.num_stages, **c,
    )  # fmt: skip
    return _unpad(out, dv), probs


def temporal_attention(q, k, v, scale=None, *, precision: str | None = None) -> torch.Tensor:
    """Attention over frames for folded tensors [(B*N), H, F, D]: plain attention (the 1D grid has no
    limit on B*N*H programs)."""
    return attention(q, k, v, scale=scale, precision=precision)


__all__ = [
    "KERNEL_CONFIGS",
    "KernelConfig",
    "Context",
    "attention",
    "attention_with_probs",
    "is_available",
    "multi_context_attention",
    "temporal_attention",
]
