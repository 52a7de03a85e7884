"""Text-to-video generation on the two bases Customizing Motion trains, with motion files applied.

- ZeroScope / ModelScope: a diffusers folder with a `UNet3DConditionModel` (what users download).
- SD1.5 + AnimateDiff: any SD1.5-family model inflated with a motion module (the base most ComfyUI users
  have; `common.animatediff`).

`VideoModel` holds the modules and the motions to apply; `with_motion` returns a new VideoModel (the
modules are shared, nothing is patched). `generate` applies the motions for the duration of the run
only (`motion_file.motions_applied`), so a cached base is never left changed.

Inference defaults, paper Sec. 4 (ZeroScope): DPM-Solver multistep (DPM-Solver++ 2M), 50 steps,
classifier-free guidance 9.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..common.animatediff import inflate_unet, motion_schedule, run_motion_unet
from ..common.errors import InputError
from ..common.loading import SDComponents, load_components
from ..common.schedulers import make_scheduler
from ..common.text import encode_prompts
from .motion_file import MotionFile, check_fits, motions_applied
from .trainable import architecture_of

DEFAULT_STEPS, DEFAULT_GUIDANCE, DEFAULT_SCHEDULER = 50, 9.0, "dpmpp_2m"  # paper Sec. 4
DECODE_CHUNK = 8  # frames per VAE decode call
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class VideoModel:
    """A text-to-video model and the motions (file, strength) that generation applies on top of it."""

    unet: torch.nn.Module  # UNet3DConditionModel or UNetMotionModel
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler_config: dict
    source: str = ""
    motions: tuple[tuple[MotionFile, float], ...] = ()

    @property
    def architecture(self) -> str:
        return architecture_of(self.unet)

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def max_frames(self) -> int | None:
        """Longest clip an AnimateDiff motion module's positional table allows (None: no limit)."""
        return getattr(self.unet.config, "motion_max_seq_length", None)

    def with_motion(
        self, motion: MotionFile, strength: float = 1.0, source: str = "motion file"
    ) -> VideoModel:
        """This model with `motion` added (checked against the base now, applied at generation)."""
        if not -2.0 <= float(strength) <= 2.0:
            raise InputError("strength", "a value in [-2, 2] (1 = as trained, 0 = off)", str(strength))
        with motions_applied(
            self.unet, self.motions, check=False
        ):  # it applies on top of the motions before it
            check_fits(motion, self.unet, source)
        return dataclasses.replace(self, motions=(*self.motions, (motion, float(strength))))

    @classmethod
    def from_components(cls, comps: SDComponents, unet: torch.nn.Module | None = None, scheduler_config=None):
        """The components' modules (optionally another U-Net / schedule) as a VideoModel without motions."""
        return cls(unet if unet is not None else comps.unet, comps.vae, comps.text_encoder, comps.tokenizer,
                   scheduler_config if scheduler_config is not None else comps.scheduler_config, comps.source)  # fmt: skip

    def tokens(self) -> list[str]:
        return [m.token for m, s in self.motions if s != 0 and m.token]

    def modules(self) -> list[torch.nn.Module]:
        return [self.unet, self.vae, self.text_encoder]


def load_zeroscope(path, dtype: torch.dtype = torch.float32) -> VideoModel:
    """A ZeroScope/ModelScope diffusers folder (unet is a UNet3DConditionModel), read offline."""
    return VideoModel.from_components(load_components(path, dtype, video=True))


def animatediff_model(components: SDComponents, adapter: torch.nn.Module) -> VideoModel:
    """SD1.5-family components inflated with an AnimateDiff motion module (the 2D U-Net is not changed)."""
    config = {**components.scheduler_config, **motion_schedule(adapter)}
    return VideoModel.from_components(components, inflate_unet(components.unet, adapter), config)


def predict_noise(model: VideoModel, latents: torch.Tensor, t, text: torch.Tensor) -> torch.Tensor:
    """ε for latents [B, C, F, h, w] and text [B, L, D], in either architecture's call convention."""
    if model.architecture == "animatediff":
        return run_motion_unet(model.unet, latents, t, text)
    return model.unet(latents, t, encoder_hidden_states=text).sample


