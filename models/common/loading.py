"""Load Stable-Diffusion-family components from the formats users have, without reaching a hub.

Formats:
- a diffusers folder (`unet/`, `vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`);
- a single-file checkpoint in the original LDM key layout (`.safetensors`; `.ckpt`/`.pt`/`.bin` only
  through `torch.load(weights_only=True)`);
- LDM-layout state dicts handed over by a host (the ComfyUI bridge uses this path).

Every entry point returns `SDComponents`: plain diffusers/transformers modules that a method pipeline
uses directly, in eval mode, float32 on the CPU (callers place them).
"""

from __future__ import annotations

import json
import os
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers.utils import logging as diffusers_logging
from transformers.utils import logging as transformers_logging

from . import ldm_layout
from .errors import WeightsFormatError, WeightsNotFoundError
from .safetensors_read import read_safetensors
from .text import COMPUTE_DTYPE_ATTR, store_for_compute

SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
TOKENIZER_DIR = ldm_layout.CONFIG_DIR / "clip_tokenizer"


@dataclass
class SDComponents:
    """The modules of a Stable-Diffusion-family model, as diffusers/transformers objects."""

    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler_config: dict
    source: str = ""
    extras: dict = field(default_factory=dict)

    def modules(self) -> list[torch.nn.Module]:
        return [self.unet, self.vae, self.text_encoder]

    @property
    def pixel_multiple(self) -> int:
        """Image sizes must be multiples of this: VAE downsampling times the U-Net's own."""
        vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        unet_factor = 2 ** (len(self.unet.config.block_out_channels) - 1)
        return vae_factor * unet_factor


class StateDict(dict):
    """A weights file's tensors, plus its header metadata (safetensors' `__metadata__`; empty for pickles).

    The metadata travels with the tensors because some formats need it to be read right: diffusers'
    `save_lora_weights` stores a PEFT LoRA's alpha there and nowhere else (models/common/lora.py)."""

    def __init__(self, tensors=(), metadata: dict[str, str] | None = None):
        super().__init__(tensors)
        self.metadata: dict[str, str] = dict(metadata or {})


