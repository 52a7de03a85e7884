"""Local blend (InfEdit Sec. 4.3): keep latents outside the edited words' regions.

Masks come from cross-attention maps at the blend resolution (SD's 16x16 layers, i.e. latent / 4),
summed over layers and steps: take the maximum over a word's token columns, upsample (nearest) to the
latent size, normalise by the spatial maximum, threshold. The blend order is
    x_t <- where(mask_target_words, x_t, x_layout)
    x_t <- where(mask_source_words, x_source, x_t)
The target-word threshold follows the noise level: max(0.15 / sqrt(alpha_t), thresh_e).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TEMPERATURE = 0.15


def word_mask(
    maps: torch.Tensor,
    positions: list[int],
    map_hw: tuple[int, int],
    latent_hw: tuple[int, int],
    threshold: float,
) -> torch.Tensor:
    """maps [h*w, 77] -> bool mask [H, W] of where the words at `positions` attend."""
    word = maps[:, positions].max(dim=-1).values.view(1, 1, *map_hw)
    word = F.interpolate(word, size=latent_hw, mode="nearest")[0, 0]
    peak = word.max()
    if peak <= 0:
        return torch.zeros(latent_hw, dtype=torch.bool, device=maps.device)
    return (word / peak) > threshold


def target_threshold(alpha_t: float, thresh_e: float) -> float:
    return max(TEMPERATURE / float(alpha_t) ** 0.5, thresh_e)


def local_blend(
    x_t: torch.Tensor,
    x_layout: torch.Tensor,
    x_source: torch.Tensor,
    mask_target: torch.Tensor | None,
    mask_source: torch.Tensor | None,
) -> torch.Tensor:
    """Apply the blend order above; a None mask skips its step."""
    out = x_t
    if mask_target is not None:
        out = torch.where(mask_target, out, x_layout)
    if mask_source is not None:
        out = torch.where(mask_source, x_source, out)
    return out
