"""Write each example workflow twice from one graph description: UI format (a template in ComfyUI's
browser, titled by its file name) and API format (example_workflows/api/, for POST /prompt and the tests).

Keeping both files generated from one source means they cannot drift; tests/test_workflows.py checks
both against the live server's /object_info, and the UI files for overlapping nodes, cut titles and a
view that shows the whole graph. Run: `python scripts/make_workflows.py` (no ComfyUI needed).
Node positions are computed, never hand-placed: of the column assignments (data flows left to right), the
one whose links run behind no node (link_curves: the frontend's splines) and that shows at the largest scale.

Widget order per node class is declared here (it is the order of the non-link inputs in INPUT_TYPES);
an INT input named `seed` gets the UI's extra "control_after_generate" widget value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = REPO_ROOT / "example_workflows"

# class_type -> ordered widget names; link inputs are given per node.
WIDGETS: dict[str, list[str]] = {
    "LoadImage": ["image", "upload"],
    "SaveImage": ["filename_prefix"],
    "PreviewImage": [],
    "PaperNodes_LoadColorizer": ["model_name", "dtype"],
    "PaperNodes_ToGrayscale": [],
    "PaperNodes_Colorize": [
        "instruction",
        "steps",
        "text_guidance",
        "image_guidance",
        "scheduler",
        "seed",
        "keep_luminance",
        "resize_mode",
    ],
    "PaperNodes_ColorizationMetrics": [],
    "MaskToImage": [],
    "PaperNodes_InfEditLoadLCM": ["model_name", "lcm_lora", "lora_strength", "dtype"],
    "PaperNodes_InfEditEditImage": [
        "source_prompt",
        "target_prompt",
        "source_blend_words",
        "target_blend_words",
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
        "replaced_words",
        "pad_mapping",
        "shared_blend_words",
    ],
    "PaperNodes_SwiftBrushLoadStudent": ["model_name", "unet_name", "dtype"],
    "PaperNodes_SwiftBrushGenerate": ["prompt", "seed", "batch_size", "width", "height"],
    "SaveAnimatedWEBP": ["filename_prefix", "fps", "lossless", "quality", "method"],
    "PaperNodes_DreaMovingLoadPoseKeypoints": ["json_file"],
    "PaperNodes_DreaMovingRenderPose": ["width", "height", "draw_body", "draw_hands", "draw_face"],
    "PaperNodes_DreaMovingRetimePose": ["source_fps", "target_fps", "num_frames", "image_mode"],
    "PaperNodes_DreaMovingLoadMotionModule": ["motion_name"],
    "PaperNodes_DreaMovingLoadModel": ["model_name", "dtype"],
    "PaperNodes_DreaMovingLoadVideoControlNet": ["controlnet_name", "dtype"],
    "PaperNodes_DreaMovingApplyVideoControlNet": ["strength", "start_percent", "end_percent"],
    "PaperNodes_DreaMovingLoadContentGuider": ["face_ipadapter", "clothes_ipadapter", "clip_vision", "dtype"],
    "PaperNodes_DreaMovingGenerate": [
        "prompt",
        "negative_prompt",
        "face_scale",
        "clothes_scale",
        "num_frames",
        "width",
        "height",
        "steps",
        "guidance",
        "scheduler",
        "seed",
        "context_window",
        "context_overlap",
        "context_mode",
    ],
    "PaperNodes_MotionCustomLoadVideoModel": ["model_name", "motion_module_name", "dtype"],
    "PaperNodes_MotionCustomLoadMotion": ["motion_name"],
    "PaperNodes_MotionCustomApplyMotion": ["strength"],
    "PaperNodes_MotionCustomTrainMotion": [
        "clips_folder",
        "token",
        "output_name",
        "steps",
        "lr",
        "frames",
        "width",
        "height",
        "prior_weight",
        "timestep_law",
        "trainable",
        "seed",
        "resume",
        "caption",
        "regularization_folder",
        "mixed_precision",
        "gradient_checkpointing",
    ],  # fmt: skip
    "PaperNodes_MotionCustomGenerateVideo": [
        "prompt",
        "negative_prompt",
        "num_frames",
        "width",
        "height",
        "steps",
        "guidance",
        "scheduler",
        "seed",
    ],  # fmt: skip
    "PaperNodes_HandDiffuseLoad": ["model_name"],
    "PaperNodes_HandDiffuseGenerate": [
        "label",
        "seconds",
        "fps",
        "seed",
        "steps",
        "guidance",
        "separate_hands",
    ],
    "PaperNodes_HandDiffuseKeyframesFromPoses": ["poses", "seconds", "fps"],
    "PaperNodes_HandDiffuseTrajectory": ["hand", "joint", "points", "seconds", "fps"],
    "PaperNodes_HandDiffuseRender": ["width", "height", "yaw", "pitch", "distance"],
    "PaperNodes_HandDiffuseSave": ["filename_prefix"],
    "PaperNodes_HandDiffuseMesh": ["frame_step"],
    "SaveGLB": ["filename_prefix"],
    "PaperNodes_BiDiffLoadPrior": ["model_name"],
    "PaperNodes_BiDiffSamplePrior": ["prompt", "seed", "count", "steps", "guidance"],
    "PaperNodes_BiDiffMesh": ["resolution"],
    "PaperNodes_BiDiffRefine": ["prompt", "steps", "learning_rate", "guidance", "seed"],
    "PaperNodes_BiDiffLoadModel": ["model_name"],
    "PaperNodes_BiDiffGenerate": [
        "prompt",
        "shape_prompt",
        "texture_prompt",
        "seed",
        "steps",
        "text_scale",
        "consistency_scale",
        "lazy_t",
    ],
    "PaperNodes_BiDiffRenderViews": ["views", "size", "elevation", "samples"],
    "PaperNodes_TriHumanLoadAvatar": ["avatar_name"],
    "PaperNodes_TriHumanLoadMotion": ["source", "motion", "seed", "frames", "file", "bvh_units", "fps"],
    "PaperNodes_TriHumanOrbitCamera": [
        "start_angle",
        "degrees_per_frame",
        "radius",
        "elevation",
        "fov",
        "target_height",
        "calibration_json",
    ],
    "PaperNodes_TriHumanRender": ["width", "height", "samples", "background"],
    "PaperNodes_TriHumanMesh": ["frame", "all_frames", "filename_prefix"],
}
OUTPUTS: dict[str, list[tuple[str, str]]] = {
    "LoadImage": [("IMAGE", "IMAGE"), ("MASK", "MASK")],
    "SaveImage": [],
    "PreviewImage": [],
    "PaperNodes_LoadColorizer": [("colorizer", "COLORIZE_MODEL")],
    "PaperNodes_ToGrayscale": [("image", "IMAGE")],
    "PaperNodes_Colorize": [("image", "IMAGE")],
    "PaperNodes_ColorizationMetrics": [
        ("report", "STRING"),
        ("psnr", "FLOAT"),
        ("ssim", "FLOAT"),
        ("mse", "FLOAT"),
        ("mae", "FLOAT"),
    ],
    "MaskToImage": [("IMAGE", "IMAGE")],
    "PaperNodes_InfEditLoadLCM": [("infedit_pipe", "INFEDIT_PIPE")],
    "PaperNodes_InfEditEditImage": [
        ("edited", "IMAGE"),
        ("blend_mask", "MASK"),
        ("source_reconstruction", "IMAGE"),
    ],
    "PaperNodes_SwiftBrushLoadStudent": [("student", "SWIFTBRUSH_STUDENT")],
    "PaperNodes_SwiftBrushGenerate": [("image", "IMAGE"), ("latent", "LATENT")],
    "SaveAnimatedWEBP": [],
    "PaperNodes_DreaMovingLoadPoseKeypoints": [("pose_keypoint", "POSE_KEYPOINT")],
    "PaperNodes_DreaMovingRenderPose": [("pose_images", "IMAGE")],
    "PaperNodes_DreaMovingRetimePose": [("pose_keypoint", "POSE_KEYPOINT"), ("images", "IMAGE")],
    "PaperNodes_DreaMovingLoadMotionModule": [("motion_module", "MOTION_MODULE")],
    "PaperNodes_DreaMovingLoadModel": [("dreamoving_pipe", "DREAMOVING_PIPE")],
    "PaperNodes_DreaMovingLoadVideoControlNet": [("video_controlnet", "VIDEO_CONTROLNET")],
    "PaperNodes_DreaMovingApplyVideoControlNet": [("control", "DREAMOVING_CONTROL")],
    "PaperNodes_DreaMovingLoadContentGuider": [("content_guider", "CONTENT_GUIDER")],
    "PaperNodes_DreaMovingGenerate": [("frames", "IMAGE")],
    "PaperNodes_MotionCustomLoadVideoModel": [("video_model", "VIDEO_MODEL")],
    "PaperNodes_MotionCustomLoadMotion": [("motion", "MOTION"), ("token", "STRING")],
    "PaperNodes_MotionCustomApplyMotion": [("video_model", "VIDEO_MODEL"), ("token", "STRING")],
    "PaperNodes_MotionCustomTrainMotion": [
        ("motion", "MOTION"),
        ("preview", "IMAGE"),
        ("motion_path", "STRING"),
    ],
    "PaperNodes_MotionCustomGenerateVideo": [("frames", "IMAGE"), ("notes", "STRING")],
    "PaperNodes_HandDiffuseLoad": [("model", "HANDDIFFUSE_MODEL")],
    "PaperNodes_HandDiffuseGenerate": [("motion", "HAND_MOTION")],
    "PaperNodes_HandDiffuseKeyframesFromPoses": [("keyframes", "HAND_KEYFRAMES")],
    "PaperNodes_HandDiffuseTrajectory": [("trajectory", "HAND_TRAJECTORY")],
    "PaperNodes_HandDiffuseRender": [("images", "IMAGE"), ("fps", "FLOAT")],
    "PaperNodes_HandDiffuseSave": [("bvh_path", "STRING"), ("npz_path", "STRING")],
    "PaperNodes_HandDiffuseMesh": [("mesh", "MESH")],
    "SaveGLB": [],
    "PaperNodes_BiDiffLoadPrior": [("prior", "BIDIFF_PRIOR3D")],
    "PaperNodes_BiDiffSamplePrior": [("shapes", "BIDIFF_SHAPES")],
    "PaperNodes_BiDiffMesh": [("mesh", "MESH")],
    "PaperNodes_BiDiffRefine": [("shapes", "BIDIFF_SHAPES")],
    "PaperNodes_BiDiffLoadModel": [("model", "BIDIFF_MODEL")],
    "PaperNodes_BiDiffGenerate": [("shapes", "BIDIFF_SHAPES"), ("views", "IMAGE"), ("renders", "IMAGE")],
    "PaperNodes_BiDiffRenderViews": [("images", "IMAGE"), ("masks", "MASK")],
    "PaperNodes_TriHumanLoadAvatar": [("avatar", "TRIHUMAN_AVATAR")],
    "PaperNodes_TriHumanLoadMotion": [("motion", "TRIHUMAN_MOTION")],
    "PaperNodes_TriHumanOrbitCamera": [("camera", "TRIHUMAN_CAMERA")],
    "PaperNodes_TriHumanRender": [("images", "IMAGE"), ("mask", "MASK"), ("depth", "IMAGE")],
    "PaperNodes_TriHumanMesh": [("mesh", "MESH"), ("glb_path", "STRING")],
}
LINK_TYPES: dict[str, dict[str, str]] = {
    "SaveImage": {"images": "IMAGE"},
    "PreviewImage": {"images": "IMAGE"},
    "PaperNodes_ToGrayscale": {"image": "IMAGE"},
    "PaperNodes_Colorize": {"colorizer": "COLORIZE_MODEL", "image": "IMAGE"},
    "PaperNodes_ColorizationMetrics": {"image": "IMAGE", "reference": "IMAGE"},
    "MaskToImage": {"mask": "MASK"},
    "PaperNodes_InfEditEditImage": {"infedit_pipe": "INFEDIT_PIPE", "image": "IMAGE"},
    "PaperNodes_SwiftBrushGenerate": {"student": "SWIFTBRUSH_STUDENT"},
    "SaveAnimatedWEBP": {"images": "IMAGE"},
    "PaperNodes_DreaMovingRenderPose": {"pose_keypoint": "POSE_KEYPOINT"},
    "PaperNodes_DreaMovingRetimePose": {"pose_keypoint": "POSE_KEYPOINT", "images": "IMAGE"},
    "PaperNodes_DreaMovingLoadModel": {"motion_module": "MOTION_MODULE"},
    "PaperNodes_DreaMovingLoadVideoControlNet": {"motion_module": "MOTION_MODULE"},
    "PaperNodes_DreaMovingApplyVideoControlNet": {
        "video_controlnet": "VIDEO_CONTROLNET",
        "frames": "IMAGE",
        "previous": "DREAMOVING_CONTROL",
    },
    "PaperNodes_DreaMovingGenerate": {
        "dreamoving_pipe": "DREAMOVING_PIPE",
        "control": "DREAMOVING_CONTROL",
        "content_guider": "CONTENT_GUIDER",
        "face_image": "IMAGE",
        "clothes_image": "IMAGE",
    },
    "PaperNodes_MotionCustomApplyMotion": {"video_model": "VIDEO_MODEL", "motion": "MOTION"},
    "PaperNodes_MotionCustomTrainMotion": {"video_model": "VIDEO_MODEL", "clips": "IMAGE"},
    "PaperNodes_MotionCustomGenerateVideo": {"video_model": "VIDEO_MODEL"},
    "PaperNodes_HandDiffuseGenerate": {
        "model": "HANDDIFFUSE_MODEL",
        "keyframes": "HAND_KEYFRAMES",
        "trajectory": "HAND_TRAJECTORY",
    },
    "PaperNodes_HandDiffuseTrajectory": {"trajectory": "HAND_TRAJECTORY"},
    "PaperNodes_HandDiffuseRender": {"motion": "HAND_MOTION"},
    "PaperNodes_HandDiffuseSave": {"motion": "HAND_MOTION"},
    "PaperNodes_HandDiffuseMesh": {"motion": "HAND_MOTION"},
    "SaveGLB": {"mesh": "MESH"},
    "PaperNodes_BiDiffSamplePrior": {"prior": "BIDIFF_PRIOR3D"},
    "PaperNodes_BiDiffMesh": {"shapes": "BIDIFF_SHAPES"},
    "PaperNodes_BiDiffRefine": {"model": "BIDIFF_MODEL", "shapes": "BIDIFF_SHAPES"},
    "PaperNodes_BiDiffGenerate": {"model": "BIDIFF_MODEL", "prior": "BIDIFF_PRIOR3D"},
    "PaperNodes_BiDiffRenderViews": {"shapes": "BIDIFF_SHAPES"},
    "PaperNodes_TriHumanLoadMotion": {"avatar": "TRIHUMAN_AVATAR"},
    "PaperNodes_TriHumanRender": {
        "avatar": "TRIHUMAN_AVATAR",
        "motion": "TRIHUMAN_MOTION",
        "camera": "TRIHUMAN_CAMERA",
    },
    "PaperNodes_TriHumanMesh": {"avatar": "TRIHUMAN_AVATAR", "motion": "TRIHUMAN_MOTION"},
}


DISPLAY: dict[str, str] = {  # the title the UI draws for a node without its own title (/object_info)
    "LoadImage": "Load Image",
    "SaveImage": "Save Image",
    "PreviewImage": "Preview Image",
    "MaskToImage": "Convert Mask to Image",
    "SaveAnimatedWEBP": "Save Animated WEBP",  # 0.33's name; 0.3.75 shows "SaveAnimatedWEBP"
    "PaperNodes_LoadColorizer": "Colorize: Load Model",
    "PaperNodes_ToGrayscale": "Colorize: To Grayscale",
    "PaperNodes_Colorize": "Colorize: Colorize Image",
    "PaperNodes_ColorizationMetrics": "Colorize: Image Metrics (PSNR/SSIM)",
    "PaperNodes_InfEditLoadLCM": "InfEdit: Load LCM Model",
    "PaperNodes_InfEditEditImage": "InfEdit: Edit Image",
    "PaperNodes_SwiftBrushLoadStudent": "SwiftBrush: Load Student",
    "PaperNodes_SwiftBrushGenerate": "SwiftBrush: Generate (one step)",
    "PaperNodes_DreaMovingLoadPoseKeypoints": "Pose: Load Keypoints (JSON)",
    "PaperNodes_DreaMovingRenderPose": "Pose: Render OpenPose",
    "PaperNodes_DreaMovingRetimePose": "Pose: Retime",
    "PaperNodes_DreaMovingLoadMotionModule": "DreaMoving: Load Motion Module",
    "PaperNodes_DreaMovingLoadModel": "DreaMoving: Load Model",
    "PaperNodes_DreaMovingLoadVideoControlNet": "DreaMoving: Load Video ControlNet",
    "PaperNodes_DreaMovingApplyVideoControlNet": "DreaMoving: Apply Video ControlNet",
    "PaperNodes_DreaMovingLoadContentGuider": "DreaMoving: Load Content Guider",
    "PaperNodes_DreaMovingGenerate": "DreaMoving: Generate Video",
    "PaperNodes_MotionCustomLoadVideoModel": "MotionCustom: Load Video Model",
    "PaperNodes_MotionCustomLoadMotion": "MotionCustom: Load Motion",
    "PaperNodes_MotionCustomApplyMotion": "MotionCustom: Apply Motion",
    "PaperNodes_MotionCustomTrainMotion": "MotionCustom: Train Motion",
    "PaperNodes_MotionCustomGenerateVideo": "MotionCustom: Generate Video",
    "PaperNodes_HandDiffuseLoad": "HandDiffuse: Load Model",
    "PaperNodes_HandDiffuseGenerate": "HandDiffuse: Generate Hand Motion",
    "PaperNodes_HandDiffuseKeyframesFromPoses": "HandDiffuse: Keyframes from Named Poses",
    "PaperNodes_HandDiffuseTrajectory": "HandDiffuse: Trajectory from Points",
    "PaperNodes_HandDiffuseRender": "HandDiffuse: Render Hands",
    "PaperNodes_HandDiffuseSave": "HandDiffuse: Save Hand Motion",
    "PaperNodes_HandDiffuseMesh": "HandDiffuse: Hands to Mesh",
    "SaveGLB": "Save 3D Model",  # 0.33's name; 0.3.75 shows "SaveGLB"
    "PaperNodes_BiDiffLoadPrior": "BiDiff: Load 3D Prior",
    "PaperNodes_BiDiffSamplePrior": "BiDiff: Sample 3D Prior",
    "PaperNodes_BiDiffMesh": "BiDiff: Shapes to Mesh",
    "PaperNodes_BiDiffRefine": "BiDiff: Refine 3D",
    "PaperNodes_BiDiffLoadModel": "BiDiff: Load Model",
    "PaperNodes_BiDiffGenerate": "BiDiff: Generate 3D",
    "PaperNodes_BiDiffRenderViews": "BiDiff: Render Views",
    "PaperNodes_TriHumanLoadAvatar": "TriHuman: Load Avatar",
    "PaperNodes_TriHumanLoadMotion": "TriHuman: Load Motion",
    "PaperNodes_TriHumanOrbitCamera": "TriHuman: Orbit Camera",
    "PaperNodes_TriHumanRender": "TriHuman: Render Avatar",
    "PaperNodes_TriHumanMesh": "TriHuman: Avatar Mesh",
}
# Text inputs the UI draws as multi-line boxes (taller than a one-line widget).
MULTILINE = {
    "instruction",
    "source_prompt",
    "target_prompt",
    "prompt",
    "negative_prompt",
    "poses",
    "calibration_json",
}

# Layout, in LiteGraph units (what the saved "pos"/"size" mean). The title bar is drawn ABOVE pos.
TITLE_H, SLOT_H, WIDGET_H, TEXT_H = 30, 22, 26, 90
PREVIEW_H = 260  # nodes that show an image (loaders with upload, savers) grow by about this after a run
SHOWS_IMAGE = {
    "LoadImage",
    "SaveImage",
    "PreviewImage",
    "SaveAnimatedWEBP",
    "SaveGLB",
}  # SaveGLB: its 3D preview
SHOWS_REPORT = {"PaperNodes_ColorizationMetrics": 110}  # the report box web/js adds after a run
CHAR_W = 8.5  # generous width of one title character (LiteGraph draws titles in 14 px sans-serif)
NOTE_W, NOTE_CHARS, NOTE_LINE_H = 900, 120, 16  # the Note draws ~7 px monospace characters
MIN_W, COL_GAP, ROW_GAP = 300, 90, 50
# The canvas a template should fit at first sight: 1600x900 minus the sidebar (left), the top bar, tabs and
# banners (measured in screenshots of both hosts' frontends: scripts/ui_screenshots.py), and the minimap.
VIEW_W, VIEW_H, SIDEBAR, TOP = 1300, 720, 110, 150
MIN_SCALE = 0.6  # below ~0.57 the frontend draws nodes as blank boxes (no titles, no Note text)


@dataclass
class Node:
    id: int
    class_type: str
    widgets: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)  # input name -> (node id, output slot)
    title: str = ""


@dataclass
class Workflow:
    slug: str  # API twin and test name: example_workflows/api/<slug>.json
    title: str  # UI file name = the template card's title
    note: str  # what the workflow shows and where each model file goes (a Note node at the top)
    build: object  # () -> list[Node]


# Widgets every workflow leaves at their default unless a node sets them.
WIDGET_DEFAULTS = {
    "upload": "image",
    "dtype": "auto",
    # InfEdit's three choices (models/infedit/pipeline.py InfEditSettings; docs/infedit.md)
    "replaced_words": "new",
    "pad_mapping": "pads",
    "shared_blend_words": "keep_source",
}


def widget_values(n: Node) -> dict:
    """The node's widget values, with the shared defaults filled in for the widgets it has."""
    return {w: n.widgets.get(w, WIDGET_DEFAULTS.get(w)) for w in WIDGETS[n.class_type]} | n.widgets


