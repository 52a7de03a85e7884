"""The official TriHuman release as users have it (models/trihuman/official): readers of the per-subject files
on small hand-written files, the restricted unpickler, the Skeletool skeleton's forward kinematics, the
networks with the official checkpoint layout (U-Net, weight-normed MLPs, DDC graph CNNs and their ring
adjacency) and the checkpoint loader on synthetic checkpoints."""

from __future__ import annotations

import math
import os
import pickle

import numpy as np
import pytest
import torch
from papernodes.models.common.errors import InputError, WeightsFormatError, WeightsNotFoundError
from papernodes.models.trihuman import official as O
from papernodes.models.trihuman.official import networks as N
from papernodes.models.trihuman.official.files import edges_from_faces
from papernodes.models.trihuman.official.safe_pickle import RefusedPickleError

torch.set_num_threads(1)

F64 = torch.float64

# A strip of three triangles (mm), colours on every vertex, UVs per corner, normals ignored.
STRIP_OBJ = """# a strip
mtllib ./ddc.obj.mtl
v 0 0 0 1 0 0
v 1000 0 0 0 1 0
v 0 1000 0 0 0 1
v 1000 1000 0 0.5 0.5 0.5
v 500 2000 -250 0.25 0.75 1
vt 0.0 0.0
vt 1.0 0.0
vt 0.0 1.0
vt 1.0 1.0
vt 0.5 0.9
vn 0 0 1
usemtl material0
f 1/1/1 2/2/1 3/3/1
f 2/2/1 4/4/1 3/3/1
f 3/3/1 4/4/1 5/5/1
"""


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


# --------------------------------------------------------------------------------------------------- OBJ


def test_obj_reader_colours_uvs_and_mm_to_metres(tmp_path):
    mesh = O.read_obj(_write(tmp_path, "ddc.obj", STRIP_OBJ))
    assert mesh.vertices.dtype == F64 and mesh.vertices.shape == (5, 3)
    assert torch.equal(mesh.vertices[4], torch.tensor([0.5, 2.0, -0.25], dtype=F64))
    assert torch.equal(mesh.faces, torch.tensor([[0, 1, 2], [1, 3, 2], [2, 3, 4]]))
    assert mesh.corner_uvs.shape == (3, 3, 2)
    assert torch.equal(mesh.corner_uvs[2], torch.tensor([[0.0, 1.0], [1.0, 1.0], [0.5, 0.9]], dtype=F64))
    assert torch.equal(mesh.colors[4], torch.tensor([0.25, 0.75, 1.0], dtype=F64))
    assert mesh.edges.tolist() == [[0, 1], [0, 2], [1, 2], [1, 3], [2, 3], [2, 4], [3, 4]]


def test_graph_obj_without_uvs_or_colours(tmp_path):
    text = "v 0 0 0\nv 10 0 0\nv 0 10 0\nv 10 10 0\nf 1 2 3\nf 2//1 4//1 3//1\n"
    graph = O.read_obj(_write(tmp_path, "ddc_graph.obj", text))
    assert graph.corner_uvs is None and graph.colors is None and graph.num_vertices == 4
    assert graph.edges.tolist() == [[0, 1], [0, 2], [1, 2], [1, 3], [2, 3]]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("v 0 0 0 1 1 1\nv 1 0 0 1 1 1\nv 0 1 0 1 1 1\nv 1 1 0 1 1 1\nf 1 2 3 4\n", "triangle"),
        ("v 0 0\nf 1 2 3\n", "'v x y z'"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n", "face indices"),
        ("v 0 0 0 1 1 1\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "colours"),
        ("v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nf 1/1 2/1 3\n", "'v/vt' on every face corner"),
        ("v 0 0 x\n", "vertex coordinates"),
    ],
)
def test_obj_reader_errors_name_the_file(tmp_path, text, expected):
    path = _write(tmp_path, "bad.obj", text)
    with pytest.raises(InputError) as err:
        O.read_obj(path)
    assert str(path) in str(err.value) and expected in str(err.value)


# --------------------------------------------------------------------------------------------------- skin


SKIN = """Skeletool character skinning file V1.0
bones:
   GlobalScale Spine LeftArm
vertex weights:
0 0 0.5 2 0.25 1 0.25
1 1 1.0
2 2 0.75 0 0.25
"""


