"""AnimateDiff motion modules (models/common/animatediff.py): layouts, config inference, inflated U-Net, calls."""

from __future__ import annotations

import dataclasses
import math
import pickle

import pytest
import torch
import torch.nn.functional as F
from papernodes.kernels.processor import AttentionHook, installed_processors
from papernodes.kernels.reference import sinusoidal_positions
from papernodes.models.common import animatediff as motion
from papernodes.models.common import animatediff_layout as motion_layout
from papernodes.models.common import tiny
from papernodes.models.common.errors import InputError, WeightsFormatError

torch.set_num_threads(1)
FRAMES = 4


@pytest.fixture(scope="module")
def comps():
    return tiny.build_tiny_components(seed=0)


@pytest.fixture(scope="module")
def moving(comps):
    """Inflated U-Net with non-zero motion modules: frames interact."""
    return motion.inflate_unet(comps.unet, motion.build_tiny_motion_adapter(seed=1, zero_out=False))


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(2)
    return torch.randn(1, 4, FRAMES, 8, 8, generator=g), torch.randn(1, 77, 48, generator=g)


def _frames_2d(unet, latents, text, **kw):
    """Reference: the plain 2D U-Net on every frame separately -> [B, C, F, H, W]."""
    outs = [unet(latents[:, :, i], 500, text, **kw).sample for i in range(latents.shape[2])]
    return torch.stack(outs, dim=2)


@torch.no_grad()
@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
@pytest.mark.slow  # > 1 s on a quiet machine: keeps the fast tier under a minute
def test_original_file_equals_diffusers_folder(comps, inputs, tmp_path, suffix):
    adapter = motion.build_tiny_motion_adapter(seed=3, zero_out=False)
    path = motion.save_motion_adapter_original(adapter, tmp_path / f"mm_tiny{suffix}")
    adapter.save_pretrained(str(tmp_path / "folder"))
    from_file = motion.load_motion_adapter(path)
    from_folder = motion.load_motion_adapter(tmp_path / "folder")
    for loaded in (from_file, from_folder):
        norm = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731 (JSON gives lists)
        assert all(norm(loaded.config[k]) == norm(adapter.config[k]) for k in motion.TINY_MOTION)
        sd = loaded.state_dict()
        assert all(torch.equal(sd[k], v) for k, v in adapter.state_dict().items())
    latents, text = inputs
    a = motion.run_motion_unet(motion.inflate_unet(comps.unet, from_file), latents, 500, text)
    b = motion.run_motion_unet(motion.inflate_unet(comps.unet, from_folder), latents, 500, text)
    # distinct instances with equal weights (above): float noise only, as CPU kernels are not bit-stable
    # across instances (see test_dreamoving_controlnet.DISTINCT_INSTANCE_TOL)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_round_trip_is_key_and_value_exact(tmp_path):
    from papernodes.models.common.loading import load_state_dict

    adapter = motion.build_tiny_motion_adapter(seed=4, zero_out=False)
    first = load_state_dict(motion.save_motion_adapter_original(adapter, tmp_path / "a.safetensors"))
    reloaded = motion.load_motion_adapter(tmp_path / "a.safetensors")
    second = load_state_dict(motion.save_motion_adapter_original(reloaded, tmp_path / "b.safetensors"))
    assert set(first) == set(second)
    assert all(torch.equal(first[k], second[k]) for k in first)
    # 7 modules (down 1+1, mid 1, up 2+2) x 28 tensors, in guoyww/AnimateDiff's names
    assert len(first) == 7 * 28
    pre = "down_blocks.0.motion_modules.0.temporal_transformer."
    for name in (
        "norm.weight",
        "proj_in.weight",
        "proj_out.bias",
        "transformer_blocks.0.attention_blocks.0.to_q.weight",
        "transformer_blocks.0.attention_blocks.1.to_out.0.bias",
        "transformer_blocks.0.attention_blocks.1.pos_encoder.pe",
        "transformer_blocks.0.norms.0.weight",
        "transformer_blocks.0.norms.1.bias",
        "transformer_blocks.0.ff.net.0.proj.weight",
        "transformer_blocks.0.ff.net.2.weight",
        "transformer_blocks.0.ff_norm.weight",
    ):
        assert pre + name in first, name
    assert "mid_block.motion_modules.0.temporal_transformer.norm.bias" in first
    assert "up_blocks.1.motion_modules.1.temporal_transformer.proj_out.weight" in first
    assert "transformer_blocks.0.attention_blocks.0.to_q.bias" not in {k[len(pre) :] for k in first}


