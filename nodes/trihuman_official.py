"""TriHuman nodes for the official release's subjects (models/trihuman/official): load a subject's two
folders from ComfyUI's models/trihuman (TRIHUMAN_OFFICIAL) and render frames of its motion from one of its
calibrated cameras (IMAGE, MASK). The release's files are CC BY-NC and never shipped: users download them
(github.com/kv2000/TriHuman) and put `<Subject>_metadata/` and `<Subject>_checkpoints/` into models/trihuman.
"""

from __future__ import annotations

import torch

from ..models.common.errors import InputError, WeightsNotFoundError
from ..models.common.mesh_io import save_preview_glb, to_trimesh
from ..models.trihuman.official.subject import (
    CHECKPOINT_FILES,
    MOTION_SPLITS,
    OfficialSubject,
    load_official_subject,
    load_subject_motion,
    render_subject_frame,
    subject_frame_mesh,
)
from .comfy_adapter import (
    core_mesh,
    model_dirs_with,
    model_folders,
    path_inside,
    progress_callback,
    raise_if_interrupted,
    register_model_folders,
)

CATEGORY = "PaperNodes/TriHuman"
FOLDER = "trihuman"
SUBJECT_TYPE = "TRIHUMAN_OFFICIAL"
METADATA_MARKER = "ddc.skeleton"
CHECKPOINT_MARKER = CHECKPOINT_FILES[1]
RELEASE = ("a subject of the official TriHuman release (github.com/kv2000/TriHuman; files from "
           "gvv-assets.mpi-inf.mpg.de/TriHuman, CC BY-NC): put its <Subject>_metadata and <Subject>_checkpoints "
           "folders into ComfyUI's models/trihuman")  # fmt: skip
NO_METADATA = "(no subject metadata found: " + RELEASE + ")"
NO_CHECKPOINTS = (
    "(no checkpoints found: explicit_checkpoint.pth + implicit_checkpoint.pth in models/trihuman)"
)
VAL_CAMERA = 40  # the release's `val_camera`
START_FRAME, FRAME_STEP = 100, 10  # the release's test renders: from frame 100, every 10th

register_model_folders(FOLDER)


def _folder(name, marker: str, input_name: str):
    if not isinstance(name, str) or name.startswith("(no "):
        raise InputError(input_name, f"a folder holding {marker} in ComfyUI's models/trihuman; " + RELEASE,
                         repr(name))  # fmt: skip
    searched = model_folders(FOLDER)
    for root in searched:
        folder = path_inside(root, name)
        if folder is None:
            raise InputError(input_name, "a folder name inside ComfyUI's models/trihuman", repr(name))
        if (folder / marker).is_file():
            return folder
    raise WeightsNotFoundError(name, searched, RELEASE)


class LoadOfficialSubject:
    DESCRIPTION = ("Load a subject of the official TriHuman release (Zhu et al. 2023): its template, skeleton, "
                   "skinning, embedded graph and cameras from <Subject>_metadata, and the explicit (graph "
                   "networks) and implicit (tri-plane U-Net, SDF and colour MLPs) checkpoints. Pure torch: "
                   "no pytorch3d, kaolin or CUDA extensions. Weights load with torch.load(weights_only=True).")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = (SUBJECT_TYPE,)
    RETURN_NAMES = ("subject",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        meta = [n for n in model_dirs_with(FOLDER, METADATA_MARKER) if n != "."] or [NO_METADATA]
        ckpt = [n for n in model_dirs_with(FOLDER, CHECKPOINT_MARKER) if n != "."] or [NO_CHECKPOINTS]
        return {
            "required": {
                "metadata": (meta, {"tooltip": "The subject's <Subject>_metadata folder in models/trihuman "
                                               "(ddc.obj, ddc.skeleton, ddc.skin, cameras.calibration, ...)."}),
                "checkpoints": (ckpt, {"tooltip": "The same subject's <Subject>_checkpoints folder "
                                                  "(explicit_checkpoint.pth, implicit_checkpoint.pth). A "
                                                  "checkpoint of another subject is refused."}),
            }
        }  # fmt: skip

    def load(self, metadata, checkpoints):
        meta = _folder(metadata, METADATA_MARKER, "metadata")
        ckpt = _folder(checkpoints, CHECKPOINT_MARKER, "checkpoints")
        with torch.inference_mode(False):  # the renderer takes SDF gradients by autograd
            return (load_official_subject(meta, ckpt),)


class RenderOfficialFrames:
    DESCRIPTION = ("Render frames of an official TriHuman subject's own motion (its train or test split) from "
                   "one of its calibrated cameras, as the release renders them (TriHuman Sec. 3: posed "
                   "template, motion texture, tri-plane U-Net, 32 NeuS samples per ray near the template, "
                   "black background). CPU cost grows with the pixels the body covers: start small.")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("images", "mask")
    FUNCTION = "render"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "subject": (SUBJECT_TYPE, {"tooltip": "From 'TriHuman: Load Official Subject'."}),
                "split": (list(MOTION_SPLITS), {"default": "test", "tooltip": "Which of the subject's motions: "
                                                "skeletoolToGTPose_test (test) or skeletoolToGTPose (train)."}),
                "first_frame": ("INT", {"default": START_FRAME, "min": 0, "max": 100000,
                                        "tooltip": "First frame (the release's test renders start at 100)."}),
                "frames": ("INT", {"default": 1, "min": 1, "max": 1000, "tooltip": "How many frames to render."}),
                "frame_step": ("INT", {"default": FRAME_STEP, "min": 1, "max": 1000,
                                       "tooltip": "Render every n-th frame (the release: every 10th)."}),
                "camera": ("INT", {"default": VAL_CAMERA, "min": 0, "max": 1000,
                                   "tooltip": "Calibrated camera index (the release validates on camera 40)."}),
                "scale": ("FLOAT", {"default": 0.25, "min": 0.01, "max": 4.0, "step": 0.05,
                                    "tooltip": "Image size as a fraction of the camera's (1285 x 940 in the "
                                               "release); 0.25 renders about 320 x 235."}),
            }
        }  # fmt: skip

    def render(self, subject, split, first_frame, frames, frame_step, camera, scale):
        subject = _subject(subject)
        motion = load_subject_motion(subject.metadata, split)
        last = first_frame + (frames - 1) * frame_step
        if last >= motion.dofs.shape[0]:
            raise InputError("first_frame / frames / frame_step",
                             f"frames within the {split} motion's {motion.dofs.shape[0]}",
                             f"up to frame {last}")  # fmt: skip
        report = progress_callback(frames)
        images, masks = [], []
        with torch.inference_mode(False):
            for i in range(frames):
                raise_if_interrupted()
                out = render_subject_frame(subject, motion, first_frame + i * frame_step, camera, scale)
                images.append(out.image.float())
                masks.append(out.opacity.float().clamp(0, 1))
                report(i + 1, frames)
        return (torch.stack(images), torch.stack(masks))


