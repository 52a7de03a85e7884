"""HandDiffuse nodes (nodes/handdiffuse.py) without ComfyUI: a tiny untrained model written to a fake
models/handdiffuse folder, generation (length, fps, keyframes kept), rendering (pixels follow the hands),
BVH written and read back by an independent reader, and InputErrors naming the input. MANO: synthetic
MANO-structured files (mano.synthetic_mano_arrays; MANO itself needs registration) in a fake models/mano
folder, loaded, rendered and meshed on the hands; files that are not MANO and names outside the folder
refused by name."""

from __future__ import annotations

import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from papernodes.models.common.errors import InputError
from papernodes.models.handdiffuse.denoiser import HandDenoiser
from papernodes.models.handdiffuse.motion import HandMotion
from papernodes.models.handdiffuse.pipeline import ModelConfig, save_model
from papernodes.models.handdiffuse.world import make_clip

TINY = {"width": 32, "heads": 2, "single_layers": 1, "interact_layers": 1, "num_labels": 7, "max_frames": 64}


@pytest.fixture()
def nodes(tmp_path, monkeypatch):
    folders = {"handdiffuse": [str(tmp_path / "handdiffuse")], "mano": [str(tmp_path / "mano")]}
    (tmp_path / "handdiffuse").mkdir()
    (tmp_path / "mano").mkdir()
    (tmp_path / "output").mkdir()
    fake = types.ModuleType("folder_paths")
    fake.get_folder_paths = lambda kind: folders.get(kind, [])
    fake.get_filename_list = lambda kind: sorted(
        str(p.relative_to(tmp_path / kind)) for p in (tmp_path / kind).rglob("*") if p.is_file()
    )
    fake.get_output_directory = lambda: str(tmp_path / "output")
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    torch.manual_seed(0)
    save_model(
        HandDenoiser(**TINY), ModelConfig(denoiser=TINY), tmp_path / "handdiffuse" / "tiny.safetensors"
    )
    from papernodes.nodes import handdiffuse

    return handdiffuse, tmp_path


def _model(nd):
    assert "tiny.safetensors" in nd.LoadHandDiffuse.INPUT_TYPES()["required"]["model_name"][0]
    return nd.LoadHandDiffuse().load("tiny.safetensors")[0]


def test_every_input_has_a_tooltip(nodes):
    nd, _ = nodes
    for cls in nd.NODE_CLASS_MAPPINGS.values():
        spec = cls.INPUT_TYPES()
        for group in spec.values():
            for name, (_, opts) in group.items():
                assert opts.get("tooltip"), f"{cls.__name__}.{name}"
        assert cls.CATEGORY == "PaperNodes/HandDiffuse"


def test_generate_length_fps_and_keyframes_kept_exactly(nodes):
    nd, _ = nodes
    model = _model(nd)
    gen = nd.GenerateHandMotion()
    (m,) = gen.generate(model, "clap", 1.0, 30.0, 0, 3, 2.0)
    assert isinstance(m, HandMotion) and m.num_frames == 30 and m.fps == 30.0 and m.label == "clap"
    assert torch.isfinite(m.global_joints()).all()
    (m24,) = gen.generate(model, "none", 0.5, 24.0, 0, 2, 1.0)
    assert m24.num_frames == 12 and m24.fps == 24.0

    (keys,) = nd.KeyframesFromPoses().make("0: open, 15: fist; 29: point", 1.0, 30.0)
    assert keys.frames == [0, 15, 29]
    for fps in (30.0, 20.0):  # native rate, and resampled (keyframes written into their output frames)
        (out,) = gen.generate(model, "rub", 1.0, fps, 1, 3, 2.0, keys if fps == 30.0 else
                              nd.KeyframesFromPoses().make("0: open, 10: fist, 19: point", 1.0, fps)[0])  # fmt: skip
        k = keys if fps == 30.0 else nd.KeyframesFromPoses().make("0: open, 10: fist, 19: point", 1.0, fps)[0]
        feats = out.to_features()
        for i, f in enumerate(k.frames):
            assert torch.equal(feats[f][k.known[i]], k.features[i][k.known[i]])  # bit-exact
    # the fist keyframe curls the fingers: fingertips close to the palm, unlike the open hand
    j = out.global_joints()
    tip_to_wrist = (j[:, :, 12] - j[:, :, 0]).norm(dim=-1)  # middle tip
    assert (tip_to_wrist[10] < tip_to_wrist[0] - 0.05).all()


