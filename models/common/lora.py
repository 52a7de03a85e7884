"""Fuse a LoRA file (e.g. LCM-LoRA) into copies of a model's U-Net / text encoder.

Formats: kohya-style (`lora_unet_<module_path_with_underscores>.lora_down.weight` / `.lora_up.weight` /
`.alpha`, `lora_te_...` for the text encoder; what LCM-LoRA and most SD1.5 LoRAs ship) and PEFT/diffusers
style (`unet.<module.path>.lora_A.weight` / `.lora_B.weight`). Fusing adds
strength * alpha / rank * (up @ down) to each weight. The input components are never modified: the
result holds deep copies of the patched modules, so a cached model shared by other nodes stays clean.
"""

from __future__ import annotations

import copy
import re
from dataclasses import replace

import torch

from .errors import WeightsFormatError
from .loading import SDComponents

_KOHYA = re.compile(r"^lora_(unet|te)_(.+)\.(lora_down\.weight|lora_up\.weight|alpha)$")
_PEFT = re.compile(r"^(unet|text_encoder)\.(.+)\.(lora_A\.weight|lora_B\.weight|alpha)$")


def _groups(lora_sd: dict) -> dict[tuple[str, str], dict]:
    """(target, flat module name) -> {"down", "up", "alpha"}."""
    groups: dict[tuple[str, str], dict] = {}
    unknown = []
    for key, value in lora_sd.items():
        if m := _KOHYA.match(key):
            target, name, part = ("unet" if m[1] == "unet" else "text_encoder"), m[2], m[3]
        elif m := _PEFT.match(key):
            target, name, part = m[1], m[2].replace(".", "_"), m[3]
        else:
            unknown.append(key)
            continue
        slot = {
            "lora_down.weight": "down",
            "lora_A.weight": "down",
            "lora_up.weight": "up",
            "lora_B.weight": "up",
            "alpha": "alpha",
        }[part]
        groups.setdefault((target, name), {})[slot] = value
    if unknown:
        raise WeightsFormatError(
            f"unrecognised LoRA keys, e.g. {unknown[:3]} (expected kohya or PEFT format)"
        )
    return groups


def _flat_modules(module: torch.nn.Module) -> dict[str, torch.nn.Module]:
    mods = {}
    for name, m in module.named_modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            flat = name.replace(".", "_")
            mods[flat] = m
            if flat.startswith("text_model_"):  # kohya text-encoder names omit transformers' top level
                mods[flat[len("text_model_") :]] = m
            else:
                mods["text_model_" + flat] = m
    return mods


def lora_delta(down: torch.Tensor, up: torch.Tensor, weight_shape: torch.Size) -> torch.Tensor:
    """up @ down for Linear and Conv2d LoRAs (down may be a kxk conv, up is 1x1)."""
    rank = down.shape[0]
    delta = up.reshape(up.shape[0], rank).float() @ down.reshape(rank, -1).float()
    return delta.reshape(weight_shape)


def fuse_lora(components: SDComponents, lora_sd: dict, strength: float = 1.0) -> SDComponents:
    """New components with the LoRA fused into copies of the modules it touches."""
    groups = _groups(lora_sd)
    targets = {t for t, _ in groups}
    out = replace(components)
    for target in targets:
        module = copy.deepcopy(getattr(components, target))
        flat = _flat_modules(module)
        missing = [name for t, name in groups if t == target and name not in flat]
        if missing:
            raise WeightsFormatError(
                f"LoRA does not fit this model's {target}: no layer for {missing[:3]} "
                f"({len(missing)} of {sum(t == target for t, _ in groups)} LoRA layers unmatched)"
            )
        with torch.no_grad():
            for (t, name), parts in groups.items():
                if t != target:
                    continue
                if "down" not in parts or "up" not in parts:
                    raise WeightsFormatError(f"LoRA layer {name} lacks its down or up matrix")
                layer = flat[name]
                rank = parts["down"].shape[0]
                alpha = float(parts["alpha"]) if "alpha" in parts else float(rank)
                delta = lora_delta(parts["down"], parts["up"], layer.weight.shape)
                layer.weight += (strength * alpha / rank * delta).to(layer.weight.dtype)
        setattr(out, target, module)
    return out
