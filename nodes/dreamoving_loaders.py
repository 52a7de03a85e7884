"""DreaMoving loader nodes: motion module, Video ControlNet, Content Guider (IP-Adapters + CLIP vision), model.

Folders are the ecosystem's: `animatediff_models` (AnimateDiff-Evolved's name, registered here when no other
pack did), `controlnet`, `ipadapter` (ComfyUI_IPAdapter_plus's name, registered likewise), `clip_vision`,
and the SD loader's `diffusers`/`checkpoints`. Names are resolved inside those folders only.
"""

from __future__ import annotations

from pathlib import Path

from ..models.common.animatediff import load_motion_adapter
from ..models.common.controlnet import PUBLISHED as CONTROLNET_PUBLISHED
from ..models.common.errors import WeightsNotFoundError
from ..models.common.image_prompt import CLIP_VISION_URL, IP_ADAPTER_URL, load_clip_vision, load_ip_adapter
from ..models.common.loading import cast_module, load_components
from ..models.dreamoving.pipeline import ContentGuiderModels, DreaMovingPipeline
from ..models.dreamoving.video_controlnet import (
    CONFIG_NAME,
    VideoControlNet,
    load_video_controlnet,
)
from .bridge import checkpoint_inputs, components_from_comfy
from .comfy_adapter import (
    file_choices,
    model_dirs_with,
    model_folders,
    path_inside,
    register_model_folders,
    resolve_file,
    resolve_sd_model,
    sd_model_input,
)
from .comfy_memory import dtype_input, model_dtype

CATEGORY = "PaperNodes/DreaMoving"
MOTION_PUBLISHED = (
    "https://huggingface.co/guoyww/animatediff (mm_sd_v15_v2.ckpt) or a diffusers MotionAdapter folder "
    "(guoyww/animatediff-motion-adapter-v1-5-2)"
)
SD_PUBLISHED = "an SD1.5 checkpoint (e.g. a diffusers folder in models/diffusers or a .safetensors in models/checkpoints)"
NO_MODELS = "(no models found: put an SD1.5 diffusers folder in models/diffusers or a .safetensors in models/checkpoints)"
NONE = "none"
DTYPE_INPUT = dtype_input()


register_model_folders("animatediff_models", "ipadapter")


def _folders_with_config(kind: str) -> list[str]:
    """Sub-folders (any depth) of the `kind` folders that hold a config.json: diffusers-layout models.
    Scanned once and cached until a folder changes (comfy_adapter.model_dirs_with)."""
    return [name for name in model_dirs_with(kind, "config.json") if name != "."]


def choices(kind: str, placeholder: str, folders: bool = False, none: bool = False) -> list[str]:
    """Combo entries: weight files (and diffusers folders) of a ComfyUI model folder kind."""
    entries = file_choices(kind) + (_folders_with_config(kind) if folders else [])
    return ([NONE] if none else []) + (entries or ([] if none else [placeholder]))


def resolve_entry(kind: str, name: str, published: str) -> Path:
    """A file or a config.json folder inside the `kind` folders; never a path outside them."""
    for root in model_folders(kind):
        candidate = path_inside(root, name)
        if candidate is not None and (candidate / "config.json").is_file():
            return candidate
    try:
        return resolve_file(kind, name, published)
    except WeightsNotFoundError:
        raise WeightsNotFoundError(name, model_folders(kind), published) from None


class LoadMotionModule:
    DESCRIPTION = (
        "Load AnimateDiff motion modules (DreaMoving Sec. 3.1: the denoising U-Net's motion blocks) from "
        "models/animatediff_models: original-layout files (mm_sd_v15_v2.ckpt/.safetensors) or diffusers "
        "MotionAdapter folders."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MOTION_MODULE",)
    RETURN_NAMES = ("motion_module",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "motion_name": (
                    choices("animatediff_models", "(no motion modules in models/animatediff_models)", True),
                    {
                        "tooltip": "AnimateDiff SD1.5 motion module: a file (original keys, e.g. mm_sd_v15_v2) "
                        "or a diffusers MotionAdapter folder in models/animatediff_models."
                    },
                )
            }
        }

    def load(self, motion_name):
        return (load_motion_adapter(resolve_entry("animatediff_models", motion_name, MOTION_PUBLISHED)),)


class LoadVideoControlNet:
    DESCRIPTION = (
        "Load a Video ControlNet (DreaMoving Sec. 3.2: an image ControlNet with motion blocks) from "
        "models/controlnet. A plain image ControlNet (openpose/depth, single file or diffusers folder) "
        "becomes a Video ControlNet whose motion blocks are the identity, or copies of the motion module's "
        "blocks when one is connected."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("VIDEO_CONTROLNET",)
    RETURN_NAMES = ("video_controlnet",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "controlnet_name": (
                    choices("controlnet", "(no ControlNets in models/controlnet)", True),
                    {
                        "tooltip": "SD1.5 ControlNet: control_v11p_sd15_openpose (pose) or "
                        "control_v11f1p_sd15_depth (depth), single file or diffusers folder; or a saved "
                        "Video ControlNet folder."
                    },
                )
            },
            "optional": {
                "motion_module": (
                    "MOTION_MODULE",
                    {
                        "tooltip": "Optional: initialise the motion blocks of a plain image ControlNet from "
                        "these AnimateDiff blocks (frames exchange information from the start). Without it "
                        "they start as the identity (the image ControlNet frame by frame)."
                    },
                ),
                "dtype": DTYPE_INPUT,
            },
        }

    def load(self, controlnet_name, motion_module=None, dtype="auto"):
        path = resolve_entry("controlnet", controlnet_name, CONTROLNET_PUBLISHED)
        vcn = load_video_controlnet(path)
        saved_video = path.is_dir() and (path / CONFIG_NAME).is_file()
        if motion_module is not None and not saved_video:
            vcn = VideoControlNet.from_motion_adapter(vcn.controlnet, motion_module)
        return (cast_module(vcn.eval().requires_grad_(False), model_dtype(dtype)),)


