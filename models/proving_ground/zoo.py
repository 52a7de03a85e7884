"""The proving-ground model zoo: architectures (real SD1.5 classes, small configs) and where they live.

Each model is the class the real one uses (AutoencoderKL, CLIPTextModel with the real CLIP BPE tokenizer,
UNet2DConditionModel), so every loader, node and workflow of the pack runs on them unchanged. Head counts
and norm groups follow SD1.5 (12 CLIP heads, `attention_head_dim` 8, 32 groups) so that the single-file
reader infers these configs exactly as it does for real checkpoints.

Shipped layout under `weights/` (float16 safetensors + diffusers configs):
  world_sd/             full text-to-image pipeline folder: vae, text_encoder, tokenizer, unet (teacher), scheduler
  world_colorize_unet/  InstructPix2Pix colorizer U-Net (8 input channels)
  world_lcm_unet/       latent-consistency student of the teacher
  world_swiftbrush_unet/ one-step SwiftBrush student
The derived U-Nets share the base VAE and text encoder; `assemble_pipeline` builds a full diffusers folder
for each (what users and the demo load).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..common.tiny import TINY_CLIP, TINY_UNET, TINY_VAE

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
BASE = "world_sd"
DERIVED = {
    "colorize": "world_colorize_unet",
    "lcm": "world_lcm_unet",
    "swiftbrush": "world_swiftbrush_unet",
}

# Same classes and fixed fields as the tiny test doubles; only the sizes differ.
# 128 px -> 16x16x4 latents: three downsamplings = 8x, 4 latent channels, as SD's VAE.
WORLD_VAE = {
    **TINY_VAE,
    "block_out_channels": (32, 64, 64, 64),
    "sample_size": 128,
    "scaling_factor": 1.0,  # replaced after training by 1 / std of the training latents (how SD got 0.18215)
}
# The vocabulary stays CLIP's 49 408 BPE tokens so the real tokenizer works unchanged.
WORLD_CLIP = {
    **TINY_CLIP,
    "hidden_size": 96,
    "intermediate_size": 384,
    "num_hidden_layers": 4,
    "projection_dim": 96,
}
WORLD_UNET = {
    **TINY_UNET,
    "sample_size": 16,
    "block_out_channels": (64, 128, 128),
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 96,
}


def base_dir(weights_dir: Path | str = WEIGHTS_DIR) -> Path:
    return Path(weights_dir) / BASE


def derived_unet_dir(kind: str, weights_dir: Path | str = WEIGHTS_DIR) -> Path:
    if kind not in DERIVED:
        raise ValueError(f"unknown proving-ground model {kind!r}; known: {', '.join(DERIVED)}")
    return Path(weights_dir) / DERIVED[kind]


def shipped(weights_dir: Path | str = WEIGHTS_DIR) -> dict[str, bool]:
    """Which trained models are present (base + derived U-Nets)."""
    found = {"base": (base_dir(weights_dir) / "unet" / "config.json").is_file()}
    for kind in DERIVED:
        found[kind] = (derived_unet_dir(kind, weights_dir) / "config.json").is_file()
    return found


def assemble_pipeline(kind: str, dest: Path | str, weights_dir: Path | str = WEIGHTS_DIR) -> Path:
    """A complete diffusers folder at `dest`: the base pipeline with the `kind` U-Net ("base" = teacher).

    Files are hard-linked where the file system allows (no extra disk), copied otherwise.
    """
    src, dest = base_dir(weights_dir), Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, copy_function=_link_or_copy)
    if kind != "base":
        shutil.rmtree(dest / "unet")
        shutil.copytree(derived_unet_dir(kind, weights_dir), dest / "unet", copy_function=_link_or_copy)
        extra = derived_unet_dir(kind, weights_dir) / "scheduler_config.json"
        if extra.is_file():  # e.g. the LCM student's scheduler
            write_fresh(dest / "scheduler" / "scheduler_config.json", extra.read_text())
        index = json.loads((dest / "model_index.json").read_text())
        if kind == "colorize":
            index["_class_name"] = "StableDiffusionInstructPix2PixPipeline"
        write_fresh(dest / "model_index.json", json.dumps(index, indent=2))
    return dest


def _link_or_copy(src: str, dst: str) -> str:
    try:
        Path(dst).hardlink_to(src)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def write_fresh(path: Path, text: str) -> None:
    """Write a fresh file: never write through a hard link into the shipped base folder."""
    path.unlink(missing_ok=True)
    path.write_text(text)
