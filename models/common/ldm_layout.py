"""The original (CompVis/LDM) single-file checkpoint layout: read its architecture, and write it.

Single-file checkpoints (`v1-5-pruned.safetensors`, `instruct-pix2pix-00-22000.safetensors`, ...) carry
the U-Net under `model.diffusion_model.`, the VAE under `first_stage_model.` and the CLIP text encoder
under `cond_stage_model.transformer.`. They carry no config, so we infer every shape-derived field from
the tensors and take the rest (head counts, norm groups, schedule) from the configs shipped in
`configs/` -- nothing is fetched from a hub.

Reading LDM -> diffusers keys is done by diffusers' own converters; writing diffusers -> LDM is ours
(diffusers ships that direction only as a script). The round trip is tested against diffusers' reader.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "cond_stage_model.transformer."

CONFIG_DIR = Path(__file__).parent / "configs"


def shipped_config(name: str) -> dict:
    """A config JSON shipped in the pack (`configs/<name>.json`)."""
    return json.loads((CONFIG_DIR / f"{name}.json").read_text())


def split_components(state_dict: dict) -> dict[str, dict]:
    """Split a full LDM checkpoint into {"unet", "vae", "clip"} parts, each keeping its prefix."""
    parts: dict[str, dict] = {"unet": {}, "vae": {}, "clip": {}}
    for key, value in state_dict.items():
        if key.startswith(UNET_PREFIX):
            parts["unet"][key] = value
        elif key.startswith(VAE_PREFIX):
            parts["vae"][key] = value
        elif key.startswith(CLIP_PREFIX):
            parts["clip"][key] = value
    return parts


# ----------------------------------------------------------------------------------------------------
# Architecture inference (LDM keys -> diffusers config)
# ----------------------------------------------------------------------------------------------------


def attention_fields(sd: dict, depth: list[int]) -> dict:
    """Cross-attention width, projection kind, transformer depth and mid block of an LDM-layout U-Net (or
    ControlNet) state dict, read from tensor shapes."""
    cfg: dict = {}
    attn2 = [v for k, v in sd.items() if k.endswith("attn2.to_k.weight")]
    if attn2:
        cfg["cross_attention_dim"] = int(attn2[0].shape[1])
    proj_in = [v for k, v in sd.items() if k.endswith(".proj_in.weight")]
    cfg["use_linear_projection"] = bool(proj_in and proj_in[0].ndim == 2)
    if len(set(depth)) > 1:
        cfg["transformer_layers_per_block"] = depth
    elif depth[0] != 1:
        cfg["transformer_layers_per_block"] = depth[0]
    cfg["mid_block_type"] = (
        "UNetMidBlock2DCrossAttn" if "middle_block.1.proj_in.weight" in sd else "UNetMidBlock2D"
    )
    return cfg


def infer_unet_config(unet_sd: dict, template: dict | None = None) -> dict:
    """diffusers UNet2DConditionModel config for an LDM U-Net state dict (keys with `model.diffusion_model.`).

    Shape-derived fields come from the tensors; head count, norm groups and the like from `template`
    (SD1.5's by default, which is also InstructPix2Pix's).
    """
    sd = {k[len(UNET_PREFIX) :]: v for k, v in unet_sd.items() if k.startswith(UNET_PREFIX)}
    if "input_blocks.0.0.weight" not in sd:
        raise ValueError("not an LDM U-Net: no 'model.diffusion_model.input_blocks.0.0.weight' tensor")
    cfg = copy.deepcopy(template or shipped_config("sd15_unet"))
    conv_in = sd["input_blocks.0.0.weight"]
    cfg["in_channels"] = int(conv_in.shape[1])
    cfg["out_channels"] = int(sd["out.2.weight"].shape[0])
    input_ids = sorted({int(k.split(".")[1]) for k in sd if k.startswith("input_blocks.")})
    downsamplers = [i for i in input_ids if f"input_blocks.{i}.0.op.weight" in sd]
    levels = len(downsamplers) + 1
    layers_per_block = (len(input_ids) - 1 - len(downsamplers)) // levels
    cfg["layers_per_block"] = layers_per_block
    block_out, down_types, depth = [], [], []
    for level in range(levels):
        first = 1 + level * (layers_per_block + 1)
        block_out.append(int(sd[f"input_blocks.{first}.0.out_layers.3.weight"].shape[0]))
        has_attn = f"input_blocks.{first}.1.proj_in.weight" in sd
        down_types.append("CrossAttnDownBlock2D" if has_attn else "DownBlock2D")
        if has_attn:
            pat = re.compile(rf"input_blocks\.{first}\.1\.transformer_blocks\.(\d+)\.")
            depth.append(1 + max(int(m.group(1)) for k in sd if (m := pat.match(k))))
        else:
            depth.append(1)
    cfg["block_out_channels"] = block_out
    cfg["down_block_types"] = down_types
    up_types = []
    for level in range(levels):
        first = level * (layers_per_block + 1)
        has_attn = f"output_blocks.{first}.1.proj_in.weight" in sd
        up_types.append("CrossAttnUpBlock2D" if has_attn else "UpBlock2D")
    cfg["up_block_types"] = up_types
    cfg.update(attention_fields(sd, depth))
    return cfg


def infer_vae_config(vae_sd: dict, template: dict | None = None) -> dict:
    """diffusers AutoencoderKL config for an LDM VAE state dict (keys with `first_stage_model.`)."""
    sd = {k[len(VAE_PREFIX) :]: v for k, v in vae_sd.items() if k.startswith(VAE_PREFIX)}
    if "encoder.conv_in.weight" not in sd:
        raise ValueError("not an LDM VAE: no 'first_stage_model.encoder.conv_in.weight' tensor")
    cfg = copy.deepcopy(template or shipped_config("sd_vae"))
    levels = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("encoder.down."))
    blocks = 1 + max(int(k.split(".")[4]) for k in sd if k.startswith("encoder.down.0.block."))
    cfg["block_out_channels"] = [
        int(sd[f"encoder.down.{i}.block.0.conv2.weight"].shape[0]) for i in range(levels)
    ]
    cfg["layers_per_block"] = blocks
    cfg["down_block_types"] = ["DownEncoderBlock2D"] * levels
    cfg["up_block_types"] = ["UpDecoderBlock2D"] * levels
    cfg["in_channels"] = int(sd["encoder.conv_in.weight"].shape[1])
    cfg["out_channels"] = int(sd["decoder.conv_out.weight"].shape[0])
    cfg["latent_channels"] = int(sd["decoder.conv_in.weight"].shape[1])
    return cfg


def infer_clip_config(clip_sd: dict, template: dict | None = None) -> dict:
    """transformers CLIPTextConfig dict for an SD1.x text encoder state dict (`cond_stage_model.transformer.`)."""
    sd = {k[len(CLIP_PREFIX) :]: v for k, v in clip_sd.items() if k.startswith(CLIP_PREFIX)}
    if "text_model.embeddings.token_embedding.weight" not in sd:
        raise ValueError(
            "not an SD1.x CLIP text encoder: no 'cond_stage_model.transformer.text_model.' tensors"
        )
    cfg = copy.deepcopy(template or shipped_config("clip_l_text"))
    tok = sd["text_model.embeddings.token_embedding.weight"]
    cfg["vocab_size"], cfg["hidden_size"] = int(tok.shape[0]), int(tok.shape[1])
    cfg["max_position_embeddings"] = int(sd["text_model.embeddings.position_embedding.weight"].shape[0])
    cfg["num_hidden_layers"] = 1 + max(
        int(k.split(".")[3]) for k in sd if k.startswith("text_model.encoder.layers.")
    )
    cfg["intermediate_size"] = int(sd["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0])
    return cfg


# ----------------------------------------------------------------------------------------------------
# Writing: diffusers -> LDM keys
# ----------------------------------------------------------------------------------------------------

_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_RESNET = {
    "norm1": "norm1",
    "conv1": "conv1",
    "norm2": "norm2",
    "conv2": "conv2",
    "conv_shortcut": "nin_shortcut",
}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _rename(key: str, table: dict) -> str:
    head, _, tail = key.partition(".")
    for new, old in table.items():
        if key.startswith(new + "."):
            return old + key[len(new) :]
    return key if head not in table else table[head] + "." + tail


def unet_to_ldm(diffusers_sd: dict, config: dict) -> dict:
    """diffusers UNet2DConditionModel state dict -> LDM keys (with `model.diffusion_model.`)."""
    lpb = config["layers_per_block"]
    out: dict = {}
    fixed = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    for key, value in diffusers_sd.items():
        new = None
        for d, ldm in fixed.items():
            if key.startswith(d + "."):
                new = ldm + key[len(d) :]
        if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            idx = 1 + i * (lpb + 1) + j
            new = (
                f"input_blocks.{idx}.0.{_rename(rest, _UNET_RESNET)}"
                if kind == "resnets"
                else f"input_blocks.{idx}.1.{rest}"
            )
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            new = f"input_blocks.{(int(m[1]) + 1) * (lpb + 1)}.0.op.{m[2]}"
        elif m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", key):
            new = f"middle_block.{2 * int(m[1])}.{_rename(m[2], _UNET_RESNET)}"
        elif m := re.match(r"mid_block\.attentions\.0\.(.*)", key):
            new = f"middle_block.1.{m[1]}"
        elif m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
            i, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            idx = i * (lpb + 1) + j
            new = (
                f"output_blocks.{idx}.0.{_rename(rest, _UNET_RESNET)}"
                if kind == "resnets"
                else f"output_blocks.{idx}.1.{rest}"
            )
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            i = int(m[1])
            has_attn = config["up_block_types"][i].startswith("CrossAttn")
            new = f"output_blocks.{i * (lpb + 1) + lpb}.{2 if has_attn else 1}.conv.{m[2]}"
        if new is None:
            raise KeyError(f"no LDM name for U-Net tensor {key!r}")
        out[UNET_PREFIX + new] = value
    return out


def vae_to_ldm(diffusers_sd: dict, config: dict) -> dict:
    """diffusers AutoencoderKL state dict -> LDM keys (with `first_stage_model.`); attention as 1x1 convs."""
    levels = len(config["block_out_channels"])
    out: dict = {}
    for key, value in diffusers_sd.items():
        new = key
        for part in ("encoder", "decoder"):
            new = new.replace(f"{part}.conv_norm_out.", f"{part}.norm_out.")
        if m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            new = f"encoder.down.{m[1]}.block.{m[2]}.{_rename(m[3], _VAE_RESNET)}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
            new = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", key):
            new = f"decoder.up.{levels - 1 - int(m[1])}.block.{m[2]}.{_rename(m[3], _VAE_RESNET)}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
            new = f"decoder.up.{levels - 1 - int(m[1])}.upsample.conv.{m[2]}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", key):
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{_rename(m[3], _VAE_RESNET)}"
        elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.*)", key):
            new = f"{m[1]}.mid.attn_1.{_rename(m[2], _VAE_ATTN)}"
            if value.ndim == 2:  # diffusers keeps attention projections as Linear; LDM as 1x1 Conv2d
                value = value[:, :, None, None]
        out[VAE_PREFIX + new] = value
    return out


def clip_to_ldm(hf_sd: dict) -> dict:
    """transformers CLIPTextModel state dict -> SD1.x layout (`cond_stage_model.transformer.text_model...`).

    transformers 5 dropped the `text_model.` level from CLIPTextModel's own state dict; files keep it.
    """
    return {
        CLIP_PREFIX + ("" if k.startswith("text_model.") else "text_model.") + k: v
        for k, v in hf_sd.items()
        if not k.endswith("position_ids")
    }


def clip_from_ldm(clip_sd: dict, module_keys) -> dict:
    """SD1.x-layout CLIP tensors -> the key style of the given CLIPTextModel (with or without `text_model.`)."""
    keep_level = any(k.startswith("text_model.") for k in module_keys)
    out = {}
    for key, value in clip_sd.items():
        key = key[len(CLIP_PREFIX) :] if key.startswith(CLIP_PREFIX) else key
        if not keep_level and key.startswith("text_model."):
            key = key[len("text_model.") :]
        out[key] = value
    return out


def to_contiguous(sd: dict, dtype: torch.dtype | None = None) -> dict:
    """Detached contiguous CPU copies, as safetensors requires."""
    return {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in sd.items()
    }
