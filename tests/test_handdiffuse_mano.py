"""MANO for HandDiffuse (models/handdiffuse/mano.py): the restricted unpickler, conversion to .npz, loading
through smplx (equal to calling smplx.MANO directly), the left-hand shapedirs fix, the joint map, driving
MANO from our rotations, the mesh rasteriser and the GLB export.

No MANO data is shipped or needed: `synthetic_mano_arrays` builds a MANO-STRUCTURED model (MANO's array
names and shapes) around our open hand, in axes that differ from ours, so every frame change is exercised.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import pickle
import sys
import types

import numpy as np
import pytest
import smplx
import torch
from papernodes.models.common.camera import project
from papernodes.models.handdiffuse import export, mano, render
from papernodes.models.handdiffuse.hand import (
    FINGER_BASES,
    SIDES,
    TIPS,
    forward_kinematics,
    rotations_from_angles,
    sample_angles,
)
from papernodes.models.handdiffuse.motion import HandMotion
from papernodes.models.handdiffuse.rotations import axis_angle_to_matrix, random_rotation

ATOL_M = 1e-5  # metres; smplx casts the model arrays to float32 on load (to_np), whatever the dtype


@pytest.fixture(scope="module")
def mano_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("mano")
    for side in SIDES:
        np.savez(d / f"MANO_{side.upper()}.npz", **mano.synthetic_mano_arrays(side))
    return d


@pytest.fixture(scope="module")
def hands(mano_dir):
    return mano.load_mano_hands(mano_dir / "MANO_RIGHT.npz", mano_dir / "MANO_LEFT.npz", dtype=torch.float64)


def _random_pose(frames: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ang = sample_angles((frames, 2), g)
    fingers = torch.stack([rotations_from_angles(ang[:, h], s) for h, s in enumerate(SIDES)], 1)
    rot = torch.cat([random_rotation((frames, 2), g)[:, :, None], fingers], 2)
    wrist = torch.randn(frames, 2, 3, generator=g, dtype=torch.float64) * 0.1
    return rot, wrist


def _fk(rot, wrist):
    return torch.stack([forward_kinematics(rot[:, h], wrist[:, h], s) for h, s in enumerate(SIDES)], 1)


# ------------------------------------------------------------------------------------------- maps


def test_joint_maps_and_fingertip_ids():
    assert sorted(mano.OPENPOSE_FROM_MANO) == list(range(21))
    # MANO's order is wrist, index, middle, little, ring, thumb (3 joints each)
    names = [mano.MANO_JOINT_NAMES[mano.OPENPOSE_FROM_MANO[j]] for j in (0, 1, 5, 9, 13, 17)]
    assert names == ["wrist", "thumb1", "index1", "middle1", "ring1", "little1"]
    assert [mano.OPENPOSE_FROM_MANO[t] for t in TIPS] == [16, 17, 18, 19, 20]
    from smplx.vertex_ids import vertex_ids

    assert list(mano.FINGERTIP_VERTICES.values()) == [vertex_ids["mano"][k] for k in
                                                      ("thumb", "index", "middle", "ring", "pinky")]  # fmt: skip


@pytest.mark.parametrize("angle", [0.0, 1e-6, 0.3, 2.0, math.pi - 1e-7, math.pi])
def test_matrix_to_axis_angle_round_trip(angle):
    g = torch.Generator().manual_seed(1)
    axis = torch.nn.functional.normalize(torch.randn(64, 3, generator=g, dtype=torch.float64), dim=-1)
    rot = axis_angle_to_matrix(axis, torch.full((64,), angle, dtype=torch.float64))
    aa = mano.matrix_to_axis_angle(rot)
    back = axis_angle_to_matrix(aa, aa.norm(dim=-1))
    assert torch.allclose(back, rot, atol=1e-9)
    assert torch.allclose(aa.norm(dim=-1), torch.full((64,), angle, dtype=torch.float64), atol=1e-6)


# ------------------------------------------------------------------------------ restricted unpickler


class _System:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Eval:
    def __reduce__(self):
        import builtins

        return (builtins.eval, (f"open({str(self.marker)!r}, 'w').write('x')",))


@pytest.mark.parametrize("payload", [_System, _Eval])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, payload):
    marker = tmp_path / "ran"
    obj = payload()
    obj.marker = marker
    src = tmp_path / "MANO_RIGHT.pkl"
    src.write_bytes(pickle.dumps({"v_template": obj}, protocol=2))
    with pytest.raises(mano.NotAManoModelError, match="not a MANO model") as err:
        mano.convert_mano_pkl(src, tmp_path / "out.npz")
    assert str(src) in str(err.value)
    assert not marker.exists()
    assert not (tmp_path / "out.npz").exists()


def test_garbage_and_incomplete_files_are_named_errors(tmp_path):
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"not a pickle at all")
    with pytest.raises(mano.NotAManoModelError, match="junk.pkl"):
        mano.read_mano_arrays(junk)
    partial = tmp_path / "partial.npz"
    arrays = mano.synthetic_mano_arrays()
    arrays.pop("J_regressor")
    np.savez(partial, **arrays)
    with pytest.raises(mano.NotAManoModelError, match="J_regressor"):
        mano.read_mano_arrays(partial)
    bad = dict(mano.synthetic_mano_arrays(), weights=np.zeros((778, 15)))
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(mano.NotAManoModelError, match="weights"):
        mano.read_mano_arrays(tmp_path / "bad.npz")
    with pytest.raises(mano.InputError):
        mano.read_mano_arrays(tmp_path / "missing.pkl")


def _fake_modules(monkeypatch):
    """Throwaway modules named like chumpy / scipy.sparse so that pickling writes their module paths."""
    mods = {name: types.ModuleType(name) for name in
            ("chumpy", "chumpy.ch", "chumpy.reordering", "scipy", "scipy.sparse", "scipy.sparse.csc")}  # fmt: skip
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)

    class Ch:  # chumpy's Ch pickles its __dict__ minus weak references; the value is 'x'
        def __init__(self, x):
            self.x, self._dirty_vars, self._itr = x, {"x"}, None
            self._depends_on_deps, self._make_dense, self._make_sparse = {}, False, False

        def __getstate__(self):
            return dict(self.__dict__)

    class Select:  # chumpy.reordering.Select: a.r.ravel()[idxs].reshape(preferred_shape)
        def __init__(self, a, idxs, preferred_shape):
            self.a, self.idxs, self.preferred_shape = a, idxs, preferred_shape
            self._dirty_vars = set()

        def __getstate__(self):
            return dict(self.__dict__)

    class csc_matrix:  # noqa: N801  old scipy: state holds data / indices / indptr / _shape
        def __init__(self, dense):
            cols = [np.nonzero(dense[:, j])[0] for j in range(dense.shape[1])]
            self.indices = np.concatenate(cols).astype(np.int32)
            self.data = np.concatenate([dense[c, j] for j, c in enumerate(cols)])
            self.indptr = np.concatenate([[0], np.cumsum([len(c) for c in cols])]).astype(np.int32)
            self._shape, self.maxprint = dense.shape, 50

        def __getstate__(self):
            return dict(self.__dict__)

    for cls, mod in ((Ch, "chumpy.ch"), (Select, "chumpy.reordering"), (csc_matrix, "scipy.sparse.csc")):
        cls.__module__, cls.__qualname__ = mod, cls.__name__
        setattr(mods[mod], cls.__name__, cls)
    return Ch, Select, csc_matrix


@pytest.mark.parametrize("protocol", [0, 2])
def test_published_style_pkl_converts_to_the_same_arrays(tmp_path, monkeypatch, protocol):
    arrays = mano.synthetic_mano_arrays("left", seed=3)
    with monkeypatch.context() as mp:
        Ch, Select, csc_matrix = _fake_modules(mp)
        data = dict(arrays)
        data["shapedirs"] = Ch(arrays["shapedirs"])
        data["J_regressor"] = csc_matrix(arrays["J_regressor"])
        data["hands_mean"] = Select(Ch(arrays["hands_mean"] * 1.0), np.arange(45), (45,))
        data["J"] = Ch(arrays["J_regressor"] @ arrays["v_template"])
        data["bs_style"] = "lbs"
        blob = pickle.dumps(data, protocol=protocol)
    assert b"chumpy.ch" in blob and b"scipy.sparse.csc" in blob
    # the published files were written by numpy 1 (numpy.core); ours by numpy 2 (numpy._core)
    blob = blob.replace(b"numpy._core", b"numpy.core")
    src = tmp_path / "MANO_LEFT.pkl"
    src.write_bytes(blob)
    dst = mano.convert_mano_pkl(src, tmp_path / "MANO_LEFT.npz")
    with np.load(dst, allow_pickle=False) as npz:
        for key, value in arrays.items():
            assert np.array_equal(npz[key], value), key
        assert np.allclose(npz["J"], arrays["J_regressor"] @ arrays["v_template"])
        assert str(npz["bs_style"]) == "lbs"
    # an existing .npz is accepted too
    again = mano.convert_mano_pkl(dst, tmp_path / "copy.npz")
    with np.load(again, allow_pickle=False) as npz:
        assert np.array_equal(npz["posedirs"], arrays["posedirs"])


def test_command_line_converts_and_reports_bad_files(tmp_path, capsys):
    src = tmp_path / "MANO_RIGHT.npz"
    np.savez(src, **mano.synthetic_mano_arrays())
    assert mano.main([str(src), str(tmp_path / "out" / "right.npz")]) == 0
    assert capsys.readouterr().out.strip().endswith("right.npz")
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(os.system, protocol=2))
    assert mano.main([str(evil)]) == 2
    assert "not a MANO model" in capsys.readouterr().err
    assert not (tmp_path / "evil.npz").exists()


# ------------------------------------------------------------------------------------------- loading


def _direct(path, **kw):
    with io.StringIO() as buf, contextlib.redirect_stdout(buf):
        return smplx.MANO(model_path=str(path), ext="npz", use_pca=False, flat_hand_mean=True,
                          dtype=torch.float64, **kw)  # fmt: skip


def test_loader_equals_smplx_mano_called_directly(mano_dir, hands):
    g = torch.Generator().manual_seed(5)
    betas = torch.randn(3, 10, generator=g, dtype=torch.float64)
    orient = torch.randn(3, 3, generator=g, dtype=torch.float64)
    pose = torch.randn(3, 45, generator=g, dtype=torch.float64) * 0.5
    transl = torch.randn(3, 3, generator=g, dtype=torch.float64)
    for side in SIDES:
        direct = _direct(mano_dir / f"MANO_{side.upper()}.npz")
        assert direct.is_rhand == (side == "right")
        if side == "left":  # the same fix, applied to smplx's own model
            direct.shapedirs[:, 0, :] *= -1
        ours = hands.model(side)
        a = ours(betas=betas, global_orient=orient, hand_pose=pose, transl=transl)
        b = direct(betas=betas, global_orient=orient, hand_pose=pose, transl=transl)
        assert torch.allclose(a.vertices, b.vertices, atol=1e-12, rtol=0)
        assert torch.allclose(a.joints, b.joints, atol=1e-12, rtol=0)
        assert torch.equal(ours.faces_tensor, direct.faces_tensor)
    # and our whole path (pose conversion + forward) equals smplx on the parameters we computed
    rot, wrist = _random_pose(4, seed=2)
    params = mano.mano_pose_parameters(rot, hands, wrist, betas=betas[:1])
    verts, joints = mano.mano_forward(rot, hands, wrist, betas=betas[:1])
    for h, side in enumerate(SIDES):
        direct = _direct(mano_dir / f"MANO_{side.upper()}.npz")
        if side == "left":
            direct.shapedirs[:, 0, :] *= -1
        out = direct(**params[side])
        assert torch.allclose(verts[:, h].double(), out.vertices, atol=1e-6)
        assert torch.allclose(
            joints[:, h, [0, 5, 9, 13, 17]].double(), out.joints[:, [0, 1, 4, 10, 7]], atol=1e-6
        )


def test_left_hand_shapedirs_fix(mano_dir, hands):
    assert hands.left_shapedirs_fixed
    r, lm = hands.right, hands.left
    assert torch.equal(lm.shapedirs[:, 0], -r.shapedirs[:, 0])
    assert torch.equal(lm.shapedirs[:, 1:], r.shapedirs[:, 1:])
    assert not mano.fix_left_shapedirs(lm, r)  # idempotent: a fixed (or corrected) file is left alone
    # with the fix, one betas gives mirror-image hands (the left template is the right one mirrored in x)
    betas = torch.randn(1, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    vr, vl = r(betas=betas).vertices, lm(betas=betas).vertices
    assert torch.allclose(vl, vr * torch.tensor([-1.0, 1.0, 1.0], dtype=vr.dtype), atol=1e-9)
    unfixed = mano.load_mano(mano_dir / "MANO_LEFT.npz", "left", dtype=torch.float64)
    assert not torch.allclose(unfixed(betas=betas).vertices, vl, atol=1e-4)


def test_loader_needs_only_the_npz(mano_dir, tmp_path):
    model = mano.load_mano(mano_dir / "MANO_RIGHT.npz", "right")
    assert model.v_template.shape == (778, 3) and model.faces_tensor.shape == (1538, 3)
    assert model.use_pca is False and model.flat_hand_mean is True
    assert not list(mano_dir.glob("*.pkl"))


# ------------------------------------------------------------------------------ driving MANO from ours


def test_rest_pose_fingers_point_where_ours_do(hands):
    frames = 3
    g = torch.Generator().manual_seed(4)
    rot = torch.eye(3, dtype=torch.float64).expand(frames, 2, 16, 3, 3).clone()
    rot[:, :, 0] = random_rotation((frames, 2), g)
    wrist = torch.randn(frames, 2, 3, generator=g, dtype=torch.float64) * 0.1
    _, joints = mano.mano_forward(rot, hands, wrist)
    ours = _fk(rot, wrist)
    for base, tip in zip(FINGER_BASES, TIPS, strict=True):
        a = torch.nn.functional.normalize(
            joints[..., tip, :].double() - joints[..., base, :].double(), dim=-1
        )
        b = torch.nn.functional.normalize(ours[..., tip, :] - ours[..., base, :], dim=-1)
        assert (a * b).sum(-1).min() > 0.999
    assert torch.allclose(joints[:, :, 0].double(), wrist, atol=ATOL_M)  # MANO's wrist at ours


def test_posed_mano_joints_equal_our_forward_kinematics(hands):
    """The synthetic model is built on our open hand, so after the frame change MANO's joints must land
    exactly on our FK joints for any pose of both hands (tips: the fingertip vertices)."""
    rot, wrist = _random_pose(6, seed=7)
    _, joints = mano.mano_forward(rot, hands, wrist)
    assert (joints.double() - _fk(rot, wrist)).abs().max() < ATOL_M
    motion = HandMotion.from_world(rot, wrist, fps=30.0)
    verts2, joints2 = mano.mano_forward(motion, hands)
    assert (joints2.double() - motion.global_joints()).abs().max() < ATOL_M
    assert verts2.shape == (6, 2, 778, 3)


def test_wrist_rotation_rotates_the_mesh_rigidly(hands):
    rot, wrist = _random_pose(1, seed=9)
    extra = random_rotation((1,), torch.Generator().manual_seed(3))[0]
    turned = rot.clone()
    turned[:, :, 0] = extra @ rot[:, :, 0]
    v0 = mano.mano_vertices(rot, hands, wrist).double()
    v1 = mano.mano_vertices(turned, hands, wrist).double()
    expect = (v0 - wrist[:, :, None]) @ extra.T + wrist[:, :, None]
    assert (v1 - expect).abs().max() < ATOL_M


@pytest.mark.parametrize("side", SIDES)
def test_finger_flexion_moves_only_that_finger(hands, side):
    h = SIDES.index(side)
    rot = torch.eye(3, dtype=torch.float64).expand(1, 2, 16, 3, 3).clone()
    wrist = torch.zeros(1, 2, 3, dtype=torch.float64)
    wrist[0, 1, 0] = 0.3
    angles = torch.zeros(15, 2, dtype=torch.float64)
    angles[3:6, 0] = torch.tensor([1.2, 1.0, 0.6])  # index MCP / PIP / DIP flexion
    bent = rot.clone()
    bent[0, h, 1:] = rotations_from_angles(angles, side)
    moved = (mano.mano_vertices(bent, hands, wrist) - mano.mano_vertices(rot, hands, wrist)).norm(dim=-1)[0]
    model = hands.model(side)
    index_joints = [1, 2, 3]  # MANO index1..3
    pose_cols = torch.zeros(135, dtype=torch.bool)
    for m in index_joints:
        pose_cols[(m - 1) * 9 : m * 9] = True
    posedirs = model.posedirs.reshape(135, 778, 3)
    may_move = (model.lbs_weights[:, index_joints].sum(1) > 0) | (posedirs[pose_cols].abs().sum((0, 2)) > 0)
    assert moved[1 - h].max() == 0  # the other hand is untouched
    assert moved[h][~may_move].max() < 1e-9
    assert moved[h][mano.FINGERTIP_VERTICES["index"]] > 0.5 * moved[h].max() > 0.03
    assert moved[h][mano.FINGERTIP_VERTICES["thumb"]] == 0


# ------------------------------------------------------------------------------------ mesh rendering


def _sphere(centre, radius=0.05, subdivisions=3):
    import trimesh

    s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return torch.tensor(s.vertices) + torch.tensor(centre, dtype=torch.float64), torch.tensor(s.faces)


def _inside_hull(points2d: np.ndarray, width: int, height: int) -> np.ndarray:
    from scipy.spatial import ConvexHull

    hull = points2d[ConvexHull(points2d).vertices]  # counter-clockwise
    v, u = np.mgrid[0:height, 0:width] + 0.5
    inside = np.ones((height, width), bool)
    for p, q in zip(hull, np.roll(hull, -1, 0), strict=True):
        inside &= (q[0] - p[0]) * (v - p[1]) - (q[1] - p[1]) * (u - p[0]) >= 0
    return inside


def test_convex_mesh_silhouette_is_the_hull_of_its_projected_vertices():
    verts, faces = _sphere((0.02, 0.01, -0.03))
    v = verts[None, None]  # one frame, one mesh
    w, h = 96, 80
    img = render.render_meshes(v, faces, w, h, yaw=30, pitch=20, distance=0.4)
    sil = (img[0] != torch.tensor(render.BACKGROUND)).any(-1).numpy()
    K, E = render.clip_camera(v, w, h, 30, 20, 0.4)
    uv, _ = project(verts, K, E)
    hull = _inside_hull(uv.numpy(), w, h)
    iou = (sil & hull).sum() / (sil | hull).sum()
    assert iou > 0.97, iou
    assert (sil & ~hull).sum() == 0  # nothing outside the hull: pixel centres inside triangles only
    # Lambert headlight: the centre faces the camera, the rim is grazing
    centre = img[0, int(uv[:, 1].mean()), int(uv[:, 0].mean())]
    assert centre.max() > 0.9 * render.HAND_COLOURS[0][0]


@pytest.mark.parametrize("right_in_front", [True, False])
def test_nearer_hand_occludes_the_farther_one(right_in_front):
    near, far = (0.0, 0.0, 0.06), (0.02, 0.0, -0.06)  # camera at yaw 0 looks from +z
    a, faces = _sphere(near if right_in_front else far)
    b, _ = _sphere(far if right_in_front else near)
    v = torch.stack([a, b])[None]
    img = render.render_meshes(v, faces, 64, 64, yaw=0, pitch=0, distance=0.5, target=torch.zeros(3))
    K, E = render.clip_camera(v, 64, 64, 0, 0, 0.5, target=torch.zeros(3))
    both = _inside_hull(project(a, K, E)[0].numpy(), 64, 64) & _inside_hull(
        project(b, K, E)[0].numpy(), 64, 64
    )
    assert both.sum() > 100
    px = img[0][torch.from_numpy(both)]
    right = px[:, 0] > px[:, 2]  # orange: red > blue; the left hand is blue
    assert right.float().mean() > 0.98 if right_in_front else right.float().mean() < 0.02


def test_mano_hands_render_in_their_colours(hands):
    rot, wrist = _random_pose(2, seed=11)
    wrist[:, 1] = wrist[:, 0] + torch.tensor([0.12, 0.0, 0.0], dtype=torch.float64)
    verts, joints = mano.mano_forward(rot, hands, wrist)
    img = render.render_meshes(verts, hands.faces, 96, 96, target=joints.double().reshape(-1, 3).mean(0))
    assert img.shape == (2, 96, 96, 3) and img.dtype == torch.float32
    fg = (img != torch.tensor(render.BACKGROUND)).any(-1)
    assert 0.02 < fg.float().mean() < 0.8
    orange = fg & (img[..., 0] > img[..., 2])
    blue = fg & (img[..., 2] > img[..., 0])
    assert orange.sum() > 50 and blue.sum() > 50
    with pytest.raises(render.InputError):
        render.render_meshes(verts[0], hands.faces)


# ------------------------------------------------------------------------------------------ GLB export


def test_glb_round_trip_keeps_vertices_and_positions(hands, tmp_path):
    import trimesh

    rot, wrist = _random_pose(3, seed=12)
    verts, _ = mano.mano_forward(rot, hands, wrist)
    path = export.write_hands_glb(verts, hands.faces, tmp_path / "hands.glb", frames=[0, 2], spacing=0.3)
    scene = trimesh.load(path, force="scene", process=False)
    assert len(scene.geometry) == 4
    for k, t in enumerate((0, 2)):
        for h, side in enumerate(SIDES):
            name = f"f{t:04d}_{side}"
            matrix, geom = scene.graph[name]
            mesh = scene.geometry[geom]
            assert len(mesh.vertices) == 778 and len(mesh.faces) == 1538
            assert np.allclose(matrix[:3, 3], [0.3 * k, 0, 0])
            assert np.allclose(mesh.vertices, verts[t, h].numpy(), atol=1e-6)
            rgb = mesh.visual.vertex_colors[:, :3].astype(float) / 255
            assert np.abs(rgb - np.array(render.HAND_COLOURS[h])).max() < 1 / 255
    one = trimesh.load(export.write_hands_glb(verts, hands.faces, tmp_path / "one.glb", frames=1),
                       force="mesh", process=False)  # fmt: skip
    assert len(one.vertices) == 2 * 778
    v, f, c = export.combine_hands(verts, hands.faces)
    assert (
        v.shape == (3, 1556, 3)
        and f.shape == (3076, 3)
        and int(f[1538:].min()) >= 778
        and c.shape == (1556, 3)
    )
