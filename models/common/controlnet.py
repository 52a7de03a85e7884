"""Image ControlNets in the formats users have: a diffusers folder, or one file in the original layout.

lllyasviel's `control_v11p_sd15_openpose.pth` / `control_v11f1p_sd15_depth.pth` carry the ControlNet under
`control_model.` (the `_fp16.safetensors` re-packs drop the prefix): `input_blocks` / `middle_block` are the
U-Net encoder in LDM naming, `input_hint_block` is the conditioning encoder (convs at even indices, SiLU
between), `zero_convs.i.0` / `middle_block_out.0` are the zero convolutions. The file carries no config, so
the architecture is read from tensor shapes (like models/common/ldm_layout.py does for U-Nets); head count
and norm groups come from the shipped SD1.5 template. Nothing is fetched from a hub.

Reading LDM -> diffusers keys goes through diffusers' own `convert_controlnet_checkpoint` (the conditioning
encoder we map ourselves, since diffusers hard-codes its default depth); writing is ours and is tested
against that reader.
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import torch

from . import ldm_layout
from .errors import WeightsFormatError, WeightsNotFoundError
from .loading import PICKLE_SUFFIXES, SAFE_SUFFIXES, build_loaded, load_state_dict

CONTROL_PREFIX = "control_model."
PUBLISHED = "https://huggingface.co/lllyasviel/ControlNet-v1-1 (control_v11p_sd15_openpose, control_v11f1p_sd15_depth)"
_WEIGHT_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def strip_control_prefix(state_dict: dict) -> dict:
    """ControlNet tensors without `control_model.`; a full SD+ControlNet checkpoint keeps only its ControlNet."""
    if any(k.startswith(CONTROL_PREFIX) for k in state_dict):
        return {k[len(CONTROL_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(CONTROL_PREFIX)}
    return dict(state_dict)


def _hint_conv_indices(sd: dict) -> list[int]:
    return sorted(
        int(m[1]) for k in sd if (m := re.fullmatch(r"input_hint_block\.(\d+)\.weight", k)) is not None
    )


def infer_controlnet_config(sd: dict, template: dict | None = None) -> dict:
    """diffusers ControlNetModel config for an original-layout ControlNet state dict (prefix stripped).

    Shape-derived fields come from the tensors; head count, norm groups and eps from `template` (SD1.5's).
    SD2.x files (cross-attention width 1024) get SD2's 64-channel heads.
    """
    for key in ("input_blocks.0.0.weight", "input_hint_block.0.weight", "middle_block_out.0.weight"):
        if key not in sd:
            raise ValueError(f"not an original-layout ControlNet: no {key!r} tensor")
    if "label_emb.0.0.weight" in sd:
        raise ValueError("SDXL-style ControlNet (label_emb): only SD1.x/2.x ControlNets are supported")
    base = copy.deepcopy(template or ldm_layout.shipped_config("sd15_unet"))
    cfg = {
        k: base[k]
        for k in (
            "act_fn",
            "attention_head_dim",
            "downsample_padding",
            "flip_sin_to_cos",
            "freq_shift",
            "mid_block_scale_factor",
            "norm_eps",
            "norm_num_groups",
        )
        if k in base
    }
    cfg["in_channels"] = int(sd["input_blocks.0.0.weight"].shape[1])
    input_ids = sorted({int(k.split(".")[1]) for k in sd if k.startswith("input_blocks.")})
    downsamplers = [i for i in input_ids if f"input_blocks.{i}.0.op.weight" in sd]
    levels = len(downsamplers) + 1
    lpb = (len(input_ids) - 1 - len(downsamplers)) // levels
    if lpb < 1 or 1 + levels * lpb + len(downsamplers) != len(input_ids):
        raise ValueError(f"input_blocks {input_ids} do not form a U-Net encoder")
    block_out, down_types, depth = [], [], []
    for level in range(levels):
        first = 1 + level * (lpb + 1)
        block_out.append(int(sd[f"input_blocks.{first}.0.out_layers.3.weight"].shape[0]))
        has_attn = f"input_blocks.{first}.1.proj_in.weight" in sd
        down_types.append("CrossAttnDownBlock2D" if has_attn else "DownBlock2D")
        pat = re.compile(rf"input_blocks\.{first}\.1\.transformer_blocks\.(\d+)\.")
        depth.append(1 + max((int(m[1]) for k in sd if (m := pat.match(k))), default=0))
    cfg.update(block_out_channels=block_out, down_block_types=down_types, layers_per_block=lpb)
    cfg.update(ldm_layout.attention_fields(sd, depth))
    if cfg.get("cross_attention_dim") == 1024:  # SD2.x: heads of 64 channels (diffusers' "head_dim" = heads)
        cfg["attention_head_dim"] = [c // 64 for c in block_out]
    # Conditioning encoder: conv_in, then (same-width conv, stride-2 conv) pairs, then the zero conv_out.
    hint = _hint_conv_indices(sd)
    blocks = hint[1:-1]
    if len(hint) < 2 or len(blocks) % 2 or hint != list(range(0, 2 * len(hint), 2)):
        raise ValueError(f"input_hint_block convs at {hint}: expected even indices 0, 2, ..., 2n")
    cfg["conditioning_channels"] = int(sd["input_hint_block.0.weight"].shape[1])
    cfg["conditioning_embedding_out_channels"] = [int(sd["input_hint_block.0.weight"].shape[0])] + [
        int(sd[f"input_hint_block.{i}.weight"].shape[0]) for i in blocks[1::2]
    ]
    return cfg


def controlnet_from_ldm(state_dict: dict, source: str = "", template: dict | None = None):
    """Build a diffusers ControlNetModel from an original-layout state dict (with or without `control_model.`)."""
    from diffusers import ControlNetModel
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    name = source or "ControlNet checkpoint"
    sd = strip_control_prefix(state_dict)
    try:
        cfg = infer_controlnet_config(sd, template)
    except ValueError as exc:
        raise WeightsFormatError(
            f"{name}: {exc}; expected an SD1.5 ControlNet in the original layout (keys "
            "'control_model.input_blocks...', 'input_hint_block', 'zero_convs', 'middle_block_out')"
        ) from exc
    converted = convert_controlnet_checkpoint(sd, {"layers_per_block": cfg["layers_per_block"]})
    converted = {k: v for k, v in converted.items() if not k.startswith("controlnet_cond_embedding.")}
    hint = _hint_conv_indices(sd)
    roles = ["conv_in"] + [f"blocks.{j}" for j in range(len(hint) - 2)] + ["conv_out"]
    for idx, role in zip(hint, roles):
        for p in ("weight", "bias"):
            converted[f"controlnet_cond_embedding.{role}.{p}"] = sd.get(f"input_hint_block.{idx}.{p}")
    absent = sorted(k for k, v in converted.items() if v is None)
    if absent:
        raise WeightsFormatError(f"{name}: ControlNet tensors missing for {absent[:5]}")
    # Built without random initialisation; the file's tensors become the weights (a missing one raises).
    model = build_loaded(lambda: ControlNetModel.from_config(cfg), converted, "ControlNet", name)
    del state_dict, sd, converted  # a half-precision file's tensors are freed one by one by _finish's cast
    return _finish(model)


def load_controlnet(path: str | os.PathLike):
    """A ControlNet from a diffusers folder (config.json + weights) or one original-layout file."""
    from diffusers import ControlNetModel
    from diffusers.utils import logging as diffusers_logging

    path = Path(path)
    if not path.exists():
        raise WeightsNotFoundError(path.name, [str(path.parent)], PUBLISHED)
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file():
            raise WeightsFormatError(
                f"{path}: a folder without config.json; expected a diffusers ControlNet folder "
                f"(config.json + {_WEIGHT_NAMES[0]}) or a single .safetensors/.pth file"
            )
        cls_name = json.loads(config.read_text()).get("_class_name", "ControlNetModel")
        if cls_name != "ControlNetModel":
            raise WeightsFormatError(f"{path}: config.json describes a {cls_name}, expected ControlNetModel")
        if not any((path / n).is_file() for n in _WEIGHT_NAMES):
            raise WeightsFormatError(f"{path}: no weights; expected {' or '.join(_WEIGHT_NAMES)}")
        diffusers_logging.disable_progress_bar()
        # low_cpu_mem_usage: no random initialisation (diffusers' default with accelerate; relied upon)
        return _finish(
            ControlNetModel.from_pretrained(str(path), local_files_only=True, low_cpu_mem_usage=True)
        )
    if path.suffix.lower() not in SAFE_SUFFIXES + PICKLE_SUFFIXES:
        raise WeightsFormatError(
            f"{path.name}: unsupported ControlNet file type {path.suffix!r}; expected .safetensors or .pth"
        )
    return controlnet_from_ldm(load_state_dict(path, torch.float32), source=str(path))


def controlnet_to_ldm(controlnet, prefix: str = CONTROL_PREFIX) -> dict:
    """diffusers ControlNetModel -> original-layout tensors (contiguous CPU copies), keys under `prefix`."""
    return ldm_layout.to_contiguous(ldm_keys(controlnet, prefix))


def ldm_keys(controlnet, prefix: str = CONTROL_PREFIX) -> dict:
    """The ControlNet's own tensors renamed to the original layout (no copies; works on the meta device)."""
    sd = controlnet.state_dict()
    cfg = dict(controlnet.config)
    shared, own = {}, {}
    n_blocks = len(controlnet.controlnet_cond_embedding.blocks)
    for key, value in sd.items():
        if m := re.fullmatch(r"controlnet_down_blocks\.(\d+)\.(weight|bias)", key):
            own[f"zero_convs.{m[1]}.0.{m[2]}"] = value
        elif m := re.fullmatch(r"controlnet_mid_block\.(weight|bias)", key):
            own[f"middle_block_out.0.{m[1]}"] = value
        elif m := re.fullmatch(
            r"controlnet_cond_embedding\.(conv_in|conv_out|blocks\.(\d+))\.(weight|bias)", key
        ):
            idx = (
                0 if m[1] == "conv_in" else 2 * (n_blocks + 1) if m[1] == "conv_out" else 2 * (int(m[2]) + 1)
            )
            own[f"input_hint_block.{idx}.{m[3]}"] = value
        else:
            shared[key] = value
    unet_keys = ldm_layout.unet_to_ldm(shared, {**cfg, "up_block_types": []})
    out = {k[len(ldm_layout.UNET_PREFIX) :]: v for k, v in unet_keys.items()}
    out.update(own)
    return {prefix + k: v for k, v in out.items()}


def save_controlnet_single_file(controlnet, path: str | os.PathLike, prefix: str = CONTROL_PREFIX) -> Path:
    """Write a ControlNet as one `.safetensors` in the original layout (what lllyasviel's files hold)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(controlnet_to_ldm(controlnet, prefix), str(path))
    return path


def _finish(model):
    if any(p.dtype != torch.float32 for p in model.parameters()):
        model.float()  # (diffusers' .to(dtype) logs a warning on every call)
    return model.eval().requires_grad_(False)
