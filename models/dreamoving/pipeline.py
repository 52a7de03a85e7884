"""DreaMoving text(+pose/depth, +face/clothes)-to-video sampling (arXiv 2312.05107), as a plain Python object.

Sec. 3 of the paper: an SD1.5 denoising U-Net inflated with AnimateDiff-style motion blocks (Sec. 3.1), a
Video ControlNet driven by pose or depth sequences (Sec. 3.2) whose residuals are added to the U-Net's skip
connections, and the Content Guider (Sec. 3.3) that adds face/clothes image prompts as extra cross-attention
contexts: Z = Attn(Q,K_t,V_t) + α_f·Attn(Q,K_f,V_f) + α_c·Attn(Q,K_c,V_c).

Sampling (ours; the paper publishes no inference code):
- classifier-free guidance with ONE batched U-Net call per window per step: rows [uncond video; cond video];
  the uncond branch gets the negative prompt and the image adapters' unconditional tokens (IP-Adapter's
  convention, see content_guider.py); both branches get the control residuals (diffusers' convention);
- sliding context windows (default 16 frames, overlap 4: AnimateDiff's training clip length). By default
  frame-split (`common.frame_split`, FreeNoise's split): spatial layers and ControlNets run once per
  frame in chunks of one window, only the motion blocks per window, blended per frame. `split=False`
  runs the whole U-Net per window and blends the noise predictions (`windows.WindowedDenoiser`; memory
  of one window, overlapped frames evaluated twice). Either way the scheduler steps ONCE per step on
  the full-length prediction, and `window >= num_frames` is bit-identical to a single pass;
- the motion module's noise schedule (AnimateDiff's linear betas unless its file records another,
  `animatediff.motion_schedule`) on the model's own scheduler config, DDIM, 25 steps, CFG 7.5
  (AnimateDiff's inference defaults; DreaMoving states none).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ...kernels.processor import HookState, attention_hooks
from ..common.animatediff import inflate_unet, motion_schedule, run_motion_unet
from ..common.errors import InputError
from ..common.frame_split import frame_split
from ..common.image_prompt import IPAdapter
from ..common.loading import SDComponents
from ..common.schedulers import make_scheduler
from ..common.text import encode_prompts
from .content_guider import DEFAULT_SCALE, ContentGuider, ImagePrompt
from .video_controlnet import ControlSpec, control_residuals
from .windows import WindowedDenoiser

ProgressFn = Callable[[int, int], None]

DEFAULT_WINDOW, DEFAULT_OVERLAP = 16, 4  # AnimateDiff trains on 16-frame clips
DEFAULT_STEPS, DEFAULT_GUIDANCE, DEFAULT_SCHEDULER = 25, 7.5, "ddim"  # AnimateDiff's inference defaults
DECODE_CHUNK = 8  # frames per VAE decode call


def check_reference_image(image, name: str) -> torch.Tensor:
    """A reference IMAGE [N, H, W, 3] (N = 1: one reference for the whole video), float 0..1."""
    if not isinstance(image, torch.Tensor):
        raise InputError(name, "an IMAGE [1, H, W, 3]", type(image).__name__)
    if image.ndim == 3 and image.shape[-1] in (1, 3, 4):
        image = image[None]
    if image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
        what = "a MASK-shaped tensor" if image.ndim == 3 else f"shape {list(image.shape)}"
        raise InputError(name, "an IMAGE [1, H, W, 3] (RGB reference photo)", what)
    if min(image.shape[:3]) == 0:
        raise InputError(name, "a non-empty image", f"shape {list(image.shape)}")
    if image.shape[0] != 1:
        raise InputError(
            name, "one reference image (the same person throughout the video)", f"{image.shape[0]}"
        )
    if not image.is_floating_point():
        raise InputError(name, "float pixels in 0..1", str(image.dtype))
    if image.shape[-1] == 1:
        image = image.expand(-1, -1, -1, 3)
    return image[..., :3].float()


@dataclass
class ContentGuiderModels:
    """What 'Load Content Guider' yields: the face IP-Adapter, an optional clothes one, and their CLIP vision.

    Without a clothes adapter the face adapter also encodes the clothes image (ours: the paper trains its
    own projections; IP-Adapter files are the nearest published weights)."""

    face: IPAdapter
    clothes: IPAdapter | None
    clip_vision: torch.nn.Module

    def modules(self) -> list[torch.nn.Module]:
        return [m for m in (self.face, self.clothes, self.clip_vision) if m is not None]

    def guider(
        self,
        face_image: torch.Tensor | None = None,
        clothes_image: torch.Tensor | None = None,
        face_scale: float = DEFAULT_SCALE,
        clothes_scale: float = DEFAULT_SCALE,
    ) -> ContentGuider | None:
        """Encode the reference images into a ContentGuider; None when no image is given."""
        face = clothes = None
        if face_image is not None:
            img = check_reference_image(face_image, "face_image")
            face = ImagePrompt.from_images(self.face, self.clip_vision, img, float(face_scale))
        if clothes_image is not None:
            img = check_reference_image(clothes_image, "clothes_image")
            adapter = self.clothes if self.clothes is not None else self.face
            clothes = ImagePrompt.from_images(adapter, self.clip_vision, img, float(clothes_scale))
        return ContentGuider(face, clothes) if (face or clothes) else None


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(name, f"an integer >= {minimum}", repr(value))
    return value


class DreaMovingPipeline:
    """SD1.5 components + an inflated motion U-Net; optional default controls and content guider.

    `unet` is a UNetMotionModel (`motion.inflate_unet`); give `motion_adapter` instead to inflate here.
    The components' 2D U-Net is never modified (inflation copies it).
    """

    def __init__(
        self,
        components: SDComponents,
        motion_adapter: torch.nn.Module | None = None,
        unet: torch.nn.Module | None = None,
        controls: Sequence[ControlSpec] = (),
        guider: ContentGuider | None = None,
    ):
        if (unet is None) == (motion_adapter is None):
            raise ValueError("give exactly one of motion_adapter (to inflate) or unet (already inflated)")
        self.components = components
        self.unet = unet if unet is not None else inflate_unet(components.unet, motion_adapter)
        self.controls, self.guider = list(controls), guider

    def modules(self) -> list[torch.nn.Module]:
        return [self.unet, self.components.vae, self.components.text_encoder]

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.components.vae.config.block_out_channels) - 1)

    @property
    def max_window(self) -> int | None:
        """Longest clip the motion blocks' positional table allows (32 for AnimateDiff v2)."""
        return getattr(self.unet.config, "motion_max_seq_length", None)

    def scheduler(self, name: str):
        return make_scheduler(name, {**self.components.scheduler_config, **motion_schedule(self.unet)})

    # ----- validation --------------------------------------------------------------------------------------
    def validate(self, num_frames, height, width, steps, window, overlap, controls) -> None:
        _check_int("num_frames", num_frames, 1)
        _check_int("steps", steps, 1)
        m = self.vae_scale_factor
        for name, v in (("height", height), ("width", width)):
            if isinstance(v, bool) or not isinstance(v, int) or v < m or v % m:
                raise InputError(name, f"a positive multiple of {m} (the VAE's downsampling)", repr(v))
        _check_int("context_window", window, 1)
        _check_int("context_overlap", overlap, 0)
        if overlap >= window:
            raise InputError("context_overlap", f"a value below context_window ({window})", repr(overlap))
        longest = min(window, num_frames)
        if self.max_window is not None and longest > self.max_window:
            raise InputError(
                "context_window",
                f"at most {self.max_window} frames per window (the motion module's positional table)",
                f"{longest}",
            )
        for i, spec in enumerate(controls):
            spec.validate()
            n = int(spec.frames.shape[0])
            if n != num_frames:
                others = ", ".join(
                    f"control {j + 1}: {int(s.frames.shape[0])}" for j, s in enumerate(controls)
                )
                raise InputError(
                    "control frames",
                    f"every control sequence to have num_frames = {num_frames} frames",
                    f"control {i + 1} has {n} ({others})",
                )

    # ----- run ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(
        self,
        prompt: str,
        negative_prompt: str = "",
        num_frames: int = 16,
        height: int = 512,
        width: int = 512,
        steps: int = DEFAULT_STEPS,
        guidance: float = DEFAULT_GUIDANCE,
        scheduler: str = DEFAULT_SCHEDULER,
        seed: int = 0,
        window: int = DEFAULT_WINDOW,
        overlap: int = DEFAULT_OVERLAP,
        controls: Sequence[ControlSpec] | None = None,
        guider: ContentGuider | None = None,
        progress: ProgressFn | None = None,
        device: torch.device | str | None = None,
        decode: bool = True,
        split: bool = True,
    ) -> torch.Tensor:
        """Frames [F, H, W, 3] float32 in 0..1 (or the final latents [1, C, F, h, w] with decode=False).

        `split` (default): spatial layers and ControlNets once per frame in chunks of `window` frames,
        only the motion blocks windowed (`common.frame_split`, FreeNoise's split); False: the whole
        U-Net per window (`windows.WindowedDenoiser`, memory of one window). Equal without overlap.

        `controls` are frames [F, 3, H, W] (all num_frames long); `guider` is a ContentGuider (its α_f / α_c
        are the prompts' scales). `progress(done, total)` counts windows x steps, then decoded chunks; an
        exception it raises (e.g. ComfyUI's cancel) stops the run with the U-Net restored.
        """
        controls = list(self.controls if controls is None else controls)
        guider = self.guider if guider is None else guider
        self.validate(num_frames, height, width, steps, window, overlap, controls)
        if not isinstance(prompt, str) or not isinstance(negative_prompt, str):
            raise InputError("prompt", "text", type(prompt).__name__)
        device = torch.device(device) if device is not None else next(self.unet.parameters()).device
        dtype = next(self.unet.parameters()).dtype
        cfg = float(guidance) != 1.0  # guidance 1 is the conditional prediction alone: no uncond rows

        text = encode_prompts(self.components, [negative_prompt, prompt] if cfg else [prompt], device).to(
            dtype
        )
        sched = self.scheduler(scheduler)
        sched.set_timesteps(steps, device=device)
        timesteps = list(sched.timesteps)

        h, w = height // self.vae_scale_factor, width // self.vae_scale_factor
        shape = (1, self.unet.config.in_channels, num_frames, h, w)
        gen = torch.Generator("cpu").manual_seed(int(seed) % 2**64)
        latents = torch.randn(shape, generator=gen, dtype=torch.float32).to(device)
        latents = latents * sched.init_noise_sigma

        denoiser = WindowedDenoiser(window, overlap)
        step_kw = _step_kwargs(sched, gen)
        split = bool(split) and denoiser.calls_per_step(num_frames) > 1
        per_step = 1 if split else denoiser.calls_per_step(num_frames)
        n_chunks = -(-num_frames // DECODE_CHUNK) if decode else 0
        total = per_step * len(timesteps) + n_chunks
        done = 0

        hooks = [guider.hook(self.unet, cfg=cfg)] if guider is not None else []
        state = HookState(num_steps=len(timesteps), latent_hw=(h, w))

        def tick(_n: int, _total: int) -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, total)

        if split:
            nets = [self.unet, *(spec.controlnet for spec in controls)]
            videos = 2 if cfg else 1
            splitting = frame_split(nets, num_frames, videos, window, overlap, chunk=window)
        else:
            splitting = contextlib.nullcontext()
        # Always the kernels' processor (also without hooks), so α = 0 / no guider are exactly equal.
        with attention_hooks(self.unet, hooks, state), splitting:
            for i, t in enumerate(timesteps):
                state.step = i
                fraction = i / len(timesteps)
                model_in = sched.scale_model_input(latents, t)

                fn = functools.partial(self._window_eps, model_in, t, fraction, text, controls, guidance)
                if split:
                    eps = fn(list(range(num_frames)))
                    tick(1, 1)
                else:
                    eps = denoiser(num_frames, fn, on_window=tick)
                latents = sched.step(eps.float(), t, latents, **step_kw).prev_sample
        if not decode:
            return latents
        return self.decode(latents, progress=lambda k: progress(done + k, total) if progress else None)

    def _window_eps(self, model_in, t, fraction, text, controls, guidance, idx: list[int]) -> torch.Tensor:
        """Guided noise prediction [1, C, len(idx), h, w] for one window: one U-Net call for both CFG rows,
        control residuals for this window's frames only."""
        cfg = text.shape[0] == 2
        x = model_in[:, :, idx].to(text.dtype)
        x = torch.cat([x, x]) if cfg else x
        residuals = None
        if controls:
            flat = x.permute(0, 2, 1, 3, 4).reshape(-1, x.shape[1], *x.shape[3:])  # [(B*F), C, h, w]
            residuals = control_residuals(controls, flat, t, fraction, text, len(idx), frame_indices=idx)
        eps = run_motion_unet(
            self.unet,
            x,
            t,
            text,
            down_block_additional_residuals=residuals[0] if residuals else None,
            mid_block_additional_residual=residuals[1] if residuals else None,
        )
        if not cfg:
            return eps
        uncond, cond = eps.chunk(2)
        return uncond + float(guidance) * (cond - uncond)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, progress: Callable[[int], None] | None = None) -> torch.Tensor:
        """[1, C, F, h, w] diffusion latents -> IMAGE [F, H, W, 3], decoded DECODE_CHUNK frames at a time."""
        vae = self.components.vae
        p = next(vae.parameters())
        frames = latents[0].permute(1, 0, 2, 3)  # [F, C, h, w]
        out = []
        for k, start in enumerate(range(0, frames.shape[0], DECODE_CHUNK)):
            chunk = frames[start : start + DECODE_CHUNK].to(p.device, p.dtype) / vae.config.scaling_factor
            img = vae.decode(chunk).sample.float()
            out.append((img / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu())
            if progress is not None:
                progress(k + 1)
        return torch.cat(out)


def _step_kwargs(sched, gen: torch.Generator) -> dict:
    """Ancestral schedulers draw noise each step: from the run's seeded generator, for reproducibility."""
    return {"generator": gen} if "generator" in inspect.signature(sched.step).parameters else {}
