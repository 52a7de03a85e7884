"""Load Stable-Diffusion-family components from the formats users have, without reaching a hub.

Formats:
- a diffusers folder (`unet/`, `vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`);
- a single-file checkpoint in the original LDM key layout (`.safetensors`; `.ckpt`/`.pt`/`.bin` only
  through `torch.load(weights_only=True)`);
- LDM-layout state dicts handed over by a host (the ComfyUI bridge uses this path).

Every entry point returns `SDComponents`: plain diffusers/transformers modules that a method pipeline
uses directly, in eval mode, float32 on the CPU (callers place them).
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers.utils import logging as diffusers_logging
from transformers.utils import logging as transformers_logging

from . import ldm_layout
from .errors import WeightsFormatError, WeightsNotFoundError

SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
TOKENIZER_DIR = ldm_layout.CONFIG_DIR / "clip_tokenizer"


@dataclass
class SDComponents:
    """The modules of a Stable-Diffusion-family model, as diffusers/transformers objects."""

    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler_config: dict
    source: str = ""
    extras: dict = field(default_factory=dict)

    def modules(self) -> list[torch.nn.Module]:
        return [self.unet, self.vae, self.text_encoder]

    @property
    def pixel_multiple(self) -> int:
        """Image sizes must be multiples of this: VAE downsampling times the U-Net's own."""
        vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        unet_factor = 2 ** (len(self.unet.config.block_out_channels) - 1)
        return vae_factor * unet_factor


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a weights file: safetensors directly, pickles only with `weights_only=True` (no code runs)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in SAFE_SUFFIXES:
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if suffix in PICKLE_SUFFIXES:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # an unsafe pickle raises here instead of executing code
            raise WeightsFormatError(
                f"{path.name}: could not be read safely with torch.load(weights_only=True) ({exc}). "
                "Convert it to .safetensors."
            ) from exc
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict):
            raise WeightsFormatError(f"{path.name}: expected a state dict, found {type(obj).__name__}")
        return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    raise WeightsFormatError(
        f"{path.name}: unsupported weights format {suffix!r}; expected one of "
        f"{', '.join(SAFE_SUFFIXES + PICKLE_SUFFIXES)}"
    )


def load_tokenizer(folder: str | os.PathLike | None = None):
    """CLIP BPE tokenizer from a diffusers `tokenizer/` folder (with its special tokens: SD2.x pads with
    "!"), else the CLIP-L tokenizer shipped in the pack. Prompts are padded/truncated to 77 tokens."""
    from transformers import CLIPTokenizer

    if folder is not None:
        tok = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
        if tok.model_max_length > 77:  # some configs carry a huge sentinel instead of CLIP's 77
            tok.model_max_length = 77
        return tok
    return CLIPTokenizer(
        str(TOKENIZER_DIR / "vocab.json"), str(TOKENIZER_DIR / "merges.txt"), model_max_length=77
    )


def shipped_scheduler_config() -> dict:
    return json.loads((ldm_layout.CONFIG_DIR / "sd15_scheduler.json").read_text())


def _scheduler_config_from_folder(folder: Path) -> dict:
    path = folder / "scheduler" / "scheduler_config.json"
    return json.loads(path.read_text()) if path.is_file() else shipped_scheduler_config()


def is_diffusers_folder(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "unet" / "config.json").is_file()


