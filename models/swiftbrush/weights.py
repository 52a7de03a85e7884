"""Teachers and students on disk: loading with clear errors, architecture checks, student export.

A SwiftBrush student is a full copy of its teacher's U-Net, so every student/teacher pair must share
one U-Net architecture; `check_same_architecture` says which config entries or tensors differ.
The exported student is an ordinary diffusers folder (unet/ from the student; vae/, text_encoder/,
tokenizer/, scheduler/ from the teacher), readable by `models.common.loading.load_components`.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import torch

from ..common.errors import WeightsFormatError, WeightsNotFoundError
from ..common.loading import SDComponents, has_weights, is_diffusers_folder, load_single_file, load_state_dict
from ..common.saving import save_diffusers_folder
from ..common.training import atomic_write_dir

TEACHER_PUBLISHED = (
    "any Stable-Diffusion-family epsilon-prediction text-to-image model, e.g. "
    "stabilityai/stable-diffusion-2-1-base (the paper's teacher) or an SD1.5 model, "
    "as a diffusers folder or single .safetensors file"
)
STUDENT_PUBLISHED = (
    "thuanz123/swiftbrush on Hugging Face (diffusers folder, SD2.1-base architecture: "
    "put it in models/diffusers/), or a student written by 'SwiftBrush: Distill' / "
    "python -m models.swiftbrush.train"
)
# Config entries that do not change what a U-Net computes.
_IGNORED_CONFIG = {"sample_size"}


def check_text_to_image(comps: SDComponents, role: str = "teacher") -> None:
    """SwiftBrush needs an epsilon-prediction text-to-image U-Net working on the VAE's latent."""
    cfg = comps.unet.config
    latent = comps.vae.config.latent_channels
    if cfg.in_channels != latent or cfg.out_channels != latent:
        raise WeightsFormatError(
            f"{role} {comps.source or ''}: expected a text-to-image U-Net with {latent} input and output "
            f"channels (the VAE latent), found {cfg.in_channels} in / {cfg.out_channels} out "
            "(an InstructPix2Pix or inpainting model cannot be a SwiftBrush teacher or student)"
        )
    pred = comps.scheduler_config.get("prediction_type", "epsilon") or "epsilon"
    if pred != "epsilon":
        raise WeightsFormatError(
            f"{role} {comps.source or ''}: SwiftBrush's student is epsilon-parameterized; this model's "
            f"scheduler says prediction_type={pred!r}. Use an epsilon model such as SD2.1-base or SD1.5."
        )


def architecture(unet: torch.nn.Module) -> dict:
    """What must match between a teacher and its student: U-Net config and every tensor's shape."""
    cfg = {k: v for k, v in dict(unet.config).items() if not k.startswith("_") and k not in _IGNORED_CONFIG}
    cfg = json.loads(json.dumps(cfg, default=list))  # tuples -> lists: configs read from JSON compare equal
    shapes = {k: list(v.shape) for k, v in unet.state_dict().items()}
    return {"config": cfg, "shapes": shapes}


def architecture_difference(a: dict, b: dict) -> str:
    """'' when equal, else a short description of the first differences."""
    diffs = []
    for key in sorted(set(a["config"]) | set(b["config"])):
        if a["config"].get(key) != b["config"].get(key):
            diffs.append(f"{key}: {a['config'].get(key)!r} vs {b['config'].get(key)!r}")
    if not diffs:
        only_a = sorted(set(a["shapes"]) - set(b["shapes"]))
        only_b = sorted(set(b["shapes"]) - set(a["shapes"]))
        diffs += [f"tensor {k} only in the first" for k in only_a[:3]]
        diffs += [f"tensor {k} only in the second" for k in only_b[:3]]
        diffs += [
            f"{k}: shape {a['shapes'][k]} vs {b['shapes'][k]}"
            for k in sorted(set(a["shapes"]) & set(b["shapes"]))
            if a["shapes"][k] != b["shapes"][k]
        ][:3]
    return "; ".join(diffs[:5])


def check_same_architecture(
    teacher_unet: torch.nn.Module,
    student_unet: torch.nn.Module,
    student_source: str = "student",
    reference: str = "the teacher",
) -> None:
    diff = architecture_difference(architecture(teacher_unet), architecture(student_unet))
    if diff:
        raise WeightsFormatError(
            f"{student_source}: this U-Net does not have {reference}'s architecture ({diff}). "
            "A SwiftBrush student is a full copy of its teacher's U-Net: use a student of the same model family."
        )


