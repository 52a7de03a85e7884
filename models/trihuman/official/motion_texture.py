"""The official tri-plane U-Net's input, built as the release builds it (layout notes section 3, "Motion
texture"): a UV barycentric map of the template, dilated by one texel, and the 18-channel motion texture of
three posed frames rasterised through it.

Why a second rasteriser next to `uv_raster`: the official convolutions were trained on the release's layout,
which differs from ours in every convention that matters to a convolution (rows along u, columns along v,
texel corners instead of centres, first face wins, a one-texel dilation, channels grouped by kind, uniformly
averaged unit face normals). Ours stays as it is for the pack's own avatars; this one reproduces theirs.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ...common.errors import InputError

# Candidate (face, texel) pairs built at once; larger meshes go in face chunks of about this many pairs.
_PAIRS_PER_CHUNK = 1 << 22
# The dilation's eight neighbour offsets in the release's order, with their L1 distance.
_OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


class UVBarycentricMap(NamedTuple):
    """Which face covers each texel (row, column) of a `size` x `size` map, -1 where none, and the
    barycentric weights of that texel in it (float64, zero where empty)."""

    face: torch.Tensor  # [S, S] long
    weights: torch.Tensor  # [S, S, 3] float64

    @property
    def covered(self) -> torch.Tensor:
        return self.face >= 0


def _check_corner_uvs(corner_uvs: torch.Tensor, size: int) -> torch.Tensor:
    if not isinstance(size, int) or size < 2:
        raise InputError("size", "an integer texture size >= 2", repr(size))
    if not isinstance(corner_uvs, torch.Tensor) or corner_uvs.ndim != 3 or corner_uvs.shape[1:] != (3, 2):
        shape = list(corner_uvs.shape) if isinstance(corner_uvs, torch.Tensor) else type(corner_uvs).__name__
        raise InputError("corner_uvs", "per-corner UVs [faces, 3, 2] (the template's `vt`)", str(shape))
    return corner_uvs.detach().to("cpu", torch.float64)


def uv_barycentric_map(corner_uvs: torch.Tensor, size: int = 256) -> UVBarycentricMap:
    """The release's UV barycentric map: texel (row x, column y) is the UV point (u, v) = (x / S, y / S) (a
    texel corner, no flip); it belongs to the lowest-numbered face whose triangle contains it, edges
    included, with barycentrics from the release's closed-form expression in float64 (so ties on shared
    edges resolve the same way). Degenerate UV triangles cover nothing. Vectorised over (face, texel)
    pairs inside each face's bounding box."""
    uv = _check_corner_uvs(corner_uvs, size)
    n_faces = uv.shape[0]
    best = torch.full((size * size,), n_faces, dtype=torch.long)
    found: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    # The release's box: corners scaled to texels, widened by 2, clipped, truncated to integers.
    lo = (uv.amin(1) * size - 2).clamp(0, size - 1).long()
    hi = (uv.amax(1) * size + 2).clamp(0, size - 1).long()
    extent = hi - lo + 1  # [F, 2]: rows, columns
    count = extent[:, 0] * extent[:, 1]
    start = 0
    while start < n_faces:
        stop = start + 1
        total = int(count[start])
        while stop < n_faces and total + int(count[stop]) <= _PAIRS_PER_CHUNK:
            total += int(count[stop])
            stop += 1
        faces = torch.arange(start, stop)
        face = torch.repeat_interleave(faces, count[start:stop])
        offset = torch.arange(total) - torch.repeat_interleave(
            torch.cumsum(count[start:stop], 0) - count[start:stop], count[start:stop]
        )
        width = extent[face, 1]
        x = lo[face, 0] + torch.div(offset, width, rounding_mode="floor")
        y = lo[face, 1] + offset % width
        w = _release_barycentrics(uv[face], x.double() / size, y.double() / size)
        inside = (w >= 0).all(1)  # NaN (degenerate triangle) is not >= 0
        face, x, y, w = face[inside], x[inside], y[inside], w[inside]
        texel = x * size + y
        best.scatter_reduce_(0, texel, face, reduce="amin")
        found.append((texel, face, w))
        start = stop
    face_map = torch.full((size * size,), -1, dtype=torch.long)
    weights = torch.zeros(size * size, 3, dtype=torch.float64)
    for texel, face, w in found:
        win = face == best[texel]
        face_map[texel[win]] = face[win]
        weights[texel[win]] = w[win]
    return UVBarycentricMap(face_map.view(size, size), weights.view(size, size, 3))


