"""HandDiffuse nodes: load a model, generate two-hand motion (HAND_MOTION), keyframes from named poses,
render the hands as IMAGE frames, turn them into core MESH, save BVH + npz; load MANO (HAND_MANO) to draw
and mesh MANO hands instead of the open kinematic hand.

Models live in ComfyUI's `handdiffuse` folder (models/handdiffuse, registered here when absent): one
`.safetensors` written by `python -m models.handdiffuse.train` (its config is in the file's metadata).
MANO files (registration required, never shipped) live in `models/mano`: the published `.pkl` (read only
by mano.py's restricted unpickler) or its `.npz` conversion.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from ..models.common.errors import InputError
from ..models.handdiffuse.control import HAND_NAMES, JOINT_NAMES, Trajectory, trajectory_from_text
from ..models.handdiffuse.export import combine_hands, write_bvh, write_npz
from ..models.handdiffuse.mano import (
    MANO_FILES,
    MANO_FOLDER,
    MANO_PUBLISHED,
    ManoHands,
    load_mano_hands,
    mano_vertices,
)
from ..models.handdiffuse.mesh import skeleton_mesh
from ..models.handdiffuse.motion import HandMotion
from ..models.handdiffuse.pipeline import HandDiffusion, Keyframes, load_model
from ..models.handdiffuse.poses import POSE_NAMES, keyframes_from_json, keyframes_from_text
from ..models.handdiffuse.render import render_meshes, render_skeletons
from ..models.handdiffuse.world import ACTIONS
from .comfy_adapter import (
    core_mesh,
    file_choices,
    host_call_failed,
    model_folders,
    path_inside,
    progress_callback,
    register_model_folders,
    resolve_file,
)
from .comfy_memory import on_device

CATEGORY = "PaperNodes/HandDiffuse"
FOLDER = "handdiffuse"
PUBLISHED = ("no official weights exist (the paper released none); train one with "
             "`python -m models.handdiffuse.train --out OUT` and copy OUT/final/handdiffuse.safetensors")  # fmt: skip
NO_MODELS = "(no models found: put a .safetensors in models/handdiffuse)"
MANO_SUFFIXES = (".npz", ".pkl")
NO_MANO = "(no MANO files: put MANO_RIGHT / MANO_LEFT .pkl or .npz in models/mano)"
MANO_TYPE = "HAND_MANO"
MESH_PIXELS_PER_CHUNK = 2_000_000  # frames rendered per progress step: bounds the float64 frame buffers


register_model_folders(FOLDER, MANO_FOLDER)


def _positive(name: str, value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise InputError(name, what, repr(value))
    return float(value)


def _frames(seconds, fps) -> int:
    fps = _positive("fps", fps, "a frame rate > 0")
    seconds = _positive("seconds", seconds, "a duration > 0 seconds")
    frames = round(seconds * fps)
    if frames < 1:
        raise InputError("seconds", f"at least one frame at {fps:g} fps", repr(seconds))
    return frames


def _seconds(tip: str) -> tuple:
    return ("FLOAT", {"default": 4.0, "min": 0.1, "max": 16.0, "step": 0.1, "tooltip": tip})


def _fps(tip: str) -> tuple:
    return ("FLOAT", {"default": 30.0, "min": 1.0, "max": 120.0, "step": 1.0, "tooltip": tip})


class LoadHandDiffuse:
    DESCRIPTION = "Load a HandDiffuse two-hand motion model (.safetensors from models/handdiffuse)."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("HANDDIFFUSE_MODEL",)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        tip = "A model file in ComfyUI's models/handdiffuse folder."
        return {"required": {"model_name": (file_choices(FOLDER) or [NO_MODELS], {"tooltip": tip})}}

    def load(self, model_name):
        return (load_model(resolve_file(FOLDER, model_name, PUBLISHED)),)


# The sampler separates the hands (pipeline.generate): frames pressed through by over 1 mm 13.9 % -> 0.02 %
# on the shipped model, contact unchanged (docs/handdiffuse.md)
SEPARATE_DEFAULT = True


class GenerateHandMotion:
    DESCRIPTION = ("Generate two-hand motion for an action label by DDIM (x0 model, classifier-free guidance); "
                   "optional keyframes are kept exactly (in-betweening by imputation); 'separate hands' keeps "
                   "the hands from passing through each other.")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = ("HAND_MOTION",)
    RETURN_NAMES = ("motion",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("HANDDIFFUSE_MODEL", {"tooltip": "From 'HandDiffuse: Load Model'."}),
                "label": (["none", *ACTIONS], {"default": "clap",
                                               "tooltip": "The action to generate ('none': unconditional)."}),
                "seconds": _seconds("Clip length in seconds."),
                "fps": _fps("Frame rate of the output motion."),
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**63 - 1, "tooltip": "Seed of the initial noise."}),
                "steps": ("INT", {"default": 50, "min": 1, "max": 1000, "tooltip": "DDIM steps (more: slower, finer)."}),
                "guidance": ("FLOAT", {"default": 2.0, "min": 0.0, "max": 20.0, "step": 0.1, "tooltip":
                                       "Classifier-free guidance scale; 1 = conditional model alone (one pass per step)."}),
            },
            "optional": {
                "keyframes": ("HAND_KEYFRAMES",
                              {"tooltip": "Poses to pass through (e.g. from 'Keyframes from Named Poses')."}),
                "trajectory": ("HAND_TRAJECTORY",
                               {"tooltip": "Joint paths to follow (from 'Trajectory from Points'): the right wrist "
                                           "exactly, other joints by guidance."}),
                "separate_hands": ("BOOLEAN", {"default": SEPARATE_DEFAULT, "tooltip":
                                   "Keep the hands from passing through each other: at every step the sampler "
                                   "moves the predicted motion out of interpenetration to touching and no further "
                                   "(contact kept). Costs time only on frames that overlap."}),
            },
        }  # fmt: skip

    def generate(
        self,
        model: HandDiffusion,
        label,
        seconds,
        fps,
        seed,
        steps,
        guidance,
        keyframes: Keyframes | None = None,
        trajectory: Trajectory | None = None,
        separate_hands: bool = SEPARATE_DEFAULT,
    ):
        frames = _frames(seconds, fps)
        if keyframes is not None:
            bad = [f for f in keyframes.frames if not 0 <= f < frames]
            if bad:
                raise InputError(
                    "keyframes", f"frames in 0 .. {frames - 1} ({seconds:g} s at {fps:g} fps)", str(bad)
                )
        # ComfyUI runs nodes in inference mode; trajectory guidance and separation take gradients
        with torch.inference_mode(False), on_device([model.denoiser]):
            motion = model.generate(
                label, seconds, fps, seed, steps, guidance, keyframes, callback=progress_callback(steps),
                trajectory=trajectory, separate_hands=bool(separate_hands),
            )  # fmt: skip
        return (motion,)


class KeyframesFromPoses:
    DESCRIPTION = ("Keyframes from named poses at given frames, e.g. '0: open, 45: fist': the fingers of both "
                   f"hands are fixed, the wrists left to the model. Poses: {', '.join(POSE_NAMES)}.")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = ("HAND_KEYFRAMES",)
    RETURN_NAMES = ("keyframes",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "poses": ("STRING", {"default": "0: open, 45: fist, 90: point", "multiline": True,
                                     "tooltip": "'frame: pose' entries separated by commas; poses: open, fist, point."}),
                "seconds": _seconds("Clip length (as in Generate)."),
                "fps": _fps("Frame rate (as in Generate)."),
            }
        }  # fmt: skip

    def make(self, poses, seconds, fps):
        return (keyframes_from_text(poses, _frames(seconds, fps)),)


class KeyframesFromJoints:
    DESCRIPTION = ("Keyframes of whole two-hand poses from a JSON of joints: "
                   '[{"frame": 0, "joints": [[21 x [x, y, z]], [21 x [x, y, z]]]}, ...] in metres, right hand '
                   "first (OpenPose joint order); e.g. the joints of a saved .npz.")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = ("HAND_KEYFRAMES",)
    RETURN_NAMES = ("keyframes",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "keyframes_json": ("STRING", {"default": "[]", "multiline": True, "tooltip":
                                              'List of {"frame": int, "joints": [2][21][3]} (metres, right hand first).'}),
                "seconds": _seconds("Clip length (as in Generate)."),
                "fps": _fps("Frame rate (as in Generate)."),
            }
        }  # fmt: skip

    def make(self, keyframes_json, seconds, fps):
        return (keyframes_from_json(keyframes_json, _frames(seconds, fps)),)


class TrajectoryFromPoints:
    DESCRIPTION = ("A path for one joint (a wrist or a fingertip) through control points 'frame: x, y, z' in cm "
                   "(world frame: +y up, the person faces +z, the right hand at -x), joined by a smooth spline. "
                   "Chain several to control several joints.")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = ("HAND_TRAJECTORY",)
    RETURN_NAMES = ("trajectory",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "hand": (list(HAND_NAMES), {"default": "right", "tooltip": "Which hand's joint follows the path."}),
                "joint": (list(JOINT_NAMES), {"default": "wrist", "tooltip":
                                              "The joint that follows the path (the right wrist is kept exactly)."}),
                "points": ("STRING", {"default": "0: -10, 0, 0\n60: -10, 10, 5\n119: -10, 0, 0", "multiline": True,
                                     "tooltip": "One 'frame: x, y, z' (centimetres) per line; the path spans the "
                                                "frames from the first to the last point."}),
                "seconds": _seconds("Clip length (as in Generate)."),
                "fps": _fps("Frame rate (as in Generate)."),
            },
            "optional": {
                "trajectory": ("HAND_TRAJECTORY", {"tooltip": "Paths of other joints to keep alongside this one."}),
            },
        }  # fmt: skip

    def make(self, hand, joint, points, seconds, fps, trajectory: Trajectory | None = None):
        made = trajectory_from_text(points, hand, joint, _frames(seconds, fps))
        return (made if trajectory is None else trajectory.merged(made),)


def _mano_choices() -> list[str]:
    """`.npz` / `.pkl` files in ComfyUI's mano folders (any depth, posix names). Listed here and not by
    `file_choices`: ComfyUI's extension filter for a registered folder has no `.npz`, the converted
    format. Each folder is walked once even through symlink loops."""
    names: set[str] = set()
    for root in model_folders(MANO_FOLDER):
        seen: set[tuple[int, int]] = set()
        for folder, dirs, files in os.walk(root, followlinks=True):
            try:
                st = os.stat(folder)
            except OSError:
                dirs[:] = []
                continue
            if (st.st_dev, st.st_ino) in seen:
                dirs[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            rel = Path(os.path.relpath(folder, root))
            names.update((rel / f).as_posix().removeprefix("./") for f in files
                         if f.lower().endswith(MANO_SUFFIXES))  # fmt: skip
    return sorted(names)


def _mano_input(side: str, choices: list[str]) -> tuple:
    """A combo of the MANO files, defaulting to the one named like the side's published file."""
    default = next((c for c in choices if Path(c).stem.upper() == MANO_FILES[side]), None)
    default = default or next((c for c in choices if side in c.lower()), choices[0])
    tip = (f"The {side}-hand MANO model in ComfyUI's models/mano folder: {MANO_FILES[side]}.pkl as published "
           f"({MANO_PUBLISHED}) or its .npz conversion.")  # fmt: skip
    return (choices, {"default": default, "tooltip": tip})


