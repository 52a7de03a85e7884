"""One official frame end to end (models/trihuman/official/frame): a small hand-written character with
random networks in the official layout, rendered from one camera; the cast pixels, the near/far window
filter and the ray of a pixel against values computed independently (the release's pixel convention and
normalised space)."""

from __future__ import annotations

import pytest
import torch
from helpers_trihuman_official import SKELETON
from papernodes.models.common.errors import InputError
from papernodes.models.trihuman.official import (
    OfficialExplicitNetworks,
    OfficialImplicitConfig,
    OfficialImplicitNetworks,
    OfficialTriHuman,
    read_skeleton,
    write_skeleton,
)
from papernodes.models.trihuman.official import frame as FR
from papernodes.models.trihuman.official.files import OfficialSkin, edges_from_faces
from papernodes.models.trihuman.official.motion_texture import release_uv_map
from papernodes.models.trihuman.official.posing import ReleaseRig

torch.set_num_threads(1)
F64 = torch.float64


def _character(tmp_path):
    write_skeleton(tmp_path / "ddc.skeleton", SKELETON)
    skeleton = read_skeleton(tmp_path / "ddc.skeleton")
    nx, ny, step = 9, 3, 25.0
    xs, ys = torch.meshgrid(
        torch.arange(nx, dtype=F64) * step, torch.arange(ny, dtype=F64) * step, indexing="ij"
    )
    v = torch.stack([xs.reshape(-1), ys.reshape(-1), torch.zeros(nx * ny, dtype=F64)], 1)
    faces = []
    for i in range(nx - 1):
        for j in range(ny - 1):
            a, b, c, d = i * ny + j, (i + 1) * ny + j, i * ny + j + 1, (i + 1) * ny + j + 1
            faces += [[a, b, c], [b, d, c]]
    faces = torch.tensor(faces)
    corner_uvs = (v[:, :2] / torch.tensor([200.0, 50.0], dtype=F64) * 0.8 + 0.1)[faces]
    arm = (v[:, 0] - 75).clamp(0, 50) / 50
    skin = OfficialSkin(("Root", "Arm"), torch.stack([1 - arm, arm], 1), (arm > 0.5).long())
    graph_idx = [0, 7, 13, 19, 26]
    rig = ReleaseRig.build(v, faces, skeleton, skin, torch.zeros(4, dtype=F64), v[graph_idx])
    torch.manual_seed(0)
    implicit = OfficialImplicitNetworks(OfficialImplicitConfig(motion_d_in=4 * 3 - 3)).double().eval()
    explicit = OfficialExplicitNetworks(len(graph_idx), v.shape[0]).double().eval()
    graph_edges = torch.tensor([[0, 1], [1, 2], [2, 3], [3, 4]])
    explicit.spatial_gcn.set_mesh(graph_edges)
    explicit.delta_gcn.set_mesh(edges_from_faces(faces))
    return OfficialTriHuman(implicit, explicit), rig, corner_uvs


def _camera():
    """Looking down -z at the strip (metres) from 0.5 m above its middle, 48 x 64 pixels."""
    K = torch.tensor([[150.0, 0, 31.5], [0, 150.0, 23.5], [0, 0, 1]], dtype=F64)
    centre = torch.tensor([0.1, 0.025, 0.5], dtype=F64)
    R = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=F64))
    E = torch.eye(4, dtype=F64)
    E[:3, :3], E[:3, 3] = R, -R @ centre
    return K, E, centre


def test_depth_window_filter_equals_a_loop():
    g = torch.Generator().manual_seed(0)
    depth = torch.rand(12, 10, generator=g, dtype=F64) * 100 + 500
    covered = torch.rand(12, 10, generator=g) > 0.7
    near, far, mask = FR.depth_near_far(depth, covered, window=3, offset_mm=30.0)
    for i in range(12):
        for j in range(10):
            win = [
                (a, b)
                for a in range(i - 1, i + 2)
                for b in range(j - 1, j + 2)
                if 0 <= a < 12 and 0 <= b < 10
            ]
            hit = [float(depth[a, b]) for a, b in win if covered[a, b]]
            assert bool(mask[i, j]) == bool(hit)
            if hit:
                assert (
                    abs(float(near[i, j]) - (min(hit) - 30)) < 1e-9
                    and abs(float(far[i, j]) - (max(hit) + 30)) < 1e-9
                )


