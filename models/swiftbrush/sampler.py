"""SwiftBrush's exact one-step sampler (Nguyen & Tran 2023, arXiv 2312.05239).

The student is a copy of the teacher's U-Net that takes PURE noise z ~ N(0, I) at the fixed timestep
T = 999 (the last training timestep) and predicts eps; its image is

    x0 = (z - sqrt(1 - a_T) * eps) / sqrt(a_T),        a_T = alphas_cumprod[T] of the model's schedule

(about 0.0047 for SD's scaled-linear schedule), decoded by the VAE from x0 / scaling_factor. A stock
one-step sampler would feed the U-Net sqrt(1 - a_T) * z (the noisy latent of a zero image) instead of z,
which is not the parameterization the student was trained on; this module uses z itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..common.errors import InputError
from ..common.loading import SDComponents
from ..common.schedulers import scheduler_of_class
from ..common.text import encode_prompts
from .weights import check_text_to_image

ProgressFn = Callable[[int, int], None]
CHUNK = 8  # images per U-Net / VAE call: bounds memory for large batches


def training_alphas_cumprod(scheduler_config: dict) -> torch.Tensor:
    """alphas_cumprod of the model's training noise schedule (float32, as diffusers computes it)."""
    return scheduler_of_class("DDPMScheduler", scheduler_config).alphas_cumprod.clone()


def student_timestep(alphas_cumprod: torch.Tensor) -> int:
    """T: the last training timestep (999 for every Stable Diffusion schedule)."""
    return len(alphas_cumprod) - 1


def student_x0(z: torch.Tensor, eps: torch.Tensor, alpha_T: float | torch.Tensor) -> torch.Tensor:
    """x0 = (z - sqrt(1 - a_T) eps) / sqrt(a_T), in float32 (1 / sqrt(a_T) ~ 14.6 amplifies rounding)."""
    a = float(alpha_T)
    return (z.float() - math.sqrt(1.0 - a) * eps.float()) / math.sqrt(a)


def one_step_latents(
    unet: torch.nn.Module,
    text_emb: torch.Tensor,
    noise: torch.Tensor,
    alpha_T: float | torch.Tensor,
    timestep: int = 999,
) -> torch.Tensor:
    """The student's clean latent x0 (diffusion latent space: VAE latent * scaling_factor) from noise z.
    Exactly one U-Net evaluation per image; the U-Net sees z itself at timestep T."""
    dtype = next(unet.parameters()).dtype
    t = torch.full((noise.shape[0],), int(timestep), device=noise.device, dtype=torch.long)
    eps = unet(noise.to(dtype), t, encoder_hidden_states=text_emb.to(noise.device, dtype)).sample
    return student_x0(noise, eps, alpha_T)


def seeded_noise(shape: Sequence[int], seed: int, count: int) -> torch.Tensor:
    """`count` noise tensors of `shape`, image k drawn from its own CPU generator seeded seed + k, so an
    image does not depend on the batch it was made in (float32, CPU)."""
    out = []
    for k in range(count):
        gen = torch.Generator("cpu").manual_seed((int(seed) + k) % 2**64)
        out.append(torch.randn(tuple(shape), generator=gen, dtype=torch.float32))
    return torch.stack(out)


@dataclass
class SwiftBrushResult:
    images: torch.Tensor  # [B, H, W, 3] float32 in 0..1 (ComfyUI IMAGE)
    latents: torch.Tensor  # [B, C, h, w] x0 in the diffusion latent space (VAE latent * scaling_factor)
    unet_evaluations: int  # U-Net sample evaluations (rows through the U-Net): one per image


