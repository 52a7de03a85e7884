"""Train a TriHuman avatar from multi-view video on the shared trainer (common/training.py), in two stages
as the paper does (Sec. 3.1: the deformable template first; Sec. 3.3-3.4: then the tri-plane avatar).

Stage `template`: the deformation network (embedded graph + offsets, before dual-quaternion skinning)
from the foreground masks of every training view (`silhouette.py`: projected vertices inside the masks,
mask contours covered by the template's silhouette vertices) + lambda_reg * Sumner's E_reg +
lambda_off * mean |offset|^2 (so per-vertex offsets appear only where the masks ask for them: without it
they drifted 2-3 cm everywhere, below a pixel, and doubled the held-out Chamfer distance). The rest of
the avatar is built (untrained) so the stage-1 file already has the final config.

Stage `avatar` (from `--init`, the template stage's file; its deformation network frozen): the motion
code, tri-plane generator, SDF and colour MLPs and NeuS's variance, per step from one frame and `--rays`
rays of `--views-per-step` random training views, marched inside the dilated template (render.py) and
rendered as render_frame renders (`--renderer midpoint`: NeuS's own scheme with its cosine annealing):
    L = |rgb - gt|_1 + lambda_mask BCE(opacity, mask) + lambda_eik (|grad f| - 1)^2
the eikonal term on points within the shell of random template vertices. Losses and weights are our
interpretation: the official release has no training code.

Data: the avatar world (world.py: `--world-sequences` seeded training motions, 12 training views) or
`--data FOLDER` (data.py). Usage (from the checkout root):

    python -m models.trihuman.train --out OUT --stage template [--max-steps N]
    python -m models.trihuman.train --out OUT2 --stage avatar --init OUT/final/trihuman-avatar.safetensors

Output: OUT/final/trihuman-avatar.safetensors (save_avatar, fp16); OUT/checkpoint-N for --resume;
OUT/log.csv.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

if (
    __name__ == "__main__"
):  # `python -m models.trihuman.train`: run inside the pack (scripts/papernodes_bootstrap.py)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from papernodes_bootstrap import run_in_pack

    run_in_pack(__spec__.name)

from ..common.cli import TrainerCli, option
from ..common.errors import InputError
from ..common.mesh_raster import interpolate, rasterize
from ..common.sdf_render import render_rays
from ..common.sdf_render_midpoint import render_rays_midpoint
from ..common.training import (
    Callbacks,
    LoopSettings,
    Run,
    TrainingMethod,
    TrainState,
    atomic_write_dir,
    fit,
    lr_factor,
)
from .avatar import AvatarConfig, TriHumanAvatar, load_avatar, save_avatar
from .data import MultiViewSequence, load_folder, world_sequences
from .render import ray_intervals, render_frame
from .silhouette import silhouette_loss
from .template import vertex_normals

MODEL_FILE = "trihuman-avatar.safetensors"
STAGES = ("template", "avatar")
RENDERERS = ("midpoint", "edges")


@dataclass
class TrainConfig:
    out: str = option(help="output folder (checkpoints, log.csv, final/)")
    stage: str = option(
        "template", "template (deformable template) or avatar (tri-planes + fields)", choices=STAGES
    )
    init: str | None = option(
        None,
        "avatar stage: the template stage's trihuman-avatar.safetensors (none: skinning only, an ablation)",
    )
    data: str | None = option(
        None, "folder of multi-view .npz sequences + character.npz (data.py); default: the world"
    )
    world_sequences: int = option(24, "training motions of the avatar world", group="data")
    world_frames: int = option(16, "frames per world motion", group="data")
    world_seed: int = option(0, "seed of the avatar world", group="data")
    size: int = option(64, "world render size (pixels)", group="data")
    texture_size: int = option(128, "motion texture and tri-plane size (paper: 256)", group="model")
    graph_nodes: int = option(192, "embedded graph nodes", group="model")
    base_channels: int = option(16, "generator U-Net width", group="model")
    max_channels: int = option(64, "generator U-Net widest layer", group="model")
    sdf_hidden: int = option(64, "SDF MLP width", group="model")
    sdf_layers: int = option(4, "SDF MLP layers", group="model")
    color_hidden: int = option(64, "colour MLP width", group="model")
    shell: float = option(0.05, "metres around the template where the surface may move", group="model")
    candidates: int = option(12, "candidate faces per sample (paper: ~20)", group="model")
    rays: int = option(384, "rays per step (avatar stage)")
    views_per_step: int = option(3, "training views a step draws its rays from (avatar stage)")
    reg_weight: float = option(10.0, "lambda_reg of E_reg (m^2; template stage)")
    offset_weight: float = option(10.0, "weight of the mean squared per-vertex offset (m^2; template stage)")
    renderer: str = option(
        "midpoint",
        "midpoint: NeuS's own scheme, as TriHuman's renderer and render_frame (one pass per sample, samples "
        "beyond the shell empty); edges: f at the section edges (the first shipped avatar's)",
        choices=RENDERERS,
    )
    anneal_end: int = option(
        -1,
        "midpoint renderer: NeuS's cosine annealing ratio rises linearly from 0 to 1 at this step; "
        "-1 = max_steps / 6 (NeuS: 50k of 300k), 0 = 1 throughout",
    )
    mask_weight: float = option(0.1, "lambda_mask (avatar stage)")
    eikonal_weight: float = option(0.05, "lambda_eik (avatar stage)")
    lr: float = option(1e-3, "Adam learning rate")
    lr_decay_from: int = option(
        0, "step from which the rate falls linearly to lr * lr_final at max_steps; 0 = constant"
    )
    lr_final: float = option(0.1, "final rate as a fraction of --lr when --lr-decay-from is set")
    max_steps: int = option(1000, "optimizer steps")
    grad_accum: int = option(1, "micro-batches (frames) per step")
    max_grad_norm: float = option(1.0, "gradient clipping; 0 disables")
    seed: int = option(0, "seed of initial weights, data order and ray draws")
    save_every: int = option(250, "checkpoint + export every N steps; 0 = at the end only")
    keep_checkpoints: int = option(2, "newest N checkpoint-N folders kept; 0 = all")
    preview_every: int = option(0, "preview every N steps (Train Avatar node); 0 = at the end")
    resume: str | None = option(None, "checkpoint-N folder, 'latest' or 'auto'")
    cpu: bool = option(False, "train on the CPU even where CUDA is available")

    def validate(self) -> None:
        if self.stage not in STAGES:
            raise InputError("stage", f"one of {STAGES}", repr(self.stage))
        for name in ("world_sequences", "world_frames", "rays", "views_per_step", "max_steps", "graph_nodes"):
            if getattr(self, name) < 1:
                raise InputError(name, "at least 1", str(getattr(self, name)))
        if self.size < 16 or self.texture_size < 16 or self.texture_size % 16:
            raise InputError("size / texture_size", "at least 16 px (texture: a multiple of 16)",
                             f"{self.size} / {self.texture_size}")  # fmt: skip
        if not 0 <= self.lr_decay_from < self.max_steps or not 0 < self.lr_final <= 1:
            raise InputError("lr_decay_from / lr_final", f"0..{self.max_steps - 1} / a fraction in (0, 1]",
                             f"{self.lr_decay_from} / {self.lr_final}")  # fmt: skip
        if not self.shell > 0:
            raise InputError("shell", "a thickness > 0 (metres)", str(self.shell))
        if self.renderer not in RENDERERS:
            raise InputError("renderer", f"one of {RENDERERS}", repr(self.renderer))
        if self.anneal_end < -1:
            raise InputError("anneal_end", "a step >= 0, or -1 for max_steps / 6", str(self.anneal_end))

    def avatar_config(self) -> AvatarConfig:
        return AvatarConfig(
            texture_size=self.texture_size, graph_nodes=self.graph_nodes,
            generator=dict(base_channels=self.base_channels, max_channels=self.max_channels, depth=4, aware_channels=8),
            fields=dict(sdf_hidden=self.sdf_hidden, sdf_layers=self.sdf_layers, sdf_features=32,
                        color_hidden=self.color_hidden, color_layers=3, num_freqs=4, shell=self.shell,
                        candidates=self.candidates),
        )  # fmt: skip


class FrameItems:
    """Every (sequence, frame) of the data: one micro-batch is one frame."""

    def __init__(self, seqs: list[MultiViewSequence]):
        self.items = [(i, t) for i, s in enumerate(seqs) for t in range(s.frames)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, k: int) -> dict:
        i, t = self.items[k]
        return {"seq": i, "frame": t}


def frame_window(avatar: TriHumanAvatar, seq: MultiViewSequence, t: int, deform: bool = True):
    """(posed template [W, V, 3], features, roots, graph regulariser, k): frames up to data frame t, the last
    (index k) being t, with enough context for the motion texture of t (t-1 and t-2 posed with their own
    history)."""
    te = t + seq.history
    lo = max(0, te - 4)
    poses, trans = seq.poses[lo : te + 1], seq.translations[lo : te + 1]
    posed, feats, reg = avatar.frames(poses, trans, deform=deform)
    return posed, feats, avatar.root_positions(poses, trans), reg, te - lo


class TriHumanTraining(TrainingMethod):
    can_preview = True

    def __init__(self, cfg: TrainConfig):
        super().__init__()
        self.cfg, self.out = cfg, Path(cfg.out).expanduser()
        self.final = self.out / "final"

    def setup(self, run: Run) -> None:
        c = self.cfg
        self.run = run
        if c.data:
            character, self.seqs = load_folder(c.data)
        else:
            character, self.seqs = world_sequences(c.world_seed, c.world_sequences, c.world_frames, c.size,
                                                   images=c.stage != "template")  # fmt: skip
        if c.stage == "template" or not c.init:  # no --init: the avatar on the skinned template
            avatar = TriHumanAvatar(character, c.avatar_config())
        if c.stage == "template":
            trainable = avatar.deformer.parameters()
        elif not c.init:
            trainable = [p for n, p in avatar.named_parameters() if not n.startswith("deformer.")]
        else:
            avatar = load_avatar(c.init)
            if avatar.joint_names != character.joint_names:
                raise InputError("init", f"an avatar of this character ({len(character.joint_names)} joints)",
                                 f"{c.init} ({len(avatar.joint_names)} joints)")  # fmt: skip
            trainable = [p for n, p in avatar.named_parameters() if not n.startswith("deformer.")]
        for p in avatar.parameters():
            p.requires_grad_(False)
        trainable = list(trainable)
        for p in trainable:
            p.requires_grad_(True)
        self.dataset = FrameItems(self.seqs)
        optimizer = torch.optim.Adam(trainable, lr=c.lr)
        self.module, self.optimizer = run.accelerator.prepare(avatar.train(), optimizer)
        self.avatar = run.accelerator.unwrap_model(self.module)
        self.param_names = [n for n, p in self.avatar.named_parameters() if p.requires_grad]
        self.params = [p for p in self.avatar.parameters() if p.requires_grad]

    def loss(self, batch: dict, generator: torch.Generator) -> torch.Tensor:
        c = self.cfg  # the rate is a function of the global step: nothing to resume
        for group in self.optimizer.param_groups:
            group["lr"] = c.lr * lr_factor(self.run.state.step + 1, c.lr_decay_from, c.max_steps, c.lr_final)
        return self.losses(int(batch["seq"][0]), int(batch["frame"][0]), generator)["loss"]

    def losses(self, i: int, t: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        c, seq, av = self.cfg, self.seqs[i], self.avatar
        dev = self.run.device
        if c.stage == "template":
            posed, _, _, reg, k = frame_window(av, seq, t)
            sil = silhouette_loss(posed[k], av.faces, seq.K.to(dev), seq.world_to_camera.to(dev),
                                  seq.masks[t].to(dev), seq.exterior[t].to(dev))  # fmt: skip
            loss = (
                sil["inside"] + sil["cover"] + c.reg_weight * reg["graph"] + c.offset_weight * reg["offsets"]
            )
            return {"loss": loss, **sil, **reg}
        with torch.no_grad():
            posed, feats, roots, _, k = frame_window(av, seq, t)
        bound = av.bind(posed, feats, roots, k)
        cams = torch.randperm(seq.K.shape[0], generator=generator)[: c.views_per_step]
        h, w = seq.masks.shape[-2:]
        iv = ray_intervals(posed[k], av.faces, bound.field.config.shell, seq.K[cams].to(dev),
                           seq.world_to_camera[cams].to(dev), h, w)  # fmt: skip
        covered = iv["covered"].reshape(-1).nonzero().squeeze(1)
        gt_mask = seq.masks[t][cams].reshape(-1).to(dev)
        pick = covered[torch.randint(0, covered.numel(), (c.rays,), generator=generator)]
        rgb_gt = seq.images[t][cams].reshape(-1, 3).to(dev)[pick]
        rays = (iv["origins"].reshape(-1, 3)[pick], iv["directions"].reshape(-1, 3)[pick])
        kw = dict(near=iv["near"].reshape(-1)[pick], far=iv["far"].reshape(-1)[pick],
                  samples=bound.field.config.samples, inv_s=av.field.variance.inv_s(), background=(0.0, 0.0, 0.0),
                  chunk=c.rays, generator=generator)  # fmt: skip
        if c.renderer == "midpoint":
            out = render_rays_midpoint(bound.shade, *rays, cos_anneal_ratio=self.cos_anneal_ratio(), **kw)
        else:
            out = render_rays(bound.sdf, bound.color, *rays, view_dependent=True, **kw)
        l1 = (out["rgb"] - rgb_gt).abs().mean()
        mask = F.binary_cross_entropy(out["opacity"].clamp(1e-4, 1 - 1e-4), gt_mask[pick].to(out["opacity"]))
        verts = posed[k][torch.randint(0, posed.shape[1], (512,), generator=generator)]
        normals = vertex_normals(posed[k], av.faces)[
            torch.randint(0, posed.shape[1], (512,), generator=generator)
        ]
        jitter = (torch.rand(512, 1, generator=generator) * 2 - 1).to(verts) * bound.field.config.shell
        grad = bound.gradient(verts + jitter * F.normalize(normals, dim=-1), create_graph=True)
        eik = (grad.norm(dim=-1) - 1).square().mean()
        loss = l1 + c.mask_weight * mask + c.eikonal_weight * eik
        return {"loss": loss, "l1": l1, "mask": mask, "eikonal": eik}

    def cos_anneal_ratio(self) -> float:
        """NeuS's r at this step: linear from 0 to 1 at anneal_end (NeuS's get_cos_anneal_ratio)."""
        c = self.cfg
        end = c.max_steps // 6 if c.anneal_end == -1 else c.anneal_end
        return 1.0 if end == 0 else min(1.0, self.run.state.step / end)

    def describe(self, state: TrainState) -> str:
        frames = len(self.dataset)
        return (f"training TriHuman stage '{self.cfg.stage}' on {len(self.seqs)} sequences ({frames} frames, "
                f"{self.seqs[0].K.shape[0]} views), steps {state.step}->{self.cfg.max_steps}")  # fmt: skip

    def preview(self, step: int) -> torch.Tensor | None:
        """Frame 0 of sequence 0 in its first view: the posed template (template stage, shaded normals) or
        the avatar's render (avatar stage), beside the ground truth."""
        seq, av = self.seqs[0], self.avatar
        K, E = seq.K[:1], seq.world_to_camera[:1]
        h, w = seq.masks.shape[-2:]
        with torch.no_grad():
            posed, feats, roots, _, k = frame_window(av, seq, 0)
            if self.cfg.stage == "template":
                raster = rasterize(posed[k].float(), av.faces, K, E, h, w)
                n = interpolate(raster, av.faces, vertex_normals(posed[k], av.faces).float())
                image = (0.5 + 0.5 * n) * raster.mask[..., None]
            else:
                image = render_frame(av.bind(posed, feats, roots, k), K, E, h, w)["image"]
        truth = (
            seq.images[0][:1] if seq.images.shape[1] else seq.masks[0][:1, ..., None].expand(-1, -1, -1, 3)
        )
        return torch.cat([image.cpu().float(), truth.float()], 2)

    def _write_final(self, folder: Path) -> None:
        save_avatar(self.avatar, folder / MODEL_FILE)

    def export(self) -> None:
        atomic_write_dir(self.final, self._write_final)

    def result(self) -> Path:
        return self.final / MODEL_FILE


def train(
    config: TrainConfig,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    preview: Callable[[int, torch.Tensor], None] | None = None,
) -> Path:
    """Train one stage; returns OUT/final/trihuman-avatar.safetensors."""
    config.validate()
    settings = LoopSettings.from_config(config)
    return fit(TriHumanTraining(config), settings, Callbacks(progress, should_stop, preview))


CLI = TrainerCli(
    TrainConfig,
    train,
    prog="python -m models.trihuman.train",
    description="Train a TriHuman avatar (Zhu et al. 2023) from multi-view video, one stage at a time.",
)
build_parser, config_from_args, main = CLI.parser, CLI.config, CLI.main
