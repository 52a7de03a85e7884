"""Grids and marching tetrahedra (models/common/isosurface.py): analytic SDFs give watertight meshes (by the
grid-edge ids, not by trimesh merging vertices), outward faces, the right surface, volume and topology;
slabs, chunks and boxes do not change the result; exact-level grid points leave no zero-area faces when
asked; empty grids give empty meshes; bad inputs are refused by name."""

from __future__ import annotations

import math

import pytest
import torch
import trimesh
from papernodes.models.common import isosurface as I
from papernodes.models.common.errors import InputError

R = 48
H = 2 / (R - 1)  # grid spacing over [-1, 1]


def _mesh(v, f):
    return trimesh.Trimesh(v.numpy(), f.numpy(), process=False)  # no vertex merging: our own dedup counts


def _box_sdf(p, centre, half):
    q = (p - p.new_tensor(centre)).abs() - p.new_tensor(half)
    return q.clamp_min(0).norm(dim=-1) + q.amax(-1).clamp_max(0)


@pytest.fixture(scope="module")
def points():
    return I.grid_points(R, dtype=torch.float64)


def test_sphere_is_watertight_outward_on_the_sphere_with_its_volume(points):
    v, f = I.marching_tetrahedra(points.norm(dim=-1) - 0.6)
    assert v.dtype == torch.float64 and f.dtype == torch.long and v.shape[1] == f.shape[1] == 3
    mesh = _mesh(v, f)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.euler_number == 2
    assert (v.norm(dim=-1) - 0.6).abs().max() < H
    assert mesh.volume > 0 and mesh.volume == pytest.approx(4 / 3 * math.pi * 0.6**3, rel=0.03)
    # every face, not only the total: counter-clockwise seen from outside (normal away from the centre)
    tri = v[f]
    normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert bool(((normal * tri.mean(1)).sum(-1) > 0).all())
    assert len(torch.unique(f)) == len(v)  # no unreferenced vertices


def test_float32_stays_float32_and_level_moves_the_surface(points):
    v, f = I.marching_tetrahedra((points.norm(dim=-1) - 0.5).float(), level=0.1)
    assert v.dtype == torch.float32
    assert (v.norm(dim=-1) - 0.6).abs().max() < H
    assert _mesh(v.double(), f).is_watertight


def test_torus_has_euler_characteristic_zero(points):
    ring = torch.stack([points[..., [0, 2]].norm(dim=-1) - 0.5, points[..., 1]], -1).norm(dim=-1) - 0.2
    torus = _mesh(*I.marching_tetrahedra(ring))
    assert torus.is_watertight and torus.euler_number == 0
    assert torus.volume == pytest.approx(2 * math.pi**2 * 0.5 * 0.2**2, rel=0.03)


def test_off_centre_box_has_its_volume_and_bounds(points):
    mesh = _mesh(*I.marching_tetrahedra(_box_sdf(points, (0.2, -0.1, 0.05), (0.3, 0.2, 0.4))))
    assert mesh.is_watertight and mesh.euler_number == 2
    assert mesh.volume == pytest.approx(0.6 * 0.4 * 0.8, rel=0.03)
    assert mesh.bounds[0] == pytest.approx([-0.1, -0.3, -0.35], abs=H / 2)
    assert mesh.bounds[1] == pytest.approx([0.5, 0.1, 0.45], abs=H / 2)


def test_open_surface_faces_the_outside():
    """A half-space (inside x < 0.1) cut by the grid: a flat open sheet whose normals point to +x."""
    p = I.grid_points(6, dtype=torch.float64)
    v, f = I.marching_tetrahedra(p[..., 0] - 0.1)
    assert torch.allclose(v[:, 0], torch.full_like(v[:, 0], 0.1))
    mesh = _mesh(v, f)
    assert not mesh.is_watertight and mesh.area == pytest.approx(4.0)
    assert bool((mesh.face_normals[:, 0] > 0.999).all())


def test_slabs_do_not_change_the_mesh_and_the_box_places_it():
    p = I.grid_points(20, dtype=torch.float64)
    field = p.norm(dim=-1) - 0.5
    v1, f1 = I.marching_tetrahedra(field, slab=3)
    for slab in (1, 64, None):
        v2, f2 = I.marching_tetrahedra(field, slab=slab)
        assert torch.equal(v1, v2) and torch.equal(f1, f2)
    v3, _ = I.marching_tetrahedra(field, bound=2.0)
    torch.testing.assert_close(v3, 2 * v1, atol=1e-12, rtol=0)
    lo, hi = (0.0, -1.0, 2.0), (1.0, 3.0, 2.5)
    v4, f4 = I.marching_tetrahedra(field, bbox_min=lo, bbox_max=hi)
    lo_t, hi_t = torch.tensor(lo, dtype=torch.float64), torch.tensor(hi, dtype=torch.float64)
    torch.testing.assert_close(v4, lo_t + (v1 + 1) / 2 * (hi_t - lo_t), atol=1e-12, rtol=0)
    assert torch.equal(f4, f1)


