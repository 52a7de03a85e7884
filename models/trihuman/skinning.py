"""Skinning of TriHuman's deformable template: linear blend skinning and dual-quaternion skinning.

TriHuman poses its template as DDC does: the embedded graph deforms the rest-pose template, then the
skeleton's bone transforms carry it to the pose by dual-quaternion skinning (DQS). DQS is used instead of
linear blend skinning (LBS) because blending matrices is not a rigid motion: at a twisted joint LBS
averages opposite rotations and the limb collapses ("candy wrapper"), while a normalised blend of unit
dual quaternions is always a rigid transform (Kavan et al. 2007, "Skinning with dual quaternions").

Conventions:
- `transforms` [..., J, 4, 4] are the bones' skinning transforms: rest pose -> posed (the bone's posed
  world transform times its inverse bind matrix), row-major, acting on column vectors [x, y, z, 1]. Their
  3 x 3 part must be a rotation for DQS (no scale); LBS takes any affine matrix.
- `weights` [N, J] are per-vertex bone weights, normally non-negative and summing to 1 (not enforced: LBS
  then scales the result, DQS normalises it away).
- A quaternion is (w, x, y, z), scalar first. A unit dual quaternion is a pair (real, dual) of [..., 4]:
  real = the rotation's unit quaternion r, dual = 0.5 * (0, t) * r for the translation t, so that
  x -> r x r* + t. `matrix_to_dual_quaternion` returns the representative with w >= 0.
- dtype and device follow the inputs (the result is in the promoted floating dtype of all inputs).
"""

from __future__ import annotations

import torch

from ..common.errors import InputError


def _shape(x: torch.Tensor) -> str:
    return f"shape {list(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


