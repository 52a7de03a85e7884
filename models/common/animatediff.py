"""AnimateDiff motion modules on SD1.5-family U-Nets, shared by DreaMoving and Customizing Motion.

- `load_motion_adapter`: AnimateDiff motion modules from the files users have (original-layout
  `mm_sd_v15*.ckpt|.safetensors`, or a diffusers MotionAdapter folder), config inferred, no hub.
- `save_motion_adapter_original`: the reverse writer (our trainer and the tests use it).
- `build_tiny_motion_adapter`: seeded tiny adapter matching `tiny.TINY_UNET`.
- `inflate_unet`: UNet2DConditionModel + MotionAdapter -> diffusers UNetMotionModel.
- `motion_schedule` / `set_motion_schedule`: the noise schedule a motion module was trained on (the
  file's header, AnimateDiff's linear betas when it says nothing); the inflated U-Net inherits it.
- `motion_modules_enabled`: run the inflated U-Net frame by frame (temporal blocks bypassed).
- `motion_attention`: route every attention layer (temporal ones flagged) through `kernels`.
- `run_motion_unet`: one call convention for [B, C, F, H, W] latents with per-video text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D, MotionAdapter, UNetMotionModel
from diffusers.utils import logging as diffusers_logging

from ...kernels.processor import AttentionHook, HookState, attention_hooks
from . import animatediff_layout, frame_split
from .animatediff_layout import (
    detect_layout,
    diffusers_to_original,
    infer_motion_config,
    original_to_diffusers,
)
from .errors import InputError, WeightsFormatError
from .loading import (
    PICKLE_SUFFIXES,
    SAFE_SUFFIXES,
    assign_weights,
    build_loaded,
    empty_parameters,
    load_state_dict,
)

MotionUNet = UNetMotionModel  # the inflated U-Net type, for annotations in other modules
# the published motion modules were trained on linear betas
ANIMATEDIFF_SCHEDULE = {"beta_schedule": "linear"}
# A motion module trained on another schedule (the dance world's, on its image model's scaled-linear betas)
# says so in its file's header under this key; the pipelines then sample on that schedule.
SCHEDULE_KEY = "beta_schedule"
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")

TINY_MOTION = dict(
    block_out_channels=(32, 64),
    motion_layers_per_block=1,
    motion_num_attention_heads=8,
    motion_norm_num_groups=32,
    motion_max_seq_length=32,
    use_motion_mid_block=True,
)
FOLDER_WEIGHTS = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.bin",
)
EXPECTED = (
    f"an AnimateDiff motion module in the original layout (keys like "
    f"{animatediff_layout.EXAMPLE_ORIGINAL_KEY!r}, e.g. mm_sd_v15_v2.ckpt) or a diffusers MotionAdapter folder "
    f"(config.json + diffusion_pytorch_model.safetensors)"
)


def _finish(adapter: torch.nn.Module) -> torch.nn.Module:
    if any(p.dtype != torch.float32 for p in adapter.parameters()):
        with _quiet_diffusers():
            adapter.to(torch.float32)
    return adapter.eval().requires_grad_(False)


@contextmanager
def _quiet_diffusers() -> Iterator[None]:
    """diffusers warns on every dtype cast of a model (even a no-op one); keep the console readable."""
    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    try:
        yield
    finally:
        diffusers_logging.set_verbosity(level)


def motion_schedule(module: torch.nn.Module) -> dict:
    """Scheduler-config overrides for the schedule `module` (adapter or inflated U-Net) was trained on."""
    return {
        SCHEDULE_KEY: getattr(module, "trained_beta_schedule", None) or ANIMATEDIFF_SCHEDULE[SCHEDULE_KEY]
    }


def set_motion_schedule(
    module: torch.nn.Module, beta_schedule: str | None, source: str = ""
) -> torch.nn.Module:
    """Record on `module` the beta schedule its motion blocks were trained on (None: AnimateDiff's)."""
    if beta_schedule is not None and beta_schedule not in BETA_SCHEDULES:
        raise WeightsFormatError(
            f"{source or 'motion module'}: header {SCHEDULE_KEY}={beta_schedule!r}; expected one of {BETA_SCHEDULES}"
        )
    module.trained_beta_schedule = beta_schedule
    return module


def _inherit_schedule(model: torch.nn.Module, adapter: torch.nn.Module) -> torch.nn.Module:
    """The inflated U-Net samples on the schedule its motion blocks (the adapter's) were trained on."""
    return set_motion_schedule(model, getattr(adapter, "trained_beta_schedule", None))


def _adapter_from_state_dict(sd: dict[str, torch.Tensor], source: str, config: dict | None = None):
    """Build a MotionAdapter for `sd` (any layout) and load it strictly; pe tables may be absent."""
    layout = detect_layout(sd)
    if layout == "unknown":
        hint = ""
        if any(k.startswith("controlnet_cond_embedding.") for k in sd):
            hint = " This looks like a SparseCtrl ControlNet, not a motion module."
        sample = ", ".join(repr(k) for k in list(sd)[:3]) or "no tensors"
        raise WeightsFormatError(f"{source}: not a motion module; expected {EXPECTED}. Found {sample}.{hint}")
    schedule = getattr(sd, "metadata", {}).get(SCHEDULE_KEY)  # the header, before the key conversion
    sd = original_to_diffusers(sd, source)
    config = config or infer_motion_config(sd, source)
    # Built without random initialisation. Files converted by diffusers' script may lack the sinusoidal
    # tables: those buffers keep their computed values, which equal the stored ones.
    what = f"{layout}-layout motion-module (inferred config {config})"
    adapter = build_loaded(lambda: MotionAdapter.from_config(config), sd, what, source, ("pos_embed.pe",))
    return set_motion_schedule(_finish(adapter), schedule, source)


def load_motion_adapter(path: str | os.PathLike) -> MotionAdapter:
    """AnimateDiff motion modules as a diffusers `MotionAdapter` (float32, eval, frozen).

    Accepts an original-layout file (.safetensors, or a pickle read with `weights_only=True`), a
    diffusers-layout single file, or a diffusers MotionAdapter folder. Never reaches a hub.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(str(path))
    if path.is_dir():
        cfg_path = path / "config.json"
        weights = next((path / n for n in FOLDER_WEIGHTS if (path / n).is_file()), None)
        if not cfg_path.is_file() or weights is None:
            raise WeightsFormatError(f"{path}: folder is not {EXPECTED}; missing config.json or weights")
        config = json.loads(cfg_path.read_text())
        if config.get("_class_name") not in (None, "MotionAdapter"):
            raise WeightsFormatError(
                f"{path}: config.json describes a {config['_class_name']}, not a MotionAdapter"
            )
        config = {k: v for k, v in config.items() if not k.startswith("_")}
        return _adapter_from_state_dict(load_state_dict(weights, torch.float32), str(path), config)
    if path.suffix.lower() not in SAFE_SUFFIXES + PICKLE_SUFFIXES:
        raise WeightsFormatError(f"{path.name}: unsupported file type {path.suffix!r}; expected {EXPECTED}")
    return _adapter_from_state_dict(load_state_dict(path, torch.float32), path.name)


def save_motion_adapter_original(adapter: torch.nn.Module, path: str | os.PathLike) -> Path:
    """Write `adapter` in the original AnimateDiff key layout (.safetensors, or .ckpt/.pt via torch.save).

    A schedule recorded on the adapter (`set_motion_schedule`) goes into the safetensors header; pickles
    have no header, so such an adapter must be written as .safetensors."""
    path = Path(path)
    sd = {k: v.detach().cpu().contiguous() for k, v in diffusers_to_original(adapter.state_dict()).items()}
    schedule = getattr(adapter, "trained_beta_schedule", None)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in SAFE_SUFFIXES:
        from safetensors.torch import save_file

        save_file(sd, str(path), metadata={SCHEDULE_KEY: schedule} if schedule else None)
    elif schedule:
        raise WeightsFormatError(
            f"{path.name}: this motion module was trained on {schedule!r} betas, which only a .safetensors "
            "header can record; save it as .safetensors"
        )
    elif path.suffix.lower() in PICKLE_SUFFIXES:
        torch.save(sd, str(path))
    else:
        raise WeightsFormatError(f"{path.name}: cannot write {path.suffix!r}; use .safetensors or .ckpt")
    return path


def build_tiny_motion_adapter(seed: int = 0, zero_out: bool = True, **overrides) -> MotionAdapter:
    """Seeded tiny MotionAdapter for `tiny.TINY_UNET` (blocks (32, 64), 1 layer per block).

    AnimateDiff zero-initialises every motion module's proj_out, so a fresh adapter is the identity;
    `zero_out=False` keeps a random proj_out so tests can see frames interact. `overrides` change
    `TINY_MOTION` (e.g. `use_motion_mid_block=False, motion_max_seq_length=24` for a v1-style file).
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    adapter = MotionAdapter(**{**TINY_MOTION, **overrides})
    with torch.no_grad():
        for name, p in adapter.named_parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)  # norms away from 1/0: wiring shows
            if zero_out and ".proj_out." in name:
                p.zero_()
    return _finish(adapter)


