"""NeuS rendering of SDFs (models/common/sdf_render.py): an analytic sphere's and box's silhouettes and
depths match exact ray intersections, colours and background, chunk invariance, jitter, explicit near/far,
gradients to the shape's parameters and to inv_s, dtypes, and errors naming the input."""

from __future__ import annotations

import pytest
import torch
from papernodes.models.common import camera as C
from papernodes.models.common import sdf_render as R
from papernodes.models.common.errors import InputError

S = 64  # image size
N = 128  # sections per ray
SHARP = 512.0  # inv_s


def _colour(rgb):
    return lambda p: p.new_tensor(rgb).expand(len(p), 3)


def _sphere(r):
    return lambda p: p.norm(dim=-1) - r


def _box(half):
    def sdf(p):
        q = p.abs() - p.new_tensor(half)
        return q.clamp_min(0).norm(dim=-1) + q.amax(-1).clamp_max(0)

    return sdf


def _sphere_hits(o, d, r):
    """Exact first hit of unit rays on the sphere |p| = r: (hit mask, distance)."""
    b = (o * d).sum(-1)
    disc = b * b - ((o * o).sum(-1) - r * r)
    return disc > 0, -b - torch.sqrt(disc.clamp_min(0))


def _box_hits(o, d, half):
    """Exact first hit of rays on the box |p_i| <= half_i (slab method)."""
    h = o.new_tensor(half)
    t0, t1 = (-h - o) / d, (h - o) / d
    near, far = torch.minimum(t0, t1).amax(-1), torch.maximum(t0, t1).amin(-1)
    return (far > near) & (near > 0), near


def _check_silhouette_and_depth(out, o, d, E, hit, t):
    mask = out["mask"] > 0.5
    assert (mask == hit).double().mean() >= 0.98
    assert (mask & hit).sum() / (mask | hit).sum() >= 0.97  # IoU
    z = t * (d * E[:, None, None, 2, :3]).sum(-1)  # camera-frame depth of the exact hit
    near, far = R.cube_interval(o, d)
    spacing = (far - near) / N
    both = mask & hit
    assert bool(((out["depth"] - z).abs() <= 2 * spacing)[both].all())
    assert bool((out["depth"][~mask] == 0).all())


@pytest.fixture(scope="module")
def rig():
    K, E = C.orbit_rig(4, radius=2.5, elevation_degrees=20.0, fov_degrees=50.0, width=S, height=S,
                       dtype=torch.float64)  # fmt: skip
    o, d = C.pixel_rays(K, E, S, S)
    return K, E, o, d


def test_sphere_silhouette_depth_and_constant_colour(rig):
    K, E, o, d = rig
    out = R.render_views(_sphere(0.5), _colour((0.2, 0.4, 0.8)), K, E, S, S, samples=N, inv_s=SHARP,
                         background=(0.9, 0.1, 0.3))  # fmt: skip
    assert out["image"].shape == (4, S, S, 3) and out["mask"].shape == out["depth"].shape == (4, S, S)
    assert out["image"].dtype == out["mask"].dtype == out["depth"].dtype == torch.float64
    hit, t = _sphere_hits(o, d, 0.5)
    _check_silhouette_and_depth(out, o, d, E, hit, t)
    solid = out["mask"] > 0.999
    assert solid.sum() > 0.9 * hit.sum()
    want = torch.tensor([0.2, 0.4, 0.8], dtype=torch.float64)
    torch.testing.assert_close(out["image"][solid], want.expand(int(solid.sum()), 3), atol=1e-3, rtol=0)
    closest = ((o * o).sum(-1) - (o * d).sum(-1) ** 2).sqrt()  # distance of each ray from the centre
    clear = closest > 0.55  # misses the sphere by over 0.05
    background = torch.tensor([0.9, 0.1, 0.3], dtype=torch.float64)
    torch.testing.assert_close(out["image"][clear], background.expand(int(clear.sum()), 3), atol=1e-3, rtol=0)
    assert out["mask"][clear].max() < 1e-3


