"""Loading the official TriHuman checkpoints (`<Subject>_checkpoints/{explicit,implicit}_checkpoint.pth`)
into the networks of `networks.py`, and a writer of synthetic checkpoints in the same layout for tests.

Both files are `torch.save`d dicts of state dicts (layout notes section 2):
- implicit: `feature_extractor`, `global_motion_mlp`, `sdf_network`, `color_network`, `deviation_network`;
- explicit: `spatial_gcn` (the embedded graph's nodes), `delta_gcn` (the template's vertices).
They are read with `torch.load(..., map_location="cpu", weights_only=True)` only. Each sub-network must
match exactly (no missing, unexpected or reshaped keys); other top-level keys (optimiser state, step
counters) are ignored and reported in `OfficialTriHuman.ignored_keys`. A uniform `module.` prefix (a
DataParallel save) is stripped. The implicit networks have the same sizes for every subject, so a file of
another subject cannot be told apart; the explicit ones are sized by the character's graph node and
template vertex counts, which is how a checkpoint of another subject is recognised.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ...common.errors import WeightsFormatError, WeightsNotFoundError
from .files import OfficialMesh
from .networks import (
    DDCGraphCNN,
    MotionNetwork,
    RenderingNetwork,
    RolloutTriplaneUNet,
    SDFNetwork,
    SingleVarianceNetwork,
)

PUBLISHED = "gvv-assets.mpi-inf.mpg.de/TriHuman/ (see the README of github.com/kv2000/TriHuman; CC BY-NC)"
IMPLICIT_KEYS = (
    "feature_extractor",
    "global_motion_mlp",
    "sdf_network",
    "color_network",
    "deviation_network",
)
EXPLICIT_KEYS = ("spatial_gcn", "delta_gcn")


@dataclass(frozen=True)
class OfficialImplicitConfig:
    """Sizes of the implicit networks; the defaults are the release's (identical in all six configs)."""

    input_nc_org: int = 18
    input_nc: int = 16
    output_nc: int = 48
    bottleneck_dim: int = 32
    motion_d_in: int = 183
    motion_d_hidden: int = 64
    motion_n_layers: int = 2
    sdf_d_hidden: int = 128
    sdf_n_layers: int = 3
    sdf_skip_in: tuple[int, ...] = (2,)
    sdf_multires: int = 3
    sdf_feature: int = 128
    color_d_hidden: int = 128
    color_n_layers: int = 3
    color_multires_view: int = 4
    variance_init: float = 0.3


@dataclass(frozen=True)
class OfficialGCNConfig:
    input_size: int
    output_size: int
    ring_value: int
    use_batch_norm: bool
    dense_inner_block: bool
    feature_size1: int = 16
    feature_size2: int = 16
    num_residual_blocks: int = 8


SPATIAL_GCN = OfficialGCNConfig(
    input_size=18, output_size=6, ring_value=2, use_batch_norm=True, dense_inner_block=False
)
DELTA_GCN = OfficialGCNConfig(
    input_size=9, output_size=3, ring_value=3, use_batch_norm=False, dense_inner_block=True
)


class OfficialImplicitNetworks(nn.Module):
    """Submodules named as the implicit checkpoint's top-level keys."""

    def __init__(self, config: OfficialImplicitConfig = OfficialImplicitConfig()):
        super().__init__()
        c = config
        self.config = c
        self.feature_extractor = RolloutTriplaneUNet(
            c.input_nc_org, c.input_nc, c.output_nc, c.bottleneck_dim
        )
        self.global_motion_mlp = MotionNetwork(
            c.motion_d_in, c.bottleneck_dim, c.motion_d_hidden, c.motion_n_layers
        )
        self.sdf_network = SDFNetwork(
            d_in=3 + c.output_nc,
            d_out=1 + c.sdf_feature,
            d_hidden=c.sdf_d_hidden,
            n_layers=c.sdf_n_layers,
            skip_in=c.sdf_skip_in,
            multires=c.sdf_multires,
            to_embed_d_in=3,
        )
        self.color_network = RenderingNetwork(
            d_feature=c.sdf_feature,
            d_hidden=c.color_d_hidden,
            n_layers=c.color_n_layers,
            multires_view=c.color_multires_view,
        )
        self.deviation_network = SingleVarianceNetwork(c.variance_init)


class OfficialExplicitNetworks(nn.Module):
    """`spatial_gcn` over the embedded graph's nodes, `delta_gcn` over the template's vertices."""

    def __init__(
        self,
        num_graph_nodes: int,
        num_vertices: int,
        spatial: OfficialGCNConfig = SPATIAL_GCN,
        delta: OfficialGCNConfig = DELTA_GCN,
    ):
        super().__init__()
        self.spatial_gcn = _gcn(num_graph_nodes, spatial)
        self.delta_gcn = _gcn(num_vertices, delta)

    @property
    def num_graph_nodes(self) -> int:
        return self.spatial_gcn.num_nodes

    @property
    def num_vertices(self) -> int:
        return self.delta_gcn.num_nodes


