"""The hand-motion world's evaluator: an action classifier on motion features, its embedding for a
Fréchet distance (FID-style, "FMD") and diversity.

Features per frame (`motion_features`), chosen to be what an action is made of and nothing a world clip
randomises for free: both hands' joints relative to the midpoint of the two wrists, rotated so that the
clip's mean right-to-left wrist direction is +x (removes the world's random yaw and placement), and the
6×6 distances between the wrists and fingertips of the two hands (contact structure). A small temporal
convolution network over 60-frame windows (2 s at 30 fps, the generator's training window) pools to a
128-d embedding; a clip is classified by the mean logits of its windows (stride 15 frames).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .motion import HandMotion
from .world import ACTIONS, FPS

WINDOW = 60
STRIDE = 15
KEY_JOINTS = (0, 4, 8, 12, 16, 20)  # wrist and fingertips
FEATURES = 2 * 21 * 3 + len(KEY_JOINTS) ** 2


def motion_features(joints: Tensor) -> Tensor:
    """World joints [T, 2, 21, 3] -> per-frame features [T, FEATURES] (module docstring)."""
    mid = 0.5 * (joints[:, 0, 0] + joints[:, 1, 0])  # [T, 3]
    rel = joints - mid[:, None, None]
    across = (joints[:, 1, 0] - joints[:, 0, 0]).mean(0)
    yaw = math.atan2(float(across[2]), float(across[0]))
    c, s = math.cos(yaw), math.sin(yaw)
    rot = torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], dtype=joints.dtype)  # +x <- across
    rel = rel @ rot.T
    keys = joints[:, :, list(KEY_JOINTS)]
    dist = torch.cdist(keys[:, 0], keys[:, 1])  # [T, 6, 6]
    return torch.cat([rel.flatten(1) * 10.0, dist.flatten(1) * 10.0], 1).float()  # decimetres


class ActionClassifier(nn.Module):
    def __init__(self, features: int = FEATURES, width: int = 128, num_labels: int = len(ACTIONS)):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(features, width, 5, padding=2),
            nn.GELU(),
            nn.Conv1d(width, width, 5, padding=2, stride=2),
            nn.GELU(),
            nn.Conv1d(width, width, 5, padding=2, stride=2),
            nn.GELU(),
        )
        self.head = nn.Linear(width, num_labels)

    def embed(self, x: Tensor) -> Tensor:
        """Windows [B, WINDOW, FEATURES] -> embeddings [B, width] (mean-pooled over time)."""
        return self.net(x.transpose(1, 2)).mean(-1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.embed(x))


def windows(feats: Tensor) -> Tensor:
    """Per-frame features [T, F] -> windows [N, WINDOW, F] (stride STRIDE; short clips padded by repeating
    the last frame)."""
    if feats.shape[0] < WINDOW:
        feats = torch.cat([feats, feats[-1:].expand(WINDOW - feats.shape[0], -1)])
    starts = list(range(0, feats.shape[0] - WINDOW + 1, STRIDE))
    if starts[-1] != feats.shape[0] - WINDOW:
        starts.append(feats.shape[0] - WINDOW)
    return torch.stack([feats[s : s + WINDOW] for s in starts])


def _at_world_fps(motion: HandMotion) -> Tensor:
    joints = motion.global_joints()
    if abs(motion.fps - FPS) < 1e-6 or joints.shape[0] < 2:
        return joints
    n = max(2, round((joints.shape[0] - 1) * FPS / motion.fps) + 1)
    flat = joints.flatten(1).T[None]
    return F.interpolate(flat, size=n, mode="linear", align_corners=True)[0].T.reshape(n, 2, 21, 3)


class MotionEvaluator:
    """A trained classifier: clip labels, clip embeddings, and the statistics built on them."""

    def __init__(self, model: ActionClassifier, mean: Tensor, std: Tensor):
        self.model, self.mean, self.std = model.eval(), mean, std

    @torch.no_grad()
    def _clip(self, motion: HandMotion) -> tuple[Tensor, Tensor]:
        w = (windows(motion_features(_at_world_fps(motion))) - self.mean) / self.std
        emb = self.model.embed(w)
        return self.model.head(emb).mean(0), emb.mean(0)

    def predict(self, motions: list[HandMotion]) -> list[str]:
        return [ACTIONS[int(self._clip(m)[0].argmax())] for m in motions]

    def accuracy(self, motions: list[HandMotion], labels: list[str]) -> float:
        pred = self.predict(motions)
        return sum(p == lab for p, lab in zip(pred, labels)) / max(len(labels), 1)

    def embeddings(self, motions: list[HandMotion]) -> Tensor:
        return torch.stack([self._clip(m)[1] for m in motions]).double()

    def save(self, path: str | Path) -> None:
        from safetensors.torch import save_file

        state = {f"model.{k}": v.contiguous() for k, v in self.model.state_dict().items()}
        save_file({**state, "mean": self.mean.contiguous(), "std": self.std.contiguous()}, str(path))

    @classmethod
    def load(cls, path: str | Path) -> MotionEvaluator:
        from safetensors.torch import load_file

        state = load_file(str(path))
        model = ActionClassifier()
        model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
        return cls(model, state["mean"], state["std"])


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to embeddings a [N, D] and b [M, D] (float64)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    c1, c2 = torch.cov(a.T), torch.cov(b.T)
    # trace sqrt(c1 c2) through the symmetric form sqrt(c1)^(1/2) c2 sqrt(c1)^(1/2)
    e1, v1 = torch.linalg.eigh(c1)
    s1 = v1 @ torch.diag(e1.clamp_min(0).sqrt()) @ v1.T
    tr = torch.linalg.eigvalsh(s1 @ c2 @ s1).clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + c1.trace() + c2.trace() - 2 * tr)


def diversity(emb: Tensor, pairs: int = 200, seed: int = 0) -> float:
    """Mean distance between random pairs of embeddings (the motion-generation literature's diversity)."""
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(0, emb.shape[0], (pairs,), generator=g)
    j = torch.randint(0, emb.shape[0], (pairs,), generator=g)
    keep = i != j
    return float((emb[i[keep]] - emb[j[keep]]).norm(dim=1).mean())


def train_evaluator(
    motions: list[HandMotion], steps: int = 1500, batch: int = 64, seed: int = 0, log=print
) -> MotionEvaluator:
    """Train the classifier on random 60-frame windows of labelled world clips (AdamW, cosine lr)."""
    torch.manual_seed(seed)
    feats = [motion_features(m.global_joints()) for m in motions]
    labels = torch.tensor([ACTIONS.index(m.label) for m in motions])
    allf = torch.cat(feats)
    mean, std = allf.mean(0), allf.std(0).clamp_min(1e-3)
    model = ActionClassifier()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        idx = torch.randint(0, len(feats), (batch,), generator=g)
        xs = []
        for i in idx.tolist():
            f = feats[i]
            if f.shape[0] < WINDOW:
                f = torch.cat([f, f[-1:].expand(WINDOW - f.shape[0], -1)])
            s = int(torch.randint(0, f.shape[0] - WINDOW + 1, (1,), generator=g))
            xs.append(f[s : s + WINDOW])
        x = (torch.stack(xs) - mean) / std
        x = x + 0.05 * torch.randn(x.shape, generator=g)  # robustness to generator noise
        loss = F.cross_entropy(model(x), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log and (step + 1) % 250 == 0:
            log(f"classifier step {step + 1}/{steps} loss {loss.item():.4f}")
    return MotionEvaluator(model, mean, std)
