"""InfEdit: exact reconstruction, DDCM math, token alignment, attention control schedule, local blend."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from papernodes.kernels.processor import AttentionHook, installed_processors
from papernodes.models.common import tiny
from papernodes.models.common.errors import InputError
from papernodes.models.infedit.align import align_sequences, token_alignment, word_token_positions
from papernodes.models.infedit.blend import local_blend, target_threshold, word_mask
from papernodes.models.infedit.control import BranchLayout, CrossAttentionControl, SelfAttentionControl
from papernodes.models.infedit.ddcm import ddcm_step
from papernodes.models.infedit.pipeline import InfEditPipeline, InfEditSettings


@pytest.fixture(scope="module")
def pipe():
    return InfEditPipeline(tiny.build_tiny_components(seed=0))


def _image(seed=0, h=32, w=48):
    return torch.rand(1, h, w, 3, generator=torch.Generator().manual_seed(seed))


# ----- DDCM --------------------------------------------------------------------------------------------


def test_ddcm_identical_branches_return_z0_exactly():
    g = torch.Generator().manual_seed(0)
    z0, x, eps, n = (torch.randn(1, 4, 8, 8, generator=g) for _ in range(4))
    for eta in (0.0, 0.5, 1.0):
        out = ddcm_step(x, x, eps, eps, z0, 0.3, 0.7, n, eta)
        torch.testing.assert_close(out.pred_x0, z0, atol=1e-6, rtol=0)
        torch.testing.assert_close(out.x_target, out.x_source, atol=0, rtol=0)


def test_ddcm_matches_float64_formula():
    g = torch.Generator().manual_seed(1)
    xs, xt, es, et, z0, n = (torch.randn(2, 4, 6, 6, generator=g, dtype=torch.float64) for _ in range(6))
    a_t, a_p, eta = 0.2, 0.6, 0.4
    ec = (xs - a_t**0.5 * z0) / (1 - a_t) ** 0.5
    x0 = z0 + ((xt - xs) - (1 - a_t) ** 0.5 * (et - es)) / a_t**0.5
    var = eta * (1 - a_p)
    d = (1 - a_p - var) ** 0.5 * ((et - es) + ec)
    out = ddcm_step(xs, xt, es, et, z0, a_t, a_p, n, eta)
    torch.testing.assert_close(out.pred_x0, x0)
    torch.testing.assert_close(out.x_target, a_p**0.5 * x0 + d + var**0.5 * n)
    torch.testing.assert_close(out.x_source, a_p**0.5 * z0 + d + var**0.5 * n)
    # eta = 1: the source is a fresh noising of z0, whatever the predictions
    out1 = ddcm_step(xs, xt, es, et, z0, a_t, a_p, n, 1.0)
    torch.testing.assert_close(out1.x_source, a_p**0.5 * z0 + (1 - a_p) ** 0.5 * n)


# ----- exact reconstruction -----------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 3, 6])
@pytest.mark.parametrize("seed", [0, 1])
def test_target_equal_to_source_reconstructs_z0(steps, seed):
    """Target prompt = source prompt (same guidance): the target latent is z0, at any steps and weights."""
    pipe = InfEditPipeline(tiny.build_tiny_components(seed=seed))
    s = InfEditSettings(
        steps=steps,
        source_guidance=1.5,
        target_guidance=1.5,
        seed=seed,
        source_blend_words="star",
        target_blend_words="star",
    )
    r = pipe(_image(seed), "a red star on stripes", ["a red star on stripes"], s)
    torch.testing.assert_close(r.latents, r.z0, atol=1e-5, rtol=0)
    torch.testing.assert_close(r.edited, r.reconstruction, atol=1e-5, rtol=0)


def test_edit_changes_the_image_and_source_guidance_one_works(pipe):
    r = pipe(_image(1), "a red star", ["a blue star"], InfEditSettings(steps=4, source_guidance=1.0))
    assert (r.edited - r.reconstruction).abs().mean() > 1e-4


def test_edit_list_shares_the_source_exactly(pipe):
    s = InfEditSettings(steps=3, seed=5)
    both = pipe(_image(2), "a red star", ["a blue star", "a red circle"], s)
    one = pipe(_image(2), "a red star", ["a red circle"], s)
    torch.testing.assert_close(both.edited[1], one.edited[0], atol=1e-4, rtol=0)  # batch-size float noise
    assert both.unet_evaluations == one.unet_evaluations == 3  # one batched call per step


def test_same_seed_same_edit(pipe):
    s = InfEditSettings(steps=3, seed=9)
    a = pipe(_image(3), "a cat", ["a dog"], s).edited
    b = pipe(_image(3), "a cat", ["a dog"], s).edited
    assert torch.equal(a, b)


# ----- token alignment ----------------------------------------------------------------------------------


def test_alignment_cases():
    # replacement: "a cat on a mat" -> "a dog on a mat": the swapped token is new, the rest aligned
    assert align_sequences([0, 1, 2, 3, 4], [0, 9, 2, 3, 4]) == [0, None, 2, 3, 4]
    # insertion: "a cat" -> "a big cat"
    assert align_sequences([0, 1, 2], [0, 7, 1, 2]) == [0, None, 1, 2]
    # deletion: "a big cat" -> "a cat"
    assert align_sequences([0, 7, 1, 2], [0, 1, 2]) == [0, 2, 3]
    # reordering: "cat and dog" -> "dog and cat": one order is kept, the moved word is new
    src, tgt = [5, 6, 7], [7, 6, 5]
    pairs = align_sequences(src, tgt)
    assert pairs.count(None) == 2  # a monotone alignment keeps one of the three in place
    assert all(src[i] == tgt[j] for j, i in enumerate(pairs) if i is not None)


def test_alignment_pads_and_alphas(pipe):
    tok = pipe.components.tokenizer
    src, tgt = tok("a photo of a cat").input_ids, tok("a photo of a small dog").input_ids
    al = token_alignment(src, tgt)
    assert al.alphas[:5].tolist() == [1, 1, 1, 1, 1]  # BOS a photo of a
    assert al.alphas[5:7].tolist() == [0, 0]  # small dog: new
    assert al.mapper[7] == len(src) - 1 and al.alphas[7] == 1  # EOS aligned to EOS
    assert al.mapper[len(tgt)] == len(src)  # first pad -> first pad
    assert word_token_positions(tok, "a photo of a small dog", "dog") == [6]
    with pytest.raises(ValueError, match="'horse'"):
        word_token_positions(tok, "a photo of a cat", "horse")


# ----- attention control, observed through a tiny U-Net -------------------------------------------------


class Spy(AttentionHook):
    """Runs after the controls: records which source rows ended up in each batch slot."""

    def __init__(self):
        self.calls = []

    def modify_qkv(self, call):
        self.calls.append(
            (call.state.progress, call.is_cross, call.q.clone(), call.k.clone(), call.v.clone())
        )


def _rows_equal(a, b):
    return torch.equal(a, b)


@torch.no_grad()
def test_self_attention_control_follows_the_schedule(pipe):
    from papernodes.kernels.processor import HookState, attention_hooks

    unet = pipe.components.unet
    lay = BranchLayout(num_targets=1, cfg=False)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 16, 16, generator=g)
    ctx = torch.randn(3, 77, 48, generator=g)
    # p = (step + 1) / num_steps; self replace acts while p < 0.3
    for step, num_steps, early in ((0, 10, True), (1, 10, True), (2, 10, False), (9, 10, False)):
        spy, raw = Spy(), Spy()
        state = HookState(step=step, num_steps=num_steps, latent_hw=(16, 16))
        with attention_hooks(unet, [raw, SelfAttentionControl(lay, 0.3), spy], state):
            unet(x, 10, ctx)
        for (_, is_cross, q0, k0, v0), (_, _, q, k, v) in zip(raw.calls, spy.calls):
            if is_cross:
                assert torch.equal(q, q0) and torch.equal(k, k0)
                continue
            s, t, m = 0, 1, 2
            assert torch.equal(q[t], q0[s] if early else q0[t])
            assert torch.equal(k[t], k0[s] if early else k0[t])
            assert torch.equal(v[t], v0[t])
            assert torch.equal(q[m], q0[s] if early else q0[t])  # layout: source Q early, mutual later
            assert torch.equal(k[m], k0[s]) and torch.equal(v[m], v0[s])
            assert torch.equal(q[s], q0[s]) and torch.equal(v[s], v0[s])


@torch.no_grad()
def test_cross_attention_replacement_only_on_target_cond_and_only_while_scheduled(pipe):
    from papernodes.kernels.processor import AttnCall, HookState

    lay = BranchLayout(num_targets=1, cfg=True)
    mapper = torch.arange(77)
    alphas = torch.zeros(77)
    alphas[:4] = 1
    ctl = CrossAttentionControl(
        lay, [mapper], [alphas], cross_replace=0.7, blend_resolution=None, collect_maps=False
    )
    g = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(6, 2, 16, 8, generator=g),
        torch.randn(6, 2, 77, 8, generator=g),
        torch.randn(6, 2, 77, 8),
    )
    for progress_step, expect in ((0, True), (6, True), (7, False)):
        state = HookState(step=progress_step, num_steps=10)
        call = AttnCall("x.attn2.processor", True, False, q, k, v, 8**-0.5, state)
        out = ctl.supplied_probs(call)
        if not expect:
            assert out is None
            continue
        probs, weights = out
        target_cond = lay.cond_offset + lay.target(0)
        assert torch.equal(weights[target_cond], alphas)
        assert weights[[i for i in range(6) if i != target_cond]].abs().sum() == 0  # layout, uncond untouched
        src = torch.softmax(q[3:4] @ k[3:4].transpose(-1, -2) * 8**-0.5, -1)[0]
        torch.testing.assert_close(probs[target_cond], src)


# ----- local blend --------------------------------------------------------------------------------------


def test_local_blend_takes_latents_from_the_named_branch():
    g = torch.Generator().manual_seed(0)
    x_t, x_m, x_s = (torch.randn(1, 4, 4, 4, generator=g) for _ in range(3))
    mask_e = torch.zeros(4, 4, dtype=torch.bool)
    mask_e[:2] = True
    mask_m = torch.zeros(4, 4, dtype=torch.bool)
    mask_m[:, :1] = True
    out = local_blend(x_t, x_m, x_s, mask_e, mask_m)
    for r in range(4):
        for c in range(4):
            expected = x_s if mask_m[r, c] else (x_t if mask_e[r, c] else x_m)
            assert torch.equal(out[..., r, c], expected[..., r, c])
    assert torch.equal(local_blend(x_t, x_m, x_s, None, None), x_t)


def test_word_mask_and_threshold():
    maps = torch.zeros(4, 77)
    maps[0, 5] = 2.0  # top-left cell attends to token 5
    maps[3, 5] = 1.0
    mask = word_mask(maps, [5], (2, 2), (4, 4), 0.6)
    assert mask[:2, :2].all() and not mask[2:, 2:].any() and not mask[:2, 2:].any()
    assert target_threshold(0.01, 0.6) == pytest.approx(1.5) and target_threshold(0.9, 0.6) == 0.6


# ----- robustness ---------------------------------------------------------------------------------------


def test_model_is_restored_after_an_edit_and_after_an_error(pipe):
    unet = pipe.components.unet
    original = installed_processors(unet)
    x = torch.randn(1, 4, 16, 16)
    ctx = torch.randn(1, 77, 48)
    before = unet(x, 10, ctx).sample
    pipe(_image(), "a cat", ["a dog"], InfEditSettings(steps=2))

    def boom(step, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipe(_image(), "a cat", ["a dog"], InfEditSettings(steps=3), progress=boom)
    assert all(installed_processors(unet)[n] is p for n, p in original.items())
    assert torch.equal(unet(x, 10, ctx).sample, before)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"source_prompt": ""}, "Input 'source_prompt'"),
        ({"target_prompts": ["  "]}, "Input 'target_prompt'"),
        ({"target_prompts": ["word " * 80]}, "at most 75 tokens"),
        ({"settings": InfEditSettings(steps=2, target_blend_words="horse")}, "Input 'target_blend_words'"),
        ({"settings": InfEditSettings(steps=0)}, "Input 'steps'"),
    ],
)
def test_bad_inputs_name_the_input(pipe, kwargs, match):
    args = {
        "images": _image(),
        "source_prompt": "a cat",
        "target_prompts": ["a dog"],
        "settings": InfEditSettings(steps=2),
        **kwargs,
    }
    with pytest.raises(InputError, match=match):
        pipe(**args)


# ----- leaving out the unconditional rows nothing reads -------------------------------------------------


def _unet_batch_sizes(pipe, image, source, targets, settings):
    sizes = []
    handle = pipe.components.unet.register_forward_pre_hook(lambda _m, args: sizes.append(args[0].shape[0]))
    try:
        result = pipe(image, source, targets, settings)
    finally:
        handle.remove()
    return result, sizes


@pytest.mark.parametrize("source_guidance", [1.0, 1.5])
def test_skipping_unused_rows_equals_running_every_row(pipe, source_guidance):
    """Source guidance 1: the source's and layouts' unconditional outputs are unused, so leaving them
    out (the source's only once self replace has ended) must change nothing but the batch size."""
    s = InfEditSettings(
        steps=6,
        seed=3,
        source_guidance=source_guidance,
        target_guidance=2.5,
        self_replace=0.3,
        source_blend_words="star",
        target_blend_words="circle",
    )
    targets = ["a red circle on stripes", "a blue circle on dots"]
    args = (_image(4), "a red star on stripes", targets)
    fast, fast_sizes = _unet_batch_sizes(pipe, *args, s)
    full, full_sizes = _unet_batch_sizes(pipe, *args, dataclasses.replace(s, skip_unused_rows=False))
    assert full_sizes == [10] * 6  # 2 halves x (source + 2 targets + 2 layouts)
    # p = (i + 1) / 6 < 0.3 only at step 0: uncond source + 2 uncond targets, then the targets alone
    assert fast_sizes == ([8] + [7] * 5 if source_guidance == 1.0 else full_sizes)
    for name in ("edited", "masks", "latents"):
        torch.testing.assert_close(getattr(fast, name), getattr(full, name), atol=2e-4, rtol=0)
    assert (full.edited - full.reconstruction).abs().mean() > 1e-3  # an edit happened: the check has teeth


def _source_rows(t: torch.Tensor) -> list[int]:
    """Which input row each batch slot holds (the inputs below carry their row index as every value)."""
    return t[:, 0, 0, 0].long().tolist()


def test_trimmed_layout_rows_and_self_attention_reads():
    lay = BranchLayout(num_targets=2, cfg=True, uncond_source=True, uncond_layouts=False)
    assert lay.uncond_branches == [0, 1, 2] and lay.cond_offset == 3
    uncond, cond = lay.halves()
    assert (uncond.source, uncond.targets, uncond.layouts) == (0, [1, 2], [])
    assert (cond.source, cond.targets, cond.layouts) == (3, [4, 5], [6, 7])
    late = BranchLayout(num_targets=1, cfg=True, uncond_source=False, uncond_layouts=False)
    assert late.uncond_branches == [1] and late.halves()[0].source is None

    from papernodes.kernels.processor import AttnCall, HookState

    q, k, v = (torch.arange(8.0).view(8, 1, 1, 1).expand(8, 1, 2, 2).clone() for _ in range(3))
    for step, early in ((0, True), (5, False)):
        call = AttnCall("x.attn1.processor", False, False, q, k, v, 1.0, HookState(step=step, num_steps=10))
        SelfAttentionControl(lay, 0.3).modify_qkv(call)
        src_u, src_c = 0, 3
        assert _source_rows(call.q) == ([src_u, src_u, src_u] if early else [0, 1, 2]) + (
            [src_c, src_c, src_c, src_c, src_c] if early else [3, 4, 5, 4, 5]
        )
        assert _source_rows(call.k) == ([0, 0, 0] if early else [0, 1, 2]) + (
            [3, 3, 3, 3, 3] if early else [3, 4, 5, 3, 3]
        )
        assert _source_rows(call.v) == [0, 1, 2, 3, 4, 5, 3, 3]
    q1, k1, v1 = (torch.zeros(4, 1, 2, 2) for _ in range(3))
    call = AttnCall("x.attn1.processor", False, False, q1, k1, v1, 1.0, HookState(step=0, num_steps=10))
    with pytest.raises(ValueError, match="source row was left out"):
        SelfAttentionControl(late, 0.3).modify_qkv(call)  # early, but the uncond source is missing
