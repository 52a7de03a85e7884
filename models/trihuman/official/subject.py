"""An official TriHuman subject as users download it, loaded in one call and rendered frame by frame.

The release puts a subject's files in `<Subject>_metadata/` (template, graph, skeleton, skin, rest pose,
cameras, base translation, body DOFs, motions in `skeletoolToGTPose{,_test}/`) and its two checkpoints in
`<Subject>_checkpoints/` (layout notes section 1). `load_official_subject` reads both folders with the
readers in `files` / `skeleton` / `checkpoint`, builds the rig (`posing`) and the UV map
(`motion_texture`) once; `render_subject_frame` renders one frame from one calibrated camera (`frame`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ...common.errors import InputError
from .checkpoint import OfficialImplicitConfig, OfficialTriHuman, load_official_checkpoints
from .files import (
    OfficialCameras,
    read_base_trans,
    read_body_dofs,
    read_calibration,
    read_motion,
    read_normalized_motion,
    read_obj,
    read_segmentation,
    read_skin,
    read_subdivision,
)
from .frame import GLOBAL_SCALE_MM, OfficialFrame, official_planes, render_official_frame  # noqa: F401 (official_planes re-exported)
from .geometry import release_surface
from .motion_texture import UVBarycentricMap, release_uv_map
from .posing import ReleaseRig
from .skeleton import read_skeleton

METADATA_FILES = ("ddc.obj", "ddc_graph.obj", "ddc.skeleton", "ddc.skin", "ddc.motion", "cameras.calibration",
                  "base_trans.pkl", "dof_convert_dict.pkl")  # fmt: skip
CHECKPOINT_FILES = ("explicit_checkpoint.pth", "implicit_checkpoint.pth")
MOTION_SPLITS = {"train": "skeletoolToGTPose", "test": "skeletoolToGTPose_test"}
TEXTURE_SIZE = 256  # `barycentric_tex_size`
SUBDIVISION_FILE = "subdivision_dict_xyz_new.pkl"  # needed for meshes only
HAND_FILE = "segmentation_hand.txt"  # optional: hand vertices stay put in the mesh (label 0 = not hand)


@dataclass
class OfficialSubject:
    name: str
    networks: OfficialTriHuman
    rig: ReleaseRig
    uv_map: UVBarycentricMap
    face_uvs: torch.Tensor  # [F, 3, 2] raw template UVs
    cameras: OfficialCameras
    base_trans: torch.Tensor  # [3] metres
    body_dofs: torch.Tensor  # [K] long
    metadata: Path  # the <Subject>_metadata folder (its motions live there)
    subdivision: list | None = None  # the template's subdivision stages (`read_subdivision`), for meshes
    hand_keep: torch.Tensor | None = None  # [V] 1 = movable, 0 = hand vertex (from segmentation_hand.txt)


@dataclass
class OfficialSubjectMotion:
    dofs: torch.Tensor  # [T, D] (metres, radians)
    normalized: torch.Tensor  # [T, 3, D]
    source: str


def _need(folder: Path, names, what: str) -> None:
    if not folder.is_dir():
        raise InputError(what, f"a folder holding {', '.join(names)}", str(folder))
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise InputError(
            what, f"the release's files {', '.join(names)}", f"{folder} lacks {', '.join(missing)}"
        )


def load_official_subject(metadata: str | Path, checkpoints: str | Path,
                          texture_size: int = TEXTURE_SIZE) -> OfficialSubject:  # fmt: skip
    """Read `<Subject>_metadata/` and `<Subject>_checkpoints/` (see the module docstring)."""
    metadata, checkpoints = Path(metadata), Path(checkpoints)
    _need(metadata, METADATA_FILES, "metadata folder")
    _need(checkpoints, CHECKPOINT_FILES, "checkpoint folder")
    template = read_obj(metadata / "ddc.obj", unit=1.0)  # the release poses in millimetres
    graph = read_obj(metadata / "ddc_graph.obj", unit=1.0)
    if template.corner_uvs is None:
        raise InputError(str(metadata / "ddc.obj"), "texture coordinates (`vt` and f v/vt)", "none")
    skeleton = read_skeleton(metadata / "ddc.skeleton")
    skin = read_skin(metadata / "ddc.skin", num_vertices=template.num_vertices)
    rest = read_motion(metadata / "ddc.motion").dofs[0]
    body = read_body_dofs(metadata / "dof_convert_dict.pkl", num_dofs=skeleton.num_dofs)
    networks = load_official_checkpoints(
        checkpoints / CHECKPOINT_FILES[0], checkpoints / CHECKPOINT_FILES[1], graph=graph, template=template,
        implicit_config=OfficialImplicitConfig(motion_d_in=3 * len(body) - 3),
    )  # fmt: skip
    rig = ReleaseRig.build(template.vertices, template.faces, skeleton, skin, rest, graph.vertices)
    return OfficialSubject(
        name=metadata.name.removesuffix("_metadata"),
        networks=networks,
        rig=rig,
        uv_map=release_uv_map(template.corner_uvs, texture_size),
        face_uvs=template.corner_uvs,
        cameras=read_calibration(metadata / "cameras.calibration"),
        base_trans=read_base_trans(metadata / "base_trans.pkl"),
        body_dofs=body,
        metadata=metadata,
        subdivision=read_subdivision(metadata / SUBDIVISION_FILE, template.num_vertices)
        if (metadata / SUBDIVISION_FILE).is_file()
        else None,
        hand_keep=(read_segmentation(metadata / HAND_FILE, template.num_vertices) == 0).double()
        if (metadata / HAND_FILE).is_file()
        else None,
    )


def load_subject_motion(metadata: str | Path, split: str = "test") -> OfficialSubjectMotion:
    """The subject's motion of a split (`train` or `test`): `poseAngles.motion` and its normalised
    variant `poseAnglesRotationNormalized.motion`, frame for frame."""
    if split not in MOTION_SPLITS:
        raise InputError("split", f"one of {', '.join(MOTION_SPLITS)}", repr(split))
    folder = Path(metadata) / MOTION_SPLITS[split]
    _need(folder, ("poseAngles.motion", "poseAnglesRotationNormalized.motion"), "motion folder")
    plain = read_motion(folder / "poseAngles.motion")
    normalized = read_normalized_motion(folder / "poseAnglesRotationNormalized.motion")
    if normalized.dofs.shape[0] != plain.dofs.shape[0] or normalized.dofs.shape[-1] != plain.dofs.shape[-1]:
        raise InputError(str(folder), "both motion files with the same frames and DOFs",
                         f"{list(plain.dofs.shape)} and {list(normalized.dofs.shape)}")  # fmt: skip
    return OfficialSubjectMotion(plain.dofs, normalized.dofs, str(folder))


def render_subject_frame(subject: OfficialSubject, motion: OfficialSubjectMotion, frame: int, camera: int,
                         scale: float = 1.0, progress=None) -> OfficialFrame:  # fmt: skip
    """Frame `frame` of `motion` from calibrated camera `camera`, at `scale` x the camera's size."""
    cams = subject.cameras
    if not 0 <= camera < cams.K.shape[0]:
        raise InputError("camera", f"a camera index in 0..{cams.K.shape[0] - 1}", str(camera))
    if not 0 <= frame < motion.dofs.shape[0]:
        raise InputError("frame", f"a frame in 0..{motion.dofs.shape[0] - 1}", str(frame))
    if motion.dofs.shape[-1] != subject.rig.skeleton.num_dofs:
        raise InputError("motion", f"{subject.rig.skeleton.num_dofs} DOFs per frame (the subject's skeleton)",
                         str(motion.dofs.shape[-1]))  # fmt: skip
    if not 0.01 <= scale <= 4.0:
        raise InputError("scale", "a factor in 0.01..4 of the camera's image size", str(scale))
    K = cams.K[camera].double().clone()
    K[:2] *= scale
    width, height = (max(1, round(int(s) * scale)) for s in cams.sizes[camera])
    return render_official_frame(subject.networks, subject.rig, subject.uv_map, subject.face_uvs, motion.dofs,
                                 motion.normalized, subject.body_dofs, subject.base_trans, frame, K,
                                 cams.world_to_camera[camera], height, width, progress)  # fmt: skip


def subject_frame_mesh(subject: OfficialSubject, motion: OfficialSubjectMotion, frame: int
                       ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The release's mesh of `frame` (`geometry.release_surface`): vertices [V1, 3] in metres (world) and
    the stage-1 faces [F1, 3]; the same faces every frame."""
    if subject.subdivision is None:
        raise InputError("subject", f"a metadata folder with {SUBDIVISION_FILE} (the release's subdivision)",
                         "none found")  # fmt: skip
    if not 0 <= frame < motion.dofs.shape[0]:
        raise InputError("frame", f"a frame in 0..{motion.dofs.shape[0] - 1}", str(frame))
    p = official_planes(subject.networks, subject.rig, subject.uv_map, motion.dofs, motion.normalized,
                        subject.body_dofs, frame)  # fmt: skip
    stage = subject.subdivision[1]
    pts = release_surface(subject.networks.implicit, p.planes, p.x_hat[0], subject.rig.faces, subject.face_uvs,
                          stage, subject.hand_keep)  # fmt: skip
    return pts.double() * (GLOBAL_SCALE_MM / 1000.0) + p.root, stage["faces"].long()
