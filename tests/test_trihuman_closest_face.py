"""TriHuman's closest-face search (models/trihuman/closest_face.py): the exact point-triangle distance
against a dense sampling of the triangle (vertex, edge and face regions), brute force against every pair,
candidates == brute force near an icosphere, signs (inside negative; pseudonormals at a sharp edge),
texture-cube coordinates (u, v, d), chunking, dtypes, and errors naming the input. Speed is measured in
benchmarks/trihuman_closest_face.py, not here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import trimesh
from papernodes.models.common.errors import InputError
from papernodes.models.trihuman import closest_face as C

F64 = torch.float64


def _region_points(tri: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Points whose closest point on the triangle is a vertex, an edge or the interior (and some random)."""
    a, b, c = tri
    n = np.cross(b - a, c - a)
    n /= np.linalg.norm(n)
    centroid = tri.mean(0)
    out = []
    for k in range(3):  # beyond each vertex, away from the centroid
        v = tri[k]
        out.append(v + (v - centroid) * rng.uniform(0.1, 0.6) + n * rng.normal(0, 0.3))
    for k in range(3):  # beyond each edge, in the plane's outward direction
        p, q = tri[k], tri[(k + 1) % 3]
        mid = p + (q - p) * rng.uniform(0.2, 0.8)
        outward = np.cross(q - p, n)
        outward *= np.sign(np.dot(outward, mid - centroid)) / np.linalg.norm(outward)
        out.append(mid + outward * rng.uniform(0.05, 0.5) + n * rng.normal(0, 0.3))
    w = rng.dirichlet([2, 2, 2])  # above the interior
    out.append(w @ tri + n * rng.normal(0, 0.5))
    out.append(w @ tri)  # on the face
    out.extend(centroid + rng.normal(0, 1.0, size=(3, 3)))
    return np.array(out)


def _dense_distance(points: np.ndarray, tri: np.ndarray, n: int = 300) -> tuple[np.ndarray, float]:
    """Min distance to a barycentric grid of the triangle (edges included) and the grid's spacing bound."""
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    keep = i + j <= n
    bary = np.stack([i[keep], j[keep], n - i[keep] - j[keep]], -1) / n
    samples = bary @ tri
    d = np.sqrt(((points[:, None] - samples[None]) ** 2).sum(-1)).min(1)
    spacing = max(np.linalg.norm(tri[k] - tri[(k + 1) % 3]) for k in range(3)) / n
    return d, spacing


def test_exact_point_triangle_distance_matches_a_dense_sampling():
    rng = np.random.default_rng(0)
    regions = {0: 0, 1: 0, 2: 0}
    for _ in range(25):
        tri = rng.normal(size=(3, 3))
        if rng.random() < 0.3:  # some obtuse / thin triangles
            tri[2] = tri[0] + (tri[1] - tri[0]) * rng.uniform(0.2, 0.8) + rng.normal(0, 0.05, 3)
        points = _region_points(tri, rng)
        closest, bary = C.closest_point_on_triangle(
            torch.from_numpy(points), torch.from_numpy(tri).expand(len(points), 3, 3)
        )
        dist = (torch.from_numpy(points) - closest).norm(dim=-1).numpy()
        ref, spacing = _dense_distance(points, tri)
        assert np.all(dist <= ref + 1e-12), "the exact distance cannot exceed a sample's"
        assert np.all(ref - dist <= spacing + 1e-12)
        assert bool((bary >= 0).all()) and float((bary.sum(-1) - 1).abs().max()) < 1e-12
        torch.testing.assert_close(closest, bary @ torch.from_numpy(tri), rtol=0, atol=1e-12)
        for z in (bary == 0).sum(-1).tolist():
            regions[min(z, 2)] += 1
    assert min(regions.values()) >= 25, regions  # face (0 zeros), edge (1), vertex (2) regions all hit


