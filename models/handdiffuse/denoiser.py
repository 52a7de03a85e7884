"""The two denoisers: a Single Hand Denoiser (a transformer over one hand's frames) followed by an
Interacting Hands Denoiser (per-hand self-attention, then cross-attention from each hand to the other).

Both work on the local representation (motion.HAND_FEATURES per hand and frame) and predict x0 (the clean
motion), which keyframe imputation and the interaction loss on FK joints need. Conditioning: an action
label (index into the world's labels) embedded with the diffusion timestep into a prefix token; label
`num_labels` is the "no label" token used for classifier-free guidance. The constructor arguments are
the config, so a tiny config is a faithful test double.

`x0_skip` (our interpretation; models trained since the first shipped one): the network's output F is
combined with its input as x̂0 = sqrt(ᾱ_t) x_t + sqrt(1 − ᾱ_t) F — the EDM preconditioning (Karras et al.
2022) for unit-variance data on this VP schedule, i.e. v-prediction read out as x0. Still an x0 model
for the sampler, the keyframes and the interaction loss, but at low noise it starts from its input
instead of having to learn to copy it: without it, 1 500 steps on the world gave a model whose x̂0 had
under 1 % of the true frame-to-frame variance (static hands); features are standardised (pipeline.py)
so the unit-variance assumption holds.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .motion import HAND_FEATURES


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of (float) timesteps [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], -1)


class InteractBlock(nn.Module):
    """Self-attention over a hand's frames, cross-attention to the other hand's frames, feed-forward."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, h: Tensor) -> Tensor:
        """h [B, 2, L, W] (hand 0 right, 1 left) -> same shape."""
        b, _, length, w = h.shape
        x = h.reshape(b * 2, length, w)
        y = self.norm1(x)
        x = x + self.self_attn(y, y, y, need_weights=False)[0]
        other = x.reshape(b, 2, length, w).flip(1).reshape(b * 2, length, w)
        x = x + self.cross_attn(self.norm2(x), self.norm2(other), self.norm2(other), need_weights=False)[0]
        x = x + self.ff(self.norm3(x))
        return x.reshape(b, 2, length, w)


class HandDenoiser(nn.Module):
    """x0-predicting denoiser for two hands: [B, T, 2, features] noisy motion -> clean motion."""

    def __init__(
        self,
        features: int = HAND_FEATURES,
        width: int = 256,
        heads: int = 4,
        single_layers: int = 4,
        interact_layers: int = 2,
        num_labels: int = 7,
        max_frames: int = 512,
        dropout: float = 0.0,
        x0_skip: bool = False,
    ):
        super().__init__()
        self.features, self.width, self.num_labels, self.max_frames = features, width, num_labels, max_frames
        self.x0_skip = x0_skip
        if x0_skip:  # the schedule the sampler and trainer use (sampler.cosine_alphas_cumprod), not saved
            from .sampler import cosine_alphas_cumprod

            self.register_buffer("alphas_cumprod", cosine_alphas_cumprod(), persistent=False)
        self.inp = nn.Linear(features, width)
        self.hand_emb = nn.Parameter(torch.zeros(2, width))
        # learned, initialised with unit-amplitude sinusoids: a randn * 0.02 start left the frames nearly
        # indistinguishable to attention (std 0.015 after 1 000 steps), so the model could not low-pass
        # the noise of neighbouring frames and generated motion jittered
        self.frame_emb = nn.Parameter(timestep_embedding(torch.arange(max_frames + 1), width))
        self.time_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.label_emb = nn.Embedding(num_labels + 1, width)  # last index = no label (CFG)
        layer = nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout, batch_first=True, norm_first=True
        )
        self.single = nn.TransformerEncoder(layer, single_layers, enable_nested_tensor=False)
        self.interact = nn.ModuleList([InteractBlock(width, heads, dropout) for _ in range(interact_layers)])
        self.out_norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, features)

    @property
    def null_label(self) -> int:
        return self.num_labels

    def forward(self, x: Tensor, t: Tensor, label: Tensor | None = None) -> Tensor:
        """x [B, T, 2, F], t [B] timesteps, label [B] long (None or `null_label` = unconditional)."""
        b, frames, hands, _ = x.shape
        if label is None:
            label = torch.full((b,), self.null_label, dtype=torch.long, device=x.device)
        cond = self.time_mlp(timestep_embedding(t, self.width).to(x.dtype)) + self.label_emb(label)
        h = self.inp(x).permute(0, 2, 1, 3) + self.hand_emb[None, :, None]  # [B, 2, T, W]
        h = torch.cat([cond[:, None, None].expand(b, hands, 1, self.width), h], 2)
        h = h + self.frame_emb[: frames + 1]
        h = self.single(h.reshape(b * hands, frames + 1, self.width)).reshape(
            b, hands, frames + 1, self.width
        )
        for block in self.interact:
            h = block(h)
        out = self.out(self.out_norm(h[:, :, 1:])).permute(0, 2, 1, 3)
        if not self.x0_skip:
            return out
        ab = self.alphas_cumprod[t.long()].to(x.dtype).reshape(-1, 1, 1, 1)
        return ab.sqrt() * x + (1 - ab).sqrt() * out


def guided_x0(model: HandDenoiser, x: Tensor, t: Tensor, label: Tensor | None, guidance: float) -> Tensor:
    """Classifier-free guidance on the x0 prediction: x0_u + g (x0_c - x0_u). g = 1 is the conditional
    prediction itself (one pass); no label means unconditional."""
    if label is None or guidance == 1.0:
        return model(x, t, label)
    null = torch.full_like(label, model.null_label)
    both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([label, null]))
    cond, uncond = both.chunk(2)
    return uncond + guidance * (cond - uncond)


def drop_labels(label: Tensor, p: float, null_label: int, generator: torch.Generator | None = None) -> Tensor:
    """Classifier-free dropout for training: each label becomes `null_label` with probability p."""
    drop = torch.rand(label.shape, generator=generator, device=label.device) < p
    return torch.where(drop, torch.full_like(label, null_label), label)
