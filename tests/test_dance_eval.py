"""Dance-world evaluators and reproduce plumbing: PCK, clothes match and flicker measure what they claim."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from papernodes.models.proving_ground import dance_eval as de
from papernodes.models.proving_ground.dance_world import make_clip

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def clip():
    return make_clip(0, "train", 3, num_frames=6, size=64)


def test_pck_is_one_on_the_truth_and_drops_with_the_offset(clip):
    kp, vis = clip.keypoints[..., :2], clip.keypoints[..., 2] > 0
    assert de.pck(kp, kp, vis) == 1.0
    extent = max((kp[0][vis[0]].max(0) - kp[0][vis[0]].min(0)).max(), 1.0)
    # every frame's extent is within the figure's size: an offset of 0.05 x the smallest extent passes,
    # twice the largest fails everywhere
    extents = [(k[v].max(0) - k[v].min(0)).max() for k, v in zip(kp, vis)]
    assert de.pck(kp + np.array([0.05 * min(extents), 0]), kp, vis) == 1.0
    assert de.pck(kp + np.array([0.2 * max(extents), 0]), kp, vis) == 0.0
    assert extent > 20  # the figure fills most of the 64 px frame
    # invisible keypoints do not count, however wrong
    wrong = kp.copy()
    wrong[~vis] += 1000
    assert de.pck(wrong, kp, vis) == 1.0


def test_flicker_ignores_the_moving_figure_and_sees_background_changes(clip):
    frames, person = clip.frames, clip.depth > 0
    assert de.background_flicker(frames, person) == 0.0  # the world's background is static
    assert np.abs(np.diff(frames.astype(int), axis=0)).mean() > 0.5  # the figure does move
    noisy = frames.astype(np.float32) + np.random.default_rng(0).normal(0, 4, frames.shape)
    noisy = np.clip(noisy, 0, 255).astype(np.uint8)
    flicker = de.background_flicker(noisy, person)
    assert 3.0 < flicker < 6.0  # |N(0,4) - N(0,4)| has mean 4 * 2 / sqrt(pi) = 4.5
    # float frames in 0..1 (ComfyUI IMAGE) are measured in the same 0..255 units
    assert de.background_flicker(noisy / 255.0, person) == pytest.approx(flicker, rel=1e-5)


def test_pose_jitter_removes_the_controls_motion_and_sees_jumps(clip):
    kp, vis = clip.keypoints[..., :2].astype(float), clip.keypoints[..., 2] > 0
    assert np.abs(np.diff(kp, 2, axis=0)).max() > 0.1  # the dance accelerates: a raw measure would see it
    drift = np.arange(len(kp))[:, None, None] * np.array([0.7, -0.3]) + np.array([5.0, 2.0])
    assert de.pose_jitter(kp + drift, kp, vis) == pytest.approx(0.0, abs=1e-9)  # offset + constant drift
    # i.i.d. jumps of sigma per axis: a = n1 - 2 n2 + n3 has 6 sigma^2 per axis; |a| over two axes is
    # Rayleigh with scale sqrt(6) sigma, mean sqrt(6) sigma sqrt(pi / 2) = 3.07 sigma
    rng = np.random.default_rng(0)
    many = np.repeat(kp, 200, axis=0)[: 6 * 200]
    jumps = rng.normal(0, 1.5, many.shape)
    got = de.pose_jitter(many + jumps, many, np.repeat(vis, 200, axis=0)[: 6 * 200])
    assert got == pytest.approx(3.07 * 1.5, rel=0.03)
    wrong = kp.copy()
    wrong[~vis] += 1000  # a joint hidden in any of the three frames does not count
    assert de.pose_jitter(wrong, kp, vis) == 0.0
    with pytest.raises(ValueError, match=">= 3 frames"):
        de.pose_jitter(kp[:2], kp[:2], vis[:2])


def test_clothes_match_counts_frames_with_both_colours():
    pred = {"shirt": ["red", "red", "blue"], "trousers": ["blue", "green", "blue"]}
    assert de.clothes_match(pred, "red", "blue") == pytest.approx(1 / 3)


def test_evaluator_round_trips_and_reads_frames(tmp_path, clip):
    torch.manual_seed(0)
    model = de.DanceEvaluator(width=8).eval()
    path = de.save_evaluator(model, tmp_path / "ev.safetensors", {"note": "test"})
    loaded = de.load_evaluator(path)
    out = de.read_frames(loaded, clip.frames)
    ref = de.read_frames(model, clip.frames)
    assert np.array_equal(out["keypoints"], ref["keypoints"]) and out["shirt"] == ref["shirt"]
    assert (
        out["keypoints"].shape == (6, 18, 2)
        and (0 <= out["keypoints"]).all()
        and (out["keypoints"] <= 1).all()
    )
    with pytest.raises(ValueError, match="not a dance-world evaluator"):
        from safetensors.torch import save_file

        save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
        de.load_evaluator(tmp_path / "other.safetensors")


@pytest.mark.slow
def test_reproduce_plumbing_writes_files_the_pack_loads(tmp_path):
    """--quick: a few steps per stage; the outputs load through the users' loaders (AnimateDiff original
    layout with its schedule, diffusers U-Net folder, Video ControlNet folder, CLIP vision single file,
    IP-Adapter files, our evaluator)."""
    from diffusers import UNet2DConditionModel
    from papernodes.models.common.animatediff import load_motion_adapter, motion_schedule
    from papernodes.models.common.animatediff_layout import detect_layout
    from papernodes.models.common.image_prompt import load_clip_vision, load_ip_adapter
    from papernodes.models.common.loading import load_state_dict
    from papernodes.models.dreamoving.video_controlnet import load_video_controlnet
    from papernodes.models.proving_ground import dance_reproduce as dr

    out = tmp_path / "weights"
    code = dr.main(["--stages", "evaluator,image,motion,controlnet,guider", "--quick", "--weights", str(out),
                    "--cache", str(tmp_path / "cache")])  # fmt: skip
    assert code == 0
    de.load_evaluator(out / dr.EVALUATOR_FILE)
    unet = UNet2DConditionModel.from_pretrained(out / "unet")
    assert unet.config.cross_attention_dim == 96  # the world CLIP's width
    mm = out / dr.MOTION_MODULE_FILE
    assert detect_layout(load_state_dict(mm)) == "original"
    adapter = load_motion_adapter(mm)
    assert tuple(adapter.config.block_out_channels) == tuple(unet.config.block_out_channels)
    assert motion_schedule(adapter) == {"beta_schedule": "scaled_linear"}  # the dance image model's
    vcn = load_video_controlnet(out / dr.POSE_VCN_DIR)
    assert vcn.motion_modules is not None
    encoder = load_clip_vision(out / dr.CLIP_VISION_FILE)
    assert encoder.config.hidden_size == 128
    for file in dr.GUIDER_FILES.values():
        adapter = load_ip_adapter(out / file)
        adapter.bind(unet)  # fits the dance U-Net's cross-attention layers
        assert adapter.image_proj.proj.in_features == encoder.config.projection_dim


def test_shipped_evaluator_reads_held_out_frames():
    """The shipped evaluator (trained by `dance_reproduce --stages evaluator`) on held-out clips at 128 px:
    measured PCK@0.1 99.9 % and colours 100 % on 400 frames; here 16 frames, looser bounds."""
    from papernodes.models.proving_ground import dance_reproduce as dr

    model = de.load_evaluator(dr.SHIPPED / dr.EVALUATOR_FILE)
    clips = [make_clip(dr.EVAL_SEED, "heldout", 200 + i, num_frames=4, size=128) for i in range(4)]
    frames = np.concatenate([c.frames for c in clips])
    kps = np.concatenate([c.keypoints for c in clips])
    read = de.read_frames(model, frames)
    assert de.pck(read["keypoints"] * 128, kps[..., :2], kps[..., 2] > 0, 0.1) >= 0.9
    shirts = [c.person.shirt for c in clips for _ in range(4)]
    trousers = [c.person.trousers for c in clips for _ in range(4)]
    assert np.mean([a == b for a, b in zip(read["shirt"], shirts)]) >= 0.9
    assert np.mean([a == b for a, b in zip(read["trousers"], trousers)]) >= 0.9
    # on noise it finds no person where the world puts one: PCK far below
    noise = np.random.default_rng(0).integers(0, 256, frames.shape, dtype=np.uint8)
    assert de.pck(de.read_frames(model, noise)["keypoints"] * 128, kps[..., :2], kps[..., 2] > 0, 0.1) < 0.5
