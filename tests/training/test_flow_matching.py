import math

import pytest
import torch
from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3

from sora_diffusers.schedulers import shift_sigmas
from sora_diffusers.training import (
    LOSS_WEIGHTING_SCHEMES,
    WEIGHTING_SCHEMES,
    add_noise,
    flow_matching_loss,
    flow_target,
    loss_weighting,
    prepare_frame_conditioning_sigmas,
    sample_sigmas,
    sigmas_to_timesteps,
)


B, C, T, H, W = 2, 3, 4, 5, 6
NUM_DRAWS = 20_000  # enough for the mean of a (0, 1) variable to be within ~0.005 of its expectation


def _latents(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, noise), each of shape (B, C, T, H, W)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(B, C, T, H, W, generator=generator), torch.randn(B, C, T, H, W, generator=generator)


# ---------------------------------------------------------------- forward process and target


def test_add_noise_end_points_and_midpoint():
    x0, noise = _latents(seed=0)
    assert torch.equal(add_noise(x0, noise, torch.zeros(B)), x0)
    assert torch.equal(add_noise(x0, noise, torch.ones(B)), noise)
    torch.testing.assert_close(add_noise(x0, noise, torch.full((B,), 0.25)), 0.75 * x0 + 0.25 * noise)
    torch.testing.assert_close(add_noise(x0, noise, 0.25), 0.75 * x0 + 0.25 * noise)


def test_add_noise_per_frame_sigmas_broadcast_over_frames():
    x0, noise = _latents(seed=1)
    sigmas = torch.tensor([[0.0, 0.2, 0.5, 1.0], [0.9, 0.0, 0.0, 0.3]])  # (B, T)
    noisy = add_noise(x0, noise, sigmas)
    assert noisy.shape == (B, C, T, H, W)
    for b in range(B):
        for t in range(T):
            sigma = sigmas[b, t].item()
            expected = (1 - sigma) * x0[b, :, t] + sigma * noise[b, :, t]
            torch.testing.assert_close(noisy[b, :, t], expected)
    # Frames at sigma 0 are exactly the clean latents (conditioning frames).
    assert torch.equal(noisy[0, :, 0], x0[0, :, 0])
    assert torch.equal(noisy[1, :, 1:3], x0[1, :, 1:3])
    # A (B,) sigma equals the same value repeated per frame.
    per_sample = torch.tensor([0.3, 0.7])
    torch.testing.assert_close(
        add_noise(x0, noise, per_sample), add_noise(x0, noise, per_sample[:, None].expand(B, T))
    )


def test_add_noise_rejects_bad_shapes():
    x0, noise = _latents(seed=2)
    with pytest.raises(ValueError, match="`sigmas` must be a scalar, \\(B,\\), \\(B, T\\)"):
        add_noise(x0, noise, torch.rand(B + 1))
    with pytest.raises(ValueError, match="`sigmas`"):
        add_noise(x0, noise, torch.rand(B, T + 1))
    with pytest.raises(ValueError, match="`noise` must have the shape of `x0`"):
        add_noise(x0, noise[:, :, :2], torch.rand(B))