def load_unet_like(
    path: str | os.PathLike, template: torch.nn.Module, reference: str = "the teacher"
) -> torch.nn.Module:
    """A U-Net with `template`'s architecture and the weights at `path`: a diffusers pipeline folder, a
    `unet/` folder, a U-Net-only file (diffusers or LDM keys) or a full single-file checkpoint.
    Raises WeightsNotFoundError / WeightsFormatError (naming the file and the mismatch)."""
    from diffusers import UNet2DConditionModel

    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsNotFoundError(path.name, [str(path.parent)], STUDENT_PUBLISHED)
    if path.is_dir():
        folder = path / "unet" if (path / "unet" / "config.json").is_file() else path
        if not (folder / "config.json").is_file():
            raise WeightsNotFoundError("unet/config.json", [str(path)], STUDENT_PUBLISHED)
        if not has_weights(folder):
            raise WeightsNotFoundError(
                "diffusion_pytorch_model.safetensors", [str(folder)], STUDENT_PUBLISHED
            )
        unet = UNet2DConditionModel.from_pretrained(str(folder), local_files_only=True)
        check_same_architecture(template, unet, str(path), reference)
        return unet.float().eval().requires_grad_(False)

    sd = load_state_dict(path)
    from ..common import ldm_layout

    if any(k.startswith(ldm_layout.VAE_PREFIX) for k in sd):  # a full single-file checkpoint
        unet = load_single_file(path).unet
        check_same_architecture(template, unet, str(path), reference)
        return unet
    if any(k.startswith("input_blocks.") for k in sd):  # U-Net only, LDM keys without their prefix
        sd = {ldm_layout.UNET_PREFIX + k: v for k, v in sd.items()}
    if any(k.startswith(ldm_layout.UNET_PREFIX) for k in sd):
        from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

        try:
            sd = convert_ldm_unet_checkpoint(sd, dict(template.config))
        except Exception as exc:
            raise WeightsFormatError(
                f"{path.name}: U-Net weights do not fit {reference}'s architecture ({exc})"
            ) from exc
    unet = copy.deepcopy(template)
    expected = unet.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = [k for k in set(expected) & set(sd) if tuple(expected[k].shape) != tuple(sd[k].shape)]
    if missing or unexpected or wrong:
        raise WeightsFormatError(
            f"{path.name}: U-Net weights do not match {reference}'s architecture (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}, wrong shapes {sorted(wrong)[:3]}). A SwiftBrush student is a full "
            "copy of its teacher's U-Net."
        )
    unet.load_state_dict({k: v.float() for k, v in sd.items()})
    return unet.eval().requires_grad_(False)


def with_unet(comps: SDComponents, unet: torch.nn.Module, source: str = "") -> SDComponents:
    """The same model with another U-Net (the other modules are shared, not copied)."""
    return SDComponents(
        unet,
        comps.vae,
        comps.text_encoder,
        comps.tokenizer,
        dict(comps.scheduler_config),
        source=source or comps.source,
        extras=dict(comps.extras),
    )


# ----------------------------------------------------------------------------------------------------
# Export


def save_unet_weights(
    unet: torch.nn.Module, folder: Path, weights: dict[str, torch.Tensor] | None = None
) -> None:
    """Write `unet` as a diffusers `unet/` folder, atomically; `weights` (name -> tensor) replace the
    module's own values (e.g. the EMA average) without touching the live module."""
    from safetensors.torch import save_file

    sd = unet.state_dict()
    if weights:
        sd = {k: weights.get(k, v) for k, v in sd.items()}
    sd = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in sd.items()}

    def write(tmp: Path) -> None:
        unet.save_config(str(tmp))
        save_file(sd, str(tmp / "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})

    atomic_write_dir(folder, write)


def export_student(
    folder: str | os.PathLike,
    unet: torch.nn.Module,
    teacher: SDComponents,
    teacher_path: str | os.PathLike | None,
    weights: dict[str, torch.Tensor] | None = None,
    info: dict | None = None,
) -> Path:
    """Write (or update) the student's diffusers folder: unet/ from `unet` (+ `weights`); the VAE, text
    encoder, tokenizer and scheduler are the teacher's, copied byte for byte from a teacher diffusers
    folder (or written from the modules for a single-file teacher) the first time only."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    static = ("vae", "text_encoder", "tokenizer", "scheduler")
    src = Path(teacher_path) if teacher_path else None
    if not all((folder / s).is_dir() for s in static):
        if src is not None and is_diffusers_folder(src):
            for sub in static:
                if (src / sub).is_dir() and not (folder / sub).exists():
                    shutil.copytree(src / sub, folder / sub)
            if (src / "model_index.json").is_file():
                shutil.copy(src / "model_index.json", folder / "model_index.json")
            if not (folder / "scheduler").is_dir():  # a teacher folder without one: the shipped SD schedule
                (folder / "scheduler").mkdir()
                (folder / "scheduler" / "scheduler_config.json").write_text(
                    json.dumps(teacher.scheduler_config, indent=2)
                )
        else:
            vae, text_encoder = teacher.vae, teacher.text_encoder
            if any(
                p.dtype != torch.float32 for p in list(vae.parameters()) + list(text_encoder.parameters())
            ):
                vae, text_encoder = copy.deepcopy(vae).float(), copy.deepcopy(text_encoder).float()
            save_diffusers_folder(
                SDComponents(unet, vae, text_encoder, teacher.tokenizer, teacher.scheduler_config), folder
            )
    if not (folder / "model_index.json").is_file():
        (folder / "model_index.json").write_text(
            json.dumps(
                {
                    "_class_name": "StableDiffusionPipeline",
                    "unet": ["diffusers", "UNet2DConditionModel"],
                    "vae": ["diffusers", "AutoencoderKL"],
                    "text_encoder": ["transformers", "CLIPTextModel"],
                    "tokenizer": ["transformers", "CLIPTokenizer"],
                    "scheduler": ["diffusers", teacher.scheduler_config.get("_class_name", "DDPMScheduler")],
                },
                indent=2,
            )
        )
    save_unet_weights(unet, folder / "unet", weights)
    if info is not None:
        (folder / "swiftbrush.json").write_text(json.dumps(info, indent=2))
    return folder
