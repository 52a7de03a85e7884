"""The whole TriHuman avatar of one character: deformable template, motion texture, motion code, tri-plane
generator and fields (Sec. 3.1-3.5), and its one-file format.

Per frame t of a motion (poses [T, J, 3], root translations [T, 3]):
1. the three-frame pose vector of (t, t-1, t-2) (`character.pose_features`) drives the embedded graph
   and per-vertex offsets (`deform.DeformationNetwork`), then dual-quaternion skinning poses the template;
2. the posed vertices and normals of frames t, t-1, t-2 -> the 18-channel motion texture (`template.py`);
   our interpretation: positions relative to frame t's root joint, so the generator sees the body's
   shape and motion, not where it stands;
3. the motion code (`triplane.MotionCode`) joins the generator's bottleneck; the generator gives three
   16-channel planes;
4. `AvatarField.bind` gives the frame's SDF / colour / NeuS render / mesh (`avatar_field.py`).

File format (`save_avatar` / `load_avatar`): one `.safetensors` holding the character (`character.*`:
template, faces, UVs, skin weights, rest joints), the embedded graph (`graph.*`) and the networks'
weights (fp16 by default), with the config, parents and joint names as JSON in the metadata under
`papernodes_trihuman`. Loading never unpickles.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..common.errors import InputError, WeightsFormatError
from .avatar_field import AvatarField, AvatarFieldConfig, BoundAvatar
from .character import Character, history, pose_features
from .deform import (
    DeformationNetwork,
    EmbeddedGraph,
    build_embedded_graph,
    embedded_deformation,
    graph_regularizer,
)
from .skinning import dual_quaternion_skinning
from .template import motion_texture
from .triplane import MotionCode, TriplaneGenerator, TriplaneGeneratorConfig

FORMAT_KEY = "papernodes_trihuman"


@dataclass
class AvatarConfig:
    """Sizes of one avatar. Defaults: the paper's where it gives them (256^2 texture and planes, 16-channel
    planes, 32-d motion code, ~20 candidate faces, 32 samples per ray); graph size and widths are ours."""

    texture_size: int = 256
    graph_nodes: int = 256
    deform_hidden: int = 64
    deform_graph_layers: int = 2
    motion_hidden: int = 128
    generator: dict = field(default_factory=dict)  # TriplaneGeneratorConfig fields (size, channels: derived)
    fields: dict = field(default_factory=dict)  # AvatarFieldConfig fields

    def generator_config(self) -> TriplaneGeneratorConfig:
        plane = self.field_config().plane_channels
        return TriplaneGeneratorConfig.from_any({**self.generator, "in_channels": 18, "size": self.texture_size,
                                                 "plane_channels": plane})  # fmt: skip

    def field_config(self) -> AvatarFieldConfig:
        known = set(AvatarFieldConfig.__dataclass_fields__)
        if unknown := sorted(set(self.fields) - known):
            raise InputError("fields", f"avatar field settings among {sorted(known)}", f"unknown {unknown}")
        return AvatarFieldConfig(**self.fields)


class TriHumanAvatar(nn.Module):
    """One character's avatar (module docstring). `frames(poses, translations)` poses a motion;
    `bind(posed, features, t)` gives frame t's fields."""

    def __init__(
        self, character: Character, config: AvatarConfig | None = None, graph: EmbeddedGraph | None = None
    ):
        super().__init__()
        self.config = config = config or AvatarConfig()
        self.parents, self.joint_names = tuple(character.parents), tuple(character.joint_names)
        for name in ("vertices", "faces", "uvs", "skin_weights", "rest_joints"):
            self.register_buffer(f"char_{name}", getattr(character, name).clone(), persistent=False)
        n_nodes = min(config.graph_nodes, character.vertices.shape[0] - 1)
        graph = graph or build_embedded_graph(character.vertices.double(), n_nodes)
        for name, value in graph._asdict().items():
            self.register_buffer(f"graph_{name}", value.clone(), persistent=False)
        pose_dim = character.frame_features
        self.deformer = DeformationNetwork(self._graph(), 3 * pose_dim, config.deform_hidden,
                                           config.deform_graph_layers)  # fmt: skip
        gen = config.generator_config()
        self.motion_code = (
            MotionCode(pose_dim, 3, config.motion_hidden, gen.motion_dim) if gen.motion_dim else None
        )
        self.generator = TriplaneGenerator(gen)
        self.field = AvatarField(config.field_config())

    def _graph(self) -> EmbeddedGraph:
        dtype = self.char_vertices.dtype
        return EmbeddedGraph(self.graph_nodes.to(dtype), self.graph_node_index, self.graph_edges,
                             self.graph_vertex_nodes, self.graph_vertex_weights.to(dtype))  # fmt: skip

    def _apply(self, fn, *args, **kwargs):  # .to() / .double(): the graph the deformer holds follows
        out = super()._apply(fn, *args, **kwargs)
        self.deformer.graph = self._graph()
        return out

    @property
    def faces(self) -> torch.Tensor:
        return self.char_faces

    @property
    def uvs(self) -> torch.Tensor:
        return self.char_uvs

    def character_on_device(self) -> Character:
        return Character(self.char_vertices, self.char_faces, self.char_uvs, self.char_skin_weights,
                         self.char_rest_joints, self.parents, self.joint_names)  # fmt: skip

    # ----------------------------------------------------------------------------------------- posing

    def frames(
        self, poses: torch.Tensor, translations: torch.Tensor, deform: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A motion of T frames (poses [T, J, 3] axis-angle, translations [T, 3]) -> (posed template
        [T, V, 3], pose features [T, 3, 3J + 3], regularisers {"graph": Sumner's E_reg, "offsets": mean
        squared per-vertex offset (m^2)}). `deform=False`: skinning only."""
        char = self.character_on_device()
        char.check_poses(poses)
        if translations.shape != (poses.shape[0], 3):
            raise InputError("translations", f"root translations [{poses.shape[0]}, 3] (one per pose)",
                             str(tuple(translations.shape)))  # fmt: skip
        dtype = self.char_vertices.dtype
        poses, translations = poses.to(self.char_vertices), translations.to(self.char_vertices)
        hp, ht = history(poses, translations)
        feats = pose_features(hp, ht)  # [T, 3, F]
        transforms = char.transforms(poses, translations)  # [T, J, 4, 4]
        reg = {"graph": torch.zeros((), dtype=dtype, device=poses.device)}
        reg["offsets"] = reg["graph"]
        rest = self.char_vertices
        if deform:
            out = self.deformer(feats.flatten(1))
            moved = embedded_deformation(rest, self.deformer.graph, out["rotations"], out["translations"])
            moved = moved + out["offsets"]
            reg = {"graph": graph_regularizer(self.deformer.graph, out["rotations"], out["translations"]),
                   "offsets": out["offsets"].square().sum(-1).mean()}  # fmt: skip
        else:
            moved = rest.expand(poses.shape[0], *rest.shape)
        posed = torch.stack([dual_quaternion_skinning(moved[t], self.char_skin_weights, transforms[t])
                             for t in range(poses.shape[0])])  # fmt: skip
        return posed, feats, reg

    def root_positions(self, poses: torch.Tensor, translations: torch.Tensor) -> torch.Tensor:
        """[T, 3] world position of the root joint."""
        return self.character_on_device().joints(
            poses.to(self.char_vertices), translations.to(self.char_vertices)
        )[:, 0]

    def planes(
        self, posed: torch.Tensor, features: torch.Tensor, roots: torch.Tensor, t: int
    ) -> torch.Tensor:
        """Frame t's tri-planes [1, 3, C, S, S] from the posed template of t, t-1, t-2 (clamped at 0)."""
        idx = [t, max(t - 1, 0), max(t - 2, 0)]
        frames = posed[idx] - roots[t]
        texture, _ = motion_texture(frames, self.char_faces, self.char_uvs, self.config.texture_size)
        code = self.motion_code(features[t : t + 1]) if self.motion_code is not None else None
        return self.generator(texture[None], code)

    def bind(self, posed: torch.Tensor, features: torch.Tensor, roots: torch.Tensor, t: int) -> BoundAvatar:
        """Frame t's fields (SDF, colour, render, mesh) around its posed template."""
        return self.field.bind(
            posed[t], self.char_faces, self.char_uvs, self.planes(posed, features, roots, t)
        )


# ------------------------------------------------------------------------------------------- file format

_CHAR = ("vertices", "faces", "uvs", "skin_weights", "rest_joints")


def avatar_state(
    avatar: TriHumanAvatar, dtype: torch.dtype | None = torch.float16
) -> dict[str, torch.Tensor]:
    """Everything `load_avatar` needs as tensors: character, graph and weights (floats in `dtype`)."""
    state = {f"character.{n}": getattr(avatar, f"char_{n}") for n in _CHAR}
    state["character.vertices"] = state["character.vertices"].float()
    for name in EmbeddedGraph._fields:
        state[f"graph.{name}"] = getattr(avatar, f"graph_{name}")
    for key, value in avatar.state_dict().items():
        state[f"model.{key}"] = value.to(dtype) if dtype is not None and value.is_floating_point() else value
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def save_avatar(avatar: TriHumanAvatar, path: str | Path, dtype: torch.dtype | None = torch.float16) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    meta = {"config": asdict(avatar.config), "parents": list(avatar.parents), "joint_names": list(avatar.joint_names),
            "format": 1}  # fmt: skip
    save_file(avatar_state(avatar, dtype), str(path), metadata={FORMAT_KEY: json.dumps(meta)})
    return path


def load_avatar(
    path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> TriHumanAvatar:
    """A TriHumanAvatar from a file `save_avatar` wrote (module docstring)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"TriHuman avatar '{path}' not found")
    try:
        with safe_open(str(path), "pt") as f:
            meta = (f.metadata() or {}).get(FORMAT_KEY)
        state = load_file(str(path))
    except Exception as exc:
        raise WeightsFormatError(f"'{path.name}' is not a readable .safetensors file ({exc})") from None
    if meta is None:
        raise WeightsFormatError(
            f"'{path.name}' is not a PaperNodes TriHuman avatar (no '{FORMAT_KEY}' metadata); train one with "
            "Train Avatar or python -m models.trihuman.train, or convert the official checkpoints"
        )
    info = json.loads(meta)
    char = Character(
        *(state[f"character.{n}"].to(torch.float32 if n != "faces" else torch.long) for n in _CHAR),
        tuple(info["parents"]), tuple(info["joint_names"]),
    )  # fmt: skip
    graph = EmbeddedGraph(*(state[f"graph.{n}"] for n in EmbeddedGraph._fields))
    avatar = TriHumanAvatar(char, AvatarConfig(**info["config"]), graph)
    weights = {k[len("model.") :]: v.float() if v.is_floating_point() else v for k, v in state.items()
               if k.startswith("model.")}  # fmt: skip
    missing, unexpected = avatar.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise WeightsFormatError(f"'{path.name}': weights do not fit its config (missing {missing[:5]}, "
                                 f"unexpected {unexpected[:5]})")  # fmt: skip
    return avatar.to(device=device, dtype=dtype).eval()
