"""Evaluators for the world: an attribute classifier, world-FID on its features, and prompt accuracy.

The classifier is a small CNN (see `AttributeClassifier`) with one head per attribute of `Scene.labels()`:
    shape       shape of the main object (the largest; `objects[0]` in a world scene)   6 classes
    color       color of the main object                                                 10 classes
    bg_color    background color                                                         10 classes
    bg_texture  background texture                                                       5 classes
    count       number of objects (1, 2, 3)                                              3 classes
Its penultimate layer (128-d: global average + max pooling, then one linear layer) is the feature space
of the world-FID: the Fréchet distance between Gaussians fitted to two sets of features, in float64.
Inputs of any size are resized to 128x128 first (`to_model_input`).

Prompt accuracy (`prompt_accuracy`): an image matches its caption when
- single-object caption ("a red star on a striped blue background"): the classified shape, color and
  background color all equal the caption's (texture and count are not required);
- caption with several objects: the classified main object's (shape, color) is one of the caption's
  groups, the background color equals the caption's and the classified count equals the caption's.
  (A generator is not told which object must be the largest, so any group may be the main object.)
`strict=True` additionally requires the background texture, and the count for single-object captions.
`attribute_accuracy` reports each of those parts on its own.

Training (`python -m models.proving_ground.classifier --train`, from the pack's root; 1 CPU thread, about
6 minutes) renders a pool of train-split scenes once (seeded, so the run reproduces), then trains on
random batches from it with random 90-degree turns and mirrors (they change no label) and mild blur and
noise, so the classifier also reads slightly degraded generated images. Besides the heads, a dense
auxiliary output is supervised from the world's object masks. It then measures per-head accuracy on
held-out scenes and world-FID reference values and writes `weights/attribute_classifier.safetensors`
(config in the metadata) and `weights/attribute_classifier.json` (config, training settings and time,
held-out accuracy per head, world-FID references).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .world import (
    COLOR_NAMES,
    SHAPES,
    SIZE,
    TEXTURES,
    Scene,
    WorldDataset,
    caption_labels,
    object_coverage,
    render,
)

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "attribute_classifier.safetensors"
HEADS: dict[str, tuple] = {
    "shape": SHAPES,
    "color": COLOR_NAMES,
    "bg_color": COLOR_NAMES,
    "bg_texture": TEXTURES,
    "count": (1, 2, 3),
}
DEFAULT_CONFIG: dict[str, Any] = {
    "channels": [32, 64, 128, 160],
    "feature_dim": 128,
    "image_size": SIZE,
    "internal_size": SIZE // 2,
    "heads": {k: list(v) for k, v in HEADS.items()},
}
EVAL_SEED = 0  # held-out scenes used for the recorded accuracy and FID reference values
EVAL_SCENES = 2000
TEST_SCENES = 200  # the first held-out scenes; the test suite recomputes its accuracy on these


# ---------------------------------------------------------------------------------------------- model


def _conv(cin: int, cout: int, k: int, stride: int) -> list[nn.Module]:
    pad = (k - 1) // 2 if k % 2 else 1
    return [nn.Conv2d(cin, cout, k, stride, pad, bias=False), nn.BatchNorm2d(cout), nn.SiLU()]


class AttributeClassifier(nn.Module):
    """CNN over [B,3,128,128] images in -1..1 -> logits per head; `features` gives the 128-d embedding.

    The image is first averaged down 2x (to `internal_size`, 64): the world's smallest details (dots,
    stripes, objects of radius 8) survive it, and it makes training four times cheaper. The trunk reaches
    stride 8 (`mid`, an 8x8 map) and stride 16 (4x4); global average and max pooling of the last map
    (max pooling keeps small objects visible) feed one linear layer, the features. A 1x1 convolution on
    the 8x8 map (`dense`) predicts, per cell, the shape of the object there (or none) and whether an
    object's center lies in it: it is trained alongside the heads from the world's masks (dense
    supervision makes shape learning several times faster) and is not used at inference.
    """

    def __init__(self, config: dict[str, Any] | None = None):
        super().__init__()
        self.config = json.loads(json.dumps(config or DEFAULT_CONFIG))
        c1, c2, c3, c4 = self.config["channels"]
        fd = self.config["feature_dim"]
        self.mid = nn.Sequential(
            *_conv(3, c1, 4, 2),  # 32
            *_conv(c1, c2, 3, 2),  # 16
            *_conv(c2, c2, 3, 1),
            *_conv(c2, c3, 3, 2),  # 8
            *_conv(c3, c3, 3, 1),
        )
        self.top = nn.Sequential(*_conv(c3, c4, 3, 2), *_conv(c4, c4, 3, 1))  # 4
        self.embed = nn.Sequential(nn.Linear(2 * c4, fd), nn.SiLU())
        self.heads = nn.ModuleDict({k: nn.Linear(fd, len(v)) for k, v in self.config["heads"].items()})
        self.dense = nn.Conv2d(c3, len(self.config["heads"]["shape"]) + 2, 1)

    def downsample(self, x: torch.Tensor) -> torch.Tensor:
        f = x.shape[-1] // self.config["internal_size"]
        return F.avg_pool2d(x, f) if f > 1 else x

    def _run(self, x64: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.mid(x64)
        h = self.top(m)
        return self.embed(torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1)), m

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(self.downsample(x))[0]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.forward_internal(self.downsample(x), dense=False)

    def forward_internal(self, x64: torch.Tensor, dense: bool = True) -> dict[str, torch.Tensor]:
        """Logits per head from an already downsampled batch; with `dense`, also the dense map logits."""
        f, m = self._run(x64)
        out = {k: head(f) for k, head in self.heads.items()}
        if dense:
            out["dense"] = self.dense(m)
        return out

    def class_names(self, head: str) -> list:
        return self.config["heads"][head]


def save_classifier(model: AttributeClassifier, path: str | Path) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(sd, str(path), metadata={"config": json.dumps(model.config)})
    return path


def metadata_config(path: str | Path, default: dict) -> dict:
    """The "config" JSON a shipped classifier carries in its safetensors metadata (`default` when absent)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("config", "null")) or default


