"""BiDiff's 2D branch: a multi-view image diffusion model with cross-view attention, view embeddings and a
ControlNet that takes the 3D branch's renders (the 3D -> 2D guidance).

The paper's 2D branch is DeepFloyd IF stage I (pixel space, 64², 8 views) with cross-view attention in its
deeper down blocks and view embeddings; the renders of the 3D branch enter it through a ControlNet (a
trainable copy of the encoder whose outputs join the U-Net's skips through zero-initialised 1x1
convolutions, Zhang et al. 2023). The world's model has the same parts at world size: pixel space,
V views of 32², a 2D U-Net (channels per level from the config) applied to every view with FiLM of time +
text + view embedding, joint attention over all views' tokens at the lowest resolution, and the ControlNet.

Input x [B, V, 3, H, W] in [-1, 1]; output the v-prediction of the same shape (grid_prior's schedule).
`control=None` (or `control_scale` 0 for a sample) is the "no 3D consistency" branch of decoupled guidance.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .grid_prior import ResBlock, TextEncoder, _norm, timestep_embedding
from .world import world_vocabulary


@dataclass
class MultiViewConfig:
    views: int = 4
    size: int = 32
    channels: tuple[int, ...] = (32, 64, 64)
    emb: int = 128
    heads: int = 4
    text_layers: int = 1
    max_tokens: int = 16
    vocabulary: list[str] = field(default_factory=world_vocabulary)


class CrossViewAttention(nn.Module):
    """Self-attention over the tokens of all views of a sample (so views see each other), pre-norm, with a
    zero-initialised output so an added block starts as the identity."""

    def __init__(self, ch: int, heads: int):
        super().__init__()
        self.norm = _norm(ch)
        self.attn = nn.MultiheadAttention(ch, heads, batch_first=True)
        nn.init.zeros_(self.attn.out_proj.weight)
        nn.init.zeros_(self.attn.out_proj.bias)

    def forward(self, h: torch.Tensor, views: int) -> torch.Tensor:
        bv, c, hh, ww = h.shape
        x = (
            self.norm(h)
            .reshape(bv // views, views, c, hh * ww)
            .permute(0, 1, 3, 2)
            .reshape(bv // views, -1, c)
        )
        out, _ = self.attn(x, x, x, need_weights=False)
        out = out.reshape(bv // views, views, hh * ww, c).permute(0, 1, 3, 2).reshape(bv, c, hh, ww)
        return h + out


class Encoder(nn.Module):
    """The down path: conv_in, a ResBlock per level (cross-view attention at the last), downsampling."""

    def __init__(self, cfg: MultiViewConfig, in_channels: int = 3):
        super().__init__()
        c, e = list(cfg.channels), cfg.emb
        self.conv_in = nn.Conv2d(in_channels, c[0], 3, padding=1)
        self.blocks = nn.ModuleList(ResBlock(c[max(i - 1, 0)], ch, e, dims=2) for i, ch in enumerate(c))
        self.downs = nn.ModuleList(
            nn.Conv2d(ch, ch, 3, stride=2, padding=1) if i < len(c) - 1 else nn.Identity()
            for i, ch in enumerate(c)
        )
        self.attn = CrossViewAttention(c[-1], cfg.heads)
        self.mid = ResBlock(c[-1], c[-1], e, dims=2)
        self.mid_attn = CrossViewAttention(c[-1], cfg.heads)

    def forward(self, h, emb, views, hint=None):
        h = self.conv_in(h) if hint is None else self.conv_in(h) + hint
        skips = []
        for i, (block, down) in enumerate(zip(self.blocks, self.downs, strict=True)):
            h = block(h, emb)
            if i == len(self.blocks) - 1:
                h = self.attn(h, views)
            skips.append(h)
            h = down(h)
        h = self.mid_attn(self.mid(h, emb), views)
        return h, skips


def _zero_conv(ch: int) -> nn.Conv2d:
    conv = nn.Conv2d(ch, ch, 1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class ControlNet(nn.Module):
    """A copy of the encoder fed x plus an embedding of the condition (the 3D renders); its skip and middle
    features reach the U-Net through zero convolutions, so a fresh ControlNet changes nothing."""

    def __init__(self, cfg: MultiViewConfig, encoder: Encoder):
        super().__init__()
        c = list(cfg.channels)
        self.encoder = copy.deepcopy(encoder)
        self.hint = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.SiLU(), nn.Conv2d(16, c[0], 3, padding=1)
        )  # fmt: skip
        nn.init.zeros_(self.hint[-1].weight)
        nn.init.zeros_(self.hint[-1].bias)
        self.zero_skips = nn.ModuleList(_zero_conv(ch) for ch in c)
        self.zero_mid = _zero_conv(c[-1])

    def forward(self, x, emb, views, control):
        h, skips = self.encoder(x, emb, views, hint=self.hint(control))
        return self.zero_mid(h), [z(s) for z, s in zip(self.zero_skips, skips, strict=True)]


class MultiViewUNet(nn.Module):
    def __init__(self, cfg: MultiViewConfig):
        super().__init__()
        c, e = list(cfg.channels), cfg.emb
        self.config = cfg
        self.text = TextEncoder(len(cfg.vocabulary), e, cfg.text_layers, cfg.max_tokens)
        self.time = nn.Sequential(nn.Linear(e, e), nn.SiLU(), nn.Linear(e, e))
        self.view = nn.Parameter(torch.zeros(cfg.views, e))
        nn.init.normal_(self.view, std=0.02)
        self.cond = nn.Sequential(nn.SiLU(), nn.Linear(e, e))
        self.encoder = Encoder(cfg)
        self.ups = nn.ModuleList(ResBlock(c[min(i + 1, len(c) - 1)] + c[i], c[i], e, dims=2)
                                 for i in reversed(range(len(c))))  # fmt: skip
        self.out_norm, self.out = _norm(c[0]), nn.Conv2d(c[0], 3, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.controlnet = ControlNet(cfg, self.encoder)

    def embedding(self, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """[B * V, emb]: time + text per sample, plus each view's embedding."""
        base = self.time(timestep_embedding(t, self.config.emb)) + self.text(tokens)  # [B, e]
        return self.cond((base[:, None] + self.view[None]).reshape(-1, base.shape[-1]))

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        tokens: torch.Tensor,
        control: torch.Tensor | None = None,
        control_scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        b, v = x.shape[:2]
        emb = self.embedding(t, tokens)
        flat = x.reshape(b * v, *x.shape[2:])
        h, skips = self.encoder(flat, emb, v)
        if control is not None:
            ch, cskips = self.controlnet(flat, emb, v, control.reshape(b * v, *control.shape[2:]))
            scale = torch.ones(b, device=x.device) if control_scale is None else control_scale.to(x.device)
            s = scale.repeat_interleave(v).reshape(-1, 1, 1, 1).to(h.dtype)
            h = h + s * ch
            skips = [a + s * c for a, c in zip(skips, cskips, strict=True)]
        for block in self.ups:
            skip = skips.pop()
            if h.shape[-1] != skip.shape[-1]:
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = block(torch.cat([h, skip], 1), emb)
        return self.out(F.silu(self.out_norm(h))).reshape(b, v, 3, *x.shape[3:])
