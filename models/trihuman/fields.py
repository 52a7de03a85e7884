"""TriHuman's implicit fields in pure torch: positional encoding, SDF MLP, IDR colour MLP, NeuS variance.

TriHuman (Zhu et al. 2023, method section; Fig. 2: "a small MLP predicting color and density") reads tri-plane
features at a ray sample's texture-cube coordinates (u, v, d) (`triplane.py`) and decodes them with an SDF MLP
(positional encoding of uvd + plane features, geometric initialisation, weight normalisation) and an IDR-style
colour MLP, rendered with NeuS (`models/common/sdf_render.py`, inv_s from `LearnedVariance`). The building
blocks follow their sources: NeRF (Mildenhall et al. 2020, Sec. 5.1) for the encoding, IDR (Yariv et al. 2020,
its architecture supplementary) and SAL (Atzmon & Lipman 2020, geometric network initialisation) for the SDF
MLP, NeuS (Wang et al. 2021, Sec. 3.1) for the learned standard deviation. Written from the papers; no official code is used.

Coordinates: the networks see whatever 3-vectors they are given (for TriHuman: cube coordinates in
[-1, 1]^3, `triplane.cube_coordinates`); the initial sphere's radius is in those units.
SDF sign: negative inside, positive outside (as sdf_render).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from ..common.errors import InputError


def _shape(x) -> str:
    return f"shape {list(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__


def _check_vectors(x, name: str, what: str, dim: int, lead: torch.Size | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim < 1 or x.shape[-1] != dim or not x.is_floating_point():
        raise InputError(name, f"floating-point {what} [..., {dim}]", _shape(x))
    if lead is not None and x.shape[:-1] != lead:
        raise InputError(
            name, f"{what} [{', '.join(map(str, lead))}, {dim}] (the points' leading shape)", _shape(x)
        )
    return x


class PositionalEncoding(nn.Module):
    """NeRF's encoding (Sec. 5.1): [x, sin(2^0 x), cos(2^0 x), ..., sin(2^(L-1) x), cos(2^(L-1) x)].

    Frequencies 2^k (no pi factor, as NeuS's embedder), so the first `in_dim` outputs are x itself when
    include_input: the geometric initialisation relies on that layout."""

    def __init__(self, num_freqs: int, include_input: bool = True, in_dim: int = 3):
        super().__init__()
        if num_freqs < 0 or in_dim < 1 or (num_freqs == 0 and not include_input):
            raise InputError(
                "num_freqs", "a frequency count >= 0 (and > 0 without include_input)", repr(num_freqs)
            )
        self.num_freqs, self.include_input, self.in_dim = num_freqs, include_input, in_dim
        self.register_buffer("freqs", 2.0 ** torch.arange(num_freqs, dtype=torch.float32), persistent=False)

    @property
    def out_dim(self) -> int:
        return self.in_dim * (int(self.include_input) + 2 * self.num_freqs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_vectors(x, "x", "coordinates", self.in_dim)
        parts = [x] if self.include_input else []
        if self.num_freqs:
            xf = x[..., None, :] * self.freqs.to(x)[:, None]  # [..., L, D]
            parts.append(torch.stack([xf.sin(), xf.cos()], -2).flatten(-3))  # per freq: sin(D), cos(D)
        return torch.cat(parts, -1)


class SDFNetwork(nn.Module):
    """SDF MLP: [PE(uvd), tri-plane features] -> (SDF, feature vector) (TriHuman; IDR/SAL init).

    `n_layers` hidden layers of width `hidden` with softplus(beta=100) between them, the network input
    concatenated again (divided by sqrt 2, as IDR) before layer `skip` (that layer is wider by the input,
    rather than its predecessor narrower as in IDR: our simplification), weight normalisation on every
    linear layer (applied after the init, so it does not change the initial function). Geometric
    initialisation (SAL, IDR): hidden weights N(0, 2 / fan_out), biases 0;
    the SDF output row N(sqrt(pi) / sqrt(hidden), 1e-4) with bias -radius, so at init f(x) ~ |x| - radius;
    the columns of the first layer (and of the skip layer's input part) that see anything but raw x (the
    sines and cosines, the plane features) start at zero, so high frequencies and features enter only
    once training moves them (IDR's PE-aware init). The feature outputs keep PyTorch's default init (our
    interpretation: identical rows would give identical features). With `refit_init` (default) the SDF
    row is then refitted to the sphere (`_refit_sphere`, our interpretation: the plain init is only a rough
    sphere at finite width). Widths and depth default to NeuS's (8 x 256, skip at 4, 6 frequencies);
    TriHuman's own sizes are our interpretation."""

    def __init__(
        self,
        feature_dim: int = 48,
        out_features: int = 256,
        hidden: int = 256,
        n_layers: int = 8,
        skip: int | Sequence[int] | None = 4,
        num_freqs: int = 6,
        radius: float = 0.5,
        geometric_init: bool = True,
        refit_init: bool = True,
        init_extent: float = 1.0,
        use_weight_norm: bool = True,
    ):
        super().__init__()
        skips = () if skip is None else ((skip,) if isinstance(skip, int) else tuple(skip))
        if feature_dim < 0 or out_features < 0 or hidden < 1 or n_layers < 1:
            raise InputError("SDFNetwork", "feature_dim >= 0, out_features >= 0, hidden >= 1, n_layers >= 1")
        if any(not 0 < s < n_layers for s in skips):
            raise InputError("skip", f"hidden layer indices in 1..{n_layers - 1}", repr(skip))
        if not radius > 0:
            raise InputError("radius", "a positive initial sphere radius", repr(radius))
        self.feature_dim, self.out_features, self.radius = feature_dim, out_features, float(radius)
        self.skips = skips
        self.encoding = PositionalEncoding(num_freqs, include_input=True)
        self.in_dim = self.encoding.out_dim + feature_dim
        dims = [self.in_dim] + [hidden] * n_layers + [1 + out_features]
        layers = []
        for i in range(len(dims) - 1):
            fan_in = dims[i] + (self.in_dim if i in skips else 0)
            lin = nn.Linear(fan_in, dims[i + 1])
            if geometric_init:
                self._geometric_init(lin, i, last=i == len(dims) - 2)
            layers.append(lin)
        self.layers = nn.ModuleList(layers)
        self.act = nn.Softplus(beta=100)
        if geometric_init and refit_init:
            self._refit_sphere(float(init_extent))
        if use_weight_norm:  # after the init: g = ||v|| then, so the function is unchanged
            for lin in self.layers:
                weight_norm(lin)

    def _geometric_init(self, lin: nn.Linear, i: int, last: bool) -> None:
        with torch.no_grad():
            if last:
                lin.bias.zero_()
                lin.bias[0] = -self.radius
                lin.weight[0].normal_(math.sqrt(math.pi) / math.sqrt(lin.in_features), 1e-4)
                return
            lin.bias.zero_()
            lin.weight.normal_(0.0, math.sqrt(2) / math.sqrt(lin.out_features))
            if i == 0:
                lin.weight[:, 3:] = 0.0  # only raw x at first
            elif i in self.skips:
                lin.weight[:, -(self.in_dim - 3) :] = 0.0  # the re-fed input: only its raw x

    @torch.no_grad()
    def _refit_sphere(self, extent: float, ridge: float = 1e-3) -> None:
        """Refit the SDF output row (weights and bias) to |x| - radius on points of the ball of radius
        `extent`, by ridge regression towards the geometric init (our interpretation).

        Why: the geometric init is exact only as the width grows; at IDR's 8 x 256 with softplus(100) we
        measured a mean error of 12-30 % of the radius in the unit ball (the softplus offsets add up, and
        the random features fluctuate with direction). The hidden layers are left as initialised (so the
        init's statistics and the zero PE / feature columns are kept); only the linear read-out moves, by
        the least amount (ridge towards the init) that fits the sphere. A fixed local generator keeps the
        global random stream untouched."""
        if not extent > 0:
            raise InputError(
                "init_extent", "a positive radius of the ball the init is fitted in", repr(extent)
            )
        gen = torch.Generator().manual_seed(0)
        n = max(4096, 8 * self.layers[-1].in_features)
        x = torch.randn(n, 3, generator=gen)
        x = (
            x
            / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            * extent
            * torch.rand(n, 1, generator=gen) ** (1 / 3)
        )
        w = self.layers[-1].weight
        h = self._hidden(x, x.new_zeros(n, self.feature_dim)).double()
        a = torch.cat([h, h.new_ones(n, 1)], 1)
        beta0 = torch.cat([w[0].double(), self.layers[-1].bias[:1].double()])
        target = x.norm(dim=-1).double() - self.radius
        gram = a.T @ a
        lam = ridge * gram.diagonal().mean()
        delta = torch.linalg.solve(
            gram + lam * torch.eye(len(beta0), dtype=gram.dtype), a.T @ (target - a @ beta0)
        )
        beta = (beta0 + delta).to(w.dtype)
        w[0] = beta[:-1]
        self.layers[-1].bias[0] = beta[-1]

    def _hidden(self, points: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """The last hidden layer's activations [..., hidden]."""
        inputs = torch.cat([self.encoding(points), features.to(points.dtype)], -1)
        x = inputs
        for i, lin in enumerate(self.layers[:-1]):
            if i in self.skips:
                x = torch.cat([x, inputs], -1) / math.sqrt(2)
            x = self.act(lin(x))
        return x

    def _check(self, points: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        _check_vectors(points, "points", "coordinates", 3)
        if features is None:
            return points.new_zeros(*points.shape[:-1], self.feature_dim)
        return _check_vectors(features, "features", "tri-plane features", self.feature_dim, points.shape[:-1])

    def forward(
        self, points: torch.Tensor, features: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """points [..., 3], features [..., feature_dim] (None: zeros) -> (sdf [..., 1], feature [..., out])."""
        features = self._check(points, features)
        x = self.layers[-1](self._hidden(points, features))
        return x[..., :1], x[..., 1:]

    def sdf(self, points: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward(points, features)[0]

    def gradient(
        self, points: torch.Tensor, features: torch.Tensor | None = None, create_graph: bool = True
    ) -> torch.Tensor:
        """dSDF/dpoints [..., 3] by autograd (the normal for the colour MLP, the eikonal term's input).

        If `points` already requires grad, every path counts, including features computed from the points
        (tri-plane lookups); otherwise a detached copy is used and the features are held fixed.
        create_graph=True keeps the result differentiable (eikonal loss)."""
        _check_vectors(points, "points", "coordinates", 3)
        with torch.enable_grad():
            x = points if points.requires_grad else points.detach().requires_grad_(True)
            y = self.sdf(x, features)
            (g,) = torch.autograd.grad(y, x, torch.ones_like(y), create_graph=create_graph)
        return g


class ColorNetwork(nn.Module):
    """IDR-style colour MLP (IDR Sec. 3.2, surface light field; its "rendering network"):
    [point, normal, PE(view dir), feature] -> sigmoid RGB in (0, 1). ReLU hidden layers with weight
    normalisation; the view direction encoded with `view_freqs` frequencies (NeuS's 4). TriHuman uses such a
    colour MLP; its sizes are our interpretation (IDR's 4 x 256 by default)."""

    def __init__(
        self,
        feature_dim: int = 256,
        hidden: int = 256,
        n_layers: int = 4,
        view_freqs: int = 4,
        use_weight_norm: bool = True,
    ):
        super().__init__()
        if feature_dim < 0 or hidden < 1 or n_layers < 1 or view_freqs < 0:
            raise InputError("ColorNetwork", "feature_dim >= 0, hidden >= 1, n_layers >= 1, view_freqs >= 0")
        self.feature_dim = feature_dim
        self.view_encoding = PositionalEncoding(view_freqs, include_input=True)
        dims = [6 + self.view_encoding.out_dim + feature_dim] + [hidden] * n_layers + [3]
        layers = []
        for i in range(len(dims) - 1):
            lin = nn.Linear(dims[i], dims[i + 1])
            layers.append(weight_norm(lin) if use_weight_norm else lin)
        self.layers = nn.ModuleList(layers)

    def forward(
        self,
        points: torch.Tensor,
        normals: torch.Tensor,
        view_dirs: torch.Tensor,
        features: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """points, normals, view_dirs [..., 3], features [..., feature_dim] -> RGB [..., 3] in (0, 1)."""
        _check_vectors(points, "points", "coordinates", 3)
        lead = points.shape[:-1]
        _check_vectors(normals, "normals", "normals", 3, lead)
        _check_vectors(view_dirs, "view_dirs", "view directions", 3, lead)
        if features is None:
            features = points.new_zeros(*lead, self.feature_dim)
        _check_vectors(features, "features", "features", self.feature_dim, lead)
        x = torch.cat([points, normals, self.view_encoding(view_dirs), features], -1)
        for i, lin in enumerate(self.layers):
            x = lin(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return torch.sigmoid(x)


class LearnedVariance(nn.Module):
    """NeuS's single learned inverse standard deviation (Sec. 3.1): s = exp(10 v), v initialised at 0.3
    (s ~ 20), clamped to [1e-6, 1e6] as NeuS's renderer does; pass `inv_s()` to sdf_render."""

    def __init__(self, init: float = 0.3):
        super().__init__()
        self.variance = nn.Parameter(torch.tensor(float(init)))

    def inv_s(self) -> torch.Tensor:
        return torch.exp(self.variance * 10.0).clamp(1e-6, 1e6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """s per point: [len(x), 1] (NeuS's interface)."""
        if not isinstance(x, torch.Tensor) or x.ndim < 1:
            raise InputError("x", "a tensor of points [N, ...]", _shape(x))
        return self.inv_s().to(x.dtype if x.is_floating_point() else torch.float32).expand(x.shape[0], 1)