def load_diffusers_folder(path: str | os.PathLike) -> SDComponents:
    """A diffusers pipeline folder, read locally (`local_files_only`), never from a hub."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    path = Path(path)
    missing = [sub for sub in ("unet", "vae", "text_encoder") if not (path / sub / "config.json").is_file()]
    if missing:
        raise WeightsFormatError(
            f"{path}: not a complete diffusers folder, missing {', '.join(s + '/config.json' for s in missing)}"
        )
    kw = dict(local_files_only=True)
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    unet = UNet2DConditionModel.from_pretrained(str(path), subfolder="unet", **kw)
    vae = AutoencoderKL.from_pretrained(str(path), subfolder="vae", **kw)
    text_encoder = CLIPTextModel.from_pretrained(str(path), subfolder="text_encoder", **kw)
    tok_dir = path / "tokenizer"
    tokenizer = load_tokenizer(tok_dir if (tok_dir / "vocab.json").is_file() else None)
    return _finish(
        SDComponents(
            unet, vae, text_encoder, tokenizer, _scheduler_config_from_folder(path), source=str(path)
        )
    )


def components_from_ldm(
    state_dict: dict,
    source: str = "",
    scheduler_config: dict | None = None,
    unet_template: dict | None = None,
) -> SDComponents:
    """Build diffusers modules from an LDM-layout state dict (a single file, or a host's models)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel

    parts = ldm_layout.split_components(state_dict)
    for name, prefix in (
        ("unet", ldm_layout.UNET_PREFIX),
        ("vae", ldm_layout.VAE_PREFIX),
        ("clip", ldm_layout.CLIP_PREFIX),
    ):
        if not parts[name]:
            raise WeightsFormatError(
                f"{source or 'checkpoint'}: no {name} tensors (keys starting with {prefix!r}); "
                "expected a full Stable-Diffusion-1.x-family checkpoint in the original layout"
            )
    unet_cfg = ldm_layout.infer_unet_config(parts["unet"], unet_template)
    unet = UNet2DConditionModel.from_config(unet_cfg)
    _load_strict(unet, convert_ldm_unet_checkpoint(parts["unet"], unet_cfg), "U-Net", source)

    vae_cfg = ldm_layout.infer_vae_config(parts["vae"])
    vae = AutoencoderKL.from_config(vae_cfg)
    _load_strict(vae, convert_ldm_vae_checkpoint(parts["vae"], vae_cfg), "VAE", source)

    clip_cfg = ldm_layout.infer_clip_config(parts["clip"])
    text_encoder = CLIPTextModel(CLIPTextConfig(**clip_cfg))
    clip_sd = ldm_layout.clip_from_ldm(parts["clip"], text_encoder.state_dict().keys())
    _load_strict(text_encoder, clip_sd, "text encoder", source)
    return _finish(
        SDComponents(
            unet,
            vae,
            text_encoder,
            load_tokenizer(),
            scheduler_config or shipped_scheduler_config(),
            source=source,
        )
    )


def load_single_file(path: str | os.PathLike) -> SDComponents:
    """A single-file checkpoint in the original LDM layout; configs are inferred + shipped templates."""
    return components_from_ldm(load_state_dict(path), source=str(path))


WEIGHT_GLOBS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")


def has_weights(folder: Path) -> bool:
    """A diffusers module folder holds a weights file (or a sharded index)."""
    return any(next(Path(folder).glob(g), None) is not None for g in WEIGHT_GLOBS)


def check_weights_present(folder: Path, published: str = "") -> None:
    """A diffusers folder whose configs are there but whose weights file is not: name the missing file
    (from_pretrained's own error does not)."""
    expected = {"unet": "diffusion_pytorch_model.safetensors", "vae": "diffusion_pytorch_model.safetensors",
                "text_encoder": "model.safetensors"}  # fmt: skip
    for sub, filename in expected.items():
        if (folder / sub / "config.json").is_file() and not has_weights(folder / sub):
            raise WeightsNotFoundError(f"{sub}/{filename}", [str(folder / sub)], published)


def load_model_fresh(path: str | os.PathLike, published: str = "") -> SDComponents:
    """A diffusers folder or single file as modules of our own, for training: never the shared cache of
    `load_components` (training changes the modules in place). Errors name the missing file and, when
    given, where the weights are `published`."""
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsNotFoundError(path.name, [str(path.parent)], published)
    if path.is_dir():
        if not is_diffusers_folder(path):
            raise WeightsNotFoundError("unet/config.json", [str(path)], published)
        check_weights_present(path, published)
        return load_diffusers_folder(path)
    return load_single_file(path)


def load_components(path: str | os.PathLike) -> SDComponents:
    """Dispatch on what `path` is: a diffusers folder or a single weights file. Cached (see `_CACHE`)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(str(path))
    stat = path.stat() if path.is_file() else (path / "unet" / "config.json").stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    comps = load_diffusers_folder(path) if path.is_dir() else load_single_file(path)
    _CACHE[key] = comps
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return comps


# Loaded models stay in RAM for reuse by later runs with the same file (ComfyUI's own node cache only
# covers identical inputs). Two entries: a source and a target model, e.g. teacher + student.
_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = int(os.environ.get("PAPERNODES_MODEL_CACHE", "2"))


def clear_cache() -> None:
    _CACHE.clear()


def _load_strict(module: torch.nn.Module, sd: dict, what: str, source: str) -> None:
    # Unused extras like text_model.embeddings.position_ids (older transformers) are fine to skip.
    sd = {k: v for k, v in sd.items() if not k.endswith("position_ids")}
    result = module.load_state_dict(sd, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise WeightsFormatError(
            f"{source or 'checkpoint'}: {what} weights do not match the inferred architecture "
            f"(missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]})"
        )


def _finish(comps: SDComponents) -> SDComponents:
    for module in comps.modules():
        if any(p.dtype != torch.float32 for p in module.parameters()):
            module.to(torch.float32)
        module.eval().requires_grad_(False)
    return comps
