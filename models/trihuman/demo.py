"""The TriHuman demo avatar for the main job and the host tests, written into a ComfyUI base directory.

`trained=True`: the shipped world avatar (reproduce.py) copied to models/trihuman/ under the name the
example workflows use, when it is in the checkout; otherwise (and for `trained=False`) a tiny seeded
untrained avatar of the world's character in the same format. Untrained, the avatar is its template
(avatar_field.py: the SDF residual starts at zero, the deformation heads at zero), so its renders and
meshes show the skinned world character in the colour MLP's initial grey.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..common.demo_files import place_demo_file
from .avatar import AvatarConfig, TriHumanAvatar, save_avatar
from .reproduce import AVATAR_FILE, WEIGHTS

DEMO_AVATAR = "papernodes-world-avatar.safetensors"
FOLDER = "trihuman"


def tiny_config() -> AvatarConfig:
    """The test double: the avatar's architecture at a few thousand parameters per network."""
    return AvatarConfig(
        texture_size=32, graph_nodes=32,
        generator=dict(base_channels=8, max_channels=16, depth=2, aware_channels=4, aware_blocks=1),
        fields=dict(sdf_hidden=16, sdf_layers=2, sdf_features=8, color_hidden=16, color_layers=2, num_freqs=2,
                    candidates=8, samples=8),
    )  # fmt: skip


def tiny_avatar(seed: int = 0) -> TriHumanAvatar:
    from .world import world_character

    torch.manual_seed(seed)
    return TriHumanAvatar(world_character(), tiny_config())


def shipped_avatar() -> Path | None:
    path = WEIGHTS / AVATAR_FILE
    return path if path.is_file() else None


def write_trihuman_demo_model(base_dir: str | Path, trained: bool) -> dict[str, Path]:
    dest = Path(base_dir) / "models" / FOLDER / DEMO_AVATAR
    place_demo_file(dest, shipped_avatar(), trained, lambda d: save_avatar(tiny_avatar(), d))
    return {"trihuman_avatar": dest}