def _motion_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if isinstance(m, AnimateDiffTransformer3D)]


def inflate_unet(unet: torch.nn.Module, adapter: MotionAdapter) -> UNetMotionModel:
    """UNet2DConditionModel + MotionAdapter -> UNetMotionModel (weights copied; `unet` untouched, the
    adapter is moved to the U-Net's device as diffusers' `from_unet2d` does).

    Works with the shared loaders' U-Net and the ComfyUI bridge's alike (both are UNet2DConditionModel).
    The result is in eval mode and frozen; a trainer unfreezes what it trains.
    """
    n = len(unet.config.down_block_types)
    expand = lambda v: list(v) if isinstance(v, (list, tuple)) else [v] * n  # noqa: E731
    unet_layers = expand(unet.config.layers_per_block)
    adapter_layers = expand(adapter.config.motion_layers_per_block)
    if len(unet.config.down_block_types) != len(adapter.config.block_out_channels) or list(
        unet.config.block_out_channels
    ) != list(adapter.config.block_out_channels):
        raise WeightsFormatError(
            f"motion module for blocks {list(adapter.config.block_out_channels)} does not fit a U-Net with "
            f"blocks {list(unet.config.block_out_channels)} (SD1.5 modules need an SD1.5-family U-Net)"
        )
    if unet_layers != adapter_layers:
        raise WeightsFormatError(
            f"motion module has {adapter_layers} layers per block, the U-Net {unet_layers}"
        )
    if getattr(unet, "encoder_hid_proj", None) is not None or adapter.config.get("conv_in_channels"):
        # diffusers' IP-Adapter projection on the U-Net, or a PIA adapter: from_unet2d handles those
        # (building the model with random weights first, then copying over them).
        with _quiet_diffusers():
            model = UNetMotionModel.from_unet2d(unet, adapter)
        return _inherit_schedule(model.to(device=unet.device).eval().requires_grad_(False), adapter)
    with _quiet_diffusers(), empty_parameters():
        model = UNetMotionModel.from_unet2d(unet, adapter, load_weights=False)
    # What from_unet2d copies, without initialising weights first: the 2D layers from the U-Net and the
    # motion modules from the adapter (same parameter names in both), as copies in the U-Net's dtype.
    sources = unet.state_dict()
    sources.update((k, v) for k, v in adapter.state_dict().items() if ".motion_modules." in k)
    copy = lambda t: t.detach().to(unet.device, unet.dtype if t.is_floating_point() else t.dtype, copy=True)
    sd = {k: copy(sources[k]) for k in model.state_dict() if k in sources}
    # buffers the model computes itself (positional tables) may be absent from both
    assign_weights(model, sd, "motion U-Net", "U-Net + motion module", may_lack=("pos_embed.pe",))
    return _inherit_schedule(model.eval().requires_grad_(False), adapter)


