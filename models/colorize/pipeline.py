"""Grayscale-to-color with an InstructPix2Pix-architecture model (An et al. 2023, fine-tuned IP2P).

Sampling follows InstructPix2Pix (Brooks et al. 2023, Sec. 3.4, Eq. 3): the U-Net sees the noisy latent
concatenated with the *unscaled* VAE mode of the input image, and two guidance scales combine three
predictions:

    e = e(z, 0, 0) + s_I * (e(z, c_I, 0) - e(z, 0, 0)) + s_T * (e(z, c_I, c_T) - e(z, c_I, 0))

Defaults are the IP2P paper's: s_T = 7.5, s_I = 1.5, Euler-ancestral sampling, 100 steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ...kernels.processor import HookState, attention_hooks
from ..common.errors import InputError
from ..common.image import check_image_batch, fit_to_multiple, restore_size, to_grayscale, transfer_luminance
from ..common.loading import SDComponents
from ..common.schedulers import make_scheduler
from ..common.text import encode_prompts
from .instructions import DEFAULT_INSTRUCTION

ProgressFn = Callable[[int, int], None]


@dataclass
class ColorizeSettings:
    instruction: str = DEFAULT_INSTRUCTION
    steps: int = 100
    text_guidance: float = 7.5
    image_guidance: float = 1.5
    scheduler: str = "euler_ancestral"
    seed: int = 0
    keep_luminance: bool = True
    resize_mode: str = "pad"


class ColorizePipeline:
    """A plain object over diffusers modules; usable from scripts without ComfyUI."""

    def __init__(self, components: SDComponents):
        in_ch = components.unet.config.in_channels
        if in_ch != 8:
            raise InputError(
                "model",
                "an InstructPix2Pix-architecture model (U-Net with 8 input channels)",
                f"a U-Net with {in_ch} input channels",
            )
        self.components = components

    @torch.no_grad()
    def __call__(
        self,
        images: torch.Tensor,
        settings: ColorizeSettings,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        progress: ProgressFn | None = None,
    ) -> torch.Tensor:
        """IMAGE [B,H,W,3] in 0..1 -> colorized IMAGE [B,H,W,3] of the same size."""
        images = check_image_batch(images, "image")
        if settings.steps < 1:
            raise InputError("steps", "at least 1", str(settings.steps))
        device = torch.device(device)
        gray = to_grayscale(images)
        x, fit = fit_to_multiple(gray, self.components.pixel_multiple, settings.resize_mode)
        b = x.shape[0]
        unet, vae = self.components.unet, self.components.vae

        image_latents = vae.encode((x * 2 - 1).to(device, dtype)).latent_dist.mode()  # unscaled (IP2P)
        cond = encode_prompts(self.components, [settings.instruction] * b, device).to(dtype)
        uncond = encode_prompts(self.components, [""] * b, device).to(dtype)
        # Batch order: (text+image, image only, neither), as in Eq. 3.
        text_batch = torch.cat([cond, uncond, uncond])
        image_batch = torch.cat([image_latents, image_latents, torch.zeros_like(image_latents)])

        scheduler = make_scheduler(settings.scheduler, self.components.scheduler_config)
        scheduler.set_timesteps(settings.steps, device=device)
        generator = torch.Generator("cpu").manual_seed(int(settings.seed))
        latents = torch.randn(image_latents.shape, generator=generator, dtype=torch.float32).to(device, dtype)
        latents = latents * scheduler.init_noise_sigma

        total = len(scheduler.timesteps)
        state = HookState(num_steps=total, latent_hw=tuple(latents.shape[-2:]))
        # Attention runs through the pack's kernels (triton on GPU); the U-Net's own processors are
        # restored on exit, also on Cancel.
        with attention_hooks(unet, [], state):
            for i, t in enumerate(scheduler.timesteps):
                state.step = i
                model_in = scheduler.scale_model_input(torch.cat([latents] * 3), t)
                model_in = torch.cat([model_in, image_batch], dim=1)
                e_full, e_image, e_none = unet(model_in, t, encoder_hidden_states=text_batch).sample.chunk(3)
                eps = (
                    e_none
                    + settings.image_guidance * (e_image - e_none)
                    + settings.text_guidance * (e_full - e_image)
                )
                latents = scheduler.step(eps, t, latents, generator=generator).prev_sample
                if progress is not None:
                    progress(i + 1, total)

        decoded = vae.decode(latents / vae.config.scaling_factor).sample
        colored = restore_size(((decoded.float() + 1) / 2).clamp(0, 1).cpu(), fit)
        if settings.keep_luminance:
            colored = transfer_luminance(images.cpu(), colored)
        return colored
