"""ONE attention processor for diffusers models whose behaviour is composed from hooks.

A method adds a hook, not a processor class. A hook sees an `AttnCall` (layer name, self/cross/temporal,
Q/K/V split into heads, step, resolution) and may:
- `modify_qkv(call)`: swap or replace Q/K/V between batch branches (e.g. target Q with source K/V);
- `extra_contexts(call)`: add image-prompt K/V sets -> multi-context attention;
- `supplied_probs(call)`: return (probs, token_weights) to replace or blend attention maps;
- `wants_probs(call)` + `on_probs(call, probs)`: capture head-averaged maps;
- `override(call)`: compute the attention itself (e.g. fold frames for temporal attention).
Hooks run in order; the first non-None `supplied_probs` / `override` wins.

`attention_hooks(model, hooks)` installs the processor on every attention layer and restores the exact
original processor objects on exit, also on exceptions and ComfyUI's interrupt, so a model shared by
several nodes is never left patched.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from . import ops
from .reference import Context


@dataclass
class HookState:
    """Shared across all layers of one run: the pipeline advances `step`; hooks may keep data here."""

    step: int = 0
    num_steps: int = 1
    latent_hw: tuple[int, int] | None = None  # (h, w) of the U-Net input, to name layer resolutions
    data: dict = field(default_factory=dict)

    @property
    def progress(self) -> float:
        """Step progress p in (0, 1], as InfEdit's schedules use it."""
        return (self.step + 1) / max(self.num_steps, 1)


@dataclass
class AttnCall:
    layer: str
    is_cross: bool
    is_temporal: bool
    q: torch.Tensor  # [B, H, Lq, D]
    k: torch.Tensor
    v: torch.Tensor
    scale: float
    state: HookState
    key_mask: torch.Tensor | None = None
    contexts: list[Context] = field(default_factory=list)

    @property
    def resolution(self) -> tuple[int, int] | None:
        """(h, w) of this layer's token grid, from the U-Net input size; None if unknown or temporal."""
        if self.state.latent_hw is None or self.is_temporal:
            return None
        h, w = self.state.latent_hw
        factor = math.sqrt(h * w / self.q.shape[2])
        return round(h / factor), round(w / factor)


class AttentionHook:
    """Base class: every method is optional; the defaults change nothing."""

    def modify_qkv(self, call: AttnCall) -> None:
        return None

    def extra_contexts(self, call: AttnCall) -> Sequence[Context]:
        return ()

    def supplied_probs(self, call: AttnCall):
        return None

    def wants_probs(self, call: AttnCall) -> bool:
        return False

    def on_probs(self, call: AttnCall, probs: torch.Tensor) -> None:
        return None

    def override(self, call: AttnCall) -> torch.Tensor | None:
        return None


def is_temporal_attention(name: str) -> bool:
    """True for attention layers that attend across frames (AnimateDiff motion modules, temporal blocks)."""
    return "motion_modules" in name or "temp_attentions" in name or "temporal" in name


class PaperAttnProcessor:
    """diffusers-compatible processor; behaviour comes from its hooks."""

    def __init__(self, name: str, hooks: Sequence[AttentionHook], state: HookState):
        self.name, self.hooks, self.state = name, list(hooks), state

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs
    ):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        batch = hidden_states.shape[0]
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        is_cross = encoder_hidden_states is not None
        context = encoder_hidden_states if is_cross else hidden_states
        if is_cross and attn.norm_cross:
            context = attn.norm_encoder_hidden_states(context)
        q, k, v = attn.to_q(hidden_states), attn.to_k(context), attn.to_v(context)
        heads = attn.heads
        split = lambda t: t.view(batch, -1, heads, t.shape[-1] // heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)

        call = AttnCall(
            self.name,
            is_cross,
            is_temporal_attention(self.name),
            q,
            k,
            v,
            attn.scale,
            self.state,
            key_mask=_key_mask(attention_mask, batch, k.shape[2]),
        )
        out = self._attend(call)

        out = out.transpose(1, 2).reshape(batch, -1, out.shape[1] * out.shape[3]).to(q.dtype)
        out = attn.to_out[1](attn.to_out[0](out))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor

    def _attend(self, call: AttnCall) -> torch.Tensor:
        for hook in self.hooks:
            hook.modify_qkv(call)
        for hook in self.hooks:
            call.contexts.extend(hook.extra_contexts(call))
        for hook in self.hooks:
            result = hook.override(call)
            if result is not None:
                return result
        supplied = next((s for hook in self.hooks if (s := hook.supplied_probs(call)) is not None), None)
        capture = [hook for hook in self.hooks if hook.wants_probs(call)]
        if supplied is not None:
            probs, weights = supplied
            out = ops.attention_with_supplied_probs(
                call.q, call.k, call.v, probs, weights, key_mask=call.key_mask, scale=call.scale
            )
        elif capture:
            out, probs = ops.attention_with_probs(
                call.q, call.k, call.v, key_mask=call.key_mask, scale=call.scale
            )
            for hook in capture:
                hook.on_probs(call, probs)
        elif call.contexts:
            main = Context(call.k, call.v, 1.0, call.key_mask)
            return ops.multi_context_attention(call.q, [main, *call.contexts], scale=call.scale)
        elif call.is_temporal:
            return ops.temporal_attention(call.q, call.k, call.v, scale=call.scale)
        else:
            return ops.attention(call.q, call.k, call.v, key_mask=call.key_mask, scale=call.scale)
        if call.contexts:  # maps were controlled on the main context; image prompts still add on top
            out = out + ops.multi_context_attention(call.q, call.contexts, scale=call.scale)
        return out


def _key_mask(attention_mask: torch.Tensor | None, batch: int, keys: int) -> torch.Tensor | None:
    """diffusers passes additive masks ([B, Lk] or [B, 1, Lk], 0 = keep, large negative = drop)."""
    if attention_mask is None:
        return None
    m = attention_mask
    if m.dtype == torch.bool:
        return m.reshape(batch, keys)
    return m.reshape(batch, -1)[:, -keys:] > -1.0


def attention_modules(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    """Processor name (diffusers' `attn_processors` naming) -> the Attention module that owns it.
    Works on whole models and on a single Attention layer alike."""
    return {
        (f"{name}.processor" if name else "processor"): module
        for name, module in model.named_modules()
        if hasattr(module, "set_processor") and hasattr(module, "processor")
    }


@contextmanager
def attention_hooks(
    model: torch.nn.Module, hooks: Sequence[AttentionHook], state: HookState | None = None, layers=None
) -> Iterator[HookState]:
    """Install `PaperAttnProcessor` on `model`'s attention layers (all, or those `layers(name)` accepts)
    and restore the original processor objects on exit, whatever happens inside the block."""
    state = state or HookState()
    modules = attention_modules(model)
    original = {name: module.processor for name, module in modules.items()}
    try:
        for name, module in modules.items():
            if layers is None or layers(name):
                module.set_processor(PaperAttnProcessor(name, hooks, state))
        yield state
    finally:
        for name, module in modules.items():
            module.set_processor(original[name])


def installed_processors(model: torch.nn.Module) -> dict:
    """Name -> processor object, to check that a model was restored exactly."""
    return {name: module.processor for name, module in attention_modules(model).items()}