def test_view_dependent_colour_sees_each_ray_direction(rig):
    """A colour field of the direction alone (0.5 + 0.5 d) composites to exactly that colour on an opaque
    pixel (every sample of a ray shares its direction), blended with the background by the opacity."""
    K, E, o, d = rig
    out = R.render_views(_sphere(0.6), lambda p, dirs: 0.5 + 0.5 * dirs, K, E, S, S, samples=N, inv_s=SHARP,
                         background=(0.0, 0.0, 0.0), view_dependent=True)  # fmt: skip
    expected = out["mask"][..., None] * (0.5 + 0.5 * d)
    torch.testing.assert_close(out["image"], expected, atol=1e-9, rtol=0)
    hit, _ = _sphere_hits(o, d, 0.6)
    assert (out["mask"][hit] > 0.99).float().mean() > 0.95  # mostly opaque: the check above is not vacuous
    with pytest.raises(TypeError):  # a points-only colour field is not called with directions silently
        R.render_views(_sphere(0.6), lambda p: p, K, E, 8, 8, view_dependent=True)


def test_box_silhouette_and_depth(rig):
    K, E, o, d = rig
    half = (0.45, 0.3, 0.6)
    out = R.render_views(_box(half), _colour((1.0, 0.0, 0.0)), K, E, S, S, samples=N, inv_s=SHARP)
    hit, t = _box_hits(o, d, half)
    _check_silhouette_and_depth(out, o, d, E, hit, t)


def test_chunks_do_not_change_the_image_and_gradients_reach_the_shape():
    K, E = C.orbit_rig(2, width=16, height=16, dtype=torch.float64)
    radius = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    tint = torch.tensor([0.1, 0.7, 0.3], dtype=torch.float64, requires_grad=True)
    inv_s = torch.tensor(64.0, dtype=torch.float64, requires_grad=True)
    sdf = lambda p: p.norm(dim=-1) - radius  # noqa: E731
    colour = lambda p: tint.expand(len(p), 3)  # noqa: E731
    a = R.render_views(sdf, colour, K, E, 16, 16, samples=32, chunk=37, inv_s=inv_s)
    b = R.render_views(sdf, colour, K, E, 16, 16, samples=32, chunk=4096, inv_s=inv_s)
    for key in ("image", "mask", "depth"):
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=0)
    (g_radius,) = torch.autograd.grad(a["mask"].sum(), radius, retain_graph=True)
    assert torch.isfinite(g_radius) and g_radius > 0  # a larger sphere covers more pixels
    g_image, g_tint, g_s = torch.autograd.grad(a["image"].sum(), (radius, tint, inv_s))
    assert torch.isfinite(g_image) and g_image != 0
    assert bool(torch.isfinite(g_tint).all() and (g_tint > 0).all()) and torch.isfinite(g_s) and g_s != 0


def test_float32_rays_render_float32_and_rays_missing_the_cube_are_background():
    o = torch.tensor([[0.0, 5.0, 5.0], [0.0, 0.0, 3.0]])
    d = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    out = R.render_rays(_sphere(0.5), _colour((0, 0, 0)), o, d, background=(0.3, 0.3, 0.3), inv_s=SHARP)
    assert out["rgb"].dtype == out["opacity"].dtype == out["distance"].dtype == torch.float32
    assert out["opacity"][0].item() == 0 and out["distance"][0].item() == 0
    assert torch.allclose(out["rgb"][0], torch.full((3,), 0.3))
    assert out["opacity"][1].item() > 0.999 and out["distance"][1].item() == pytest.approx(2.5, abs=0.02)
    assert torch.allclose(out["rgb"][1], torch.zeros(3), atol=1e-3)


def test_explicit_near_far_and_jitter():
    g = torch.Generator().manual_seed(0)
    o = torch.tensor([0.0, 0.0, 3.0], dtype=torch.float64).expand(64, 3)
    d = torch.nn.functional.normalize(torch.randn(64, 3, generator=g, dtype=torch.float64) * 0.1
                                      + torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64), dim=-1)  # fmt: skip
    f, c = _sphere(0.5), _colour((0.5, 0.5, 0.5))
    clipped = R.render_rays(f, c, o, d, samples=N, inv_s=SHARP)
    hit, t = _sphere_hits(o, d, 0.5)
    assert bool(((clipped["opacity"] > 0.5) == hit).all())
    explicit = R.render_rays(f, c, o, d, near=1.0, far=torch.full((64,), 5.0, dtype=torch.float64), samples=4 * N,
                             inv_s=SHARP)  # fmt: skip
    assert bool(((explicit["opacity"] > 0.5) == hit).all())
    assert (explicit["distance"] - t)[hit].abs().max() < 2 * 4.0 / (4 * N)
    empty = R.render_rays(f, c, o, d, near=2.0, far=1.0)  # far <= near: nothing to march through
    assert bool((empty["opacity"] == 0).all())
    # jitter: reproducible by seed, different between seeds, and still the sphere
    j1 = R.render_rays(f, c, o, d, samples=N, inv_s=SHARP, generator=torch.Generator().manual_seed(1))
    j1b = R.render_rays(f, c, o, d, samples=N, inv_s=SHARP, generator=torch.Generator().manual_seed(1))
    j2 = R.render_rays(f, c, o, d, samples=N, inv_s=SHARP, generator=torch.Generator().manual_seed(2))
    assert torch.equal(j1["distance"], j1b["distance"]) and not torch.equal(j1["distance"], j2["distance"])
    assert bool(((j1["opacity"] > 0.5) == hit).all())
    assert (j1["distance"] - t)[hit].abs().max() < 2 * 2.0 * 3**0.5 / N