def test_skin_reader_dense_weights(tmp_path):
    skin = O.read_skin(_write(tmp_path, "ddc.skin", SKIN), num_vertices=3)
    assert skin.bone_names == ("GlobalScale", "Spine", "LeftArm")
    expected = torch.tensor([[0.5, 0.25, 0.25], [0.0, 1.0, 0.0], [0.25, 0.0, 0.75]], dtype=F64)
    assert torch.equal(skin.weights, expected)
    assert torch.allclose(skin.weights.sum(1), torch.ones(3, dtype=F64))
    assert skin.first_bone.tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    "body, num_vertices, expected",
    [
        ("0 0 1.0\n1 5 1.0\n", None, "bone ids"),
        ("0 0 1.0\n", 2, "missing [1]"),
        ("0 0 1.0 1\n", None, "'vid bone weight"),
        ("0 0 0.0\n", None, "positive total weight"),
    ],
)
def test_skin_reader_errors(tmp_path, body, num_vertices, expected):
    path = _write(
        tmp_path, "ddc.skin", "Skeletool character skinning file V1.0\nbones:\n a b\nvertex weights:\n" + body
    )
    with pytest.raises(InputError) as err:
        O.read_skin(path, num_vertices)
    assert str(path) in str(err.value) and expected in str(err.value)


# --------------------------------------------------------------------------------------------------- cameras


def _rotation(seed):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=F64))
    return q * torch.linalg.det(q)


def test_calibration_round_trip(tmp_path):
    K = torch.tensor(
        [
            [[766.3206, 0, 635.1871], [0, 765.7619, 448.8466], [0, 0, 1]],
            [[1000.5, 0, 640], [0, 1001, 470], [0, 0, 1]],
        ],
        dtype=F64,
    )
    E = torch.eye(4, dtype=F64).repeat(2, 1, 1)
    for c in range(2):
        E[c, :3, :3] = _rotation(c)
        E[c, :3, 3] = torch.tensor([0.7038229, 0.150761, 4.868044], dtype=F64) * (c + 1)
    path = O.write_calibration(
        tmp_path / "cameras.calibration", K, E, [[1285, 940], [1285, 940]], names=["0", "1"]
    )
    text = path.read_text()
    assert text.startswith("Skeletool Camera Calibration File V1.0") and "703.8229" in text  # mm in the file
    cams = O.read_calibration(path)
    assert cams.names == ("0", "1") and cams.sizes.tolist() == [[1285, 940], [1285, 940]]
    assert torch.allclose(cams.K, K, atol=1e-12, rtol=0)
    assert torch.allclose(cams.world_to_camera, E, atol=1e-12, rtol=0)


def test_calibration_reads_the_documented_block(tmp_path):
    text = (
        "Skeletool Camera Calibration File V1.0\n"
        "name        0\n  sensor      14.1864 10.3776\n  size        1285 940\n  animated    0\n"
        "  intrinsic   766.3206 0 635.1871 0 0 765.7619 448.8466 0 0 0 1 0 0 0 0 1\n"
        "  extrinsic   1 0 0 703.8229 0 1 0 150.761 0 0 1 4868.044 0 0 0 1\n"
        "  radial      0\n"
    )
    cams = O.read_calibration(_write(tmp_path, "cameras.calibration", text))
    assert cams.K.shape == (1, 3, 3) and cams.K[0, 0, 2] == 635.1871
    assert torch.allclose(
        cams.world_to_camera[0, :3, 3], torch.tensor([0.7038229, 0.150761, 4.868044], dtype=F64)
    )
    bad = text.replace("extrinsic   1 0 0", "extrinsic   2 0 0")
    with pytest.raises(InputError, match="rigid world -> camera"):
        O.read_calibration(_write(tmp_path, "bad.calibration", bad))
    with pytest.raises(InputError, match="16 numbers"):
        O.read_calibration(
            _write(tmp_path, "short.calibration", text.replace(" 0 0 0 1\n  radial", "\n  radial"))
        )


# --------------------------------------------------------------------------------------------------- motion


