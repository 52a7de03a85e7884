"""Evaluators of the dance world (DreaMoving's proving ground): pose, clothes, flicker.

`DanceEvaluator` is one small CNN with two jobs, trained on dance-world frames (any size in, read at
64x64):
- keypoints: 18 heatmaps at 16x16 turned into coordinates by soft-argmax (integral regression, Sun et al.
  2018), OpenPose COCO-18 order, normalised to 0..1 of the frame; trained with L1 on visible keypoints;
- clothes: shirt colour, shirt pattern, trouser colour, trouser pattern (one softmax head each).
Training frames are degraded (blur, noise) like the image world's classifier, so it also reads slightly
imperfect generated frames.

Measures
- `pck(pred, target, visible, alpha)`: PCK@alpha, the fraction of visible keypoints within alpha x the
  person's size (the larger side of the target keypoints' bounding box) of the target (the usual PCK
  normalisation by body size; the issue's PCK@0.1).
- `clothes_match`: shirt and trouser colour both as the reference (the Content Guider's identity target).
- `background_flicker(frames, person_masks)`: mean absolute change (0..255) between consecutive frames
  over pixels that are background in both (masks from the control's depth maps, dilated by 2 px): the
  motion of the figure is excluded, what remains is flicker. Lower is steadier.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from .classifier import _degrade, to_model_input
from .dance_world import CLOTH_PATTERNS, make_clip
from .world import COLOR_NAMES

INPUT = 64
HEADS = {
    "shirt": COLOR_NAMES,
    "shirt_pattern": CLOTH_PATTERNS,
    "trousers": COLOR_NAMES,
    "trousers_pattern": CLOTH_PATTERNS,
}
KEYPOINTS = 18
FORMAT = "papernodes.proving_ground.dance_evaluator"


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU(),
        nn.Conv2d(cout, cout, 3, 1, 1), nn.GroupNorm(8, cout), nn.SiLU(),
    )  # fmt: skip


class DanceEvaluator(nn.Module):
    """64 px -> (keypoints [B, 18, 2] in 0..1, logits per clothes head)."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.width = width
        self.stem = _block(3, width, 1)  # 64
        self.down1 = _block(width, 2 * width, 2)  # 32
        self.down2 = _block(2 * width, 3 * width, 2)  # 16
        self.down3 = _block(3 * width, 4 * width, 2)  # 8
        self.lateral = nn.Conv2d(4 * width, 3 * width, 1)
        self.heatmap = nn.Sequential(_block(3 * width, 3 * width, 1), nn.Conv2d(3 * width, KEYPOINTS, 1))
        self.heads = nn.ModuleDict({k: nn.Linear(8 * width, len(v)) for k, v in HEADS.items()})
        grid = (torch.arange(16, dtype=torch.float32) + 0.5) / 16
        self.register_buffer("grid", grid, persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        f16 = self.down2(self.down1(self.stem(x)))
        f8 = self.down3(f16)
        fused = f16 + F.interpolate(self.lateral(f8), scale_factor=2, mode="nearest")
        logits = self.heatmap(fused).flatten(2)  # [B, 18, 256]
        prob = logits.softmax(-1).view(-1, KEYPOINTS, 16, 16)
        xs = (prob.sum(2) * self.grid).sum(-1)
        ys = (prob.sum(3) * self.grid).sum(-1)
        pooled = torch.cat([f8.mean((2, 3)), f8.amax((2, 3))], 1)
        return torch.stack([xs, ys], -1), {k: h(pooled) for k, h in self.heads.items()}


def save_evaluator(model: DanceEvaluator, path: str | Path, info: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "width": str(model.width), "info": json.dumps(info or {})}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)
    return path


def load_evaluator(path: str | Path) -> DanceEvaluator:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is not a dance-world evaluator (format {meta.get('format')!r})")
    model = DanceEvaluator(int(meta["width"]))
    model.load_state_dict(load_file(str(path)))
    return model.eval().requires_grad_(False)


# ------------------------------------------------------------------------------------------------ data


def training_pool(clips: int, frames: int, seed: int, size: int = INPUT, split: str = "train") -> dict:
    """Frames uint8 [N, size, size, 3], keypoints [N, 18, 2] in 0..1, visibility [N, 18], labels."""
    images, kps, vis, labels = [], [], [], {k: [] for k in HEADS}
    for i in range(clips):
        clip = make_clip(seed, split, i, num_frames=frames, size=size)
        images.append(clip.frames)
        kps.append(clip.keypoints[..., :2] / size)
        vis.append(clip.keypoints[..., 2] > 0)
        p = clip.person
        for k, value in (("shirt", p.shirt), ("shirt_pattern", p.shirt_pattern), ("trousers", p.trousers),
                         ("trousers_pattern", p.trousers_pattern)):  # fmt: skip
            labels[k] += [HEADS[k].index(value)] * frames
    return {
        "images": np.concatenate(images),
        "keypoints": torch.from_numpy(np.concatenate(kps)).float(),
        "visible": torch.from_numpy(np.concatenate(vis)),
        "labels": {k: torch.tensor(v) for k, v in labels.items()},
    }


