"""DreaMoving trainer (Feng et al. 2023, arXiv 2312.05107), on the shared trainer (common/training.py).

DreaMoving trains its parts in stages (arXiv v2, "Model Training", Sec. 2.4 in the v2 numbering where
Sec. 2 is the architecture): Content Guider training, long-frame pretraining of the U-Net's motion blocks,
Video ControlNet training, expression fine-tuning. The Video ControlNet and the Content Guider are plug-ins
trained separately on top of the denoising U-Net; this command trains those two:

- `--stage controlnet`: SD1.5 U-Net inflated with AnimateDiff motion modules, all frozen; trainable: the
  Video ControlNet's motion blocks (the image ControlNet too with `--train-controlnet`). Loss: epsilon-
  prediction MSE on noised video latents [B, 4, F, h, w] with the caption and the control frames (the
  ControlNet residuals enter the U-Net as in inference). Output: a Video ControlNet folder
  (`save_video_controlnet`, read back by `load_video_controlnet`).
- `--stage guider`: the frozen SD1.5 U-Net frame by frame (no motion modules: the guider acts on the
  spatial cross-attention layers only, so it is trained on single frames); trainable: the face and the
  clothes IP-Adapter projections and their to_k_ip / to_v_ip. The prompt enters as DreaMoving's
  Z = Attn(Q,K_t,V_t) + α_f Attn(Q,K_f,V_f) + α_c Attn(Q,K_c,V_c) (Sec. 2.3) with α = 1 in training.
  Dropout for classifier-free guidance as IP-Adapter trains (Ye et al. 2023, Sec. 4.1.2): 5 % of the
  samples lose the text, 5 % the image prompts, 5 % both; a dropped image prompt is the adapter's
  unconditional embedding (zero embedding / CLIP features of a zero pixel tensor). Output: two
  IP-Adapter files in the published key layout (`save_ip_adapter`, read back by `load_ip_adapter`).

Long-frame pretraining and expression fine-tuning train the U-Net's own motion blocks; users bring
AnimateDiff modules for that part, so they are not stages here. No official code or hyper-parameters beyond
the paper's text exist; the defaults are ours where not stated (see the README section).

Usage (from the repository root; scales with `accelerate launch -m models.dreamoving.train ...`):

    python -m models.dreamoving.train --stage controlnet --model SD15 --motion-module mm_sd_v15_v2.ckpt \
        --controlnet control_v11p_sd15_openpose --data clips/ --out runs/vcn
    python -m models.dreamoving.train --stage guider --model SD15 --clip-vision image_encoder \
        --data content/ --out runs/guider [--face-adapter ip-adapter-plus-face_sd15.safetensors ...]

Output: OUT/final (video_controlnet/ or face_ip_adapter.safetensors + clothes_ip_adapter.safetensors; EMA
weights when --ema-decay > 0), rewritten at every checkpoint; OUT/checkpoint-N (accelerate state) for
--resume; OUT/log.csv. Every random draw of a micro-batch comes from a generator seeded by (seed, epoch,
batch, process) and clip starts by (seed, epoch, index), so a resumed run continues exactly as the
uninterrupted one (bit-identical on the CPU).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

if (
    __name__ == "__main__"
):  # `python -m models.dreamoving.train`: run inside the pack (scripts/papernodes_bootstrap.py)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from papernodes_bootstrap import run_in_pack

    run_in_pack(__spec__.name)

from ...kernels.dispatch import use_backend
from ...kernels.processor import attention_hooks, attention_modules
from ..common.animatediff import inflate_unet, load_motion_adapter, motion_schedule, run_motion_unet
from ..common.cli import TrainerCli, option
from ..common.errors import InputError, WeightsFormatError
from ..common.image_prompt import (
    RESAMPLER_DIM_HEAD,
    ImageProjection,
    IPAdapter,
    Resampler,
    cross_attention_layers,
    load_clip_vision,
    load_ip_adapter,
    save_ip_adapter,
)
from ..common.loading import load_model_fresh
from ..common.training import (
    MIXED_PRECISION,
    Callbacks,
    LoopSettings,
    Run,
    TextEmbeddingCache,
    TrainingMethod,
    TrainState,
    atomic_write_dir,
    averaged_copy,
    fit,
    make_noise_scheduler,
)
from .content_guider import ContentGuiderHook, ImagePrompt
from .train_data import ContentDataset, ControlClipDataset
from .video_controlnet import (
    CONFIG_NAME,
    VideoControlNet,
    load_video_controlnet,
    save_video_controlnet,
)

STAGES = ("controlnet", "guider")
MOTION_INITS = ("zero", "adapter")
VARIANTS = ("plain", "plus")
CONFIG_FILE = "dreamoving_train.json"
PROMPTS = ("face", "clothes")
MODEL_PUBLISHED = ("an SD1.5 model (e.g. stable-diffusion-v1-5/stable-diffusion-v1-5) as a diffusers folder or "
                   "single .safetensors file")  # fmt: skip
CN, GUIDER, OPT = "stage controlnet", "stage guider", "optimisation"


@dataclass
class TrainConfig:
    """Options of both stages (one command-line flag each); `validate` names the option that is wrong."""

    stage: str = option(help="controlnet: the Video ControlNet's motion blocks; guider: the face/clothes adapters",
                        choices=STAGES)  # fmt: skip
    model: str = option(help="SD1.5 diffusers folder or single .safetensors (frozen)")
    data: str = option(help="clips folder (controlnet) or content folder (guider); layouts in train_data.py")
    out: str = option(help="run folder (checkpoints, log.csv, final/)")
    final_dir: str | None = option(None, "export folder (default OUT/final)")
    motion_module: str | None = option(
        None, "AnimateDiff motion module (mm_sd_v15_v2.ckpt or a MotionAdapter folder)", group=CN
    )
    controlnet: str | None = option(
        None, "image ControlNet (openpose/depth; folder or file) or a saved Video ControlNet folder", group=CN
    )
    motion_init: str = option(
        "zero",
        "new motion blocks: zero (identity at start, AnimateDiff's init) or adapter (copied from the motion module)",
        choices=MOTION_INITS,
        group=CN,
    )
    train_controlnet: bool = option(
        False, "also train the image ControlNet (default: only its motion blocks)", group=CN
    )
    frames: int = option(16, "frames per clip (AnimateDiff's training length)", group=CN)
    stride: int = option(4, "frame stride inside a clip (AnimateDiff's sample_stride)", group=CN)
    control_suffix: str = option(
        "", "control sequence beside <name>.mp4: <name><suffix>/ or <name><suffix>.pose.json", group=CN
    )
    conditioning_scale: float = option(1.0, "ControlNet residual scale during training", group=CN)
    text_dropout: float = option(0.0, "probability of an empty caption", group=CN)
    clip_vision: str | None = option(None, "CLIP vision encoder (folder or .safetensors)", group=GUIDER)
    face_adapter: str | None = option(
        None, "start the face prompt from this IP-Adapter file (e.g. ip-adapter-plus-face_sd15)", group=GUIDER
    )
    clothes_adapter: str | None = option(
        None, "start the clothes prompt from this IP-Adapter file (e.g. ip-adapter-plus_sd15)", group=GUIDER
    )
    adapter_variant: str = option(
        "plus",
        "new adapters: plain (4 tokens) or plus (Resampler, 16 tokens)",
        choices=VARIANTS,
        group=GUIDER,
    )
    num_tokens: int | None = option(
        None, "new adapters' image tokens (default 4 plain / 16 plus)", group=GUIDER
    )
    cond_dropout: float = option(
        0.05, "probability of each of: text, image prompts, both dropped (IP-Adapter: 0.05)", group=GUIDER
    )
    resolution: int = option(512, "square training size in px (short side resized, centre crop)", group=OPT)
    batch_size: int = option(
        1, "clips (controlnet) or images (guider) per process and micro-batch", group=OPT
    )
    grad_accum: int = option(1, "micro-batches per optimizer step", group=OPT)
    max_steps: int = option(10_000, "optimizer steps", group=OPT)
    lr: float = option(1e-4, "AdamW learning rate (IP-Adapter's and AnimateDiff's)", group=OPT)
    weight_decay: float = option(1e-2, "AdamW weight decay (IP-Adapter's)", group=OPT)
    adam_beta1: float = option(0.9, "AdamW beta1", group=OPT)
    adam_beta2: float = option(0.999, "AdamW beta2", group=OPT)
    adam_eps: float = option(1e-8, "AdamW epsilon", group=OPT)
    max_grad_norm: float = option(1.0, "gradient clipping; 0 disables", group=OPT)
    ema_decay: float = option(0.0, "EMA of the trained weights (exported); 0 disables", group=OPT)
    mixed_precision: str = option(
        "no", "autocast precision (fp16/bf16 need a GPU)", choices=MIXED_PRECISION, group=OPT
    )
    gradient_checkpointing: bool = option(
        False, "recompute activations in backward: less memory, slower", group=OPT
    )
    seed: int = option(0, "seed of the data order and of every random draw", group=OPT)
    save_every: int = option(
        500, "checkpoint + export every N optimizer steps; 0 = at the end only", group=OPT
    )
    keep_checkpoints: int = option(2, "newest N checkpoint-N folders kept; 0 = all", group=OPT)
    resume: str | None = option(None, "checkpoint-N folder, 'latest' or 'auto' (latest if any)", group=OPT)
    num_workers: int = option(0, "data loader worker processes", group=OPT)
    cpu: bool = option(False, "train on the CPU even where CUDA is available", group=OPT)

    def validate(self) -> None:
        if self.stage not in STAGES:
            raise InputError("stage", f"one of {STAGES}", repr(self.stage))
        if self.mixed_precision not in MIXED_PRECISION:
            raise InputError("mixed_precision", f"one of {MIXED_PRECISION}", repr(self.mixed_precision))
        if self.motion_init not in MOTION_INITS:
            raise InputError("motion_init", f"one of {MOTION_INITS}", repr(self.motion_init))
        if self.adapter_variant not in VARIANTS:
            raise InputError("adapter_variant", f"one of {VARIANTS}", repr(self.adapter_variant))
        for name in ("resolution", "batch_size", "grad_accum", "frames", "stride"):
            if getattr(self, name) < 1:
                raise InputError(name, "at least 1", str(getattr(self, name)))
        for name in ("max_steps", "save_every", "keep_checkpoints", "num_workers"):
            if getattr(self, name) < 0:
                raise InputError(name, "0 or more", str(getattr(self, name)))
        if self.resolution % 8:
            raise InputError("resolution", "a multiple of 8 (VAE downsampling)", str(self.resolution))
        if not 0 <= self.text_dropout <= 1:
            raise InputError("text_dropout", "a probability in [0, 1]", str(self.text_dropout))
        if not 0 <= self.cond_dropout <= 1 / 3:
            raise InputError(
                "cond_dropout", "a value in [0, 1/3] (applied three times)", str(self.cond_dropout)
            )
        if not 0 <= self.ema_decay < 1:
            raise InputError("ema_decay", "a value in [0, 1)", str(self.ema_decay))
        if self.num_tokens is not None and self.num_tokens < 1:
            raise InputError("num_tokens", "at least 1", str(self.num_tokens))
        required = {"controlnet": ("motion_module", "controlnet"), "guider": ("clip_vision",)}[self.stage]
        for name in required:
            if not getattr(self, name):
                raise InputError(name, f"a path (required by --stage {self.stage})", "nothing")


# ----------------------------------------------------------------------------------------------------
# Trainable modules: forward = the noise prediction, so DDP sees every trainable parameter used in forward


class VideoControlNetStage(nn.Module):
    """The Video ControlNet; the frozen motion U-Net is passed to `forward` (not a submodule, not saved)."""

    def __init__(self, vcn: VideoControlNet, train_controlnet: bool = False):
        super().__init__()
        if vcn.motion_modules is None:
            raise WeightsFormatError("Video ControlNet without motion blocks: nothing to train in this stage")
        self.vcn = vcn
        vcn.requires_grad_(False)
        if train_controlnet:
            vcn.controlnet.requires_grad_(True)
        vcn.motion_modules.requires_grad_(True)

    def forward(self, unet, noisy, t, text, control, conditioning_scale: float = 1.0) -> torch.Tensor:
        """noisy [B, C, F, h, w], t [B], text [B, L, D], control [B*F, 3, H, W] -> eps [B, C, F, h, w]."""
        b, c, f, h, w = noisy.shape
        sample = noisy.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
        down, mid = self.vcn(
            sample, t, text.repeat_interleave(f, dim=0), control, f, conditioning_scale=conditioning_scale
        )
        return run_motion_unet(unet, noisy, t, text, down, mid)


class TrainingGuiderHook(ContentGuiderHook):
    """The Content Guider hook for training: the image tokens change every step (`set_tokens`) and carry
    gradients, so K/V are recomputed at every call instead of cached. Installed once for the whole run
    (`install`), it stays in place through backward, where gradient checkpointing re-runs the layers."""

    def __init__(self, adapters: dict[str, IPAdapter], placeholders: dict[str, torch.Tensor], unet):
        prompts = {n: ImagePrompt(a, placeholders[n], placeholders[n], 1.0) for n, a in adapters.items()}
        super().__init__(prompts, unet, cfg=False)

    def set_tokens(self, tokens: dict[str, torch.Tensor]) -> None:
        for name, t in tokens.items():
            self.prompts[name].tokens = self.prompts[name].uncond_tokens = t

    def install(self, unet) -> ExitStack:
        """Patch `unet`'s attention processors until the returned stack is closed."""
        stack = ExitStack()
        stack.enter_context(attention_hooks(unet, [self]))
        return stack

    def _unique_kv(self, name, prompt, call):
        self._kv_cache.clear()
        return super()._unique_kv(name, prompt, call)