def test_colour_skipped_where_samples_weigh_nothing(rig):
    """color_min_weight: the colour field sees only the samples weighing more, each pixel moves by at most
    samples * color_min_weight from the full sum (a colour field in [0, 1] that varies along the ray, so
    dropping samples is visible), opacity and depth are the same computation; 0 is the full sum exactly."""
    K, E, o, d = rig
    seen = []

    def colour(p, dirs):
        seen.append(len(p))
        return 0.5 + 0.5 * torch.sin(7 * p)

    kw = dict(samples=N, inv_s=SHARP, background=(0.2, 0.3, 0.4), view_dependent=True)
    full = R.render_views(_sphere(0.6), colour, K, E, S, S, **kw)
    n_full = sum(seen)
    seen.clear()
    same = R.render_views(_sphere(0.6), colour, K, E, S, S, color_min_weight=0.0, **kw)
    assert torch.equal(same["image"], full["image"])
    seen.clear()
    min_weight = 1e-4
    skip = R.render_views(_sphere(0.6), colour, K, E, S, S, color_min_weight=min_weight, **kw)
    assert sum(seen) < 0.25 * n_full, (sum(seen), n_full)  # most samples carry no weight at this sharpness
    err = (skip["image"] - full["image"]).abs().max()
    assert 0 < err <= N * min_weight, err
    assert torch.equal(skip["mask"], full["mask"]) and torch.equal(skip["depth"], full["depth"])


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"samples": 1}, "samples"),
        ({"directions": torch.ones(5, 3)}, "directions"),
        ({"directions": torch.ones(4, 3, dtype=torch.float64)}, "directions"),
        ({"origins": torch.zeros(4, 2)}, "origins"),
        ({"chunk": 0}, "chunk"),
        ({"inv_s": 0.0}, "inv_s"),
        ({"background": (1.0, 1.0)}, "background"),
        ({"near": torch.zeros(3)}, "near"),
        ({"sdf_fn": lambda p: p}, "sdf_fn"),
        ({"color_fn": lambda p: p[:, 0]}, "color_fn"),
        ({"color_min_weight": 1.0}, "color_min_weight"),
        ({"color_min_weight": -1e-4}, "color_min_weight"),
    ],
)
def test_bad_ray_inputs_are_named(kwargs, name):
    args = {
        "sdf_fn": _sphere(0.5),
        "color_fn": _colour((0, 0, 0)),
        "origins": torch.tensor([0.0, 0.0, 3.0]).expand(4, 3),
        "directions": torch.tensor([0.0, 0.0, -1.0]).expand(4, 3),
    }
    args.update(kwargs)
    with pytest.raises(InputError, match=f"Input '{name}'"):
        R.render_rays(**args)


def test_bad_view_inputs_are_named():
    f, c = _sphere(0.5), _colour((0, 0, 0))
    K, E = C.orbit_rig(2)
    for h, w, name in ((0, 16, "height"), (16, 0, "width"), (16, 2.5, "width")):
        with pytest.raises(InputError, match=f"Input '{name}'"):
            R.render_views(f, c, K, E, h, w)
    with pytest.raises(InputError, match="Input 'K'"):
        R.render_views(f, c, torch.eye(4), E, 8, 8)
    with pytest.raises(InputError, match="Input 'world_to_camera'"):
        R.render_views(f, c, K, E[..., :3, :], 8, 8)
    with pytest.raises(InputError, match="Input 'K'"):
        R.render_views(f, c, K[:1].expand(3, 3, 3), E, 8, 8)
    one = R.render_views(f, c, K[0], E[0], 8, 8)  # a single camera keeps a view axis
    assert one["image"].shape == (1, 8, 8, 3)
