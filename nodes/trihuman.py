"""TriHuman nodes: load an avatar (TRIHUMAN_AVATAR), a motion (TRIHUMAN_MOTION: the avatar world's, or an
.npz / BVH file from the input folder), cameras (TRIHUMAN_CAMERA: an orbit or calibrated matrices); render
the avatar (IMAGE frames, MASK, depth), mesh it (core MESH + a GLB for Preview3D), train one.

Avatars live in ComfyUI's `trihuman` folder (models/trihuman, registered here when absent): one
`.safetensors` per avatar, written by `python -m models.trihuman.train` or the Train Avatar node.
ComfyUI runs nodes in inference mode; the avatar's fields take normals by autograd (avatar_field.py), so
the avatar is built and used outside it.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from ..models.common.camera import intrinsics_from_fov, look_at, orbit_eye
from ..models.common.errors import InputError
from ..models.common.mesh_io import save_preview_glb, to_trimesh
from ..models.trihuman.avatar import TriHumanAvatar, load_avatar
from ..models.trihuman.motion_io import (
    UNITS,
    TriHumanMotion,
    conform,
    load_bvh,
    load_npz,
    resample,
    trimmed,
    world_motion,
)
from ..models.trihuman.render import render_frame
from ..models.trihuman.world import CAMERA_ELEVATION, CAMERA_FOV, CAMERA_RADIUS, CAMERA_TARGET, FPS, MOTIONS
from .comfy_adapter import (
    TrainingFollow,
    core_mesh,
    file_choices,
    host_call_failed,
    input_dir,
    interrupt_requested,
    model_folders,
    path_inside,
    progress_callback,
    raise_if_interrupted,
    register_model_folders,
    resolve_file,
    training_run_folder,
)
from .comfy_memory import on_device, torch_device, unload_all

CATEGORY = "PaperNodes/TriHuman"
FOLDER = "trihuman"
AVATAR_TYPE, MOTION_TYPE, CAMERA_TYPE = "TRIHUMAN_AVATAR", "TRIHUMAN_MOTION", "TRIHUMAN_CAMERA"
PUBLISHED = ("the official TriHuman release's subjects load with 'TriHuman: Load Official Subject' (their "
             "<Subject>_metadata and <Subject>_checkpoints folders in models/trihuman), not with this node; "
             "a world avatar is trained with `python -m models.trihuman.train` (or TriHuman: Train Avatar) and its "
             ".safetensors goes into models/trihuman")  # fmt: skip
NO_AVATARS = "(no avatars found: put a .safetensors in models/trihuman)"
NO_FILE = "(none)"
MOTION_SUFFIXES = (".npz", ".bvh")
SEED_MAX = 2**63 - 1
MIN_SIZE, MAX_SIZE = 16, 2048
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

register_model_folders(FOLDER)


def _check_avatar(avatar) -> TriHumanAvatar:
    if not isinstance(avatar, TriHumanAvatar):
        raise InputError("avatar", f"a {AVATAR_TYPE} from 'TriHuman: Load Avatar'", type(avatar).__name__)
    return avatar


def _int(name: str, value, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(name, f"{what} ({low}..{high})", repr(value))
    return value


def _avatar_path(name: str, input_name: str = "avatar_name") -> Path:
    if not isinstance(name, str) or name == NO_AVATARS or not name.strip():
        raise InputError(input_name, "an avatar .safetensors in ComfyUI's models/trihuman folder; " + PUBLISHED,
                         repr(name))  # fmt: skip
    if path_inside(FOLDER, name) is None:  # checks the name alone
        raise InputError(input_name, "a file name inside ComfyUI's models/trihuman folder", repr(name))
    return resolve_file(FOLDER, name, PUBLISHED)


def _load(path: Path) -> TriHumanAvatar:
    with torch.inference_mode(False):  # parameters made in inference mode could not take part in autograd
        return load_avatar(path)


class LoadAvatar:
    DESCRIPTION = ("Load a TriHuman avatar (Zhu et al. 2023; one .safetensors from models/trihuman): the "
                   "character (template, skeleton, skinning) and its deformation, tri-plane generator and "
                   "fields, trained by `python -m models.trihuman.train` or TriHuman: Train Avatar.")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = (AVATAR_TYPE,)
    RETURN_NAMES = ("avatar",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        tip = "An avatar file in ComfyUI's models/trihuman folder."
        return {"required": {"avatar_name": (file_choices(FOLDER) or [NO_AVATARS], {"tooltip": tip})}}

    def load(self, avatar_name):
        return (_load(_avatar_path(avatar_name)),)


# --------------------------------------------------------------------------------------------- motion


def motion_file_choices() -> list[str]:
    """(none), then the .npz / .bvh files anywhere in ComfyUI's input folder (posix names)."""
    base = input_dir()
    files = []
    if base is not None and base.is_dir():
        files = sorted(p.relative_to(base).as_posix() for p in base.rglob("*")
                       if p.is_file() and p.suffix.lower() in MOTION_SUFFIXES)  # fmt: skip
    return [NO_FILE, *files]


