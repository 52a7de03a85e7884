"""Demo models and images for the main job, written into a ComfyUI base directory.

`trained=True` (the main job, whenever the proving-ground weights are in the checkout): the models trained
on our procedural world (`models/proving_ground/`), assembled into the diffusers folders the example
workflows name, and a held-out world scene as the input image, so the outputs are meaningful.
`trained=False` (the test suite's host): tiny seeded models of `tiny.py`, fast and random.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .bidiff.demo import write_bidiff_demo_prior
from .common.saving import save_diffusers_folder, save_single_file
from .common.tiny import build_tiny_components
from .handdiffuse.demo import write_hands_demo_model
from .proving_ground.dance_demo import trained_shipped as dance_trained_shipped
from .proving_ground.dance_demo import write_dance_world_demo
from .trihuman.demo import write_trihuman_demo_model

DEMO_COLORIZER = "papernodes-demo-colorizer"
DEMO_LCM = "papernodes-demo-lcm"
DEMO_LORA = "papernodes-demo-lcm-lora.safetensors"
DEMO_SWIFTBRUSH = "papernodes-demo-swiftbrush"
DEMO_COLOR_IMAGE = "papernodes_demo_color.png"
# The demo input: held-out world scene 284 of seed 11, "a black star and a red cross on a striped purple
# background" (the example workflows' prompts describe it).
DEMO_SCENE = dict(seed=11, split="heldout", index=284)


def demo_scene(size: int = 96, seed: int = 0) -> np.ndarray:
    """A deterministic colorful scene (striped background, a disc and a square), uint8 [H,W,3]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.empty((size, size, 3), np.float32)
    stripes = (np.sin(xx * math.tau * 4) > 0).astype(np.float32)[..., None]
    img[:] = stripes * np.array([0.2, 0.35, 0.8]) + (1 - stripes) * np.array([0.85, 0.9, 1.0])
    cx, cy, r = rng.uniform(0.3, 0.45), rng.uniform(0.3, 0.7), 0.2
    img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = (0.9, 0.15, 0.1)
    img[(np.abs(xx - 0.72) < 0.14) & (np.abs(yy - 0.5) < 0.14)] = (0.1, 0.7, 0.2)
    return (img * 255).round().astype(np.uint8)


def world_demo_image() -> np.ndarray:
    """uint8 [128,128,3]: the demo input scene (see DEMO_SCENE)."""
    from .proving_ground.world import WorldDataset, render

    ds = WorldDataset(DEMO_SCENE["index"] + 1, seed=DEMO_SCENE["seed"], split=DEMO_SCENE["split"])
    return render(ds.scene(DEMO_SCENE["index"]))


def trained_models_shipped() -> bool:
    from .proving_ground import zoo

    return all(zoo.shipped().values())


def write_trained_demo_models(base_dir: str | Path) -> dict[str, Path]:
    """The proving-ground models under the demo names (rebuilt each time: the checkout may have changed)."""
    from .common.loading import load_diffusers_folder
    from .proving_ground import zoo

    diffusers = Path(base_dir) / "models" / "diffusers"
    folder = zoo.assemble_pipeline("colorize", diffusers / DEMO_COLORIZER)
    single = Path(base_dir) / "models" / "checkpoints" / f"{DEMO_COLORIZER}.safetensors"
    save_single_file(load_diffusers_folder(folder), single, dtype=torch.float16)
    return {
        "diffusers": folder,
        "single_file": single,
        "lcm": zoo.assemble_pipeline("lcm", diffusers / DEMO_LCM),
        "swiftbrush": zoo.assemble_pipeline("swiftbrush", diffusers / DEMO_SWIFTBRUSH),
        "teacher": zoo.assemble_pipeline("base", diffusers / "papernodes-world-sd"),
    }


def write_demo_assets(base_dir: str | Path, trained: bool | None = None) -> dict[str, Path]:
    """Demo models + input image under `base_dir`; `trained=None` means trained if shipped."""
    from PIL import Image

    base = Path(base_dir)
    trained = trained_models_shipped() if trained is None else trained
    if trained:
        paths = write_trained_demo_models(base)
        image = base / "input" / DEMO_COLOR_IMAGE
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(world_demo_image()).save(image)
        hands = write_hands_demo_model(base, trained=True)
        motion = write_motion_demo(base, trained=True)
        return {
            **paths,
            "image": image,
            **write_dance_world_demo(base, trained=dance_trained_shipped()),
            **hands,
            **motion,
            **write_bidiff_demo_prior(base, trained=True),
            **write_trihuman_demo_model(base, trained=True),
        }
    diffusers = base / "models" / "diffusers"
    folder, lcm_folder = diffusers / DEMO_COLORIZER, diffusers / DEMO_LCM
    swiftbrush_folder = diffusers / DEMO_SWIFTBRUSH  # tiny one-step student (and teacher)
    single = base / "models" / "checkpoints" / f"{DEMO_COLORIZER}.safetensors"
    lora = base / "models" / "loras" / DEMO_LORA
    missing = lambda p: not p.is_file() and not (p / "unet" / "config.json").is_file()  # noqa: E731

    if missing(folder) or missing(single):  # models are built only when a file is absent
        comps = build_tiny_components(seed=0, in_channels=8)
        if missing(folder):
            save_diffusers_folder(comps, folder)
        if missing(single):
            save_single_file(comps, single, dtype=torch.float16)
    if missing(lcm_folder) or missing(lora):
        lcm = build_tiny_components(seed=1, in_channels=4)
        lcm.scheduler_config = {
            **lcm.scheduler_config,
            "_class_name": "LCMScheduler",
            "original_inference_steps": 50,
        }
        if missing(lcm_folder):
            save_diffusers_folder(lcm, lcm_folder)
        if missing(lora):
            write_demo_lora(lcm.unet, lora)
    if missing(swiftbrush_folder):
        save_diffusers_folder(build_tiny_components(seed=2, in_channels=4), swiftbrush_folder)
    image = base / "input" / DEMO_COLOR_IMAGE
    image.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(demo_scene()).save(image)
    return {
        "diffusers": folder,
        "single_file": single,
        "image": image,
        "lcm": lcm_folder,
        "lora": lora,
        "swiftbrush": swiftbrush_folder,
        **write_dance_world_demo(base, trained=False),
        **write_hands_demo_model(base, trained=False),
        **write_motion_demo(base, trained=False),
        **write_bidiff_demo_prior(base, trained=False),
        **write_trihuman_demo_model(base, trained=True),  # 2.6 MB: CI runs the workflows on the world avatar
    }


