"""Pinhole cameras: intrinsics, look-at extrinsics, world -> camera -> pixel projection, per-pixel rays.

The 3D methods (TriHuman's multi-view renders, BiDiff's views of a shape) place cameras, project points
and march rays; they share this one convention so their cameras can be exchanged.

Convention: OpenCV / COLMAP.
- Camera frame: x right, y down, z forward (the camera looks along +z); depth is the camera-frame z.
- Pixels: u to the right, v down, origin at the top-left corner of the top-left pixel, so pixel (column i,
  row j) has its centre at (i + 0.5, j + 0.5); the image centre of a W x H image is (W / 2, H / 2).
- Intrinsics K = [[fx, s, cx], [0, fy, cy], [0, 0, 1]]; extrinsics are world -> camera 4x4 matrices
  [[R, t], [0, 1]] (x_cam = R x_world + t), so the camera centre is -R^T t.
- World: any right-handed frame; `look_at` defaults to +y up (glTF, three.js and so core Preview3D).
  OpenGL-style cameras (looking along -z, y up) differ by flipping the camera's y and z: `opencv_to_opengl`.

Everything is batched: leading dimensions broadcast (K [..., 3, 3], extrinsics [..., 4, 4], points
[..., N, 3]); dtype and device follow the inputs (float64 in, float64 out).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .errors import InputError

Vec3 = torch.Tensor | Sequence[float]

# diag(1, -1, -1, 1): OpenCV camera frame <-> OpenGL camera frame (its own inverse).
_CV_TO_GL = (1.0, -1.0, -1.0, 1.0)


def _check(x: torch.Tensor, name: str, tail: tuple[int, ...], what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise InputError(name, what, type(x).__name__)
    if x.ndim < len(tail) or tuple(x.shape[x.ndim - len(tail) :]) != tail:
        raise InputError(name, what, f"shape {list(x.shape)}")
    if not x.is_floating_point():
        raise InputError(name, f"{what}, floating point", str(x.dtype))
    return x


def _vec3(x: Vec3, name: str, like: torch.Tensor | None = None) -> torch.Tensor:
    """A [..., 3] float tensor (sequences become tensors of `like`'s dtype/device, or the default dtype)."""
    if not isinstance(x, torch.Tensor):
        x = torch.tensor(
            x,
            dtype=like.dtype if like is not None else torch.get_default_dtype(),
            device=like.device if like is not None else None,
        )
    return _check(x, name, (3,), "a 3-vector [..., 3]")


def intrinsics(
    fx: float | torch.Tensor,
    fy: float | torch.Tensor,
    cx: float | torch.Tensor,
    cy: float | torch.Tensor,
    skew: float | torch.Tensor = 0.0,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """K [..., 3, 3] from focal lengths and principal point in pixels (arguments broadcast)."""
    parts = [fx, fy, cx, cy, skew]
    tensors = [p for p in parts if isinstance(p, torch.Tensor)]
    dtype = dtype or (tensors[0].dtype if tensors else torch.get_default_dtype())
    device = tensors[0].device if tensors else None
    fx, fy, cx, cy, skew = torch.broadcast_tensors(
        *(torch.as_tensor(p, dtype=dtype, device=device) for p in parts)
    )
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    rows = [
        torch.stack([fx, skew, cx], -1),
        torch.stack([zero, fy, cy], -1),
        torch.stack([zero, zero, one], -1),
    ]
    return torch.stack(rows, -2)


def intrinsics_from_fov(
    fov_degrees: float | torch.Tensor,
    width: int,
    height: int,
    axis: str = "horizontal",
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """K [..., 3, 3] for square pixels and the principal point at the image centre.

    `fov_degrees` is the full angle across the image width (`axis="horizontal"`) or height ("vertical");
    f = (size / 2) / tan(fov / 2). three.js / Preview3D state the vertical field of view.
    """
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(name, "a positive integer", repr(value))
    if axis not in ("horizontal", "vertical"):
        raise InputError("axis", "'horizontal' or 'vertical'", repr(axis))
    if dtype is None:
        dtype = fov_degrees.dtype if isinstance(fov_degrees, torch.Tensor) else torch.get_default_dtype()
    fov = torch.as_tensor(fov_degrees, dtype=dtype)
    if not bool(((fov > 0) & (fov < 180)).all()):
        raise InputError("fov_degrees", "angles in (0, 180) degrees", repr(fov_degrees))
    size = width if axis == "horizontal" else height
    f = (size / 2.0) / torch.tan(torch.deg2rad(fov) / 2.0)
    return intrinsics(f, f, width / 2.0, height / 2.0, dtype=fov.dtype)


def fov_from_intrinsics(K: torch.Tensor, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(horizontal, vertical) full field of view in degrees of a centred pinhole K [..., 3, 3]."""
    K = _check(K, "intrinsics", (3, 3), "a camera matrix K [..., 3, 3]")
    h = torch.rad2deg(2.0 * torch.atan((width / 2.0) / K[..., 0, 0]))
    v = torch.rad2deg(2.0 * torch.atan((height / 2.0) / K[..., 1, 1]))
    return h, v


def look_at(eye: Vec3, target: Vec3, up: Vec3 = (0.0, 1.0, 0.0)) -> torch.Tensor:
    """World -> camera [..., 4, 4] for a camera at `eye` looking at `target` (OpenCV axes).

    z points from eye to target; y (image down) is -`up` made orthogonal to z; x = y cross z (right-handed),
    so `up` appears upwards in the image and the target at the image centre.
    """
    eye = _vec3(eye, "eye")
    target, up = _vec3(target, "target", eye), _vec3(up, "up", eye)
    eye, target, up = torch.broadcast_tensors(eye, target, up)
    forward = target - eye
    dist = forward.norm(dim=-1, keepdim=True)
    if bool((dist <= 0).any()):
        raise InputError("target", "a point different from eye", "target == eye")
    z = forward / dist
    down = -up
    y = down - (down * z).sum(-1, keepdim=True) * z
    y_norm = y.norm(dim=-1, keepdim=True)
    if bool((y_norm <= 1e-6 * up.norm(dim=-1, keepdim=True).clamp_min(1e-30)).any()):
        raise InputError("up", "a direction not parallel to the viewing direction (target - eye)")
    y = y / y_norm
    x = torch.linalg.cross(y, z, dim=-1)
    R = torch.stack([x, y, z], dim=-2)  # rows: camera axes in world coordinates
    t = -(R @ eye.unsqueeze(-1)).squeeze(-1)
    return rigid(R, t)


def rigid(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """[..., 4, 4] from a rotation [..., 3, 3] and a translation [..., 3]."""
    R = _check(R, "rotation", (3, 3), "a rotation [..., 3, 3]")
    t = _check(t, "translation", (3,), "a translation [..., 3]")
    batch = torch.broadcast_shapes(R.shape[:-2], t.shape[:-1])
    out = torch.zeros(*batch, 4, 4, dtype=R.dtype, device=R.device)
    out[..., :3, :3] = R
    out[..., :3, 3] = t
    out[..., 3, 3] = 1.0
    return out


def invert_rigid(T: torch.Tensor) -> torch.Tensor:
    """Inverse of a rigid transform [..., 4, 4]: [[R^T, -R^T t], [0, 1]] (exact transpose, no solve)."""
    T = _check(T, "extrinsics", (4, 4), "a rigid transform [..., 4, 4]")
    Rt = T[..., :3, :3].transpose(-1, -2)
    return rigid(Rt, -(Rt @ T[..., :3, 3:]).squeeze(-1))


def camera_center(world_to_camera: torch.Tensor) -> torch.Tensor:
    """The camera's position in world coordinates [..., 3] (-R^T t)."""
    return invert_rigid(world_to_camera)[..., :3, 3]


def transform_points(T: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply [..., 4, 4] to points [..., N, 3] (batch dimensions broadcast)."""
    T = _check(T, "extrinsics", (4, 4), "a transform [..., 4, 4]")
    points = _check(points, "points", (3,), "points [..., N, 3]")
    return points @ T[..., :3, :3].transpose(-1, -2) + T[..., None, :3, 3]


def project(
    points: torch.Tensor, K: torch.Tensor, world_to_camera: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """World points [..., N, 3] -> (pixel coordinates uv [..., N, 2], depth [..., N]).

    Depth is the camera-frame z; points with depth <= 0 are behind the camera and their uv is meaningless
    (mask them with `depth > 0`).
    """
    K = _check(K, "intrinsics", (3, 3), "a camera matrix K [..., 3, 3]")
    cam = transform_points(world_to_camera, points)
    depth = cam[..., 2]
    uvw = cam @ K.transpose(-1, -2)
    return uvw[..., :2] / uvw[..., 2:], depth


def unproject(
    uv: torch.Tensor, depth: torch.Tensor, K: torch.Tensor, world_to_camera: torch.Tensor
) -> torch.Tensor:
    """Pixel coordinates [..., N, 2] at camera-frame depths [..., N] -> world points [..., N, 3]."""
    K = _check(K, "intrinsics", (3, 3), "a camera matrix K [..., 3, 3]")
    uv = _check(uv, "uv", (2,), "pixel coordinates [..., N, 2]")
    cam = _pixel_directions(uv, K) * depth.unsqueeze(-1)
    return transform_points(invert_rigid(world_to_camera), cam)


def _pixel_directions(uv: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """K^-1 [u, v, 1]: camera-frame directions with z = 1 (K is upper triangular: solved in closed form)."""
    fx, fy, s = K[..., 0, 0, None], K[..., 1, 1, None], K[..., 0, 1, None]
    cx, cy = K[..., 0, 2, None], K[..., 1, 2, None]
    y = (uv[..., 1] - cy) / fy
    x = (uv[..., 0] - cx - s * y) / fx
    return torch.stack([x, y, torch.ones_like(x)], -1)


def pixel_centers(
    height: int, width: int, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> torch.Tensor:
    """[H, W, 2] (u, v) of every pixel centre: (i + 0.5, j + 0.5) for column i, row j."""
    dtype = dtype or torch.get_default_dtype()
    v = torch.arange(height, dtype=dtype, device=device) + 0.5
    u = torch.arange(width, dtype=dtype, device=device) + 0.5
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return torch.stack([uu, vv], -1)


def pixel_rays(
    K: torch.Tensor, world_to_camera: torch.Tensor, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ray per pixel centre: (origins [..., H, W, 3], unit directions [..., H, W, 3]) in world space.

    The point at distance d along a ray has camera depth d * (direction . camera z), and projects back to
    that pixel's centre.
    """
    K = _check(K, "intrinsics", (3, 3), "a camera matrix K [..., 3, 3]")
    E = _check(world_to_camera, "extrinsics", (4, 4), "a world -> camera transform [..., 4, 4]")
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(name, "a positive integer", repr(value))
    batch = torch.broadcast_shapes(K.shape[:-2], E.shape[:-2])
    uv = pixel_centers(height, width, K.dtype, K.device).reshape(-1, 2)
    dirs_cam = _pixel_directions(uv, K)  # [..., H*W, 3]
    R = E[..., :3, :3]
    dirs = dirs_cam @ R  # R^T d for row vectors
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    dirs = dirs.expand(*batch, height * width, 3).reshape(*batch, height, width, 3)
    origins = camera_center(E)[..., None, None, :].expand(*batch, height, width, 3)
    return origins, dirs


def opencv_to_opengl(world_to_camera: torch.Tensor) -> torch.Tensor:
    """OpenCV world -> camera [..., 4, 4] as an OpenGL one (camera y up, looking along -z); also the reverse.

    Only the camera frame changes (y and z flip); the world frame is untouched.
    """
    E = _check(world_to_camera, "extrinsics", (4, 4), "a world -> camera transform [..., 4, 4]")
    flip = torch.tensor(_CV_TO_GL, dtype=E.dtype, device=E.device)
    return flip[:, None] * E


def orbit_eye(
    radius: float, azimuth_degrees: float, elevation_degrees: float, target: Sequence[float] = (0.0, 0.0, 0.0)
) -> tuple[float, float, float]:
    """Camera position on a sphere around `target` (y up): azimuth 0 looks from +z, 90 from +x."""
    az, el = math.radians(azimuth_degrees), math.radians(elevation_degrees)
    return (
        target[0] + radius * math.cos(el) * math.sin(az),
        target[1] + radius * math.sin(el),
        target[2] + radius * math.cos(el) * math.cos(az),
    )


def orbit_rig(
    views: int,
    radius: float = 3.0,
    elevation_degrees: float = 20.0,
    fov_degrees: float = 40.0,
    width: int = 64,
    height: int = 64,
    azimuth_start: float = 0.0,
    target: Sequence[float] = (0.0, 0.0, 0.0),
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`views` cameras evenly spaced in azimuth around `target` (y up), each looking at it: (K [V, 3, 3]
    with `fov_degrees` across the width, world -> camera [V, 4, 4]). The multi-view sets of BiDiff."""
    if isinstance(views, bool) or not isinstance(views, int) or views < 1:
        raise InputError("views", "a positive number of cameras", repr(views))
    if not radius > 0:
        raise InputError("radius", "a distance > 0", repr(radius))
    dtype = dtype or torch.get_default_dtype()
    eyes = [
        orbit_eye(radius, azimuth_start + 360.0 * i / views, elevation_degrees, target) for i in range(views)
    ]
    extrinsics = look_at(torch.tensor(eyes, dtype=dtype), torch.tensor(target, dtype=dtype))
    K = intrinsics_from_fov(fov_degrees, width, height, dtype=dtype).expand(views, 3, 3).clone()
    return K, extrinsics