def load_classifier(
    path: str | Path | None = None, device: str | torch.device = "cpu"
) -> AttributeClassifier:
    """The classifier in `path` (default: the shipped weights), in eval mode."""
    from safetensors.torch import load_file

    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(
            f"attribute classifier weights not found: {path} "
            "(reproduce them with `python -m models.proving_ground.classifier --train` from the pack's root)"
        )
    model = AttributeClassifier(metadata_config(path, DEFAULT_CONFIG))
    model.load_state_dict(load_file(str(path)))
    return model.to(device).eval()


# ------------------------------------------------------------------------------------------- inputs


def to_model_input(images: Any, size: int = SIZE) -> torch.Tensor:
    """Images -> float [B,3,size,size] in -1..1.

    Accepts uint8 arrays/tensors [B,H,W,3] (or one [H,W,3]) in 0..255 and float tensors/arrays
    [B,H,W,3] in 0..1 (ComfyUI IMAGE). Other sizes are resized (bilinear, antialiased).
    """
    if isinstance(images, (list, tuple)):
        images = np.stack([np.asarray(i) for i in images])
    x = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected images [batch, height, width, 3], got shape {tuple(x.shape)}")
    x = x[..., :3] if x.shape[-1] == 4 else x.expand(*x.shape[:-1], 3)
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    x = x.permute(0, 3, 1, 2)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 1) * 2.0 - 1.0


def _batches(images: Any, batch_size: int):
    n = len(images)
    for s in range(0, n, batch_size):
        yield to_model_input(images[s : s + batch_size])


@torch.no_grad()
def extract_features(images: Any, classifier: AttributeClassifier, batch_size: int = 100) -> np.ndarray:
    """float64 [N, feature_dim] penultimate-layer features."""
    classifier.eval()
    device = next(classifier.parameters()).device
    out = [classifier.features(x.to(device)).double().cpu() for x in _batches(images, batch_size)]
    return torch.cat(out).numpy()


