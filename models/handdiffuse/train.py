"""Train the HandDiffuse denoiser (Lin et al. 2023) on the shared trainer (common/training.py).

Objective per micro-batch of two-hand windows x0 [B, T, 2, 99] (pipeline.py's standardised features):
t ~ U{0..999} on the cosine schedule, x_t = q_sample(x0, t, eps), the model predicts x0, and

    L = MSE(x0_pred, x0) / (1 - ab_t) over the entries NOT given as keyframes
        + interaction_weight * w_t * L_inter(FK(x0_pred), FK(x0))      (losses.py, static + temporal)
        + smoothness_weight * L_smooth(FK(x0_pred'), FK(x0), 1 / (1 - ab_t))  (losses.py, velocity + accel.)
        + position_weight * L_pos(FK(x0_pred'), FK(x0), 1 / (1 - ab_t))       (losses.py; 0 by default)

The 1 / (1 - ab_t) weight makes the first term the MSE of the network's own output F of the x0 skip
(denoiser.py: x0 = sqrt(ab) x_t + sqrt(1 - ab) F), the v-loss: with the plain x0 MSE, low-noise steps
weigh (1 - ab) ~ 1e-2 and were not learnt (a model at 2 000 steps passed the last steps' noise through:
generated wrists moved at 100 cm/s where the world's move at 10-30). Models without the skip
(`--no-x0-skip`) keep the plain x0 MSE. interaction_weight (λ) defaults to 1: L_inter is in metres (L1
of distance matrices, ~5e-3 for a fair prediction) beside a v-loss of ~0.05-0.1 late in training, so it
is a few to ten per cent of the loss. `--interaction-weight 0` is the ablation (the model without it).
L_smooth (λ_smooth = 3 by default, as the shipped model; 0 turns it off) compares the joints'
per-frame velocity and acceleration, in metres, of x0_pred' (x0_pred with the keyframes imputed, what
the sampler returns) with the data's, weighted per sample like the v-loss so that low-noise steps count.
w_t = 1 by default (the shipped model); `--interaction-noise-weight alpha_bar` sets w_t = ab_t and
`low_noise` w_t = [t < 200]: at high noise x0_pred averages over the beat timings the input does not yet
fix, and an unweighted interaction term there teaches claps that never close or, with the contact terms,
palms glued (measured: docs/handdiffuse.md, "The cause, measured").

Masked keyframe training (in-betweening): with probability `keyframe_prob` a sample gets keyframes:
every frame is a keyframe with probability u ~ U(0.02, 0.2) (at least one), and for each keyframe either
the whole pose is given (probability 1/2) or each of the 17 joint groups per hand (16 rotations, the
wrist position) independently with probability 1/2. The model is conditioned by IMPUTATION of the clean
values: its input x_t holds x0 on the known entries (the sampler does the same with
`clean_keyframes=True`), so clean entries among noisy ones tell it what is fixed; the loss skips them
(the sampler overwrites them anyway). Labels are dropped to "no label" with probability `label_dropout`
(classifier-free guidance).

Data: the hand-motion world (world.py, `--world-clips` clips of seed `--world-seed`) by default, or
`--data FOLDER` of `.npz` files, each one sequence with `joints` [T, 2, 21, 3] float (world joint
positions in metres, hand 0 right, 1 left, OpenPose joint order: docs/handdiffuse.md), `fps` (scalar)
and `label` (string); converted by exact IK. Sequences are resampled to `--fps` and cut into windows of
`--frames` frames; the window start of an item is drawn per (seed, epoch, index), so a resumed run sees
the same windows.

Usage (from the checkout root):

    python -m models.handdiffuse.train --out OUTDIR [--data FOLDER] [--max-steps N] [--interaction-weight 0]

Output: OUTDIR/final/handdiffuse.safetensors (EMA weights, config in the metadata) and handdiffuse.json;
OUTDIR/checkpoint-N for --resume; OUTDIR/log.csv (step, loss, lr, grad_norm).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

if (
    __name__ == "__main__"
):  # `python -m models.handdiffuse.train`: run inside the pack (scripts/papernodes_bootstrap.py)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from papernodes_bootstrap import run_in_pack

    run_in_pack(__spec__.name)

from ..common.cli import TrainerCli, option
from ..common.errors import InputError
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
from .denoiser import HandDenoiser, drop_labels
from .hand import NUM_ROT
from .losses import (
    CLEARANCE_MARGIN,
    CLEARANCE_SIDES,
    interaction_loss,
    penetration_loss,
    position_loss,
    smoothness_loss,
)
from .motion import HAND_FEATURES, HandMotion
from .pipeline import ModelConfig, features_to_joints, from_model_space, save_model
from .sampler import cosine_alphas_cumprod, q_sample
from .world import ACTIONS, make_clip

MODEL_FILE = "handdiffuse.safetensors"
INTERACTION_NOISE_WEIGHTS = ("none", "alpha_bar", "low_noise")  # TrainConfig.interaction_noise_weight
LOW_NOISE_T = 200  # "low_noise": interaction terms only below this t (cosine ᾱ_t ≥ 0.9)
POSITION_FRAMES = ("world", "right_wrist")  # TrainConfig.position_frame
STD_FLOOR = 0.05  # standardisation: smallest std (an entry that barely varies is not blown up)
GROUPS = NUM_ROT + 1  # 16 rotations + the wrist position per hand
GROUP_OF_FEATURE = torch.tensor([i // 6 for i in range(NUM_ROT * 6)] + [NUM_ROT] * 3)


@dataclass
class TrainConfig:
    """Options of HandDiffuse training (one command-line flag each); module docstring for the objective."""

    out: str = option(help="output folder (checkpoints, log.csv, final/)")
    data: str | None = option(
        None, "folder of .npz sequences (joints [T,2,21,3], fps, label); default: the world"
    )
    world_clips: int = option(700, "clips of the hand-motion world when no --data is given", group="data")
    world_seed: int = option(0, "seed of the hand-motion world", group="data")
    frames: int = option(60, "window length in frames", group="data")
    fps: float = option(30.0, "frame rate the model works at (sequences are resampled to it)", group="data")
    width: int = option(256, "transformer width", group="model")
    heads: int = option(4, "attention heads", group="model")
    single_layers: int = option(4, "Single Hand Denoiser layers", group="model")
    interact_layers: int = option(2, "Interacting Hands blocks", group="model")
    max_frames: int = option(512, "longest sequence the model can generate (frames)", group="model")
    trans_scale: float = option(0.1, "metres per feature unit of the wrist positions", group="model")
    interaction_weight: float = option(1.0, "λ of the interaction loss (0 = ablation without it)")
    penetration_weight: float = option(
        0.0, "weight of the penetration term inside the interaction loss (losses.penetration_loss); 0 = off"
    )
    clearance_weight: float = option(
        0.0,
        "weight of the two-sided contact clearance term inside the interaction loss "
        "(losses.clearance_loss); 0 = off",
    )
    clearance_sides: str = option(
        "both",
        "which side of the data's clearance the clearance term charges: both, or only outside (hands that "
        "stop short; the penetration term takes the other side)",
        choices=CLEARANCE_SIDES,
    )
    clearance_offset: float = option(
        0.0,
        "metres the clearance term aims contact pairs further apart than the data (a skin; 0 = the data's "
        "own clearance; losses.clearance_loss)",
    )
    interaction_noise_weight: str = option(
        "none",
        "per-sample weight of the interaction loss by noise level: none, alpha_bar (ᾱ_t, the clean "
        "signal's share of the input: the term fades where the beat's timing is not yet in the input) or "
        "low_noise (1 for t < 200, else 0); docs/handdiffuse.md",
        choices=INTERACTION_NOISE_WEIGHTS,
    )
    penetration_noise_weight: str = option(
        "same",
        "per-sample weight of the penetration term by noise level: same (as the interaction loss) or one of "
        "the interaction loss's choices, so overlap can be charged at noise levels where the contact terms "
        "are off",
        choices=("same", *INTERACTION_NOISE_WEIGHTS),
    )
    smoothness_weight: float = option(
        3.0, "λ of the smoothness loss (joint velocity + acceleration vs the data's, losses.py); 0 = off"
    )
    position_weight: float = option(
        0.0,
        "λ of the joint-position loss (MDM's L_pos: squared world-position error of every joint, "
        "losses.position_loss); 0 = off",
    )
    position_frame: str = option(
        "world",
        "frame of the joint-position loss: world (MDM's) or right_wrist (both hands seen from the right "
        "wrist: how the hands relate and the fingers count, the path through the room does not)",
        choices=POSITION_FRAMES,
    )
    relative_wrist_std_scale: float = option(
        1.0,
        "scale of the standardising std of the left wrist's position relative to the right wrist: below 1 the "
        "diffusion noise on it is that much smaller in metres and the feature loss charges it 1/scale^2 more "
        "(docs/handdiffuse.md, 'Where the overlap comes from'); 1 = plain standardisation",
    )
    keyframe_prob: float = option(0.5, "probability that a sample is trained with random keyframes")
    label_dropout: float = option(0.1, "probability of dropping the label (classifier-free guidance)")
    lr: float = option(2e-4, "AdamW learning rate")
    lr_decay_from: int = option(
        0, "step from which the rate falls linearly to lr * lr_final at max_steps; 0 = constant"
    )
    lr_final: float = option(0.1, "final rate as a fraction of --lr when --lr-decay-from is set")
    weight_decay: float = option(0.0, "AdamW weight decay")
    batch_size: int = option(32, "per-process micro-batch size")
    grad_accum: int = option(1, "micro-batches per optimizer step")
    max_steps: int = option(20000, "optimizer steps")
    ema_decay: float = option(0.999, "EMA decay of the exported weights; 0 disables")
    max_grad_norm: float = option(1.0, "gradient clipping; 0 disables")
    seed: int = option(0, "seed of initial weights, data order and every random draw")
    save_every: int = option(1000, "checkpoint + export every N steps; 0 = at the end only")
    keep_checkpoints: int = option(2, "newest N checkpoint-N folders kept; 0 = all")
    resume: str | None = option(
        None, "checkpoint-N folder, 'latest' (newest in --out) or 'auto' (latest if any)"
    )
    cpu: bool = option(False, "train on the CPU even where CUDA is available")
    x0_skip: bool = option(
        True, "x0 = sqrt(ab) x_t + sqrt(1-ab) F (denoiser.py); --no-x0-skip: plain x0 output"
    )
    standardize: bool = option(True, "standardise features by the data's mean / std (pipeline.py)")

    def validate(self) -> None:
        for name in (
            "world_clips",
            "frames",
            "width",
            "heads",
            "single_layers",
            "batch_size",
            "grad_accum",
            "max_steps",
        ):
            if getattr(self, name) < 1:
                raise InputError(name, "at least 1", str(getattr(self, name)))
        if self.fps <= 0:
            raise InputError("fps", "a frame rate > 0", str(self.fps))
        if self.frames > self.max_frames:
            raise InputError("frames", f"at most max_frames ({self.max_frames})", str(self.frames))
        for name in ("keyframe_prob", "label_dropout"):
            if not 0 <= getattr(self, name) <= 1:
                raise InputError(name, "a probability in [0, 1]", str(getattr(self, name)))
        if not 0 <= self.lr_decay_from < self.max_steps:
            raise InputError(
                "lr_decay_from", f"0 or a step below max_steps ({self.max_steps})", str(self.lr_decay_from)
            )
        if not 0 < self.lr_final <= 1:
            raise InputError("lr_final", "a fraction in (0, 1]", str(self.lr_final))
        for name in (
            "interaction_weight",
            "penetration_weight",
            "clearance_weight",
            "smoothness_weight",
            "position_weight",
        ):
            if getattr(self, name) < 0:
                raise InputError(name, "0 or more", str(getattr(self, name)))
        if self.relative_wrist_std_scale != 1 and not self.standardize:
            raise InputError("relative_wrist_std_scale", "1 when --no-standardize is given", "a scale")
        if not 0 < self.relative_wrist_std_scale <= 1:
            raise InputError(
                "relative_wrist_std_scale", "a scale in (0, 1]", str(self.relative_wrist_std_scale)
            )
        if not 0 <= self.clearance_offset < CLEARANCE_MARGIN:
            raise InputError(
                "clearance_offset", f"metres in [0, {CLEARANCE_MARGIN})", str(self.clearance_offset)
            )
        if not 0 <= self.ema_decay < 1:
            raise InputError("ema_decay", "a value in [0, 1)", str(self.ema_decay))


# ----------------------------------------------------------------------------------------------------
# Data


def resample(x: torch.Tensor, fps: float, target_fps: float) -> torch.Tensor:
    """Features [T, 2, F] at `fps` -> at `target_fps` (linear in time; rotations re-orthonormalised later)."""
    if abs(fps - target_fps) < 1e-9 or x.shape[0] < 2:
        return x
    n = max(1, round((x.shape[0] - 1) * target_fps / fps) + 1)
    return F.interpolate(x.permute(1, 2, 0), size=n, mode="linear", align_corners=True).permute(2, 0, 1)


def load_npz_sequences(folder: str | Path) -> list[tuple[HandMotion, str]]:
    """The documented npz layout (module docstring) -> motions with their labels."""
    import numpy as np

    folder = Path(folder).expanduser()
    files = sorted(folder.glob("*.npz")) if folder.is_dir() else []
    if not files:
        raise InputError(
            "data", "a folder of .npz sequences (joints [T,2,21,3], fps, label)", f"none in {folder}"
        )
    out = []
    for path in files:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("joints", "fps", "label") if k not in z.files]
            if missing:
                raise InputError("data", f"{path.name} with arrays joints, fps, label", f"missing {missing}")
            joints = torch.from_numpy(np.asarray(z["joints"], dtype=np.float64))
            fps, label = float(z["fps"]), str(z["label"])
        try:
            motion = HandMotion.from_global(joints, fps, label=label)
        except InputError as exc:
            raise InputError("data", f"{path.name}: joints [T, 2, 21, 3]", str(exc)) from None
        out.append((motion, label))
    return out


class WindowDataset:
    """Fixed-length windows of the sequences (shorter ones padded by repeating the last frame); the start
    of item i is drawn from (seed, epoch, i)."""

    def __init__(self, feats: list[torch.Tensor], labels: list[int], frames: int, seed: int):
        self.feats, self.labels, self.frames, self.seed, self.epoch = feats, labels, frames, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.feats)

    def __getitem__(self, i: int) -> dict:
        x = self.feats[i]
        if x.shape[0] < self.frames:
            x = torch.cat([x, x[-1:].expand(self.frames - x.shape[0], *x.shape[1:])])
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 10_007 + i)
        start = int(torch.randint(0, x.shape[0] - self.frames + 1, (1,), generator=g))
        return {"x": x[start : start + self.frames].float(), "label": torch.tensor(self.labels[i])}


def in_right_wrist_frame(x: torch.Tensor) -> torch.Tensor:
    """Scaled local features [..., 2, 99] with the right wrist at the origin and unrotated: their forward
    kinematics gives both hands in the right wrist's frame (the left wrist is stored relative to it)."""
    out = x.clone()
    out[..., 0, :6] = x.new_tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])  # identity in 6D
    out[..., 0, NUM_ROT * 6 :] = 0.0
    return out