class LoadContentGuider:
    DESCRIPTION = (
        "Load DreaMoving's Content Guider (Sec. 3.3): IP-Adapter projections for the face and the clothes "
        "image prompts, and the CLIP vision encoder they read. Feed it to 'DreaMoving: Generate Video'."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("CONTENT_GUIDER",)
    RETURN_NAMES = ("content_guider",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "face_ipadapter": (
                    choices("ipadapter", "(no IP-Adapters in models/ipadapter)"),
                    {
                        "tooltip": "IP-Adapter for the face image (ip-adapter-plus-face_sd15 fits best; plain or "
                        "plus work) from models/ipadapter."
                    },
                ),
                "clothes_ipadapter": (
                    choices("ipadapter", "", none=True),
                    {
                        "tooltip": "IP-Adapter for the clothes image (e.g. ip-adapter-plus_sd15); 'none' uses "
                        "the face adapter for both."
                    },
                ),
                "clip_vision": (
                    choices("clip_vision", "(no CLIP vision models in models/clip_vision)", True),
                    {
                        "tooltip": "The CLIP vision encoder the IP-Adapters were trained with (SD1.5 files: "
                        "ViT-H/14, h94/IP-Adapter models/image_encoder) from models/clip_vision."
                    },
                ),
            },
            "optional": {"dtype": DTYPE_INPUT},
        }

    def load(self, face_ipadapter, clothes_ipadapter, clip_vision, dtype="auto"):
        face = load_ip_adapter(resolve_file("ipadapter", face_ipadapter, IP_ADAPTER_URL))
        clothes = None
        if clothes_ipadapter != NONE:
            clothes = load_ip_adapter(resolve_file("ipadapter", clothes_ipadapter, IP_ADAPTER_URL))
        encoder = load_clip_vision(resolve_entry("clip_vision", clip_vision, CLIP_VISION_URL))
        guider = ContentGuiderModels(face, clothes, encoder)
        for module in guider.modules():
            cast_module(module, model_dtype(dtype))
        return (guider,)


MOTION_INPUT = (
    "MOTION_MODULE",
    {"tooltip": "From 'DreaMoving: Load Motion Module': inflates the SD1.5 U-Net with motion blocks."},
)


class LoadModel:
    DESCRIPTION = (
        "Load an SD1.5 model and inflate its U-Net with AnimateDiff motion blocks: DreaMoving's denoising "
        "U-Net (Sec. 3.1). The loaded model itself is not changed (the U-Net is copied)."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("DREAMOVING_PIPE",)
    RETURN_NAMES = ("dreamoving_pipe",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model_name": sd_model_input(
                    NO_MODELS,
                    "diffusers/<folder> from models/diffusers or checkpoints/<file> (SD1.5 family, e.g. "
                    "Realistic Vision, as in the paper's demo).",
                ),
                "motion_module": MOTION_INPUT,
            },
            "optional": {"dtype": DTYPE_INPUT},
        }

    def load(self, model_name, motion_module, dtype="auto"):
        torch_dtype = model_dtype(dtype)
        comps = load_components(resolve_sd_model(model_name, SD_PUBLISHED), torch_dtype)
        return (_pipeline(comps, motion_module, torch_dtype),)


class ModelFromCheckpoint:
    DESCRIPTION = (
        "Use core Load Checkpoint's MODEL/CLIP/VAE (SD1.5 family, LoRAs included) as DreaMoving's "
        "denoising U-Net, inflated with AnimateDiff motion blocks. The host's models are copied, not patched."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("DREAMOVING_PIPE",)
    RETURN_NAMES = ("dreamoving_pipe",)
    FUNCTION = "convert"

    @classmethod
    def INPUT_TYPES(cls):
        inputs = checkpoint_inputs("An SD1.5-family MODEL (epsilon prediction).")
        inputs["required"]["motion_module"] = MOTION_INPUT
        return inputs

    def convert(self, model, clip, vae, motion_module, dtype="auto"):
        torch_dtype = model_dtype(dtype)
        return (_pipeline(components_from_comfy(model, clip, vae, torch_dtype), motion_module, torch_dtype),)


def _pipeline(comps, motion_module, dtype) -> DreaMovingPipeline:
    """The inflated U-Net (a new module built from the model's and the motion module's weights) in the
    precision of the model."""
    pipe = DreaMovingPipeline(comps, motion_module)
    cast_module(pipe.unet, dtype)
    return pipe


NODE_CLASS_MAPPINGS = {
    "PaperNodes_DreaMovingLoadMotionModule": LoadMotionModule,
    "PaperNodes_DreaMovingLoadVideoControlNet": LoadVideoControlNet,
    "PaperNodes_DreaMovingLoadContentGuider": LoadContentGuider,
    "PaperNodes_DreaMovingLoadModel": LoadModel,
    "PaperNodes_DreaMovingFromCheckpoint": ModelFromCheckpoint,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PaperNodes_DreaMovingLoadMotionModule": "DreaMoving: Load Motion Module",
    "PaperNodes_DreaMovingLoadVideoControlNet": "DreaMoving: Load Video ControlNet",
    "PaperNodes_DreaMovingLoadContentGuider": "DreaMoving: Load Content Guider",
    "PaperNodes_DreaMovingLoadModel": "DreaMoving: Load Model",
    "PaperNodes_DreaMovingFromCheckpoint": "DreaMoving: Model from Checkpoint (MODEL/CLIP/VAE)",
}