_MISSING = object()


def _bypass(hidden_states, *args, **kwargs):
    """A motion block's forward is `x + f(x)`: without it each frame goes through the 2D U-Net alone."""
    return hidden_states


@contextmanager
def motion_modules_enabled(model: torch.nn.Module, enabled: bool) -> Iterator[torch.nn.Module]:
    """Turn the temporal blocks of `model` off (frame-by-frame U-Net) or back on; restores on exit.

    Nests: the exact per-module state is recorded on entry and put back, also on exceptions.
    """
    blocks = _motion_blocks(model)
    saved = [m.__dict__.get("forward", _MISSING) for m in blocks]
    try:
        for m in blocks:
            if not enabled:
                m.forward = _bypass
            elif m.__dict__.get("forward") is _bypass:
                del m.forward
        yield model
    finally:
        for m, fwd in zip(blocks, saved):
            if fwd is _MISSING:
                m.__dict__.pop("forward", None)
            else:
                m.forward = fwd


@contextmanager
def motion_attention(
    model: torch.nn.Module,
    hooks: Sequence[AttentionHook] = (),
    state: HookState | None = None,
    layers=None,
) -> Iterator[HookState]:
    """Route `model`'s attention through `kernels` (temporal layers: `ops.temporal_attention`), with
    `hooks` composed in; the original processors come back on exit."""
    with attention_hooks(model, hooks, state, layers) as st:
        yield st


