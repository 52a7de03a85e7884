"""The official-subject nodes (nodes/trihuman_official.py) without ComfyUI: a toy subject in the release's
layout inside a fake models/trihuman folder is listed, loaded and rendered; names outside the folder,
missing folders and frames beyond the motion are errors naming the input."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch
from helpers_trihuman_official import write_subject
from papernodes.models.common.errors import InputError, WeightsNotFoundError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("comfy")
    (root / "trihuman").mkdir()
    (root / "output").mkdir()
    write_subject(root / "trihuman")
    fake = types.ModuleType("folder_paths")
    fake.get_folder_paths = lambda kind: [str(root / kind)] if kind == "trihuman" else []
    fake.get_filename_list = lambda kind: []
    fake.get_output_directory = lambda: str(root / "output")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "folder_paths", fake)
        from papernodes.nodes import trihuman_official

        yield trihuman_official


def test_nodes_list_the_subject_folders_and_have_tooltips(env):
    nd = env
    req = nd.LoadOfficialSubject.INPUT_TYPES()["required"]
    assert req["metadata"][0] == ["Toy_metadata"] and req["checkpoints"][0] == ["Toy_checkpoints"]
    for key, cls in nd.NODE_CLASS_MAPPINGS.items():
        assert cls.CATEGORY == "PaperNodes/TriHuman" and key in nd.NODE_DISPLAY_NAME_MAPPINGS
        for name, (_, opts) in cls.INPUT_TYPES()["required"].items():
            assert opts.get("tooltip"), f"{cls.__name__}.{name}"


def test_load_and_render_frames(env):
    nd = env
    subject = nd.LoadOfficialSubject().load("Toy_metadata", "Toy_checkpoints")[0]
    images, mask = nd.RenderOfficialFrames().render(subject, "test", 0, 2, 2, 0, 0.5)
    assert images.shape == (2, 24, 32, 3) and mask.shape == (2, 24, 32)
    assert images.dtype == torch.float32 and (images >= 0).all() and (images <= 1).all()
    assert (images[mask == 0] == 0).all()  # black where nothing is seen


def test_mesh_node_writes_a_glb(env):
    nd = env
    subject = nd.LoadOfficialSubject().load("Toy_metadata", "Toy_checkpoints")[0]
    mesh, glb = nd.OfficialFrameMesh().mesh(subject, "test", 2, "toy")
    import folder_paths  # the fake above

    assert glb.endswith(".glb") and (Path(folder_paths.get_output_directory()) / glb).is_file()
    stage = subject.subdivision[1]
    assert tuple(mesh.vertices.shape) == (1, len(stage["prev_to_cur_st"]), 3)
    with pytest.raises(InputError, match="filename_prefix"):
        nd.OfficialFrameMesh().mesh(subject, "test", 2, "../x")


def test_bad_inputs_name_the_input(env):
    nd = env
    with pytest.raises(InputError, match="metadata"):
        nd.LoadOfficialSubject().load("../Toy_metadata", "Toy_checkpoints")
    with pytest.raises(InputError, match="metadata"):
        nd.LoadOfficialSubject().load(nd.NO_METADATA, "Toy_checkpoints")
    with pytest.raises(WeightsNotFoundError):
        nd.LoadOfficialSubject().load("Other_metadata", "Toy_checkpoints")
    subject = nd.LoadOfficialSubject().load("Toy_metadata", "Toy_checkpoints")[0]
    with pytest.raises(InputError, match="first_frame"):
        nd.RenderOfficialFrames().render(subject, "test", 1, 2, 5, 0, 0.5)
    with pytest.raises(InputError, match="subject"):
        nd.RenderOfficialFrames().render("not a subject", "test", 0, 1, 1, 0, 0.5)