def test_separate_hands_input_ends_the_motion_without_interpenetration(nodes):
    from papernodes.models.handdiffuse.metrics import penetration_depth

    nd, _ = nodes
    model = _model(nd)  # untrained: its hands overlap freely
    spec = nd.GenerateHandMotion.INPUT_TYPES()["optional"]["separate_hands"]
    assert spec[0] == "BOOLEAN" and spec[1]["default"] is nd.SEPARATE_DEFAULT
    plain, apart = (nd.GenerateHandMotion().generate(model, "rub", 1.0, 30.0, 4, 3, 2.0, separate_hands=s)[0]
                    for s in (False, True))  # fmt: skip
    assert float(penetration_depth(plain.global_joints()).max()) > 0.005
    assert float(penetration_depth(apart.global_joints()).max()) < 1e-3
    with torch.inference_mode():  # as ComfyUI runs nodes: loading and separating still work
        model = _model(nd)
        (again,) = nd.GenerateHandMotion().generate(model, "rub", 1.0, 30.0, 4, 3, 2.0, separate_hands=True)
    assert torch.equal(again.global_joints(), apart.global_joints())


def test_bad_inputs_are_input_errors_naming_the_input(nodes):
    nd, _ = nodes
    model = _model(nd)
    gen = nd.GenerateHandMotion()
    cases = [
        (lambda: gen.generate(model, "clap", 1.0, 0.0, 0, 2, 1.0), "fps"),
        (lambda: gen.generate(model, "clap", 1.0, -5.0, 0, 2, 1.0), "fps"),
        (lambda: gen.generate(model, "clap", 0.0, 30.0, 0, 2, 1.0), "seconds"),
        (lambda: gen.generate(model, "juggle", 1.0, 30.0, 0, 2, 1.0), "label"),
        (
            lambda: gen.generate(
                model,
                "clap",
                1.0,
                30.0,
                0,
                2,
                1.0,
                nd.KeyframesFromPoses().make("0: open, 40: fist", 2.0, 30.0)[0],
            ),
            "keyframes",
        ),  # fmt: skip
        (lambda: nd.KeyframesFromPoses().make("0: open, 30: fist", 1.0, 30.0), "poses"),
        (lambda: nd.KeyframesFromPoses().make("-1: open", 1.0, 30.0), "poses"),
        (lambda: nd.KeyframesFromPoses().make("0: jazz hands", 1.0, 30.0), "poses"),
        (lambda: nd.KeyframesFromPoses().make("open", 1.0, 30.0), "poses"),
        (lambda: nd.KeyframesFromPoses().make("0: open", 1.0, 0.0), "fps"),
        (lambda: nd.RenderHands().render(make_clip(0, 0), 0, 64, 0.0, 0.0, 1.0), "width"),
        (lambda: nd.RenderHands().render(make_clip(0, 0), 64, 64, 0.0, 0.0, 0.0), "distance"),
        (lambda: nd.SaveHandMotion().save(make_clip(0, 0), "../escape"), "filename_prefix"),
    ]
    for fn, name in cases:
        with pytest.raises(InputError, match=f"'{name}'"):
            fn()
    from papernodes.models.common.errors import WeightsNotFoundError

    with pytest.raises(WeightsNotFoundError, match="missing.safetensors"):
        nd.LoadHandDiffuse().load("missing.safetensors")
    from papernodes.models.common.errors import WeightsFormatError

    root = nodes[1]
    (root / "handdiffuse" / "junk.safetensors").write_bytes(b"not a model")
    with pytest.raises(WeightsFormatError, match="junk.safetensors"):
        nd.LoadHandDiffuse().load("junk.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(root / "handdiffuse" / "other.safetensors"))  # no config
    with pytest.raises(WeightsFormatError, match="no HandDiffuse config"):
        nd.LoadHandDiffuse().load("other.safetensors")


def _drawn_centroid(img: torch.Tensor) -> torch.Tensor:
    drawn = (img - img[0, 0]).abs().sum(-1) > 0.05
    ys, xs = torch.nonzero(drawn, as_tuple=True)
    return torch.stack([xs.float().mean(), ys.float().mean()])


def test_render_pixels_follow_the_hands(nodes):
    nd, _ = nodes
    clip = make_clip(0, 0)  # clap
    rot6d, trans = clip.rot6d[:2].clone(), clip.trans[:2].clone()
    trans[1, 0] += torch.tensor(
        [-0.1, 0.0, 0.0]
    )  # frame 1: the right wrist (and the left, relative to it) 10 cm to -x
    moved = HandMotion(rot6d, trans, 30.0)
    images, fps = nd.RenderHands().render(moved, 96, 64, 0.0, 0.0, 0.8)
    assert images.shape == (2, 64, 96, 3) and fps == 30.0 and 0 <= images.min() and images.max() <= 1
    c0, c1 = _drawn_centroid(images[0]), _drawn_centroid(images[1])
    # camera in front of the person (+z) looking at -z: world -x (the person's right) is image left;
    # 10 cm at ~0.8 m with f = 48 / tan(20 deg) = 132 px is ~16 px (depths differ a little per joint)
    assert 10 < c0[0] - c1[0] < 25 and abs(c1[1] - c0[1]) < 2
    both = torch.equal(images[0], images[1])
    assert not both
    # both hands' colours appear
    flat = images[0].reshape(-1, 3)
    assert (flat[:, 0] > 0.8).any() and (flat[:, 2] > 0.8).any()


# ----------------------------------------------------------------------------------------------------
# BVH: an independent reader (hierarchy, offsets, channels, frames -> forward kinematics)


def _axis_matrix(axis: str, deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return {"X": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "Y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "Z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]  # fmt: skip


def read_bvh(path: Path) -> tuple[dict[str, np.ndarray], float]:
    """{joint or end-site name: world positions [T, 3]} and the frame time, by textbook BVH FK: a joint's
    local transform is translate(OFFSET + position channels) then the rotation channels in listed order."""
    tokens = path.read_text().split()
    i = tokens.index("HIERARCHY") + 1
    joints, stack, order = [], [], []  # joints: (name, parent index, offset, channels)
    while tokens[i] != "MOTION":
        tok = tokens[i]
        if tok in ("ROOT", "JOINT"):
            joints.append([tokens[i + 1], stack[-1] if stack else -1, None, []])
            i += 2
        elif tok == "End":
            joints.append([f"{joints[stack[-1]][0]}/end", stack[-1], None, []])
            i += 2
        elif tok == "{":
            stack.append(len(joints) - 1)
            i += 1
        elif tok == "}":
            stack.pop()
            i += 1
        elif tok == "OFFSET":
            joints[stack[-1]][2] = np.array([float(t) for t in tokens[i + 1 : i + 4]])
            i += 4
        elif tok == "CHANNELS":
            n = int(tokens[i + 1])
            joints[stack[-1]][3] = tokens[i + 2 : i + 2 + n]
            order.append(stack[-1])
            i += 2 + n
        else:
            raise AssertionError(f"unexpected token {tok}")
    frames = int(tokens[i + 2])
    frame_time = float(tokens[i + 5])
    values = np.array([float(t) for t in tokens[i + 6 :]]).reshape(frames, -1)
    out = {}
    for t in range(frames):
        col, glob = 0, {}
        chan_vals = {}
        for j in order:
            n = len(joints[j][3])
            chan_vals[j] = values[t, col : col + n]
            col += n
        for j, (name, parent, offset, channels) in enumerate(joints):
            local_t, local_r = offset.copy(), np.eye(3)
            for ch, v in zip(channels, chan_vals.get(j, []), strict=True):
                if ch.endswith("position"):
                    local_t = local_t + v * np.eye(3)["XYZ".index(ch[0])]
                else:
                    local_r = local_r @ _axis_matrix(ch[0], v)
            if parent < 0:
                glob[j] = (local_r, local_t)
            else:
                pr, pt = glob[parent]
                glob[j] = (pr @ local_r, pt + pr @ local_t)
            out.setdefault(name, np.zeros((frames, 3)))[t] = glob[j][1]
    return out, frame_time


def test_bvh_round_trip_gives_the_motions_joints(nodes):
    nd, root = nodes
    clip = make_clip(0, 6, torch.float64)  # count: the index touches the left fingertips
    clip = HandMotion(clip.rot6d[:20], clip.trans[:20], clip.fps, clip.label)
    result = nd.SaveHandMotion().save(clip, "hands/test")
    bvh_path, npz_path = map(Path, result["result"])
    assert bvh_path.parent == root / "output" / "hands" and bvh_path.name == "test_00001.bvh"
    positions, frame_time = read_bvh(bvh_path)
    assert abs(frame_time - 1 / 30) < 1e-7
    from papernodes.models.handdiffuse.hand import JOINT_NAMES, PARENTS, TIPS

    want = clip.global_joints().numpy()
    for h, p in enumerate(("R_", "L_")):
        for j, name in enumerate(JOINT_NAMES):
            key = f"{p}{JOINT_NAMES[PARENTS[j]]}/end" if j in TIPS else f"{p}{name}"
            got = positions[key] / 100.0  # BVH in centimetres
            err = np.abs(got - want[:, h, j]).max()
            assert err < 1e-6, (key, err)  # 6 decimals of cm and degrees: ~1e-7 m
    z = np.load(npz_path)
    assert z["joints"].shape == (20, 2, 21, 3) and float(z["fps"]) == 30.0 and str(z["label"]) == "count"
    np.testing.assert_allclose(z["joints"], want, atol=1e-6)
    # a second save does not overwrite
    assert Path(nd.SaveHandMotion().save(clip, "hands/test")["result"][0]).name == "test_00002.bvh"


@pytest.mark.slow  # > 1 s on a quiet machine: keeps the fast tier under a minute
def test_keyframes_from_joints_json_are_reached_and_bad_json_is_an_input_error(nodes):
    """Whole poses from a JSON of world joints (here a world clip's): the generated motion passes through
    them (IK exact, features kept bit-exactly, FK back within 1e-5 m in float32)."""
    import json

    nd, _ = nodes
    model = _model(nd)
    clip = make_clip(0, 2)
    joints = clip.global_joints()
    text = json.dumps(
        [{"frame": 0, "joints": joints[0].tolist()}, {"frame": 25, "joints": joints[40].tolist()}]
    )
    (keys,) = nd.KeyframesFromJoints().make(text, 1.0, 30.0)
    (out,) = nd.GenerateHandMotion().generate(model, "interlock", 1.0, 30.0, 0, 3, 2.0, keys)
    got = out.global_joints()
    assert (got[0] - joints[0]).abs().max() < 1e-5 and (got[25] - joints[40]).abs().max() < 1e-5
    bad = [
        json.dumps([{"frame": 0, "joints": joints[0, :, :20].tolist()}]),  # 20 joints per hand
        json.dumps([{"frame": 0, "joints": joints[0, :1].tolist()}]),  # one hand
        json.dumps([{"frame": 30, "joints": joints[0].tolist()}]),  # outside a 30-frame clip
        json.dumps([{"frame": 0, "joints": "x"}]),
        "[{frame: 0}",
        "[]",
    ]
    for text in bad:
        with pytest.raises(InputError, match="'keyframes_json'"):
            nd.KeyframesFromJoints().make(text, 1.0, 30.0)


def test_trajectory_from_points_is_followed_and_bad_points_are_input_errors(nodes):
    nd, _ = nodes
    model = _model(nd)
    traj = nd.TrajectoryFromPoints().make("right", "wrist", "0: -10, 0, 0\n29: -10, 10, 5", 1.0, 30.0)[0]
    traj = nd.TrajectoryFromPoints().make("left", "index tip", "5: 5, 5, 0; 20: 8, 8, 2", 1.0, 30.0, traj)[0]
    assert traj.joints == [(0, 0), (1, 8)]
    motion = nd.GenerateHandMotion().generate(model, "clap", 1.0, 30.0, 0, 6, 2.0, trajectory=traj)[0]
    g = motion.global_joints()
    assert torch.allclose(g[[0, 29], 0, 0], torch.tensor([[-0.1, 0, 0], [-0.1, 0.1, 0.05]]), atol=1e-6)
    tip = (g[[5, 20], 1, 8] - torch.tensor([[0.05, 0.05, 0], [0.08, 0.08, 0.02]])).norm(dim=-1)
    assert float(tip.max()) < 0.01, tip
    make = nd.TrajectoryFromPoints().make
    for points, match in (
        ("30: 0, 0, 0", "points"),
        ("0: 1, 2", "points"),
        ("zero: 1 2 3", "points"),
        ("", "points"),
    ):
        with pytest.raises(InputError, match=match):
            make("right", "wrist", points, 1.0, 30.0)
    with pytest.raises(InputError, match="joint"):
        make("right", "elbow", "0: 0 0 0", 1.0, 30.0)
    with pytest.raises(InputError, match="trajectory"):
        nd.GenerateHandMotion().generate(model, "clap", 2.0, 30.0, 0, 2, 2.0, trajectory=traj)


# ----------------------------------------------------------------------------------------------------
# MANO (synthetic MANO-structured files: MANO's names and shapes around our open hand, not MANO's data)


def _write_mano(root: Path) -> None:
    from papernodes.models.handdiffuse import mano

    for side in ("right", "left"):
        np.savez(root / "mano" / f"MANO_{side.upper()}.npz", **mano.synthetic_mano_arrays(side))


def _load_mano(nd):
    return nd.LoadMano().load("MANO_RIGHT.npz", "MANO_LEFT.npz")[0]


def _right_moves(frames: int = 2) -> HandMotion:
    """A clap's first frames with only the RIGHT wrist moved 10 cm to -x in frame 1 (world poses kept)."""
    clip = make_clip(0, 0)
    wr, wp = clip.world_wrists()
    rot = torch.cat([wr[:frames, :, None], clip.rotations()[:frames, :, 1:]], 2)
    wp = wp[:frames].clone()
    wp[1, 0] += torch.tensor([-0.1, 0.0, 0.0])
    return HandMotion.from_world(rot, wp, 30.0)


def _hand_pixels(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks of the right (orange: red > blue) and left (blue > red) hand's pixels."""
    from papernodes.models.handdiffuse.render import BACKGROUND

    fg = (img - torch.tensor(BACKGROUND)).abs().sum(-1) > 0.05
    return fg & (img[..., 0] > img[..., 2]), fg & (img[..., 2] > img[..., 0])


def _centroid(mask: torch.Tensor) -> torch.Tensor:
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return torch.stack([xs.float().mean(), ys.float().mean()])


def test_load_mano_lists_npz_and_pkl_and_loads_both_hands(nodes):
    import pickle

    from papernodes.models.handdiffuse import mano

    nd, root = nodes
    spec = nd.LoadMano.INPUT_TYPES()["required"]
    assert spec["right_model"][0] == [nd.NO_MANO]  # empty folder: the placeholder, no crash
    _write_mano(root)
    (root / "mano" / "published").mkdir()
    # a published-style .pkl of plain arrays, read through mano.py's restricted unpickler
    pkl = pickle.dumps(dict(mano.synthetic_mano_arrays("left")), protocol=2)
    (root / "mano" / "published" / "MANO_LEFT.pkl").write_bytes(pkl)
    (root / "mano" / "notes.txt").write_text("not listed")
    spec = nd.LoadMano.INPUT_TYPES()["required"]
    choices = spec["right_model"][0]
    assert choices == ["MANO_LEFT.npz", "MANO_RIGHT.npz", "published/MANO_LEFT.pkl"]
    assert spec["right_model"][1]["default"] == "MANO_RIGHT.npz"
    assert spec["left_model"][1]["default"] in ("MANO_LEFT.npz", "published/MANO_LEFT.pkl")
    hands = _load_mano(nd)
    assert isinstance(hands, mano.ManoHands) and hands.left_shapedirs_fixed
    assert [tuple(f.shape) for f in hands.faces] == [(1538, 3), (1538, 3)]
    from_pkl = nd.LoadMano().load("MANO_RIGHT.npz", "published/MANO_LEFT.pkl")[0]
    assert torch.equal(from_pkl.left.v_template, hands.left.v_template)
    assert torch.equal(from_pkl.left.shapedirs, hands.left.shapedirs)


def test_render_hands_with_mano_draws_the_meshes_on_the_hands(nodes, monkeypatch):
    nd, root = nodes
    _write_mano(root)
    hands = _load_mano(nd)
    moved = _right_moves()
    render = nd.RenderHands().render
    images, fps = render(moved, 96, 64, 0.0, 0.0, 0.8, hands)
    skeleton = render(moved, 96, 64, 0.0, 0.0, 0.8)[0]
    assert images.shape == (2, 64, 96, 3) and fps == 30.0 and 0 <= images.min() and images.max() <= 1
    (r0, l0), (r1, l1) = _hand_pixels(images[0]), _hand_pixels(images[1])
    assert r0.sum() > 50 and l0.sum() > 50
    # the right hand's pixels follow its wrist (10 cm to -x is ~16 px to the left, see the skeleton test),
    # the left hand's stay where they were
    shift_r, shift_l = _centroid(r0) - _centroid(r1), _centroid(l0) - _centroid(l1)
    assert 10 < shift_r[0] < 25 and abs(shift_r[1]) < 2, shift_r
    assert shift_l.abs().max() < 1, shift_l
    # the meshes sit on the skeletons (same camera, MANO driven by the same joints) but are not them: at
    # 192 x 128 (fingers ~6 px wide, bone lines 2 px) a mesh covers its skeleton's pixels and more
    sr0, sl0 = _hand_pixels(skeleton[0])
    assert (_centroid(r0) - _centroid(sr0)).norm() < 4 and (_centroid(l0) - _centroid(sl0)).norm() < 4
    mesh_fg = torch.stack(_hand_pixels(render(moved, 192, 128, 0.0, 0.0, 0.8, hands)[0][0])).any(0)
    skel_fg = torch.stack(_hand_pixels(render(moved, 192, 128, 0.0, 0.0, 0.8)[0][0])).any(0)
    assert mesh_fg.sum() > 1.4 * skel_fg.sum()
    assert (skel_fg & ~mesh_fg).sum() < 0.05 * skel_fg.sum()
    # rendered in chunks (progress steps) with one camera for the clip: the same frames as in one go
    clip = _right_moves(5)
    whole = render(clip, 96, 64, 30.0, 20.0, 0.8, hands)[0]
    monkeypatch.setattr(nd, "MESH_PIXELS_PER_CHUNK", 96 * 64 * 2)
    chunked = render(clip, 96, 64, 30.0, 20.0, 0.8, hands)[0]
    assert chunked.shape == (5, 64, 96, 3) and torch.equal(chunked, whole)


def test_hands_to_mesh_with_mano_gives_both_mano_hands_per_frame(nodes):
    from papernodes.models.handdiffuse.mano import FINGERTIP_VERTICES, mano_forward
    from papernodes.models.handdiffuse.render import HAND_COLOURS

    nd, root = nodes
    _write_mano(root)
    hands = _load_mano(nd)
    clip = make_clip(0, 0)
    clip = HandMotion(clip.rot6d[:10], clip.trans[:10], clip.fps, clip.label)
    (mesh,) = nd.HandsToMesh().mesh(clip, 4, hands)
    assert tuple(mesh.vertices.shape) == (3, 2 * 778, 3)  # frames 0, 4, 8
    fr, fl = hands.faces
    assert tuple(mesh.faces.shape) == (3, 2 * 1538, 3)
    for b in range(3):
        assert torch.equal(mesh.faces[b], torch.cat([fr, fl + 778]))
    verts, joints = mano_forward(clip, hands)
    torch.testing.assert_close(mesh.vertices, verts[::4].reshape(3, -1, 3))
    # on the motion's hands: MANO's fingertip vertices are the motion's fingertips
    tips = mesh.vertices.reshape(3, 2, 778, 3)[:, :, list(FINGERTIP_VERTICES.values())]
    want = clip.global_joints()[::4][:, :, [4, 8, 12, 16, 20]]
    assert (tips - want).norm(dim=-1).max() < 1e-4
    colours = mesh.vertex_colors
    assert tuple(colours.shape) == (3, 2 * 778, 3)
    assert torch.allclose(colours[:, :778], torch.tensor(HAND_COLOURS[0]))
    assert torch.allclose(colours[:, 778:], torch.tensor(HAND_COLOURS[1]))
    # without MANO: the capsule mesh as before, in the same (one) colour table
    (capsules,) = nd.HandsToMesh().mesh(clip, 4)
    assert capsules.vertices.shape[1] != 2 * 778
    assert torch.allclose(capsules.vertex_colors[0, 0], torch.tensor(HAND_COLOURS[0]))


def test_bad_mano_files_and_names_are_refused_by_name(nodes):
    from papernodes.models.common.errors import WeightsNotFoundError
    from papernodes.models.handdiffuse.mano import NotAManoModelError

    nd, root = nodes
    load = nd.LoadMano().load
    with pytest.raises(WeightsNotFoundError, match="MANO_RIGHT.pkl") as err:  # nothing in models/mano
        load(nd.NO_MANO, nd.NO_MANO)
    assert "mano.is.tue.mpg.de" in str(err.value) and str(root / "mano") in str(err.value)
    _write_mano(root)
    np.savez(root / "mano" / "random.npz", a=np.zeros(3), b=np.ones((2, 2)))
    with pytest.raises(NotAManoModelError, match=r"random\.npz: not a MANO model \(missing v_template"):
        load("random.npz", "MANO_LEFT.npz")
    (root / "mano" / "junk.pkl").write_bytes(b"\x80\x02cos\nsystem\nq\x00.")  # names os.system
    with pytest.raises(NotAManoModelError, match=r"junk\.pkl: not a MANO model .*os\.system"):
        load("MANO_RIGHT.npz", "junk.pkl")
    with pytest.raises(WeightsNotFoundError, match="MANO_MISSING.npz"):
        load("MANO_MISSING.npz", "MANO_LEFT.npz")
    # names leaving the folder are refused before any file is touched, even when the file exists
    np.savez(root / "MANO_RIGHT.npz", a=np.zeros(1))
    for name in ("../MANO_RIGHT.npz", str(root / "MANO_RIGHT.npz"), "sub/../../MANO_RIGHT.npz"):
        with pytest.raises(InputError, match="'right_model'"):
            load(name, "MANO_LEFT.npz")
    with pytest.raises(InputError, match="'left_model'"):
        load("MANO_RIGHT.npz", "../mano/MANO_LEFT.npz")
    (root / "mano" / "notes.txt").write_text("x")
    with pytest.raises(InputError, match="'left_model'.*MANO model file"):
        load("MANO_RIGHT.npz", "notes.txt")
    with pytest.raises(InputError, match="'mano'"):
        nd.RenderHands().render(make_clip(0, 0), 64, 64, 0.0, 0.0, 1.0, "not hands")
    with pytest.raises(InputError, match="'mano'"):
        nd.HandsToMesh().mesh(make_clip(0, 0), 30, object())
