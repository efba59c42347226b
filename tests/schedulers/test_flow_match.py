import json
import logging
import math

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

from sora_diffusers.schedulers import SoraFlowMatchScheduler, calculate_shift, shift_sigmas, time_shift_sigmas
from sora_diffusers.training import add_noise


LATENT_SHAPE = (2, 4, 3, 6, 8)  # (B, C, T, H, W)
PARITY_ATOL = 1e-6


def _latents(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, noise), each of LATENT_SHAPE."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(LATENT_SHAPE, generator=generator), torch.randn(LATENT_SHAPE, generator=generator)


def _fake_velocity(sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
    """A fixed model stand-in that depends on both inputs, so any drift in either scheduler shows up downstream."""
    return torch.sin(sample) + 0.3 * sample * float(timestep) / 1000 - 0.1


def _public(config: dict) -> dict:
    """Config entries without diffusers' bookkeeping keys (`_class_name`, `_use_default_values`, ...)."""
    return {key: value for key, value in config.items() if not key.startswith("_")}


def _assert_same_schedule(ours: SoraFlowMatchScheduler, theirs) -> None:
    torch.testing.assert_close(ours.timesteps, theirs.timesteps, atol=PARITY_ATOL, rtol=0)
    torch.testing.assert_close(ours.sigmas, theirs.sigmas, atol=PARITY_ATOL, rtol=0)


# ---------------------------------------------------------------- shift formulas


def test_shift_sigmas_matches_closed_form():
    sigmas = torch.linspace(0, 1, 11, dtype=torch.float64)
    for shift in (1.0, 3.0, 5.0):
        expected = [shift * s / (1 + (shift - 1) * s) for s in sigmas.tolist()]
        torch.testing.assert_close(shift_sigmas(sigmas, shift), torch.tensor(expected, dtype=torch.float64))
    # shift 3 at sigma 0.5: 1.5 / 2 = 0.75; the end points stay fixed.
    assert shift_sigmas(torch.tensor([0.0, 0.5, 1.0]), 3.0).tolist() == [0.0, 0.75, 1.0]


def test_time_shift_is_static_shift_with_exp_mu():
    sigmas = torch.linspace(0.01, 1, 50, dtype=torch.float64)
    for mu in (-0.5, 0.0, 0.8, math.log(3.0)):
        torch.testing.assert_close(time_shift_sigmas(sigmas, mu), shift_sigmas(sigmas, math.exp(mu)))


def test_calculate_shift_is_linear_in_token_count():
    kwargs = {"base_seq_len": 256, "max_seq_len": 4096, "base_shift": 0.5, "max_shift": 1.15}
    assert calculate_shift(256, **kwargs) == pytest.approx(0.5)
    assert calculate_shift(4096, **kwargs) == pytest.approx(1.15)
    assert calculate_shift((256 + 4096) / 2, **kwargs) == pytest.approx((0.5 + 1.15) / 2)
    assert calculate_shift(8192, **kwargs) == pytest.approx(1.15 + (1.15 - 0.5) * 4096 / 3840)  # extrapolates
    with pytest.raises(ValueError, match="max_seq_len"):
        calculate_shift(100, base_seq_len=256, max_seq_len=256)


# ---------------------------------------------------------------- parity with diffusers' FlowMatchEulerDiscreteScheduler


@pytest.mark.parametrize("shift", [1.0, 3.0, 5.0])
@pytest.mark.parametrize("num_inference_steps", [1, 4, 28, 50])
def test_set_timesteps_matches_diffusers(shift, num_inference_steps):
    ours, theirs = SoraFlowMatchScheduler(shift=shift), FlowMatchEulerDiscreteScheduler(shift=shift)
    _assert_same_schedule(ours, theirs)  # the training schedule built in __init__
    ours.set_timesteps(num_inference_steps)
    theirs.set_timesteps(num_inference_steps)
    _assert_same_schedule(ours, theirs)
    assert len(ours.timesteps) == num_inference_steps
    assert ours.sigmas[0].item() == 1.0 and ours.sigmas[-1].item() == 0.0


@pytest.mark.parametrize("seq_len", [256, 1560, 4096, 9000])
def test_dynamic_shifting_matches_diffusers(seq_len):
    ours = SoraFlowMatchScheduler(use_dynamic_shifting=True, base_shift=0.7, max_shift=1.3)
    theirs = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.7, max_shift=1.3)
    mu = calculate_shift(seq_len, 256, 4096, 0.7, 1.3)
    ours.set_timesteps(20, mu=mu)
    theirs.set_timesteps(20, mu=mu)
    _assert_same_schedule(ours, theirs)
    # A larger latent is shifted further towards high noise.
    if seq_len > 256:
        baseline = SoraFlowMatchScheduler(use_dynamic_shifting=True, base_shift=0.7, max_shift=1.3)
        baseline.set_timesteps(20, mu=calculate_shift(256, 256, 4096, 0.7, 1.3))
        assert (ours.sigmas[1:-1] > baseline.sigmas[1:-1]).all()


