"""Optimisation-based refinement by score distillation (BiDiff Sec. 3.4; DreamFusion's SDS, Poole et al. 2022):
the shape's SDF + colour grid is optimised so that its renders look like what the 2D prior expects for the
prompt, started from BiDiff's result (the paper's point: a good start cuts the optimisation from hours to
minutes) or from a sphere (the from-scratch baseline).

Per step: render the grid into the model's V views (NeuS, differentiable), noise the renders to a random t
in [t_min, t_max] T, let the multi-view 2D model predict v with classifier-free guidance (no 3D control:
the 2D prior alone), convert to the noise estimate eps_hat = sqrt(ab) v + sqrt(1 - ab) x_t, and descend
on w(t) (eps_hat - eps) back-propagated through the renderer only (DreamFusion Eq. 3, w(t) = 1 - ab),
plus an Eikonal-free smoothness term that keeps the SDF grid from growing floaters (our interpretation:
a small total-variation weight on the SDF channel).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..common.errors import InputError
from ..common.isosurface import grid_points
from .grid_prior import TRUNC, grid_to_shape, scene_grid
from .pipeline import BiDiffModel
from .prior3d import Shape3D, check_prompt


def sphere_grid(resolution: int, radius: float = 0.5) -> torch.Tensor:
    """The from-scratch start: a grey sphere as a model-space grid [4, R, R, R]."""
    p = grid_points(resolution, 1.0, dtype=torch.float32)
    sdf = ((p.norm(dim=-1) - radius) / TRUNC).clamp(-1, 1)
    return torch.cat([sdf[None], torch.zeros(3, *sdf.shape)], 0)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    return sum((x.diff(dim=d)).abs().mean() for d in range(-3, 0))


def refine(
    model,
    prompt: str,
    grid: torch.Tensor | None = None,
    *,
    steps: int = 200,
    lr: float = 0.02,
    guidance: float = 7.0,
    t_range: tuple[float, float] = (0.02, 0.98),
    tv_weight: float = 0.01,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """The refined model-space grid [4, R, R, R]; `grid=None` starts from a sphere. `model`: a BiDiffModel
    (its pixel multi-view branch scores) or a BoundSDBiDiff (the SD model with its adapter scores in latent
    space, Stable-DreamFusion style). `on_step(step, grid)` sees the grid after each step."""
    prompt = check_prompt(prompt)
    if steps < 1:
        raise InputError("steps", "at least 1", str(steps))
    if not 0 <= t_range[0] < t_range[1] <= 1:
        raise InputError("t_range", "0 <= t_min < t_max <= 1", str(t_range))
    sds, volume, modules, T = _score(model, prompt, guidance)
    r = volume.config.resolution
    start = sphere_grid(r) if grid is None else grid.detach().float().clone()
    if start.shape != (4, r, r, r):
        raise InputError("grid", f"a model-space grid [4, {r}, {r}, {r}]", f"shape {list(start.shape)}")
    param = torch.nn.Parameter(start)
    opt = torch.optim.Adam([param], lr=lr)
    g = torch.Generator().manual_seed(int(seed))
    # the models are shared (ComfyUI caches them): only the grid learns, and the flags are put back; tensors
    # made in inference mode (a model loaded inside ComfyUI) never record gradients and cannot be switched
    switch = [p for m in modules for p in m.parameters() if p.requires_grad and not p.is_inference()]
    try:
        for p in switch:
            p.requires_grad_(False)
        for step in range(steps):
            if should_stop is not None and should_stop():
                raise InterruptedError("BiDiff refinement was cancelled")
            x0 = volume.render(param[None])  # [1, V, 3, S, S] in [-1, 1]
            t = int(t_range[0] * T + torch.rand((), generator=g).item() * (t_range[1] - t_range[0]) * T)
            loss = sds(x0, min(t, T - 1), g) + tv_weight * total_variation(param[:1])
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                param.clamp_(-1, 1)
            if on_step is not None:
                on_step(step + 1, param.detach())
            if progress is not None:
                progress(step + 1, steps)
    finally:
        for p in switch:
            p.requires_grad_(True)
    return param.detach()


def _score(model, prompt: str, guidance: float):
    """(sds(x0, t, generator) -> a loss whose gradient in x0 is the SDS gradient, the 3D branch whose grid and
    renderer are refined, the modules to keep frozen, the number of training timesteps T)."""
    from .pipeline_sd import BoundSDBiDiff

    if isinstance(model, BiDiffModel):
        return (
            _pixel_sds(model, prompt, guidance),
            model.volume,
            [model],
            model.scheduler.config.num_train_timesteps,
        )
    if isinstance(model, BoundSDBiDiff):
        c = model.components
        T = c.scheduler_config.get("num_train_timesteps", 1000)
        frozen = [m for m in (model.model, c.unet, c.vae) if m is not None]
        return _latent_sds(model, prompt, guidance), model.model.volume, frozen, T
    raise InputError(
        "model", "a BiDiff model (world-size or an SD adapter on its model)", type(model).__name__
    )


def _pixel_sds(model: BiDiffModel, prompt: str, guidance: float):
    """DreamFusion's SDS with the pixel multi-view model (v-prediction -> eps_hat), w(t) = 1 - ab."""
    abar = model.scheduler.alphas_cumprod.float()
    tokens = model.tokens([prompt])
    null = torch.zeros_like(tokens)

    def sds(x0: torch.Tensor, t: int, g: torch.Generator) -> torch.Tensor:
        eps = torch.randn(x0.shape, generator=g)
        a = abar[t]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        with torch.no_grad():
            v = model.multiview(torch.cat([xt, xt]).detach(), torch.tensor([t, t]), torch.cat([tokens, null]))
            vc, vu = v.chunk(2)
            v = vu + guidance * (vc - vu)
            eps_hat = a.sqrt() * v + (1 - a).sqrt() * xt
            grad = (1 - a) * (eps_hat - eps)
        return (grad * x0).sum() / x0.shape[1]  # d/dx0 = grad: the SDS gradient through the renderer only

    return sds