def _motion_file(name) -> Path:
    base = input_dir()
    if not isinstance(name, str) or name == NO_FILE or base is None:
        raise InputError(
            "file", "an .npz or .bvh file in ComfyUI's input folder (or source 'world')", repr(name)
        )
    path = path_inside(base, name)
    if path is None or not path.is_file() or path.suffix.lower() not in MOTION_SUFFIXES:
        raise InputError("file", f"an .npz or .bvh file inside {base}", repr(name))
    return path


class LoadMotion:
    DESCRIPTION = ("A motion for an avatar: the avatar world's (walk, dance, squat, turn; seeded, held-out poses "
                   "at 25 fps, with the two history frames the avatar conditions its first frame on), or a file "
                   "from ComfyUI's input folder: .npz (poses [T, J, 3] axis-angle, translations [T, 3] metres, "
                   "fps; optional joint_names) or BVH, retargeted by joint name onto the avatar's skeleton (the "
                   "world character's when no avatar is connected).")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = (MOTION_TYPE,)
    RETURN_NAMES = ("motion",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "source": (["world", "file"], {"default": "world",
                                               "tooltip": "world: a motion of the avatar world; file: an .npz or "
                                                          "BVH from the input folder."}),
                "motion": (list(MOTIONS), {"default": "dance",
                                           "tooltip": "World motion type ('turn' was held out of the world "
                                                      "avatar's training)."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX,
                                 "tooltip": "Seed of the world motion (tempo, amplitudes, phase)."}),
                "frames": ("INT", {"default": 24, "min": 0, "max": 100000,
                                   "tooltip": "Frames to render. World: the motion's length (>= 1); file: at most "
                                              "this many from its start (0: all)."}),
                "file": (motion_file_choices(), {"default": NO_FILE,
                                                 "tooltip": "An .npz or .bvh in ComfyUI's input folder (source "
                                                            "'file')."}),
                "bvh_units": (list(UNITS), {"default": "cm", "tooltip": "Length unit of a BVH file's offsets and "
                                                                      "positions."}),
                "fps": ("FLOAT", {"default": FPS, "min": 0.0, "max": 1000.0, "step": 1.0,
                                  "tooltip": "Resample to this frame rate (the world avatar was trained at 25 fps "
                                             "and sees velocities); 0: keep the source's rate."}),
            },
            "optional": {
                "avatar": (AVATAR_TYPE, {"tooltip": "Retarget a BVH onto this avatar's skeleton (default: the "
                                                    "world character's)."}),
            },
        }  # fmt: skip

    def load(self, source, motion, seed, frames, file, bvh_units, fps, avatar=None):
        frames = _int("frames", frames, 0, 100000, "a number of frames")
        if not isinstance(fps, int | float) or fps < 0:
            raise InputError("fps", "a frame rate >= 0 (0: keep the source's)", repr(fps))
        if source == "world":
            if frames < 1:
                raise InputError("frames", "at least 1 frame for a world motion", repr(frames))
            out = world_motion(motion, seed, frames)
        elif source == "file":
            path = _motion_file(file)
            if path.suffix.lower() == ".npz":
                out = load_npz(path)
            else:
                if bvh_units not in UNITS:
                    raise InputError("bvh_units", f"one of {tuple(UNITS)}", repr(bvh_units))
                names, parents = _skeleton(avatar)
                out = load_bvh(path, names, parents, bvh_units)
        else:
            raise InputError("source", "'world' or 'file'", repr(source))
        if fps > 0:
            out = resample(out, float(fps))
        return (trimmed(out, frames) if source == "file" else out,)


