"""Training pieces of the proving ground: caption token tagging, Min-SNR weights, the decoder-only VAE phase."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from papernodes.models.common.loading import load_tokenizer
from papernodes.models.common.tiny import TINY_CLIP, TINY_VAE
from papernodes.models.proving_ground.text_pretrain import (
    TextPretrainSettings,
    noun_token_ids,
    pretrain_text_encoder,
    token_targets,
)
from papernodes.models.proving_ground.train_base import (
    VAEPhase,
    VAESettings,
    min_snr_weights,
    scaled_linear_alphas_cumprod,
    tokenize,
    train_vae,
)
from papernodes.models.proving_ground.world import COLOR_NAMES, SHAPES, TEXTURES, WorldDataset, caption


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def test_every_shape_noun_is_found_even_when_split_into_several_tokens(tokenizer):
    nouns = noun_token_ids(tokenizer)
    assert sorted(set(nouns.values())) == sorted(SHAPES) and len(nouns) == 2 * len(SHAPES)
    assert any(len(k) > 1 for k in nouns)  # "triangles" is two BPE tokens: matched as a sequence


def test_token_targets_tag_nouns_background_and_count(tokenizer):
    text = "a yellow triangle and two red crosses on a checkered blue background"
    ids = tokenize(tokenizer, [text])
    t = token_targets(tokenizer, ids, [text])
    words = tokenizer.convert_ids_to_tokens(ids[0].tolist())
    tagged = {words[j]: (COLOR_NAMES[int(t["obj_color"][0, j])], SHAPES[int(t["obj_shape"][0, j])])
              for j in torch.nonzero(t["obj_color"][0] >= 0).flatten().tolist()}  # fmt: skip
    assert tagged == {"triangle</w>": ("yellow", "triangle"), "crosses</w>": ("red", "cross")}
    (j,) = torch.nonzero(t["bg_color"][0] >= 0).flatten().tolist()
    assert words[j] == "background</w>"
    assert (
        COLOR_NAMES[int(t["bg_color"][0, j])] == "blue"
        and TEXTURES[int(t["bg_texture"][0, j])] == "checkered"
    )
    assert int(t["count"][0]) == 3 - 1


def test_token_targets_on_world_captions_have_one_tag_per_group(tokenizer):
    ds = WorldDataset(40, seed=3)
    caps = [caption(ds.scene(i)) for i in range(40)]
    t = token_targets(tokenizer, tokenize(tokenizer, caps), caps)
    n_groups = [len(c.split(" on ")[0].replace(" and ", ",").split(",")) for c in caps]
    assert (t["obj_color"] >= 0).sum(1).tolist() == n_groups
    assert (t["bg_color"] >= 0).sum(1).tolist() == [1] * 40


@pytest.mark.slow  # trains
def test_text_pretraining_makes_the_background_token_say_its_color(tokenizer):
    """After tagging, the hidden state at "background" separates captions that differ only in that color."""
    from transformers import CLIPTextConfig, CLIPTextModel

    ds = WorldDataset(400, seed=4)
    caps = [caption(ds.scene(i)) for i in range(400)]
    ids = tokenize(tokenizer, caps)
    torch.manual_seed(0)
    model = CLIPTextModel(CLIPTextConfig(**TINY_CLIP))
    start = pretrain_text_encoder(model, tokenizer, ids, caps, TextPretrainSettings(steps=1, batch_size=64))
    final = pretrain_text_encoder(model, tokenizer, ids, caps, TextPretrainSettings(steps=60, batch_size=64))
    assert final < 0.5 * start, (start, final)
    pair = ["a red star on a blue background", "a red star on a green background"]
    with torch.no_grad():
        h = model(tokenize(tokenizer, pair))[0]
    j = tokenizer.convert_ids_to_tokens(tokenize(tokenizer, pair[:1])[0].tolist()).index("background</w>")
    star = j - 4  # "star" comes before "on a blue": causal attention, so it cannot see the background
    assert torch.allclose(h[0, star], h[1, star], atol=1e-5)
    assert (h[0, j] - h[1, j]).norm() > 0.1 * h[0, j].norm()


def test_min_snr_weights_match_the_formula_and_cap_the_clean_steps():
    ac = scaled_linear_alphas_cumprod().double()
    w = min_snr_weights(ac, 5.0)
    snr = ac / (1 - ac)
    assert torch.allclose(w, torch.minimum(snr, torch.tensor(5.0, dtype=torch.float64)) / snr)
    noisy = snr < 5
    assert torch.equal(w[noisy], torch.ones_like(w[noisy]))  # weight 1 wherever SNR < gamma
    assert w[0] < 0.01 and torch.all(w[1:] >= w[:-1])  # nearly clean steps weigh little; monotone in t
    assert torch.equal(min_snr_weights(ac, None), torch.ones_like(ac))


@pytest.mark.slow  # trains
def test_decoder_only_phase_keeps_the_latent_space(monkeypatch):
    """The last VAE phase trains the decoder alone: encoder weights and the scaling factor stay the same."""
    from diffusers import AutoencoderKL
    from papernodes.models.proving_ground import train_base

    images = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    monkeypatch.setattr(train_base, "world_images", lambda n, seed, cache_dir=None: (images, [""] * 8))
    torch.manual_seed(0)
    small = {**TINY_VAE, "down_block_types": ("DownEncoderBlock2D",) * 2,
             "up_block_types": ("UpDecoderBlock2D",) * 2, "block_out_channels": (32, 32)}  # fmt: skip
    first = VAESettings(phases=(VAEPhase(2, 32, 2, 1e-3, False),), images=8)
    vae = train_vae(first, init=AutoencoderKL(**small))
    enc = {k: v.clone() for k, v in vae.encoder.state_dict().items()}
    dec = {k: v.clone() for k, v in vae.decoder.state_dict().items()}
    scale = vae.config.scaling_factor
    both = VAESettings(
        phases=(VAEPhase(2, 32, 2, 1e-3, False), VAEPhase(3, 32, 2, 1e-3, False, True)), images=8
    )
    vae = train_vae(both, init=vae, start_phase=1)
    assert all(torch.equal(v, vae.encoder.state_dict()[k]) for k, v in enc.items())
    assert any(not torch.equal(v, vae.decoder.state_dict()[k]) for k, v in dec.items())
    assert vae.config.scaling_factor == scale


@pytest.mark.slow  # trains
def test_teacher_phase_continues_from_init_and_reproduce_quick_runs(tmp_path, monkeypatch):
    """A later teacher phase starts from the given weights (lr 0: the EMA copies equal them exactly, offset
    noise on), and the one reproduce command runs both teacher phases end to end (quick mode)."""
    import shutil
    from dataclasses import replace

    from diffusers import AutoencoderKL
    from papernodes.models.common.loading import load_components
    from papernodes.models.proving_ground import reproduce, zoo
    from papernodes.models.proving_ground.train_base import TEACHER_PHASES, train_teacher

    base = zoo.base_dir(tmp_path / "w")
    shutil.copytree(zoo.base_dir() / "vae", base / "vae")
    vae = AutoencoderKL.from_pretrained(base / "vae").eval().requires_grad_(False)
    shipped = load_components(zoo.base_dir())
    init = (shipped.text_encoder, shipped.unet)
    before = {k: v.clone() for k, v in shipped.unet.state_dict().items()}
    phase = replace(TEACHER_PHASES[1], steps=2, images=16, batch_size=2, lr=0.0)
    assert phase.offset_noise > 0 and phase.text_pretrain is None
    _, unet = train_teacher(vae, phase, cache_dir=tmp_path / "cache", init=init)
    assert all(torch.equal(before[k], v) for k, v in unet.state_dict().items())

    argv = ["--weights", str(tmp_path / "w"), "--cache", str(tmp_path / "cache"), "--stages", "teacher",
            "--quick", "--threads", "1"]  # fmt: skip
    assert reproduce.main(argv) == 0
    comps = load_components(base)
    assert comps.unet.config.block_out_channels == shipped.unet.config.block_out_channels


def test_teacher_captions_are_the_captions_of_teacher_scenes():
    """SwiftBrush distils on text only: the caption list equals the rendered scenes' (focus + full scenes)."""
    from dataclasses import replace

    from papernodes.models.proving_ground.train_base import TEACHER_PHASES, teacher_captions, teacher_scenes

    final = replace(TEACHER_PHASES[-1], images=12)
    assert final.layout == "focus" and final.full_fraction > 0
    images, captions = teacher_scenes(final, None, seed=3)
    assert captions == teacher_captions(final, 3) and len(captions) == len(images) == 15