@pytest.mark.parametrize("config", [{"shift": 3.0}, {"use_dynamic_shifting": True}])
def test_custom_sigmas_and_timesteps_match_diffusers(config):
    mu = 0.9 if config.get("use_dynamic_shifting") else None
    custom_sigmas = [1.0, 0.8, 0.55, 0.3, 0.1]
    custom_timesteps = [990.0, 700.0, 420.0, 150.0, 20.0]
    for kwargs in (
        {"sigmas": custom_sigmas},
        {"timesteps": custom_timesteps},
        {"sigmas": custom_sigmas, "timesteps": custom_timesteps},
    ):
        ours, theirs = SoraFlowMatchScheduler(**config), FlowMatchEulerDiscreteScheduler(**config)
        ours.set_timesteps(mu=mu, **kwargs)
        theirs.set_timesteps(mu=mu, **kwargs)
        _assert_same_schedule(ours, theirs)
        assert ours.num_inference_steps == 5


@pytest.mark.parametrize("config", [{"shift": 3.0}, {"shift": 5.0}, {"use_dynamic_shifting": True}])
def test_step_matches_diffusers_over_full_loop(config):
    ours, theirs = SoraFlowMatchScheduler(**config), FlowMatchEulerDiscreteScheduler(**config)
    mu = calculate_shift(1560) if config.get("use_dynamic_shifting") else None
    ours.set_timesteps(12, mu=mu)
    theirs.set_timesteps(12, mu=mu)
    _, noise = _latents(seed=0)
    ours_sample, theirs_sample = noise.clone(), noise.clone()
    for t in ours.timesteps:
        ours_sample = ours.step(_fake_velocity(ours_sample, t), t, ours_sample).prev_sample
        theirs_sample = theirs.step(_fake_velocity(theirs_sample, t), t, theirs_sample).prev_sample
        torch.testing.assert_close(ours_sample, theirs_sample, atol=PARITY_ATOL, rtol=0)
    assert ours.step_index == 12
    assert not torch.allclose(ours_sample, noise)  # the loop really moved the sample


def test_scale_noise_matches_diffusers_and_add_noise():
    x0, noise = _latents(seed=1)
    ours, theirs = SoraFlowMatchScheduler(shift=3.0), FlowMatchEulerDiscreteScheduler(shift=3.0)
    ours.set_timesteps(10)
    theirs.set_timesteps(10)
    timestep = ours.timesteps[3].repeat(LATENT_SHAPE[0])  # (B,)
    ours_noisy = ours.scale_noise(x0, timestep, noise)
    torch.testing.assert_close(ours_noisy, theirs.scale_noise(x0, timestep, noise), atol=PARITY_ATOL, rtol=0)
    torch.testing.assert_close(ours_noisy, add_noise(x0, noise, ours.sigmas[3]), atol=PARITY_ATOL, rtol=0)
    # Video-to-video: a pipeline sets the begin index, then the begin step's sigma is used.
    ours.set_begin_index(3)
    theirs.set_begin_index(3)
    torch.testing.assert_close(ours.scale_noise(x0, timestep, noise), theirs.scale_noise(x0, timestep, noise))