def _skeleton(avatar) -> tuple[tuple[str, ...], tuple[int, ...]]:
    if avatar is not None:
        avatar = _check_avatar(avatar)
        return tuple(avatar.joint_names), tuple(avatar.parents)
    from ..models.trihuman.world import JOINTS, PARENTS

    return tuple(JOINTS), tuple(PARENTS)


# --------------------------------------------------------------------------------------------- cameras


@dataclass(frozen=True)
class TriHumanCamera:
    """The cameras of a clip. An orbit: a look-at camera per frame at azimuth start + step * frame (K from
    the horizontal field of view at the render size). Calibrated: K [N, 3, 3] in pixels of `size` (width,
    height; scaled to the render size) and world_to_camera [N, 4, 4] (OpenCV), N = 1 or one per frame."""

    start: float = 0.0
    step: float = 0.0
    radius: float = CAMERA_RADIUS
    elevation: float = CAMERA_ELEVATION
    fov: float = CAMERA_FOV
    target: tuple[float, float, float] = CAMERA_TARGET
    K: torch.Tensor | None = None
    world_to_camera: torch.Tensor | None = None
    size: tuple[int, int] | None = None

    def for_frames(self, frames: int, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(K [frames, 3, 3], world_to_camera [frames, 4, 4]) float64 for a render of width x height."""
        if self.world_to_camera is None:
            eyes = torch.tensor([orbit_eye(self.radius, self.start + self.step * i, self.elevation, self.target)
                                 for i in range(frames)], dtype=torch.float64)  # fmt: skip
            E = look_at(eyes, torch.tensor(self.target, dtype=torch.float64))
            K = intrinsics_from_fov(self.fov, width, height, dtype=torch.float64).expand(frames, 3, 3)
            return K.clone(), E
        n = self.world_to_camera.shape[0]
        if n not in (1, frames):
            raise InputError("camera", f"1 calibrated camera or one per rendered frame ({frames})",
                             f"{n} cameras in calibration_json")  # fmt: skip
        K = self.K.to(torch.float64)
        if self.size is not None:
            sx, sy = width / self.size[0], height / self.size[1]
            K = torch.diag(torch.tensor([sx, sy, 1.0], dtype=torch.float64)) @ K
        return K.expand(frames, 3, 3).clone(), self.world_to_camera.to(torch.float64).expand(
            frames, 4, 4
        ).clone()


def _matrices(value, shape: tuple[int, int], key: str) -> torch.Tensor:
    try:
        m = torch.tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise InputError("calibration_json", f"'{key}' as numbers {list(shape)} or a list of them",
                         repr(value)[:80]) from None  # fmt: skip
    m = m[None] if m.ndim == 2 else m
    if m.ndim != 3 or tuple(m.shape[1:]) != shape or m.shape[0] < 1 or not torch.isfinite(m).all():
        raise InputError("calibration_json", f"'{key}' of shape {list(shape)} or [N, {shape[0]}, {shape[1]}]",
                         f"shape {list(m.shape)}")  # fmt: skip
    return m


def calibrated_camera(text: str) -> TriHumanCamera:
    """A TriHumanCamera from calibration JSON: {"K": 3x3 or [N][3][3] (pixels), "world_to_camera": 4x4 or
    [N][4][4] (OpenCV: x right, y down, z forward; metres), "width": w, "height": h (the image K is for)}."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError("calibration_json", "valid JSON", str(exc)) from None
    if not isinstance(data, dict) or "K" not in data or "world_to_camera" not in data:
        raise InputError("calibration_json", 'an object {"K": ..., "world_to_camera": ..., "width": ..., '
                         '"height": ...}', repr(text)[:80])  # fmt: skip
    K = _matrices(data["K"], (3, 3), "K")
    E = _matrices(data["world_to_camera"], (4, 4), "world_to_camera")
    if K.shape[0] not in (1, E.shape[0]):
        raise InputError(
            "calibration_json", "one K, or one per camera", f"{K.shape[0]} K for {E.shape[0]} cameras"
        )
    R = E[:, :3, :3]
    eye = torch.eye(3, dtype=torch.float64)
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    if (R @ R.transpose(1, 2) - eye).abs().max() > 1e-3 or (E[:, 3] - bottom).abs().max() > 1e-6:
        raise InputError("calibration_json", "rigid world_to_camera matrices (a rotation, a translation, last row "
                         "0 0 0 1)", "another matrix")  # fmt: skip
    if (K[:, 0, 0] <= 0).any() or (K[:, 1, 1] <= 0).any():
        raise InputError("calibration_json", "K with positive focal lengths", str(K[0].tolist()))
    size = None
    if "width" in data or "height" in data:
        w, h = data.get("width"), data.get("height")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (w, h)):
            raise InputError("calibration_json", "'width' and 'height' as positive integers", f"{w!r}, {h!r}")
        size = (w, h)
    return TriHumanCamera(K=K.expand(E.shape[0], 3, 3).clone(), world_to_camera=E, size=size)


