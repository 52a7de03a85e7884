"""HandDiffuse denoisers and sampler (models/handdiffuse/denoiser.py, sampler.py) on a tiny config:
behaviour, not only shapes: the single-hand stage keeps hands independent and the interacting block
couples them; a perfect x0 oracle is returned by the sampler; keyframes are kept bit-exactly; CFG with
guidance 1 is the conditional prediction."""

from __future__ import annotations

import pytest
import torch
from papernodes.models.common.errors import InputError
from papernodes.models.handdiffuse import sampler as S
from papernodes.models.handdiffuse.denoiser import HandDenoiser, drop_labels, guided_x0
from papernodes.models.handdiffuse.motion import HAND_FEATURES

TINY = {"width": 32, "heads": 2, "single_layers": 1, "interact_layers": 1, "num_labels": 7, "max_frames": 64}


def _model(**kw) -> HandDenoiser:
    torch.manual_seed(0)
    return HandDenoiser(**{**TINY, **kw}).eval()


def _x(b=2, t=12, seed=1) -> torch.Tensor:
    return torch.randn(b, t, 2, HAND_FEATURES, generator=torch.Generator().manual_seed(seed))


def test_output_shape_and_label_matters():
    m, x = _model(), _x()
    t = torch.tensor([10, 500])
    with torch.no_grad():
        a = m(x, t, torch.tensor([0, 1]))
        b = m(x, t, torch.tensor([2, 3]))
        u = m(x, t, None)
        u_null = m(x, t, torch.full((2,), m.null_label))
    assert a.shape == x.shape and torch.isfinite(a).all()
    assert (a - b).abs().max() > 1e-4 and (a - u).abs().max() > 1e-4
    assert torch.equal(u, u_null)


def test_single_hand_stage_is_per_hand_and_interacting_block_couples_the_hands():
    x = _x()
    y = x.clone()
    y[:, :, 1] += 1.0  # change only the left hand
    t = torch.tensor([100, 100])
    with torch.no_grad():
        single = _model(interact_layers=0)
        assert torch.allclose(single(x, t)[:, :, 0], single(y, t)[:, :, 0], atol=1e-6)  # right unaffected
        both = _model()
        assert (both(x, t)[:, :, 0] - both(y, t)[:, :, 0]).abs().max() > 1e-3  # right sees the left
        # frames talk to each other: changing frame 0 changes frame 5's prediction
        z = x.clone()
        z[:, 0] += 1.0
        assert (both(x, t)[:, 5] - both(z, t)[:, 5]).abs().max() > 1e-4


def test_cfg_guidance_one_is_conditional_and_zero_is_unconditional():
    m, x = _model(), _x()
    t, lab = torch.tensor([50, 900]), torch.tensor([4, 6])
    with torch.no_grad():
        cond, uncond = m(x, t, lab), m(x, t, None)
        assert torch.equal(guided_x0(m, x, t, lab, 1.0), cond)
        assert torch.allclose(guided_x0(m, x, t, lab, 0.0), uncond, atol=1e-5)
        assert torch.allclose(guided_x0(m, x, t, lab, 2.5), uncond + 2.5 * (cond - uncond), atol=1e-5)


def test_label_dropout_rate():
    lab = torch.zeros(10000, dtype=torch.long)
    out = drop_labels(lab, 0.1, 7, torch.Generator().manual_seed(0))
    assert set(out.unique().tolist()) == {0, 7}
    assert abs((out == 7).float().mean().item() - 0.1) < 0.01


def test_sampler_with_a_perfect_oracle_returns_the_oracle_motion():
    target = _x(seed=3)
    calls = []

    def oracle(x, t):
        calls.append(int(t[0]))
        return target

    out = S.ddim_sample(oracle, tuple(target.shape), 10, torch.Generator().manual_seed(0))
    assert torch.equal(out, target)
    assert len(calls) == 10 and calls[0] == 999 and calls[-1] == 0 and calls == sorted(calls, reverse=True)


