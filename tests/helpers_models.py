"""Places the models and images the host tests and example workflows need into a ComfyUI base dir."""

from __future__ import annotations

from pathlib import Path

WORLD_COLORIZER = "papernodes-world-colorizer"
WORLD_IMAGE = "papernodes_world_scene.png"


def place_test_models(base_dir: str | Path) -> None:
    """Tiny models under the demo names (fast), plus the trained proving-ground colorizer and a world scene."""
    from papernodes.models.demo_assets import world_demo_image, write_demo_assets
    from papernodes.models.proving_ground import zoo
    from PIL import Image

    base = Path(base_dir)
    write_demo_assets(base, trained=False)
    shipped = zoo.shipped()
    if shipped["base"] and shipped["colorize"]:  # test_host_proving_ground fails loudly otherwise
        zoo.assemble_pipeline("colorize", base / "models" / "diffusers" / WORLD_COLORIZER)
    Image.fromarray(world_demo_image()).save(base / "input" / WORLD_IMAGE)
