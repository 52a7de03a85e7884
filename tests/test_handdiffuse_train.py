"""HandDiffuse trainer (models/handdiffuse/train.py) on a tiny config: the keyframe mask, the loss on a fixed
batch going down, the export loading back into an equal denoiser, bit-identical resume on the CPU, the
npz data layout and the command line's one-line errors."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from papernodes.models.common.errors import InputError
from papernodes.models.handdiffuse import train as T
from papernodes.models.handdiffuse.pipeline import features_to_joints, load_model
from papernodes.models.handdiffuse.world import make_clip

TINY = dict(width=32, heads=2, single_layers=1, interact_layers=1, max_frames=32, frames=12, world_clips=7,
            batch_size=4, lr=1e-3, ema_decay=0.0, save_every=0, cpu=True)  # fmt: skip


def _cfg(out, **kw) -> T.TrainConfig:
    return T.TrainConfig(out=str(out), **{**TINY, **kw})


def _state(m) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _log(out) -> list[dict]:
    return list(csv.DictReader((out / "log.csv").open()))


def test_keyframe_mask_frames_groups_and_probability():
    g = torch.Generator().manual_seed(0)
    known = T.keyframe_mask((400, 30, 2, 99), 0.5, g)
    per_sample = known.flatten(1).any(1)
    assert 0.4 < per_sample.float().mean() < 0.6  # keyframe_prob
    # a group's 6 (or 3) numbers are known together: a joint is given whole or not at all
    rot = known[..., :96].unflatten(-1, (16, 6))
    assert torch.equal(rot.all(-1), rot.any(-1))
    assert torch.equal(known[..., 96:].all(-1), known[..., 96:].any(-1))
    # keyframes are sparse frames: 2-20 % of the frames of a sample with keyframes (plus one forced)
    frames = known.any(-1).any(-1)[per_sample].float().mean(1)
    assert 0.02 <= frames.min() and frames.mean() < 0.2
    assert known.shape == (400, 30, 2, 99)
    assert torch.equal(T.keyframe_mask((3, 5, 2, 99), 0.0, g), torch.zeros(3, 5, 2, 99, dtype=torch.bool))


def test_features_to_joints_is_the_motions_forward_kinematics():
    clip = make_clip(0, 3)
    x = clip.to_features().double()
    x[..., 96:] /= 0.1
    torch.testing.assert_close(
        features_to_joints(x[None], 0.1)[0], clip.global_joints().double(), atol=1e-6, rtol=0
    )


def test_npz_layout_reads_back_the_joints(tmp_path):
    clip = make_clip(0, 1, torch.float64)
    joints = clip.global_joints().numpy()
    np.savez(tmp_path / "a.npz", joints=joints, fps=np.float64(30.0), label=np.str_("rub"))
    ((motion, label),) = T.load_npz_sequences(tmp_path)
    assert label == "rub"
    torch.testing.assert_close(motion.global_joints(), clip.global_joints(), atol=1e-9, rtol=0)
    np.savez(tmp_path / "b.npz", joints=joints[:, :, :20], fps=np.float64(30.0), label=np.str_("rub"))
    with pytest.raises(InputError, match="b.npz"):
        T.load_npz_sequences(tmp_path)
    with pytest.raises(InputError, match="data"):
        T.load_npz_sequences(tmp_path / "none")


def test_command_line_bad_option_is_one_line_error(tmp_path, capsys):
    assert T.main(["--out", str(tmp_path), "--frames", "0"]) == 2
    assert "frames" in capsys.readouterr().err


@pytest.mark.parametrize("offset", ["-0.001", "0.02"])
def test_clearance_offset_outside_the_contact_band_is_refused(tmp_path, capsys, offset):
    """A negative skin would aim the hands through each other; one at the margin would aim past contact."""
    assert T.main(["--out", str(tmp_path), "--clearance-offset", offset]) == 2
    assert "clearance_offset" in capsys.readouterr().err


@pytest.mark.slow  # trains
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(tmp_path):
    torch.manual_seed(0)
    method = T.HandDiffuseTraining(_cfg(tmp_path, keyframe_prob=0.5))

    class _Run:  # setup needs only these
        device = torch.device("cpu")

        class accelerator:
            prepare = staticmethod(lambda *a: a)
            unwrap_model = staticmethod(lambda m: m)

    method.setup(_Run())
    batch = {"x": torch.stack([method.dataset[i]["x"] for i in range(4)]),
             "label": torch.tensor([method.dataset[i]["label"] for i in range(4)])}  # fmt: skip

    def fixed_loss() -> float:
        with torch.no_grad():
            return float(method.losses(batch, torch.Generator().manual_seed(123))["loss"])

    before = fixed_loss()
    for _ in range(30):
        method.optimizer.zero_grad()
        method.losses(batch, torch.Generator().manual_seed(123))["loss"].backward()
        method.optimizer.step()
    after = fixed_loss()
    assert after < 0.7 * before, (before, after)


@pytest.mark.slow  # trains
def test_export_loads_back_and_resume_is_bit_identical(tmp_path):
    kw = dict(max_steps=4, save_every=2, ema_decay=0.9, max_grad_norm=1.0)
    full_path = T.train(_cfg(tmp_path / "full", **kw))
    loaded = load_model(full_path)
    assert loaded.config.labels[0] == "clap" and loaded.config.denoiser["width"] == 32
    # the export holds the EMA weights: a fresh denoiser from the file equals the saved state exactly
    from safetensors.torch import load_file

    assert _same(_state(loaded.denoiser), load_file(str(full_path)))

    part = tmp_path / "part"
    T.train(_cfg(part, **{**kw, "max_steps": 2}))
    seen = []
    resumed_path = T.train(_cfg(part, **{**kw, "resume": "latest"}), progress=lambda s, n, m: seen.append(s))
    assert seen == [3, 4]
    assert _same(load_file(str(resumed_path)), load_file(str(full_path)))
    assert [r["loss"] for r in _log(part)] == [r["loss"] for r in _log(tmp_path / "full")]


def test_smoothness_term_is_added_with_its_weight(tmp_path):
    """The loss with λ_smooth is the loss without it plus λ times smoothness_loss on the FK joints of the
    prediction (keyframes imputed) and of the data, weighted per sample like the v-loss."""
    torch.manual_seed(0)
    method = T.HandDiffuseTraining(_cfg(tmp_path, keyframe_prob=1.0, smoothness_weight=2.0))
    method.setup(_CpuRun())
    batch = {"x": torch.stack([method.dataset[i]["x"] for i in range(3)]),
             "label": torch.tensor([method.dataset[i]["label"] for i in range(3)])}  # fmt: skip
    with torch.no_grad():
        out = method.losses(batch, torch.Generator().manual_seed(7))
        method.cfg.smoothness_weight = 0.0
        plain = method.losses(batch, torch.Generator().manual_seed(7))
    assert "smoothness" not in plain and float(out["smoothness"]) > 0
    assert float(out["loss"]) == pytest.approx(
        float(plain["loss"]) + 2.0 * float(out["smoothness"]), rel=1e-6
    )


def test_position_term_is_the_weighted_fk_position_error_of_what_the_sampler_returns(tmp_path):
    """--position-weight adds λ_pos · losses.position_loss(FK(x0_pred with keyframes imputed), FK(x0),
    v-loss weight), computed here from the model's captured output."""
    from papernodes.models.handdiffuse.losses import position_loss
    from papernodes.models.handdiffuse.pipeline import features_to_joints, from_model_space

    torch.manual_seed(0)
    cfg = _cfg(
        tmp_path, keyframe_prob=1.0, smoothness_weight=0.0, interaction_weight=0.0, position_weight=4.0
    )
    method = T.HandDiffuseTraining(cfg)
    method.setup(_CpuRun())
    batch = {"x": torch.stack([method.dataset[i]["x"] for i in range(3)]),
             "label": torch.tensor([method.dataset[i]["label"] for i in range(3)])}  # fmt: skip
    captured, module = {}, method.module

    def spy(xt, tt, label):
        captured.update(xt=xt, t=tt, pred=module(xt, tt, label))
        return captured["pred"]

    method.module = spy
    with torch.no_grad():
        out = method.losses(batch, torch.Generator().manual_seed(7))
        known = captured["xt"] == batch["x"]  # imputed entries hold the clean values
        returned = torch.where(known, batch["x"], captured["pred"])
        joints = lambda x: features_to_joints(from_model_space(x, method.config), 1.0)  # noqa: E731
        weight = 1 / (1 - method.alphas_cumprod[captured["t"]]).clamp_min(1e-4)
        expected = position_loss(joints(returned), joints(batch["x"]), weight)
    assert known.any() and float(out["position"]) > 0
    assert float(out["position"]) == pytest.approx(float(expected), rel=1e-5)
    assert float(out["loss"]) == pytest.approx(float(out["mse"]) + 4.0 * float(out["position"]), rel=1e-6)
    with pytest.raises(InputError, match="position_weight"):
        _cfg(tmp_path, position_weight=-1.0).validate()
    method.cfg.position_frame = "right_wrist"  # the same term on both hands seen from the right wrist
    with torch.no_grad():
        rel = method.losses(batch, torch.Generator().manual_seed(7))["position"]
        seen = lambda x: features_to_joints(T.in_right_wrist_frame(from_model_space(x, method.config)), 1.0)  # noqa: E731
        expected_rel = position_loss(seen(returned), seen(batch["x"]), weight)
    assert float(rel) == pytest.approx(float(expected_rel), rel=1e-5)
    assert float(rel) != pytest.approx(float(out["position"]), rel=1e-3)


