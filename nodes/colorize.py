"""Colorization nodes: load an InstructPix2Pix-architecture colorizer, colorize, score against a reference."""

from __future__ import annotations

from ..models.colorize.instructions import DEFAULT_INSTRUCTION
from ..models.colorize.metrics import format_report, image_metrics
from ..models.colorize.pipeline import ColorizePipeline, ColorizeSettings
from ..models.common.image import check_image_batch, to_grayscale
from ..models.common.loading import load_components
from ..models.common.schedulers import SCHEDULERS
from .bridge import checkpoint_inputs, components_from_comfy
from .comfy_adapter import (
    progress_callback,
    resolve_sd_model,
    sd_model_input,
)
from .comfy_memory import dtype_input, model_dtype, on_device

CATEGORY = "PaperNodes/Colorization"
PUBLISHED = (
    "annyorange/colorization-finetuned on Hugging Face (diffusers folder: put it in "
    "models/diffusers/), or any InstructPix2Pix checkpoint such as timbrooks/instruct-pix2pix"
)
NO_MODELS = (
    "(no models found: put a diffusers folder in models/diffusers or a .safetensors in models/checkpoints)"
)


class LoadColorizer:
    """Loads the colorizer from ComfyUI's model folders (diffusers folder or single file)."""

    DESCRIPTION = (
        "Load an InstructPix2Pix-architecture colorization model (e.g. annyorange/colorization-finetuned)."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("COLORIZE_MODEL",)
    RETURN_NAMES = ("colorizer",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model_name": sd_model_input(
                    NO_MODELS,
                    "diffusers/<folder> from models/diffusers, or checkpoints/<file> (single-file "
                    "InstructPix2Pix checkpoint in the original layout) from models/checkpoints.",
                )
            },
            "optional": {"dtype": dtype_input()},
        }

    def load(self, model_name, dtype="auto"):
        path = resolve_sd_model(model_name, PUBLISHED)
        return (ColorizePipeline(load_components(path, model_dtype(dtype))),)


class ColorizerFromCheckpoint:
    """Builds the colorizer from core MODEL/CLIP/VAE, e.g. from Load Checkpoint."""

    DESCRIPTION = (
        "Use an InstructPix2Pix checkpoint already loaded by core Load Checkpoint "
        "(MODEL/CLIP/VAE, LoRAs included) as the colorizer."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("COLORIZE_MODEL",)
    RETURN_NAMES = ("colorizer",)
    FUNCTION = "convert"

    @classmethod
    def INPUT_TYPES(cls):
        return checkpoint_inputs("An InstructPix2Pix-architecture MODEL (8 input channels).")

    def convert(self, model, clip, vae, dtype="auto"):
        return (ColorizePipeline(components_from_comfy(model, clip, vae, model_dtype(dtype))),)


class Colorize:
    """Colorizes an IMAGE batch with InstructPix2Pix sampling; any size, original size out."""

    DESCRIPTION = (
        "Turn grayscale images into color. With 'keep luminance' the output keeps every detail "
        "of the input (its Lab L channel) and takes only the colors from the model."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    FUNCTION = "colorize"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "colorizer": ("COLORIZE_MODEL", {"tooltip": "From 'Colorize: Load Model'."}),
                "image": (
                    "IMAGE",
                    {"tooltip": "Images to colorize; color inputs are converted to grayscale first."},
                ),
                "instruction": (
                    "STRING",
                    {
                        "default": DEFAULT_INSTRUCTION,
                        "multiline": True,
                        "tooltip": "The edit instruction given to the model.",
                    },
                ),
                "steps": (
                    "INT",
                    {
                        "default": 100,
                        "min": 1,
                        "max": 1000,
                        "tooltip": "Sampling steps (InstructPix2Pix default: 100).",
                    },
                ),
                "text_guidance": (
                    "FLOAT",
                    {
                        "default": 7.5,
                        "min": 0.0,
                        "max": 30.0,
                        "step": 0.1,
                        "tooltip": "How strongly to follow the instruction (s_T, IP2P: 7.5).",
                    },
                ),
                "image_guidance": (
                    "FLOAT",
                    {
                        "default": 1.5,
                        "min": 0.0,
                        "max": 10.0,
                        "step": 0.05,
                        "tooltip": "How closely to stay with the input image (s_I, IP2P: 1.5).",
                    },
                ),
                "scheduler": (
                    list(SCHEDULERS),
                    {"default": "euler_ancestral", "tooltip": "Sampler (IP2P uses Euler ancestral)."},
                ),
                "seed": (
                    "INT",
                    {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "tooltip": "Same seed, same colors."},
                ),
                "keep_luminance": (
                    "BOOLEAN",
                    {
                        "default": True,
                        "tooltip": "Keep the input's Lab lightness; take only chroma from the model.",
                    },
                ),
                "resize_mode": (
                    ["pad", "resize"],
                    {
                        "default": "pad",
                        "tooltip": "How to reach the model's size multiple: reflect-pad "
                        "and crop back (exact pixels), or resample.",
                    },
                ),
            }
        }

    def colorize(
        self,
        colorizer,
        image,
        instruction,
        steps,
        text_guidance,
        image_guidance,
        scheduler,
        seed,
        keep_luminance,
        resize_mode,
    ):
        settings = ColorizeSettings(
            instruction=instruction,
            steps=steps,
            text_guidance=text_guidance,
            image_guidance=image_guidance,
            scheduler=scheduler,
            seed=seed,
            keep_luminance=keep_luminance,
            resize_mode=resize_mode,
        )
        with on_device(colorizer.components.modules()) as device:
            dtype = next(colorizer.components.unet.parameters()).dtype
            out = colorizer(image, settings, device=device, dtype=dtype, progress=progress_callback(steps))
        return (out,)


