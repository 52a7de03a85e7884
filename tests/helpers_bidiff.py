"""Tiny BiDiff test doubles written in the real file formats."""

from __future__ import annotations

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
