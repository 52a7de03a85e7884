"""Shapes out: triangle meshes with vertex colours, and views from cameras orbiting the shape.

Mesh: the SDF sampled on a grid over [-1, 1]^3 (common/isosurface.py), its zero level by marching
tetrahedra, colours of the shape's colour field at the vertices. Views: NeuS volume rendering of the SDF
(common/sdf_render.py) from an orbit rig (common/camera.py), the multi-view set BiDiff's 2D branch sees.
"""

from __future__ import annotations

import torch

from .prior3d import BOUND, Shape3D

ORBIT_RADIUS, FOV_DEGREES = 3.0, 40.0  # the cube [-1, 1]^3 fills most of a 40-degree view from 3 units
VIEW_INV_S = 256.0  # NeuS sharpness of renders (1 / s: the surface's blur is a few hundredths of a unit)


def shape_mesh(shape: Shape3D, resolution: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(vertices [N, 3], faces [M, 3], colours [N, 3] in [0, 1]) of the shape's zero level."""
    from ..common.isosurface import marching_tetrahedra, sample_grid

    with torch.no_grad():
        field = sample_grid(shape.sdf, resolution, BOUND)
        vertices, faces = marching_tetrahedra(field, BOUND)
        colors = shape.color(vertices) if len(vertices) else vertices.new_zeros(0, 3)
    return vertices.float(), faces, colors.float().clamp(0, 1)


def shape_views(
    shape: Shape3D,
    views: int = 8,
    size: int = 128,
    elevation: float = 20.0,
    samples: int = 64,
    azimuth_start: float = 0.0,
) -> dict[str, torch.Tensor]:
    """image [V, S, S, 3] on white, mask [V, S, S], depth [V, S, S] from `views` cameras around the shape."""
    from ..common.camera import orbit_rig
    from ..common.sdf_render import render_views

    K, extrinsics = orbit_rig(
        views, radius=ORBIT_RADIUS, elevation_degrees=elevation, fov_degrees=FOV_DEGREES, width=size,
        height=size, azimuth_start=azimuth_start,
    )  # fmt: skip
    with torch.no_grad():
        out = render_views(
            shape.sdf, shape.color, K, extrinsics, size, size, samples=samples, inv_s=VIEW_INV_S
        )
    return {**out, "image": out["image"].clamp(0, 1), "mask": out["mask"].clamp(0, 1)}