def _gcn(n: int, c: OfficialGCNConfig) -> DDCGraphCNN:
    return DDCGraphCNN(
        n,
        c.input_size,
        c.output_size,
        c.feature_size1,
        c.feature_size2,
        c.num_residual_blocks,
        c.use_batch_norm,
        c.dense_inner_block,
        c.ring_value,
    )


@dataclass
class OfficialTriHuman:
    """What `load_official_checkpoints` returns (in eval mode, on CPU)."""

    implicit: OfficialImplicitNetworks | None
    explicit: OfficialExplicitNetworks | None
    ignored_keys: dict[str, list[str]] = field(default_factory=dict)  # file -> top-level keys not read


# --------------------------------------------------------------------------------------------------- loading


def _subject_hint(path: str | Path | None) -> str:
    """The release's subject name found in a path (`Subject0010_loose_checkpoints/...`), or ''."""
    m = re.search(r"(Subject\d+_[A-Za-z]+)", str(path or ""))
    return m.group(1) if m else ""


def _read(path: str | Path, expected_keys: tuple[str, ...], input_name: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise WeightsNotFoundError(path.name, [str(path.parent)], PUBLISHED)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a torch file, or it holds objects weights_only refuses
        raise WeightsFormatError(
            f"{input_name} '{path}': not readable as a weights-only torch checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    if not isinstance(data, dict):
        raise WeightsFormatError(
            f"{input_name} '{path}': expected a dict of state dicts, got {type(data).__name__}"
        )
    missing = [k for k in expected_keys if k not in data]
    if missing:
        raise WeightsFormatError(
            f"{input_name} '{path}': missing the sub-network(s) {missing}; it holds {sorted(map(str, data))[:12]}. "
            f"The official {input_name} has {list(expected_keys)}."
        )
    for k in expected_keys:
        sd = data[k]
        if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise WeightsFormatError(f"{input_name} '{path}': '{k}' is not a state dict (name -> tensor)")
    return data


def _strip_module(sd: dict) -> dict:
    if sd and all(str(k).startswith("module.") for k in sd):
        return OrderedDict((k[len("module.") :], v) for k, v in sd.items())
    return sd


def _compare(module: nn.Module, sd: dict) -> tuple[list[str], list[str], list[str]]:
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    reshaped = [
        f"{k}: file {list(sd[k].shape)} vs {list(own[k].shape)}"
        for k in own
        if k in sd and sd[k].shape != own[k].shape
    ]
    return missing, unexpected, reshaped


def _short(items: list[str], n: int = 8) -> str:
    return (
        ", ".join(items[:n]) + (f", ... ({len(items)} in all)" if len(items) > n else "") if items else "none"
    )


def _load_strict(module: nn.Module, sd: dict, name: str, path, input_name: str, context: str = "") -> None:
    missing, unexpected, reshaped = _compare(module, sd)
    if missing or unexpected or reshaped:
        raise WeightsFormatError(
            f"{input_name} '{path}': '{name}' does not match the official architecture{context}. "
            f"Missing keys: {_short(missing)}. Unexpected keys: {_short(unexpected)}. "
            f"Shape mismatches: {_short(reshaped, 4)}."
        )
    module.load_state_dict(sd, strict=True)


def _count(sd: dict, key: str) -> int | None:
    t = sd.get(f"{key}.kernel")
    return int(t.shape[0]) if isinstance(t, torch.Tensor) and t.ndim >= 2 else None


def load_official_checkpoints(
    explicit_path: str | Path | None,
    implicit_path: str | Path | None,
    *,
    graph: OfficialMesh | None = None,
    template: OfficialMesh | None = None,
    num_graph_nodes: int | None = None,
    num_vertices: int | None = None,
    implicit_config: OfficialImplicitConfig = OfficialImplicitConfig(),
    spatial_config: OfficialGCNConfig = SPATIAL_GCN,
    delta_config: OfficialGCNConfig = DELTA_GCN,
) -> OfficialTriHuman:
    """Load `explicit_checkpoint.pth` and/or `implicit_checkpoint.pth` (either path may be None).

    The GCN sizes come from the character: `graph` (`ddc_graph.obj`) and `template` (`ddc.obj`) read with
    `files.read_obj`, or the counts `num_graph_nodes` / `num_vertices`; with neither, the counts are taken
    from the checkpoint itself. A count that differs from the file's raises `WeightsFormatError` naming both
    (the usual cause: the checkpoint of another subject). Given `graph` / `template`, the GCNs also get their
    ring adjacency (rings 2 and 3) from the meshes' edges, ready to run; otherwise call `set_mesh` later."""
    ignored: dict[str, list[str]] = {}
    implicit = explicit = None
    if implicit_path is not None:
        data = _read(implicit_path, IMPLICIT_KEYS, "implicit checkpoint")
        implicit = OfficialImplicitNetworks(implicit_config)
        for k in IMPLICIT_KEYS:
            _load_strict(
                getattr(implicit, k), _strip_module(data[k]), k, implicit_path, "implicit checkpoint"
            )
        ignored[str(implicit_path)] = [str(k) for k in data if k not in IMPLICIT_KEYS]
        implicit.eval()
    if explicit_path is not None:
        data = _read(explicit_path, EXPLICIT_KEYS, "explicit checkpoint")
        spatial_sd, delta_sd = (_strip_module(data[k]) for k in EXPLICIT_KEYS)
        file_nodes, file_verts = _count(spatial_sd, "gcnn_0"), _count(delta_sd, "gcnn_0")
        want_nodes = graph.num_vertices if graph is not None else num_graph_nodes
        want_verts = template.num_vertices if template is not None else num_vertices
        _check_counts(explicit_path, file_nodes, file_verts, want_nodes, want_verts, graph, template)
        n_nodes, n_verts = want_nodes or file_nodes, want_verts or file_verts
        if n_nodes is None or n_verts is None:
            raise WeightsFormatError(
                f"explicit checkpoint '{explicit_path}': no 'gcnn_0.kernel' in spatial_gcn/delta_gcn to size the "
                "graphs from; pass graph/template (or num_graph_nodes/num_vertices)"
            )
        explicit = OfficialExplicitNetworks(n_nodes, n_verts, spatial_config, delta_config)
        ctx = f" (built for {n_nodes} graph nodes and {n_verts} template vertices)"
        _load_strict(
            explicit.spatial_gcn, spatial_sd, "spatial_gcn", explicit_path, "explicit checkpoint", ctx
        )
        _load_strict(explicit.delta_gcn, delta_sd, "delta_gcn", explicit_path, "explicit checkpoint", ctx)
        ignored[str(explicit_path)] = [str(k) for k in data if k not in EXPLICIT_KEYS]
        if graph is not None:
            explicit.spatial_gcn.set_mesh(graph.edges)
        if template is not None:
            explicit.delta_gcn.set_mesh(template.edges)
        explicit.eval()
    return OfficialTriHuman(implicit, explicit, ignored)


def _check_counts(path, file_nodes, file_verts, want_nodes, want_verts, graph, template) -> None:
    problems = []
    if want_nodes is not None and file_nodes is not None and file_nodes != want_nodes:
        src = f"the graph '{graph.source}'" if graph is not None and graph.source else "the given graph"
        problems.append(f"{src} has {want_nodes} nodes but the checkpoint's spatial_gcn has {file_nodes}")
    if want_verts is not None and file_verts is not None and file_verts != want_verts:
        src = (
            f"the template '{template.source}'"
            if template is not None and template.source
            else "the given template"
        )
        problems.append(f"{src} has {want_verts} vertices but the checkpoint's delta_gcn has {file_verts}")
    if not problems:
        return
    hint_ckpt = _subject_hint(path)
    hint_char = _subject_hint(graph.source if graph is not None else None) or _subject_hint(
        template.source if template is not None else None
    )
    who = f"a character with {file_nodes} graph nodes and {file_verts} template vertices"
    if hint_ckpt:
        who += f" (its folder says {hint_ckpt})"
    char = f" the character files are {hint_char}'s;" if hint_char and hint_char != hint_ckpt else ""
    raise WeightsFormatError(
        f"explicit checkpoint '{path}' does not belong to this character: {'; '.join(problems)}. The file seems "
        f"to be for {who};{char} use the checkpoint folder of the same subject as the metadata folder."
    )


# --------------------------------------------------------------------------------------------------- writer


def _randomize(module: nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for name, t in module.state_dict(keep_vars=True).items():
            if not t.is_floating_point():
                t.fill_(int(torch.randint(0, 1000, (), generator=generator)))
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=generator) + 0.5)
            elif name.endswith("weight_g"):
                t.copy_(torch.rand(t.shape, generator=generator) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=generator) * 0.05)


