"""The official networks' fields and their NeuS rendering, as the release evaluates them (layout notes
section 3, "Texture-cube mapping", "Tri-plane lookup", "Rendering"): ray samples in the per-frame normalised
space are mapped to their closest point on the posed template (20 candidate faces, d signed by the chosen
face's plane), samples with |d| >= 0.02 are empty, the planes are read with the release's align-corners
sampler, the SDF is absolute, and the colour network gets the unnormalised gradient as its normal.

Why not `render.py`: our avatars use a residual SDF around the template, unit normals, global near/far and
our plane layout; the official weights were trained with the conventions here, so they get their own path.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from ...common.errors import InputError
from ..closest_face import closest_points_candidates, closest_points_on_faces

SHELL = 0.02  # `jelly_offset`: samples farther from the template (normalised units, 24 mm) are empty
SCALE_D = 0.05  # the planes' d axis spans [-0.05, 0.05] (normalised units)
SAMPLES = 32  # uniform midpoint samples per ray, no importance sampling
CANDIDATES = 20  # candidate faces per sample (nearest centroids)
RAY_CHUNK = 16384  # rays per chunk, as the release renders


def release_plane_features(planes: torch.Tensor, uvd: torch.Tensor, scale_d: float = SCALE_D) -> torch.Tensor:
    """Features [N, 3C] of points (u, v, d) [N, 3] (u, v in [-1, 1], d in normalised units) from planes
    [3C, S, S] in the release's blocks: (u, v) from block 0, (v, d) from block 2, (d, u) from block 1; in each
    pair the first coordinate indexes rows, d is divided by `scale_d`."""
    if planes.ndim != 3 or planes.shape[0] % 3 or uvd.ndim != 2 or uvd.shape[-1] != 3:
        raise InputError("planes / uvd", "planes [3C, S, S] and points [N, 3]",
                         f"{list(planes.shape)} and {list(uvd.shape)}")  # fmt: skip
    c = planes.shape[0] // 3
    blocks = planes.reshape(3, c, *planes.shape[-2:])
    u, v, d = uvd.unbind(-1)
    return torch.cat(
        [
            _clamped_bilinear(blocks[0], u, v),
            _clamped_bilinear(blocks[2], v, d / scale_d),
            _clamped_bilinear(blocks[1], d / scale_d, u),
        ],
        -1,
    )


def _clamped_bilinear(plane: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """The release's bilinear read of plane [C, H, W] at coordinates in [-1, 1] (-1 -> 0, +1 -> size - 1):
    inside the plane, align-corners bilinear (`grid_sample(..., align_corners=True)`). Outside, the release
    computes the four weights from the unclamped cell and then clamps the indices to the border cell, so a
    point beyond the edge gets its outside cell's weights applied to the border texels (neither clamping nor
    extrapolation); reproduced as is, since the weights were trained with it."""
    h, w = plane.shape[-2:]
    x = (rows + 1.0) * (h - 1) * 0.5
    y = (cols + 1.0) * (w - 1) * 0.5
    x0, y0 = torch.floor(x).detach(), torch.floor(y).detach()
    x1, y1 = x0 + 1, y0 + 1
    wa, wb = (x1 - x) * (y1 - y), (x - x0) * (y1 - y)
    wc, wd = (x1 - x) * (y - y0), (x - x0) * (y - y0)
    i0, i1 = x0.clamp(0, h - 2).long(), x1.clamp(1, h - 1).long()
    j0, j1 = y0.clamp(0, w - 2).long(), y1.clamp(1, w - 1).long()
    img = plane.permute(1, 2, 0)
    return (
        wa[:, None] * img[i0, j0]
        + wb[:, None] * img[i1, j0]
        + wc[:, None] * img[i0, j1]
        + wd[:, None] * img[i1, j1]
    )


class FieldSamples(NamedTuple):
    """The field at the kept samples (`kept` [N] bool over all samples): SDF [K, 1] (absolute, normalised
    units, > 0 outside), SDF feature [K, F], gradient of the SDF w.r.t. the sample point [K, 3] (unnormalised)."""

    kept: torch.Tensor
    sdf: torch.Tensor
    feature: torch.Tensor
    gradient: torch.Tensor


def release_field(
    nets,
    planes: torch.Tensor,
    points: torch.Tensor,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    face_uvs: torch.Tensor,
    shell: float = SHELL,
    candidates: int = CANDIDATES,
) -> FieldSamples:
    """SDF, feature and gradient at sample points [N, 3] (normalised space) of the posed template `vertices`
    [V, 3] (normalised), `faces` [F, 3], `face_uvs` [F, 3, 2] in the template's raw UV range [0, 1]; samples
    with |d| >= `shell` are left out (`kept`). The closest face is searched once without autograd; the mapping
    is then recomputed on that face with autograd so the gradient passes through the projection, as the
    release's does."""
    uvs_pm1 = (face_uvs.to(vertices) - 0.5) * 2.0  # the release maps UVs to [-1, 1] before interpolating
    with torch.no_grad():
        found = closest_points_candidates(
            points, vertices, faces, candidates=candidates, uvs=uvs_pm1, sign="face"
        )
    kept = found.signed_distance.abs() < shell
    with torch.enable_grad():
        x = points[kept].detach().requires_grad_(True)
        mapped = closest_points_on_faces(
            x, vertices.detach(), faces, found.face_index[kept], uvs=uvs_pm1, sign="face"
        )
        uvd = mapped.uvd
        out = nets.sdf_network(torch.cat([uvd, release_plane_features(planes, uvd)], -1))
        sdf, feature = out[:, :1], out[:, 1:]
        (gradient,) = (
            torch.autograd.grad(sdf, x, torch.ones_like(sdf)) if x.numel() else (torch.zeros_like(x),)
        )
    return FieldSamples(kept, sdf.detach(), feature.detach(), gradient.detach())


