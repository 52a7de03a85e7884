"""Public attention ops; each call is routed to the backend `dispatch` selects for its inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .dispatch import resolve
from .reference import Context


def attention(q, k, v, key_mask=None, scale=None) -> torch.Tensor:
    """softmax(q k^T * scale) v for [B, H, L, D] tensors; key_mask [B, Lk] bool (True = attend)."""
    return resolve("attention", q.device, q.dtype)(q, k, v, key_mask=key_mask, scale=scale)


def multi_context_attention(q, contexts: Sequence[Context], scale=None) -> torch.Tensor:
    """sum_i weight_i * Attn(q, k_i, v_i): text + image prompts (IP-Adapter / DreaMoving guider)."""
    return resolve("multi_context_attention", q.device, q.dtype)(q, list(contexts), scale=scale)


def attention_with_probs(q, k, v, key_mask=None, scale=None):
    """(out, head-averaged probabilities [B, Lq, Lk] float32) with bounded memory."""
    return resolve("attention_with_probs", q.device, q.dtype)(q, k, v, key_mask=key_mask, scale=scale)


def attention_with_supplied_probs(q, k, v, probs, token_weights, key_mask=None, scale=None) -> torch.Tensor:
    """out = (w * probs + (1 - w) * own_probs) v, w per key token: Prompt-to-Prompt map control."""
    fn = resolve("attention_with_supplied_probs", q.device, q.dtype)
    return fn(q, k, v, probs, token_weights, key_mask=key_mask, scale=scale)


def temporal_attention(q, k, v, scale=None) -> torch.Tensor:
    """Attention over frames for folded tensors [(B*N), H, F, D] (see `fold_frames`)."""
    return resolve("temporal_attention", q.device, q.dtype)(q, k, v, scale=scale)
