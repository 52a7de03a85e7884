"""The trainers' shared machinery, so that a method writes its set-up, its loss and its export, not a loop.

`fit(method, settings, callbacks)` runs one training run on accelerate:
- set-up: the resume point (`resolve_resume`: a checkpoint-N folder, "latest" or "auto"), an accelerator
  (one process, or DDP launched by torchrun / accelerate launch; over gloo on CPUs), seeds, then
  `method.setup(run)` builds the models, the data and the optimizer;
- loop, data mode (the method has a `dataset`): epochs of per-process micro-batches in a (seed, epoch) order,
  `method.loss(batch, generator)` per micro-batch, gradient accumulation, clipping, optimizer and LR steps;
  step mode (no dataset): `method.train_step(state)` does a whole optimisation step (SwiftBrush's two updates);
- after every optimizer step: EMA update, a CSV log row, a console line, `callbacks.progress`; every
  `save_every` steps a checkpoint (oldest pruned) and the method's export; a preview every `preview_every`
  steps; `callbacks.should_stop()` ends the run early, and the checkpoint and the export are still written;
- end: a last checkpoint and export, the live weights become the EMA's, a last preview.

A checkpoint OUT/checkpoint-N holds accelerate's `save_state` (models, optimizers, RNG states), ema.safetensors
(the EMA weights by parameter name), the method's own files, and trainer_state.json, written last: a folder
without it is incomplete and never resumed from. A resumed run continues exactly where the checkpoint was.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from .errors import InputError
from .schedulers import scheduler_of_class
from .text import TextModel, encode_prompts

if TYPE_CHECKING:
    from accelerate import Accelerator
    from diffusers import DDPMScheduler

CHECKPOINT_PREFIX = "checkpoint-"
STATE_FILE = "trainer_state.json"
EMA_FILE = "ema.safetensors"
LOG_FILE = "log.csv"
MIXED_PRECISION = ("no", "fp16", "bf16")
T = TypeVar("T")


# ----------------------------------------------------------------------------------------------------
# Accelerator


def world_size() -> int:
    """Processes in this run as the launchers announce them (torchrun / accelerate launch, MPI)."""
    keys = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE")
    return max(int(os.environ.get(k, "1") or 1) for k in keys)


def make_accelerator(
    mixed_precision: str = "no", out: str | os.PathLike | None = None, cpu: bool = False
) -> Accelerator:
    """An Accelerator for one run.

    A single process may train several times (tests, ComfyUI): accelerate keeps its settings in process-wide
    singletons and refuses e.g. another mixed precision, so they start afresh. Several processes on a machine
    without CUDA (torchrun / accelerate launch on CPUs) train with DDP over gloo."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import ProjectConfiguration

    world = world_size()
    if world == 1:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    cpu = cpu or (world > 1 and not torch.cuda.is_available())
    project = ProjectConfiguration(project_dir=str(out)) if out is not None else None
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu, project_config=project)


def weight_dtype(accelerator: Accelerator) -> torch.dtype:
    """The dtype frozen modules run in under the accelerator's mixed precision."""
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)


# ----------------------------------------------------------------------------------------------------
# Checkpoints and resume


def available_memory(device: torch.device) -> int | None:
    """Bytes a run can still allocate on `device` (CUDA: free device memory; CPU: MemAvailable), or None
    where it cannot be read."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class CheckpointError(InputError, FileNotFoundError):
    """`resume` names no usable checkpoint; the message names the folder."""


def checkpoint_step(path: Path) -> int | None:
    """N of a checkpoint-N folder name, else None."""
    name = Path(path).name
    tail = name[len(CHECKPOINT_PREFIX) :] if name.startswith(CHECKPOINT_PREFIX) else ""
    return int(tail) if tail.isdigit() else None


def list_checkpoints(out: str | os.PathLike) -> list[Path]:
    """The checkpoint-N folders in `out`, oldest (smallest N) first."""
    out = Path(out)
    if not out.is_dir():
        return []
    found = [(checkpoint_step(p), p) for p in out.iterdir() if p.is_dir()]
    return [p for n, p in sorted((n, p) for n, p in found if n is not None)]


def find_latest_checkpoint(out: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint (one with trainer_state.json) in `out`, if any."""
    done = [p for p in list_checkpoints(out) if (p / STATE_FILE).is_file()]
    return done[-1] if done else None