def test_brute_force_equals_the_minimum_over_every_pair_on_a_triangle_soup():
    """The selection kernel (matrix products + scalar arithmetic) picks the face the exact kernel says."""
    gen = torch.Generator().manual_seed(1)
    vertices = torch.randn(60, 3, generator=gen, dtype=F64)
    faces = torch.randperm(60, generator=gen).reshape(20, 3)
    points = torch.randn(500, 3, generator=gen, dtype=F64) * 1.5
    out = C.closest_points_brute(points, vertices, faces)
    _, bary = C.closest_point_on_triangle(points[:, None], vertices[faces][None])
    every = (points[:, None] - (bary[..., None] * vertices[faces][None]).sum(-2)).norm(dim=-1)  # [P, F]
    torch.testing.assert_close(out.distance, every.amin(1), rtol=0, atol=1e-12)
    torch.testing.assert_close(
        out.points, (out.barycentrics[..., None] * vertices[faces[out.face_index]]).sum(-2)
    )
    assert torch.equal(out.face_index, every.argmin(1))  # no ties in a random soup
    for chunk in (1, 7):
        assert torch.equal(C.closest_points_brute(points, vertices, faces, chunk).face_index, out.face_index)


def _icosphere(subdivisions: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions)
    return torch.tensor(np.asarray(mesh.vertices), dtype=F64), torch.tensor(np.asarray(mesh.faces))


