"""BiDiff's bidirectional parts on tiny configs: the ControlNet starts as a no-op, decoupled guidance at
scales 1 is the conditional prediction, views attend to each other, back-projection samples every view
where a point projects, the sampler is seeded (lazy start from a prior included), the file round trip, and
the joint trainer's loss goes down."""

from __future__ import annotations

import pytest
import torch
from papernodes.models.bidiff import pipeline as P
from papernodes.models.bidiff import train_bidiff as T
from papernodes.models.bidiff.grid_prior import GridPrior, GridPriorConfig, GridUNet
from papernodes.models.bidiff.multiview import MultiViewConfig
from papernodes.models.bidiff.volume import VolumeConfig, back_project, world_rig
from papernodes.models.common.camera import project
from papernodes.models.common.errors import InputError, WeightsFormatError

MV = MultiViewConfig(views=2, size=8, channels=(8, 16), emb=16, heads=2)
VOL = VolumeConfig(views=2, size=8, resolution=8, features=4, channels=(8, 16), emb=16, render_samples=8)


def _model(seed: int = 0, perturb: bool = True, controlnet: bool = True) -> P.BiDiffModel:
    torch.manual_seed(seed)
    model = P.BiDiffModel(MV, VOL).eval()
    if perturb:  # zero-initialised outputs would hide every path
        for name, p in model.named_parameters():
            if controlnet or "controlnet" not in name:
                p.data.add_(0.05 * torch.randn_like(p))
    return model


def _inputs(b: int = 2):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, 2, 3, 8, 8, generator=g)
    control = torch.rand(b, 2, 3, 8, 8, generator=g) * 2 - 1
    t = torch.tensor([10, 500])[:b]
    tokens = P.BiDiffModel.tokens(_model(perturb=False), ["a red cube", "a blue torus"][:b])
    return x, t, tokens, control


def test_a_fresh_controlnet_changes_nothing_and_a_trained_one_does():
    model = _model(controlnet=False)
    x, t, tokens, control = _inputs()
    with torch.no_grad():
        plain = model.multiview(x, t, tokens)
        assert torch.equal(model.multiview(x, t, tokens, control), plain)  # zero convolutions: exactly 0
        for p in model.multiview.controlnet.parameters():
            p.data.add_(0.05 * torch.randn_like(p))
        controlled = model.multiview(x, t, tokens, control)
        assert not torch.allclose(controlled, plain)
        # control_scale 0 for a sample is the no-3D branch for that sample only
        mixed = model.multiview(x, t, tokens, control, torch.tensor([1.0, 0.0]))
        torch.testing.assert_close(mixed[1], plain[1], atol=1e-6, rtol=0)
        torch.testing.assert_close(mixed[0], controlled[0], atol=1e-6, rtol=0)


def test_decoupled_guidance_at_scales_one_is_the_conditional_prediction():
    full, no_text, no_3d = torch.randn(3, 4, 5).unbind(0)
    torch.testing.assert_close(P.decoupled_guidance(full, no_text, no_3d, 1.0, 1.0), full, atol=0, rtol=0)
    out = P.decoupled_guidance(full, no_text, no_3d, 7.0, 3.0)
    torch.testing.assert_close(out, full + 6 * (full - no_text) + 2 * (full - no_3d))


def test_views_see_each_other_through_cross_view_attention():
    model = _model()
    x, t, tokens, _ = _inputs()
    with torch.no_grad():
        a = model.multiview(x, t, tokens)
        y = x.clone()
        y[:, 1] += 1.0  # change only the second view
        b = model.multiview(y, t, tokens)
    assert not torch.allclose(a[:, 0], b[:, 0])  # the first view's prediction moved
    with torch.no_grad():
        z = x.clone()
        z[1] += 1.0  # another sample: no effect across the batch
        c = model.multiview(z, t, tokens)
    torch.testing.assert_close(c[0], a[0], atol=1e-6, rtol=0)


