"""DreaMoving demo assets: tiny models in the users' file formats and folders, a dancing pose, depth, a person.

Everything the two example workflows (dreamoving_pose / dreamoving_depth) need, written into a ComfyUI
base directory so they run headless in seconds on a CPU (random tiny weights: the frames are noise-like,
the plumbing is real):

- models/diffusers/papernodes-demo-dreamoving/        tiny SD1.5-architecture diffusers folder
- models/animatediff_models/papernodes-demo-motion.safetensors   motion module, ORIGINAL AnimateDiff keys
- models/controlnet/papernodes-demo-openpose.safetensors / -depth.safetensors   lllyasviel single-file layout
- models/ipadapter/papernodes-demo-ip-adapter.safetensors       IP-Adapter "plain" flat layout
- models/clip_vision/papernodes-demo-clip-vision.safetensors    transformers CLIPVisionModelWithProjection
- input/papernodes_demo_pose.json    16-frame dancing stick figure, POSE_KEYPOINT (normalised coordinates)
- input/papernodes_demo_depth.webp   the same dance as a 16-frame animated depth map (near = bright)
- input/papernodes_demo_person.png   the reference person (face + clothes image)

Only missing files are built.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

DEMO_MODEL = "papernodes-demo-dreamoving"
DEMO_MOTION = "papernodes-demo-motion.safetensors"
DEMO_POSE_CN = "papernodes-demo-openpose.safetensors"
DEMO_DEPTH_CN = "papernodes-demo-depth.safetensors"
DEMO_IP_ADAPTER = "papernodes-demo-ip-adapter.safetensors"
DEMO_CLIP_VISION = "papernodes-demo-clip-vision.safetensors"
DEMO_POSE = "papernodes_demo_pose.json"
DEMO_DEPTH = "papernodes_demo_depth.webp"
DEMO_PERSON = "papernodes_demo_person.png"
DEMO_FRAMES, DEMO_CANVAS, DEMO_DEPTH_SIZE = 16, 512, 64

# COCO-18 limbs drawn in the depth map, with a relative nearness per limb (0..1: far..near).
_DEPTH_LIMBS = (
    ((1, 2), 0.7), ((1, 5), 0.7), ((2, 3), 0.9), ((3, 4), 1.0), ((5, 6), 0.55), ((6, 7), 0.5),
    ((1, 8), 0.75), ((1, 11), 0.75), ((8, 9), 0.8), ((9, 10), 0.85), ((11, 12), 0.6), ((12, 13), 0.55),
    ((8, 11), 0.75),
)  # fmt: skip


def dance_keypoints(num_frames: int = DEMO_FRAMES) -> np.ndarray:
    """[F, 18, 2] normalised COCO-18 body keypoints of a stick figure that sways, waves and steps (one
    period over the clip, so the loop is seamless)."""
    out = np.zeros((num_frames, 18, 2))
    for f in range(num_frames):
        ph = math.tau * f / num_frames
        sway = 0.04 * math.sin(ph)
        neck = np.array([0.5 + sway, 0.3])
        hip_y = 0.58 + 0.015 * math.cos(2 * ph)
        pts = {1: neck, 0: neck + [0.0, -0.09]}
        pts[14], pts[15] = pts[0] + [-0.025, -0.02], pts[0] + [0.025, -0.02]
        pts[16], pts[17] = pts[0] + [-0.05, -0.005], pts[0] + [0.05, -0.005]
        pts[2], pts[5] = neck + [-0.09, 0.01], neck + [0.09, 0.01]
        # right arm waves overhead, left arm swings low
        a_r = math.pi * (0.85 + 0.35 * math.sin(ph))  # angle from +x, screen coordinates (y down)
        pts[3] = pts[2] + 0.11 * np.array([math.cos(a_r), -math.sin(a_r)])
        pts[4] = pts[3] + 0.1 * np.array([math.cos(a_r - 0.6), -math.sin(a_r - 0.6)])
        a_l = 0.35 * math.sin(ph + 1.0) - 1.2
        pts[6] = pts[5] + 0.11 * np.array([math.cos(a_l), -math.sin(a_l)])
        pts[7] = pts[6] + 0.1 * np.array([math.cos(a_l + 0.4), -math.sin(a_l + 0.4)])
        pts[8], pts[11] = np.array([0.46 + sway, hip_y]), np.array([0.54 + sway, hip_y])
        step = 0.06 * math.sin(ph)
        pts[9], pts[12] = pts[8] + [-0.02 + step, 0.14], pts[11] + [0.02 - step, 0.14]
        pts[10] = pts[9] + [-0.01, 0.15 - max(step, 0) * 0.5]
        pts[13] = pts[12] + [0.01, 0.15 - max(-step, 0) * 0.5]
        for k, v in pts.items():
            out[f, k] = v
    return out


def dance_pose_keypoint(num_frames: int = DEMO_FRAMES, canvas: int = DEMO_CANVAS) -> list[dict]:
    """The dance as POSE_KEYPOINT: one dict per frame, as the ComfyUI pose preprocessors emit it."""
    frames = []
    for pts in dance_keypoints(num_frames):
        body = np.concatenate([pts, np.ones((18, 1))], axis=1).reshape(-1)
        frames.append(
            {
                "people": [{"pose_keypoints_2d": [round(float(v), 5) for v in body]}],
                "canvas_width": canvas,
                "canvas_height": canvas,
            }
        )
    return frames


def _segment_distance(px: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = b - a
    t = np.clip(((px - a) @ d) / max(float(d @ d), 1e-12), 0.0, 1.0)
    return np.linalg.norm(px - (a + t[..., None] * d), axis=-1)


def dance_depth(num_frames: int = DEMO_FRAMES, size: int = DEMO_DEPTH_SIZE) -> np.ndarray:
    """uint8 [F, size, size, 3] depth maps of the dance (MiDaS convention: near = bright): rounded limbs
    and head in front of a floor that fades with distance."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    px = np.stack([(xx + 0.5) / size, (yy + 0.5) / size], axis=-1)
    floor = np.clip((yy / size - 0.55) / 0.45, 0, 1) * 0.35
    out = []
    for pts in dance_keypoints(num_frames):
        depth = floor.copy()
        for (i, j), near in _DEPTH_LIMBS:
            dist = _segment_distance(px, pts[i], pts[j])
            radius = 0.035
            shade = near * np.sqrt(np.clip(1 - (dist / radius) ** 2, 0, 1)) ** 0.3
            depth = np.where(dist < radius, np.maximum(depth, shade), depth)
        head = np.linalg.norm(px - pts[0], axis=-1)
        depth = np.where(
            head < 0.06, np.maximum(depth, 0.8 * np.sqrt(np.clip(1 - (head / 0.06) ** 2, 0, 1))), depth
        )
        out.append(np.repeat((depth * 255).round().astype(np.uint8)[..., None], 3, axis=-1))
    return np.stack(out)