def test_relative_wrist_std_scale_shrinks_only_the_left_wrist_positions_std(tmp_path):
    """--relative-wrist-std-scale s: the exported config's std of the left wrist's relative position is s
    times the plain one and nothing else changes, so the sampler (which reads the config) adds s times the
    noise in metres there; out of (0, 1] it is refused."""
    plain = T.HandDiffuseTraining(_cfg(tmp_path / "a"))
    plain.setup(_CpuRun())
    scaled = T.HandDiffuseTraining(_cfg(tmp_path / "b", relative_wrist_std_scale=0.25))
    scaled.setup(_CpuRun())
    std_p, std_s = torch.tensor(plain.config.feature_std), torch.tensor(scaled.config.feature_std)
    torch.testing.assert_close(std_s[1, 96:], 0.25 * std_p[1, 96:], rtol=1e-6, atol=0)
    assert torch.equal(std_s[0], std_p[0]) and torch.equal(std_s[1, :96], std_p[1, :96])
    assert plain.config.feature_mean == scaled.config.feature_mean
    for bad in (0.0, 1.5):
        with pytest.raises(InputError, match="relative_wrist_std_scale"):
            _cfg(tmp_path, relative_wrist_std_scale=bad).validate()
    with pytest.raises(
        InputError, match="relative_wrist_std_scale"
    ):  # nothing to scale without standardising
        _cfg(tmp_path, relative_wrist_std_scale=0.5, standardize=False).validate()


