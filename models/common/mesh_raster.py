"""A small z-buffer triangle rasteriser in pure torch: a mesh seen by pinhole cameras.

The proving-ground worlds render their ground truth with it (TriHuman's avatar world: RGB, mask and depth
of a posed mesh in 8-16 views at 64-128 px). No nvdiffrast / pytorch3d (DESIGN.md: no CUDA extensions).

Conventions (those of `camera.py`, OpenCV): intrinsics K [C, 3, 3], world -> camera extrinsics [C, 4, 4],
the camera looks along +z, depth is the camera-frame z. Images are [C, H, W] row-major; pixel (row j,
column i) has its centre at (u, v) = (i + 0.5, j + 0.5).

- Coverage: a pixel belongs to a face when its centre lies inside or on the face's projected triangle
  (either winding: no back-face culling, so open meshes render too). Equivalently the ray from the camera
  centre through the pixel centre hits the 3D triangle.
- Visibility: the covering face with the smallest depth at the pixel centre wins; exact depth ties go to
  the lowest face index (deterministic).
- Depth at the pixel centre is exact (perspective-correct: 1/z is interpolated linearly in screen space),
  and so are the returned barycentrics: they are the 3D barycentrics of the ray's hit point, so any
  per-vertex attribute is interpolated on the triangle, not in screen space.
- Near plane: faces with a corner at depth < `near` are skipped (no clipping): keep meshes in front of
  the cameras.
- Empty pixels: mask False, face_index -1, depth 0, barycentrics 0.

Why it is fast enough on a CPU: each face only visits the pixel centres of its own screen bounding box;
the (face, pixel) pairs of all faces and cameras are generated at once with `repeat_interleave` and
tested in one vectorised step, `chunk` pairs at a time; the z-buffer is one `scatter_reduce`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .camera import project
from .errors import InputError


class MeshRaster(NamedTuple):
    face_index: torch.Tensor  # [C, H, W] long, -1 where empty
    barycentrics: torch.Tensor  # [C, H, W, 3] perspective-correct, w.r.t. the face's corners (0 where empty)
    depth: torch.Tensor  # [C, H, W] camera-frame z of the visible surface (0 where empty)
    mask: torch.Tensor  # [C, H, W] bool


def _shape(x) -> str:
    return f"shape {list(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


def rasterize(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    K: torch.Tensor,
    world_to_camera: torch.Tensor,
    height: int,
    width: int,
    near: float = 1e-3,
    chunk: int = 1 << 20,
) -> MeshRaster:
    """Rasterise a triangle mesh (vertices [V, 3] in world space, faces [F, 3]) in C cameras
    (K [C, 3, 3], world -> camera [C, 4, 4]) at height x width: see the module docstring."""
    if not isinstance(vertices, torch.Tensor) or vertices.ndim != 2 or vertices.shape[1] != 3:
        raise InputError("vertices", "mesh vertices [V, 3]", _shape(vertices))
    if (
        not isinstance(faces, torch.Tensor)
        or faces.ndim != 2
        or faces.shape[1] != 3
        or faces.is_floating_point()
    ):
        raise InputError("faces", "integer triangle indices [F, 3]", _shape(faces))
    if K.ndim != 3 or world_to_camera.ndim != 3 or K.shape[0] != world_to_camera.shape[0]:
        raise InputError("K", "intrinsics [C, 3, 3] and extrinsics [C, 4, 4] of the same C cameras",
                         f"{_shape(K)} and {_shape(world_to_camera)}")  # fmt: skip
    for name, value in (("height", height), ("width", width), ("chunk", chunk)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(name, "a positive integer", repr(value))
    faces = faces.long()
    dtype, device = vertices.dtype, vertices.device
    cams = K.shape[0]
    uv, z = project(vertices, K.to(dtype), world_to_camera.to(dtype))  # [C, V, 2], [C, V]
    tri_uv, tri_z = uv[:, faces], z[:, faces]  # [C, F, 3, 2], [C, F, 3]

    # pixel-centre ranges of each face's bounding box: centres i + 0.5 in [min, max]
    x0 = (tri_uv[..., 0].amin(-1) - 0.5).ceil().clamp(0, width)
    x1 = (tri_uv[..., 0].amax(-1) - 0.5).floor().clamp(-1, width - 1)
    y0 = (tri_uv[..., 1].amin(-1) - 0.5).ceil().clamp(0, height)
    y1 = (tri_uv[..., 1].amax(-1) - 0.5).floor().clamp(-1, height - 1)
    a, b, c = tri_uv.unbind(-2)
    area = (b - a)[..., 0] * (c - a)[..., 1] - (b - a)[..., 1] * (c - a)[..., 0]
    ok = (tri_z.amin(-1) >= near) & (area != 0) & (x1 >= x0) & (y1 >= y0) & torch.isfinite(area)
    cam, face = ok.nonzero(as_tuple=True)  # ascending (camera, face) order
    x0, y0 = x0[cam, face].long(), y0[cam, face].long()
    widths = x1[cam, face].long() - x0 + 1
    counts = widths * (y1[cam, face].long() - y0 + 1)

    pixels, depths, faces_hit, barys = [], [], [], []
    ends = counts.cumsum(0)
    start = 0
    while start < len(cam):
        base = int(ends[start - 1]) if start else 0
        stop = max(int(torch.searchsorted(ends, base + chunk, right=True)), start + 1)
        cnt = counts[start:stop]
        local = torch.repeat_interleave(torch.arange(stop - start, device=device), cnt) + start
        offset = torch.arange(int(cnt.sum()), device=device) - (ends[local] - counts[local]) + base
        col = x0[local] + offset % widths[local]
        row = y0[local] + offset // widths[local]
        p = torch.stack([col.to(dtype) + 0.5, row.to(dtype) + 0.5], -1)
        pa, pb, pc = (tri_uv[cam[local], face[local], k] - p for k in range(3))
        cross = lambda u, v: u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]  # noqa: E731
        bary = (
            torch.stack([cross(pb, pc), cross(pc, pa), cross(pa, pb)], -1)
            / area[cam[local], face[local], None]
        )
        inside = (bary >= 0).all(-1)
        local, bary, row, col = local[inside], bary[inside], row[inside], col[inside]
        weighted = bary / tri_z[cam[local], face[local]]  # b_i / z_i
        inv_depth = weighted.sum(-1)
        pixels.append((cam[local] * height + row) * width + col)
        depths.append(1 / inv_depth)
        barys.append(weighted / inv_depth[:, None])
        faces_hit.append(face[local])
        start = stop

    n_pix = cams * height * width
    face_index = torch.full((n_pix,), -1, dtype=torch.long, device=device)
    depth = torch.zeros(n_pix, dtype=dtype, device=device)
    bary_out = torch.zeros(n_pix, 3, dtype=dtype, device=device)
    if pixels:
        pix, dep, fid, bar = torch.cat(pixels), torch.cat(depths), torch.cat(faces_hit), torch.cat(barys)
        zbuf = torch.full((n_pix,), float("inf"), dtype=dtype, device=device)
        zbuf.scatter_reduce_(0, pix, dep, reduce="amin")
        front = dep == zbuf[pix]
        pix, dep, fid, bar = pix[front], dep[front], fid[front], bar[front]
        best = torch.full((n_pix,), faces.shape[0], dtype=torch.long, device=device)
        best.scatter_reduce_(0, pix, fid, reduce="amin")
        win = fid == best[pix]
        pix = pix[win]
        face_index[pix], depth[pix], bary_out[pix] = fid[win], dep[win], bar[win]
    shape = (cams, height, width)
    return MeshRaster(face_index.reshape(shape), bary_out.reshape(*shape, 3), depth.reshape(shape),
                      (face_index >= 0).reshape(shape))  # fmt: skip


def interpolate(raster: MeshRaster, faces: torch.Tensor, attributes: torch.Tensor) -> torch.Tensor:
    """Per-vertex attributes [V, D] (or per-frame-camera [C, V, D]) at every pixel: [C, H, W, D], 0 where
    empty (perspective-correct, through the raster's barycentrics)."""
    faces = faces.long()
    fi = raster.face_index.clamp_min(0)  # [C, H, W]
    corners = faces[fi]  # [C, H, W, 3]
    if attributes.ndim == 2:
        values = attributes[corners]  # [C, H, W, 3, D]
    else:
        cams = torch.arange(fi.shape[0], device=fi.device)[:, None, None, None]
        values = attributes[cams, corners]
    out = (raster.barycentrics[..., None].to(values.dtype) * values).sum(-2)
    return out * raster.mask[..., None]
