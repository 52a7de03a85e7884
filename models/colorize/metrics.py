"""Full-reference image metrics for judging a colorization against the true colors.

PSNR and SSIM come from kornia (SSIM: 11x11 Gaussian window, sigma 1.5, as in Wang et al. 2004);
MSE and MAE are plain means. All on [B,H,W,3] images in 0..1, per image and averaged.
"""

from __future__ import annotations

import torch

from ..common.errors import InputError
from ..common.image import check_image_batch


def image_metrics(images: torch.Tensor, reference: torch.Tensor) -> dict[str, list[float] | float]:
    """Per-image and mean PSNR (dB), SSIM, MSE, MAE of `images` against `reference`."""
    import kornia.metrics as km

    images = check_image_batch(images, "image")
    reference = check_image_batch(reference, "reference")
    if images.shape[0] != reference.shape[0] and reference.shape[0] != 1:
        raise InputError(
            "reference",
            f"a batch of 1 or {images.shape[0]} images (same as 'image')",
            f"a batch of {reference.shape[0]}",
        )
    if images.shape[1:3] != reference.shape[1:3]:
        raise InputError(
            "reference",
            f"images of size {images.shape[2]}x{images.shape[1]} (same as 'image')",
            f"{reference.shape[2]}x{reference.shape[1]}",
        )
    reference = reference.expand_as(images)
    a = images.permute(0, 3, 1, 2).double().clamp(0, 1)
    b = reference.permute(0, 3, 1, 2).double().clamp(0, 1)
    diff = a - b
    mse = diff.pow(2).flatten(1).mean(1)
    mae = diff.abs().flatten(1).mean(1)
    psnr = torch.stack(
        [
            km.psnr(a[i], b[i], 1.0) if mse[i] > 0 else torch.tensor(float("inf"), dtype=a.dtype)
            for i in range(a.shape[0])
        ]
    )
    ssim = km.ssim(a, b, window_size=11).flatten(1).mean(1)
    per = {"psnr": psnr, "ssim": ssim, "mse": mse, "mae": mae}
    out: dict[str, list[float] | float] = {k: [float(x) for x in v] for k, v in per.items()}
    out.update({f"mean_{k}": float(v.mean()) for k, v in per.items()})
    return out


def format_report(m: dict) -> str:
    """One line per image plus the mean, for a text output in the graph."""
    lines = [
        f"image {i}: PSNR {p:.2f} dB  SSIM {s:.4f}  MSE {e:.6f}  MAE {a:.6f}"
        for i, (p, s, e, a) in enumerate(zip(m["psnr"], m["ssim"], m["mse"], m["mae"]))
    ]
    lines.append(
        f"mean: PSNR {m['mean_psnr']:.2f} dB  SSIM {m['mean_ssim']:.4f}  "
        f"MSE {m['mean_mse']:.6f}  MAE {m['mean_mae']:.6f}"
    )
    return "\n".join(lines)