def resolve_resume(resume: str | None, out: str | os.PathLike) -> Path | None:
    """The checkpoint a run continues from.

    None or "" -> none; "latest" -> the newest in `out` (an error when there is none); "auto" -> the newest if
    any, so one command both starts and continues a run; anything else is a checkpoint-N folder, which must
    hold trainer_state.json. Raises CheckpointError naming the folder."""
    if not resume:
        return None
    out = Path(out).expanduser()
    if resume in ("latest", "auto"):
        ckpt = find_latest_checkpoint(out)
        if ckpt is None and resume == "latest":
            raise CheckpointError("resume", "a checkpoint-N folder to continue ('latest')", f"none in {out}")
        return ckpt
    ckpt = Path(resume).expanduser()
    if not (ckpt / STATE_FILE).is_file():
        raise CheckpointError(
            "resume",
            "a checkpoint-N folder written by this trainer, 'latest' or 'auto'",
            f"{ckpt} (not a checkpoint: no {STATE_FILE})",
        )
    return ckpt


def read_trainer_state(ckpt: str | os.PathLike) -> dict:
    """The trainer_state.json of a checkpoint."""
    return json.loads((Path(ckpt) / STATE_FILE).read_text())


def prune_checkpoints(out: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the newest `keep` checkpoint-N folders (each holds optimizer states); 0 keeps all.
    Returns the deleted folders."""
    if keep <= 0:
        return []
    old = list_checkpoints(out)[:-keep]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)
    return old


@dataclass
class TrainState:
    """Where a run is: optimizer steps done, epoch, micro-batches consumed in that epoch (checkpointed)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0

    def state_dict(self) -> dict:
        return {"step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.epoch, self.batch_in_epoch = (
            int(state.get(k, 0)) for k in ("step", "epoch", "batch_in_epoch")
        )


# ----------------------------------------------------------------------------------------------------
# EMA


class EMA:
    """Exponential moving average of parameters, updated after every optimizer step.

    decay_n = min(decay, (1 + n) / (10 + n)) with n = updates so far + `warmup_offset`: the usual warm-up, so
    the average of a short run is not stuck at the initial weights (offset 0 is diffusers' EMAModel; the
    proving-ground teachers were trained with 1). `warmup=False`: a fixed decay (LCM's target network).
    Shadows are float32 copies on the parameters' device, or the given `shadow` tensors (a target network's
    parameters, averaged in place)."""

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        decay: float,
        *,
        warmup: bool = True,
        warmup_offset: int = 0,
        shadow: Sequence[torch.Tensor] | None = None,
    ):
        params = list(params)
        self.decay, self.num_updates = float(decay), 0
        self.warmup, self.warmup_offset = bool(warmup), int(warmup_offset)
        if shadow is None:
            self.shadow = [p.detach().float().clone() for p in params]
        else:
            self.shadow = list(shadow)
            if len(self.shadow) != len(params):
                raise ValueError(f"EMA: {len(self.shadow)} shadow tensors for {len(params)} parameters")

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        n = self.num_updates + self.warmup_offset
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def step(self, params: Iterable[torch.Tensor]) -> None:
        weight = 1.0 - self.current_decay()
        for s, p in zip(self.shadow, params, strict=True):
            s.lerp_(p.detach().float(), weight)
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, params: Iterable[torch.Tensor]) -> None:
        for s, p in zip(self.shadow, params, strict=True):
            p.copy_(s.to(p.dtype))

    @contextlib.contextmanager
    def applied(self, params: Sequence[torch.Tensor]) -> Iterator[None]:
        """`params` hold the averaged weights inside the block and their own ones again after it (a copy
        waits on the CPU): export without a second model on the training device."""
        params = list(params)
        saved = [p.detach().to("cpu", copy=True) for p in params]
        self.copy_to(params)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, v in zip(params, saved, strict=True):
                    p.copy_(v)

    def named(self, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """{parameter name: averaged weight} on the CPU, for a safetensors file."""
        return {n: s.detach().cpu().contiguous() for n, s in zip(names, self.shadow, strict=True)}

    @torch.no_grad()
    def load_named(self, tensors: dict[str, torch.Tensor], names: Sequence[str], num_updates: int) -> None:
        missing = [n for n in names if n not in tensors]
        if missing or len(tensors) != len(names):
            raise ValueError(f"EMA weights do not match the model (missing {missing[:3]})")
        for s, n in zip(self.shadow, names, strict=True):
            s.copy_(tensors[n])
        self.num_updates = int(num_updates)

    def state_dict(self) -> dict:
        return {
            "decay": self.decay,
            "num_updates": self.num_updates,
            "shadow": [s.cpu() for s in self.shadow],
        }

    def load_state_dict(self, state: dict) -> None:
        if len(state["shadow"]) != len(self.shadow):
            raise ValueError("EMA state does not match the model (different number of parameters)")
        self.decay, self.num_updates = float(state["decay"]), int(state["num_updates"])
        with torch.no_grad():
            for s, v in zip(self.shadow, state["shadow"], strict=True):
                s.copy_(v)


def averaged_copy(module: torch.nn.Module, ema: EMA | None) -> torch.nn.Module:
    """A frozen copy of `module` whose trainable parameters (those with requires_grad, in order: what the
    EMA averages) hold the EMA weights; a plain frozen copy without an EMA."""
    import copy

    out = copy.deepcopy(module)
    if ema is not None:
        ema.copy_to([p for p in out.parameters() if p.requires_grad])
    return out.eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------------
# Export, log, text, noise, data order


def atomic_write_dir(dest: str | os.PathLike, write: Callable[[Path], T]) -> T:
    """Write a folder in one go: `write(tmp)` fills DEST.partial, which then replaces DEST.

    When `write` raises, the partial folder is removed and DEST stays as it was, so a reader (ComfyUI loading
    the export while the trainer checkpoints) finds the old folder or the new one, never a half-written one
    (for an instant, between two renames, none). Returns what `write` returns."""
    dest = Path(dest)
    tmp, old = dest.with_name(dest.name + ".partial"), dest.with_name(dest.name + ".old")
    for leftover in (tmp, old):
        if leftover.exists():
            shutil.rmtree(leftover)
    tmp.mkdir(parents=True)
    try:
        result = write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return result


class CsvLog:
    """OUT/log.csv: one row per optimizer step (step, the method's metrics, elapsed seconds).

    The header comes from the first row's metrics. A fresh run starts a new file; a resumed run keeps the rows
    up to its checkpoint's step (later ones were trained again) and appends."""

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None):
        self.path = Path(path)
        if resume_step is None or not self.path.is_file():
            self.path.unlink(missing_ok=True)
            return
        with self.path.open(newline="") as f:
            rows = list(csv.reader(f))
        kept = rows[:1] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= resume_step]
        with self.path.open("w", newline="") as f:
            csv.writer(f).writerows(kept)

    def write(self, step: int, metrics: dict[str, float], elapsed: float) -> None:
        fresh = not self.path.is_file() or self.path.stat().st_size == 0
        with self.path.open("a", newline="") as f:
            writer = csv.writer(f)
            if fresh:
                writer.writerow(["step", *metrics, "elapsed_s"])
            writer.writerow([step, *(f"{v:.8g}" for v in metrics.values()), f"{elapsed:.2f}"])