class ContentGuiderStage(nn.Module):
    """The face and clothes IP-Adapters; the frozen 2D U-Net is passed to `forward`."""

    def __init__(self, face: IPAdapter, clothes: IPAdapter):
        super().__init__()
        self.adapters = nn.ModuleDict({"face": face, "clothes": clothes})
        self.adapters.requires_grad_(True)

    def forward(self, unet, noisy, t, text, embeds: dict[str, torch.Tensor], hook=None) -> torch.Tensor:
        """noisy [B, C, h, w], t [B], text [B, L, D], embeds: CLIP features per prompt [B, ...] -> eps.

        `hook`: a `TrainingGuiderHook` already installed on `unet` (needed with gradient checkpointing);
        without one, a hook is installed for this forward only."""
        # with gradients (IPAdapter.project is no_grad)
        tokens = {name: adapter.image_proj(embeds[name]) for name, adapter in self.adapters.items()}
        if hook is not None:
            hook.set_tokens(tokens)
            return unet(noisy, t, encoder_hidden_states=text).sample
        hook = TrainingGuiderHook(dict(self.adapters.items()), tokens, unet)
        with attention_hooks(unet, [hook]):
            return unet(noisy, t, encoder_hidden_states=text).sample


def new_ip_adapter(unet, clip_vision, variant: str = "plus", num_tokens: int | None = None, name: str = ""):
    """A fresh IP-Adapter for `unet` in the published layout, initialised as IP-Adapter does: to_k_ip / to_v_ip
    copy the U-Net's text to_k / to_v; the projection keeps PyTorch's default init (seed beforehand)."""
    modules = attention_modules(unet)
    layers = cross_attention_layers(unet)
    cross = modules[layers[0]].to_k.in_features
    if variant == "plain":
        proj = ImageProjection(clip_vision.config.projection_dim, cross, num_tokens or 4)
    elif variant == "plus":  # IP-Adapter plus SD1.5: dim 768, depth 4, 12 heads of 64, 16 queries, ff x4
        heads = max(1, cross // RESAMPLER_DIM_HEAD)
        proj = Resampler(cross, 4, heads, num_tokens or 16, clip_vision.config.hidden_size, cross)
    else:
        raise InputError("adapter_variant", f"one of {VARIANTS}", repr(variant))
    shapes = [(modules[n].to_k.out_features, cross) for n in layers]
    label = "plus-face" if variant == "plus" and name == "face" else variant
    adapter = IPAdapter(proj, label, [2 * j + 1 for j in range(len(layers))], shapes, source=f"new-{name}")
    with torch.no_grad():
        for j, layer in enumerate(layers):
            adapter.to_k_ip[j].weight.copy_(modules[layer].to_k.weight)
            adapter.to_v_ip[j].weight.copy_(modules[layer].to_v.weight)
    return adapter


# ----------------------------------------------------------------------------------------------------
# The frozen parts and the loss


@dataclass
class Frozen:
    """Everything the loss needs that does not train."""

    unet: nn.Module
    vae: nn.Module
    texts: TextEmbeddingCache
    null_text: torch.Tensor  # [L, D]
    noise_scheduler: object
    weight_dtype: torch.dtype = torch.float32
    clip_vision: nn.Module | None = None
    uncond: dict[str, torch.Tensor] = field(default_factory=dict)  # CLIP features of the dropped prompt
    guider_hook: TrainingGuiderHook | None = None  # installed on `unet` until `close()`
    _installed: ExitStack | None = None

    def close(self) -> None:
        """Restore the U-Net's attention processors (the guider stage patches them for the whole run)."""
        if self._installed is not None:
            self._installed.close()
            self._installed = None


@torch.no_grad()
def _encode_latents(vae, pixels: torch.Tensor, gen: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    dist = vae.encode(pixels.to(next(vae.parameters()).device, dtype)).latent_dist
    eps = torch.randn(dist.mean.shape, generator=gen).to(dist.mean.device, dist.mean.dtype)
    return ((dist.mean + dist.std * eps) * vae.config.scaling_factor).float()


@torch.no_grad()
def clip_features(clip_vision, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
    """{"embeds": image_embeds [B, P], "hidden": penultimate hidden states [B, L, D]} (float32)."""
    p = next(clip_vision.parameters())
    out = clip_vision(pixel_values=pixels.to(p.device, p.dtype), output_hidden_states=True)
    return {"embeds": out.image_embeds.float(), "hidden": out.hidden_states[-2].float()}


def _pick(features: dict[str, torch.Tensor], adapter: IPAdapter) -> torch.Tensor:
    return features["hidden"] if adapter.uses_hidden_states else features["embeds"]


def stage_loss(
    stage: nn.Module, frozen: Frozen, batch: dict, gen: torch.Generator, cfg: TrainConfig
) -> torch.Tensor:
    """The training loss of one micro-batch; every random draw comes from `gen` (CPU), in a fixed order."""
    raw = stage.module if hasattr(stage, "module") else stage
    sched = frozen.noise_scheduler
    device = frozen.null_text.device
    pixels = batch["pixels"]
    b = pixels.shape[0]
    if isinstance(raw, VideoControlNetStage):
        f = pixels.shape[1]
        latents = _encode_latents(frozen.vae, pixels.flatten(0, 1), gen, frozen.weight_dtype)
        latents = latents.unflatten(0, (b, f)).permute(0, 2, 1, 3, 4)  # [B, C, F, h, w]
    else:
        latents = _encode_latents(frozen.vae, pixels, gen, frozen.weight_dtype)
    noise = torch.randn(latents.shape, generator=gen).to(device)
    t = torch.randint(0, sched.config.num_train_timesteps, (b,), generator=gen).to(device)
    u = torch.rand(b, generator=gen).to(device)
    noisy = sched.add_noise(latents, noise, t)
    text = frozen.texts(list(batch["caption"]))
    null = frozen.null_text.expand_as(text)

    if isinstance(raw, VideoControlNetStage):
        text = torch.where((u < cfg.text_dropout)[:, None, None], null, text)
        control = batch["control"].flatten(0, 1).to(device)
        pred = stage(frozen.unet, noisy, t, text, control, cfg.conditioning_scale)
    else:
        p = cfg.cond_dropout  # one draw: u < p text only, p <= u < 2p both, 2p <= u < 3p image only
        drop_text, drop_image = u < 2 * p, (u >= p) & (u < 3 * p)
        text = torch.where(drop_text[:, None, None], null, text)
        embeds = {}
        for name in PROMPTS:
            adapter = raw.adapters[name]
            cond = _pick(clip_features(frozen.clip_vision, batch[name]), adapter)
            uncond = frozen.uncond[name].to(cond.device).expand_as(cond)
            embeds[name] = torch.where(drop_image.view(-1, *[1] * (cond.ndim - 1)), uncond, cond)
        pred = stage(frozen.unet, noisy, t, text, embeds, frozen.guider_hook)

    if sched.config.prediction_type == "v_prediction":
        target = sched.get_velocity(latents, noise, t)
    else:
        target = noise
    return F.mse_loss(pred.float(), target.float())


# ----------------------------------------------------------------------------------------------------
# Set-up per stage


def build_video_controlnet(cfg: TrainConfig, adapter) -> VideoControlNet:
    """A saved Video ControlNet folder is continued; an image ControlNet gets new motion blocks."""
    from ..common.controlnet import load_controlnet

    path = Path(cfg.controlnet).expanduser()
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        vcn = load_video_controlnet(path)
        if vcn.motion_modules is None:
            vcn = VideoControlNet.zero_init(
                vcn.controlnet, max_seq_length=adapter.config.motion_max_seq_length
            )
        return vcn
    cn = load_controlnet(path)
    if cfg.motion_init == "adapter":
        return VideoControlNet.from_motion_adapter(cn, adapter)
    return VideoControlNet.zero_init(
        cn,
        norm_num_groups=adapter.config.motion_norm_num_groups,
        max_seq_length=adapter.config.motion_max_seq_length,
    )


def _check_clip_width(adapter: IPAdapter, clip_vision, name: str) -> None:
    """The adapter must read features of the width this CLIP vision model produces."""
    proj = adapter.image_proj
    first = (
        proj.proj_in
        if isinstance(proj, Resampler)
        else proj.proj
        if isinstance(proj, ImageProjection)
        else proj.proj[0]
    )
    cfg = clip_vision.config
    want, what = (
        (cfg.hidden_size, "hidden states")
        if adapter.uses_hidden_states
        else (cfg.projection_dim, "image embeds")
    )
    if first.in_features != want:
        raise WeightsFormatError(
            f"{name} IP-Adapter ({Path(adapter.source).name}) reads CLIP {what} of width {first.in_features}, "
            f"the CLIP vision model gives {want}; use the image encoder this adapter was trained with"
        )


def setup_stage(cfg: TrainConfig, comps, device, weight_dtype):
    """(trainable stage module, Frozen, dataset) for `cfg.stage`; frozen modules on `device` in `weight_dtype`."""
    texts = TextEmbeddingCache(comps.tokenizer, comps.text_encoder.to(device, weight_dtype), device)
    schedule = {}
    if cfg.stage == "controlnet":
        adapter = load_motion_adapter(cfg.motion_module)
        schedule = motion_schedule(adapter)  # the one the pipeline samples this U-Net on
        if cfg.frames > adapter.config.motion_max_seq_length:
            raise InputError(
                "frames",
                f"at most {adapter.config.motion_max_seq_length} (the motion module's length)",
                str(cfg.frames),
            )
        unet = inflate_unet(comps.unet, adapter)
        torch.manual_seed(
            cfg.seed
        )  # new motion blocks draw their (non-zero) weights from the global generator
        stage = VideoControlNetStage(build_video_controlnet(cfg, adapter).float(), cfg.train_controlnet)
        dataset = ControlClipDataset(
            cfg.data, cfg.frames, cfg.stride, cfg.resolution, cfg.control_suffix, cfg.seed
        )
        clip_vision, uncond = None, {}
    else:
        unet = comps.unet
        clip_vision = load_clip_vision(cfg.clip_vision)
        adapters = {}
        for i, name in enumerate(PROMPTS):
            path = getattr(cfg, f"{name}_adapter")
            if path:
                adapters[name] = load_ip_adapter(path)
            else:
                torch.manual_seed(cfg.seed + i)
                adapters[name] = new_ip_adapter(unet, clip_vision, cfg.adapter_variant, cfg.num_tokens, name)
            adapters[name].bind(unet)  # a file for another base model fails here, naming the file
            _check_clip_width(adapters[name], clip_vision, name)
        stage = ContentGuiderStage(adapters["face"], adapters["clothes"]).float()
        clip_vision.to(device, weight_dtype)
        size = clip_vision.config.image_size
        zero = clip_features(clip_vision, torch.zeros(1, 3, size, size))
        # IP-Adapter's unconditional prompt: zero embedding (plain), CLIP of a zero pixel tensor (hidden states)
        uncond = {
            n: (zero["hidden"] if a.uses_hidden_states else torch.zeros_like(zero["embeds"]))
            for n, a in adapters.items()
        }
        dataset = ContentDataset(cfg.data, cfg.resolution, size)
    unet.to(device, weight_dtype).eval().requires_grad_(False)
    comps.vae.to(device, weight_dtype).eval().requires_grad_(False)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
        if cfg.stage == "controlnet" and cfg.train_controlnet:
            stage.vcn.controlnet.enable_gradient_checkpointing()
    frozen = Frozen(
        unet, comps.vae, texts, texts([""])[0], make_noise_scheduler({**comps.scheduler_config, **schedule}),
        weight_dtype, clip_vision, uncond,
    )  # fmt: skip
    if cfg.stage == "guider":  # patched for the run, so gradient checkpointing re-runs the guided layers
        with torch.no_grad():
            placeholders = {n: a.image_proj(uncond[n]) for n, a in stage.adapters.items()}
        frozen.guider_hook = TrainingGuiderHook(dict(stage.adapters.items()), placeholders, unet)
        frozen._installed = frozen.guider_hook.install(unet)
    return stage, frozen, dataset


@dataclass
class TrainResult:
    final: Path  # the exported folder
    modules: dict[
        str, nn.Module
    ]  # the exported weights in memory: {"video_controlnet"} or {"face", "clothes"}


# ----------------------------------------------------------------------------------------------------
# Training


class DreaMovingTraining(TrainingMethod):
    """One stage's set-up, loss and export for the shared loop."""

    def __init__(self, cfg: TrainConfig):
        super().__init__()
        self.cfg, self.out = cfg, Path(cfg.out).expanduser()
        self.final = Path(cfg.final_dir).expanduser() if cfg.final_dir else self.out / "final"
        self.batch_size = cfg.batch_size
        self.frozen: Frozen | None = None

    def setup(self, run: Run) -> None:
        cfg = self.cfg
        self.run = run
        if run.checkpoint is not None and run.resumed_state.get("stage") != cfg.stage:
            raise InputError("resume", f"a checkpoint of stage {cfg.stage!r}",
                             f"{run.checkpoint} (stage {run.resumed_state.get('stage')!r})")  # fmt: skip
        comps = load_model_fresh(cfg.model, MODEL_PUBLISHED)
        stage, self.frozen, self.dataset = setup_stage(cfg, comps, run.device, run.weight_dtype)
        stage.to(run.device).train()
        optimizer = torch.optim.AdamW(
            [p for p in stage.parameters() if p.requires_grad], lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
            weight_decay=cfg.weight_decay, eps=cfg.adam_eps,
        )  # fmt: skip
        self.module, self.optimizer = run.accelerator.prepare(stage, optimizer)
        self.raw = run.accelerator.unwrap_model(self.module)
        trainable = [(n, p) for n, p in self.raw.named_parameters() if p.requires_grad]
        self.param_names, self.params = [n for n, _ in trainable], [p for _, p in trainable]

    def loss(self, batch: dict, generator: torch.Generator) -> torch.Tensor:
        with self.run.accelerator.autocast(), use_backend("torch"):  # Triton kernels have no backward
            return stage_loss(self.module, self.frozen, batch, generator, self.cfg)

    def describe(self, state: TrainState) -> str:
        cfg, acc = self.cfg, self.run.accelerator
        return (
            f"DreaMoving stage {cfg.stage}: {len(self.dataset)} samples, {acc.num_processes} process(es) on "
            f"{acc.device}, mixed precision {acc.mixed_precision}, effective batch "
            f"{cfg.batch_size * cfg.grad_accum * acc.num_processes}, steps {state.step}->{cfg.max_steps}, "
            f"{sum(p.numel() for p in self.params)} trainable parameters"
        )

    def checkpoint_info(self) -> dict:
        return {"stage": self.cfg.stage, "model": self.cfg.model}

    def exported_modules(self) -> dict[str, nn.Module]:
        """The trained modules (EMA weights when on), frozen copies on the CPU."""
        trained = averaged_copy(self.raw, self.run.ema).cpu()
        if isinstance(trained, VideoControlNetStage):
            return {"video_controlnet": trained.vcn}
        return dict(trained.adapters.items())

    def export(self) -> None:
        cfg, mods = self.cfg, self.exported_modules()

        def write(folder: Path) -> None:
            if "video_controlnet" in mods:
                save_video_controlnet(mods["video_controlnet"], folder / "video_controlnet")
            else:
                for name in PROMPTS:
                    save_ip_adapter(mods[name], folder / f"{name}_ip_adapter.safetensors")
            info = {"method": "DreaMoving (arXiv 2312.05107)", "stage": cfg.stage, "step": self.run.state.step,
                    "weights": "ema" if self.run.ema is not None else "raw", "model": cfg.model}  # fmt: skip
            (folder / "train_info.json").write_text(json.dumps(info, indent=2))

        atomic_write_dir(self.final, write)

    def close(self) -> None:
        if self.frozen is not None:
            self.frozen.close()

    def result(self) -> TrainResult:
        return TrainResult(self.final, self.exported_modules())


def train(
    config: TrainConfig,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train one stage; `progress(step, total, metrics)` after every optimizer step (metrics: loss, lr,
    grad_norm); `should_stop()` polled after every micro-batch ends the run early (a checkpoint and the export
    are still written)."""
    config.validate()
    settings = LoopSettings.from_config(config, config_file=CONFIG_FILE)
    return fit(DreaMovingTraining(config), settings, Callbacks(progress, should_stop))


# ----------------------------------------------------------------------------------------------------
# Command line: one flag per TrainConfig field (common/cli.py)

CLI = TrainerCli(
    TrainConfig,
    train,
    prog="python -m models.dreamoving.train",
    description="DreaMoving (arXiv 2312.05107): train the Video ControlNet or the Content Guider on top of a "
    "frozen SD1.5 (+ AnimateDiff) U-Net.",
    result_line=lambda result: str(result.final),
)
build_parser, config_from_args, main = CLI.parser, CLI.config, CLI.main
