"""Pictures of what the embedded model makes: one PNG strip of frames per task, for the README.

    python benchmarks/render_task_strips.py                      # the embedded model -> docs/strips/*.png
    python benchmarks/render_task_strips.py --model PATH --output_dir strips --num_inference_steps 20
    python benchmarks/render_task_strips.py --tasks --lora examples/assets/lora/zigzag   # only the LoRA's strip

Every strip is a row of evenly spaced frames of one output at the pipeline's defaults (33 frames of 256x256, its
default steps and guidance), from a fixed seed. Frames that were given to the model (the image, the clip, the two
clips) have a green frame around them; the frames the model made have none. Each strip is labelled with the task, the
prompt and the frame indices. Run it again whenever the shipped model changes: the README shows these files.

Tasks: text-to-video (the README's demo prompt), one frame, image-to-video, extend forward, extend backward, loop and
connect, the last five conditioned on a rendered shapes-world scene (a held-out seed, one object, no occluder).

With `--lora PATH` it also writes `lora.png`: text-to-video of `--lora_prompt` without the LoRA (top) and with it
(bottom), same seed, `--lora_frames_per_strip` frames each and, last, every frame laid over each other (the brightest
value of each pixel over the clip: the path the object took).
"""

import argparse
from pathlib import Path

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch
from tqdm.auto import tqdm

from sora_diffusers.data import canonical_caption, render_clip
from sora_diffusers.data.shapes import sample_clip_spec
from sora_diffusers.default_model import load_default_pipeline
from sora_diffusers.pipelines import SoraImageToVideoPipeline, SoraPipeline, SoraVideoExtensionPipeline
from sora_diffusers.utils.atomic import atomic_path


