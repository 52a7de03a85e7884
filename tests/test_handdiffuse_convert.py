"""InterHand2.6M joint files -> the trainer's npz layout (models/handdiffuse/convert.py): joint order and
units round-trip, runs split at invalid frames, fps from the frame step, and the trainer reads the result."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from papernodes.models.common.errors import InputError
from papernodes.models.handdiffuse.convert import INTERHAND_ORDER, convert_interhand
from papernodes.models.handdiffuse.train import load_npz_sequences
from papernodes.models.handdiffuse.world import make_clip


def _interhand(ours: np.ndarray) -> np.ndarray:
    """Ours [T, 2, 21, 3] (m) -> InterHand [T, 42, 3] (mm), written independently of the converter's map."""
    names = ["thumb", "index", "middle", "ring", "pinky"]
    ih_index = {f"{f}{k}": i * 4 + (4 - k) for i, f in enumerate(names) for k in (4, 3, 2, 1)}  # tip first
    ih_index["wrist"] = 20
    ours_names = ["wrist"] + [f"{f}{k}" for f in names for k in (1, 2, 3, 4)]  # base first, OpenPose order
    out = np.zeros((ours.shape[0], 42, 3))
    for j, name in enumerate(ours_names):
        out[:, ih_index[name]] = ours[:, 0, j] * 1000
        out[:, 21 + ih_index[name]] = ours[:, 1, j] * 1000
    return out


def test_map_matches_an_independent_reading_of_the_skeleton():
    ours = np.random.default_rng(0).normal(size=(1, 2, 21, 3))
    ih = _interhand(ours)
    assert np.allclose(ih[:, INTERHAND_ORDER] / 1000, ours[:, 0])


def test_interhand_round_trip_runs_fps_and_trainer(tmp_path):
    clip = make_clip(0, 0).global_joints().double().numpy()[:40]
    ih = _interhand(clip)
    frames = {}
    for t in range(40):
        valid = [1] * 42 if t != 20 else [1] * 41 + [0]  # frame 20 loses a joint: the run splits there
        frames[str(t * 3)] = {"world_coord": ih[t].tolist(), "joint_valid": valid, "hand_type": "interacting",
                              "hand_type_valid": 1}  # fmt: skip
    frames["999"] = {
        "world_coord": ih[0].tolist(),
        "joint_valid": [1] * 42,
        "hand_type": "right",
        "hand_type_valid": 1,
    }
    path = tmp_path / "joint_3d.json"
    path.write_text(json.dumps({"7": frames}))
    files = convert_interhand(path, tmp_path / "out", label="clap", min_frames=10)
    assert [f.name for f in files] == ["capture7_frame000000.npz", "capture7_frame000063.npz"]
    with np.load(files[0]) as z:
        assert z["joints"].shape == (20, 2, 21, 3) and float(z["fps"]) == 10.0 and str(z["label"]) == "clap"
        assert np.allclose(z["joints"], clip[:20], atol=1e-6)
    seqs = load_npz_sequences(tmp_path / "out")
    assert [lab for _, lab in seqs] == ["clap", "clap"]
    got = seqs[0][0].global_joints()
    assert torch.allclose(got, torch.from_numpy(clip[:20]).to(got.dtype), atol=1e-5)


def test_bad_files_are_input_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"0": {"0": {"world_coord": [[0, 0, 0]] * 21, "joint_valid": [1] * 21,
                                            "hand_type": "interacting"}}}))  # fmt: skip
    with pytest.raises(InputError, match="42 joints"):
        convert_interhand(bad, tmp_path / "o")
    bad.write_text("not json")
    with pytest.raises(InputError, match="joint_3d"):
        convert_interhand(bad, tmp_path / "o")