def shown_title(n: Node) -> str:
    return n.title or DISPLAY[n.class_type]


def node_size(n: Node) -> tuple[int, int]:
    """A size at least as large as the UI computes for the node (so saved layouts never overlap), with
    room below image-showing nodes for the picture they get after a run."""
    widgets = [w for w in WIDGETS[n.class_type] if w != "upload"]
    height = SLOT_H * max(len(n.links), len(OUTPUTS[n.class_type]), 1)
    height += sum(TEXT_H if w in MULTILINE else WIDGET_H for w in widgets) + 12
    if "upload" in WIDGETS[n.class_type]:
        height += WIDGET_H  # the upload button
    if n.class_type in SHOWS_IMAGE:
        height += PREVIEW_H
    height += SHOWS_REPORT.get(n.class_type, 0)
    width = max(MIN_W, round(title_width(shown_title(n)) + 40))
    return width, height


def title_width(title: str) -> float:
    return CHAR_W * len(title)


def note_size(text: str) -> tuple[int, int]:
    lines = sum(max(1, -(-len(line) // NOTE_CHARS)) for line in text.split("\n"))
    return NOTE_W, 24 + NOTE_LINE_H * lines


def view_to_fit(pos: dict, sizes: dict) -> dict:
    """extra.ds: scale and offset that show the whole graph below the top bar and right of the sidebar."""
    x0 = min(x for x, _ in pos.values())
    y0 = min(y for _, y in pos.values()) - TITLE_H
    x1 = max(pos[i][0] + sizes[i][0] for i in pos)
    y1 = max(pos[i][1] + sizes[i][1] for i in pos)
    scale = round(max(MIN_SCALE, min(1.0, VIEW_W / (x1 - x0), VIEW_H / (y1 - y0))), 3)
    return {"scale": scale, "offset": [round(SIDEBAR / scale - x0, 1), round(TOP / scale - y0, 1)]}


# How the frontend draws a link (ComfyUI frontend 1.32, renderer/core/canvas/litegraph/slotCalculations.ts and
# litegraphLinkAdapter.ts): slot i (counting only the slots drawn in rows, i.e. not widget inputs) sits at
# y = pos.y + (i + 0.7) * 20, inputs 10 right of the left edge, outputs 9 left of the right edge; the link is
# a cubic Bezier from the output to the input with control points 0.25 * distance right of the start and
# left of the end (LiteGraph's SPLINE_LINK, the default link style). Links are drawn below the nodes.
LG_SLOT_H, LG_SPLINE = 20, 0.25
LINK_CLEAR = 12  # room kept between a link and a node it passes (the line is ~3 units wide, plus a margin)

Box = tuple[float, float, float, float]
Link = tuple[int, int, int, int]  # source node, output slot, target node, input slot


def _curve(pos: dict, sizes: dict, link: Link, samples: int) -> list[tuple[float, float]]:
    src, src_slot, dst, dst_slot = link
    x0 = pos[src][0] + sizes[src][0] + 1 - LG_SLOT_H / 2
    y0 = pos[src][1] + (src_slot + 0.7) * LG_SLOT_H
    x3 = pos[dst][0] + LG_SLOT_H / 2
    y3 = pos[dst][1] + (dst_slot + 0.7) * LG_SLOT_H
    reach = LG_SPLINE * ((x3 - x0) ** 2 + (y3 - y0) ** 2) ** 0.5
    x1, x2 = x0 + reach, x3 - reach
    points = []
    for k in range(samples + 1):
        t = k / samples
        a, b, c, e = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3
        points.append((a * x0 + b * x1 + c * x2 + e * x3, (a + b) * y0 + (c + e) * y3))
    return points


def _box(pos: dict, sizes: dict, i: int) -> Box:
    """The node's drawn rectangle (x0, y0, x1, y1), title bar (drawn above pos) included."""
    return pos[i][0], pos[i][1] - TITLE_H, pos[i][0] + sizes[i][0], pos[i][1] + sizes[i][1]


def _hidden(pos: dict, sizes: dict, links: list[Link], samples: int) -> list[tuple[int, int, float]]:
    """(link index, node id, lowest y of the link over the node) for each link drawn through a node. A link
    starts and ends inside its own two nodes (at their slots): there only a re-entry counts."""
    hits = []
    boxes = {i: _box(pos, sizes, i) for i in pos}
    for k, link in enumerate(links):
        points = _curve(pos, sizes, link, samples)
        lx0, lx1 = min(x for x, _ in points), max(x for x, _ in points)
        ly0, ly1 = min(y for _, y in points), max(y for _, y in points)
        for i, (bx0, by0, bx1, by1) in boxes.items():
            if bx1 <= lx0 or lx1 <= bx0 or by1 <= ly0 or ly1 <= by0:
                continue
            inside = [bx0 < x < bx1 and by0 < y < by1 for x, y in points]
            if i in (link[0], link[2]):
                first = inside.index(False) if False in inside else len(inside)
                last = len(inside)
                while last > first and inside[last - 1]:
                    last -= 1
                inside = [False] * first + inside[first:last]
            if any(inside):
                over = [y for x, y in points if bx0 - LINK_CLEAR < x < bx1 + LINK_CLEAR]
                hits.append((k, i, max(over)))
    return hits


def _ui_geometry(ui: dict) -> tuple[dict, dict, list[Link]]:
    pos = {n["id"]: tuple(n["pos"]) for n in ui["nodes"]}
    sizes = {n["id"]: tuple(n["size"]) for n in ui["nodes"]}
    return pos, sizes, [(src, s, dst, d) for _, src, s, dst, d, _ in ui["links"]]


def link_curves(ui: dict, samples: int = 64) -> dict[int, list[tuple[float, float]]]:
    """Points along each link of a UI-format workflow as the graph editor draws it: link id -> points."""
    pos, sizes, links = _ui_geometry(ui)
    return {ui["links"][k][0]: _curve(pos, sizes, link, samples) for k, link in enumerate(links)}


def links_behind_nodes(ui: dict, samples: int = 64) -> list[tuple[int, int]]:
    """(link id, node id) for each link of a UI-format workflow drawn through a node's rectangle (title bar
    included): the editor draws links below the nodes, so that stretch of the link is hidden."""
    pos, sizes, links = _ui_geometry(ui)
    return [(ui["links"][k][0], i) for k, i, _ in _hidden(pos, sizes, links, samples)]


def _topological(nodes: list[Node]) -> list[Node]:
    by_id, done, order = {n.id: n for n in nodes}, set(), []

    def visit(n: Node) -> None:
        if n.id not in done:
            done.add(n.id)
            for src, _ in n.links.values():
                visit(by_id[src])
            order.append(n)

    for n in nodes:
        visit(n)
    return order


def column_choices(nodes: list[Node], slack: int = 2, max_columns: int = 6):
    """Every column assignment where each node sits right of all its inputs, at most `slack` columns further
    right than it must, with no empty column in between."""
    order = _topological(nodes)
    column: dict[int, int] = {}

    def place(k: int):
        if k == len(order):
            used = set(column.values())
            if used == set(range(len(used))):
                yield dict(column)
            return
        n = order[k]
        lo = 1 + max((column[src] for src, _ in n.links.values()), default=-1)
        for c in range(lo, min(lo + slack, max_columns - 1) + 1):
            column[n.id] = c
            yield from place(k + 1)
        column.pop(n.id, None)

    yield from place(0)


def _links(nodes: list[Node]) -> list[Link]:
    return [(src, slot, n.id, i) for n in nodes for i, (src, slot) in enumerate(n.links.values())]


def _stack(
    columns: list[list[int]], sizes: dict, note: tuple[int, int], push: dict[int, float]
) -> dict[int, tuple[float, float]]:
    """Columns left to right; each stacked from below the Note with ROW_GAP between nodes, a node lowered by
    push[id] (and the nodes below it with it). Links then never reach up to the Note."""
    pos, x = {}, 0
    for col in columns:
        y = note[1] + TITLE_H + ROW_GAP
        for i in col:
            y += push.get(i, 0)
            pos[i] = (x, y)
            y += sizes[i][1] + TITLE_H + ROW_GAP
        x += max(sizes[i][0] for i in col) + COL_GAP
    return pos


def _arrange(nodes: list[Node], column: dict[int, int], sizes: dict, note: tuple[int, int], max_h: float):
    """Order each column by the barycentre of the slots its nodes link to (a few sweeps), then lower nodes
    that links would run behind until no link does, or the graph grows taller than max_h (below the Note's
    top). Returns (pos, hidden links)."""
    links = _links(nodes)
    columns = [[n.id for n in nodes if column[n.id] == c] for c in range(max(column.values()) + 1)]
    for col in columns:  # start: savers below the other nodes, else in declaration order
        col.sort(key=lambda i: sizes[i][1] > PREVIEW_H)
    push: dict[int, float] = {}
    pos = _stack(columns, sizes, note, push)
    for _ in range(3):
        for col in columns:
            ys = {i: [] for i in col}
            for src, s, dst, d in links:
                if dst in ys:
                    ys[dst].append(pos[src][1] + s * LG_SLOT_H - d * LG_SLOT_H)
                if src in ys:
                    ys[src].append(pos[dst][1] + d * LG_SLOT_H - s * LG_SLOT_H)
            col.sort(key=lambda i: sum(ys[i]) / len(ys[i]) if ys[i] else pos[i][1])
            pos = _stack(columns, sizes, note, push)
    for _ in range(12):
        hits = [h for h in _hidden(pos, sizes, links, 24) if h[1] not in (links[h[0]][0], links[h[0]][2])]
        if not hits:
            break
        lower = {}
        for _, i, y in hits:  # each crossed node just below the lowest link over it
            lower[i] = max(lower.get(i, 1), y + LINK_CLEAR + TITLE_H - pos[i][1])
        for i, dy in lower.items():
            push[i] = push.get(i, 0) + dy
        pos = _stack(columns, sizes, note, push)
        if max(pos[i][1] + sizes[i][1] for i in pos) + TITLE_H > max_h:
            break
    return pos, _hidden(pos, sizes, links, 24)


def layout(nodes: list[Node], note: str) -> tuple[dict[int, tuple[int, int]], dict[int, tuple[int, int]]]:
    """Columns left to right in data-flow order, the Note at the top left. Of the column assignments (each
    node right of its inputs, up to two columns later than it must be), the one whose links run behind no
    node and that shows at the largest scale; ties: the shortest links."""
    sizes = {n.id: node_size(n) for n in nodes}
    sizes[0] = note_size(note)  # id 0: the Note
    best = None
    for column in column_choices(nodes):
        widths = [max(sizes[i][0] for i in column if column[i] == c) for c in range(max(column.values()) + 1)]
        w = max(sizes[0][0], sum(widths) + COL_GAP * (len(widths) - 1))
        fit = max(w / VIEW_W, 1)  # how much the view must shrink: by the width alone, then with the height
        if best and not best[0][0] and round(fit, 3) > best[0][1]:
            continue
        max_h = VIEW_H * best[0][1] if best and not best[0][0] else (900 - TOP) / MIN_SCALE
        pos, hidden = _arrange(nodes, column, sizes, sizes[0], max_h)
        pos[0] = (0, 0)
        h = max(pos[i][1] + sizes[i][1] for i in pos) + TITLE_H
        span = sum(column[dst] - column[src] for src, _, dst, _ in _links(nodes))
        score = (len(hidden), round(max(fit, h / VIEW_H), 3), span, w * h)
        if best is None or score < best[0]:
            best = (score, pos)
    pos = {i: (round(x), round(y)) for i, (x, y) in best[1].items()}
    return pos, sizes


def api_format(nodes: list[Node]) -> dict:
    prompt = {}
    for n in nodes:
        inputs = {k: v for k, v in widget_values(n).items() if k != "upload" and v is not None}
        inputs.update({k: [str(src), slot] for k, (src, slot) in n.links.items()})
        prompt[str(n.id)] = {"class_type": n.class_type, "inputs": inputs, "_meta": {"title": shown_title(n)}}
    return prompt


def ui_format(nodes: list[Node], note: str) -> dict:
    links, ui_nodes = [], []
    by_id = {n.id: n for n in nodes}
    assert 0 not in by_id, "node id 0 is the Note"
    pos, sizes = layout(nodes, note)
    out_links: dict[tuple[int, int], list[int]] = {}
    link_id = 0
    for n in nodes:
        for name, (src, slot) in n.links.items():
            link_id += 1
            links.append(
                [link_id, src, slot, n.id, list(n.links).index(name), LINK_TYPES[n.class_type][name]]
            )
            out_links.setdefault((src, slot), []).append(link_id)
    link_of = {(link[3], link[4]): link[0] for link in links}
    ui_nodes.append(
        {
            "id": 0,
            "type": "Note",
            "pos": list(pos[0]),
            "size": list(sizes[0]),
            "flags": {},
            "order": 0,
            "mode": 0,
            "inputs": [],
            "outputs": [],
            "properties": {},
            "widgets_values": [note],
            "title": "About this workflow",
            "color": "#432",
            "bgcolor": "#653",
        }
    )
    for order, n in enumerate(nodes, start=1):
        values = []
        for w in WIDGETS[n.class_type]:
            values.append(widget_values(n).get(w))
            if w == "seed":
                values.append("fixed")
        ui_nodes.append(
            {
                "id": n.id,
                "type": n.class_type,
                "pos": list(pos[n.id]),
                "size": list(sizes[n.id]),
                "flags": {},
                "order": order,
                "mode": 0,
                "inputs": [
                    {"name": name, "type": LINK_TYPES[n.class_type][name], "link": link_of[(n.id, i)]}
                    for i, name in enumerate(n.links)
                ],
                "outputs": [
                    {"name": name, "type": typ, "links": out_links.get((n.id, slot), []), "slot_index": slot}
                    for slot, (name, typ) in enumerate(OUTPUTS[n.class_type])
                ],
                "properties": {"Node name for S&R": n.class_type},
                "widgets_values": values,
                **({"title": n.title} if n.title else {}),
            }
        )
    assert all(src in by_id for _, src, *_ in links)
    return {
        "last_node_id": max(by_id),
        "last_link_id": link_id,
        "nodes": ui_nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {"ds": view_to_fit(pos, sizes)},
        "version": 0.4,
    }


def colorize_graph() -> list[Node]:
    """Color demo image -> grayscale -> colorize -> save, and score the result against the original."""
    return [
        Node(
            1, "LoadImage", {"image": "papernodes_demo_color.png", "upload": "image"}, title="Color reference"
        ),
        Node(2, "PaperNodes_ToGrayscale", links={"image": (1, 0)}),
        Node(3, "PaperNodes_LoadColorizer", {"model_name": "diffusers/papernodes-demo-colorizer"}),
        Node(
            4,
            "PaperNodes_Colorize",
            {
                "instruction": "Colorize this black and white photo with natural, realistic colors",
                "steps": 20,
                "text_guidance": 7.5,
                "image_guidance": 1.5,
                "scheduler": "euler_ancestral",
                "seed": 42,
                "keep_luminance": True,
                "resize_mode": "pad",
            },
            links={"colorizer": (3, 0), "image": (2, 0)},
        ),
        Node(5, "SaveImage", {"filename_prefix": "PaperNodes/colorized"}, links={"images": (4, 0)}),
        Node(6, "SaveImage", {"filename_prefix": "PaperNodes/grayscale"}, links={"images": (2, 0)}),
        Node(7, "PaperNodes_ColorizationMetrics", links={"image": (4, 0), "reference": (1, 0)}),
    ]


def infedit_graph() -> list[Node]:
    """Demo scene -> InfEdit (recolor the background, keep the star and the cross) -> edited, mask and
    reconstruction saved. The demo models bind colours loosely when a caption names two objects, so recolouring
    the star next to the red cross misses (docs/proving_ground.md); background edits land in every benchmark pair."""
    return [
        Node(
            1, "LoadImage", {"image": "papernodes_demo_color.png", "upload": "image"}, title="Image to edit"
        ),
        Node(
            2,
            "PaperNodes_InfEditLoadLCM",
            {"model_name": "diffusers/papernodes-demo-lcm", "lcm_lora": "none", "lora_strength": 1.0},
        ),
        Node(
            3,
            "PaperNodes_InfEditEditImage",
            {
                "source_prompt": "a black star and a red cross on a striped purple background",
                "target_prompt": "a black star and a red cross on a striped yellow background",
                "source_blend_words": "",
                "target_blend_words": "yellow background",
                "steps": 15,
                "source_guidance": 1.0,
                "target_guidance": 2.0,
                "cross_replace": 0.7,
                "self_replace": 0.3,
                "thresh_e": 0.6,
                "thresh_m": 0.6,
                "eta": 1.0,
                "seed": 0,
                "resize_mode": "pad",
            },
            links={"infedit_pipe": (2, 0), "image": (1, 0)},
        ),
        Node(4, "SaveImage", {"filename_prefix": "PaperNodes/infedit_edited"}, links={"images": (3, 0)}),
        Node(5, "MaskToImage", links={"mask": (3, 1)}),
        Node(6, "SaveImage", {"filename_prefix": "PaperNodes/infedit_mask"}, links={"images": (5, 0)}),
        Node(
            7, "SaveImage", {"filename_prefix": "PaperNodes/infedit_reconstruction"}, links={"images": (3, 2)}
        ),
    ]


def swiftbrush_graph() -> list[Node]:
    """One-step text to image: load a SwiftBrush student -> generate (1 U-Net evaluation per image) -> save."""
    return [
        Node(
            1,
            "PaperNodes_SwiftBrushLoadStudent",
            {"model_name": "diffusers/papernodes-demo-swiftbrush", "unet_name": "none"},
        ),
        Node(
            2,
            "PaperNodes_SwiftBrushGenerate",
            {
                "prompt": "two yellow circles on a dotted blue background",
                "seed": 0,
                "batch_size": 4,
                "width": 128,
                "height": 128,
            },
            links={"student": (1, 0)},
        ),
        Node(3, "SaveImage", {"filename_prefix": "PaperNodes/swiftbrush"}, links={"images": (2, 0)}),
    ]


@dataclass(frozen=True)
class DanceModels:
    """File names one DreaMoving workflow loads (ComfyUI folders named in the note)."""

    model: str
    motion: str
    controlnet: str
    face_adapter: str
    clothes_adapter: str
    clip_vision: str
    face_image: str
    clothes_image: str


# The dance world's trained models (models/proving_ground/dance_demo.py writes them under these names).
WORLD_DANCE = DanceModels("diffusers/papernodes-world-dance", "papernodes-world-dance-motion.safetensors",
                          "papernodes-world-dance-openpose", "papernodes-world-dance-face.safetensors",
                          "papernodes-world-dance-clothes.safetensors",
                          "papernodes-world-dance-clip-vision.safetensors", "papernodes_world_dance_face.png",
                          "papernodes_world_dance_clothes.png")  # fmt: skip
WORLD_DANCE_DEPTH = replace(WORLD_DANCE, controlnet="papernodes-world-dance-depth")
# dance_demo.demo_prompt(): the held-out dancer's background; face and clothes come from the crops
WORLD_DANCE_PROMPT = "a person dancing on a red background"
# The world models follow the control best at guidance 4 (docs/dreamoving.md); 25 DDIM steps at 128 px.
WORLD_GENERATE = dict(prompt=WORLD_DANCE_PROMPT, negative_prompt="", face_scale=1.0, clothes_scale=1.0, width=128,
                      height=128, steps=25, guidance=4.0)  # fmt: skip


def _dreamoving_common(
    m: DanceModels, control_frames: tuple[int, int], strength: float, generate: dict
) -> list[Node]:
    """Motion module -> model; Video ControlNet on the control frames; Content Guider with face and clothes
    references; generate (`generate`: the sampler widgets that differ per workflow)."""
    one_image = m.face_image == m.clothes_image
    images = [
        Node(25, "LoadImage", {"image": m.face_image, "upload": "image"},
             title="Reference person (face and clothes)" if one_image else "Reference face"),
    ]  # fmt: skip
    if not one_image:
        images.append(
            Node(27, "LoadImage", {"image": m.clothes_image, "upload": "image"}, title="Reference clothes")
        )
    return [
        Node(20, "PaperNodes_DreaMovingLoadMotionModule", {"motion_name": m.motion}),
        Node(21, "PaperNodes_DreaMovingLoadModel", {"model_name": m.model}, links={"motion_module": (20, 0)}),
        Node(
            22,
            "PaperNodes_DreaMovingLoadVideoControlNet",
            {"controlnet_name": m.controlnet},
            # an image ControlNet's motion blocks start from the module's; a saved Video ControlNet has its own
            links={"motion_module": (20, 0)} if m.controlnet.endswith(".safetensors") else {},
        ),
        Node(
            23,
            "PaperNodes_DreaMovingApplyVideoControlNet",
            {"strength": strength, "start_percent": 0.0, "end_percent": 1.0},
            links={"video_controlnet": (22, 0), "frames": control_frames},
        ),
        Node(
            24,
            "PaperNodes_DreaMovingLoadContentGuider",
            {
                "face_ipadapter": m.face_adapter,
                "clothes_ipadapter": m.clothes_adapter,
                "clip_vision": m.clip_vision,
            },
        ),
        *images,
        Node(
            26,
            "PaperNodes_DreaMovingGenerate",
            {
                "num_frames": 0,
                "guidance": 7.5,
                "scheduler": "ddim",
                "seed": 0,
                "context_window": 16,
                "context_overlap": 4,
                "context_mode": "frame split",
                **generate,
            },
            links={
                "dreamoving_pipe": (21, 0),
                "control": (23, 0),
                "content_guider": (24, 0),
                "face_image": (25, 0),
                "clothes_image": (25 if one_image else 27, 0),
            },
        ),
    ]


POSE_STRENGTH = 1.5  # the pose world model's best ControlNet strength at guidance 4 (docs/dreamoving.md)
DEPTH_STRENGTH = 1.0  # the depth world model's (docs/dreamoving.md)


def dreamoving_pose_graph() -> list[Node]:
    """A held-out dance (pose keypoints JSON) -> OpenPose maps -> the world's Video ControlNet -> DreaMoving with
    the held-out dancer's face and clothes crops; the prompt names only the background."""
    return [
        Node(1, "PaperNodes_DreaMovingLoadPoseKeypoints", {"json_file": "papernodes_world_dance_pose.json"}),
        Node(
            2,
            "PaperNodes_DreaMovingRenderPose",
            {"width": 128, "height": 128, "draw_body": True, "draw_hands": True, "draw_face": True},
            links={"pose_keypoint": (1, 0)},
        ),
        *_dreamoving_common(WORLD_DANCE, (2, 0), POSE_STRENGTH, WORLD_GENERATE),
        Node(
            30,
            "SaveAnimatedWEBP",
            {
                "filename_prefix": "PaperNodes/dreamoving_pose",
                "fps": 8.0,
                "lossless": False,
                "quality": 90,
                "method": "default",
            },
            links={"images": (26, 0)},
        ),
    ]


def dreamoving_depth_graph() -> list[Node]:
    """The same held-out dance as depth frames (animated image, 8 fps) -> retimed to 12 fps (24 frames: two
    context windows) -> the world's depth Video ControlNet -> DreaMoving with the dancer's crops."""
    return [
        Node(
            1,
            "LoadImage",
            {"image": "papernodes_world_dance_depth.webp", "upload": "image"},
            title="Depth frames (from a depth preprocessor)",
        ),
        Node(
            2,
            "PaperNodes_DreaMovingRetimePose",
            {"source_fps": 8.0, "target_fps": 12.0, "num_frames": 0, "image_mode": "linear"},
            links={"images": (1, 0)},
        ),
        *_dreamoving_common(WORLD_DANCE_DEPTH, (2, 1), DEPTH_STRENGTH, WORLD_GENERATE),
        Node(
            30,
            "SaveAnimatedWEBP",
            {
                "filename_prefix": "PaperNodes/dreamoving_depth",
                "fps": 12.0,
                "lossless": False,
                "quality": 90,
                "method": "default",
            },
            links={"images": (26, 0)},
        ),
    ]


HANDS_MODEL = "papernodes-world-hands.safetensors"


def _hands_out(motion: tuple[int, int], name: str, distance: float) -> list[Node]:
    """Render the two skeletons (a three-quarter view: from the front, palms facing each other are edge-on),
    save them as an animated WEBP (30 fps) and the motion as BVH + npz."""
    return [
        Node(
            10,
            "PaperNodes_HandDiffuseRender",
            {"width": 256, "height": 256, "yaw": 35.0, "pitch": 30.0, "distance": distance},
            links={"motion": motion},
        ),
        Node(
            11,
            "SaveAnimatedWEBP",
            {
                "filename_prefix": f"PaperNodes/{name}",
                "fps": 30.0,
                "lossless": False,
                "quality": 90,
                "method": "default",
            },
            links={"images": (10, 0)},
        ),  # fmt: skip
        Node(
            12,
            "PaperNodes_HandDiffuseSave",
            {"filename_prefix": f"PaperNodes/{name}"},
            links={"motion": motion},
        ),
    ]


def _hands_generate(label: str, **links: tuple[int, int]) -> Node:
    """Generate (node 2): 4 s at 30 fps, 20 DDIM steps, guidance 2, separate hands, from Load Model (node 1)."""
    settings = {"label": label, "seconds": 4.0, "fps": 30.0, "seed": 0, "steps": 20, "guidance": 2.0,
                "separate_hands": True}  # fmt: skip
    return Node(2, "PaperNodes_HandDiffuseGenerate", settings, links={"model": (1, 0), **links})


def hands_clap_graph() -> list[Node]:
    """A label -> 4 s of two-hand motion (20 DDIM steps, guidance 2) -> skeleton frames + BVH/npz."""
    return [
        Node(1, "PaperNodes_HandDiffuseLoad", {"model_name": HANDS_MODEL}),
        _hands_generate("clap"),
        *_hands_out((2, 0), "handdiffuse_clap", 0.7),
        Node(13, "PaperNodes_HandDiffuseMesh", {"frame_step": 30}, links={"motion": (2, 0)}),
        Node(14, "SaveGLB", {"filename_prefix": "PaperNodes/handdiffuse_clap"}, links={"mesh": (13, 0)}),
    ]


def hands_inbetween_graph() -> list[Node]:
    """Named poses at frames 0 and 119 -> the model fills the frames between (keyframes kept exactly)."""
    return [
        Node(1, "PaperNodes_HandDiffuseLoad", {"model_name": HANDS_MODEL}),
        Node(
            3,
            "PaperNodes_HandDiffuseKeyframesFromPoses",
            {"poses": "0: open, 60: fist, 119: point", "seconds": 4.0, "fps": 30.0},
        ),
        _hands_generate("wave", keyframes=(3, 0)),
        *_hands_out((2, 0), "handdiffuse_inbetween", 1.1),
    ]


def hands_trajectory_graph() -> list[Node]:
    """Two joint paths -> a wave that follows them: the right wrist exactly (imputed), the left index tip
    by guidance (the paths' points are in centimetres; see Trajectory from Points)."""
    common = {"seconds": 4.0, "fps": 30.0}
    return [
        Node(1, "PaperNodes_HandDiffuseLoad", {"model_name": HANDS_MODEL}),
        Node(
            5,
            "PaperNodes_HandDiffuseTrajectory",
            {"hand": "right", "joint": "wrist", "points": TRAJECTORY_RIGHT_WRIST, **common},
        ),
        Node(
            6,
            "PaperNodes_HandDiffuseTrajectory",
            {"hand": "left", "joint": "index tip", "points": TRAJECTORY_LEFT_TIP, **common},
            links={"trajectory": (5, 0)},
        ),
        _hands_generate("wave", trajectory=(6, 0)),
        *_hands_out((2, 0), "handdiffuse_trajectory", 1.1),
    ]


# the right wrist swings up and in twice, the left index tip slides 12 cm outwards (world frame, cm)
TRAJECTORY_RIGHT_WRIST = "0: -18, 4, 8\n40: -10, 14, 8\n80: -18, 4, 8\n119: -10, 14, 8"
TRAJECTORY_LEFT_TIP = "0: 10, 0, 10\n119: 22, 0, 10"
PRIOR_3D = "papernodes-world-3d-prior.safetensors"


def bidiff_prior_graph() -> list[Node]:
    """A world caption -> the world's 3D prior -> a mesh (Save GLB, Preview3D) and 8 orbit views."""
    return [
        Node(1, "PaperNodes_BiDiffLoadPrior", {"model_name": PRIOR_3D}),
        Node(
            2,
            "PaperNodes_BiDiffSamplePrior",
            {"prompt": "a red striped cylinder", "seed": 0, "count": 1, "steps": 25, "guidance": 3.0},
            links={"prior": (1, 0)},
        ),
        Node(3, "PaperNodes_BiDiffMesh", {"resolution": 64}, links={"shapes": (2, 0)}),
        Node(4, "SaveGLB", {"filename_prefix": "PaperNodes/bidiff_prior"}, links={"mesh": (3, 0)}),
        Node(
            5,
            "PaperNodes_BiDiffRenderViews",
            {"views": 8, "size": 128, "elevation": 20.0, "samples": 64},
            links={"shapes": (2, 0)},
        ),
        Node(6, "SaveImage", {"filename_prefix": "PaperNodes/bidiff_prior_views"}, links={"images": (5, 0)}),
    ]


BIDIFF_MODEL = "papernodes-world-bidiff.safetensors"


def bidiff_generate_graph() -> list[Node]:
    """A world caption -> BiDiff (lazy start from the world prior, both branches) -> mesh, views, renders."""
    return [
        Node(1, "PaperNodes_BiDiffLoadPrior", {"model_name": PRIOR_3D}),
        Node(2, "PaperNodes_BiDiffLoadModel", {"model_name": BIDIFF_MODEL}),
        Node(
            3,
            "PaperNodes_BiDiffGenerate",
            {
                "prompt": "a red striped cylinder",
                "shape_prompt": "",
                "texture_prompt": "",
                "seed": 0,
                "steps": 25,
                "text_scale": 7.0,
                "consistency_scale": 7.0,
                "lazy_t": 0.6,
            },
            links={"model": (2, 0), "prior": (1, 0)},
        ),  # fmt: skip
        Node(4, "PaperNodes_BiDiffMesh", {"resolution": 64}, links={"shapes": (3, 0)}),
        Node(5, "SaveGLB", {"filename_prefix": "PaperNodes/bidiff_generate"}, links={"mesh": (4, 0)}),
        Node(
            6, "SaveImage", {"filename_prefix": "PaperNodes/bidiff_generate_views"}, links={"images": (3, 1)}
        ),
        Node(
            7,
            "SaveImage",
            {"filename_prefix": "PaperNodes/bidiff_generate_renders"},
            links={"images": (3, 2)},
        ),
        Node(
            8,
            "PaperNodes_BiDiffRefine",
            {
                "prompt": "a red striped cylinder",
                "steps": 100,
                "learning_rate": 0.02,
                "guidance": 7.0,
                "seed": 0,
            },
            links={"model": (2, 0), "shapes": (3, 0)},
        ),
        Node(
            9,
            "PaperNodes_BiDiffRenderViews",
            {"views": 4, "size": 128, "elevation": 20.0, "samples": 64},
            links={"shapes": (8, 0)},
        ),
        Node(
            10,
            "SaveImage",
            {"filename_prefix": "PaperNodes/bidiff_generate_refined"},
            links={"images": (9, 0)},
        ),
    ]


VIDEO_SD, VIDEO_MM = "diffusers/papernodes-world-sd", "papernodes-world-mm.safetensors"
MOTION_PROMPT = "a red square {}orbiting on a dotted blue background"  # a subject the motion clips never show
VIDEO_RUN = {"negative_prompt": "", "num_frames": 8, "width": 128, "height": 128, "steps": 25, "guidance": 9.0,
             "scheduler": "dpmpp_2m", "seed": 0}  # fmt: skip


def _save_video(node_id: int, frames: tuple[int, int], name: str) -> Node:
    return Node(node_id, "SaveAnimatedWEBP",
                {"filename_prefix": f"PaperNodes/{name}", "fps": 8.0, "lossless": False, "quality": 90,
                 "method": "default"}, links={"images": frames})  # fmt: skip


WORDS = "papernodes-world-motion-words.safetensors"


def _world_video_base() -> list[Node]:
    """The world base: SD + motion module, then its motion words (the cross-attention K/V it learnt)."""
    return [
        Node(1, "PaperNodes_MotionCustomLoadVideoModel", {"model_name": VIDEO_SD, "motion_module_name": VIDEO_MM}),
        Node(8, "PaperNodes_MotionCustomLoadMotion", {"motion_name": WORDS}, title="Load Motion (base motion words)"),
        Node(9, "PaperNodes_MotionCustomApplyMotion", {"strength": 1.0}, links={"video_model": (1, 0), "motion": (8, 0)}),
    ]  # fmt: skip


def motion_apply_graph() -> list[Node]:
    """The world base with and without the customised motion, same prompt and seed: the motion file
    (trained on one yellow star) moves a red square the way the clips moved."""
    return [
        *_world_video_base(),
        Node(2, "PaperNodes_MotionCustomLoadMotion", {"motion_name": "papernodes-world-orbiting-sks.safetensors"}),
        Node(3, "PaperNodes_MotionCustomApplyMotion", {"strength": 1.0}, links={"video_model": (9, 0), "motion": (2, 0)}),
        Node(4, "PaperNodes_MotionCustomGenerateVideo", {"prompt": MOTION_PROMPT.format("sks "), **VIDEO_RUN},
             links={"video_model": (3, 0)}, title="With the motion (token sks)"),
        _save_video(5, (4, 0), "motioncustom_with_motion"),
        Node(6, "PaperNodes_MotionCustomGenerateVideo", {"prompt": MOTION_PROMPT.format(""), **VIDEO_RUN},
             links={"video_model": (9, 0)}, title="Base model (no motion file)"),
        _save_video(7, (6, 0), "motioncustom_base"),
    ]  # fmt: skip


def motion_train_graph() -> list[Node]:
    """A short customisation run from six clips in input/ (continued, not restarted, on a second run)."""
    train = {"clips_folder": "papernodes_motion_clips", "token": "sks", "output_name": "papernodes-demo-motion",
             "steps": 20, "lr": 1e-4, "frames": 8, "width": 128, "height": 128, "prior_weight": 0.5,
             "timestep_law": "high", "trainable": "paper", "seed": 0, "resume": True, "caption": "",
             "regularization_folder": "", "mixed_precision": "no", "gradient_checkpointing": False}  # fmt: skip
    return [
        *_world_video_base(),
        Node(2, "PaperNodes_MotionCustomTrainMotion", train, links={"video_model": (9, 0)}),
        Node(3, "PaperNodes_MotionCustomApplyMotion", {"strength": 1.0}, links={"video_model": (9, 0), "motion": (2, 0)}),
        Node(4, "PaperNodes_MotionCustomGenerateVideo", {"prompt": MOTION_PROMPT.format("sks "), **VIDEO_RUN},
             links={"video_model": (3, 0)}),
        _save_video(5, (4, 0), "motioncustom_trained"),
    ]  # fmt: skip


AVATAR = "papernodes-world-avatar.safetensors"
# The avatar world's camera ring (3 m, 10 degrees up, 40 degree field of view, looking at 0.88 m), one turn in
# 24 frames; TriHuman's 32 samples per ray (Sec. 3.4).
ORBIT = {
    "start_angle": 0.0,
    "degrees_per_frame": 15.0,
    "radius": 3.0,
    "elevation": 10.0,
    "fov": 40.0,
    "target_height": 0.88,
    "calibration_json": "",
}
RENDER = {"width": 128, "height": 128, "samples": 32, "background": "#000000"}


def _world_motion(node_id: int, frames: int) -> Node:
    return Node(node_id, "PaperNodes_TriHumanLoadMotion",
                {"source": "world", "motion": "dance", "seed": 0, "frames": frames, "file": "(none)",
                 "bvh_units": "cm", "fps": 25.0})  # fmt: skip


def trihuman_dance_graph() -> list[Node]:
    """A held-out world dance (24 frames) -> the avatar rendered from a camera orbiting once -> animated WEBPs of
    the frames and of the opacity mask."""
    avatar = {"avatar": (1, 0), "motion": (2, 0), "camera": (3, 0)}
    return [
        Node(1, "PaperNodes_TriHumanLoadAvatar", {"avatar_name": AVATAR}),
        _world_motion(2, 24),
        Node(3, "PaperNodes_TriHumanOrbitCamera", ORBIT),
        Node(4, "PaperNodes_TriHumanRender", RENDER, links=avatar),
        Node(
            5,
            "SaveAnimatedWEBP",
            {
                "filename_prefix": "PaperNodes/trihuman_dance",
                "fps": 25.0,
                "lossless": False,
                "quality": 90,
                "method": "default",
            },
            links={"images": (4, 0)},
        ),
        Node(6, "MaskToImage", links={"mask": (4, 1)}),
        Node(
            7,
            "SaveAnimatedWEBP",
            {
                "filename_prefix": "PaperNodes/trihuman_dance_mask",
                "fps": 25.0,
                "lossless": True,
                "quality": 90,
                "method": "default",
            },
            links={"images": (6, 0)},
            title="Mask (opacity)",
        ),
    ]


def trihuman_mesh_graph() -> list[Node]:
    """One frame of a world dance -> the avatar's mesh (GLB for Preview3D) and a render of the same frame."""
    return [
        Node(1, "PaperNodes_TriHumanLoadAvatar", {"avatar_name": AVATAR}),
        _world_motion(2, 1),
        Node(
            3,
            "PaperNodes_TriHumanMesh",
            {"frame": 0, "all_frames": False, "filename_prefix": "trihuman_avatar"},
            links={"avatar": (1, 0), "motion": (2, 0)},
        ),
        Node(4, "SaveGLB", {"filename_prefix": "PaperNodes/trihuman_mesh"}, links={"mesh": (3, 0)}),
        Node(5, "PaperNodes_TriHumanOrbitCamera", {**ORBIT, "start_angle": 30.0, "degrees_per_frame": 0.0}),
        Node(
            6,
            "PaperNodes_TriHumanRender",
            RENDER,
            links={"avatar": (1, 0), "motion": (2, 0), "camera": (5, 0)},
        ),
        Node(7, "SaveImage", {"filename_prefix": "PaperNodes/trihuman_mesh_view"}, links={"images": (6, 0)}),
    ]


DEMO = (
    "Demo models: `bash scripts/demo.sh` (in the pack's folder) writes them into its own ComfyUI; "
    "`python scripts/comfy_host.py install-demo --base <your ComfyUI folder>` writes them into yours."
)

WORKFLOWS = [
    Workflow(
        "colorize",
        "Colorization - grayscale photo to color",
        "Colorization (An et al. 2023): a color photo is turned to grayscale, colorized by an InstructPix2Pix "
        "model fine-tuned for colorization, and scored against the original (PSNR/SSIM on the metrics node).\n\n"
        "Model: an InstructPix2Pix-architecture diffusers folder in models/diffusers/ (published: "
        "annyorange/colorization-finetuned, or timbrooks/instruct-pix2pix) or a single .safetensors in "
        "models/checkpoints/. The demo uses papernodes-demo-colorizer, trained on the pack's procedural world.\n\n"
        + DEMO,
        colorize_graph,
    ),
    Workflow(
        "infedit",
        "InfEdit - edit an image with words",
        "InfEdit (Xu et al. 2023): change what the source prompt says into the target prompt, without "
        "inversion, in 15 steps. Target blend words mark what may change; the mask output shows where it did; "
        "the reconstruction shows the source branch. The demo recolours the background and keeps the star and the "
        "cross (the small demo models miss colour edits of one object beside another: docs/proving_ground.md).\n\n"
        "Model: a latent-consistency model as a diffusers folder in models/diffusers/ (published: "
        "SimianLuo/LCM_Dreamshaper_v7), or an SD1.5 checkpoint in models/checkpoints/ plus an LCM-LoRA in "
        "models/loras/ (latent-consistency/lcm-lora-sdv1-5). The demo uses papernodes-demo-lcm.\n\n" + DEMO,
        infedit_graph,
    ),
    Workflow(
        "swiftbrush",
        "SwiftBrush - one-step text to image",
        "SwiftBrush (Nguyen & Tran 2023): a student distilled without images makes each picture in exactly one "
        "U-Net evaluation.\n\n"
        "Model: a student as a diffusers folder in models/diffusers/ (published: thuanz123/swiftbrush), or one "
        "you distilled with the SwiftBrush: Distill node. The demo uses papernodes-demo-swiftbrush.\n\n"
        + DEMO,
        swiftbrush_graph,
    ),
    Workflow(
        "dreamoving_pose",
        "DreaMoving - dance video from pose keypoints",
        "DreaMoving (Feng et al. 2023): OpenPose keypoints drive a Video ControlNet; reference crops give the "
        "face and the clothes (Content Guider) while the prompt names only the background; the motion module "
        "makes the frames move together. 24 frames: two 16-frame context windows, frame split.\n\n"
        "Models: SD1.5 in models/diffusers/ or models/checkpoints/; mm_sd_v15_v2.ckpt in "
        "models/animatediff_models/ (guoyww/animatediff); control_v11p_sd15_openpose (or a Video ControlNet "
        "you trained) in models/controlnet/ (lllyasviel/ControlNet-v1-1); IP-Adapters in models/ipadapter/ "
        "and their image encoder in models/clip_vision/ (h94/IP-Adapter). The demo uses the pack's dance "
        "world's models, trained on procedural dancers (models/proving_ground/dance_reproduce.py); this dance "
        "and dancer are held out of training. The world models follow the pose best at ControlNet strength "
        "1.5 and guidance 4 (measured in docs/dreamoving.md); with SD1.5, start from 1 and 7.5.\n\n" + DEMO,
        dreamoving_pose_graph,
    ),
    Workflow(
        "dreamoving_depth",
        "DreaMoving - dance video from depth frames",
        "DreaMoving with a depth sequence: depth maps (near = bright) at 8 fps are retimed to 12 fps (24 "
        "frames, two context windows) and drive a depth Video ControlNet.\n\n"
        "Models: as the pose workflow, with control_v11f1p_sd15_depth in models/controlnet/. The demo runs "
        "the dance world's models on the pose workflow's held-out dance and dancer; with SD1.5 start from "
        "strength 0.7 and guidance 7.5.\n\n" + DEMO,
        dreamoving_depth_graph,
    ),
    Workflow(
        "handdiffuse_clap",
        "HandDiffuse - two hands clap from a label",
        "HandDiffuse (Lin et al. 2023): two-hand interaction motion by diffusion. An action label gives 4 s of "
        "motion of both hands (right orange, left blue), saved as frames, BVH, npz "
        "and a GLB mesh per second (core Save 3D Model; open them in Preview3D). 'separate hands' (on) keeps the "
        "hands from passing through each other and leaves touching hands touching.\n\n"
        "Model: a .safetensors in models/handdiffuse/ (the paper released none; train one with "
        "`python -m models.handdiffuse.train`). The demo uses papernodes-world-hands, trained on the pack's "
        "procedural hand-motion world (seven actions: clap, rub, interlock, tap_fingertips, point_palm, wave, "
        "count).\n\n" + DEMO,
        hands_clap_graph,
    ),
    Workflow(
        "handdiffuse_inbetween",
        "HandDiffuse - in-between named hand poses",
        "HandDiffuse in-betweening: the fingers of both hands are fixed at three frames (open at 0, fist at "
        "60, pointing at 119); the model fills the motion between them for the label (wave), keeping the "
        "keyframes exactly.\n\n"
        "Model: as the clap workflow (models/handdiffuse/). " + DEMO,
        hands_inbetween_graph,
    ),
    Workflow(
        "handdiffuse_trajectory",
        "HandDiffuse - hands that follow joint paths",
        "HandDiffuse trajectory control: two 'Trajectory from Points' nodes draw paths through control points "
        "(frame: x, y, z in cm; +y up, the person faces +z, the right hand at -x), chained into one input. "
        "The right wrist swings up and in twice and is kept on its path exactly (imputation, as the paper's "
        "global representation allows); the left index tip slides 12 cm outwards and is pulled onto its path by "
        "guidance at every step (within a millimetre); the model fills in the rest of a wave.\n\n"
        "Model: as the clap workflow (models/handdiffuse/). " + DEMO,
        hands_trajectory_graph,
    ),
]
WORKFLOWS += [
    Workflow(
        "motioncustom_apply",
        "Customizing Motion - apply a learnt motion",
        "Customizing Motion (Materzynska et al. 2023): a motion learnt from a few clips of one subject, bound to "
        "the token 'sks', moves a subject it never saw. Top: with the motion file; bottom: the base model, same "
        "prompt without the token, same seed.\n\n"
        "Models: a ZeroScope/ModelScope diffusers folder in models/diffusers/ (cerspense/zeroscope_v2_576w), or "
        "an SD1.5 model plus an AnimateDiff motion module in models/animatediff_models/ (guoyww/animatediff); "
        "motion files in models/motions/ (train your own with MotionCustom: Train Motion). The demo uses the "
        "pack's motion world: the world SD model, a motion module and motion words trained on five motions (the "
        "words file is applied first: motions stack like LoRAs), and 'orbiting' (held out of the base) learnt "
        "from six clips of a yellow star.\n\n" + DEMO,
        motion_apply_graph,
    ),
    Workflow(
        "motioncustom_train",
        "Customizing Motion - train a motion from clips",
        "Train a motion into a video model: clips in a folder of ComfyUI's input directory (videos or frame "
        "folders, captions beside them), the paper's trainable set (cross-attention keys/values + temporal "
        "layers), its timestep law, bound to 'sks'. The paper trains 3000 steps; this demo runs 20 (a second "
        "run continues the same run instead of restarting). The file lands in models/motions/.\n\n" + DEMO,
        motion_train_graph,
    ),
]
WORKFLOWS += [
    Workflow(
        "bidiff_prior",
        "BiDiff - text to 3D mesh with a 3D prior",
        "BiDiff (Ding et al. 2023), first stage: a 3D prior turns the prompt into a signed-distance shape with "
        "colours (BiDiff's 3D branch starts from it), exported as a mesh (Save 3D Model: open the GLB in "
        "Preview3D) and rendered from 8 orbiting cameras: the 3D-only starting point of the BiDiff workflow.\n\n"
        "Models: Shap-E (openai/shap-e, MIT) as a diffusers folder in models/diffusers/, loaded with BiDiff: Load "
        "Shap-E; or a grid prior in models/bidiff/. The demo uses papernodes-world-3d-prior, trained on the "
        "pack's procedural 3D world (six shapes, six colours, plain or striped).\n\n" + DEMO,
        bidiff_prior_graph,
    ),
    Workflow(
        "bidiff_generate",
        "BiDiff - text to 3D with 2D and 3D priors",
        "BiDiff (Ding et al. 2023): a multi-view 2D diffusion and a 3D diffusion guide each other at every step; "
        "the sampling starts lazily from the 3D prior's shape (lazy_t of the schedule), text and 3D consistency "
        "are guided separately (the paper's 7 and 7), and separate shape / texture prompts steer geometry and "
        "appearance. Outputs: the mesh (Save 3D Model -> Preview3D), the 2D branch's views and the renders of "
        "the 3D result from the same cameras (they agree when the branches are consistent), and the result "
        "refined by 100 steps of score distillation (Refine 3D), rendered.\n\n"
        "Models: a BiDiff model in models/bidiff/ (the paper released none; train one with "
        "`python -m models.bidiff.train_bidiff`) and a 3D prior (Shap-E in models/diffusers/, or a grid prior "
        "in models/bidiff/). The demo uses papernodes-world-bidiff and papernodes-world-3d-prior, trained on "
        "the pack's 3D world.\n\n" + DEMO,
        bidiff_generate_graph,
    ),
]
WORKFLOWS += [
    Workflow(
        "trihuman_dance",
        "TriHuman - render the world avatar dancing on an orbit",
        "TriHuman (Zhu et al. 2023): a controllable human avatar. The skeleton poses a deformable template; a "
        "tri-plane generator, fed the template's motion of the last three frames, gives the signed-distance and "
        "colour fields around it, rendered with NeuS (32 samples per ray). A dance of the avatar world that its "
        "training never saw (24 frames at 25 fps; the two frames before the first are the motion's history) "
        "drives the avatar while the camera orbits it once; the frames and the opacity mask are saved as "
        "animated WEBPs.\n\n"
        "Model: an avatar .safetensors in models/trihuman/ (the official checkpoints, CC BY-NC, are not in this "
        "format yet; train one with `python -m models.trihuman.train` or TriHuman: Train Avatar). Motions: the "
        "world's, or an .npz or BVH in ComfyUI's input folder (Load Motion, source 'file'). The demo uses "
        "papernodes-world-avatar, trained on the pack's procedural avatar world (a character in a skirt that "
        "swings with the motion).\n\n" + DEMO,
        trihuman_dance_graph,
    ),
    Workflow(
        "trihuman_mesh",
        "TriHuman - export the avatar mesh",
        "TriHuman's geometry output (Zhu et al. 2023, Sec. 3.5): the posed template subdivided once and moved "
        "onto the avatar's zero level set, the same triangles every frame, coloured by the colour field. Saved "
        "as a GLB (core Save 3D Model; open it in Preview3D) beside a render of the same frame. Avatar Mesh's "
        "second output is the path of its own GLB, for core Preview3D's model_file.\n\n"
        "Model: as the dance workflow (models/trihuman/). " + DEMO,
        trihuman_mesh_graph,
    ),
]
OUT_DIR_API = (
    OUT_DIR / "api"
)  # outside the folder ComfyUI scans for templates (it reads *.json, not subfolders)


def main() -> None:
    OUT_DIR_API.mkdir(parents=True, exist_ok=True)
    for wf in WORKFLOWS:
        nodes = wf.build()
        (OUT_DIR / f"{wf.title}.json").write_text(json.dumps(ui_format(nodes, wf.note), indent=2) + "\n")
        (OUT_DIR_API / f"{wf.slug}.json").write_text(json.dumps(api_format(nodes), indent=2) + "\n")
        print(f"wrote example_workflows/{wf.title}.json and api/{wf.slug}.json")


if __name__ == "__main__":
    main()