def _float_tensor(x: torch.Tensor, name: str, what: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise InputError(name, what, type(x).__name__)
    if not x.is_floating_point():
        raise InputError(name, f"{what}, floating point", str(x.dtype))
    return x


def _check_matrices(m: torch.Tensor, name: str) -> torch.Tensor:
    what = "transforms [..., 4, 4]"
    m = _float_tensor(m, name, what)
    if m.ndim < 2 or tuple(m.shape[-2:]) != (4, 4):
        raise InputError(name, what, _shape(m))
    return m


def _check_skinning_inputs(
    vertices: torch.Tensor, weights: torch.Tensor, transforms: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate shapes (vertices [..., N, 3], weights [N, J], transforms [..., J, 4, 4]); one dtype."""
    vertices = _float_tensor(vertices, "vertices", "vertices [N, 3] or [..., N, 3]")
    if vertices.ndim < 2 or vertices.shape[-1] != 3:
        raise InputError("vertices", "vertices [N, 3] or [..., N, 3]", _shape(vertices))
    weights = _float_tensor(weights, "weights", "skin weights [N, J]")
    n = vertices.shape[-2]
    if weights.ndim != 2 or weights.shape[0] != n:
        raise InputError("weights", f"skin weights [N, J] with N = {n} (the vertex count)", _shape(weights))
    transforms = _check_matrices(transforms, "transforms")
    j = weights.shape[1]
    if transforms.ndim < 3 or transforms.shape[-3] != j:
        raise InputError(
            "transforms",
            f"bone transforms [..., J, 4, 4] with J = {j} (the weights' bones)",
            _shape(transforms),
        )
    dtype = torch.promote_types(torch.promote_types(vertices.dtype, weights.dtype), transforms.dtype)
    return vertices.to(dtype), weights.to(dtype), transforms.to(dtype)


# ------------------------------------------------------------------------------------------------------ LBS


def linear_blend_skinning(
    vertices: torch.Tensor, weights: torch.Tensor, transforms: torch.Tensor
) -> torch.Tensor:
    """Posed vertices [..., N, 3] = sum_j w_nj T_j [v_n, 1] (the bones' matrices blended per vertex).

    vertices [N, 3] (or [..., N, 3], batch dimensions broadcast with the transforms'), weights [N, J],
    transforms [..., J, 4, 4]. The reference DQS is compared with; collapses at twisted joints.
    """
    vertices, weights, transforms = _check_skinning_inputs(vertices, weights, transforms)
    blended = torch.einsum("nj,...jab->...nab", weights, transforms[..., :3, :])  # [..., N, 3, 4]
    rotated = torch.einsum("...nab,...nb->...na", blended[..., :3], vertices)
    return rotated + blended[..., 3]


# ----------------------------------------------------------------------------------------------- quaternions


def quaternion_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a b of quaternions [..., 4] (w, x, y, z); batch dimensions broadcast."""
    aw, av = a[..., :1], a[..., 1:]
    bw, bv = b[..., :1], b[..., 1:]
    w = aw * bw - (av * bv).sum(-1, keepdim=True)
    v = aw * bv + bw * av + torch.linalg.cross(av, bv, dim=-1)
    return torch.cat([w, v], -1)


def quaternion_conjugate(q: torch.Tensor) -> torch.Tensor:
    return torch.cat([q[..., :1], -q[..., 1:]], -1)


def matrix_to_quaternion(rotation: torch.Tensor) -> torch.Tensor:
    """Unit quaternion [..., 4] (w, x, y, z), w >= 0, of rotation matrices [..., 3, 3].

    Each of w, x, y, z can be read from the diagonal (4 w^2 = 1 + trace, 4 x^2 = 1 + m00 - m11 - m22, ...);
    the other three components then follow from off-diagonal sums and differences divided by the
    largest one, which keeps the division well conditioned for every rotation, 180 degrees included.
    """
    m = rotation
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    squares = torch.stack(  # 4 w^2, 4 x^2, 4 y^2, 4 z^2
        [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1
    )
    candidates = torch.stack(  # row k: 4 q_k q, for k = w, x, y, z
        [
            torch.stack([squares[..., 0], m21 - m12, m02 - m20, m10 - m01], -1),
            torch.stack([m21 - m12, squares[..., 1], m01 + m10, m02 + m20], -1),
            torch.stack([m02 - m20, m01 + m10, squares[..., 2], m12 + m21], -1),
            torch.stack([m10 - m01, m02 + m20, m12 + m21, squares[..., 3]], -1),
        ],
        -2,
    )
    best = squares.argmax(-1)
    q = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)  # divides by 4 |q_k| and removes round-off in one step
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [..., 3, 3] of quaternions [..., 4] (w, x, y, z); normalised first."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    rows = [
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ]
    return torch.stack(rows, -2)


# ----------------------------------------------------------------------------------------- dual quaternions


def matrix_to_dual_quaternion(transforms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rigid transforms [..., 4, 4] -> (real [..., 4], dual [..., 4]): real = r (unit, w >= 0),
    dual = 0.5 (0, t) r. The bottom row and any scale in the 3 x 3 part are not checked."""
    transforms = _check_matrices(transforms, "transforms")
    real = matrix_to_quaternion(transforms[..., :3, :3])
    t = transforms[..., :3, 3]
    dual = 0.5 * quaternion_multiply(torch.cat([torch.zeros_like(t[..., :1]), t], -1), real)
    return real, dual


def _normalise(real: torch.Tensor, dual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    norm = real.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(real.dtype).tiny)
    return real / norm, dual / norm


def _translation(real: torch.Tensor, dual: torch.Tensor) -> torch.Tensor:
    """t = 2 vec(dual real*) for a unit real part; the scalar part of dual real* (the blend's deviation
    from a unit dual quaternion) is dropped, which is Kavan's projection back to a rigid motion."""
    rw, rv = real[..., :1], real[..., 1:]
    dw, dv = dual[..., :1], dual[..., 1:]
    return 2 * (rw * dv - dw * rv + torch.linalg.cross(rv, dv, dim=-1))


def dual_quaternion_to_matrix(real: torch.Tensor, dual: torch.Tensor) -> torch.Tensor:
    """(real [..., 4], dual [..., 4]) -> rigid transforms [..., 4, 4]; both parts are first divided by the
    real part's norm, so blended (unnormalised) dual quaternions are accepted."""
    for name, x in (("real", real), ("dual", dual)):
        _float_tensor(x, name, "quaternions [..., 4]")
        if x.ndim < 1 or x.shape[-1] != 4:
            raise InputError(name, "quaternions [..., 4] (w, x, y, z)", _shape(x))
    real, dual = torch.broadcast_tensors(real, dual)
    real, dual = _normalise(real, dual)
    out = torch.zeros(*real.shape[:-1], 4, 4, dtype=real.dtype, device=real.device)
    out[..., :3, :3] = quaternion_to_matrix(real)
    out[..., :3, 3] = _translation(real, dual)
    out[..., 3, 3] = 1
    return out


def dual_quaternion_skinning(
    vertices: torch.Tensor, weights: torch.Tensor, transforms: torch.Tensor
) -> torch.Tensor:
    """Posed vertices [..., N, 3] by blending the bones' unit dual quaternions with the weights.

    A rotation has two quaternions (q and -q); blending q_a with -q_b takes the long way round and can
    cancel to zero. So each vertex first flips the bones whose real part has a negative dot product with
    its pivot, the real part of its most-weighted bone (Kavan et al.'s antipodality fix), then blends,
    divides by the blended real part's norm and applies the rigid motion. Single-bone weights give that
    bone's transform exactly (up to round-off): DQS equals LBS there.

    vertices [N, 3] (or [..., N, 3], broadcast with the transforms' batch), weights [N, J],
    transforms [..., J, 4, 4] (rigid).
    """
    vertices, weights, transforms = _check_skinning_inputs(vertices, weights, transforms)
    real, dual = matrix_to_dual_quaternion(transforms)  # [..., J, 4]
    pivot = weights.argmax(dim=1)  # [N]
    dots = real @ real.transpose(-1, -2)  # [..., J, J]: bone j against bone k
    signs = torch.where(dots[..., pivot, :] < 0, -1.0, 1.0).to(real.dtype)  # [..., N, J]
    signed = weights * signs
    real, dual = _normalise(signed @ real, signed @ dual)  # [..., N, 4]
    batch = torch.broadcast_shapes(real.shape[:-1], vertices.shape[:-1])
    rw, rv = real[..., :1].expand(*batch, 1), real[..., 1:].expand(*batch, 3)
    v = vertices.expand(*batch, 3)
    rotated = v + 2 * torch.linalg.cross(rv, torch.linalg.cross(rv, v, dim=-1) + rw * v, dim=-1)
    return rotated + _translation(real, dual)
