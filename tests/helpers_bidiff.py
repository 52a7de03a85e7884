"""Tiny BiDiff test doubles written in the real file formats (Shap-E, DeepFloyd IF stage I), and helpers the
BiDiff tests share."""

from __future__ import annotations

import json
from pathlib import Path

# diffusers' own fast Shap-E tests (tests/pipelines/shap_e/test_shap_e.py) use these sizes
TINY_SHAP_E_DIM = 32  # prior embedding_dim = renderer d_latent = text projection
TINY_SHAP_E_HIDDEN = 8  # renderer MLP width; params_proj rows = 4 * 8 = prior num_embeddings
SHAP_E_SCHEDULER = dict(  # openai/shap-e scheduler/scheduler_config.json
    beta_schedule="exp",
    num_train_timesteps=1024,
    prediction_type="sample",
    use_karras_sigmas=True,
    clip_sample=True,
    clip_sample_range=1.0,
)


def write_tiny_shap_e(dest: Path, seed: int = 0) -> Path:
    """A seeded tiny Shap-E (ShapEPipeline layout: prior/, text_encoder/, tokenizer/, scheduler/,
    shap_e_renderer/, model_index.json) saved with save_pretrained at `dest`; returns `dest`.

    Same classes as openai/shap-e; the tokenizer is the pack's shipped CLIP BPE tokenizer (Shap-E's is
    CLIP-L's), so no hub is reached. Latents are [B, 32, 32]."""
    import torch
    from diffusers import HeunDiscreteScheduler, PriorTransformer, ShapEPipeline
    from diffusers.pipelines.shap_e import ShapERenderer
    from papernodes.models.common.loading import load_tokenizer
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    d, h = TINY_SHAP_E_DIM, TINY_SHAP_E_HIDDEN
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    prior = PriorTransformer(
        num_attention_heads=2,
        attention_head_dim=16,
        embedding_dim=d,
        num_embeddings=4 * h,
        embedding_proj_dim=d,
        time_embed_dim=4 * d,
        num_layers=1,
        clip_embed_dim=2 * d,
        additional_embeddings=0,
        time_embed_act_fn="gelu",
        norm_in_type="layer",
        embedding_proj_norm_type="layer",
        encoder_hid_proj_type=None,
        added_emb_type=None,
    )
    text_encoder = CLIPTextModelWithProjection(
        CLIPTextConfig(
            hidden_size=d,
            projection_dim=d,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=77,
            vocab_size=49408,
            bos_token_id=0,  # CLIP's legacy ids as in diffusers' tiny Shap-E (eos 2: pooled at argmax(ids))
            eos_token_id=2,
            pad_token_id=1,
        )
    )
    renderer = ShapERenderer(
        param_shapes=((h, 93), (h, h), (h, h), (h, h)),
        d_latent=d,
        d_hidden=h,
        n_output=12,
        background=(0.1, 0.1, 0.1),
    )
    with torch.no_grad():  # zero-initialised parameters (positional embedding, ...) would hide wiring bugs
        for module in (prior, text_encoder, renderer.params_proj, renderer.mlp):
            for p in module.parameters():
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    pipe = ShapEPipeline(
        prior=prior.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=load_tokenizer(),
        scheduler=HeunDiscreteScheduler(**SHAP_E_SCHEDULER),
        shap_e_renderer=renderer.eval(),
    )
    dest = Path(dest)
    pipe.save_pretrained(dest, safe_serialization=True)
    return dest


# ---------------------------------------------------------------------------------------- DeepFloyd IF

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


def write_tiny_if_tokenizer(folder: Path) -> None:
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
    """A seeded tiny DeepFloyd IF stage I at `root` in the real diffusers layout (IF's U-Net blocks with a learnt
    variance, a T5 encoder, a SentencePiece `spiece.model`, IF's scheduler config); 16 px."""
    import torch
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import T5Config, T5EncoderModel

    root = Path(root)
    torch.manual_seed(seed)
    UNet2DConditionModel(**IF_UNET).save_pretrained(root / "unet")
    t5 = T5Config(vocab_size=30, d_model=24, d_kv=6, d_ff=32, num_layers=2, num_heads=4)
    T5EncoderModel(t5).save_pretrained(root / "text_encoder")
    DDPMScheduler(**IF_SCHEDULER).save_pretrained(root / "scheduler")
    write_tiny_if_tokenizer(root / "tokenizer")
    (root / "model_index.json").write_text(json.dumps({"_class_name": "IFPipeline"}))
    return root


# ------------------------------------------------------------------------------------------- shared


def perturb(module, seed: int = 0, scale: float = 0.05, only: str = "") -> None:
    """Seeded noise on the parameters whose name contains `only` (zero-initialised outputs hide every path)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if only in name:
                p.add_(scale * torch.randn(p.shape, generator=g))


def forward_hooks(module) -> int:
    """Forward hooks left on `module` and its children."""
    return sum(len(m._forward_hooks) for m in module.modules())


def generate_mesh_views_nodes(model_node: str, prefix: str) -> dict:
    """API-prompt nodes: Generate 3D (2 steps, seed 1) from `model_node`'s BIDIFF_MODEL -> Shapes to Mesh ->
    core Save GLB, and the views to core Save Image under `prefix` (the host tests' shared graph)."""
    return {
        "gen": {
            "class_type": "PaperNodes_BiDiffGenerate",
            "inputs": {
                "model": [model_node, 0],
                "prompt": "a red striped cube",
                "shape_prompt": "",
                "texture_prompt": "",
                "seed": 1,
                "steps": 2,
                "text_scale": 7.0,
                "consistency_scale": 7.0,
                "lazy_t": 0.6,
            },
        },  # fmt: skip
        "mesh": {"class_type": "PaperNodes_BiDiffMesh", "inputs": {"shapes": ["gen", 0], "resolution": 16}},
        "glb": {"class_type": "SaveGLB", "inputs": {"mesh": ["mesh", 0], "filename_prefix": prefix}},
        "views": {"class_type": "SaveImage", "inputs": {"images": ["gen", 1], "filename_prefix": prefix}},
    }
