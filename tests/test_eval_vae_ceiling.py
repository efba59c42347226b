"""`benchmarks/eval_vae_ceiling.py` end to end on a tiny random VAE (one torch thread, seconds): well-formed scores, the
rendered scenes' own per-frame shape reading at 1.00, and the per-frame reading telling a crisp frame from a blurred
one."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from sora_diffusers import SpacetimeVAE
from sora_diffusers.data.shapes import render_clip, sample_clip_spec
from sora_diffusers.eval import evaluate_clip

from .conftest import load_script
from .pipelines.conftest import TINY_VAE_CONFIG


load_script("benchmarks/eval_default_model.py")  # the ceiling script imports it by name
eval_vae_ceiling = load_script("benchmarks/eval_vae_ceiling.py")


@pytest.fixture
def vae_dir(tmp_path):
    torch.manual_seed(0)
    SpacetimeVAE(**TINY_VAE_CONFIG).save_pretrained(tmp_path / "vae")
    return tmp_path / "vae"


def test_ceiling_scores_are_well_formed_and_reproducible(vae_dir, one_torch_thread, capsys):
    argv = ["--vae", str(vae_dir), "--num_clips", "2", "--height", "128", "--width", "128", "--num_frames", "5"]
    result = eval_vae_ceiling.main(argv)
    assert set(result["round_trip"]) == set(eval_vae_ceiling.SCORES)
    assert all(0.0 <= v <= 1.0 for v in result["round_trip"].values())
    assert len(result["per_frame_psnr"]) == 5
    # the rendered scenes read as their own shape in every judged frame; a random VAE's round trips in none
    assert result["shape_per_frame"]["rendered"] == {"first": 1.0, "later": 1.0}
    assert result["shape_per_frame"]["round trip"] == {"first": 0.0, "later": 0.0}
    out = capsys.readouterr().out
    assert "| shape per frame, strict: first frame | 0.00 (0/" in out
    assert eval_vae_ceiling.main(argv) == result


def test_frame_shape_reads_fail_a_blurred_square():
    spec = sample_clip_spec(3, 128, 128, 3, shape="square", color="red", motion="still", size="large", occluder=False)
    frames = render_clip(spec)
    report = evaluate_clip(frames, color="red", shape="square")
    judged, right = eval_vae_ceiling.frame_shape_reads(report, "square", len(frames))
    assert judged.all() and right.all()
    # blurred until its corners are gone, as in tests/eval/test_shape_fit.py
    blurred = np.stack([np.asarray(Image.fromarray(frame).filter(ImageFilter.GaussianBlur(9))) for frame in frames])
    report = evaluate_clip(blurred, color="red", shape="square")
    judged, right = eval_vae_ceiling.frame_shape_reads(report, "square", len(frames))
    assert judged.all() and not right.any()