@pytest.mark.slow  # trains
def test_decoder_phase_keeps_the_encoder_and_draws_its_latents_better(monkeypatch):
    """`train_decoder` (the reproduce stage `decoder`) returns a copy whose encoder, quant conv and scaling
    factor are the input's exactly, and whose EMA decoder reconstructs the training scenes better; the input
    VAE is left as it was."""
    from diffusers import AutoencoderKL
    from papernodes.models.proving_ground import train_base

    rng = np.random.default_rng(0)
    images = np.repeat(np.repeat(rng.integers(0, 255, (8, 8, 8, 3), dtype=np.uint8), 4, 1), 4, 2)  # blocky
    seen = []

    def fake_world_images(n, seed, cache_dir=None, layout="full"):
        seen.append((n, seed, layout))
        return images[:n], [""] * n

    monkeypatch.setattr(train_base, "world_images", fake_world_images)
    torch.manual_seed(0)
    small = {**TINY_VAE, "down_block_types": ("DownEncoderBlock2D",) * 2,
             "up_block_types": ("UpDecoderBlock2D",) * 2, "block_out_channels": (32, 32)}  # fmt: skip
    vae = AutoencoderKL(**small).eval().requires_grad_(False)
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    pixels = train_base.to_pixels(images)

    def error(v):
        with torch.no_grad():
            return float((v.decode(v.encode(pixels).latent_dist.mean).sample - pixels).abs().mean())

    settings = train_base.DecoderSettings(steps=40, batch_size=4, lr=2e-3, images=4, noisy_steps=0)
    out = train_base.train_decoder(vae, settings)
    assert seen == [(4, 0, "full"), (4, 0, "focus")]
    assert all(torch.equal(v, vae.state_dict()[k]) for k, v in before.items())  # input untouched
    for name in ("encoder", "quant_conv"):
        mine, theirs = getattr(out, name).state_dict(), getattr(vae, name).state_dict()
        assert all(torch.equal(v, theirs[k]) for k, v in mine.items())
    assert out.config.scaling_factor == vae.config.scaling_factor
    assert error(out) < 0.92 * error(vae), (error(out), error(vae))