def _release_barycentrics(tri: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """[N, 3] weights (w0, w1, w2) of points (px, py) in UV triangles [N, 3, 2], in the release's algebraic
    form and order of operations (it decides which face owns a texel on a shared edge)."""
    p0x, p0y, p1x, p1y, p2x, p2y = (tri[:, i, j] for i in range(3) for j in range(2))
    signed_area = 0.5 * (-p1y * p2x + p0y * (-p1x + p2x) + p0x * (p1y - p2y) + p1x * p2y)
    inv = 1 / (2 * signed_area)  # inf for a degenerate triangle: masked below
    w1 = inv * (p0y * p2x - p0x * p2y + (p2y - p0y) * px + (p0x - p2x) * py)
    w2 = inv * (p0x * p1y - p0y * p1x + (p0y - p1y) * px + (p1x - p0x) * py)
    w0 = 1 - w1 - w2
    w = torch.stack([w0, w1, w2], 1)
    return torch.where((signed_area == 0).unsqueeze(1), torch.full_like(w, float("nan")), w)


def dilate_uv_map(uv_map: UVBarycentricMap) -> UVBarycentricMap:
    """The release's one-texel dilation: an empty texel with a covered texel among its eight neighbours
    takes that neighbour's face and weights (the weights are copied, not extrapolated); the nearest
    neighbour wins (L1 offset: 1 beside, 2 diagonal), and among equals the first in row-major order.
    Covered texels keep their own."""
    face, weights = uv_map
    size_r, size_c = face.shape
    big = torch.iinfo(torch.long).max
    best_key = torch.full(face.shape, big, dtype=torch.long)
    best_src = torch.zeros(face.shape, dtype=torch.long)
    rows = torch.arange(size_r).view(-1, 1).expand(size_r, size_c)
    cols = torch.arange(size_c).view(1, -1).expand(size_r, size_c)
    for dx, dy in _OFFSETS:
        # target (i, j) looks at source (i - dx, j - dy): the release's source writes to source + (dx, dy)
        si, sj = rows - dx, cols - dy
        valid = (si >= 0) & (si < size_r) & (sj >= 0) & (sj < size_c)
        src = si.clamp(0, size_r - 1) * size_c + sj.clamp(0, size_c - 1)
        valid &= face.reshape(-1)[src] >= 0
        key = torch.where(valid, (abs(dx) + abs(dy)) * (size_r * size_c) + src, big)
        better = key < best_key
        best_key = torch.where(better, key, best_key)
        best_src = torch.where(better, src, best_src)
    take = (face < 0) & (best_key < big)
    new_face = face.clone()
    new_weights = weights.clone()
    new_face[take] = face.reshape(-1)[best_src[take]]
    new_weights[take] = weights.reshape(-1, 3)[best_src[take]]
    return UVBarycentricMap(new_face, new_weights)


def release_uv_map(corner_uvs: torch.Tensor, size: int = 256) -> UVBarycentricMap:
    """The map the release renders its motion textures through: `uv_barycentric_map`, then one dilation."""
    return dilate_uv_map(uv_barycentric_map(corner_uvs, size))


def release_vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """[..., V, 3] unit vertex normals as the release computes them: unit face normals (v2 - v1) x (v0 - v1),
    averaged with equal weight over the faces at each vertex, normalised again."""
    f = faces.long()
    v0, v1, v2 = vertices[..., f[:, 0], :], vertices[..., f[:, 1], :], vertices[..., f[:, 2], :]
    face_n = F.normalize(torch.cross(v2 - v1, v0 - v1, dim=-1), dim=-1)
    corner = f.reshape(-1)
    sums = torch.zeros(
        *vertices.shape[:-2], vertices.shape[-2], 3, dtype=vertices.dtype, device=vertices.device
    )
    sums.index_add_(-2, corner.to(vertices.device), face_n.repeat_interleave(3, dim=-2))
    counts = torch.bincount(corner, minlength=vertices.shape[-2]).to(vertices)
    if bool((counts == 0).any()):
        raise InputError(
            "faces", "a template whose every vertex is in a face", f"{int((counts == 0).sum())} loose"
        )
    return F.normalize(sums / counts.unsqueeze(-1), dim=-1)


def normalised_positions(vertices: torch.Tensor, root: torch.Tensor, scale: float = 1.2) -> torch.Tensor:
    """The release's per-frame normalised space x̂ = (x - root(t)) / 1.2 m (its `global_scale` 1200 mm),
    with frame t's root used for every history frame. `vertices` [..., V, 3] and `root` [3] in metres."""
    return (vertices - root.to(vertices).view(*([1] * (vertices.ndim - 1)), 3)) / scale


def release_motion_texture(
    uv_map: UVBarycentricMap, faces: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """[18, S, S] motion texture of three frames (t, t-1, t-2): `positions` [3, V, 3] in the normalised
    space; channels = the three positions, then the three vertex normals (`release_vertex_normals`),
    interpolated with each texel's barycentric weights; zero where no face covers the texel."""
    if positions.ndim != 3 or positions.shape[0] != 3 or positions.shape[-1] != 3:
        raise InputError("positions", "[3 frames (t, t-1, t-2), vertices, 3]", str(list(positions.shape)))
    normals = release_vertex_normals(positions, faces)
    feats = torch.cat([positions[0], positions[1], positions[2], normals[0], normals[1], normals[2]], -1)
    face, weights = uv_map
    covered = face >= 0
    corners = faces.long().to(feats.device)[face[covered].to(feats.device)]  # [N, 3]
    w = weights[covered].to(feats)
    values = (feats[corners] * w.unsqueeze(-1)).sum(1)  # [N, 18]
    out = torch.zeros(*face.shape, feats.shape[-1], dtype=feats.dtype, device=feats.device)
    out[covered.to(feats.device)] = values
    return out.permute(2, 0, 1)
