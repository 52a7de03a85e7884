"""The `torch` backend: exact attention math, the reference every other backend is tested against.

Layout everywhere: q [B, H, Lq, D], k/v [B, H, Lk, D] (v may have its own last dim), key masks
[B, Lk] bool (True = attend). Low-precision inputs are computed in float32 and returned in their dtype.
SDPA is used wherever no probabilities are needed; probabilities are computed in query chunks so
memory stays O(chunk * Lk) instead of O(B * H * Lq * Lk).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# When probabilities are materialised, one [B, H, chunk, Lk] float32 block is held at a time, sized to
# this budget: far below the naive all-at-once map for self- and cross-attention alike.
PROB_BLOCK_BYTES = 2 * 2**20


def prob_chunk_rows(b: int, h: int, lq: int, lk: int, budget: int = PROB_BLOCK_BYTES) -> int:
    """Query rows per chunk so one per-head probability block stays within `budget` bytes."""
    return max(16, min(lq, budget // max(1, b * h * lk * 4)))


@dataclass
class Context:
    """One key/value set for multi-context attention: out += weight * Attn(q, k, v)."""

    k: torch.Tensor
    v: torch.Tensor
    weight: float = 1.0
    key_mask: torch.Tensor | None = None


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


def _sdpa_mask(key_mask: torch.Tensor | None) -> torch.Tensor | None:
    return None if key_mask is None else key_mask[:, None, None, :]


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None) -> None:
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"attention expects [B, H, L, D] tensors, got q{tuple(q.shape)} k{tuple(k.shape)}")
    if k.shape[:3] != v.shape[:3] or q.shape[:2] != k.shape[:2] or q.shape[-1] != k.shape[-1]:
        raise ValueError(f"mismatched shapes q{tuple(q.shape)} k{tuple(k.shape)} v{tuple(v.shape)}")
    if key_mask is not None and key_mask.shape != (k.shape[0], k.shape[2]):
        raise ValueError(
            f"key_mask must be [B, Lk] = {(k.shape[0], k.shape[2])}, got {tuple(key_mask.shape)}"
        )


def _zero_masked_rows(out: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """A batch item whose keys are all masked attends to nothing: its output is 0, not SDPA's NaN."""
    if key_mask is None:
        return out
    empty = ~key_mask.any(dim=-1)
    if not bool(empty.any()):
        return out
    return torch.where(empty.view(-1, *([1] * (out.ndim - 1))), torch.zeros((), dtype=out.dtype), out)


def attention(q, k, v, key_mask=None, scale=None) -> torch.Tensor:
    """softmax(q k^T * scale) v, through SDPA (flash/efficient kernels where torch has them)."""
    _check(q, k, v, key_mask)
    dt = _compute_dtype(q)
    out = F.scaled_dot_product_attention(
        q.to(dt), k.to(dt), v.to(dt), attn_mask=_sdpa_mask(key_mask), scale=scale
    )
    return _zero_masked_rows(out, key_mask).to(q.dtype)


def multi_context_attention(q: torch.Tensor, contexts: Sequence[Context], scale=None) -> torch.Tensor:
    """sum_i weight_i * Attn(q, k_i, v_i): IP-Adapter's decoupled cross-attention, generalised."""
    if not contexts:
        raise ValueError("multi_context_attention needs at least one context")
    dt = _compute_dtype(q)
    out = None
    for c in contexts:
        _check(q, c.k, c.v, c.key_mask)
        part = F.scaled_dot_product_attention(
            q.to(dt), c.k.to(dt), c.v.to(dt), attn_mask=_sdpa_mask(c.key_mask), scale=scale
        )
        part = _zero_masked_rows(part, c.key_mask)
        part = part * c.weight if c.weight != 1.0 else part
        out = part if out is None else out + part
    return out.to(q.dtype)


def _probs_chunk(q, k, key_mask, scale) -> torch.Tensor:
    s = torch.matmul(q, k.transpose(-1, -2)) * scale
    if key_mask is not None:
        s = s.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        return torch.softmax(s, dim=-1).nan_to_num(0.0)  # fully masked rows: all-zero maps
    return torch.softmax(s, dim=-1)


