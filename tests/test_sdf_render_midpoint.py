"""NeuS's own renderer (models/common/sdf_render_midpoint.py): exact against the edge renderer where its
section estimate is exact (an SDF linear along the ray), close on a sphere, inactive samples are empty, the
annealed cosine, gradients, and errors naming the input."""

from __future__ import annotations

import pytest
import torch
from papernodes.models.common import sdf_render as R
from papernodes.models.common import sdf_render_midpoint as M
from papernodes.models.common.errors import InputError

torch.set_num_threads(1)


def _rays(n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    o = torch.zeros(n, 3, dtype=torch.float64)
    o[:, 2] = -2.0
    d = torch.nn.functional.normalize(
        torch.cat([0.4 * (torch.rand(n, 2, generator=g, dtype=torch.float64) - 0.5), torch.ones(n, 1)], 1),
        dim=-1,
    )
    return o, d.to(torch.float64)


def _plane_shader(normal, offset, rgb=(0.2, 0.5, 0.9)):
    """f(x) = n.x - offset, linear everywhere (n a unit vector: a true distance)."""
    n = torch.nn.functional.normalize(torch.tensor(normal, dtype=torch.float64), dim=0)

    def shade(x, dirs):
        f = x @ n - offset
        return f, n.expand_as(x), x.new_tensor(rgb).expand_as(x), None

    def sdf(x):
        return x @ n - offset

    return shade, sdf, (lambda x, d: x.new_tensor(rgb).expand_as(x))


def _sphere_shader(r=0.5):
    def shade(x, dirs):
        norm = x.norm(dim=-1)
        return norm - r, x / norm[:, None], (0.5 + 0.5 * x / norm[:, None]), None

    return shade


def test_a_plane_facing_the_rays_renders_exactly_as_with_the_edge_renderer():
    """f linear along the ray and cos < 0: f -+ cos delta / 2 are the exact edge values, so alpha, weights,
    colour, opacity and distance equal the edge renderer's to float64 round-off."""
    o, d = _rays()
    shade, sdf, colour = _plane_shader((0.2, -0.1, -1.0), -0.3)  # surface near z = 0.3, normal towards -z
    kw = dict(near=1.0, far=3.5, samples=40, inv_s=200.0, background=(1.0, 0.0, 0.5))
    ours = M.render_rays_midpoint(shade, o, d, **kw)
    edges = R.render_rays(sdf, colour, o, d, view_dependent=True, **kw)
    assert float(ours["opacity"].min()) > 0.99  # the plane is hit
    for key in ("rgb", "opacity", "distance"):
        torch.testing.assert_close(ours[key], edges[key], atol=1e-12, rtol=0)


def test_a_sphere_converges_to_the_edge_renderer_and_to_its_exact_depth():
    o, d = _rays(300)
    kw = dict(near=1.0, far=3.0, inv_s=400.0, background=(0.0, 0.0, 0.0))
    ours = M.render_rays_midpoint(_sphere_shader(), o, d, samples=256, **kw)
    edges = R.render_rays(lambda x: x.norm(dim=-1) - 0.5, lambda x, v: 0.5 + 0.5 * x / x.norm(dim=-1, keepdim=True),
                          o, d, samples=256, view_dependent=True, **kw)  # fmt: skip
    assert float((ours["opacity"] - edges["opacity"]).abs().max()) < 2e-3
    assert float((ours["rgb"] - edges["rgb"]).abs().max()) < 5e-3
    b = (o * d).sum(-1)
    disc = b * b - ((o * o).sum(-1) - 0.25)
    hit = disc > 0
    t = -b - disc.clamp_min(0).sqrt()
    assert bool(((ours["opacity"] > 0.5) == hit).all())
    assert float((ours["distance"] - t)[hit].abs().max()) < 2.0 / 256  # within one section


def test_inactive_samples_are_empty():
    o, d = _rays(50)
    base = _sphere_shader()

    def none_active(x, dirs):
        f, g, c, _ = base(x, dirs)
        return f, g, c, torch.zeros(len(x), dtype=torch.bool)

    def far_inactive(x, dirs):  # samples > 0.1 from the surface are empty: they carried ~no weight anyway
        f, g, c, _ = base(x, dirs)
        return f, g, c, f.abs() < 0.1

    kw = dict(near=1.0, far=3.0, samples=64, inv_s=400.0, background=(0.1, 0.2, 0.3))
    out = M.render_rays_midpoint(none_active, o, d, **kw)
    assert float(out["opacity"].abs().max()) == 0.0
    torch.testing.assert_close(out["rgb"], torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64).expand(50, 3))
    full = M.render_rays_midpoint(base, o, d, **kw)
    masked = M.render_rays_midpoint(far_inactive, o, d, **kw)
    torch.testing.assert_close(masked["rgb"], full["rgb"], atol=1e-6, rtol=0)


