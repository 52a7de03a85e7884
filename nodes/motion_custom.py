"""Customizing Motion nodes: load a video model, train a motion into it, apply motion files, generate.

The method lives in `models/motion_custom/`; these nodes translate ComfyUI types, resolve file names inside
ComfyUI's folders, drive the progress bar and honour Cancel. Motion files go to models/motions; a training
run's checkpoints and log to output/motion_custom/<name>. Save frames with core video nodes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from ..models.common.animatediff import load_motion_adapter
from ..models.common.errors import InputError
from ..models.common.loading import VIDEO_UNET, cast_module, load_components, unet_class_name
from ..models.common.schedulers import SCHEDULERS
from ..models.common.timesteps import LAWS
from ..models.motion_custom.data import clips_from_frames
from ..models.motion_custom.motion_file import load_motion
from ..models.motion_custom.pipeline import (
    DECODE_CHUNK,
    DEFAULT_GUIDANCE,
    DEFAULT_SCHEDULER,
    DEFAULT_STEPS,
    animatediff_model,
    generate,
    load_zeroscope,
    token_warning,
    validate,
)
from ..models.motion_custom.train import TrainConfig, train
from ..models.motion_custom.trainable import TRAINABLE_SETS
from .bridge import checkpoint_inputs, components_from_comfy
from .comfy_adapter import (
    TrainingFollow,
    file_choices,
    input_subfolder,
    model_folders,
    progress_callback,
    register_model_folders,
    resolve_file,
    resolve_sd_model,
    sd_model_input,
    training_run_folder,
)
from .comfy_memory import dtype_input, model_dtype, on_device, torch_device, unload_all

CATEGORY = "PaperNodes/MotionCustom"
MOTIONS = "motions"  # models/motions: motion files (deltas + metadata), our own folder kind
NONE = "none"
SEED_MAX = 0xFFFFFFFFFFFFFFFF
MODEL_PUBLISHED = (
    "a ZeroScope/ModelScope diffusers folder (e.g. cerspense/zeroscope_v2_576w) in models/diffusers, or an SD1.5 "
    "checkpoint plus an AnimateDiff motion module (models/animatediff_models)"
)
MM_PUBLISHED = "https://huggingface.co/guoyww/animatediff (mm_sd_v15_v2.ckpt)"
NO_MODELS = (
    "(no models found: put a ZeroScope folder in models/diffusers or an SD1.5 file in models/checkpoints)"
)

register_model_folders("animatediff_models", MOTIONS)


def _motion_module_choices() -> list[str]:
    return file_choices("animatediff_models", NONE)


class LoadVideoModel:
    DESCRIPTION = (
        "Load a text-to-video model for Customizing Motion: a ZeroScope/ModelScope diffusers folder (the paper's "
        "base), or any SD1.5 model inflated with an AnimateDiff motion module. The loaded files are not changed."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("VIDEO_MODEL",)
    RETURN_NAMES = ("video_model",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model_name": sd_model_input(
                    NO_MODELS,
                    "diffusers/<folder>: a ZeroScope/ModelScope folder (unet is a UNet3DConditionModel), or an "
                    "SD1.5 model (folder or checkpoints/<file>) used with the motion module below.",
                ),
                "motion_module_name": (
                    _motion_module_choices(),
                    {
                        "tooltip": "AnimateDiff SD1.5 motion module from models/animatediff_models (needed for an "
                        "SD1.5 model; 'none' for ZeroScope)."
                    },
                ),
            },
            "optional": {"dtype": dtype_input()},
        }

    def load(self, model_name, motion_module_name, dtype="auto"):
        torch_dtype = model_dtype(dtype)
        path = resolve_sd_model(model_name, MODEL_PUBLISHED)
        if path.is_dir() and unet_class_name(path) == VIDEO_UNET:
            if motion_module_name != NONE:
                raise InputError("motion_module_name", f"'{NONE}' for a ZeroScope model (it has its own temporal "
                                 "layers)", repr(motion_module_name))  # fmt: skip
            return (load_zeroscope(path, torch_dtype),)
        if motion_module_name == NONE:
            raise InputError(
                "motion_module_name",
                "an AnimateDiff motion module for an SD1.5 model (or choose a ZeroScope folder as model_name)",
                NONE,
            )
        adapter = load_motion_adapter(resolve_file("animatediff_models", motion_module_name, MM_PUBLISHED))
        model = animatediff_model(load_components(path, torch_dtype), adapter)
        cast_module(model.unet, torch_dtype)
        return (model,)


class VideoModelFromCheckpoint:
    DESCRIPTION = (
        "Use core Load Checkpoint's MODEL/CLIP/VAE (SD1.5 family, with any appearance LoRA already applied by core "
        "LoRA loaders) as the base of Customizing Motion, inflated with an AnimateDiff motion module: 'my subject "
        "doing the motion'. The host's models are copied, not patched."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("VIDEO_MODEL",)
    RETURN_NAMES = ("video_model",)
    FUNCTION = "convert"

    @classmethod
    def INPUT_TYPES(cls):
        inputs = checkpoint_inputs("An SD1.5-family MODEL (epsilon prediction), LoRAs included.")
        inputs["required"]["motion_module_name"] = (
            file_choices("animatediff_models") or ["(no motion modules in models/animatediff_models)"],
            {"tooltip": "AnimateDiff SD1.5 motion module from models/animatediff_models."},
        )
        return inputs

    def convert(self, model, clip, vae, motion_module_name, dtype="auto"):
        torch_dtype = model_dtype(dtype)
        adapter = load_motion_adapter(resolve_file("animatediff_models", motion_module_name, MM_PUBLISHED))
        video = animatediff_model(components_from_comfy(model, clip, vae, torch_dtype), adapter)
        cast_module(video.unet, torch_dtype)
        return (video,)


class LoadMotion:
    DESCRIPTION = "Load a motion file (written by 'MotionCustom: Train Motion') from models/motions."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MOTION", "STRING")
    RETURN_NAMES = ("motion", "token")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "motion_name": (
                    file_choices(MOTIONS) or ["(no motion files in models/motions)"],
                    {
                        "tooltip": "A .safetensors motion file in models/motions; it remembers its base and token."
                    },
                )
            }
        }

    def load(self, motion_name):
        motion = load_motion(
            resolve_file(MOTIONS, motion_name, "a file written by 'MotionCustom: Train Motion'")
        )
        return (motion, motion.token)


class ApplyMotion:
    DESCRIPTION = (
        "Add a customized motion to a video model (checked against the base it was trained on). Nothing is "
        "patched here: the motion is applied during generation only. Chain several to mix motions."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("VIDEO_MODEL", "STRING")
    RETURN_NAMES = ("video_model", "token")
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "video_model": ("VIDEO_MODEL", {"tooltip": "From 'MotionCustom: Load Video Model'."}),
                "motion": (
                    "MOTION",
                    {"tooltip": "From 'MotionCustom: Load Motion' or 'MotionCustom: Train Motion'."},
                ),
                "strength": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        "min": -2.0,
                        "max": 2.0,
                        "step": 0.05,
                        "tooltip": "Scales the trained change: 1 = as trained, 0 = the base exactly.",
                    },
                ),  # fmt: skip
            }
        }

    def apply(self, video_model, motion, strength):
        return (video_model.with_motion(motion, strength), motion.token)


def _clips_folder(name: str) -> Path:
    """A folder inside ComfyUI's input directory (the clips a user uploaded or copied there)."""
    return input_subfolder(name, "clips_folder", "clips")