class OrbitCamera:
    DESCRIPTION = ("Cameras for Render Avatar: one per frame on a circle around the character (degrees per frame "
                   "0: a fixed view), looking at the target height, OpenCV convention; or calibrated cameras from "
                   "JSON. Defaults: the avatar world's camera ring (3 m, 10 degrees up, 40 degree field of "
                   "view).")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = (CAMERA_TYPE,)
    RETURN_NAMES = ("camera",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "start_angle": ("FLOAT", {"default": 0.0, "min": -360.0, "max": 360.0, "step": 5.0,
                                          "tooltip": "Azimuth of the first frame in degrees (0: in front of the "
                                                     "character, who faces +z; 90: from its left)."}),
                "degrees_per_frame": ("FLOAT", {"default": 15.0, "min": -360.0, "max": 360.0, "step": 0.5,
                                                "tooltip": "Orbit speed (15: a full turn in 24 frames); 0: a "
                                                           "fixed view."}),
                "radius": ("FLOAT", {"default": CAMERA_RADIUS, "min": 0.1, "max": 100.0, "step": 0.1,
                                     "tooltip": "Camera distance from the target in metres."}),
                "elevation": ("FLOAT", {"default": CAMERA_ELEVATION, "min": -89.0, "max": 89.0, "step": 1.0,
                                        "tooltip": "Camera height as an angle above the target, degrees."}),
                "fov": ("FLOAT", {"default": CAMERA_FOV, "min": 1.0, "max": 170.0, "step": 1.0,
                                  "tooltip": "Horizontal field of view in degrees."}),
                "target_height": ("FLOAT", {"default": CAMERA_TARGET[1], "min": -10.0, "max": 10.0, "step": 0.01,
                                            "tooltip": "Height (m) of the point the camera looks at, above the "
                                                       "floor (the character is 1.75 m tall)."}),
            },
            "optional": {
                "calibration_json": ("STRING", {"default": "", "multiline": True,
                                                "tooltip": 'Calibrated cameras instead of the orbit: {"K": 3x3 or '
                                                           '[N][3][3] pixels, "world_to_camera": 4x4 or [N][4][4] '
                                                           '(OpenCV, metres), "width": w, "height": h}; N = 1 or '
                                                           "one per frame. Empty: the orbit."}),
            },
        }  # fmt: skip

    def make(
        self, start_angle, degrees_per_frame, radius, elevation, fov, target_height, calibration_json=""
    ):
        if isinstance(calibration_json, str) and calibration_json.strip():
            return (calibrated_camera(calibration_json),)
        if not radius > 0:
            raise InputError("radius", "a distance > 0 (metres)", repr(radius))
        if not -89 <= elevation <= 89:
            raise InputError("elevation", "an angle in -89 .. 89 degrees", repr(elevation))
        if not 0 < fov < 180:
            raise InputError("fov", "a field of view in (0, 180) degrees", repr(fov))
        target = (CAMERA_TARGET[0], float(target_height), CAMERA_TARGET[2])
        return (TriHumanCamera(float(start_angle), float(degrees_per_frame), float(radius), float(elevation),
                               float(fov), target),)  # fmt: skip


# ---------------------------------------------------------------------------------------------- render


def _background(text) -> tuple[float, float, float]:
    """'#RRGGBB' or 'r, g, b' in 0..1."""
    s = text.strip() if isinstance(text, str) else ""
    if re.fullmatch(r"#[0-9a-fA-F]{6}", s):
        return tuple(int(s[i : i + 2], 16) / 255.0 for i in (1, 3, 5))
    parts = [p for p in re.split(r"[,\s]+", s) if p]
    try:
        rgb = tuple(float(p) for p in parts)
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0.0 <= c <= 1.0 for c in rgb):
        raise InputError("background", "a colour '#RRGGBB' or 'r, g, b' in 0..1", repr(text))
    return rgb


