"""A whole official subject from files in the release's layout (models/trihuman/official/subject): a toy
character written as the release's text files, pickles and synthetic checkpoints, loaded in one call and
rendered from a calibrated camera; missing files and bad indices give errors naming the input."""

from __future__ import annotations

import pickle

import pytest
import torch
from papernodes.models.common.errors import InputError
from papernodes.models.trihuman.official import (
    OfficialImplicitConfig,
    write_calibration,
    write_synthetic_checkpoints,
)
from papernodes.models.trihuman.official import subject as S

torch.set_num_threads(1)
F64 = torch.float64

SKELETON = """Skeletool Skeleton Definition V1.0
joints: 4
  Root_tx      prismatic none        0     0    0    1  0  0   1.0
  Root_ty      prismatic Root_tx     0     0    0    0  1  0   1.0
  Root_tz      prismatic Root_ty     0     0    0    0  0  1   1.0
  Arm_ry       revolute  Root_tz   100     0    0    0  1  0   1.0
markers: 0
scaling joints: 0
dofs: 4
  tx   1
      nolimits
      Root_tx        1000
  ty   1
      nolimits
      Root_ty        1000
  tz   1
      nolimits
      Root_tz        1000
  bend      1
      nolimits
      Arm_ry         1
textureEntries: 0
"""


def _motion_text(rows):
    return "Skeletool Motion File V1.0\n" + "".join(f"{i} " + " ".join(map(str, r)) + "\n" for i, r in rows)


def write_subject(root):
    """<root>/Toy_metadata and <root>/Toy_checkpoints in the release's layout; returns both folders."""
    meta, ckpt = root / "Toy_metadata", root / "Toy_checkpoints"
    meta.mkdir()
    nx, ny, step = 9, 3, 25.0
    verts = [(i * step, j * step, 0.0) for i in range(nx) for j in range(ny)]
    faces = []
    for i in range(nx - 1):
        for j in range(ny - 1):
            a, b, c, d = i * ny + j, (i + 1) * ny + j, i * ny + j + 1, (i + 1) * ny + j + 1
            faces += [(a, b, c), (b, d, c)]
    obj = ["mtllib ./ddc.obj.mtl"] + [f"v {x} {y} {z} 0.5 0.5 0.5" for x, y, z in verts]
    obj += [f"vt {x / 200 * 0.8 + 0.1} {y / 50 * 0.8 + 0.1}" for x, y, _ in verts]
    obj += [f"f {a + 1}/{a + 1} {b + 1}/{b + 1} {c + 1}/{c + 1}" for a, b, c in faces]
    (meta / "ddc.obj").write_text("\n".join(obj) + "\n")
    nodes = [0, 7, 13, 19, 26]
    graph = [f"v {verts[k][0]} {verts[k][1]} {verts[k][2]} 1 0 0" for k in nodes]
    graph += ["f 1 2 3", "f 3 4 5"]
    (meta / "ddc_graph.obj").write_text("\n".join(graph) + "\n")
    (meta / "ddc.skeleton").write_text(SKELETON)
    skin = ["Skeletool character skinning file V1.0", "bones:", "Root Arm", "vertex weights:"]
    for k, (x, _, _) in enumerate(verts):
        arm = min(max((x - 75) / 50, 0.0), 1.0)
        pairs = [(1, arm), (0, 1 - arm)] if arm > 0.5 else [(0, 1 - arm), (1, arm)]
        skin.append(f"{k} " + " ".join(f"{b} {w}" for b, w in pairs if w > 0))
    (meta / "ddc.skin").write_text("\n".join(skin) + "\n")
    (meta / "ddc.motion").write_text(_motion_text([(0, [0, 0, 0, 0])]))
    K = torch.tensor([[[150.0, 0, 31.5], [0, 150.0, 23.5], [0, 0, 1]]], dtype=F64)
    E = torch.eye(4, dtype=F64)[None].clone()
    R = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=F64))
    E[0, :3, :3], E[0, :3, 3] = R, -R @ torch.tensor([0.1, 0.025, 0.5], dtype=F64)
    write_calibration(meta / "cameras.calibration", K, E, [[64, 48]], ["cam0"])
    (meta / "base_trans.pkl").write_bytes(pickle.dumps({"base_trans": [0.1, 0.0, 0.0]}))
    (meta / "dof_convert_dict.pkl").write_bytes(pickle.dumps({"body_dof_in_full_dof": [0, 1, 2, 3]}))
    poses = [[0.0, 0.0, 0.0, 0.0], [0.005, 0.0, 0.0, 0.2], [0.01, 0.02, 0.0, 0.4]]
    test = meta / "skeletoolToGTPose_test"
    test.mkdir()
    (test / "poseAngles.motion").write_text(_motion_text(list(enumerate(poses))))
    (test / "poseAnglesRotationNormalized.motion").write_text(
        _motion_text([(3 * f + k, p) for f, p in enumerate(poses) for k in range(3)])
    )
    write_synthetic_checkpoints(
        ckpt, len(nodes), len(verts), implicit_config=OfficialImplicitConfig(motion_d_in=9)
    )
    return meta, ckpt


def test_subject_loads_and_renders_a_frame(tmp_path):
    meta, ckpt = write_subject(tmp_path)
    subject = S.load_official_subject(meta, ckpt, texture_size=32)
    assert (
        subject.name == "Toy"
        and subject.rig.graph.num_nodes == 5
        and subject.body_dofs.tolist() == [0, 1, 2, 3]
    )
    motion = S.load_subject_motion(meta, "test")
    assert motion.dofs.shape == (3, 4) and motion.normalized.shape == (3, 3, 4)
    out = S.render_subject_frame(subject, motion, frame=2, camera=0, scale=0.5)
    assert out.image.shape == (24, 32, 3) and out.mask.any() and not out.mask.all()
    assert (out.image >= 0).all() and (out.image <= 1).all() and (out.image[~out.mask] == 0).all()
    # the same frame at full size casts rays on the same part of the image
    full = S.render_subject_frame(subject, motion, frame=2, camera=0, scale=1.0)
    assert abs(full.mask.float().mean() - out.mask.float().mean()) < 0.1


def test_subject_errors_name_the_input(tmp_path):
    meta, ckpt = write_subject(tmp_path)
    (meta / "ddc.skin").unlink()
    with pytest.raises(InputError, match="metadata folder.*ddc.skin"):
        S.load_official_subject(meta, ckpt)
    (tmp_path / "b").mkdir()
    meta2, ckpt2 = write_subject(tmp_path / "b")
    subject = S.load_official_subject(meta2, ckpt2, texture_size=32)
    motion = S.load_subject_motion(meta2)
    with pytest.raises(InputError, match="camera"):
        S.render_subject_frame(subject, motion, frame=0, camera=3)
    with pytest.raises(InputError, match="frame"):
        S.render_subject_frame(subject, motion, frame=9, camera=0)
    with pytest.raises(InputError, match="split"):
        S.load_subject_motion(meta2, "val")
