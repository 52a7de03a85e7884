"""Mesh I/O (models/common/mesh_io.py): exact GLB/OBJ round trips, vertex colours, a unit cube's measures,
core MESH tensors, Preview3D files, and errors that name the input or the file."""

from __future__ import annotations

import json
import struct
import types

import numpy as np
import pytest
import torch
from papernodes.models.common import mesh_io as M
from papernodes.models.common.errors import InputError

trimesh = pytest.importorskip("trimesh")


def _random_mesh(seed: int = 0, n: int = 50, m: int = 80, colors: bool = False):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(n, 3, generator=g) * torch.tensor([1e-3, 1.0, 1e3])  # three magnitudes of coordinates
    f = torch.randint(0, n, (m, 3), generator=g)
    c = torch.randint(0, 256, (n, 3), generator=g).float() / 255 if colors else None
    return v, f, c


@pytest.mark.parametrize("suffix", [".glb", ".obj"])
def test_round_trip_is_exact_for_vertices_and_faces(tmp_path, suffix):
    v, f, _ = _random_mesh()
    v = torch.cat([v, torch.tensor([[7.0, 8.0, 9.0]])])  # an unused vertex is kept, in place
    path = M.write_mesh(M.to_trimesh(v, f), tmp_path / f"m{suffix}")
    v2, f2, c2 = M.from_trimesh(M.read_mesh(path))
    assert v2.dtype == torch.float32 and f2.dtype == torch.int64
    assert torch.equal(v2, v) and torch.equal(f2, f)
    assert c2 is None


def test_float64_vertices_are_stored_as_float32(tmp_path):
    v, f, _ = _random_mesh(1)
    v64 = v.double() + 1e-12  # below float32 resolution at these magnitudes for most entries
    path = M.write_glb(M.to_trimesh(v64, f), tmp_path / "m.glb")
    v2, _, _ = M.from_trimesh(M.read_mesh(path))
    assert torch.equal(v2, v64.float())


@pytest.mark.parametrize("suffix", [".glb", ".obj"])
def test_vertex_colours_survive(tmp_path, suffix):
    v, f, c = _random_mesh(2, colors=True)
    path = M.write_mesh(M.to_trimesh(v, f, c), tmp_path / f"c{suffix}")
    _, _, c2 = M.from_trimesh(M.read_mesh(path))
    assert c2.shape == (len(v), 4)
    assert torch.equal(c2[:, :3], c)  # k / 255 in float32 both ways: bit-identical
    assert torch.equal(c2[:, 3], torch.ones(len(v)))


def test_glb_keeps_alpha_and_uses_cores_accessor_types(tmp_path):
    v, f, c = _random_mesh(3, colors=True)
    alpha = torch.randint(0, 256, (len(v), 1), generator=torch.Generator().manual_seed(4)).float() / 255
    data = M.glb_bytes(M.to_trimesh(v, f, torch.cat([c, alpha], 1)))
    (tmp_path / "a.glb").write_bytes(data)
    _, _, c2 = M.from_trimesh(M.read_mesh(tmp_path / "a.glb"))
    assert torch.equal(c2[:, 3:], alpha)
    # The JSON chunk: positions FLOAT (5126) VEC3 and indices UNSIGNED_INT (5125), as core save_glb writes.
    magic, version, _ = struct.unpack_from("<4sII", data, 0)
    length, kind = struct.unpack_from("<II", data, 12)
    assert (magic, version, kind) == (b"glTF", 2, 0x4E4F534A)
    gltf = json.loads(data[20 : 20 + length])
    prim = gltf["meshes"][0]["primitives"][0]
    pos, idx = gltf["accessors"][prim["attributes"]["POSITION"]], gltf["accessors"][prim["indices"]]
    assert (pos["componentType"], pos["type"], pos["count"]) == (5126, "VEC3", len(v))
    assert (idx["componentType"], idx["count"]) == (5125, f.numel())


@pytest.mark.parametrize("suffix", [".glb", ".obj"])
def test_unit_cube_area_and_volume_after_round_trip(tmp_path, suffix):
    box = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    path = M.write_mesh(box, tmp_path / f"cube{suffix}")
    back = M.read_mesh(path)
    assert back.is_watertight
    assert back.area == pytest.approx(6.0, abs=1e-6)
    assert back.volume == pytest.approx(1.0, abs=1e-6)
    assert np.array_equal(back.vertices, box.vertices) and np.array_equal(back.faces, box.faces)


