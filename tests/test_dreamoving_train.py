"""DreaMoving trainer: clip/content datasets (PyAV mp4s written here), both stages' losses on tiny models
(overfit on a fixed batch, only the intended parameters move), exports that the loaders read back with
identical outputs, bit-identical resume on the CPU, and clear errors for bad data layouts."""

from __future__ import annotations

import copy
import csv
import json

import numpy as np
import pytest
import torch
from papernodes.kernels.processor import attention_hooks
from papernodes.models.common import image_prompt as ipa
from papernodes.models.common import tiny
from papernodes.models.common.animatediff import build_tiny_motion_adapter, save_motion_adapter_original
from papernodes.models.common.pose import render_openpose
from papernodes.models.common.saving import save_diffusers_folder
from papernodes.models.common.training import collate, epoch_batches, micro_batch_generator
from papernodes.models.dreamoving import train as T
from papernodes.models.dreamoving import train_data as D
from papernodes.models.dreamoving.content_guider import ContentGuider, ImagePrompt
from papernodes.models.dreamoving.video_controlnet import VideoControlNet, load_video_controlnet

RES, W, H, N_FRAMES = 32, 48, 40, 8
LEVELS = [10 + 30 * k for k in range(N_FRAMES)]  # frame k is (mostly) grey level LEVELS[k]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def write_mp4(path, frames: np.ndarray, fps: int = 8) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"qscale": "2"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _video(seed: int, n: int = N_FRAMES) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = np.zeros((n, H, W, 3), np.uint8)
    for k in range(n):
        frames[k] = LEVELS[k % len(LEVELS)]
        x, y = rng.integers(0, W - 12), rng.integers(0, H - 12)
        frames[k, y : y + 12, x : x + 12] = rng.integers(0, 256, 3)  # a coloured square that moves
    return frames


def _pose(k: int) -> dict:
    body = []
    for j in range(18):
        body += [0.2 + 0.03 * j + 0.01 * k, 0.15 + 0.04 * j, 1.0]
    return {"people": [{"pose_keypoints_2d": body}], "canvas_width": W, "canvas_height": H}


def _save_png(path, arr) -> None:
    from PIL import Image

    Image.fromarray(arr).save(path)


