"""Local blend (InfEdit Sec. 4.3): keep latents outside the edited words' regions.

Masks come from cross-attention maps at the blend resolution (`blend_factor`: SD's 16x16 layers, i.e.
latent / 4), summed over layers and steps: take the maximum over a word's token columns, upsample
(nearest) to the latent size, normalise by the spatial maximum, threshold. The blend order is
    x_t <- where(mask_target_words, x_t, x_layout)
    x_t <- where(mask_source_words, x_source, x_t)
    x_t <- where(mask_shared_words, x_layout, x_t)   (last blend only, shared_blend_words="edit_then_layout")
The target-word threshold follows the noise level: max(0.15 / sqrt(alpha_t), thresh_e).

Words in both blend lists (`SHARED_BLEND_WORDS`): "keep_source" lets the source mask win (the region
keeps the source, the edit there is undone); "edit_then_layout" (official InfEdit) leaves them out of
the source mask, so the region is edited, and on the last blend takes the layout branch there (with
thresh_e): the edit keeps the source's layout, e.g. a changed pose of the same dog.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TEMPERATURE = 0.15
SHARED_BLEND_WORDS = ("keep_source", "edit_then_layout")


def blend_factor(unet_config) -> int:
    """Down-sampling factor (latent / map side) of the layers whose maps drive local blend.

    The coarsest cross-attention level of the down/up blocks, the bottleneck (mid block) left out: on
    SD1.5 that is P2P's and InfEdit's 16x16 layers at 64x64 latents (factor 4). A fixed "latent / 4"
    picks the 4x4 mid block on the proving-ground U-Net (16x16 latents, cross-attention at factors
    1, 2 and the mid block 4), whose maps are flat; the finest level's maps are flat too there (a word's
    map correlates -0.02 with its object at 16x16, 0.57 at 8x8, 0.12 at 4x4; docs/infedit.md). Only a
    U-Net whose sole cross-attention is the mid block uses the mid block.
    """
    blocks, up = list(unet_config.down_block_types), list(unet_config.up_block_types)
    levels = [2**i for i, t in enumerate(blocks) if "CrossAttn" in t]
    levels += [2 ** (len(up) - 1 - i) for i, t in enumerate(up) if "CrossAttn" in t]
    if levels:
        return max(levels)
    if unet_config.mid_block_type and "CrossAttn" in unet_config.mid_block_type:
        return 2 ** (len(blocks) - 1)
    raise ValueError("the U-Net has no cross-attention layers: local blend needs them")


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
    mask_shared: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply the blend order above; a None mask skips its step."""
    out = x_t
    if mask_target is not None:
        out = torch.where(mask_target, out, x_layout)
    if mask_source is not None:
        out = torch.where(mask_source, x_source, out)
    if mask_shared is not None:
        out = torch.where(mask_shared, x_layout, out)
    return out