class ColorizationMetrics:
    """PSNR / SSIM / MSE / MAE of images against reference images."""

    DESCRIPTION = "Score images against references: PSNR (dB), SSIM, MSE and MAE, per image and mean."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING", "FLOAT", "FLOAT", "FLOAT", "FLOAT")
    RETURN_NAMES = ("report", "psnr", "ssim", "mse", "mae")
    FUNCTION = "measure"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "Images to score (e.g. colorized)."}),
                "reference": (
                    "IMAGE",
                    {"tooltip": "Ground truth: one image, or as many as 'image', same size."},
                ),
            }
        }

    def measure(self, image, reference):
        m = image_metrics(image, reference)
        report = format_report(m)
        return {
            "ui": {"text": [report]},
            "result": (report, m["mean_psnr"], m["mean_ssim"], m["mean_mse"], m["mean_mae"]),
        }


class ToGrayscale:
    """BT.601 grayscale (what the colorizer was trained on), for making test inputs from color images."""

    DESCRIPTION = "Convert images to grayscale (ITU-R BT.601 luma, 3 channels), e.g. to test colorization."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    FUNCTION = "convert"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE", {"tooltip": "Color images."})}}

    def convert(self, image):
        return (to_grayscale(check_image_batch(image, "image")),)


NODE_CLASS_MAPPINGS = {
    "PaperNodes_LoadColorizer": LoadColorizer,
    "PaperNodes_ColorizerFromCheckpoint": ColorizerFromCheckpoint,
    "PaperNodes_Colorize": Colorize,
    "PaperNodes_ColorizationMetrics": ColorizationMetrics,
    "PaperNodes_ToGrayscale": ToGrayscale,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PaperNodes_LoadColorizer": "Colorize: Load Model",
    "PaperNodes_ColorizerFromCheckpoint": "Colorize: Model from Checkpoint (MODEL/CLIP/VAE)",
    "PaperNodes_Colorize": "Colorize: Colorize Image",
    "PaperNodes_ColorizationMetrics": "Colorize: Image Metrics (PSNR/SSIM)",
    "PaperNodes_ToGrayscale": "Colorize: To Grayscale",
}