def keyframe_mask(shape: tuple[int, ...], prob: float, generator: torch.Generator) -> torch.Tensor:
    """Random known entries [B, T, 2, 99] (module docstring: frames, then whole poses or joint groups)."""
    b, t = shape[0], shape[1]
    use = torch.rand(b, generator=generator) < prob
    rate = 0.02 + 0.18 * torch.rand(b, generator=generator)
    frames = torch.rand(b, t, generator=generator) < rate[:, None]
    frames[torch.arange(b), torch.randint(0, t, (b,), generator=generator)] = True
    whole = torch.rand(b, t, generator=generator) < 0.5
    groups = torch.rand(b, t, 2, GROUPS, generator=generator) < 0.5
    groups = groups | whole[..., None, None]
    return groups[..., GROUP_OF_FEATURE] & frames[..., None, None] & use[:, None, None, None]


# ----------------------------------------------------------------------------------------------------
# Training


class HandDiffuseTraining(TrainingMethod):
    def __init__(self, cfg: TrainConfig):
        super().__init__()
        self.cfg, self.out = cfg, Path(cfg.out).expanduser()
        self.final = self.out / "final"
        self.batch_size = cfg.batch_size
        self.alphas_cumprod = cosine_alphas_cumprod()

    def model_config(self) -> ModelConfig:
        c = self.cfg
        den = dict(features=HAND_FEATURES, width=c.width, heads=c.heads, single_layers=c.single_layers,
                   interact_layers=c.interact_layers, num_labels=len(self.labels), max_frames=c.max_frames,
                   x0_skip=c.x0_skip)  # fmt: skip
        return ModelConfig(
            denoiser=den, trans_scale=c.trans_scale, fps=c.fps, labels=list(self.labels), window=c.frames,
            feature_mean=self.stats[0], feature_std=self.stats[1],
        )  # fmt: skip

    def _sequences(self) -> list[tuple[HandMotion, str]]:
        c = self.cfg
        if c.data:
            return load_npz_sequences(c.data)
        return [(m, m.label) for m in (make_clip(c.world_seed, i) for i in range(c.world_clips))]

    def setup(self, run: Run) -> None:
        c = self.cfg
        self.run = run
        seqs = self._sequences()
        self.labels = list(ACTIONS) if not c.data else sorted({lab for _, lab in seqs})
        feats = []
        for motion, _ in seqs:
            x = motion.to_features().double()
            x[..., NUM_ROT * 6 :] = x[..., NUM_ROT * 6 :] / c.trans_scale
            feats.append(resample(x, motion.fps, c.fps))
        self.stats = (None, None)
        if c.standardize:  # per hand and feature over every frame; floor so near-constant entries stay O(1)
            allf = torch.cat(feats)
            mean, std = allf.mean(0), allf.std(0).clamp_min(STD_FLOOR)
            std[1, NUM_ROT * 6 :] = std[1, NUM_ROT * 6 :] * c.relative_wrist_std_scale
            self.stats = (mean.float().tolist(), std.float().tolist())
            feats = [(f - mean) / std for f in feats]
        self.dataset = WindowDataset(feats, [self.labels.index(lab) for _, lab in seqs], c.frames, c.seed)
        self.config = self.model_config()
        model = HandDenoiser(**self.config.denoiser).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        self.module, self.optimizer = run.accelerator.prepare(model, optimizer)
        self.model = run.accelerator.unwrap_model(self.module)
        self.param_names, self.params = map(list, zip(*self.model.named_parameters(), strict=True))

    def loss(self, batch: dict, generator: torch.Generator) -> torch.Tensor:
        """Loss of one micro-batch; every random draw comes from `generator` (resume is exact)."""
        c = self.cfg  # the rate is a function of the global step, so no scheduler state has to be resumed
        rate = c.lr * lr_factor(self.run.state.step + 1, c.lr_decay_from, c.max_steps, c.lr_final)
        for group in self.optimizer.param_groups:
            group["lr"] = rate
        return self.losses(batch, generator)["loss"]

    def losses(self, batch: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
        c, dev = self.cfg, self.run.device
        x0 = batch["x"].to(dev)
        b = x0.shape[0]
        t = torch.randint(0, len(self.alphas_cumprod), (b,), generator=generator)
        noise = torch.randn(x0.shape, generator=generator).to(dev)
        label = drop_labels(batch["label"], c.label_dropout, self.model.null_label, generator).to(dev)
        known = keyframe_mask(tuple(x0.shape), c.keyframe_prob, generator).to(dev)
        xt = q_sample(x0, t.to(dev), noise, self.alphas_cumprod)
        xt = torch.where(known, x0, xt)  # imputation of the clean keyframes
        pred = self.module(xt, t.to(dev), label)
        free = (~known).to(pred.dtype)
        weight = torch.ones(b, dtype=pred.dtype, device=dev)
        if self.model.x0_skip:  # MSE on the network's own output F (v-loss): x0 error / (1 - ab)
            weight = 1 / (1 - self.alphas_cumprod.to(dev)[t]).clamp_min(1e-4).to(pred.dtype)
        err = (pred - x0).square() * weight.reshape(-1, 1, 1, 1)
        mse = (err * free).sum() / free.sum().clamp_min(1.0)
        out = {"mse": mse, "loss": mse}
        gt_feats = from_model_space(x0, self.config)
        returned_feats = from_model_space(torch.where(known, x0, pred), self.config)  # keyframes imputed
        if c.smoothness_weight > 0 or c.interaction_weight > 0 or c.position_weight > 0:  # FK of the data
            gt_joints = features_to_joints(gt_feats, 1.0)
        if c.smoothness_weight > 0 or c.position_weight > 0:  # on what the sampler returns
            returned = features_to_joints(returned_feats, 1.0)
        if c.smoothness_weight > 0:
            smooth = smoothness_loss(returned, gt_joints, weight)
            out["smoothness"] = smooth["total"]
            out["loss"] = out["loss"] + c.smoothness_weight * smooth["total"]
        if c.position_weight > 0:
            if c.position_frame == "right_wrist":  # the hands seen from the right wrist: no room path
                returned = features_to_joints(in_right_wrist_frame(returned_feats), 1.0)
                gt_joints_pos = features_to_joints(in_right_wrist_frame(gt_feats), 1.0)
            else:
                gt_joints_pos = gt_joints
            out["position"] = position_loss(returned, gt_joints_pos, weight)
            out["loss"] = out["loss"] + c.position_weight * out["position"]
        if c.interaction_weight > 0:
            pred_joints = features_to_joints(from_model_space(pred, self.config), 1.0)
            own_weighting = c.penetration_noise_weight != "same"
            inter = interaction_loss(
                pred_joints,
                gt_joints,
                penetration_weight=0.0 if own_weighting else c.penetration_weight,
                clearance_weight=c.clearance_weight,
                clearance_sides=c.clearance_sides,
                clearance_offset=c.clearance_offset,
                sample_weight=self._noise_weight(t, c.interaction_noise_weight),
            )
            if own_weighting and c.penetration_weight > 0:
                pen = penetration_loss(
                    pred_joints, gt_joints, self._noise_weight(t, c.penetration_noise_weight)
                )
                inter["total"] = inter["total"] + c.penetration_weight * pen
            out["interaction"] = inter["total"]
            out["loss"] = out["loss"] + c.interaction_weight * inter["total"]
        return out

    def _noise_weight(self, t: torch.Tensor, mode: str) -> torch.Tensor | None:
        """Per-sample weight at timesteps t by `mode` of INTERACTION_NOISE_WEIGHTS (None: every sample counts
        the same)."""
        if mode == "alpha_bar":
            return self.alphas_cumprod[t].to(self.run.device)
        if mode == "low_noise":
            return (t < LOW_NOISE_T).to(self.run.device, self.alphas_cumprod.dtype)
        return None

    def describe(self, state: TrainState) -> str:
        c = self.cfg
        return (f"training HandDiffuse on {len(self.dataset)} sequences ({'world' if not c.data else c.data}), "
                f"λ_inter {c.interaction_weight}, λ_smooth {c.smoothness_weight}, "
                f"steps {state.step}->{c.max_steps}")  # fmt: skip

    def _write_final(self, folder: Path) -> None:
        save_model(self.model, self.config, folder / MODEL_FILE)

    def export(self) -> None:
        """OUTDIR/final/handdiffuse.safetensors (+ .json) with the EMA weights."""
        ema = self.run.ema
        with ema.applied(self.params) if ema is not None else nullcontext():
            atomic_write_dir(self.final, self._write_final)

    def result(self) -> Path:
        return self.final / MODEL_FILE


def train(
    config: TrainConfig,
    progress: Callable[[int, int, dict[str, float]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path:
    """Train; returns OUTDIR/final/handdiffuse.safetensors."""
    config.validate()
    settings = LoopSettings.from_config(config)
    return fit(HandDiffuseTraining(config), settings, Callbacks(progress, should_stop))


CLI = TrainerCli(
    TrainConfig,
    train,
    prog="python -m models.handdiffuse.train",
    description="Train the HandDiffuse two-hand motion denoiser (Lin et al. 2023).",
)
build_parser, config_from_args, main = CLI.parser, CLI.config, CLI.main
