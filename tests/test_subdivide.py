"""Midpoint subdivision (models/common/subdivide.py): counts, winding, attributes, against trimesh."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from papernodes.models.common.errors import InputError
from papernodes.models.common.subdivide import edges_of, subdivide_midpoint


@pytest.fixture(scope="module")
def ico():
    import trimesh

    m = trimesh.creation.icosphere(subdivisions=1)
    return torch.tensor(m.vertices, dtype=torch.float64), torch.tensor(m.faces, dtype=torch.long)


def _normals(v, f):
    return torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])


def test_counts_euler_and_winding(ico):
    v, f = ico
    e = edges_of(f)[0].shape[0]
    v2, f2 = subdivide_midpoint(v, f)
    assert v2.shape[0] == v.shape[0] + e and f2.shape[0] == 4 * f.shape[0]
    e2 = edges_of(f2)[0].shape[0]
    assert v2.shape[0] - e2 + f2.shape[0] == v.shape[0] - e + f.shape[0] == 2  # a sphere stays a sphere
    parent = _normals(v, f).repeat_interleave(4, 0)  # children follow their parent's order
    assert bool(((_normals(v2, f2) * parent).sum(-1) > 0).all())  # winding kept: outward stays outward
    torch.testing.assert_close(
        _normals(v2, f2).norm(dim=-1).sum(), _normals(v, f).norm(dim=-1).sum(), rtol=1e-12, atol=0
    )  # flat


def test_same_vertices_and_faces_as_trimesh(ico):
    import trimesh

    v, f = ico
    v2, f2 = subdivide_midpoint(v, f)
    tv, tf = trimesh.remesh.subdivide(v.numpy(), f.numpy())
    ours = {tuple(np.round(x, 12)) for x in v2.numpy()}
    theirs = {tuple(np.round(x, 12)) for x in tv}
    assert ours == theirs
    tri = lambda verts, faces: {frozenset(tuple(np.round(verts[i], 12)) for i in t) for t in faces}  # noqa: E731
    assert tri(v2.numpy(), f2.numpy()) == tri(tv, tf)


def test_per_vertex_and_per_corner_attributes(ico):
    v, f = ico
    uv = v[:, :2].clone()
    corners = torch.rand(f.shape[0], 3, 2, dtype=torch.float64)
    v2, f2, uv2, corners2 = subdivide_midpoint(v, f, uv, corners)
    torch.testing.assert_close(uv2, v2[:, :2], atol=1e-15, rtol=0)  # averaged like the positions
    # per corner: each child's corners are its parent's corners or their midpoints, per face
    child = corners2.reshape(f.shape[0], 4, 3, 2)
    torch.testing.assert_close(child[:, 0, 0], corners[:, 0])
    torch.testing.assert_close(child[:, 3, 0], (corners[:, 0] + corners[:, 1]) / 2)
    with pytest.raises(InputError, match="attributes"):
        subdivide_midpoint(v, f, torch.zeros(5, 2))
    with pytest.raises(InputError, match="faces"):
        subdivide_midpoint(v, f + 100)
