"""Grids and marching tetrahedra (models/common/isosurface.py): analytic SDFs give watertight, outward
meshes on the right surface with the right volume and topology; empty grids give empty meshes; chunking
does not change a grid; bad inputs are refused by name."""

from __future__ import annotations

import math

import pytest
import torch
import trimesh
from papernodes.models.common import isosurface as I
from papernodes.models.common.errors import InputError


def _mesh(field, bound=1.0):
    v, f = I.marching_tetrahedra(field, bound)
    return v, f, trimesh.Trimesh(v.numpy(), f.numpy(), process=True)


def test_sphere_is_watertight_outward_on_the_sphere_with_its_volume():
    p = I.grid_points(48, dtype=torch.float64)
    v, f, mesh = _mesh(p.norm(dim=-1) - 0.6)
    assert v.dtype == torch.float64 and f.dtype == torch.long
    assert mesh.is_watertight and mesh.euler_number == 2
    assert (v.norm(dim=-1) - 0.6).abs().max() < 2 / 47
    assert mesh.volume == pytest.approx(4 / 3 * math.pi * 0.6**3, rel=0.03)  # positive: faces outward


def test_torus_has_genus_one_and_an_off_centre_box_its_volume():
    p = I.grid_points(48, dtype=torch.float64)
    ring = torch.stack([torch.sqrt(p[..., 0] ** 2 + p[..., 2] ** 2) - 0.5, p[..., 1]], -1).norm(dim=-1) - 0.2
    _, _, torus = _mesh(ring)
    assert torus.is_watertight and torus.euler_number == 0
    assert torus.volume == pytest.approx(2 * math.pi**2 * 0.5 * 0.2**2, rel=0.03)
    q = (p - p.new_tensor([0.2, -0.1, 0.05])).abs() - p.new_tensor([0.3, 0.2, 0.4])
    box = q.clamp_min(0).norm(dim=-1) + q.amax(-1).clamp_max(0)
    _, _, mesh = _mesh(box)
    assert mesh.is_watertight and mesh.volume == pytest.approx(0.6 * 0.4 * 0.8, rel=0.03)
    assert mesh.bounds[0] == pytest.approx([-0.1, -0.3, -0.35], abs=0.01)


def test_slabs_do_not_change_the_mesh_and_bound_scales_it():
    p = I.grid_points(20, dtype=torch.float64)
    field = p.norm(dim=-1) - 0.5
    v1, f1 = I.marching_tetrahedra(field, slab=3)
    v2, f2 = I.marching_tetrahedra(field, slab=64)
    assert torch.equal(v1, v2) and torch.equal(f1, f2)
    v3, _ = I.marching_tetrahedra(field, bound=2.0)
    torch.testing.assert_close(v3, 2 * v1, atol=1e-12, rtol=0)


def test_empty_and_full_fields_give_empty_meshes():
    for value in (1.0, -1.0):
        v, f = I.marching_tetrahedra(torch.full((5, 5, 5), value))
        assert v.shape == (0, 3) and f.shape == (0, 3)


def test_sample_grid_is_chunk_invariant_and_ordered_x_y_z():
    fn = lambda q: q[:, 0] + 10 * q[:, 1] + 100 * q[:, 2]  # noqa: E731
    a = I.sample_grid(fn, 9, chunk=7)
    assert torch.equal(a, I.sample_grid(fn, 9, chunk=65536))
    assert a[8, 0, 0] == pytest.approx(1 - 10 - 100) and a[0, 8, 0] == pytest.approx(-1 + 10 - 100)


def test_bad_inputs_are_named():
    with pytest.raises(InputError, match="field"):
        I.marching_tetrahedra(torch.zeros(4, 4))
    with pytest.raises(InputError, match="field"):
        I.marching_tetrahedra(torch.zeros(4, 1, 4))
    with pytest.raises(InputError, match="resolution"):
        I.grid_points(1)
    with pytest.raises(InputError, match="chunk"):
        I.sample_grid(lambda q: q[:, 0], 4, chunk=0)
