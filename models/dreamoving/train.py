"""DreaMoving trainer (Feng et al. 2023, arXiv 2312.05107), built on accelerate.

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

import argparse
import copy
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

if __name__ == "__main__" and __package__ == "models.dreamoving":
    # `python -m models.dreamoving.train` from the repository root: `models` is then the top-level package and
    # the pack-level `kernels` is out of reach of relative imports, so run this module inside the pack's
    # package (registered without executing the ComfyUI entry point, as tests/conftest.py does).
    import types

    if "papernodes" not in sys.modules:
        _pkg = types.ModuleType("papernodes")
        _pkg.__path__ = [str(Path(__file__).resolve().parents[2])]
        sys.modules["papernodes"] = _pkg
    from papernodes.models.dreamoving.train import main as _main

    sys.exit(_main())

from ...kernels.dispatch import use_backend
from ...kernels.processor import attention_modules, attention_hooks
from ..colorize.train import EMA, TextEmbeddingCache, TrainProgress, load_model_fresh, make_noise_scheduler
from ..common.errors import InputError, PaperNodesError, WeightsFormatError
from ..common.training_log import open_csv_log
from ..swiftbrush.train import make_accelerator, resolve_resume
from .content_guider import ContentGuiderHook, ImagePrompt
from .ip_adapter import (
    RESAMPLER_DIM_HEAD,
    ImageProjection,
    IPAdapter,
    Resampler,
    cross_attention_layers,
    load_clip_vision,
    load_ip_adapter,
    save_ip_adapter,
)
from .motion import inflate_unet, load_motion_adapter, run_motion_unet
from .train_data import ContentDataset, ControlClipDataset
from .video_controlnet import (
    CONFIG_NAME,
    VideoControlNet,
    load_video_controlnet,
    save_video_controlnet,
)

STAGES = ("controlnet", "guider")
MIXED_PRECISION = ("no", "fp16", "bf16")
MOTION_INITS = ("zero", "adapter")
VARIANTS = ("plain", "plus")
CONFIG_FILE = "dreamoving_train.json"
PROMPTS = ("face", "clothes")


@dataclass
class TrainConfig:
    """Options of both stages; `validate` names the option that is wrong."""

    stage: str  # "controlnet" | "guider"
    model: str  # SD1.5 diffusers folder or single file
    data: str  # clips folder (controlnet) or content folder (guider); layouts in train_data.py
    out: str
    final_dir: str | None = None  # default OUT/final
    # stage controlnet
    motion_module: str | None = None  # AnimateDiff motion module (original file or MotionAdapter folder)
    controlnet: str | None = None  # image ControlNet (folder/file) or a saved Video ControlNet folder
    motion_init: str = (
        "zero"  # new motion blocks: "zero" (identity, AnimateDiff's init) or "adapter" (copied)
    )
    train_controlnet: bool = False  # also train the image ControlNet (default: only its motion blocks)
    frames: int = 16  # frames per clip (AnimateDiff's training length)
    stride: int = 4  # frame stride inside a clip (AnimateDiff's sample_stride)
    control_suffix: str = (
        ""  # control sequence beside <name>.mp4: <name><suffix>/ or <name><suffix>.pose.json
    )
    conditioning_scale: float = 1.0  # ControlNet residual scale during training
    text_dropout: float = 0.0  # controlnet stage: captions replaced by "" with this probability
    # stage guider
    clip_vision: str | None = None  # CLIP vision encoder (folder or .safetensors)
    face_adapter: str | None = None  # start from this IP-Adapter file (e.g. ip-adapter-plus-face_sd15)
    clothes_adapter: str | None = None  # start from this IP-Adapter file (e.g. ip-adapter-plus_sd15)
    adapter_variant: str = "plus"  # new adapters: "plain" (4 tokens) or "plus" (Resampler, 16 tokens)
    num_tokens: int | None = None  # new adapters' image tokens (default 4 plain / 16 plus, IP-Adapter's)
    cond_dropout: float = 0.05  # IP-Adapter: 5 % text, 5 % image, 5 % both
    # common
    resolution: int = 512  # px, square (short side resized, centre crop)
    batch_size: int = 1  # clips (controlnet) or images (guider) per process and micro-batch
    grad_accum: int = 1
    max_steps: int = 10_000  # optimizer steps
    lr: float = 1e-4  # IP-Adapter's and AnimateDiff's rate
    weight_decay: float = 1e-2  # IP-Adapter's AdamW weight decay
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0  # 0 disables clipping
    ema_decay: float = 0.0  # EMA of the trained weights; 0 disables
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    seed: int = 0
    save_every: int = 500  # checkpoint + export every N steps (and at the end); 0 = end only
    keep_checkpoints: int = 2  # newest checkpoint-N folders kept; 0 = all
    resume: str | None = None  # checkpoint-N folder, "latest" or "auto"
    num_workers: int = 0
    cpu: bool = False

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


def micro_generator(seed: int, epoch: int, batch: int, process: int = 0) -> torch.Generator:
    return torch.Generator("cpu").manual_seed(
        (int(seed) * 1_000_003 + int(epoch) * 100_019 + int(batch) * 1_009 + int(process)) % 2**63
    )


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
    from .controlnet import load_controlnet

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
    if cfg.stage == "controlnet":
        adapter = load_motion_adapter(cfg.motion_module)
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
        unet, comps.vae, texts, texts([""])[0], make_noise_scheduler(comps.scheduler_config),
        weight_dtype, clip_vision, uncond,
    )  # fmt: skip
    if cfg.stage == "guider":  # patched for the run, so gradient checkpointing re-runs the guided layers
        with torch.no_grad():
            placeholders = {n: a.image_proj(uncond[n]) for n, a in stage.adapters.items()}
        frozen.guider_hook = TrainingGuiderHook(dict(stage.adapters.items()), placeholders, unet)
        frozen._installed = frozen.guider_hook.install(unet)
    return stage, frozen, dataset


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, processes: int = 1, rank: int = 0):
    """This process's index batches of one epoch: a (seed, epoch) permutation cut into global batches of
    batch_size * processes; a last global batch too small to give every process an item is dropped."""
    g = torch.Generator().manual_seed(int(seed) * 100_003 + int(epoch))
    perm = torch.randperm(n, generator=g).tolist()
    step = batch_size * processes
    out = []
    for i in range(0, n, step):
        chunk = perm[i : i + step]
        if len(chunk) < processes:
            break
        per = -(-len(chunk) // processes)
        out.append(chunk[rank * per : (rank + 1) * per])
    return [b for b in out if b]


def _collate(items: list[dict]) -> dict:
    out = {}
    for k in items[0]:
        vals = [it[k] for it in items]
        out[k] = torch.stack(vals) if torch.is_tensor(vals[0]) else vals
    return out


@dataclass
class TrainResult:
    final: Path  # the exported folder
    modules: dict[
        str, nn.Module
    ]  # the exported weights in memory: {"video_controlnet"} or {"face", "clothes"}


# ----------------------------------------------------------------------------------------------------
# Training


def train(
    config: TrainConfig,
    progress: Callable[[int, int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train one stage; `progress(step, total, loss)` after every optimizer step, `should_stop()` polled there
    too (a checkpoint and the export are still written)."""
    from accelerate.utils import set_seed

    cfg = config
    cfg.validate()
    out = Path(cfg.out).expanduser()
    final_dir = Path(cfg.final_dir).expanduser() if cfg.final_dir else out / "final"
    ckpt = resolve_resume(cfg, out)
    if ckpt is not None:
        saved = json.loads((ckpt / "trainer_state.json").read_text())
        if saved.get("stage") != cfg.stage:
            raise InputError(
                "resume", f"a checkpoint of stage {cfg.stage!r}", f"{ckpt} (stage {saved.get('stage')!r})"
            )

    accelerator = make_accelerator(cfg.mixed_precision, out, cfg.cpu)
    is_main, device = accelerator.is_main_process, accelerator.device
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(
        accelerator.mixed_precision, torch.float32
    )
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG_FILE).write_text(json.dumps(asdict(cfg), indent=2))
    set_seed(cfg.seed)

    comps = load_model_fresh(cfg.model)
    stage, frozen, dataset = setup_stage(cfg, comps, device, weight_dtype)
    stage.to(device).train()
    trainable = [(n, p) for n, p in stage.named_parameters() if p.requires_grad]
    names = [n for n, _ in trainable]
    optimizer = torch.optim.AdamW(
        [p for _, p in trainable], lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
        weight_decay=cfg.weight_decay, eps=cfg.adam_eps,
    )  # fmt: skip
    stage, optimizer = accelerator.prepare(stage, optimizer)
    raw = accelerator.unwrap_model(stage)
    params = [p for p in raw.parameters() if p.requires_grad]
    ema = EMA(params, cfg.ema_decay) if cfg.ema_decay > 0 else None
    state = TrainProgress()
    accelerator.register_for_checkpointing(state)
    if ema is not None:
        accelerator.register_for_checkpointing(ema)
    if ckpt is not None:
        accelerator.load_state(str(ckpt))
        if is_main:
            print(f"resumed from {ckpt} at step {state.step}", flush=True)

    def exported_modules() -> dict[str, nn.Module]:
        copy_ = copy.deepcopy(raw).cpu()
        if ema is not None:
            lookup = dict(copy_.named_parameters())
            with torch.no_grad():
                for n, s in zip(names, ema.shadow):
                    lookup[n].copy_(s)
        copy_.eval().requires_grad_(False)
        if isinstance(copy_, VideoControlNetStage):
            return {"video_controlnet": copy_.vcn}
        return dict(copy_.adapters.items())

    def export() -> dict[str, nn.Module]:
        mods = exported_modules()
        tmp = final_dir.with_name(final_dir.name + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        if "video_controlnet" in mods:
            save_video_controlnet(mods["video_controlnet"], tmp / "video_controlnet")
        else:
            for name in PROMPTS:
                save_ip_adapter(mods[name], tmp / f"{name}_ip_adapter.safetensors")
        info = {"method": "DreaMoving (arXiv 2312.05107)", "stage": cfg.stage, "step": state.step,
                "weights": "ema" if ema is not None else "raw", "model": cfg.model}  # fmt: skip
        (tmp / "train_info.json").write_text(json.dumps(info, indent=2))
        if final_dir.exists():
            shutil.rmtree(final_dir)
        tmp.rename(final_dir)
        return mods

    def save_checkpoint() -> None:
        path = out / f"checkpoint-{state.step}"
        accelerator.save_state(str(path))
        if is_main:
            (path / "trainer_state.json").write_text(
                json.dumps({**state.state_dict(), "stage": cfg.stage, "model": cfg.model}, indent=2)
            )
            if cfg.keep_checkpoints:
                ckpts = sorted(
                    (p for p in out.glob("checkpoint-*") if p.name.split("-", 1)[1].isdigit()),
                    key=lambda p: int(p.name.split("-", 1)[1]),
                )
                for old in ckpts[: -cfg.keep_checkpoints]:
                    shutil.rmtree(old, ignore_errors=True)
            export()
        accelerator.wait_for_everyone()

    log_path = out / "log.csv"
    log_file = writer = None
    if is_main:
        header = ["step", "loss", "lr", "grad_norm", "elapsed_s"]
        log_file, writer = open_csv_log(log_path, ckpt is not None, header)
        print(
            f"DreaMoving stage {cfg.stage}: {len(dataset)} samples, {accelerator.num_processes} process(es) on "
            f"{device}, mixed precision {accelerator.mixed_precision}, effective batch "
            f"{cfg.batch_size * cfg.grad_accum * accelerator.num_processes}, steps {state.step}->{cfg.max_steps}, "
            f"{sum(p.numel() for p in params)} trainable parameters",
            flush=True,
        )

    total, start = cfg.max_steps, time.time()
    last_saved = state.step if ckpt is not None else -1
    rank, procs = accelerator.process_index, accelerator.num_processes
    micro, micro_losses, stopped = 0, [], False
    try:
        while state.step < total and not stopped:
            dataset.set_epoch(state.epoch)
            batches = epoch_batches(len(dataset), cfg.batch_size, cfg.seed, state.epoch, procs, rank)
            if not batches:
                raise InputError("data", f"at least {procs} samples (one per process)", f"{len(dataset)}")
            loader = DataLoader(
                dataset,
                batch_sampler=batches[state.batch_in_epoch :],
                num_workers=cfg.num_workers,
                collate_fn=_collate,
            )
            for batch in loader:
                gen = micro_generator(cfg.seed, state.epoch, state.batch_in_epoch, rank)
                state.batch_in_epoch += 1
                micro += 1
                sync = micro == cfg.grad_accum
                with accelerator.no_sync(stage) if not sync else nullcontext():
                    with accelerator.autocast(), use_backend("torch"):  # Triton kernels have no backward
                        loss = stage_loss(stage, frozen, batch, gen, cfg)
                    accelerator.backward(loss / cfg.grad_accum)
                micro_losses.append(loss.detach())
                if not sync:
                    continue
                if cfg.max_grad_norm > 0:
                    grad_norm = float(accelerator.clip_grad_norm_(params, cfg.max_grad_norm))
                else:
                    grad_norm = float(
                        torch.norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
                    )
                lr = optimizer.param_groups[0]["lr"]
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.step(params)
                state.step += 1
                micro = 0
                step_loss = torch.stack(micro_losses).mean()
                micro_losses.clear()
                if procs > 1:
                    step_loss = accelerator.reduce(step_loss, reduction="mean")
                step_loss = float(step_loss)
                if is_main:
                    elapsed = time.time() - start
                    print(f"step {state.step}/{total} loss {step_loss:.6f} ({elapsed:.1f}s)", flush=True)
                    writer.writerow(
                        [state.step, f"{step_loss:.8g}", f"{lr:.6e}", f"{grad_norm:.6g}", f"{elapsed:.2f}"]
                    )
                    log_file.flush()
                if progress is not None:
                    progress(state.step, total, step_loss)
                if cfg.save_every and state.step % cfg.save_every == 0 and state.step < total:
                    save_checkpoint()
                    last_saved = state.step
                if state.step >= total:
                    break
                if should_stop is not None and should_stop():
                    stopped = True
                    if is_main:
                        print(f"stopped at step {state.step}", flush=True)
                    break
            else:
                state.epoch += 1
                state.batch_in_epoch = 0
        if last_saved != state.step:
            save_checkpoint()
        elif is_main and not final_dir.is_dir():
            export()
    finally:
        frozen.close()
        if log_file is not None:
            log_file.close()

    modules = exported_modules()
    accelerator.wait_for_everyone()
    if is_main:
        print(f"saved {final_dir}", flush=True)
    accelerator.free_memory()
    return TrainResult(final_dir, modules)


# ----------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig(stage="controlnet", model="", data="", out="")
    p = argparse.ArgumentParser(
        prog="python -m models.dreamoving.train",
        description="DreaMoving (arXiv 2312.05107): train the Video ControlNet or the Content Guider on top of "
        "a frozen SD1.5 (+ AnimateDiff) U-Net.",
    )
    a = p.add_argument
    a(
        "--stage",
        required=True,
        choices=STAGES,
        help="controlnet: Video ControlNet motion blocks; guider: face/clothes adapters",
    )
    a("--model", required=True, help="SD1.5 diffusers folder or single .safetensors (frozen)")
    a("--data", required=True, help="clips folder (controlnet) or content folder (guider); see the README")
    a("--out", required=True, help="run folder (checkpoints, log.csv, final/)")
    a("--final-dir", default=None, help="export folder (default OUT/final)")
    g = p.add_argument_group("stage controlnet")
    g.add_argument(
        "--motion-module",
        default=None,
        help="AnimateDiff motion module (mm_sd_v15_v2.ckpt or MotionAdapter folder)",
    )
    g.add_argument(
        "--controlnet",
        default=None,
        help="image ControlNet (openpose/depth) or a saved Video ControlNet folder",
    )
    g.add_argument(
        "--motion-init",
        choices=MOTION_INITS,
        default=d.motion_init,
        help="new motion blocks: zero (identity at start) or adapter (copied from the motion module)",
    )
    g.add_argument(
        "--train-controlnet", action="store_true", help="also train the image ControlNet's weights"
    )
    g.add_argument("--frames", type=int, default=d.frames, help="frames per clip (16)")
    g.add_argument("--stride", type=int, default=d.stride, help="frame stride in a clip (4)")
    g.add_argument(
        "--control-suffix",
        default=d.control_suffix,
        help="control beside <name>.mp4: <name><suffix>/ or .pose.json",
    )
    g.add_argument(
        "--conditioning-scale",
        type=float,
        default=d.conditioning_scale,
        help="ControlNet scale in training (1.0)",
    )
    g.add_argument("--text-dropout", type=float, default=d.text_dropout, help="empty-caption probability (0)")
    g = p.add_argument_group("stage guider")
    g.add_argument("--clip-vision", default=None, help="CLIP vision encoder (folder or .safetensors)")
    g.add_argument("--face-adapter", default=None, help="start the face prompt from this IP-Adapter file")
    g.add_argument(
        "--clothes-adapter", default=None, help="start the clothes prompt from this IP-Adapter file"
    )
    g.add_argument(
        "--adapter-variant", choices=VARIANTS, default=d.adapter_variant, help="new adapters' projection"
    )
    g.add_argument(
        "--num-tokens", type=int, default=None, help="new adapters' image tokens (4 plain / 16 plus)"
    )
    g.add_argument(
        "--cond-dropout", type=float, default=d.cond_dropout, help="each of: text, image, both dropped (0.05)"
    )
    g = p.add_argument_group("optimisation")
    g.add_argument("--resolution", type=int, default=d.resolution, help="square training size in px (512)")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="per process and micro-batch")
    g.add_argument("--grad-accum", type=int, default=d.grad_accum)
    g.add_argument("--max-steps", type=int, default=d.max_steps, help="optimizer steps")
    g.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate (1e-4)")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay)
    g.add_argument("--max-grad-norm", type=float, default=d.max_grad_norm, help="0 disables clipping")
    g.add_argument(
        "--ema-decay", type=float, default=d.ema_decay, help="EMA of the trained weights; 0 disables"
    )
    g.add_argument("--mixed-precision", choices=MIXED_PRECISION, default=d.mixed_precision)
    g.add_argument("--gradient-checkpointing", action="store_true")
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument(
        "--save-every", type=int, default=d.save_every, help="checkpoint + export every N steps; 0 = end only"
    )
    g.add_argument("--keep-checkpoints", type=int, default=d.keep_checkpoints, help="newest N kept; 0 = all")
    g.add_argument("--resume", default=None, help="checkpoint-N folder, 'latest' or 'auto'")
    g.add_argument("--num-workers", type=int, default=d.num_workers)
    g.add_argument("--cpu", action="store_true", help="train on the CPU even if CUDA is available")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    fields = TrainConfig.__dataclass_fields__
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights are local files; never reach a hub
    args = build_parser().parse_args(argv)
    try:
        result = train(config_from_args(args))
    except (PaperNodesError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result.final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