def _subject(subject) -> OfficialSubject:
    if not isinstance(subject, OfficialSubject):
        raise InputError("subject", f"a {SUBJECT_TYPE} from 'TriHuman: Load Official Subject'",
                         type(subject).__name__)  # fmt: skip
    return subject


class OfficialFrameMesh:
    DESCRIPTION = ("The official subject's geometry for one frame, as the release's geometry branch builds it: "
                   "the posed template subdivided once (its subdivision_dict_xyz_new.pkl), then twice a "
                   "Laplacian smoothing step and a projection onto the SDF's zero level, hand vertices kept "
                   "(segmentation_hand.txt, when present). Same faces every frame; metres. Outputs core MESH and "
                   "the path of a GLB in the output folder (core Preview3D's model_file).")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MESH", "STRING")
    RETURN_NAMES = ("mesh", "glb_path")
    FUNCTION = "mesh"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "subject": (SUBJECT_TYPE, {"tooltip": "From 'TriHuman: Load Official Subject'."}),
                "split": (list(MOTION_SPLITS), {"default": "test", "tooltip": "Which of the subject's motions."}),
                "frame": ("INT", {"default": START_FRAME, "min": 0, "max": 100000, "tooltip": "The frame to mesh."}),
                "filename_prefix": ("STRING", {"default": "trihuman_official",
                                               "tooltip": "Name of the GLB in the output folder's mesh/ "
                                                          "sub-folder; a counter is appended."}),
            }
        }  # fmt: skip

    def mesh(self, subject, split, frame, filename_prefix):
        from .trihuman import _NAME, _output_dir

        subject = _subject(subject)
        if not isinstance(filename_prefix, str) or not _NAME.match(filename_prefix.strip()):
            raise InputError(
                "filename_prefix", "a file name (letters, digits, '.', '_', '-')", repr(filename_prefix)
            )
        motion = load_subject_motion(subject.metadata, split)
        with torch.inference_mode(False):
            verts, faces = subject_frame_mesh(subject, motion, frame)
        verts = verts.float()
        grey = torch.full_like(verts, 0.7)
        glb = save_preview_glb(to_trimesh(verts, faces, grey), _output_dir(), filename_prefix.strip())
        return (core_mesh(verts[None], faces[None], grey[None]), glb)


NODE_CLASS_MAPPINGS = {
    "PaperNodes_TriHumanLoadOfficial": LoadOfficialSubject,
    "PaperNodes_TriHumanRenderOfficial": RenderOfficialFrames,
    "PaperNodes_TriHumanOfficialMesh": OfficialFrameMesh,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PaperNodes_TriHumanLoadOfficial": "TriHuman: Load Official Subject",
    "PaperNodes_TriHumanRenderOfficial": "TriHuman: Render Official Frames",
    "PaperNodes_TriHumanOfficialMesh": "TriHuman: Official Frame Mesh",
}