def test_motion_files(tmp_path):
    plain = O.read_motion(
        _write(
            tmp_path,
            "poseAngles.motion",
            "Skeletool Motion File V1.0\n   0 1.5 0.9 0.01 0.2\n   1 1.6 0.9 0.02 0.3\n",
        )
    )
    assert plain.frame_ids.tolist() == [0, 1] and plain.dofs.dtype == F64
    assert torch.equal(plain.dofs, torch.tensor([[1.5, 0.9, 0.01, 0.2], [1.6, 0.9, 0.02, 0.3]], dtype=F64))
    lines = "".join(f"{i} {i}.5 {i}.25\n" for i in range(6))
    norm = O.read_normalized_motion(_write(tmp_path, "norm.motion", "Skeletool Motion File V1.0\n" + lines))
    assert norm.dofs.shape == (2, 3, 2) and norm.frame_ids.tolist() == [0, 3]
    assert torch.equal(norm.dofs[1, 2], torch.tensor([5.5, 5.25], dtype=F64))
    assert O.read_motion(
        _write(tmp_path, "long.motion", "Skeletool Motion File V1.0\n" + lines), max_frames=2
    ).dofs.shape == (2, 2)
    five = "".join(f"{i} {i}.5 {i}.25\n" for i in range(5))
    with pytest.raises(InputError, match="three lines per frame"):
        O.read_normalized_motion(_write(tmp_path, "five.motion", "Skeletool Motion File V1.0\n" + five))
    with pytest.raises(InputError, match="line 3"):
        O.read_motion(_write(tmp_path, "ragged.motion", "Skeletool Motion File V1.0\n0 1 2\n1 1\n"))
    with pytest.raises(InputError, match="header"):
        O.read_motion(_write(tmp_path, "nohead.motion", "0 1 2\n"))


def test_motion_code_input_layout():
    dofs = torch.arange(4 * 6, dtype=F64).reshape(4, 6)  # 4 frames, 6 DOFs
    body = torch.tensor([0, 1, 2, 4])
    x = N.motion_code_input(dofs, 3, body)
    # frames 3, 2, 1; root translations of 2 and 1 relative to 3's; 3's own translation dropped
    t3, t2, t1 = dofs[3, body], dofs[2, body], dofs[1, body]
    expected = torch.cat([t3[3:], t2[:3] - t3[:3], t2[3:], t1[:3] - t3[:3], t1[3:]])
    assert torch.equal(x, expected) and x.numel() == 3 * 4 - 3
    assert torch.equal(N.motion_code_input(dofs, 0, body)[3:4], torch.zeros(1, dtype=F64))  # history clamped
    assert N.motion_code_input(torch.zeros(3, 107, dtype=F64), 2, torch.arange(62)).numel() == 183


# --------------------------------------------------------------------------------------------------- pickles


class _Evil:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


class _Plain:
    def __init__(self):
        self.base_trans = [1.0, 2.0, 3.0]


def test_restricted_unpickler_refuses_globals(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"base_trans": _Evil(f"touch {marker}")})
    path = tmp_path / "base_trans.pkl"
    path.write_bytes(payload)
    with pytest.raises(InputError) as err:
        O.read_base_trans(path)
    assert "system" in str(err.value) and str(path) in str(err.value)
    assert not marker.exists()
    path.write_bytes(pickle.dumps(_Plain()))
    with pytest.raises(InputError, match="refused"):
        O.read_base_trans(path)
    with pytest.raises(RefusedPickleError, match="builtins.eval"):
        O.loads_plain(b"cbuiltins\neval\n(S'1+1'\ntR.")


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_metadata_pickles_with_numpy_arrays(tmp_path, protocol):
    (tmp_path / "base_trans.pkl").write_bytes(
        pickle.dumps({"base_trans": np.array([0.1, -0.2, 1.5])}, protocol=protocol)
    )
    assert torch.equal(
        O.read_base_trans(tmp_path / "base_trans.pkl"), torch.tensor([0.1, -0.2, 1.5], dtype=F64)
    )
    body = list(range(53)) + list(range(93, 102))
    (tmp_path / "dof.pkl").write_bytes(pickle.dumps({"body_dof_in_full_dof": body}, protocol=protocol))
    dofs = O.read_body_dofs(tmp_path / "dof.pkl", num_dofs=107)
    assert dofs.tolist() == body and len(dofs) == 62
    faces0 = np.array([[0, 1, 2], [1, 3, 2]], dtype=np.int64)
    stages = {
        "stage_0_dict": {"faces": faces0},
        "stage_1_dict": {
            "faces": np.array([[0, 4, 6], [4, 1, 5]], dtype=np.int32),
            "prev_to_cur_st": np.array([0, 1, 2], dtype=np.int64),
            "prev_to_cur_ed": [1, 2, 0],
        },
        "stage_2_dict": {
            "faces": faces0 + 2,
            "prev_to_cur_st": np.array([4]),
            "prev_to_cur_ed": np.array([5]),
        },
        "note": ("scalar", np.float32(2.5)),
    }
    (tmp_path / "sub.pkl").write_bytes(pickle.dumps(stages, protocol=protocol))
    sub = O.read_subdivision(tmp_path / "sub.pkl", num_vertices=4)
    assert torch.equal(sub[0]["faces"], torch.from_numpy(faces0))
    assert sub[1]["prev_to_cur_ed"].tolist() == [1, 2, 0] and sub[2]["prev_to_cur_st"].tolist() == [4]
    plain = O.load_plain_pickle(tmp_path / "sub.pkl", "test")
    assert plain["note"][1] == np.float32(2.5)


