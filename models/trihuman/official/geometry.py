"""The official geometry branch (layout notes section 3, "Geometry"): the posed template subdivided once (the
release's stage-1 subdivision: every stage-1 vertex is the midpoint of two template vertices, equal for the
old ones), then `iterations` rounds of one uniform-Laplacian smoothing step and one projection onto the SDF's
zero level, x <- x - f(x) * grad f / |grad f|; hand vertices stay where they are. Same topology every frame,
no marching cubes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...common.errors import InputError
from ..closest_face import closest_points_candidates
from .fields import CANDIDATES, release_plane_features
from .files import edges_from_faces

SMOOTH_ITERATIONS = 2  # `smooth_iter_num`
MAPPING_OFFSET = 2e-6  # the release maps the surface points onto the posed template moved by this much


def uniform_laplacian(faces: torch.Tensor, num_vertices: int, dtype=torch.float64) -> torch.Tensor:
    """Sparse L = I - (mean over each vertex's distinct edge neighbours) [V, V]: L x moves a vertex to the
    centroid of its neighbours when subtracted (the release's `compute_laplacian`)."""
    e = edges_from_faces(faces)
    rows = torch.cat([e[:, 0], e[:, 1]])
    cols = torch.cat([e[:, 1], e[:, 0]])
    degree = torch.bincount(rows, minlength=num_vertices).to(dtype)
    if bool((degree == 0).any()):
        raise InputError(
            "faces", "a mesh whose every vertex has a neighbour", f"{int((degree == 0).sum())} loose"
        )
    idx = torch.cat([torch.stack([rows, cols]), torch.arange(num_vertices).expand(2, -1)], 1)
    val = torch.cat([-1.0 / degree[rows], torch.ones(num_vertices, dtype=dtype)])
    return torch.sparse_coo_tensor(idx, val, (num_vertices, num_vertices), check_invariants=True).coalesce()


def subdivide(vertices: torch.Tensor, stage: dict) -> torch.Tensor:
    """Stage-1 vertices [V1, 3]: midpoints of the `prev_to_cur_st` / `_ed` pairs."""
    st, ed = stage["prev_to_cur_st"], stage["prev_to_cur_ed"]
    return (vertices[st] + vertices[ed]) * 0.5


def release_surface(
    implicit,
    planes: torch.Tensor,
    posed: torch.Tensor,
    faces: torch.Tensor,
    face_uvs: torch.Tensor,
    stage: dict,
    keep: torch.Tensor | None = None,
    iterations: int = SMOOTH_ITERATIONS,
) -> torch.Tensor:
    """Stage-1 vertices [V1, 3] on the SDF's zero level, in the normalised space of `posed` (frame t's
    template [V, 3]): subdivide, then `iterations` x (Laplacian step, projection). `keep` [V] (1 = movable,
    0 = hand, as `segmentation_hand.txt` reads) freezes a stage-1 vertex when either of its two parents is
    a hand vertex."""
    pts = subdivide(posed, stage)
    n1 = pts.shape[0]
    stage_faces = stage["faces"].long()
    if int(stage_faces.max()) >= n1:
        raise InputError(
            "subdivision", f"stage-1 faces on its {n1} vertices", f"ids up to {int(stage_faces.max())}"
        )
    lap = uniform_laplacian(stage_faces, n1, pts.dtype)
    movable = torch.ones(n1, dtype=pts.dtype)
    if keep is not None:
        movable = torch.minimum(keep[stage["prev_to_cur_st"]], keep[stage["prev_to_cur_ed"]]).to(pts.dtype)
    mapping_mesh = posed + MAPPING_OFFSET
    uvs_pm1 = (face_uvs.to(posed) - 0.5) * 2.0
    dtype = planes.dtype
    for _ in range(iterations):
        pts = pts - torch.sparse.mm(lap, pts) * movable[:, None]
        with torch.enable_grad():
            x = pts.detach().to(dtype).requires_grad_(True)
            found = closest_points_candidates(x, mapping_mesh.to(dtype), faces, candidates=CANDIDATES,
                                              uvs=uvs_pm1.to(dtype), sign="face")  # fmt: skip
            uvd = found.uvd
            sdf = implicit.sdf_network(torch.cat([uvd, release_plane_features(planes, uvd)], -1))[:, 0]
            sdf = torch.nan_to_num(sdf, 0.0)
            (grad,) = torch.autograd.grad(sdf, x, torch.ones_like(sdf))
        normal = torch.nan_to_num(F.normalize(grad, dim=-1), 1e-6)
        pts = (x - sdf[:, None] * normal * movable[:, None].to(dtype)).detach().to(pts.dtype)
    return pts
