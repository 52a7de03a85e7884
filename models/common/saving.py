"""Write SD-family components in the formats users have: a diffusers folder, or one LDM-layout file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from . import ldm_layout
from .loading import TOKENIZER_DIR, SDComponents


def save_diffusers_folder(comps: SDComponents, folder: str | Path) -> Path:
    """Write components as a diffusers pipeline folder (safetensors + configs + tokenizer)."""
    folder = Path(folder)
    comps.unet.save_pretrained(folder / "unet", safe_serialization=True)
    comps.vae.save_pretrained(folder / "vae", safe_serialization=True)
    comps.text_encoder.save_pretrained(folder / "text_encoder", safe_serialization=True)
    tok = folder / "tokenizer"
    tok.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.json", "merges.txt", "special_tokens_map.json"):
        shutil.copy(TOKENIZER_DIR / name, tok / name)
    (tok / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 77, "do_lower_case": True}))
    sched = folder / "scheduler"
    sched.mkdir(parents=True, exist_ok=True)
    (sched / "scheduler_config.json").write_text(json.dumps(comps.scheduler_config, indent=2))
    (folder / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": _pipeline_class(comps.unet),
                "unet": ["diffusers", type(comps.unet).__name__],
                "vae": ["diffusers", "AutoencoderKL"],
                "text_encoder": ["transformers", "CLIPTextModel"],
                "tokenizer": ["transformers", "CLIPTokenizer"],
                "scheduler": [
                    "diffusers",
                    comps.scheduler_config.get("_class_name", "EulerAncestralDiscreteScheduler"),
                ],
            },
            indent=2,
        )
    )
    return folder


def _pipeline_class(unet: torch.nn.Module) -> str:
    if type(unet).__name__ == "UNet3DConditionModel":
        return "TextToVideoSDPipeline"
    return (
        "StableDiffusionInstructPix2PixPipeline"
        if unet.config.in_channels == 8
        else "StableDiffusionPipeline"
    )


def ldm_state_dict(comps: SDComponents, dtype: torch.dtype | None = None) -> dict:
    """All components in the original single-file layout."""
    sd = {}
    sd.update(ldm_layout.unet_to_ldm(comps.unet.state_dict(), dict(comps.unet.config)))
    sd.update(ldm_layout.vae_to_ldm(comps.vae.state_dict(), dict(comps.vae.config)))
    sd.update(ldm_layout.clip_to_ldm(comps.text_encoder.state_dict()))
    return ldm_layout.to_contiguous(sd, dtype)


def save_single_file(comps: SDComponents, path: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write components as one `.safetensors` checkpoint in the original LDM key layout."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(ldm_state_dict(comps, dtype), str(path))
    return path
