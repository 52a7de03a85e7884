"""The HandDiffuse generator as a plain object: denoiser + feature scaling + labels + sampler, and its file.

Features: the local representation (motion.HAND_FEATURES per hand and frame) with the wrist positions
divided by `trans_scale` (0.1 m), so that rotations (6D entries in [-1, 1]) and positions (world wrist
offsets of ~0.1-0.4 m) both have roughly unit spread under the unit-variance diffusion noise; without it
the x0 MSE would barely see the wrists.

File: one `.safetensors` whose metadata holds the JSON config (denoiser arguments, trans_scale, fps,
labels), so a single file in ComfyUI's models/handdiffuse folder is a complete model; the trainer also
writes the same config beside it as `<name>.json` for people reading the export.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from ..common.errors import InputError, WeightsFormatError
from .control import Trajectory, guide_x0, separate_x0, windowed
from .denoiser import HandDenoiser, guided_x0
from .hand import NUM_ROT, OPEN_HAND, SIDES, forward_kinematics
from .motion import HAND_FEATURES, HandMotion, relative_to_world
from .rotations import sixd_to_matrix
from .sampler import cosine_alphas_cumprod, ddim_sample
from .world import ACTIONS, FPS

TRANS = slice(NUM_ROT * 6, HAND_FEATURES)  # the wrist position inside a hand's feature vector
SEPARATION_ITERS = 20  # at most; separate_x0 stops as soon as no pair overlaps
FINAL_GUIDANCE = 5  # the last step's x̂0 is the result: guide it 5x longer (control.py)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a HandDiffusion from its weights."""

    denoiser: dict = field(default_factory=dict)  # HandDenoiser constructor arguments
    trans_scale: float = 0.1  # metres per feature unit of the wrist positions
    fps: float = FPS  # the frame rate the model was trained at
    labels: list[str] = field(default_factory=lambda: list(ACTIONS))
    window: int | None = None  # frames the denoiser was trained on; longer clips are sampled in windows
    feature_mean: list | None = None  # [2][99] of the trans-scaled training features (None: 0)
    feature_std: list | None = None  # [2][99] (None: 1); model space z = (scaled - mean) / std


def _stats(config: ModelConfig, like: Tensor) -> tuple[Tensor, Tensor]:
    mean = torch.zeros(2, HAND_FEATURES) if config.feature_mean is None else torch.tensor(config.feature_mean)
    std = torch.ones(2, HAND_FEATURES) if config.feature_std is None else torch.tensor(config.feature_std)
    return mean.to(like), std.to(like)


def to_model_space(x: Tensor, config: ModelConfig) -> Tensor:
    """Local features [..., 2, 99] (metres) -> model space: wrists / trans_scale, then (x - mean) / std."""
    x = x.clone()
    x[..., TRANS] = x[..., TRANS] / config.trans_scale
    mean, std = _stats(config, x)
    return (x - mean) / std


def from_model_space(z: Tensor, config: ModelConfig) -> Tensor:
    mean, std = _stats(config, z)
    x = z * std + mean
    return torch.cat([x[..., : TRANS.start], x[..., TRANS] * config.trans_scale], -1)


def features_to_joints(x: Tensor, trans_scale: float) -> Tensor:
    """Scaled features [..., T, 2, 99] -> world joints [..., T, 2, 21, 3] (batched HandMotion.global_joints,
    differentiable: the interaction loss runs on it)."""
    rot = sixd_to_matrix(x[..., : NUM_ROT * 6].unflatten(-1, (NUM_ROT, 6)))
    wr, wp = relative_to_world(rot[..., 0, :, :], x[..., TRANS] * trans_scale)
    rot = torch.cat([wr[..., None, :, :], rot[..., 1:, :, :]], -3)
    sk = OPEN_HAND.to(x.dtype, x.device)
    return torch.stack(
        [forward_kinematics(rot[..., h, :, :, :], wp[..., h, :], s, sk) for h, s in enumerate(SIDES)], -3
    )


@dataclass
class Keyframes:
    """HAND_KEYFRAMES: known feature entries (unscaled local features) at some frames of a clip of
    `num_frames` frames; `known` marks which of the 99 numbers per hand are given (e.g. finger rotations
    only, leaving the wrists free)."""

    frames: list[int]
    features: Tensor  # [K, 2, 99]
    known: Tensor  # [K, 2, 99] bool
    num_frames: int


