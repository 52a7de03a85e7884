"""The trainers' shared machinery (models/common/training.py, cli.py) and the command-line bootstrap."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from papernodes.models.common.cli import TrainerCli, build_parser, config_from_args, option
from papernodes.models.common.errors import InputError
from papernodes.models.common.training import (
    EMA,
    STATE_FILE,
    Callbacks,
    CheckpointError,
    CsvLog,
    LoopSettings,
    TrainingMethod,
    atomic_write_dir,
    averaged_copy,
    epoch_batches,
    find_latest_checkpoint,
    fit,
    list_checkpoints,
    prune_checkpoints,
    resolve_resume,
)
from safetensors.torch import load_file, save_file

REPO_ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------------
# EMA


def _hand_ema(values: list[float], start: float, decay: float, offset: int | None) -> list[float]:
    """The EMA after each update, written out: d_n = min(decay, (1 + n + offset) / (10 + n + offset))."""
    s, out = start, []
    for n, v in enumerate(values):
        d = decay if offset is None else min(decay, (1 + n + offset) / (10 + n + offset))
        s = d * s + (1 - d) * v
        out.append(s)
    return out


# warm-up offsets: diffusers' EMAModel (0), the proving-ground teachers (1), none (LCM's target network)
@pytest.mark.parametrize("offset", [0, 1, None])
def test_ema_matches_a_hand_computation_including_the_warm_up(offset):
    p = torch.nn.Parameter(torch.tensor([2.0, -1.0], dtype=torch.float64))
    kw = {"warmup": False} if offset is None else {"warmup_offset": offset}
    ema = EMA([p], 0.95, **kw)
    values = [3.0, 5.0, -4.0, 0.5, 7.0, 1.0]
    got = []
    for v in values:
        with torch.no_grad():
            p.fill_(v)
        ema.step([p])
        got.append(ema.shadow[0][0].item())
    assert got == pytest.approx(_hand_ema(values, 2.0, 0.95, offset), rel=1e-6)
    assert ema.num_updates == len(values)
    if offset == 0:  # warm-up: the first update moves 90 % of the way, then less
        assert ema.current_decay() == pytest.approx(7 / 16)
    assert ema.shadow[0].dtype == torch.float32  # float32 shadows whatever the parameters are


def test_ema_copies_applies_saves_and_fills_a_target_in_place():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    ema = EMA(model.parameters(), 0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.step(model.parameters())  # decay min(0.5, 0.1) = 0.1: 90 % of the way to the new weights
    live = [p.detach().clone() for p in model.parameters()]
    with ema.applied(list(model.parameters())):
        assert all(torch.equal(p, s) for p, s in zip(model.parameters(), ema.shadow))
    assert all(torch.equal(p, v) for p, v in zip(model.parameters(), live))  # restored exactly

    names = [n for n, _ in model.named_parameters()]
    again = EMA(model.parameters(), 0.5)
    again.load_named(ema.named(names), names, ema.num_updates)
    assert again.num_updates == 1 and all(torch.equal(a, b) for a, b in zip(again.shadow, ema.shadow))
    with pytest.raises(ValueError, match="missing"):
        again.load_named({"weight": ema.shadow[0]}, names, 1)

    frozen = averaged_copy(model, ema)
    assert not frozen.training and not any(p.requires_grad for p in frozen.parameters())
    assert all(torch.equal(p, s) for p, s in zip(frozen.parameters(), ema.shadow))
    assert all(torch.equal(p, v) for p, v in zip(model.parameters(), live))  # the live model is untouched

    target = torch.nn.Linear(3, 2)  # a target network averaged in place (no warm-up)
    before = [p.detach().clone() for p in target.parameters()]
    EMA(model.parameters(), 0.75, warmup=False, shadow=list(target.parameters())).step(model.parameters())
    for t, b, m in zip(target.parameters(), before, model.parameters()):
        torch.testing.assert_close(t, 0.75 * b + 0.25 * m, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------------------------------
# Checkpoints, resume, export, log


def _checkpoint(out: Path, step: int, complete: bool = True) -> Path:
    path = out / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if complete:
        (path / STATE_FILE).write_text(json.dumps({"step": step}))
    return path


def test_pruning_keeps_exactly_the_newest_n(tmp_path):
    for step in (3, 10, 9, 100, 2):
        _checkpoint(tmp_path, step)
    (tmp_path / "checkpoint-final").mkdir()  # not a checkpoint-N folder: never touched
    (tmp_path / "checkpoint-7").write_text("a file, not a folder")
    assert [p.name for p in list_checkpoints(tmp_path)] == [f"checkpoint-{n}" for n in (2, 3, 9, 10, 100)]
    assert prune_checkpoints(tmp_path, 0) == []
    removed = prune_checkpoints(tmp_path, 2)
    assert sorted(p.name for p in removed) == ["checkpoint-2", "checkpoint-3", "checkpoint-9"]
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-10", "checkpoint-100"]
    assert (tmp_path / "checkpoint-final").is_dir() and (tmp_path / "checkpoint-7").is_file()
    prune_checkpoints(tmp_path, 1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-100"]


def test_resolve_resume_latest_auto_explicit_and_missing(tmp_path):
    out = tmp_path / "run"
    assert resolve_resume(None, out) is None and resolve_resume("", out) is None
    assert resolve_resume("auto", out) is None  # nothing yet: a fresh start
    with pytest.raises(CheckpointError, match=f"none in {out}") as info:
        resolve_resume("latest", out)
    assert isinstance(info.value, InputError) and isinstance(info.value, FileNotFoundError)

    _checkpoint(out, 5)
    newest = _checkpoint(out, 12)
    _checkpoint(out, 20, complete=False)  # interrupted while saving: no trainer_state.json
    assert (
        resolve_resume("latest", out) == newest == resolve_resume("auto", out) == find_latest_checkpoint(out)
    )
    assert resolve_resume(str(out / "checkpoint-5"), out) == out / "checkpoint-5"
    for bad in (out / "checkpoint-20", out / "checkpoint-99", tmp_path):
        with pytest.raises(CheckpointError, match=f"{bad}.*not a checkpoint"):
            resolve_resume(str(bad), out)


def test_atomic_write_dir_replaces_or_leaves_everything_as_it_was(tmp_path):
    dest = tmp_path / "final"
    assert atomic_write_dir(dest, lambda d: (d / "a.txt").write_text("one")) == 3
    assert (dest / "a.txt").read_text() == "one"

    def broken(folder: Path) -> None:
        (folder / "a.txt").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write_dir(dest, broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]  # no final.partial, no final.old
    assert (dest / "a.txt").read_text() == "one"

    atomic_write_dir(dest, lambda d: (d / "b.txt").write_text("two"))
    assert sorted(p.name for p in dest.iterdir()) == ["b.txt"]  # replaced, not merged
    with pytest.raises(RuntimeError):
        atomic_write_dir(tmp_path / "new", broken)
    assert not (tmp_path / "new").exists() and not (tmp_path / "new.partial").exists()


def test_csv_log_header_rows_and_resume_truncation(tmp_path):
    path = tmp_path / "log.csv"
    log = CsvLog(path)
    for step in (1, 2, 3):
        log.write(step, {"loss": 1.0 / step, "lr": 5e-5}, elapsed=0.5 * step)
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["step", "loss", "lr", "elapsed_s"]
    assert [float(r["loss"]) for r in rows] == pytest.approx([1.0, 0.5, 1 / 3])
    assert [float(r["lr"]) for r in rows] == [5e-5] * 3

    log = CsvLog(path, resume_step=2)  # the checkpoint was at step 2: step 3 is trained again
    log.write(3, {"loss": 0.25, "lr": 5e-5}, elapsed=0.1)
    rows = list(csv.DictReader(path.open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3] and float(rows[-1]["loss"]) == 0.25
    CsvLog(path)  # a fresh run starts over
    assert not path.exists()


def test_epoch_batches_cover_every_index_once_per_epoch():
    for procs in (1, 2, 3):
        got = sorted(i for r in range(procs) for b in epoch_batches(11, 2, 0, 4, procs, r) for i in b)
        assert got == list(range(11))
    # 7 items, 3 processes, 2 each: the last global batch (1 item) cannot feed every process and is dropped
    got = [i for r in range(3) for b in epoch_batches(7, 2, 0, 0, 3, r) for i in b]
    assert len(got) == len(set(got)) == 6
    assert epoch_batches(5, 2, 3, 0) == epoch_batches(5, 2, 3, 0) != epoch_batches(5, 2, 3, 1)
    assert [len(b) for b in epoch_batches(5, 2, 0, 0)] == [2, 2, 1]


# ----------------------------------------------------------------------------------------------------
# The loop, on a toy method (linear regression)


class _Toy(torch.utils.data.Dataset):
    def __init__(self, n: int):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": self.y[i]}


class _ToyMethod(TrainingMethod):
    """Data mode: a linear model, SGD, noise in the loss drawn from the micro-batch generator."""

    def __init__(self, out: Path):
        super().__init__()
        self.final, self.batch_size, self.calls = out / "final", 2, 0

    def setup(self, run) -> None:
        self.run = run
        model = torch.nn.Linear(3, 1)  # initialised from the global generator, seeded by fit
        self.dataset = _Toy(5)
        self.module, self.optimizer = run.accelerator.prepare(
            model, torch.optim.SGD(model.parameters(), lr=0.1)
        )
        self.param_names, self.params = map(list, zip(*model.named_parameters()))

    def loss(self, batch: dict, generator: torch.Generator) -> torch.Tensor:
        self.calls += 1
        noise = 0.01 * torch.randn(len(batch["y"]), generator=generator)
        return (self.module(batch["x"]).squeeze(-1) - batch["y"] - noise).pow(2).mean()

    def export(self) -> None:
        weights = self.run.ema.named(self.param_names)
        atomic_write_dir(self.final, lambda d: save_file(weights, str(d / "w.safetensors")))


def _fit(out: Path, steps: int, **kw) -> tuple[_ToyMethod, list]:
    seen = []
    settings = LoopSettings(out=out, max_steps=steps, seed=3, grad_accum=4, ema_decay=0.5, save_every=2,
                            keep_checkpoints=2, resume=kw.pop("resume", None), cpu=True)  # fmt: skip
    method = _ToyMethod(out)
    fit(method, settings, Callbacks(progress=lambda s, t, m: seen.append((s, t, m)), **kw))
    return method, seen


def _losses(out: Path) -> list[str]:
    return [r["loss"] for r in csv.DictReader((out / "log.csv").open())]


@pytest.mark.slow  # trains a (toy) model several times
def test_loop_accumulates_checkpoints_stops_and_resumes_exactly(tmp_path):
    # 5 samples in micro-batches of 2: 3 micro-batches per epoch, 4 per optimizer step (spanning epochs)
    full, seen = _fit(tmp_path / "full", 3)
    assert [s for s, _, _ in seen] == [1, 2, 3] and {t for _, t, _ in seen} == {3}
    assert set(seen[0][2]) == {"loss", "lr", "grad_norm"} and seen[0][2]["lr"] == pytest.approx(0.1)
    assert full.calls == 12
    state = json.loads((tmp_path / "full" / "checkpoint-3" / STATE_FILE).read_text())
    assert state == {"step": 3, "epoch": 3, "batch_in_epoch": 3, "ema_updates": 3}  # 4 epochs of 3
    assert [p.name for p in list_checkpoints(tmp_path / "full")] == ["checkpoint-2", "checkpoint-3"]
    final = load_file(str(tmp_path / "full" / "final" / "w.safetensors"))
    assert set(final) == {"weight", "bias"}

    # stopped after 7 micro-batches: step 1 done, the window of step 2 began at epoch 1, micro-batch 1
    part = tmp_path / "part"
    method = _ToyMethod(part)
    stop_settings = LoopSettings(
        out=part, max_steps=3, seed=3, grad_accum=4, ema_decay=0.5, save_every=2, cpu=True
    )
    fit(method, stop_settings, Callbacks(should_stop=lambda: method.calls == 7))
    state = json.loads((part / "checkpoint-1" / STATE_FILE).read_text())
    assert state == {"step": 1, "epoch": 1, "batch_in_epoch": 1, "ema_updates": 1}
    assert (part / "final" / "w.safetensors").is_file()  # a stopped run is exported too

    resumed, seen = _fit(part, 3, resume="latest")
    assert [s for s, _, _ in seen] == [2, 3] and resumed.calls == 8
    again = load_file(str(part / "final" / "w.safetensors"))
    assert all(torch.equal(final[k], again[k]) for k in final)  # bit-identical to the uninterrupted run
    assert _losses(part) == _losses(tmp_path / "full")
    for name in ("weight", "bias"):  # the live weights became the EMA's at the end
        assert torch.equal(dict(zip(resumed.param_names, resumed.params))[name].detach(), again[name])


# ----------------------------------------------------------------------------------------------------
# Command line


@dataclass
class _Cfg:
    out: str = option(help="output folder")
    steps: int = option(3, "optimizer steps")
    lr: float = option(1e-3, "learning rate (10 % warm-up)")
    name: str | None = option(None, "a name")
    count: int | None = option(None, "a count", group="extra")
    flip: bool = option(False, "random flips")
    ema: bool = option(True, "keep an EMA")
    mode: str = option("a", "mode", choices=("a", "b"), group="extra")


def test_parser_from_a_dataclass_round_trips_defaults_types_and_bool_flags(capsys):
    parser = build_parser(_Cfg, "prog", "A test trainer.")
    assert config_from_args(_Cfg, parser.parse_args(["--out", "o"])) == _Cfg(out="o")
    args = ["--out", "o", "--steps", "7", "--lr", "2e-5", "--name", "x", "--count", "4", "--flip", "--no-ema",
            "--mode", "b"]  # fmt: skip
    cfg = config_from_args(_Cfg, parser.parse_args(args))
    assert cfg == _Cfg("o", 7, 2e-5, "x", 4, True, False, "b")
    assert type(cfg.steps) is int and type(cfg.lr) is float and type(cfg.count) is int
    text = parser.format_help()
    assert "--steps STEPS" in text and "(default: 3)" in text and "10 % warm-up" in text
    assert "--flip, --no-flip" in text and "extra:" in text and "{a,b}" in text
    for bad in (["--steps", "x"], [], ["--out", "o", "--mode", "c"], ["--out", "o", "--nope"]):
        with pytest.raises(SystemExit) as info:
            parser.parse_args(bad)
        assert info.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("prog: error:"), err


def test_trainer_main_reports_user_errors_in_one_line_with_exit_code_2(capsys):
    def train(cfg: _Cfg) -> Path:
        if cfg.steps < 1:
            raise InputError("steps", "at least 1", str(cfg.steps))
        if cfg.name == "gone":
            raise FileNotFoundError("prompt file\n/x/gone.txt not found")
        if cfg.name == "bug":
            raise RuntimeError("a bug keeps its traceback")
        return Path(cfg.out) / "final"

    cli = TrainerCli(_Cfg, train, "prog", "A test trainer.")
    assert cli.main(["--out", "o"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == str(Path("o") / "final")
    assert cli.main(["--out", "o", "--steps", "0"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "error: Input 'steps': expected at least 1, got 0\n" and captured.out == ""
    assert cli.main(["--out", "o", "--name", "gone"]) == 2
    assert capsys.readouterr().err == "error: prompt file /x/gone.txt not found\n"
    with pytest.raises(RuntimeError, match="traceback"):
        cli.main(["--out", "o", "--name", "bug"])


# ----------------------------------------------------------------------------------------------------
# Bootstrap


def test_bootstrap_registers_the_checkout_once_without_its_root_init():
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    try:
        import papernodes_bootstrap
    finally:
        sys.path.remove(str(REPO_ROOT / "scripts"))
    package = papernodes_bootstrap.register()
    assert package is sys.modules["papernodes"] is papernodes_bootstrap.register()
    assert list(package.__path__) == [str(REPO_ROOT)] and package.__spec__.name == "papernodes"
    assert not hasattr(package, "NODE_CLASS_MAPPINGS")  # the ComfyUI entry point did not run
    assert papernodes_bootstrap.in_pack("models.colorize.train") == "papernodes.models.colorize.train"
    assert papernodes_bootstrap.in_pack("papernodes.kernels") == "papernodes.kernels"


def _run_module(module: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


@pytest.mark.slow  # three interpreters per trainer
@pytest.mark.parametrize(
    "method, required",
    [
        ("colorize", ["--model", "m", "--data", "d", "--out", "o"]),
        ("swiftbrush", ["--teacher", "t", "--prompts", "p.txt", "--out", "o"]),
        (
            "dreamoving",
            ["--stage", "guider", "--model", "m", "--data", "d", "--out", "o", "--clip-vision", "c"],
        ),
    ],
)
def test_trainers_run_from_the_checkout_root_with_one_line_errors(method, required, tmp_path):
    module = f"models.{method}.train"
    done = _run_module(module, "--help")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (
        f"python -m {module}" in done.stdout
        and "--resume RESUME" in done.stdout
        and "--seed SEED" in done.stdout
    )

    done = _run_module(module, *required, "--max-steps", "many")  # a bad flag value: argparse
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--max-steps" in done.stderr, done.stderr

    out = str(tmp_path / "o")
    args = [a if a != "o" else out for a in required]
    done = _run_module(module, *args, "--resolution", "60")  # a bad value the config rejects: InputError
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr == "error: Input 'resolution': expected a multiple of 8 (VAE downsampling), got 60\n"
    assert "Traceback" not in done.stderr and not Path(out).exists()


def test_stages_are_chosen_in_order_and_unknown_ones_named(capsys):
    import argparse

    from papernodes.models.common.cli import add_stages, chosen_stages

    p = argparse.ArgumentParser(prog="reproduce")
    add_stages(p, ("a", "b", "c"))
    assert chosen_stages(p, p.parse_args([]).stages, ("a", "b", "c")) == ["a", "b", "c"]
    assert chosen_stages(p, " c, a ,", ("a", "b", "c")) == ["c", "a"]
    with pytest.raises(SystemExit):
        chosen_stages(p, "a,z", ("a", "b", "c"))
    assert "unknown ['z']; choose from a, b, c" in capsys.readouterr().err