class TrainMotion:
    DESCRIPTION = (
        "Teach the video model a motion from a few clips, bound to a token (Customizing Motion, Materzynska et al. "
        "2023): trains the spatial cross-attention keys/values and the temporal layers only, with prior "
        "preservation and the paper's timestep law. Writes models/motions/<output_name>.safetensors; Cancel "
        "saves. Same trainer as `python -m models.motion_custom.train`."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MOTION", "IMAGE", "STRING")
    RETURN_NAMES = ("motion", "preview", "motion_path")
    FUNCTION = "train"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        d = TrainConfig(out="")
        return {
            "required": {
                "video_model": (
                    "VIDEO_MODEL",
                    {"tooltip": "The base to customize (its U-Net is copied, not changed)."},
                ),
                "clips_folder": (
                    "STRING",
                    {
                        "default": "motion_clips",
                        "tooltip": "Folder inside ComfyUI's input "
                        "directory: videos (.mp4/.webm/.gif...) or frame folders, captions in .txt beside "
                        "them. Ignored when 'clips' is connected.",
                    },
                ),  # fmt: skip
                "token": (
                    "STRING",
                    {
                        "default": d.token,
                        "tooltip": "Rare word the motion is bound to (paper: sks); "
                        "write it in prompts to get the motion.",
                    },
                ),  # fmt: skip
                "output_name": (
                    "STRING",
                    {
                        "default": "my-motion",
                        "tooltip": "Motion file name in models/motions "
                        "(the run's checkpoints go to output/motion_custom/<name>).",
                    },
                ),  # fmt: skip
                "steps": (
                    "INT",
                    {
                        "default": d.max_steps,
                        "min": 1,
                        "max": 1_000_000,
                        "tooltip": "Optimizer steps (paper: 3000).",
                    },
                ),  # fmt: skip
                "lr": (
                    "FLOAT",
                    {
                        "default": d.lr,
                        "min": 0.0,
                        "max": 1.0,
                        "step": 1e-7,
                        "round": False,
                        "tooltip": "AdamW learning rate, constant (paper: 5e-6).",
                    },
                ),  # fmt: skip
                "frames": (
                    "INT",
                    {
                        "default": d.frames,
                        "min": 1,
                        "max": 64,
                        "tooltip": "Frames per training clip (paper: 16).",
                    },
                ),  # fmt: skip
                "width": (
                    "INT",
                    {"default": d.width, "min": 64, "max": 2048, "step": 8, "tooltip": "Training width."},
                ),
                "height": (
                    "INT",
                    {"default": d.height, "min": 64, "max": 2048, "step": 8, "tooltip": "Training height."},
                ),  # fmt: skip
                "prior_weight": (
                    "FLOAT",
                    {
                        "default": d.prior_weight,
                        "min": 0.0,
                        "max": 10.0,
                        "step": 0.05,
                        "tooltip": "λ of prior preservation (paper: 0.5); needs a regularization folder.",
                    },
                ),  # fmt: skip
                "timestep_law": (
                    list(LAWS),
                    {
                        "default": d.timestep_law,
                        "tooltip": "high: p(t) ∝ 1 − 0.5 cos(πt/T), "
                        "more high-noise steps where motion is decided (paper); low: flipped; uniform.",
                    },
                ),  # fmt: skip
                "trainable": (
                    list(TRAINABLE_SETS),
                    {
                        "default": d.trainable,
                        "tooltip": "paper: cross-attention K/V + "
                        "temporal layers; temporal: temporal layers only; full: the whole U-Net.",
                    },
                ),  # fmt: skip
                "seed": (
                    "INT",
                    {"default": 0, "min": 0, "max": SEED_MAX, "tooltip": "Seed of every random draw."},
                ),
                "resume": (
                    "BOOLEAN",
                    {
                        "default": False,
                        "tooltip": "Continue the run of this output_name up to "
                        "'steps'. Off: the run folder must not exist yet.",
                    },
                ),  # fmt: skip
            },
            "optional": {
                "clips": (
                    "IMAGE",
                    {"tooltip": "Frames of ONE clip (instead of clips_folder), e.g. from Load Video."},
                ),
                "caption": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "Caption of the connected clip ('' = 'a video of <token> motion').",
                    },
                ),  # fmt: skip
                "regularization_folder": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "Folder inside the input directory of "
                        "generic clips with captions (prior preservation); '' = none.",
                    },
                ),  # fmt: skip
                "mixed_precision": (
                    ["no", "fp16", "bf16"],
                    {
                        "default": "no",
                        "tooltip": "Autocast precision of the frozen parts (fp16/bf16 need a GPU).",
                    },
                ),  # fmt: skip
                "gradient_checkpointing": (
                    "BOOLEAN",
                    {
                        "default": False,
                        "tooltip": "Recompute activations in "
                        "backward: less memory, slower (ZeroScope at full size).",
                    },
                ),  # fmt: skip
            },
        }

    def train(self, video_model, clips_folder, token, output_name, steps, lr, frames, width, height, prior_weight,
              timestep_law, trainable, seed, resume, clips=None, caption="", regularization_folder="",
              mixed_precision="no", gradient_checkpointing=False):  # fmt: skip
        name, out = training_run_folder("motion_custom", output_name, resume)
        in_memory = None
        if clips is not None:
            in_memory = clips_from_frames([clips.cpu().numpy()], [caption])
        folder = None if clips is not None else str(_clips_folder(clips_folder))
        reg = str(_clips_folder(regularization_folder)) if regularization_folder.strip() else None
        device = torch_device()
        cfg = TrainConfig(out=str(out), clips=folder, regularization=reg, token=token.strip(), frames=frames,
                          height=height, width=width, trainable=trainable, prior_weight=prior_weight,
                          timestep_law=timestep_law, lr=lr, max_steps=steps, seed=seed,
                          save_every=max(1, min(500, steps)), keep_checkpoints=1,
                          resume="auto" if resume else None, cpu=device.type == "cpu",
                          mixed_precision=mixed_precision, gradient_checkpointing=gradient_checkpointing)  # fmt: skip
        follow = TrainingFollow(steps)

        unload_all(device)
        with (
            torch.inference_mode(False),
            torch.enable_grad(),
            on_device([video_model.vae, video_model.text_encoder]),
        ):
            path = train(cfg, progress=follow.progress, should_stop=follow.should_stop,
                         preview=follow.preview, base=video_model,
                         clips=in_memory)  # fmt: skip
        target = Path(model_folders(MOTIONS)[0]) / f"{name}.safetensors"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        follow.finish()
        preview = follow.previews[-1] if follow.previews else torch.zeros(1, height, width, 3)
        return {"ui": {"text": [str(target)]}, "result": (load_motion(target), preview, str(target))}