def test_video_to_video_starts_mid_schedule():
    scheduler = SoraFlowMatchScheduler(shift=3.0)
    scheduler.set_timesteps(10)
    x0, noise = _latents(seed=2)
    start = 4
    scheduler.set_begin_index(start)
    sample = scheduler.scale_noise(x0, scheduler.timesteps[start : start + 1], noise)
    for t in scheduler.timesteps[start:]:
        sample = scheduler.step(noise - x0, t, sample).prev_sample
    torch.testing.assert_close(sample, x0, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- step details


def test_step_upcasts_bf16():
    scheduler = SoraFlowMatchScheduler(shift=3.0)
    scheduler.set_timesteps(50)
    generator = torch.Generator().manual_seed(3)
    sample = (1 + torch.randn(4096, generator=generator)).to(torch.bfloat16)
    velocity = torch.randn(4096, generator=generator).to(torch.bfloat16)
    t = scheduler.timesteps[10]
    dt = scheduler.sigmas[11] - scheduler.sigmas[10]

    prev_sample = scheduler.step(velocity, t, sample).prev_sample

    assert prev_sample.dtype == torch.bfloat16
    expected = (sample.float() + dt * velocity.float()).to(torch.bfloat16)
    assert torch.equal(prev_sample, expected)
    # The check can tell: the same update done in bf16 rounds differently for some elements.
    in_bf16 = sample + dt.to(torch.bfloat16) * velocity
    assert not torch.equal(in_bf16, expected)


def test_step_accepts_one_element_tensor_timestep():
    x0, noise = _latents(seed=4)
    results = []
    for as_input in (float, lambda t: t, lambda t: t.reshape(1), lambda t: t.reshape(1, 1)):
        scheduler = SoraFlowMatchScheduler(shift=3.0)
        scheduler.set_timesteps(6)
        sample = noise.clone()
        for t in scheduler.timesteps:
            sample = scheduler.step(noise - x0, as_input(t), sample, return_dict=False)[0]
        results.append(sample)
    for sample in results[1:]:
        assert torch.equal(sample, results[0])


def test_repeated_timestep_maps_to_its_second_occurrence_like_diffusers():
    """Entering a schedule at a repeated timestep starts from its second copy, so no sigma is skipped."""
    ours, theirs = SoraFlowMatchScheduler(shift=3.0), FlowMatchEulerDiscreteScheduler(shift=3.0)
    for scheduler in (ours, theirs):
        scheduler.set_timesteps(sigmas=[1.0, 0.6, 0.6, 0.3])
    repeated = ours.timesteps[1]
    assert ours.index_for_timestep(repeated) == theirs.index_for_timestep(repeated) == 2
    x0, noise = _latents(seed=8)
    ours_sample = ours.step(noise - x0, repeated, noise).prev_sample
    theirs_sample = theirs.step(noise - x0, repeated, noise).prev_sample
    torch.testing.assert_close(ours_sample, theirs_sample, atol=PARITY_ATOL, rtol=0)
    assert ours.step_index == 3


def test_step_rejects_bad_timesteps():
    scheduler = SoraFlowMatchScheduler()
    scheduler.set_timesteps(4)
    x0, _ = _latents(seed=5)
    with pytest.raises(ValueError, match="integer index"):
        scheduler.step(x0, 0, x0)
    with pytest.raises(ValueError, match="integer index"):
        scheduler.step(x0, torch.tensor(999), x0)
    with pytest.raises(ValueError, match="one-element"):
        scheduler.step(x0, scheduler.timesteps[:2], x0)
    with pytest.raises(ValueError, match="not in the schedule"):
        scheduler.step(x0, 123.4, x0)


def test_set_timesteps_rejects_bad_arguments():
    with pytest.raises(ValueError, match="`mu` must be passed"):
        SoraFlowMatchScheduler(use_dynamic_shifting=True).set_timesteps(10)
    with pytest.raises(ValueError, match="num_inference_steps"):
        SoraFlowMatchScheduler().set_timesteps()
    with pytest.raises(ValueError, match="same length"):
        SoraFlowMatchScheduler().set_timesteps(sigmas=[1.0, 0.5], timesteps=[1000.0])
    with pytest.raises(ValueError, match="num_inference_steps"):
        SoraFlowMatchScheduler().set_timesteps(3, sigmas=[1.0, 0.5])
    with pytest.raises(ValueError, match="shift"):
        SoraFlowMatchScheduler(shift=0.0)


def test_class_attributes_and_len():
    scheduler = SoraFlowMatchScheduler(num_train_timesteps=500)
    assert len(scheduler) == 500
    assert SoraFlowMatchScheduler.order == 1
    assert {cls.__name__ for cls in scheduler.compatibles} == {
        "FlowMatchEulerDiscreteScheduler",
        "UniPCMultistepScheduler",
    }


# ---------------------------------------------------------------- sampling a known x0


@pytest.mark.parametrize("config", [{"shift": 1.0}, {"shift": 3.0}, {"use_dynamic_shifting": True}])
def test_euler_with_exact_velocity_recovers_x0(config):
    x0, noise = _latents(seed=6)
    scheduler = SoraFlowMatchScheduler(**config)
    scheduler.set_timesteps(8, mu=calculate_shift(1024) if config.get("use_dynamic_shifting") else None)

    # 1. v = noise - x0 is constant along the straight path, so Euler is exact for any step count.
    sample = noise.clone()
    for t in scheduler.timesteps:
        sample = scheduler.step(noise - x0, t, sample).prev_sample
    torch.testing.assert_close(sample, x0, atol=1e-5, rtol=0)

    # 2. The same field written as a model would see it, v(x_t, t) = (x_t - x0) / sigma with sigma = t / N: this
    #    also checks that the timestep handed to the model encodes the sigma the step uses.
    scheduler.set_timesteps(8, mu=calculate_shift(1024) if config.get("use_dynamic_shifting") else None)
    sample = noise.clone()
    for t in scheduler.timesteps:
        velocity = (sample - x0) / (t / scheduler.config.num_train_timesteps)
        sample = scheduler.step(velocity, t, sample).prev_sample
    torch.testing.assert_close(sample, x0, atol=1e-5, rtol=0)


def test_unipc_flow_prediction_recovers_x0_with_the_same_model_contract():
    x0, noise = _latents(seed=7)
    scheduler = UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=3.0)
    scheduler.set_timesteps(10)
    sample = noise.clone()
    for t in scheduler.timesteps:
        sample = scheduler.step(noise - x0, t, sample).prev_sample
    # UniPC starts at sigma 1 - 1e-6 rather than 1, hence the slightly looser tolerance.
    torch.testing.assert_close(sample, x0, atol=1e-4, rtol=0)


