"""BiDiff nodes: load a 3D prior (Shap-E from a diffusers folder, or a grid prior file) and sample shapes from
a prompt (BIDIFF_SHAPES); load a BiDiff model and generate with both branches guiding each other (lazy start
from a prior); turn shapes into core MESH (Save GLB / Preview3D) and render them from orbit views.

Shap-E (openai/shap-e, MIT) lives in models/diffusers as the diffusers folder; grid priors (the world's,
or one trained with `python -m models.bidiff.train_prior`) in models/bidiff (registered here when absent).
"""

from __future__ import annotations

import torch

from ..models.bidiff.export import shape_mesh, shape_views
from ..models.bidiff.grid_prior import load_grid_prior
from ..models.bidiff.pipeline import BiDiffModel, load_bidiff
from ..models.bidiff.prior3d import Prior3D, Shape3D
from ..models.common.errors import InputError, WeightsNotFoundError
from .comfy_adapter import (
    core_mesh,
    file_choices,
    model_dirs_with,
    model_folders,
    path_inside,
    progress_callback,
    register_model_folders,
    resolve_file,
)

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
MAX_MESH_RESOLUTION, MAX_VIEW_PIXELS = 256, 1024 * 1024

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
                "model": (MODEL_TYPE, {"tooltip": "From 'BiDiff: Load Model'."}),
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
        if not isinstance(model, BiDiffModel):
            raise InputError("model", "a BIDIFF_MODEL from 'BiDiff: Load Model'", type(model).__name__)
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
                "model": (MODEL_TYPE, {"tooltip": "From 'BiDiff: Load Model' (its 2D branch is the prior)."}),
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

        if not isinstance(model, BiDiffModel):
            raise InputError("model", "a BIDIFF_MODEL from 'BiDiff: Load Model'", type(model).__name__)
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
    "PaperNodes_BiDiffGenerate": "BiDiff: Generate 3D",
    "PaperNodes_BiDiffRefine": "BiDiff: Refine 3D",
    "PaperNodes_BiDiffMesh": "BiDiff: Shapes to Mesh",
    "PaperNodes_BiDiffRenderViews": "BiDiff: Render Views",
}
