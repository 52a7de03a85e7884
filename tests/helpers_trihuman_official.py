"""A toy subject of the official TriHuman release, written in its layout (text files, pickles, synthetic
checkpoints) for the subject and node tests: a 200 x 50 mm strip with a root and an arm bone, five graph
nodes, one camera 0.5 m above it, three frames of test motion."""

from __future__ import annotations

import pickle

import torch
from papernodes.models.trihuman.official import (
    OfficialImplicitConfig,
    root_arm_skeleton,
    write_calibration,
    write_skeleton,
    write_synthetic_checkpoints,
)

F64 = torch.float64

SKELETON = root_arm_skeleton((100.0, 0.0, 0.0))  # the arm bone starts 100 mm along the strip


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
    write_skeleton(meta / "ddc.skeleton", SKELETON)
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
    stage1 = _midpoint_stage(faces, len(verts))
    stage2 = _midpoint_stage(stage1["faces"], len(stage1["prev_to_cur_st"]))
    subdivision = {
        "stage_0_dict": {"faces": [list(f) for f in faces]},
        "stage_1_dict": stage1,
        "stage_2_dict": stage2,
    }
    (meta / "subdivision_dict_xyz_new.pkl").write_bytes(pickle.dumps(subdivision))
    (meta / "segmentation_hand.txt").write_text(
        "".join("1\n" if k == 0 else "0\n" for k in range(len(verts)))
    )
    write_synthetic_checkpoints(
        ckpt, len(nodes), len(verts), implicit_config=OfficialImplicitConfig(motion_d_in=9)
    )
    return meta, ckpt


def _midpoint_stage(faces, n):
    """A subdivision stage as the release's pickle holds it (lists): old vertices (st = ed), then one
    midpoint per edge; each face split in four."""
    st, ed, mid = list(range(n)), list(range(n)), {}
    for face in faces:
        for a, b in ((face[0], face[1]), (face[1], face[2]), (face[2], face[0])):
            key = (min(a, b), max(a, b))
            if key not in mid:
                mid[key] = len(st)
                st.append(key[0])
                ed.append(key[1])
    new = []
    for a, b, c in faces:
        ab, bc, ca = (mid[(min(p, q), max(p, q))] for p, q in ((a, b), (b, c), (c, a)))
        new += [[a, ab, ca], [ab, b, bc], [ca, bc, c], [ab, bc, ca]]
    return {"faces": new, "prev_to_cur_st": st, "prev_to_cur_ed": ed}