def test_metadata_pickle_content_errors(tmp_path):
    (tmp_path / "a.pkl").write_bytes(pickle.dumps({"other": 1}))
    with pytest.raises(InputError, match="'base_trans'"):
        O.read_base_trans(tmp_path / "a.pkl")
    (tmp_path / "b.pkl").write_bytes(pickle.dumps({"body_dof_in_full_dof": [3, 4, 5]}))
    with pytest.raises(InputError, match="root translation"):
        O.read_body_dofs(tmp_path / "b.pkl")
    (tmp_path / "c.pkl").write_bytes(pickle.dumps({"base_trans": np.array([object()], dtype=object)}))
    with pytest.raises(InputError):
        O.read_base_trans(tmp_path / "c.pkl")
    (tmp_path / "d.pkl").write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(InputError, match="d.pkl"):
        O.read_base_trans(tmp_path / "d.pkl")


# --------------------------------------------------------------------------------------------------- skeleton


SKELETON = """Skeletool Skeleton Definition V1.0
joints: 6
  Root_tx      prismatic none        0   100    0    1  0  0   1.0
  Root_rz      revolute  Root_tx     0     0    0    0  0  2   1.0
  Arm_tx       prismatic Root_rz    10     0    0    1  0  0   2.0
  Arm_ry       revolute  Arm_tx      0     0    0    0  1  0   1.0
  ArmScale     prismatic Arm_ry      0     0    0    1  0  0   1.0
  HandEE       revolute  ArmScale   30     0    0    0  0  1   1.0
markers: 1
  Marker01     Arm_ry     point      1 2 3 4 0 0 1
scaling joints: 0
dofs: 3
  translate_x   1
      nolimits
      Root_tx        1000
  rotate_z      1
      limits   -1.5  1.5
      Root_rz        1
  arm_bend      2
      nolimits
      Arm_ry         0.5
      HandEE         0.5
textureEntries: 0
"""


