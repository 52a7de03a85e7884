"""DreaMoving Video ControlNet: ControlNet loading (diffusers folder / original single file), the Video
ControlNet forward (motion blocks after each block) against diffusers' ControlNetModel, inits, save/load,
and summing several controls with exact no-op behaviour at strength 0 or outside the step range."""

from __future__ import annotations

import copy

import pytest
import torch
from papernodes.models.common import controlnet as cnio
from papernodes.models.common import tiny
from papernodes.models.common.errors import InputError, WeightsFormatError, WeightsNotFoundError
from papernodes.models.dreamoving.video_controlnet import (
    DEPTH_SCALE,
    POSE_SCALE,
    ControlSpec,
    VideoControlNet,
    control_residuals,
    load_video_controlnet,
    save_video_controlnet,
)

torch.set_num_threads(1)
FRAMES, LATENT = 3, 8  # 8x8 latents -> 64x64 control images (the conditioning encoder downsamples by 8)


def _controlnet(seed: int):
    from diffusers import ControlNetModel, UNet2DConditionModel

    torch.manual_seed(seed)
    cn = ControlNetModel.from_unet(UNet2DConditionModel(**tiny.TINY_UNET))
    tiny._perturb(cn, torch.Generator().manual_seed(seed + 100), scale=0.1)  # zero convs become non-zero
    return cn.eval().requires_grad_(False)


def _adapter(seed: int, channels=(32, 64)):
    from diffusers import MotionAdapter

    torch.manual_seed(seed)
    adapter = MotionAdapter(block_out_channels=channels, motion_layers_per_block=2, motion_norm_num_groups=32)
    tiny._perturb(adapter, torch.Generator().manual_seed(seed + 100), scale=0.1)
    return adapter.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def pose_cn():
    return _controlnet(0)


@pytest.fixture(scope="module")
def depth_cn():
    return _controlnet(1)


@pytest.fixture(scope="module")
def unet():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(2)
    model = UNet2DConditionModel(**tiny.TINY_UNET)
    tiny._perturb(model, torch.Generator().manual_seed(3))
    return model.eval().requires_grad_(False)


def _inputs(videos: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    n = videos * FRAMES
    sample = torch.randn(n, 4, LATENT, LATENT, generator=g)
    text = torch.randn(n, 5, tiny.TINY_UNET["cross_attention_dim"], generator=g)
    cond = torch.rand(n, 3, 8 * LATENT, 8 * LATENT, generator=g)
    return sample, text, cond


def _frames(seed: int, count: int = FRAMES, size: int = 8 * LATENT):
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _assert_residuals_close(a, b, tol: float) -> None:
    (da, ma), (db, mb) = a, b
    assert len(da) == len(db)
    for x, y in zip(da, db):
        assert x.shape == y.shape
        assert (x - y).abs().max().item() <= tol
    assert (ma - mb).abs().max().item() <= tol


# Two distinct module instances with bit-equal weights are not bit-stable on the CPU: the kernel torch
# picks depends on more than the weights (measured: scaled_dot_product_attention takes its flash kernel
# when no input requires grad and the math kernel otherwise, so a freshly built, trainable Video ControlNet
# and its reloaded, frozen copy differ by up to 1.1e-5 on residuals of magnitude ~18, ~6e-7 relative).
# Weights are compared exactly; outputs of distinct instances within 1e-5 of the residual's magnitude:
# 15x above that float noise, far below what one wrong weight or key causes (>1e-2).
DISTINCT_INSTANCE_TOL = 1e-5


def _assert_same_function(a, b) -> None:
    """Residuals of two distinct instances holding the same weights (see DISTINCT_INSTANCE_TOL)."""
    (da, ma), (db, mb) = a, b
    assert len(da) == len(db)
    for x, y in zip([*da, ma], [*db, mb]):
        assert x.shape == y.shape
        assert (x - y).abs().max().item() <= DISTINCT_INSTANCE_TOL * max(1.0, y.abs().max().item())


# ----------------------------------------------------------------------------------------------------
# ControlNet loading
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "prefix,suffix", [("control_model.", ".safetensors"), ("", ".safetensors"), ("control_model.", ".pth")]
)
def test_single_file_loads_equal_to_diffusers_folder(pose_cn, tmp_path, prefix, suffix):
    pose_cn.save_pretrained(str(tmp_path / "folder"), safe_serialization=True)
    sd = cnio.controlnet_to_ldm(pose_cn, prefix)
    assert "input_hint_block.14.weight" in {k[len(prefix) :] for k in sd}  # the real files' layout
    assert f"{prefix}zero_convs.3.0.weight" in sd and f"{prefix}middle_block_out.0.bias" in sd
    single = tmp_path / f"cn{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": sd}, single)
    else:
        cnio.save_controlnet_single_file(pose_cn, single, prefix)
    from_folder = cnio.load_controlnet(tmp_path / "folder")
    from_file = cnio.load_controlnet(single)
    a, b = from_folder.state_dict(), from_file.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _config_diff(from_file, from_folder.config) == {}
    sample, text, cond = _inputs()
    out_a = from_folder(sample, 10, text, cond, return_dict=False)
    out_b = from_file(sample, 10, text, cond, return_dict=False)
    _assert_same_function(out_a, out_b)