def test_exact_level_points_give_no_zero_area_faces_when_dropped():
    """A cube whose faces run through grid points: vertices land on those points (t = 0 or 1)."""
    g = torch.arange(11, dtype=torch.float64) - 5
    cube = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), -1).abs().amax(-1) - 3
    raw = _mesh(*I.marching_tetrahedra(cube, bound=5.0))
    assert raw.is_watertight and (raw.area_faces < 1e-12).any()
    v, f = I.marching_tetrahedra(cube, bound=5.0, drop_degenerate=True)
    clean = _mesh(v, f)
    assert clean.is_watertight and clean.is_winding_consistent and clean.euler_number == 2
    assert not (clean.area_faces < 1e-12).any() and len(torch.unique(f)) == len(v)
    assert len(v) == len(torch.unique(v, dim=0))  # coincident vertices merged
    assert clean.volume == pytest.approx(raw.volume, rel=1e-12)
    sphere = I.grid_points(16, dtype=torch.float64).norm(dim=-1) - 0.55  # no exact hits: nothing changes
    assert all(
        torch.equal(a, b)
        for a, b in zip(I.marching_tetrahedra(sphere), I.marching_tetrahedra(sphere, drop_degenerate=True))
    )


@pytest.mark.parametrize("value", [1.0, -1.0])
def test_empty_and_full_fields_give_empty_meshes(value):
    v, f = I.marching_tetrahedra(torch.full((5, 4, 3), value, dtype=torch.float64))
    assert v.shape == (0, 3) and f.shape == (0, 3) and v.dtype == torch.float64 and f.dtype == torch.long


def test_sample_grid_is_chunk_invariant_and_ordered_x_y_z():
    fn = lambda q: q[:, 0] + 10 * q[:, 1] + 100 * q[:, 2]  # noqa: E731
    a = I.sample_grid(fn, 9, chunk=7)
    assert torch.equal(a, I.sample_grid(fn, 9, chunk=65536)) and a.shape == (9, 9, 9)
    assert a[8, 0, 0] == pytest.approx(1 - 10 - 100) and a[0, 8, 0] == pytest.approx(-1 + 10 - 100)
    sphere = lambda q: q.norm(dim=-1) - 0.5  # noqa: E731
    b = I.sample_grid(sphere, 13, bound=1.5, chunk=7, dtype=torch.float64)
    assert b.dtype == torch.float64
    assert torch.equal(
        b, sphere(I.grid_points(13, 1.5, dtype=torch.float64).reshape(-1, 3)).reshape(13, 13, 13)
    )
    p = I.grid_points(3, 2.0)
    assert (
        p.shape == (3, 3, 3, 3) and p[0, 0, 0].tolist() == [-2, -2, -2] and p[2, 1, 0].tolist() == [2, 0, -2]
    )


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: I.marching_tetrahedra(torch.zeros(4, 4)), "field"),
        (lambda: I.marching_tetrahedra(torch.zeros(4, 1, 4)), "field"),
        (lambda: I.marching_tetrahedra(torch.zeros(4, 4, 4, dtype=torch.long)), "field"),
        (lambda: I.marching_tetrahedra(torch.full((3, 3, 3), float("nan"))), "field"),
        (lambda: I.marching_tetrahedra(torch.zeros(3, 3, 3), bound=0.0), "bound"),
        (lambda: I.marching_tetrahedra(torch.zeros(3, 3, 3), bbox_min=(0, 0, 0)), "bbox_max"),
        (
            lambda: I.marching_tetrahedra(torch.zeros(3, 3, 3), bbox_min=(0, 0, 0), bbox_max=(1, 0, 1)),
            "bbox_max",
        ),
        (
            lambda: I.marching_tetrahedra(torch.zeros(3, 3, 3), bbox_min=(0, 0), bbox_max=(1, 1, 1)),
            "bbox_min",
        ),
        (lambda: I.marching_tetrahedra(torch.zeros(3, 3, 3), slab=0), "slab"),
        (lambda: I.grid_points(1), "resolution"),
        (lambda: I.grid_points(4.0), "resolution"),
        (lambda: I.sample_grid(lambda q: q[:, 0], 4, chunk=0), "chunk"),
        (lambda: I.sample_grid(lambda q: q, 4), "fn"),
    ],
)
def test_bad_inputs_are_named(call, name):
    with pytest.raises(InputError, match=f"Input '{name}'"):
        call()
