"""The bidirectional sampler with a 2D branch on the user's model (multiview_sd.py): SD1.5-architecture
(latent space) or DeepFloyd IF stage I (pixel space: `components.vae` is None, views are their own latents;
if_base.py).

The steps of pipeline.py, in the SD model's latent space and on its own schedule (ε- or v-prediction, as
its scheduler config says). Each DDIM step at time t, with the noisy view latents z_t [V, 4, s, s]:
1. 2D -> 3D: the volume denoiser reads z_t (back-projected in normalised image coordinates, so latents
   work as pixels do) and gives a grid, rendered into the V views at pixel size: the 3D x̂0.
2. 3D -> 2D: the SD U-Net with the adapter predicts with those renders through the ControlNet; decoupled
   guidance (paper Eq. 9) over the full, no-text and no-3D branches.
3. z_{t-1} = DDIM(z_t, prediction).
Lazy start: the 3D prior's renders, VAE-encoded, noised to the step nearest `lazy_t`. The final latents
are decoded to the views; the grid of the final latents (t = 0) gives the shape.

Text: the SD branch reads the prompt with the model's own CLIP; the 3D branch reads its words from the
vocabulary it was trained on (grid_prior.tokenize; words outside it are unknown to the 3D branch).

File: one `.safetensors` with "adapter." (cross-view attention, view embeddings, ControlNet) and "volume."
(the 3D denoiser on latents), configs in the metadata (key "bidiff_sd"). The SD model is the user's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from ..common.config_file import load_with_config, save_with_config
from ..common.errors import InputError
from ..common.text import encode_prompts
from .grid_prior import TRUNC, grid_to_shape, tokenize
from .multiview_sd import SDBranchConfig, SDMultiViewAdapter
from .pipeline import checked_prompts, decoupled_guidance, lazy_timesteps, shape_views
from .prior3d import Prior3D
from .volume import VolumeConfig, VolumeDenoiser

META_KEY = "bidiff_sd"


class SDBiDiff(nn.Module):
    """The trained parts of BiDiff on an SD base: the 2D adapter and the 3D denoiser on its latents."""

    def __init__(self, branch: SDBranchConfig, volume: VolumeConfig):
        super().__init__()
        if volume.views != branch.views or volume.size != branch.size:
            raise InputError("volume", f"{branch.views} views of {branch.size} px (the adapter's)",
                             f"{volume.views} views of {volume.size} px")  # fmt: skip
        self.adapter, self.volume = SDMultiViewAdapter(branch), VolumeDenoiser(volume)

    @classmethod
    def fresh(cls, unet: nn.Module, views: int = 4, size: int = 256, **volume) -> SDBiDiff:
        """Untrained parts for `unet` (see SDMultiViewAdapter.from_unet); `volume`: VolumeConfig fields."""
        adapter = SDMultiViewAdapter.from_unet(unet, views, size)
        model = cls(
            adapter.config,
            VolumeConfig(views=views, size=size, in_channels=unet.config.in_channels, **volume),
        )
        model.adapter.load_state_dict(adapter.state_dict())
        return model.to(next(unet.parameters()).device)

    def to_base(self, unet: nn.Module) -> SDBiDiff:
        """The adapter on the U-Net's device and dtype; the small 3D denoiser stays float32."""
        param = next(unet.parameters())
        self.adapter.to(device=param.device, dtype=param.dtype)
        self.volume.to(device=param.device, dtype=torch.float32)
        return self

    def latent_size(self, components) -> int:
        vae = components.vae
        vae_factor = 1 if vae is None else 2 ** (len(vae.config.block_out_channels) - 1)
        size = self.adapter.config.size
        if size % components.pixel_multiple:
            raise InputError("size", f"a multiple of {components.pixel_multiple} for this model", str(size))
        return size // vae_factor

    def words(self, prompt: str) -> torch.Tensor:
        c = self.volume.config
        return tokenize([prompt], c.vocabulary, self.volume.net.config.max_tokens).to(self.volume.uv.device)

    @torch.no_grad()
    def generate(
        self,
        components,
        prompt: str,
        *,
        shape_prompt: str | None = None,
        texture_prompt: str | None = None,
        negative_prompt: str = "",
        seed: int = 0,
        steps: int = 25,
        text_scale: float = 7.0,
        consistency_scale: float = 7.0,
        prior: Prior3D | None = None,
        lazy_t: float = 0.6,
        use_3d: bool = True,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> dict:
        """views [V, 3, S, S] in [-1, 1], grid (model space), shape (Shape3D), renders of the grid, prior
        views (lazy start, or None). `components`: the SD model (SDComponents) the adapter was trained on.
        `use_3d=False` is the 2D-only ablation (no ControlNet; the grid is read back from the final views)."""
        from diffusers import DDIMScheduler

        prompt, shape_prompt, texture_prompt = checked_prompts(
            prompt, shape_prompt, texture_prompt, steps, lazy_t
        )
        unet, vae, vol = components.unet, components.vae, self.volume
        self.adapter.check_base(unet)
        self.to_base(unet)
        dev, dtype = next(unet.parameters()).device, next(unet.parameters()).dtype
        sched = DDIMScheduler.from_config(components.scheduler_config)
        sched.set_timesteps(steps)
        c, s = vol.config, self.latent_size(components)
        g = torch.Generator().manual_seed(int(seed))
        x = torch.randn(1, c.views, unet.config.in_channels, s, s, generator=g).to(dev, dtype)
        timesteps, prior_views = sched.timesteps, None
        if (
            prior is not None
        ):  # lazy start: the prior's renders encoded, noised to the step nearest lazy_t * T
            prior_views = shape_views(prior.sample(shape_prompt, seed=seed)[0], vol).to(dev)
            timesteps = lazy_timesteps(timesteps, lazy_t, sched.config.num_train_timesteps)
            x = sched.add_noise(encode_views(vae, prior_views)[None].to(dtype), x, timesteps[:1])
        text = encode_prompts(components, [texture_prompt, negative_prompt], dev).to(dtype)
        cond = torch.cat([text[:1], text[1:], text[:1]])  # full, no text, no 3D
        words = self.words(shape_prompt)
        for i, t in enumerate(timesteps):
            if should_stop is not None and should_stop():
                raise InterruptedError("BiDiff sampling was cancelled")
            tt = t.reshape(1).to(dev)
            if use_3d:
                renders = vol.render(vol(x.float(), tt, words)).clamp(-1, 1)
                hint = ((renders + 1) / 2).expand(3, -1, -1, -1, -1)
                out = self.adapter.predict(unet, x.expand(3, -1, -1, -1, -1), tt.expand(3), cond, hint,
                                           torch.tensor([1.0, 1.0, 0.0]))  # fmt: skip
                out = decoupled_guidance(*out.chunk(3), text_scale, consistency_scale)
            else:
                full, no_text = self.adapter.predict(
                    unet, x.expand(2, -1, -1, -1, -1), tt.expand(2), cond[:2]
                ).chunk(2)
                out = full + (text_scale - 1) * (full - no_text)
            x = sched.step(out, t, x).prev_sample
            if progress is not None:
                progress(i + 1, len(timesteps))
        grid = vol(x.float(), torch.zeros(1, dtype=torch.long, device=dev), words)[0]
        return {
            "views": decode_views(vae, x[0]),
            "grid": grid,
            "shape": grid_to_shape(grid, TRUNC, prompt, "bidiff-sd"),
            "renders": vol.render(grid[None], samples=64)[0].clamp(-1, 1),
            "prior_views": prior_views,
        }


def encode_views(vae: nn.Module | None, views: torch.Tensor) -> torch.Tensor:
    """Pixel views [V, 3, S, S] in [-1, 1] -> scaled latents (the distribution's mean); no VAE: the views."""
    if vae is None:
        return views
    p = next(vae.parameters())
    return vae.encode(views.to(p.device, p.dtype)).latent_dist.mean * vae.config.scaling_factor


def decode_views(vae: nn.Module | None, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents [V, 4, s, s] -> pixel views [V, 3, S, S] in [-1, 1] (float32); no VAE: the latents."""
    if vae is None:
        return latents.float().clamp(-1, 1)
    p = next(vae.parameters())
    return vae.decode(latents.to(p.device, p.dtype) / vae.config.scaling_factor).sample.float().clamp(-1, 1)


def save_sd_bidiff(model: SDBiDiff, path: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    meta = {"branch": asdict(model.adapter.config), "volume": asdict(model.volume.config)}
    return save_with_config(model, path, META_KEY, meta, dtype)


def load_sd_bidiff(path: str | Path) -> SDBiDiff:
    """The file's model in float32 on the CPU; `generate` moves it to the base's device and dtype."""
    state, raw = load_with_config(
        path, META_KEY, "BiDiff SD adapter", "train one with `python -m models.bidiff.train_bidiff_sd`"
    )
    vol = raw["volume"]
    vol["channels"] = tuple(vol["channels"])
    model = SDBiDiff(SDBranchConfig(**raw["branch"]), VolumeConfig(**vol))
    model.load_state_dict(state)
    return model.eval()


class BoundSDBiDiff:
    """An SD BiDiff adapter bound to the base model it runs on: `generate(prompt, ...)` as BiDiffModel's."""

    def __init__(self, model: SDBiDiff, components):
        model.adapter.check_base(components.unet)
        self.model, self.components = model, components

    def generate(self, prompt: str, **kwargs) -> dict:
        return self.model.generate(self.components, prompt, **kwargs)