TASKS = ("text_to_video", "image", "image_to_video", "extend_forward", "extend_backward", "loop", "connect")
SCENE_SEED = 20_000_001  # above every training and evaluation seed
THUMB = 128  # pixels of the longer side of each frame in the strip
GIVEN_RGB, LABEL_RGB, GAP = (40, 200, 60), (230, 230, 230), 4


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="pipeline folder (default: the embedded model)")
    p.add_argument("--output_dir", default="docs/strips")
    p.add_argument("--tasks", nargs="*", choices=TASKS, default=list(TASKS), help="default: all; none with --lora")
    p.add_argument("--num_inference_steps", type=int, help="default: the pipeline's")
    p.add_argument("--frames_per_strip", type=int, default=9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lora", help="also draw lora.png: --lora_prompt without and with this LoRA (file or folder)")
    p.add_argument("--lora_prompt", default=canonical_caption("red", "circle", "zigzag-right"))
    p.add_argument("--lora_frames_per_strip", type=int, default=17)
    args = p.parse_args(argv)
    if args.frames_per_strip < 2:
        p.error(f"--frames_per_strip must be at least 2, got {args.frames_per_strip}")
    if args.num_inference_steps is not None and args.num_inference_steps < 1:
        p.error(f"--num_inference_steps must be at least 1, got {args.num_inference_steps}")
    return args


def scene(height: int, width: int, num_frames: int) -> tuple[np.ndarray, str]:
    """The conditioning scene: a rendered clip (T, H, W, 3) uint8 of one object moving right, and its caption."""
    spec = sample_clip_spec(
        SCENE_SEED, width, height, num_frames, shape="square", color="yellow", motion="right", num_objects=1,
        occluder=False, background="black",
    )  # fmt: skip
    return render_clip(spec), canonical_caption("yellow", "square", "right")


def run_task(task: str, pipes: dict, rendered: np.ndarray, caption: str, generator, sampling: dict):
    """(prompt, frames (T, H, W, 3) uint8, indices of the given frames) for one task."""
    n, r_t = len(rendered), pipes["t2v"].vae_scale_factor_temporal
    half = 1 + r_t * ((n - 1) // r_t // 2)  # 17 of 33
    quarter = 1 + r_t * ((n - 1) // r_t // 4)  # 9 of 33
    frames = [PIL.Image.fromarray(frame) for frame in rendered]
    if task == "text_to_video":
        prompt = canonical_caption("red", "circle", "right")
        out, given = pipes["t2v"](prompt, generator=generator, **sampling), []
    elif task == "image":
        prompt = "a blue square on a black background"
        out, given = pipes["t2v"](prompt, generator=generator, **{**sampling, "num_frames": 1}), []
    elif task == "image_to_video":
        prompt = caption
        out, given = pipes["i2v"](frames[0], prompt, generator=generator, **sampling), [0]
    elif task == "extend_forward":
        prompt = caption
        out, given = pipes["ext"](frames[:half], prompt, mode="forward", generator=generator, **sampling), range(half)
    elif task == "extend_backward":
        prompt, tail = caption, frames[half:]
        out = pipes["ext"](tail, prompt, mode="backward", generator=generator, **sampling)
        given = range(n - len(tail), n)
    elif task == "loop":
        prompt = caption
        out, given = (
            pipes["ext"](frames[:quarter], prompt, mode="loop", generator=generator, **sampling),
            range(quarter),
        )
    else:  # connect
        prompt, end = caption, frames[n - quarter :]
        out = pipes["ext"](frames[:quarter], prompt, mode="connect", video_end=end, generator=generator, **sampling)
        given = [*range(quarter), *range(n - quarter, n)]
    video = np.asarray(out.frames[0])
    video = (video * 255).round().clip(0, 255).astype(np.uint8) if video.dtype != np.uint8 else video
    return prompt, video, set(given)


def strip(task: str, prompt: str, video: np.ndarray, given: set[int], count: int) -> PIL.Image.Image:
    """A labelled row of `count` evenly spaced frames (all of them if fewer); given frames framed in green."""
    indices = sorted(set(np.linspace(0, len(video) - 1, min(count, len(video))).round().astype(int).tolist()))
    height, width = video.shape[1:3]
    scale = THUMB / max(height, width)
    tw, th = max(1, round(width * scale)), max(1, round(height * scale))
    label_h, label = 30, f'{task}: "{prompt}"'
    label_w = PIL.ImageDraw.Draw(PIL.Image.new("RGB", (1, 1))).textlength(label)  # a one-frame strip is narrow
    width_px = max(len(indices) * (tw + GAP) + GAP, int(label_w) + 2 * GAP)
    canvas = PIL.Image.new("RGB", (width_px, th + label_h + 2 * GAP), (16, 16, 16))
    draw = PIL.ImageDraw.Draw(canvas)
    draw.text((GAP, 2), label, fill=LABEL_RGB)
    for k, index in enumerate(indices):
        x, y = GAP + k * (tw + GAP), label_h
        canvas.paste(PIL.Image.fromarray(video[index]).resize((tw, th), PIL.Image.BILINEAR), (x, y))
        if index in given:
            draw.rectangle([x - 2, y - 2, x + tw + 1, y + th + 1], outline=GIVEN_RGB, width=2)
        draw.text((x, 16), f"frame {index}", fill=LABEL_RGB)
    return canvas


def with_trail(row: PIL.Image.Image, video: np.ndarray) -> PIL.Image.Image:
    """`row` with one more frame at its right: the per-pixel maximum over the whole clip, labelled "path"."""
    height, width = video.shape[1:3]
    scale = THUMB / max(height, width)
    tw, th = max(1, round(width * scale)), max(1, round(height * scale))
    canvas = PIL.Image.new("RGB", (row.width + tw + GAP, row.height), (16, 16, 16))
    canvas.paste(row, (0, 0))
    x = row.width
    canvas.paste(PIL.Image.fromarray(video.max(axis=0)).resize((tw, th), PIL.Image.BILINEAR), (x, 30))
    PIL.ImageDraw.Draw(canvas).text((x, 16), "path", fill=LABEL_RGB)
    return canvas


def lora_strips(pipe: SoraPipeline, args, sampling: dict) -> PIL.Image.Image:
    """Two rows, `--lora_prompt` without and with `--lora` (same seed), each followed by the object's path."""
    rows = []
    for name in ("base", "lora"):
        if name == "lora":
            pipe.load_lora_weights(args.lora, adapter_name="example")
        generator = torch.Generator().manual_seed(args.seed)
        video = np.asarray(pipe(args.lora_prompt, generator=generator, **sampling).frames[0])
        video = (video * 255).round().clip(0, 255).astype(np.uint8)
        label = "without the LoRA" if name == "base" else f"with {Path(args.lora).name}"
        rows.append(with_trail(strip(label, args.lora_prompt, video, set(), args.lora_frames_per_strip), video))
    pipe.unload_lora_weights()
    canvas = PIL.Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)), (16, 16, 16))
    for k, row in enumerate(rows):
        canvas.paste(row, (0, k * rows[0].height))
    return canvas


def save_png(image: PIL.Image.Image, path: Path) -> None:
    """Write atomically: a temp file beside `path`, then rename (`sora_diffusers.utils.atomic`)."""
    with atomic_path(path) as temporary:
        image.save(temporary, format="PNG", optimize=True)


def main(argv=None) -> list[Path]:
    args = parse_args(argv)
    pipe = load_default_pipeline(SoraPipeline, model_path=args.model)
    pipes = {
        "t2v": pipe,
        "i2v": SoraImageToVideoPipeline.from_pipe(pipe),
        "ext": SoraVideoExtensionPipeline.from_pipe(pipe),
    }
    for variant in pipes.values():
        variant.set_progress_bar_config(disable=True)
    size = {key: pipe.config[f"default_{key}"] for key in ("height", "width", "num_frames")}
    rendered, caption = scene(**size)
    sampling = {**size, "output_type": "np"}
    if args.num_inference_steps:
        sampling["num_inference_steps"] = args.num_inference_steps
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for task in tqdm(args.tasks, desc="tasks"):
        generator = torch.Generator().manual_seed(args.seed)
        prompt, video, given = run_task(task, pipes, rendered, caption, generator, sampling)
        path = output_dir / f"{task}.png"
        save_png(strip(task, prompt, video, given, args.frames_per_strip), path)
        written.append(path)
        print(f"{path}: {len(video)} frames, {len(given)} given")
    if args.lora:
        path = output_dir / "lora.png"
        save_png(lora_strips(pipe, args, sampling), path)
        written.append(path)
        print(f"{path}: without and with {args.lora}")
    return written


if __name__ == "__main__":
    main()