def _shell_points(count: int, lo: float, hi: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    d = torch.randn(count, 3, generator=gen, dtype=F64)
    r = lo + (hi - lo) * torch.rand(count, generator=gen, dtype=F64)
    return d / d.norm(dim=-1, keepdim=True) * r[:, None], r


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_candidates_equal_brute_force_near_a_subdivided_sphere(dtype):
    vertices, faces = _icosphere(3)  # 1280 faces
    points, _ = _shell_points(5000, 0.85, 1.15, seed=2)
    vertices, points = vertices.to(dtype), points.to(dtype)
    brute = C.closest_points_brute(points, vertices, faces)
    fast = C.closest_points_candidates(points, vertices, faces, candidates=20)
    agree = brute.face_index == fast.face_index
    assert float(agree.double().mean()) >= 0.999
    for name in ("distance", "signed_distance", "points", "barycentrics"):
        assert torch.equal(getattr(brute, name)[agree], getattr(fast, name)[agree]), name
    # where they differ, candidates cannot be nearer than every face
    assert bool((fast.distance[~agree] >= brute.distance[~agree] - 1e-6).all())
    assert fast.distance.dtype == dtype and fast.face_index.dtype == torch.long
    chunked = C.closest_points_candidates(points, vertices, faces, candidates=20, chunk=333)
    assert torch.equal(chunked.face_index, fast.face_index)


def test_signed_distance_is_negative_inside_the_sphere():
    vertices, faces = _icosphere(3)
    points, r = _shell_points(3000, 0.5, 1.5, seed=3)
    inner = 0.95  # the icosphere's faces lie between radius ~0.99 and 1
    for sign in ("pseudonormal", "face"):
        out = C.closest_points_candidates(points, vertices, faces, sign=sign)
        assert bool((out.signed_distance[r < inner] < 0).all())
        assert bool((out.signed_distance[r > 1.0] > 0).all())
        torch.testing.assert_close(out.signed_distance.abs(), out.distance, rtol=0, atol=0)
    # and the distance is the sphere's |r - 1| up to the polyhedron's flatness
    near = (r - 1).abs() > 0.05
    assert float(((out.distance - (r - 1).abs())[near]).abs().max()) < 0.02


def _wedge(half_angle_degrees: float = 10.0, length: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A closed triangular prism along z whose cross-section has a sharp apex at the origin (pointing +y)."""
    s, c = math.sin(math.radians(half_angle_degrees)), math.cos(math.radians(half_angle_degrees))
    section = [(0.0, 0.0), (-length * s, -length * c), (length * s, -length * c)]  # apex, left, right
    vertices = torch.tensor([(x, y, z) for z in (-1.0, 1.0) for x, y in section], dtype=F64)
    faces = torch.tensor(
        [[0, 2, 1], [3, 4, 5], [0, 1, 4], [0, 4, 3], [0, 3, 5], [0, 5, 2], [1, 2, 5], [1, 5, 4]]
    )
    tri = vertices[faces]
    volume = float((tri[:, 0] * torch.linalg.cross(tri[:, 1], tri[:, 2], dim=-1)).sum()) / 6
    assert volume > 0, "faces wound counter-clockwise from outside"
    return vertices, faces


def test_pseudonormals_give_the_right_side_at_a_sharp_edge_where_face_normals_fail():
    """Outside the wedge's 20-degree apex edge the closest point is on the edge, equally far from both side
    faces; the lower-index face wins the tie, and its normal is ~160 degrees from the other face's. Points
    off the edge towards the other face's normal are outside, yet lie behind the winner's plane."""
    vertices, faces = _wedge()
    theta = torch.linspace(-75, 75, 31, dtype=F64).deg2rad()
    z = torch.linspace(-0.5, 0.5, 31, dtype=F64)
    points = torch.stack([0.1 * torch.sin(theta), 0.1 * torch.cos(theta), z], -1)
    good = C.closest_points_brute(points, vertices, faces)
    torch.testing.assert_close(good.distance, torch.full((31,), 0.1, dtype=F64), rtol=0, atol=1e-12)
    assert bool((good.signed_distance > 0).all())
    naive = C.closest_points_brute(points, vertices, faces, sign="face")
    assert bool((naive.signed_distance < 0).any())  # the failure the pseudonormals fix
    inside = torch.tensor([[0.0, -0.3, 0.2], [0.01, -0.5, -0.4]], dtype=F64)
    assert bool((C.closest_points_brute(inside, vertices, faces).signed_distance < 0).all())


def test_texture_cube_coordinates():
    vertices, faces = _icosphere(2)
    # uvs linear in position: the uv of the closest point is the same linear map of that point
    uvs = vertices[:, :2] * 0.4 + 0.5
    points, _ = _shell_points(1000, 0.8, 1.2, seed=4)
    out = C.closest_points_candidates(points, vertices, faces, uvs=uvs)
    assert out.uvd.shape == (1000, 3)
    torch.testing.assert_close(out.uvd[:, :2], out.points[:, :2] * 0.4 + 0.5, rtol=0, atol=1e-12)
    assert torch.equal(out.uvd[:, 2], out.signed_distance)
    corner = C.closest_points_candidates(points, vertices, faces, uvs=uvs[faces])  # per-corner uvs
    assert torch.equal(corner.uvd, out.uvd)
    brute = C.closest_points_brute(points, vertices, faces, uvs=uvs)
    assert brute.uvd.shape == (1000, 3)
    assert C.closest_points_brute(points, vertices, faces).uvd is None


def test_gradients_flow_through_the_chosen_face():
    """Choosing is not differentiable, the closest point on the chosen face is: d(signed distance)/dx is
    the unit direction from the surface (|grad| = 1, the eikonal property), and no NaN at vertices."""
    vertices, faces = _icosphere(3)
    points, _ = _shell_points(300, 0.8, 1.2, seed=8)
    points = torch.cat([points, vertices[:5]]).requires_grad_(True)
    verts = vertices.clone().requires_grad_(True)
    out = C.closest_points_candidates(points, verts, faces, uvs=vertices[:, :2] * 0.5 + 0.5)
    grad_points, grad_vertices = torch.autograd.grad(out.uvd.sum(), [points, verts], retain_graph=True)
    assert bool(torch.isfinite(grad_points).all()) and bool(torch.isfinite(grad_vertices).all())
    (grad,) = torch.autograd.grad(out.signed_distance[:300].sum(), points)
    torch.testing.assert_close(grad[:300].norm(dim=-1), torch.ones(300, dtype=F64), rtol=0, atol=1e-9)


def test_closest_points_on_chosen_faces_equal_the_search_and_carry_its_gradient():
    """A search without autograd, then closest_points_on_faces on its faces: the same computation, so the
    results are bitwise equal and the gradient is the search's own."""
    vertices, faces = _icosphere(3)
    points, _ = _shell_points(200, 0.9, 1.1, seed=4)
    uvs = vertices[:, :2] * 0.5 + 0.5
    x = points.clone().requires_grad_(True)
    search = C.closest_points_candidates(x, vertices, faces, uvs=uvs)
    with torch.no_grad():
        chosen = C.closest_points_candidates(points, vertices, faces).face_index
    y = points.clone().requires_grad_(True)
    again = C.closest_points_on_faces(y, vertices, faces, chosen, uvs=uvs)
    for a, b in zip(search, again):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    (gx,) = torch.autograd.grad(search.uvd.sum(), x)
    (gy,) = torch.autograd.grad(again.uvd.sum(), y)
    torch.testing.assert_close(gx, gy, atol=0, rtol=0)
    with pytest.raises(InputError, match="face_index"):
        C.closest_points_on_faces(points, vertices, faces, chosen[:5])
    with pytest.raises(InputError, match="face_index"):
        C.closest_points_on_faces(points, vertices, faces, chosen + faces.shape[0])


def test_candidate_faces_are_the_nearest_centroids():
    vertices, faces = _icosphere(2)
    points, _ = _shell_points(200, 0.9, 1.1, seed=5)
    cand = C.candidate_faces(points, vertices, faces, candidates=8)
    assert cand.shape == (200, 8) and bool((cand[:, 1:] > cand[:, :-1]).all())  # ascending, distinct
    d = torch.cdist(points, vertices[faces].mean(1))
    expected = d.topk(8, dim=1, largest=False).indices.sort(1).values
    assert torch.equal(cand, expected)
    assert C.candidate_faces(points, vertices, faces[:5], candidates=20).shape == (200, 5)  # k <= F


def test_the_centroid_grid_finds_the_same_nearest_centroids_as_the_dense_search():
    """Meshes above GRID_MIN_FACES use the grid; points far from the surface fall back to the dense search.
    A second sphere far away forces coarser cells (GRID_MAX_CELLS); the answer must not change."""
    vertices, faces = _icosphere(3)
    assert len(faces) > C.GRID_MIN_FACES
    near, _ = _shell_points(3000, 0.8, 1.2, seed=6)
    far, _ = _shell_points(200, 2.0, 4.0, seed=7)
    offset = torch.tensor([300.0, 300.0, 300.0], dtype=F64)  # ~1e9 cells of the first sphere's size
    far_away = torch.cat([vertices, vertices + offset])
    two_faces = torch.cat([faces, faces + len(vertices)])
    shifted = near[:500] + offset
    for verts, tris, points in (
        (vertices, faces, torch.cat([near, far])),
        (far_away, two_faces, torch.cat([near, shifted])),
    ):
        cand = C.candidate_faces(points, verts, tris, candidates=20)
        d = ((points[:, None] - verts[tris].mean(1)[None]) ** 2).sum(-1)
        expected = d.topk(20, dim=1, largest=False).indices.sort(1).values
        assert torch.equal(cand, expected)
        brute = C.closest_points_brute(points, verts, tris)
        fast = C.closest_points_candidates(points, verts, tris)
        assert float((brute.face_index == fast.face_index).double().mean()) >= 0.999


def test_the_grid_cell_size_changes_speed_not_the_answer():
    """`grid_disc` (one size, or sizes tried fine to coarse as the avatar does) only decides which points the
    grid proves; results equal."""
    vertices, faces = _icosphere(3)
    points = torch.cat([_shell_points(1500, 0.8, 1.2, seed=8)[0], _shell_points(300, 1.3, 2.0, seed=9)[0]])
    a = C.closest_points_candidates(points, vertices, faces, 12)
    b = C.closest_points_candidates(points, vertices, faces, 12, grid_disc=16.0)
    assert torch.equal(a.face_index, b.face_index) and torch.equal(a.distance, b.distance)
    c = C.closest_points_candidates(points, vertices, faces, 12, grid_disc=(0.5, 2.0, 16.0))  # fine to coarse
    assert torch.equal(a.face_index, c.face_index) and torch.equal(a.distance, c.distance)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"points": torch.zeros(4, 2)}, "points"),
        ({"points": torch.zeros(4, 3, dtype=torch.long)}, "points"),
        ({"points": torch.tensor([[0.0, float("nan"), 0.0]])}, "points"),
        ({"vertices": torch.zeros(3, 3, 1)}, "vertices"),
        ({"faces": torch.zeros(1, 3)}, "faces"),
        ({"faces": torch.tensor([[0, 1, 3]])}, "faces"),
        ({"faces": torch.zeros(0, 3, dtype=torch.long)}, "faces"),
        ({"chunk": 0}, "chunk"),
        ({"uvs": torch.zeros(3, 3)}, "uvs"),
        ({"sign": "normal"}, "sign"),
    ],
)
def test_bad_inputs_raise_input_error_naming_the_input(kwargs, name):
    args = {
        "points": torch.zeros(4, 3),
        "vertices": torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
        "faces": torch.tensor([[0, 1, 2]]),
    }
    args.update(kwargs)
    for search in (C.closest_points_brute, C.closest_points_candidates):
        with pytest.raises(InputError, match=f"'{name}'"):
            search(**args)


@pytest.mark.parametrize("candidates", [0, -3, 2.0, True])
def test_bad_candidate_counts_raise_input_error(candidates):
    triangle = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    with pytest.raises(InputError, match="'candidates'"):
        C.closest_points_candidates(
            torch.zeros(1, 3), triangle, torch.tensor([[0, 1, 2]]), candidates=candidates
        )