def attention_with_probs(q, k, v, key_mask=None, scale=None, chunk_size: int | None = None):
    """(out, head-averaged probabilities [B, Lq, Lk] in float32), chunked over queries.

    The probabilities are the attention maps Prompt-to-Prompt-style methods capture; only one chunk of
    the per-head map [B, H, chunk, Lk] exists at a time.
    """
    _check(q, k, v, key_mask)
    dt = _compute_dtype(q)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    qc, kc, vc = q.to(dt), k.to(dt), v.to(dt)
    b, h, lq, _ = q.shape
    out = torch.empty(b, h, lq, v.shape[-1], dtype=dt, device=q.device)
    probs = torch.empty(b, lq, k.shape[2], dtype=torch.float32, device=q.device)
    chunk_size = chunk_size or prob_chunk_rows(b, h, lq, k.shape[2])
    for start in range(0, lq, chunk_size):
        sl = slice(start, start + chunk_size)
        p = _probs_chunk(qc[:, :, sl], kc, key_mask, scale)
        out[:, :, sl] = torch.matmul(p, vc)
        probs[:, sl] = p.mean(dim=1, dtype=torch.float32)
    return out.to(q.dtype), probs


def attention_with_supplied_probs(
    q,
    k,
    v,
    probs: torch.Tensor,
    token_weights: torch.Tensor,
    key_mask=None,
    scale=None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """out = P' v with P' = w * probs + (1 - w) * softmax(q k^T), w per key token in [0, 1].

    `probs` [B or 1, H or 1, Lq, Lk] are supplied maps (e.g. the source prompt's); `token_weights`
    [Lk] or [B, Lk]: 1 replaces a token's column, 0 keeps the layer's own, in between blends.
    This is Prompt-to-Prompt's map replacement / refinement (Hertz et al. 2022, Sec. 3.2).
    """
    _check(q, k, v, key_mask)
    dt = _compute_dtype(q)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    b, h, lq, _ = q.shape
    lk = k.shape[2]
    if probs.ndim != 4 or probs.shape[-2:] != (lq, lk):
        raise ValueError(f"probs must be [B|1, H|1, {lq}, {lk}], got {tuple(probs.shape)}")
    w = token_weights.to(device=q.device, dtype=dt)
    w = w.view(1, 1, 1, lk) if w.ndim == 1 else w.view(w.shape[0], 1, 1, lk)
    qc, kc, vc = q.to(dt), k.to(dt), v.to(dt)
    out = torch.empty(b, h, lq, v.shape[-1], dtype=dt, device=q.device)
    chunk_size = chunk_size or prob_chunk_rows(b, h, lq, lk)
    for start in range(0, lq, chunk_size):
        sl = slice(start, start + chunk_size)
        own = _probs_chunk(qc[:, :, sl], kc, key_mask, scale)
        mixed = w * probs[:, :, sl].to(dt) + (1 - w) * own
        out[:, :, sl] = torch.matmul(mixed, vc)
    return out.to(q.dtype)


def fold_frames(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """[(B*F), N, C] spatial tokens -> [(B*N), F, C]: each pixel becomes a sequence over frames."""
    bf, n, c = x.shape
    if bf % num_frames:
        raise ValueError(f"batch {bf} is not a multiple of num_frames={num_frames}")
    return x.view(bf // num_frames, num_frames, n, c).permute(0, 2, 1, 3).reshape(-1, num_frames, c)


def unfold_frames(x: torch.Tensor, spatial_tokens: int) -> torch.Tensor:
    """Inverse of `fold_frames`: [(B*N), F, C] -> [(B*F), N, C], given N (tokens per frame)."""
    bn, f, c = x.shape
    if bn % spatial_tokens:
        raise ValueError(f"batch {bn} is not a multiple of spatial_tokens={spatial_tokens}")
    return (
        x.view(bn // spatial_tokens, spatial_tokens, f, c).permute(0, 2, 1, 3).reshape(-1, spatial_tokens, c)
    )


def sinusoidal_positions(num_frames: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """[F, dim] sinusoidal encoding (Vaswani et al. 2017), as AnimateDiff's motion modules add it."""
    pos = torch.arange(num_frames, device=device, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(num_frames, dim, device=device, dtype=torch.float32)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div[: dim // 2])
    return pe.to(dtype)


def temporal_attention(q, k, v, scale=None) -> torch.Tensor:
    """Attention over frames for already-folded tensors [(B*N), H, F, D]: plain attention, named for intent."""
    return attention(q, k, v, scale=scale)
