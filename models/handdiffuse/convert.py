"""Converters from public two-hand layouts to the trainer's npz layout (train.py: joints [T, 2, 21, 3] in
metres, hand 0 right, OpenPose joint order; fps; label).

InterHand2.6M (Moon et al. 2020), its `*_joint_3d.json` as its public loaders read it:
`{capture_id: {frame_idx: {"world_coord": 42 x [x, y, z] (mm), "joint_valid": 42 x 0/1,
"hand_type": "right" | "left" | "interacting", "hand_type_valid": 0/1}}}`. Per hand 21 joints, each
finger tip-first (thumb4 .. thumb1, index4 .. index1, middle, ring, pinky) then the wrist (20); right hand
0-20, left 21-41. Kept: frames whose hand type is "interacting" and whose 42 joints are all valid; runs
of such frames with a constant frame-index step become sequences at `video_fps / step` (the release
numbers frames of 30 fps video). Coordinates stay in the capture's world frame (millimetres -> metres);
the dome's axes are not re-oriented to the hand-motion world's (+y up), so do not mix the two in one
training set without aligning them.

    python -m models.handdiffuse.convert interhand InterHand2.6M_train_joint_3d.json OUT_FOLDER
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

if __name__ == "__main__":  # `python -m models.handdiffuse.convert`: run inside the pack
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from papernodes_bootstrap import run_in_pack

    run_in_pack(__spec__.name)

from ..common.errors import InputError

# Our joint j of a hand <- InterHand joint INTERHAND_ORDER[j] of that hand (wrist, then each finger base-first).
INTERHAND_ORDER = [20, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, 19, 18, 17, 16]


def interhand_to_ours(world_coord_mm: np.ndarray) -> np.ndarray:
    """[..., 42, 3] InterHand joints (mm) -> [..., 2, 21, 3] ours (m, right hand first)."""
    right = world_coord_mm[..., INTERHAND_ORDER, :]
    left = world_coord_mm[..., [21 + i for i in INTERHAND_ORDER], :]
    return np.stack([right, left], -3) / 1000.0


def interhand_sequences(
    joints: dict, video_fps: float = 30.0, min_frames: int = 30
) -> list[tuple[str, np.ndarray, float]]:
    """(name, joints [T, 2, 21, 3] in m, fps) for every run of valid interacting frames."""
    if not isinstance(joints, dict):
        raise InputError("joint_3d", "InterHand2.6M's {capture: {frame: {...}}} JSON", type(joints).__name__)
    out = []
    for capture, frames in sorted(joints.items(), key=lambda kv: str(kv[0])):
        if not isinstance(frames, dict):
            raise InputError("joint_3d", f"capture {capture}: a dict of frames", type(frames).__name__)
        good = []
        for key, entry in frames.items():
            try:
                coords = np.asarray(entry["world_coord"], dtype=np.float64)
                valid = np.asarray(entry["joint_valid"], dtype=np.float64).reshape(-1)
                kind = entry["hand_type"]
            except (KeyError, TypeError, ValueError):
                raise InputError(
                    "joint_3d",
                    "frames with world_coord, joint_valid, hand_type",
                    f"capture {capture} frame {key}",
                ) from None
            if coords.shape != (42, 3) or valid.shape != (42,):
                raise InputError("joint_3d", "42 joints per frame (21 per hand)", f"{list(coords.shape)}")
            if kind == "interacting" and entry.get("hand_type_valid", 1) and valid.all():
                good.append((int(key), coords))
        good.sort(key=lambda fc: fc[0])
        if len(good) < 2:
            continue
        step = min(b[0] - a[0] for a, b in zip(good, good[1:]))
        runs, run = [], [good[0]]
        for prev, cur in zip(good, good[1:]):
            if cur[0] - prev[0] == step:
                run.append(cur)
            else:
                runs.append(run)
                run = [cur]
        runs.append(run)
        for run in runs:
            if len(run) >= min_frames:
                name = f"capture{capture}_frame{run[0][0]:06d}"
                out.append((name, interhand_to_ours(np.stack([c for _, c in run])), video_fps / step))
    return out


def convert_interhand(
    json_path: str | Path, out_dir: str | Path, label: str = "interhand", video_fps: float = 30.0,
    min_frames: int = 30,
) -> list[Path]:  # fmt: skip
    """Write one npz per sequence (train.py's layout); returns the files."""
    path = Path(json_path)
    try:
        joints = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(
            "joint_3d", "a readable InterHand2.6M *_joint_3d.json", f"{path.name}: {exc}"
        ) from None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, seq, fps in interhand_sequences(joints, video_fps, min_frames):
        dest = out / f"{name}.npz"
        np.savez(dest, joints=seq.astype(np.float32), fps=np.float64(fps), label=np.str_(label))
        files.append(dest)
    return files


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="layout", required=True)
    ih = sub.add_parser("interhand", help="InterHand2.6M *_joint_3d.json -> npz sequences")
    ih.add_argument("json")
    ih.add_argument("out")
    ih.add_argument("--label", default="interhand")
    ih.add_argument("--video-fps", type=float, default=30.0)
    ih.add_argument("--min-frames", type=int, default=30)
    args = p.parse_args(argv)
    try:
        files = convert_interhand(args.json, args.out, args.label, args.video_fps, args.min_frames)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(files)} sequences to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
