"""Fuse a LoRA file (e.g. LCM-LoRA) into copies of a model's U-Net / text encoder.

Formats: kohya-style (`lora_unet_<module_path_with_underscores>.lora_down.weight` / `.lora_up.weight` /
`.alpha`, `lora_te_...` for the text encoder; what LCM-LoRA and most SD1.5 LoRAs ship) and PEFT/diffusers
style (`unet.<module.path>.lora_A.weight` / `.lora_B.weight`). Fusing adds strength * scale * (up @ down)
to each weight, with scale = alpha / rank. alpha comes from, in this order: the layer's `.alpha` tensor;
the PEFT config diffusers' `save_lora_weights` writes into the safetensors header (`lora_adapter_metadata`:
`unet.lora_alpha`, `unet.alpha_pattern`, `unet.use_rslora` for alpha / sqrt(rank), ...); else alpha = rank
(scale 1, diffusers' convention for PEFT files without alphas). The input components are never modified:
the result holds deep copies of the patched modules, so a cached model shared by other nodes stays clean.
"""

from __future__ import annotations

import copy
import json
import math
import re
from dataclasses import replace

import torch

from .errors import WeightsFormatError
from .loading import SDComponents

_KOHYA = re.compile(r"^lora_(unet|te)_(.+)\.(lora_down\.weight|lora_up\.weight|alpha)$")
_PEFT = re.compile(r"^(unet|text_encoder)\.(.+)\.(lora_A\.weight|lora_B\.weight|alpha)$")
METADATA_KEY = "lora_adapter_metadata"  # diffusers' LORA_ADAPTER_METADATA_KEY
TARGETS = ("unet", "text_encoder")


def _groups(lora_sd: dict) -> dict[tuple[str, str], dict]:
    """(target, flat module name) -> {"down", "up", "alpha", "module" (the dotted name, PEFT keys only)}."""
    groups: dict[tuple[str, str], dict] = {}
    unknown = []
    for key, value in lora_sd.items():
        if m := _KOHYA.match(key):
            target, name, part, dotted = ("unet" if m[1] == "unet" else "text_encoder"), m[2], m[3], None
        elif m := _PEFT.match(key):
            target, name, part, dotted = m[1], m[2].replace(".", "_"), m[3], m[2]
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
        group = groups.setdefault((target, name), {})
        group[slot] = value
        if dotted is not None:
            group["module"] = dotted
    if unknown:
        raise WeightsFormatError(
            f"unrecognised LoRA keys, e.g. {unknown[:3]} (expected kohya or PEFT format)"
        )
    return groups


def adapter_configs(metadata: dict | None) -> dict[str, dict]:
    """Target ("unet" / "text_encoder") -> the PEFT LoraConfig fields stored in a safetensors header.

    diffusers' pipeline `save_lora_weights` prefixes them per target (`unet.lora_alpha`); a model's
    `save_lora_adapter` writes them unprefixed (`lora_alpha`), which then applies to every target."""
    raw = (metadata or {}).get(METADATA_KEY)
    if not raw:
        return {}
    try:
        fields = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise WeightsFormatError(f"LoRA header metadata {METADATA_KEY!r} is not valid JSON ({exc})") from exc
    shared = {k: v for k, v in fields.items() if "." not in k}
    configs = {}
    for target in TARGETS:
        own = {k[len(target) + 1 :]: v for k, v in fields.items() if k.startswith(target + ".")}
        configs[target] = own or shared
    return configs


def _pattern_value(patterns: dict | None, module: str | None):
    """PEFT's rank/alpha pattern lookup (peft.utils.other.get_pattern_key): a key matches a module name
    that ends with it at a `.` boundary (keys may be regular expressions)."""
    if not patterns or module is None:
        return None
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return None


def lora_scale(parts: dict, config: dict, name: str) -> float:
    """alpha / rank for one LoRA layer (`parts` from `_groups`), see the module docstring for alpha's source."""
    rank = parts["down"].shape[0]
    if "alpha" in parts:
        return float(parts["alpha"]) / rank
    if not config:
        return 1.0
    if config.get("use_dora"):
        raise WeightsFormatError(
            f"LoRA layer {name}: a DoRA adapter (use_dora), which cannot be fused as a LoRA"
        )
    module = parts.get("module")
    want = _pattern_value(config.get("rank_pattern"), module) or config.get("r")
    if want is not None and int(want) != rank:
        raise WeightsFormatError(
            f"LoRA layer {name}: rank {rank} in the tensors, {want} in the header metadata ({METADATA_KEY})"
        )
    alpha = _pattern_value(config.get("alpha_pattern"), module)
    alpha = float(alpha if alpha is not None else config.get("lora_alpha", rank))
    return alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank


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


def fuse_lora(
    components: SDComponents, lora_sd: dict, strength: float = 1.0, metadata: dict | None = None
) -> SDComponents:
    """New components with the LoRA fused into copies of the modules it touches.

    `metadata` is the file's safetensors header; by default the one `loading.load_state_dict` attaches to
    the state dict it returns (`StateDict.metadata`)."""
    groups = _groups(lora_sd)
    configs = adapter_configs(metadata if metadata is not None else getattr(lora_sd, "metadata", None))
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
                scale = lora_scale(parts, configs.get(target, {}), name)
                delta = lora_delta(parts["down"], parts["up"], layer.weight.shape)
                layer.weight += (strength * scale * delta).to(layer.weight.dtype)
        setattr(out, target, module)
    return out
