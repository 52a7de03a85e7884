"""Frame-split sampling (`common.frame_split`): FreeNoise's split of spatial and temporal layers.

Pinned: window spans equal the whole-U-Net windows'; the windowed motion blend equals a float64 naive
blend; chunking a frame-wise module changes nothing; without overlap the split sampler equals the
whole-U-Net windows bit for bit (controls and Content Guider included); with overlap the two differ by
second order in the motion blocks' strength (stated tolerance); no layer ever sees more than a chunk
(spatial) or a window (temporal) of frames; nothing stays patched.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from papernodes.models.common import frame_split as fs
from papernodes.models.common import image_prompt as ipa
from papernodes.models.common import tiny
from papernodes.models.common.animatediff import build_tiny_motion_adapter, motion_modules_enabled
from papernodes.models.common.errors import InputError
from papernodes.models.dreamoving.pipeline import ContentGuiderModels, DreaMovingPipeline
from papernodes.models.dreamoving.video_controlnet import ControlSpec, VideoControlNet
from papernodes.models.dreamoving.windows import context_windows, window_weights

torch.set_num_threads(1)
SIZE = 32
RUN = dict(
    prompt="a dancer",
    negative_prompt="blurry",
    height=SIZE,
    width=SIZE,
    steps=2,
    guidance=5.0,
    seed=3,
    decode=False,
)


@pytest.fixture(scope="module")
def comps():
    return tiny.build_tiny_components(seed=0)


def _adapter(scale: float = 1.0):
    adapter = build_tiny_motion_adapter(seed=1, zero_out=False)
    with torch.no_grad():
        for name, p in adapter.named_parameters():
            if ".proj_out." in name:
                p.mul_(scale)  # the motion blocks' contribution x scale
    return adapter


@pytest.fixture(scope="module")
def pipe(comps):
    return DreaMovingPipeline(comps, _adapter())


@pytest.fixture(scope="module")
def nets():
    torch.manual_seed(5)
    cn = ControlNetModel.from_unet(UNet2DConditionModel(**tiny.TINY_UNET))
    tiny._perturb(cn, torch.Generator().manual_seed(6), scale=0.1)
    cn.eval()
    vcn = VideoControlNet.from_motion_adapter(cn, build_tiny_motion_adapter(seed=2, zero_out=False))
    return cn, vcn


def _frames(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "frames,window,overlap", [(5, 8, 2), (16, 16, 4), (40, 16, 4), (128, 16, 4), (12, 4, 0), (10, 4, 3)]
)
def test_spans_are_the_whole_unet_windows(frames, window, overlap):
    spans = fs.frame_windows(frames, window, overlap)
    assert [list(range(s, e)) for s, e in spans] == context_windows(frames, window, overlap)
    assert torch.equal(fs.pyramid(7), window_weights(7, "pyramid"))


def test_windowed_blend_equals_a_float64_naive_blend():
    """A stand-in motion block (frames mixed within a window, position-dependent) against a naive loop."""
    torch.manual_seed(0)
    videos, frames, window, overlap = 2, 11, 4, 2
    x = torch.randn(videos * frames, 3, 2, 2)

    def block(h, enc=None, t=None, c=None, num_frames=1, kw=None):
        v = h.reshape(-1, num_frames, *h.shape[1:])
        pos = torch.arange(num_frames, dtype=h.dtype).view(1, -1, 1, 1, 1)
        return (v + v.mean(dim=1, keepdim=True) * (1 + pos)).reshape(h.shape)

    got = fs.windowed_motion_forward(block, window, overlap)(x, num_frames=frames)
    xv = x.double().reshape(videos, frames, 3, 2, 2)
    acc = torch.zeros_like(xv)
    wsum = torch.zeros(frames, dtype=torch.float64)
    for idx in context_windows(frames, window, overlap):
        y = block(xv[:, idx].reshape(-1, 3, 2, 2), num_frames=len(idx)).reshape(videos, len(idx), 3, 2, 2)
        for k, f in enumerate(idx):
            w = min(k + 1, len(idx) - k)
            acc[:, f] += w * y[:, k]
            wsum[f] += w
    ref = (acc / wsum.view(1, -1, 1, 1, 1)).reshape(videos * frames, 3, 2, 2)
    torch.testing.assert_close(got.double(), ref, atol=1e-5, rtol=1e-5)  # float32 sums vs float64
    with pytest.raises(InputError, match="num_frames"):
        fs.windowed_motion_forward(block, window, overlap)(x, num_frames=5)


def test_chunking_a_framewise_module_changes_nothing():
    torch.manual_seed(1)
    block = UNet2DConditionModel(**tiny.TINY_UNET).down_blocks[0].resnets[0].eval()
    videos, frames = 2, 7
    x = torch.randn(videos * frames, block.in_channels, 4, 4)
    temb = torch.randn(videos * frames, block.time_emb_proj.in_features)
    with torch.no_grad():
        full = block(x, temb)
        chunked = fs.chunked_forward(block.forward, videos * frames, videos, chunk=3)(x, temb)
    torch.testing.assert_close(chunked, full, atol=1e-6, rtol=1e-6)  # batch-size rounding only


def test_split_equals_unet_windows_exactly_without_overlap(pipe, nets, comps):
    """Disjoint windows and chunks of one window: every layer sees the same batches, bit for bit."""
    cn, vcn = nets
    clip = ipa.build_tiny_clip_vision(seed=3)
    guider = ContentGuiderModels(
        ipa.build_tiny_ip_adapter(comps.unet, "plain", clip, seed=4), None, clip
    ).guider(torch.rand(1, 40, 36, 3, generator=torch.Generator().manual_seed(1)), None, 0.8)
    for controls, g in (
        ([], None),
        ([ControlSpec(vcn, _frames(12), scale=0.5)], guider),
        ([ControlSpec(cn, _frames(12), 0.5)], None),
    ):
        run = dict(num_frames=12, window=4, overlap=0, controls=controls, guider=g, **RUN)
        assert torch.equal(pipe(split=True, **run), pipe(split=False, **run))


def test_split_differs_from_unet_windows_by_second_order_in_motion(comps):
    """With overlap the layers after a motion block see blended frames (by design). Stated tolerance:
    the RMS difference from whole-U-Net windows is <= 15 % of the motion blocks' effect at full strength
    (measured 9.7 %), and shrinks faster than the effect itself (measured 1.1 % at strength 0.1)."""
    rms = lambda x: float(x.pow(2).mean().sqrt())  # noqa: E731
    ratios = {}
    for scale in (1.0, 0.1):
        pipe = DreaMovingPipeline(comps, _adapter(scale))
        run = dict(num_frames=20, window=8, overlap=3, **RUN)
        windows, split = pipe(split=False, **run), pipe(split=True, **run)
        with motion_modules_enabled(pipe.unet, False):
            still = pipe(split=False, **run)
        assert rms(split - windows) > 0  # overlap: not the same computation
        ratios[scale] = rms(split - windows) / rms(windows - still)
    assert ratios[1.0] <= 0.15
    assert ratios[0.1] <= ratios[1.0] / 4


def test_no_layer_sees_more_than_a_chunk_or_a_window(pipe, nets):
    """The memory bound, structurally: spatial attention batches <= CFG rows x chunk frames; temporal
    attention sequences <= one window; and 40 frames run although the positional table holds 32."""
    _, vcn = nets
    seen = {"spatial": 0, "temporal": 0}
    handles = []
    for root in (pipe.unet, vcn):
        for name, m in root.named_modules():
            if name.endswith("attn1") and "motion_modules" not in name:
                handles.append(
                    m.register_forward_pre_hook(
                        lambda m, a, kw: seen.__setitem__(
                            "spatial", max(seen["spatial"], (a[0] if a else kw["hidden_states"]).shape[0])
                        ),
                        with_kwargs=True,
                    )
                )  # noqa: E501
            elif name.endswith("attn1"):
                handles.append(
                    m.register_forward_pre_hook(
                        lambda m, a, kw: seen.__setitem__(
                            "temporal", max(seen["temporal"], (a[0] if a else kw["hidden_states"]).shape[1])
                        ),
                        with_kwargs=True,
                    )
                )  # noqa: E501
    try:
        out = pipe(
            num_frames=40,
            window=16,
            overlap=4,
            split=True,
            controls=[ControlSpec(vcn, _frames(40), 0.5)],
            **RUN,
        )
    finally:
        for h in handles:
            h.remove()
    assert torch.isfinite(out).all() and out.shape[2] == 40
    assert seen["spatial"] == 2 * 16  # CFG rows x chunk (= window) frames
    assert seen["temporal"] == 16


def test_nothing_stays_patched_also_after_errors(pipe, nets):
    _, vcn = nets
    modules = [pipe.unet, vcn]
    before = [(m, m.__dict__.get("forward")) for root in modules for m in root.modules()]
    with fs.frame_split(modules, num_frames=20, videos=2, window=8, overlap=2, chunk=8):
        assert fs.is_windowed(pipe.unet) and fs.is_windowed(vcn)
    assert not fs.is_windowed(pipe.unet)
    with pytest.raises(RuntimeError, match="boom"):
        with fs.frame_split(modules, num_frames=20, videos=2, window=8, overlap=2, chunk=8):
            raise RuntimeError("boom")
    after = [(m, m.__dict__.get("forward")) for root in modules for m in root.modules()]
    assert all(a[1] is b[1] for a, b in zip(before, after))

    def cancel(done, total):
        if done == 1:
            raise InterruptedError("cancelled")

    with pytest.raises(InterruptedError):
        pipe(num_frames=20, window=8, overlap=2, split=True, progress=cancel, **RUN)
    assert not fs.is_windowed(pipe.unet)
    with pytest.raises(InputError, match="chunk"):
        with fs.frame_split(modules, num_frames=20, videos=2, window=8, overlap=2, chunk=0):
            pass
