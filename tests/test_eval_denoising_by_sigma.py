"""`benchmarks/eval_denoising_by_sigma.py` end to end on a tiny random pipeline (one torch thread, seconds): well-formed,
reproducible errors, and the one-step estimate x0_hat = x_t - sigma * v checked against a transformer that predicts 0,
whose error is sigma^2 * E[(noise - x0)^2] / Var(x0): it grows with sigma^2."""

import math

import pytest
import torch

from sora_diffusers import DiTVideoTransformer3D, SpacetimeVAE

from .conftest import load_script
from .test_eval_default_model import model_dir  # noqa: F401 (the tiny pipeline fixture, reused)


eval_denoising_by_sigma = load_script("benchmarks/eval_denoising_by_sigma.py")
held_out_scenes = load_script("benchmarks/eval_default_model.py").held_out_scenes

SIZE_FLAGS = ["--height", "64", "--width", "64", "--num_frames", "9", "--torch_threads", "1"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run(model, *flags: str) -> dict:
    return eval_denoising_by_sigma.main(["--model", str(model), "--num_clips", "2", *SIZE_FLAGS, *flags])


def test_errors_are_well_formed_and_reproducible(model_dir, capsys):  # noqa: F811
    result = run(model_dir, "--sigmas", "0.5", "0.99")
    assert set(result["errors"]) == {"latents", "layout"}
    for by_sigma in result["errors"].values():
        assert list(by_sigma) == [0.5, 0.99]
        assert all(math.isfinite(v) and v > 0 for v in by_sigma.values())
    assert result["patch_size"] == [1, 2, 2] and result["layout_signal"] > 0
    out = capsys.readouterr().out
    assert "| sigma | 0.5 | 0.99 |" in out and "| layout error | " in out
    assert run(model_dir, "--sigmas", "0.5", "0.99") == result


def test_a_transformer_that_predicts_zero_has_an_error_growing_with_sigma_squared(model_dir, tmp_path):  # noqa: F811
    transformer = DiTVideoTransformer3D.from_pretrained(model_dir / "transformer")
    torch.nn.init.zeros_(transformer.proj_out.weight)
    torch.nn.init.zeros_(transformer.proj_out.bias)
    zero_model = tmp_path / "zero"
    zero_model.mkdir()
    for part in model_dir.iterdir():  # the same pipeline, its transformer replaced
        if part.name != "transformer":
            (zero_model / part.name).symlink_to(part)
    transformer.save_pretrained(zero_model / "transformer")
    errors = run(zero_model, "--sigmas", "0.5", "0.9")["errors"]["latents"]
    # x0_hat = x_t = x0 + sigma * (noise - x0): the error is sigma^2 times about the same mean for both draws of noise
    assert errors[0.9] / errors[0.5] == pytest.approx(0.81 / 0.25, rel=0.1)
    # and exactly, with the script's scenes and its noise drawn in the same order (scene by scene, sigma by sigma)
    vae = SpacetimeVAE.from_pretrained(model_dir / "vae")
    args = eval_denoising_by_sigma.parse_args(["--num_clips", "2", *SIZE_FLAGS])
    generator, expected = torch.Generator().manual_seed(0), {0.5: [], 0.9: []}
    for scene in held_out_scenes(args, {"height": 64, "width": 64, "num_frames": 9}):
        video = torch.from_numpy(scene["rendered"]).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
        x0 = vae.encode(video).latent_dist.mode().detach()  # the tiny VAE has no latents_mean / latents_std
        for sigma in (0.5, 0.9):
            noise = torch.randn(x0.shape, generator=generator)
            expected[sigma].append((sigma**2 * (noise - x0) ** 2).mean().item() / x0.var().item())
    for sigma, values in expected.items():
        assert errors[sigma] == pytest.approx(sum(values) / len(values), rel=1e-4)


def test_sigmas_outside_the_open_interval_are_refused(capsys):
    with pytest.raises(SystemExit):
        eval_denoising_by_sigma.parse_args(["--sigmas", "0.5", "1.0"])
    assert "--sigmas must lie in (0, 1), got [1.0]" in capsys.readouterr().err