class TextEmbeddingCache:
    """Embeddings of prompts for a frozen text encoder, each distinct string encoded once.

    Kept on the CPU in float32, least recently used entries evicted beyond `max_entries`; a call returns
    [B, L, D] on `device`."""

    def __init__(self, tokenizer, text_encoder, device, max_entries: int = 2048):
        self.text, self.device = TextModel(tokenizer, text_encoder), torch.device(device)
        self.max_entries = max_entries
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()

    def _encode(self, prompts: list[str]) -> torch.Tensor:
        return encode_prompts(self.text, prompts, self.text.text_encoder.device).float().cpu()

    def __call__(self, prompts: list[str]) -> torch.Tensor:
        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        if missing:
            for p, emb in zip(missing, self._encode(missing), strict=True):
                self._cache[p] = emb
        out = []
        for p in prompts:
            self._cache.move_to_end(p)
            out.append(self._cache[p])
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return torch.stack(out).to(self.device)

    def __len__(self) -> int:
        return len(self._cache)


def make_noise_scheduler(scheduler_config: dict) -> DDPMScheduler:
    """The model's training noise schedule as a DDPMScheduler (only the schedule's keys are taken over)."""
    return scheduler_of_class("DDPMScheduler", scheduler_config)


def lr_factor(step: int, decay_from: int, max_steps: int, final: float) -> float:
    """1 up to `decay_from`, then linear to `final` at `max_steps` (a cool-down ends the constant-rate run)."""
    if decay_from <= 0 or step <= decay_from:
        return 1.0
    return 1.0 - (1.0 - final) * min(1.0, (step - decay_from) / (max_steps - decay_from))