def _mano_path(input_name: str, name, side: str) -> Path:
    """A MANO file inside ComfyUI's mano folders; a missing one names the file, the folders searched and
    where MANO is published (the WeightsNotFoundError of `resolve_file`)."""
    if name == NO_MANO:
        name = f"{MANO_FILES[side]}.pkl"
    if not isinstance(name, str) or path_inside(MANO_FOLDER, name) is None:  # checks the name alone
        raise InputError(input_name, "a file name inside ComfyUI's models/mano folder", repr(name))
    if not name.lower().endswith(MANO_SUFFIXES):
        raise InputError(input_name, "a MANO model file (.pkl as published, or .npz)", repr(name))
    return resolve_file(MANO_FOLDER, name, MANO_PUBLISHED)


def _check_mano(mano) -> ManoHands:
    if not isinstance(mano, ManoHands):
        raise InputError("mano", f"a {MANO_TYPE} from 'HandDiffuse: Load MANO'", type(mano).__name__)
    return mano


def _every(motion: HandMotion, step: int) -> HandMotion:
    """The motion at every `step`-th frame from frame 0 (MANO is driven only where a mesh is wanted)."""
    return HandMotion(motion.rot6d[::step], motion.trans[::step], motion.fps, motion.label, motion.caption,
                      motion.skeleton)  # fmt: skip


