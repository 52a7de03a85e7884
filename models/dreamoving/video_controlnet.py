"""DreaMoving's Video ControlNet: an image ControlNet with motion blocks, and several controls at once.

DreaMoving Sec. 3 (Video ControlNet): "an image ControlNet with motion blocks", driven by pose or depth
sequences. We append one AnimateDiff motion block (temporal self-attention over frames,
`AnimateDiffTransformer3D`) after each ControlNet down block and after its mid block; the motion-mixed
hidden states feed both the zero convolution of that block and the next block. No official code or
weights exist, so two initialisations are offered:

- `zero_init`: every motion block's `proj_out` is zero, so the block is the identity and an untrained
  Video ControlNet gives exactly the image ControlNet's residuals, frame by frame;
- `from_motion_adapter`: the blocks are copied from an AnimateDiff MotionAdapter where the channels match
  (down block i takes the adapter's last motion module of level i, the mid block the adapter's mid
  module), so frames exchange information from the start.

Frames are stacked in the batch as [B*F, C, H, W] (batch-major, as AnimateDiff and diffusers' motion
U-Net do). `control_residuals` sums the residuals of several `ControlSpec`s (pose + depth); the official
demo uses control scales 0.5 for pose and 0.7 for depth (`POSE_SCALE`, `DEPTH_SCALE`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..common.controlnet import PUBLISHED, load_controlnet
from ..common.errors import InputError, WeightsFormatError, WeightsNotFoundError
from ..common.frame_split import is_windowed
from ..common.loading import assign_weights, empty_parameters, load_state_dict

POSE_SCALE = 0.5  # official DreaMoving demo: pose control scale
DEPTH_SCALE = 0.7  # official DreaMoving demo: depth control scale

CONFIG_NAME = "video_controlnet.json"
MOTION_WEIGHTS = "motion_blocks.safetensors"
FORMAT = "papernodes.dreamoving.video_controlnet"
# AnimateDiff's motion-module defaults (diffusers MotionAdapter): 8 heads, 1 layer, 32 positions.
DEFAULT_HEADS, DEFAULT_LAYERS, DEFAULT_GROUPS, DEFAULT_MAX_SEQ = 8, 1, 32, 32

Residuals = tuple[list[torch.Tensor], torch.Tensor]


def motion_block(
    in_channels: int,
    num_attention_heads: int = DEFAULT_HEADS,
    num_layers: int = DEFAULT_LAYERS,
    norm_num_groups: int = DEFAULT_GROUPS,
    max_seq_length: int = DEFAULT_MAX_SEQ,
) -> nn.Module:
    """One AnimateDiff motion module, with the same arguments diffusers' MotionModules uses."""
    from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

    return AnimateDiffTransformer3D(
        in_channels=in_channels,
        num_layers=num_layers,
        norm_num_groups=norm_num_groups,
        cross_attention_dim=None,
        activation_fn="geglu",
        attention_bias=False,
        num_attention_heads=num_attention_heads,
        attention_head_dim=in_channels // num_attention_heads,
        positional_embeddings="sinusoidal",
        num_positional_embeddings=max_seq_length,
    )


def block_channels(controlnet) -> dict[str, int]:
    """Channels of the hidden states after each down block ("down_i") and the mid block ("mid")."""
    chans = list(controlnet.config.block_out_channels)
    return {**{f"down_{i}": c for i, c in enumerate(chans)}, "mid": chans[-1]}


