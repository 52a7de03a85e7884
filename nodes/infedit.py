"""InfEdit nodes: load a latent-consistency model, edit images with natural language (one or many edits)."""

from __future__ import annotations

from ..models.common.errors import InputError
from ..models.common.loading import load_components, load_state_dict
from ..models.common.lora import fuse_lora
from ..models.infedit.pipeline import CHOICES, InfEditPipeline, InfEditSettings
from .bridge import checkpoint_inputs, components_from_comfy
from .comfy_adapter import (
    file_choices,
    progress_callback,
    resolve_file,
    resolve_sd_model,
    sd_model_input,
)
from .comfy_memory import dtype_input, model_dtype, on_device

CATEGORY = "PaperNodes/InfEdit"
PUBLISHED = (
    "SimianLuo/LCM_Dreamshaper_v7 on Hugging Face (diffusers folder: put it in models/diffusers/), "
    "or an SD1.5 checkpoint plus latent-consistency/lcm-lora-sdv1-5 in models/loras/"
)
NO_MODELS = "(no models found: put LCM_Dreamshaper_v7 in models/diffusers or an SD1.5 .safetensors in models/checkpoints)"
NO_LORA = "none"
DEFAULTS = InfEditSettings()


class LoadLCM:
    DESCRIPTION = (
        "Load a latent-consistency model for InfEdit: LCM-Dreamshaper-v7 (diffusers folder or single "
        "file), or any SD1.5 model with an LCM-LoRA fused in."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("INFEDIT_PIPE",)
    RETURN_NAMES = ("infedit_pipe",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model_name": sd_model_input(
                    NO_MODELS,
                    "diffusers/<folder> from models/diffusers or checkpoints/<file> from models/checkpoints.",
                ),
                "lcm_lora": (
                    file_choices("loras", NO_LORA),
                    {
                        "tooltip": "An LCM-LoRA from models/loras (e.g. lcm-lora-sdv1-5) for a plain SD1.5 model; "
                        "'none' for a model that is already an LCM."
                    },
                ),
                "lora_strength": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": -4.0,
                        "max": 4.0,
                        "step": 0.05,
                        "tooltip": "Scale of the fused LoRA.",
                    },
                ),
            },
            "optional": {"dtype": dtype_input()},
        }

    def load(self, model_name, lcm_lora, lora_strength, dtype="auto"):
        comps = load_components(resolve_sd_model(model_name, PUBLISHED), model_dtype(dtype))
        if lcm_lora != NO_LORA:
            lora = load_state_dict(resolve_file("loras", lcm_lora, "latent-consistency/lcm-lora-sdv1-5"))
            comps = fuse_lora(comps, lora, lora_strength)  # copies: the cached model stays unpatched
        return (InfEditPipeline(comps),)


