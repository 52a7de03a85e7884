"""TriHuman skinning (models/trihuman/skinning.py): DQS equals LBS for single-bone weights, matrix <-> dual
quaternion round trips, the candy-wrapper twist (LBS collapses, DQS keeps the radius), the antipodality
fix, identity transforms, and errors naming the input."""

from __future__ import annotations

import math

import pytest
import torch
from papernodes.models.common.errors import InputError
from papernodes.models.trihuman import skinning as S

F64 = torch.float64


def _rotation(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues: rotations [..., 3, 3] about unit axes [..., 3] by angles [...] (radians)."""
    axis = axis / axis.norm(dim=-1, keepdim=True)
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack(
        [torch.stack([zero, -z, y], -1), torch.stack([z, zero, -x], -1), torch.stack([-y, x, zero], -1)], -2
    )
    eye = torch.eye(3, dtype=axis.dtype).expand_as(k)
    s, c = torch.sin(angle)[..., None, None], torch.cos(angle)[..., None, None]
    return eye + s * k + (1 - c) * (k @ k)


def _rigid(rotation: torch.Tensor, translation: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(*rotation.shape[:-2], 4, 4, dtype=rotation.dtype)
    out[..., :3, :3], out[..., :3, 3], out[..., 3, 3] = rotation, translation, 1
    return out


def _random_rigid(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    axis = torch.randn(*shape, 3, generator=gen, dtype=F64)
    angle = (torch.rand(*shape, generator=gen, dtype=F64) * 2 - 1) * math.pi
    return _rigid(_rotation(axis, angle), torch.randn(*shape, 3, generator=gen, dtype=F64))


def test_dqs_equals_lbs_for_single_bone_weights():
    gen = torch.Generator().manual_seed(0)
    n, j = 200, 6
    vertices = torch.randn(n, 3, generator=gen, dtype=F64)
    weights = torch.nn.functional.one_hot(torch.randint(0, j, (n,), generator=gen), j).to(F64)
    transforms = _random_rigid((2, j), gen)  # a batch of two poses
    lbs = S.linear_blend_skinning(vertices, weights, transforms)
    dqs = S.dual_quaternion_skinning(vertices, weights, transforms)
    assert lbs.shape == dqs.shape == (2, n, 3)
    torch.testing.assert_close(dqs, lbs, rtol=0, atol=1e-10)
    # and LBS with one-hot weights is just each vertex's bone transform
    bone = weights.argmax(1)
    expected = (transforms[:, bone, :3, :3] @ vertices[..., None]).squeeze(-1) + transforms[:, bone, :3, 3]
    torch.testing.assert_close(lbs, expected, rtol=0, atol=1e-12)


def test_matrix_dual_quaternion_round_trip_is_exact():
    gen = torch.Generator().manual_seed(1)
    random = _random_rigid((500,), gen)
    # rotations by (almost) 180 degrees and the identity: the branches of the quaternion extraction
    axes = torch.randn(6, 3, generator=gen, dtype=F64)
    angles = torch.tensor([math.pi, math.pi, math.pi - 1e-9, 0.0, 1e-12, -math.pi / 2], dtype=F64)
    special = _rigid(_rotation(axes, angles), torch.randn(6, 3, generator=gen, dtype=F64))
    special = torch.cat(
        [special, _rigid(torch.diag(torch.tensor([1.0, -1, -1], dtype=F64))[None], special[:1, :3, 3])]
    )
    for matrices in (random, special):
        real, dual = S.matrix_to_dual_quaternion(matrices)
        assert real.shape == dual.shape == (len(matrices), 4)
        torch.testing.assert_close(
            real.norm(dim=-1), torch.ones(len(matrices), dtype=F64), rtol=0, atol=1e-14
        )
        assert bool((real[:, 0] >= 0).all())  # the w >= 0 representative
        # a unit dual quaternion: real . dual = 0
        assert float((real * dual).sum(-1).abs().max()) < 1e-14
        back = S.dual_quaternion_to_matrix(real, dual)
        torch.testing.assert_close(back, matrices, rtol=0, atol=1e-12)
    # and the layout: dual = 0.5 (0, t) real
    t = torch.tensor([1.0, -2.0, 3.0], dtype=F64)
    real, dual = S.matrix_to_dual_quaternion(_rigid(torch.eye(3, dtype=F64), t))
    torch.testing.assert_close(real, torch.tensor([1.0, 0, 0, 0], dtype=F64))
    torch.testing.assert_close(dual, torch.tensor([0.0, 0.5, -1.0, 1.5], dtype=F64))


def _cylinder(rings: int = 41, around: int = 24, radius: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertices of a cylinder along x in [-1, 1] and two-bone weights blending smoothly over [-0.5, 0.5]."""
    x = torch.linspace(-1, 1, rings, dtype=F64)
    phi = torch.arange(around, dtype=F64) * (2 * math.pi / around)
    xx, pp = torch.meshgrid(x, phi, indexing="ij")
    vertices = torch.stack([xx, radius * torch.cos(pp), radius * torch.sin(pp)], -1).reshape(-1, 3)
    s = ((vertices[:, 0] + 0.5) / 1.0).clamp(0, 1)
    w1 = s * s * (3 - 2 * s)  # smoothstep
    return vertices, torch.stack([1 - w1, w1], -1)


def test_candy_wrapper_twist_lbs_collapses_dqs_keeps_the_radius():
    radius = 0.2
    vertices, weights = _cylinder(radius=radius)
    twist = _rigid(
        _rotation(torch.tensor([1.0, 0, 0], dtype=F64), torch.tensor(math.pi, dtype=F64)),
        torch.zeros(3, dtype=F64),
    )
    transforms = torch.stack([torch.eye(4, dtype=F64), twist])
    lbs = S.linear_blend_skinning(vertices, weights, transforms)
    dqs = S.dual_quaternion_skinning(vertices, weights, transforms)
    joint = vertices[:, 0].abs() < 1e-9  # the ring at the joint, weights 0.5 / 0.5
    assert int(joint.sum()) > 0
    lbs_r = lbs[:, 1:].norm(dim=-1)
    dqs_r = dqs[:, 1:].norm(dim=-1)
    assert float(lbs_r[joint].max()) < 1e-3 * radius  # collapsed to the axis
    assert float((dqs_r / radius - 1).abs().max()) < 0.03  # every ring keeps its radius
    # DQS at the joint rotates by half the twist (90 degrees) and keeps the ring on its plane
    torch.testing.assert_close(dqs[joint, 0], vertices[joint, 0], rtol=0, atol=1e-12)


def test_antipodality_fix_blends_along_the_short_arc():
    """Bones rotated by +100 and -100 degrees about x: their quaternions have a negative dot product. The
    short arc between them passes through 180 degrees, the long one (no flip) through 0 degrees."""
    x_axis = torch.tensor([1.0, 0, 0], dtype=F64)
    a = _rigid(_rotation(x_axis, torch.tensor(math.radians(100), dtype=F64)), torch.zeros(3, dtype=F64))
    b = _rigid(_rotation(x_axis, torch.tensor(math.radians(-100), dtype=F64)), torch.zeros(3, dtype=F64))
    real, _ = S.matrix_to_dual_quaternion(torch.stack([a, b]))
    assert float(real[0] @ real[1]) < 0
    vertices = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
    for weights in (
        torch.tensor([[0.5, 0.5], [0.5, 0.5]], dtype=F64),
        torch.tensor([[0.6, 0.4], [0.4, 0.6]], dtype=F64),
    ):
        out = S.dual_quaternion_skinning(vertices, weights, torch.stack([a, b]))
        torch.testing.assert_close(out.norm(dim=-1), torch.ones(2, dtype=F64), rtol=0, atol=1e-12)
    out = S.dual_quaternion_skinning(
        vertices, torch.tensor([[0.5, 0.5], [0.5, 0.5]], dtype=F64), torch.stack([a, b])
    )
    torch.testing.assert_close(out, -vertices, rtol=0, atol=1e-12)  # 180 degrees about x, not identity


def test_identity_transforms_leave_vertices_unchanged():
    gen = torch.Generator().manual_seed(2)
    vertices = torch.randn(50, 3, generator=gen, dtype=F64)
    weights = torch.rand(50, 4, generator=gen, dtype=F64)
    weights = weights / weights.sum(1, keepdim=True)
    transforms = torch.eye(4, dtype=F64).expand(3, 4, 4, 4)
    for skin in (S.linear_blend_skinning, S.dual_quaternion_skinning):
        out = skin(vertices, weights, transforms)
        assert out.shape == (3, 50, 3)
        torch.testing.assert_close(out, vertices.expand(3, 50, 3), rtol=0, atol=1e-14)


def test_dtype_follows_the_inputs_and_batched_vertices_broadcast():
    gen = torch.Generator().manual_seed(3)
    vertices = torch.randn(2, 10, 3, generator=gen, dtype=F64)  # per-frame rest vertices
    weights = torch.rand(10, 3, generator=gen, dtype=F64)
    weights = weights / weights.sum(1, keepdim=True)
    transforms = _random_rigid((2, 3), gen)
    out64 = S.dual_quaternion_skinning(vertices, weights, transforms)
    assert out64.dtype == F64 and out64.shape == (2, 10, 3)
    for i in range(2):
        torch.testing.assert_close(out64[i], S.dual_quaternion_skinning(vertices[i], weights, transforms[i]))
    out32 = S.dual_quaternion_skinning(vertices.float(), weights.float(), transforms.float())
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), out64, rtol=0, atol=1e-5)
    lbs32 = S.linear_blend_skinning(vertices.float(), weights.float(), transforms.float())
    assert lbs32.dtype == torch.float32


