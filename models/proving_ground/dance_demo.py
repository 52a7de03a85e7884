"""The dance-world DreaMoving demo (issue 20): models and inputs of the two DreaMoving example workflows.

Written into a ComfyUI base directory under the names the workflow uses:

- models/diffusers/papernodes-world-dance/            the world SD (VAE, CLIP text) with the dance U-Net
- models/animatediff_models/papernodes-world-dance-motion.safetensors   AnimateDiff layout motion module
- models/controlnet/papernodes-world-dance-openpose/  saved Video ControlNet (pose ControlNet + motion blocks)
- models/controlnet/papernodes-world-dance-depth/    the same for depth maps
- models/clip_vision/papernodes-world-dance-clip-vision.safetensors     transformers CLIP vision layout
- models/ipadapter/papernodes-world-dance-face.safetensors / -clothes.safetensors   IP-Adapter plain layout
- input/papernodes_world_dance_pose.json    a held-out dance as POSE_KEYPOINT (DEMO_FRAMES frames)
- input/papernodes_world_dance_depth.webp   the same dance's first DEPTH_FRAMES depth maps, animated, 8 fps
- input/papernodes_world_dance_face.png / _clothes.png   that dancer's reference crops

`trained=True`: the shipped world models (`weights/world_dance`), so the video shows the held-out person
dancing the held-out pose. `trained=False` (the test suite's host): tiny seeded models of the same
formats under the same names, fast and random. The inputs are the world's in both cases. With `suffix`
the model names carry it before their extension (`model_name`): the test host keeps the trained models
under `-trained` names beside the tiny ones, and its world-model test points the workflows at them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from . import dance_reproduce as dr
from .dance_guider import content_caption
from .dance_world import make_clip

WORLD_MODEL = "papernodes-world-dance"
WORLD_MOTION = "papernodes-world-dance-motion.safetensors"
WORLD_POSE_VCN = "papernodes-world-dance-openpose"
WORLD_DEPTH_VCN = "papernodes-world-dance-depth"
WORLD_CLIP_VISION = "papernodes-world-dance-clip-vision.safetensors"
WORLD_ADAPTERS = {"face": "papernodes-world-dance-face.safetensors",
                  "clothes": "papernodes-world-dance-clothes.safetensors"}  # fmt: skip
WORLD_POSE = "papernodes_world_dance_pose.json"
WORLD_DEPTH = "papernodes_world_dance_depth.webp"
WORLD_IMAGES = {"face": "papernodes_world_dance_face.png", "clothes": "papernodes_world_dance_clothes.png"}
# A held-out dancer and dance (not in any training set); 24 frames: two 16-frame context windows.
DEMO_CLIP = dict(seed=1, split="heldout", index=0)
DEMO_FRAMES = 24
# The depth workflow gets 16 frames at the world's 8 fps and retimes them to 12 fps: 24 frames again.
DEPTH_FRAMES = 16


def demo_clip():
    return make_clip(DEMO_CLIP["seed"], DEMO_CLIP["split"], DEMO_CLIP["index"], num_frames=DEMO_FRAMES,
                     size=dr.IMAGE_SIZE)  # fmt: skip


def demo_prompt() -> str:
    """The workflow's prompt: the background only; face and clothes come from the reference crops."""
    return content_caption(demo_clip())


def trained_shipped(weights: Path = dr.SHIPPED) -> bool:
    files = [dr.MOTION_MODULE_FILE, dr.CLIP_VISION_FILE, *dr.GUIDER_FILES.values()]
    return (
        (weights / "unet" / "config.json").is_file()
        and (weights / dr.POSE_VCN_DIR).is_dir()
        and (weights / dr.DEPTH_VCN_DIR).is_dir()
        and all((weights / f).is_file() for f in files)
    )


def model_name(name: str, suffix: str = "") -> str:
    """A world model's name with `suffix` before its extension (the host tests keep the trained models
    beside the tiny ones under suffixed names)."""
    stem, dot, ext = name.rpartition(".") if name.endswith(".safetensors") else (name, "", "")
    return f"{stem}{suffix}{dot}{ext}"


