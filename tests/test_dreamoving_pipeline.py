"""DreaMovingPipeline: exact identities (no control / α = 0 / one window), windows, seeds, restore, progress."""

from __future__ import annotations

import pytest
import torch
from papernodes.kernels.processor import attention_hooks, installed_processors
from papernodes.models.common import image_prompt as ipa
from papernodes.models.common import tiny
from papernodes.models.common.animatediff import (
    build_tiny_motion_adapter,
    motion_modules_enabled,
    run_motion_unet,
)
from papernodes.models.common.errors import InputError
from papernodes.models.common.text import encode_prompts
from papernodes.models.dreamoving.pipeline import ContentGuiderModels, DreaMovingPipeline
from papernodes.models.dreamoving.video_controlnet import POSE_SCALE, ControlSpec, VideoControlNet

torch.set_num_threads(1)
SIZE = 32  # px -> 4x4 latents
RUN = dict(
    prompt="a dancer", negative_prompt="blurry", height=SIZE, width=SIZE, steps=2, guidance=5.0, seed=3
)


@pytest.fixture(scope="module")
def comps():
    return tiny.build_tiny_components(seed=0)


@pytest.fixture(scope="module")
def pipe(comps):
    return DreaMovingPipeline(comps, build_tiny_motion_adapter(seed=1, zero_out=False))


@pytest.fixture(scope="module")
def vcn():
    from diffusers import ControlNetModel, UNet2DConditionModel

    torch.manual_seed(5)
    cn = ControlNetModel.from_unet(UNet2DConditionModel(**tiny.TINY_UNET))
    tiny._perturb(cn, torch.Generator().manual_seed(6), scale=0.1)  # zero convs become non-zero
    return VideoControlNet.from_motion_adapter(cn.eval(), build_tiny_motion_adapter(seed=2, zero_out=False))


@pytest.fixture(scope="module")
def guider_models(comps):
    clip = ipa.build_tiny_clip_vision(seed=3)
    return ContentGuiderModels(ipa.build_tiny_ip_adapter(comps.unet, "plain", clip, seed=4), None, clip)