def test_the_annealed_cosine_gives_rays_leaving_the_surface_some_opacity_only_before_annealing():
    """NeuS's r: at r = 1 a section whose SDF rises along the ray (cos > 0) gets no opacity; at r = 0 the
    slope estimate is -(1 - cos) / 2, never 0 for cos < 1, so such sections still get some."""
    o = torch.tensor([[0.0, 0.0, 0.0]], dtype=torch.float64)
    d = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    shade, _, _ = _plane_shader((0.0, 0.0, 1.0), 0.5)  # f rises along the ray, zero at z = 0.5
    kw = dict(near=0.0, far=1.0, samples=16, inv_s=50.0, background=(0.0, 0.0, 0.0))
    assert float(M.render_rays_midpoint(shade, o, d, cos_anneal_ratio=1.0, **kw)["opacity"]) == 0.0
    assert float(M.render_rays_midpoint(shade, o, d, cos_anneal_ratio=0.0, **kw)["opacity"]) == 0.0  # cos = 1
    tilted, _, _ = _plane_shader((0.0, 0.6, 0.8), 0.5)
    assert float(M.render_rays_midpoint(tilted, o, d, cos_anneal_ratio=1.0, **kw)["opacity"]) == 0.0
    assert float(M.render_rays_midpoint(tilted, o, d, cos_anneal_ratio=0.0, **kw)["opacity"]) > 0.05


def test_gradients_reach_the_shader_and_inv_s_and_chunks_do_not_matter():
    o, d = _rays(40)
    radius = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    inv_s = torch.tensor(100.0, dtype=torch.float64, requires_grad=True)

    def shade(x, dirs):
        norm = x.norm(dim=-1)
        return norm - radius, x / norm[:, None], (x / norm[:, None]).abs(), None

    kw = dict(near=1.0, far=3.0, samples=32, inv_s=inv_s)
    whole = M.render_rays_midpoint(shade, o, d, chunk=64, **kw)
    split = M.render_rays_midpoint(shade, o, d, chunk=7, **kw)
    torch.testing.assert_close(whole["rgb"], split["rgb"], atol=0, rtol=0)
    whole["opacity"].sum().backward()
    assert float(radius.grad) > 0 and inv_s.grad is not None and torch.isfinite(inv_s.grad)


def test_bad_inputs_are_named():
    o, d = _rays(4)
    shade = _sphere_shader()
    with pytest.raises(InputError, match="cos_anneal_ratio"):
        M.render_rays_midpoint(shade, o, d, cos_anneal_ratio=1.5)
    with pytest.raises(InputError, match="inv_s"):
        M.render_rays_midpoint(shade, o, d, inv_s=0.0)
    with pytest.raises(InputError, match="shade_fn's gradient"):
        M.render_rays_midpoint(lambda x, v: (x[:, 0], x[:, :2], x, None), o, d)
    with pytest.raises(InputError, match="shade_fn"):
        M.render_rays_midpoint(lambda x, v: x[:, 0], o, d)
    with pytest.raises(InputError, match="active"):
        M.render_rays_midpoint(lambda x, v: (x[:, 0], x, x, torch.ones(3, dtype=torch.bool)), o, d)
