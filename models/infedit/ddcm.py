"""Denoising Diffusion Consistent Model step: InfEdit's "virtual inversion" (Xu et al. 2023, Sec. 3, Alg. 1).

Nothing is inverted: the source branch is re-noised from the clean latent z0 at every step, and the
noise the source branch actually carries, eps_cons, is known exactly. A target branch moves by the
difference of its prediction from the source's, so with identical predictions it returns z0 exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DDCMOut:
    x_source: torch.Tensor  # next source latent (a fresh noising of z0)
    x_target: torch.Tensor  # next target latent
    pred_x0: torch.Tensor  # the target's clean-latent estimate (the output on the last step)


def ddcm_step(
    x_s: torch.Tensor,
    x_t: torch.Tensor,
    eps_s: torch.Tensor,
    eps_t: torch.Tensor,
    z0: torch.Tensor,
    alpha_t: float | torch.Tensor,
    alpha_prev: float | torch.Tensor,
    noise: torch.Tensor,
    eta: float = 1.0,
) -> DDCMOut:
    """One DDCM update of a (source, target) pair; `noise` is shared by both branches.

    eps_cons = (x_s - sqrt(a_t) z0) / sqrt(1 - a_t)
    x0_t     = z0 + ((x_t - x_s) - sqrt(1 - a_t) (eps_t - eps_s)) / sqrt(a_t)
    eps      = (eps_t - eps_s) + eps_cons
    sigma^2  = eta (1 - a_p);   dir = sqrt(1 - a_p - sigma^2) eps
    x_t'     = sqrt(a_p) x0_t + dir + sigma n;   x_s' = sqrt(a_p) z0 + dir + sigma n
    """
    a_t = torch.as_tensor(alpha_t, dtype=torch.float64)
    a_p = torch.as_tensor(alpha_prev, dtype=torch.float64)
    sqrt_a, sqrt_b = float(a_t.sqrt()), float((1 - a_t).sqrt())
    eps_cons = (x_s - sqrt_a * z0) / sqrt_b
    delta = eps_t - eps_s
    pred_x0 = z0 + ((x_t - x_s) - sqrt_b * delta) / sqrt_a
    var = float(eta * (1 - a_p))
    dir_coef = float(max(1 - a_p - var, 0.0) ** 0.5)
    sigma = var**0.5
    direction = dir_coef * (delta + eps_cons)
    sqrt_ap = float(a_p.sqrt())
    x_t_next = sqrt_ap * pred_x0 + direction + sigma * noise
    x_s_next = sqrt_ap * z0 + direction + sigma * noise
    return DDCMOut(x_s_next, x_t_next, pred_x0)


def lcm_timesteps(scheduler, steps: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(timesteps, alpha_t per step, alpha_prev per step) on the LCM schedule with 50 original steps.

    InfEdit samples on the LCM scheduler's timesteps with `original_inference_steps=50` (Sec. 5.1).
    The last step's alpha_prev is the final alpha (its value is irrelevant: the last step returns x0).
    """
    kwargs = (
        {"original_inference_steps": 50}
        if "original_inference_steps" in scheduler.set_timesteps.__code__.co_varnames
        else {}
    )
    scheduler.set_timesteps(steps, device=device, **kwargs)
    timesteps = scheduler.timesteps
    ac = scheduler.alphas_cumprod.to(torch.float64)
    alpha_t = ac[timesteps.long().cpu()]
    final = torch.as_tensor(getattr(scheduler, "final_alpha_cumprod", ac[0]), dtype=torch.float64).reshape(1)
    alpha_prev = torch.cat([alpha_t[1:], final])
    return timesteps, alpha_t, alpha_prev