def test_skeleton_parse_and_forward_kinematics(tmp_path):
    sk = O.read_skeleton(_write(tmp_path, "ddc.skeleton", SKELETON))
    assert sk.num_joints == 6 and sk.num_dofs == 3 and sk.num_markers == 1
    assert sk.parents.tolist() == [-1, 0, 1, 2, 3, 4] and sk.revolute.tolist() == [
        False,
        True,
        False,
        True,
        False,
        True,
    ]
    assert torch.equal(sk.axes[1], torch.tensor([0.0, 0.0, 1.0], dtype=F64))  # normalised
    assert sk.dof_limits[1].tolist() == [-1.5, 1.5] and math.isinf(sk.dof_limits[0, 1])
    # rest pose: offsets only (Arm_tx scaled by 2)
    pos = sk.joint_positions(torch.zeros(3, dtype=F64))
    assert torch.allclose(pos[5], torch.tensor([50.0, 100.0, 0.0], dtype=F64))
    # translate 0.1 m (x1000 = 100 mm), rotate 90 deg about z, bend the arm 0.6 rad (0.3 at Arm_ry and HandEE)
    dofs = torch.tensor([[0.1, math.pi / 2, 0.6]], dtype=F64)
    G = sk.forward_kinematics(dofs)
    assert G.shape == (1, 6, 4, 4)
    root = torch.tensor([100.0, 100.0, 0.0], dtype=F64)
    assert torch.allclose(G[0, 0, :3, 3], root)

    # the same chain with explicit matrices: T(offset·scale) then the joint's rotation, parent first
    def rz(a):
        return torch.tensor(
            [[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]], dtype=F64
        )

    def ry(a):
        return torch.tensor(
            [[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]], dtype=F64
        )

    R1 = rz(math.pi / 2)
    arm = root + R1 @ torch.tensor([20.0, 0, 0], dtype=F64)
    R3 = R1 @ ry(0.3)
    hand = arm + R3 @ torch.tensor([30.0, 0, 0], dtype=F64)
    assert torch.allclose(G[0, 3, :3, 3], arm, atol=1e-12)
    assert torch.allclose(G[0, 5, :3, 3], hand, atol=1e-12)
    assert torch.allclose(G[0, 5, :3, :3], R3 @ rz(0.3), atol=1e-12)
    assert torch.allclose(sk.forward_kinematics(dofs, unit=0.001)[0, 5, :3, 3], hand / 1000)
    # skin bones follow the last joint of their name
    assert sk.skin_joint_indices(["Arm", "ArmScale", "HandEE"]).tolist() == [3, 4, 5]
    with pytest.raises(InputError, match="Leg"):
        sk.skin_joint_indices(["Leg"])


@pytest.mark.parametrize(
    "old, new, expected",
    [
        ("Arm_ry       revolute", "Arm_ry       hinge   ", "'revolute' or 'prismatic'"),
        ("      Arm_ry         0.5\n", "      Leg_ry         0.5\n", "naming a joint"),
        ("joints: 6", "joints: 7", "'name type parent"),
        ("Root_tx      prismatic none", "Root_tx      prismatic HandEE", "cycle"),
    ],
)
def test_skeleton_errors(tmp_path, old, new, expected):
    path = _write(tmp_path, "bad.skeleton", SKELETON.replace(old, new))
    with pytest.raises(InputError) as err:
        O.read_skeleton(path)
    assert str(path) in str(err.value) and expected in str(err.value)


# --------------------------------------------------------------------------------------------------- networks


def test_ring_adjacency_on_a_small_mesh():
    """Neighbours 0:{1,2} 1:{0,2,3} 2:{0,1,3,4} 3:{1,2,4} 4:{2,3}; weight ring - hop, rows normalised."""
    edges = edges_from_faces(torch.tensor([[0, 1, 2], [1, 3, 2], [2, 3, 4]]))
    net = N.DDCGraphCNN(5, 2, 1, 4, 4, 2, use_batch_norm=False, ring_value=2).set_mesh(edges)
    A = net.adjacency_matrix().double()
    ring2 = (
        torch.tensor(
            [[2, 1, 1, 0, 0], [1, 2, 1, 1, 0], [1, 1, 2, 1, 1], [0, 1, 1, 2, 1], [0, 0, 1, 1, 2]], dtype=F64
        )
        / torch.tensor([4, 5, 6, 5, 4], dtype=F64)[:, None]
    )
    assert torch.allclose(A, ring2, atol=1e-7)
    assert torch.allclose(A.sum(1), torch.ones(5, dtype=F64), atol=1e-6)
    rows, cols, w = N.ring_adjacency(edges, 5, 3)
    A3 = torch.zeros(5, 5, dtype=F64).index_put_((rows, cols), w.double())
    assert torch.allclose(A3[0], torch.tensor([3, 2, 2, 1, 1], dtype=F64) / 9, atol=1e-7)
    assert torch.allclose(A3[2], torch.tensor([2, 2, 3, 2, 2], dtype=F64) / 11, atol=1e-7)
    rows, cols, w = N.ring_adjacency(edges, 5, 1)  # ring 1: only the node itself
    assert rows.tolist() == cols.tolist() == list(range(5)) and torch.all(w == 1)


