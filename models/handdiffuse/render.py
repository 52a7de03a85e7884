"""Draw two hand skeletons as IMAGE frames: pinhole projection (common/camera.py) and per-pixel distance
tests against the projected bones (capsules of constant pixel width) and joints (discs). Draw triangle
meshes (the two MANO hands) with a pure-torch rasteriser: per-triangle bounding boxes, edge functions
at pixel centres, perspective-correct depth into a z-buffer, Lambert shading with a headlight.

Pure torch, no OpenGL (headless GL errors are a top complaint of motion packs). Occlusion is by depth:
each pixel takes the colour of the nearest covering bone or joint (its camera depth at the closest point),
so a hand in front hides the one behind. The camera orbits the clip's joint centroid (fixed for the whole
clip, so motion shows as motion): yaw 0 looks from +z, the direction the world's person faces.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..common.camera import intrinsics_from_fov, look_at, orbit_eye, project, transform_points
from ..common.errors import InputError
from .hand import BONES

BACKGROUND = (0.08, 0.08, 0.1)
# right, left: the pack's one hand colour table (mesh.py and export.py import it, so every view agrees)
HAND_COLOURS = ((0.95, 0.45, 0.3), (0.3, 0.6, 0.95))
JOINT_SHADE = 1.25  # joints drawn a little brighter than bones
AMBIENT = 0.35  # mesh shading: ambient + (1 - ambient) * |cos(normal, view ray)|
PAIR_BUDGET = 2_000_000  # (triangle, pixel) candidate pairs per rasteriser chunk (memory bound)


def _check_size(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 16 <= v <= 4096:
        raise InputError(name, "an integer in 16 .. 4096 pixels", repr(v))
    return v


def clip_camera(
    points: Tensor,
    width: int,
    height: int,
    yaw: float = 0.0,
    pitch: float = 15.0,
    distance: float = 0.8,
    fov: float = 40.0,
    target: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """(K [3, 3], world -> camera [4, 4]), float64: the camera both renderers use. It orbits `target`
    (default: the mean of all `points` [..., 3] of the clip, fixed for the whole clip) at `distance`;
    yaw 0 looks from +z, pitch from above; `fov` is the horizontal field of view in degrees."""
    if target is None:
        target = points.detach().double().cpu().reshape(-1, 3).mean(0)
    target = [float(x) for x in torch.as_tensor(target, dtype=torch.float64).reshape(3)]
    E = look_at(torch.tensor(orbit_eye(distance, yaw, pitch, target), dtype=torch.float64),
                torch.tensor(target, dtype=torch.float64))  # fmt: skip
    K = intrinsics_from_fov(fov, width, height, dtype=torch.float64)
    return K, E


def render_skeletons(
    joints: Tensor,
    width: int = 512,
    height: int = 512,
    yaw: float = 0.0,
    pitch: float = 15.0,
    distance: float = 0.8,
    fov: float = 40.0,
    line_px: float | None = None,
) -> Tensor:
    """World joints [T, 2, 21, 3] -> IMAGE [T, H, W, 3] in 0..1."""
    width, height = _check_size("width", width), _check_size("height", height)
    if not distance > 0:
        raise InputError("distance", "a camera distance > 0 (metres)", repr(distance))
    if joints.dim() != 4 or tuple(joints.shape[1:]) != (2, 21, 3):
        raise InputError("motion", "joints [T, 2, 21, 3]", str(tuple(joints.shape)))
    j = joints.detach().double().cpu()
    K, E = clip_camera(j, width, height, yaw, pitch, distance, fov)
    uv, depth = project(j.reshape(j.shape[0], -1, 3), K, E)  # [T, 42, 2], [T, 42]
    uv, depth = uv.reshape(-1, 2, 21, 2), depth.reshape(-1, 2, 21)
    r = line_px if line_px is not None else max(1.0, min(width, height) / 160)

    bones = torch.tensor(BONES)
    a_uv = uv[:, :, bones[:, 0]].reshape(-1, 40, 2)  # [T, 40, 2] both hands' bones
    b_uv = uv[:, :, bones[:, 1]].reshape(-1, 40, 2)
    a_d, b_d = depth[:, :, bones[:, 0]].reshape(-1, 40), depth[:, :, bones[:, 1]].reshape(-1, 40)
    cols = torch.tensor(HAND_COLOURS, dtype=torch.float32)
    seg_col = cols.repeat_interleave(20, 0)  # [40, 3]
    joint_col = (cols.repeat_interleave(21, 0) * JOINT_SHADE).clamp(max=1.0)  # [42, 3]

    background = torch.tensor(BACKGROUND, dtype=torch.float32)
    frames = []
    for t in range(uv.shape[0]):
        # only pixels within reach of a primitive can change (bones reach r, joint discs 1.8 r): the
        # hands cover a small part of the frame, so the per-pixel tests run on their bounding box
        pts = uv[t].reshape(42, 2)
        finite = pts[torch.isfinite(pts).all(1)]
        img = background.expand(height, width, 3).clone()
        if finite.numel() == 0:
            frames.append(img)
            continue
        lo = (finite.min(0).values - 2 * r - 1).floor().clamp(min=0)
        hi = (finite.max(0).values + 2 * r + 2).ceil()
        x0, y0 = int(lo[0]), int(lo[1])
        x1, y1 = min(width, max(x0, int(hi[0]))), min(height, max(y0, int(hi[1])))
        if x1 <= x0 or y1 <= y0:
            frames.append(img)
            continue
        v, u = torch.meshgrid(torch.arange(y0, y1, dtype=torch.float64) + 0.5,
                              torch.arange(x0, x1, dtype=torch.float64) + 0.5, indexing="ij")  # fmt: skip
        pix = torch.stack([u, v], -1).reshape(-1, 2)  # [P, 2]
        ab = b_uv[t] - a_uv[t]  # [40, 2]
        s = ((pix[:, None] - a_uv[t][None]) * ab[None]).sum(-1) / ab.square().sum(-1).clamp_min(1e-9)[None]
        s = s.clamp(0, 1)  # [P, 40]
        closest = a_uv[t][None] + s[..., None] * ab[None]
        dist = (pix[:, None] - closest).norm(dim=-1)
        seg_depth = a_d[t][None] + s * (b_d[t] - a_d[t])[None]
        visible = (a_d[t] > 0) & (b_d[t] > 0)
        seg_z = torch.where((dist <= r) & visible[None], seg_depth, torch.inf)
        jd = (pix[:, None] - uv[t].reshape(42, 2)[None]).norm(dim=-1)  # [P, 42]
        jz = depth[t].reshape(42)
        joint_z = torch.where((jd <= 1.8 * r) & (jz > 0)[None], jz[None] - 1e-4, torch.inf)  # discs on top
        z = torch.cat([seg_z, joint_z], 1)
        best = z.argmin(1)
        colour = torch.cat([seg_col, joint_col])[best]
        hit = torch.isfinite(z.gather(1, best[:, None]))[:, 0]
        img[y0:y1, x0:x1] = torch.where(hit[:, None], colour, background).reshape(y1 - y0, x1 - x0, 3)
        frames.append(img)
    return torch.stack(frames).float()


def _faces_per_mesh(faces, meshes: int, verts: int) -> list[Tensor]:
    if isinstance(faces, Tensor) and faces.dim() == 2:
        faces = [faces] * meshes
    faces = [torch.as_tensor(f).long().cpu() for f in faces]
    if len(faces) != meshes or any(f.dim() != 2 or f.shape[1] != 3 for f in faces):
        raise InputError(
            "faces", f"triangles [F, 3] (shared) or one [F, 3] per mesh ({meshes})", str(len(faces))
        )
    for f in faces:
        if f.numel() and (f.min() < 0 or f.max() >= verts):
            raise InputError("faces", f"vertex indices in 0..{verts - 1}", f"{int(f.min())}..{int(f.max())}")
    return faces


def rasterize(verts_cam: Tensor, uv: Tensor, faces: Tensor, width: int, height: int) -> tuple[Tensor, Tensor]:
    """One frame: camera-frame vertices [V, 3], their pixels uv [V, 2], faces [F, 3] -> (face index per
    pixel [H, W] (-1 = empty), depth [H, W] (inf = empty)). A pixel belongs to a triangle when its centre
    lies inside it (edge functions >= 0 on either winding); depth is interpolated perspective-correctly
    (1/z is linear in the image) and the nearest triangle wins. Triangles touching or behind the camera
    plane are skipped."""
    z = verts_cam[:, 2]
    a, b, c = uv[faces[:, 0]], uv[faces[:, 1]], uv[faces[:, 2]]
    za, zb, zc = z[faces[:, 0]], z[faces[:, 1]], z[faces[:, 2]]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    lo = torch.minimum(torch.minimum(a, b), c)
    hi = torch.maximum(torch.maximum(a, b), c)
    x0 = torch.ceil(lo[:, 0] - 0.5).clamp(0, width)
    x1 = torch.floor(hi[:, 0] - 0.5).clamp(-1, width - 1)
    y0 = torch.ceil(lo[:, 1] - 0.5).clamp(0, height)
    y1 = torch.floor(hi[:, 1] - 0.5).clamp(-1, height - 1)
    ok = (torch.minimum(torch.minimum(za, zb), zc) > 1e-6) & (area.abs() > 1e-12)
    ok &= torch.isfinite(lo).all(1) & torch.isfinite(hi).all(1)
    nx = torch.where(ok, (x1 - x0 + 1).clamp(min=0), torch.zeros_like(x0)).long()
    ny = torch.where(ok, (y1 - y0 + 1).clamp(min=0), torch.zeros_like(y0)).long()
    counts = nx * ny
    zbuf = torch.full((height * width,), torch.inf, dtype=uv.dtype)
    fbuf = torch.full((height * width,), -1, dtype=torch.long)
    keep = torch.nonzero(counts > 0)[:, 0]
    start = 0
    while start < len(keep):
        cum = torch.cumsum(counts[keep[start:]], 0)
        stop = start + max(1, int(torch.searchsorted(cum, torch.tensor(PAIR_BUDGET)).item()))
        tri = keep[start:stop]
        start = stop
        n = counts[tri]
        f = torch.repeat_interleave(tri, n)
        first = torch.cumsum(n, 0) - n
        local = torch.arange(int(n.sum())) - torch.repeat_interleave(first, n)
        px = x0[f].long() + local % nx[f]
        py = y0[f].long() + local // nx[f]
        pu, pv = px.to(uv.dtype) + 0.5, py.to(uv.dtype) + 0.5
        fa, fb, fc = a[f], b[f], c[f]
        w0 = ((fb[:, 0] - pu) * (fc[:, 1] - pv) - (fb[:, 1] - pv) * (fc[:, 0] - pu)) / area[f]
        w1 = ((fc[:, 0] - pu) * (fa[:, 1] - pv) - (fc[:, 1] - pv) * (fa[:, 0] - pu)) / area[f]
        w2 = 1 - w0 - w1
        inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9)
        f, pix = f[inside], (py * width + px)[inside]
        w0, w1, w2 = w0[inside], w1[inside], w2[inside]
        depth = 1.0 / (w0 / za[f] + w1 / zb[f] + w2 / zc[f])
        before = zbuf.clone()
        zbuf.scatter_reduce_(0, pix, depth, reduce="amin")
        win = (depth == zbuf[pix]) & (depth < before[pix])
        fbuf[pix[win]] = f[win]
    return fbuf.reshape(height, width), zbuf.reshape(height, width)


def render_meshes(
    vertices: Tensor,
    faces,
    width: int = 512,
    height: int = 512,
    yaw: float = 0.0,
    pitch: float = 15.0,
    distance: float = 0.8,
    fov: float = 40.0,
    target: Tensor | None = None,
    colours=HAND_COLOURS,
) -> Tensor:
    """Meshes per frame -> IMAGE [T, H, W, 3] in 0..1.

    `vertices` [T, M, V, 3] world positions of M meshes (the two MANO hands: M = 2, right then left),
    `faces` [F, 3] shared or one [F_m, 3] per mesh; mesh m is drawn in `colours[m % len(colours)]`
    (right orange, left blue as the skeletons), shaded AMBIENT + (1 - AMBIENT) |n . view ray| (two-sided:
    MANO's left faces wind the other way). The camera is `clip_camera`'s, orbiting `target` (default:
    the mean vertex of the clip; pass the joints' mean to match `render_skeletons`)."""
    width, height = _check_size("width", width), _check_size("height", height)
    if not distance > 0:
        raise InputError("distance", "a camera distance > 0 (metres)", repr(distance))
    if vertices.dim() != 4 or vertices.shape[-1] != 3:
        raise InputError("vertices", "[T, M, V, 3] (M meshes per frame)", str(tuple(vertices.shape)))
    frames, meshes, nv = vertices.shape[:3]
    face_list = _faces_per_mesh(faces, meshes, nv)
    all_faces = torch.cat([f + m * nv for m, f in enumerate(face_list)])
    base = torch.tensor(colours, dtype=torch.float64)
    face_col = torch.cat([base[m % len(base)].expand(len(f), 3) for m, f in enumerate(face_list)])
    v = vertices.detach().double().cpu()
    K, E = clip_camera(v, width, height, yaw, pitch, distance, fov, target)
    background = torch.tensor(BACKGROUND, dtype=torch.float64)
    out = []
    for t in range(frames):
        pts = v[t].reshape(-1, 3)
        cam = transform_points(E, pts)
        uv, _ = project(pts, K, E)
        fbuf, _ = rasterize(cam, uv, all_faces, width, height)
        tri = cam[all_faces]  # [F, 3, 3]
        normal = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-20)
        ray = tri.mean(1)
        ray = ray / ray.norm(dim=-1, keepdim=True).clamp_min(1e-20)
        shade = AMBIENT + (1 - AMBIENT) * (normal * ray).sum(-1).abs()
        col = face_col * shade[:, None]
        hit = fbuf >= 0
        img = torch.where(hit[..., None], col[fbuf.clamp(min=0)], background)
        out.append(img)
    return torch.stack(out).float().clamp(0, 1)