def _per_frame(x: torch.Tensor, b: int, f: int, name: str) -> torch.Tensor:
    """[B, ...] -> [(B*F), ...] (repeat per frame); [(B*F), ...] is taken as given per frame."""
    if x.shape[0] == b * f:
        return x
    if x.shape[0] == b:
        return x.repeat_interleave(f, dim=0)
    raise InputError(name, f"batch {b} (per video) or {b * f} (per frame)", f"batch {x.shape[0]}")


def _flatten_residual(r: torch.Tensor, b: int, f: int, name: str) -> torch.Tensor:
    """ControlNet residuals as [B, C, F, h, w] or frame-flattened [(B*F), C, h, w]."""
    if r.ndim == 5:
        if r.shape[0] != b or r.shape[2] != f:
            raise InputError(name, f"[{b}, C, {f}, h, w]", f"{list(r.shape)}")
        return r.permute(0, 2, 1, 3, 4).reshape(b * f, *r.shape[1:2], *r.shape[3:])
    if r.ndim == 4 and r.shape[0] == b * f:
        return r
    raise InputError(name, f"[{b}, C, {f}, h, w] or [{b * f}, C, h, w]", f"{list(r.shape)}")


def run_motion_unet(
    model: torch.nn.Module,
    latents: torch.Tensor,
    t: torch.Tensor | float | int,
    text: torch.Tensor,
    down_block_additional_residuals: Sequence[torch.Tensor] | None = None,
    mid_block_additional_residual: torch.Tensor | None = None,
    hooks: Sequence[AttentionHook] = (),
    state: HookState | None = None,
    use_kernels: bool = False,
    cross_attention_kwargs: dict | None = None,
) -> torch.Tensor:
    """Noise prediction [B, C, F, H, W] for latents [B, C, F, H, W].

    diffusers 0.42's UNetMotionModel folds frames into the batch and repeats only the time embedding,
    so the text must be per frame: [B, L, D] is repeated F times here ([B*F, L, D] is used as given).
    ControlNet residuals may be [B, C, F, h, w] or frame-flattened. `t` is a scalar or [B].
    With `hooks` (or `use_kernels`) attention runs through `kernels` via `motion_attention`.
    """
    if latents.ndim != 5:
        raise InputError("latents", "[B, C, F, H, W]", f"{list(latents.shape)}")
    b, _, f = latents.shape[:3]
    max_len = getattr(model.config, "motion_max_seq_length", None)
    if max_len is not None and f > max_len and not frame_split.is_windowed(model):
        raise InputError(
            "latents", f"at most {max_len} frames (the motion module's positional table)", f"{f}"
        )
    if text.ndim != 3:
        raise InputError("text", "[B, L, D] embeddings", f"{list(text.shape)}")
    text = _per_frame(text, b, f, "text")
    if torch.is_tensor(t) and t.ndim == 1 and t.shape[0] not in (1, b):
        raise InputError("t", f"a scalar or {b} timesteps (one per video)", f"{t.shape[0]}")
    down = None
    if down_block_additional_residuals is not None:
        down = tuple(
            _flatten_residual(r, b, f, f"down_block_additional_residuals[{i}]")
            for i, r in enumerate(down_block_additional_residuals)
        )
    mid = None
    if mid_block_additional_residual is not None:
        mid = _flatten_residual(mid_block_additional_residual, b, f, "mid_block_additional_residual")
    if hooks or use_kernels or state is not None:
        state = state or HookState()
        if state.latent_hw is None:
            state.latent_hw = tuple(latents.shape[-2:])
        ctx = motion_attention(model, hooks, state)
    else:
        ctx = nullcontext()
    with ctx:
        return model(
            latents,
            t,
            encoder_hidden_states=text,
            down_block_additional_residuals=down,
            mid_block_additional_residual=mid,
            cross_attention_kwargs=cross_attention_kwargs,
        ).sample