def load_state_dict(
    path: str | os.PathLike, dtype: torch.dtype | None = None, keep: Callable[[str], bool] | None = None
) -> StateDict:
    """Read a weights file: safetensors directly, pickles only with `weights_only=True` (no code runs).

    With `dtype`, floating tensors come back in that dtype, each converted straight from the file's mapping
    and its pages released right after (`safetensors_read.py`). The loaders make the tensors the modules'
    parameters without another copy (`assign_weights`); so every tensor has memory of its own, never the
    mapping itself, which would crash the process (SIGBUS) on the next access to a held model once the file
    is rewritten in place. Tensors whose key `keep` accepts stay in the file's dtype.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in SAFE_SUFFIXES:
        return StateDict(*read_safetensors(path, dtype, keep))
    if suffix in PICKLE_SUFFIXES:
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # an unsafe pickle raises here instead of executing code
            raise WeightsFormatError(
                f"{path.name}: could not be read safely with torch.load(weights_only=True) ({exc}). "
                "Convert it to .safetensors."
            ) from exc
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict):
            raise WeightsFormatError(f"{path.name}: expected a state dict, found {type(obj).__name__}")
        tensors = {}
        for key in list(obj):  # popped one by one: each original is freed once converted
            t = obj.pop(key)
            if isinstance(t, torch.Tensor):
                convert = dtype is not None and t.is_floating_point() and not (keep is not None and keep(key))
                tensors[key] = t.to(dtype) if convert else t
        return StateDict(tensors)
    raise WeightsFormatError(
        f"{path.name}: unsupported weights format {suffix!r}; expected one of "
        f"{', '.join(SAFE_SUFFIXES + PICKLE_SUFFIXES)}"
    )


def load_tokenizer(folder: str | os.PathLike | None = None):
    """CLIP BPE tokenizer from a diffusers `tokenizer/` folder (with its special tokens: SD2.x pads with
    "!"), else the CLIP-L tokenizer shipped in the pack. Prompts are padded/truncated to 77 tokens."""
    from transformers import CLIPTokenizer

    if folder is not None:
        tok = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
        if tok.model_max_length > 77:  # some configs carry a huge sentinel instead of CLIP's 77
            tok.model_max_length = 77
        return tok
    return CLIPTokenizer(
        str(TOKENIZER_DIR / "vocab.json"), str(TOKENIZER_DIR / "merges.txt"), model_max_length=77
    )


def shipped_scheduler_config() -> dict:
    return json.loads((ldm_layout.CONFIG_DIR / "sd15_scheduler.json").read_text())


def _scheduler_config_from_folder(folder: Path) -> dict:
    path = folder / "scheduler" / "scheduler_config.json"
    return json.loads(path.read_text()) if path.is_file() else shipped_scheduler_config()


def is_diffusers_folder(path: str | os.PathLike) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "unet" / "config.json").is_file()


VIDEO_UNET = "UNet3DConditionModel"  # ZeroScope / ModelScope text-to-video


def unet_class_name(folder: str | os.PathLike) -> str:
    """The U-Net class a diffusers folder declares (unet/config.json `_class_name`)."""
    cfg = json.loads((Path(folder) / "unet" / "config.json").read_text())
    return str(cfg.get("_class_name", "UNet2DConditionModel"))


def load_diffusers_folder(
    path: str | os.PathLike, dtype: torch.dtype = torch.float32, video: bool = False
) -> SDComponents:
    """A diffusers pipeline folder, read locally (`local_files_only`), never from a hub; modules in `dtype`.

    `video=True` expects a text-to-video folder (ZeroScope/ModelScope: a UNet3DConditionModel); either kind
    handed to the other use is refused by name, not left to fail inside a pipeline."""
    from diffusers import AutoencoderKL, UNet2DConditionModel, UNet3DConditionModel
    from transformers import CLIPTextModel

    path = Path(path)
    missing = [sub for sub in ("unet", "vae", "text_encoder") if not (path / sub / "config.json").is_file()]
    if missing:
        raise WeightsFormatError(
            f"{path}: not a complete diffusers folder, missing {', '.join(s + '/config.json' for s in missing)}"
        )
    unet_class = unet_class_name(path)
    if video and unet_class != VIDEO_UNET:
        raise WeightsFormatError(
            f"{path.name}: an image model ({unet_class}), not a ZeroScope/ModelScope text-to-video folder "
            f"({VIDEO_UNET}); for SD1.5 + AnimateDiff give a checkpoint and a motion module instead"
        )
    if not video and unet_class == VIDEO_UNET:
        raise WeightsFormatError(
            f"{path.name}: a text-to-video model ({VIDEO_UNET}); load it with MotionCustom: Load Video Model"
        )
    # low_cpu_mem_usage: parameters built on the meta device, then the file's tensors assigned (no random
    # initialisation; diffusers' default when accelerate is installed, spelled out since the speed relies
    # on it). transformers 5 builds on the meta device by itself.
    kw = dict(local_files_only=True, torch_dtype=dtype)
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    unet_cls = UNet3DConditionModel if video else UNet2DConditionModel
    unet = unet_cls.from_pretrained(str(path), subfolder="unet", low_cpu_mem_usage=True, **kw)
    vae = AutoencoderKL.from_pretrained(str(path), subfolder="vae", low_cpu_mem_usage=True, **kw)
    text_encoder = CLIPTextModel.from_pretrained(str(path), subfolder="text_encoder", **kw)
    tok_dir = path / "tokenizer"
    tokenizer = load_tokenizer(tok_dir if (tok_dir / "vocab.json").is_file() else None)
    return _finish(
        SDComponents(
            unet, vae, text_encoder, tokenizer, _scheduler_config_from_folder(path), source=str(path)
        ),
        dtype,
    )


def components_from_ldm(
    state_dict: dict,
    source: str = "",
    scheduler_config: dict | None = None,
    unet_template: dict | None = None,
    dtype: torch.dtype = torch.float32,
) -> SDComponents:
    """Build diffusers modules from an LDM-layout state dict (a single file, or a host's models).

    The modules are built without random initialisation and take the state dict's tensors as their
    parameters (no copy where a tensor is already in `dtype`): the caller hands over tensors it does not
    modify afterwards."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel

    parts = ldm_layout.split_components(state_dict)
    del state_dict  # each part is dropped once its module holds it, so file tensors are freed as we go
    for name, prefix in (
        ("unet", ldm_layout.UNET_PREFIX),
        ("vae", ldm_layout.VAE_PREFIX),
        ("clip", ldm_layout.CLIP_PREFIX),
    ):
        if not parts[name]:
            raise WeightsFormatError(
                f"{source or 'checkpoint'}: no {name} tensors (keys starting with {prefix!r}); "
                "expected a full Stable-Diffusion-1.x-family checkpoint in the original layout"
            )
    unet_cfg = _infer(
        ldm_layout.infer_unet_config, parts["unet"], "U-Net", ldm_layout.UNET_PREFIX, source, unet_template
    )
    vae_cfg = _infer(ldm_layout.infer_vae_config, parts["vae"], "VAE", ldm_layout.VAE_PREFIX, source)
    clip_cfg = _infer(
        ldm_layout.infer_clip_config, parts["clip"], "text encoder", ldm_layout.CLIP_PREFIX, source
    )
    # Cast right after each build: a no-op for files (read in `dtype`); a state dict in another precision
    # handed over by a caller is then held by the modules only, and freed tensor by tensor as it is cast.
    unet = build_loaded(
        lambda: UNet2DConditionModel.from_config(unet_cfg),
        convert_ldm_unet_checkpoint(parts.pop("unet"), unet_cfg),
        "U-Net",
        source,
    )
    cast_module(unet, dtype)
    vae = build_loaded(
        lambda: AutoencoderKL.from_config(vae_cfg),
        convert_ldm_vae_checkpoint(parts.pop("vae"), vae_cfg),
        "VAE",
        source,
    )
    cast_module(vae, dtype)
    with empty_parameters():
        text_encoder = CLIPTextModel(CLIPTextConfig(**clip_cfg))
    # Unused extras like text_model.embeddings.position_ids (a buffer the model computes itself) are skipped.
    clip_sd = {
        k: v
        for k, v in ldm_layout.clip_from_ldm(parts.pop("clip"), text_encoder.state_dict().keys()).items()
        if not k.endswith("position_ids")
    }
    assign_weights(text_encoder, clip_sd, "text encoder", source)
    del clip_sd
    if not store_for_compute(text_encoder, dtype):  # half-precision CLIP weights are kept (text.py)
        cast_module(text_encoder, dtype)
    return _finish(
        SDComponents(
            unet,
            vae,
            text_encoder,
            load_tokenizer(),
            scheduler_config or shipped_scheduler_config(),
            source=source,
        ),
        dtype,
    )


def _infer(infer, part: dict, what: str, prefix: str, source: str, *template) -> dict:
    """An architecture read from tensor shapes; a tensor the reading needs that is absent is named."""
    try:
        return infer(part, *template)
    except KeyError as exc:
        raise WeightsFormatError(
            f"{source or 'checkpoint'}: {what} tensor {prefix + str(exc.args[0])!r} is missing"
        ) from exc
    except ValueError as exc:
        raise WeightsFormatError(f"{source or 'checkpoint'}: {what}: {exc}") from exc


def load_single_file(path: str | os.PathLike, dtype: torch.dtype = torch.float32) -> SDComponents:
    """A single-file checkpoint in the original LDM layout; configs are inferred + shipped templates.
    The text encoder's tensors are read in the file's dtype: half-precision ones stay so and compute in
    `dtype` (`text.store_for_compute`, ComfyUI's choice); others are cast to `dtype` like the rest."""
    keep_clip = lambda key: key.startswith(ldm_layout.CLIP_PREFIX)  # noqa: E731
    return components_from_ldm(load_state_dict(path, dtype, keep_clip), source=str(path), dtype=dtype)


WEIGHT_GLOBS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "*.bin.index.json")