def demo_person(size: int = 64) -> np.ndarray:
    """uint8 [H, W, 3] reference person: face with hair, red top, blue trousers, on a light background."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    img = np.empty((size, size, 3))
    img[:] = (0.92, 0.9, 0.85)
    img[(np.abs(xx - 0.5) < 0.16) & (yy > 0.33) & (yy < 0.62)] = (0.8, 0.12, 0.12)  # top
    img[(np.abs(xx - 0.5) < 0.14) & (yy >= 0.62) & (yy < 0.97)] = (0.15, 0.2, 0.55)  # trousers
    img[(np.abs(xx - 0.5) < 0.015) & (yy >= 0.7)] = (0.92, 0.9, 0.85)  # gap between the legs
    head = (xx - 0.5) ** 2 + ((yy - 0.2) / 1.15) ** 2
    img[head < 0.12**2] = (0.25, 0.15, 0.08)  # hair
    img[((xx - 0.5) ** 2 + ((yy - 0.22) / 1.1) ** 2 < 0.1**2) & (yy > 0.15)] = (0.93, 0.75, 0.6)  # face
    for ex in (0.46, 0.54):
        img[(xx - ex) ** 2 + (yy - 0.21) ** 2 < 0.012**2] = (0.1, 0.1, 0.1)
    return (img * 255).round().astype(np.uint8)


def tiny_controlnet(seed: int):
    """A ControlNet of the tiny U-Net's architecture with non-zero zero-convolutions (so control shows)."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    from ..common import tiny

    torch.manual_seed(seed)
    cn = ControlNetModel.from_unet(UNet2DConditionModel(**tiny.TINY_UNET))
    tiny._perturb(cn, torch.Generator().manual_seed(seed + 100), scale=0.1)
    return cn.eval()


