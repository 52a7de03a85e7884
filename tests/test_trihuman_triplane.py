"""TriHuman tri-planes (models/trihuman/triplane.py): bilinear sampling is exact for linear planes and reads
the right axes per plane, the uv plane is texel-aligned with the motion texture, the 3D-aware convolution
sees the other planes only through their axis means, generator shapes and gradient flow to the motion
code, and errors naming the input."""

from __future__ import annotations

import pytest
import torch
from papernodes.models.common.errors import InputError
from papernodes.models.trihuman import triplane as T

F64 = torch.float64
TINY = dict(size=32, base_channels=8, max_channels=16, depth=2, aware_channels=8, aware_blocks=2)


def _centres(s: int) -> torch.Tensor:
    return (2 * torch.arange(s, dtype=F64) + 1) / s - 1  # align_corners=False texel centres


def _linear_planes(s: int, coeffs: list[tuple[float, float, float]]) -> torch.Tensor:
    """Planes [1, 3, 2, S, S]: channel 0 of plane k = a x + b y + c (x width, y height), channel 1 = x - y."""
    c = _centres(s)
    y, x = torch.meshgrid(c, c, indexing="ij")
    planes = torch.empty(1, 3, 2, s, s, dtype=F64)
    for k, (a, b, off) in enumerate(coeffs):
        planes[0, k, 0] = a * x + b * y + off
        planes[0, k, 1] = x - y
    return planes


def test_sampling_is_exact_for_linear_planes_and_reads_each_planes_axes():
    s, coeffs = 8, [(1.0, 2.0, 3.0), (4.0, 5.0, 6.0), (7.0, 8.0, 9.0)]
    planes = _linear_planes(s, coeffs)
    lim = 1 - 1 / s  # inside the outermost texel centres: no border clamping
    uvd = (torch.rand(1, 500, 3, dtype=F64, generator=torch.Generator().manual_seed(0)) * 2 - 1) * lim
    feats = T.sample_triplanes(planes, uvd)
    assert feats.shape == (1, 500, 6) and feats.dtype == F64
    cu, cv, cd = uvd[0].unbind(-1)
    pairs = [(cu, cv), (cv, cd), (cd, cu)]  # plane uv: (x, y) = (u, v); vd: (v, d); du: (d, u)
    for k, ((a, b, off), (x, y)) in enumerate(zip(coeffs, pairs, strict=True)):
        torch.testing.assert_close(feats[0, :, 2 * k], a * x + b * y + off, atol=1e-12, rtol=0)
        torch.testing.assert_close(feats[0, :, 2 * k + 1], x - y, atol=1e-12, rtol=0)
    summed = T.sample_triplanes(planes, uvd, reduce="sum")
    torch.testing.assert_close(summed, feats.reshape(1, 500, 3, 2).sum(2))


def test_uv_plane_is_texel_aligned_with_the_motion_texture():
    """uv_raster's texel (i, j) has its centre at u = (j + .5) / S, v = 1 - (i + .5) / S; through
    cube_coordinates the uv plane returns exactly that texel (the generator keeps texture layout)."""
    s = 16
    planes = torch.randn(1, 3, 4, s, s, dtype=F64, generator=torch.Generator().manual_seed(1))
    i, j = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    u, v = (j.flatten().to(F64) + 0.5) / s, 1 - (i.flatten().to(F64) + 0.5) / s
    uvd = torch.stack([u, v, torch.zeros_like(u)], -1)
    cube = T.cube_coordinates(uvd, shell=0.05)
    feats = T.sample_triplanes(planes, cube[None])[0, :, :4]
    torch.testing.assert_close(feats, planes[0, 0].flatten(1).T, atol=1e-12, rtol=0)
    torch.testing.assert_close(
        T.cube_coordinates(torch.tensor([[0.5, 0.5, -0.1]]), 0.2), torch.tensor([[0, 0, -0.5]])
    )


def test_aware_context_pools_the_axis_a_plane_does_not_share():
    b, c, s = 1, 2, 5
    p = torch.randn(b, 3, c, s, s, dtype=F64, generator=torch.Generator().manual_seed(2))
    uv, vd, du = p[0, 0], p[0, 1], p[0, 2]  # [C, v, u], [C, d, v], [C, u, d]
    ctx = T.aware_context(p)[0]
    assert ctx.shape == (3, 3 * c, s, s)
    for a in range(s):
        for q in range(s):
            # uv texel (v=a, u=q): vd averaged over d at v=a; du averaged over d at u=q
            torch.testing.assert_close(ctx[0, c : 2 * c, a, q], vd[:, :, a].mean(1))
            torch.testing.assert_close(ctx[0, 2 * c :, a, q], du[:, q, :].mean(1))
            # vd texel (d=a, v=q): du averaged over u at d=a; uv averaged over u at v=q
            torch.testing.assert_close(ctx[1, c : 2 * c, a, q], du[:, :, a].mean(1))
            torch.testing.assert_close(ctx[1, 2 * c :, a, q], uv[:, q, :].mean(1))
            # du texel (u=a, d=q): uv averaged over v at u=a; vd averaged over v at d=q
            torch.testing.assert_close(ctx[2, c : 2 * c, a, q], uv[:, :, a].mean(1))
            torch.testing.assert_close(ctx[2, 2 * c :, a, q], vd[:, q, :].mean(1))
    torch.testing.assert_close(ctx[:, :c], p[0])


