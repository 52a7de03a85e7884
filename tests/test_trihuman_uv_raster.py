"""TriHuman's UV rasteriser (models/trihuman/uv_raster.py) against an independent numpy rasterisation: face
ids exact and attributes to 1e-5 on a random UV layout at 32^2, per-vertex and per-corner inputs, linear
attributes reproduced exactly, empty texels masked, the v axis (row 0 = v near 1), overlaps, chunking,
dtypes and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from papernodes.models.common.errors import InputError
from papernodes.models.trihuman import uv_raster as U

SIZE = 32


def _layout(seed: int = 0, cells: int = 6, holes: float = 0.2):
    """A jittered grid of UV triangles with some cells left empty, faces shuffled, windings mixed.

    Returns uvs [N, 2] float64 (one per grid point) and faces [F, 3] long."""
    rng = np.random.default_rng(seed)
    lo, hi = 0.04, 0.96
    step = (hi - lo) / cells
    g = np.linspace(lo, hi, cells + 1)
    uu, vv = np.meshgrid(g, g, indexing="ij")
    jitter = rng.uniform(-0.3, 0.3, size=(cells + 1, cells + 1, 2)) * step
    jitter[[0, -1], :, :] = 0  # keep the outer border straight
    jitter[:, [0, -1], :] = 0
    uvs = np.stack([uu, vv], -1) + jitter
    idx = np.arange((cells + 1) ** 2).reshape(cells + 1, cells + 1)
    faces = []
    for i in range(cells):
        for j in range(cells):
            if rng.random() < holes:
                continue
            a, b, c, d = idx[i, j], idx[i + 1, j], idx[i + 1, j + 1], idx[i, j + 1]
            tris = [(a, b, c), (a, c, d)] if rng.random() < 0.5 else [(a, b, d), (b, c, d)]
            for t in tris:
                k = rng.integers(3)
                t = t[k:] + t[:k]
                faces.append(t if rng.random() < 0.5 else t[::-1])
    faces = np.array(faces)[rng.permutation(len(faces))]
    return torch.from_numpy(uvs.reshape(-1, 2)), torch.from_numpy(faces).long()


def _reference(corner_uv: np.ndarray, corner_attr: np.ndarray, size: int):
    """Loop over texels; per texel, barycentrics of its centre in every face by the dot-product method
    (not the signed-area one the module uses); the first face (lowest index) containing it wins."""
    f, c = corner_attr.shape[0], corner_attr.shape[-1]
    image = np.zeros((size, size, c))
    face_index = np.full((size, size), -1)
    a, b, cc = corner_uv[:, 0], corner_uv[:, 1], corner_uv[:, 2]
    v0, v1 = b - a, cc - a
    d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
    denom = d00 * d11 - d01 * d01
    for i in range(size):
        for j in range(size):
            p = np.array([(j + 0.5) / size, 1 - (i + 0.5) / size])
            v2 = p - a
            d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
            with np.errstate(divide="ignore", invalid="ignore"):
                w1 = (d11 * d20 - d01 * d21) / denom
                w2 = (d00 * d21 - d01 * d20) / denom
            w0 = 1 - w1 - w2
            inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0) & (denom != 0)
            hits = np.flatnonzero(inside)
            if len(hits):
                k = hits[0]
                face_index[i, j] = k
                image[i, j] = (
                    w0[k] * corner_attr[k, 0] + w1[k] * corner_attr[k, 1] + w2[k] * corner_attr[k, 2]
                )
    assert f == len(corner_uv)
    return image, face_index


def _no_texel_on_an_edge(corner_uv: torch.Tensor, size: int, margin: float = 1e-9) -> bool:
    """The comparison with the reference is exact only when no texel centre sits on a shared edge."""
    p = U.texel_centers(size, torch.float64).reshape(-1, 1, 2)
    a = corner_uv[None]
    b = corner_uv[:, [1, 2, 0]][None]
    e = b - a
    t = (((p[..., None, :] - a) * e).sum(-1) / (e * e).sum(-1)).clamp(0, 1)
    dist = (p[..., None, :] - (a + t[..., None] * e)).norm(dim=-1)
    return bool(dist.min() > margin)


def test_matches_an_independent_numpy_rasterisation():
    uvs, faces = _layout(seed=0)
    assert _no_texel_on_an_edge(uvs[faces], SIZE)
    gen = torch.Generator().manual_seed(0)
    attributes = torch.randn(len(uvs), 5, generator=gen, dtype=torch.float64)
    out = U.rasterize_uv(uvs, faces, attributes, SIZE)
    ref_image, ref_face = _reference(uvs[faces].numpy(), attributes[faces].numpy(), SIZE)
    assert out.image.shape == (SIZE, SIZE, 5) and out.mask.shape == (SIZE, SIZE)
    assert out.face_index.dtype == torch.long and out.barycentrics.shape == (SIZE, SIZE, 3)
    np.testing.assert_array_equal(out.face_index.numpy(), ref_face)
    np.testing.assert_array_equal(out.mask.numpy(), ref_face >= 0)
    np.testing.assert_allclose(out.image.numpy(), ref_image, rtol=0, atol=1e-5)
    # barycentrics are a partition of unity over the covered texels and interpolate the attributes
    b = out.barycentrics[out.mask]
    assert bool((b >= 0).all())
    torch.testing.assert_close(b.sum(-1), torch.ones(len(b), dtype=torch.float64), rtol=0, atol=1e-12)


def test_per_corner_inputs_match_the_reference_with_discontinuous_attributes():
    uvs, faces = _layout(seed=1)
    gen = torch.Generator().manual_seed(1)
    corner_uv = uvs[faces]  # a seam-split layout: every face owns its corners
    corner_attr = torch.randn(len(faces), 3, 4, generator=gen, dtype=torch.float64)  # jumps across edges
    out = U.rasterize_uv(corner_uv, faces, corner_attr, SIZE)
    ref_image, ref_face = _reference(corner_uv.numpy(), corner_attr.numpy(), SIZE)
    np.testing.assert_array_equal(out.face_index.numpy(), ref_face)
    np.testing.assert_allclose(out.image.numpy(), ref_image, rtol=0, atol=1e-5)
    # per-vertex and per-corner forms of the same data agree exactly
    attributes = torch.randn(len(uvs), 2, generator=gen, dtype=torch.float64)
    a = U.rasterize_uv(uvs, faces, attributes, SIZE)
    b = U.rasterize_uv(corner_uv, faces, attributes[faces], SIZE)
    assert torch.equal(a.face_index, b.face_index) and torch.equal(a.image, b.image)


def test_a_linear_attribute_is_reproduced_exactly_inside_triangles():
    uvs, faces = _layout(seed=2)
    m = torch.tensor([[2.0, -1.0, 0.3], [-3.0, 0.5, 1.7]], dtype=torch.float64)
    attributes = uvs @ m + torch.tensor([0.5, 0.0, -2.0], dtype=torch.float64)
    out = U.rasterize_uv(uvs, faces, attributes, 64)
    centres = U.texel_centers(64, torch.float64)
    expected = centres @ m + torch.tensor([0.5, 0.0, -2.0], dtype=torch.float64)
    assert int(out.mask.sum()) > 1000
    torch.testing.assert_close(out.image[out.mask], expected[out.mask], rtol=0, atol=1e-12)


def test_empty_texels_are_masked():
    uvs, faces = _layout(seed=3, holes=0.3)
    out = U.rasterize_uv(uvs, faces, torch.ones(len(uvs), 2, dtype=torch.float64), SIZE)
    empty = ~out.mask
    assert 0 < int(empty.sum()) < SIZE * SIZE
    assert bool((out.face_index[empty] == -1).all()) and bool((out.face_index[out.mask] >= 0).all())
    assert bool((out.image[empty] == 0).all()) and bool((out.barycentrics[empty] == 0).all())
    torch.testing.assert_close(out.image[out.mask], torch.ones(int(out.mask.sum()), 2, dtype=torch.float64))
    # the border of the layout (outside [0.04, 0.96]) is empty
    assert not bool(out.mask[0].any()) and not bool(out.mask[:, -1].any())


def test_row_zero_is_the_top_of_the_texture_v_near_one():
    uvs = torch.tensor([[0.0, 1.0], [0.5, 1.0], [0.0, 0.5]])  # the top-left quarter's upper-left half
    faces = torch.tensor([[0, 1, 2]])
    out = U.rasterize_uv(uvs, faces, uvs, 8)
    assert bool(out.mask[0, 0]) and not bool(out.mask[-1, 0]) and not bool(out.mask[0, -1])
    assert int(out.mask.sum()) == 10  # 4 + 3 + 2 + 1 texel centres below the diagonal
    torch.testing.assert_close(out.image[0, 0], torch.tensor([1 / 16, 1 - 1 / 16]))
    centres = U.texel_centers(8)
    assert float(centres[0, 0, 1]) == 1 - 1 / 16 and float(centres[-1, 0, 1]) == 1 / 16


def test_overlapping_faces_lowest_index_wins_and_chunking_changes_nothing():
    uvs, faces = _layout(seed=4)
    big = torch.tensor([[[0.1, 0.1], [0.9, 0.2], [0.4, 0.95]]], dtype=torch.float64)  # covers many faces
    corner_uv = torch.cat([uvs[faces], big])
    all_faces = torch.cat([faces, torch.zeros(1, 3, dtype=torch.long)])
    gen = torch.Generator().manual_seed(4)
    attr = torch.randn(len(all_faces), 3, 3, generator=gen, dtype=torch.float64)
    out = U.rasterize_uv(corner_uv, all_faces, attr, SIZE)
    alone = U.rasterize_uv(corner_uv[:-1], faces, attr[:-1], SIZE)
    # the big face (last index) only shows where no other face is
    assert torch.equal(out.face_index[alone.mask], alone.face_index[alone.mask])
    assert bool((out.face_index[out.mask & ~alone.mask] == len(faces)).all())
    first = U.rasterize_uv(torch.cat([big, uvs[faces]]), all_faces, torch.cat([attr[-1:], attr[:-1]]), SIZE)
    ref_image, ref_face = _reference(
        torch.cat([big, uvs[faces]]).numpy(), torch.cat([attr[-1:], attr[:-1]]).numpy(), SIZE
    )
    np.testing.assert_array_equal(first.face_index.numpy(), ref_face)
    np.testing.assert_allclose(first.image.numpy(), ref_image, rtol=0, atol=1e-5)
    for chunk in (1, 7, 100):
        small = U.rasterize_uv(corner_uv, all_faces, attr, SIZE, chunk=chunk)
        assert torch.equal(small.face_index, out.face_index) and torch.equal(small.image, out.image)


def test_dtypes_follow_the_inputs_and_attributes_may_be_omitted():
    uvs, faces = _layout(seed=5)
    out = U.rasterize_uv(uvs.float(), faces.int(), torch.ones(len(uvs), 18), 16)
    assert out.image.dtype == torch.float32 and out.image.shape == (16, 16, 18)
    assert out.barycentrics.dtype == torch.float32
    bare = U.rasterize_uv(uvs, faces, None, 16)
    assert bare.image.shape == (16, 16, 0) and torch.equal(bare.face_index, out.face_index)
    empty = U.rasterize_uv(uvs, faces[:0], None, 4)
    assert not bool(empty.mask.any()) and bool((empty.face_index == -1).all())


def test_interpolate_uv_repaints_new_attributes_through_the_same_coverage():
    uvs, faces = _layout(seed=6)
    gen = torch.Generator().manual_seed(6)
    first = U.rasterize_uv(uvs, faces, torch.randn(len(uvs), 3, generator=gen, dtype=torch.float64), SIZE)
    frame = torch.randn(len(uvs), 18, generator=gen, dtype=torch.float64)  # the next frame's motion texture
    again = U.interpolate_uv(first.face_index, first.barycentrics, faces, frame)
    direct = U.rasterize_uv(uvs, faces, frame, SIZE).image
    torch.testing.assert_close(again, direct, rtol=0, atol=1e-14)
    with pytest.raises(InputError, match="'barycentrics'"):
        U.interpolate_uv(first.face_index, first.barycentrics[:-1], faces, frame)
    with pytest.raises(InputError, match="'attributes'"):
        U.interpolate_uv(first.face_index, first.barycentrics, faces, frame[:, 0])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"size": 0}, "size"),
        ({"size": 8.0}, "size"),
        ({"faces": torch.zeros(2, 3)}, "faces"),
        ({"faces": torch.zeros(2, 4, dtype=torch.long)}, "faces"),
        ({"faces": torch.tensor([[0, 1, 9]])}, "faces"),
        ({"uvs": torch.zeros(3, 3)}, "uvs"),
        ({"uvs": torch.zeros(3, 2, dtype=torch.long)}, "uvs"),
        ({"uvs": torch.tensor([[0.0, 0.0], [1.0, float("nan")], [0.0, 1.0]])}, "uvs"),
        ({"attributes": torch.zeros(4)}, "attributes"),
        ({"attributes": torch.zeros(2, 3, 1)}, "attributes"),
        ({"chunk": 0}, "chunk"),
    ],
)
def test_bad_inputs_raise_input_error_naming_the_input(kwargs, name):
    args = {
        "uvs": torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]),
        "faces": torch.tensor([[0, 1, 2]]),
        "attributes": torch.zeros(3, 2),
        "size": 8,
    }
    args.update(kwargs)
    with pytest.raises(InputError, match=f"'{name}'"):
        U.rasterize_uv(**args)