def make_clips(root, n_frames: int = N_FRAMES):
    root.mkdir(parents=True, exist_ok=True)
    write_mp4(root / "a.mp4", _video(0, n_frames))
    (root / "a.txt").write_text("a person dancing\n")
    (root / "a").mkdir(exist_ok=True)
    rng = np.random.default_rng(5)
    for k in range(n_frames):
        _save_png(root / "a" / f"{k:05d}.png", rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    write_mp4(root / "b.mp4", _video(1, n_frames))
    (root / "b.txt").write_text("a robot walking")
    (root / "b.pose.json").write_text(json.dumps([_pose(k) for k in range(n_frames)]))
    return root


def make_content(root):
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    for name in ("p", "q"):
        _save_png(root / f"{name}.png", rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
        _save_png(root / f"{name}.face.png", rng.integers(0, 256, (20, 16, 3), dtype=np.uint8))
        _save_png(root / f"{name}.clothes.png", rng.integers(0, 256, (30, 24, 3), dtype=np.uint8))
        (root / f"{name}.txt").write_text(f"person {name}")
    return root


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from diffusers import ControlNetModel

    root = tmp_path_factory.mktemp("dm_train")
    comps = tiny.build_tiny_components(0)
    save_diffusers_folder(comps, root / "sd")
    save_motion_adapter_original(build_tiny_motion_adapter(seed=1, zero_out=False), root / "mm.safetensors")
    torch.manual_seed(2)
    cn = ControlNetModel.from_unet(comps.unet)
    tiny._perturb(cn, torch.Generator().manual_seed(3), scale=0.1)
    cn.save_pretrained(str(root / "cn"), safe_serialization=True)
    ipa.save_clip_vision(ipa.build_tiny_clip_vision(seed=4), root / "clip")
    return {
        "root": root,
        "sd": root / "sd",
        "mm": root / "mm.safetensors",
        "cn": root / "cn",
        "clip": root / "clip",
        "clips": make_clips(root / "clips"),
        "content": make_content(root / "content"),
    }


def _cfg(assets, stage: str, out, **kw) -> T.TrainConfig:
    base = dict(stage=stage, model=str(assets["sd"]), out=str(out), resolution=RES, lr=1e-3, save_every=0)
    if stage == "controlnet":
        base.update(
            data=str(assets["clips"]),
            motion_module=str(assets["mm"]),
            controlnet=str(assets["cn"]),
            frames=3,
            stride=2,
        )
    else:
        base.update(data=str(assets["content"]), clip_vision=str(assets["clip"]), adapter_variant="plain")
    base.update(kw)
    return T.TrainConfig(**base)


def _state(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ----------------------------------------------------------------------------------------------------
# Data


def test_control_clips_sample_strided_frames_with_aligned_controls(assets):
    ds = D.ControlClipDataset(assets["clips"], frames=3, stride=2, resolution=RES, seed=0)
    assert [c.name for c in ds.clips] == ["a", "b"] and ds.clips[0].num_frames == N_FRAMES
    starts = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            idx = ds.frame_indices(i)
            assert idx == [item["start"] + 2 * k for k in range(3)] and 0 <= item["start"] <= N_FRAMES - 5
            starts.add(item["start"])
            assert item["pixels"].shape == (3, 3, RES, RES) and item["control"].shape == (3, 3, RES, RES)
            # the frames are the ones asked for: the background grey level (the median pixel) matches
            level = (item["pixels"].flatten(1).median(dim=1).values + 1) / 2 * 255
            assert torch.allclose(level, torch.tensor([float(LEVELS[j]) for j in idx]), atol=4)
            clip = ds.clips[i]
            if clip.pose is not None:
                want = render_openpose([_pose(j) for j in idx], W, H).permute(0, 3, 1, 2)
            else:
                want = torch.stack([torch.from_numpy(D.read_image(clip.control_frames[j])) for j in idx])
                want = want.permute(0, 3, 1, 2).float() / 255
            assert torch.equal(item["control"], D.resize_center_crop(want, RES).clamp(0, 1))
            assert item["caption"] == ("a person dancing" if i == 0 else "a robot walking")
    assert len(starts) > 1  # starts are random per epoch ...
    ds.set_epoch(3)
    assert torch.equal(ds[0]["pixels"], ds[0]["pixels"])  # ... and reproducible


def test_resize_center_crop_is_exact_on_square_and_crops_the_centre():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    assert torch.equal(D.resize_center_crop(x[..., 1:5], 4), x[..., 1:5])
    assert torch.equal(D.resize_center_crop(x, 4), x[..., 1:5])


def test_content_dataset_sibling_and_metadata_layouts(assets, tmp_path):
    ds = D.ContentDataset(assets["content"], resolution=RES, clip_size=32)
    assert len(ds) == 2
    item = ds[1]
    face = torch.from_numpy(D.read_image(assets["content"] / "q.face.png")).float()[None] / 255
    assert torch.equal(item["face"], ipa.preprocess_clip_images(face, 32)[0])
    assert (
        item["pixels"].shape == (3, RES, RES) and item["pixels"].min() >= -1 and item["caption"] == "person q"
    )
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "imgs").mkdir()
    for name in ("q.png", "q.face.png", "q.clothes.png"):
        (meta / "imgs" / name).write_bytes((assets["content"] / name).read_bytes())
    row = {
        "image": "imgs/q.png",
        "face": "imgs/q.face.png",
        "clothes": "imgs/q.clothes.png",
        "caption": "person q",
    }
    (meta / "metadata.jsonl").write_text(json.dumps(row) + "\n\n")
    other = D.ContentDataset(meta, resolution=RES, clip_size=32)[0]
    assert all(torch.equal(other[k], item[k]) for k in ("pixels", "face", "clothes"))


def _break(kind: str, root):
    make_clips(root)
    if kind == "caption":
        (root / "a.txt").unlink()
    elif kind == "control":
        for p in (root / "a").iterdir():
            p.unlink()
        (root / "a").rmdir()
    elif kind == "count":
        (root / "a" / "00007.png").unlink()
    elif kind == "pose_count":
        (root / "b.pose.json").write_text(json.dumps([_pose(0)] * 3))
    elif kind == "pose_json":
        (root / "b.pose.json").write_text("{not json")
    elif kind == "both":
        (root / "a.pose.json").write_text("[]")
    elif kind == "corrupt":
        (root / "a.mp4").write_bytes(b"this is not a video")
    elif kind == "empty":
        for p in root.glob("*.mp4"):
            p.unlink()


@pytest.mark.parametrize(
    "kind, needle",
    [
        ("caption", "a.txt: missing"),
        ("control", "a.mp4: no control sequence; expected a folder a/"),
        ("count", "has 7 control images, a.mp4 has 8 frames"),
        ("pose_count", "b.pose.json: has 3 pose frames, the video has 8"),
        ("pose_json", "b.pose.json: not valid JSON"),
        ("both", "both a/ and a.pose.json exist"),
        ("corrupt", "a.mp4: cannot be opened as a video"),
        ("empty", "no .mp4 videos found"),
    ],
)
def test_bad_clip_layouts_name_the_file(kind, needle, tmp_path):
    root = tmp_path / "clips"
    _break(kind, root)
    with pytest.raises(D.DataLayoutError, match=None) as info:
        D.ControlClipDataset(root, frames=3, stride=2, resolution=RES)
    assert needle in str(info.value)


def test_bad_lengths_and_content_layouts(assets, tmp_path):
    with pytest.raises(D.DataLayoutError, match="has 8 frames; 4 frames with stride 3 need at least 10"):
        D.ControlClipDataset(assets["clips"], frames=4, stride=3)
    content = make_content(tmp_path / "c")
    (content / "p.face.png").unlink()
    with pytest.raises(D.DataLayoutError, match=r"p\.png: missing its face crop; expected p\.face\.png"):
        D.ContentDataset(content)
    (content / "metadata.jsonl").write_text('{"image": "q.png", "face": "q.face.png", "caption": "x"}\n')
    with pytest.raises(D.DataLayoutError, match=r"metadata\.jsonl, line 1: missing 'clothes'"):
        D.ContentDataset(content)
    (content / "metadata.jsonl").write_text(
        '{"image": "q.png", "face": "nope.png", "clothes": "q.png", "text": "x"}'
    )
    with pytest.raises(D.DataLayoutError, match=r"line 1: face file .*nope\.png not found"):
        D.ContentDataset(content)


def test_epoch_batches_shard_every_index_once():
    for procs in (1, 2, 3):
        got = [i for r in range(procs) for b in epoch_batches(7, 2, 0, 1, procs, r) for i in b]
        full = 7 - (7 % (2 * procs) if 7 % (2 * procs) < procs else 0)
        assert sorted(got) == sorted(
            torch.randperm(7, generator=torch.Generator().manual_seed(1)).tolist()[:full]
        )
    assert epoch_batches(5, 2, 3, 0) == epoch_batches(5, 2, 3, 0) != epoch_batches(5, 2, 3, 1)


# ----------------------------------------------------------------------------------------------------
# Losses: overfit a fixed batch, only the intended parameters move


def _overfit(cfg, steps: int):
    comps = T.load_model_fresh(cfg.model)
    stage, frozen, ds = T.setup_stage(cfg, comps, torch.device("cpu"), torch.float32)
    stage.train()
    batch = collate([ds[0]])
    frozen_before = {n: _state(m) for n, m in (("unet", frozen.unet), ("vae", frozen.vae))}
    stage_before = _state(stage)
    params = [p for p in stage.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)

    def loss():
        return T.stage_loss(
            stage, frozen, batch, micro_batch_generator(0, 0, 0), cfg
        )  # same draws every time

    losses = []
    for _ in range(steps):
        value = loss()
        opt.zero_grad()
        value.backward()
        opt.step()
        losses.append(value.item())
    with torch.no_grad():
        losses.append(float(loss()))
    for n, m in (("unet", frozen.unet), ("vae", frozen.vae)):
        assert _same(frozen_before[n], _state(m)), f"frozen {n} changed"
    after = _state(stage)
    trained = {n for n, p in stage.named_parameters() if p.requires_grad}
    moved = {k for k in after if not torch.equal(after[k], stage_before[k])}
    return losses, trained, moved, stage


@pytest.mark.slow  # trains
def test_controlnet_stage_overfits_and_trains_only_motion_blocks(assets, tmp_path):
    cfg = _cfg(assets, "controlnet", tmp_path, lr=3e-3)
    losses, trained, moved, stage = _overfit(cfg, 6)
    assert losses[-1] < 0.9 * losses[0], losses
    assert trained and all(n.startswith("vcn.motion_modules.") for n in trained)
    assert moved and moved <= trained  # ControlNet body (and the frozen U-Net / VAE above) bit-identical
    assert any(".proj_out." in n for n in moved)  # zero-init blocks start learning at their output
    assert isinstance(stage.vcn, VideoControlNet) and set(stage.vcn.motion_sources.values()) == {"zero-init"}
    # --train-controlnet: the image ControlNet joins
    cfg2 = _cfg(assets, "controlnet", tmp_path, train_controlnet=True, motion_init="adapter")
    stage2 = T.setup_stage(cfg2, T.load_model_fresh(cfg2.model), torch.device("cpu"), torch.float32)[0]
    names = {n for n, p in stage2.named_parameters() if p.requires_grad}
    assert {n for n, _ in stage2.named_parameters()} == names
    assert "adapter" in next(iter(stage2.vcn.motion_sources.values()))


@pytest.mark.slow  # trains
def test_guider_stage_overfits_and_trains_only_the_adapters(assets, tmp_path):
    cfg = _cfg(assets, "guider", tmp_path, lr=3e-3, cond_dropout=0.0)
    losses, trained, moved, stage = _overfit(cfg, 6)
    assert losses[-1] < 0.9 * losses[0], losses
    assert trained == {n for n, _ in stage.named_parameters()}
    assert moved == trained  # every projection and to_k_ip/to_v_ip learns; frozen U-Net/VAE checked above


@pytest.mark.parametrize("stage", ["controlnet", "guider"])
@pytest.mark.slow  # > 1 s on a quiet machine: keeps the fast tier under a minute
def test_gradient_checkpointing_gives_identical_gradients(assets, tmp_path, stage):
    """The guider's hook stays installed through backward, where checkpointing re-runs the guided layers."""
    grads = []
    for gc in (False, True):
        cfg = _cfg(assets, stage, tmp_path, gradient_checkpointing=gc, train_controlnet=True)
        st, frozen, ds = T.setup_stage(cfg, T.load_model_fresh(cfg.model), torch.device("cpu"), torch.float32)
        st.train()
        T.stage_loss(st, frozen, collate([ds[0]]), micro_batch_generator(0, 0, 0), cfg).backward()
        frozen.close()
        grads.append({n: p.grad for n, p in st.named_parameters() if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and all(torch.equal(grads[0][n], grads[1][n]) for n in grads[0])
    assert any(g.abs().sum() > 0 for g in grads[0].values())


def test_new_adapter_starts_from_the_unets_text_projections(assets):
    comps = tiny.build_tiny_components(0)
    clip = ipa.build_tiny_clip_vision(seed=4)
    adapter = T.new_ip_adapter(comps.unet, clip, "plus", None, "face")
    modules = T.attention_modules(comps.unet)
    for j, layer in enumerate(ipa.cross_attention_layers(comps.unet)):
        assert torch.equal(adapter.to_k_ip[j].weight, modules[layer].to_k.weight)
        assert torch.equal(adapter.to_v_ip[j].weight, modules[layer].to_v.weight)
    assert adapter.variant == "plus-face" and adapter.image_proj.latents.shape[1] == 16


def test_guider_dropout_replaces_image_prompts_by_the_unconditional_features(assets, tmp_path):
    """cond_dropout 1/3 with one draw u: u < 1/3 text only, < 2/3 both, else image only; with every image
    dropped the stage sees only the unconditional features - checked by recomputing the loss by hand."""
    cfg = _cfg(assets, "guider", tmp_path, cond_dropout=1 / 3)
    stage, frozen, ds = T.setup_stage(cfg, T.load_model_fresh(cfg.model), torch.device("cpu"), torch.float32)
    batch = collate([ds[0], ds[1]])
    gen = micro_batch_generator(0, 0, 5)
    with torch.no_grad():
        got = T.stage_loss(stage, frozen, batch, copy.deepcopy(gen), cfg)
        g = copy.deepcopy(gen)
        latents = T._encode_latents(frozen.vae, batch["pixels"], g, torch.float32)
        noise = torch.randn(latents.shape, generator=g)
        t = torch.randint(0, 1000, (2,), generator=g)
        u = torch.rand(2, generator=g)
        text = frozen.texts(batch["caption"])
        text = torch.where((u < 2 / 3)[:, None, None], frozen.null_text.expand_as(text), text)
        drop_image = u >= 1 / 3
        embeds = {}
        for name in T.PROMPTS:
            cond = T.clip_features(frozen.clip_vision, batch[name])["embeds"]
            embeds[name] = torch.where(
                drop_image[:, None], torch.zeros_like(cond), cond
            )  # plain: zero embedding
        pred = stage(frozen.unet, frozen.noise_scheduler.add_noise(latents, noise, t), t, text, embeds)
        assert torch.equal(got, torch.nn.functional.mse_loss(pred, noise))


# ----------------------------------------------------------------------------------------------------
# End to end: exports load back identically, resume is bit-identical


def _log(out) -> list[dict]:
    return list(csv.DictReader((out / "log.csv").open()))


@pytest.mark.slow  # trains
def test_controlnet_training_exports_and_resumes_bit_identically(assets, tmp_path):
    kw = dict(grad_accum=2, save_every=2, max_grad_norm=1.0)
    full = T.train(_cfg(assets, "controlnet", tmp_path / "full", max_steps=4, **kw))
    vcn = full.modules["video_controlnet"]
    loaded = load_video_controlnet(full.final / "video_controlnet")
    assert _same(_state(loaded), _state(vcn))
    g = torch.Generator().manual_seed(0)
    sample, text = torch.randn(3, 4, 4, 4, generator=g), torch.randn(3, 7, 48, generator=g)
    cond = torch.rand(3, 3, RES, RES, generator=g)
    with torch.no_grad():
        a, b = loaded(sample, 500, text, cond, 3), vcn(sample, 500, text, cond, 3)
    # distinct instances with equal weights (above): float noise only, CPU kernels are not bit-stable
    # across instances (see test_dreamoving_controlnet.DISTINCT_INSTANCE_TOL)
    for x, y in zip([*a[0], a[1]], [*b[0], b[1]]):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)
    # the image ControlNet's weights are the input file's, bit for bit; the motion blocks trained
    from papernodes.models.common.controlnet import load_controlnet

    assert _same(_state(loaded.controlnet), _state(load_controlnet(assets["cn"])))
    assert any(v.abs().sum() > 0 for k, v in loaded.motion_modules.state_dict().items() if ".proj_out." in k)

    # interrupted at step 2, resumed to 4: same weights and losses as the uninterrupted run
    part = tmp_path / "part"
    T.train(_cfg(assets, "controlnet", part, max_steps=2, **kw))
    seen = []
    resumed = T.train(
        _cfg(assets, "controlnet", part, max_steps=4, resume="latest", **kw),
        progress=lambda step, total, loss: seen.append(step),
    )
    assert seen == [3, 4]
    assert _same(_state(resumed.modules["video_controlnet"]), _state(vcn))
    assert [r["loss"] for r in _log(part)] == [r["loss"] for r in _log(tmp_path / "full")]
    assert sorted(p.name for p in part.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]


@pytest.mark.slow  # trains
def test_guider_training_exports_ip_adapter_files_and_resumes_with_ema(assets, tmp_path):
    kw = dict(ema_decay=0.9, adapter_variant="plus", num_tokens=4)  # batch 1: resume mid-epoch
    full = T.train(_cfg(assets, "guider", tmp_path / "full", max_steps=3, **kw))
    files = sorted(p.name for p in full.final.iterdir())
    assert files == ["clothes_ip_adapter.safetensors", "face_ip_adapter.safetensors", "train_info.json"]
    from safetensors.torch import load_file

    keys = load_file(str(full.final / "face_ip_adapter.safetensors"))
    assert "image_proj.latents" in keys and "ip_adapter.1.to_k_ip.weight" in keys
    unet = tiny.build_tiny_components(0).unet
    clip = ipa.build_tiny_clip_vision(seed=4)
    images = torch.rand(1, 40, 36, 3, generator=torch.Generator().manual_seed(1))
    x, ctx = torch.randn(1, 4, 4, 4), torch.randn(1, 7, 48)
    outs = []
    for adapters in (
        full.modules,
        {n: ipa.load_ip_adapter(full.final / f"{n}_ip_adapter.safetensors") for n in T.PROMPTS},
    ):
        assert adapters["face"].variant == "plus-face" and adapters["clothes"].variant == "plus"
        face = ImagePrompt.from_images(adapters["face"], clip, images)
        clothes = ImagePrompt.from_images(adapters["clothes"], clip, images, 0.7)
        with torch.no_grad(), attention_hooks(unet, [ContentGuider(face, clothes).hook(unet, cfg=False)]):
            outs.append(unet(x, 10, ctx).sample)
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)  # distinct instances: float noise only
    info = json.loads((full.final / "train_info.json").read_text())
    assert info["weights"] == "ema" and info["step"] == 3

    part = tmp_path / "part"
    T.train(_cfg(assets, "guider", part, max_steps=1, save_every=1, **kw))
    resumed = T.train(_cfg(assets, "guider", part, max_steps=3, resume="latest", **kw))
    for n in T.PROMPTS:
        assert _same(_state(resumed.modules[n]), _state(full.modules[n]))
    assert [r["loss"] for r in _log(part)] == [r["loss"] for r in _log(tmp_path / "full")]


def test_cli_and_config_errors(assets, tmp_path, capsys):
    code = T.main(
        ["--stage", "controlnet", "--model", str(assets["sd"]), "--data", "x", "--out", str(tmp_path)]
    )
    assert code == 2 and "Input 'motion_module': expected a path" in capsys.readouterr().err
    with pytest.raises(T.InputError, match="frames"):
        T.train(_cfg(assets, "controlnet", tmp_path / "o", frames=40))  # tiny motion module: 32 positions
    with pytest.raises(T.InputError, match="resolution"):
        _cfg(assets, "guider", tmp_path, resolution=30).validate()
    (tmp_path / "ck" / "checkpoint-1").mkdir(parents=True)
    (tmp_path / "ck" / "checkpoint-1" / "trainer_state.json").write_text('{"step": 1, "stage": "guider"}')
    with pytest.raises(T.InputError, match="stage 'controlnet'"):
        T.train(_cfg(assets, "controlnet", tmp_path / "ck", resume="latest"))
    args = T.build_parser().parse_args(
        [
            "--stage",
            "guider",
            "--model",
            "m",
            "--data",
            "d",
            "--out",
            "o",
            "--clip-vision",
            "c",
            "--lr",
            "2e-5",
        ]
    )
    cfg = T.config_from_args(args)
    assert cfg.lr == 2e-5 and cfg.cond_dropout == 0.05 and cfg.clip_vision == "c" and cfg.frames == 16


@pytest.mark.slow  # trains in a subprocess
def test_command_line_runs_from_the_repository_root(assets, tmp_path):
    """`python -m models.dreamoving.train` (the documented command) trains and exports, one thread, 1 step."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(T.__file__).resolve().parents[2]
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "models.dreamoving.train", "--stage", "guider", "--model", str(assets["sd"])]
    cmd += ["--data", str(assets["content"]), "--clip-vision", str(assets["clip"]), "--out", str(out)]
    cmd += ["--resolution", str(RES), "--max-steps", "1", "--adapter-variant", "plain", "--cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == str(out / "final")
    assert ipa.load_ip_adapter(out / "final" / "face_ip_adapter.safetensors").variant == "plain"