def _posed(avatar: TriHumanAvatar, motion: TriHumanMotion, device: torch.device):
    """The avatar's posed template, pose features and root positions of every frame of the motion."""
    motion = conform(motion, tuple(avatar.joint_names))
    dtype = avatar.char_vertices.dtype
    poses = motion.poses.to(device=device, dtype=dtype).clone()  # normal tensors (not inference tensors)
    trans = motion.translations.to(device=device, dtype=dtype).clone()
    with torch.no_grad():
        posed, feats, _ = avatar.frames(poses, trans)
        roots = avatar.root_positions(poses, trans)
    return motion, posed, feats, roots


def _depth_image(depth: torch.Tensor) -> torch.Tensor:
    """Depth [T, H, W] (0 = background) as grey IMAGE: near = 1, far = 0.2 over the whole clip, background 0."""
    hit = depth > 0
    if not hit.any():
        return torch.zeros(*depth.shape, 3)
    near, far = depth[hit].min(), depth[hit].max()
    grey = 1.0 - 0.8 * (depth - near) / (far - near).clamp_min(1e-6)
    return (
        torch.where(hit, grey, torch.zeros_like(grey))[..., None].expand(-1, -1, -1, 3).float().contiguous()
    )


class RenderAvatar:
    DESCRIPTION = ("Render the avatar along a motion (TriHuman Sec. 3.4: tri-plane fields, NeuS volume rendering "
                   "of rays through the posed template's shell; pure torch): one IMAGE per frame, the opacity as "
                   "MASK and the camera depth as a grey IMAGE (near white). Save the frames with core video nodes "
                   "at the motion's rate (25 fps for world motions).")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "MASK", "IMAGE")
    RETURN_NAMES = ("images", "mask", "depth")
    FUNCTION = "render"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "avatar": (AVATAR_TYPE, {"tooltip": "From 'TriHuman: Load Avatar'."}),
                "motion": (MOTION_TYPE, {"tooltip": "From 'TriHuman: Load Motion' (its history frames are not "
                                                    "rendered)."}),
                "camera": (CAMERA_TYPE, {"tooltip": "From 'TriHuman: Orbit Camera'."}),
                "width": ("INT", {"default": 128, "min": MIN_SIZE, "max": MAX_SIZE, "step": 8,
                                  "tooltip": "Image width in pixels (cost grows with the pixels the body covers)."}),
                "height": ("INT", {"default": 128, "min": MIN_SIZE, "max": MAX_SIZE, "step": 8,
                                   "tooltip": "Image height in pixels."}),
                "samples": ("INT", {"default": 32, "min": 2, "max": 512,
                                    "tooltip": "Samples per ray (TriHuman Sec. 3.4: 32 uniform samples, no "
                                               "importance sampling)."}),
                "background": ("STRING", {"default": "#000000",
                                          "tooltip": "Background colour '#RRGGBB' or 'r, g, b' in 0..1 (the world "
                                                     "avatar was trained on black)."}),
            }
        }  # fmt: skip

    def render(self, avatar, motion, camera, width, height, samples, background):
        avatar = _check_avatar(avatar)
        width = _int("width", width, MIN_SIZE, MAX_SIZE, "an image width in pixels")
        height = _int("height", height, MIN_SIZE, MAX_SIZE, "an image height in pixels")
        samples = _int("samples", samples, 2, 512, "samples per ray (at least 2: NeuS needs sections)")
        if not isinstance(camera, TriHumanCamera):
            raise InputError(
                "camera", f"a {CAMERA_TYPE} from 'TriHuman: Orbit Camera'", type(camera).__name__
            )
        bg = _background(background)
        motion = conform(motion, tuple(avatar.joint_names))
        K, E = camera.for_frames(motion.frames, width, height)
        report = progress_callback(motion.frames)
        images, masks, depths = [], [], []
        with torch.inference_mode(False), on_device([avatar]) as device:
            _, posed, feats, roots = _posed(avatar, motion, device)
            for i in range(motion.frames):
                with torch.no_grad():
                    bound = avatar.bind(posed, feats, roots, motion.history + i)
                try:
                    out = render_frame(bound, K[i : i + 1].to(device), E[i : i + 1].to(device), height, width,
                                       background=bg, should_stop=interrupt_requested, samples=samples)  # fmt: skip
                except InterruptedError:
                    raise_if_interrupted()
                    raise
                images.append(out["image"][0].float().cpu())
                masks.append(out["mask"][0].float().cpu())
                depths.append(out["depth"][0].float().cpu())
                report(i + 1, motion.frames)
        depth = torch.stack(depths)
        return (torch.stack(images), torch.stack(masks).clamp(0, 1), _depth_image(depth))


