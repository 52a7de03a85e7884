"""The bidirectional sampler (BiDiff Sec. 3): a multi-view 2D diffusion and a 3D denoiser that guide each
other at every step, with the lazy start from a 3D prior and decoupled classifier-free guidance.

Each DDIM step at time t, with the noisy views x_t [V, 3, S, S]:
1. 2D -> 3D: the volume denoiser reconstructs a grid from x_t (shape prompt), rendered into the V views:
   the 3D x̂0 (renders R_t).
2. 3D -> 2D: the multi-view model predicts v with R_t through its ControlNet (texture prompt). Decoupled
   guidance (paper Eq. 9):  out = o_full + (s_text - 1)(o_full - o_no_text) + (s_cond - 1)(o_full - o_no_3d),
   o_no_text = the empty prompt with R_t, o_no_3d = the prompt without the ControlNet.
3. x_{t-1} = DDIM(x_t, out).
The result: the final views, the volume denoiser's grid of the final views (t = 0), its mesh and renders.
Lazy start (Sec. 3.3): a 3D prior's sample (Shap-E, or the world's grid prior) rendered into the views,
noised to the step nearest `lazy_t` (a fraction of T), and the sampling starts there; without a prior it
starts from pure noise at T. The paper samples 25 steps with both scales 7.

File: one `.safetensors` holding both modules ("multiview." and "volume." prefixes), configs in the
metadata (key "bidiff_model").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from ..common.config_file import load_with_config, save_with_config
from ..common.errors import InputError
from .grid_prior import TRUNC, grid_to_shape, noise_scheduler, tokenize
from .multiview import MultiViewConfig, MultiViewUNet
from .prior3d import Prior3D, Shape3D, check_prompt
from .volume import VolumeConfig, VolumeDenoiser

META_KEY = "bidiff_model"


class BiDiffModel(torch.nn.Module):
    def __init__(self, mv: MultiViewConfig, vol: VolumeConfig):
        super().__init__()
        self.multiview, self.volume = MultiViewUNet(mv), VolumeDenoiser(vol)
        self.scheduler = noise_scheduler_for_views()

    def tokens(self, prompts: list[str]) -> torch.Tensor:
        c = self.multiview.config
        return tokenize(prompts, c.vocabulary, c.max_tokens).to(self.multiview.view.device)

    def shape_views(self, shape: Shape3D) -> torch.Tensor:
        """A shape rendered into the model's views [V, 3, S, S] in [-1, 1] (lazy start, training data)."""
        return shape_views(shape, self.volume)

    @torch.no_grad()
    def generate(
        self,
        prompt: str,
        *,
        shape_prompt: str | None = None,
        texture_prompt: str | None = None,
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
        views (lazy start, or None). `use_3d=False` is the 2D-only ablation (no ControlNet: the views are
        sampled alone; the grid is reconstructed from the final views)."""
        from diffusers import DDIMScheduler

        prompt, shape_prompt, texture_prompt = checked_prompts(
            prompt, shape_prompt, texture_prompt, steps, lazy_t
        )
        mv, vol = self.multiview, self.volume
        dev = mv.view.device
        sched = DDIMScheduler.from_config(self.scheduler.config, set_alpha_to_one=False)
        sched.set_timesteps(steps)
        c = vol.config
        g = torch.Generator().manual_seed(int(seed))
        x = torch.randn(1, c.views, 3, c.size, c.size, generator=g).to(dev)
        timesteps = sched.timesteps
        prior_views = None
        if prior is not None:  # lazy start: the prior's shape, noised to the step nearest lazy_t * T
            shape = prior.sample(shape_prompt, seed=seed)[0]
            prior_views = self.shape_views(shape).to(dev)
            timesteps = lazy_timesteps(timesteps, lazy_t, self.scheduler.config.num_train_timesteps)
            x = self.scheduler.add_noise(prior_views[None], x, timesteps[:1])
        tok_tex, tok_shape = self.tokens([texture_prompt]), self.tokens([shape_prompt])
        null = torch.zeros_like(tok_tex)
        total = len(timesteps)
        for i, t in enumerate(timesteps):
            if should_stop is not None and should_stop():
                raise InterruptedError("BiDiff sampling was cancelled")
            tt = t.reshape(1).to(dev)
            if use_3d:
                renders = vol.render(vol(x, tt, tok_shape))
                both = mv(torch.cat([x, x, x]), tt.expand(3), torch.cat([tok_tex, null, tok_tex]),
                          torch.cat([renders, renders, renders]), torch.tensor([1.0, 1.0, 0.0]))  # fmt: skip
                out = decoupled_guidance(*both.chunk(3), text_scale, consistency_scale)
            else:
                both = mv(torch.cat([x, x]), tt.expand(2), torch.cat([tok_tex, null]))
                full, no_text = both.chunk(2)
                out = full + (text_scale - 1) * (full - no_text)
            x = sched.step(out, t, x).prev_sample
            if progress is not None:
                progress(i + 1, total)
        views = x.clamp(-1, 1)
        grid = vol(views, torch.zeros(1, dtype=torch.long, device=dev), tok_shape)[0]
        return {
            "views": views[0],
            "grid": grid,
            "shape": grid_to_shape(grid, TRUNC, prompt, "bidiff"),
            "renders": vol.render(grid[None], samples=64)[0].clamp(-1, 1),
            "prior_views": prior_views,
        }


def checked_prompts(
    prompt: str, shape_prompt: str | None, texture_prompt: str | None, steps: int, lazy_t: float
) -> tuple[str, str, str]:
    """The sampler's inputs checked by name; empty shape / texture prompts fall back to the prompt."""
    prompt = check_prompt(prompt)
    shape_prompt = check_prompt(shape_prompt, "shape_prompt") if shape_prompt else prompt
    texture_prompt = check_prompt(texture_prompt, "texture_prompt") if texture_prompt else prompt
    if steps < 1:
        raise InputError("steps", "at least 1", str(steps))
    if not 0 < lazy_t <= 1:
        raise InputError("lazy_t", "a fraction of the schedule in (0, 1]", str(lazy_t))
    return prompt, shape_prompt, texture_prompt


def shape_views(shape: Shape3D, volume: VolumeDenoiser) -> torch.Tensor:
    """`shape` rendered from the 3D branch's cameras at its view size: [V, 3, S, S] in [-1, 1]."""
    from ..common.sdf_render import render_views

    c = volume.config
    with torch.no_grad():
        img = render_views(shape.sdf, shape.color, volume.K, volume.E, c.size, c.size,
                           samples=64, inv_s=256.0)["image"]  # fmt: skip
    return img.clamp(0, 1).permute(0, 3, 1, 2) * 2 - 1


def lazy_timesteps(timesteps: torch.Tensor, lazy_t: float, num_train_timesteps: int) -> torch.Tensor:
    """The sampling steps from the one nearest below `lazy_t` (a fraction of T) on: the lazy start (Sec. 3.3)."""
    if not 0 < lazy_t <= 1:
        raise InputError("lazy_t", "a fraction of the schedule in (0, 1]", str(lazy_t))
    start = int((timesteps <= lazy_t * num_train_timesteps).nonzero()[0])
    return timesteps[start:]


def decoupled_guidance(
    full: torch.Tensor,
    no_text: torch.Tensor,
    no_3d: torch.Tensor,
    text_scale: float,
    consistency_scale: float,
) -> torch.Tensor:
    """BiDiff Eq. 9: o_full + (s_text - 1)(o_full - o_no_text) + (s_cond - 1)(o_full - o_no_3d); both
    scales 1 give the plain conditional prediction."""
    return full + (text_scale - 1) * (full - no_text) + (consistency_scale - 1) * (full - no_3d)


def noise_scheduler_for_views():
    """The multi-view images' schedule: the grid prior's (cosine, v-prediction), 1000 steps."""
    from .grid_prior import GridPriorConfig

    return noise_scheduler(GridPriorConfig())


def save_bidiff(model: BiDiffModel, path: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    meta = {"multiview": asdict(model.multiview.config), "volume": asdict(model.volume.config)}
    return save_with_config(model, path, META_KEY, meta, dtype)


def load_bidiff(path: str | Path, device: torch.device | str = "cpu") -> BiDiffModel:
    state, raw = load_with_config(
        path, META_KEY, "BiDiff model", "train one with `python -m models.bidiff.train_bidiff`"
    )
    mv, vol = raw["multiview"], raw["volume"]
    mv["channels"], vol["channels"] = tuple(mv["channels"]), tuple(vol["channels"])
    model = BiDiffModel(MultiViewConfig(**mv), VolumeConfig(**vol))
    model.load_state_dict(state)
    return model.eval().to(device)