class VideoControlNet(nn.Module):
    """A diffusers ControlNetModel plus one motion block after each down block and after the mid block.

    `motion_config` is {"norm_num_groups", "max_seq_length", "blocks": {key: {"in_channels",
    "num_attention_heads", "num_layers"}}} with keys from `block_channels`; None builds no motion blocks
    (the image ControlNet run frame by frame). Module names contain "motion_modules", so the kernels'
    attention processor treats them as temporal layers.
    """

    def __init__(self, controlnet, motion_config: dict | None = None):
        super().__init__()
        cfg = controlnet.config
        if getattr(controlnet, "class_embedding", None) is not None or cfg.get("addition_embed_type"):
            raise WeightsFormatError(
                "Video ControlNet: class/addition embeddings (SDXL-style ControlNets) are not supported; "
                "expected an SD1.x ControlNet"
            )
        self.controlnet = controlnet
        self.motion_config = json.loads(json.dumps(motion_config)) if motion_config is not None else None
        self.motion_sources: dict[str, str] = {}
        self.motion_modules: nn.ModuleDict | None = None
        if motion_config is not None:
            expected = block_channels(controlnet)
            blocks = motion_config["blocks"]
            if set(blocks) != set(expected):
                raise WeightsFormatError(
                    f"Video ControlNet motion blocks {sorted(blocks)} do not match the ControlNet's "
                    f"blocks {sorted(expected)}"
                )
            modules = {}
            for key, spec in blocks.items():
                if spec["in_channels"] != expected[key]:
                    raise WeightsFormatError(
                        f"Video ControlNet motion block {key!r} has {spec['in_channels']} channels, "
                        f"the ControlNet has {expected[key]} there"
                    )
                modules[key] = motion_block(
                    spec["in_channels"],
                    spec["num_attention_heads"],
                    spec["num_layers"],
                    motion_config["norm_num_groups"],
                    motion_config["max_seq_length"],
                )
            self.motion_modules = nn.ModuleDict(modules)
            param = next(controlnet.parameters())
            if not any(p.is_meta for p in self.motion_modules.parameters()):  # else weights are assigned next
                self.motion_modules.to(device=param.device, dtype=param.dtype)

    # -- construction ---------------------------------------------------------------------------------

    @staticmethod
    def default_motion_config(
        controlnet,
        num_attention_heads: int = DEFAULT_HEADS,
        num_layers: int = DEFAULT_LAYERS,
        norm_num_groups: int = DEFAULT_GROUPS,
        max_seq_length: int = DEFAULT_MAX_SEQ,
    ) -> dict:
        blocks = {
            key: {"in_channels": c, "num_attention_heads": num_attention_heads, "num_layers": num_layers}
            for key, c in block_channels(controlnet).items()
        }
        return {"norm_num_groups": norm_num_groups, "max_seq_length": max_seq_length, "blocks": blocks}

    @classmethod
    def zero_init(cls, controlnet, **motion_kwargs) -> VideoControlNet:
        """Motion blocks whose `proj_out` is zero: identity maps, so the untrained model equals the image one."""
        vcn = cls(controlnet, cls.default_motion_config(controlnet, **motion_kwargs))
        for key in vcn.motion_modules:
            vcn.zero_motion_block(key)
        return vcn.eval()

    def zero_motion_block(self, key: str) -> None:
        """Zero one block's output projection: out = residual + proj_out(...) = residual, exactly."""
        block = self.motion_modules[key]
        with torch.no_grad():
            block.proj_out.weight.zero_()
            block.proj_out.bias.zero_()
        self.motion_sources[key] = "zero-init"

    @classmethod
    def from_motion_adapter(cls, controlnet, adapter) -> VideoControlNet:
        """Copy AnimateDiff motion modules (a diffusers MotionAdapter) where channels match; zero-init the rest.

        Down block i takes `adapter.down_blocks[i].motion_modules[-1]` (the adapter's last module of that
        level, the one nearest the block output); the mid block takes `adapter.mid_block.motion_modules[0]`.
        `motion_sources` records where each block came from.
        """
        acfg = adapter.config
        config = cls.default_motion_config(
            controlnet,
            norm_num_groups=acfg.motion_norm_num_groups,
            max_seq_length=acfg.motion_max_seq_length,
        )
        sources: dict[str, tuple[str, nn.Module]] = {}
        for key, chans in block_channels(controlnet).items():
            if key == "mid":
                src = adapter.mid_block.motion_modules[0] if adapter.mid_block is not None else None
                name = "adapter.mid_block.motion_modules.0"
            else:
                i = int(key.split("_")[1])
                mods = adapter.down_blocks[i].motion_modules if i < len(adapter.down_blocks) else []
                src = mods[-1] if len(mods) else None
                name = f"adapter.down_blocks.{i}.motion_modules.{len(mods) - 1}"
            if src is not None and src.in_channels == chans:
                config["blocks"][key].update(
                    num_attention_heads=src.num_attention_heads, num_layers=len(src.transformer_blocks)
                )
                sources[key] = (name, src)
        vcn = cls(controlnet, config)
        for key in vcn.motion_modules:
            if key in sources:
                name, src = sources[key]
                vcn.motion_modules[key].load_state_dict(src.state_dict())
                vcn.motion_sources[key] = name
            else:
                vcn.zero_motion_block(key)
        return vcn.eval()

    def without_motion(self) -> VideoControlNet:
        """The same ControlNet without motion blocks (frame-by-frame image ControlNet); shares weights."""
        return VideoControlNet(self.controlnet, None)

    @property
    def cond_downscale(self) -> int:
        """Control images are this many times the latent size (the conditioning encoder's stride-2 convs)."""
        return 2 ** (len(self.controlnet.controlnet_cond_embedding.blocks) // 2)

    # -- forward --------------------------------------------------------------------------------------

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        controlnet_cond: torch.Tensor,
        num_frames: int,
        conditioning_scale: float = 1.0,
        guess_mode: bool = False,
        cross_attention_kwargs: dict | None = None,
    ) -> Residuals:
        """(down residuals, mid residual) for `sample` [B*F, C, h, w], as ControlNetModel.forward returns.

        `timestep` may be a number, a 0-d tensor, one per video [B] or one per frame [B*F].
        """
        cn = self.controlnet
        n = sample.shape[0]
        if num_frames < 1 or n % num_frames:
            raise InputError("num_frames", f"a divisor of the batch of {n} frames", str(num_frames))
        long = self.motion_config is not None and num_frames > self.motion_config["max_seq_length"]
        if long and not is_windowed(self.motion_modules):
            raise InputError(
                "num_frames",
                f"at most {self.motion_config['max_seq_length']} frames per window (the motion blocks' "
                "positional table); run longer videos in context windows",
                str(num_frames),
            )
        if controlnet_cond.shape[0] != n:
            raise InputError(
                "controlnet_cond", f"{n} control images (one per frame)", str(controlnet_cond.shape[0])
            )
        if cn.config.controlnet_conditioning_channel_order == "bgr":
            controlnet_cond = torch.flip(controlnet_cond, dims=[1])

        emb = cn.time_embedding(
            cn.time_proj(self._timesteps(timestep, n, num_frames, sample.device)).to(sample.dtype)
        )

        sample = cn.conv_in(sample) + cn.controlnet_cond_embedding(controlnet_cond)
        residuals = [sample]
        for i, block in enumerate(cn.down_blocks):
            if getattr(block, "has_cross_attention", False):
                sample, res = block(
                    hidden_states=sample,
                    temb=emb,
                    encoder_hidden_states=encoder_hidden_states,
                    cross_attention_kwargs=cross_attention_kwargs,
                )
            else:
                sample, res = block(hidden_states=sample, temb=emb)
            # The block's output is its last residual; the motion block mixes frames there (Sec. 3).
            sample = self._motion(f"down_{i}", sample, num_frames)
            residuals += [*res[:-1], sample]

        if cn.mid_block is not None:
            if getattr(cn.mid_block, "has_cross_attention", False):
                sample = cn.mid_block(
                    sample,
                    emb,
                    encoder_hidden_states=encoder_hidden_states,
                    cross_attention_kwargs=cross_attention_kwargs,
                )
            else:
                sample = cn.mid_block(sample, emb)
            sample = self._motion("mid", sample, num_frames)

        down = [zero_conv(r) for r, zero_conv in zip(residuals, cn.controlnet_down_blocks)]
        mid = cn.controlnet_mid_block(sample)

        if guess_mode and not cn.config.global_pool_conditions:
            # diffusers' guess mode: scales 0.1 .. 1.0 from the shallowest to the mid residual
            scales = torch.logspace(-1, 0, len(down) + 1, device=sample.device) * conditioning_scale
            down = [r * s for r, s in zip(down, scales)]
            mid = mid * scales[-1]
        else:
            down = [r * conditioning_scale for r in down]
            mid = mid * conditioning_scale
        if cn.config.global_pool_conditions:
            down = [r.mean(dim=(2, 3), keepdim=True) for r in down]
            mid = mid.mean(dim=(2, 3), keepdim=True)
        return down, mid

    def _motion(self, key: str, hidden: torch.Tensor, num_frames: int) -> torch.Tensor:
        if self.motion_modules is None:
            return hidden
        return self.motion_modules[key](hidden, num_frames=num_frames)

    @staticmethod
    def _timesteps(timestep, n: int, num_frames: int, device: torch.device) -> torch.Tensor:
        if not torch.is_tensor(timestep):
            dtype = torch.float64 if isinstance(timestep, float) else torch.int64
            if device.type == "mps" and dtype == torch.float64:
                dtype = torch.float32
            timestep = torch.tensor([timestep], dtype=dtype, device=device)
        timestep = timestep.reshape(-1).to(device)
        if timestep.numel() not in (1, n):
            if timestep.numel() * num_frames != n:
                raise InputError("timestep", f"1, {n // num_frames} or {n} values", str(timestep.numel()))
            timestep = timestep.repeat_interleave(num_frames)
        return timestep.expand(n)


