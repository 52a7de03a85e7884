"""ComfyUI adapters, one module per method plus shared-domain nodes (pose); this file merges their mappings."""

from . import (
    bidiff,
    colorize,
    dreamoving,
    handdiffuse,
    infedit,
    motion_custom,
    pose,
    swiftbrush,
    trihuman,
    trihuman_official,
)

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
for _module in (
    colorize,
    infedit,
    swiftbrush,
    dreamoving,
    pose,
    handdiffuse,
    motion_custom,
    bidiff,
    trihuman,
    trihuman_official,
):
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)