def _hit_distance(o, d, vertices, faces):
    """Nearest ray-triangle hit (Moller-Trumbore), or None."""
    best = None
    for f in faces.tolist():
        a, b, c = vertices[f[0]], vertices[f[1]], vertices[f[2]]
        e1, e2 = b - a, c - a
        p = torch.linalg.cross(d, e2)
        det = float(e1 @ p)
        if abs(det) < 1e-15:
            continue
        s = o - a
        u = float(s @ p) / det
        q = torch.linalg.cross(s, e1)
        v = float(d @ q) / det
        t = float(e2 @ q) / det
        if u >= 0 and v >= 0 and u + v <= 1 and t > 0:
            best = t if best is None else min(best, t)
    return best


def test_official_frame_casts_the_release_rays_near_the_template(tmp_path, monkeypatch):
    nets, rig, corner_uvs = _character(tmp_path)
    uv_map = release_uv_map(corner_uvs, 32)
    dofs = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.005, 0.0, 0.0, 0.2], [0.01, 0.02, 0.0, 0.4]], dtype=F64)
    normalized = torch.stack([dofs, dofs, dofs], 1)
    base_trans = torch.tensor([0.1, 0.0, 0.0], dtype=F64)
    K, E, centre = _camera()
    real = FR.release_render_rays
    seen = {}

    def record(nets_, planes, o, d, near, far, *args, **kwargs):
        seen.update(o=o, d=d, near=near, far=far)
        return real(nets_, planes, o, d, near, far, *args, **kwargs)

    monkeypatch.setattr(FR, "release_render_rays", record)
    args = (nets, rig, uv_map, corner_uvs, dofs, normalized, torch.arange(4), base_trans, 2, K, E, 48, 64)
    out = FR.render_official_frame(*args)
    assert out.image.shape == (48, 64, 3) and out.posed_mm.shape == (3, rig.template.shape[0], 3)
    assert out.mask.any() and not out.mask.all()  # rays only near the strip
    assert (out.image[~out.mask] == 0).all() and (out.opacity[~out.mask] == 0).all()
    root = dofs[2, :3]
    ys, xs = torch.nonzero(out.mask, as_tuple=True)  # row-major, the order the rays were cast in
    surface = out.posed_mm[0] / 1000.0
    hits = 0
    for k in range(0, len(ys), 7):
        y, x = int(ys[k]), int(xs[k])
        d_cam = torch.linalg.solve(K, torch.tensor([x, y, 1.0], dtype=F64))  # through (x, y), not its centre
        d = E[:3, :3].T @ (d_cam / d_cam.norm())
        torch.testing.assert_close(seen["d"][k], d, rtol=0, atol=1e-12)
        torch.testing.assert_close(seen["o"][k], (centre - root) / 1.2, rtol=0, atol=1e-12)
        t = _hit_distance(centre, d, surface, rig.faces)
        if t is not None:  # the surface lies between near and far (normalised units)
            hits += 1
            assert float(seen["near"][k]) < t / 1.2 < float(seen["far"][k])
    assert hits > 10


def test_frame_needs_both_checkpoints(tmp_path):
    nets, rig, corner_uvs = _character(tmp_path)
    K, E, _ = _camera()
    half = OfficialTriHuman(nets.implicit, None)
    dofs = torch.zeros(1, 4, dtype=F64)
    with pytest.raises(InputError, match="networks"):
        FR.render_official_frame(half, rig, release_uv_map(corner_uvs, 32), corner_uvs, dofs,
                                 dofs[:, None].expand(1, 3, 4), torch.arange(4), torch.zeros(3, dtype=F64), 0, K,
                                 E, 8, 8)  # fmt: skip
