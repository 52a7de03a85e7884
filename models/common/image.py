"""Image helpers shared by the methods: size fitting, grayscale, Lab luminance transfer.

Images are ComfyUI-style float tensors [B, H, W, 3] in 0..1 unless a docstring says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .errors import InputError

# ITU-R BT.601 luma weights (what PIL's "L" mode uses); the colorization data pipeline uses the same.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def check_image_batch(images: torch.Tensor, name: str = "image") -> torch.Tensor:
    """Validate an IMAGE batch and return it as float32; errors name the input."""
    if not isinstance(images, torch.Tensor):
        raise InputError(name, "an IMAGE tensor [batch, height, width, 3]", type(images).__name__)
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise InputError(name, "an IMAGE tensor [batch, height, width, 3]", f"shape {tuple(images.shape)}")
    if images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise InputError(name, "a non-empty image batch", f"shape {tuple(images.shape)}")
    if images.shape[-1] == 1:
        images = images.expand(-1, -1, -1, 3)
    if images.shape[-1] == 4:  # drop alpha
        images = images[..., :3]
    return images.float()


def to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """BT.601 luma replicated to 3 channels ([B,H,W,3] -> [B,H,W,3])."""
    w = torch.tensor(LUMA_WEIGHTS, dtype=images.dtype, device=images.device)
    y = (images * w).sum(-1, keepdim=True)
    return y.expand(*y.shape[:-1], 3).contiguous()


@dataclass
class FitInfo:
    """How an image batch was fitted to a model's size multiple, so it can be restored exactly."""

    height: int
    width: int
    mode: str
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)  # left, right, top, bottom


def fit_to_multiple(images: torch.Tensor, multiple: int, mode: str = "pad") -> tuple[torch.Tensor, FitInfo]:
    """[B,H,W,C] -> [B,C,H',W'] with H', W' multiples of `multiple`.

    "pad" reflect-pads (replicate where the image is too small to reflect) and is cropped back later,
    so every input pixel keeps its place; "resize" resamples to the nearest multiple.
    """
    b, h, w, c = images.shape
    x = images.permute(0, 3, 1, 2)
    if mode == "resize":
        nh = max(multiple, round(h / multiple) * multiple)
        nw = max(multiple, round(w / multiple) * multiple)
        if (nh, nw) != (h, w):
            x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False).clamp(0, 1)
        return x, FitInfo(h, w, mode)
    if mode != "pad":
        raise InputError("resize_mode", "'pad' or 'resize'", repr(mode))
    ph, pw = (-h) % multiple, (-w) % multiple
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if ph or pw:
        can_reflect = pad[0] < w and pad[1] < w and pad[2] < h and pad[3] < h
        x = F.pad(x, pad, mode="reflect" if can_reflect else "replicate")
    return x, FitInfo(h, w, mode, pad)


def restore_size(x: torch.Tensor, info: FitInfo) -> torch.Tensor:
    """Inverse of `fit_to_multiple`: [B,C,H',W'] -> [B,H,W,C]."""
    if info.mode == "resize":
        if x.shape[-2:] != (info.height, info.width):
            x = F.interpolate(x, size=(info.height, info.width), mode="bicubic", align_corners=False)
    else:
        left, _, top, _ = info.pad
        x = x[:, :, top : top + info.height, left : left + info.width]
    return x.permute(0, 2, 3, 1).clamp(0, 1)


def transfer_luminance(reference: torch.Tensor, colored: torch.Tensor, iterations: int = 12) -> torch.Tensor:
    """Keep `reference`'s CIE-Lab L channel and take only a/b (chroma) from `colored` ([B,H,W,3] each).

    Putting a new L under a model's chroma can leave the sRGB gamut. Clamping RGB would change L, so
    instead each out-of-gamut pixel's chroma is shrunk toward gray (bisection on a per-pixel scale):
    L is preserved exactly (up to float error) and hue is kept.
    """
    import kornia.color as kc

    ref = reference.permute(0, 3, 1, 2).float()
    col = colored.permute(0, 3, 1, 2).float()
    lum = kc.rgb_to_lab(ref.clamp(0, 1))[:, :1]
    ab = kc.rgb_to_lab(col.clamp(0, 1))[:, 1:]

    def rgb_at(scale: torch.Tensor) -> torch.Tensor:
        return kc.lab_to_rgb(torch.cat([lum, ab * scale], 1), clip=False)

    eps = 1e-5

    def in_gamut(rgb: torch.Tensor) -> torch.Tensor:
        return ((rgb >= -eps) & (rgb <= 1 + eps)).all(1, keepdim=True)

    lo = torch.zeros_like(lum)
    hi = torch.ones_like(lum)
    ok = in_gamut(rgb_at(hi))
    lo = torch.where(ok, hi, lo)
    for _ in range(iterations):
        mid = (lo + hi) / 2
        good = in_gamut(rgb_at(mid))
        lo = torch.where(good, mid, lo)
        hi = torch.where(good, hi, mid)
    out = rgb_at(lo).clamp(0, 1)
    return out.permute(0, 2, 3, 1)


def resize_center_crop(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """[N, C, H, W] float -> [N, C, h, w] for `size` = s (square) or (h, w): scaled (antialiased bilinear) so
    the image covers the target, then centre-cropped. Exact (no resampling) when the size already fits."""
    th, tw = (size, size) if isinstance(size, int) else size
    h, w = x.shape[-2:]
    scale = max(th / h, tw / w)
    nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
    if (nh, nw) != (h, w):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - th) // 2, (nw - tw) // 2
    return x[..., top : top + th, left : left + tw]