class LoadMano:
    DESCRIPTION = ("Load the two MANO hand models (Romero et al. 2017; registration at mano.is.tue.mpg.de, "
                   "not shipped) from models/mano, so Render Hands and Hands to Mesh draw MANO hands. The "
                   "published .pkl is read by a restricted unpickler that can only rebuild arrays.")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = (MANO_TYPE,)
    RETURN_NAMES = ("mano",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        choices = _mano_choices() or [NO_MANO]
        return {
            "required": {
                "right_model": _mano_input("right", choices),
                "left_model": _mano_input("left", choices),
            }
        }

    def load(self, right_model, left_model):
        right = _mano_path("right_model", right_model, "right")
        left = _mano_path("left_model", left_model, "left")
        return (load_mano_hands(right, left),)


class RenderHands:
    DESCRIPTION = (
        "Draw the two hand skeletons as IMAGE frames (pure torch projection, no OpenGL), or with `mano` "
        "the two MANO hand meshes (pure torch rasteriser, same camera); right hand orange, left blue."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "FLOAT")
    RETURN_NAMES = ("images", "fps")
    FUNCTION = "render"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "motion": ("HAND_MOTION", {"tooltip": "The motion to draw."}),
                "width": ("INT", {"default": 512, "min": 16, "max": 4096, "step": 8, "tooltip": "Image width in pixels."}),
                "height": ("INT", {"default": 512, "min": 16, "max": 4096, "step": 8, "tooltip": "Image height in pixels."}),
                "yaw": ("FLOAT", {"default": 0.0, "min": -180.0, "max": 180.0, "step": 5.0,
                                  "tooltip": "Camera azimuth in degrees (0: in front of the person)."}),
                "pitch": ("FLOAT", {"default": 15.0, "min": -85.0, "max": 85.0, "step": 5.0,
                                    "tooltip": "Camera elevation in degrees."}),
                "distance": ("FLOAT", {"default": 0.8, "min": 0.1, "max": 10.0, "step": 0.05,
                                       "tooltip": "Camera distance from the hands' centre in metres."}),
            },
            "optional": {
                "mano": (MANO_TYPE, {"tooltip": "From 'HandDiffuse: Load MANO': draw MANO hand meshes instead "
                                                "of the skeletons (same camera, same frames)."}),
            },
        }  # fmt: skip

    def render(self, motion: HandMotion, width, height, yaw, pitch, distance, mano: ManoHands | None = None):
        if not isinstance(motion, HandMotion):
            raise InputError("motion", "a HAND_MOTION", type(motion).__name__)
        if not -85 <= pitch <= 85:
            raise InputError("pitch", "an elevation in -85 .. 85 degrees", repr(pitch))
        if mano is not None:
            return (_render_mano(motion, _check_mano(mano), width, height, yaw, pitch, distance), motion.fps)
        images = render_skeletons(motion.global_joints(), width, height, yaw, pitch, distance)
        return (images, motion.fps)