def test_gcn_operator_is_per_node_kernel_then_mixing():
    g = torch.Generator().manual_seed(0)
    edges = torch.tensor([[0, 1], [1, 2], [2, 3]])
    adj = N.ring_adjacency(edges, 4, 2)
    op = N.GCNOperator(4, 3, 2)
    with torch.no_grad():
        op.kernel.copy_(torch.randn(4, 3, 2, generator=g))
        op.bias.copy_(torch.randn(4, 2, generator=g))
    x = torch.randn(2, 4, 3, generator=g)
    A = torch.zeros(4, 4).index_put_((adj[0], adj[1]), adj[2].float())
    h = torch.stack([x[:, n] @ op.kernel[n] for n in range(4)], 1)
    assert torch.allclose(op(x, adj), A @ h + op.bias, atol=1e-6)
    dense = N.GCNOperator(4, 2, 2, dense=True)
    assert torch.allclose(dense(x[..., :2], None), dense.kernel @ x[..., :2] + dense.bias)


def test_weight_norm_mlp_equals_explicit_computation():
    g = torch.Generator().manual_seed(1)
    net = O.MotionNetwork()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    assert [k for k in net.state_dict() if k.startswith("lin0")] == [
        "lin0.weight_g",
        "lin0.weight_v",
        "lin0.bias",
    ]
    assert net.lin0.weight_g.shape == (64, 1) and net.lin0.weight_v.shape == (64, 183)
    x = torch.randn(5, 183, generator=g, dtype=torch.float64)
    h = x
    for i in range(3):
        lin = getattr(net, f"lin{i}")
        v, gg, b = lin.weight_v.double(), lin.weight_g.double(), lin.bias.double()
        W = gg * v / torch.sqrt((v * v).sum(1, keepdim=True))
        h = h @ W.T + b
        h = torch.relu(h) if i < 2 else torch.sigmoid(h)
    assert torch.allclose(net.double()(x), h, atol=1e-6, rtol=0)
    # and torch's own parametrisation agrees on one layer
    ref = torch.nn.utils.parametrizations.weight_norm(torch.nn.Linear(64, 32).double())
    with torch.no_grad():
        ref.parametrizations.weight.original0.copy_(net.lin2.weight_g)
        ref.parametrizations.weight.original1.copy_(net.lin2.weight_v)
        ref.bias.copy_(net.lin2.bias)
    y = torch.randn(3, 64, generator=g, dtype=torch.float64)
    assert torch.allclose(ref(y), net.lin2(y), atol=1e-12)


def test_sdf_and_colour_networks_layout():
    sdf, col = O.SDFNetwork(), O.RenderingNetwork()
    assert sdf.lin0.weight_v.shape == (128, 69) and sdf.lin2.weight_v.shape == (128, 197)
    assert sdf.lin3.weight_v.shape == (129, 128) and col.lin0.weight_v.shape == (128, 161)
    out = sdf(torch.randn(4, 51))
    assert out.shape == (4, 129)
    rgb = col(torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3), out[:, 1:])
    assert rgb.shape == (4, 3) and bool(((rgb > 0) & (rgb < 1)).all())
    pe = N.positional_encoding(torch.tensor([[0.5]]), 2)
    assert torch.allclose(
        pe, torch.tensor([[0.5, math.sin(0.5), math.cos(0.5), math.sin(1.0), math.cos(1.0)]])
    )
    assert torch.allclose(O.SingleVarianceNetwork(0.3)(torch.zeros(2, 3)), torch.full((2, 1), math.exp(3.0)))


def test_rollout_pool_placement():
    s, c = 4, 1
    i = torch.arange(s, dtype=F64)[:, None].expand(s, s)  # row index
    j = torch.arange(s, dtype=F64)[None, :].expand(s, s)  # column index
    uv, uw, wv = i + 10 * j, 100 * i + 1000 * j, 7 * i - 3 * j
    x = torch.cat([uv, uw, wv], -1)[None, None]
    y = N.rollout_pool(x)
    assert y.shape == (1, 3 * c, s, 3 * s) and torch.equal(y[:, :c], x)

    def rows(t):  # mean along the width
        return t.mean(1, keepdim=True).expand(s, s)

    def cols(t):  # mean down the rows
        return t.mean(0, keepdim=True).expand(s, s)

    third = [slice(0, s), slice(s, 2 * s), slice(2 * s, 3 * s)]
    expected = [(rows(uw), cols(wv)), (rows(uv), rows(wv)), (cols(uw), cols(uv))]
    for k, (a, b) in enumerate(expected):
        assert torch.allclose(y[0, 1, :, third[k]], a) and torch.allclose(y[0, 2, :, third[k]], b)