def test_back_projection_samples_each_view_where_the_point_projects():
    size = 16
    K, E = world_rig(3, size)
    pts = torch.rand(50, 3) * 0.8 - 0.4
    uv, _ = project(pts[None].expand(3, -1, -1), K, E)
    # features linear in the pixel column (x + 0.5 at pixel centres) and in the row, different per view
    cols = (torch.arange(size) + 0.5).reshape(1, 1, 1, 1, size).expand(1, 3, 1, size, size)
    rows = (torch.arange(size) + 0.5).reshape(1, 1, 1, size, 1).expand(1, 3, 1, size, size)
    scale = torch.tensor([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1, 1)
    feats = torch.cat([cols * scale, rows], 2)
    mean, var = back_project(feats, uv / size * 2 - 1)
    inner = ((uv > 0.5) & (uv < size - 0.5)).all(-1).all(0)  # bilinear is exact on a linear function inside
    expect_u = (uv[..., 0] * torch.tensor([1.0, 2.0, 3.0])[:, None]).mean(0)
    torch.testing.assert_close(mean[0, 0, inner], expect_u[inner], atol=1e-4, rtol=0)
    torch.testing.assert_close(mean[0, 1, inner], uv[..., 1].mean(0)[inner], atol=1e-4, rtol=0)
    torch.testing.assert_close(var[0, 1, inner], uv[..., 1].var(0, unbiased=False)[inner], atol=1e-3, rtol=0)


def test_sampling_is_seeded_lazy_start_uses_the_prior_and_inputs_are_checked():
    model = _model()
    a = model.generate("a red cube", seed=3, steps=2)
    b = model.generate("a red cube", seed=3, steps=2)
    assert torch.equal(a["views"], b["views"]) and torch.equal(a["grid"], b["grid"])
    assert a["views"].shape == (2, 3, 8, 8) and a["grid"].shape == (4, 8, 8, 8)
    assert not torch.equal(model.generate("a red cube", seed=4, steps=2)["views"], a["views"])
    two_d = model.generate("a red cube", seed=3, steps=2, use_3d=False)
    assert not torch.equal(two_d["views"], a["views"])
    torch.manual_seed(0)
    prior = GridPrior(GridUNet(GridPriorConfig(resolution=8, channels=(8, 16), emb=16)))
    ticks = []
    lazy = model.generate("a red cube", seed=3, steps=10, prior=prior, lazy_t=0.5,
                          progress=lambda i, n: ticks.append(n))  # fmt: skip
    assert lazy["prior_views"].shape == (2, 3, 8, 8)
    assert ticks and ticks[0] == 6 and len(ticks) == 6  # t <= T / 2: 500, 400, ..., 0 of the 10 steps
    with pytest.raises(InputError, match="prompt"):
        model.generate(" ")
    with pytest.raises(InputError, match="lazy_t"):
        model.generate("a red cube", lazy_t=0.0)
    with pytest.raises(InterruptedError):
        model.generate("a red cube", steps=2, should_stop=lambda: True)


def test_file_round_trip_and_a_wrong_file(tmp_path):
    model = _model()
    path = P.save_bidiff(model, tmp_path / "m.safetensors", dtype=torch.float32)
    back = P.load_bidiff(path)
    x, t, tokens, control = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(back.multiview(x, t, tokens, control), model.multiview(x, t, tokens, control),
                                   atol=0, rtol=0)  # fmt: skip
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(WeightsFormatError, match="not a BiDiff model"):
        P.load_bidiff(tmp_path / "other.safetensors")


@pytest.mark.slow
def test_joint_training_lowers_both_losses_on_a_fixed_batch(tmp_path):
    cfg = T.TrainConfig(out=str(tmp_path), views=2, size=8, resolution=8, world_scenes=4, batch_size=4,
                        max_steps=1, cpu=True, ema_decay=0.0, save_every=0)  # fmt: skip
    method = T.BiDiffTraining(cfg)
    method.model = P.BiDiffModel(MV, VOL)
    method.scheduler = method.model.scheduler
    method.run = type("R", (), {"device": torch.device("cpu")})()
    ds = T.WorldViews(cfg, method.model)
    batch = torch.utils.data.default_collate([ds[i] for i in range(4)])
    opt = torch.optim.AdamW(method.model.parameters(), lr=3e-3)
    first = None
    for step in range(40):
        loss = method.loss(batch, torch.Generator().manual_seed(step % 2))
        if first is None:
            first = dict(method.last)
        opt.zero_grad()
        loss.backward()
        opt.step()
    method.loss(batch, torch.Generator().manual_seed(0))
    assert method.last["loss_3d"] < 0.5 * first["loss_3d"]
    assert method.last["loss_2d"] < first["loss_2d"]


def test_back_projection_in_chunks_equals_all_points_at_once():
    """Chunking bounds the [B, V, C, chunk] samples; values and gradients are those of one pass (the same
    arithmetic per point; tolerance 1e-6 for a different tensor layout)."""
    size = 16
    K, E = world_rig(4, size)
    pts = torch.rand(50, 3) * 1.6 - 0.8
    uv, _ = project(pts[None].expand(4, -1, -1), K, E)
    uv = uv / size * 2 - 1
    feats = torch.randn(2, 4, 5, size, size, generator=torch.Generator().manual_seed(0), requires_grad=True)
    whole = back_project(feats, uv, chunk=None)
    (g_whole,) = torch.autograd.grad(whole[0].sum() + (whole[1] ** 2).sum(), feats)
    parts = back_project(feats, uv, chunk=7)  # 50 points: 7 chunks, the last one short
    (g_parts,) = torch.autograd.grad(parts[0].sum() + (parts[1] ** 2).sum(), feats)
    for a, b in zip(parts, whole, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    torch.testing.assert_close(g_parts, g_whole, atol=1e-6, rtol=0)
    assert whole[1].abs().max() > 0  # the views disagree somewhere: the variance term is exercised


def test_unet_in_slabs_equals_the_dense_unet():
    """slabs.py: global GroupNorm statistics and one-plane halos make the slab-wise 3D U-Net the dense
    one (float32 against float32 summed in another order, tolerance 2e-5), slabs uneven at the end, a
    GroupNorm group straddling the concatenated upsample and skip (24 channels, groups of 3, cut at 16)."""
    from papernodes.models.bidiff.grid_prior import GridPriorConfig, GridUNet

    torch.manual_seed(0)
    net = GridUNet(GridPriorConfig(resolution=12, channels=(8, 16), emb=16, in_channels=6)).eval()
    with torch.no_grad():
        for p in net.parameters():  # the zero-initialised output convs would hide every block
            p.add_(torch.randn_like(p) * 0.2)
        x = torch.randn(2, 6, 12, 12, 12)
        t = torch.tensor([10, 700])
        tokens = torch.tensor([[2, 3, 0, 0], [4, 0, 0, 0]])
        dense = net(x, t, tokens)
        for depth in (1, 5, 12):
            torch.testing.assert_close(net(x, t, tokens, slab=depth), dense, atol=2e-5, rtol=1e-5)
    assert dense.abs().mean() > 0.1  # a real signal, not zeros


def test_training_memory_is_checked_before_allocating():
    from papernodes.models.bidiff.volume import TRAIN_BYTES_PER_VOXEL, check_training_memory

    check_training_memory(16, 8, 2**30)  # 16³ x 8 scenes: ~0.15 GB
    check_training_memory(256, 8, None)  # unknown memory: no refusal
    with pytest.raises(InputError, match="resolution"):
        check_training_memory(64, 8, 4 * 2**30)  # ~9 GB against 4 GB
    need = 48**3 * TRAIN_BYTES_PER_VOXEL
    check_training_memory(48, 1, int(need / 0.9) + 1)
    with pytest.raises(InputError, match="resolution"):
        check_training_memory(48, 1, int(need / 0.9) - 1)