def test_right_wrist_frame_is_the_world_joints_seen_from_the_right_wrist():
    """FK of in_right_wrist_frame(features) = R_r^T (X - p_r) of the world joints, R_r and p_r the right
    wrist's world rotation and position, for a world clip (computed apart from the features' layout)."""
    from papernodes.models.handdiffuse.rotations import sixd_to_matrix

    clip = make_clip(0, 2, torch.float64)
    x = clip.to_features()
    world = features_to_joints(x, 1.0)
    rot, pos = sixd_to_matrix(x[:, 0, :6]), world[:, 0, 0]  # joint 0 is the wrist
    expected = torch.einsum("tji,thkj->thki", rot, world - pos[:, None, None, :])
    torch.testing.assert_close(
        features_to_joints(T.in_right_wrist_frame(x), 1.0), expected, atol=1e-9, rtol=0
    )
    moved = x.clone()  # the right wrist's path through the room does not reach the loss
    moved[:, 0, 96:] += 0.3
    torch.testing.assert_close(
        features_to_joints(T.in_right_wrist_frame(moved), 1.0), expected, atol=1e-9, rtol=0
    )


def test_interaction_noise_weights_scale_each_sample_by_its_noise_level(tmp_path):
    """With `alpha_bar` the interaction term is losses.interaction_loss with sample_weight = ab_t of each
    sample's drawn timestep (the same draws as the run: seeded generator); `none` is the unweighted mean."""
    from papernodes.models.handdiffuse.losses import interaction_loss, penetration_loss
    from papernodes.models.handdiffuse.pipeline import features_to_joints, from_model_space

    torch.manual_seed(0)
    method = T.HandDiffuseTraining(_cfg(tmp_path, keyframe_prob=0.0, interaction_noise_weight="alpha_bar"))
    method.setup(_CpuRun())
    batch = {"x": torch.stack([method.dataset[i]["x"] for i in range(3)]),
             "label": torch.tensor([method.dataset[i]["label"] for i in range(3)])}  # fmt: skip
    t = torch.randint(0, len(method.alphas_cumprod), (3,), generator=torch.Generator().manual_seed(7))
    captured = {}
    module = method.module

    def spy(xt, tt, label):
        captured["pred"] = module(xt, tt, label)
        return captured["pred"]

    method.module = spy
    with torch.no_grad():
        weighted = method.losses(batch, torch.Generator().manual_seed(7))["interaction"]
        method.cfg.interaction_noise_weight = "none"
        plain = method.losses(batch, torch.Generator().manual_seed(7))["interaction"]
        joints = lambda x: features_to_joints(from_model_space(x, method.config), 1.0)  # noqa: E731
        pred, gt = joints(captured["pred"]), joints(batch["x"])
        ab = method.alphas_cumprod[t]
        expected = interaction_loss(pred, gt, sample_weight=ab)["total"]
        unweighted = interaction_loss(pred, gt)["total"]
    assert float(weighted) == pytest.approx(float(expected), rel=1e-5)
    assert float(plain) == pytest.approx(float(unweighted), rel=1e-5)
    assert float(weighted) < float(plain)  # every ab_t < 1
    method.cfg.interaction_noise_weight = "low_noise"  # the terms only below t = 200
    assert method._noise_weight(torch.tensor([0, 199, 200, 999]), "low_noise").tolist() == [1, 1, 0, 0]
    # the penetration term weighted on its own (ab_t) beside contact terms that act only below t = 200
    method.cfg.penetration_weight, method.cfg.clearance_weight = 10.0, 1.0
    low = (t < 200).to(ab.dtype)
    with torch.no_grad():
        method.cfg.penetration_noise_weight = "alpha_bar"
        split = method.losses(batch, torch.Generator().manual_seed(7))["interaction"]
        method.cfg.penetration_noise_weight = "same"
        same = method.losses(batch, torch.Generator().manual_seed(7))["interaction"]
        contact = interaction_loss(pred, gt, clearance_weight=1.0, sample_weight=low)["total"]
        expected_split = contact + 10.0 * penetration_loss(pred, gt, ab)
        expected_same = interaction_loss(
            pred, gt, penetration_weight=10.0, clearance_weight=1.0, sample_weight=low
        )
    assert float(split) == pytest.approx(float(expected_split), rel=1e-5)
    assert float(same) == pytest.approx(float(expected_same["total"]), rel=1e-5)
    assert float(split) != pytest.approx(float(same), rel=1e-3)  # the weighting reaches the loss