def warmup_then_constant(optimizer: torch.optim.Optimizer, warmup_steps: int):
    """LR factor (s + 1) / warmup_steps for the first steps, then 1 (stepped once per optimizer step)."""
    w = int(warmup_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / w) if w > 0 else 1.0)


def epoch_batches(
    n: int, batch_size: int, seed: int, epoch: int, processes: int = 1, rank: int = 0
) -> list[list[int]]:
    """This process's index batches of one epoch: a (seed, epoch) permutation cut into global batches of
    batch_size * processes, each split among the processes; a last global batch too small to give every
    process an item is dropped."""
    g = torch.Generator().manual_seed(int(seed) * 100_003 + int(epoch))
    perm = torch.randperm(n, generator=g).tolist()
    step = batch_size * processes
    out = []
    for i in range(0, n, step):
        chunk = perm[i : i + step]
        if len(chunk) < processes:
            break
        per = -(-len(chunk) // processes)
        out.append(chunk[rank * per : (rank + 1) * per])
    return [b for b in out if b]


def micro_batch_generator(seed: int, epoch: int, batch: int, process: int = 0) -> torch.Generator:
    """A CPU generator for the random draws of one micro-batch: seeded by where the micro-batch is, so a
    resumed run draws exactly what the uninterrupted one did."""
    return torch.Generator("cpu").manual_seed(
        (int(seed) * 1_000_003 + int(epoch) * 100_019 + int(batch) * 1_009 + int(process)) % 2**63
    )


def collate(items: list[dict]) -> dict:
    """Dataset items (dicts) -> a batch: tensors stacked, everything else listed."""
    out = {}
    for k in items[0]:
        vals = [it[k] for it in items]
        out[k] = torch.stack(vals) if torch.is_tensor(vals[0]) else vals
    return out


# ----------------------------------------------------------------------------------------------------
# The loop


@dataclass
class Callbacks:
    """How a caller (command line, ComfyUI node) follows and steers a run."""

    progress: Callable[[int, int, dict[str, float]], None] | None = None  # (step, total, metrics) per step
    should_stop: Callable[[], bool] | None = None  # polled after every micro-batch; True ends the run
    preview: Callable[[int, torch.Tensor], None] | None = None  # (step, IMAGE [N, H, W, 3]) per preview

    def stop_requested(self) -> bool:
        return self.should_stop is not None and bool(self.should_stop())


@dataclass
class LoopSettings:
    """What the loop needs to know about a run; `from_config` reads the fields a method config shares."""

    out: Path
    max_steps: int
    seed: int = 0
    grad_accum: int = 1
    max_grad_norm: float = 0.0  # 0 disables clipping
    ema_decay: float = 0.0  # 0 disables the EMA
    save_every: int = 0  # checkpoint + export every N optimizer steps; 0 = at the end only
    keep_checkpoints: int = 0  # newest N checkpoint-N folders kept; 0 = all
    preview_every: int = 0  # 0 = at the end only (when previews are wanted)
    resume: str | None = None  # checkpoint-N folder, "latest" or "auto"
    mixed_precision: str = "no"
    cpu: bool = False
    num_workers: int = 0
    seed_per_process: bool = False  # global RNG seeded seed + process index (else the same on every process)
    config_file: str = "train_config.json"  # OUT/<config_file>: the method's options, as JSON
    config: dict | None = None

    @classmethod
    def from_config(cls, config: Any, **overrides) -> LoopSettings:
        """Settings from a method's config dataclass: every field of the same name, then `overrides`."""
        from dataclasses import asdict

        names = {f.name for f in fields(cls)} - {"out", "config"}
        values = {n: getattr(config, n) for n in names if hasattr(config, n)}
        values.update(out=Path(config.out).expanduser(), config=asdict(config))
        values.update(overrides)
        return cls(**values)


class Run:
    """What `method.setup` is given: the accelerator and where the run stands."""

    def __init__(
        self, settings: LoopSettings, accelerator: Accelerator, checkpoint: Path | None, callbacks: Callbacks
    ):
        self.settings, self.accelerator, self.callbacks = settings, accelerator, callbacks
        self.out = settings.out
        self.checkpoint = checkpoint  # the checkpoint this run resumes from, if any
        self.resumed_state = read_trainer_state(checkpoint) if checkpoint is not None else None
        self.device = accelerator.device
        self.weight_dtype = weight_dtype(accelerator)
        self.is_main = accelerator.is_main_process
        self.process_index, self.num_processes = accelerator.process_index, accelerator.num_processes
        self.state = TrainState()
        self.ema: EMA | None = None


class TrainingMethod:
    """What a method supplies to `fit`: `final` (the folder `export` writes) and a `setup` that sets `params` /
    `param_names` and either `dataset`, `module`, `optimizer` (optionally `lr_scheduler`) for data mode, where
    `loss` is called per micro-batch, or nothing more for step mode, where `train_step` does a whole
    optimisation step. The other hooks have defaults."""

    final: Path  # what `export` writes
    dataset = None  # map-style dataset of dict items; `set_epoch(epoch)` is called when it has one
    batch_size: int = 1  # micro-batch size per process
    module = None  # the prepared trainable module (gradient sync is skipped between accumulation steps)
    optimizer = None
    lr_scheduler = None  # stepped after every optimizer step, checkpointed
    can_preview = False

    def __init__(self) -> None:
        self.params: list[torch.Tensor] = []  # trainable parameters: clipped, averaged by the EMA
        self.param_names: list[str] = []  # their names (the EMA file's keys)

    def setup(self, run: Run) -> None:
        raise NotImplementedError

    def loss(self, batch: dict, generator: torch.Generator) -> torch.Tensor:
        """Data mode: the loss of one micro-batch; `generator` is seeded by where the micro-batch is."""
        raise NotImplementedError

    def train_step(self, state: TrainState) -> dict[str, Any]:
        """Step mode: one whole optimisation step (state.step = steps done before it); returns its metrics."""
        raise NotImplementedError

    def export(self) -> None:
        raise NotImplementedError

    def has_export(self) -> bool:
        return self.final.exists()

    def describe(self, state: TrainState) -> str:
        return ""

    def checkpoint_info(self) -> dict:
        """Extra JSON entries of trainer_state.json."""
        return {}

    def save_checkpoint(self, folder: Path) -> None:
        """Extra files of a checkpoint (main process, before trainer_state.json)."""

    def load_checkpoint(self, folder: Path, saved: dict) -> None:
        """Read the extra files back (every process, after accelerate's state)."""

    def preview(self, step: int) -> torch.Tensor | None:
        return None

    def close(self) -> None:
        """Undo set-up side effects (patched modules); called also after an error."""

    def result(self) -> Any:
        return self.final


def _metric_floats(run: Run, metrics: dict[str, Any]) -> dict[str, float]:
    """Metrics as floats, averaged over the processes."""
    if run.num_processes > 1:
        values = torch.stack([torch.as_tensor(v, dtype=torch.float32).detach().to(run.device)
                              for v in metrics.values()])  # fmt: skip
        values = run.accelerator.reduce(values, reduction="mean")
        return dict(zip(metrics, values.tolist(), strict=True))
    return {k: float(v) for k, v in metrics.items()}


def _grad_norm(params: Sequence[torch.Tensor]) -> torch.Tensor:
    norms = [p.grad.norm() for p in params if p.grad is not None]
    return torch.norm(torch.stack(norms)) if norms else torch.zeros(())


def fit(method: TrainingMethod, settings: LoopSettings, callbacks: Callbacks | None = None) -> Any:
    """Run `method` to `settings.max_steps` (module docstring); returns `method.result()`."""
    from accelerate.utils import set_seed
    from safetensors.torch import load_file, save_file

    callbacks = callbacks or Callbacks()
    out, total = settings.out, settings.max_steps
    ckpt = resolve_resume(settings.resume, out)
    accelerator = make_accelerator(settings.mixed_precision, out, settings.cpu)
    run = Run(settings, accelerator, ckpt, callbacks)
    state, is_main = run.state, run.is_main
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
    set_seed(settings.seed, device_specific=settings.seed_per_process)
    try:
        method.setup(run)
        if is_main and settings.config is not None:
            (out / settings.config_file).write_text(json.dumps(settings.config, indent=2))
        params, names = method.params, method.param_names
        ema = run.ema = EMA(params, settings.ema_decay) if settings.ema_decay > 0 else None
        if ckpt is not None:
            accelerator.load_state(str(ckpt))
            saved = run.resumed_state
            state.load_state_dict(saved)
            if method.lr_scheduler is not None and "lr_scheduler" in saved:
                method.lr_scheduler.load_state_dict(saved["lr_scheduler"])
            if ema is not None:
                if not (ckpt / EMA_FILE).is_file():
                    raise CheckpointError(
                        "resume", f"a checkpoint with {EMA_FILE} (EMA is on)", f"{ckpt} (EMA off?)"
                    )
                ema.load_named(load_file(str(ckpt / EMA_FILE)), names, saved.get("ema_updates", 0))
            method.load_checkpoint(ckpt, saved)
            if is_main:
                print(f"resumed from {ckpt} at step {state.step}", flush=True)
        log = CsvLog(out / LOG_FILE, state.step if ckpt is not None else None) if is_main else None
        wants_previews = method.can_preview and (callbacks.preview is not None or settings.preview_every > 0)
        if is_main:
            print(method.describe(state), flush=True)

        def save_checkpoint() -> None:
            path = out / f"{CHECKPOINT_PREFIX}{state.step}"
            accelerator.save_state(str(path))
            if is_main:
                if ema is not None:
                    save_file(ema.named(names), str(path / EMA_FILE))
                method.save_checkpoint(path)
                info = {**state.state_dict(), "ema_updates": ema.num_updates if ema is not None else 0}
                if method.lr_scheduler is not None:
                    info["lr_scheduler"] = method.lr_scheduler.state_dict()
                info.update(method.checkpoint_info())
                (path / STATE_FILE).write_text(json.dumps(info, indent=2))
                prune_checkpoints(out, settings.keep_checkpoints)
                method.export()
            accelerator.wait_for_everyone()

        def make_preview() -> None:
            images = method.preview(state.step)
            if images is not None and callbacks.preview is not None:
                callbacks.preview(state.step, images)

        start, last_saved = time.time(), state.step if ckpt is not None else -1

        def finish_step(metrics: dict[str, Any]) -> None:
            """After an optimizer step: EMA, log, progress, periodic checkpoint and preview."""
            nonlocal last_saved
            state.step += 1
            if ema is not None:
                ema.step(params)
            values = _metric_floats(run, metrics)
            if is_main:
                elapsed = time.time() - start
                shown = " ".join(f"{k} {v:.3e}" for k, v in values.items())
                print(f"step {state.step}/{total} {shown} ({elapsed:.1f}s)", flush=True)
                log.write(state.step, values, elapsed)
            if callbacks.progress is not None:
                callbacks.progress(state.step, total, values)
            if settings.save_every and state.step % settings.save_every == 0 and state.step < total:
                save_checkpoint()
                last_saved = state.step
            if wants_previews and settings.preview_every and state.step % settings.preview_every == 0:
                if state.step < total:
                    make_preview()

        stopped = False
        if method.dataset is None:
            while state.step < total and not stopped:
                finish_step(method.train_step(state))
                stopped = state.step < total and callbacks.stop_requested()
        else:
            stopped = _data_loop(method, run, finish_step)
        if stopped and is_main:
            print(f"stopped at step {state.step}", flush=True)
        if last_saved != state.step:
            save_checkpoint()
        elif is_main and not method.has_export():
            method.export()
    finally:
        method.close()

    if run.ema is not None:  # from here on the live weights are the exported ones
        run.ema.copy_to(method.params)
    if wants_previews:
        make_preview()
    accelerator.wait_for_everyone()
    if is_main:
        print(f"saved {method.final}", flush=True)
    result = method.result()
    accelerator.free_memory()
    return result


def _data_loop(method: TrainingMethod, run: Run, finish_step: Callable[[dict], None]) -> bool:
    """Micro-batches of the method's dataset until max_steps; returns whether `should_stop` ended it."""
    from torch.utils.data import DataLoader

    settings, accelerator, state = run.settings, run.accelerator, run.state
    total, accum = settings.max_steps, settings.grad_accum
    dataset, params = method.dataset, method.params
    micro_losses: list[torch.Tensor] = []
    window_start = (state.epoch, state.batch_in_epoch)  # where the un-synced micro-batches began
    while state.step < total:
        batches = epoch_batches(len(dataset), method.batch_size, settings.seed, state.epoch,
                                run.num_processes, run.process_index)  # fmt: skip
        if not batches:
            raise InputError(
                "data", f"at least {run.num_processes} samples (one per process)", str(len(dataset))
            )
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(state.epoch)
        loader = DataLoader(
            dataset,
            batch_sampler=batches[state.batch_in_epoch :],
            num_workers=settings.num_workers,
            collate_fn=collate,
            pin_memory=run.device.type == "cuda",
        )
        for batch in loader:
            if not micro_losses:
                window_start = (state.epoch, state.batch_in_epoch)
            gen = micro_batch_generator(settings.seed, state.epoch, state.batch_in_epoch, run.process_index)
            state.batch_in_epoch += 1
            sync = len(micro_losses) + 1 == accum
            with nullcontext() if sync else accelerator.no_sync(method.module):
                loss = method.loss(batch, gen)
                accelerator.backward(loss / accum)
            micro_losses.append(loss.detach())
            if sync:
                grad_norm = None
                if settings.max_grad_norm > 0:
                    grad_norm = accelerator.clip_grad_norm_(params, settings.max_grad_norm)
                if grad_norm is None:  # no clipping (or a backend that does not report the norm)
                    grad_norm = _grad_norm(params)
                lr = method.optimizer.param_groups[0]["lr"]  # the rate this step uses
                method.optimizer.step()
                if method.lr_scheduler is not None:
                    method.lr_scheduler.step()
                method.optimizer.zero_grad(set_to_none=True)
                step_loss = torch.stack(micro_losses).mean()
                micro_losses.clear()
                finish_step({"loss": step_loss, "lr": lr, "grad_norm": grad_norm})
                if state.step >= total:
                    return False
            if run.callbacks.stop_requested():
                if micro_losses:  # their gradients are dropped: a resumed run trains them again
                    state.epoch, state.batch_in_epoch = window_start
                    micro_losses.clear()
                    method.optimizer.zero_grad(set_to_none=True)
                return True
        state.epoch += 1
        state.batch_in_epoch = 0
    return False