@torch.no_grad()
def classify(images: Any, classifier: AttributeClassifier, batch_size: int = 100) -> dict[str, list]:
    """Predicted class name (or count) per head for each image."""
    classifier.eval()
    device = next(classifier.parameters()).device
    preds: dict[str, list] = {k: [] for k in classifier.heads}
    for x in _batches(images, batch_size):
        logits = classifier(x.to(device))
        for k, v in logits.items():
            names = classifier.class_names(k)
            preds[k].extend(names[i] for i in v.argmax(1).tolist())
    return preds


# ---------------------------------------------------------------------------------------- world-FID


def _as_f64(x: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float64))


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh((m + m.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def frechet_distance_from_stats(mu_a: Any, cov_a: Any, mu_b: Any, cov_b: Any) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mu_a, cov_a) and N(mu_b, cov_b), float64.

    |mu_a - mu_b|^2 + tr(cov_a) + tr(cov_b) - 2 tr((cov_a cov_b)^(1/2)), where the last trace is taken as
    the sum of square roots of the eigenvalues of the symmetric PSD matrix cov_a^(1/2) cov_b cov_a^(1/2)
    (same spectrum as cov_a cov_b), so no non-symmetric matrix square root is needed.
    """
    mu_a, mu_b, cov_a, cov_b = map(_as_f64, (mu_a, mu_b, cov_a, cov_b))
    sa = _sqrt_psd(cov_a)
    m = sa @ cov_b @ sa
    tr_sqrt = torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()
    d = (mu_a - mu_b).square().sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * tr_sqrt
    return float(d.clamp_min(0))


def gaussian_stats(feats: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance (rows are samples), float64."""
    f = _as_f64(feats)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need a [samples >= 2, dims] feature matrix, got shape {tuple(f.shape)}")
    mu = f.mean(0)
    c = f - mu
    return mu, c.T @ c / (f.shape[0] - 1)


def frechet_distance(feats_a: Any, feats_b: Any) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N, D] (float64)."""
    return frechet_distance_from_stats(*gaussian_stats(feats_a), *gaussian_stats(feats_b))


def world_fid(images_a: Any, images_b: Any, classifier: AttributeClassifier | None = None) -> float:
    """World-FID: Fréchet distance on the attribute classifier's penultimate features."""
    classifier = classifier or load_classifier()
    return frechet_distance(extract_features(images_a, classifier), extract_features(images_b, classifier))


# ---------------------------------------------------------------------------------- prompt accuracy


def _caption_of(item: Scene | str) -> str:
    if isinstance(item, Scene):
        from .world import caption

        return caption(item)
    return str(item)


def prompt_matches(pred: dict[str, Any], text: str, strict: bool = False) -> bool:
    """Whether one image's predicted attributes match a caption (rules in the module docstring)."""
    want = caption_labels(text)
    if pred["bg_color"] != want["bg_color"]:
        return False
    if strict and pred["bg_texture"] != want["bg_texture"]:
        return False
    if want["count"] == 1:
        ok = pred["shape"] == want["shape"] and pred["color"] == want["color"]
        return ok and (not strict or pred["count"] == 1)
    groups = {(color, shape) for _, color, shape in want["groups"]}
    return (pred["color"], pred["shape"]) in groups and pred["count"] == want["count"]


def _predictions(
    images: Any, items: Sequence[Scene | str], classifier: AttributeClassifier | None
) -> list[dict]:
    """One classifier pass: the predicted attributes of each image, as a dict per image."""
    classifier = classifier or load_classifier()
    if len(images) != len(items):
        raise ValueError(f"{len(images)} images but {len(items)} captions")
    preds = classify(images, classifier)
    return [{k: v[i] for k, v in preds.items()} for i in range(len(images))]


def _attribute_hits(pred: dict[str, Any], text: str) -> dict[str, bool]:
    """The parts of `prompt_matches`, each on its own (a group's color / shape for several-object captions)."""
    want = caption_labels(text)
    return {
        "bg_color": pred["bg_color"] == want["bg_color"],
        "color": pred["color"] in {c for _, c, _ in want["groups"]},
        "shape": pred["shape"] in {s for _, _, s in want["groups"]},
        "count": pred["count"] == want["count"],
    }