def has_weights(folder: Path) -> bool:
    """A diffusers module folder holds a weights file (or a sharded index)."""
    return any(next(Path(folder).glob(g), None) is not None for g in WEIGHT_GLOBS)


def check_weights_present(folder: Path, published: str = "") -> None:
    """A diffusers folder whose configs are there but whose weights file is not: name the missing file
    (from_pretrained's own error does not)."""
    expected = {"unet": "diffusion_pytorch_model.safetensors", "vae": "diffusion_pytorch_model.safetensors",
                "text_encoder": "model.safetensors"}  # fmt: skip
    for sub, filename in expected.items():
        if (folder / sub / "config.json").is_file() and not has_weights(folder / sub):
            raise WeightsNotFoundError(f"{sub}/{filename}", [str(folder / sub)], published)


def load_model_fresh(path: str | os.PathLike, published: str = "", video: bool = False) -> SDComponents:
    """A diffusers folder or single file as modules of our own, for training: never the shared cache of
    `load_components` (training changes the modules in place). Errors name the missing file and, when
    given, where the weights are `published`."""
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsNotFoundError(path.name, [str(path.parent)], published)
    if path.is_dir():
        if not is_diffusers_folder(path):
            raise WeightsNotFoundError("unet/config.json", [str(path)], published)
        check_weights_present(path, published)
        return load_diffusers_folder(path, video=video)
    if video:
        raise WeightsFormatError(
            f"{path.name}: a text-to-video model is a diffusers folder (ZeroScope layout)"
        )
    return load_single_file(path)


