"""TriHuman's tri-plane generator, 3D-aware convolution, motion code and tri-plane sampling, in pure torch.

TriHuman (Zhu et al. 2023, method section and the pipeline of its Fig. 2) turns the motion texture (posed
positions and normals of frames t, t-1, t-2 rasterised in UV space: 18 channels, `uv_raster.py`) into three
feature planes spanned by the texture cube's axes (u, v, d): d is the signed distance from the posed template
(`closest_face.py`). A U-Net with 3D-aware convolutions (Wang et al. 2022, "Rodin": its rolled-out tri-plane
and 3D-aware convolution) produces the planes; a global motion code (the three-frame pose vector through a
small MLP, 32-d) joins its bottleneck. Written from the papers; no official code is used.

Axis conventions (one rule for all three planes, used by `sample_triplanes` and `AwareConv` alike):
- Sampling takes cube coordinates c = (cu, cv, cd) in [-1, 1]^3. `cube_coordinates` converts the texture
  cube's (u, v, d) (u, v in [0, 1] with v growing upwards, d in world units within +-shell) to them:
  cu = 2u - 1, cv = 1 - 2v, cd = d / shell. The v flip makes the uv plane pixel-aligned with the motion
  texture it is generated from (uv_raster: row 0 is v near 1), so a U-Net output texel and its input texel
  describe the same surface point.
- A plane named (a, b) is a tensor [..., C, S, S] whose width (last dim, grid_sample's x) runs along a and
  whose height (grid_sample's y) runs along b: plane 0 "uv" is [C, S_v, S_u], plane 1 "vd" is [C, S_d, S_v],
  plane 2 "du" is [C, S_u, S_d]. The naming is cyclic (u -> v -> d -> u), so each plane's height axis is
  the next plane's width axis.
- grid_sample with align_corners=False: texel j of S has its centre at (2j + 1) / S - 1, which is
  uv_raster's texel centre u = (j + 0.5) / S mapped by cu = 2u - 1. padding_mode="border": samples at the
  outer half texel (or outside the shell) read the edge texel instead of fading to zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from ..common.errors import InputError

PLANES = ("uv", "vd", "du")  # plane k: width axis PLANES[k][0], height axis PLANES[k][1]


def _shape(x) -> str:
    return f"shape {list(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


def _check_planes(planes: torch.Tensor, name: str = "planes", channels: int | None = None) -> None:
    what = (
        "three square feature planes [B, 3, C, S, S]"
        if channels is None
        else f"planes [B, 3, {channels}, S, S]"
    )
    if not isinstance(planes, torch.Tensor) or planes.ndim != 5 or planes.shape[1] != 3:
        raise InputError(name, what, _shape(planes))
    if planes.shape[-1] != planes.shape[-2] or (channels is not None and planes.shape[2] != channels):
        raise InputError(name, what, _shape(planes))
    if not planes.is_floating_point():
        raise InputError(name, f"floating-point {what}", str(planes.dtype))


def cube_coordinates(uvd: torch.Tensor, shell: float) -> torch.Tensor:
    """Texture-cube (u, v, d) -> sampling coordinates in [-1, 1]^3 (cu = 2u - 1, cv = 1 - 2v, cd = d / shell).

    uvd [..., 3] as `closest_face` returns it (u, v in [0, 1], v up; d signed, world units); shell: the
    largest |d| that still carries features (the paper's shell around the template)."""
    if not isinstance(uvd, torch.Tensor) or uvd.ndim < 1 or uvd.shape[-1] != 3 or not uvd.is_floating_point():
        raise InputError("uvd", "floating-point texture-cube coordinates [..., 3]", _shape(uvd))
    if not float(shell) > 0:
        raise InputError("shell", "a positive shell thickness", repr(shell))
    u, v, d = uvd.unbind(-1)
    return torch.stack([2 * u - 1, 1 - 2 * v, d / shell], -1)


def sample_triplanes(planes: torch.Tensor, uvd: torch.Tensor, reduce: str = "concat") -> torch.Tensor:
    """Bilinear features of points from the (u,v), (v,d) and (d,u) planes (TriHuman's tri-plane lookup).

    planes [B, 3, C, S, S] (conventions in the module docstring); uvd [B, N, 3] cube coordinates in [-1, 1]
    (see `cube_coordinates`). Returns [B, N, 3C] with the planes' features side by side in the order uv,
    vd, du (reduce="concat", our default: the MLP can tell the planes apart) or [B, N, C] (reduce="sum",
    EG3D-style aggregation). Plane k is sampled at x = c[k], y = c[(k + 1) % 3]."""
    _check_planes(planes)
    if (
        not isinstance(uvd, torch.Tensor)
        or uvd.ndim != 3
        or uvd.shape[-1] != 3
        or uvd.shape[0] != planes.shape[0]
        or not uvd.is_floating_point()
    ):
        raise InputError("uvd", f"floating-point cube coordinates [B = {planes.shape[0]}, N, 3]", _shape(uvd))
    if reduce not in ("concat", "sum"):
        raise InputError("reduce", "'concat' or 'sum'", repr(reduce))
    b, _, c, s, _ = planes.shape
    uvd = uvd.to(planes.dtype)
    # grid [B*3, 1, N, 2]: plane k reads (x, y) = (c_k, c_{k+1})
    grid = torch.stack([uvd[..., [k, (k + 1) % 3]] for k in range(3)], 1).reshape(b * 3, 1, -1, 2)
    feats = F.grid_sample(
        planes.reshape(b * 3, c, s, s), grid, mode="bilinear", padding_mode="border", align_corners=False
    )  # [B*3, C, 1, N]
    feats = feats.reshape(b, 3, c, -1).permute(0, 3, 1, 2)  # [B, N, 3, C]
    return feats.sum(2) if reduce == "sum" else feats.reshape(b, feats.shape[1], 3 * c)


def aware_context(planes: torch.Tensor) -> torch.Tensor:
    """Each plane with the other two planes' axis-pooled features broadcast onto it: [B, 3, 3C, S, S].

    Rodin's 3D-aware input: a plane's texel sees, from each other plane, the mean over the axis
    that plane does not share with it. With the cyclic layout (plane k: width a_k, height a_{k+1}):
    - from the next plane k+1 (width a_{k+1}, height a_{k+2}) the mean over its height a_{k+2}: a vector
      along a_{k+1}, laid along plane k's height and repeated across its width;
    - from the previous plane k-1 (width a_{k-1} = a_{k+2}, height a_k) the mean over its width a_{k+2}:
      a vector along a_k, laid along plane k's width and repeated across its height.
    Concretely uv gets vd pooled over d and du pooled over d; vd gets du pooled over u and uv pooled over u;
    du gets uv pooled over v and vd pooled over v. Channel order: own, next, previous. Mean pooling as Rodin."""
    b, _, c, s, _ = planes.shape
    nxt = planes.roll(-1, dims=1)  # plane k+1 at index k
    prv = planes.roll(1, dims=1)  # plane k-1 at index k
    from_next = nxt.mean(dim=-2, keepdim=True).transpose(-1, -2).expand(b, 3, c, s, s)  # along height
    from_prev = prv.mean(dim=-1, keepdim=True).transpose(-1, -2).expand(b, 3, c, s, s)  # along width
    return torch.cat([planes, from_next, from_prev], 2)


class AwareConv(nn.Module):
    """3D-aware convolution (Rodin), used by TriHuman's generator: a 3x3 conv per plane over
    [own features, the other two planes' axis-pooled features] (see `aware_context` for which axis).

    [B, 3, C_in, S, S] -> [B, 3, C_out, S, S]; separate weights per plane (one grouped conv)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.conv = nn.Conv2d(
            9 * in_channels, 3 * out_channels, kernel_size, padding=kernel_size // 2, groups=3
        )

    def forward(self, planes: torch.Tensor) -> torch.Tensor:
        _check_planes(planes, "planes", self.in_channels)
        b, _, _, s, _ = planes.shape
        x = aware_context(planes).reshape(b, 9 * self.in_channels, s, s)
        return self.conv(x).reshape(b, 3, self.out_channels, s, s)


class MotionCode(nn.Module):
    """TriHuman's global motion code: the skeletal pose of frames t, t-1, t-2 -> MLP -> 32-d (joins the
    generator's bottleneck). Layer count and width are our interpretation (the paper says "small MLP").

    Input [B, frames * pose_dim] or [B, frames, pose_dim]."""

    def __init__(self, pose_dim: int, frames: int = 3, hidden: int = 128, out_dim: int = 32, layers: int = 2):
        super().__init__()
        if pose_dim < 1 or frames < 1 or hidden < 1 or out_dim < 1 or layers < 1:
            raise InputError("MotionCode", "positive pose_dim, frames, hidden, out_dim, layers")
        self.pose_dim, self.frames, self.out_dim = pose_dim, frames, out_dim
        dims = [frames * pose_dim] + [hidden] * (layers - 1) + [out_dim]
        mods: list[nn.Module] = []
        for i in range(len(dims) - 1):
            mods.append(nn.Linear(dims[i], dims[i + 1]))
            if i < len(dims) - 2:
                mods.append(nn.LeakyReLU(0.2))
        self.mlp = nn.Sequential(*mods)

    def forward(self, pose: torch.Tensor) -> torch.Tensor:
        n = self.frames * self.pose_dim
        if not isinstance(pose, torch.Tensor) or not pose.is_floating_point():
            raise InputError("pose", f"floating-point pose vectors [B, {n}]", _shape(pose))
        if pose.ndim == 3 and pose.shape[1:] == (self.frames, self.pose_dim):
            pose = pose.flatten(1)
        if pose.ndim != 2 or pose.shape[1] != n:
            raise InputError(
                "pose", f"pose vectors [B, {n}] or [B, {self.frames}, {self.pose_dim}]", _shape(pose)
            )
        return self.mlp(pose)


@dataclass
class TriplaneGeneratorConfig:
    """The generator's architecture; the defaults are the paper's sizes (18-channel motion texture, three
    16-channel planes at 256^2, 32-d motion code); widths and depth are our interpretation."""

    in_channels: int = 18
    plane_channels: int = 16
    size: int = 256
    base_channels: int = 32
    max_channels: int = 256
    depth: int = 4  # downsamplings: bottleneck at size / 2**depth
    motion_dim: int = 32
    aware_blocks: int = 2  # 3D-aware convs at the top resolution (the last one outputs plane_channels)
    aware_channels: int = 16  # per-plane width of the hidden 3D-aware convs

    @classmethod
    def from_any(cls, config: TriplaneGeneratorConfig | Mapping | None) -> TriplaneGeneratorConfig:
        if config is None:
            return cls()
        if isinstance(config, cls):
            return config
        if isinstance(config, Mapping):
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(config) - known)
            if unknown:
                raise InputError("config", f"generator settings among {sorted(known)}", f"unknown {unknown}")
            return cls(**config)
        raise InputError("config", "a TriplaneGeneratorConfig or a dict", type(config).__name__)

    def check(self) -> None:
        for name in (
            "in_channels",
            "plane_channels",
            "size",
            "base_channels",
            "max_channels",
            "aware_channels",
        ):
            if int(getattr(self, name)) < 1:
                raise InputError(f"config.{name}", "a positive integer", repr(getattr(self, name)))
        if self.depth < 0 or self.motion_dim < 0 or self.aware_blocks < 1:
            raise InputError("config", "depth >= 0, motion_dim >= 0, aware_blocks >= 1", repr(asdict(self)))
        if self.size % (1 << self.depth):
            raise InputError("config.size", f"a multiple of 2**depth = {1 << self.depth}", repr(self.size))


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1),
        nn.LeakyReLU(0.2),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.LeakyReLU(0.2),
    )


class TriplaneGenerator(nn.Module):
    """Motion texture [B, 18, S, S] + motion code [B, 32] -> tri-planes [B, 3, 16, S, S] (TriHuman, Fig. 2).

    A U-Net: stride-2 conv blocks down to S / 2**depth, where the motion code (broadcast over the texels)
    is concatenated and mixed by a conv block; bilinear upsampling with skip connections back to S; a 3x3
    conv splits the top features into three planes, and `aware_blocks` 3D-aware convolutions at the top
    resolution let the planes exchange information (the last one outputs the plane features, no
    activation). Normalisation-free, LeakyReLU(0.2): our interpretation."""

    def __init__(self, config: TriplaneGeneratorConfig | Mapping | None = None):
        super().__init__()
        self.config = cfg = TriplaneGeneratorConfig.from_any(config)
        cfg.check()
        widths = [min(cfg.base_channels * 2**i, cfg.max_channels) for i in range(cfg.depth + 1)]
        self.stem = _block(cfg.in_channels, widths[0])
        self.down = nn.ModuleList(_block(widths[i], widths[i + 1], stride=2) for i in range(cfg.depth))
        self.bottleneck = _block(widths[-1] + cfg.motion_dim, widths[-1])
        self.up = nn.ModuleList(
            _block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(cfg.depth))
        )
        self.to_planes = nn.Conv2d(widths[0], 3 * cfg.aware_channels, 3, padding=1)
        aware = []
        for i in range(cfg.aware_blocks):
            last = i == cfg.aware_blocks - 1
            aware.append(AwareConv(cfg.aware_channels, cfg.plane_channels if last else cfg.aware_channels))
        self.aware = nn.ModuleList(aware)

    def forward(self, motion_texture: torch.Tensor, motion_code: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        s = cfg.size
        want = f"a floating-point motion texture [B, {cfg.in_channels}, {s}, {s}]"
        if not isinstance(motion_texture, torch.Tensor) or not motion_texture.is_floating_point():
            raise InputError("motion_texture", want, _shape(motion_texture))
        if motion_texture.ndim != 4 or tuple(motion_texture.shape[1:]) != (cfg.in_channels, s, s):
            raise InputError("motion_texture", want, _shape(motion_texture))
        b = motion_texture.shape[0]
        if cfg.motion_dim:
            if (
                not isinstance(motion_code, torch.Tensor)
                or motion_code.shape != (b, cfg.motion_dim)
                or not motion_code.is_floating_point()
            ):
                raise InputError(
                    "motion_code",
                    f"a floating-point motion code [{b}, {cfg.motion_dim}]",
                    _shape(motion_code),
                )
        x = self.stem(motion_texture)
        skips = [x]
        for down in self.down:
            x = down(x)
            skips.append(x)
        if cfg.motion_dim:
            code = motion_code.to(x.dtype)[:, :, None, None].expand(-1, -1, *x.shape[-2:])
            x = torch.cat([x, code], 1)
        x = self.bottleneck(x)
        for up, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = up(torch.cat([x, skip], 1))
        planes = self.to_planes(x).reshape(b, 3, cfg.aware_channels, s, s)
        for conv in self.aware:
            planes = conv(F.leaky_relu(planes, 0.2))
        return planes
