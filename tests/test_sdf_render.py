"""NeuS rendering of SDFs (models/common/sdf_render.py) and orbit rigs (camera.orbit_rig): an analytic
sphere's silhouette and depth, a box's silhouette, colours and background, chunk invariance, gradients to
the shape's parameters, and errors naming the input."""

from __future__ import annotations

import math

import pytest
import torch
from papernodes.models.common import camera as C
from papernodes.models.common import sdf_render as R
from papernodes.models.common.errors import InputError

S = 48


def _sphere_hits(o, d, r):
    b = (o * d).sum(-1)
    disc = b * b - ((o * o).sum(-1) - r * r)
    return disc > 0, -b - torch.sqrt(disc.clamp_min(0))


def _colour(rgb):
    return lambda p: p.new_tensor(rgb).expand(len(p), 3)


def test_orbit_rig_cameras_look_at_the_target_from_the_radius():
    K, E = C.orbit_rig(6, radius=2.5, elevation_degrees=30.0, width=40, height=30, dtype=torch.float64)
    assert K.shape == (6, 3, 3) and E.shape == (6, 4, 4)
    assert torch.allclose(C.camera_center(E).norm(dim=-1), torch.full((6,), 2.5, dtype=torch.float64))
    uv, depth = C.project(torch.zeros(6, 1, 3, dtype=torch.float64), K, E)
    assert torch.allclose(uv[:, 0], torch.tensor([20.0, 15.0], dtype=torch.float64).expand(6, 2))
    assert torch.allclose(depth, torch.full((6, 1), 2.5, dtype=torch.float64))
    with pytest.raises(InputError, match="views"):
        C.orbit_rig(0)


def test_sphere_silhouette_depth_and_colour():
    K, E = C.orbit_rig(3, radius=3.0, width=S, height=S, dtype=torch.float64)
    out = R.render_views(lambda p: p.norm(dim=-1) - 0.5, _colour((0.2, 0.4, 0.8)), K, E, S, S,
                         samples=96, inv_s=512.0)  # fmt: skip
    o, d = C.pixel_rays(K, E, S, S)
    hit, t = _sphere_hits(o, d, 0.5)
    mask = out["mask"] > 0.5
    assert (mask == hit).float().mean() > 0.98
    z = C.transform_points(E, (o + d * t[..., None]).reshape(3, -1, 3))[..., 2].reshape(3, S, S)
    both = mask & hit
    assert (out["depth"] - z)[both].abs().max() < 2 * 2 * math.sqrt(3) / 96  # two sample spacings
    assert torch.allclose(
        out["image"][mask & hit & (out["mask"] > 0.999)],
        torch.tensor([0.2, 0.4, 0.8], dtype=torch.float64),
        atol=1e-3,
    )
    closest = ((o * o).sum(-1) - (o * d).sum(-1) ** 2).sqrt()  # distance of each ray from the centre
    far = closest > 0.55  # misses the sphere by over 0.05
    assert torch.allclose(out["image"][far], torch.ones(3, dtype=torch.float64), atol=1e-3)
    assert (out["depth"][~mask] == 0).all() and out["image"].dtype == torch.float64


def test_box_silhouette_from_the_front():
    K = C.intrinsics_from_fov(40.0, S, S, dtype=torch.float64)
    E = C.look_at((0.0, 0.0, 3.0), (0.0, 0.0, 0.0)).double()

    def box(p):
        q = p.abs() - 0.4
        return q.clamp_min(0).norm(dim=-1) + q.amax(-1).clamp_max(0)

    out = R.render_views(box, _colour((1.0, 0.0, 0.0)), K, E, S, S, samples=96, inv_s=512.0)
    # the front face at z = 0.4 spans +-0.4: a square of f * 0.4 / 2.6 pixels around the centre
    f = K[0, 0].item()
    half = f * 0.4 / 2.6
    uv = C.pixel_centers(S, S, torch.float64)
    inside = ((uv - S / 2).abs() < half - 0.5).all(-1)
    outside = ((uv - S / 2).abs() > half + 0.5).any(-1)
    m = out["mask"][0] > 0.5
    assert m[inside].all() and not m[outside].any()


def test_chunks_do_not_change_the_image_and_gradients_reach_the_shape():
    K, E = C.orbit_rig(2, width=16, height=16, dtype=torch.float64)
    radius = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    sdf = lambda p: p.norm(dim=-1) - radius  # noqa: E731
    a = R.render_views(sdf, _colour((0.0, 0.0, 0.0)), K, E, 16, 16, samples=32, chunk=37)
    b = R.render_views(sdf, _colour((0.0, 0.0, 0.0)), K, E, 16, 16, samples=32, chunk=4096)
    torch.testing.assert_close(a["image"], b["image"], atol=1e-6, rtol=0)
    (grad,) = torch.autograd.grad(a["mask"].sum(), radius)
    assert torch.isfinite(grad) and grad > 0  # a larger sphere covers more pixels


def test_rays_missing_the_cube_are_background():
    o = torch.tensor([[0.0, 5.0, 5.0]])
    d = torch.tensor([[1.0, 0.0, 0.0]])
    out = R.render_rays(lambda p: p.norm(dim=-1) - 0.5, _colour((0, 0, 0)), o, d, background=(0.3, 0.3, 0.3))
    assert out["opacity"].item() == 0 and torch.allclose(out["rgb"], torch.full((1, 3), 0.3))


def test_bad_inputs_are_named():
    f, c = (lambda p: p.norm(dim=-1) - 0.5), _colour((0, 0, 0))
    o, d = torch.zeros(4, 3), torch.ones(4, 3)
    with pytest.raises(InputError, match="samples"):
        R.render_rays(f, c, o, d, samples=1)
    with pytest.raises(InputError, match="directions"):
        R.render_rays(f, c, o, torch.ones(5, 3))
    K, E = C.orbit_rig(1)
    with pytest.raises(InputError, match="height"):
        R.render_views(f, c, K, E, 0, 16)