def write_dance_world_demo(base_dir: str | Path, trained: bool, suffix: str = "") -> dict[str, Path]:
    """The workflows' models (trained or tiny; names with `suffix`) and inputs under a ComfyUI base dir."""
    from PIL import Image

    base = Path(base_dir)
    models, inputs = base / "models", base / "input"
    named = lambda folder, name: models / folder / model_name(name, suffix)  # noqa: E731
    paths = {
        "dance_model": named("diffusers", WORLD_MODEL),
        "dance_motion": named("animatediff_models", WORLD_MOTION),
        "dance_controlnet": named("controlnet", WORLD_POSE_VCN),
        "dance_depth_controlnet": named("controlnet", WORLD_DEPTH_VCN),
        "dance_clip_vision": named("clip_vision", WORLD_CLIP_VISION),
        **{f"dance_{k}_adapter": named("ipadapter", v) for k, v in WORLD_ADAPTERS.items()},
        "dance_pose": inputs / WORLD_POSE,
        "dance_depth": inputs / WORLD_DEPTH,
        **{f"dance_{k}_image": inputs / v for k, v in WORLD_IMAGES.items()},
    }
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    (_write_trained if trained else _write_tiny)(paths)
    clip = demo_clip()
    paths["dance_pose"].write_text(json.dumps(clip.pose_keypoint))
    depth = [Image.fromarray(f) for f in dr.depth_image(clip.depth[:DEPTH_FRAMES])]
    depth[0].save(
        paths["dance_depth"], save_all=True, append_images=depth[1:], duration=125, loop=0, lossless=True
    )
    Image.fromarray(clip.face_crop).save(paths["dance_face_image"])
    Image.fromarray(clip.clothes_crop).save(paths["dance_clothes_image"])
    return paths


def _fresh(path: Path) -> Path:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    return path


def _write_trained(paths: dict[str, Path]) -> None:
    """The shipped files, linked or copied (rebuilt each time: the checkout may have changed)."""
    from . import zoo

    w = dr.SHIPPED
    dr.dance_model_folder(w, _fresh(paths["dance_model"]))
    for key, folder in (("dance_controlnet", dr.POSE_VCN_DIR), ("dance_depth_controlnet", dr.DEPTH_VCN_DIR)):
        shutil.copytree(w / folder, _fresh(paths[key]), copy_function=zoo._link_or_copy)
    for key, name in (("dance_motion", dr.MOTION_MODULE_FILE), ("dance_clip_vision", dr.CLIP_VISION_FILE),
                      ("dance_face_adapter", dr.GUIDER_FILES["face"]),
                      ("dance_clothes_adapter", dr.GUIDER_FILES["clothes"])):  # fmt: skip
        zoo._link_or_copy(str(w / name), str(_fresh(paths[key])))


def _write_tiny(paths: dict[str, Path]) -> None:
    """Tiny seeded stand-ins in the same formats (only missing ones are built)."""
    from ..common.animatediff import build_tiny_motion_adapter, save_motion_adapter_original
    from ..common.image_prompt import (
        build_tiny_clip_vision,
        build_tiny_ip_adapter,
        save_clip_vision,
        save_ip_adapter,
    )
    from ..common.saving import save_diffusers_folder
    from ..common.tiny import build_tiny_components, build_tiny_controlnet
    from ..dreamoving.video_controlnet import VideoControlNet, save_video_controlnet

    comps = build_tiny_components(seed=7)
    if not (paths["dance_model"] / "unet" / "config.json").is_file():
        save_diffusers_folder(comps, paths["dance_model"])
    adapter = build_tiny_motion_adapter(seed=8, zero_out=False)
    if not paths["dance_motion"].is_file():
        save_motion_adapter_original(adapter, paths["dance_motion"])
    for seed, key in ((9, "dance_controlnet"), (10, "dance_depth_controlnet")):
        if not (paths[key] / "config.json").is_file():
            save_video_controlnet(
                VideoControlNet.from_motion_adapter(build_tiny_controlnet(seed), adapter), paths[key]
            )
    clip = build_tiny_clip_vision(seed=11)
    if not paths["dance_clip_vision"].is_file():
        save_clip_vision(clip, paths["dance_clip_vision"], single_file=True)
    for seed, key in ((12, "dance_face_adapter"), (13, "dance_clothes_adapter")):
        if not paths[key].is_file():
            with torch.no_grad():
                save_ip_adapter(build_tiny_ip_adapter(comps.unet, "plain", clip, seed=seed), paths[key])
