"""The avatar's implicit fields around one posed template: SDF and colour from tri-plane features, rendered
with NeuS (TriHuman Sec. 3.3-3.4; issue 17, item 5-7).

A sample x maps to its closest point on the posed template (`closest_face`, among `candidates` faces) and so to
texture-cube coordinates (u, v, d), d the signed distance to the template. Its features are the tri-planes
read at those coordinates (`triplane.sample_triplanes`), and

    f(x) = d + w(d) * delta(PE(u, v, d / shell), features),    w(d) = max(0, 1 - |d| / shell)

with delta the SDF MLP's output (`fields.SDFNetwork`). Our interpretation: the paper reads features only
inside a shell around the template and treats samples beyond it as empty; we predict a residual over the
template's own signed distance, faded out by w at the shell. So f is continuous everywhere, equals d beyond
the shell (outside: empty for NeuS; inside: the body), and the surface can move only within the shell,
which is the paper's assumption. The SDF MLP's residual row starts at zero, so at initialisation the
avatar is exactly its template (tested), instead of the MLP's usual init sphere.

Colour: the IDR MLP (`fields.ColorNetwork`) of the point, the normal (the gradient of f, by autograd, through
the closest-point mapping), the view direction and the SDF MLP's feature vector. Rendering: NeuS with the
learned inverse standard deviation (`fields.LearnedVariance`), TriHuman's 32 uniform samples per ray and
no importance sampling (`models/common/sdf_render.py`), rays chunked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..common.errors import InputError
from ..common.sdf_render import views
from ..common.sdf_render_midpoint import render_rays_midpoint
from ..common.subdivide import subdivide_midpoint
from .closest_face import closest_points_candidates, closest_points_on_faces
from .fields import ColorNetwork, LearnedVariance, SDFNetwork
from .template import vertex_normals
from .triplane import cube_coordinates, sample_triplanes

GRID_DISC = (8.0, 16.0)  # closest-face grid cells sized for ray samples several cm off the surface: one
# grid of 16 rendered 2.4x faster than the near-surface default (2.0), where most NeuS samples fell back to
# the all-faces search; a grid of 8 first (97 % of a frame's samples, about half the centroids per block)
# and 16 for the rest cut the search another ~20 % (renders 15 % faster; the same faces either way)


@dataclass(frozen=True)
class AvatarFieldConfig:
    plane_channels: int = 16  # C of the three planes (TriHuman: 16)
    shell: float = 0.04  # metres: features and surface offsets only this close to the template
    candidates: int = 20  # faces searched per sample (TriHuman: ~20)
    sdf_hidden: int = 256
    sdf_layers: int = 8
    sdf_features: int = 256  # the SDF MLP's feature vector, the colour MLP's input
    num_freqs: int = 6  # positional encoding of (u, v, d / shell)
    color_hidden: int = 256
    color_layers: int = 4
    samples: int = 32  # per ray (TriHuman: 32 uniform, no importance sampling)

    def check(self) -> None:
        for name in ("plane_channels", "candidates", "sdf_hidden", "sdf_layers", "samples", "color_layers"):
            if int(getattr(self, name)) < 1:
                raise InputError(name, "a positive integer", repr(getattr(self, name)))
        if not self.shell > 0:
            raise InputError("shell", "a positive shell thickness (metres)", repr(self.shell))


class AvatarField(nn.Module):
    """The SDF and colour MLPs and NeuS's variance of one avatar; `bind` attaches one frame's posed template
    and tri-planes and returns the fields of that frame."""

    def __init__(self, config: AvatarFieldConfig | None = None):
        super().__init__()
        self.config = config or AvatarFieldConfig()
        self.config.check()
        c = self.config
        skip = c.sdf_layers // 2 if c.sdf_layers > 1 else None
        self.sdf_net = SDFNetwork(feature_dim=3 * c.plane_channels, out_features=c.sdf_features,
                                  hidden=c.sdf_hidden, n_layers=c.sdf_layers, skip=skip, num_freqs=c.num_freqs,
                                  geometric_init=True, refit_init=False)  # fmt: skip
        with torch.no_grad():  # the residual starts at zero: the avatar is its template at init
            last = self.sdf_net.layers[-1]  # weight-normalised: weight = g * v / |v| per output row
            last.parametrizations.weight.original0[0] = 0.0  # g of the SDF row (it still gets gradients)
            last.bias[0] = 0.0
        self.color_net = ColorNetwork(
            feature_dim=c.sdf_features, hidden=c.color_hidden, n_layers=c.color_layers
        )
        self.variance = LearnedVariance()

    def bind(
        self, vertices: torch.Tensor, faces: torch.Tensor, uvs: torch.Tensor, planes: torch.Tensor
    ) -> BoundAvatar:
        """One frame: posed template vertices [V, 3], faces [F, 3], texture coordinates uvs ([V, 2] or
        [F, 3, 2]) and the generator's tri-planes [3, C, S, S] (or [1, 3, C, S, S])."""
        planes = planes if planes.ndim == 5 else planes[None]
        if planes.ndim != 5 or planes.shape[:3] != (1, 3, self.config.plane_channels):
            raise InputError(
                "planes", f"tri-planes [3, {self.config.plane_channels}, S, S]", str(tuple(planes.shape))
            )
        return BoundAvatar(self, vertices, faces, uvs, planes)


