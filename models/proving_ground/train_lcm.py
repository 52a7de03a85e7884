"""Latent consistency distillation (Luo et al. 2023, "Latent Consistency Models", Alg. 1 "LCD").

The student starts as a copy of the teacher U-Net and learns f(z_t, t) = c_skip(t) z_t + c_out(t) x0(z_t, t)
to agree with its EMA target at the previous point of the teacher's probability-flow ODE:

    z_{t-k} = DDIM step of the teacher with classifier-free guidance from z_t   (skipping-step solver)
    loss    = pseudo-Huber( f_theta(z_t, t), f_target(z_{t-k}, t-k) )           (c = 0.001)

Paper/official defaults used: 50 solver steps over 1000 (skip k = 20), timesteps t in {19, 39, ..., 999},
boundary scalings with sigma_data = 0.5 and timestep scaling 10 (what diffusers' LCMScheduler applies at
inference), target EMA decay 0.95.
Our interpretation: one fixed guidance scale instead of the w-embedding (as LCM-LoRA does; the student has
no `time_cond_proj_dim` so every SD sampler still runs it), standard CFG convention e_u + s (e_c - e_u)
with s = 3, and 10 % empty captions distilled without guidance so the student also has an unconditional
branch (InfEdit and our samplers apply CFG on top of the student).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..common.training import EMA

SIGMA_DATA = 0.5
TIMESTEP_SCALING = 10.0


@dataclass
class LCMSettings:
    steps: int = 600
    batch_size: int = 16
    lr: float = 3e-5
    guidance: float = 3.0
    solver_steps: int = 50  # LCM: N = 50 DDIM steps over the 1000 training steps
    target_ema: float = 0.95
    huber_c: float = 0.001
    caption_dropout: float = 0.1
    seed: int = 0


def boundary_scalings(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(c_skip, c_out) of LCM's consistency parametrisation; c_skip(0) = 1, c_out(0) = 0."""
    s = t.float() * TIMESTEP_SCALING
    c_skip = SIGMA_DATA**2 / (s**2 + SIGMA_DATA**2)
    c_out = s / (s**2 + SIGMA_DATA**2) ** 0.5
    return c_skip, c_out


def solver_timesteps(num_train: int = 1000, solver_steps: int = 50) -> torch.Tensor:
    """{k-1, 2k-1, ..., num_train-1} with k = num_train / solver_steps (19, 39, ..., 999 for SD)."""
    k = num_train // solver_steps
    return torch.arange(1, solver_steps + 1) * k - 1


def consistency_output(eps, z_t, t, alphas_cumprod) -> torch.Tensor:
    a = alphas_cumprod[t].view(-1, 1, 1, 1)
    x0 = (z_t - (1 - a).sqrt() * eps) / a.sqrt()
    c_skip, c_out = boundary_scalings(t)
    return c_skip.view(-1, 1, 1, 1) * z_t + c_out.view(-1, 1, 1, 1) * x0


def distill_lcm(
    teacher_unet,
    encode_text,
    latents_fn,
    captions: list[str],
    settings: LCMSettings,
    alphas_cumprod,
    progress=None,
):
    """Returns the trained student U-Net.

    encode_text(list[str]) -> [B, L, D] (frozen); latents_fn(indices) -> scaled clean latents [B, 4, h, w].
    """
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    teacher = teacher_unet.eval().requires_grad_(False)
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    target = copy.deepcopy(teacher).eval().requires_grad_(False)
    # the target network: a fixed-decay EMA of the student, averaged into `target`'s own parameters
    target_ema = EMA(
        student.parameters(), settings.target_ema, warmup=False, shadow=list(target.parameters())
    )
    opt = torch.optim.AdamW(student.parameters(), lr=settings.lr, weight_decay=0.0)
    ts = solver_timesteps(len(alphas_cumprod), settings.solver_steps)
    k = int(ts[1] - ts[0])
    ac = alphas_cumprod
    with torch.no_grad():
        uncond = encode_text([""])
    t0 = time.time()
    for step in range(settings.steps):
        idx = rng.integers(0, len(captions), settings.batch_size)
        z0 = latents_fn(torch.from_numpy(idx))
        drop = rng.random(settings.batch_size) < settings.caption_dropout
        texts = ["" if d else captions[i] for i, d in zip(idx, drop, strict=True)]
        with torch.no_grad():
            cond = encode_text(texts)
        t = ts[torch.from_numpy(rng.integers(0, len(ts), settings.batch_size))]
        t_prev = (t - k).clamp(min=0)
        noise = torch.randn_like(z0)
        a_t = ac[t].view(-1, 1, 1, 1)
        z_t = a_t.sqrt() * z0 + (1 - a_t).sqrt() * noise

        pred = consistency_output(student(z_t, t, cond).sample, z_t, t, ac)
        with torch.no_grad():
            e = teacher(
                torch.cat([z_t, z_t]), torch.cat([t, t]), torch.cat([cond, uncond.expand_as(cond)])
            ).sample
            e_c, e_u = e.chunk(2)
            guided = e_u + settings.guidance * (e_c - e_u)
            mask = torch.from_numpy(drop).view(-1, 1, 1, 1)
            eps = torch.where(mask, e_c, guided)  # dropped captions: cond == uncond, no guidance
            x0 = (z_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()
            a_p = ac[t_prev].view(-1, 1, 1, 1)
            z_prev = a_p.sqrt() * x0 + (1 - a_p).sqrt() * eps  # DDIM (eta = 0) from t to t - k
            tgt = consistency_output(target(z_prev, t_prev, cond).sample, z_prev, t_prev, ac)
        loss = (((pred - tgt) ** 2 + settings.huber_c**2).sqrt() - settings.huber_c).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        target_ema.step(student.parameters())
        if progress:
            progress("lcm", step + 1, settings.steps, float(loss.detach()), time.time() - t0)
    return student.eval().requires_grad_(False)
