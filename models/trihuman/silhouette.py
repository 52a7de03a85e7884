"""Multi-view silhouette loss of the deformable template (TriHuman Sec. 3.1 trains its template as DDC does,
from foreground masks). Our interpretation, two terms per view, both valid under self-occlusion:

- inside: every projected template vertex should fall inside the foreground mask: the mean distance (in
  pixels / image size) from its projection to the nearest foreground pixel, read from the mask's
  exterior distance transform (zero inside the mask) by bilinear sampling;
- cover: every contour pixel of the mask should have a silhouette vertex of the template near it: the
  mean over contour pixels of the distance to the nearest projected silhouette vertex (a vertex whose
  normal is nearly perpendicular to its viewing ray, |cos| < `rim`).

So the template grows to fill the mask and never bulges out of it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..common.camera import camera_center, project
from .template import vertex_normals


def _edt_torch(mask: torch.Tensor) -> torch.Tensor:
    """Exact Euclidean distance (pixels) from each pixel centre to the nearest foreground pixel centre of a
    [H, W] bool mask, in torch (the fallback where scipy is absent; slower). Only foreground pixels with a
    background 4-neighbour can be nearest to an outside pixel (a neighbour towards it would be nearer)."""
    m = F.pad(mask, (1, 1, 1, 1))
    inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    border = (mask & ~inner).nonzero().double()
    out = torch.zeros(mask.shape, dtype=torch.float64)
    outside = (~mask).nonzero()
    for chunk in outside.split(4096):
        d2 = torch.cdist(chunk.double(), border).amin(1) if len(border) else torch.full((len(chunk),), 1e9)
        out[chunk[:, 0], chunk[:, 1]] = d2
    return out


def exterior_distance(masks: torch.Tensor) -> torch.Tensor:
    """[..., H, W] bool masks -> distance (pixels) from each pixel centre to the mask's edge: the distance
    transform to the nearest foreground pixel centre minus half a pixel, 0 inside. Unbiased: a vertex on
    the true boundary (between an inside and an outside pixel centre) reads ~0, not the half pixel that
    pulled every vertex inwards by ~5 mm at 256 px. scipy's transform when installed, else the same in torch."""
    try:
        from scipy.ndimage import distance_transform_edt
    except ImportError:  # ComfyUI installs without scipy: exact but slower
        distance_transform_edt = None
    flat = masks.reshape(-1, *masks.shape[-2:]).bool().cpu()
    empty = float(sum(flat.shape[-2:]))
    if distance_transform_edt is not None:
        out = [torch.from_numpy(distance_transform_edt(~m.numpy())) if m.any() else torch.full(m.shape, empty)
               for m in flat]  # fmt: skip
    else:
        out = [_edt_torch(m) if m.any() else torch.full(m.shape, empty) for m in flat]
    return (torch.stack(out).float() - 0.5).clamp_min(0).reshape(masks.shape)


def contour_pixels(mask: torch.Tensor) -> torch.Tensor:
    """[H, W] bool -> (u, v) points [N, 2] on the mask's edge: the midpoint between every foreground pixel
    centre and each of its background 4-neighbours (pixel centres at i + 0.5)."""
    m = F.pad(mask.bool(), (1, 1, 1, 1))
    points = []
    for dr, dc in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        nb = torch.roll(m, (-dr, -dc), (0, 1))
        rows, cols = (m & ~nb)[1:-1, 1:-1].nonzero(as_tuple=True)
        points.append(torch.stack([cols + 0.5 + 0.5 * dc, rows + 0.5 + 0.5 * dr], -1).float())
    return torch.cat(points)


def silhouette_loss(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    K: torch.Tensor,
    world_to_camera: torch.Tensor,
    masks: torch.Tensor,
    exterior: torch.Tensor,
    rim: float = 0.3,
) -> dict[str, torch.Tensor]:
    """vertices [V, 3] seen by C cameras (K [C, 3, 3], E [C, 4, 4]) against masks [C, H, W] and their
    exterior distances [C, H, W] -> {"inside", "cover"} (distances as fractions of the image size)."""
    c, h, w = masks.shape
    size = float(max(h, w))
    pix = project(vertices[None].expand(c, -1, -1), K, world_to_camera)[0]  # [C, V, 2]
    grid = torch.stack([pix[..., 0] / w * 2 - 1, pix[..., 1] / h * 2 - 1], -1)[:, :, None]  # [C, V, 1, 2]
    dist = F.grid_sample(exterior[:, None].to(pix.dtype), grid, align_corners=False, padding_mode="border")
    inside = dist.mean() / size
    with torch.no_grad():
        normals = vertex_normals(vertices, faces)
        view = F.normalize(vertices[None] - camera_center(world_to_camera)[:, None], dim=-1)
        rims = (normals[None] * view).sum(-1).abs() < rim  # [C, V]
    cover = []
    for k in range(c):
        contour = contour_pixels(masks[k]).to(pix)
        if contour.shape[0] == 0 or not bool(rims[k].any()):
            continue
        cover.append(torch.cdist(contour, pix[k][rims[k]]).amin(1).mean())
    cover_t = torch.stack(cover).mean() / size if cover else pix.sum() * 0
    return {"inside": inside, "cover": cover_t}