def _latent_sds(bound, prompt: str, guidance: float):
    """SDS in the SD model's latent space: renders -> VAE encoder (differentiable) -> z0; the adapter's
    prediction (all views jointly, no 3D control) with CFG; w(t) = 1 - ab; the gradient flows through the
    encoder and the renderer (Stable-DreamFusion's latent SDS). IF (no VAE): the same in pixel space."""
    from diffusers import DDPMScheduler

    from ..common.text import encode_prompts
    from .pipeline_sd import encode_views

    c, adapter = bound.components, bound.model.adapter
    sched = DDPMScheduler.from_config(c.scheduler_config)
    abar = sched.alphas_cumprod.float()
    v_pred = sched.config.prediction_type == "v_prediction"
    p = next(c.unet.parameters())
    text = encode_prompts(c, [prompt, ""], p.device).to(p.dtype)
    bound.model.to_base(c.unet)

    def sds(x0: torch.Tensor, t: int, g: torch.Generator) -> torch.Tensor:
        z0 = encode_views(c.vae, x0[0].to(p.dtype))[
            None
        ].float()  # differentiable; IF: the renders themselves
        eps = torch.randn(z0.shape, generator=g)
        a = abar[t]
        zt = a.sqrt() * z0 + (1 - a).sqrt() * eps
        with torch.no_grad():
            out = adapter.predict(
                c.unet, torch.cat([zt, zt]).detach().to(p.dtype), torch.tensor([t, t]), text
            )
            cond, uncond = out.float().chunk(2)
            pred = uncond + guidance * (cond - uncond)
            eps_hat = a.sqrt() * pred + (1 - a).sqrt() * zt if v_pred else pred
            grad = (1 - a) * (eps_hat - eps)
        return (grad * z0).sum() / z0.shape[1]

    return sds


def refined_shape(model, prompt: str, start: Shape3D | None = None, **kw) -> Shape3D:
    """Refine any shape (BiDiff's, a prior's, or None: a sphere): it is sampled onto the model's grid first."""
    volume = model.volume if isinstance(model, BiDiffModel) else model.model.volume
    r = volume.config.resolution
    grid = None
    if start is not None:
        with torch.no_grad():
            grid = scene_grid(start.sdf, start.color, r, TRUNC)
    return grid_to_shape(refine(model, prompt, grid, **kw), TRUNC, prompt.strip(), "bidiff refined")
