"""Networks with the official TriHuman checkpoints' parameter names and shapes (docs/trihuman_official_layout.md
section 2), so the map from a checkpoint is the identity. Written from that description.

Implicit checkpoint (`implicit_checkpoint.pth`):
- `RolloutTriplaneUNet` (`feature_extractor`): motion texture [B, 18, S, S] + motion code [B, 32] ->
  tri-planes [B, 48, S, S] in (0, 1). Works on a rolled-out image [B, C, S, 3S] (thirds uv | uw | wv).
  Three bias-free 3x3 stems, five 4x4 stride-2 down blocks (LeakyReLU 0.01 -> conv -> BatchNorm without
  affine), the motion code broadcast at the bottleneck, five 4x4 transposed up blocks (ReLU -> conv ->
  BatchNorm, skip concatenation after), a 3x3 transposed output conv without BN, then tanh -> (0, 1).
  Every down/up block is 3D-aware: each third gets two mean-pooled maps of the other thirds appended
  along the channels (`rollout_pool`; the official placement, not a cyclic rule).
- `MotionNetwork` (`global_motion_mlp`): 183 -> 64 -> 64 -> 32, ReLU, sigmoid, weight norm.
- `SDFNetwork` (`sdf_network`): (u, v, d) + 48 plane features; NeRF encoding of the first 3 inputs
  (3 frequencies), 3 hidden layers of 128, the input re-fed at layer 2 (scaled by 1/√2), output
  1 SDF + 128 features, softplus(β = 100), weight norm.
- `RenderingNetwork` (`color_network`): [point 3, encoded view direction 27, normal 3, feature 128]
  -> 3 x 128 -> RGB (sigmoid), weight norm.
- `SingleVarianceNetwork` (`deviation_network`): one scalar `variance`; inv_s = exp(10·variance).

Explicit checkpoint (`explicit_checkpoint.pth`): two `DDCGraphCNN`s (`spatial_gcn` on the embedded graph,
`delta_gcn` on the template's vertices): per-node kernels [N, f_in, f_out] and biases [N, f_out]; after the
per-node kernel, features are mixed by a fixed ring adjacency rebuilt from the mesh (`ring_adjacency`,
never stored in the checkpoint).

Weight norm is stored as the old `torch.nn.utils.weight_norm` stored it (`weight_g` [out, 1], `weight_v`
[out, in], `bias`); `WeightNormLinear` implements W = g · v / ‖v‖ (row norms) itself, because
`torch.nn.utils.parametrizations.weight_norm` names its tensors `parametrizations.weight.original0/1`.
Initialisations are plain (not the official geometric init): these modules exist to load trained weights.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...common.errors import InputError

# --------------------------------------------------------------------------------------------------- MLPs


class WeightNormLinear(nn.Module):
    """A linear layer with weight normalisation: W = weight_g · weight_v / ‖weight_v‖ (norm of each row)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        v = torch.empty(out_features, in_features)
        nn.init.kaiming_uniform_(v, a=math.sqrt(5))
        bound = 1 / math.sqrt(in_features) if in_features else 0.0
        self.weight_g = nn.Parameter(v.norm(dim=1, keepdim=True))
        self.weight_v = nn.Parameter(v)
        self.bias = nn.Parameter(torch.empty(out_features).uniform_(-bound, bound))

    @property
    def weight(self) -> torch.Tensor:
        v = self.weight_v
        return v * (self.weight_g / v.norm(dim=1, keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def positional_encoding(x: torch.Tensor, num_freqs: int) -> torch.Tensor:
    """NeRF encoding as NeuS lays it out: [x, sin(x), cos(x), sin(2x), cos(2x), ..., cos(2^(n-1) x)]."""
    parts = [x]
    for k in range(num_freqs):
        parts += [torch.sin(x * 2.0**k), torch.cos(x * 2.0**k)]
    return torch.cat(parts, -1)


class _LinStack(nn.Module):
    """Layers `lin0 .. lin{n}` (WeightNormLinear or nn.Linear) as attributes, the official naming."""

    def _make(self, dims: Sequence[int], weight_norm: bool, skip_in: Sequence[int] = (), skip_dim: int = 0):
        self.num_linear = len(dims) - 1
        for i in range(self.num_linear):
            d_in = dims[i] + (skip_dim if i in skip_in else 0)
            lin = WeightNormLinear(d_in, dims[i + 1]) if weight_norm else nn.Linear(d_in, dims[i + 1])
            setattr(self, f"lin{i}", lin)

    def lin(self, i: int) -> nn.Module:
        return getattr(self, f"lin{i}")


class MotionNetwork(_LinStack):
    """`global_motion_mlp`: d_in -> hidden x n_layers -> d_out, ReLU between, sigmoid at the end."""

    def __init__(
        self,
        d_in: int = 183,
        d_out: int = 32,
        d_hidden: int = 64,
        n_layers: int = 2,
        weight_norm: bool = True,
    ):
        super().__init__()
        self.d_in = d_in
        self._make([d_in] + [d_hidden] * n_layers + [d_out], weight_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.d_in:
            raise InputError("motion code input", f"[..., {self.d_in}]", f"shape {list(x.shape)}")
        for i in range(self.num_linear):
            x = self.lin(i)(x)
            if i < self.num_linear - 1:
                x = torch.relu(x)
        return torch.sigmoid(x)


def motion_code_input(dofs: torch.Tensor, frame: int, body_dofs: torch.Tensor) -> torch.Tensor:
    """The motion MLP's input for `frame` (layout notes section 3): the body DOFs (`body_dofs`, starting
    with the root translation 0, 1, 2) of frames (t, t-1, t-2), history clamped at frame 0, from the plain
    motion file (metres, radians); the root translations of t-1 and t-2 made relative to t's, then t's own
    translation dropped: 3·K - 3 values (183 for the 62 body DOFs)."""
    if dofs.ndim != 2 or not 0 <= frame < dofs.shape[0]:
        raise InputError(
            "frame", f"a frame in 0..{dofs.shape[0] - 1} of DOFs [T, D]", f"{frame} of {list(dofs.shape)}"
        )
    ids = [frame, max(frame - 1, 0), max(frame - 2, 0)]
    sel = dofs[ids][:, body_dofs.long()].clone()
    sel[1:, :3] -= sel[:1, :3]
    return sel.reshape(-1)[3:]


class SDFNetwork(_LinStack):
    """`sdf_network`: input [N, d_in] = (first `to_embed` values encoded) + the rest; `skip_in` layers get the
    encoded input concatenated again (the concatenation divided by √2); softplus(β=100) between layers.
    Output [N, d_out]: column 0 the SDF (divided by `scale`), the rest the feature."""

    def __init__(
        self,
        d_in: int = 51,
        d_out: int = 129,
        d_hidden: int = 128,
        n_layers: int = 3,
        skip_in: Sequence[int] = (2,),
        multires: int = 3,
        to_embed_d_in: int = 3,
        scale: float = 1.0,
        weight_norm: bool = True,
    ):
        super().__init__()
        self.d_in, self.to_embed, self.multires, self.scale = d_in, to_embed_d_in, multires, scale
        self.skip_in = tuple(skip_in)
        embedded = to_embed_d_in * (1 + 2 * multires) if multires > 0 else to_embed_d_in
        self.input_dim = embedded + d_in - to_embed_d_in
        self._make(
            [self.input_dim] + [d_hidden] * n_layers + [d_out], weight_norm, self.skip_in, self.input_dim
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.d_in:
            raise InputError(
                "SDF input", f"[..., {self.d_in}] ((u, v, d) + plane features)", f"shape {list(x.shape)}"
            )
        x = x * self.scale
        head, rest = x[..., : self.to_embed], x[..., self.to_embed :]
        if self.multires > 0:
            head = positional_encoding(head, self.multires)
        inputs = torch.cat([head, rest], -1)
        h = inputs
        for i in range(self.num_linear):
            if i in self.skip_in:
                h = torch.cat([h, inputs], -1) / math.sqrt(2)
            h = self.lin(i)(h)
            if i < self.num_linear - 1:
                h = F.softplus(h, beta=100)
        return torch.cat([h[..., :1] / self.scale, h[..., 1:]], -1)

    def sdf(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)[..., :1]


class RenderingNetwork(_LinStack):
    """`color_network` in mode `idr`: input [points, PE(view dirs), normals, features]."""

    def __init__(
        self,
        d_feature: int = 128,
        d_in: int = 9,
        d_out: int = 3,
        d_hidden: int = 128,
        n_layers: int = 3,
        multires_view: int = 4,
        weight_norm: bool = True,
        squeeze_out: bool = True,
    ):
        super().__init__()
        self.multires_view, self.squeeze_out = multires_view, squeeze_out
        first = d_in + d_feature + (6 * multires_view if multires_view > 0 else 0)
        self.input_dim = first
        self._make([first] + [d_hidden] * n_layers + [d_out], weight_norm)

    def forward(self, points, normals, view_dirs, features) -> torch.Tensor:
        if self.multires_view > 0:
            view_dirs = positional_encoding(view_dirs, self.multires_view)
        h = torch.cat([points, view_dirs, normals, features], -1)
        if h.shape[-1] != self.input_dim:
            raise InputError("colour input", f"{self.input_dim} values per sample", str(h.shape[-1]))
        for i in range(self.num_linear):
            h = self.lin(i)(h)
            if i < self.num_linear - 1:
                h = torch.relu(h)
        return torch.sigmoid(h) if self.squeeze_out else h


class SingleVarianceNetwork(nn.Module):
    """`deviation_network`: a 0-d parameter `variance`; inv_s = exp(10 · variance)."""

    def __init__(self, init_val: float = 0.3):
        super().__init__()
        self.variance = nn.Parameter(torch.tensor(float(init_val)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones(len(x), 1, dtype=self.variance.dtype, device=self.variance.device) * torch.exp(
            self.variance * 10.0
        )


# --------------------------------------------------------------------------------------------------- U-Net


def rollout_pool(x: torch.Tensor) -> torch.Tensor:
    """The official 3D-aware pooling on a rolled-out map [B, C, S, 3S] (thirds uv | uw | wv): returns
    [B, 3C, S, 3S], each third's own C channels followed by two pooled maps of C channels:
    - uv third: uw's row means (constant along the width), then wv's column means (constant down the rows);
    - uw third: uv's row means, then wv's row means;
    - wv third: uw's column means, then uv's column means.
    (Row mean = mean over the width, kept per row; column mean = mean over the rows, kept per column.)"""
    s = x.shape[-1] // 3
    if x.shape[-1] != 3 * s or x.shape[-2] != s:
        raise InputError("rolled-out map", "[B, C, S, 3S] (three square thirds)", f"shape {list(x.shape)}")
    uv, uw, wv = x[..., :s], x[..., s : 2 * s], x[..., 2 * s :]

    def rows(t):  # mean over the width, broadcast back along it
        return t.mean(-1, keepdim=True).expand_as(t)

    def cols(t):  # mean over the rows, broadcast back down them
        return t.mean(-2, keepdim=True).expand_as(t)

    pooled = torch.cat(
        [
            torch.cat([rows(uw), cols(wv)], 1),
            torch.cat([rows(uv), rows(wv)], 1),
            torch.cat([cols(uw), cols(uv)], 1),
        ],
        -1,
    )
    return torch.cat([x, pooled], 1)


class StemConv(nn.Module):
    """`conv_uv` / `conv_uw` / `conv_wv`: a bias-free conv, no activation, no BN (key `conv.weight`)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class AwareDown(nn.Module):
    """`conv{k}`: LeakyReLU(0.01) -> 3D-aware pooling -> 4x4 stride-2 conv (no bias) -> BN (no affine)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(3 * c_in, c_out, 4, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(rollout_pool(F.leaky_relu(x, 0.01))))


class AwareUp(nn.Module):
    """`upconv{k}` / `conv6`: ReLU -> 3D-aware pooling -> transposed conv (no bias) [-> BN (no affine)]
    [-> dropout 0.5 (training only)], then the skip input concatenated along the channels."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int = 4, stride: int = 2, bn: bool = True, dropout: bool = False
    ):
        super().__init__()
        self.up = nn.ConvTranspose2d(3 * c_in, c_out, kernel, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=False) if bn else None
        self.drop = nn.Dropout(0.5) if dropout else None

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = self.up(rollout_pool(torch.relu(x)))
        if self.bn is not None:
            x = self.bn(x)
        if self.drop is not None:
            x = self.drop(x)
        return x if skip is None else torch.cat([x, skip], 1)


class RolloutTriplaneUNet(nn.Module):
    """`feature_extractor` (UnetD5Layers_rollout_256 in the release): see the module docstring.
    Sizes: input_nc_org (motion-texture channels, 18), input_nc (first feature width, 16), output_nc
    (3 planes x channels, 48), bottleneck_dim (motion code, 32; 0 for none). The texture side S must be a
    multiple of 32 (five stride-2 levels; 256 in the release)."""

    def __init__(
        self, input_nc_org: int = 18, input_nc: int = 16, output_nc: int = 48, bottleneck_dim: int = 32
    ):
        super().__init__()
        if output_nc % 3:
            raise InputError("output_nc", "a multiple of 3 (three planes)", str(output_nc))
        c = input_nc
        self.input_nc_org, self.output_nc, self.bottleneck_dim = input_nc_org, output_nc, bottleneck_dim
        self.conv_uv = StemConv(input_nc_org, c)
        self.conv_uw = StemConv(input_nc_org, c)
        self.conv_wv = StemConv(input_nc_org, c)
        self.conv1 = AwareDown(c, 2 * c)
        self.conv2 = AwareDown(2 * c, 4 * c)
        self.conv3 = AwareDown(4 * c, 8 * c)
        self.conv4 = AwareDown(8 * c, 16 * c)
        self.conv5 = AwareDown(16 * c, 32 * c)
        self.upconv1 = AwareUp(32 * c + bottleneck_dim, 16 * c, dropout=True)
        self.upconv2 = AwareUp(32 * c, 8 * c)
        self.upconv3 = AwareUp(16 * c, 4 * c)
        self.upconv4 = AwareUp(8 * c, 2 * c)
        self.upconv5 = AwareUp(4 * c, c)
        self.conv6 = AwareUp(2 * c, output_nc // 3, kernel=3, stride=1, bn=False)

    def forward(self, texture: torch.Tensor, motion_code: torch.Tensor | None = None) -> torch.Tensor:
        """texture [B, input_nc_org, S, S], motion_code [B, bottleneck_dim] -> planes [B, output_nc, S, S]
        in (0, 1): blocks (uv, uw transposed, wv transposed), as the release's tri-plane sampler expects."""
        b, ch, h, w = texture.shape
        if ch != self.input_nc_org or h != w or h % 32:
            raise InputError(
                "motion texture",
                f"[B, {self.input_nc_org}, S, S] with S a multiple of 32",
                f"shape {list(texture.shape)}",
            )
        if self.bottleneck_dim and (
            motion_code is None or tuple(motion_code.shape) != (b, self.bottleneck_dim)
        ):
            got = "None" if motion_code is None else f"shape {list(motion_code.shape)}"
            raise InputError("motion code", f"[{b}, {self.bottleneck_dim}]", got)
        d0 = torch.cat([self.conv_uv(texture), self.conv_uw(texture), self.conv_wv(texture)], -1)
        d1 = self.conv1(d0)
        d2 = self.conv2(d1)
        d3 = self.conv3(d2)
        d4 = self.conv4(d3)
        d5 = self.conv5(d4)
        if self.bottleneck_dim:
            d5 = torch.cat([d5, motion_code[:, :, None, None].expand(-1, -1, *d5.shape[-2:])], 1)
        u = self.upconv1(d5, d4)
        u = self.upconv2(u, d3)
        u = self.upconv3(u, d2)
        u = self.upconv4(u, d1)
        u = self.upconv5(u, d0)
        u = self.conv6(u)
        uv, uw, wv = u[..., :h], u[..., h : 2 * h], u[..., 2 * h :]
        planes = torch.cat([uv, uw.transpose(-1, -2), wv.transpose(-1, -2)], 1)
        return (torch.tanh(planes) + 1.0) / 2.0


# --------------------------------------------------------------------------------------------------- GCNs


def neighbor_lists(edges: torch.Tensor, num_nodes: int) -> list[list[int]]:
    """Sorted neighbour lists of an undirected graph given its edges [E, 2]."""
    nbr: list[set[int]] = [set() for _ in range(num_nodes)]
    for a, b in edges.long().tolist():
        if a != b:
            nbr[a].add(b)
            nbr[b].add(a)
    return [sorted(s) for s in nbr]


def ring_adjacency(
    edges: torch.Tensor, num_nodes: int, ring: int, normalize: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DDC graph convolution's fixed mixing matrix A as (rows, cols, weights): for each node i, every
    node j at hop distance h < `ring` (breadth-first over the mesh edges; i itself at h = 0) gets weight
    ring − h; with `normalize` each row is divided by its sum (rows then sum to 1). Row i mixes into node i."""
    if ring < 1:
        raise InputError("ring_value", "an integer >= 1", str(ring))
    if edges.numel() and (int(edges.min()) < 0 or int(edges.max()) >= num_nodes):
        raise InputError(
            "edges", f"node ids in 0..{num_nodes - 1}", f"{int(edges.min())}..{int(edges.max())}"
        )
    nbr = neighbor_lists(edges, num_nodes)
    rows, cols, vals = [], [], []
    for i in range(num_nodes):
        dist = {i: 0}
        queue = deque([i])
        while queue:
            a = queue.popleft()
            if dist[a] + 1 >= ring:
                continue
            for b in nbr[a]:
                if b not in dist:
                    dist[b] = dist[a] + 1
                    queue.append(b)
        js = sorted(dist)
        w = [float(ring - dist[j]) for j in js]
        total = sum(w) if normalize else 1.0
        rows += [i] * len(js)
        cols += js
        vals += [x / total for x in w]
    return torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long), torch.tensor(vals)


class GCNOperator(nn.Module):
    """One DDC graph convolution. Per-node kernels: h_i = Σ_j A_ij (x_j · kernel_j) + bias_i with
    kernel [N, f_in, f_out], bias [N, f_out]. Dense variant (`dense=True`): h = kernel @ x + bias with
    kernel [N, N] mixing the nodes (f_out = f_in) and no adjacency."""

    def __init__(self, num_nodes: int, f_in: int, f_out: int, dense: bool = False, init_scale: float = 0.001):
        super().__init__()
        self.num_nodes, self.f_in, self.f_out, self.dense = num_nodes, f_in, f_out, dense
        if dense and f_in != f_out:
            raise InputError("dense GCN", "f_in == f_out", f"{f_in} -> {f_out}")
        shape = (num_nodes, num_nodes) if dense else (num_nodes, f_in, f_out)
        self.kernel = nn.Parameter(torch.empty(shape).uniform_(-init_scale, init_scale))
        self.bias = nn.Parameter(torch.empty(num_nodes, f_out).uniform_(-init_scale, init_scale))

    def forward(
        self, x: torch.Tensor, adjacency: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None
    ) -> torch.Tensor:
        if self.dense:
            return torch.matmul(self.kernel, x) + self.bias
        h = torch.einsum("bnf,nfo->bno", x, self.kernel)
        if adjacency is None:
            raise InputError("adjacency", "the graph's ring adjacency (set_adjacency / set_mesh)", "none")
        rows, cols, w = adjacency
        mixed = torch.zeros_like(h).index_add_(1, rows, h[:, cols] * w.to(h.dtype)[None, :, None])
        return mixed + self.bias


class DDCGraphCNN(nn.Module):
    """`spatial_gcn` / `delta_gcn` (WootSpatialGCN in the release): a residual graph CNN with per-node
    kernels. x [B, N, input_size] -> [B, N, output_size]:
        x = gcnn_0(x); skip = x
        first half of the residual blocks, then (if dense_inner_block) the dense block, then the second half;
        block b: [bn_b_0] -> ELU -> gcnn_b_0 -> [bn_b_1] -> gcnn_b_1; x = skip + x; skip = x
        dense block: [dense_0_bn] -> ELU -> dense_0_gcnn; x = skip + x
        ELU -> final_gcnn
    (no activation between gcnn_b_0 and gcnn_b_1, as in the release). BatchNorm1d runs over the flattened
    N·F features. The ring adjacency is not a parameter: pass the mesh edges to `set_mesh` (ring hops
    `ring_value`), or precomputed (rows, cols, weights) to `set_adjacency`."""

    def __init__(
        self,
        num_nodes: int,
        input_size: int,
        output_size: int,
        feature_size1: int = 16,
        feature_size2: int = 16,
        num_residual_blocks: int = 8,
        use_batch_norm: bool = True,
        dense_inner_block: bool = False,
        ring_value: int = 2,
        normalize: bool = True,
        init_scale: float = 0.001,
    ):
        super().__init__()
        if num_residual_blocks % 2:
            raise InputError("num_residual_blocks", "an even number", str(num_residual_blocks))
        self.num_nodes, self.input_size, self.output_size = num_nodes, input_size, output_size
        self.f1, self.f2, self.num_blocks = feature_size1, feature_size2, num_residual_blocks
        self.use_bn, self.dense_inner_block = use_batch_norm, dense_inner_block
        self.ring_value, self.normalize = ring_value, normalize
        n, f2 = num_nodes, feature_size2
        self.gcnn_0 = GCNOperator(n, input_size, f2, init_scale=init_scale)
        half = num_residual_blocks // 2
        for b in range(half):
            self._block(b, init_scale)
        if dense_inner_block:
            if use_batch_norm:
                self.dense_0_bn = nn.BatchNorm1d(n * f2)
            self.dense_0_gcnn = GCNOperator(n, f2, f2, dense=True, init_scale=init_scale * 0.01)
        for b in range(half, num_residual_blocks):
            self._block(b, init_scale)
        self.final_gcnn = GCNOperator(n, f2, output_size, init_scale=init_scale)
        self.register_buffer("adj_rows", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("adj_cols", torch.zeros(0, dtype=torch.long), persistent=False)
        self.register_buffer("adj_weights", torch.zeros(0), persistent=False)
        self.has_adjacency = False

    def _block(self, b: int, init_scale: float):
        n, f1, f2 = self.num_nodes, self.f1, self.f2
        if self.use_bn:
            setattr(self, f"bn_{b}_0", nn.BatchNorm1d(n * f2))
        setattr(self, f"gcnn_{b}_0", GCNOperator(n, f2, f1, init_scale=init_scale))
        if self.use_bn:
            setattr(self, f"bn_{b}_1", nn.BatchNorm1d(n * f1))
        setattr(self, f"gcnn_{b}_1", GCNOperator(n, f1, f2, init_scale=init_scale))

    def set_adjacency(self, rows: torch.Tensor, cols: torch.Tensor, weights: torch.Tensor) -> DDCGraphCNN:
        dev = self.final_gcnn.bias.device
        self.adj_rows, self.adj_cols = rows.long().to(dev), cols.long().to(dev)
        self.adj_weights = weights.to(dev, self.final_gcnn.bias.dtype)
        self.has_adjacency = True
        return self

    def set_mesh(self, edges: torch.Tensor, num_nodes: int | None = None) -> DDCGraphCNN:
        """Rebuild the ring adjacency from the edges of the graph/mesh this network belongs to."""
        count = self.num_nodes if num_nodes is None else num_nodes
        if count != self.num_nodes:
            raise InputError("mesh", f"{self.num_nodes} nodes (this network's)", str(count))
        return self.set_adjacency(*ring_adjacency(edges, self.num_nodes, self.ring_value, self.normalize))

    def adjacency_matrix(self) -> torch.Tensor:
        """The mixing matrix A [N, N] (dense, for inspection)."""
        a = torch.zeros(
            self.num_nodes, self.num_nodes, dtype=self.adj_weights.dtype, device=self.adj_weights.device
        )
        return a.index_put_((self.adj_rows, self.adj_cols), self.adj_weights, accumulate=True)

    def _bn(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if not self.use_bn:
            return x
        b, n, f = x.shape
        return getattr(self, name)(x.reshape(b, n * f)).reshape(b, n, f)

    def _residual(self, b: int, x: torch.Tensor, adj) -> torch.Tensor:
        h = getattr(self, f"gcnn_{b}_0")(F.elu(self._bn(f"bn_{b}_0", x)), adj)
        return x + getattr(self, f"gcnn_{b}_1")(self._bn(f"bn_{b}_1", h), adj)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1:] != (self.num_nodes, self.input_size):
            raise InputError(
                "graph features", f"[B, {self.num_nodes}, {self.input_size}]", f"shape {list(x.shape)}"
            )
        adj = (self.adj_rows, self.adj_cols, self.adj_weights) if self.has_adjacency else None
        x = self.gcnn_0(x, adj)
        half = self.num_blocks // 2
        for b in range(half):
            x = self._residual(b, x, adj)
        if self.dense_inner_block:
            x = x + self.dense_0_gcnn(F.elu(self._bn("dense_0_bn", x)), adj)
        for b in range(half, self.num_blocks):
            x = self._residual(b, x, adj)
        return self.final_gcnn(F.elu(x), adj)