def _render_mano(motion: HandMotion, mano: ManoHands, width, height, yaw, pitch, distance):
    """MANO meshes framed as the skeletons are (the camera orbits the clip's joint centroid), rendered a
    few frames at a time: the rasteriser holds float64 frame buffers, and the progress bar and Cancel get
    a step per chunk."""
    target = motion.global_joints().detach().double().reshape(-1, 3).mean(0)
    verts = mano_vertices(motion, mano)
    frames = verts.shape[0]
    # width and height are checked by render_meshes; max(1, ...) only keeps a bad size from dividing by 0
    chunk = max(1, min(16, MESH_PIXELS_PER_CHUNK // max(1, width * height)))
    report = progress_callback(frames)
    images = []
    for start in range(0, frames, chunk):
        images.append(render_meshes(verts[start : start + chunk], mano.faces, width, height, yaw, pitch,
                                    distance, target=target))  # fmt: skip
        report(min(start + chunk, frames), frames)
    return torch.cat(images)


class HandsToMesh:
    DESCRIPTION = ("The two hands as a triangle mesh (core MESH) at every `frame_step`-th frame: one mesh per "
                   "frame, so core 'Save GLB' writes a GLB per frame for Preview3D. With `mano` the two MANO "
                   "hands (778 vertices each, right first); without, the capsule geometry the penetration and "
                   "contact numbers use. Vertex colours: right orange, left blue.")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MESH",)
    RETURN_NAMES = ("mesh",)
    FUNCTION = "mesh"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "motion": ("HAND_MOTION", {"tooltip": "The motion to turn into meshes."}),
                "frame_step": ("INT", {"default": 30, "min": 1, "max": 10000,
                                       "tooltip": "A mesh every N frames from frame 0 (30: one per second at 30 fps)."}),
            },
            "optional": {
                "mano": (MANO_TYPE, {"tooltip": "From 'HandDiffuse: Load MANO': MANO hand meshes instead of the "
                                                "capsule skeleton."}),
            },
        }  # fmt: skip

    def mesh(self, motion: HandMotion, frame_step, mano: ManoHands | None = None):
        if not isinstance(motion, HandMotion):
            raise InputError("motion", "a HAND_MOTION", type(motion).__name__)
        if isinstance(frame_step, bool) or not isinstance(frame_step, int) or frame_step < 1:
            raise InputError("frame_step", "a whole number of frames >= 1", repr(frame_step))
        if mano is not None:
            hands = _check_mano(mano)
            vertices, faces, colours = combine_hands(
                mano_vertices(_every(motion, frame_step), hands), hands.faces
            )
        else:
            vertices, faces, colours = skeleton_mesh(motion.global_joints()[::frame_step])
        batch = vertices.shape[0]
        return (core_mesh(vertices, faces.expand(batch, -1, -1), colours.expand(batch, -1, -1)),)