@pytest.mark.slow  # trains
def test_interaction_weight_zero_is_the_ablation(tmp_path):
    path = T.train(_cfg(tmp_path / "abl", max_steps=1, interaction_weight=0.0))
    assert path.is_file()
    rows = _log(tmp_path / "abl")
    assert len(rows) == 1 and float(rows[0]["loss"]) > 0


@pytest.mark.slow  # trains in a subprocess
def test_command_line_runs_from_the_repository_root(tmp_path):
    """`python -m models.handdiffuse.train` (the documented command) trains 1 step and exports a loadable model."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(T.__file__).resolve().parents[2]
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "models.handdiffuse.train", "--out", str(out), "--max-steps", "1", "--cpu"]
    for k, v in TINY.items():
        if k not in ("cpu", "ema_decay", "save_every"):
            cmd += [f"--{k.replace('_', '-')}", str(v)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == str(out / "final" / T.MODEL_FILE)
    assert load_model(out / "final" / T.MODEL_FILE).config.denoiser["width"] == 32


class _CpuRun:  # what setup needs
    device = torch.device("cpu")

    class accelerator:
        prepare = staticmethod(lambda *a: a)
        unwrap_model = staticmethod(lambda m: m)


def test_feature_term_is_the_v_loss_and_the_config_carries_the_statistics(tmp_path):
    """With the x0 skip, the feature term equals the MSE of the network's own output F against its target
    (x0 - sqrt(ab) x_t) / sqrt(1 - ab), computed here independently; features are standardised."""
    from papernodes.models.handdiffuse.sampler import q_sample

    torch.manual_seed(0)
    method = T.HandDiffuseTraining(
        _cfg(tmp_path, keyframe_prob=0.0, label_dropout=0.0, interaction_weight=0.0)
    )
    method.setup(_CpuRun())
    cfg = method.config
    assert cfg.denoiser["x0_skip"] and cfg.window == 12
    allf = torch.cat(method.dataset.feats)
    assert allf.mean(0).abs().max() < 1e-5  # standardised; entries below the std floor keep std < 1
    std = allf.std(0)
    assert (std <= 1 + 1e-4).all() and ((std - 1).abs() < 1e-4).float().mean() > 0.25
    batch = {"x": torch.stack([method.dataset[i]["x"] for i in range(4)]),
             "label": torch.tensor([method.dataset[i]["label"] for i in range(4)])}  # fmt: skip
    with torch.no_grad():
        loss = float(method.losses(batch, torch.Generator().manual_seed(5))["mse"])
        g = torch.Generator().manual_seed(5)  # replay the draws of `losses` in its order
        x0 = batch["x"]
        t = torch.randint(0, 1000, (4,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        label = T.drop_labels(batch["label"], 0.0, method.model.null_label, g)
        T.keyframe_mask(tuple(x0.shape), 0.0, g)
        ab = method.alphas_cumprod[t].reshape(-1, 1, 1, 1)
        xt = q_sample(x0, t, noise, method.alphas_cumprod)
        method.model.x0_skip = False  # the raw network output F
        f = method.model(xt, t, label)
        method.model.x0_skip = True
        target = (x0 - ab.sqrt() * xt) / (1 - ab).sqrt()
        assert loss == pytest.approx(float((f - target).square().mean()), rel=1e-4)


def test_lr_factor_is_constant_then_linear_to_the_final_fraction():
    f = [T.lr_factor(s, 4, 8, 0.1) for s in range(1, 9)]
    assert f[:4] == [1.0] * 4
    assert f[4:] == pytest.approx([0.775, 0.55, 0.325, 0.1])
    assert T.lr_factor(7, 0, 8, 0.1) == 1.0  # 0 = constant


@pytest.mark.slow  # trains
def test_cool_down_resumed_from_a_constant_run_equals_one_run(tmp_path):
    """The shipped generator's schedule: a constant-rate run, then resumed with a linear cool-down."""
    kw = dict(max_steps=4, save_every=2, ema_decay=0.9, lr_decay_from=2, lr_final=0.25)
    full_path = T.train(_cfg(tmp_path / "full", **kw))
    part = tmp_path / "part"
    T.train(_cfg(part, **{**kw, "max_steps": 2, "lr_decay_from": 0}))
    resumed_path = T.train(_cfg(part, **{**kw, "resume": "latest"}))
    from safetensors.torch import load_file

    assert _same(load_file(str(resumed_path)), load_file(str(full_path)))
    lrs = [float(r["lr"]) for r in _log(tmp_path / "full")]
    base = TINY.get("lr", T.TrainConfig.lr)
    assert lrs == pytest.approx([base, base, base * 0.625, base * 0.25])
