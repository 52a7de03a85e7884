"""The hookable processor: exact without hooks, each hook's math, and leak-free install/restore."""

from __future__ import annotations

import pytest
import torch
from papernodes.kernels.processor import AttentionHook, HookState, attention_hooks, installed_processors
from papernodes.kernels.reference import Context
from papernodes.models.common import tiny


@pytest.fixture(scope="module")
def unet():
    return tiny.build_tiny_components(seed=0).unet


def _inputs(seed=0, batch=2):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 4, 16, 16, generator=g), torch.randn(batch, 77, 48, generator=g)


@torch.no_grad()
def test_no_hooks_equals_diffusers_default_processor(unet):
    x, ctx = _inputs()
    before = unet(x, 10, ctx).sample
    with attention_hooks(unet, []):
        ours = unet(x, 10, ctx).sample
    torch.testing.assert_close(ours, before, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_restore_is_exact_after_success_error_and_interrupt(unet):
    x, ctx = _inputs(1)
    original = installed_processors(unet)
    before = unet(x, 10, ctx).sample

    class Boom(AttentionHook):
        def __init__(self, exc):
            self.exc = exc

        def modify_qkv(self, call):
            raise self.exc

    for exc in (RuntimeError("hook failed"), KeyboardInterrupt()):  # ComfyUI's interrupt is an exception too
        with pytest.raises(type(exc)), attention_hooks(unet, [Boom(exc)]):
            unet(x, 10, ctx)
        assert all(installed_processors(unet)[n] is p for n, p in original.items())
    with attention_hooks(unet, []):
        unet(x, 10, ctx)
    assert all(installed_processors(unet)[n] is p for n, p in original.items())
    assert torch.equal(unet(x, 10, ctx).sample, before)


class Capture(AttentionHook):
    def __init__(self):
        self.maps = {}

    def wants_probs(self, call):
        return call.is_cross

    def on_probs(self, call, probs):
        self.maps.setdefault(call.layer, []).append((call.state.step, call.resolution, probs))


@torch.no_grad()
def test_capture_maps_per_layer_step_and_resolution(unet):
    x, ctx = _inputs(2)
    hook = Capture()
    with attention_hooks(unet, [hook], HookState(num_steps=2, latent_hw=(16, 16))) as state:
        for step in range(2):
            state.step = step
            unet(x, 10, ctx)
    cross_layers = [n for n in unet.attn_processors if "attn2" in n]
    assert sorted(hook.maps) == sorted(cross_layers)
    for layer, entries in hook.maps.items():
        assert [e[0] for e in entries] == [0, 1]
        res = entries[0][1]
        assert res == (
            (16, 16) if layer.startswith("down_blocks.0") or layer.startswith("up_blocks.1") else (8, 8)
        )
        probs = entries[0][2]
        assert probs.shape == (2, res[0] * res[1], 77)
        torch.testing.assert_close(probs.sum(-1), torch.ones_like(probs.sum(-1)), atol=1e-5, rtol=0)


class ReplaceFromBranch0(AttentionHook):
    """Prompt-to-Prompt style: branch 1's cross-attention maps become branch 0's (weights per token)."""

    def __init__(self, weights):
        self.weights = weights

    def supplied_probs(self, call):
        if not call.is_cross:
            return None
        scores = call.q[:1] @ call.k[:1].transpose(-1, -2) * call.scale
        src = torch.softmax(scores, -1)
        probs = torch.cat([src, src])  # branch 0 keeps its own maps (w applies to both: identical)
        return probs, self.weights


@torch.no_grad()
def test_replacing_maps_with_the_same_prompt_changes_nothing(unet):
    """Invariant: target prompt = source prompt -> replacing its maps by the source's is the identity."""
    x, ctx = _inputs(3)
    x = torch.cat([x[:1], x[:1]])
    ctx = torch.cat([ctx[:1], ctx[:1]])
    plain = unet(x, 10, ctx).sample
    with attention_hooks(unet, [ReplaceFromBranch0(torch.ones(77))]):
        replaced = unet(x, 10, ctx).sample
    torch.testing.assert_close(replaced, plain, atol=1e-5, rtol=1e-5)
    other_ctx = torch.cat([ctx[:1], _inputs(9)[1][:1]])  # a different target prompt: maps now matter
    with attention_hooks(unet, [ReplaceFromBranch0(torch.ones(77))]):
        replaced = unet(x, 10, other_ctx).sample
    assert not torch.allclose(replaced[1], unet(x, 10, other_ctx).sample[1], atol=1e-4)


def _attn_module(unet, name="down_blocks.0.attentions.0.transformer_blocks.0.attn1"):
    return unet.get_submodule(name)


def _manual(attn, hs, ctx_q, ctx_kv):
    q = attn.to_q(ctx_q)
    k, v = attn.to_k(ctx_kv), attn.to_v(ctx_kv)
    h = attn.heads
    split = lambda t: t.view(t.shape[0], -1, h, t.shape[-1] // h).transpose(1, 2)  # noqa: E731
    o = torch.softmax(split(q) @ split(k).transpose(-1, -2) * attn.scale, -1) @ split(v)
    o = o.transpose(1, 2).reshape(o.shape[0], -1, o.shape[1] * o.shape[3])
    return attn.to_out[0](o)


@torch.no_grad()
def test_swap_kv_between_branches(unet):
    attn = _attn_module(unet)
    hs = torch.randn(2, 64, 32, generator=torch.Generator().manual_seed(0))

    class TargetUsesSourceKV(AttentionHook):
        def modify_qkv(self, call):
            call.k = torch.cat([call.k[:1], call.k[:1]])
            call.v = torch.cat([call.v[:1], call.v[:1]])

    with attention_hooks(unet, [TargetUsesSourceKV()]):
        out = attn(hs)
    torch.testing.assert_close(out[1:], _manual(attn, hs, hs[1:], hs[:1]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[:1], _manual(attn, hs, hs[:1], hs[:1]), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_extra_contexts_add_weighted_image_prompt_attention(unet):
    attn = _attn_module(unet, "down_blocks.0.attentions.0.transformer_blocks.0.attn2")
    g = torch.Generator().manual_seed(1)
    hs, text = torch.randn(1, 64, 32, generator=g), torch.randn(1, 77, 48, generator=g)
    img_k, img_v = torch.randn(1, 8, 4, 4, generator=g), torch.randn(1, 8, 4, 4, generator=g)

    class ImagePrompt(AttentionHook):
        def extra_contexts(self, call):
            return [Context(img_k, img_v, 0.7)] if call.is_cross else []

    with attention_hooks(unet, [ImagePrompt()]):
        out = attn(hs, encoder_hidden_states=text)
    h = attn.heads
    q = attn.to_q(hs).view(1, -1, h, 4).transpose(1, 2)
    k = attn.to_k(text).view(1, -1, h, 4).transpose(1, 2)
    v = attn.to_v(text).view(1, -1, h, 4).transpose(1, 2)
    sm = lambda q, k, v: torch.softmax(q @ k.transpose(-1, -2) * attn.scale, -1) @ v  # noqa: E731
    o = sm(q, k, v) + 0.7 * sm(q, img_k, img_v)
    expected = attn.to_out[0](o.transpose(1, 2).reshape(1, -1, 32))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_override_hook_can_fold_frames_for_temporal_attention(unet):
    from papernodes.kernels import fold_frames, temporal_attention

    attn = _attn_module(unet)
    frames, b, n = 4, 1, 64
    hs = torch.randn(b * frames, n, 32, generator=torch.Generator().manual_seed(2))

    class OverFrames(AttentionHook):
        def override(self, call):
            bf, heads, tokens, d = call.q.shape
            fold = lambda t: fold_frames(t.transpose(1, 2).reshape(bf, tokens, heads * d), frames)  # noqa: E731
            split = lambda t: t.view(t.shape[0], frames, heads, d).transpose(1, 2)  # noqa: E731
            o = temporal_attention(split(fold(call.q)), split(fold(call.k)), split(fold(call.v)))
            o = o.transpose(1, 2).reshape(-1, frames, heads * d)  # [(B*N), F, C]
            o = o.view(b, tokens, frames, heads * d).permute(0, 2, 1, 3).reshape(bf, tokens, heads, d)
            return o.transpose(1, 2)

    with attention_hooks(unet, [OverFrames()]):
        out = attn(hs)
    folded = fold_frames(hs, frames)  # [(B*N), F, C]: each pixel's sequence over time
    per_pixel = _manual(attn, None, folded, folded)
    expected = per_pixel.view(b, n, frames, 32).permute(0, 2, 1, 3).reshape(b * frames, n, 32)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
