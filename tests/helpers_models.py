"""Places the models and images the host tests and example workflows need into a ComfyUI base dir."""

from __future__ import annotations

from pathlib import Path


def place_test_models(base_dir: str | Path) -> None:
    from papernodes.models.common.demo_assets import write_demo_assets

    write_demo_assets(base_dir)
