"""Write each example workflow twice from one graph description: UI format (drag into ComfyUI) and API format.

Keeping both files generated from one source means they cannot drift; tests/test_workflows.py checks
both against the live server's /object_info. Run: `python scripts/make_workflows.py` (no ComfyUI needed).

Widget order per node class is declared here (it is the order of the non-link inputs in INPUT_TYPES);
an INT input named `seed` gets the UI's extra "control_after_generate" widget value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = REPO_ROOT / "example_workflows"

# class_type -> ordered widget names; link inputs are given per node.
WIDGETS: dict[str, list[str]] = {
    "LoadImage": ["image", "upload"],
    "SaveImage": ["filename_prefix"],
    "PreviewImage": [],
    "PaperNodes_LoadColorizer": ["model_name"],
    "PaperNodes_ToGrayscale": [],
    "PaperNodes_Colorize": ["instruction", "steps", "text_guidance", "image_guidance", "scheduler", "seed",
                            "keep_luminance", "resize_mode"],
    "PaperNodes_ColorizationMetrics": [],
    "MaskToImage": [],
    "PaperNodes_InfEditLoadLCM": ["model_name", "lcm_lora", "lora_strength"],
    "PaperNodes_InfEditEditImage": ["source_prompt", "target_prompt", "source_blend_words", "target_blend_words",
                                    "steps", "source_guidance", "target_guidance", "cross_replace", "self_replace",
                                    "thresh_e", "thresh_m", "eta", "seed", "resize_mode"],
    "PaperNodes_SwiftBrushLoadStudent": ["model_name", "unet_name"],
    "PaperNodes_SwiftBrushGenerate": ["prompt", "seed", "batch_size", "width", "height"],
    "SaveAnimatedWEBP": ["filename_prefix", "fps", "lossless", "quality", "method"],
    "PaperNodes_DreaMovingLoadPoseKeypoints": ["json_file"],
    "PaperNodes_DreaMovingRenderPose": ["width", "height", "draw_body", "draw_hands", "draw_face"],
    "PaperNodes_DreaMovingRetimePose": ["source_fps", "target_fps", "num_frames", "image_mode"],
    "PaperNodes_DreaMovingLoadMotionModule": ["motion_name"],
    "PaperNodes_DreaMovingLoadModel": ["model_name"],
    "PaperNodes_DreaMovingLoadVideoControlNet": ["controlnet_name"],
    "PaperNodes_DreaMovingApplyVideoControlNet": ["strength", "start_percent", "end_percent"],
    "PaperNodes_DreaMovingLoadContentGuider": ["face_ipadapter", "clothes_ipadapter", "clip_vision"],
    "PaperNodes_DreaMovingGenerate": ["prompt", "negative_prompt", "face_scale", "clothes_scale", "num_frames",
                                      "width", "height", "steps", "guidance", "scheduler", "seed",
                                      "context_window", "context_overlap"],
}
OUTPUTS: dict[str, list[tuple[str, str]]] = {
    "LoadImage": [("IMAGE", "IMAGE"), ("MASK", "MASK")],
    "SaveImage": [],
    "PreviewImage": [],
    "PaperNodes_LoadColorizer": [("colorizer", "COLORIZE_MODEL")],
    "PaperNodes_ToGrayscale": [("image", "IMAGE")],
    "PaperNodes_Colorize": [("image", "IMAGE")],
    "PaperNodes_ColorizationMetrics": [("report", "STRING"), ("psnr", "FLOAT"), ("ssim", "FLOAT"),
                                       ("mse", "FLOAT"), ("mae", "FLOAT")],
    "MaskToImage": [("IMAGE", "IMAGE")],
    "PaperNodes_InfEditLoadLCM": [("infedit_pipe", "INFEDIT_PIPE")],
    "PaperNodes_InfEditEditImage": [("edited", "IMAGE"), ("blend_mask", "MASK"), ("source_reconstruction", "IMAGE")],
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
    "PaperNodes_DreaMovingApplyVideoControlNet": {"video_controlnet": "VIDEO_CONTROLNET", "frames": "IMAGE",
                                                  "previous": "DREAMOVING_CONTROL"},
    "PaperNodes_DreaMovingGenerate": {"dreamoving_pipe": "DREAMOVING_PIPE", "control": "DREAMOVING_CONTROL",
                                      "content_guider": "CONTENT_GUIDER", "face_image": "IMAGE",
                                      "clothes_image": "IMAGE"},
}


@dataclass
class Node:
    id: int
    class_type: str
    widgets: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)  # input name -> (node id, output slot)
    title: str = ""
    pos: tuple[int, int] = (0, 0)


def api_format(nodes: list[Node]) -> dict:
    prompt = {}
    for n in nodes:
        inputs = {k: v for k, v in n.widgets.items() if k != "upload"}
        inputs.update({k: [str(src), slot] for k, (src, slot) in n.links.items()})
        prompt[str(n.id)] = {"class_type": n.class_type, "inputs": inputs,
                             "_meta": {"title": n.title or n.class_type}}
    return prompt


def ui_format(nodes: list[Node]) -> dict:
    links, ui_nodes = [], []
    by_id = {n.id: n for n in nodes}
    out_links: dict[tuple[int, int], list[int]] = {}
    link_id = 0
    for n in nodes:
        for name, (src, slot) in n.links.items():
            link_id += 1
            links.append([link_id, src, slot, n.id, list(n.links).index(name), LINK_TYPES[n.class_type][name]])
            out_links.setdefault((src, slot), []).append(link_id)
    link_of = {(link[3], link[4]): link[0] for link in links}
    for order, n in enumerate(nodes):
        values = []
        for w in WIDGETS[n.class_type]:
            values.append(n.widgets.get(w, "image" if w == "upload" else None))
            if w == "seed":
                values.append("fixed")
        ui_nodes.append({
            "id": n.id, "type": n.class_type, "pos": list(n.pos), "size": [320, 120 + 24 * len(values)],
            "flags": {}, "order": order, "mode": 0,
            "inputs": [{"name": name, "type": LINK_TYPES[n.class_type][name], "link": link_of[(n.id, i)]}
                       for i, name in enumerate(n.links)],
            "outputs": [{"name": name, "type": typ, "links": out_links.get((n.id, slot), []), "slot_index": slot}
                        for slot, (name, typ) in enumerate(OUTPUTS[n.class_type])],
            "properties": {"Node name for S&R": n.class_type},
            "widgets_values": values,
            **({"title": n.title} if n.title else {}),
        })
    assert all(src in by_id for _, src, *_ in links)
    return {"last_node_id": max(by_id), "last_link_id": link_id, "nodes": ui_nodes, "links": links,
            "groups": [], "config": {}, "extra": {"ds": {"scale": 1, "offset": [0, 0]}}, "version": 0.4}


def colorize_graph() -> list[Node]:
    """Color demo image -> grayscale -> colorize -> save, and score the result against the original."""
    return [
        Node(1, "LoadImage", {"image": "papernodes_demo_color.png", "upload": "image"}, pos=(0, 0),
             title="Color reference"),
        Node(2, "PaperNodes_ToGrayscale", links={"image": (1, 0)}, pos=(340, 0)),
        Node(3, "PaperNodes_LoadColorizer", {"model_name": "diffusers/papernodes-demo-colorizer"}, pos=(340, 160)),
        Node(4, "PaperNodes_Colorize", {
            "instruction": "Colorize this black and white photo with natural, realistic colors",
            "steps": 20, "text_guidance": 7.5, "image_guidance": 1.5, "scheduler": "euler_ancestral",
            "seed": 42, "keep_luminance": True, "resize_mode": "pad"},
            links={"colorizer": (3, 0), "image": (2, 0)}, pos=(700, 0)),
        Node(5, "SaveImage", {"filename_prefix": "PaperNodes/colorized"}, links={"images": (4, 0)}, pos=(1060, 0)),
        Node(6, "SaveImage", {"filename_prefix": "PaperNodes/grayscale"}, links={"images": (2, 0)},
             pos=(700, 420)),
        Node(7, "PaperNodes_ColorizationMetrics", links={"image": (4, 0), "reference": (1, 0)}, pos=(1060, 380)),
    ]


def infedit_graph() -> list[Node]:
    """Demo scene -> InfEdit (recolor the star, keep the rest) -> edited, mask and reconstruction saved."""
    return [
        Node(1, "LoadImage", {"image": "papernodes_demo_color.png", "upload": "image"}, pos=(0, 0),
             title="Image to edit"),
        Node(2, "PaperNodes_InfEditLoadLCM", {"model_name": "diffusers/papernodes-demo-lcm", "lcm_lora": "none",
                                             "lora_strength": 1.0}, pos=(0, 360)),
        Node(3, "PaperNodes_InfEditEditImage", {
            "source_prompt": "a black star and a red cross on a striped purple background",
            "target_prompt": "a green star and a red cross on a striped purple background",
            "source_blend_words": "", "target_blend_words": "green star",
            "steps": 15, "source_guidance": 1.0, "target_guidance": 2.0, "cross_replace": 0.7,
            "self_replace": 0.3, "thresh_e": 0.6, "thresh_m": 0.6, "eta": 1.0, "seed": 0, "resize_mode": "pad"},
            links={"infedit_pipe": (2, 0), "image": (1, 0)}, pos=(360, 0)),
        Node(4, "SaveImage", {"filename_prefix": "PaperNodes/infedit_edited"}, links={"images": (3, 0)},
             pos=(760, 0)),
        Node(5, "MaskToImage", links={"mask": (3, 1)}, pos=(760, 360)),
        Node(6, "SaveImage", {"filename_prefix": "PaperNodes/infedit_mask"}, links={"images": (5, 0)},
             pos=(1000, 360)),
        Node(7, "SaveImage", {"filename_prefix": "PaperNodes/infedit_reconstruction"}, links={"images": (3, 2)},
             pos=(760, 620)),
    ]


def swiftbrush_graph() -> list[Node]:
    """One-step text to image: load a SwiftBrush student -> generate (1 U-Net evaluation per image) -> save."""
    return [
        Node(1, "PaperNodes_SwiftBrushLoadStudent", {"model_name": "diffusers/papernodes-demo-swiftbrush",
                                                     "unet_name": "none"}, pos=(0, 0)),
        Node(2, "PaperNodes_SwiftBrushGenerate", {
            "prompt": "two yellow circles on a dotted blue background", "seed": 0, "batch_size": 4,
            "width": 128, "height": 128}, links={"student": (1, 0)}, pos=(360, 0)),
        Node(3, "SaveImage", {"filename_prefix": "PaperNodes/swiftbrush"}, links={"images": (2, 0)}, pos=(760, 0)),
    ]


def _dreamoving_common(controlnet: str, control_frames: tuple[int, int], strength: float) -> list[Node]:
    """Motion module -> model; Video ControlNet (motion blocks from the module) on the control frames;
    Content Guider with the person image as face and clothes reference; generate; save an animated WEBP."""
    return [
        Node(20, "PaperNodes_DreaMovingLoadMotionModule", {"motion_name": "papernodes-demo-motion.safetensors"},
             pos=(0, 420)),
        Node(21, "PaperNodes_DreaMovingLoadModel", {"model_name": "diffusers/papernodes-demo-dreamoving"},
             links={"motion_module": (20, 0)}, pos=(360, 420)),
        Node(22, "PaperNodes_DreaMovingLoadVideoControlNet", {"controlnet_name": controlnet},
             links={"motion_module": (20, 0)}, pos=(360, 560)),
        Node(23, "PaperNodes_DreaMovingApplyVideoControlNet",
             {"strength": strength, "start_percent": 0.0, "end_percent": 1.0},
             links={"video_controlnet": (22, 0), "frames": control_frames}, pos=(720, 300)),
        Node(24, "PaperNodes_DreaMovingLoadContentGuider", {
            "face_ipadapter": "papernodes-demo-ip-adapter.safetensors", "clothes_ipadapter": "none",
            "clip_vision": "papernodes-demo-clip-vision.safetensors"}, pos=(360, 720)),
        Node(25, "LoadImage", {"image": "papernodes_demo_person.png", "upload": "image"}, pos=(0, 720),
             title="Reference person (face and clothes)"),
        Node(26, "PaperNodes_DreaMovingGenerate", {
            "prompt": "a woman in a red top and blue jeans dancing, best quality",
            "negative_prompt": "lowres, bad anatomy, worst quality, blurry", "face_scale": 0.8, "clothes_scale": 0.8,
            "num_frames": 0, "width": 64, "height": 64, "steps": 4, "guidance": 7.5, "scheduler": "ddim", "seed": 0,
            "context_window": 16, "context_overlap": 4},
            links={"dreamoving_pipe": (21, 0), "control": (23, 0), "content_guider": (24, 0),
                   "face_image": (25, 0), "clothes_image": (25, 0)}, pos=(1080, 300)),
    ]


def dreamoving_pose_graph() -> list[Node]:
    """Pose keypoints (JSON) -> OpenPose maps -> Video ControlNet (0.5) -> DreaMoving with a reference person."""
    return [
        Node(1, "PaperNodes_DreaMovingLoadPoseKeypoints", {"json_file": "papernodes_demo_pose.json"}, pos=(0, 0)),
        Node(2, "PaperNodes_DreaMovingRenderPose", {"width": 64, "height": 64, "draw_body": True,
                                                    "draw_hands": True, "draw_face": True},
             links={"pose_keypoint": (1, 0)}, pos=(360, 0)),
        *_dreamoving_common("papernodes-demo-openpose.safetensors", (2, 0), 0.5),
        Node(30, "SaveAnimatedWEBP", {"filename_prefix": "PaperNodes/dreamoving_pose", "fps": 8.0,
                                      "lossless": False, "quality": 90, "method": "default"},
             links={"images": (26, 0)}, pos=(1480, 300)),
        Node(31, "SaveAnimatedWEBP", {"filename_prefix": "PaperNodes/dreamoving_pose_maps", "fps": 8.0,
                                      "lossless": True, "quality": 90, "method": "default"},
             links={"images": (2, 0)}, pos=(720, 0)),
    ]


def dreamoving_depth_graph() -> list[Node]:
    """Depth frames (animated image, 8 fps) -> retimed to 12 fps (24 frames: two context windows) -> Video
    ControlNet (0.7) -> DreaMoving with a reference person."""
    return [
        Node(1, "LoadImage", {"image": "papernodes_demo_depth.webp", "upload": "image"}, pos=(0, 0),
             title="Depth frames (from a depth preprocessor)"),
        Node(2, "PaperNodes_DreaMovingRetimePose", {"source_fps": 8.0, "target_fps": 12.0, "num_frames": 0,
                                                    "image_mode": "linear"},
             links={"images": (1, 0)}, pos=(360, 0)),
        *_dreamoving_common("papernodes-demo-depth.safetensors", (2, 1), 0.7),
        Node(30, "SaveAnimatedWEBP", {"filename_prefix": "PaperNodes/dreamoving_depth", "fps": 12.0,
                                      "lossless": False, "quality": 90, "method": "default"},
             links={"images": (26, 0)}, pos=(1480, 300)),
    ]


WORKFLOWS = {"colorize": colorize_graph, "infedit": infedit_graph, "swiftbrush": swiftbrush_graph,
             "dreamoving_pose": dreamoving_pose_graph, "dreamoving_depth": dreamoving_depth_graph}


def main() -> None:
    OUT_DIR.mkdir(exist_ok=True)
    for name, build in WORKFLOWS.items():
        nodes = build()
        (OUT_DIR / f"{name}.json").write_text(json.dumps(ui_format(nodes), indent=2) + "\n")
        (OUT_DIR / f"{name}_api.json").write_text(json.dumps(api_format(nodes), indent=2) + "\n")
        print(f"wrote example_workflows/{name}.json and {name}_api.json")


if __name__ == "__main__":
    main()