def _config_diff(model, reference: dict) -> dict:
    """Config fields of `model` (those the shape inference sets) that differ from `reference`."""

    def norm(v):
        return list(v) if isinstance(v, (list, tuple)) else v

    inferred = cnio.infer_controlnet_config(cnio.strip_control_prefix(cnio.ldm_keys(model)))
    return {k: (norm(v), norm(reference[k])) for k, v in inferred.items() if norm(v) != norm(reference[k])}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cross_attention_dim": 768},  # SD1.5 (control_v11p_sd15_openpose / control_v11f1p_sd15_depth)
        {"cross_attention_dim": 1024, "attention_head_dim": [5, 10, 20, 20], "use_linear_projection": True},
    ],
    ids=["sd15", "sd21"],
)
def test_full_size_config_inferred_from_shapes(kwargs):
    """Real-size architectures on the meta device (no memory): every inferred field equals the true one."""
    from diffusers import ControlNetModel

    with torch.device("meta"):
        model = ControlNetModel(**kwargs)
    assert _config_diff(model, model.config) == {}
    keys = cnio.ldm_keys(model)
    assert "control_model.input_blocks.11.0.out_layers.3.weight" in keys  # SD's 12 encoder blocks
    assert "control_model.zero_convs.11.0.weight" in keys and "control_model.input_hint_block.14.bias" in keys


def test_full_checkpoint_keeps_only_its_controlnet(pose_cn, tmp_path):
    """Old ControlNet releases bundle SD (`model.diffusion_model.`) with `control_model.`: the latter is read."""
    sd = cnio.controlnet_to_ldm(pose_cn)
    sd["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(32, 4, 3, 3)
    loaded = cnio.controlnet_from_ldm(sd)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in pose_cn.state_dict().items())


