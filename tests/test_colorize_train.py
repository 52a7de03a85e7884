"""Colorization fine-tuning (An et al. 2023 on the InstructPix2Pix objective), on the tiny model."""

from __future__ import annotations

import copy
import csv
import json
import random

import numpy as np
import pytest
import torch
from papernodes.models.colorize import train as T
from papernodes.models.colorize.data import ColorFolderDataset, DatasetError, TripletDataset, to_grayscale
from papernodes.models.colorize.instructions import DEFAULT_INSTRUCTION, INSTRUCTIONS, sample_instruction
from papernodes.models.common.loading import load_components
from papernodes.models.common.saving import save_diffusers_folder
from papernodes.models.common.tiny import build_tiny_components
from PIL import Image

RES = 64


def _color_image(rng: np.random.Generator) -> Image.Image:
    """A smooth color gradient with a couple of saturated rectangles: real chroma to learn."""
    yy, xx = np.mgrid[0:RES, 0:RES] / (RES - 1)
    base = rng.uniform(0, 1, size=(3, 3))
    img = np.stack([base[c, 0] + base[c, 1] * xx + base[c, 2] * yy for c in range(3)], axis=-1)
    for _ in range(2):
        x0, y0 = rng.integers(0, RES - 16, size=2)
        w, h = rng.integers(8, 24, size=2)
        img[y0 : y0 + h, x0 : x0 + w] = rng.uniform(0, 1, size=3)
    img = np.clip(img / max(img.max(), 1e-6), 0, 1)
    return Image.fromarray((img * 255).round().astype(np.uint8), "RGB")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model gains nothing from intra-op threads, and with two OpenMP threads on a shared 2-core
    machine a busy neighbour process can make each step ~20x slower (threads wait at every op)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("colorize_train")
    model = root / "tiny_ip2p"
    save_diffusers_folder(build_tiny_components(0, in_channels=8), model)
    data = root / "images"
    (data / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        folder = data / "sub" if i % 2 else data
        _color_image(rng).save(folder / f"img{i}.{'png' if i < 3 else 'jpg'}")
    (data / "notes.txt").write_text("not an image")
    two = root / "two_images"
    two.mkdir()
    for i in range(2):
        _color_image(rng).save(two / f"x{i}.png")
    return {"root": root, "model": model, "data": data, "two": two}


def _config(assets, out, **kw) -> T.TrainConfig:
    base = {
        "model": str(assets["model"]),
        "data": str(assets["data"]),
        "out": str(out),
        "resolution": RES,
        "batch_size": 2,
        "grad_accum": 1,
        "max_steps": 2,
        "save_every": 0,
        "seed": 0,
    }
    base.update(kw)
    return T.TrainConfig(**base)


def _unet_state(folder):
    return {k: v.clone() for k, v in load_components(folder).unet.state_dict().items()}


# ---------------------------------------------------------------------------------------------------


def test_instructions_are_varied_and_sampled_reproducibly():
    assert len(set(INSTRUCTIONS)) >= 40 and len(set(INSTRUCTIONS)) == len(INSTRUCTIONS)
    assert DEFAULT_INSTRUCTION == "Colorize this black and white photo with natural, realistic colors"
    a = [sample_instruction(random.Random(5)) for _ in range(3)]
    assert a == [sample_instruction(random.Random(5)) for _ in range(3)]
    picks = {sample_instruction(random.Random(i)) for i in range(400)}
    assert len(picks) > 30


@pytest.mark.slow  # trains (command line)
def test_cli_trains_and_writes_loadable_diffusers_folder(assets, tmp_path, capsys):
    out = tmp_path / "run"
    rc = T.main(
        [
            "--model",
            str(assets["model"]),
            "--data",
            str(assets["data"]),
            "--out",
            str(out),
            "--resolution",
            str(RES),
            "--batch-size",
            "2",
            "--grad-accum",
            "2",
            "--max-steps",
            "2",
            "--save-every",
            "0",
            "--lr",
            "1e-4",
            "--warmup-steps",
            "2",
            "--seed",
            "1",
        ]
    )
    assert rc == 0
    final = out / "final"
    assert (final / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (out / "unet_raw" / "diffusion_pytorch_model.safetensors").is_file()
    before, after = _unet_state(assets["model"]), _unet_state(final)
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    comps = load_components(final)
    assert comps.unet.config.in_channels == 8
    assert comps.scheduler_config == load_components(assets["model"]).scheduler_config
    vae_in, vae_out = load_components(assets["model"]).vae.state_dict(), comps.vae.state_dict()
    assert all(torch.equal(vae_in[k], vae_out[k]) for k in vae_in)  # frozen
    # final holds the EMA weights, unet_raw the raw ones: they differ after a short EMA warm-up
    from diffusers import UNet2DConditionModel

    raw = UNet2DConditionModel.from_pretrained(str(out / "unet_raw")).state_dict()
    assert any(not torch.equal(raw[k], after[k]) for k in raw)
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.5e-4, 1e-4])  # linear warm-up, then constant
    printed = capsys.readouterr().out
    assert "step 1/2 loss" in printed and "lr 5.000e-05" in printed and "step 2/2 loss" in printed