def prompt_accuracy(
    images: Any,
    scenes_or_captions: Sequence[Scene | str],
    classifier: AttributeClassifier | None = None,
    strict: bool = False,
    return_details: bool = False,
) -> float | tuple[float, list[bool]]:
    """Fraction of images whose classified attributes match their caption (see the module docstring)."""
    per_image = _predictions(images, scenes_or_captions, classifier)
    hits = [prompt_matches(p, _caption_of(c), strict) for p, c in zip(per_image, scenes_or_captions)]
    acc = sum(hits) / max(1, len(hits))
    return (acc, hits) if return_details else acc


def attribute_accuracy(
    images: Any, scenes_or_captions: Sequence[Scene | str], classifier: AttributeClassifier | None = None
) -> dict[str, float]:
    """Per-attribute parts of prompt accuracy (which part a generator gets wrong): the fraction of images whose
    classified background color equals the caption's, whose main object's color / shape is one of the
    caption's groups' (the group for one-object captions), and whose count equals the caption's."""
    return caption_report(images, scenes_or_captions, classifier)["attribute_accuracy"]


def caption_report(
    images: Any, scenes_or_captions: Sequence[Scene | str], classifier: AttributeClassifier | None = None
) -> dict[str, Any]:
    """Prompt accuracy and attribute accuracy from one classifier pass."""
    per_image = _predictions(images, scenes_or_captions, classifier)
    texts = [_caption_of(c) for c in scenes_or_captions]
    matches = [prompt_matches(p, t) for p, t in zip(per_image, texts)]
    parts = [_attribute_hits(p, t) for p, t in zip(per_image, texts)]
    n = max(1, len(texts))
    return {
        "prompt_accuracy": sum(matches) / n,
        "attribute_accuracy": {
            k: sum(h[k] for h in parts) / n for k in ("bg_color", "color", "shape", "count")
        },
    }


def head_accuracy(images: Any, scenes: Sequence[Scene], classifier: AttributeClassifier) -> dict[str, float]:
    """Per-head accuracy on rendered scenes, plus "all" (every head right)."""
    preds = classify(images, classifier)
    labels = [s.labels() for s in scenes]
    out = {}
    all_ok = np.ones(len(scenes), bool)
    for k in classifier.heads:
        ok = np.array([p == lab[k] for p, lab in zip(preds[k], labels)])
        out[k] = float(ok.mean())
        all_ok &= ok
    out["all"] = float(all_ok.mean())
    return out


# ---------------------------------------------------------------------------------------- training


def _label_tensor(scenes: Sequence[Scene]) -> dict[str, torch.Tensor]:
    labs = [s.labels() for s in scenes]
    return {k: torch.tensor([list(v).index(lab[k]) for lab in labs]) for k, v in HEADS.items()}


def _dihedral(tensors: Sequence[torch.Tensor], g: torch.Generator) -> list[torch.Tensor]:
    """One random rotation by a multiple of 90 degrees and optional mirror, applied to all tensors [..., H, W]."""
    k = int(torch.randint(4, (1,), generator=g))
    flip = bool(torch.rand((), generator=g) < 0.5)
    out = []
    for t in tensors:
        t = torch.rot90(t, k, (-2, -1))
        out.append(t.flip(-1) if flip else t)
    return out