@pytest.mark.parametrize(
    "vertices, weights, transforms, name",
    [
        (torch.zeros(5, 2), torch.ones(5, 2), torch.eye(4).expand(2, 4, 4), "vertices"),
        (torch.zeros(5, 3), torch.ones(4, 2), torch.eye(4).expand(2, 4, 4), "weights"),
        (torch.zeros(5, 3), torch.ones(5), torch.eye(4).expand(2, 4, 4), "weights"),
        (torch.zeros(5, 3), torch.ones(5, 2), torch.eye(4).expand(3, 4, 4), "transforms"),
        (torch.zeros(5, 3), torch.ones(5, 2), torch.eye(3).expand(2, 3, 3), "transforms"),
        (torch.zeros(5, 3, dtype=torch.long), torch.ones(5, 2), torch.eye(4).expand(2, 4, 4), "vertices"),
        ([[0.0, 0.0, 0.0]], torch.ones(1, 2), torch.eye(4).expand(2, 4, 4), "vertices"),
    ],
)
def test_bad_shapes_raise_input_error_naming_the_input(vertices, weights, transforms, name):
    for skin in (S.linear_blend_skinning, S.dual_quaternion_skinning):
        with pytest.raises(InputError, match=f"'{name}'"):
            skin(vertices, weights, transforms)


def test_dual_quaternion_conversions_reject_bad_shapes():
    with pytest.raises(InputError, match="'transforms'"):
        S.matrix_to_dual_quaternion(torch.eye(3))
    with pytest.raises(InputError, match="'real'"):
        S.dual_quaternion_to_matrix(torch.zeros(3), torch.zeros(4))
    with pytest.raises(InputError, match="'dual'"):
        S.dual_quaternion_to_matrix(torch.tensor([1.0, 0, 0, 0]), torch.zeros(2, 5))
