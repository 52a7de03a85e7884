"""DreaMoving's Content Guider (Sec. 3.3): face and clothes image prompts as extra cross-attention contexts.

    Z = Attn(Q, K_t, V_t) + α_f · Attn(Q, K_f, V_f) + α_c · Attn(Q, K_c, V_c)

Q comes from the U-Net's spatial features, K_t/V_t from the text, K_f/V_f and K_c/V_c from IP-Adapter-style
projections of the face and clothes image embeddings (each prompt has its own `IPAdapter`, so a plus-face
file can serve the face and a plus file the clothes). The guider is one `AttentionHook`: on spatial
cross-attention layers its `extra_contexts` returns the image K/V sets and the shared processor does a
single `multi_context_attention` call per layer. Self-attention and temporal (motion) layers are untouched.

Batch rows. The U-Net sees rows laid out as [branch][video][frame] (frames of one video contiguous, as
`fold_frames` expects). With `cfg=True` the first half of the rows is the unconditional branch and gets
the adapter's unconditional tokens (IP-Adapter's convention: projection of a zero image embedding for
plain, of the CLIP features of an all-zero pixel tensor for the hidden-state variants; see
`common.image_prompt.encode_images`). A prompt holds tokens for one video (shared by all rows) or for N videos;
with N videos each branch's rows split into N equal runs of frames, so no frame count is needed and
sliding context windows of any length work.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...kernels.processor import AttentionHook, AttnCall
from ...kernels.reference import Context
from ..common.image_prompt import IPAdapter, encode_images

# DreaMoving does not publish α_f / α_c; IP-Adapter's own default scale is 1.0 and its authors suggest ~0.5
# when text must keep control. We default to 1.0 (the adapter as trained); nodes expose both.
DEFAULT_SCALE = 1.0


@dataclass
class ImagePrompt:
    """One image prompt: its adapter, projected tokens [N, T, C] (cond and uncond) and its scale α."""

    adapter: IPAdapter
    tokens: torch.Tensor
    uncond_tokens: torch.Tensor
    scale: float = DEFAULT_SCALE

    @classmethod
    def from_embeds(
        cls,
        adapter: IPAdapter,
        embeds: torch.Tensor,
        uncond_embeds: torch.Tensor | None = None,
        scale: float = DEFAULT_SCALE,
    ) -> ImagePrompt:
        """CLIP features -> tokens. Without `uncond_embeds`, zeros of the same shape (IP-Adapter's choice
        for plain; for hidden-state variants prefer `from_images`, which encodes the zero pixel tensor)."""
        uncond = torch.zeros_like(embeds) if uncond_embeds is None else uncond_embeds
        return cls(adapter, adapter.project(embeds), adapter.project(uncond), float(scale))

    @classmethod
    def from_images(
        cls, adapter: IPAdapter, clip_vision, images: torch.Tensor, scale: float = DEFAULT_SCALE
    ) -> ImagePrompt:
        """IMAGE [N,H,W,3] (one reference per video, or one for all) -> tokens through the CLIP encoder."""
        e = encode_images(clip_vision, images, adapter)
        return cls.from_embeds(adapter, e.cond, e.uncond, scale)


class ContentGuider:
    """Holds the face and clothes prompts (either may be absent) and makes the attention hook for a U-Net."""

    def __init__(self, face: ImagePrompt | None = None, clothes: ImagePrompt | None = None):
        self.face, self.clothes = face, clothes

    @property
    def prompts(self) -> dict[str, ImagePrompt]:
        return {n: p for n, p in (("face", self.face), ("clothes", self.clothes)) if p is not None}

    def hook(self, unet: torch.nn.Module, cfg: bool = False) -> ContentGuiderHook:
        """A hook bound to `unet`'s cross-attention layers (checked against each adapter now, not mid-run).
        Install it with `kernels.processor.attention_hooks(unet, [hook, ...])` on the same module."""
        return ContentGuiderHook(self.prompts, unet, cfg)


class ContentGuiderHook(AttentionHook):
    """extra_contexts: α·Attn(Q, K_ip, V_ip) per active prompt on spatial cross-attention layers.
    Make one hook per run: which prompts are active (α != 0) and the K/V cache are fixed at creation."""

    def __init__(self, prompts: dict[str, ImagePrompt], unet: torch.nn.Module, cfg: bool = False):
        self.prompts, self.cfg = dict(prompts), cfg
        # α = 0 prompts contribute exactly nothing: they are dropped, not multiplied by zero.
        self.active = {n: p for n, p in self.prompts.items() if p.scale != 0.0}
        self.layer_index = {n: p.adapter.bind(unet) for n, p in self.active.items()}
        for n, p in self.active.items():
            if p.tokens.shape != p.uncond_tokens.shape or p.tokens.ndim != 3:
                raise ValueError(
                    f"{n} prompt: tokens {tuple(p.tokens.shape)} and uncond tokens "
                    f"{tuple(p.uncond_tokens.shape)} must both be [N, T, C]"
                )
        self._kv_cache: dict = {}

    def row_index(self, rows: int, videos: int) -> torch.Tensor:
        """For each U-Net batch row, its index into the stacked [uncond tokens; cond tokens] (cfg) or
        cond tokens: rows are [branch][video][frame]."""
        branches = 2 if self.cfg else 1
        if rows % branches:
            raise ValueError(f"Content Guider: {rows} batch rows cannot be split into uncond/cond halves")
        per_branch = rows // branches
        if per_branch % videos:
            raise ValueError(
                f"Content Guider: {per_branch} rows per branch do not split into {videos} videos' frames"
            )
        r = torch.arange(rows)
        branch, within = r // per_branch, r % per_branch
        video = within // (per_branch // videos)
        return branch * videos + video if self.cfg else video

    def _unique_kv(self, name: str, prompt: ImagePrompt, call: AttnCall) -> tuple[torch.Tensor, torch.Tensor]:
        """K/V of the distinct token sets [U, H, T, D]: constant over denoising steps, so computed once per
        layer, device and dtype."""
        key = (name, call.layer, call.q.device, call.q.dtype)
        if key not in self._kv_cache:
            j = self.layer_index[name][call.layer]
            tokens = torch.cat([prompt.uncond_tokens, prompt.tokens]) if self.cfg else prompt.tokens
            dev, dt = call.q.device, call.q.dtype
            tokens = tokens.to(dev, dt)
            heads = call.q.shape[1]
            k = torch.nn.functional.linear(tokens, prompt.adapter.to_k_ip[j].weight.to(dev, dt))
            v = torch.nn.functional.linear(tokens, prompt.adapter.to_v_ip[j].weight.to(dev, dt))
            u, t, _ = k.shape
            split = lambda x: x.view(u, t, heads, x.shape[-1] // heads).transpose(1, 2)  # noqa: E731
            self._kv_cache[key] = (split(k), split(v))
        return self._kv_cache[key]

    def extra_contexts(self, call: AttnCall) -> list[Context]:
        if not call.is_cross or call.is_temporal or not self.active:
            return []
        out = []
        rows = call.q.shape[0]
        for name, prompt in self.active.items():
            if call.layer not in self.layer_index[name]:
                raise ValueError(
                    f"Content Guider: layer {call.layer!r} is not one the hook was bound to; install the hook "
                    "on the same module passed to ContentGuider.hook()"
                )
            k, v = self._unique_kv(name, prompt, call)
            idx = self.row_index(rows, prompt.tokens.shape[0]).to(k.device)
            out.append(Context(k.index_select(0, idx), v.index_select(0, idx), weight=prompt.scale))
        return out
