"""The official TriHuman release (github.com/kv2000/TriHuman, weights CC BY-NC) as users have it: readers for
its per-subject files, networks with its checkpoints' parameter names and shapes, and the checkpoint
loader. Written from our notes (docs/trihuman_official_layout.md); no upstream code. See
docs/trihuman_official.md for what loads, what is unverified and what is not connected yet.

files (OBJ, skin, motion, calibration, metadata pickles), safe_pickle (the restricted unpickler), skeleton
(Skeletool skeleton + forward kinematics), networks (tri-plane U-Net, MLPs, DDC graph CNNs, ring
adjacency), checkpoint (load_official_checkpoints, write_synthetic_checkpoints); the rendering path, each as
the release computes it: posing (embedded graph, DQS, graph-network corrections), motion_texture, fields
(mapping, plane sampler, NeuS), frame (one frame from one camera), geometry (the mesh branch), subject
(a subject's two folders in one call).
"""

from .checkpoint import (
    DELTA_GCN,
    SPATIAL_GCN,
    OfficialExplicitNetworks,
    OfficialGCNConfig,
    OfficialImplicitConfig,
    OfficialImplicitNetworks,
    OfficialTriHuman,
    load_official_checkpoints,
    write_synthetic_checkpoints,
)
from .files import (
    OfficialCameras,
    OfficialMesh,
    OfficialMotion,
    OfficialSkin,
    read_base_trans,
    read_body_dofs,
    read_calibration,
    read_motion,
    read_normalized_motion,
    read_obj,
    read_segmentation,
    read_skin,
    read_subdivision,
    write_calibration,
)
from .networks import (
    DDCGraphCNN,
    MotionNetwork,
    RenderingNetwork,
    RolloutTriplaneUNet,
    SDFNetwork,
    SingleVarianceNetwork,
    WeightNormLinear,
    motion_code_input,
    ring_adjacency,
)
from .safe_pickle import load_plain_pickle, loads_plain
from .skeleton import SkeletoolSkeleton, read_skeleton, root_arm_skeleton, write_skeleton

__all__ = [
    "DELTA_GCN",
    "SPATIAL_GCN",
    "DDCGraphCNN",
    "MotionNetwork",
    "OfficialCameras",
    "OfficialExplicitNetworks",
    "OfficialGCNConfig",
    "OfficialImplicitConfig",
    "OfficialImplicitNetworks",
    "OfficialMesh",
    "OfficialMotion",
    "OfficialSkin",
    "OfficialTriHuman",
    "RenderingNetwork",
    "RolloutTriplaneUNet",
    "SDFNetwork",
    "SingleVarianceNetwork",
    "SkeletoolSkeleton",
    "WeightNormLinear",
    "load_official_checkpoints",
    "load_plain_pickle",
    "loads_plain",
    "motion_code_input",
    "read_base_trans",
    "read_body_dofs",
    "read_calibration",
    "read_motion",
    "read_normalized_motion",
    "read_obj",
    "read_segmentation",
    "read_skeleton",
    "read_skin",
    "read_subdivision",
    "ring_adjacency",
    "root_arm_skeleton",
    "write_calibration",
    "write_skeleton",
    "write_synthetic_checkpoints",
]