def load_components(
    path: str | os.PathLike, dtype: torch.dtype = torch.float32, video: bool = False
) -> SDComponents:
    """Dispatch on what `path` is: a diffusers folder or a single weights file; modules in `dtype`.

    A model still held by someone (a loader node's cached output in ComfyUI) is returned again instead of a
    second copy; nothing here keeps a model alive by itself, so what the host's caches drop is freed."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(str(path))
    stat = path.stat() if path.is_file() else (path / "unet" / "config.json").stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, dtype, video)
    comps = _LOADED.get(key)
    if comps is None:
        if video and not path.is_dir():
            raise WeightsFormatError(
                f"{path.name}: a text-to-video model is a diffusers folder (ZeroScope layout)"
            )
        comps = load_diffusers_folder(path, dtype, video) if path.is_dir() else load_single_file(path, dtype)
        _LOADED[key] = comps
    return comps


_LOADED: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def clear_cache() -> None:
    _LOADED.clear()


@contextmanager
def empty_parameters() -> Iterator[None]:
    """Build modules with their parameters on the meta device and their buffers real.

    Why: random initialisation of weights that a file overwrites right after was most of the load time
    (8.9 of 15.9 CPU-seconds for a full SD1.5 U-Net). Buffers stay real because files need not hold them
    (CLIP's position_ids, sinusoidal tables, non-persistent buffers): they keep their computed values.
    Parameters left empty are caught by `assign_weights`. accelerate patches nn.Module.register_parameter
    process-wide while the block runs: keep the block to the construction.
    """
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        yield


def assign_weights(
    module: torch.nn.Module,
    state_dict: dict,
    what: str,
    source: str,
    may_lack: Iterable[str] = (),
) -> torch.nn.Module:
    """Make `state_dict`'s tensors the parameters/buffers of `module` (built under `empty_parameters`).

    Any key the module does not have, or any module key the file lacks (except buffers whose names end with
    one of `may_lack`, which keep their computed values), raises WeightsFormatError naming them: a missing
    tensor never stays empty or random. Returns `module`.
    """
    # (diffusers' converters map an absent tensor to None: that is a missing key too)
    present = {k: v for k, v in state_dict.items() if v is not None}
    result = module.load_state_dict(present, strict=False, assign=True)
    may_lack = tuple(may_lack)
    buffers = {name for name, _ in module.named_buffers()}
    missing = [k for k in result.missing_keys if not (k in buffers and k.endswith(may_lack))]
    if missing or result.unexpected_keys:
        raise WeightsFormatError(
            f"{source or 'checkpoint'}: {what} weights do not match the inferred architecture "
            f"(missing {missing[:5]}, unexpected {result.unexpected_keys[:5]})"
        )
    empty = meta_tensors(module)
    if empty:  # e.g. a parameter registered outside state_dict(); never hand out a module without weights
        raise WeightsFormatError(f"{source or 'checkpoint'}: {what} has no weights for {empty[:5]}")
    return module


def build_loaded(
    factory: Callable[[], torch.nn.Module],
    state_dict: dict,
    what: str,
    source: str,
    may_lack: Iterable[str] = (),
) -> torch.nn.Module:
    """`factory()` built under `empty_parameters`, then `assign_weights(state_dict)`."""
    with empty_parameters():
        module = factory()
    return assign_weights(module, state_dict, what, source, may_lack)


def meta_tensors(module: torch.nn.Module) -> list[str]:
    """Names of parameters and buffers still on the meta device (i.e. without data)."""
    tensors = [
        *module.named_parameters(remove_duplicate=False),
        *module.named_buffers(remove_duplicate=False),
    ]
    return [name for name, t in tensors if t.is_meta]


def cast_module(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Floating parameters and buffers to `dtype` in place; tensors already in it are kept, not copied.
    A text encoder kept in half precision (`text.store_for_compute`) then computes in `dtype` too."""
    if any(p.dtype != dtype for p in module.parameters()):
        torch.nn.Module.to(module, dtype)  # (diffusers' own .to(dtype) logs a warning on every call)
    if hasattr(module, COMPUTE_DTYPE_ATTR):
        delattr(module, COMPUTE_DTYPE_ATTR)
    return module


def _finish(comps: SDComponents, dtype: torch.dtype = torch.float32) -> SDComponents:
    for module in comps.modules():
        if getattr(module, COMPUTE_DTYPE_ATTR, None) != dtype:  # a kept half-precision CLIP stays (text.py)
            cast_module(module, dtype)
        module.eval().requires_grad_(False)
    return comps