def _frames(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _image(seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 40, 36, 3, generator=torch.Generator().manual_seed(seed))


def test_zero_strength_control_is_exactly_no_control(pipe, vcn):
    plain = pipe(num_frames=3, **RUN)
    off = pipe(num_frames=3, controls=[ControlSpec(vcn, _frames(3), scale=0.0)], **RUN)
    assert torch.equal(off, plain)
    on = pipe(num_frames=3, controls=[ControlSpec(vcn, _frames(3), scale=POSE_SCALE)], **RUN)
    assert (on - plain).abs().max() > 1e-4
    assert plain.shape == (3, SIZE, SIZE, 3) and 0 <= float(plain.min()) and float(plain.max()) <= 1


def test_zero_alphas_are_exactly_text_only(pipe, guider_models):
    plain = pipe(num_frames=2, **RUN)
    zero = guider_models.guider(_image(1), _image(2), face_scale=0.0, clothes_scale=0.0)
    assert torch.equal(pipe(num_frames=2, guider=zero, **RUN), plain)
    face = guider_models.guider(_image(1), None, face_scale=0.8)
    assert (pipe(num_frames=2, guider=face, **RUN) - plain).abs().max() > 1e-4
    # Without a clothes adapter the face adapter encodes the clothes image (same tokens for the same image).
    both = guider_models.guider(_image(1), _image(1), 1.0, 1.0)
    assert torch.equal(both.face.tokens, both.clothes.tokens) and both.clothes.adapter is guider_models.face


def _reference_single_pass(pipe, num_frames: int, guidance: float, seed: int) -> torch.Tensor:
    """The textbook loop on the whole clip: one CFG-batched motion U-Net call per step, no windows."""
    c = pipe.components
    text = encode_prompts(c, [RUN["negative_prompt"], RUN["prompt"]], "cpu")
    sched = pipe.scheduler("ddim")
    sched.set_timesteps(RUN["steps"])
    gen = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, 4, num_frames, SIZE // 8, SIZE // 8, generator=gen) * sched.init_noise_sigma
    with attention_hooks(pipe.unet, []):
        for t in sched.timesteps:
            x = sched.scale_model_input(latents, t)
            uncond, cond = run_motion_unet(pipe.unet, torch.cat([x, x]), t, text).chunk(2)
            latents = sched.step(uncond + guidance * (cond - uncond), t, latents, generator=gen).prev_sample
    return latents


def test_window_covering_all_frames_is_bit_identical_to_single_pass(pipe):
    ref = _reference_single_pass(pipe, 5, RUN["guidance"], RUN["seed"])
    for window in (5, 9):
        got = pipe(num_frames=5, window=window, overlap=2, decode=False, **RUN)
        assert torch.equal(got, ref)


def test_windows_blend_framewise_predictions_exactly_like_one_pass(pipe):
    """Motion blocks off: the U-Net is frame-wise, so windows only re-weight equal predictions."""
    run = {**RUN, "decode": False}
    with motion_modules_enabled(pipe.unet, False):
        single = pipe(num_frames=8, window=8, overlap=0, **run)
        windowed = pipe(num_frames=8, window=4, overlap=2, split=False, **run)
    torch.testing.assert_close(windowed, single, atol=1e-4, rtol=1e-4)  # batch-size rounding only
    with motion_modules_enabled(pipe.unet, False):
        split = pipe(num_frames=8, window=4, overlap=2, **run)  # frame-split: blends equal features
    torch.testing.assert_close(split, single, atol=1e-4, rtol=1e-4)
    # With motion blocks, frames interact within a window only: the result changes but stays finite.
    moving_single = pipe(num_frames=8, window=8, overlap=0, **run)
    moving_windows = pipe(num_frames=8, window=4, overlap=2, split=False, **run)
    assert torch.isfinite(moving_windows).all()
    assert (moving_windows - moving_single).abs().max() > 1e-4


def test_windowed_controls_use_each_windows_frames(pipe, vcn):
    """A control frame only steers its own frame: with motion off everywhere (U-Net and ControlNet),
    a windowed controlled run equals the single-pass controlled run."""
    spec = ControlSpec(vcn.without_motion(), _frames(6, seed=4), scale=1.0)
    run = {**RUN, "decode": False, "controls": [spec]}
    with motion_modules_enabled(pipe.unet, False):
        single = pipe(num_frames=6, window=6, overlap=0, **run)
        windowed = pipe(num_frames=6, window=3, overlap=1, split=False, **run)
        plain = pipe(num_frames=6, window=6, overlap=0, **{**run, "controls": []})
    torch.testing.assert_close(windowed, single, atol=1e-4, rtol=1e-4)  # batch-size rounding only
    assert (single - plain).abs().max() > 1e-4


def test_seeds_reproduce(pipe):
    a = pipe(num_frames=2, **RUN)
    assert torch.equal(a, pipe(num_frames=2, **RUN))
    assert (a - pipe(num_frames=2, **{**RUN, "seed": 4})).abs().max() > 1e-4
    # Ancestral sampling draws its per-step noise from the seeded generator too.
    anc = {**RUN, "scheduler": "euler_ancestral"}
    assert torch.equal(pipe(num_frames=2, **anc), pipe(num_frames=2, **anc))


def test_processors_restored_after_run_and_after_cancel(pipe, comps, guider_models):
    before = installed_processors(pipe.unet)
    guider = guider_models.guider(_image(), None, 0.7)
    pipe(num_frames=2, guider=guider, **RUN)
    after = installed_processors(pipe.unet)
    assert after.keys() == before.keys() and all(after[k] is before[k] for k in before)

    def cancel(done, total):
        if done == 2:
            raise InterruptedError("cancelled")

    with pytest.raises(InterruptedError):
        pipe(num_frames=2, guider=guider, progress=cancel, **RUN)
    after = installed_processors(pipe.unet)
    assert all(after[k] is before[k] for k in before)
    assert not any(hasattr(m, "motion_modules") for m in comps.unet.modules())  # the 2D U-Net is untouched


def test_progress_counts_windows_times_steps_then_decode(pipe):
    calls = []
    run = dict(num_frames=10, window=4, overlap=1, progress=lambda d, t: calls.append((d, t)), **RUN)
    pipe(split=False, **run)
    # windows of 4 with stride 3 over 10 frames: [0-3], [3-6], [6-9] -> 3 x 2 steps, then 2 decode chunks
    assert calls == [(k, 8) for k in range(1, 9)]
    calls.clear()
    pipe(**run)  # frame-split (default): one U-Net call per step, then 2 decode chunks
    assert calls == [(k, 4) for k in range(1, 5)]


def test_bad_inputs_name_the_input(pipe, vcn, guider_models):
    with pytest.raises(InputError, match="num_frames"):
        pipe(num_frames=0, **RUN)
    with pytest.raises(InputError, match=r"control 2 has 4 \(control 1: 3, control 2: 4\)"):
        pipe(num_frames=3, controls=[ControlSpec(vcn, _frames(3)), ControlSpec(vcn, _frames(4))], **RUN)
    with pytest.raises(InputError, match="num_frames = 5 frames"):
        pipe(num_frames=5, controls=[ControlSpec(vcn, _frames(3))], **RUN)
    with pytest.raises(InputError, match="'height'.*multiple of 8"):
        pipe(num_frames=2, **{**RUN, "height": 36})
    with pytest.raises(InputError, match="context_window"):
        pipe(num_frames=40, window=33, overlap=4, **RUN)
    with pytest.raises(InputError, match="'face_image'.*MASK"):
        guider_models.guider(torch.zeros(1, 32, 32))
    with pytest.raises(InputError, match="'clothes_image'.*one reference"):
        guider_models.guider(None, torch.zeros(2, 32, 32, 3))
    with pytest.raises(InputError, match="'clothes_image'"):
        guider_models.guider(None, "photo.png")