class LCMFromCheckpoint:
    DESCRIPTION = (
        "Use a model loaded by core Load Checkpoint (MODEL/CLIP/VAE, LoRAs such as LCM-LoRA applied)."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("INFEDIT_PIPE",)
    RETURN_NAMES = ("infedit_pipe",)
    FUNCTION = "convert"

    @classmethod
    def INPUT_TYPES(cls):
        return checkpoint_inputs("An LCM (or SD1.5 + LCM-LoRA) MODEL.")

    def convert(self, model, clip, vae, dtype="auto"):
        return (InfEditPipeline(components_from_comfy(model, clip, vae, model_dtype(dtype))),)


def _settings_inputs() -> dict:
    d = DEFAULTS
    return {
        "steps": (
            "INT",
            {
                "default": d.steps,
                "min": 1,
                "max": 50,
                "tooltip": "LCM steps (paper: 15 interactive, 12 for the benchmark preset).",
            },
        ),
        "source_guidance": (
            "FLOAT",
            {
                "default": d.source_guidance,
                "min": 0.0,
                "max": 10.0,
                "step": 0.1,
                "tooltip": "Classifier-free guidance of the source and layout branches.",
            },
        ),
        "target_guidance": (
            "FLOAT",
            {
                "default": d.target_guidance,
                "min": 0.0,
                "max": 10.0,
                "step": 0.1,
                "tooltip": "Classifier-free guidance of the target branch.",
            },
        ),
        "cross_replace": (
            "FLOAT",
            {
                "default": d.cross_replace,
                "min": 0.0,
                "max": 1.0,
                "step": 0.05,
                "tooltip": "Fraction of steps in which the target's cross-attention maps "
                "follow the source's (aligned words).",
            },
        ),
        "self_replace": (
            "FLOAT",
            {
                "default": d.self_replace,
                "min": 0.0,
                "max": 1.0,
                "step": 0.05,
                "tooltip": "Fraction of steps in which the target takes the source's self-attention layout.",
            },
        ),
        "thresh_e": (
            "FLOAT",
            {
                "default": d.thresh_e,
                "min": 0.0,
                "max": 1.0,
                "step": 0.05,
                "tooltip": "Local blend threshold of the target (edit) words' mask.",
            },
        ),
        "thresh_m": (
            "FLOAT",
            {
                "default": d.thresh_m,
                "min": 0.0,
                "max": 1.0,
                "step": 0.05,
                "tooltip": "Local blend threshold of the source (keep) words' mask.",
            },
        ),
        "eta": (
            "FLOAT",
            {
                "default": d.eta,
                "min": 0.0,
                "max": 1.0,
                "step": 0.05,
                "tooltip": "DDCM noise level; 1 (default) re-noises fully each step.",
            },
        ),
        "seed": (
            "INT",
            {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "tooltip": "Same seed, same edit."},
        ),
        "resize_mode": (
            ["pad", "resize"],
            {
                "default": "pad",
                "tooltip": "How to reach the model's size multiple; the output "
                "has the input's size either way.",
            },
        ),
    }


def _edit_inputs(image_tooltip: str, targets: dict, target_words: dict) -> dict:
    """Inputs shared by the edit nodes, in widget order: pipe, image, source prompt, targets, blend words,
    then the sampling settings."""
    return {
        "required": {
            "infedit_pipe": ("INFEDIT_PIPE", {"tooltip": "From 'InfEdit: Load LCM Model'."}),
            "image": ("IMAGE", {"tooltip": image_tooltip}),
            "source_prompt": (
                "STRING",
                {"default": "a photo of a cat", "multiline": True, "tooltip": "What the image shows now."},
            ),
            **targets,
            "source_blend_words": (
                "STRING",
                {
                    "default": "",
                    "tooltip": "Words of the source prompt whose regions must stay as they are "
                    "(local blend; empty = off).",
                },
            ),
            **target_words,
            **_settings_inputs(),
        },
        "optional": _choice_inputs(),
    }


def _choice_inputs() -> dict:
    """The three choices where the official InfEdit code differs from our first reading (docs/infedit.md).

    Optional, so API prompts written before they existed still run with the defaults."""
    d = DEFAULTS
    return {
        "replaced_words": (
            list(CHOICES["replaced_words"]),
            {
                "default": d.replaced_words,
                "tooltip": "A word that replaces another (black -> green): 'new' = a new token with its own "
                "attention map; 'swap' (official code) = it takes the replaced word's map (P2P word swap).",
            },
        ),
        "pad_mapping": (
            list(CHOICES["pad_mapping"]),
            {
                "default": d.pad_mapping,
                "tooltip": "When the prompts' token counts differ: 'pads' maps the k-th padding token to the "
                "source's k-th; 'position' (official code) maps column to column.",
            },
        ),
        "shared_blend_words": (
            list(CHOICES["shared_blend_words"]),
            {
                "default": d.shared_blend_words,
                "tooltip": "A word in both blend lists: 'keep_source' keeps the source there (undoing the edit);"
                " 'edit_then_layout' (official code) edits it and keeps the source's layout at the end.",
            },
        ),
    }


def _settings(kwargs: dict, source_words: str, target_words: str) -> InfEditSettings:
    fields = (
        "steps",
        "source_guidance",
        "target_guidance",
        "cross_replace",
        "self_replace",
        "thresh_e",
        "thresh_m",
        "eta",
        "seed",
        "resize_mode",
    )
    choices = {k: kwargs[k] for k in CHOICES if kwargs.get(k) is not None}
    return InfEditSettings(
        **{k: kwargs[k] for k in fields},
        **choices,
        source_blend_words=source_words,
        target_blend_words=target_words,
    )


def _run(pipe: InfEditPipeline, image, source_prompt, targets, words, settings):
    with on_device(pipe.components.modules()) as device:
        dtype = next(pipe.components.unet.parameters()).dtype
        # The pipeline reports the full total (images x edit groups x steps) with every step.
        result = pipe(
            image,
            source_prompt,
            targets,
            settings,
            device=device,
            dtype=dtype,
            progress=progress_callback(settings.steps),
            target_blend_words=words,
        )
    return result.edited, result.masks, result.reconstruction


class EditImage:
    DESCRIPTION = (
        "Edit images by describing them: the source prompt says what the image shows, the target "
        "prompt what it should show. No inversion; a few LCM steps."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "MASK", "IMAGE")
    RETURN_NAMES = ("edited", "blend_mask", "source_reconstruction")
    FUNCTION = "edit"

    @classmethod
    def INPUT_TYPES(cls):
        target = {
            "target_prompt": (
                "STRING",
                {
                    "default": "a photo of a dog",
                    "multiline": True,
                    "tooltip": "What it should show after the edit.",
                },
            )
        }
        target_words = {
            "target_blend_words": (
                "STRING",
                {
                    "default": "",
                    "tooltip": "Words of the target prompt whose regions may change; everything else "
                    "keeps the source layout (local blend; empty = off).",
                },
            )
        }
        return _edit_inputs("Images to edit; each is edited independently.", target, target_words)

    def edit(
        self,
        infedit_pipe,
        image,
        source_prompt,
        target_prompt,
        source_blend_words,
        target_blend_words,
        **kwargs,
    ):
        settings = _settings(kwargs, source_blend_words, target_blend_words)
        return _run(infedit_pipe, image, source_prompt, [target_prompt], None, settings)


def parse_edit_list(text: str) -> tuple[list[str], list[str]]:
    """One edit per line: `target prompt` or `target prompt | target blend words`."""
    prompts, words = [], []
    for line in text.splitlines():
        if not line.strip():
            continue
        prompt, _, blend = line.partition("|")
        prompts.append(prompt.strip())
        words.append(blend.strip())
    if not prompts:
        raise InputError("edits", "one target prompt per line (optionally 'prompt | blend words')", "nothing")
    return prompts, words


class EditList:
    DESCRIPTION = (
        "Several edits of the same images in one go: one target prompt per line. The source branch "
        "is shared, so N edits cost one batched run."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "MASK", "IMAGE")
    RETURN_NAMES = ("edited", "blend_masks", "source_reconstruction")
    FUNCTION = "edit"

    @classmethod
    def INPUT_TYPES(cls):
        edits = {
            "edits": (
                "STRING",
                {
                    "default": "a photo of a dog | dog\na photo of a tiger | tiger",
                    "multiline": True,
                    "tooltip": "One edit per line: 'target prompt' or 'target prompt | blend words'.",
                },
            )
        }
        return _edit_inputs("Images to edit; outputs are ordered image by image, edit by edit.", edits, {})

    def edit(self, infedit_pipe, image, source_prompt, edits, source_blend_words, **kwargs):
        prompts, words = parse_edit_list(edits)
        settings = _settings(kwargs, source_blend_words, "")
        return _run(infedit_pipe, image, source_prompt, prompts, words, settings)


NODE_CLASS_MAPPINGS = {
    "PaperNodes_InfEditLoadLCM": LoadLCM,
    "PaperNodes_InfEditFromCheckpoint": LCMFromCheckpoint,
    "PaperNodes_InfEditEditImage": EditImage,
    "PaperNodes_InfEditEditList": EditList,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PaperNodes_InfEditLoadLCM": "InfEdit: Load LCM Model",
    "PaperNodes_InfEditFromCheckpoint": "InfEdit: Model from Checkpoint (MODEL/CLIP/VAE)",
    "PaperNodes_InfEditEditImage": "InfEdit: Edit Image",
    "PaperNodes_InfEditEditList": "InfEdit: Edit List (one source, many targets)",
}