def test_noisy_decoder_steps_add_latent_noise_to_a_fraction_of_each_batch(monkeypatch):
    """The decoder phase's second part (`noisy_steps`) decodes the first `noisy_fraction` of each batch from
    posterior samples plus Gaussian noise of a std drawn from U(0, latent_noise / scaling factor); the rest, and
    every latent of the first part, are plain posterior samples. One scene repeated, so each latent's deviation
    from the posterior mean, in posterior stds, shows what was added."""
    from diffusers import AutoencoderKL
    from papernodes.models.proving_ground import train_base

    image = np.full((4, 32, 32, 3), 100, dtype=np.uint8)
    monkeypatch.setattr(
        train_base, "world_images", lambda n, seed, cache_dir=None, layout="full": (image[:n], [""] * n)
    )
    torch.manual_seed(0)
    small = {**TINY_VAE, "down_block_types": ("DownEncoderBlock2D",) * 2,
             "up_block_types": ("UpDecoderBlock2D",) * 2, "block_out_channels": (32, 32)}  # fmt: skip
    vae = AutoencoderKL(**small).eval().requires_grad_(False)
    post = vae.encode(train_base.to_pixels(image[:1])).latent_dist
    seen = []
    decode = AutoencoderKL.decode
    monkeypatch.setattr(
        AutoencoderKL, "decode", lambda self, z, *a, **k: seen.append(z.detach()) or decode(self, z, *a, **k)
    )
    noise = 3.0  # in posterior stds after the division below
    latent_noise = noise * float(post.std.mean()) * vae.config.scaling_factor
    settings = train_base.DecoderSettings(
        steps=20, noisy_steps=20, batch_size=4, lr=1e-12, images=4, latent_noise=latent_noise
    )
    train_base.train_decoder(vae, settings)
    assert len(seen) == 40 and all(z.shape[0] == 4 for z in seen)
    spread = torch.stack([((z - post.mean) / post.std).flatten(1).std(1) for z in seen])  # [40, 4]
    plain = torch.cat([spread[:20].flatten(), spread[20:, 2:].flatten()])
    torch.testing.assert_close(plain.mean(), torch.tensor(1.0), rtol=0, atol=0.05)  # posterior samples only
    added = (spread[20:, :2] ** 2 - 1).clamp(min=0).sqrt()  # the added noise's std per latent, about U(0, 3)
    assert 1.0 < float(added.mean()) < 2.0 and float(added.max()) < noise * 1.15, added


@pytest.mark.slow  # trains
def test_reproduce_decoder_stage_rewrites_only_the_decoder(tmp_path):
    """The reproduce stage `decoder` (quick mode) rewrites the shipped VAE folder with the same encoder tensors
    and scaling factor (the latent space every model was trained on) and a changed decoder."""
    import shutil

    from papernodes.models.proving_ground import reproduce, zoo
    from safetensors.torch import load_file

    folder = zoo.base_dir(tmp_path / "w") / "vae"
    shutil.copytree(zoo.base_dir() / "vae", folder)
    name = "diffusion_pytorch_model.safetensors"
    before = load_file(folder / name)
    argv = ["--weights", str(tmp_path / "w"), "--cache", str(tmp_path / "cache"), "--stages", "decoder",
            "--quick", "--threads", "1"]  # fmt: skip
    assert reproduce.main(argv) == 0
    after = load_file(folder / name)
    assert after.keys() == before.keys()
    kept = [k for k in before if k.startswith(("encoder.", "quant_conv."))]
    assert kept and all(torch.equal(before[k], after[k]) for k in kept)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("decoder."))
    config = json.loads((folder / "config.json").read_text())
    shipped = json.loads((zoo.base_dir() / "vae" / "config.json").read_text())
    assert config["scaling_factor"] == shipped["scaling_factor"]