def write_synthetic_checkpoints(
    folder: str | Path,
    num_graph_nodes: int,
    num_vertices: int,
    *,
    implicit_config: OfficialImplicitConfig = OfficialImplicitConfig(),
    spatial_config: OfficialGCNConfig = SPATIAL_GCN,
    delta_config: OfficialGCNConfig = DELTA_GCN,
    seed: int = 0,
    extra: dict | None = None,
) -> tuple[Path, Path]:
    """Write `explicit_checkpoint.pth` and `implicit_checkpoint.pth` into `folder` in the official layout
    (dicts of state dicts) with random weights of the documented shapes; `extra` adds top-level entries
    (e.g. a step counter) to both. Returns (explicit_path, implicit_path). For tests: the weights mean
    nothing."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    implicit = OfficialImplicitNetworks(implicit_config)
    explicit = OfficialExplicitNetworks(num_graph_nodes, num_vertices, spatial_config, delta_config)
    _randomize(implicit, g)
    _randomize(explicit, g)
    paths = folder / "explicit_checkpoint.pth", folder / "implicit_checkpoint.pth"
    for path, net, keys in ((paths[0], explicit, EXPLICIT_KEYS), (paths[1], implicit, IMPLICIT_KEYS)):
        payload = {k: getattr(net, k).state_dict() for k in keys}
        payload.update(extra or {})
        torch.save(payload, path)
    return paths