def test_unet_forward_at_release_size():
    net = O.RolloutTriplaneUNet().eval()
    g = torch.Generator().manual_seed(0)
    tex = torch.rand(1, 18, 256, 256, generator=g)
    code = O.MotionNetwork().eval()(torch.rand(1, 183, generator=g))
    with torch.no_grad():
        out = net(tex, code)
    assert out.shape == (1, 48, 256, 256)
    assert bool(((out > 0) & (out < 1)).all())
    with pytest.raises(InputError, match="motion code"):
        net(tex)
    with pytest.raises(InputError, match="multiple of 32"):
        net(torch.rand(1, 18, 48, 48))


# --------------------------------------------------------------------------------------------------- checkpoints


TINY = O.OfficialImplicitConfig(
    input_nc_org=18,
    input_nc=2,
    output_nc=6,
    bottleneck_dim=4,
    motion_d_hidden=8,
    sdf_d_hidden=8,
    sdf_feature=5,
    color_d_hidden=8,
)
TINY_SPATIAL = O.OfficialGCNConfig(
    18,
    6,
    ring_value=2,
    use_batch_norm=True,
    dense_inner_block=False,
    feature_size1=3,
    feature_size2=3,
    num_residual_blocks=2,
)
TINY_DELTA = O.OfficialGCNConfig(
    9,
    3,
    ring_value=3,
    use_batch_norm=False,
    dense_inner_block=True,
    feature_size1=3,
    feature_size2=3,
    num_residual_blocks=2,
)


def _grid_obj(path, nx, ny):
    """An nx x ny vertex grid (mm) triangulated: a mesh with nx*ny vertices."""
    lines = [f"v {10 * x} {10 * y} 0" for y in range(ny) for x in range(nx)]
    for y in range(ny - 1):
        for x in range(nx - 1):
            a = y * nx + x + 1
            lines += [f"f {a} {a + 1} {a + nx}", f"f {a + 1} {a + nx + 1} {a + nx}"]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return O.read_obj(path)


def _tiny(tmp_path, folder, nodes, verts, **kw):
    return O.write_synthetic_checkpoints(
        tmp_path / folder,
        nodes,
        verts,
        implicit_config=TINY,
        spatial_config=TINY_SPATIAL,
        delta_config=TINY_DELTA,
        **kw,
    )


def _load(explicit, implicit, **kw):
    return O.load_official_checkpoints(
        explicit, implicit, implicit_config=TINY, spatial_config=TINY_SPATIAL, delta_config=TINY_DELTA, **kw
    )


def test_synthetic_checkpoints_load_exactly(tmp_path):
    graph = _grid_obj(tmp_path / "meta" / "ddc_graph.obj", 3, 2)  # 6 nodes
    template = _grid_obj(tmp_path / "meta" / "ddc.obj", 4, 3)  # 12 vertices
    exp_path, imp_path = _tiny(tmp_path, "ckpt", 6, 12, extra={"iter_step": 1234})
    model = _load(exp_path, imp_path, graph=graph, template=template)
    assert model.ignored_keys == {str(imp_path): ["iter_step"], str(exp_path): ["iter_step"]}
    for path, net, keys in (
        (exp_path, model.explicit, O.checkpoint.EXPLICIT_KEYS),
        (imp_path, model.implicit, O.checkpoint.IMPLICIT_KEYS),
    ):
        written = torch.load(path, map_location="cpu", weights_only=True)
        for k in keys:
            own = getattr(net, k).state_dict()
            assert list(own) == list(written[k])
            for name, t in written[k].items():
                assert torch.equal(own[name], t), f"{k}.{name}"
    assert not model.implicit.training and not model.explicit.training
    # ready to run: adjacency from the meshes, sizes from the checkpoint
    out = model.explicit.spatial_gcn(torch.randn(1, 6, 18))
    assert out.shape == (1, 6, 6) and model.explicit.delta_gcn(torch.randn(1, 12, 9)).shape == (1, 12, 3)
    imp = model.implicit
    code = imp.global_motion_mlp(torch.rand(1, 183))
    planes = imp.feature_extractor(torch.rand(1, 18, 32, 32), code)
    assert planes.shape == (1, 6, 32, 32)
    # without the meshes: counts from the file, adjacency to be set later
    bare = _load(exp_path, None)
    assert bare.implicit is None and bare.explicit.num_graph_nodes == 6 and bare.explicit.num_vertices == 12
    with pytest.raises(InputError, match="adjacency"):
        bare.explicit.spatial_gcn(torch.randn(1, 6, 18))


