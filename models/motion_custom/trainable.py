"""Which tensors Customizing Motion trains, for the two video architectures the pack runs.

Paper, Sec. 3.2 (and the official trainer's parameter list): the motion is learnt by the layers that
model time plus the spatial cross-attention's keys and values (so the token can steer them); everything
else, and the text encoder, stays frozen.

- ZeroScope / ModelScope (`UNet3DConditionModel`): `attn2.to_k` / `attn2.to_v` of the spatial
  transformers (`*.attentions.*`), every temporal attention (`*.temp_attentions.*`), `transformer_in`
  and the temporal convolutions (`*.temp_convs.*`).
- SD1.5 + AnimateDiff (`UNetMotionModel`), our interpretation: the motion modules play the role of the
  temporal attentions and convolutions (`*.motion_modules.*`), plus the same `attn2.to_k` / `attn2.to_v`.

Other sets for the ablations and the world's base model: "temporal" (the time layers only, no cross-
attention) and "full" (the whole U-Net, the paper's full fine-tuning baseline).
"""

from __future__ import annotations

import re

import torch

from ..common.errors import InputError, WeightsFormatError

ARCHITECTURES = ("zeroscope", "animatediff")
TRAINABLE_SETS = ("paper", "temporal", "full")

_CROSS_KV = re.compile(r"(^|\.)attentions\.\d+\.transformer_blocks\.\d+\.attn2\.to_[kv]\.")
_TEMPORAL = {
    "zeroscope": re.compile(r"(^transformer_in\.|\.temp_attentions\.|\.temp_convs\.)"),
    "animatediff": re.compile(r"\.motion_modules\."),
}


def architecture_of(unet: torch.nn.Module) -> str:
    """ "zeroscope" for a UNet3DConditionModel, "animatediff" for an inflated UNetMotionModel."""
    name = type(unet).__name__
    if name == "UNet3DConditionModel":
        return "zeroscope"
    if name == "UNetMotionModel":
        return "animatediff"
    raise WeightsFormatError(
        f"a {name} is not a video U-Net; expected a ZeroScope/ModelScope UNet3DConditionModel or an SD1.5 "
        "U-Net inflated with an AnimateDiff motion module"
    )


def is_trained(name: str, architecture: str, which: str = "paper") -> bool:
    """Whether parameter `name` of a U-Net of `architecture` belongs to trainable set `which`."""
    if architecture not in ARCHITECTURES:
        raise InputError("architecture", f"one of {', '.join(ARCHITECTURES)}", repr(architecture))
    if which not in TRAINABLE_SETS:
        raise InputError("trainable", f"one of {', '.join(TRAINABLE_SETS)}", repr(which))
    if which == "full":
        return True
    temporal = bool(_TEMPORAL[architecture].search(name))
    if which == "temporal":
        return temporal
    return temporal or bool(_CROSS_KV.search(name))


def trainable_names(unet: torch.nn.Module, which: str = "paper") -> list[str]:
    """Names of `unet`'s parameters in set `which`, in the module's order."""
    arch = architecture_of(unet)
    names = [n for n, _ in unet.named_parameters() if is_trained(n, arch, which)]
    if not names:
        raise WeightsFormatError(f"{type(unet).__name__} has no parameters in the {which!r} trainable set")
    return names


def set_trainable(unet: torch.nn.Module, which: str = "paper") -> list[str]:
    """Freeze `unet` except set `which`; returns the trained names."""
    names = set(trainable_names(unet, which))
    for n, p in unet.named_parameters():
        p.requires_grad_(n in names)
    return [n for n, _ in unet.named_parameters() if n in names]