def write_dreamoving_demo_assets(base_dir: str | Path) -> dict[str, Path]:
    """Write the DreaMoving demo models and inputs under `base_dir` (a ComfyUI base directory)."""
    from PIL import Image

    from ..common.animatediff import build_tiny_motion_adapter, save_motion_adapter_original
    from ..common.controlnet import save_controlnet_single_file
    from ..common.image_prompt import (
        build_tiny_clip_vision,
        build_tiny_ip_adapter,
        save_clip_vision,
        save_ip_adapter,
    )
    from ..common.saving import save_diffusers_folder
    from ..common.tiny import build_tiny_components

    base = Path(base_dir)
    models, inputs = base / "models", base / "input"
    paths = {
        "dreamoving_model": models / "diffusers" / DEMO_MODEL,
        "dreamoving_motion": models / "animatediff_models" / DEMO_MOTION,
        "dreamoving_pose_controlnet": models / "controlnet" / DEMO_POSE_CN,
        "dreamoving_depth_controlnet": models / "controlnet" / DEMO_DEPTH_CN,
        "dreamoving_ip_adapter": models / "ipadapter" / DEMO_IP_ADAPTER,
        "dreamoving_clip_vision": models / "clip_vision" / DEMO_CLIP_VISION,
        "dreamoving_pose": inputs / DEMO_POSE,
        "dreamoving_depth": inputs / DEMO_DEPTH,
        "dreamoving_person": inputs / DEMO_PERSON,
    }
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    folder = paths["dreamoving_model"]
    comps = None
    if not (folder / "unet" / "config.json").is_file():
        comps = build_tiny_components(seed=7)
        save_diffusers_folder(comps, folder)
    if not paths["dreamoving_motion"].is_file():
        save_motion_adapter_original(
            build_tiny_motion_adapter(seed=8, zero_out=False), paths["dreamoving_motion"]
        )
    for key, seed in (("dreamoving_pose_controlnet", 9), ("dreamoving_depth_controlnet", 10)):
        if not paths[key].is_file():
            save_controlnet_single_file(tiny_controlnet(seed), paths[key])
    if not paths["dreamoving_clip_vision"].is_file() or not paths["dreamoving_ip_adapter"].is_file():
        clip = build_tiny_clip_vision(seed=11)
        unet = (comps or build_tiny_components(seed=7)).unet
        if not paths["dreamoving_clip_vision"].is_file():
            save_clip_vision(clip, paths["dreamoving_clip_vision"], single_file=True)
        if not paths["dreamoving_ip_adapter"].is_file():
            save_ip_adapter(
                build_tiny_ip_adapter(unet, "plain", clip, seed=12), paths["dreamoving_ip_adapter"]
            )
    if not paths["dreamoving_pose"].is_file():
        paths["dreamoving_pose"].write_text(json.dumps(dance_pose_keypoint()))
    if not paths["dreamoving_depth"].is_file():
        frames = [Image.fromarray(f) for f in dance_depth()]
        frames[0].save(
            paths["dreamoving_depth"],
            save_all=True,
            append_images=frames[1:],
            duration=125,
            loop=0,
            lossless=True,
        )
    if not paths["dreamoving_person"].is_file():
        Image.fromarray(demo_person()).save(paths["dreamoving_person"])
    return paths