def test_aware_conv_other_planes_reach_uv_only_through_their_means():
    torch.manual_seed(3)
    conv = T.AwareConv(3, 4).double()
    p = torch.randn(2, 3, 3, 8, 8, dtype=F64)
    out = conv(p)
    assert out.shape == (2, 3, 4, 8, 8)
    noise = torch.randn(2, 3, 8, 8, dtype=F64)
    # vd is [C, d, v]: a change with zero mean over d leaves uv's output alone, but not vd's own output
    q = p.clone()
    q[:, 1] += noise - noise.mean(-2, keepdim=True)
    out_q = conv(q)
    torch.testing.assert_close(out_q[:, 0], out[:, 0], atol=1e-12, rtol=0)
    assert (out_q[:, 1] - out[:, 1]).abs().max() > 1e-3
    # du is [C, u, d]: zero mean over d (its width) likewise
    q = p.clone()
    q[:, 2] += noise - noise.mean(-1, keepdim=True)
    torch.testing.assert_close(conv(q)[:, 0], out[:, 0], atol=1e-12, rtol=0)
    # a change of vd's mean over d does reach uv
    q = p.clone()
    q[:, 1] += noise
    assert (conv(q)[:, 0] - out[:, 0]).abs().max() > 1e-3
    # uv's own features reach uv's output
    q = p.clone()
    q[:, 0, :, 4, 4] += 1.0
    assert (conv(q)[:, 0] - out[:, 0]).abs().max() > 1e-3


def test_generator_shapes_and_gradient_to_the_motion_code():
    torch.manual_seed(4)
    gen = T.TriplaneGenerator(TINY)
    motion = T.MotionCode(pose_dim=5, hidden=16)
    texture = torch.randn(2, 18, 32, 32)
    pose = torch.randn(2, 3, 5)
    code = motion(pose)
    assert code.shape == (2, 32)
    planes = gen(texture, code)
    assert planes.shape == (2, 3, 16, 32, 32) and planes.dtype == torch.float32
    planes.square().mean().backward()
    for name, param in motion.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert all(p.grad is not None for p in gen.parameters())
    # the motion code changes the planes
    with torch.no_grad():
        assert (gen(texture, code + 1) - planes).abs().max() > 1e-6
    assert T.TriplaneGenerator(T.TriplaneGeneratorConfig(**TINY)).config == gen.config
    assert T.TriplaneGeneratorConfig().size == 256 and T.TriplaneGeneratorConfig().plane_channels == 16


def test_bad_inputs_name_the_input():
    gen = T.TriplaneGenerator(TINY)
    with pytest.raises(InputError, match="'motion_texture'"):
        gen(torch.randn(1, 17, 32, 32), torch.randn(1, 32))
    with pytest.raises(InputError, match="'motion_texture'"):
        gen(torch.randn(1, 18, 16, 16), torch.randn(1, 32))
    with pytest.raises(InputError, match="'motion_code'"):
        gen(torch.randn(1, 18, 32, 32))
    with pytest.raises(InputError, match="'config.size'"):
        T.TriplaneGenerator(dict(TINY, size=30))
    with pytest.raises(InputError, match="'config'"):
        T.TriplaneGenerator(dict(TINY, widht=3))
    with pytest.raises(InputError, match="'planes'"):
        T.sample_triplanes(torch.randn(1, 2, 4, 8, 8), torch.zeros(1, 5, 3))
    with pytest.raises(InputError, match="'planes'"):
        T.sample_triplanes(torch.randn(1, 3, 4, 8, 6), torch.zeros(1, 5, 3))
    with pytest.raises(InputError, match="'uvd'"):
        T.sample_triplanes(torch.randn(2, 3, 4, 8, 8), torch.zeros(1, 5, 3))
    with pytest.raises(InputError, match="'reduce'"):
        T.sample_triplanes(torch.randn(1, 3, 4, 8, 8), torch.zeros(1, 5, 3), reduce="max")
    with pytest.raises(InputError, match="'planes'"):
        T.AwareConv(4, 4)(torch.randn(1, 3, 5, 8, 8))
    with pytest.raises(InputError, match="'pose'"):
        T.MotionCode(pose_dim=5)(torch.randn(2, 14))
    with pytest.raises(InputError, match="'shell'"):
        T.cube_coordinates(torch.zeros(4, 3), 0.0)
