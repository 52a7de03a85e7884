"""The official U-Net's input (models/trihuman/official/motion_texture): the release's UV barycentric map,
its one-texel dilation and the 18-channel motion texture, against plain-loop references written from the
layout notes (section 3) and against properties a correct rasteriser has."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from papernodes.models.common.errors import InputError
from papernodes.models.trihuman.official import motion_texture as MT

torch.set_num_threads(1)


def _naive_map(corner_uvs: np.ndarray, size: int):
    """The rule as the layout notes state it, one texel and one face at a time (float64): texel (x, y) is
    the UV corner (x / S, y / S); the first face (in file order) containing it, edges included, owns it."""
    face = -np.ones((size, size), dtype=np.int64)
    weights = np.zeros((size, size, 3))
    for i, tri in enumerate(corner_uvs):
        (p0x, p0y), (p1x, p1y), (p2x, p2y) = tri
        area = 0.5 * (-p1y * p2x + p0y * (-p1x + p2x) + p0x * (p1y - p2y) + p1x * p2y)
        if area == 0:
            continue
        for x in range(size):
            for y in range(size):
                if face[x, y] != -1:
                    continue
                px, py = x / size, y / size
                w1 = 1 / (2 * area) * (p0y * p2x - p0x * p2y + (p2y - p0y) * px + (p0x - p2x) * py)
                w2 = 1 / (2 * area) * (p0x * p1y - p0y * p1x + (p0y - p1y) * px + (p1x - p0x) * py)
                w0 = 1 - w1 - w2
                if w0 >= 0 and w1 >= 0 and w2 >= 0:
                    face[x, y] = i
                    weights[x, y] = (w0, w1, w2)
    return face, weights


def _naive_dilate(face: np.ndarray, weights: np.ndarray):
    """The release's dilation loop as described: every covered source, in row-major order, offers itself to
    its eight neighbours; a neighbour takes it when it is nearer (L1) than what it holds."""
    h, w = face.shape
    dist = -np.ones((h, w))
    new_face, new_w = -np.ones_like(face), np.zeros_like(weights)
    for i in range(h):
        for j in range(w):
            if face[i, j] == -1:
                continue
            new_face[i, j], new_w[i, j], dist[i, j] = face[i, j], weights[i, j], 0
            for dx, dy in MT._OFFSETS:
                ti, tj = i + dx, j + dy
                if not (0 <= ti < h and 0 <= tj < w):
                    continue
                if dist[ti, tj] == -1 or abs(dx) + abs(dy) < dist[ti, tj]:
                    dist[ti, tj] = abs(dx) + abs(dy)
                    new_face[ti, tj], new_w[ti, tj] = face[i, j], weights[i, j]
    return new_face, new_w


def _uv_mesh(seed: int = 0):
    """Two UV charts of a triangulated grid with shared edges (ties on edges and at texel corners), jittered
    vertices in the second, an overlapping face, and a degenerate one."""
    rng = np.random.default_rng(seed)
    tris = []
    for ox, jitter in ((0.05, 0.0), (0.55, 0.02)):
        g = np.stack(np.meshgrid(np.linspace(0, 0.375, 4), np.linspace(0, 0.75, 7), indexing="ij"), -1)
        g = g + np.array([ox, 0.125])
        g = g + rng.uniform(-jitter, jitter, g.shape) * (jitter > 0)
        for a in range(3):
            for b in range(6):
                tris.append([g[a, b], g[a + 1, b], g[a, b + 1]])
                tris.append([g[a + 1, b], g[a + 1, b + 1], g[a, b + 1]])
    tris.append([[0.1, 0.2], [0.3, 0.25], [0.15, 0.5]])  # overlaps faces before it: loses everywhere
    tris.append([[0.7, 0.7], [0.8, 0.8], [0.9, 0.9]])  # degenerate
    return torch.tensor(np.array(tris), dtype=torch.float64)


@pytest.mark.parametrize("size", [16, 37])
def test_uv_map_equals_the_per_texel_rule(size):
    uvs = _uv_mesh()
    got = MT.uv_barycentric_map(uvs, size)
    face, weights = _naive_map(uvs.numpy(), size)
    assert np.array_equal(got.face.numpy(), face)
    assert np.array_equal(got.weights.numpy(), weights)  # same expression, same float64 order
    assert got.covered.sum() > size  # the grid is rasterised, not empty
    assert not (got.face == uvs.shape[0] - 1).any()  # the degenerate face covers nothing


def test_uv_map_chunking_does_not_change_it(monkeypatch):
    uvs = _uv_mesh(1)
    whole = MT.uv_barycentric_map(uvs, 24)
    monkeypatch.setattr(MT, "_PAIRS_PER_CHUNK", 7)  # one face per chunk
    parts = MT.uv_barycentric_map(uvs, 24)
    assert torch.equal(whole.face, parts.face) and torch.equal(whole.weights, parts.weights)


def test_edge_cracks_only_on_edges_dilation_fills_them_weights_reconstruct_uv():
    # two faces sharing the diagonal of the square [0, 0.9]^2: in exact arithmetic every texel corner is
    # covered; the release's float64 expression drops a few that lie exactly on an edge (w = -1e-17), and its
    # one-texel dilation fills them. A crack anywhere else would be a rasteriser bug.
    uvs = torch.tensor([[[0, 0], [1, 0], [0, 1]], [[1, 0], [1, 1], [0, 1]]], dtype=torch.float64) * 0.9
    m = MT.uv_barycentric_map(uvs, 10)
    for x, y in torch.nonzero(~m.covered).tolist():
        assert x + y == 9 or x == 9 or y == 9, (x, y)  # on the diagonal or the outer edge
    assert MT.dilate_uv_map(m).covered.all()
    xs, ys = torch.nonzero(m.covered, as_tuple=True)
    tri = uvs[m.face[xs, ys]]
    back = (m.weights[xs, ys].unsqueeze(-1) * tri).sum(1)
    torch.testing.assert_close(back, torch.stack([xs, ys], 1).double() / 10, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 3])
def test_dilation_equals_the_release_loop(seed):
    uvs = _uv_mesh(seed)
    m = MT.uv_barycentric_map(uvs, 29)
    got = MT.dilate_uv_map(m)
    face, weights = _naive_dilate(m.face.numpy(), m.weights.numpy())
    assert np.array_equal(got.face.numpy(), face) and np.array_equal(got.weights.numpy(), weights)
    grown = got.covered & ~m.covered
    assert grown.any()
    # exactly one ring: every newly covered texel touches an originally covered one
    near = torch.nn.functional.max_pool2d(m.covered[None, None].float(), 3, 1, 1)[0, 0] > 0
    assert bool(near[grown].all()) and torch.equal(got.covered, near)


def test_motion_texture_interpolates_positions_and_normals_of_a_plane():
    # a flat mesh whose positions are an affine function of its UVs: every covered (undilated) texel must
    # read that function at its UV corner, and every normal is the plane's.
    uvs = _uv_mesh()[:-2]
    n = uvs.shape[0]
    faces = torch.arange(3 * n).view(n, 3)
    uv_flat = uvs.reshape(-1, 2)
    a = torch.tensor([[0.3, -0.2], [0.1, 0.5], [0.0, 0.0]], dtype=torch.float64)
    pos0 = uv_flat @ a.T + torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    positions = torch.stack([pos0, pos0 + 0.01, pos0 - 0.02])
    m = MT.uv_barycentric_map(uvs, 32)
    tex = MT.release_motion_texture(m, faces, positions)
    assert tex.shape == (18, 32, 32)
    xs, ys = torch.nonzero(m.covered, as_tuple=True)
    uv = torch.stack([xs, ys], 1).double() / 32
    expect = uv @ a.T + torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    torch.testing.assert_close(tex[0:3, xs, ys].T, expect, rtol=0, atol=1e-12)
    torch.testing.assert_close(tex[3:6, xs, ys].T, expect + 0.01, rtol=0, atol=1e-12)
    # (v2 - v1) x (v0 - v1) = (A e_u x A e_v) * det(uv2 - uv1, uv0 - uv1), and det > 0 for every grid face
    plane_n = torch.nn.functional.normalize(torch.linalg.cross(a[:, 0], a[:, 1]), dim=0)
    for k in range(3):
        torch.testing.assert_close(tex[9 + 3 * k : 12 + 3 * k, xs, ys].T, plane_n.expand(len(xs), 3),
                                   rtol=0, atol=1e-12)  # fmt: skip
    assert (tex[:, ~m.covered] == 0).all()


def test_vertex_normals_are_uniform_means_of_face_normals():
    # a tent: vertex 0 in two faces of different areas; the release averages unit normals with equal weight
    v = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [-3, 0, 3]], dtype=torch.float64)
    f = torch.tensor([[0, 1, 2], [0, 2, 3]])
    n = MT.release_vertex_normals(v, f)
    fn = [torch.nn.functional.normalize(torch.linalg.cross(v[c] - v[b], v[a] - v[b]), dim=0) for a, b, c in f]
    torch.testing.assert_close(n[0], torch.nn.functional.normalize(fn[0] + fn[1], dim=0), rtol=0, atol=1e-15)
    torch.testing.assert_close(n[1], fn[0], rtol=0, atol=1e-15)


def test_normalised_positions_use_frame_t_root_for_all_frames():
    v = torch.tensor([[[1.2, 2.4, 0.0]], [[2.4, 0.0, 1.2]], [[0.0, 1.2, 2.4]]], dtype=torch.float64)
    out = MT.normalised_positions(v, torch.tensor([1.2, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(out, torch.tensor([[[0.0, 2.0, 0.0]], [[1.0, 0.0, 1.0]], [[-1.0, 1.0, 2.0]]],
                                                 dtype=torch.float64), rtol=0, atol=1e-15)  # fmt: skip


def test_bad_inputs_name_what_was_expected():
    with pytest.raises(InputError, match="corner_uvs"):
        MT.uv_barycentric_map(torch.zeros(4, 2), 8)
    with pytest.raises(InputError, match="size"):
        MT.uv_barycentric_map(torch.zeros(1, 3, 2), 1)
    with pytest.raises(InputError, match="positions"):
        MT.release_motion_texture(MT.uv_barycentric_map(_uv_mesh(), 8), torch.zeros(1, 3).long(),
                                  torch.zeros(2, 3, 3))  # fmt: skip