def _degrade(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Per image ([B,3,64,64]): Gaussian blur (sigma up to 0.6 px, 1.2 px at 128) with p=0.5, noise
    (std up to 0.04) with p=0.5."""
    b, c = x.shape[:2]
    sigma = torch.rand(b, generator=g) * 0.6
    blur = torch.rand(b, generator=g) < 0.5
    r = torch.arange(-3, 4, dtype=x.dtype)
    ker = torch.exp(-(r[None] ** 2) / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))
    ker = ker / ker.sum(1, keepdim=True)
    ker = torch.where(blur[:, None], ker, (r == 0).to(x.dtype)[None].expand(b, -1))
    xb = x.reshape(1, b * c, *x.shape[2:])
    kh = ker.repeat_interleave(c, 0)
    xb = F.conv2d(F.pad(xb, (3, 3, 0, 0), mode="reflect"), kh[:, None, None, :], groups=b * c)
    xb = F.conv2d(F.pad(xb, (0, 0, 3, 3), mode="reflect"), kh[:, None, :, None], groups=b * c)
    x = xb.reshape_as(x)
    noise = torch.rand(b, 1, 1, 1, generator=g) * 0.04 * (torch.rand(b, 1, 1, 1, generator=g) < 0.5)
    return (x + noise * torch.randn(x.shape, generator=g)).clamp(-1, 1)


def uniform_noise_images(n: int, seed: int = 12345) -> np.ndarray:
    """uint8 [n,128,128,3] uniform noise: the "far from the world" reference for world-FID.

    Draws are prefix-consistent: the first m images are the same for any n >= m.
    """
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE, 3), dtype=np.uint8)


def evaluate(classifier: AttributeClassifier, n: int = EVAL_SCENES, seed: int = EVAL_SEED) -> dict[str, Any]:
    """Held-out per-head accuracy (all `n` scenes and the first TEST_SCENES) and world-FID references."""
    ds = WorldDataset(n, seed, "heldout")
    scenes = [ds.scene(i) for i in range(n)]
    images = np.stack([render(s) for s in scenes])
    acc = head_accuracy(images, scenes, classifier)
    acc_first = head_accuracy(images[:TEST_SCENES], scenes[:TEST_SCENES], classifier)
    prompt = prompt_accuracy(images, scenes, classifier)
    feats = extract_features(images, classifier)
    half = n // 2
    noise_feats = extract_features(uniform_noise_images(half), classifier)
    t = TEST_SCENES
    return {
        "heldout_scenes": n,
        "heldout_accuracy": acc,
        f"heldout_accuracy_first{t}": acc_first,
        "prompt_accuracy_on_world_renders": prompt,
        "world_fid": {
            f"heldout_{half}_vs_heldout_{half}": frechet_distance(feats[:half], feats[half : 2 * half]),
            f"heldout_{half}_vs_uniform_noise_{half}": frechet_distance(feats[:half], noise_feats),
            f"heldout_{t}_vs_heldout_{t}": frechet_distance(feats[:t], feats[t : 2 * t]),
            f"heldout_{t}_vs_uniform_noise_{t}": frechet_distance(feats[:t], noise_feats[:t]),
        },
    }


def render_training_pool(n: int, seed: int, model: AttributeClassifier) -> dict[str, torch.Tensor]:
    """Render train-split scenes 0..n-1 once, downsampled as the model sees them, with their targets.

    x: float16 [n,3,64,64]; dense: float16 [n,S,8,8], the share of each 16x16-pixel cell covered by each
    shape's mask (channel 0: no object); centers: float [n,8,8], 1 in the cells holding an object's
    center; plus one int64 [n] tensor of class indices per head.
    """
    data = WorldDataset(n, seed, "train")
    shapes = model.class_names("shape")
    cell = SIZE // 8
    xs, dense, centers, scenes = [], [], torch.zeros(n, 8, 8), []
    for start in range(0, n, 100):
        images, maps = [], []
        for i in range(start, min(n, start + 100)):
            scene = data.scene(i)
            scenes.append(scene)
            cov = object_coverage(scene)
            images.append(render(scene, cov))
            lab = np.zeros((SIZE, SIZE), np.int64)
            for o, mask in zip(scene.objects, cov >= 0.5):
                lab[mask] = 1 + shapes.index(o.shape)
                centers[i, int(o.y) // cell, int(o.x) // cell] = 1.0
            maps.append(lab)
        xs.append(model.downsample(to_model_input(np.stack(images))).half())
        onehot = F.one_hot(torch.from_numpy(np.stack(maps)), 1 + len(shapes)).permute(0, 3, 1, 2).float()
        dense.append(F.avg_pool2d(onehot, cell).half())
    return {"x": torch.cat(xs), "dense": torch.cat(dense), "centers": centers, **_label_tensor(scenes)}


def train_classifier(
    steps: int = 2000,
    seed: int = 0,
    out_path: str | Path | None = DEFAULT_WEIGHTS,
    pool: int = 10000,
    batch_size: int = 64,
    lr: float = 3e-3,
    dense_weight: float = 2.0,
    log_every: int = 200,
) -> tuple[AttributeClassifier, dict[str, Any]]:
    """Train on `pool` rendered train-split scenes (seeded), evaluate on held-out scenes, optionally save.

    Each step draws a random batch from the pool, turns it by a random multiple of 90 degrees (and maybe
    mirrors it), blurs / adds noise per image, and minimises the sum of the heads' cross-entropies plus
    `dense_weight` times the dense loss (soft cross-entropy of the per-cell shape shares + BCE of the
    object-center cells). AdamW, linear warm-up over 5% of the steps then cosine decay.
    Returns (classifier in eval mode, report). With `out_path`, writes the weights there and the report
    as JSON next to them (same name, .json).
    """
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    model = AttributeClassifier()
    t0 = time.time()
    data = render_training_pool(pool, seed, model)
    render_seconds = time.time() - t0
    print(f"rendered {pool} train scenes in {render_seconds:.0f}s", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, steps)))),
    )
    pos_weight = torch.tensor(10.0)
    model.train()
    running: dict[str, float] = {}
    for step in range(steps):
        idx = torch.randint(pool, (batch_size,), generator=g)
        x, dense, centers = _dihedral(
            [data["x"][idx].float(), data["dense"][idx].float(), data["centers"][idx]], g
        )
        out = model.forward_internal(_degrade(x, g))
        losses = {k: F.cross_entropy(out[k], data[k][idx]) for k in HEADS}
        d = out["dense"]
        dense_loss = -(dense * F.log_softmax(d[:, :-1], 1)).sum(1).mean()
        dense_loss = dense_loss + F.binary_cross_entropy_with_logits(d[:, -1], centers, pos_weight=pos_weight)
        loss = sum(losses.values()) + dense_weight * dense_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        for k in HEADS:
            acc = (out[k].argmax(1) == data[k][idx]).float().mean().item()
            running[k] = 0.95 * running.get(k, acc) + 0.05 * acc
        if log_every and (step + 1) % log_every == 0:
            accs = " ".join(f"{k}={v:.3f}" for k, v in running.items())
            print(
                f"step {step + 1}/{steps} loss={loss.item():.4f} {accs} ({time.time() - t0:.0f}s)", flush=True
            )
    train_seconds = time.time() - t0
    model.eval()
    t1 = time.time()
    report: dict[str, Any] = {
        "config": model.config,
        "training": {
            "steps": steps,
            "batch_size": batch_size,
            "pool_scenes": pool,
            "lr": lr,
            "dense_weight": dense_weight,
            "seed": seed,
            "train_split": "train",
            "seconds": round(train_seconds, 1),
            "render_seconds": round(render_seconds, 1),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "command": "python -m models.proving_ground.classifier --train"
            f" --steps {steps} --seed {seed} --pool {pool} --batch-size {batch_size}",
        },
        "eval_seed": EVAL_SEED,
        **evaluate(model),
    }
    report["eval_seconds"] = round(time.time() - t1, 1)
    if out_path is not None:
        out_path = save_classifier(model, out_path)
        out_path.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return model, report


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", action="store_true", help="train and write the weights + JSON report")
    p.add_argument("--eval", action="store_true", help="evaluate the weights at --out on held-out scenes")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pool", type=int, default=10000, help="train scenes rendered once and reused")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (the shipped run used 1)")
    p.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.train:
        _, report = train_classifier(args.steps, args.seed, args.out, args.pool, args.batch_size)
    elif args.eval:
        report = evaluate(load_classifier(args.out))
    else:
        p.error("nothing to do: pass --train or --eval")
    print(json.dumps({k: v for k, v in report.items() if k != "config"}, indent=2))


if __name__ == "__main__":
    main()