def train_evaluator(
    clips: int = 1200, frames: int = 4, steps: int = 1500, batch_size: int = 32, seed: int = 7, progress=None
) -> tuple[DanceEvaluator, dict]:
    """Train on `clips` x `frames` train-split frames (world seed `seed`); returns (model, settings)."""
    torch.manual_seed(seed)
    pool = training_pool(clips, frames, seed)
    x_all = to_model_input(pool["images"], INPUT)
    model = DanceEvaluator().train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for step in range(steps):
        idx = torch.randint(0, len(x_all), (batch_size,), generator=g)
        x = _degrade(x_all[idx], g)
        kp, logits = model(x)
        vis = pool["visible"][idx]
        kp_loss = ((kp - pool["keypoints"][idx]).abs().sum(-1) * vis).sum() / vis.sum().clamp_min(1)
        cls_loss = sum(F.cross_entropy(v, pool["labels"][k][idx]) for k, v in logits.items())
        loss = 10 * kp_loss + cls_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress:
            progress("dance evaluator", step + 1, steps, float(loss.detach()), time.time() - t0)
    settings = {"clips": clips, "frames": frames, "steps": steps, "batch_size": batch_size, "seed": seed,
                "seconds": round(time.time() - t0, 1)}  # fmt: skip
    return model.eval().requires_grad_(False), settings


# --------------------------------------------------------------------------------------------- measures


@torch.no_grad()
def read_frames(model: DanceEvaluator, images: Any, batch_size: int = 64) -> dict[str, Any]:
    """Keypoints [N, 18, 2] in 0..1 of the frame and the predicted clothes (class names) per frame."""
    kps, preds = [], {k: [] for k in HEADS}
    n = len(images)
    for s in range(0, n, batch_size):
        kp, logits = model(to_model_input(images[s : s + batch_size], INPUT))
        kps.append(kp)
        for k, v in logits.items():
            preds[k] += [HEADS[k][i] for i in v.argmax(1).tolist()]
    return {"keypoints": torch.cat(kps).numpy(), **preds}


def pck(pred: np.ndarray, target: np.ndarray, visible: np.ndarray, alpha: float = 0.1) -> float:
    """PCK@alpha over frames: pred/target [N, 18, 2] (same units), visible bool [N, 18]."""
    pred, target, visible = np.asarray(pred, float), np.asarray(target, float), np.asarray(visible, bool)
    hits = total = 0
    for p, t, v in zip(pred, target, visible):
        if not v.any():
            continue
        extent = (t[v].max(0) - t[v].min(0)).max()
        d = np.linalg.norm(p[v] - t[v], axis=-1)
        hits += int((d <= alpha * extent).sum())
        total += int(v.sum())
    return hits / max(total, 1)


def clothes_match(pred: dict[str, Sequence[str]], shirt: str, trousers: str) -> float:
    """Fraction of frames whose shirt AND trouser colours are the reference's."""
    pairs = list(zip(pred["shirt"], pred["trousers"]))
    return sum(s == shirt and t == trousers for s, t in pairs) / max(len(pairs), 1)


def background_flicker(frames: np.ndarray, person: np.ndarray, dilate: int = 2) -> float:
    """Mean |frame_t - frame_{t-1}| (0..255) over pixels that are background in both frames.

    frames uint8/float [F, H, W, 3] (float in 0..1 is scaled to 0..255); person bool [F, H, W] (True where
    the figure is, e.g. the control depth > 0), resized to the frames' size if needed and dilated."""
    x = torch.as_tensor(np.asarray(frames)).float()
    if not np.issubdtype(np.asarray(frames).dtype, np.integer):
        x = x * 255.0
    m = torch.as_tensor(np.asarray(person)).float()[:, None]
    if m.shape[-2:] != x.shape[1:3]:
        m = F.interpolate(m, size=tuple(x.shape[1:3]), mode="nearest")
    if dilate:
        m = F.max_pool2d(m, 2 * dilate + 1, stride=1, padding=dilate)
    background = (m[1:] == 0) & (m[:-1] == 0)  # [F-1, 1, H, W]
    diff = (x[1:] - x[:-1]).abs().mean(-1)[:, None]
    return float(diff[background].mean()) if bool(background.any()) else 0.0


def pose_jitter(pred: np.ndarray, target: np.ndarray, visible: np.ndarray) -> float:
    """The figure's flicker: mean |a_pred - a_target| over joints visible in three consecutive frames, where
    a = k[t+1] - 2 k[t] + k[t-1] is a keypoint's acceleration (pred/target [F, 18, 2], same units).

    The control's own motion (its acceleration) is removed, so a generated dancer that moves exactly as
    the control - or is off by any fixed offset or drift - scores 0; a figure that jumps from frame to
    frame scores its jumps' acceleration."""
    pred, target, visible = np.asarray(pred, float), np.asarray(target, float), np.asarray(visible, bool)
    if len(pred) < 3:
        raise ValueError(f"pose_jitter needs >= 3 frames, got {len(pred)}")
    accel = lambda k: k[2:] - 2 * k[1:-1] + k[:-2]  # noqa: E731
    seen = visible[2:] & visible[1:-1] & visible[:-2]
    err = np.linalg.norm(accel(pred) - accel(target), axis=-1)
    return float(err[seen].mean()) if seen.any() else 0.0
