"""Multi-view training data of one character: the avatar world, or a folder of captured sequences.

A sequence: synchronised views with calibrated cameras, per-frame skeletal motion and foreground masks,
what TriHuman trains on (Sec. 4: multi-view studio captures). In memory as `MultiViewSequence`; on disk
(`--data FOLDER`) as one `.npz` per sequence (read with `allow_pickle=False`):

    images [T, C, H, W, 3] uint8, masks [T, C, H, W] bool/uint8, K [C, 3, 3], world_to_camera [C, 4, 4]
    (OpenCV, metres), poses [T, J, 3] axis-angle, translations [T, 3]

and the character as `character.npz`: vertices [V, 3], faces [F, 3], uvs [F, 3, 2], skin_weights [V, J],
rest_joints [J, 3], parents [J] (-1 for the root), joint_names [J] (strings).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..common.errors import InputError
from .character import Character
from .silhouette import exterior_distance


@dataclass
class MultiViewSequence:
    poses: torch.Tensor  # [T, J, 3] (the first `history` frames are context only)
    translations: torch.Tensor  # [T, 3]
    images: torch.Tensor  # [T - history, C, H, W, 3] float in 0..1
    masks: torch.Tensor  # [T - history, C, H, W] bool
    exterior: torch.Tensor  # [T - history, C, H, W] distance to the mask (pixels)
    K: torch.Tensor  # [C, 3, 3]
    world_to_camera: torch.Tensor  # [C, 4, 4]
    history: int = 0

    @property
    def frames(self) -> int:
        return self.images.shape[0]


def world_sequences(
    seed: int, count: int, frames: int, size: int, split: str = "train", cameras="train", images: bool = True
):
    """(character, sequences) of the avatar world (world.py), two history frames each; `images=False` keeps
    only the masks (the template stage: 12 views at 256 px of RGB would not fit in memory)."""
    from .world import make_sequence, world_character

    seqs = []
    for i in range(count):
        s = make_sequence(seed, split, i, frames, cameras, size)
        seqs.append(MultiViewSequence(
            torch.cat([s.history_poses, s.poses]), torch.cat([s.history_translations, s.translations]),
            s.images.float() if images else s.images[:, :0], s.masks, exterior_distance(s.masks), s.K,
            s.world_to_camera, history=2,
        ))  # fmt: skip
    return world_character(), seqs


def _array(data, key: str, path: Path, ndim: int) -> np.ndarray:
    if key not in data:
        raise InputError(str(path.name), f"an array '{key}'", f"keys {sorted(data.keys())}")
    a = np.asarray(data[key])
    if a.ndim != ndim:
        raise InputError(f"{path.name}:{key}", f"{ndim} dimensions", f"shape {list(a.shape)}")
    return a


def load_character(path: str | Path) -> Character:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"character file '{path}' not found (character.npz: module docstring)")
    with np.load(path, allow_pickle=False) as d:
        return Character(
            torch.from_numpy(_array(d, "vertices", path, 2)).float(),
            torch.from_numpy(_array(d, "faces", path, 2)).long(),
            torch.from_numpy(_array(d, "uvs", path, 3)).float(),
            torch.from_numpy(_array(d, "skin_weights", path, 2)).float(),
            torch.from_numpy(_array(d, "rest_joints", path, 2)).float(),
            tuple(int(p) for p in _array(d, "parents", path, 1)),
            tuple(str(n) for n in _array(d, "joint_names", path, 1)),
        )


def load_folder(folder: str | Path) -> tuple[Character, list[MultiViewSequence]]:
    folder = Path(folder)
    character = load_character(folder / "character.npz")
    seqs = []
    for path in sorted(p for p in folder.glob("*.npz") if p.name != "character.npz"):
        with np.load(path, allow_pickle=False) as d:
            masks = torch.from_numpy(_array(d, "masks", path, 4).astype(bool))
            poses = torch.from_numpy(_array(d, "poses", path, 3)).float()
            character.check_poses(poses, f"{path.name}:poses")
            seqs.append(MultiViewSequence(
                poses, torch.from_numpy(_array(d, "translations", path, 2)).float(),
                torch.from_numpy(_array(d, "images", path, 5)).float() / 255.0, masks, exterior_distance(masks),
                torch.from_numpy(_array(d, "K", path, 3)).float(),
                torch.from_numpy(_array(d, "world_to_camera", path, 3)).float(),
            ))  # fmt: skip
    if not seqs:
        raise InputError("data", "a folder with character.npz and sequence .npz files", str(folder))
    return character, seqs