def test_half_precision_diffusers_layout_single_file_loads(tmp_path):
    """Some shared files are fp16 and keep diffusers' key names in one file: read as float32, same values."""
    from safetensors.torch import save_file

    adapter = motion.build_tiny_motion_adapter(seed=12, zero_out=False)
    half = {k: v.half().contiguous() for k, v in adapter.state_dict().items()}
    save_file(half, str(tmp_path / "mm_fp16.safetensors"))
    loaded = motion.load_motion_adapter(tmp_path / "mm_fp16.safetensors")
    sd = loaded.state_dict()
    assert all(sd[k].dtype == torch.float32 and torch.equal(sd[k], v.float()) for k, v in half.items())


def test_our_names_agree_with_diffusers_converter():
    """diffusers' own original->diffusers renamer maps our original keys onto the adapter's keys."""
    from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers

    adapter = motion.build_tiny_motion_adapter(seed=0)
    original = motion_layout.diffusers_to_original(adapter.state_dict())
    theirs = convert_animatediff_checkpoint_to_diffusers(dict(original))
    ours = motion_layout.original_to_diffusers(original)
    assert set(theirs) == {k for k in ours if not k.endswith("pos_embed.pe")}
    assert all(theirs[k] is ours[k] for k in theirs)


def test_real_size_configs_are_inferred():
    """Full-size SD1.5 v1 (no mid block, 24 frames) and v2 (mid block, 32) layouts, on the meta device."""
    from diffusers import MotionAdapter

    for mid, seq, n_modules in ((False, 24, 20), (True, 32, 21)):
        with torch.device("meta"):
            ref = MotionAdapter(use_motion_mid_block=mid, motion_max_seq_length=seq)
        original = motion_layout.diffusers_to_original(ref.state_dict())
        assert len(original) == n_modules * 28
        assert motion_layout.detect_layout(original) == "original"
        cfg = motion_layout.infer_motion_config(motion_layout.original_to_diffusers(original))
        assert cfg["block_out_channels"] == (320, 640, 1280, 1280)
        assert (cfg["motion_layers_per_block"], cfg["motion_transformer_layers_per_block"]) == (2, 1)
        assert (cfg["use_motion_mid_block"], cfg["motion_max_seq_length"]) == (mid, seq)
        assert (cfg["motion_num_attention_heads"], cfg["motion_norm_num_groups"]) == (8, 32)


@torch.no_grad()
@pytest.mark.parametrize("style", ["v1", "v2"])
@pytest.mark.slow  # > 1 s on a quiet machine: keeps the fast tier under a minute
def test_tiny_v1_v2_files_infer_config(comps, inputs, tmp_path, style):
    kw = dict(use_motion_mid_block=False, motion_max_seq_length=24) if style == "v1" else {}
    adapter = motion.build_tiny_motion_adapter(seed=5, zero_out=False, **kw)
    loaded = motion.load_motion_adapter(motion.save_motion_adapter_original(adapter, tmp_path / "mm.ckpt"))
    assert loaded.config.use_motion_mid_block is (style == "v2")
    assert loaded.config.motion_max_seq_length == (24 if style == "v1" else 32)
    assert (loaded.mid_block is None) is (style == "v1")
    model = motion.inflate_unet(comps.unet, loaded)
    assert hasattr(model.mid_block, "motion_modules") is (style == "v2")
    latents, text = inputs
    sd = loaded.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in adapter.state_dict().items())
    ref = motion.run_motion_unet(motion.inflate_unet(comps.unet, adapter), latents, 500, text)
    # distinct instances: float noise only (see test_dreamoving_controlnet.DISTINCT_INSTANCE_TOL)
    torch.testing.assert_close(motion.run_motion_unet(model, latents, 500, text), ref, rtol=1e-5, atol=1e-5)
    too_long = torch.zeros(1, 4, loaded.config.motion_max_seq_length + 1, 8, 8)
    with pytest.raises(InputError, match="frames"):
        motion.run_motion_unet(model, too_long, 500, text)


