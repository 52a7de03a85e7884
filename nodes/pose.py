"""Pose nodes: load POSE_KEYPOINT from JSON, render OpenPose maps, retime keypoints or maps.

Shared by the pose-driven methods (models/common/pose.py); they first came with DreaMoving, so their node
IDs keep the `PaperNodes_DreaMoving...` names that saved workflows refer to.
"""

from __future__ import annotations

import json

from ..models.common import pose
from ..models.common.errors import InputError
from .comfy_adapter import input_dir, path_inside

CATEGORY = "PaperNodes/Pose"
NO_JSON = "(no .json files in the input folder)"


def pose_json_choices() -> list[str]:
    base = input_dir()
    if base is None or not base.is_dir():
        return [NO_JSON]
    names = sorted(p.relative_to(base).as_posix() for p in base.rglob("*.json") if p.is_file())
    return names or [NO_JSON]


class LoadPoseKeypoints:
    DESCRIPTION = (
        "Read a pose sequence saved as JSON (POSE_KEYPOINT: a list of OpenPose-format frames, as the pose "
        "preprocessors emit and save) from ComfyUI's input folder, so a workflow runs without a detector."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("POSE_KEYPOINT",)
    RETURN_NAMES = ("pose_keypoint",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "json_file": (
                    pose_json_choices(),
                    {
                        "tooltip": "A .json file in ComfyUI's input folder: [{'people': [...], 'canvas_width': W, ...}]."
                    },
                )
            }
        }

    def load(self, json_file):
        base = input_dir()
        if base is None:
            raise InputError("json_file", "ComfyUI's input folder", "no input folder configured")
        path = path_inside(base, json_file)
        if path is None or not path.is_file():
            raise InputError("json_file", f"a .json file inside {base}", repr(json_file))
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError("json_file", "valid JSON", f"{path.name}: {exc}") from None
        pose.parse_pose_keypoints(data)  # validates now, naming the frame and field
        return (data if isinstance(data, list) else [data],)


class RenderOpenPose:
    DESCRIPTION = (
        "Draw POSE_KEYPOINT frames as OpenPose maps (colours and limb shapes of controlnet_aux, what the "
        "openpose ControlNet was trained on): one IMAGE frame per pose frame."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("pose_images",)
    FUNCTION = "render"

    @classmethod
    def INPUT_TYPES(cls):
        size = {"min": 8, "max": 4096, "step": 8}
        return {
            "required": {
                "pose_keypoint": (
                    "POSE_KEYPOINT",
                    {"tooltip": "Pose frames (OpenPose/DWPose preprocessor output)."},
                ),
                "width": (
                    "INT",
                    {"default": 512, **size, "tooltip": "Map width in px (use the video width)."},
                ),
                "height": (
                    "INT",
                    {"default": 512, **size, "tooltip": "Map height in px (use the video height)."},
                ),
                "draw_body": (
                    "BOOLEAN",
                    {"default": True, "tooltip": "Draw the 18 body keypoints and limbs."},
                ),
                "draw_hands": ("BOOLEAN", {"default": True, "tooltip": "Draw hand keypoints where present."}),
                "draw_face": ("BOOLEAN", {"default": True, "tooltip": "Draw face keypoints where present."}),
            }
        }

    def render(self, pose_keypoint, width, height, draw_body, draw_hands, draw_face):
        return (pose.render_openpose(pose_keypoint, width, height, draw_body, draw_hands, draw_face),)


class RetimePose:
    DESCRIPTION = (
        "Change a pose sequence's frame rate or length, keeping its duration: keypoints interpolate per "
        "joint; rendered maps (IMAGE) take the nearest frame or blend neighbours. Connect one or both."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("POSE_KEYPOINT", "IMAGE")
    RETURN_NAMES = ("pose_keypoint", "images")
    FUNCTION = "retime"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "source_fps": (
                    "FLOAT",
                    {
                        "default": 30.0,
                        "min": 0.01,
                        "max": 1000.0,
                        "step": 0.01,
                        "tooltip": "Frame rate of the input.",
                    },
                ),
                "target_fps": (
                    "FLOAT",
                    {
                        "default": 8.0,
                        "min": 0.01,
                        "max": 1000.0,
                        "step": 0.01,
                        "tooltip": "Frame rate to produce (AnimateDiff clips play at ~8 fps). Ignored when "
                        "num_frames > 0.",
                    },
                ),
                "num_frames": (
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": 100000,
                        "tooltip": "Exact output length; 0 = use target_fps.",
                    },
                ),
                "image_mode": (
                    ["nearest", "linear"],
                    {"tooltip": "IMAGE input: nearest frame (crisp) or linear blend (smooth, ghosts limbs)."},
                ),
            },
            "optional": {
                "pose_keypoint": ("POSE_KEYPOINT", {"tooltip": "Keypoint frames to retime."}),
                "images": ("IMAGE", {"tooltip": "Rendered pose (or depth) maps to retime."}),
            },
        }

    def retime(self, source_fps, target_fps, num_frames, image_mode, pose_keypoint=None, images=None):
        if pose_keypoint is None and images is None:
            raise InputError("pose_keypoint/images", "at least one connected input")
        kw = {"num_frames": num_frames} if num_frames > 0 else {"dst_fps": target_fps}
        out_pose = (
            pose.retime_keypoints(pose_keypoint, source_fps, **kw) if pose_keypoint is not None else None
        )
        out_images = None
        if images is not None:
            count = num_frames or len(pose.retime_positions(images.shape[0], source_fps, dst_fps=target_fps))
            out_images = pose.resample_frames(images, count, image_mode)
        return (out_pose, out_images)


NODE_CLASS_MAPPINGS = {
    "PaperNodes_DreaMovingLoadPoseKeypoints": LoadPoseKeypoints,
    "PaperNodes_DreaMovingRenderPose": RenderOpenPose,
    "PaperNodes_DreaMovingRetimePose": RetimePose,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PaperNodes_DreaMovingLoadPoseKeypoints": "Pose: Load Keypoints (JSON)",
    "PaperNodes_DreaMovingRenderPose": "Pose: Render OpenPose",
    "PaperNodes_DreaMovingRetimePose": "Pose: Retime",
}