def test_ddim_step_is_consistent_with_forward_diffusion():
    """With the oracle, every intermediate x_t equals q_sample(x0, t, eps) for the initial eps (eta=0)."""
    target = _x(seed=4)
    ac = S.cosine_alphas_cumprod()
    seen = []

    def oracle(x, t):
        seen.append((x.clone(), int(t[0])))
        return target

    S.ddim_sample(oracle, tuple(target.shape), 5, torch.Generator().manual_seed(0))
    x_first, t_first = seen[0]
    eps = (x_first - ac[t_first].sqrt().float() * target) / (1 - ac[t_first]).sqrt().float()
    for x, t in seen[1:]:
        expected = S.q_sample(target, torch.tensor([t] * 2), eps, ac)
        assert torch.allclose(x, expected, atol=1e-4)


def test_imputation_keeps_keyframes_bit_exactly():
    m = _model()
    shape = (1, 16, 2, HAND_FEATURES)
    keys = _x(1, 16, seed=5)
    known = torch.zeros(shape, dtype=torch.bool)
    known[:, [0, 15]] = True  # first and last frame, both hands
    known[:, 7, 0, :6] = True  # one joint rotation of the right hand at frame 7
    with torch.no_grad():
        out = S.ddim_sample(
            lambda x, t: m(x, t), shape, 4, torch.Generator().manual_seed(0), keyframes=keys, known=known
        )
    assert torch.equal(out[known], keys[known])
    assert not torch.equal(out[~known], keys[~known])
    with pytest.raises(InputError, match="'keyframes'"):
        S.ddim_sample(lambda x, t: x, shape, 2, torch.Generator(), keyframes=keys)
    with pytest.raises(InputError, match="'steps'"):
        S.ddim_sample(lambda x, t: x, shape, 0, torch.Generator())


def test_clean_keyframes_are_what_the_model_sees_on_known_entries():
    """`clean_keyframes=True` (how train.py conditions the model): at every step the model's input holds the
    keyframe values themselves on the known entries, bit for bit; without it they are noised."""
    shape = (1, 8, 2, HAND_FEATURES)
    keys = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    known = torch.zeros(shape, dtype=torch.bool)
    known[:, [0, 7]] = True
    seen = []

    def spy(x, t):
        seen.append(x.clone())
        return torch.zeros_like(x)

    out = S.ddim_sample(
        spy, shape, 4, torch.Generator().manual_seed(0), keyframes=keys, known=known, clean_keyframes=True
    )
    assert len(seen) == 4 and all(torch.equal(x[known], keys[known]) for x in seen)
    assert torch.equal(out[known], keys[known])
    seen.clear()
    S.ddim_sample(spy, shape, 4, torch.Generator().manual_seed(0), keyframes=keys, known=known)
    assert (seen[0][known] - keys[known]).abs().max() > 0.1  # noised to t ~ T


def test_x0_skip_reads_the_input_at_low_noise_and_the_network_at_high_noise():
    model = _model(x0_skip=True)
    x = _x()
    with torch.no_grad():
        model.out.weight.zero_()
        model.out.bias.fill_(0.5)  # F = 0.5 everywhere
        ab = S.cosine_alphas_cumprod()
        for t in (0, 500, 999):
            got = model(x, torch.full((2,), t))
            want = ab[t].sqrt() * x + (1 - ab[t]).sqrt() * 0.5
            assert torch.allclose(got, want, atol=1e-6), t
    assert "alphas_cumprod" not in model.state_dict()  # not part of the file format


def test_model_space_round_trip_and_old_configs_keep_the_old_scaling():
    from papernodes.models.handdiffuse.pipeline import ModelConfig, from_model_space, to_model_space

    x = _x(1, 5)[0].double()
    g = torch.Generator().manual_seed(3)
    cfg = ModelConfig(
        feature_mean=torch.randn(2, HAND_FEATURES, generator=g).tolist(),
        feature_std=(torch.rand(2, HAND_FEATURES, generator=g) + 0.05).tolist(),
    )
    z = to_model_space(x, cfg)
    assert torch.allclose(from_model_space(z, cfg), x, atol=1e-9)
    old = to_model_space(x, ModelConfig())  # no statistics: wrists / trans_scale only
    assert torch.equal(old[..., :96], x[..., :96]) and torch.allclose(old[..., 96:], x[..., 96:] / 0.1)