def test_file_without_positional_tables_loads(tmp_path):
    """diffusers' conversion script drops pos_encoder.pe: the recomputed table is AnimateDiff's formula."""
    from safetensors.torch import save_file

    adapter = motion.build_tiny_motion_adapter(seed=6)
    sd = {
        k: v for k, v in motion_layout.diffusers_to_original(adapter.state_dict()).items() if "pe" != k[-2:]
    }
    save_file(sd, str(tmp_path / "nope.safetensors"))
    loaded = motion.load_motion_adapter(tmp_path / "nope.safetensors")
    pe = loaded.down_blocks[1].motion_modules[0].transformer_blocks[0].pos_embed.pe
    torch.testing.assert_close(pe[0], sinusoidal_positions(32, 64), rtol=0, atol=1e-6)


def test_unsafe_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.ckpt"
    with open(path, "wb") as f:
        pickle.dump({"down_blocks.0.motion_modules.0.temporal_transformer.norm.weight": Exploit()}, f)
    with pytest.raises(WeightsFormatError, match="weights_only"):
        motion.load_motion_adapter(path)
    assert not marker.exists()


def test_unknown_layouts_are_explained(comps, tmp_path):
    from safetensors.torch import save_file

    save_file(
        {k: v.contiguous() for k, v in comps.unet.state_dict().items()}, str(tmp_path / "unet.safetensors")
    )
    with pytest.raises(WeightsFormatError, match=r"unet\.safetensors: not a motion module; expected") as err:
        motion.load_motion_adapter(tmp_path / "unet.safetensors")
    assert "temporal_transformer.proj_in.weight" in str(err.value) and "MotionAdapter folder" in str(
        err.value
    )
    save_file({"controlnet_cond_embedding.conv_in.weight": torch.zeros(1)}, str(tmp_path / "sc.safetensors"))
    with pytest.raises(WeightsFormatError, match="SparseCtrl"):
        motion.load_motion_adapter(tmp_path / "sc.safetensors")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(WeightsFormatError, match="config.json"):
        motion.load_motion_adapter(tmp_path / "empty_dir")
    comps.unet.save_config(str(tmp_path / "unet_dir"))
    save_file({"x": torch.zeros(1)}, str(tmp_path / "unet_dir" / "diffusion_pytorch_model.safetensors"))
    with pytest.raises(WeightsFormatError, match="UNet2DConditionModel, not a MotionAdapter"):
        motion.load_motion_adapter(tmp_path / "unet_dir")
    # right layout, truncated: names what is missing
    sd = motion_layout.diffusers_to_original(motion.build_tiny_motion_adapter(0).state_dict())
    save_file(
        {k: v for k, v in sd.items() if not k.startswith("up_blocks.1")}, str(tmp_path / "cut.safetensors")
    )
    with pytest.raises(WeightsFormatError, match="up_blocks.1"):
        motion.load_motion_adapter(tmp_path / "cut.safetensors")


def test_incompatible_unet_is_refused(comps):
    adapter = motion.build_tiny_motion_adapter(0, motion_layers_per_block=2)
    with pytest.raises(WeightsFormatError, match="layers per block"):
        motion.inflate_unet(comps.unet, adapter)


