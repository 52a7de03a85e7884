"""BiDiff nodes (nodes/bidiff.py) without ComfyUI: a tiny grid prior in a fake models/bidiff folder and a
tiny Shap-E folder in a fake models/diffusers, sampled, meshed (batched meshes of different sizes padded
with invisible faces) and rendered; the world's exact shape through the same mesh and view functions;
InputErrors naming the input."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from papernodes.models.bidiff.demo import TINY_MV, TINY_VOL
from papernodes.models.bidiff.grid_prior import GridPriorConfig, GridUNet, save_grid_prior
from papernodes.models.bidiff.pipeline import BiDiffModel, save_bidiff
from papernodes.models.bidiff.world import Primitive, Scene
from papernodes.models.common.errors import InputError, WeightsNotFoundError

TINY = GridPriorConfig(resolution=8, channels=(8, 16), emb=16)


@pytest.fixture()
def nodes(tmp_path, monkeypatch):
    folders = {"bidiff": [str(tmp_path / "bidiff")], "diffusers": [str(tmp_path / "diffusers")]}
    for name in (*folders, "input", "output"):
        (tmp_path / name).mkdir()
    fake = types.ModuleType("folder_paths")
    fake.get_folder_paths = lambda kind: folders.get(kind, [])
    fake.get_input_directory = lambda: str(tmp_path / "input")
    fake.get_output_directory = lambda: str(tmp_path / "output")
    fake.get_filename_list = lambda kind: sorted(
        str(p.relative_to(tmp_path / kind)) for p in (tmp_path / kind).rglob("*") if p.is_file()
    )
    monkeypatch.setitem(sys.modules, "folder_paths", fake)
    torch.manual_seed(0)
    save_grid_prior(GridUNet(TINY), tmp_path / "bidiff" / "tiny.safetensors")
    save_bidiff(BiDiffModel(TINY_MV, TINY_VOL), tmp_path / "bidiff" / "tiny-bidiff.safetensors")
    from papernodes.nodes import bidiff

    return bidiff, tmp_path


def test_every_input_has_a_tooltip(nodes):
    nd, _ = nodes
    for cls in nd.NODE_CLASS_MAPPINGS.values():
        for group in cls.INPUT_TYPES().values():
            for name, (_, opts) in group.items():
                assert opts.get("tooltip"), f"{cls.__name__}.{name}"


def test_grid_prior_samples_meshes_and_renders(nodes):
    nd, _ = nodes
    assert "tiny.safetensors" in nd.LoadGridPrior.INPUT_TYPES()["required"]["model_name"][0]
    prior = nd.LoadGridPrior().load("tiny.safetensors")[0]
    (shapes,) = nd.SamplePrior().sample(prior, "a red cube", 0, 2, 2, 0.0)
    assert len(shapes) == 2 and shapes[0].prompt == "a red cube"
    (mesh,) = nd.ShapesToMesh().mesh(shapes, 16)
    assert mesh.vertices.shape[0] == 2 and mesh.faces.shape[0] == 2
    images, masks = nd.RenderViews().render(shapes, 3, 16, 20.0, 8)
    assert images.shape == (6, 16, 16, 3) and masks.shape == (6, 16, 16)
    assert images.dtype == torch.float32 and 0 <= images.min() and images.max() <= 1


def test_exact_sphere_mesh_and_views(nodes):
    nd, _ = nodes
    sphere = Scene((Primitive("sphere", "blue", size=0.5),)).shape3d()
    (mesh,) = nd.ShapesToMesh().mesh([sphere], 32)
    v = mesh.vertices[0]
    assert (v.norm(dim=-1) - 0.5).abs().max() < 2 / 31  # on the sphere within a grid cell
    _, masks = nd.RenderViews().render([sphere], 2, 32, 0.0, 64)
    # the sphere's silhouette from 3 units with a 40-degree view: radius = f * 0.5 / sqrt(3^2 - 0.5^2)
    import math

    f = 16 / math.tan(math.radians(20))
    expected = math.pi * (f * 0.5 / math.sqrt(9 - 0.25)) ** 2
    assert masks[0].sum().item() == pytest.approx(expected, rel=0.08)


def test_meshes_of_different_sizes_are_padded_with_invisible_faces(nodes):
    nd, _ = nodes
    big = Scene((Primitive("sphere", "red", size=0.7),)).shape3d()
    small = Scene((Primitive("cube", "green", size=0.3),)).shape3d()
    (mesh,) = nd.ShapesToMesh().mesh([big, small], 24)
    v, f = mesh.vertices, mesh.faces
    assert v.shape[1] > 0 and f.shape[1] > 0
    for b in range(2):
        tri = v[b][f[b]]
        area = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).norm(dim=-1)
        real = (area > 0).sum().item()
        assert real > 0
    # the small cube's padding faces are degenerate (all on one vertex)
    pad = f[1][(f[1] == f[1][:, :1]).all(-1)]
    assert len(pad) > 0


def test_shap_e_folder_loads_through_the_node(nodes):
    from helpers_bidiff import write_tiny_shap_e

    nd, tmp = nodes
    write_tiny_shap_e(tmp / "diffusers" / "shap-e")
    assert "shap-e" in nd.LoadShapE.INPUT_TYPES()["required"]["model_name"][0]
    prior = nd.LoadShapE().load("shap-e")[0]
    (shapes,) = nd.SamplePrior().sample(prior, "a chair", 0, 1, 2, 0.0)
    assert shapes[0].source == "shap-e"
    with pytest.raises(WeightsNotFoundError, match="missing-folder"):
        nd.LoadShapE().load("missing-folder")


def test_inputs_are_checked_by_name(nodes):
    nd, _ = nodes
    prior = nd.LoadGridPrior().load("tiny.safetensors")[0]
    with pytest.raises(InputError, match="prompt"):
        nd.SamplePrior().sample(prior, "  ", 0, 1, 2, 0.0)
    with pytest.raises(InputError, match="prior"):
        nd.SamplePrior().sample("not a prior", "a cube", 0, 1, 2, 0.0)
    with pytest.raises(InputError, match="shapes"):
        nd.ShapesToMesh().mesh([], 16)
    sphere = Scene((Primitive("sphere", "blue"),)).shape3d()
    with pytest.raises(InputError, match="resolution"):
        nd.ShapesToMesh().mesh([sphere], 4)
    with pytest.raises(InputError, match="views"):
        nd.RenderViews().render([sphere], 0, 16, 0.0, 8)
    with pytest.raises(WeightsNotFoundError):
        nd.LoadGridPrior().load("../escape.safetensors")


def test_generate_3d_with_and_without_a_prior(nodes):
    nd, _ = nodes
    model = nd.LoadBiDiff().load("tiny-bidiff.safetensors")[0]
    prior = nd.LoadGridPrior().load("tiny.safetensors")[0]
    shapes, views, renders = nd.Generate3D().generate(model, "a red cube", "", "", 0, 2, 7.0, 7.0, 0.6)
    assert len(shapes) == 1 and shapes[0].source == "bidiff"
    assert views.shape == (4, 16, 16, 3) and renders.shape == (4, 16, 16, 3)
    assert 0 <= views.min() and views.max() <= 1 and 0 <= renders.min() and renders.max() <= 1
    lazy = nd.Generate3D().generate(model, "a red cube", "a torus", "", 0, 4, 7.0, 7.0, 0.5, prior=prior)
    assert not torch.equal(lazy[1], views)
    (mesh,) = nd.ShapesToMesh().mesh(lazy[0], 16)
    assert mesh.vertices.shape[0] == 1
    with pytest.raises(InputError, match="model"):
        nd.Generate3D().generate(prior, "a red cube", "", "", 0, 2, 7.0, 7.0, 0.6)
    with pytest.raises(InputError, match="prior"):
        nd.Generate3D().generate(model, "a red cube", "", "", 0, 2, 7.0, 7.0, 0.6, prior=model)
    from papernodes.models.common.errors import WeightsFormatError

    with pytest.raises(WeightsFormatError, match="not a BiDiff model"):
        nd.LoadBiDiff().load("tiny.safetensors")  # a prior file picked in the model loader


def test_refine_moves_the_shape_and_keeps_the_model_untouched(nodes):
    nd, _ = nodes
    model = nd.LoadBiDiff().load("tiny-bidiff.safetensors")[0]
    for p in model.parameters():
        p.data.add_(0.05 * torch.randn_like(p))  # a fresh model's zero output layer would give no score
    before = {k: v.clone() for k, v in model.state_dict().items()}
    (scratch,) = nd.Refine3D().refine(model, "a red cube", 3, 0.05, 7.0, 0)
    sphere = Scene((Primitive("sphere", "blue", size=0.5),)).shape3d()
    (refined,) = nd.Refine3D().refine(model, "a red cube", 3, 0.05, 7.0, 0, shapes=[sphere])
    p = torch.tensor([[0.0, 0.0, 0.0], [0.45, 0.0, 0.0], [0.9, 0.0, 0.0]])
    assert refined[0].sdf(p)[0] < 0 and refined[0].sdf(p)[2] > 0  # still the sphere, moved a little
    assert not torch.allclose(refined[0].sdf(p), sphere.sdf(p), atol=1e-4)
    assert len(scratch) == 1 and scratch[0].source == "bidiff refined"
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())  # flags put back (the model is shared)
    with pytest.raises(InputError, match="prompt"):
        nd.Refine3D().refine(model, " ", 3, 0.05, 7.0, 0)


@pytest.fixture()
def sd(nodes, monkeypatch):
    """A tiny SD1.5-architecture model as the bridge would give it, and a BiDiff SD adapter file for it."""
    from papernodes.models.bidiff.pipeline_sd import SDBiDiff, save_sd_bidiff
    from papernodes.models.common.tiny import build_tiny_components

    nd, tmp_path = nodes
    comps = build_tiny_components(0)
    monkeypatch.setattr(nd, "components_from_comfy", lambda model, clip, vae, dtype: comps)
    torch.manual_seed(0)
    adapter = SDBiDiff.fresh(
        comps.unet, 2, 32, resolution=8, features=4, channels=(8, 16), emb=16, render_samples=8
    )
    save_sd_bidiff(adapter, tmp_path / "bidiff" / "tiny-sd.safetensors")
    return nd, tmp_path, comps


def test_an_sd_adapter_generates_through_generate_3d_and_refines_through_refine_3d(sd):
    nd, _, comps = sd
    (model,) = nd.SDAdapterOnCheckpoint().load("MODEL", "CLIP", "VAE", "tiny-sd.safetensors")
    shapes, views, renders = nd.Generate3D().generate(model, "a red cube", "", "", 0, 2, 7.0, 7.0, 0.6)
    assert len(shapes) == 1 and views.shape == renders.shape == (2, 32, 32, 3)
    assert 0 <= views.min() and views.max() <= 1
    assert (
        sum(len(m._forward_hooks) for m in comps.unet.modules()) == 0
    )  # the shared U-Net is not left hooked
    (refined,) = nd.Refine3D().refine(model, "a red cube", 2, 0.05, 7.0, 0, shapes=shapes)
    assert len(refined) == 1 and refined[0].source == "bidiff refined"
    with pytest.raises(InputError, match="model"):
        nd.Generate3D().generate("not a model", "a red cube", "", "", 0, 2, 7.0, 7.0, 0.6)
    with pytest.raises(WeightsNotFoundError, match="missing.safetensors"):
        nd.SDAdapterOnCheckpoint().load("MODEL", "CLIP", "VAE", "missing.safetensors")


def test_train_node_writes_both_kinds_and_checks_its_inputs(sd, monkeypatch):
    nd, tmp_path, comps = sd
    node = nd.TrainBiDiff()
    args = dict(data_folder="", world_scenes=2, views=2, resolution=8, steps=1, seed=0, resume=False)
    out = node.train("world-size model", size=8, output_name="w", **args)
    assert out["result"][1] == "w.safetensors" and isinstance(out["result"][0], nd.BiDiffModel)
    assert (tmp_path / "bidiff" / "w.safetensors").is_file()
    out = node.train("SD adapter", size=32, output_name="s", model="MODEL", clip="CLIP", vae="VAE", **args)
    assert (
        isinstance(out["result"][0], nd.BoundSDBiDiff) and (tmp_path / "bidiff" / "s.safetensors").is_file()
    )
    with pytest.raises(InputError, match="output_name"):  # the run folder exists: resume or a new name
        node.train("world-size model", size=8, output_name="w", **args)
    with pytest.raises(InputError, match="model"):
        node.train("SD adapter", size=32, output_name="s2", **args)
    with pytest.raises(InputError, match="data_folder"):
        node.train("world-size model", size=8, output_name="w2", **{**args, "data_folder": "../outside"})
    for bad in ("a/b", "..", ".hidden"):  # a plain file name only: the run folder stays inside output/bidiff
        with pytest.raises(InputError, match="output_name"):
            node.train("world-size model", size=8, output_name=bad, **{**args, "resume": True})
    from papernodes.models.bidiff import train_bidiff

    monkeypatch.setattr(train_bidiff, "available_memory", lambda device: 8 * 2**30)
    with pytest.raises(InputError, match=r"resolution.*128³ with batch 8 needs about 72.0 GB"):
        node.train("world-size model", size=8, output_name="big", **{**args, "resolution": 128})


def test_load_sd_adapter_reads_the_model_from_the_model_folders(sd, monkeypatch):
    from papernodes.models.common.tiny import save_diffusers_folder

    nd, tmp_path, comps = sd
    save_diffusers_folder(comps, tmp_path / "diffusers" / "tiny-sd")
    (model,) = nd.LoadSDAdapter().load("diffusers/tiny-sd", "tiny-sd.safetensors")
    assert isinstance(model, nd.BoundSDBiDiff)
    with pytest.raises(WeightsNotFoundError):
        nd.LoadSDAdapter().load("diffusers/missing", "tiny-sd.safetensors")


def test_load_adapter_takes_a_deepfloyd_if_folder(nodes):
    from helpers_bidiff import write_tiny_if_folder
    from papernodes.models.bidiff.if_base import load_if_folder
    from papernodes.models.bidiff.pipeline_sd import SDBiDiff, save_sd_bidiff

    nd, tmp_path = nodes
    folder = write_tiny_if_folder(tmp_path / "diffusers" / "IF-I-tiny")
    torch.manual_seed(0)
    adapter = SDBiDiff.fresh(load_if_folder(folder).unet, 2, 16, resolution=8, features=4, channels=(8, 16),
                             emb=16, render_samples=8)  # fmt: skip
    save_sd_bidiff(adapter, tmp_path / "bidiff" / "tiny-if.safetensors")
    (model,) = nd.LoadSDAdapter().load("diffusers/IF-I-tiny", "tiny-if.safetensors")
    assert model.components.vae is None  # pixel space: IF's views are the samples
    shapes, views, renders = nd.Generate3D().generate(model, "a red cube", "", "", 0, 2, 7.0, 7.0, 0.6)
    assert len(shapes) == 1 and views.shape == renders.shape == (2, 16, 16, 3)
    with pytest.raises(InputError, match="in_channels: expected 3, got 4"):  # an IF adapter on an SD model
        from papernodes.models.common.tiny import build_tiny_components, save_diffusers_folder

        save_diffusers_folder(build_tiny_components(0), tmp_path / "diffusers" / "tiny-sd")
        nd.LoadSDAdapter().load("diffusers/tiny-sd", "tiny-if.safetensors")