def _output_dir() -> Path:
    try:
        import folder_paths

        return Path(folder_paths.get_output_directory())
    except Exception as exc:
        host_call_failed("ComfyUI output folder", exc)
        raise InputError("filename_prefix", "ComfyUI's output folder", "none configured") from None


def _next_stem(folder: Path, prefix: str) -> Path:
    """folder/prefix_00001 with the first counter no .bvh/.npz uses yet."""
    used = [int(m.group(1)) for p in folder.glob(f"{Path(prefix).name}_*")
            if (m := re.fullmatch(re.escape(Path(prefix).name) + r"_(\d+)\.(bvh|npz)", p.name))]  # fmt: skip
    return folder / f"{Path(prefix).name}_{max(used, default=0) + 1:05d}"


class SaveHandMotion:
    DESCRIPTION = (
        "Save a HAND_MOTION to ComfyUI's output folder as BVH (two hands under a root, cm) and .npz "
        "(joints, fps, label)."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("bvh_path", "npz_path")
    FUNCTION = "save"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "motion": ("HAND_MOTION", {"tooltip": "The motion to save."}),
                "filename_prefix": ("STRING", {"default": "handdiffuse/motion", "tooltip":
                                               "Sub-folder/name inside ComfyUI's output folder; a counter is appended."}),
            }
        }  # fmt: skip

    def save(self, motion: HandMotion, filename_prefix):
        if not isinstance(motion, HandMotion):
            raise InputError("motion", "a HAND_MOTION", type(motion).__name__)
        rel = Path(filename_prefix or "")
        if not rel.name or rel.is_absolute() or ".." in rel.parts:
            raise InputError(
                "filename_prefix", "a relative name inside the output folder", repr(filename_prefix)
            )
        folder = _output_dir() / rel.parent
        folder.mkdir(parents=True, exist_ok=True)
        stem = _next_stem(folder, rel.name)
        bvh = write_bvh(motion, stem.with_suffix(".bvh"))
        npz = write_npz(motion, stem.with_suffix(".npz"))
        text = f"{bvh.name}, {npz.name}: {motion.num_frames} frames at {motion.fps:g} fps"
        return {"ui": {"text": [text]}, "result": (str(bvh), str(npz))}


NODE_CLASS_MAPPINGS = {
    "PaperNodes_HandDiffuseLoad": LoadHandDiffuse,
    "PaperNodes_HandDiffuseGenerate": GenerateHandMotion,
    "PaperNodes_HandDiffuseKeyframesFromPoses": KeyframesFromPoses,
    "PaperNodes_HandDiffuseKeyframesFromJoints": KeyframesFromJoints,
    "PaperNodes_HandDiffuseTrajectory": TrajectoryFromPoints,
    "PaperNodes_HandDiffuseRender": RenderHands,
    "PaperNodes_HandDiffuseSave": SaveHandMotion,
    "PaperNodes_HandDiffuseMesh": HandsToMesh,
    "PaperNodes_HandDiffuseLoadMano": LoadMano,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PaperNodes_HandDiffuseLoad": "HandDiffuse: Load Model",
    "PaperNodes_HandDiffuseGenerate": "HandDiffuse: Generate Hand Motion",
    "PaperNodes_HandDiffuseKeyframesFromPoses": "HandDiffuse: Keyframes from Named Poses",
    "PaperNodes_HandDiffuseKeyframesFromJoints": "HandDiffuse: Keyframes from Joints JSON",
    "PaperNodes_HandDiffuseTrajectory": "HandDiffuse: Trajectory from Points",
    "PaperNodes_HandDiffuseRender": "HandDiffuse: Render Hands",
    "PaperNodes_HandDiffuseSave": "HandDiffuse: Save Hand Motion",
    "PaperNodes_HandDiffuseMesh": "HandDiffuse: Hands to Mesh",
    "PaperNodes_HandDiffuseLoadMano": "HandDiffuse: Load MANO",
}