class RenderedRays(NamedTuple):
    color: torch.Tensor  # [R, 3], black where nothing is hit
    opacity: torch.Tensor  # [R, 1], the weights' sum


def neus_weights(sdf: torch.Tensor, cos: torch.Tensor, dists: torch.Tensor, inv_s: torch.Tensor,
                 kept: torch.Tensor, cos_anneal_ratio: float = 1.0) -> torch.Tensor:  # fmt: skip
    """NeuS's discrete opacity and weights (Wang et al. 2021, Sec. 3.3) as the release computes them:
    `sdf`, `cos` (ray direction . gradient) and `kept` [R, N], section lengths `dists` [R, N]; empty samples
    get alpha 0. Returns weights [R, N]."""
    iter_cos = -(F.relu(-cos * 0.5 + 0.5) * (1.0 - cos_anneal_ratio) + F.relu(-cos) * cos_anneal_ratio)
    next_cdf = torch.sigmoid((sdf + iter_cos * dists * 0.5) * inv_s)
    prev_cdf = torch.sigmoid((sdf - iter_cos * dists * 0.5) * inv_s)
    alpha = ((prev_cdf - next_cdf + 1e-5) / (prev_cdf + 1e-5)).clip(0.0, 1.0) * kept
    ones = torch.ones_like(alpha[:, :1])
    return alpha * torch.cumprod(torch.cat([ones, 1.0 - alpha + 1e-7], -1), -1)[:, :-1]


def release_render_rays(
    nets,
    planes: torch.Tensor,
    rays_o: torch.Tensor,
    rays_d: torch.Tensor,
    near: torch.Tensor,
    far: torch.Tensor,
    vertices: torch.Tensor,
    faces: torch.Tensor,
    face_uvs: torch.Tensor,
    colour_scale: float,
    colour_translation: torch.Tensor,
    samples: int = SAMPLES,
    chunk: int = RAY_CHUNK,
    cos_anneal_ratio: float = 1.0,
) -> RenderedRays:
    """Colour and opacity of rays [R, 3] in the normalised space between per-ray `near` / `far` [R]:
    `samples` uniform midpoints, the field at the kept ones (`release_field`), the colour network at the
    point x * colour_scale + colour_translation (the release's colour-MLP frame, see
    `colour_frame`) with the unnormalised gradient as normal and the ray direction as view, NeuS weights,
    no background (black)."""
    if (
        rays_o.shape != rays_d.shape
        or rays_o.ndim != 2
        or near.shape != rays_o.shape[:1]
        or far.shape != near.shape
    ):
        raise InputError("rays", "rays_o, rays_d [R, 3] and near, far [R]",
                         f"{list(rays_o.shape)}, {list(rays_d.shape)}, {list(near.shape)}, {list(far.shape)}")  # fmt: skip
    colors, opacities = [], []
    for s in range(0, rays_o.shape[0], chunk):
        c, o = _render_chunk(nets, planes, rays_o[s : s + chunk], rays_d[s : s + chunk], near[s : s + chunk],
                             far[s : s + chunk], vertices, faces, face_uvs, colour_scale, colour_translation,
                             samples, cos_anneal_ratio)  # fmt: skip
        colors.append(c)
        opacities.append(o)
    return RenderedRays(torch.cat(colors), torch.cat(opacities))


def _render_chunk(nets, planes, rays_o, rays_d, near, far, vertices, faces, face_uvs, colour_scale,
                  colour_translation, samples, cos_anneal_ratio):  # fmt: skip
    r = rays_o.shape[0]
    z = torch.linspace(0.0, 1.0, samples + 1, dtype=rays_o.dtype, device=rays_o.device)
    z = near[:, None] + (far - near)[:, None] * z[None]
    dists = z[:, 1:] - z[:, :-1]
    mid = z[:, :-1] + dists * 0.5
    pts = (rays_o[:, None] + rays_d[:, None] * mid[..., None]).reshape(-1, 3)
    dirs = rays_d[:, None].expand(r, samples, 3).reshape(-1, 3)
    field = release_field(nets, planes, pts, vertices, faces, face_uvs)
    kept = field.kept
    sdf = torch.zeros(r * samples, 1, dtype=pts.dtype, device=pts.device)
    grad = torch.zeros_like(pts)
    color = torch.zeros_like(pts)
    sdf[kept], grad[kept] = field.sdf.to(pts), field.gradient.to(pts)
    with torch.no_grad():
        if bool(kept.any()):
            frame = pts[kept] * colour_scale + colour_translation.to(pts)
            color[kept] = nets.color_network(frame, field.gradient, dirs[kept], field.feature).to(pts)
        inv_s = nets.deviation_network(torch.zeros(1, 3, dtype=pts.dtype))[:, :1].clip(1e-6, 1e6).to(pts)
        cos = (dirs * grad).sum(-1).view(r, samples)
        w = neus_weights(
            sdf.view(r, samples), cos, dists, inv_s, kept.view(r, samples).to(pts), cos_anneal_ratio
        )
        out = torch.nan_to_num(color.view(r, samples, 3) * w[..., None]).sum(1)
    return out, w.sum(-1, keepdim=True)


def colour_frame(root: torch.Tensor, base_trans: torch.Tensor, scale: float = 1.2, extent: float = 2.5):
    """(colour_scale, colour_translation) of the release's colour-MLP input: the sample in metres relative
    to `base_trans`, divided by 2.5, i.e. x * 1.2 / 2.5 + (root(t) - base_trans) / 2.5 (layout notes
    section 3; `root` and `base_trans` in metres)."""
    return scale / extent, (root - base_trans) / extent
