"""Regenerate the sample inputs that the examples of README.md use (run from the repository root):

    python examples/assets/make_assets.py

- `first.png`: 256x256, a red circle on black, left of centre (the first frame of `clip.mp4`);
- `clip.mp4`: 17 frames, 256x256, 16 fps: the red circle moving to the right;
- `a.mp4`, `b.mp4`: 9 frames each: the red circle on its way (frames 0-8), then the same path in blue (frames 16-24),
  so connecting them in 25 frames (the default for two 9-frame clips) leaves the 7 frames between them to generate;
- `lora/`: a rank-4 LoRA for the embedded model with random weights, in diffusers' format: it changes the video and
  has learned nothing (a stand-in for a LoRA you train).

`lora/zigzag/` is not written here: it is a trained LoRA (the zig-zag motion), made by `examples/train_example_lora.sh`.

The clips are shapes-world scenes (`sora_diffusers.data.render_clip`) at the embedded model's own size and lengths (it
was trained on 256x256 clips of 17 and 33 frames). Everything is deterministic: the same script writes the same
pictures (mp4 bytes may differ with the ffmpeg build).
"""

import argparse
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from sora_diffusers.data import BackgroundSpec, ClipSpec, ObjectSpec, render_clip, write_video
from sora_diffusers.utils.atomic import atomic_path


HERE = Path(__file__).resolve().parent
SIZE = 256  # the embedded model's default height and width
FPS = 16
START_X, SPEED = 48.0, 5.0  # pixels, pixels per frame: 120 px in 25 frames, the circle stays in the frame
LORA_RANK, LORA_SEED, LORA_STD = 4, 0, 0.1


def circle_path(color: str, num_frames: int) -> np.ndarray:
    """A medium circle moving to the right along the middle of a black 256x256 frame: (T, H, W, 3) uint8."""
    circle = ObjectSpec(
        shape="circle",
        color=color,
        motion="right",
        size="medium",
        diameter=0.22 * SIZE,  # `SIZES["medium"]` of the shapes world
        center=(START_X, SIZE / 2),
        velocity=(SPEED, 0.0),
    )
    return render_clip(ClipSpec(SIZE, SIZE, num_frames, FPS, [circle], BackgroundSpec("solid", ("black",))))


def make_videos(output_dir: Path) -> list[Path]:
    red, blue = circle_path("red", 25), circle_path("blue", 25)
    with atomic_path(output_dir / "first.png") as temporary:
        PIL.Image.fromarray(red[0]).save(temporary, format="PNG", optimize=True)
    return [
        output_dir / "first.png",
        write_video(output_dir / "clip.mp4", red[:17], fps=FPS),
        write_video(output_dir / "a.mp4", red[:9], fps=FPS),
        write_video(output_dir / "b.mp4", blue[16:25], fps=FPS),
    ]


def make_lora(output_dir: Path) -> Path:
    """A seeded random LoRA on the self-attention queries and values of the embedded model's transformer."""
    from peft import LoraConfig, get_peft_model_state_dict

    from sora_diffusers import DiTVideoTransformer3D, SoraPipeline
    from sora_diffusers.default_model import default_model_path

    transformer = DiTVideoTransformer3D.from_pretrained(default_model_path(), subfolder="transformer")
    config = LoraConfig(r=LORA_RANK, lora_alpha=LORA_RANK, target_modules=["attn1.to_q", "attn1.to_v"])
    transformer.add_adapter(config)
    generator = torch.Generator().manual_seed(LORA_SEED)
    # Seeded weights: peft draws lora_A from the global RNG and starts lora_B at zero (no effect on the video).
    with torch.no_grad():
        for name, parameter in sorted(transformer.named_parameters()):
            if "lora_A" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) / parameter.shape[1] ** 0.5)
            elif "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * LORA_STD)
    state_dict = {key: value.half() for key, value in get_peft_model_state_dict(transformer).items()}
    SoraPipeline.save_lora_weights(
        output_dir / "lora", transformer_lora_layers=state_dict, transformer_lora_adapter_metadata=config.to_dict()
    )
    return output_dir / "lora" / "pytorch_lora_weights.safetensors"


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", type=Path, default=HERE, help="where to write (default: this folder)")
    args = parser.parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    paths = [*make_videos(args.output_dir), make_lora(args.output_dir)]
    for path in paths:
        print(f"{path} ({path.stat().st_size / 1024:.1f} KB)")
    return paths


if __name__ == "__main__":
    main()
