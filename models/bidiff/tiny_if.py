"""A tiny DeepFloyd IF stage I folder in the real diffusers layout (IF's U-Net blocks with a learned variance,
a T5 encoder, a SentencePiece `spiece.model` tokenizer, IF's scheduler config), for tests and host tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

CAPTIONS = ["a red cube", "two blue spheres", "a yellow cone", "a green torus", "an orange capsule"]
IF_UNET = dict(
    sample_size=16,
    in_channels=3,
    out_channels=6,  # noise and learned variance, as IF stage I
    layers_per_block=1,
    block_out_channels=(32, 32, 64),
    down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D", "SimpleCrossAttnDownBlock2D"),
    mid_block_type="UNetMidBlock2DSimpleCrossAttn",
    up_block_types=("SimpleCrossAttnUpBlock2D", "SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
    cross_attention_dim=32,
    encoder_hid_dim=24,
    attention_head_dim=8,
    addition_embed_type="text",
    addition_embed_type_num_heads=2,
    cross_attention_norm="group_norm",
    resnet_time_scale_shift="scale_shift",
    act_fn="gelu",
)
IF_SCHEDULER = dict(beta_schedule="squaredcos_cap_v2", clip_sample=True, dynamic_thresholding_ratio=0.95,
                    num_train_timesteps=1000, prediction_type="epsilon", sample_max_value=1.5, thresholding=True,
                    variance_type="learned_range")  # fmt: skip


def write_tokenizer(folder: Path) -> None:
    """A SentencePiece unigram model trained on a few captions, saved as T5's `spiece.model`."""
    import sentencepiece as spm

    folder.mkdir(parents=True)
    text = folder / "corpus.txt"
    text.write_text("\n".join(CAPTIONS * 20))
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(folder / "spiece"), vocab_size=24,
                                   model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
                                   minloglevel=2)  # fmt: skip
    text.unlink()
    (folder / "spiece.vocab").unlink()
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer"}))


def write_tiny_if_folder(root: str | Path, seed: int = 0) -> Path:
    """Seeded tiny IF stage I at `root` (16 px, views of 16 px)."""
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import T5Config, T5EncoderModel

    root = Path(root)
    torch.manual_seed(seed)
    UNet2DConditionModel(**IF_UNET).save_pretrained(root / "unet")
    t5 = T5Config(vocab_size=30, d_model=24, d_kv=6, d_ff=32, num_layers=2, num_heads=4)
    T5EncoderModel(t5).save_pretrained(root / "text_encoder")
    DDPMScheduler(**IF_SCHEDULER).save_pretrained(root / "scheduler")
    write_tokenizer(root / "tokenizer")
    (root / "model_index.json").write_text(json.dumps({"_class_name": "IFPipeline"}))
    return root