def token_warning(model: VideoModel, prompt: str) -> str:
    """A note when a motion is applied but the prompt lacks its token (the motion then hardly shows)."""
    missing = [tok for tok in model.tokens() if tok not in prompt.split()]
    if not missing:
        return ""
    return (f"the prompt has no {', '.join(repr(t) for t in missing)}: the applied motion is bound to that "
            f"token, write it in the prompt (e.g. 'a cat {missing[0]} running') to see it")  # fmt: skip


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(name, f"an integer ≥ {minimum}", repr(value))
    return value


def validate(model: VideoModel, num_frames: int, height: int, width: int, steps: int) -> None:
    _check_int("num_frames", num_frames, 1)
    _check_int("steps", steps, 1)
    m = model.vae_scale_factor * 2 ** (len(model.unet.config.block_out_channels) - 1)
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int) or v < m or v % m:
            raise InputError(name, f"a positive multiple of {m} (VAE and U-Net downsampling)", repr(v))
    if model.max_frames is not None and num_frames > model.max_frames:
        raise InputError(
            "num_frames",
            f"at most {model.max_frames} (the motion module's positional table)",
            str(num_frames),
        )


@torch.no_grad()
def generate(
    model: VideoModel,
    prompt: str,
    negative_prompt: str = "",
    num_frames: int = 16,
    height: int = 256,
    width: int = 256,
    steps: int = DEFAULT_STEPS,
    guidance: float = DEFAULT_GUIDANCE,
    scheduler: str = DEFAULT_SCHEDULER,
    seed: int = 0,
    progress: ProgressFn | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Frames [F, H, W, 3] float32 in 0..1: seeded CFG sampling with the model's motions applied.

    The initial noise is drawn on the CPU from `seed` ([1, C, F, h, w], as diffusers' text-to-video
    pipelines draw it), so a seed gives the same video on any device. `progress(done, total)` counts the
    denoising steps, then the decoded chunks; raising from it (ComfyUI's Cancel) stops the run cleanly.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("prompt", "a non-empty text", repr(prompt))
    validate(model, num_frames, height, width, steps)
    device = torch.device(device) if device is not None else next(model.unet.parameters()).device
    sched = make_scheduler(scheduler, model.scheduler_config)
    sched.set_timesteps(steps, device=device)
    dtype = next(model.unet.parameters()).dtype
    text = encode_prompts(model, [negative_prompt, prompt], device).to(dtype)
    gen = torch.Generator().manual_seed(int(seed))
    f = model.vae_scale_factor
    shape = (1, model.unet.config.in_channels, num_frames, height // f, width // f)
    latents = (torch.randn(shape, generator=gen) * sched.init_noise_sigma).to(device, dtype)
    chunks = -(-num_frames // DECODE_CHUNK)
    total = steps + chunks
    step_kw = {"generator": gen} if "generator" in inspect.signature(sched.step).parameters else {}
    with motions_applied(model.unet, model.motions, check=False):
        for i, t in enumerate(sched.timesteps):
            x = sched.scale_model_input(torch.cat([latents, latents]), t)
            eps_uncond, eps_text = predict_noise(model, x, t, text).chunk(2)
            eps = eps_uncond + guidance * (eps_text - eps_uncond)
            latents = sched.step(eps, t, latents, **step_kw).prev_sample
            if progress is not None:
                progress(i + 1, total)
    return decode_frames(model, latents, progress, steps, total)


@torch.no_grad()
def decode_frames(model: VideoModel, latents: torch.Tensor, progress=None, done: int = 0, total: int = 0):
    """Latents [1, C, F, h, w] -> frames [F, H, W, 3] in 0..1, decoded in chunks of DECODE_CHUNK frames."""
    per_frame = latents[0].permute(1, 0, 2, 3) / model.vae.config.scaling_factor
    vae_dtype = next(model.vae.parameters()).dtype
    out = []
    for k, start in enumerate(range(0, per_frame.shape[0], DECODE_CHUNK)):
        x = model.vae.decode(per_frame[start : start + DECODE_CHUNK].to(vae_dtype)).sample
        out.append((x.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu())
        if progress is not None:
            progress(done + k + 1, total)
    return torch.cat(out)
