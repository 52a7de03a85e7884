"""DeepFloyd IF stage I, the paper's 2D prior (BiDiff Sec. 4: "we adopt DeepFloyd-IF stage I"), read from the
user's diffusers folder (`DeepFloyd/IF-I-XL-v1.0` or -L/-M; gated licence: never downloaded here).

IF is a pixel-space model: its U-Net denoises 64 px images directly, with a T5-XXL text encoder. BiDiff's
SD path (pipeline_sd.py, train_bidiff_sd.py) runs on it unchanged where `components.vae` is None: views are
their own "latents". The prompt is encoded as IFPipeline.encode_prompt does: lower-cased and stripped (its
caption cleaning needs bs4 and ftfy and is not done), T5 tokens padded to 77 with the padding masked out.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..common.errors import WeightsFormatError

IF_MAX_TOKENS = 77  # IFPipeline.encode_prompt's max_length


class T5PromptTokenizer:
    """T5's SentencePiece tokenizer (`spiece.model`, or a `tokenizer.json`): ids then </s>, padded with <pad>."""

    def __init__(self, folder: str | os.PathLike, max_length: int = IF_MAX_TOKENS):
        folder, self.max_length = Path(folder), max_length
        if (folder / "spiece.model").is_file():
            from sentencepiece import SentencePieceProcessor

            sp = SentencePieceProcessor(model_file=str(folder / "spiece.model"))
            self._encode, self.pad_id, self.eos_id = sp.encode, sp.pad_id(), sp.eos_id()
        elif (folder / "tokenizer.json").is_file():
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
            self._encode = lambda text: tok.encode(text, add_special_tokens=False).ids
            self.pad_id, self.eos_id = tok.token_to_id("<pad>"), tok.token_to_id("</s>")
        else:
            raise WeightsFormatError(f"{folder}: no T5 tokenizer (spiece.model or tokenizer.json)")
        if self.pad_id is None or self.pad_id < 0 or self.eos_id is None or self.eos_id < 0:
            raise WeightsFormatError(f"{folder}: the tokenizer has no <pad> or </s> token (not T5's)")

    def __call__(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask, both [N, max_length]."""
        ids = torch.full((len(prompts), self.max_length), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, prompt in enumerate(prompts):
            tokens = list(self._encode(prompt.lower().strip()))[: self.max_length - 1] + [self.eos_id]
            ids[row, : len(tokens)], mask[row, : len(tokens)] = torch.tensor(tokens), 1
        return ids, mask


@dataclass
class IFComponents:
    """IF stage I's modules (no VAE: pixel space), read where SDComponents are."""

    unet: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: T5PromptTokenizer
    scheduler_config: dict
    source: str = ""
    vae = None  # pixel space: the views are the samples

    def modules(self) -> list[torch.nn.Module]:
        return [self.unet, self.text_encoder]

    @property
    def pixel_multiple(self) -> int:
        return 2 ** (len(self.unet.config.block_out_channels) - 1)

    @torch.no_grad()
    def encode_text(self, prompts: list[str], device) -> torch.Tensor:
        """T5 last hidden states [N, 77, D] in the encoder's dtype, padding masked (IFPipeline.encode_prompt)."""
        ids, mask = self.tokenizer(list(prompts))
        return self.text_encoder(ids.to(device), attention_mask=mask.to(device))[0]


def is_if_folder(path: str | os.PathLike) -> bool:
    """A diffusers folder whose text encoder is T5 and that has no VAE (IF's layout)."""
    path = Path(path)
    config = path / "text_encoder" / "config.json"
    if not path.is_dir() or (path / "vae").exists() or not config.is_file():
        return False
    return json.loads(config.read_text()).get("model_type") == "t5"


def _variant(folder: Path) -> str | None:
    """The variant to load: "fp16" when the folder holds only DeepFloyd's fp16 variant files (what most users
    download: the T5-XXL encoder has ~4.8 B parameters, ~19 GB in float32), else None (the plain files)."""
    files = [f.name for f in folder.glob("*.safetensors")] + [f.name for f in folder.glob("*.bin")]
    plain = [f for f in files if ".fp16" not in f]
    return "fp16" if files and not plain else None


def load_if_folder(path: str | os.PathLike, dtype: torch.dtype = torch.float32) -> IFComponents:
    """IF stage I from its diffusers folder, local files only. Stage II/III (upscalers) are refused by name."""
    from diffusers import UNet2DConditionModel
    from transformers import T5EncoderModel

    path = Path(path)
    missing = [s for s in ("unet/config.json", "text_encoder/config.json") if not (path / s).is_file()]
    if missing:
        raise WeightsFormatError(f"{path}: not a complete DeepFloyd IF folder, missing {', '.join(missing)}")
    unet_config = json.loads((path / "unet" / "config.json").read_text())
    if unet_config.get("in_channels") != 3:
        raise WeightsFormatError(
            f"{path.name}: an IF upscaler (stage II/III: in_channels {unet_config.get('in_channels')}); "
            "BiDiff's 2D branch is IF stage I (in_channels 3, 64 px), e.g. DeepFloyd/IF-I-XL-v1.0"
        )
    kw = dict(local_files_only=True, torch_dtype=dtype)
    unet = UNet2DConditionModel.from_pretrained(
        str(path), subfolder="unet", low_cpu_mem_usage=True, variant=_variant(path / "unet"), **kw
    )
    text_encoder = T5EncoderModel.from_pretrained(
        str(path), subfolder="text_encoder", variant=_variant(path / "text_encoder"), **kw
    )
    scheduler = path / "scheduler" / "scheduler_config.json"
    if not scheduler.is_file():
        raise WeightsFormatError(
            f"{path}: not a complete DeepFloyd IF folder, missing scheduler/scheduler_config.json"
        )
    for module in (unet, text_encoder):
        module.eval().requires_grad_(False)
    return IFComponents(
        unet,
        text_encoder,
        T5PromptTokenizer(path / "tokenizer"),
        json.loads(scheduler.read_text()),
        str(path),
    )