class HandDiffusion:
    """Generate two-hand motion from a label, optionally through keyframes (imputation, clean values)."""

    def __init__(self, denoiser: HandDenoiser, config: ModelConfig):
        self.denoiser, self.config = denoiser.eval(), config
        self.alphas_cumprod = cosine_alphas_cumprod()

    def to_model(self, x: Tensor) -> Tensor:
        """Local features [..., 2, 99] -> the denoiser's space (wrists / trans_scale, standardised)."""
        return to_model_space(x, self.config)

    def from_model(self, z: Tensor) -> Tensor:
        return from_model_space(z, self.config)

    def encode(self, motion: HandMotion) -> Tensor:
        return self.to_model(motion.to_features())

    def decode(self, z: Tensor, fps: float, **meta) -> HandMotion:
        return HandMotion.from_features(self.from_model(z), fps, **meta)

    def label_index(self, label: str) -> int | None:
        """Index of `label`, None for "" / "none" (unconditional)."""
        if label in ("", "none"):
            return None
        if label not in self.config.labels:
            raise InputError("label", f"one of {self.config.labels} or 'none'", repr(label))
        return self.config.labels.index(label)

    @torch.no_grad()
    def generate(
        self,
        label: str,
        seconds: float,
        fps: float,
        seed: int,
        steps: int = 50,
        guidance: float = 2.0,
        keyframes: Keyframes | None = None,
        callback: Callable[[int, int], None] | None = None,
        trajectory: Trajectory | None = None,
        guidance_iters: int = 30,
        separate_hands: bool = False,
    ) -> HandMotion:
        """A motion of round(seconds * fps) frames. The model runs at its own frame rate; another `fps` is
        reached by linear resampling of the features (6D re-orthonormalised on decoding), and keyframes are
        then written exactly into their output frames. `trajectory`: the right wrist's path as keyframes
        (exact), other joints by guidance on x̂0 (control.py); clips longer than the model's training
        window are denoised in overlapping windows. `separate_hands`: after that, every x̂0 is moved out of
        interpenetration and no further (control.separate_x0; touching hands stay touching)."""
        if not isinstance(fps, int | float) or fps <= 0:
            raise InputError("fps", "a frame rate > 0", repr(fps))
        if not isinstance(seconds, int | float) or seconds <= 0:
            raise InputError("seconds", "a duration > 0", repr(seconds))
        if not isinstance(separate_hands, bool):
            raise InputError("separate_hands", "True or False", repr(separate_hands))
        frames = round(seconds * fps)
        native = round(seconds * self.config.fps)
        if frames < 1 or native < 1:
            raise InputError("seconds", f"at least one frame at {fps} fps", repr(seconds))
        if native > self.denoiser.max_frames:
            limit = self.denoiser.max_frames / self.config.fps
            what = f"at most {limit:g} s (the model's {self.denoiser.max_frames} frames)"
            raise InputError("seconds", what, repr(seconds))
        if keyframes is not None:
            bad = [f for f in keyframes.frames if not 0 <= f < frames]
            if bad:
                raise InputError(
                    "keyframes", f"frames in 0 .. {frames - 1} ({seconds} s at {fps} fps)", str(bad)
                )
        if trajectory is not None and trajectory.num_frames != frames:
            raise InputError(
                "trajectory", f"a trajectory of the clip's {frames} frames ({seconds} s at {fps} fps)",
                f"{trajectory.num_frames} frames",
            )  # fmt: skip
        keyframes = _with_right_wrist_path(keyframes, trajectory, frames)
        idx = self.label_index(label)
        dev = next(self.denoiser.parameters()).device
        dtype = next(self.denoiser.parameters()).dtype
        shape = (1, native, 2, HAND_FEATURES)
        keys = known = None
        if keyframes is not None:
            keys = torch.zeros(shape, dtype=dtype)
            known = torch.zeros(shape, dtype=torch.bool)
            scaled = self.to_model(keyframes.features.to(dtype))
            for k, f in enumerate(keyframes.frames):
                n = _native_frame(f, frames, native)
                keys[0, n], known[0, n] = scaled[k], keyframes.known[k]
        label_t = None if idx is None else torch.tensor([idx], device=dev)

        def denoise(x: Tensor, t: Tensor) -> Tensor:
            lab = None if label_t is None else label_t.expand(x.shape[0])
            return guided_x0(self.denoiser, x.to(dev), t.to(dev), lab, guidance).cpu().to(dtype)

        guided = _guided_joints(trajectory, frames, native)

        def to_joints(z: Tensor) -> Tensor:
            return features_to_joints(self.from_model(z), 1.0)

        def x0_fn(x: Tensor, t: Tensor) -> Tensor:
            x0 = windowed(denoise, x, t, self.config.window)
            if guided is None and not separate_hands:
                return x0
            if known is not None:  # guide the motion the sampler will keep: keyframes in place, not moved
                x0 = torch.where(known, keys, x0)
            final = FINAL_GUIDANCE if int(t[0]) == 0 else 1
            if guided is not None:
                joints, targets, known_t = guided
                x0 = guide_x0(
                    x0, to_joints, joints, targets, known_t, iters=guidance_iters * final, fixed=known
                )
            if separate_hands:
                x0 = separate_x0(x0, to_joints, iters=SEPARATION_ITERS * final, fixed=known)
            return x0

        gen = torch.Generator().manual_seed(int(seed))
        x = ddim_sample(x0_fn, shape, steps, gen, self.alphas_cumprod, keys, known, dtype=dtype,
                        callback=callback, clean_keyframes=True)[0]  # fmt: skip
        x = self.from_model(x.float())
        if frames != native:
            x = F.interpolate(x.permute(1, 2, 0), size=frames, mode="linear", align_corners=True).permute(
                2, 0, 1
            )
        if keyframes is not None:
            for k, f in enumerate(keyframes.frames):
                x[f] = torch.where(keyframes.known[k], keyframes.features[k].float(), x[f])
        return HandMotion.from_features(x.contiguous(), fps, label=label if idx is not None else "")