# ------------------------------------------------------------------------------------------------ mesh


def _output_dir() -> Path:
    try:
        import folder_paths

        return Path(folder_paths.get_output_directory())
    except Exception as exc:
        host_call_failed("ComfyUI output folder", exc)
        raise InputError("filename_prefix", "ComfyUI's output folder", "none configured") from None


class AvatarMesh:
    DESCRIPTION = ("The avatar's geometry (TriHuman Sec. 3.5): the posed template subdivided once and projected "
                   "onto the SDF's zero level, the same faces every frame, vertex colours from the colour field. "
                   "Outputs core MESH (one per frame: core 'Save GLB') and the path of a GLB of the first mesh in "
                   "the output folder (core Preview3D's model_file).")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MESH", "STRING")
    RETURN_NAMES = ("mesh", "glb_path")
    FUNCTION = "mesh"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "avatar": (AVATAR_TYPE, {"tooltip": "From 'TriHuman: Load Avatar'."}),
                "motion": (MOTION_TYPE, {"tooltip": "From 'TriHuman: Load Motion'."}),
                "frame": ("INT", {"default": 0, "min": 0, "max": 100000,
                                  "tooltip": "The frame to mesh (0: the first frame after the history)."}),
                "all_frames": ("BOOLEAN", {"default": False,
                                           "tooltip": "Mesh every frame of the motion instead (one mesh per "
                                                      "frame)."}),
                "filename_prefix": ("STRING", {"default": "trihuman_avatar",
                                               "tooltip": "Name of the GLB in the output folder's mesh/ "
                                                          "sub-folder; a counter is appended."}),
            }
        }  # fmt: skip

    def mesh(self, avatar, motion, frame, all_frames, filename_prefix):
        avatar = _check_avatar(avatar)
        if not isinstance(filename_prefix, str) or not _NAME.match(filename_prefix.strip()):
            raise InputError(
                "filename_prefix", "a file name (letters, digits, '.', '_', '-')", repr(filename_prefix)
            )
        motion = conform(motion, tuple(avatar.joint_names))
        frame = _int("frame", frame, 0, max(0, motion.frames - 1), f"a frame of the motion's {motion.frames}")
        chosen = list(range(motion.frames)) if all_frames else [frame]
        report = progress_callback(len(chosen))
        verts, colours = [], []
        with torch.inference_mode(False), on_device([avatar]) as device:
            _, posed, feats, roots = _posed(avatar, motion, device)
            for k, i in enumerate(chosen):
                with torch.no_grad():
                    bound = avatar.bind(posed, feats, roots, motion.history + i)
                    v, faces = bound.mesh()
                    colour = bound.color(v, -bound.normals(v))
                verts.append(v.float().cpu())
                colours.append(colour.float().clamp(0, 1).cpu())
                report(k + 1, len(chosen))
        faces = faces.long().cpu()
        glb = save_preview_glb(
            to_trimesh(verts[0], faces, colours[0]), _output_dir(), filename_prefix.strip()
        )
        batch = len(verts)
        return (core_mesh(torch.stack(verts), faces.expand(batch, -1, -1), torch.stack(colours)), glb)


# ----------------------------------------------------------------------------------------------- train


