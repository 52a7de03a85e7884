"""Motion files: the trained tensors' deltas from the base, with what they need to be applied safely.

A motion file is a `.safetensors` whose tensors are `trained − base` for exactly the trained parameters
(named as in the U-Net) and whose metadata records the base architecture, a fingerprint of the base's
values of those parameters, the token, the trainable set and the steps. Applying it to another base (a
different architecture, different shapes, or the same architecture with other weights) is refused with a
clear error, because deltas on a different base produce garbage silently.

Applying never edits a model for good: `motions_applied` adds strength·delta to the live weights and puts
the exact original tensors back on exit (also on errors and Cancel), so a shared model stays unpatched.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..common.errors import InputError, WeightsFormatError
from .trainable import architecture_of

FORMAT = "papernodes.motion_custom.v1"


@dataclass
class MotionFile:
    """Deltas (float32, CPU) keyed by parameter name, and the metadata of the run that made them."""

    deltas: dict[str, torch.Tensor]
    architecture: str
    base_fingerprint: str
    token: str = "sks"
    trainable: str = "paper"
    steps: int = 0
    extra: dict = field(default_factory=dict)

    def metadata(self) -> dict[str, str]:
        return {
            "format": FORMAT,
            "architecture": self.architecture,
            "base_fingerprint": self.base_fingerprint,
            "token": self.token,
            "trainable": self.trainable,
            "steps": str(self.steps),
            "extra": json.dumps(self.extra, sort_keys=True),
        }


def base_fingerprint(unet: torch.nn.Module, names: Sequence[str]) -> str:
    """sha256 over the names, shapes and float32 bytes of `unet`'s parameters `names` (sorted)."""
    return _fingerprint_of(dict(unet.named_parameters()), names)


def extract_motion(
    base: dict[str, torch.Tensor], trained: torch.nn.Module, names: Sequence[str], **meta
) -> MotionFile:
    """Deltas `trained − base` for `names`; `base` holds the base's values of those names (float32)."""
    params = dict(trained.named_parameters())
    deltas = {
        n: (params[n].detach().to("cpu", torch.float32) - base[n].to("cpu", torch.float32)) for n in names
    }
    fingerprint = _fingerprint_of(base, names)
    return MotionFile(deltas, architecture_of(trained), fingerprint, **meta)


def _fingerprint_of(state: dict[str, torch.Tensor], names: Sequence[str]) -> str:
    h = hashlib.sha256()
    for name in sorted(names):
        t = state[name].detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def save_motion(motion: MotionFile, path: str | os.PathLike, dtype: torch.dtype = torch.float32) -> Path:
    """Write `motion` as .safetensors (deltas in `dtype`; float32 keeps strength 1 = the trained model)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise InputError("path", "a .safetensors file name", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.to(dtype).contiguous() for k, v in motion.deltas.items()}
    save_file(tensors, str(path), metadata=motion.metadata())
    return path


def load_motion(path: str | os.PathLike) -> MotionFile:
    """Read a motion file (deltas as float32); a file without our metadata is refused by name."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(str(path))
    if path.suffix.lower() != ".safetensors":
        raise WeightsFormatError(f"{path.name}: motion files are .safetensors written by MotionCustom: Train")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if meta.get("format") != FORMAT:
            raise WeightsFormatError(
                f"{path.name}: not a motion file (no {FORMAT!r} metadata); expected a file written by "
                "MotionCustom: Train Motion (a LoRA or a motion module goes into its own loader)"
            )
        deltas = {k: f.get_tensor(k).to(torch.float32) for k in f.keys()}
    return MotionFile(
        deltas,
        meta["architecture"],
        meta["base_fingerprint"],
        meta.get("token", ""),
        meta.get("trainable", ""),
        int(meta.get("steps", "0")),
        json.loads(meta.get("extra", "{}")),
    )


def check_fits(motion: MotionFile, unet: torch.nn.Module, source: str = "motion file") -> None:
    """Refuse `motion` for a U-Net of another architecture, other shapes or other base weights."""
    arch = architecture_of(unet)
    if motion.architecture != arch:
        raise WeightsFormatError(
            f"{source}: trained on a {motion.architecture} model, this model is {arch}; apply it to the base "
            "it was trained on"
        )
    params = dict(unet.named_parameters())
    missing = [n for n in motion.deltas if n not in params]
    wrong = [n for n in motion.deltas if n in params and params[n].shape != motion.deltas[n].shape]
    if missing or wrong:
        bad = (missing or wrong)[0]
        raise WeightsFormatError(
            f"{source}: does not fit this {arch} model ({len(missing)} tensors missing, {len(wrong)} of other "
            f"shape, e.g. {bad!r}); it was trained on another base"
        )
    if base_fingerprint(unet, list(motion.deltas)) != motion.base_fingerprint:
        raise WeightsFormatError(
            f"{source}: trained on a different base model (weights fingerprint differs); load the base it was "
            "trained on (with the motions it was trained on top of, applied first, in the same order), or "
            "retrain the motion on this one"
        )


def add_motions(unet: torch.nn.Module, motions: Sequence[tuple[MotionFile, float]]) -> None:
    """base + Σ strength·delta, in place and for good (a trainer's own copy of a base with motions)."""
    params = dict(unet.named_parameters())
    with torch.no_grad():
        for motion, strength in motions:
            if strength == 0:
                continue
            for name, delta in motion.deltas.items():
                p = params[name]
                p.add_(delta.to(p.device, p.dtype), alpha=float(strength))


@contextmanager
def motions_applied(
    unet: torch.nn.Module, motions: Sequence[tuple[MotionFile, float]], check: bool = True
) -> Iterator[torch.nn.Module]:
    """`unet` with base + Σ strength·delta for the duration of the block; the exact originals come back.

    Motions stack in order: each is checked against the base plus the motions before it (`check_fits`), the
    model it was trained on, so a motion trained on top of another applies after it, and a motion for
    another base is refused before anything changes.
    """
    params = dict(unet.named_parameters())
    changed = {n for motion, s in motions if s != 0 for n in motion.deltas}  # the tensors add_motions touches
    saved = {n: params[n].detach().clone() for n in changed if n in params}
    try:
        for i, (motion, strength) in enumerate(motions):
            if check:
                check_fits(motion, unet, f"motion {i + 1}")
            add_motions(unet, [(motion, strength)])
        yield unet
    finally:
        with torch.no_grad():
            for name, original in saved.items():
                params[name].copy_(original)
