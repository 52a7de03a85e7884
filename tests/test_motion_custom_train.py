"""Customizing Motion trainer: exactly the trainable set changes, resume is bit-identical on the CPU, the
prior term and the timestep law enter the loss, data folders fail with named errors."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from papernodes.models.common import tiny
from papernodes.models.common.animatediff import build_tiny_motion_adapter, save_motion_adapter_original
from papernodes.models.common.errors import InputError
from papernodes.models.common.saving import save_diffusers_folder
from papernodes.models.common.training import LoopSettings, fit
from papernodes.models.motion_custom import data as D
from papernodes.models.motion_custom import train as T
from papernodes.models.motion_custom.motion_file import load_motion, motions_applied
from papernodes.models.motion_custom.pipeline import animatediff_model
from papernodes.models.motion_custom.trainable import trainable_names

torch.set_num_threads(1)
SIZE, FRAMES = 32, 4


def _moving_square(n: int, shift: int, colour) -> np.ndarray:
    frames = np.full((n, SIZE, SIZE, 3), 30, np.uint8)
    for i in range(n):
        x = 4 + shift * i
        frames[i, 10:20, x : x + 8] = colour
    return frames


def _write_frames(folder, frames, caption=""):
    from PIL import Image

    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:03d}.png")
    if caption:
        (folder / "caption.txt").write_text(caption)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("mc")
    save_diffusers_folder(tiny.build_tiny_components(0), root / "sd")
    save_motion_adapter_original(build_tiny_motion_adapter(1, zero_out=False), root / "mm.safetensors")
    _write_frames(root / "clips" / "a", _moving_square(6, 3, (220, 30, 30)), "a red square sliding")
    _write_frames(root / "clips" / "b", _moving_square(5, 3, (30, 30, 220)))
    _write_frames(root / "reg" / "c", _moving_square(4, 0, (30, 220, 30)), "a green square")
    return root


def _cfg(world, out, **kw) -> T.TrainConfig:
    base = dict(out=str(out), clips=str(world / "clips"), model=str(world / "sd"),
                motion_module=str(world / "mm.safetensors"), frames=FRAMES, height=SIZE, width=SIZE, lr=1e-3,
                max_steps=2, save_every=0, cpu=True)  # fmt: skip
    return T.TrainConfig(**{**base, **kw})


def _log(out) -> list[dict]:
    with open(out / "log.csv") as f:
        return list(csv.DictReader(f))


def test_token_binding_rule():
    assert D.insert_token("a cat sks jumping", "sks") == "a cat sks jumping"
    assert D.insert_token("a cat jumping.", "sks") == "a cat jumping, sks motion"
    assert D.insert_token("", "sks") == "a video of sks motion"


@pytest.mark.slow  # trains
def test_only_the_paper_set_changes_and_the_file_reproduces_the_trained_model(world, tmp_path):
    cfg = _cfg(world, tmp_path / "run", regularization=str(world / "reg"))
    cfg.validate()
    method = T.MotionTraining(cfg)
    path = fit(method, LoopSettings.from_config(cfg))
    base = animatediff_model(tiny.build_tiny_components(0), build_tiny_motion_adapter(1, zero_out=False))
    # built again from the same seeds: the base the file was trained on
    trained = dict(method.unet.named_parameters())
    names = set(trainable_names(base.unet, "paper"))
    changed = set()
    for n, p in base.unet.named_parameters():
        if n in names:
            if not torch.equal(trained[n], p):
                changed.add(n)
        else:
            assert torch.equal(trained[n], p), f"{n} is outside the paper's set but changed"
    assert len(changed) > 0.9 * len(names)  # (a zero-initialised output can keep a tensor's grad at 0)
    motion = load_motion(path)
    assert set(motion.deltas) == names and motion.token == "sks" and motion.steps == 2
    with motions_applied(base.unet, [(motion, 1.0)]):
        for n, p in base.unet.named_parameters():
            torch.testing.assert_close(p, trained[n], rtol=0, atol=1e-6)


@pytest.mark.slow  # trains
def test_resume_is_bit_identical(world, tmp_path):
    kw = dict(max_steps=4, save_every=2, regularization=str(world / "reg"))
    full = T.train(_cfg(world, tmp_path / "full", **kw))
    part = tmp_path / "part"
    T.train(_cfg(world, part, **{**kw, "max_steps": 2}))
    resumed = T.train(_cfg(world, part, **{**kw, "resume": "latest"}))
    a, b = load_motion(full), load_motion(resumed)
    assert all(torch.equal(a.deltas[k], b.deltas[k]) for k in a.deltas)
    assert [r["loss"] for r in _log(part)] == [r["loss"] for r in _log(tmp_path / "full")]


@pytest.mark.slow  # trains
def test_prior_weight_and_timestep_law_enter_the_loss(world, tmp_path):
    def first_loss(name, **kw):
        T.train(_cfg(world, tmp_path / name, max_steps=1, **kw))
        return float(_log(tmp_path / name)[0]["loss"])

    plain = first_loss("plain")
    assert first_loss("zero", regularization=str(world / "reg"), prior_weight=0.0) == plain
    assert first_loss("prior", regularization=str(world / "reg"), prior_weight=0.5) != plain
    assert first_loss("uniform", timestep_law="uniform") != plain


@pytest.mark.slow  # trains
def test_zeroscope_base_trains(tmp_path, world):
    comps = tiny.build_tiny_zeroscope(0)
    save_diffusers_folder(comps, tmp_path / "zs")
    path = T.train(
        _cfg(world, tmp_path / "zrun", model=None, motion_module=None, zeroscope=str(tmp_path / "zs"))
    )
    motion = load_motion(path)
    assert motion.architecture == "zeroscope"
    assert any(k.startswith("transformer_in.") for k in motion.deltas)


def test_bad_data_and_options_name_what_to_fix(world, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(D.ClipsError, match="holds no clips"):
        T.train(_cfg(world, tmp_path / "o1", clips=str(tmp_path / "empty")))
    with pytest.raises(D.ClipsError, match="shorter than the 8 frames"):
        T.train(_cfg(world, tmp_path / "o2", frames=8))
    bad = tmp_path / "badvid"
    bad.mkdir()
    (bad / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(D.ClipsError, match="broken.mp4"):
        T.train(_cfg(world, tmp_path / "o3", clips=str(bad)))
    with pytest.raises(InputError, match="exactly one of --zeroscope"):
        T.train(_cfg(world, tmp_path / "o4", zeroscope=str(world / "sd")))
    with pytest.raises(InputError, match="token"):
        T.train(_cfg(world, tmp_path / "o5", token="two words"))


def test_command_line_error_is_one_line(world, tmp_path, capsys):
    code = T.main(["--out", str(tmp_path / "x"), "--clips", str(tmp_path / "nope"), "--model",
                   str(world / "sd"), "--motion-module", str(world / "mm.safetensors")])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "does not exist" in err[0]


@pytest.mark.slow  # trains
def test_training_on_a_model_with_motions_binds_the_file_to_them(world, tmp_path):
    from papernodes.models.motion_custom.demo import write_seeded_motion

    base = animatediff_model(tiny.build_tiny_components(0), build_tiny_motion_adapter(1, zero_out=False))
    first = load_motion(write_seeded_motion(base, tmp_path / "first.safetensors", seed=3))
    model = base.with_motion(first)
    path = T.train(_cfg(world, tmp_path / "run", model=None, motion_module=None, max_steps=1), base=model)
    trained = load_motion(path)
    assert model.with_motion(trained).motions[-1][0] is trained  # fits on top of the first motion
    with pytest.raises(Exception, match="different base model"):
        base.with_motion(trained)
    assert all(
        torch.equal(p, q) for p, q in zip(base.unet.parameters(), model.unet.parameters())
    )  # not baked in


@pytest.mark.slow  # trains
def test_resuming_on_another_base_is_refused(world, tmp_path):
    T.train(_cfg(world, tmp_path / "run", max_steps=1, save_every=1))
    other = animatediff_model(tiny.build_tiny_components(5), build_tiny_motion_adapter(1, zero_out=False))
    with pytest.raises(InputError, match="trained on another base"):
        T.train(_cfg(world, tmp_path / "run", model=None, motion_module=None, max_steps=2, resume="latest"),
                base=other)  # fmt: skip