@torch.no_grad()
def _reference_motion_module(sd: dict, prefix: str, x: torch.Tensor, frames: int) -> torch.Tensor:
    """AnimateDiff's temporal transformer (Guo et al. 2023, Sec. 4.2) in float64, from ORIGINAL keys:
    GroupNorm -> proj_in -> per block: [LN -> +pe -> self-attention over frames] x2, LN -> GEGLU FF,
    each with a residual -> proj_out -> + input. x: [(B*F), C, H, W]."""
    w = {k[len(prefix) :]: v.double() for k, v in sd.items() if k.startswith(prefix)}
    bf, c, h, wd = x.shape
    b = bf // frames
    res = x.double()
    z = res.view(b, frames, c, h, wd).permute(0, 2, 1, 3, 4)
    z = F.group_norm(z, 32, w["norm.weight"], w["norm.bias"], eps=1e-6)
    z = z.permute(0, 3, 4, 2, 1).reshape(b * h * wd, frames, c)  # each pixel: a sequence over frames
    z = z @ w["proj_in.weight"].T + w["proj_in.bias"]
    blk = "transformer_blocks.0."
    for a in (0, 1):
        n = F.layer_norm(z, (c,), w[f"{blk}norms.{a}.weight"], w[f"{blk}norms.{a}.bias"])
        n = n + w[f"{blk}attention_blocks.{a}.pos_encoder.pe"][:, :frames]
        att = f"{blk}attention_blocks.{a}."
        q, k, v = (n @ w[att + f"to_{s}.weight"].T for s in "qkv")
        split = lambda t: t.view(t.shape[0], frames, 8, c // 8).transpose(1, 2)  # noqa: E731
        p = torch.softmax(split(q) @ split(k).transpose(-1, -2) / math.sqrt(c // 8), dim=-1)
        o = (p @ split(v)).transpose(1, 2).reshape(-1, frames, c)
        z = z + o @ w[att + "to_out.0.weight"].T + w[att + "to_out.0.bias"]
    n = F.layer_norm(z, (c,), w[f"{blk}ff_norm.weight"], w[f"{blk}ff_norm.bias"])
    hid, gate = (n @ w[f"{blk}ff.net.0.proj.weight"].T + w[f"{blk}ff.net.0.proj.bias"]).chunk(2, dim=-1)
    z = z + (hid * F.gelu(gate)) @ w[f"{blk}ff.net.2.weight"].T + w[f"{blk}ff.net.2.bias"]
    z = z @ w["proj_out.weight"].T + w["proj_out.bias"]
    z = z.view(b, h, wd, frames, c).permute(0, 3, 4, 1, 2).reshape(bf, c, h, wd)
    return z + res


@torch.no_grad()
def test_loaded_module_matches_float64_animatediff_math(tmp_path):
    """Catches semantic mix-ups a round trip cannot (e.g. norms.0 <-> norm2 swapped both ways)."""
    adapter = motion.build_tiny_motion_adapter(seed=7, zero_out=False)
    original = motion_layout.diffusers_to_original(adapter.state_dict())
    loaded = motion.load_motion_adapter(
        motion.save_motion_adapter_original(adapter, tmp_path / "m.safetensors")
    )
    x = torch.randn(2 * FRAMES, 64, 3, 3, generator=torch.Generator().manual_seed(8))
    prefix = "up_blocks.0.motion_modules.1.temporal_transformer."
    ref = _reference_motion_module(original, prefix, x, FRAMES)
    out = loaded.up_blocks[0].motion_modules[1](x, num_frames=FRAMES)
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=2e-5)
    assert (out - x).abs().max() > 1e-2  # the module does something


@torch.no_grad()
def test_zero_init_adapter_is_identity(comps, inputs):
    model = motion.inflate_unet(comps.unet, motion.build_tiny_motion_adapter(seed=1, zero_out=True))
    latents, text = inputs
    out = motion.run_motion_unet(model, latents, 500, text)
    torch.testing.assert_close(out, _frames_2d(comps.unet, latents, text), rtol=0, atol=1e-5)


@torch.no_grad()
def test_frames_interact_only_with_motion_modules(comps, moving, inputs):
    latents, text = inputs
    edited = latents.clone()
    edited[:, :, 3] = torch.randn(edited[:, :, 3].shape, generator=torch.Generator().manual_seed(9))
    a = motion.run_motion_unet(moving, latents, 500, text)
    b = motion.run_motion_unet(moving, edited, 500, text)
    assert (a[:, :, 0] - b[:, :, 0]).abs().max() > 1e-3  # frame 3 reaches frame 0 through time
    with motion.motion_modules_enabled(moving, False):
        c = motion.run_motion_unet(moving, latents, 500, text)
        d = motion.run_motion_unet(moving, edited, 500, text)
        with motion.motion_modules_enabled(moving, True):  # nested re-enable, then back to off
            torch.testing.assert_close(motion.run_motion_unet(moving, latents, 500, text), a, rtol=0, atol=0)
        torch.testing.assert_close(motion.run_motion_unet(moving, latents, 500, text), c, rtol=0, atol=0)
    torch.testing.assert_close(c[:, :, :3], d[:, :, :3], rtol=0, atol=0)
    torch.testing.assert_close(c, _frames_2d(comps.unet, latents, text), rtol=0, atol=1e-5)
    with pytest.raises(RuntimeError, match="boom"):
        with motion.motion_modules_enabled(moving, False):
            raise RuntimeError("boom")
    assert all("forward" not in m.__dict__ for m in motion._motion_blocks(moving))
    torch.testing.assert_close(motion.run_motion_unet(moving, latents, 500, text), a, rtol=0, atol=0)


class _Recorder(AttentionHook):
    def __init__(self):
        self.calls = {}

    def override(self, call):
        self.calls[call.layer] = (call.is_temporal, call.q.shape[2])
        return None


@torch.no_grad()
def test_kernels_processor_matches_diffusers(moving, inputs):
    latents, text = inputs
    before = installed_processors(moving)
    ref = motion.run_motion_unet(moving, latents, 500, text)
    rec = _Recorder()
    out = motion.run_motion_unet(moving, latents, 500, text, hooks=[rec])
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    assert installed_processors(moving) == before
    temporal = {k for k, (is_t, _) in rec.calls.items() if is_t}
    assert temporal == {k for k in rec.calls if ".motion_modules." in k}
    assert len(temporal) == 2 * 7  # attn1 + attn2 in each of the 7 motion modules
    assert all(rec.calls[k][1] == FRAMES for k in temporal)  # temporal queries run over the frames
    assert all(n > FRAMES for k, (is_t, n) in rec.calls.items() if not is_t)


@torch.no_grad()
def test_call_convention(comps, moving):
    g = torch.Generator().manual_seed(10)
    latents = torch.randn(2, 4, FRAMES, 8, 8, generator=g)
    text = torch.randn(2, 77, 48, generator=g)
    t = torch.tensor([500, 300])
    both = motion.run_motion_unet(moving, latents, t, text)
    for i in range(2):  # each video on its own, with its own timestep and text
        one = motion.run_motion_unet(moving, latents[i : i + 1], int(t[i]), text[i : i + 1])
        torch.testing.assert_close(both[i : i + 1], one, rtol=0, atol=1e-5)
    per_frame = text.repeat_interleave(FRAMES, dim=0)
    torch.testing.assert_close(motion.run_motion_unet(moving, latents, t, per_frame), both, rtol=0, atol=0)
    with pytest.raises(InputError, match="Input 'text'"):
        motion.run_motion_unet(moving, latents, t, text[:1].repeat(3, 1, 1))


@torch.no_grad()
def test_controlnet_residuals_follow_2d_convention(comps, inputs):
    """With identity motion modules, residuals (5D or frame-flattened) act exactly as on the 2D U-Net."""
    model = motion.inflate_unet(comps.unet, motion.build_tiny_motion_adapter(seed=1, zero_out=True))
    latents, text = inputs
    g = torch.Generator().manual_seed(11)
    shapes = [(32, 8, 8), (32, 8, 8), (32, 4, 4), (64, 4, 4)]  # conv_in, block 0 (+ downsampler), block 1
    down5 = [torch.randn(1, c, FRAMES, h, w, generator=g) * 0.5 for c, h, w in shapes]
    mid5 = torch.randn(1, 64, FRAMES, 4, 4, generator=g) * 0.5
    out5 = motion.run_motion_unet(model, latents, 500, text, down5, mid5)
    flat = lambda r: r.permute(0, 2, 1, 3, 4).reshape(-1, *r.shape[1:2], *r.shape[3:])  # noqa: E731
    out4 = motion.run_motion_unet(model, latents, 500, text, [flat(r) for r in down5], flat(mid5))
    torch.testing.assert_close(out4, out5, rtol=0, atol=0)
    ref = torch.stack(
        [
            comps.unet(
                latents[:, :, i],
                500,
                text,
                down_block_additional_residuals=[r[:, :, i] for r in down5],
                mid_block_additional_residual=mid5[:, :, i],
            ).sample
            for i in range(FRAMES)
        ],
        dim=2,
    )
    torch.testing.assert_close(out5, ref, rtol=0, atol=1e-5)
    assert (out5 - motion.run_motion_unet(model, latents, 500, text)).abs().max() > 1e-3
    with pytest.raises(InputError, match="mid_block_additional_residual"):
        motion.run_motion_unet(model, latents, 500, text, down5, mid5[:, :, :2])


def test_trained_schedule_travels_from_file_to_the_pipelines_sampler(comps, tmp_path):
    """A motion module trained on other betas than AnimateDiff's linear ones records them in its header;
    the inflated U-Net, DreaMoving's sampler and Customizing Motion's model then use them."""
    from diffusers import DDIMScheduler
    from papernodes.models.dreamoving.pipeline import DreaMovingPipeline
    from papernodes.models.motion_custom.pipeline import animatediff_model

    plain = motion.build_tiny_motion_adapter(seed=5)
    plain_file = motion.load_motion_adapter(
        motion.save_motion_adapter_original(plain, tmp_path / "p.safetensors")
    )
    assert motion.motion_schedule(plain_file) == {"beta_schedule": "linear"}  # published files: AnimateDiff's
    marked = motion.set_motion_schedule(motion.build_tiny_motion_adapter(seed=5), "scaled_linear")
    loaded = motion.load_motion_adapter(
        motion.save_motion_adapter_original(marked, tmp_path / "m.safetensors")
    )
    assert motion.motion_schedule(loaded) == {"beta_schedule": "scaled_linear"}
    assert motion.motion_schedule(motion.inflate_unet(comps.unet, loaded)) == {
        "beta_schedule": "scaled_linear"
    }

    def betas(config):
        return DDIMScheduler.from_config(config).betas

    base = {**comps.scheduler_config, "beta_start": 0.00085, "beta_end": 0.012}
    comps_ = dataclasses.replace(comps, scheduler_config=base)
    for adapter, law in ((plain_file, "linear"), (loaded, "scaled_linear")):
        want = betas({**base, "beta_schedule": law})
        torch.testing.assert_close(
            DreaMovingPipeline(comps_, adapter).scheduler("ddim").betas, want, rtol=0, atol=0
        )
        torch.testing.assert_close(
            betas(animatediff_model(comps_, adapter).scheduler_config), want, rtol=0, atol=0
        )
    # the two laws differ where it matters (scaled-linear: sqrt-space interpolation, smaller mid-range betas)
    gap = betas({**base, "beta_schedule": "linear"}) - betas({**base, "beta_schedule": "scaled_linear"})
    assert gap.abs().max() > 1e-3


def test_schedule_needs_a_header(tmp_path):
    marked = motion.set_motion_schedule(motion.build_tiny_motion_adapter(seed=5), "scaled_linear")
    with pytest.raises(WeightsFormatError, match="save it as .safetensors"):
        motion.save_motion_adapter_original(marked, tmp_path / "m.ckpt")
    from safetensors.torch import load_file, save_file

    path = motion.save_motion_adapter_original(
        motion.build_tiny_motion_adapter(seed=5), tmp_path / "x.safetensors"
    )
    save_file(load_file(path), str(path), metadata={"beta_schedule": "cubic"})
    with pytest.raises(WeightsFormatError, match="beta_schedule='cubic'"):
        motion.load_motion_adapter(path)
