"""`frame_conditioning_step`: the training step of the text-to-video scripts, on a tiny DiT and cached latents."""

import argparse

import numpy as np
import pytest
import torch

from sora_diffusers import DiTVideoTransformer3D
from sora_diffusers.training.text_to_video import (
    add_flow_matching_arguments,
    check_flow_matching_args,
    frame_conditioning_step,
)

from ..conftest import TINY_TRANSFORMER_CONFIG


B, C, T, H, W = 4, TINY_TRANSFORMER_CONFIG["in_channels"], 3, 4, 4


class FakeTrainer:
    """What the step reads from `Trainer`: its device and a per-micro-batch random stream."""

    device = torch.device("cpu")

    def __init__(self, seed: int = 0):
        self.count, self.seed = 0, seed

    def micro_batch_rng(self) -> np.random.Generator:
        self.count += 1
        return np.random.default_rng([self.seed, self.count])


def flow_args(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_flow_matching_arguments(parser)
    args = parser.parse_args(list(flags))
    check_flow_matching_args(args)
    return args


def cached_batch() -> dict:
    latents = torch.randn(B, C, T, H, W, generator=torch.Generator().manual_seed(0))
    return {
        "latents": latents,
        "tail_latents": [latents[b, :, -2:].clone() for b in range(B)],
        "tail_length": [2] * B,
        "caption": ["a red circle moving to the right"] * B,
    }


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return DiTVideoTransformer3D(**TINY_TRANSFORMER_CONFIG, per_frame_timesteps=True)


def run_steps(model, args, num_steps: int = 8) -> list[tuple[tuple[int, ...], torch.Tensor, torch.Tensor]]:
    """(hidden_states shape, timestep, loss) of each step."""
    seen = []
    handle = model.register_forward_pre_hook(lambda _, inputs: seen.append((tuple(inputs[0].shape), inputs[1])))
    text = torch.zeros(B, 3, TINY_TRANSFORMER_CONFIG["text_dim"]), torch.ones(B, 3, dtype=torch.long)
    step = frame_conditioning_step(FakeTrainer(), model, None, lambda captions: text, args, per_frame_timesteps=True)
    try:
        losses = [step(cached_batch(), i)["loss"].detach() for i in range(num_steps)]
    finally:
        handle.remove()
    return [(shape, timestep, loss) for (shape, timestep), loss in zip(seen, losses)]


def test_image_prob_one_trains_latent_frame_0_alone_unconditioned(model):
    steps = run_steps(model, flow_args("--image_prob", "1"))
    assert [shape for shape, _, _ in steps] == [(B, C, 1, H, W)] * len(steps)
    for _, timestep, loss in steps:
        assert timestep.shape == (B, 1) and bool((timestep > 0).all())  # no frame enters clean
        assert torch.isfinite(loss)


def test_image_prob_mixes_images_and_clips_and_zero_keeps_the_random_stream(model):
    mixed = [shape[2] for shape, _, _ in run_steps(model, flow_args("--image_prob", "0.5"), num_steps=16)]
    assert set(mixed) == {1, T} and 3 <= mixed.count(1) <= 13

    # without images no draw is added: the steps are those of a run that never heard of the flag
    default, zero = run_steps(model, flow_args()), run_steps(model, flow_args("--image_prob", "0"))
    assert all(shape[2] == T for shape, _, _ in default)
    for (s0, t0, l0), (s1, t1, l1) in zip(default, zero):
        assert s0 == s1 and torch.equal(t0, t1) and torch.equal(l0, l1)


@pytest.mark.parametrize("value", ["-0.1", "1.5"])
def test_image_prob_outside_0_1_is_refused(value):
    with pytest.raises(ValueError, match=rf"--image_prob must be in \[0, 1\], got {value}"):
        flow_args("--image_prob", value)
