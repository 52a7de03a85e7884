"""The TriHuman avatar world (models/trihuman/world.py) and its rasteriser (models/common/mesh_raster.py):
determinism, skeleton invariants, a watertight template that skinning reproduces at rest, clothing that
depends on pose and velocity, the rasteriser against brute-force ray casting, multi-view consistency."""

from __future__ import annotations

import math
import time

import pytest
import torch
from papernodes.models.common.camera import look_at, orbit_rig, pixel_rays, project, unproject
from papernodes.models.common.mesh_raster import rasterize
from papernodes.models.trihuman import world as W
from papernodes.models.trihuman.skinning import dual_quaternion_skinning

torch.set_num_threads(1)
F64 = torch.float64


@pytest.fixture(scope="module")
def template():
    return W.avatar_template()


@pytest.fixture(scope="module")
def walk():
    return W.make_sequence(2, "train", 0, frames=6, cameras="train", size=64, motion="walk")


def test_sequences_are_deterministic_and_seeded():
    a = W.make_sequence(5, "train", 1, frames=3, cameras=[0, 5], size=32)
    b = W.make_sequence(5, "train", 1, frames=3, cameras=[0, 5], size=32)
    for name in ("poses", "translations", "history_poses", "vertices", "images", "masks", "depths"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    c = W.make_sequence(6, "train", 1, frames=3, cameras=[0, 5], size=32)
    assert not torch.allclose(a.poses, c.poses)
    assert a.images.shape == (3, 2, 32, 32, 3) and a.masks.dtype == torch.bool
    assert a.vertices.shape == (3, a.template.vertices.shape[0], 3)
    assert a.pose_history.shape == (3, 3, len(W.JOINTS), 3)
    assert torch.equal(a.pose_history[0, 1], a.history_poses[1])
    assert torch.equal(a.pose_history[2, 0], a.poses[2])


def test_splits_hold_out_a_motion_type_poses_and_views():
    train = {W.make_motion(0, "train", i, 2).name for i in range(6)}
    test = {W.make_motion(0, "test", i, 2).name for i in range(8)}
    assert "turn" not in train and "turn" in test
    assert not torch.allclose(W.make_motion(0, "train", 0, 4).poses, W.make_motion(0, "test", 0, 4).poses)
    tr, _, _ = W.camera_rig("train")
    te, _, _ = W.camera_rig("test")
    assert len(tr) + len(te) == W.RING and not set(tr.tolist()) & set(te.tolist())
    with pytest.raises(Exception, match="split"):
        W.make_motion(0, "validation", 0, 2)


@pytest.mark.parametrize("motion", W.MOTIONS)
def test_forward_kinematics_keeps_bone_lengths_and_feet_on_the_floor(motion):
    mo = W.make_motion(3, "test", 0, 40, motion)
    joints, rot, T = W.forward_kinematics(mo.poses, mo.translations)
    parents = torch.tensor(W.PARENTS[1:])
    rest = (W.REST_JOINTS[1:] - W.REST_JOINTS[parents]).norm(dim=-1)
    lengths = (joints[:, 1:] - joints[:, parents]).norm(dim=-1)
    assert (lengths - rest).abs().max() < 1e-12
    eye = torch.eye(3, dtype=F64)
    assert (rot.transpose(-1, -2) @ rot - eye).abs().max() < 1e-12
    # the skinning transform maps each rest joint to its posed position
    rest_h = torch.cat([W.REST_JOINTS, torch.ones(len(W.JOINTS), 1, dtype=F64)], -1)
    assert ((T @ rest_h[:, :, None])[..., :3, 0] - joints).abs().max() < 1e-12
    lows = []
    for joint, points in W.FOOT_CONTACTS.items():
        p = torch.tensor(points, dtype=F64)
        m = T[:, W.J[joint]]
        lows.append((p @ m[:, :3, :3].transpose(-1, -2) + m[:, None, :3, 3])[..., 1].amin(-1))
    assert torch.stack(lows, -1).amin(-1).abs().max() < 1e-12
    # smooth curves: no joint jumps more than 0.3 rad between frames
    R = W.axis_angle_matrix(mo.poses)
    step = (R[1:] @ R[:-1].transpose(-1, -2)).diagonal(dim1=-2, dim2=-1).sum(-1)
    assert torch.acos(((step - 1) / 2).clamp(-1, 1)).max() < 0.3


def test_template_is_watertight_and_well_formed(template):
    f = template.faces
    pairs = torch.stack([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], 1).reshape(-1, 2)
    _, counts = torch.unique(pairs.sort(-1).values, dim=0, return_counts=True)
    assert bool((counts == 2).all())  # every edge shared by exactly two faces
    # oriented consistently: each directed edge appears once (its twin runs the other way)
    assert len(torch.unique(pairs, dim=0)) == len(pairs)
    v = template.vertices.double()
    tri = v[f]
    volume = (tri[:, 0] * torch.linalg.cross(tri[:, 1], tri[:, 2])).sum() / 6
    assert 0.04 < float(volume) < 0.12  # outward faces, a human-sized solid (m^3)
    assert 1000 < v.shape[0] < 8000
    assert 1.7 < float(v[:, 1].max()) < 1.8 and abs(float(v[:, 1].min())) < 0.01
    w = template.weights
    assert float(w.min()) >= 0 and (w.sum(1) - 1).abs().max() < 1e-5
    assert template.uvs.shape == (f.shape[0], 3, 2)
    assert 0 <= float(template.uvs.min()) and float(template.uvs.max()) <= 1
    assert 0.1 < float((template.skirt > 0.5).float().mean()) < 0.6
    image, mask = W.template_texture(template, 64)
    assert image.shape == (64, 64, 3) and 0.3 < float(mask.float().mean()) < 0.95


def test_skinned_rest_pose_is_the_template(template):
    poses = torch.zeros(3, len(W.JOINTS), 3, dtype=F64)
    joints, _, T = W.forward_kinematics(poses, torch.zeros(3, 3, dtype=F64))
    assert torch.allclose(joints, W.REST_JOINTS.expand(3, -1, -1), atol=0)
    skinned = dual_quaternion_skinning(template.vertices.double(), template.weights.double(), T[0])
    assert (skinned - template.vertices.double()).abs().max() < 1e-6
    clothed, skin = W.clothed_vertices(template, poses, torch.zeros(3, 3, dtype=F64))
    assert (clothed[0] - template.vertices).abs().max() < 1e-6  # standing still at rest: the rest skirt
    assert torch.equal(clothed, skin)


def _static(pose: torch.Tensor, frames: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    return pose.expand(frames, -1, -1).clone(), torch.zeros(frames, 3, dtype=F64)


def test_skirt_depends_on_velocity_and_pose(template):
    skirt = template.skirt > 0.5
    body = template.skirt == 0
    mo = W.make_motion(1, "train", 0, 3, "walk")
    poses, trans = mo.poses, mo.translations
    clothed, skinned = W.clothed_vertices(template, poses, trans)  # frames t = 0 .. 2, history -2, -1
    # the same pose at t with different previous frames: the skirt differs, the body does not
    still_p = torch.cat([poses[2:3].expand(2, -1, -1), poses[2:3]])
    still_t = torch.cat([trans[2:3].expand(2, -1), trans[2:3]])
    c2, s2 = W.clothed_vertices(template, still_p, still_t)
    assert (s2[0] - skinned[0]).abs().max() < 1e-6
    diff = (c2[0] - clothed[0]).norm(dim=-1)
    assert float(diff[skirt].max()) > 0.01 and float(diff[body].max()) < 1e-6
    # beyond skinning while moving; the body is skinning alone
    assert float((clothed - skinned).norm(dim=-1)[:, skirt].max()) > 0.01
    assert float((clothed - skinned).norm(dim=-1)[:, body].max()) < 1e-6
    # standing still with the thighs together: skinning alone; with the legs apart: the skirt flares
    arms = torch.zeros(len(W.JOINTS), 3, dtype=F64)
    arms[W.J["l_shoulder"], 2], arms[W.J["r_elbow"], 0] = 1.0, -0.8
    c, s = W.clothed_vertices(template, *_static(arms))
    assert (c - s).abs().max() < 1e-6
    legs = arms.clone()
    legs[W.J["l_hip"], 2], legs[W.J["r_hip"], 2] = 0.3, -0.3
    c, s = W.clothed_vertices(template, *_static(legs))
    assert float((c - s).norm(dim=-1)[:, skirt].max()) > 0.02


def _brute_force(vertices, faces, K, E, size):
    """Nearest ray-triangle hit per pixel (Moller-Trumbore, float64): (face [C, H, W], depth [C, H, W])."""
    origins, dirs = pixel_rays(K, E, size, size)  # [C, H, W, 3]
    o, d = origins[..., None, :], dirs[..., None, :]
    tri = vertices[faces]  # [F, 3, 3]
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    p = torch.linalg.cross(d.expand(*d.shape[:-2], len(faces), 3), e2.expand(*d.shape[:-2], -1, -1))
    det = (p * e1).sum(-1)
    s = o - tri[:, 0]
    u = (s * p).sum(-1) / det
    q = torch.linalg.cross(s, e1.expand_as(s))
    v = (q * d).sum(-1) / det
    t = (q * e2).sum(-1) / det
    hit = (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0) & (det.abs() > 1e-15)
    t = torch.where(hit, t, torch.inf)
    best, face = t.min(-1)
    zaxis = E[:, 2, :3]  # the camera's viewing axis in world coordinates
    depth = best * (dirs * zaxis[:, None, None]).sum(-1)
    found = torch.isfinite(best)
    return torch.where(found, face, -1), torch.where(found, depth, 0)


def test_rasteriser_matches_brute_force_ray_casting():
    g = torch.Generator().manual_seed(0)
    centres = torch.rand(12, 1, 3, generator=g, dtype=F64) * 1.2 - 0.6
    vertices = (centres + torch.randn(12, 3, 3, generator=g, dtype=F64) * 0.25).reshape(-1, 3)
    faces = torch.arange(36).reshape(12, 3)
    K, E = orbit_rig(3, radius=3.0, elevation_degrees=25.0, width=24, height=24, dtype=F64)
    r = rasterize(vertices, faces, K, E, 24, 24)
    face, depth = _brute_force(vertices, faces, K, E, 24)
    assert r.mask.any() and (~r.mask).any()
    assert torch.equal(r.mask, face >= 0)
    assert torch.equal(r.face_index, face)
    assert (r.depth - depth).abs().max() < 1e-4
    # perspective-correct barycentrics give the hit point itself
    cams, rows, cols = r.mask.nonzero(as_tuple=True)
    hit = (r.barycentrics[cams, rows, cols, :, None] * vertices[faces[r.face_index[cams, rows, cols]]]).sum(1)
    uv = torch.stack([cols + 0.5, rows + 0.5], -1).to(F64)
    ref = unproject(uv[:, None], r.depth[cams, rows, cols][:, None], K[cams], E[cams])[:, 0]
    assert (hit - ref).abs().max() < 1e-9


def test_rasteriser_on_one_triangle_facing_the_camera():
    E = look_at(torch.tensor([[0.0, 0.0, 2.0]], dtype=F64), torch.zeros(3, dtype=F64))
    K = torch.tensor([[[10.0, 0, 4], [0, 10.0, 4], [0, 0, 1]]], dtype=F64)
    tri = torch.tensor([[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [0.0, 1.0, 0.0]], dtype=F64)
    r = rasterize(tri, torch.tensor([[0, 1, 2]]), K, E, 8, 8)
    assert r.mask.sum() > 10 and (r.depth[r.mask] - 2).abs().max() < 1e-12
    assert r.mask[0, 4, 4] and not r.mask[0, 0, 0]


def test_multi_view_consistency(walk):
    mesh = walk.vertices[0].double()
    K, E = walk.K.double(), walk.world_to_camera.double()
    masks, depths = walk.masks[0], walk.depths[0].double()
    size = masks.shape[-1]
    dilated = torch.nn.functional.max_pool2d(masks.float()[:, None], 3, 1, 1)[:, 0] > 0
    uv, z = project(mesh, K, E)  # [C, V, 2], [C, V]
    col, row = uv[..., 0].floor().long().clamp(0, size - 1), uv[..., 1].floor().long().clamp(0, size - 1)
    cam = torch.arange(len(K))[:, None].expand_as(col)
    inside = masks[cam, row, col]
    # every surface vertex falls on the silhouette in every view, to a pixel at the outline (at 64 px the
    # arms are 2-3 pixels wide, so a vertex on the outline often lies in a pixel whose centre is outside)
    assert bool(dilated[cam, row, col].all()) and float(inside.float().mean()) > 0.85
    # a vertex visible in view 0 (depth test) lands on the mask of the other views, and the depth
    # buffer of view 0 unprojects to a point that every other view sees inside its mask
    visible = (depths[0, row[0], col[0]] - z[0]).abs() < 0.02
    assert int(visible.sum()) > 300
    for c in range(1, len(K)):
        assert bool(dilated[c, row[c], col[c]][visible].all())
        assert float(inside[c][visible].float().mean()) > 0.85
    rows, cols = masks[0].nonzero(as_tuple=True)
    pts = unproject(torch.stack([cols + 0.5, rows + 0.5], -1).double(), depths[0, rows, cols], K[0], E[0])
    for c in range(1, len(K)):
        puv, _ = project(pts, K[c], E[c])
        pc = puv[:, 0].floor().long().clamp(0, size - 1)
        pr = puv[:, 1].floor().long().clamp(0, size - 1)
        assert float(dilated[c, pr, pc].float().mean()) > 0.99


def test_renders_look_like_the_character(walk):
    img, mask = walk.images, walk.masks
    assert 0.03 < float(mask.float().mean()) < 0.4
    assert float(img[~mask].abs().max()) == 0  # black background
    fg = img[mask]
    assert float(fg.min()) >= 0 and float(fg.max()) <= 1 and float(fg.std(0).mean()) > 0.1
    # the skirt's red dominates the lower half of the front view, the shirt's blue the upper half
    front = img[0, list(walk.views).index(0)]
    m = mask[0, list(walk.views).index(0)]
    rows = m.any(1).nonzero().squeeze(1)
    top, bottom = int(rows.min()), int(rows.max())
    h = bottom - top
    torso = front[top + h // 5 : top + 2 * h // 5][m[top + h // 5 : top + 2 * h // 5]].mean(0)
    skirt = front[top + 9 * h // 20 : top + 13 * h // 20][m[top + 9 * h // 20 : top + 13 * h // 20]].mean(0)
    assert torso[2] > torso[0] and skirt[0] > skirt[2]


def test_render_time_of_an_eight_camera_frame(walk):
    _, K, E = W.camera_rig(list(range(0, 16, 2)), 64)
    W.render(walk.template, walk.vertices[0], K, E, 64)  # warm up
    start = time.perf_counter()
    rgb, mask, depth = W.render(walk.template, walk.vertices[1], K, E, 64)
    elapsed = time.perf_counter() - start
    assert rgb.shape == (8, 64, 64, 3) and mask.any()
    assert elapsed < 1.0, f"{elapsed:.3f} s for 8 cameras at 64 px"


def test_axis_angle_round_trip():
    g = torch.Generator().manual_seed(1)
    v = torch.randn(100, 3, generator=g, dtype=F64)
    v = v / v.norm(dim=-1, keepdim=True) * torch.rand(100, 1, generator=g, dtype=F64) * (math.pi - 1e-3)
    back = W.matrix_to_axis_angle(W.axis_angle_matrix(v))
    assert (back - v).abs().max() < 1e-9