def test_flow_target_is_the_derivative_of_the_path():
    x0, noise = _latents(seed=3)
    target = flow_target(x0, noise)
    torch.testing.assert_close(target, noise - x0)
    # Finite difference of x_t in sigma, at a per-frame sigma: the path is straight, so it is exact up to rounding.
    sigmas, step = torch.rand(B, T, generator=torch.Generator().manual_seed(3)) * 0.5, 0.25
    slope = (add_noise(x0, noise, sigmas + step) - add_noise(x0, noise, sigmas)) / step
    torch.testing.assert_close(slope, target, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- sigma sampling


def _seeded_sigmas(scheme: str, seed: int) -> torch.Tensor:
    return sample_sigmas(NUM_DRAWS, weighting_scheme=scheme, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("scheme", WEIGHTING_SCHEMES)
def test_sample_sigmas_range_and_determinism(scheme):
    sigmas = _seeded_sigmas(scheme, seed=0)
    assert sigmas.shape == (NUM_DRAWS,) and sigmas.dtype == torch.float32
    assert sigmas.min() > 0 and sigmas.max() < 1
    assert torch.equal(sigmas, _seeded_sigmas(scheme, seed=0))
    assert not torch.equal(sigmas, _seeded_sigmas(scheme, seed=1))


def test_sample_sigmas_means():
    generator = torch.Generator().manual_seed(0)
    for scheme in ("uniform", "logit_normal", "mode"):
        assert sample_sigmas(NUM_DRAWS, weighting_scheme=scheme, generator=generator).mean().item() == pytest.approx(
            0.5, abs=0.01
        )
    # logit_normal with mean 1: sigmoid(N(1, 1)) has mean ~0.70 (E[sigmoid(1 + Z)], numerically 0.6967).
    shifted = sample_sigmas(NUM_DRAWS, weighting_scheme="logit_normal", logit_mean=1.0, generator=generator)
    assert shifted.mean().item() == pytest.approx(0.6967, abs=0.01)
    # Concentration: logit_normal puts fewer draws near the ends than uniform (uniform: 20% below 0.1 or above 0.9).
    logit_normal = sample_sigmas(NUM_DRAWS, weighting_scheme="logit_normal", generator=generator)
    tail_fraction = ((logit_normal < 0.1) | (logit_normal > 0.9)).float().mean().item()
    assert tail_fraction == pytest.approx(2 * 0.5 * math.erfc(math.log(9) / math.sqrt(2)), abs=0.01)  # ~0.028


@pytest.mark.parametrize("scheme", WEIGHTING_SCHEMES)
def test_sample_sigmas_matches_diffusers_draws(scheme):
    ours = sample_sigmas(64, weighting_scheme=scheme, generator=torch.Generator().manual_seed(5))
    theirs = compute_density_for_timestep_sampling(
        scheme if scheme != "uniform" else "none",
        64,
        logit_mean=0.0,
        logit_std=1.0,
        mode_scale=1.29,
        generator=torch.Generator().manual_seed(5),
    )
    torch.testing.assert_close(ours, theirs.clamp(1e-5, 1 - 1e-5))


def test_sample_sigmas_shift_and_mode_scale():
    unshifted = sample_sigmas(1000, generator=torch.Generator().manual_seed(7))
    shifted = sample_sigmas(1000, shift=3.0, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(shifted, shift_sigmas(unshifted, 3.0))
    assert shifted.mean() > unshifted.mean() + 0.1
    mode_zero = sample_sigmas(
        1000, weighting_scheme="mode", mode_scale=0.0, generator=torch.Generator().manual_seed(7)
    )
    torch.testing.assert_close(mode_zero, 1 - unshifted, atol=1e-6, rtol=0)  # mode with scale 0 is 1 - uniform


def test_sample_sigmas_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"`weighting_scheme` must be one of \('uniform', 'logit_normal', 'mode'\)"):
        sample_sigmas(4, weighting_scheme="lognorm")
    with pytest.raises(ValueError, match="`batch_size`"):
        sample_sigmas(0)
    with pytest.raises(ValueError, match="`logit_std`"):
        sample_sigmas(4, weighting_scheme="logit_normal", logit_std=0.0)
    with pytest.raises(ValueError, match="`shift`"):
        sample_sigmas(4, shift=-1.0)


def test_sigmas_to_timesteps():
    sigmas = torch.tensor([[0.0, 0.25], [0.5, 1.0]])
    assert sigmas_to_timesteps(sigmas).tolist() == [[0.0, 250.0], [500.0, 1000.0]]
    assert sigmas_to_timesteps(sigmas, num_train_timesteps=100).tolist() == [[0.0, 25.0], [50.0, 100.0]]


# ---------------------------------------------------------------- loss


def test_loss_weighting_values_and_diffusers_parity():
    sigmas = torch.tensor([0.1, 0.5, 0.9])
    assert torch.equal(loss_weighting(sigmas, "none"), torch.ones(3))
    torch.testing.assert_close(loss_weighting(sigmas, "sigma_sqrt"), torch.tensor([100.0, 4.0, 1 / 0.81]))
    assert loss_weighting(torch.tensor([0.5]), "cosmap").item() == pytest.approx(4 / math.pi)
    for scheme in LOSS_WEIGHTING_SCHEMES:
        torch.testing.assert_close(loss_weighting(sigmas, scheme), compute_loss_weighting_for_sd3(scheme, sigmas))
    assert loss_weighting(torch.rand(B, T), "cosmap").shape == (B, T)
    with pytest.raises(ValueError, match=r"`scheme` must be one of \('none', 'sigma_sqrt', 'cosmap'\)"):
        loss_weighting(sigmas, "logit_normal")


def test_loss_without_mask_is_mse_and_weighting_scales_samples():
    x0, noise = _latents(seed=8)
    pred = torch.randn_like(x0)
    target = flow_target(x0, noise)
    torch.testing.assert_close(flow_matching_loss(pred, target), torch.nn.functional.mse_loss(pred, target))
    per_sample_mse = ((pred - target) ** 2).flatten(1).mean(1)
    weighting = torch.tensor([2.0, 0.5])
    torch.testing.assert_close(flow_matching_loss(pred, target, weighting), (weighting * per_sample_mse).mean())
    # bf16 inputs are reduced in float32.
    assert flow_matching_loss(pred.bfloat16(), target.bfloat16()).dtype == torch.float32


def test_loss_mask_excludes_conditioning_frames():
    x0, noise = _latents(seed=9)
    target = flow_target(x0, noise)
    pred = torch.randn_like(x0)
    cond_mask = torch.tensor([[True, False, False, False], [True, True, False, True]])  # (B, T)
    loss = flow_matching_loss(pred, target, mask=~cond_mask)

    # Changing the prediction on conditioning frames, even to inf/nan, leaves the loss as it is.
    corrupted = pred.clone()
    corrupted[0, :, 0] = 1e6
    corrupted[1, :, 0] = float("nan")
    corrupted[1, :, 3] = float("inf")
    assert torch.equal(flow_matching_loss(corrupted, target, mask=~cond_mask), loss)

    # It is each sample's MSE over its generated frames, averaged over the batch.
    expected = torch.stack(
        [
            torch.nn.functional.mse_loss(pred[0, :, 1:], target[0, :, 1:]),
            torch.nn.functional.mse_loss(pred[1, :, 2], target[1, :, 2]),
        ]
    ).mean()
    torch.testing.assert_close(loss, expected)

    # Changing a generated frame does change it.
    corrupted[1, :, 2] += 1.0
    assert flow_matching_loss(corrupted, target, mask=~cond_mask) > loss


def test_loss_mask_with_infinite_weight_on_clean_frames():
    """sigma_sqrt weights are infinite at sigma 0; masked-out conditioning frames must not turn the loss into nan."""
    x0, noise = _latents(seed=10)
    cond_mask = torch.zeros(B, T, dtype=torch.bool)
    cond_mask[:, 0] = True
    sigmas = prepare_frame_conditioning_sigmas(torch.tensor([0.4, 0.8]), cond_mask)
    weighting = loss_weighting(sigmas, "sigma_sqrt")
    assert torch.isinf(weighting[:, 0]).all()
    loss = flow_matching_loss(torch.zeros_like(x0), flow_target(x0, noise), weighting, mask=~cond_mask)
    assert torch.isfinite(loss)
    expected = torch.stack(
        [(flow_target(x0, noise)[b, :, 1:] ** 2).mean() / sigma**2 for b, sigma in enumerate([0.4, 0.8])]
    ).mean()
    torch.testing.assert_close(loss, expected)


def test_loss_accepts_full_shape_mask_and_rejects_bad_inputs():
    x0, noise = _latents(seed=11)
    target = flow_target(x0, noise)
    pred = torch.randn_like(x0)
    frame_mask = torch.tensor([[False, True, True, True], [True, True, True, False]])
    full_mask = frame_mask[:, None, :, None, None].expand(B, C, T, H, W)
    torch.testing.assert_close(
        flow_matching_loss(pred, target, mask=full_mask), flow_matching_loss(pred, target, mask=frame_mask)
    )
    with pytest.raises(ValueError, match="`mask`"):
        flow_matching_loss(pred, target, mask=torch.ones(B, T + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="`weighting`"):
        flow_matching_loss(pred, target, weighting=torch.ones(B + 1))
    with pytest.raises(ValueError, match="same shape"):
        flow_matching_loss(pred, target[:, :, :2])


# ---------------------------------------------------------------- per-frame conditioning


def test_prepare_frame_conditioning_sigmas():
    sigma = torch.tensor([0.3, 0.9])
    cond_mask = torch.tensor([[True, False, False], [False, False, True]])
    per_frame = prepare_frame_conditioning_sigmas(sigma, cond_mask)
    assert per_frame.shape == (2, 3)
    torch.testing.assert_close(per_frame, torch.tensor([[0.0, 0.3, 0.3], [0.9, 0.9, 0.0]]))
    # With these sigmas the conditioning frames of the noisy input are the clean latents.
    x0, noise = torch.randn(2, 4, 3, 2, 2), torch.randn(2, 4, 3, 2, 2)
    noisy = add_noise(x0, noise, per_frame)
    assert torch.equal(noisy[0, :, 0], x0[0, :, 0]) and torch.equal(noisy[1, :, 2], x0[1, :, 2])
    assert not torch.equal(noisy[0, :, 1], x0[0, :, 1])


def test_prepare_frame_conditioning_sigmas_rejects_bad_inputs():
    with pytest.raises(ValueError, match="`sigma` must have shape \\(B,\\)"):
        prepare_frame_conditioning_sigmas(torch.rand(2, 3), torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="`cond_mask` must be a bool tensor"):
        prepare_frame_conditioning_sigmas(torch.rand(2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="`cond_mask` must have shape \\(B=2, T\\)"):
        prepare_frame_conditioning_sigmas(torch.rand(2), torch.zeros(3, 3, dtype=torch.bool))
