"""Signed distance and colour of triangle meshes (common/mesh_sdf.py) and BiDiff's mesh-folder data: a box
mesh gives the analytic box SDF, the pruned search equals the search over every face, the winding number
tells inside from outside (also with a hole), barycentric colours, truncation, and the folder layout's
checks, normalisation, vocabulary and cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from papernodes.models.bidiff import mesh_data
from papernodes.models.common import mesh_sdf as M
from papernodes.models.common.errors import InputError


def _mesh(m, dtype=torch.float64):
    return torch.tensor(m.vertices, dtype=dtype), torch.tensor(m.faces)


def _points(n: int, seed: int = 0, scale: float = 1.0) -> torch.Tensor:
    return (
        torch.rand(n, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1
    ) * scale


def test_a_box_mesh_gives_the_analytic_box_sdf_in_every_region():
    v, f = _mesh(trimesh.creation.box(extents=(1.0, 0.6, 0.8)))
    p = _points(4000, scale=1.2)  # inside, and outside beyond faces, edges and corners
    q = p.abs() - torch.tensor([0.5, 0.3, 0.4], dtype=torch.float64)
    exact = q.clamp_min(0).norm(dim=-1) + q.amax(-1).clamp_max(0)
    sdf, _ = M.mesh_sdf(p, v, f)
    torch.testing.assert_close(sdf, exact, atol=1e-12, rtol=0)


def test_pruning_finds_the_nearest_face_of_all():
    sphere = trimesh.creation.icosphere(2, radius=0.6)
    v, f = _mesh(sphere)
    v = v * (1 + 0.2 * torch.rand(len(v), 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    p = _points(500, seed=2)
    dist, index, bary = M.closest_points(p, v, f)
    every = torch.arange(len(f)).expand(len(p), -1)
    ref_dist, _, ref_bary = M._nearest(p, v[f][None].expand(len(p), -1, -1, -1), every)
    torch.testing.assert_close(dist, ref_dist, atol=1e-12, rtol=0)
    nearest = torch.einsum("pk,pkc->pc", bary, v[f[index]])  # the reported point is on the reported face
    torch.testing.assert_close((p - nearest).norm(dim=-1), dist, atol=1e-12, rtol=0)
    assert (bary >= -1e-12).all() and torch.allclose(bary.sum(-1), torch.ones(len(p), dtype=torch.float64))


def test_winding_numbers_tell_inside_from_outside_also_through_a_hole():
    v, f = _mesh(trimesh.creation.icosphere(3, radius=0.7))
    inside, outside = (
        _points(200, 3, 0.35),
        _points(200, 4) * 0 + torch.tensor([0.0, 0.0, 0.9], dtype=torch.float64),
    )
    w_in, w_out = M.winding_numbers(inside, v, f), M.winding_numbers(outside + _points(200, 5, 0.1), v, f)
    torch.testing.assert_close(w_in, torch.ones_like(w_in), atol=1e-9, rtol=0)
    torch.testing.assert_close(w_out, torch.zeros_like(w_out), atol=1e-9, rtol=0)
    holed = f[(v[f].mean(1)[:, 1] < 0.65)]  # cut a cap off the top (y > 0.65)
    assert len(holed) < len(f)
    sdf, _ = M.mesh_sdf(inside, v, holed)
    assert (sdf < 0).all()  # still inside: the winding number is ~1 minus the missing cap's share


def test_colours_interpolate_on_the_nearest_face_and_truncation_keeps_near_points_exact():
    v = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    f = torch.tensor([[0, 1, 2]])
    colors = torch.eye(3, dtype=torch.float64)
    p = torch.tensor([[1 / 3, 1 / 3, 0.5], [-1.0, -1.0, 0.2], [0.5, 0.5, -0.1]], dtype=torch.float64)
    _, col = M.mesh_sdf(p, v, f, colors)
    expected = torch.tensor([[1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.0, 0.5, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(col, expected, atol=1e-12, rtol=0)
    sv, sf = _mesh(trimesh.creation.icosphere(2, radius=0.7))
    p = _points(800, 6)
    exact, _, _ = M.closest_points(p, sv, sf)
    cut, _, _ = M.closest_points(p, sv, sf, max_distance=0.2)
    near = exact < 0.2
    torch.testing.assert_close(cut[near], exact[near], atol=1e-12, rtol=0)
    assert near.any() and (~near).any() and (cut[~near] >= 0.2).all()
    with pytest.raises(InputError, match="faces"):
        M.mesh_sdf(p, sv, sf + len(sv))
    with pytest.raises(InputError, match="colors"):
        M.mesh_sdf(p, sv, sf, colors)


@pytest.fixture
def folder(tmp_path):
    box = trimesh.creation.box(extents=(2.0, 1.0, 1.0))
    box.visual.vertex_colors = np.tile([255, 0, 0, 255], (len(box.vertices), 1))
    box.export(tmp_path / "box.glb")
    (tmp_path / "box.txt").write_text("a red box\n")
    trimesh.creation.icosphere(2, radius=3.0).export(tmp_path / "ball.obj")
    (tmp_path / "ball.txt").write_text("A grey ball.")
    return tmp_path


def test_a_mesh_folder_gives_normalised_coloured_scenes_and_caches_them(folder, tmp_path, monkeypatch):
    data = mesh_data.MeshFolder(folder, grid_resolution=24, cache_dir=tmp_path / "cache")
    assert len(data) == 2 and data.vocabulary() == ["a", "ball", "box", "grey", "red"]
    ball, box = data.scene(0), data.scene(1)
    assert (ball.caption, box.caption) == ("A grey ball.", "a red box")
    p = torch.tensor([[0.78, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.0]])
    # the box is scaled to half-extents 0.8 x 0.4 x 0.4; the grid is 24³ over [-1, 1]³ (trilinear)
    torch.testing.assert_close(box.sdf(p)[:2], torch.tensor([-0.02, 0.1]), atol=0.01, rtol=0)
    assert box.sdf(p)[2] < -0.3  # deep inside: only known to be beyond the truncation
    torch.testing.assert_close(box.color(p[:1]), torch.tensor([[1.0, 0.0, 0.0]]))
    torch.testing.assert_close(
        ball.sdf(torch.tensor([[0.0, 0.79, 0.0]])), torch.tensor([0.0]), atol=0.02, rtol=0
    )
    torch.testing.assert_close(ball.color(p[:1]), torch.full((1, 3), mesh_data.DEFAULT_COLOR))
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2

    def recompute(*args):
        raise AssertionError("the cached grid was recomputed")

    monkeypatch.setattr(mesh_data, "mesh_grid", recompute)
    assert torch.equal(data.scene(1).shape.info["grid"], box.shape.info["grid"])


def test_a_mesh_folder_refuses_a_bad_layout(folder, tmp_path):
    (folder / "ball.txt").unlink()
    with pytest.raises(InputError, match="ball.obj"):
        mesh_data.MeshFolder(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="none in"):
        mesh_data.MeshFolder(tmp_path / "empty")
    with pytest.raises(InputError, match="not a folder"):
        mesh_data.MeshFolder(folder / "box.glb")


def test_the_trainers_read_a_mesh_folder(folder, tmp_path):
    from papernodes.models.bidiff import train_bidiff as T
    from papernodes.models.bidiff.pipeline import load_bidiff

    cfg = T.TrainConfig(out=str(tmp_path / "run"), data=str(folder), views=2, size=8, resolution=8, max_steps=1,
                        batch_size=2, save_every=0, ema_decay=0.0, cpu=True)  # fmt: skip
    model = load_bidiff(T.train(cfg))
    assert (
        model.multiview.config.vocabulary
        == model.volume.config.vocabulary
        == ["a", "ball", "box", "grey", "red"]
    )
    assert len(list((tmp_path / "run" / "mesh_grids").glob("*.safetensors"))) == 2