class GenerateVideo:
    DESCRIPTION = (
        "Text-to-video with the video model and its applied motions (DPM-Solver++ 2M, 50 steps, guidance 9: the "
        "paper's inference settings). Write the motion's token in the prompt. Save with core video nodes."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("frames", "notes")
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "video_model": (
                    "VIDEO_MODEL",
                    {"tooltip": "From 'MotionCustom: Load Video Model' / 'Apply Motion'."},
                ),
                "prompt": (
                    "STRING",
                    {
                        "default": "a dog sks running on the beach",
                        "multiline": True,
                        "tooltip": "Include the motion's token (e.g. sks) to get the customized motion.",
                    },
                ),  # fmt: skip
                "negative_prompt": (
                    "STRING",
                    {"default": "", "multiline": True, "tooltip": "Classifier-free guidance negative."},
                ),  # fmt: skip
                "num_frames": (
                    "INT",
                    {"default": 16, "min": 1, "max": 256, "tooltip": "Frames (AnimateDiff v2: ≤ 32)."},
                ),
                "width": (
                    "INT",
                    {"default": 256, "min": 64, "max": 2048, "step": 8, "tooltip": "Width in px."},
                ),
                "height": (
                    "INT",
                    {"default": 256, "min": 64, "max": 2048, "step": 8, "tooltip": "Height in px."},
                ),
                "steps": (
                    "INT",
                    {
                        "default": DEFAULT_STEPS,
                        "min": 1,
                        "max": 1000,
                        "tooltip": "Sampling steps (paper: 50).",
                    },
                ),  # fmt: skip
                "guidance": (
                    "FLOAT",
                    {
                        "default": DEFAULT_GUIDANCE,
                        "min": 0.0,
                        "max": 30.0,
                        "step": 0.1,
                        "tooltip": "Classifier-free guidance (paper: 9).",
                    },
                ),  # fmt: skip
                "scheduler": (
                    list(SCHEDULERS),
                    {
                        "default": DEFAULT_SCHEDULER,
                        "tooltip": "Sampler (paper: DPM-Solver multistep = dpmpp_2m).",
                    },
                ),  # fmt: skip
                "seed": (
                    "INT",
                    {"default": 0, "min": 0, "max": SEED_MAX, "tooltip": "Seed of the initial noise."},
                ),
            }
        }

    def generate(self, video_model, prompt, negative_prompt, num_frames, width, height, steps, guidance, scheduler,
                 seed):  # fmt: skip
        validate(video_model, num_frames, height, width, steps)
        report = progress_callback(steps + -(-num_frames // DECODE_CHUNK))  # steps, then decoded chunks
        with on_device(video_model.modules()) as device:
            frames = generate(video_model, prompt, negative_prompt, num_frames, height, width, steps, guidance,
                              scheduler, seed, progress=report, device=device)  # fmt: skip
        note = token_warning(video_model, prompt)
        return {"ui": {"text": [note]} if note else {}, "result": (frames, note)}


NODE_CLASS_MAPPINGS = {
    "PaperNodes_MotionCustomLoadVideoModel": LoadVideoModel,
    "PaperNodes_MotionCustomFromCheckpoint": VideoModelFromCheckpoint,
    "PaperNodes_MotionCustomLoadMotion": LoadMotion,
    "PaperNodes_MotionCustomApplyMotion": ApplyMotion,
    "PaperNodes_MotionCustomTrainMotion": TrainMotion,
    "PaperNodes_MotionCustomGenerateVideo": GenerateVideo,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PaperNodes_MotionCustomLoadVideoModel": "MotionCustom: Load Video Model",
    "PaperNodes_MotionCustomFromCheckpoint": "MotionCustom: Video Model from Checkpoint (MODEL/CLIP/VAE)",
    "PaperNodes_MotionCustomLoadMotion": "MotionCustom: Load Motion",
    "PaperNodes_MotionCustomApplyMotion": "MotionCustom: Apply Motion",
    "PaperNodes_MotionCustomTrainMotion": "MotionCustom: Train Motion",
    "PaperNodes_MotionCustomGenerateVideo": "MotionCustom: Generate Video",
}