class TrainAvatar:
    DESCRIPTION = ("Train a TriHuman avatar on the avatar world, one stage at a time as the paper (Sec. 3.1, "
                   "3.3-3.4): 'template' (the deformable template from masks), then 'avatar' (tri-planes and "
                   "fields from images; from the template stage's file). Writes models/trihuman/<output_name>"
                   ".safetensors; Cancel stops after saving. Same trainer as "
                   "`python -m models.trihuman.train`.")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING", "IMAGE")
    RETURN_NAMES = ("avatar_name", "preview")
    FUNCTION = "train"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        from ..models.trihuman.train import STAGES, TrainConfig

        d = TrainConfig(out="")
        return {
            "required": {
                "stage": (list(STAGES), {"default": "template",
                                         "tooltip": "template: the deformation network from the masks; avatar: "
                                                    "the tri-plane generator and fields (needs init_avatar)."}),
                "init_avatar": ([NO_FILE, *file_choices(FOLDER)], {"default": NO_FILE,
                                                                   "tooltip": "Stage 'avatar': the template "
                                                                              "stage's file in models/trihuman."}),
                "world_sequences": ("INT", {"default": d.world_sequences, "min": 1, "max": 1000,
                                            "tooltip": "Training motions of the avatar world (12 views each)."}),
                "world_frames": ("INT", {"default": d.world_frames, "min": 1, "max": 1000,
                                         "tooltip": "Frames per training motion."}),
                "size": ("INT", {"default": d.size, "min": 16, "max": 1024, "step": 16,
                                 "tooltip": "Render size of the world's training views (pixels)."}),
                "steps": ("INT", {"default": d.max_steps, "min": 1, "max": 1_000_000,
                                  "tooltip": "Optimizer steps (one frame per step)."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX,
                                 "tooltip": "Seed of initial weights, data order and ray draws."}),
                "output_name": ("STRING", {"default": "my-avatar",
                                           "tooltip": "Avatar file name in models/trihuman (the run's checkpoints "
                                                      "go to output/trihuman/<name>)."}),
                "resume": ("BOOLEAN", {"default": False,
                                       "tooltip": "Continue the run of this output_name up to 'steps'. Off: the run "
                                                  "folder must not exist yet."}),
            }
        }  # fmt: skip

    def train(
        self, stage, init_avatar, world_sequences, world_frames, size, steps, seed, output_name, resume
    ):
        from ..models.trihuman.train import STAGES, TrainConfig, train

        if stage not in STAGES:
            raise InputError("stage", f"one of {STAGES}", repr(stage))
        name, out = training_run_folder("trihuman", output_name, resume)
        init = None
        if stage == "avatar":
            if init_avatar == NO_FILE:
                raise InputError("init_avatar", "the template stage's avatar file for stage 'avatar'", "none")
            init = _avatar_path(init_avatar, "init_avatar")
        folders = model_folders(FOLDER)
        if not folders:
            raise InputError("output_name", "ComfyUI's models/trihuman folder", "none configured")
        target = Path(folders[0]) / f"{name}.safetensors"
        if init is not None and target.resolve() == init.resolve():
            raise InputError("output_name", "a name other than the init avatar's", repr(output_name))
        device = torch_device()
        cfg = TrainConfig(out=str(out), stage=stage, init=str(init) if init else None, world_sequences=world_sequences,
                          world_frames=world_frames, size=size, max_steps=steps, seed=seed,
                          save_every=max(1, min(250, steps)), keep_checkpoints=1, resume="auto" if resume else None,
                          cpu=device.type == "cpu")  # fmt: skip
        follow = TrainingFollow(steps)

        unload_all(device)
        with torch.inference_mode(False), torch.enable_grad():  # ComfyUI runs nodes in inference mode
            path = train(cfg, progress=follow.progress, should_stop=follow.should_stop,
                         preview=follow.preview)  # fmt: skip
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        follow.finish()
        raise_if_interrupted()
        preview = follow.previews[-1].clamp(0, 1) if follow.previews else torch.zeros(1, size, size, 3)
        return {"ui": {"text": [str(target)]}, "result": (target.name, preview)}


NODE_CLASS_MAPPINGS = {
    "PaperNodes_TriHumanLoadAvatar": LoadAvatar,
    "PaperNodes_TriHumanLoadMotion": LoadMotion,
    "PaperNodes_TriHumanOrbitCamera": OrbitCamera,
    "PaperNodes_TriHumanRender": RenderAvatar,
    "PaperNodes_TriHumanMesh": AvatarMesh,
    "PaperNodes_TriHumanTrain": TrainAvatar,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PaperNodes_TriHumanLoadAvatar": "TriHuman: Load Avatar",
    "PaperNodes_TriHumanLoadMotion": "TriHuman: Load Motion",
    "PaperNodes_TriHumanOrbitCamera": "TriHuman: Orbit Camera",
    "PaperNodes_TriHumanRender": "TriHuman: Render Avatar",
    "PaperNodes_TriHumanMesh": "TriHuman: Avatar Mesh",
    "PaperNodes_TriHumanTrain": "TriHuman: Train Avatar",
}
