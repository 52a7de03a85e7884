"""TriHuman's posed template and motion texture: skinning after the embedded deformation, and the 18-channel
UV texture of three frames' positions and normals."""

from __future__ import annotations

import pytest
import torch
from papernodes.models.common.errors import InputError
from papernodes.models.trihuman.deform import DeformationNetwork, build_embedded_graph
from papernodes.models.trihuman.template import motion_texture, posed_template, vertex_normals

torch.set_num_threads(1)


def _grid(n=9):
    """A flat n x n grid in the z = 0 plane with x = u, y = v (so any linear function of position is linear
    in UV), counter-clockwise seen from +z."""
    u, v = torch.meshgrid(
        torch.linspace(0, 1, n, dtype=torch.float64),
        torch.linspace(0, 1, n, dtype=torch.float64),
        indexing="xy",
    )
    verts = torch.stack([u.reshape(-1), v.reshape(-1), torch.zeros(n * n, dtype=torch.float64)], -1)
    idx = torch.arange(n * n).reshape(n, n)
    a, b, c, d = (
        idx[:-1, :-1].reshape(-1),
        idx[:-1, 1:].reshape(-1),
        idx[1:, :-1].reshape(-1),
        idx[1:, 1:].reshape(-1),
    )
    faces = torch.cat([torch.stack([a, b, d], 1), torch.stack([a, d, c], 1)])
    return verts, faces, verts[:, :2].clone()


def test_vertex_normals_of_a_plane_and_a_batch():
    v, f, _ = _grid()
    n = vertex_normals(torch.stack([v, -v]), f)
    torch.testing.assert_close(n[0], torch.tensor([0, 0, 1.0], dtype=torch.float64).expand_as(v))
    torch.testing.assert_close(
        n[1], torch.tensor([0, 0, 1.0], dtype=torch.float64).expand_as(v)
    )  # x,y mirrored twice


def test_motion_texture_holds_three_frames_positions_and_normals():
    v, f, uv = _grid()
    shift = torch.tensor([[0, 0, 0], [0.1, 0, 0], [0.2, 0, 0.05]], dtype=torch.float64)
    frames = v[None] + shift[:, None]  # frame t, t-1, t-2: translated copies
    tex, mask = motion_texture(frames, f, uv, size=32)
    assert tex.shape == (18, 32, 32) and bool(mask.all())  # the grid covers the UV square
    from papernodes.models.trihuman.uv_raster import texel_centers

    uvc = texel_centers(32, dtype=torch.float64)
    for k in range(3):  # positions are linear in UV: interpolation is exact
        expected = (
            torch.stack([uvc[..., 0], uvc[..., 1], torch.zeros(32, 32, dtype=torch.float64)])
            + shift[k][:, None, None]
        )
        torch.testing.assert_close(tex[6 * k : 6 * k + 3], expected, atol=1e-12, rtol=0)
        torch.testing.assert_close(
            tex[6 * k + 3 : 6 * k + 6],
            torch.tensor([0, 0, 1.0], dtype=torch.float64)[:, None, None].expand(3, 32, 32),
        )
    with pytest.raises(InputError, match="frames"):
        motion_texture(v[None], f, uv)


def test_posed_template_at_init_is_the_skinned_template():
    """Zero-initialised deformation heads: posing is plain dual-quaternion skinning; one bone translated moves
    the vertices it owns by that translation."""
    v, f, _ = _grid()
    v = v.float()
    graph = build_embedded_graph(v, 12)
    net = DeformationNetwork(graph, pose_dim=4, hidden=16)
    weights = torch.zeros(v.shape[0], 2)
    weights[v[:, 0] < 0.5, 0] = 1
    weights[v[:, 0] >= 0.5, 1] = 1
    bones = torch.eye(4).repeat(2, 2, 1, 1)
    bones[:, 1, 0, 3] = 0.3  # bone 1 moves +0.3 in x
    posed, reg = posed_template(v, net, torch.randn(2, 4), weights, bones)
    expected = v + torch.stack([0.3 * weights[:, 1], torch.zeros(len(v)), torch.zeros(len(v))], -1)
    torch.testing.assert_close(posed, expected.expand(2, -1, -1), atol=1e-6, rtol=0)
    assert float(reg.detach()) < 1e-12
    with pytest.raises(InputError, match="bone_transforms"):
        posed_template(v, net, torch.randn(2, 4), weights, bones[:1])
