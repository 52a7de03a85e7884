"""TriHuman nodes (nodes/trihuman.py) without ComfyUI: a tiny untrained avatar (models/trihuman/demo.py) in a
fake models/trihuman folder. Renders have the requested size and cover the body: an untrained avatar is its
template, so its mask matches the rasterised posed template (IoU > 0.8); meshes have the same faces every
frame; BVH written and read back gives the same poses, a hand-written BVH with an extra joint is
retargeted by name; calibrated cameras reproduce the orbit's matrices; bad inputs are errors naming the
input."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
import torch
from papernodes.models.common.errors import InputError, WeightsNotFoundError
from papernodes.models.common.mesh_raster import rasterize
from papernodes.models.trihuman import motion_io
from papernodes.models.trihuman.avatar import save_avatar
from papernodes.models.trihuman.demo import tiny_avatar
from papernodes.models.trihuman.world import JOINTS, PARENTS, REST_JOINTS

AVATAR = "tiny.safetensors"
SHARP = 0.6  # NeuS variance parameter v (s = exp(10 v))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("comfy")
    for kind in ("trihuman", "input", "output"):
        (root / kind).mkdir()
    fake = types.ModuleType("folder_paths")
    fake.get_folder_paths = lambda kind: [str(root / kind)] if kind == "trihuman" else []
    fake.get_filename_list = lambda kind: sorted(
        p.relative_to(root / kind).as_posix() for p in (root / kind).rglob("*") if p.is_file()
    )
    fake.get_input_directory = lambda: str(root / "input")
    fake.get_output_directory = lambda: str(root / "output")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "folder_paths", fake)
        tiny = tiny_avatar()
        with torch.no_grad():  # NeuS's initial s = 20/m leaves 5 cm limbs below 0.5 opacity; a trained
            tiny.field.variance.variance.fill_(SHARP)  # avatar's surface is sharp: s = exp(6) ~ 400/m
        save_avatar(tiny, root / "trihuman" / AVATAR)
        from papernodes.nodes import trihuman

        avatar = trihuman.LoadAvatar().load(AVATAR)[0]
        yield trihuman, root, avatar


def _world(nd, frames=2, motion="dance"):
    return nd.LoadMotion().load("world", motion, 0, frames, nd.NO_FILE, "cm", 25.0)[0]


def _orbit(nd, step=15.0):
    return nd.OrbitCamera().make(0.0, step, 3.0, 10.0, 40.0, 0.88)[0]


def test_every_input_has_a_tooltip(env):
    nd, _, _ = env
    for key, cls in nd.NODE_CLASS_MAPPINGS.items():
        assert cls.CATEGORY == "PaperNodes/TriHuman" and key in nd.NODE_DISPLAY_NAME_MAPPINGS
        for group in cls.INPUT_TYPES().values():
            for name, (_, opts) in group.items():
                assert opts.get("tooltip"), f"{cls.__name__}.{name}"
    assert AVATAR in nd.LoadAvatar.INPUT_TYPES()["required"]["avatar_name"][0]


def test_world_motion_keeps_two_history_frames(env):
    nd, _, avatar = env
    m = _world(nd, frames=5)
    assert m.history == 2 and m.frames == 5 and m.poses.shape == (7, 17, 3) and m.fps == 25.0
    assert m.joint_names == avatar.joint_names


def test_render_size_and_mask_on_the_template(env):
    nd, _, avatar = env
    motion, camera = _world(nd, frames=2), _orbit(nd)
    images, mask, depth = nd.RenderAvatar().render(avatar, motion, camera, 64, 48, 8, "#000000")
    assert images.shape == (2, 48, 64, 3) and mask.shape == (2, 48, 64) and depth.shape == (2, 48, 64, 3)
    assert images.dtype == torch.float32 and 0 <= images.min() and images.max() <= 1
    assert ((depth[..., 0] > 0) == (mask > 0.5)).float().mean() > 0.99  # depth where the body is
    # untrained: the avatar is its (skinned) template; its mask is the rasterised posed template's
    with torch.no_grad():
        posed = avatar.frames(motion.poses.float(), motion.translations.float())[0]
    K, E = camera.for_frames(2, 64, 48)
    for i in range(2):
        ref = rasterize(
            posed[motion.history + i], avatar.faces, K[i : i + 1].float(), E[i : i + 1].float(), 48, 64
        )
        ours = mask[i] > 0.5
        iou = (ours & ref.mask[0]).sum() / (ours | ref.mask[0]).sum()
        assert iou > 0.8, (i, float(iou))
    # a background colour fills what the body does not cover
    white, _, _ = nd.RenderAvatar().render(avatar, _world(nd, frames=1), _orbit(nd), 32, 32, 4, "1, 1, 1")
    assert white[0, 0, 0].tolist() == [1.0, 1.0, 1.0]


def test_mesh_has_the_same_faces_every_frame_and_a_glb(env):
    nd, root, avatar = env
    motion = _world(nd, frames=2, motion="walk")
    mesh, glb = nd.AvatarMesh().mesh(avatar, motion, 0, True, "trihuman_test")
    v, f = mesh.vertices, mesh.faces
    assert v.shape[0] == f.shape[0] == 2 and v.shape[2] == 3 and f.shape[2] == 3
    assert torch.equal(f[0], f[1]) and not torch.allclose(v[0], v[1])
    assert torch.isfinite(v).all() and int(f.max()) < v.shape[1]
    path = root / "output" / glb
    assert glb.startswith("mesh/trihuman_test_") and path.is_file()
    import trimesh

    loaded = trimesh.load(path, force="mesh", process=False)
    assert len(loaded.vertices) == v.shape[1] and len(loaded.faces) == f.shape[1]
    # untrained: the mesh is the posed template subdivided (its vertices lie on the template's surface)
    with torch.no_grad():
        posed = avatar.frames(motion.poses.float(), motion.translations.float())[0][motion.history]
    near = torch.cdist(v[0][::50].double(), posed.double()).min(1).values
    assert near.max() < 0.03
    one, _ = nd.AvatarMesh().mesh(avatar, motion, 1, False, "trihuman_test")
    assert one.vertices.shape[0] == 1 and torch.allclose(one.vertices[0], v[1], atol=1e-5)


def test_bvh_round_trip_through_load_motion(env):
    nd, root, _ = env
    world = _world(nd, frames=6, motion="turn")
    motion_io.write_bvh(world, root / "input" / "turn.bvh", REST_JOINTS, PARENTS)
    assert "turn.bvh" in nd.LoadMotion.INPUT_TYPES()["required"]["file"][0]
    back = nd.LoadMotion().load("file", "dance", 0, 0, "turn.bvh", "cm", 0.0)[0]
    assert back.history == 0 and back.fps == pytest.approx(25.0) and back.joint_names == JOINTS
    assert (back.poses - world.poses).abs().max() < 1e-5
    assert (back.translations - world.translations).abs().max() < 1e-5
    first4 = nd.LoadMotion().load("file", "dance", 0, 4, "turn.bvh", "cm", 0.0)[0]
    assert first4.poses.shape[0] == 4
    metres = nd.LoadMotion().load("file", "dance", 0, 0, "turn.bvh", "m", 0.0)[0]
    assert (metres.translations - 100 * world.translations).abs().max() < 1e-3  # units scale positions


HAND_BVH = """HIERARCHY
ROOT Pelvis
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Yrotation Xrotation Zrotation
  JOINT mid
  {
    OFFSET 0 10 0
    CHANNELS 3 Xrotation Yrotation Zrotation
    JOINT spine
    {
      OFFSET 0 10 0
      CHANNELS 3 Zrotation Xrotation Yrotation
      End Site
      {
        OFFSET 0 5 0
      }
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.04
1 20 3  10 0 0  30 0 0  0 0 45
-1 20 -3  0 20 0  0 0 0  90 10 0
"""


def test_hand_written_bvh_retargets_by_name_composing_skipped_joints():
    clip = motion_io.parse_bvh(HAND_BVH, "hand.bvh")
    assert clip.names == ("Pelvis", "mid", "spine") and clip.parents == (-1, 0, 1)
    m = motion_io.bvh_to_motion(clip, ("pelvis", "spine"), (-1, 0), "cm")
    euler = motion_io.euler_to_matrix
    t64 = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    root0 = euler(t64(10.0, 0, 0), "YXZ")
    spine0 = euler(t64(30.0, 0, 0), "XYZ") @ euler(t64(0, 0, 45.0), "ZXY")
    spine1 = euler(t64(0, 0, 0), "XYZ") @ euler(t64(90.0, 10.0, 0), "ZXY")
    axis = motion_io.axis_angle_matrix
    assert torch.allclose(axis(m.poses[0, 0]), root0, atol=1e-9)
    assert torch.allclose(axis(m.poses[0, 1]), spine0, atol=1e-9)
    assert torch.allclose(axis(m.poses[1, 1]), spine1, atol=1e-9)
    # root OFFSET 0 0 0: the root stands 0 cm above its lowest joint, so translations are the positions
    assert torch.allclose(m.translations, t64([0.01, 0.2, 0.03], [-0.01, 0.2, -0.03]))
    with pytest.raises(InputError, match="lacks \\['head'\\]") as info:
        motion_io.bvh_to_motion(clip, ("pelvis", "spine", "head"), (-1, 0, 1))
    assert "Input 'file'" in str(info.value)
    with pytest.raises(InputError, match="hangs under"):
        motion_io.bvh_to_motion(clip, ("pelvis", "mid", "spine"), (-1, 0, 0))
    for bad, where in ((HAND_BVH.replace("Frames: 2", "Frames: 3"), "3 frames"),
                       (HAND_BVH.replace("OFFSET 0 10 0", "OFFSET 0 ten 0", 1), "line 8"),
                       ("MOTION", "HIERARCHY")):  # fmt: skip
        with pytest.raises(InputError, match=where):
            motion_io.parse_bvh(bad, "bad.bvh")


def test_resample_keeps_duration_and_poses():
    m = motion_io.world_motion("walk", 3, 10)
    up = motion_io.resample(m, 50.0)
    assert up.poses.shape[0] == 2 * (m.poses.shape[0] - 1) + 1 and up.history == 4
    assert (up.poses[::2] - m.poses).abs().max() < 1e-9  # the original frames are kept
    back = motion_io.resample(up, 25.0)
    assert (back.poses - m.poses).abs().max() < 1e-9 and back.history == 2


def test_calibrated_camera_reproduces_the_orbit(env):
    nd, _, _ = env
    K, E = _orbit(nd, step=0.0).for_frames(3, 96, 64)
    text = json.dumps({"K": K[0].tolist(), "world_to_camera": E[0].tolist(), "width": 96, "height": 64})
    cam = nd.OrbitCamera().make(0.0, 15.0, 3.0, 10.0, 40.0, 0.88, text)[0]
    K2, E2 = cam.for_frames(3, 48, 32)  # half the calibration size: focal lengths and centre halve
    assert torch.allclose(E2, E) and torch.allclose(K2[:, :2], K[:, :2] / 2) and K2.shape == (3, 3, 3)
    per_frame = json.dumps({"K": K[0].tolist(), "world_to_camera": E[:2].tolist()})
    with pytest.raises(InputError, match="Input 'camera'"):
        nd.OrbitCamera().make(0, 0, 3, 10, 40, 0.88, per_frame)[0].for_frames(3, 32, 32)
    for bad in ("{", '{"K": [[1, 0], [0, 1]], "world_to_camera": []}', json.dumps({"K": K[0].tolist(),
                "world_to_camera": (2 * E[0]).tolist()})):  # fmt: skip
        with pytest.raises(InputError, match="calibration_json"):
            nd.OrbitCamera().make(0, 0, 3, 10, 40, 0.88, bad)


def test_npz_motion_and_its_joints(env):
    nd, root, avatar = env
    world = _world(nd, frames=3)
    motion_io.save_npz(world, root / "input" / "world.npz")
    loaded = nd.LoadMotion().load("file", "dance", 0, 0, "world.npz", "cm", 25.0)[0]
    assert loaded.history == 2 and torch.equal(loaded.poses, world.poses)
    # joints named in another order are put in the avatar's order
    order = list(reversed(range(17)))
    shuffled = motion_io.TriHumanMotion(world.poses[:, order], world.translations, 25.0,
                                        tuple(JOINTS[i] for i in order), 2)  # fmt: skip
    assert torch.equal(motion_io.conform(shuffled, avatar.joint_names).poses, world.poses)
    np.savez(root / "input" / "five.npz", poses=np.zeros((4, 5, 3)), translations=np.zeros((4, 3)), fps=25.0)
    five = nd.LoadMotion().load("file", "dance", 0, 0, "five.npz", "cm", 25.0)[0]
    with pytest.raises(InputError, match="Input 'motion'.*17-joint.*poses \\[T, 5, 3\\]"):
        nd.RenderAvatar().render(avatar, five, _orbit(nd), 32, 32, 4, "#000000")
    with pytest.raises(InputError, match="Input 'motion'"):
        nd.AvatarMesh().mesh(avatar, five, 0, False, "x")
    np.savez(root / "input" / "nofps.npz", poses=np.zeros((4, 17, 3)), translations=np.zeros((4, 3)))
    with pytest.raises(InputError, match="'fps'"):
        nd.LoadMotion().load("file", "dance", 0, 0, "nofps.npz", "cm", 25.0)


def test_bad_inputs_are_errors_naming_the_input(env):
    nd, _, avatar = env
    motion, camera = _world(nd, frames=1), _orbit(nd)
    render = nd.RenderAvatar().render
    cases = [
        (lambda: render(avatar, motion, camera, 0, 64, 8, "#000000"), "width"),
        (lambda: render(avatar, motion, camera, 64, 0, 8, "#000000"), "height"),
        (lambda: render(avatar, motion, camera, 64, 64, 0, "#000000"), "samples"),
        (lambda: render(avatar, motion, camera, 64, 64, 1, "#000000"), "samples"),
        (lambda: render(avatar, motion, camera, 64, 64, 8, "blue"), "background"),
        (lambda: render("not an avatar", motion, camera, 64, 64, 8, "#000000"), "avatar"),
        (lambda: render(avatar, motion, "cam", 64, 64, 8, "#000000"), "camera"),
        (lambda: nd.LoadMotion().load("world", "dance", 0, 0, nd.NO_FILE, "cm", 25.0), "frames"),
        (lambda: nd.LoadMotion().load("world", "jump", 0, 4, nd.NO_FILE, "cm", 25.0), "motion"),
        (lambda: nd.LoadMotion().load("file", "dance", 0, 4, nd.NO_FILE, "cm", 25.0), "file"),
        (lambda: nd.LoadMotion().load("file", "dance", 0, 4, "../escape.npz", "cm", 25.0), "file"),
        (lambda: nd.AvatarMesh().mesh(avatar, motion, 5, False, "x"), "frame"),
        (lambda: nd.AvatarMesh().mesh(avatar, motion, 0, False, "../x"), "filename_prefix"),
        (lambda: nd.LoadAvatar().load("../escape.safetensors"), "avatar_name"),
        (lambda: nd.LoadAvatar().load(nd.NO_AVATARS), "avatar_name"),
        (lambda: nd.OrbitCamera().make(0.0, 15.0, 0.0, 10.0, 40.0, 0.88), "radius"),
        (lambda: nd.TrainAvatar().train("avatar", nd.NO_FILE, 1, 3, 32, 1, 0, "x", False), "init_avatar"),
        (lambda: nd.TrainAvatar().train("template", nd.NO_FILE, 1, 3, 32, 1, 0, "a b", False), "output_name"),
    ]
    for fn, name in cases:
        with pytest.raises(InputError) as info:
            fn()
        assert f"Input '{name}'" in str(info.value), (name, str(info.value))
    with pytest.raises(WeightsNotFoundError) as info:  # the pack's missing-weights error (DESIGN.md)
        nd.LoadAvatar().load("missing.safetensors")
    text = str(info.value)
    for needle in (
        "missing.safetensors",
        "trihuman",
        "Load Official Subject",
        "python -m models.trihuman.train",
    ):
        assert needle in text, (needle, text)


class Cancelled(Exception):
    """Stands in for ComfyUI's interrupt exception."""


def test_train_both_stages_then_cancel_saves(env, monkeypatch):
    nd, root, _ = env
    tiny = dict(world_sequences=1, world_frames=3, size=32, steps=2, seed=0, resume=False)
    out = nd.TrainAvatar().train("template", nd.NO_FILE, output_name="stage1", **tiny)
    name, preview = out["result"]
    assert name == "stage1.safetensors" and (root / "trihuman" / name).is_file()
    assert preview.ndim == 4 and preview.shape[-1] == 3 and 0 <= preview.min() and preview.max() <= 1
    assert name in nd.TrainAvatar.INPUT_TYPES()["required"]["init_avatar"][0]
    name2, _ = nd.TrainAvatar().train("avatar", name, output_name="stage2", **tiny)["result"]
    trained = nd.LoadAvatar().load(name2)[0]
    assert trained.joint_names == JOINTS
    with pytest.raises(InputError, match="output_name"):  # the run exists and resume is off
        nd.TrainAvatar().train("template", nd.NO_FILE, output_name="stage1", **tiny)
    with pytest.raises(InputError, match="output_name"):  # would overwrite its own init
        nd.TrainAvatar().train("avatar", name, output_name="stage1", **{**tiny, "resume": True})

    def cancel():
        raise Cancelled

    # Cancel: the trainer stops at the first poll, the avatar file is still written, then the interrupt
    monkeypatch.setattr(nd, "interrupt_requested", lambda: True)
    monkeypatch.setattr(nd, "raise_if_interrupted", cancel)
    with pytest.raises(Cancelled):
        nd.TrainAvatar().train("template", nd.NO_FILE, output_name="stopped", **{**tiny, "steps": 50})
    assert (root / "trihuman" / "stopped.safetensors").is_file()
    with pytest.raises(Cancelled):  # the renderer polls between ray chunks
        nd.RenderAvatar().render(trained, _world(nd, frames=1), _orbit(nd), 32, 32, 4, "#000000")