def test_checkpoint_of_another_subject_is_named(tmp_path):
    exp_path, _ = _tiny(tmp_path, "Subject0021_loose_checkpoints", 6, 12)
    graph = _grid_obj(tmp_path / "Subject0010_loose_metadata" / "ddc_graph.obj", 4, 2)  # 8 nodes
    with pytest.raises(WeightsFormatError) as err:
        _load(exp_path, None, graph=graph)
    msg = str(err.value)
    assert str(exp_path) in msg and "8 nodes" in msg and "spatial_gcn has 6" in msg
    assert "Subject0021_loose" in msg and "Subject0010_loose" in msg
    with pytest.raises(WeightsFormatError, match="delta_gcn has 12"):
        _load(exp_path, None, num_vertices=13)


def test_checkpoint_key_mismatches_are_listed(tmp_path):
    exp_path, imp_path = _tiny(tmp_path, "ckpt", 6, 12)
    data = torch.load(imp_path, weights_only=True)
    del data["sdf_network"]["lin1.weight_g"]
    data["sdf_network"]["lin9.bias"] = torch.zeros(3)
    torch.save(data, tmp_path / "broken.pth")
    with pytest.raises(WeightsFormatError) as err:
        _load(None, tmp_path / "broken.pth")
    assert (
        "sdf_network" in str(err.value)
        and "lin1.weight_g" in str(err.value)
        and "lin9.bias" in str(err.value)
    )
    with pytest.raises(
        WeightsFormatError, match=r"conv_uv.conv.weight: file \[2, 18, 3, 3\] vs \[16, 18, 3, 3\]"
    ):
        O.load_official_checkpoints(None, imp_path)  # the release's sizes against a tiny file
    del data["color_network"]
    torch.save(data, tmp_path / "partial.pth")
    with pytest.raises(WeightsFormatError, match="color_network"):
        _load(None, tmp_path / "partial.pth")
    with pytest.raises(WeightsNotFoundError, match="gvv-assets"):
        _load(tmp_path / "nope.pth", None)
    torch.save({"spatial_gcn": {"x": _Plain()}}, tmp_path / "objects.pth")
    with pytest.raises(WeightsFormatError, match="weights-only"):
        _load(tmp_path / "objects.pth", None)
    # a DataParallel-style prefix is stripped
    data = torch.load(exp_path, weights_only=True)
    data = {k: {f"module.{n}": t for n, t in sd.items()} for k, sd in data.items()}
    torch.save(data, tmp_path / "prefixed.pth")
    assert _load(tmp_path / "prefixed.pth", None).explicit.num_vertices == 12


def test_write_skeleton_is_the_inverse_of_read_skeleton(tmp_path):
    """Read -> write -> read keeps every joint, axis, scale, limit and DOF weight (the one marker is
    dropped: only its count is kept on reading), so the same DOFs pose the same joints."""
    sk = O.read_skeleton(_write(tmp_path, "ddc.skeleton", SKELETON))
    again = O.read_skeleton(O.write_skeleton(tmp_path / "again.skeleton", sk))
    text = (tmp_path / "again.skeleton").read_text()
    assert text.count("nolimits") == 2 and "limits -1.5 1.5" in text  # the release's spelling of both
    for field in ("revolute", "parents", "offsets", "axes", "scales", "dof_weights", "dof_limits", "order"):
        assert torch.equal(getattr(again, field), getattr(sk, field)), field
    assert again.joint_names == sk.joint_names and again.dof_names == sk.dof_names
    dofs = torch.tensor([0.1, -0.7, 0.4], dtype=F64)
    assert torch.equal(again.forward_kinematics(dofs), sk.forward_kinematics(dofs))
    toy = O.read_skeleton(O.write_skeleton(tmp_path / "toy.skeleton", O.root_arm_skeleton((100.0, 0.0, 0.0))))
    bent = toy.joint_positions(torch.tensor([0.001, 0.0, 0.0, 1.0], dtype=F64))
    torch.testing.assert_close(bent[-1], torch.tensor([101.0, 0.0, 0.0], dtype=F64), rtol=0, atol=1e-12)