# ----------------------------------------------------------------------------------------------------
# Save / load
# ----------------------------------------------------------------------------------------------------


def save_video_controlnet(vcn: VideoControlNet, folder: str | os.PathLike) -> Path:
    """A diffusers ControlNet folder + `motion_blocks.safetensors` + `video_controlnet.json`."""
    from safetensors.torch import save_file

    folder = Path(folder)
    vcn.controlnet.save_pretrained(str(folder), safe_serialization=True)
    meta = {"format": FORMAT, "version": 1, "motion": vcn.motion_config, "sources": vcn.motion_sources}
    if vcn.motion_modules is not None:
        sd = {k: v.detach().cpu().contiguous() for k, v in vcn.motion_modules.state_dict().items()}
        save_file(sd, str(folder / MOTION_WEIGHTS))
    (folder / CONFIG_NAME).write_text(json.dumps(meta, indent=2))
    return folder


def load_video_controlnet(path: str | os.PathLike) -> VideoControlNet:
    """A saved Video ControlNet folder; a plain image ControlNet (folder or file) becomes a zero-init one."""
    path = Path(path)
    if not path.exists():
        raise WeightsNotFoundError(path.name, [str(path.parent)], PUBLISHED)
    meta_path = path / CONFIG_NAME
    if not (path.is_dir() and meta_path.is_file()):
        return VideoControlNet.zero_init(load_controlnet(path))
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise WeightsFormatError(f"{meta_path}: not valid JSON ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise WeightsFormatError(f"{meta_path}: expected format {FORMAT!r}, found {meta.get('format')!r}")
    controlnet = load_controlnet(path)
    with empty_parameters():  # the motion blocks' weights come from MOTION_WEIGHTS: no random initialisation
        vcn = VideoControlNet(controlnet, meta.get("motion"))
    if vcn.motion_modules is not None:
        weights = path / MOTION_WEIGHTS
        if not weights.is_file():
            raise WeightsFormatError(
                f"{path}: {CONFIG_NAME} lists motion blocks but {MOTION_WEIGHTS} is missing"
            )
        what = f"motion blocks (as {CONFIG_NAME} lists them)"
        assign_weights(vcn.motion_modules, load_state_dict(weights, torch.float32), what, str(weights))
        vcn.motion_modules.to(device=next(controlnet.parameters()).device, dtype=torch.float32)
    vcn.motion_sources = dict(meta.get("sources") or {})
    return vcn.eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------------
# Several controls
# ----------------------------------------------------------------------------------------------------


@dataclass
class ControlSpec:
    """One control sequence: a (Video) ControlNet, its frames [F, 3, H, W] in 0..1, strength and range.

    `start_percent`/`end_percent` are fractions of the sampling run (0 = first step); the control acts
    while start <= step_fraction <= end. A plain ControlNetModel runs frame by frame.
    """

    controlnet: nn.Module
    frames: torch.Tensor
    scale: float = 1.0
    start_percent: float = 0.0
    end_percent: float = 1.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        f = self.frames
        if not torch.is_tensor(f) or f.ndim != 4:
            raise InputError("control frames", "a tensor [F, 3, H, W]", _describe(f))
        if f.shape[0] == 0:
            raise InputError("control frames", "at least one frame", "0 frames")
        if f.shape[1] != 3:
            raise InputError(
                "control frames", "3-channel (RGB) images [F, 3, H, W]", f"{f.shape[1]} channels"
            )
        if not 0.0 <= self.start_percent <= self.end_percent <= 1.0:
            raise InputError(
                "start_percent/end_percent",
                "0 <= start <= end <= 1",
                f"{self.start_percent}/{self.end_percent}",
            )

    def active(self, step_fraction: float) -> bool:
        return self.scale != 0 and self.start_percent <= step_fraction <= self.end_percent

    def video_controlnet(self) -> VideoControlNet:
        cn = self.controlnet
        return cn if isinstance(cn, VideoControlNet) else VideoControlNet(cn, None)


def _describe(x) -> str:
    return f"shape {list(x.shape)}" if torch.is_tensor(x) else type(x).__name__


def control_residuals(
    specs: Sequence[ControlSpec],
    sample: torch.Tensor,
    t: torch.Tensor | float | int,
    step_fraction: float,
    text: torch.Tensor,
    num_frames: int,
    frame_indices: Sequence[int] | None = None,
) -> Residuals | None:
    """Summed (down, mid) residuals of all active controls for `sample` [B*F, C, h, w]; None if none act.

    `text` is [B, L, D] (repeated per frame) or [B*F, L, D]. `frame_indices` selects which frames of the
    control sequences this call covers (a sliding context window); by default all, which must then be
    `num_frames`. Control images are resized to the latent size times the ControlNet's downscale.
    """
    specs = list(specs)
    for spec in specs:
        spec.validate()
    lengths = [int(s.frames.shape[0]) for s in specs]
    for i, length in enumerate(lengths[1:], start=1):
        if length != lengths[0]:
            raise InputError(
                "control frames",
                f"control sequences of equal length (control 1 has {lengths[0]} frames)",
                f"control {i + 1} with {length} frames",
            )
    if frame_indices is None:
        if lengths and lengths[0] != num_frames:
            raise InputError(
                "control frames", f"{num_frames} frames (the video length)", f"{lengths[0]} frames"
            )
        index = None
    else:
        index = torch.as_tensor(list(frame_indices), dtype=torch.long)
        if index.numel() != num_frames:
            raise InputError("frame_indices", f"{num_frames} indices", str(index.numel()))
        if lengths and (index.min() < 0 or index.max() >= lengths[0]):
            raise InputError("frame_indices", f"indices in 0..{lengths[0] - 1}", str(index.tolist()))
    n, _, h, w = sample.shape
    if num_frames < 1 or n % num_frames:
        raise InputError("num_frames", f"a divisor of the batch of {n} frames", str(num_frames))
    videos = n // num_frames
    if text.shape[0] == videos and videos != n:
        text = text.repeat_interleave(num_frames, dim=0)
    elif text.shape[0] != n:
        raise InputError("text", f"{videos} or {n} text embeddings", str(text.shape[0]))

    total: Residuals | None = None
    for spec in specs:
        if not spec.active(step_fraction):
            continue
        vcn = spec.video_controlnet()
        frames = spec.frames if index is None else spec.frames[index.to(spec.frames.device)]
        frames = frames.to(device=sample.device, dtype=sample.dtype)
        size = (h * vcn.cond_downscale, w * vcn.cond_downscale)
        if tuple(frames.shape[-2:]) != size:
            frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
        cond = frames.repeat(videos, 1, 1, 1)  # batch-major: video b holds frames b*F .. b*F+F-1
        down, mid = vcn(sample, t, text, cond, num_frames, conditioning_scale=spec.scale)
        if total is None:
            total = (down, mid)
        else:
            total = ([a + b for a, b in zip(total[0], down)], total[1] + mid)
    return total
