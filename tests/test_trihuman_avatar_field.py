"""TriHuman's avatar fields around a posed template: the residual SDF over the template's signed distance,
its shell, normals through the closest-point mapping, and NeuS renders of the bound avatar."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from papernodes.models.common import camera as C
from papernodes.models.common.errors import InputError
from papernodes.models.trihuman.avatar_field import AvatarField, AvatarFieldConfig
from papernodes.models.trihuman.closest_face import closest_points_brute

torch.set_num_threads(1)
RADIUS = 0.5
SMALL = AvatarFieldConfig(plane_channels=4, shell=0.05, sdf_hidden=32, sdf_layers=4, sdf_features=16,
                          color_hidden=32, color_layers=2, samples=48)  # fmt: skip


@pytest.fixture(scope="module")
def sphere():
    """An icosphere of radius 0.5 (1 280 faces) with spherical texture coordinates, float64."""
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=3, radius=RADIUS)
    v = torch.tensor(mesh.vertices, dtype=torch.float64)
    f = torch.tensor(mesh.faces, dtype=torch.long)
    uv = torch.stack(
        [torch.atan2(v[:, 1], v[:, 0]) / (2 * math.pi) + 0.5, torch.acos(v[:, 2] / RADIUS) / math.pi], -1
    )
    return v, f, uv


def _bound(sphere, seed=0, planes_scale=0.0, config=SMALL):
    torch.manual_seed(seed)
    field = AvatarField(config).double()
    planes = planes_scale * torch.randn(3, config.plane_channels, 16, 16, dtype=torch.float64)
    v, f, uv = sphere
    return field, field.bind(v, f, uv, planes)


def _points(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=torch.float64), dim=-1)
    r = RADIUS + 0.2 * (torch.rand(n, generator=g, dtype=torch.float64) - 0.5)  # within 10 cm of the surface
    return d * r[:, None]


def test_at_init_the_avatar_is_its_template(sphere):
    """The residual row starts at zero: f equals the template's signed distance (brute force), planes or not."""
    _, avatar = _bound(sphere, planes_scale=1.0)
    x = _points(400)
    v, f, _ = sphere
    expected = closest_points_brute(x, v, f).signed_distance
    torch.testing.assert_close(avatar.sdf(x), expected, atol=1e-12, rtol=0)


def test_beyond_the_shell_the_sdf_is_the_templates_distance_whatever_the_networks(sphere):
    field, avatar = _bound(sphere, planes_scale=1.0)
    with torch.no_grad():  # a non-zero residual everywhere
        field.sdf_net.layers[-1].parametrizations.weight.original0[0] = 1.0
        field.sdf_net.layers[-1].bias[0] = 0.3
    x = _points(600)
    v, f, _ = sphere
    d = closest_points_brute(x, v, f).signed_distance
    got = avatar.sdf(x)
    outside = d.abs() >= SMALL.shell
    assert outside.sum() > 100 and (~outside).sum() > 100
    torch.testing.assert_close(got[outside], d[outside], atol=1e-12, rtol=0)
    assert (got[~outside] - d[~outside]).abs().max() > 1e-3  # inside the shell the residual acts
    # and it fades continuously: at |d| -> shell the residual vanishes linearly
    near_edge = (d.abs() > 0.9 * SMALL.shell) & (d.abs() < SMALL.shell)
    bound = (1 - d.abs() / SMALL.shell) * (got - d).abs().div(
        (1 - d.abs() / SMALL.shell).clamp_min(1e-9)
    ).max()
    assert bool(((got - d).abs() <= bound + 1e-12)[near_edge].all())


def test_normals_at_init_are_the_templates(sphere):
    """Autograd through the closest-point mapping: on an icosphere the normals are radial within the facets'
    deviation from the sphere."""
    _, avatar = _bound(sphere)
    x = _points(300, seed=2)
    n = avatar.normals(x)
    radial = torch.nn.functional.normalize(x, dim=-1)
    cos = (n * radial).sum(-1)
    assert float(cos.min()) > 0.97 and float(cos.mean()) > 0.995


