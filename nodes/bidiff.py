"""BiDiff nodes: load a 3D prior (Shap-E from a diffusers folder, or a grid prior file) and sample shapes from
a prompt (BIDIFF_SHAPES); load a BiDiff model and generate with both branches guiding each other (lazy start
from a prior); turn shapes into core MESH (Save GLB / Preview3D) and render them from orbit views.

Shap-E (openai/shap-e, MIT) lives in models/diffusers as the diffusers folder; grid priors (the world's,
or one trained with `python -m models.bidiff.train_prior`) in models/bidiff (registered here when absent).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from ..models.bidiff.export import shape_mesh, shape_views
from ..models.bidiff.grid_prior import load_grid_prior
from ..models.bidiff.if_base import is_if_folder, load_if_folder
from ..models.bidiff.pipeline import BiDiffModel, load_bidiff
from ..models.bidiff.pipeline_sd import BoundSDBiDiff, load_sd_bidiff
from ..models.bidiff.prior3d import Prior3D, Shape3D
from ..models.common.errors import InputError, WeightsNotFoundError
from ..models.common.loading import load_components
from .bridge import checkpoint_inputs, components_from_comfy
from .comfy_adapter import (
    TrainingFollow,
    core_mesh,
    file_choices,
    input_subfolder,
    model_dirs_with,
    model_folders,
    path_inside,
    progress_callback,
    register_model_folders,
    resolve_file,
    resolve_sd_model,
    sd_model_input,
    training_run_folder,
)
from .comfy_memory import dtype_input, model_dtype, torch_device, unload_all

CATEGORY = "PaperNodes/BiDiff"
FOLDER = "bidiff"
PRIOR_TYPE, SHAPES_TYPE, MODEL_TYPE = "BIDIFF_PRIOR3D", "BIDIFF_SHAPES", "BIDIFF_MODEL"
SHAP_E_MARKER = "shap_e_renderer/config.json"
SHAP_E_PUBLISHED = (
    "huggingface.co/openai/shap-e (MIT): the whole diffusers folder into models/diffusers/shap-e"
)
PRIOR_PUBLISHED = ("none is published for the grid prior; train one with `python -m models.bidiff.train_prior "
                   "--out OUT` and copy OUT/final/grid_prior.safetensors")  # fmt: skip
NO_SHAP_E = "(no Shap-E folder found: put openai/shap-e in models/diffusers)"
NO_PRIORS = "(no 3D priors found: put a .safetensors in models/bidiff)"
NO_MODELS = "(no BiDiff models found: put a .safetensors in models/bidiff)"
MODEL_PUBLISHED = ("the paper released no weights; train one with `python -m models.bidiff.train_bidiff --out OUT` "
                   "and copy OUT/final/bidiff.safetensors")  # fmt: skip
SD_ADAPTER_PUBLISHED = ("none is published; train one with 'BiDiff: Train' (kind 'SD adapter') or `python -m "
                        "models.bidiff.train_bidiff_sd --base SD --out OUT` and copy "
                        "OUT/final/bidiff_sd.safetensors")  # fmt: skip
MAX_MESH_RESOLUTION, MAX_VIEW_PIXELS = 256, 1024 * 1024
MODELS = (BiDiffModel, BoundSDBiDiff)
NOT_A_MODEL = "a BIDIFF_MODEL from 'BiDiff: Load Model', 'Load Adapter (SD1.5 or IF)', 'SD Adapter on Checkpoint' or 'Train'"

register_model_folders(FOLDER)


def _shapes(shapes) -> list[Shape3D]:
    if not isinstance(shapes, list) or not shapes or not all(isinstance(s, Shape3D) for s in shapes):
        raise InputError("shapes", "BIDIFF_SHAPES from 'BiDiff: Sample 3D Prior'", type(shapes).__name__)
    return shapes


def _int(name: str, value, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InputError(name, f"{what} ({low}..{high})", repr(value))
    return value


class LoadShapE:
    DESCRIPTION = ("Load Shap-E (OpenAI, MIT) from a diffusers folder as BiDiff's 3D prior: text -> a 3D "
                   "implicit function (signed distance + colour). The paper's 3D prior (BiDiff Sec. 3.3).")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = (PRIOR_TYPE,)
    RETURN_NAMES = ("prior",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        tip = "A Shap-E diffusers folder (openai/shap-e) inside ComfyUI's models/diffusers."
        choices = model_dirs_with("diffusers", SHAP_E_MARKER) or [NO_SHAP_E]
        return {"required": {"model_name": (choices, {"tooltip": tip})}}

    def load(self, model_name):
        from ..models.bidiff.shap_e import load_shap_e

        searched = model_folders("diffusers")
        for root in searched:
            folder = path_inside(root, model_name)
            if folder is not None and folder.is_dir():
                return (load_shap_e(folder),)
        raise WeightsNotFoundError(model_name, searched, SHAP_E_PUBLISHED)


class LoadGridPrior:
    DESCRIPTION = ("Load a grid 3D prior (.safetensors from models/bidiff): a small text-conditioned diffusion "
                   "over signed-distance + colour grids, the stand-in for Shap-E that the pack trains on its 3D "
                   "world (papernodes-world-3d-prior).")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = (PRIOR_TYPE,)
    RETURN_NAMES = ("prior",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        tip = "A grid prior file in ComfyUI's models/bidiff folder."
        return {"required": {"model_name": (file_choices(FOLDER) or [NO_PRIORS], {"tooltip": tip})}}

    def load(self, model_name):
        return (load_grid_prior(resolve_file(FOLDER, model_name, PRIOR_PUBLISHED)),)


class SamplePrior:
    DESCRIPTION = ("Sample shapes from a 3D prior for a prompt: BiDiff's 3D starting point (its 'lazy' start "
                   "samples the 3D prior first). Guidance and steps 0 use the prior's own defaults "
                   "(Shap-E: guidance 15 as in BiDiff, 64 steps; world prior: 3, 25 DDIM steps).")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = (SHAPES_TYPE,)
    RETURN_NAMES = ("shapes",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "prior": (PRIOR_TYPE, {"tooltip": "From 'BiDiff: Load Shap-E' or 'BiDiff: Load 3D Prior'."}),
                "prompt": ("STRING", {"default": "a red striped cube", "multiline": True,
                                      "tooltip": "What to make. The world prior knows the world's words: "
                                                 "six shapes, six colours, 'striped'."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**63 - 1, "tooltip": "Seed of the initial noise."}),
                "count": ("INT", {"default": 1, "min": 1, "max": 16, "tooltip": "Shapes to sample for the prompt."}),
                "steps": ("INT", {"default": 0, "min": 0, "max": 1000,
                                  "tooltip": "Sampling steps; 0 = the prior's default."}),
                "guidance": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 50.0, "step": 0.5,
                                       "tooltip": "Classifier-free guidance; 0 = the prior's default (Shap-E 15)."}),
            }
        }  # fmt: skip

    def sample(self, prior: Prior3D, prompt, seed, count, steps, guidance):
        if not isinstance(prior, Prior3D):
            raise InputError("prior", "a BIDIFF_PRIOR3D from a BiDiff loader", type(prior).__name__)
        steps = steps or prior.default_steps
        shapes = prior.sample(
            prompt, seed=seed, count=count, steps=steps, guidance=guidance or None,
            progress=progress_callback(steps),
        )  # fmt: skip
        return (shapes,)


class LoadBiDiff:
    DESCRIPTION = ("Load a BiDiff model (.safetensors from models/bidiff): the multi-view 2D diffusion with its "
                   "ControlNet for the 3D renders, and the 3D volume denoiser. The paper released no weights; the "
                   "demo's papernodes-world-bidiff is trained on the pack's 3D world.")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = (MODEL_TYPE,)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        tip = "A BiDiff model file in ComfyUI's models/bidiff folder (not a 3D prior)."
        return {"required": {"model_name": (file_choices(FOLDER) or [NO_MODELS], {"tooltip": tip})}}

    def load(self, model_name):
        return (load_bidiff(resolve_file(FOLDER, model_name, MODEL_PUBLISHED)),)


NO_SD = (
    "(no SD models found: put a diffusers folder in models/diffusers or a .safetensors in models/checkpoints)"
)
SD_PUBLISHED = "an SD1.5-architecture model: a diffusers folder in models/diffusers or a checkpoint in models/checkpoints"
ADAPTER_TIP = (
    "An SD adapter file in ComfyUI's models/bidiff folder (from 'BiDiff: Train', kind 'SD adapter')."
)


def _bound(adapter_name: str, components) -> BoundSDBiDiff:
    return BoundSDBiDiff(load_sd_bidiff(resolve_file(FOLDER, adapter_name, SD_ADAPTER_PUBLISHED)), components)


class LoadSDAdapter:
    DESCRIPTION = ("BiDiff on a 2D prior you have: an SD1.5-architecture model (diffusers folder or single-file "
                   "checkpoint) or DeepFloyd IF stage I (its diffusers folder in models/diffusers, e.g. "
                   "IF-I-XL-v1.0: the paper's own prior, 64 px views), and a BiDiff adapter trained for it "
                   "(.safetensors from models/bidiff: cross-view attention, view embeddings, the ControlNet for "
                   "the 3D renders, and the 3D denoiser). The model itself is never changed: the adapter is hooked "
                   "in only while Generate 3D or Refine 3D runs. Train an SD adapter with 'BiDiff: Train' (kind "
                   "'SD adapter'), an IF adapter with `python -m models.bidiff.train_bidiff_sd --base "
                   "IF_FOLDER`.")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = (MODEL_TYPE,)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        tip = ("diffusers/<folder> from models/diffusers, or checkpoints/<file> from models/checkpoints: the "
               "model the adapter was trained for (SD1.5 architecture, or a DeepFloyd IF stage I folder).")  # fmt: skip
        return {
            "required": {
                "model_name": sd_model_input(NO_SD, tip),
                "adapter_name": (file_choices(FOLDER) or [NO_MODELS], {"tooltip": ADAPTER_TIP}),
            },
            "optional": {"dtype": dtype_input()},
        }

    def load(self, model_name, adapter_name, dtype="auto"):
        path = resolve_sd_model(model_name, SD_PUBLISHED)
        load = load_if_folder if is_if_folder(path) else load_components
        return (_bound(adapter_name, load(path, model_dtype(dtype))),)


class SDAdapterOnCheckpoint:
    DESCRIPTION = ("BiDiff on the MODEL/CLIP/VAE of core Load Checkpoint (LoRAs included): attach a trained BiDiff "
                   "adapter (.safetensors from models/bidiff). The model itself is never changed: the adapter is "
                   "hooked in only while Generate 3D or Refine 3D runs.")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = (MODEL_TYPE,)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        inputs = checkpoint_inputs("The SD1.5-architecture model the adapter was trained for.")
        inputs["required"]["adapter_name"] = (file_choices(FOLDER) or [NO_MODELS], {"tooltip": ADAPTER_TIP})
        return inputs

    def load(self, model, clip, vae, adapter_name, dtype="auto"):
        return (_bound(adapter_name, components_from_comfy(model, clip, vae, model_dtype(dtype))),)


KINDS = ("world-size model", "SD adapter")


class TrainBiDiff:
    DESCRIPTION = ("Train BiDiff's bidirectional parts (BiDiff Sec. 3.2) with the pack's trainer. 'world-size "
                   "model': a small pixel-space multi-view model, its ControlNet and the 3D denoiser, from scratch "
                   "(as the demo's papernodes-world-bidiff). 'SD adapter': cross-view attention, view embeddings, a "
                   "ControlNet and the 3D denoiser beside the connected SD1.5 model, which stays frozen (as the "
                   "paper keeps IF frozen). Data: the pack's 3D world, or a folder of meshes with .txt captions "
                   "inside ComfyUI's input directory. Writes models/bidiff/<output_name>.safetensors; Cancel stops "
                   "after saving. Same trainers as `python -m models.bidiff.train_bidiff` / `train_bidiff_sd`.")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = (MODEL_TYPE, "STRING")
    RETURN_NAMES = ("model", "model_name")
    FUNCTION = "train"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "kind": (list(KINDS), {"default": KINDS[0], "tooltip":
                                       "world-size model: everything from scratch, pixel views (small, for the 3D "
                                       "world). SD adapter: trains beside the connected model/clip/vae."}),
                "data_folder": ("STRING", {"default": "", "tooltip":
                                           "A folder inside ComfyUI's input directory: meshes (.glb .obj .ply .stl "
                                           ".off) each with a <name>.txt caption. Empty: the pack's 3D world."}),
                "world_scenes": ("INT", {"default": 4000, "min": 1, "max": 1_000_000,
                                         "tooltip": "Scenes of the 3D world (ignored with a data folder)."}),
                "views": ("INT", {"default": 4, "min": 1, "max": 16, "tooltip": "Views per scene (orbit, 20° up)."}),
                "size": ("INT", {"default": 32, "min": 8, "max": 1024, "step": 8, "tooltip":
                                 "View size in pixels (world-size model: 32; SD adapter: a multiple of the "
                                 "model's pixel multiple, 64 for SD1.5, e.g. 256)."}),
                "resolution": ("INT", {"default": 16, "min": 8, "max": 128, "step": 4,
                                       "tooltip": "3D grid resolution of the 3D denoiser."}),
                "steps": ("INT", {"default": 3000, "min": 1, "max": 1_000_000, "tooltip": "Optimizer steps."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**63 - 1,
                                 "tooltip": "Seed of initial weights, data order and noise."}),
                "output_name": ("STRING", {"default": "my-bidiff", "tooltip":
                                           "File name in models/bidiff (the run's checkpoints go to "
                                           "output/bidiff/<name>)."}),
                "resume": ("BOOLEAN", {"default": False, "tooltip":
                                       "Continue the run of this output_name up to 'steps'. Off: the run folder "
                                       "must not exist yet."}),
            },
            "optional": {
                "model": ("MODEL", {"tooltip": "SD adapter: the SD1.5-architecture model to train beside."}),
                "clip": ("CLIP", {"tooltip": "SD adapter: the model's CLIP."}),
                "vae": ("VAE", {"tooltip": "SD adapter: the model's VAE."}),
                "dtype": dtype_input(),
            },
        }  # fmt: skip

    def train(self, kind, data_folder, world_scenes, views, size, resolution, steps, seed, output_name, resume,
              model=None, clip=None, vae=None, dtype="auto"):  # fmt: skip
        from ..models.bidiff import train_bidiff, train_bidiff_sd

        if kind not in KINDS:
            raise InputError("kind", f"one of {KINDS}", repr(kind))
        name, out = training_run_folder("bidiff", output_name, resume)
        data = (
            str(input_subfolder(data_folder, "data_folder", "meshes with captions"))
            if data_folder.strip()
            else None
        )
        folders = model_folders(FOLDER)
        if not folders:
            raise InputError("output_name", "ComfyUI's models/bidiff folder", "none configured")
        device = torch_device()
        common = dict(out=str(out), data=data, world_scenes=world_scenes, views=views, size=size,
                      resolution=resolution, max_steps=steps, seed=seed, save_every=max(1, min(250, steps)),
                      keep_checkpoints=1, resume="auto" if resume else None, cpu=device.type == "cpu")  # fmt: skip
        follow = TrainingFollow(steps)
        base = None
        if kind == KINDS[1]:
            if model is None or clip is None or vae is None:
                raise InputError("model", "model, clip and vae connected (core Load Checkpoint) for an SD adapter",
                                 "not all connected")  # fmt: skip
            base = components_from_comfy(model, clip, vae, model_dtype(dtype))
            cfg, extra = train_bidiff_sd.TrainConfig(base="(connected model)", **common), {"base": base}
            trainer = train_bidiff_sd.train
        else:
            cfg, extra, trainer = train_bidiff.TrainConfig(**common), {}, train_bidiff.train
        unload_all(device)
        with torch.inference_mode(False), torch.enable_grad():  # ComfyUI runs nodes in inference mode
            path = trainer(cfg, follow.progress, follow.should_stop, **extra)
        target = Path(folders[0]) / f"{name}.safetensors"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        follow.finish()
        trained = BoundSDBiDiff(load_sd_bidiff(target), base) if kind == KINDS[1] else load_bidiff(target)
        return {"ui": {"text": [str(target)]}, "result": (trained, target.name)}


def _views_image(views: torch.Tensor) -> torch.Tensor:
    """[V, 3, S, S] in [-1, 1] -> IMAGE [V, S, S, 3] in [0, 1]."""
    return ((views.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).contiguous()


class Generate3D:
    DESCRIPTION = ("BiDiff (Ding et al. 2023): the 3D and multi-view 2D diffusions guide each other at every step "
                   "(the 3D branch's renders steer the 2D views through a ControlNet; the 2D views are "
                   "reconstructed into the 3D shape), with decoupled guidance for text and 3D consistency and, "
                   "given a 3D prior, the lazy start from its sample. Outputs the shape (-> Shapes to Mesh), the "
                   "2D views and the renders of the 3D result.")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = (SHAPES_TYPE, "IMAGE", "IMAGE")
    RETURN_NAMES = ("shapes", "views", "renders")
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        scale = lambda tip: ("FLOAT", {"default": 7.0, "min": 1.0, "max": 30.0, "step": 0.5, "tooltip": tip})  # noqa: E731
        return {
            "required": {
                "model": (MODEL_TYPE, {"tooltip": "From 'BiDiff: Load Model' (world size) or 'BiDiff: Load SD "
                                                  "Adapter' (an SD1.5 model with a trained BiDiff adapter)."}),
                "prompt": ("STRING", {"default": "a red striped cube", "multiline": True,
                                      "tooltip": "What to make (both branches unless the prompts below are set)."}),
                "shape_prompt": ("STRING", {"default": "", "tooltip":
                                            "Geometry only: the 3D branch and the 3D prior read this (empty: prompt)."}),
                "texture_prompt": ("STRING", {"default": "", "tooltip":
                                              "Appearance only: the 2D branch reads this (empty: prompt)."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**63 - 1, "tooltip": "Seed of the initial noise."}),
                "steps": ("INT", {"default": 25, "min": 1, "max": 1000,
                                  "tooltip": "DDIM steps over the whole schedule (the paper: 25)."}),
                "text_scale": scale("Text guidance s_text (the paper: 7)."),
                "consistency_scale": scale("3D-consistency guidance s_cond: how hard the 3D renders steer the "
                                           "views (the paper: 7; 1 = plain conditional)."),
                "lazy_t": ("FLOAT", {"default": 0.6, "min": 0.05, "max": 1.0, "step": 0.05, "tooltip":
                                     "With a prior: start at this fraction of the noise schedule from the prior's "
                                     "shape (smaller keeps more of it)."}),
            },
            "optional": {
                "prior": (PRIOR_TYPE, {"tooltip": "A 3D prior for the lazy start (Shap-E, or the world prior); "
                                                  "without one, sampling starts from noise."}),
            },
        }  # fmt: skip

    def generate(self, model, prompt, shape_prompt, texture_prompt, seed, steps, text_scale, consistency_scale,
                 lazy_t, prior=None):  # fmt: skip
        if not isinstance(model, MODELS):
            raise InputError("model", NOT_A_MODEL, type(model).__name__)
        if prior is not None and not isinstance(prior, Prior3D):
            raise InputError("prior", "a BIDIFF_PRIOR3D from a BiDiff prior loader", type(prior).__name__)
        out = model.generate(
            prompt, shape_prompt=shape_prompt or None, texture_prompt=texture_prompt or None, seed=seed,
            steps=steps, text_scale=text_scale, consistency_scale=consistency_scale, prior=prior, lazy_t=lazy_t,
            progress=progress_callback(steps),
        )  # fmt: skip
        return ([out["shape"]], _views_image(out["views"]), _views_image(out["renders"]))


class Refine3D:
    DESCRIPTION = ("Refine a shape by score distillation with the BiDiff model's 2D prior (BiDiff Sec. 3.4): the "
                   "SDF + colour grid is optimised so that its renders look like the prompt. Started from BiDiff's "
                   "result it needs far fewer steps than from scratch (a sphere, when no shape is given).")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = (SHAPES_TYPE,)
    RETURN_NAMES = ("shapes",)
    FUNCTION = "refine"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL_TYPE, {"tooltip": "From 'BiDiff: Load Model' or 'Load Adapter' (its 2D branch "
                                                  "is the prior; with an SD adapter the score is in latent space)."}),
                "prompt": ("STRING", {"default": "a red striped cube", "multiline": True,
                                      "tooltip": "What the renders should show."}),
                "steps": ("INT", {"default": 100, "min": 1, "max": 10000, "tooltip": "Optimisation steps."}),
                "learning_rate": ("FLOAT", {"default": 0.02, "min": 1e-4, "max": 1.0, "step": 0.005,
                                            "tooltip": "Adam step size on the grid."}),
                "guidance": ("FLOAT", {"default": 7.0, "min": 1.0, "max": 100.0, "step": 0.5,
                                       "tooltip": "Classifier-free guidance of the score."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**63 - 1,
                                 "tooltip": "Seed of the noise levels and noise of every step."}),
            },
            "optional": {
                "shapes": (SHAPES_TYPE, {"tooltip": "The start (e.g. Generate 3D's shapes); none: a sphere (from "
                                                    "scratch)."}),
            },
        }  # fmt: skip

    def refine(self, model, prompt, steps, learning_rate, guidance, seed, shapes=None):
        from ..models.bidiff.refine import refined_shape

        if not isinstance(model, MODELS):
            raise InputError("model", NOT_A_MODEL, type(model).__name__)
        starts = _shapes(shapes) if shapes is not None else [None]
        total = steps * len(starts)
        report = progress_callback(total)
        out = []
        with torch.inference_mode(False), torch.enable_grad():  # ComfyUI runs nodes in inference mode
            for i, start in enumerate(starts):
                tick = lambda k, n, done=i * steps: report(done + k, total)  # noqa: E731
                out.append(refined_shape(model, prompt, start, steps=steps, lr=learning_rate, guidance=guidance,
                                         seed=seed, progress=tick))  # fmt: skip
        return (out,)


class ShapesToMesh:
    DESCRIPTION = ("Shapes as triangle meshes (core MESH, vertex colours where the host keeps them): the SDF on "
                   "a grid, marching tetrahedra at its zero level. Feed core 'Save GLB' for Preview3D.")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = ("MESH",)
    RETURN_NAMES = ("mesh",)
    FUNCTION = "mesh"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "shapes": (SHAPES_TYPE, {"tooltip": "From 'BiDiff: Sample 3D Prior'."}),
                "resolution": ("INT", {"default": 64, "min": 8, "max": MAX_MESH_RESOLUTION, "step": 8,
                                       "tooltip": "Grid cells per axis over [-1, 1]^3 (more: finer, slower)."}),
            }
        }  # fmt: skip

    def mesh(self, shapes, resolution):
        shapes = _shapes(shapes)
        resolution = _int("resolution", resolution, 8, MAX_MESH_RESOLUTION, "grid cells per axis")
        report = progress_callback(len(shapes))
        meshes = []
        for i, shape in enumerate(shapes):
            meshes.append(shape_mesh(shape, resolution))
            report(i + 1, len(shapes))
        return (core_mesh(*_batched(meshes)),)


def _batched(meshes: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """Meshes of different sizes as core MESH's batch [B, N, 3] / [B, M, 3]: shorter ones are padded with
    copies of their first vertex and degenerate faces on it (zero area: invisible, dropped by viewers)."""
    n = max(1, max(len(v) for v, _, _ in meshes))
    m = max(1, max(len(f) for _, f, _ in meshes))
    verts, faces, cols = [], [], []
    for v, f, c in meshes:
        if len(v) == 0:
            v, c = torch.zeros(1, 3), torch.zeros(1, 3)
        verts.append(torch.cat([v, v[:1].expand(n - len(v), 3)]).float())
        cols.append(torch.cat([c, c[:1].expand(n - len(c), 3)]).float())
        faces.append(torch.cat([f, f.new_zeros(m - len(f), 3)]).long())
    return torch.stack(verts), torch.stack(faces), torch.stack(cols)


class RenderViews:
    DESCRIPTION = ("Render shapes from cameras orbiting them (NeuS volume rendering of the SDF, pure torch): "
                   "IMAGE [shapes x views], MASK (opacity) and depth as an image.")  # fmt: skip
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("images", "masks")
    FUNCTION = "render"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "shapes": (SHAPES_TYPE, {"tooltip": "From 'BiDiff: Sample 3D Prior'."}),
                "views": ("INT", {"default": 8, "min": 1, "max": 64,
                                  "tooltip": "Cameras evenly spaced in azimuth (BiDiff's multi-view set: 8)."}),
                "size": ("INT", {"default": 128, "min": 16, "max": 1024, "step": 16,
                                 "tooltip": "Width and height of each view in pixels."}),
                "elevation": ("FLOAT", {"default": 20.0, "min": -89.0, "max": 89.0, "step": 1.0,
                                        "tooltip": "Camera elevation above the shape's equator, degrees."}),
                "samples": ("INT", {"default": 64, "min": 8, "max": 512,
                                    "tooltip": "Samples per ray (more: sharper edges, slower)."}),
            }
        }  # fmt: skip

    def render(self, shapes, views, size, elevation, samples):
        shapes = _shapes(shapes)
        views = _int("views", views, 1, 64, "a number of cameras")
        size = _int("size", size, 16, 1024, "pixels")
        samples = _int("samples", samples, 8, 512, "samples per ray")
        report = progress_callback(len(shapes))
        images, masks = [], []
        for i, shape in enumerate(shapes):
            out = shape_views(shape, views=views, size=size, elevation=float(elevation), samples=samples)
            images.append(out["image"])
            masks.append(out["mask"])
            report(i + 1, len(shapes))
        return (torch.cat(images).float(), torch.cat(masks).float())


NODE_CLASS_MAPPINGS = {
    "PaperNodes_BiDiffLoadShapE": LoadShapE,
    "PaperNodes_BiDiffLoadPrior": LoadGridPrior,
    "PaperNodes_BiDiffSamplePrior": SamplePrior,
    "PaperNodes_BiDiffLoadModel": LoadBiDiff,
    "PaperNodes_BiDiffLoadSDAdapter": LoadSDAdapter,
    "PaperNodes_BiDiffSDAdapterOnCheckpoint": SDAdapterOnCheckpoint,
    "PaperNodes_BiDiffTrain": TrainBiDiff,
    "PaperNodes_BiDiffGenerate": Generate3D,
    "PaperNodes_BiDiffRefine": Refine3D,
    "PaperNodes_BiDiffMesh": ShapesToMesh,
    "PaperNodes_BiDiffRenderViews": RenderViews,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "PaperNodes_BiDiffLoadShapE": "BiDiff: Load Shap-E",
    "PaperNodes_BiDiffLoadPrior": "BiDiff: Load 3D Prior",
    "PaperNodes_BiDiffSamplePrior": "BiDiff: Sample 3D Prior",
    "PaperNodes_BiDiffLoadModel": "BiDiff: Load Model",
    "PaperNodes_BiDiffLoadSDAdapter": "BiDiff: Load Adapter (SD1.5 or IF)",
    "PaperNodes_BiDiffSDAdapterOnCheckpoint": "BiDiff: SD Adapter on Checkpoint",
    "PaperNodes_BiDiffTrain": "BiDiff: Train",
    "PaperNodes_BiDiffGenerate": "BiDiff: Generate 3D",
    "PaperNodes_BiDiffRefine": "BiDiff: Refine 3D",
    "PaperNodes_BiDiffMesh": "BiDiff: Shapes to Mesh",
    "PaperNodes_BiDiffRenderViews": "BiDiff: Render Views",
}
