"""Rasterise a mesh's per-vertex attributes into its UV layout, in pure torch: TriHuman's motion texture.

TriHuman feeds its tri-plane generator a "motion texture": the posed template's vertex positions and
normals of frames t, t-1, t-2 (18 channels) painted into UV space at 256 x 256. This module paints any
per-vertex (or per face-corner) attributes that way, without nvdiffrast or pytorch3d.

Conventions:
- Image layout [size, size, C], row-major like an IMAGE. Texel (row i, column j) has its centre at
  u = (j + 0.5) / size, v = 1 - (i + 0.5) / size: u grows to the right, v grows upwards, so row 0 is the
  top of the texture (v near 1), as in images, glTF and OBJ viewers. Flip rows (`image.flip(0)`) for the
  bottom-up (OpenGL texture memory) order.
- A texel belongs to a face when its centre lies inside or on the face's UV triangle (either winding:
  mirrored UV islands are fine). Where faces overlap in UV, the lowest face index wins, so the result is
  deterministic. Degenerate (zero-area) UV triangles cover nothing.
- Barycentrics [size, size, 3] are with respect to the face's corners in `faces` order; attributes are
  interpolated linearly with them, so an attribute linear in (u, v) is reproduced exactly.
- Empty texels: mask False, face_index -1, barycentrics and image 0.

Why this is fast enough without a GPU rasteriser: every face visits only the texels of its own bounding
box; the (face, texel) pairs of many faces are generated at once with `repeat_interleave` and tested in
one vectorised step, `chunk` pairs at a time, so memory stays bounded for meshes with large faces too.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..common.errors import InputError


class UVRaster(NamedTuple):
    image: torch.Tensor  # [size, size, C] interpolated attributes (0 where empty)
    mask: torch.Tensor  # [size, size] bool, True where a face covers the texel centre
    face_index: torch.Tensor  # [size, size] long, -1 where empty
    barycentrics: torch.Tensor  # [size, size, 3] w.r.t. the face's corners (0 where empty)


def _shape(x) -> str:
    return f"shape {list(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


def _check_faces(faces: torch.Tensor) -> torch.Tensor:
    if not isinstance(faces, torch.Tensor) or faces.ndim != 2 or faces.shape[1] != 3:
        raise InputError("faces", "triangle indices [F, 3]", _shape(faces))
    if faces.is_floating_point() or faces.is_complex() or faces.dtype == torch.bool:
        raise InputError("faces", "integer triangle indices [F, 3]", str(faces.dtype))
    return faces.long()


def per_corner(values: torch.Tensor, faces: torch.Tensor, name: str, what: str) -> torch.Tensor:
    """Per-vertex values [N, C] -> per face-corner [F, 3, C]; per-corner [F, 3, C] pass through."""
    if not isinstance(values, torch.Tensor) or not values.is_floating_point():
        got = str(values.dtype) if isinstance(values, torch.Tensor) else type(values).__name__
        raise InputError(name, f"floating-point {what} [N, C] per vertex or [F, 3, C] per face corner", got)
    f = faces.shape[0]
    if values.ndim == 3 and values.shape[:2] == (f, 3):
        return values
    if values.ndim == 2:
        if f and (int(faces.min()) < 0 or int(faces.max()) >= values.shape[0]):
            bad = int(faces.min()) if int(faces.min()) < 0 else int(faces.max())
            raise InputError(
                "faces", f"vertex indices in 0..{values.shape[0] - 1} (the rows of {name})", f"index {bad}"
            )
        return values[faces]
    raise InputError(name, f"{what} [N, C] per vertex or [{f}, 3, C] per face corner", _shape(values))


def texel_centers(
    size: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """[size, size, 2] (u, v) of every texel centre: u = (j + 0.5) / size, v = 1 - (i + 0.5) / size."""
    _check_size(size)
    axis = (torch.arange(size, dtype=dtype or torch.get_default_dtype(), device=device) + 0.5) / size
    vv, uu = torch.meshgrid(1 - axis, axis, indexing="ij")
    return torch.stack([uu, vv], -1)


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise InputError("size", "a positive whole number of texels per side", repr(size))
    return size


def _barycentric(tri: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Barycentrics [..., 3] of 2D points p [..., 2] in triangles tri [..., 3, 2] (signed areas, so any
    winding; inside or on the triangle <=> all three >= 0)."""
    a, b, c = tri.unbind(-2)

    def cross(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x[..., 0] * y[..., 1] - x[..., 1] * y[..., 0]

    area = cross(b - a, c - a)
    pa, pb, pc = a - p, b - p, c - p
    return torch.stack([cross(pb, pc), cross(pc, pa), cross(pa, pb)], -1) / area[..., None]


def rasterize_uv(
    uvs: torch.Tensor,
    faces: torch.Tensor,
    attributes: torch.Tensor | None,
    size: int,
    chunk: int = 1 << 18,
) -> UVRaster:
    """Paint attributes into a [size, size] UV image: (image, mask, face_index, barycentrics).

    uvs: [N, 2] per vertex or [F, 3, 2] per face corner (a seam-split UV layout), in [0, 1] (texels
    outside are clipped away); faces: [F, 3] vertex indices; attributes: [N, C] per vertex or [F, 3, C] per
    face corner, or None (then image is [size, size, 0]); chunk: (face, texel) pairs tested at once.
    dtype/device follow uvs and attributes (the image has their promoted dtype).
    """
    faces = _check_faces(faces)
    size = _check_size(size)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise InputError("chunk", "a positive number of (face, texel) pairs", repr(chunk))
    corner_uv = per_corner(uvs, faces, "uvs", "texture coordinates")
    if corner_uv.shape[-1] != 2:
        raise InputError("uvs", "2D texture coordinates [..., 2]", _shape(uvs))
    if not bool(torch.isfinite(corner_uv).all()):
        raise InputError("uvs", "finite texture coordinates", "NaN or inf")
    corner_attr = None
    if attributes is not None:
        corner_attr = per_corner(attributes, faces, "attributes", "attributes")
    dtype = (
        corner_uv.dtype if corner_attr is None else torch.promote_types(corner_uv.dtype, corner_attr.dtype)
    )
    device = corner_uv.device
    n_faces = faces.shape[0]

    winner = torch.full((size * size,), n_faces, dtype=torch.long, device=device)
    if n_faces:
        _cover(corner_uv, size, chunk, winner)
    covered = winner < n_faces
    face_index = torch.where(covered, winner, -1)

    texel = texel_centers(size, corner_uv.dtype, device).reshape(-1, 2)
    bary = torch.zeros(size * size, 3, dtype=corner_uv.dtype, device=device)
    hit = covered.nonzero().squeeze(1)
    bary[hit] = _barycentric(corner_uv[winner[hit]], texel[hit])
    channels = 0 if corner_attr is None else corner_attr.shape[-1]
    image = torch.zeros(size * size, channels, dtype=dtype, device=device)
    if corner_attr is not None:
        image[hit] = (bary[hit, :, None].to(dtype) * corner_attr[winner[hit]].to(dtype)).sum(1)
    return UVRaster(
        image.reshape(size, size, channels),
        covered.reshape(size, size),
        face_index.reshape(size, size),
        bary.reshape(size, size, 3).to(dtype),
    )


def _cover(corner_uv: torch.Tensor, size: int, chunk: int, winner: torch.Tensor) -> None:
    """winner[texel] = lowest index of a face whose UV triangle contains the texel centre."""
    device = corner_uv.device
    # texel coordinates: column x = u size - 0.5, row y = (1 - v) size - 0.5 (centres at integers)
    x = corner_uv[..., 0] * size - 0.5
    y = (1 - corner_uv[..., 1]) * size - 0.5
    # bounding boxes widened by one texel: the exact inside test below decides, round-off cannot drop one
    x0 = (x.amin(1).floor().long() - 1).clamp(0, size - 1)
    x1 = (x.amax(1).ceil().long() + 1).clamp(0, size - 1)
    y0 = (y.amin(1).floor().long() - 1).clamp(0, size - 1)
    y1 = (y.amax(1).ceil().long() + 1).clamp(0, size - 1)
    a, b, c = corner_uv.unbind(1)
    area = (b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]
    outside = (x.amax(1) < -0.5) | (x.amin(1) > size - 0.5) | (y.amax(1) < -0.5) | (y.amin(1) > size - 0.5)
    live = ((area != 0) & ~outside).nonzero().squeeze(1)  # ascending face order
    if live.numel() == 0:
        return
    widths = x1[live] - x0[live] + 1
    counts = widths * (y1[live] - y0[live] + 1)
    ends = counts.cumsum(0)
    start = 0
    while start < live.numel():
        base = int(ends[start - 1]) if start else 0
        stop = max(int(torch.searchsorted(ends, base + chunk, right=True)), start + 1)
        sel = live[start:stop]
        cnt = counts[start:stop]
        local = torch.repeat_interleave(torch.arange(len(sel), device=device), cnt)
        offset = torch.arange(int(cnt.sum()), device=device) - (cnt.cumsum(0) - cnt)[local]
        w = widths[start:stop][local]
        col = x0[sel][local] + offset % w
        row = y0[sel][local] + offset // w
        colf, rowf = col.to(corner_uv.dtype), row.to(corner_uv.dtype)
        p = torch.stack([(colf + 0.5) / size, 1 - (rowf + 0.5) / size], -1)  # as texel_centers computes
        inside = (_barycentric(corner_uv[sel][local], p) >= 0).all(-1)
        texel = (row * size + col)[inside]
        winner.scatter_reduce_(0, texel, sel[local][inside], reduce="amin", include_self=True)
        start = stop


def interpolate_uv(
    face_index: torch.Tensor, barycentrics: torch.Tensor, faces: torch.Tensor, attributes: torch.Tensor
) -> torch.Tensor:
    """Repaint new attributes through an earlier raster of the same UV layout: [size, size, C].

    The motion texture changes every frame while the template's UV layout does not, so the coverage
    (face_index, barycentrics from `rasterize_uv`) is computed once and each frame is a gather and a
    weighted sum. attributes: [N, C] per vertex or [F, 3, C] per face corner; empty texels are 0.
    """
    faces = _check_faces(faces)
    corner_attr = per_corner(attributes, faces, "attributes", "attributes")
    if not isinstance(face_index, torch.Tensor) or face_index.ndim != 2:
        raise InputError("face_index", "a [size, size] face index map from rasterize_uv", _shape(face_index))
    if not isinstance(barycentrics, torch.Tensor) or barycentrics.shape != (*face_index.shape, 3):
        raise InputError(
            "barycentrics", f"[{face_index.shape[0]}, {face_index.shape[1]}, 3]", _shape(barycentrics)
        )
    if face_index.numel() and int(face_index.max()) >= faces.shape[0]:
        raise InputError(
            "face_index", f"face ids below {faces.shape[0]} (the faces given)", str(int(face_index.max()))
        )
    dtype = torch.promote_types(barycentrics.dtype, corner_attr.dtype)
    hit = face_index >= 0
    values = corner_attr[face_index.clamp_min(0)].to(dtype)  # [size, size, 3, C]
    out = (barycentrics[..., None].to(dtype) * values).sum(-2)
    return torch.where(hit[..., None], out, torch.zeros((), dtype=dtype, device=out.device))
