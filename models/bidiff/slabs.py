"""The 3D U-Net's residual blocks evaluated in slabs along the grid's first axis, for memory.

Why: at the paper's volume size (96³) a dense block holds its input, the normalised and activated copies
and the convolution outputs at full resolution at once; on the up path the input is the concatenation of
the upsampled features and the skip (96 channels at 96³: 340 MB), and a whole 3D step peaked at 1.5 GB of
work (benchmarks/bidiff_volume.py; 0.8 GB with slabs). Here a block keeps only its inputs, one
intermediate and its output at full size; everything else exists for one slab of `depth` planes at a time
(the input convolution, the output head and the up path's 2× nearest upsampling too). Exact, not tiled
approximately: GroupNorm's statistics are taken over the whole grid first (per-channel sums, grouped), and
each 3×3×3 convolution reads a one-plane halo on each side of its slab (zero padding only at the grid's
own faces, as the dense convolution pads). For inference: slabs written into preallocated outputs keep
no useful autograd graph, so training stays dense.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .grid_prior import ResBlock


class Upsampled:
    """A grid upsampled 2× (nearest) per axis, materialised one slab at a time: F.interpolate's nearest
    mode maps output index i to source index floor(i / 2) when the size exactly doubles."""

    def __init__(self, source: torch.Tensor):
        self.source = source
        self.shape = (*source.shape[:2], *(2 * s for s in source.shape[2:]))

    def __getitem__(self, index) -> torch.Tensor:
        _, _, planes = index
        lo, hi = planes.start, planes.stop
        src = self.source[:, :, lo // 2 : (hi + 1) // 2]
        src = src.repeat_interleave(2, 2)[:, :, lo % 2 : lo % 2 + (hi - lo)]
        return src.repeat_interleave(2, 3).repeat_interleave(2, 4)


def group_statistics(parts: list, norm: nn.GroupNorm, depth: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and 1/std [B, G] of GroupNorm over the channel concatenation of `parts`, without building it
    (a group may straddle two parts); per-channel sums accumulated in float64, `depth` planes at a time
    (a float64 copy of a whole part would be the largest tensor of the block)."""
    sums = squares = 0.0
    for lo in range(0, parts[0].shape[2], depth):
        slab = _cat(parts, lo, lo + depth).double().flatten(2)
        sums, squares = sums + slab.sum(-1), squares + slab.square().sum(-1)
    b, c = sums.shape
    count = math.prod(parts[0].shape[2:]) * (c // norm.num_groups)
    mean = sums.reshape(b, norm.num_groups, -1).sum(-1) / count
    var = (squares.reshape(b, norm.num_groups, -1).sum(-1) / count - mean.square()).clamp_min(0)
    return mean, (var + norm.eps).rsqrt()


def _normalise(x: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """GroupNorm of a slab with the whole grid's statistics (mean, rstd [B, G]), then its affine."""
    b, c = x.shape[:2]
    groups = x.reshape(b, norm.num_groups, -1)
    y = (groups - mean.to(x.dtype)[..., None]) * rstd.to(x.dtype)[..., None]
    affine = (1, c) + (1,) * (x.dim() - 2)
    return y.reshape(x.shape) * norm.weight.reshape(affine) + norm.bias.reshape(affine)


def _cat(parts: list, lo: int, hi: int) -> torch.Tensor:
    hi = min(hi, parts[0].shape[2])
    return torch.cat([p[:, :, lo:hi] for p in parts], 1)


def slab_conv(
    parts: list,
    conv: nn.Conv3d,
    depth: int,
    norm: nn.GroupNorm | None = None,
    film: tuple[torch.Tensor, torch.Tensor] | None = None,
    residual: Callable[[int, int], torch.Tensor] | None = None,
) -> torch.Tensor:
    """conv(silu(norm(x) * (1 + scale) + shift)) + residual(lo, hi), with x = the channel concatenation
    of `parts`, `depth` planes at a time. Without `norm`: conv(x). `conv` is 3×3×3 with padding 1; each
    slab reads one plane more on each side and is zero-padded only at the grid's own faces."""
    size = parts[0].shape[2]
    stats = group_statistics(parts, norm, depth) if norm is not None else None
    out = None
    for lo in range(0, size, depth):
        hi = min(lo + depth, size)
        a, b = max(lo - 1, 0), min(hi + 1, size)
        x = _cat(parts, a, b)
        if norm is not None:
            x = _normalise(x, *stats, norm)
            if film is not None:
                x = x * (1 + film[0]) + film[1]
            x = F.silu(x)
        x = F.pad(x, (0, 0, 0, 0, a - (lo - 1), (hi + 1) - b))
        y = F.conv3d(x, conv.weight, conv.bias, padding=(0, 1, 1))
        if residual is not None:
            y = y + residual(lo, hi)
        if out is None:
            out = y.new_empty(y.shape[0], y.shape[1], size, *y.shape[3:])
        out[:, :, lo:hi] = y
    return out


def resblock_in_slabs(block: ResBlock, parts: list, emb: torch.Tensor, depth: int) -> torch.Tensor:
    """`block(torch.cat(parts, 1), emb)` computed `depth` planes at a time (3D blocks only)."""
    if block.dims != 3:
        raise ValueError("slabs are for 3D blocks")
    first = slab_conv(parts, block.conv1, depth, block.norm1)
    film = block.film(emb).reshape(*emb.shape[:1], -1, 1, 1, 1).chunk(2, 1)
    return slab_conv([first], block.conv2, depth, block.norm2, film,
                     residual=lambda lo, hi: block.skip(_cat(parts, lo, hi)))  # fmt: skip
