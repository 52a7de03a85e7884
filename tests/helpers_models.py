"""Places the models and images the host tests and example workflows need into a ComfyUI base dir."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

WORLD_COLORIZER = "papernodes-world-colorizer"
WORLD_COLORIZER_INIT = "papernodes-world-colorizer-init"  # the same model before colorization training
WORLD_IMAGE = "papernodes_world_scene.png"
TRAINED_DANCE_SUFFIX = "-trained"  # the dance world's trained models, beside the tiny ones of the same names


def place_test_models(base_dir: str | Path) -> None:
    """Tiny models under the demo names (fast), plus the trained proving-ground colorizer, its untrained
    InstructPix2Pix init (the control that shows what the training added), a world scene, and the dance
    world's trained models under suffixed names (what the main job's DreaMoving workflows run)."""
    from papernodes.models.demo_assets import world_demo_image, write_demo_assets
    from papernodes.models.proving_ground import dance_demo, zoo
    from PIL import Image

    base = Path(base_dir)
    write_demo_assets(base, trained=False)
    shipped = zoo.shipped()
    if shipped["base"] and shipped["colorize"]:  # test_host_proving_ground fails loudly otherwise
        diffusers = base / "models" / "diffusers"
        zoo.assemble_pipeline("colorize", diffusers / WORLD_COLORIZER)
        write_colorizer_init(diffusers / WORLD_COLORIZER_INIT)
    Image.fromarray(world_demo_image()).save(base / "input" / WORLD_IMAGE)
    if dance_demo.trained_shipped():  # test_host_dreamoving fails loudly otherwise
        dance_demo.write_dance_world_demo(base, trained=True, suffix=TRAINED_DANCE_SUFFIX)


def write_colorizer_init(dest: Path) -> Path:
    """The proving-ground teacher with the InstructPix2Pix input expansion (zero weights on the 4 image
    channels), i.e. what the colorizer's training started from, as a diffusers folder at `dest`."""
    import torch
    from diffusers import UNet2DConditionModel
    from papernodes.models.colorize.train import expand_conv_in_for_ip2p
    from papernodes.models.proving_ground import zoo

    folder = zoo.assemble_pipeline("base", dest)
    unet = UNet2DConditionModel.from_pretrained(folder / "unet", torch_dtype=torch.float32)
    expand_conv_in_for_ip2p(unet)
    # The assembled files are hard links into the shipped weights: replace them, never write through them.
    shutil.rmtree(folder / "unet")
    unet.save_pretrained(folder / "unet", safe_serialization=True)
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    index["_class_name"] = "StableDiffusionInstructPix2PixPipeline"
    index_path.unlink()
    index_path.write_text(json.dumps(index, indent=2))
    return folder