class SwiftBrushPipeline:
    """One-step text-to-image generation with a SwiftBrush student (a plain Python object: usable from
    scripts and notebooks; the ComfyUI node wraps it)."""

    def __init__(self, components: SDComponents):
        check_text_to_image(components, "student")
        self.components = components
        self.alphas_cumprod = training_alphas_cumprod(components.scheduler_config)
        self.timestep = student_timestep(self.alphas_cumprod)

    @property
    def alpha_T(self) -> float:
        return float(self.alphas_cumprod[self.timestep])

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.components.vae.config.block_out_channels) - 1)

    @property
    def scaling_factor(self) -> float:
        return float(self.components.vae.config.scaling_factor)

    def vae_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Diffusion latents -> the VAE's own latent space (what ComfyUI's LATENT holds: its VAE decodes
        `samples` directly and its SD latent format applies the scaling factor inside the model)."""
        return latents / self.scaling_factor

    # ----- inputs ----------------------------------------------------------------------------------------
    def check_prompt(self, prompt: str, name: str = "prompt") -> None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(
                name, "a non-empty text prompt (the student was distilled on text prompts)", repr(prompt)
            )
        n = len(self.components.tokenizer(prompt).input_ids)
        limit = self.components.tokenizer.model_max_length
        if n > limit:
            raise InputError(name, f"a prompt of at most {limit - 2} tokens", f"{n - 2} tokens")

    def encode_prompts(self, prompts: Sequence[str], device) -> torch.Tensor:
        """Checked prompts -> CLIP embeddings [P, L, D] (the pack's one prompt encoder)."""
        for p in prompts:
            self.check_prompt(p)
        return encode_prompts(self.components, prompts, device)

    def check_size(self, height: int, width: int) -> None:
        m = self.vae_scale_factor
        for name, v in (("height", height), ("width", width)):
            if int(v) < m or int(v) % m:
                raise InputError(name, f"a positive multiple of {m} (the VAE's downsampling)", str(v))

    # ----- run -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        prompts: str | Sequence[str] | None = None,
        *,
        embeds: torch.Tensor | None = None,
        seed: int = 0,
        batch: int = 1,
        height: int = 512,
        width: int = 512,
        device="cpu",
        dtype: torch.dtype | None = None,
        progress: ProgressFn | None = None,
        decode: bool = True,
    ) -> SwiftBrushResult:
        """`batch` images per prompt (prompt-major order); image k uses noise seeded seed + k.
        Give `prompts` (str or list) or pre-encoded `embeds` ([P, L, D])."""
        if batch < 1:
            raise InputError("batch_size", "at least 1", str(batch))
        self.check_size(height, width)
        device = torch.device(device)
        if dtype is not None and any(p.dtype != dtype for p in self.components.unet.parameters()):
            raise InputError("dtype", "the dtype the modules are in (cast them before calling)", str(dtype))
        if embeds is None:
            if prompts is None:
                raise InputError("prompt", "a prompt or text embeddings")
            prompts = [prompts] if isinstance(prompts, str) else list(prompts)
            if not prompts:
                raise InputError("prompt", "at least one prompt")
            embeds = self.encode_prompts(prompts, device)
        elif embeds.dim() == 2:
            embeds = embeds[None]
        embeds = embeds.to(device).repeat_interleave(batch, dim=0)
        total = embeds.shape[0]
        c = self.components.unet.config.in_channels
        shape = (c, int(height) // self.vae_scale_factor, int(width) // self.vae_scale_factor)
        noise = seeded_noise(shape, seed, total)

        latents, images = [], []
        for start in range(0, total, CHUNK):
            z = noise[start : start + CHUNK].to(device)
            x0 = one_step_latents(
                self.components.unet, embeds[start : start + CHUNK], z, self.alpha_T, self.timestep
            )
            latents.append(x0)
            if decode:
                images.append(self.decode(x0))
            if progress is not None:
                progress(min(start + CHUNK, total), total)
        latents = torch.cat(latents)
        images = torch.cat(images) if decode else torch.empty(0)
        return SwiftBrushResult(images, latents.float().cpu(), total)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Diffusion latents -> IMAGE [B, H, W, 3] in 0..1 (float32, CPU)."""
        vae = self.components.vae
        vae_dtype = next(vae.parameters()).dtype
        x = vae.decode(self.vae_latents(latents.float()).to(vae_dtype)).sample
        return ((x.float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).cpu()