def _fixed_batch_loss(folder, items, seeds=(11, 12, 13)) -> float:
    comps = load_components(folder)
    sched = T.make_noise_scheduler(comps.scheduler_config)
    texts = T.TextEmbeddingCache(comps.tokenizer, comps.text_encoder, "cpu")
    color = torch.stack([it["color"] for it in items]).repeat(4, 1, 1, 1)
    gray = torch.stack([it["gray"] for it in items]).repeat(4, 1, 1, 1)
    emb = texts([it["instruction"] for it in items] * 4)
    null = texts([""])[0]
    losses = []
    with torch.no_grad():
        for s in seeds:
            g = torch.Generator().manual_seed(s)
            losses.append(
                T.ip2p_loss(comps.unet, comps.vae, sched, color, gray, emb, null, 0.0, generator=g).item()
            )
    return float(np.mean(losses))


@pytest.mark.slow  # trains
def test_overfits_a_fixed_batch(assets, tmp_path):
    cfg = _config(
        assets,
        tmp_path / "overfit",
        data=str(assets["two"]),
        max_steps=30,
        lr=1e-3,
        ema_decay=0.0,
        cond_dropout=0.0,
        max_grad_norm=0.0,
    )
    seen = []
    final = T.train(cfg, progress=lambda step, total, loss: seen.append((step, total, loss)))
    assert [s for s, _, _ in seen] == list(range(1, 31)) and all(t == 30 for _, t, _ in seen)
    ds = ColorFolderDataset(assets["two"], size=RES, seed=0)
    items = [ds[i] for i in range(len(ds))]
    before, after = _fixed_batch_loss(assets["model"], items), _fixed_batch_loss(final, items)
    assert after < 0.7 * before, (before, after)


def test_grayscale_is_bt601_luma(assets):
    ds = ColorFolderDataset(assets["data"], size=RES, seed=3)
    assert len(ds) == 4  # png/jpg found recursively, .txt ignored
    for i in range(len(ds)):
        item = ds[i]
        c, g = item["color"], item["gray"]
        assert c.shape == g.shape == (3, RES, RES) and c.dtype == torch.float32
        assert torch.equal(g[0], 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])
        assert torch.equal(g[0], g[1]) and torch.equal(g[1], g[2])
        # independently, from the file's pixels
        rgb = np.asarray(Image.open(ds.files[i]).convert("RGB"), dtype=np.float64) / 127.5 - 1
        luma = rgb @ np.array([0.299, 0.587, 0.114])
        np.testing.assert_allclose(g[0].numpy(), luma, atol=1e-5)
        assert item["instruction"] in INSTRUCTIONS
        assert ds[i]["instruction"] == item["instruction"]  # seeded per index
    assert torch.equal(to_grayscale(torch.ones(2, 3, 4, 4)), torch.ones(2, 3, 4, 4) * (0.299 + 0.587 + 0.114))


def test_resize_center_crop_and_errors(tmp_path):
    img = Image.new("RGB", (96, 48), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 24, 48))  # blue strip on the left quarter is cropped away
    img.save(tmp_path / "wide.png")
    item = ColorFolderDataset(tmp_path, size=32)[0]
    assert item["color"].shape == (3, 32, 32)
    assert torch.allclose(
        item["color"][:, :, 8:24], torch.tensor([1.0, -1.0, -1.0])[:, None, None], atol=0.02
    )
    with pytest.raises(DatasetError, match="does not exist"):
        ColorFolderDataset(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="empty.*no images"):
        ColorFolderDataset(tmp_path / "empty")
    with pytest.raises(DatasetError, match="no metadata.jsonl"):
        TripletDataset(tmp_path / "empty")