def _native_frame(f: int, frames: int, native: int) -> int:
    return round(f * (native - 1) / max(frames - 1, 1))


def _with_right_wrist_path(keyframes: Keyframes | None, trajectory: Trajectory | None, frames: int):
    """Keyframes plus the right wrist's path from `trajectory` (hand 0's wrist position is a feature)."""
    if trajectory is None or (0, 0) not in trajectory.joints:
        return keyframes
    k = trajectory.joints.index((0, 0))
    path_frames = [int(f) for f in torch.nonzero(trajectory.known[:, k])[:, 0]]
    by_frame: dict[int, tuple[Tensor, Tensor]] = {}
    if keyframes is not None:
        for i, f in enumerate(keyframes.frames):
            by_frame[f] = (keyframes.features[i].clone(), keyframes.known[i].clone())
    for f in path_frames:
        feat, known = by_frame.get(
            f, (torch.zeros(2, HAND_FEATURES), torch.zeros(2, HAND_FEATURES, dtype=torch.bool))
        )
        feat[0, TRANS] = trajectory.positions[f, k].to(feat.dtype)
        known[0, TRANS] = True
        by_frame[f] = (feat, known)
    order = sorted(by_frame)
    return Keyframes(
        order,
        torch.stack([by_frame[f][0] for f in order]),
        torch.stack([by_frame[f][1] for f in order]),
        frames,
    )


def _guided_joints(trajectory: Trajectory | None, frames: int, native: int):
    """(joints, targets [native, J, 3], known [native, J]) of the trajectory's joints other than the right
    wrist, at the model's frames; None when there are none."""
    if trajectory is None:
        return None
    cols = [k for k, hj in enumerate(trajectory.joints) if hj != (0, 0)]
    if not cols:
        return None
    targets = torch.zeros(native, len(cols), 3)
    known = torch.zeros(native, len(cols), dtype=torch.bool)
    for f in range(frames):
        n = _native_frame(f, frames, native)
        for c, k in enumerate(cols):
            if trajectory.known[f, k]:
                targets[n, c], known[n, c] = trajectory.positions[f, k].float(), True
    return [trajectory.joints[k] for k in cols], targets, known


def save_model(denoiser: HandDenoiser, config: ModelConfig, path: str | Path) -> Path:
    """Weights (float32) with the config in the metadata, plus `<path>.json`."""
    from safetensors.torch import save_file

    path = Path(path)
    text = json.dumps(asdict(config), indent=2)
    state = {k: v.detach().cpu().contiguous() for k, v in denoiser.state_dict().items()}
    save_file(state, str(path), metadata={"handdiffuse_config": text})
    path.with_suffix(".json").write_text(text)
    return path


def load_model(path: str | Path) -> HandDiffusion:
    """A HandDiffusion from a file written by `save_model` (config from the metadata, else `<path>.json`)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"HandDiffuse model '{path}' not found")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except Exception as exc:
        raise WeightsFormatError(f"'{path.name}' is not a readable .safetensors file ({exc})") from None
    text = meta.get("handdiffuse_config")
    if text is None and path.with_suffix(".json").is_file():
        text = path.with_suffix(".json").read_text()
    if text is None:
        raise WeightsFormatError(
            f"'{path.name}' has no HandDiffuse config (metadata or {path.with_suffix('.json').name})"
        )
    config = ModelConfig(**json.loads(text))
    denoiser = HandDenoiser(**config.denoiser)
    try:
        denoiser.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsFormatError(f"'{path.name}' does not match its HandDiffuse config: {exc}") from None
    return HandDiffusion(denoiser, config)