def test_load_errors_name_file_and_expectation(pose_cn, tmp_path):
    with pytest.raises(WeightsNotFoundError, match="absent.safetensors"):
        cnio.load_controlnet(tmp_path / "absent.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsFormatError, match="config.json"):
        cnio.load_controlnet(tmp_path / "empty")
    comps = tiny.build_tiny_components(0)
    tiny.save_single_file(comps, tmp_path / "sd.safetensors")  # an SD checkpoint, not a ControlNet
    with pytest.raises(WeightsFormatError, match=r"sd\.safetensors.*input_hint_block"):
        cnio.load_controlnet(tmp_path / "sd.safetensors")
    sd = cnio.controlnet_to_ldm(pose_cn)
    del sd["control_model.zero_convs.2.0.weight"]
    with pytest.raises(WeightsFormatError, match="controlnet_down_blocks.2.weight"):
        cnio.controlnet_from_ldm(sd, source="broken.safetensors")
    (tmp_path / "cn.txt").write_text("x")
    with pytest.raises(WeightsFormatError, match=r"\.txt"):
        cnio.load_controlnet(tmp_path / "cn.txt")


# ----------------------------------------------------------------------------------------------------
# Video ControlNet forward
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("guess_mode", [False, True])
def test_forward_without_motion_equals_controlnet_model(pose_cn, guess_mode):
    sample, text, cond = _inputs(videos=2)
    ours = VideoControlNet(pose_cn, None)(
        sample, 10, text, cond, FRAMES, conditioning_scale=0.5, guess_mode=guess_mode
    )
    ref = pose_cn(sample, 10, text, cond, conditioning_scale=0.5, guess_mode=guess_mode, return_dict=False)
    _assert_residuals_close(ours, ref, 1e-6)
    assert ours[1].abs().max() > 1e-3  # the residuals are not trivially zero


def test_zero_init_equals_image_controlnet_frame_by_frame(pose_cn):
    # float64: batched and single-frame float32 convolutions differ by ~1e-6 on their own
    pose_cn = copy.deepcopy(pose_cn).double()
    vcn = VideoControlNet.zero_init(pose_cn)
    assert sorted(vcn.motion_modules) == ["down_0", "down_1", "mid"]
    assert all(vcn.motion_sources[k] == "zero-init" for k in vcn.motion_modules)
    assert all(
        "motion_modules" in name for name, _ in vcn.motion_modules.named_modules(prefix="motion_modules")
    )
    sample, text, cond = (x.double() for x in _inputs(videos=2))
    down, mid = vcn(sample, 10, text, cond, FRAMES, conditioning_scale=0.5)
    for j in range(sample.shape[0]):
        ref_down, ref_mid = pose_cn(
            sample[j : j + 1], 10, text[j : j + 1], cond[j : j + 1], conditioning_scale=0.5, return_dict=False
        )
        _assert_residuals_close(([d[j : j + 1] for d in down], mid[j : j + 1]), (ref_down, ref_mid), 1e-6)


def test_motion_adapter_init_copies_blocks_and_mixes_frames(pose_cn):
    adapter = _adapter(5)
    vcn = VideoControlNet.from_motion_adapter(pose_cn, adapter)
    assert vcn.motion_sources == {
        "down_0": "adapter.down_blocks.0.motion_modules.1",
        "down_1": "adapter.down_blocks.1.motion_modules.1",
        "mid": "adapter.mid_block.motion_modules.0",
    }
    for key, src in (
        ("down_0", adapter.down_blocks[0].motion_modules[1]),
        ("down_1", adapter.down_blocks[1].motion_modules[1]),
        ("mid", adapter.mid_block.motion_modules[0]),
    ):
        ours = vcn.motion_modules[key].state_dict()
        assert all(torch.equal(v, ours[k]) for k, v in src.state_dict().items())

    sample, text, cond = _inputs(videos=2)
    base = vcn(sample, 10, text, cond, FRAMES)
    changed = cond.clone()
    changed[0] = torch.rand(changed[0].shape, generator=torch.Generator().manual_seed(9))  # video 0, frame 0
    moved = vcn(sample, 10, text, changed, FRAMES)
    # Frame 2 of video 0 sees frame 0 through the motion blocks ...
    assert (moved[1][2] - base[1][2]).abs().max() > 1e-4
    assert (moved[0][-1][2] - base[0][-1][2]).abs().max() > 1e-4
    # ... the image ControlNet does not, and the second video is untouched either way (batch-major frames).
    still = vcn.without_motion()
    assert torch.equal(
        still(sample, 10, text, cond, FRAMES)[1][2], still(sample, 10, text, changed, FRAMES)[1][2]
    )
    for b, m in zip(base[0] + [base[1]], moved[0] + [moved[1]]):
        assert (b[FRAMES:] - m[FRAMES:]).abs().max() <= 1e-6
    # The first residual (conv_in + hint, before any block) has no motion block: frame-local.
    assert torch.equal(base[0][0][1:], moved[0][0][1:])


def test_motion_adapter_channel_mismatch_zero_inits(pose_cn):
    adapter = _adapter(6, channels=(64, 64))  # level 0 does not fit the 32-channel ControlNet level
    vcn = VideoControlNet.from_motion_adapter(pose_cn, adapter)
    assert vcn.motion_sources["down_0"] == "zero-init"
    assert vcn.motion_sources["down_1"] == "adapter.down_blocks.1.motion_modules.1"
    assert torch.count_nonzero(vcn.motion_modules["down_0"].proj_out.weight) == 0


def test_timestep_and_text_forms_agree(pose_cn):
    vcn = VideoControlNet.from_motion_adapter(pose_cn, _adapter(5))
    sample, text, cond = _inputs(videos=2)
    a = vcn(sample, 10, text, cond, FRAMES)
    b = vcn(sample, torch.tensor([10, 10]), text, cond, FRAMES)
    c = vcn(sample, torch.full((2 * FRAMES,), 10), text, cond, FRAMES)
    _assert_residuals_close(a, b, 0.0)
    _assert_residuals_close(a, c, 0.0)
    with pytest.raises(InputError, match="num_frames"):
        vcn(sample, 10, text, cond, 4)
    short = VideoControlNet.zero_init(pose_cn, max_seq_length=2)  # AnimateDiff v1 has 24 positions, v2 32
    with pytest.raises(InputError, match="at most 2 frames per window"):
        short(sample, 10, text, cond, FRAMES)


# ----------------------------------------------------------------------------------------------------
# Save / load
# ----------------------------------------------------------------------------------------------------


def test_save_load_roundtrip(pose_cn, tmp_path):
    vcn = VideoControlNet.from_motion_adapter(pose_cn, _adapter(5))
    save_video_controlnet(vcn, tmp_path / "vcn")
    loaded = load_video_controlnet(tmp_path / "vcn")
    assert loaded.motion_sources == vcn.motion_sources
    a, b = vcn.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sample, text, cond = _inputs()
    _assert_same_function(vcn(sample, 7, text, cond, FRAMES), loaded(sample, 7, text, cond, FRAMES))
    (tmp_path / "vcn" / "motion_blocks.safetensors").unlink()
    with pytest.raises(WeightsFormatError, match="motion_blocks.safetensors"):
        load_video_controlnet(tmp_path / "vcn")


def test_plain_controlnet_loads_as_zero_init_video_controlnet(pose_cn, tmp_path):
    path = cnio.save_controlnet_single_file(pose_cn, tmp_path / "control_v11p_sd15_openpose.safetensors")
    vcn = load_video_controlnet(path)
    assert vcn.motion_modules is not None and set(vcn.motion_sources.values()) == {"zero-init"}
    sample, text, cond = _inputs()
    ours = vcn(sample, 7, text, cond, FRAMES)
    _assert_residuals_close(ours, pose_cn(sample, 7, text, cond, return_dict=False), 1e-6)
    # Zero-init motion blocks are exact identities: bit-equal to the same model without them.
    _assert_residuals_close(ours, vcn.without_motion()(sample, 7, text, cond, FRAMES), 0.0)
    with pytest.raises(WeightsNotFoundError):
        load_video_controlnet(tmp_path / "missing")


# ----------------------------------------------------------------------------------------------------
# Several controls
# ----------------------------------------------------------------------------------------------------


def _unet_out(unet, sample, text, residuals):
    kw = {}
    if residuals is not None:
        kw = dict(down_block_additional_residuals=residuals[0], mid_block_additional_residual=residuals[1])
    return unet(sample, 10, text, **kw).sample


def test_strength_zero_or_outside_range_is_exactly_no_control(unet, pose_cn, depth_cn):
    sample, text, _ = _inputs(videos=2)
    plain = _unet_out(unet, sample, text, None)
    pose = VideoControlNet.from_motion_adapter(pose_cn, _adapter(5))
    off = [
        ControlSpec(pose, _frames(1), scale=0.0),
        ControlSpec(depth_cn, _frames(2), scale=DEPTH_SCALE, start_percent=0.0, end_percent=0.4),
    ]
    res = control_residuals(off, sample, 10, 0.5, text[::FRAMES], FRAMES)
    assert res is None
    assert torch.equal(_unet_out(unet, sample, text, res), plain)

    on = ControlSpec(pose, _frames(1), scale=POSE_SCALE)
    alone = control_residuals([on], sample, 10, 0.5, text, FRAMES)
    with_off = control_residuals([on, *off], sample, 10, 0.5, text, FRAMES)
    _assert_residuals_close(alone, with_off, 0.0)
    controlled = _unet_out(unet, sample, text, alone)
    assert (controlled - plain).abs().max() > 1e-4
    # Range ends are inclusive: at exactly end_percent the depth control acts.
    assert control_residuals(off[1:], sample, 10, 0.4, text, FRAMES) is not None


def test_two_controls_sum(pose_cn, depth_cn):
    sample, text, _ = _inputs(videos=2)
    pose = ControlSpec(
        VideoControlNet.from_motion_adapter(pose_cn, _adapter(5)), _frames(1), scale=POSE_SCALE
    )
    depth = ControlSpec(depth_cn, _frames(2), scale=DEPTH_SCALE)
    both = control_residuals([pose, depth], sample, 10, 0.0, text[::FRAMES], FRAMES)
    p = control_residuals([pose], sample, 10, 0.0, text[::FRAMES], FRAMES)
    d = control_residuals([depth], sample, 10, 0.0, text[::FRAMES], FRAMES)
    _assert_residuals_close(both, ([a + b for a, b in zip(p[0], d[0])], p[1] + d[1]), 1e-6)
    # A plain ControlNetModel in a spec is the image ControlNet at that scale, frame by frame.
    per_frame_text = text[::FRAMES].repeat_interleave(FRAMES, dim=0)  # one prompt per video, as above
    cond = depth.frames.repeat(2, 1, 1, 1)
    ref = depth_cn(sample, 10, per_frame_text, cond, conditioning_scale=DEPTH_SCALE, return_dict=False)
    _assert_residuals_close(d, ref, 1e-6)


def test_control_frames_resized_and_windowed(pose_cn):
    sample, text, _ = _inputs()
    full = _frames(3, count=5)
    window = [1, 2, 4]
    a = control_residuals([ControlSpec(pose_cn, full)], sample, 10, 0.0, text, FRAMES, frame_indices=window)
    b = control_residuals([ControlSpec(pose_cn, full[window])], sample, 10, 0.0, text, FRAMES)
    _assert_residuals_close(a, b, 0.0)
    small = _frames(4, size=4 * LATENT)
    resized = torch.nn.functional.interpolate(
        small, size=(8 * LATENT,) * 2, mode="bilinear", align_corners=False
    )
    c = control_residuals([ControlSpec(pose_cn, small)], sample, 10, 0.0, text, FRAMES)
    d = control_residuals([ControlSpec(pose_cn, resized)], sample, 10, 0.0, text, FRAMES)
    _assert_residuals_close(c, d, 0.0)


def test_bad_inputs(pose_cn, depth_cn):
    sample, text, _ = _inputs()
    with pytest.raises(InputError, match=r"3 frames.*4 frames"):
        control_residuals(
            [ControlSpec(pose_cn, _frames(1)), ControlSpec(depth_cn, _frames(2, count=4))],
            sample,
            10,
            0.0,
            text,
            FRAMES,
        )
    with pytest.raises(InputError, match="0 frames"):
        ControlSpec(pose_cn, torch.zeros(0, 3, 64, 64))
    with pytest.raises(InputError, match="4 channels"):
        ControlSpec(pose_cn, torch.zeros(FRAMES, 4, 64, 64))
    with pytest.raises(InputError, match=r"\[F, 3, H, W\]"):
        ControlSpec(pose_cn, torch.zeros(3, 64, 64))
    with pytest.raises(InputError, match="start_percent"):
        ControlSpec(pose_cn, _frames(1), start_percent=0.8, end_percent=0.2)
    spec = ControlSpec(pose_cn, _frames(1))
    spec.frames = torch.zeros(0, 3, 64, 64)  # mutated after construction: still caught
    with pytest.raises(InputError, match="0 frames"):
        control_residuals([spec], sample, 10, 0.0, text, FRAMES)
    with pytest.raises(InputError, match=r"3 frames \(the video length\)"):
        control_residuals([ControlSpec(pose_cn, _frames(1, count=5))], sample, 10, 0.0, text, FRAMES)
    with pytest.raises(InputError, match="text"):
        control_residuals([ControlSpec(pose_cn, _frames(1))], sample, 10, 0.0, text[:2], FRAMES)