class BoundAvatar:
    """The fields of one frame (see the module docstring): sdf, color, render, mesh."""

    def __init__(self, field: AvatarField, vertices, faces, uvs, planes):
        self.field, self.vertices, self.faces, self.uvs, self.planes = field, vertices, faces, uvs, planes

    def _sdf_and_features(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.field.config
        closest = closest_points_candidates(points, self.vertices, self.faces, c.candidates, uvs=self.uvs,
                                            grid_disc=GRID_DISC)  # fmt: skip
        return self._field_at(closest.uvd, points.dtype)

    def _field_at(self, uvd: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """f and the SDF MLP's feature vector from the samples' texture-cube coordinates (u, v, d)."""
        c = self.field.config
        d = uvd[:, 2]
        cube = cube_coordinates(uvd, c.shell)
        feats = sample_triplanes(self.planes, cube[None].clamp(-1, 1))[0]
        delta, feature = self.field.sdf_net(cube, feats.to(dtype))
        window = (1 - d.abs() / c.shell).clamp_min(0)
        return d + window * delta[:, 0], feature

    def shade(
        self, points: torch.Tensor, view_dirs: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """TriHuman's renderer's pass over ray samples [N, 3] (`common.sdf_render_midpoint`): one closest-face
        search for all of them; samples with |d| < shell are active and get f, grad f (autograd through
        the closest-point mapping; kept differentiable when grad is enabled) and the colour, each computed
        exactly as `sdf` / `gradient` / `color` do; inactive samples (empty, as the official renderer masks
        them) get f = d, a zero gradient and black. Returns (f [N], grad [N, 3], rgb [N, 3], active [N])."""
        c = self.field.config
        with torch.no_grad():
            found = closest_points_candidates(points.detach(), self.vertices, self.faces, c.candidates,
                                              uvs=self.uvs, grid_disc=GRID_DISC)  # fmt: skip
        active = found.uvd[:, 2].abs() < c.shell
        idx = active.nonzero().squeeze(1)
        training = torch.is_grad_enabled()
        with torch.enable_grad():
            x = points[idx]
            x = x if x.requires_grad else x.detach().requires_grad_(True)
            closest = closest_points_on_faces(x, self.vertices, self.faces, found.face_index[idx], self.uvs)
            f, feature = self._field_at(closest.uvd, x.dtype)
            (g,) = torch.autograd.grad(f.sum(), x, create_graph=training)
        rgb = self.field.color_net(x, torch.nn.functional.normalize(g, dim=-1), view_dirs[idx], feature)
        if not training:
            f, g, rgb = f.detach(), g.detach(), rgb.detach()
        sdf = found.uvd[:, 2].to(f.dtype).index_put((idx,), f)
        grad = points.new_zeros(points.shape[0], 3).index_put((idx,), g)
        colour = points.new_zeros(points.shape[0], 3).index_put((idx,), rgb.to(points.dtype))
        return sdf, grad, colour, active

    def sdf(self, points: torch.Tensor) -> torch.Tensor:
        """f at points [N, 3] -> [N] (negative inside)."""
        return self._sdf_and_features(points)[0]

    def gradient(self, points: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        """grad f at points [N, 3] (autograd through the closest-point mapping); `create_graph` keeps it
        differentiable for the parameters (the eikonal loss)."""
        with torch.enable_grad():
            x = points.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.sdf(x).sum(), x, create_graph=create_graph)
        return g

    def normals(self, points: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        """grad f / |grad f| at points [N, 3] (autograd through the closest-point mapping)."""
        return torch.nn.functional.normalize(self.gradient(points, create_graph), dim=-1)

    def color(self, points: torch.Tensor, view_dirs: torch.Tensor) -> torch.Tensor:
        """RGB in (0, 1) at points [N, 3] seen along unit directions [N, 3]."""
        training = torch.is_grad_enabled()  # then the normal stays differentiable (for the parameters)
        with torch.enable_grad():
            x = points if points.requires_grad else points.detach().requires_grad_(True)
            f, feature = self._sdf_and_features(x)
            (g,) = torch.autograd.grad(f.sum(), x, create_graph=training)
        normal = torch.nn.functional.normalize(g, dim=-1)
        return self.field.color_net(x, normal, view_dirs, feature)

    def render(
        self,
        K: torch.Tensor,
        world_to_camera: torch.Tensor,
        height: int,
        width: int,
        near: float,
        far: float,
        background=(1.0, 1.0, 1.0),
        chunk: int = 2048,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """NeuS views (image [V, H, W, 3], mask, depth) between near and far along each ray (metres), rendered
        as render_frame renders (NeuS's midpoint scheme over `shade`)."""
        kw = dict(samples=self.field.config.samples, inv_s=self.field.variance.inv_s(), near=near, far=far,
                  background=background, chunk=chunk, generator=generator)  # fmt: skip
        return views(
            lambda o, d: render_rays_midpoint(self.shade, o, d, **kw), K, world_to_camera, height, width
        )

    def project_to_surface(
        self, points: torch.Tensor, iterations: int = 5, start_normals: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Points [N, 3] moved along the SDF gradient to its zero level by Newton steps x -= f grad f / |grad f|^2
        (exact in one step for a true distance field; a few more for a learnt one). No gradient kept.

        Points exactly on the template have no gradient of d there (the distance's norm at zero offset), so
        with `start_normals` they first step 1e-4 shell off the surface along them; a step is never longer
        than the shell, and a point whose gradient vanishes stays where it is."""
        shell = self.field.config.shell
        x = points.detach()
        if start_normals is not None:
            x = x + 1e-4 * shell * torch.nn.functional.normalize(start_normals.to(x.dtype), dim=-1)
        for _ in range(int(iterations)):
            with torch.enable_grad():
                y = x.requires_grad_(True)
                f = self.sdf(y)
                (g,) = torch.autograd.grad(f.sum(), y)
            g2 = g.square().sum(-1)
            step = torch.where(g2 > 1e-8, f / g2.clamp_min(1e-8), torch.zeros_like(f))[:, None] * g
            length = step.norm(dim=-1, keepdim=True)
            x = (y - step * (shell / length.clamp_min(shell))).detach()
        return x

    def mesh(self, iterations: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
        """TriHuman's geometry output (Sec. 3.5): the posed template subdivided once (midpoints) and every
        vertex moved along the SDF gradient to the zero level. Same faces every frame. (vertices, faces)."""
        vertices, faces = subdivide_midpoint(self.vertices, self.faces)
        return self.project_to_surface(vertices, iterations, vertex_normals(vertices, faces)), faces
