"""SwiftBrush nodes: load a one-step student, generate with it (exact one-step sampler), distill one."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ..models.common.errors import InputError
from ..models.common.loading import cast_module, load_components
from ..models.swiftbrush.sampler import SwiftBrushPipeline
from ..models.swiftbrush.train import CONFIG_FILE, TrainConfig, train
from ..models.swiftbrush.weights import STUDENT_PUBLISHED, TEACHER_PUBLISHED, load_unet_like, with_unet
from .bridge import checkpoint_inputs, components_from_comfy
from .comfy_adapter import (
    TrainingFollow,
    file_choices,
    model_folders,
    progress_callback,
    resolve_file,
    resolve_sd_model,
    sd_model_choices,
    sd_model_input,
)
from .comfy_memory import dtype_input, model_dtype, on_device, torch_device, unload_all

CATEGORY = "PaperNodes/SwiftBrush"
NO_MODELS = (
    "(no models found: put a diffusers folder in models/diffusers or a .safetensors in models/checkpoints)"
)
NO_UNET = "none"
SEED_MAX = 0xFFFFFFFFFFFFFFFF
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]*(/[A-Za-z0-9][A-Za-z0-9._ -]*)*$")


class LoadStudent:
    DESCRIPTION = (
        "Load a SwiftBrush one-step student (e.g. thuanz123/swiftbrush) from models/diffusers or "
        "models/checkpoints; optionally swap in a U-Net-only file from models/unet."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("SWIFTBRUSH_STUDENT",)
    RETURN_NAMES = ("student",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model_name": sd_model_input(
                    NO_MODELS,
                    "diffusers/<folder> from models/diffusers (a student written by 'SwiftBrush: Distill' or "
                    "thuanz123/swiftbrush), or checkpoints/<file> (single file, SD1.x layout); it supplies the "
                    "text encoder, VAE and noise schedule.",
                ),
                "unet_name": (
                    file_choices("diffusion_models", NO_UNET),
                    {
                        "tooltip": "Optional student U-Net file from models/unet (diffusers or original keys) that "
                        "replaces the model's U-Net; must have the same architecture. 'none' keeps it."
                    },
                ),
            },
            "optional": {"dtype": dtype_input()},
        }

    def load(self, model_name, unet_name, dtype="auto"):
        torch_dtype = model_dtype(dtype)
        comps = load_components(resolve_sd_model(model_name, STUDENT_PUBLISHED), torch_dtype)
        if unet_name != NO_UNET:
            path = resolve_file("diffusion_models", unet_name, STUDENT_PUBLISHED)
            unet = cast_module(load_unet_like(path, comps.unet, "the loaded model"), torch_dtype)
            comps = with_unet(comps, unet, source=str(path))
        return (SwiftBrushPipeline(comps),)


class StudentFromCheckpoint:
    DESCRIPTION = (
        "Use a model loaded by core Load Checkpoint (MODEL/CLIP/VAE, SD1.x family) as a SwiftBrush "
        "student, or as the teacher of 'SwiftBrush: Distill'."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("SWIFTBRUSH_STUDENT",)
    RETURN_NAMES = ("student",)
    FUNCTION = "convert"

    @classmethod
    def INPUT_TYPES(cls):
        return checkpoint_inputs("A text-to-image MODEL (SD1.x family, epsilon prediction).")

    def convert(self, model, clip, vae, dtype="auto"):
        return (SwiftBrushPipeline(components_from_comfy(model, clip, vae, model_dtype(dtype))),)


class Generate:
    DESCRIPTION = (
        "Text to image in ONE U-Net evaluation: the student maps pure noise z at t = 999 to "
        "x0 = (z - sqrt(1 - a_T) eps) / sqrt(a_T), decoded by the VAE. LATENT feeds core nodes."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "LATENT")
    RETURN_NAMES = ("image", "latent")
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "student": ("SWIFTBRUSH_STUDENT", {"tooltip": "From 'SwiftBrush: Load Student'."}),
                "prompt": (
                    "STRING",
                    {
                        "default": "a photograph of a red fox in the snow",
                        "multiline": True,
                        "tooltip": "What to draw (at most 75 CLIP tokens). No negative prompt: the "
                        "student has guidance distilled in.",
                    },
                ),
                "seed": (
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": SEED_MAX,
                        "tooltip": "Image k of the batch uses noise seeded seed + k.",
                    },
                ),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 64, "tooltip": "Images to make."}),
                "width": (
                    "INT",
                    {
                        "default": 512,
                        "min": 64,
                        "max": 2048,
                        "step": 8,
                        "tooltip": "Image width in px (multiple of 8; the paper's student: 512).",
                    },
                ),
                "height": (
                    "INT",
                    {
                        "default": 512,
                        "min": 64,
                        "max": 2048,
                        "step": 8,
                        "tooltip": "Image height in px (multiple of 8; the paper's student: 512).",
                    },
                ),
            }
        }

    def generate(self, student: SwiftBrushPipeline, prompt, seed, batch_size, width, height):
        student.check_prompt(prompt)
        with on_device(student.components.modules()) as device:
            result = student(
                prompt,
                seed=seed,
                batch=batch_size,
                height=height,
                width=width,
                device=device,
                progress=progress_callback(batch_size),
            )
        return (result.images, {"samples": student.vae_latents(result.latents)})


def _output_folder(name: str, teacher_source: str) -> Path:
    name = (name or "").strip()
    if not _NAME.match(name) or ".." in name.split("/"):
        raise InputError(
            "output_name",
            "a folder name (letters, digits, '.', '_', '-', ' '; '/' for subfolders)",
            repr(name),
        )
    roots = model_folders("diffusers")
    if not roots:
        raise InputError("output_name", "a ComfyUI models/diffusers folder to write into", "none configured")
    target = (Path(roots[0]) / name).resolve()
    if teacher_source and Path(teacher_source).resolve() == target:
        raise InputError("output_name", "a name other than the teacher's folder", repr(name))
    return target


class Distill:
    DESCRIPTION = (
        "Distill a text-to-image teacher into a one-step student by image-free variational score "
        "distillation (SwiftBrush). Writes a diffusers folder into models/diffusers/<output_name>; "
        "the same trainer as `python -m models.swiftbrush.train`."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "STRING", "SWIFTBRUSH_STUDENT")
    RETURN_NAMES = ("preview", "student_path", "student")
    FUNCTION = "distill"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        d = TrainConfig(teacher="", prompts="", out="")
        return {
            "required": {
                "teacher_name": (
                    sd_model_choices(NO_MODELS),
                    {
                        "tooltip": "The teacher: diffusers/<folder> or checkpoints/<file> (epsilon-prediction text-to-"
                        "image model; paper: SD2.1-base). Ignored when 'teacher' is connected."
                    },
                ),
                "prompts": (
                    "STRING",
                    {
                        "default": "a photograph of a red fox in the snow\n"
                        "a watercolor painting of a lighthouse at dusk",
                        "multiline": True,
                        "tooltip": "Training prompts, one per line: the only training data.",
                    },
                ),
                "output_name": (
                    "STRING",
                    {
                        "default": "swiftbrush-student",
                        "tooltip": "Folder written in models/diffusers (then listed by "
                        "'SwiftBrush: Load Student').",
                    },
                ),
                "steps": (
                    "INT",
                    {
                        "default": 1000,
                        "min": 1,
                        "max": 10_000_000,
                        "tooltip": "Training steps in all (one student and one LoRA update each).",
                    },
                ),
                "batch_size": (
                    "INT",
                    {
                        "default": d.batch_size,
                        "min": 1,
                        "max": 1024,
                        "tooltip": "Prompts per step (paper: 16 per GPU).",
                    },
                ),
                "resolution": (
                    "INT",
                    {
                        "default": d.resolution,
                        "min": 64,
                        "max": 2048,
                        "step": 8,
                        "tooltip": "Image size the student learns (SD2.1-base: 512).",
                    },
                ),
                "student_lr": (
                    "FLOAT",
                    {
                        "default": d.student_lr,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 1e-7,
                        "round": False,
                        "tooltip": "Student Adam learning rate (paper: 1e-6).",
                    },
                ),
                "lora_lr": (
                    "FLOAT",
                    {
                        "default": d.lora_lr,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 1e-5,
                        "round": False,
                        "tooltip": "LoRA teacher Adam learning rate (paper: 1e-3).",
                    },
                ),
                "guidance": (
                    "FLOAT",
                    {
                        "default": d.guidance,
                        "min": 0.0,
                        "max": 30.0,
                        "step": 0.1,
                        "tooltip": "CFG scale of the teacher and the LoRA teacher (paper: 4.5).",
                    },
                ),
                "seed": (
                    "INT",
                    {"default": 0, "min": 0, "max": SEED_MAX, "tooltip": "Seed of every random draw."},
                ),
                "save_every": (
                    "INT",
                    {
                        "default": 500,
                        "min": 0,
                        "max": 10_000_000,
                        "tooltip": "Checkpoint and rewrite the student every N steps (0: at the end only).",
                    },
                ),
                "preview_every": (
                    "INT",
                    {
                        "default": 100,
                        "min": 0,
                        "max": 10_000_000,
                        "tooltip": "Preview PNG in <output>/previews every N steps (0: at the end only).",
                    },
                ),
                "mixed_precision": (
                    ["no", "fp16", "bf16"],
                    {"default": "no", "tooltip": "Autocast precision (fp16 needs CUDA)."},
                ),
                "gradient_checkpointing": (
                    "BOOLEAN",
                    {"default": False, "tooltip": "Recompute activations: less memory, slower."},
                ),
                "resume": (
                    "BOOLEAN",
                    {
                        "default": False,
                        "tooltip": "Continue from the newest checkpoint in the output folder up to "
                        "'steps'. Off: the output folder must not exist yet.",
                    },
                ),
            },
            "optional": {
                "teacher": (
                    "SWIFTBRUSH_STUDENT",
                    {
                        "tooltip": "A loaded model used as the teacher instead of 'teacher_name' (e.g. from 'SwiftBrush: "
                        "Student from Checkpoint')."
                    },
                ),
            },
        }

    def distill(
        self,
        teacher_name,
        prompts,
        output_name,
        steps,
        batch_size,
        resolution,
        student_lr,
        lora_lr,
        guidance,
        seed,
        save_every,
        preview_every,
        mixed_precision,
        gradient_checkpointing,
        resume,
        teacher=None,
    ):
        lines = [p.strip() for p in (prompts or "").splitlines() if p.strip()]
        if not lines:
            raise InputError("prompts", "at least one training prompt (one per line)", "nothing")
        teacher_comps, teacher_path = None, ""
        if teacher is not None:
            teacher_comps = teacher.components
            teacher_path = teacher_comps.source
        else:
            teacher_path = str(resolve_sd_model(teacher_name, TEACHER_PUBLISHED))
        out = _output_folder(output_name, teacher_path)
        if out.exists() and any(p.name != "prompts.txt" for p in out.iterdir()):
            if not resume:
                raise InputError(
                    "output_name",
                    "a new folder name, or 'resume' on to continue that run",
                    f"{out} already exists",
                )
            if not (out / CONFIG_FILE).is_file():
                raise InputError(
                    "output_name",
                    "a folder written by 'SwiftBrush: Distill' to resume",
                    f"{out} holds another model",
                )
        out.mkdir(parents=True, exist_ok=True)
        prompt_file = out / "prompts.txt"
        prompt_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        device = torch_device()
        cfg = TrainConfig(
            teacher=teacher_path or teacher_name,
            prompts=str(prompt_file),
            out=str(out),
            final_dir=str(out),
            resolution=resolution,
            batch_size=batch_size,
            max_steps=steps,
            student_lr=student_lr,
            lora_lr=lora_lr,
            guidance=guidance,
            seed=seed,
            save_every=save_every,
            keep_checkpoints=1,
            preview_every=preview_every,
            mixed_precision=mixed_precision,
            gradient_checkpointing=gradient_checkpointing,
            resume="auto" if resume else None,
            cpu=device.type == "cpu",
        )
        follow = TrainingFollow(steps)

        unload_all(device)  # training needs the whole GPU; the loaded teacher may sit there from a run
        with torch.inference_mode(False), torch.enable_grad():  # ComfyUI runs nodes in inference mode
            final = train(
                cfg,
                progress=follow.progress,
                should_stop=follow.should_stop,
                preview=follow.preview,
                teacher_components=teacher_comps,
            )
        follow.finish()
        student = SwiftBrushPipeline(load_components(final))
        return {"ui": {"text": [str(final)]}, "result": (follow.previews[-1], str(final), student)}


NODE_CLASS_MAPPINGS = {
    "PaperNodes_SwiftBrushLoadStudent": LoadStudent,
    "PaperNodes_SwiftBrushFromCheckpoint": StudentFromCheckpoint,
    "PaperNodes_SwiftBrushGenerate": Generate,
    "PaperNodes_SwiftBrushDistill": Distill,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PaperNodes_SwiftBrushLoadStudent": "SwiftBrush: Load Student",
    "PaperNodes_SwiftBrushFromCheckpoint": "SwiftBrush: Student from Checkpoint (MODEL/CLIP/VAE)",
    "PaperNodes_SwiftBrushGenerate": "SwiftBrush: Generate (one step)",
    "PaperNodes_SwiftBrushDistill": "SwiftBrush: Distill",
}