DEMO_VIDEO_SD = "papernodes-world-sd"  # the world's SD model (trained mode) or a tiny SD (test host)
DEMO_MOTION_MODULE = "papernodes-world-mm.safetensors"
DEMO_MOTION = "papernodes-world-orbiting-sks.safetensors"
DEMO_MOTION_WORDS = (
    "papernodes-world-motion-words.safetensors"  # the base's motion words (cross-attention K/V)
)
DEMO_CLIPS = "papernodes_motion_clips"


def write_motion_demo(base_dir: str | Path, trained: bool) -> dict[str, Path]:
    """Customizing Motion's demo: the world base (SD + motion module + its motion words), the customised
    'orbiting' motion and six clips of one subject orbiting (the training workflow's input), or seeded
    stand-ins in the same files when not trained."""
    import shutil

    from .common.animatediff import (
        build_tiny_motion_adapter,
        load_motion_adapter,
        save_motion_adapter_original,
    )
    from .common.loading import load_diffusers_folder
    from .motion_custom.demo import write_seeded_motion
    from .motion_custom.motion_file import load_motion, motions_applied
    from .motion_custom.pipeline import animatediff_model
    from .proving_ground import motion_reproduce as mr

    base = Path(base_dir)
    sd = base / "models" / "diffusers" / DEMO_VIDEO_SD
    mm = base / "models" / "animatediff_models" / DEMO_MOTION_MODULE
    words = base / "models" / "motions" / DEMO_MOTION_WORDS
    motion = base / "models" / "motions" / DEMO_MOTION
    for p in (mm, motion):
        p.parent.mkdir(parents=True, exist_ok=True)
    world = [mr.SHIPPED / f for f in (mr.MOTION_MODULE_FILE, mr.BASE_WORDS_FILE, mr.CUSTOM_FILE)]
    if trained and all(p.is_file() for p in world):
        from .proving_ground import zoo

        if not (sd / "unet" / "config.json").is_file():
            zoo.assemble_pipeline("base", sd)
        for src, dst in zip(world, (mm, words, motion), strict=True):
            shutil.copyfile(src, dst)
    else:  # tiny stand-ins (the world's SD when trained): same files, seeded deltas
        if trained:
            from .proving_ground import zoo

            if not (sd / "unet" / "config.json").is_file():
                zoo.assemble_pipeline("base", sd)
            save_motion_adapter_original(mr.fresh_adapter(load_diffusers_folder(sd).unet), mm)
        else:
            if not (sd / "unet" / "config.json").is_file():
                save_diffusers_folder(build_tiny_components(seed=3), sd)
            save_motion_adapter_original(build_tiny_motion_adapter(seed=4, zero_out=False), mm)
        model = animatediff_model(load_diffusers_folder(sd), load_motion_adapter(mm))
        model = model.with_motion(load_motion(write_seeded_motion(model, words, token="", seed=1)))
        with motions_applied(model.unet, model.motions):  # the motion sits on top of the words
            write_seeded_motion(model, motion, seed=2)
    clips = base / "input" / DEMO_CLIPS
    if not clips.is_dir():
        mr.write_clip_folders(clips, mr.world_clips(mr.CUSTOM_CLIPS, mr.CUSTOM_SEED, motions=(mr.HELD_OUT,),
                                                   subjects=[mr.CUSTOM_SUBJECT]))  # fmt: skip
    return {
        "video_sd": sd,
        "motion_module": mm,
        "motion_words": words,
        "motion": motion,
        "motion_clips": clips,
    }


def write_demo_lora(unet: torch.nn.Module, path: Path, rank: int = 4, seed: int = 0) -> Path:
    """A small kohya-format LoRA on every attention projection of `unet` (the LCM-LoRA file layout)."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, module in unet.named_modules():
        if isinstance(module, torch.nn.Linear) and name.split(".")[-1] in ("to_q", "to_k", "to_v"):
            key = "lora_unet_" + name.replace(".", "_")
            sd[f"{key}.lora_down.weight"] = torch.randn(rank, module.in_features, generator=g) * 0.1
            sd[f"{key}.lora_up.weight"] = torch.randn(module.out_features, rank, generator=g) * 0.1
            sd[f"{key}.alpha"] = torch.tensor(float(rank))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))
    return path