def test_triplet_dataset(tmp_path):
    Image.new("RGB", (40, 40), (200, 30, 10)).save(tmp_path / "c.png")
    Image.new("L", (80, 80), 90).save(tmp_path / "g.png")
    rows = [
        {"gray": "g.png", "color": "c.png", "instruction": "make it red"},
        {"gray": "g.png", "color": "c.png"},
    ]
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    ds = TripletDataset(tmp_path, size=32, random_flip=True)
    assert len(ds) == 2
    a, b = ds[0], ds[1]
    assert a["instruction"] == "make it red" and b["instruction"] in INSTRUCTIONS
    assert a["gray"].shape == a["color"].shape == (3, 32, 32)
    assert torch.allclose(a["gray"], torch.full_like(a["gray"], 90 / 127.5 - 1), atol=1e-6)
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"gray": "nope.png", "color": "c.png"}))
    with pytest.raises(DatasetError, match="line 1.*nope.png"):
        TripletDataset(tmp_path)


@pytest.mark.parametrize("prob", [0.05, 0.1])
def test_conditioning_dropout_frequencies(prob):
    n = 400_000
    drop_text, drop_image = T.conditioning_dropout_masks(n, prob, torch.Generator().manual_seed(0))
    freq = {
        "text only": (drop_text & ~drop_image).float().mean().item(),
        "image only": (~drop_text & drop_image).float().mean().item(),
        "both": (drop_text & drop_image).float().mean().item(),
        "none": (~drop_text & ~drop_image).float().mean().item(),
    }
    tol = 4 * (prob * (1 - prob) / n) ** 0.5  # 4 standard deviations
    for key in ("text only", "image only", "both"):
        assert abs(freq[key] - prob) < tol, freq
    assert abs(freq["none"] - (1 - 3 * prob)) < 4 * tol, freq

    # applied: dropped text rows are the empty-prompt embedding, dropped image rows are zero
    b = 64
    gen = torch.Generator().manual_seed(1)
    dt, di = T.conditioning_dropout_masks(b, 0.3, gen)
    text, image, null = torch.randn(b, 77, 8), torch.randn(b, 4, 2, 2) + 5, torch.randn(77, 8)
    t2, i2 = T.apply_conditioning_dropout(text, image, null, dt, di)
    for k in range(b):
        assert torch.equal(t2[k], null if dt[k] else text[k])
        assert torch.equal(i2[k], torch.zeros_like(image[k]) if di[k] else image[k])


def test_expand_conv_in_is_zero_init():
    unet = build_tiny_components(0, in_channels=4).unet
    ref = copy.deepcopy(unet)
    T.expand_conv_in_for_ip2p(unet)
    assert unet.conv_in.in_channels == 8 and unet.config.in_channels == 8
    assert torch.count_nonzero(unet.conv_in.weight[:, 4:]) == 0
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 4, 8, 8, generator=g), torch.tensor([10, 700])
    emb = torch.randn(2, 77, 48, generator=g)
    with torch.no_grad():
        expected = ref(x, t, encoder_hidden_states=emb).sample
        for extra in (torch.zeros(2, 4, 8, 8), torch.randn(2, 4, 8, 8, generator=g) * 10):
            got = unet(torch.cat([x, extra], 1), t, encoder_hidden_states=emb).sample
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert T.expand_conv_in_for_ip2p(unet) is unet and unet.conv_in.in_channels == 8  # idempotent


@pytest.mark.slow  # trains
def test_plain_sd_model_is_expanded_and_trains(assets, tmp_path):
    sd = tmp_path / "sd"
    save_diffusers_folder(build_tiny_components(1, in_channels=4), sd)
    final = T.train(_config(assets, tmp_path / "run", model=str(sd), max_steps=1))
    assert load_components(final).unet.config.in_channels == 8


@pytest.mark.slow  # trains
def test_resume_restores_step_count_and_stop(assets, tmp_path):
    out = tmp_path / "run"
    T.train(_config(assets, out, max_steps=2, save_every=2))
    ckpt = out / "checkpoint-2"
    assert ckpt.is_dir() and json.loads((ckpt / "trainer_state.json").read_text())["step"] == 2
    seen = []
    T.train(
        _config(assets, out, max_steps=4, save_every=2, resume=str(ckpt)),
        progress=lambda step, total, loss: seen.append(step),
    )
    assert seen == [3, 4]
    assert json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())["step"] == 4
    assert [int(r["step"]) for r in csv.DictReader((out / "log.csv").open())] == [1, 2, 3, 4]

    # cancel: should_stop ends the run after the current step, final and a checkpoint are still written
    seen.clear()
    final = T.train(
        _config(assets, out, max_steps=10, save_every=100, resume="latest"),
        progress=lambda step, total, loss: seen.append(step),
        should_stop=lambda: bool(seen),
    )
    assert seen == [5] and (final / "unet" / "config.json").is_file()
    assert (out / "checkpoint-5").is_dir()