# ---------------------------------------------------------------- configs


def test_settings_it_does_not_implement_are_named_when_they_would_change_the_sigmas(caplog):
    """diffusers drops a compatible scheduler's unknown settings silently; set, they are named in a warning."""
    logger = "sora_diffusers.schedulers.scheduling_flow_match"
    with caplog.at_level(logging.WARNING, logger=logger):
        SoraFlowMatchScheduler.from_config(FlowMatchEulerDiscreteScheduler(shift=3.0).config)
    assert caplog.text == ""
    ltx_like = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, shift_terminal=0.1, time_shift_type="linear")
    with caplog.at_level(logging.WARNING, logger=logger):
        ours = SoraFlowMatchScheduler.from_config(ltx_like.config, use_karras_sigmas=False)
    assert "does not implement {'shift_terminal': 0.1, 'time_shift_type': 'linear'}" in caplog.text
    assert ours.config.use_dynamic_shifting


def test_config_converts_both_ways_with_diffusers():
    config = {
        "shift": 3.0,
        "use_dynamic_shifting": True,
        "base_shift": 0.6,
        "max_shift": 1.4,
        "max_image_seq_len": 8192,
    }
    theirs = FlowMatchEulerDiscreteScheduler(**config)
    ours = SoraFlowMatchScheduler.from_config(theirs.config)
    back = FlowMatchEulerDiscreteScheduler.from_config(ours.config)
    for key, value in config.items():
        assert ours.config[key] == value
        assert back.config[key] == value
    mu = calculate_shift(2000, 256, 8192, 0.6, 1.4)
    for scheduler in (theirs, ours, back):
        scheduler.set_timesteps(15, mu=mu)
    _assert_same_schedule(ours, theirs)
    _assert_same_schedule(ours, back)


def test_save_pretrained_round_trip(tmp_path):
    scheduler = SoraFlowMatchScheduler(shift=5.0, num_train_timesteps=800)
    scheduler.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "scheduler_config.json").read_text())
    assert saved["_class_name"] == "SoraFlowMatchScheduler"
    assert saved["shift"] == 5.0

    loaded = SoraFlowMatchScheduler.from_pretrained(tmp_path)
    assert _public(loaded.config) == _public(scheduler.config)
    loaded.set_timesteps(7)
    scheduler.set_timesteps(7)
    assert torch.equal(loaded.timesteps, scheduler.timesteps)
    assert torch.equal(loaded.sigmas, scheduler.sigmas)
