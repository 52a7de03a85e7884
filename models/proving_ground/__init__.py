"""The proving ground: a procedurally generated, captioned image world and its evaluators.

- `world`: seeded 128x128 scenes (shapes, colors, textured backgrounds), captions, grayscale, per-object
  masks, edit pairs (ground truth for editing) and the reproducible `WorldDataset` splits.
- `classifier`: the attribute classifier trained on the world, world-FID and prompt accuracy.

Pure numpy / torch; never imports ComfyUI.
"""

from .world import (
    COLOR_NAMES,
    COLORS,
    SHAPES,
    SIZE,
    TEXTURES,
    Background,
    Scene,
    WorldDataset,
    WorldObject,
    caption,
    edit_pair,
    grayscale,
    object_coverage,
    object_masks,
    parse_caption,
    render,
    sample_scene,
)

__all__ = [
    "COLOR_NAMES",
    "COLORS",
    "SHAPES",
    "SIZE",
    "TEXTURES",
    "Background",
    "Scene",
    "WorldDataset",
    "WorldObject",
    "caption",
    "edit_pair",
    "grayscale",
    "object_coverage",
    "object_masks",
    "parse_caption",
    "render",
    "sample_scene",
]
