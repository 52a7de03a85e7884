"""The official networks' fields and NeuS rendering (models/trihuman/official/fields): the release's plane
sampler against grid_sample and a per-point loop, the texture-cube mapping on a flat template against its
closed form, the SDF gradient through the mapping against finite differences, NeuS weights against a
per-sample loop, and the renderer's empty-shell and chunking behaviour."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from papernodes.models.common.errors import InputError
from papernodes.models.trihuman.official import fields as FL
from papernodes.models.trihuman.official.networks import RenderingNetwork, SDFNetwork, SingleVarianceNetwork

torch.set_num_threads(1)
F64 = torch.float64


def _planes(c=4, s=9, seed=0):
    return torch.rand(3 * c, s, s, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_plane_features_inside_equal_grid_sample_align_corners():
    planes = _planes()
    g = torch.Generator().manual_seed(1)
    uvd = torch.cat([torch.rand(50, 2, generator=g, dtype=F64) * 2 - 1,
                     (torch.rand(50, 1, generator=g, dtype=F64) * 2 - 1) * FL.SCALE_D], 1)  # fmt: skip
    got = FL.release_plane_features(planes, uvd)
    blocks = planes.reshape(3, 4, 9, 9)
    u, v, d = uvd.unbind(1)

    def gs(block, rows, cols):  # grid_sample's grid is (x = column, y = row)
        grid = torch.stack([cols, rows], -1).view(1, -1, 1, 2)
        return F.grid_sample(block[None], grid, mode="bilinear", align_corners=True)[0, :, :, 0].T

    want = torch.cat(
        [gs(blocks[0], u, v), gs(blocks[2], v, d / FL.SCALE_D), gs(blocks[1], d / FL.SCALE_D, u)], 1
    )
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_plane_features_outside_follow_the_release_arithmetic():
    # the release's steps for one coordinate pair, written out per point
    plane = _planes(c=1)[:1]
    h = w = plane.shape[-1]
    pts = torch.tensor([[1.3, 0.2], [-1.2, -1.05], [0.5, 1.5], [1.0, 1.0]], dtype=F64)
    got = FL._clamped_bilinear(plane, pts[:, 0], pts[:, 1])
    for k, (r, c) in enumerate(pts.tolist()):
        x, y = (r + 1) * (h - 1) * 0.5, (c + 1) * (w - 1) * 0.5
        x0, y0 = math.floor(x), math.floor(y)
        wts = [
            (x0 + 1 - x) * (y0 + 1 - y),
            (x - x0) * (y0 + 1 - y),
            (x0 + 1 - x) * (y - y0),
            (x - x0) * (y - y0),
        ]
        i0, i1 = min(max(x0, 0), h - 2), min(max(x0 + 1, 1), h - 1)
        j0, j1 = min(max(y0, 0), w - 2), min(max(y0 + 1, 1), w - 1)
        p = plane[0]
        want = wts[0] * p[i0, j0] + wts[1] * p[i1, j0] + wts[2] * p[i0, j1] + wts[3] * p[i1, j1]
        assert abs(float(got[k, 0]) - float(want)) < 1e-12


# A flat template: the square [-0.5, 0.5]^2 at z = 0 (two counter-clockwise faces, normal +z), UVs = (x, y)
# mapped to [0.1, 0.9]; the release's uv in [-1, 1] is then (x, y) * 1.6.
SQUARE_V = torch.tensor([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0]], dtype=F64)
SQUARE_F = torch.tensor([[0, 1, 2], [0, 2, 3]])
SQUARE_UV = (SQUARE_V[:, :2] * 0.8 + 0.5)[SQUARE_F]


def _nets(seed=0, c=4):
    torch.manual_seed(seed)
    sdf = SDFNetwork(d_in=3 + 3 * c, d_out=1 + 8, d_hidden=16, n_layers=3, skip_in=(2,), multires=3).double()
    colour = RenderingNetwork(d_feature=8, d_hidden=16, n_layers=2, multires_view=4).double()
    return SimpleNamespace(
        sdf_network=sdf, color_network=colour, deviation_network=SingleVarianceNetwork(0.3).double()
    )


def test_field_maps_samples_to_uvd_and_drops_the_outside_of_the_shell():
    nets, planes = _nets(), _planes()
    pts = torch.tensor(
        [[0.1, -0.2, 0.01], [0.3, 0.3, -0.015], [0.0, 0.0, 0.03], [-0.2, 0.4, -0.021]], dtype=F64
    )
    field = FL.release_field(nets, planes, pts, SQUARE_V, SQUARE_F, SQUARE_UV)
    assert field.kept.tolist() == [True, True, False, False]
    kept = pts[field.kept]
    uvd = torch.cat([kept[:, :2] * 1.6, kept[:, 2:]], 1)  # closed form on the flat template, d signed by +z
    want = nets.sdf_network(torch.cat([uvd, FL.release_plane_features(planes, uvd)], 1))
    torch.testing.assert_close(field.sdf, want[:, :1], rtol=0, atol=1e-12)
    torch.testing.assert_close(field.feature, want[:, 1:], rtol=0, atol=1e-12)


def test_field_gradient_is_the_derivative_through_the_mapping():
    nets, planes = _nets(1), _planes(seed=2)
    pts = torch.tensor([[0.1, -0.2, 0.01], [0.3, 0.25, -0.012]], dtype=F64)
    field = FL.release_field(nets, planes, pts, SQUARE_V, SQUARE_F, SQUARE_UV)
    eps = 1e-6
    for i in range(3):
        step = torch.zeros(3, dtype=F64)
        step[i] = eps
        hi = FL.release_field(nets, planes, pts + step, SQUARE_V, SQUARE_F, SQUARE_UV).sdf
        lo = FL.release_field(nets, planes, pts - step, SQUARE_V, SQUARE_F, SQUARE_UV).sdf
        torch.testing.assert_close(field.gradient[:, i : i + 1], (hi - lo) / (2 * eps), rtol=1e-5, atol=1e-7)


def test_neus_weights_equal_a_per_sample_loop():
    g = torch.Generator().manual_seed(3)
    sdf = torch.randn(2, 6, generator=g, dtype=F64) * 0.05
    cos = torch.rand(2, 6, generator=g, dtype=F64) * 2 - 1
    dists = torch.full((2, 6), 0.01, dtype=F64)
    kept = torch.tensor([[1, 1, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]], dtype=F64)
    inv_s = torch.tensor(20.0, dtype=F64)
    w = FL.neus_weights(sdf, cos, dists, inv_s, kept, cos_anneal_ratio=1.0)
    for r in range(2):
        trans = 1.0
        for k in range(6):
            ic = -max(-float(cos[r, k]), 0.0)
            prev = 1 / (1 + math.exp(-(float(sdf[r, k]) - ic * 0.005) * 20))
            nxt = 1 / (1 + math.exp(-(float(sdf[r, k]) + ic * 0.005) * 20))
            alpha = min(max((prev - nxt + 1e-5) / (prev + 1e-5), 0.0), 1.0) * float(kept[r, k])
            assert abs(float(w[r, k]) - alpha * trans) < 1e-12
            trans *= 1 - alpha + 1e-7


def test_render_rays_hit_the_shell_miss_outside_and_chunking_changes_nothing():
    nets, planes = _nets(2), _planes(seed=4)
    rays_o = torch.tensor([[0.1, 0.1, 0.1], [0.2, -0.3, 0.1], [0.9, 0.9, 0.1]], dtype=F64)  # last: beside it
    rays_d = torch.tensor([[0.0, 0.0, -1.0]] * 3, dtype=F64)
    near, far = torch.full((3,), 0.07, dtype=F64), torch.full((3,), 0.13, dtype=F64)
    scale, trans = FL.colour_frame(torch.tensor([0.0, 0.0, 1.0], dtype=F64), torch.zeros(3, dtype=F64))
    out = FL.release_render_rays(nets, planes, rays_o, rays_d, near, far, SQUARE_V, SQUARE_F, SQUARE_UV, scale,
                                 trans)  # fmt: skip
    assert (out.opacity[:2] > 0).all() and (out.opacity <= 1 + 1e-6).all()
    assert out.opacity[2] == 0 and (out.color[2] == 0).all()  # no sample within 0.02 of the template
    assert (out.color[:2] >= 0).all() and (
        out.color[:2] <= out.opacity[:2]
    ).all()  # colours in (0, 1) x weights
    one = FL.release_render_rays(nets, planes, rays_o, rays_d, near, far, SQUARE_V, SQUARE_F, SQUARE_UV, scale,
                                 trans, chunk=1)  # fmt: skip
    assert torch.equal(one.color, out.color) and torch.equal(one.opacity, out.opacity)


def test_colour_frame_is_the_release_metric_frame():
    scale, trans = FL.colour_frame(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5, 0.5, 0.5]))
    assert scale == pytest.approx(1.2 / 2.5)
    torch.testing.assert_close(trans, torch.tensor([0.2, 0.6, 1.0]))


def test_bad_shapes_name_the_input():
    with pytest.raises(InputError, match="planes"):
        FL.release_plane_features(torch.zeros(4, 8, 8), torch.zeros(2, 3))
    with pytest.raises(InputError, match="rays"):
        FL.release_render_rays(_nets(), _planes(), torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3),
                               torch.zeros(3), SQUARE_V, SQUARE_F, SQUARE_UV, 1.0, torch.zeros(3))  # fmt: skip