def test_core_mesh_tensors_both_ways():
    a, fa, _ = _random_mesh(5, n=20, m=30)
    b, fb, _ = _random_mesh(6, n=20, m=30)
    vertices, faces = M.to_core_mesh([M.to_trimesh(a, fa), M.to_trimesh(b, fb)])
    assert vertices.dtype == torch.float32 and faces.dtype == torch.int64
    assert torch.equal(vertices, torch.stack([a, b])) and torch.equal(faces, torch.stack([fa, fb]))
    one_v, one_f = M.to_core_mesh(M.to_trimesh(a, fa))
    assert torch.equal(one_v, a[None]) and torch.equal(one_f, fa[None])
    core_like = types.SimpleNamespace(vertices=vertices, faces=faces)  # comfy_api's MESH has these two
    meshes = M.from_core_mesh(core_like)
    assert len(meshes) == 2
    for mesh, v, f in zip(meshes, (a, b), (fa, fb)):
        v2, f2, _ = M.from_trimesh(mesh)
        assert torch.equal(v2, v) and torch.equal(f2, f)
    (single,) = M.from_core_mesh(a, fa)  # unbatched tensors are one mesh
    assert torch.equal(M.from_trimesh(single)[0], a)


def test_core_mesh_batch_needs_equal_counts():
    a, fa, _ = _random_mesh(7, n=20, m=30)
    b, fb, _ = _random_mesh(8, n=21, m=30)
    with pytest.raises(
        InputError, match=r"Input 'meshes': expected meshes with equal vertex and face counts"
    ):
        M.to_core_mesh([M.to_trimesh(a, fa), M.to_trimesh(b, fb)], name="meshes")


def test_preview_glb_files_number_up_and_load(tmp_path):
    v, f, _ = _random_mesh(9)
    mesh = M.to_trimesh(v, f)
    first = M.save_preview_glb(mesh, tmp_path, prefix="hand")
    second = M.save_preview_glb(mesh, tmp_path, prefix="hand")
    assert (first, second) == ("mesh/hand_00001_.glb", "mesh/hand_00002_.glb")
    v2, f2, _ = M.from_trimesh(M.read_mesh(tmp_path / second))
    assert torch.equal(v2, v) and torch.equal(f2, f)
    with pytest.raises(InputError, match="Input 'prefix'"):
        M.save_preview_glb(mesh, tmp_path, prefix="../escape")
    with pytest.raises(InputError, match="Input 'subfolder'"):
        M.save_preview_glb(mesh, tmp_path, subfolder="/abs")


@pytest.mark.parametrize(
    ("vertices", "faces", "colors", "match"),
    [
        (
            torch.zeros(4, 3),
            torch.tensor([[0, 1, 4]]),
            None,
            r"face indices in 0\.\.3 \(4 vertices\), got index 4",
        ),
        (torch.zeros(4, 3), torch.tensor([[0, -1, 2]]), None, r"face indices in 0\.\.3 .*got index -1"),
        (
            torch.zeros(4, 2),
            torch.tensor([[0, 1, 2]]),
            None,
            r"vertices of shape \[N, 3\], got vertices of shape \[4, 2\]",
        ),
        (torch.zeros(4, 3), torch.tensor([[0, 1, 2, 3]]), None, r"triangle faces of shape \[M, 3\]"),
        (torch.zeros(4, 3), torch.tensor([[0.0, 1.0, 2.0]]), None, "integer face indices"),
        (
            torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, float("nan"), 0]]),
            torch.tensor([[0, 1, 2]]),
            None,
            "finite",
        ),
        (
            torch.zeros(3, 3),
            torch.tensor([[0, 1, 2]]),
            torch.zeros(2, 3),
            r"vertex colours of shape \[3, 3\]",
        ),
        (torch.zeros(3, 3), torch.tensor([[0, 1, 2]]), torch.full((3, 3), 1.5), "vertex colours in 0..1"),
    ],
)
def test_bad_meshes_raise_input_error_naming_the_input(vertices, faces, colors, match):
    with pytest.raises(InputError, match=rf"Input 'hand_mesh': expected .*{match}"):
        M.to_trimesh(vertices, faces, colors, name="hand_mesh")


def test_bad_core_mesh_and_files(tmp_path):
    with pytest.raises(InputError, match=r"Input 'mesh\[1\]': expected face indices in 0\.\.2"):
        M.from_core_mesh(torch.zeros(2, 3, 3), torch.tensor([[[0, 1, 2]], [[0, 1, 3]]]))
    with pytest.raises(InputError, match="same batch size"):
        M.from_core_mesh(torch.zeros(2, 3, 3), torch.zeros(3, 1, 3, dtype=torch.long))
    with pytest.raises(InputError, match="Input 'mesh': expected a MESH"):
        M.from_core_mesh("not a mesh")
    with pytest.raises(InputError, match="Input 'path'"):
        M.write_mesh(trimesh.creation.box(), tmp_path / "cube.stl")
    bad = tmp_path / "broken.glb"
    bad.write_bytes(b"glTF not really")
    with pytest.raises(M.MeshFileError, match="broken.glb: cannot be read as a mesh"):
        M.read_mesh(bad)
    with pytest.raises(M.MeshFileError, match="missing.obj: no such file"):
        M.read_mesh(tmp_path / "missing.obj")
