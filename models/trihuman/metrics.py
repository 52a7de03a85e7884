"""What the avatar world measures (issue 17's targets): image PSNR, mask IoU, and the Chamfer distance of
two meshes from exact point-to-surface distances (`closest_face.py`) of area-weighted surface samples."""

from __future__ import annotations

import torch

from .closest_face import closest_points_candidates


def psnr(image: torch.Tensor, target: torch.Tensor) -> float:
    """Peak signal-to-noise ratio (dB) of images in 0..1 over all their pixels."""
    mse = (image.double() - target.double()).square().mean().clamp_min(1e-12)
    return float(-10 * torch.log10(mse))


def mask_iou(mask: torch.Tensor, target: torch.Tensor) -> float:
    """Intersection over union of two boolean masks (any shape); 1 when both are empty."""
    a, b = mask.bool(), target.bool()
    union = (a | b).sum()
    return float((a & b).sum() / union) if union > 0 else 1.0


def sample_surface(
    vertices: torch.Tensor, faces: torch.Tensor, count: int, generator: torch.Generator
) -> torch.Tensor:
    """`count` points [count, 3] uniformly distributed over the mesh's area."""
    tri = vertices[faces].double()
    area = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).norm(dim=-1)
    face = torch.multinomial(area / area.sum(), count, replacement=True, generator=generator)
    r1, r2 = (
        torch.rand(count, generator=generator, dtype=torch.float64),
        torch.rand(count, generator=generator, dtype=torch.float64),
    )
    s = r1.sqrt()
    b = torch.stack([1 - s, s * (1 - r2), s * r2], -1)
    return (b[:, :, None] * tri[face]).sum(1)


def chamfer(
    a_vertices: torch.Tensor,
    a_faces: torch.Tensor,
    b_vertices: torch.Tensor,
    b_faces: torch.Tensor,
    samples: int = 20000,
    seed: int = 0,
) -> float:
    """Symmetric Chamfer distance (metres): mean distance from A's surface samples to B's surface plus
    the same from B to A, each exact to the other mesh (not to its samples)."""
    g = torch.Generator().manual_seed(seed)
    pa = sample_surface(a_vertices, a_faces, samples, g)
    pb = sample_surface(b_vertices, b_faces, samples, g)
    d_ab = closest_points_candidates(pa, b_vertices.double(), b_faces, 20).distance
    d_ba = closest_points_candidates(pb, a_vertices.double(), a_faces, 20).distance
    return float(d_ab.mean() + d_ba.mean())
