"""DreaMoving nodes: Video ControlNet conditioning and video generation (pose input: nodes/pose.py).

Generation is `models/dreamoving/pipeline.DreaMovingPipeline`; these nodes only translate ComfyUI types,
place modules on the device, drive the progress bar and honour Cancel. Save the frames with core nodes
(SaveAnimatedWEBP, or CreateVideo + SaveVideo).
"""

from __future__ import annotations

import torch

from ..models.common.errors import InputError
from ..models.common.schedulers import SCHEDULERS
from ..models.dreamoving.content_guider import DEFAULT_SCALE
from ..models.dreamoving.pipeline import (
    DEFAULT_GUIDANCE,
    DEFAULT_OVERLAP,
    DEFAULT_SCHEDULER,
    DEFAULT_STEPS,
    DEFAULT_WINDOW,
)
from ..models.dreamoving.video_controlnet import DEPTH_SCALE, POSE_SCALE, ControlSpec
from . import dreamoving_loaders
from .comfy_adapter import progress_callback
from .comfy_memory import on_device

CATEGORY = dreamoving_loaders.CATEGORY
SEED_MAX = 0xFFFFFFFFFFFFFFFF


class ApplyVideoControlNet:
    DESCRIPTION = (
        "Condition DreaMoving on a pose or depth sequence through a Video ControlNet (Sec. 3.2). Chain two "
        "(pose + depth): their residuals add up. Official demo strengths: 0.5 pose, 0.7 depth."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("DREAMOVING_CONTROL",)
    RETURN_NAMES = ("control",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        pct = {"min": 0.0, "max": 1.0, "step": 0.01}
        return {
            "required": {
                "video_controlnet": (
                    "VIDEO_CONTROLNET",
                    {"tooltip": "From 'DreaMoving: Load Video ControlNet'."},
                ),
                "frames": (
                    "IMAGE",
                    {
                        "tooltip": "Control frames, one per video frame (pose maps or depth maps); resized to the video."
                    },
                ),
                "strength": (
                    "FLOAT",
                    {
                        "default": POSE_SCALE,
                        "min": 0.0,
                        "max": 10.0,
                        "step": 0.01,
                        "tooltip": f"Control scale: {POSE_SCALE} for pose, {DEPTH_SCALE} for depth (the official "
                        "demo's values). 0 turns the control off exactly.",
                    },
                ),
                "start_percent": (
                    "FLOAT",
                    {
                        "default": 0.0,
                        **pct,
                        "tooltip": "First sampling step (fraction of the run) it acts on.",
                    },
                ),
                "end_percent": (
                    "FLOAT",
                    {
                        "default": 1.0,
                        **pct,
                        "tooltip": "Last sampling step (fraction of the run) it acts on.",
                    },
                ),
            },
            "optional": {
                "previous": (
                    "DREAMOVING_CONTROL",
                    {
                        "tooltip": "Controls to add this one to (e.g. pose, then depth). Same frame count needed."
                    },
                )
            },
        }

    def apply(self, video_controlnet, frames, strength, start_percent, end_percent, previous=None):
        if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[-1] not in (3, 4):
            raise InputError("frames", "an IMAGE batch [F, H, W, 3]", repr(getattr(frames, "shape", frames)))
        chw = frames[..., :3].permute(0, 3, 1, 2).float().contiguous()
        spec = ControlSpec(video_controlnet, chw, float(strength), float(start_percent), float(end_percent))
        return ([*(previous or []), spec],)


FRAME_SPLIT = "frame split"
CONTEXT_MODES = {FRAME_SPLIT: True, "U-Net windows": False}  # -> DreaMovingPipeline(split=...)


class GenerateVideo:
    DESCRIPTION = (
        "DreaMoving text-to-video: the motion U-Net denoises all frames (its motion blocks see sliding context "
        "windows), steered by "
        "the Video ControlNet(s) and the Content Guider's face/clothes images "
        "(Z = Attn_text + α_f Attn_face + α_c Attn_clothes). Returns the frames as an IMAGE batch."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("frames",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        size = {"default": 512, "min": 64, "max": 2048, "step": 8}
        scale = {"default": DEFAULT_SCALE, "min": 0.0, "max": 5.0, "step": 0.01}
        return {
            "required": {
                "dreamoving_pipe": ("DREAMOVING_PIPE", {"tooltip": "From 'DreaMoving: Load Model'."}),
                "prompt": (
                    "STRING",
                    {
                        "default": "a girl dancing on the beach, best quality",
                        "multiline": True,
                        "tooltip": "What the video shows (at most 75 CLIP tokens are used).",
                    },
                ),
                "negative_prompt": (
                    "STRING",
                    {
                        "default": "lowres, bad anatomy, worst quality, blurry",
                        "multiline": True,
                        "tooltip": "What to avoid: the unconditional branch of classifier-free guidance.",
                    },
                ),
                "face_scale": (
                    "FLOAT",
                    {**scale, "tooltip": "α_f: weight of the face image prompt (0 = off)."},
                ),
                "clothes_scale": (
                    "FLOAT",
                    {**scale, "tooltip": "α_c: weight of the clothes image prompt (0 = off)."},
                ),
                "num_frames": (
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": 4096,
                        "tooltip": "Frames to make; 0 = the control's length.",
                    },
                ),
                "width": ("INT", {**size, "tooltip": "Video width in px (multiple of 8)."}),
                "height": ("INT", {**size, "tooltip": "Video height in px (multiple of 8)."}),
                "steps": (
                    "INT",
                    {"default": DEFAULT_STEPS, "min": 1, "max": 1000, "tooltip": "Sampling steps."},
                ),
                "guidance": (
                    "FLOAT",
                    {
                        "default": DEFAULT_GUIDANCE,
                        "min": 1.0,
                        "max": 30.0,
                        "step": 0.1,
                        "tooltip": "Classifier-free guidance scale (1 = no guidance, half the U-Net work).",
                    },
                ),
                "scheduler": (list(SCHEDULERS), {"default": DEFAULT_SCHEDULER, "tooltip": "Sampler."}),
                "seed": (
                    "INT",
                    {"default": 0, "min": 0, "max": SEED_MAX, "tooltip": "Seed of the video's noise."},
                ),
                "context_window": (
                    "INT",
                    {
                        "default": DEFAULT_WINDOW,
                        "min": 1,
                        "max": 64,
                        "tooltip": "Frames the motion blocks see at once (AnimateDiff trains on 16; at most the "
                        "module's positional table, 32 for v2). Longer videos run in overlapping windows.",
                    },
                ),
                "context_overlap": (
                    "INT",
                    {
                        "default": DEFAULT_OVERLAP,
                        "min": 0,
                        "max": 63,
                        "tooltip": "Frames shared by neighbouring windows.",
                    },
                ),
            },
            "optional": {
                "control": ("DREAMOVING_CONTROL", {"tooltip": "From 'DreaMoving: Apply Video ControlNet'."}),
                "content_guider": ("CONTENT_GUIDER", {"tooltip": "From 'DreaMoving: Load Content Guider'."}),
                "face_image": ("IMAGE", {"tooltip": "Reference face (one image); needs the content guider."}),
                "clothes_image": (
                    "IMAGE",
                    {"tooltip": "Reference clothes (one image); needs the content guider."},
                ),
                "context_mode": (
                    list(CONTEXT_MODES),
                    {
                        "default": FRAME_SPLIT,
                        "tooltip": "How videos longer than one window run. 'frame split': every frame goes "
                        "once through the U-Net's spatial layers and the ControlNet (one window of frames "
                        "at a time), only the motion blocks run per window (FreeNoise's split; fastest; "
                        "the layers' outputs for all frames are kept, so memory grows with the length). "
                        "'U-Net windows': the whole U-Net per window (memory of one window "
                        "whatever the length; overlapped frames cost twice): for long videos at high "
                        "resolution on little memory.",
                    },
                ),
            },
        }

    def generate(
        self,
        dreamoving_pipe,
        prompt,
        negative_prompt,
        face_scale,
        clothes_scale,
        num_frames,
        width,
        height,
        steps,
        guidance,
        scheduler,
        seed,
        context_window,
        context_overlap,
        control=None,
        content_guider=None,
        face_image=None,
        clothes_image=None,
        context_mode=None,
    ):
        pipe = dreamoving_pipe
        mode = FRAME_SPLIT if context_mode is None else context_mode
        if mode not in CONTEXT_MODES:
            raise InputError("context_mode", " or ".join(repr(m) for m in CONTEXT_MODES), repr(context_mode))
        controls = list(control or [])
        if num_frames == 0:
            if not controls:
                raise InputError("num_frames", "a frame count >= 1 when no control is connected", "0")
            num_frames = int(controls[0].frames.shape[0])
        if (face_image is not None or clothes_image is not None) and content_guider is None:
            raise InputError(
                "content_guider", "a Content Guider when face_image or clothes_image is connected"
            )
        modules = pipe.modules() + [s.controlnet for s in controls]
        modules += content_guider.modules() if content_guider is not None else []
        _check_one_precision(modules)
        # Validate before moving anything to the device: cheap errors first.
        pipe.validate(num_frames, height, width, steps, context_window, context_overlap, controls)
        with on_device(modules) as device:
            guider = None
            if content_guider is not None:
                guider = content_guider.guider(face_image, clothes_image, face_scale, clothes_scale)
            frames = pipe(
                prompt,
                negative_prompt,
                num_frames=num_frames,
                height=height,
                width=width,
                steps=steps,
                guidance=guidance,
                scheduler=scheduler,
                seed=seed,
                window=context_window,
                overlap=context_overlap,
                controls=controls,
                guider=guider,
                progress=_lazy_progress(),
                device=device,
                split=CONTEXT_MODES[mode],
            )
        return (frames,)


def _check_one_precision(modules: list[torch.nn.Module]) -> None:
    """Every module of a run in one precision: the loaders' `dtype` inputs must agree."""
    found = sorted({str(p.dtype).removeprefix("torch.") for m in modules for p in m.parameters()})
    if len(found) > 1:
        raise InputError(
            "dtype",
            "the same dtype on every DreaMoving loader (Load Model, Video ControlNet, Content Guider)",
            ", ".join(found),
        )


def _lazy_progress():
    """ComfyUI's progress bar, created on the first report (the pipeline knows windows x steps + decode)."""
    report = None

    def update(done: int, total: int) -> None:
        nonlocal report
        if report is None:
            report = progress_callback(total)
        report(done, total)

    return update


NODE_CLASS_MAPPINGS = {
    **dreamoving_loaders.NODE_CLASS_MAPPINGS,
    "PaperNodes_DreaMovingApplyVideoControlNet": ApplyVideoControlNet,
    "PaperNodes_DreaMovingGenerate": GenerateVideo,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    **dreamoving_loaders.NODE_DISPLAY_NAME_MAPPINGS,
    "PaperNodes_DreaMovingApplyVideoControlNet": "DreaMoving: Apply Video ControlNet",
    "PaperNodes_DreaMovingGenerate": "DreaMoving: Generate Video",
}