@pytest.mark.slow  # renders twice with autograd: ~9 s on a busy machine
def test_render_at_init_shows_the_template_and_gradients_reach_planes_and_networks(sphere):
    K, E = C.orbit_rig(2, radius=2.0, elevation_degrees=15.0, fov_degrees=40.0, width=24, height=24,
                       dtype=torch.float64)  # fmt: skip
    field, avatar = _bound(sphere, planes_scale=0.1)
    with torch.no_grad():
        field.variance.variance.fill_(0.6)  # s = e^6 ~ 400: a crisp surface
    planes = avatar.planes.clone().requires_grad_(True)
    avatar.planes = planes
    out = avatar.render(K, E, 24, 24, near=1.0, far=3.0)
    o, d = C.pixel_rays(K, E, 24, 24)
    b = (o * d).sum(-1)
    hit = (b * b - ((o * o).sum(-1) - RADIUS**2)) > 0
    mask = out["mask"] > 0.5
    assert (mask & hit).sum() / (mask | hit).sum() > 0.9  # silhouette IoU with the exact sphere
    far_miss = (b * b - ((o * o).sum(-1) - (RADIUS + 0.1) ** 2)) <= 0  # rays 10 cm clear of the surface
    assert float(out["image"].detach()[far_miss].sub(1).abs().max()) < 1e-6  # white background there
    out["image"].mean().backward()
    # IDR's init starts the first layer's feature columns at zero, so the planes do not act yet, but those
    # columns get a gradient: one step later the features reach the colour
    first = field.sdf_net.layers[0].parametrizations.weight.original1
    feature_columns = slice(first.shape[1] - 3 * SMALL.plane_channels, None)
    assert float(planes.grad.abs().sum()) == 0.0
    assert float(first.grad[:, feature_columns].abs().sum()) > 0
    assert all(p.grad is not None for p in field.color_net.parameters())
    assert field.variance.variance.grad is not None  # NeuS's s learns through the midpoint renderer
    with torch.no_grad():
        first[:, feature_columns] -= 1e-2 * first.grad[:, feature_columns].sign()
    planes.grad = None
    avatar.render(K, E, 24, 24, near=1.0, far=3.0)["image"].mean().backward()
    assert float(planes.grad.abs().sum()) > 0


def test_bad_inputs_are_named(sphere):
    v, f, uv = sphere
    with pytest.raises(InputError, match="shell"):
        AvatarField(AvatarFieldConfig(shell=0.0))
    with pytest.raises(InputError, match="planes"):
        AvatarField(SMALL).bind(v, f, uv, torch.zeros(3, 5, 8, 8))
    assert np.isfinite(SMALL.shell)


def test_mesh_is_the_subdivided_template_moved_to_the_zero_level(sphere):
    """At init the surface is the template: subdivided vertices land on it (midpoints move out to the facets'
    surface). With a constant residual -c the surface moves out to d* = c * shell / (shell + c) (f = d - w(d) c
    = 0), the same topology."""
    v, f, uv = sphere
    field, avatar = _bound(sphere)
    verts, faces = avatar.mesh()
    assert verts.shape[0] == v.shape[0] + 3 * f.shape[0] // 2 and faces.shape[0] == 4 * f.shape[0]
    d = closest_points_brute(verts, v, f).signed_distance
    assert float(d.abs().max()) < 1e-9
    c = 0.02
    with torch.no_grad():
        field.sdf_net.layers[-1].bias[0] = -c
    verts2, faces2 = avatar.mesh()
    assert torch.equal(faces2, faces)
    d2 = closest_points_brute(verts2, v, f).signed_distance
    torch.testing.assert_close(
        d2, torch.full_like(d2, c * SMALL.shell / (SMALL.shell + c)), atol=1e-7, rtol=0
    )


def test_shade_is_sdf_gradient_and_colour_at_the_shells_samples_and_empty_beyond(sphere):
    """One search for all samples, then the same computation as sdf / gradient / color at the samples within
    the shell (so equal with tolerance 0); beyond it f is the template's distance, no gradient, no colour."""
    _, avatar = _bound(sphere, planes_scale=0.3)
    with torch.no_grad():
        for p in avatar.field.sdf_net.parameters():
            p.add_(0.01 * torch.randn_like(p))  # a residual that is not zero
    x = _points(300, seed=3)
    dirs = torch.nn.functional.normalize(torch.randn(300, 3, dtype=torch.float64), dim=-1)
    with torch.no_grad():
        f, g, rgb, active = avatar.shade(x, dirs)
    v, faces, _ = sphere
    d = closest_points_brute(x, v, faces).signed_distance
    assert torch.equal(active, d.abs() < SMALL.shell) and 0 < int(active.sum()) < 300
    torch.testing.assert_close(f[active], avatar.sdf(x[active]), atol=0, rtol=0)
    torch.testing.assert_close(g[active], avatar.gradient(x[active]), atol=0, rtol=0)
    torch.testing.assert_close(rgb[active], avatar.color(x[active], dirs[active]).detach(), atol=0, rtol=0)
    torch.testing.assert_close(f[~active], avatar.sdf(x[~active]), atol=0, rtol=0)
    assert float(g[~active].abs().max()) == 0.0 and float(rgb[~active].abs().max()) == 0.0
