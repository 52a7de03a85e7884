"""Variational score distillation as SwiftBrush uses it (Nguyen & Tran 2023, arXiv 2312.05239).

Student step, for the student's x0 and t ~ U[20, 980]:

    x_t  = sqrt(a_t) x0 + sqrt(1 - a_t) n
    g    = nan_to_num((1 - a_t) (eps_teacher(x_t) - eps_lora(x_t)))     both with CFG, same scale
    loss = 0.5 * MSE(x0, stopgrad(x0 - g))          =>  d loss / d x0 = g / x0.numel()

LoRA-teacher step, on the student's DETACHED x0 and t ~ U[0, 1000), prompt dropped to "" 10 % of the time:

    loss = MSE(sqrt(a_t) eps_hat(x_t), sqrt(a_t) n)

Everything here is a small function of tensors (plus one U-Net call in `guided_eps`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

VSD_T_MIN, VSD_T_MAX = 20, 980  # t ~ U[20, 980] for the student's VSD gradient
GUIDANCE = 4.5  # CFG scale of both teachers in the VSD step
PROMPT_DROPOUT = 0.1  # LoRA teacher: prompt -> "" with this probability


def alphas_at(alphas_cumprod: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """a_t per example, shaped [B, 1, 1, 1] for broadcasting (float32, on t's device)."""
    return alphas_cumprod.to(t.device, torch.float32)[t.long()].view(-1, 1, 1, 1)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, alpha_t: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(a_t) x0 + sqrt(1 - a_t) n (the forward process q(x_t | x0))."""
    return alpha_t.sqrt() * x0 + (1 - alpha_t).sqrt() * noise


def cfg_combine(eps_uncond: torch.Tensor, eps_cond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance against the empty prompt."""
    return eps_uncond + scale * (eps_cond - eps_uncond)


def guided_eps(
    unet: torch.nn.Module,
    x_t: torch.Tensor,
    t: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """CFG noise prediction with one batched U-Net call ([uncond; cond]); float32 out.
    `cond`: [B, L, D]; `uncond`: the empty prompt's embedding, [1, L, D] or [B, L, D]."""
    b = x_t.shape[0]
    dtype = next(unet.parameters()).dtype
    x = torch.cat([x_t, x_t]).to(dtype)
    emb = torch.cat([uncond.expand(b, -1, -1), cond]).to(x.device, dtype)
    eps = unet(x, torch.cat([t, t]), encoder_hidden_states=emb).sample.float()
    eps_uncond, eps_cond = eps.chunk(2)
    return cfg_combine(eps_uncond, eps_cond, scale)


def vsd_gradient(eps_teacher: torch.Tensor, eps_lora: torch.Tensor, alpha_t: torch.Tensor) -> torch.Tensor:
    """g = nan_to_num((1 - a_t) (eps_teacher - eps_lora)): the VSD direction with SwiftBrush's weighting."""
    return torch.nan_to_num((1 - alpha_t) * (eps_teacher.float() - eps_lora.float()))


def vsd_loss(x0: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """0.5 * MSE(x0, stopgrad(x0 - g)): a surrogate whose gradient w.r.t. x0 is g / x0.numel()."""
    target = (x0 - grad).detach()
    return 0.5 * F.mse_loss(x0.float(), target.float(), reduction="mean")


def lora_teacher_loss(eps_hat: torch.Tensor, noise: torch.Tensor, alpha_t: torch.Tensor) -> torch.Tensor:
    """MSE(sqrt(a_t) eps_hat, sqrt(a_t) eps): the denoising loss weighted by sqrt(a_t) inside the MSE."""
    w = alpha_t.sqrt()
    return F.mse_loss(w * eps_hat.float(), w * noise.float(), reduction="mean")


def drop_prompts(cond: torch.Tensor, uncond: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
    """Rows where `drop` is True take the empty prompt's embedding."""
    return torch.where(drop.to(cond.device)[:, None, None], uncond.to(cond.dtype).expand_as(cond), cond)


# ----------------------------------------------------------------------------------------------------
# The two losses on models. `teacher` is a LoraTeacher (teacher.py): `teacher.lora(False)` is the frozen
# teacher, `teacher.lora(True)` the LoRA teacher, both the same U-Net object.


def vsd_student_loss(
    x0: torch.Tensor,
    teacher,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    guidance: float = GUIDANCE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, g) for the student's x0: both teachers are evaluated without gradients on x_t of the
    detached x0, so the only gradient is the surrogate's, g / x0.numel() on x0."""
    a_t = alphas_at(alphas_cumprod, t)
    with torch.no_grad():
        x_t = add_noise(x0.detach().float(), noise.float(), a_t)
        with teacher.lora(False):
            eps_teacher = guided_eps(teacher.unet, x_t, t, cond, uncond, guidance)
        with teacher.lora(True):
            eps_lora = guided_eps(teacher.unet, x_t, t, cond, uncond, guidance)
        g = vsd_gradient(eps_teacher, eps_lora, a_t)
    return vsd_loss(x0, g), g


def lora_teacher_step_loss(
    x0: torch.Tensor,
    teacher,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    drop: torch.Tensor,
    alphas_cumprod: torch.Tensor,
) -> torch.Tensor:
    """The LoRA teacher's denoising loss on the student's DETACHED x0 (gradients reach only the LoRA)."""
    a_t = alphas_at(alphas_cumprod, t)
    x_t = add_noise(x0.detach().float(), noise.float(), a_t)
    emb = drop_prompts(cond, uncond, drop)
    dtype = next(teacher.unet.parameters()).dtype
    with teacher.lora(True):
        eps_hat = teacher.unet(x_t.to(dtype), t, encoder_hidden_states=emb.to(dtype)).sample
    return lora_teacher_loss(eps_hat, noise, a_t)
