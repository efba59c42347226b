"""Measure a shapes-world model (default: the embedded one) against its targets with `sora_diffusers.eval`.

    python benchmarks/eval_default_model.py                                      # embedded model, 24 clips per task
    python benchmarks/eval_default_model.py --model PATH --output_dir eval_out --time_demo
    python benchmarks/eval_default_model.py --tasks t2v i2v --num_clips 64 --num_inference_steps 20 --device cuda
    python benchmarks/eval_default_model.py --tasks t2v --motions zigzag --lora examples/assets/lora/zigzag  # a LoRA

Targets (model_card.md), with the strict shape reading of `sora_diffusers.eval` (ideal-shape fits, 80% of frames):
text-to-video colour, shape and direction all right >= 0.90, one stable shape >= 0.90, permanence >= 0.95; prompts in
held-out words within 0.10 of the generator's captions; one frame: colour and shape right >= 0.90; image-to-video
first frame >= 28 dB, motion as prompted >= 0.85, colour and shape kept in >= 0.90 of the frames; extension forward
and backward: seam <= 1.5, motion continued >= 0.85, no unexplained object (every clip); loop: last-to-first jump <=
1.5x the median frame-to-frame change; connect: both seams <= 1.5 and the object travels from the first clip's end
to the second's start, alone, in >= 0.90 of clips; demo generation (33 frames of 256x256, load to file) <= 20 s. The
lenient shape reading used before 2026-12 is printed beside (no target) so older figures stay comparable.

Held-out scenes. Clip `i` of every task is the same scene, drawn from `numpy.random.default_rng(10_000_000 + seed + i)`
(`--seed`, default 0). Training draws clip `j` of `ShapesWorldDataset(seed=s)` from `default_rng([s, j, 1])`, another
seed sequence, so every evaluated scene (positions, sizes, speeds, backgrounds) and every noise seed is new. Captions
come from the same finite grammar, so a prompt's text can still equal some training caption.
Which scenes (flags; any scene the generator draws that does not fit is redrawn): by default one object
(`--objects one`) moving in one of the 8 compass directions (`--motions directional`), so that "direction" is defined
for every clip; backgrounds and grey occluder bars as the generator samples them (`--occluder sampled`). Scenes are
rendered at the evaluation size: the pipeline's `default_height` / `default_width` / `default_num_frames`, unless
`--height` / `--width` / `--num_frames` are given. The prompt is the generator's caption of the scene.
`--motions zigzag` draws scenes of the opt-in zig-zag motion instead (`data.shapes.ZIGZAG_MOTIONS`, which the
default world never draws; "a red disc zig-zags to the right ..."): motion right means a zig-zag the prompted way.
`--lora PATH` measures the model with a LoRA loaded (`pipe.load_lora_weights`) at `--lora_scale`.

Tasks, on N = 1 + r*k frames (r: the VAE's temporal ratio) with seam s = 1 + r*floor(k/2) (N = 33, r = 4: s = 17):
- t2v: generate from the caption. Adherence: share of clips with colour, shape and motion all right; shape stable:
  share of clips where one shape is read in 80% of the judged frames; permanence: mean share of frames where the
  object is present exactly once (or hidden behind the bar).
- t2v_held_out: the same label phrased in words no caption uses (`data.captions.held_out_caption`: "a scarlet orb
  heads east on a black background"); the target is the adherence gap to t2v.
- image: one frame (`num_frames=1`) of "a COLOUR SHAPE on a BACKGROUND background"; colour and shape right.
  `--image_num_frames N` scores frame 0 of an N-frame generation instead (a probe: is one frame outside the lengths
  the model trained on?); the one-frame target is read at N = 1 only.
- i2v: frame 0 of the rendered scene + the caption. First-frame PSNR against that image; share of motion_correct;
  appearance kept: min(permanence, share of judged frames that read as the scene's shape).
- extend_forward: rendered frames 0 .. s-1 are given, the model generates frames s .. N-1.
- extend_backward: rendered frames s .. N-1 are given (a whole number of latent groups, so all of them are kept), the
  model generates frames 0 .. s-1.
  For both: the evaluator's `seam_continuity` at frame s of the output (change across the seam / the median
  frame-to-frame change before it; ~1 is seamless), the share of clips whose generated frames alone show the given
  clip's motion ("motion continued"), and of clips whose generated frames show no colour the given ones lack and
  never more objects of the target's colour in one frame than the given ones ("objects kept").
- loop: rendered frames 0 .. c-1 given (c below), N frames generated to lead back into frame 0 (`mode="loop"` returns the clip
  and the new frames); loop jump: the change from the last frame to the first / the median frame-to-frame change.
- connect: the first and the last c = 1 + r*floor(k/4) rendered frames given (9 of 33), the middle generated. Both
  seams, and "connected": the middle frames move in the scene's direction with no unexplained object.
- demo (`--time_demo`): one text-to-video generation at `--demo_height/--demo_width/--demo_num_frames`, timed from
  the start of the model load to the written video file (load + generate + export).
Each score is also computed on the rendered scene itself (`ground_truth`): the evaluator's ceiling at this size.
Occluders: the generator hides the object behind the bar around the middle of the clip, which is where the seam is,
so with `--occluder sampled` (23 of the first 64 default scenes at 64x64x33) those clips' seam ratio is near 0 even
for the rendered scene (ground truth: mean 0.08 with a bar, 1.00 without, 0.67 overall); `--occluder never` measures
the seam on visible motion only.

Outputs: a markdown table (task | metric | value | ground truth | target | met) on stdout; with `--output_dir`,
`results.json` (settings, per-task means, every clip's prompt, spec and evaluator reports) and the first
`--num_saved_videos` outputs of every task as mp4 (gif without ffmpeg). Same arguments, same numbers.
"""

import argparse
import inspect
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from tqdm.auto import tqdm

from sora_diffusers.data import (
    DIRECTIONS,
    MOTIONS,
    ZIGZAG_MOTIONS,
    ClipSpec,
    canonical_caption,
    caption_clip,
    render_clip,
)
from sora_diffusers.data.captions import held_out_caption
from sora_diffusers.data.shapes import MIN_SIDE, sample_clip_spec
from sora_diffusers.default_model import load_default_pipeline
from sora_diffusers.eval import evaluate_clip, seam_continuity
from sora_diffusers.eval.segmentation import as_video_array
from sora_diffusers.pipelines import SoraImageToVideoPipeline, SoraPipeline, SoraVideoExtensionPipeline
from sora_diffusers.utils.atomic import write_text
from sora_diffusers.utils.export import export_to_video


TASKS = ("t2v", "t2v_held_out", "image", "i2v", "extend_forward", "extend_backward", "loop", "connect")
EXTENSION_TASKS = ("extend_forward", "extend_backward", "loop", "connect")  # need a given part and a generated one
EVAL_SEED_OFFSET = 10_000_000  # far above any training seed (see the module docstring)
MAX_DRAWS = 1000  # scene draws per clip before the selection flags are declared unsatisfiable at this size
# "zigzag": the opt-in zig-zags (`data.shapes.ZIGZAG_MOTIONS`), drawn with `sample_clip_spec(motions=...)`; the other
# sets keep the default world's draw and redraw until the motion is in the set (so their scenes never change).
MOTION_SETS = {"directional": tuple(DIRECTIONS), "all": MOTIONS, "zigzag": ZIGZAG_MOTIONS}
OBJECT_COUNTS = {"one": 1, "any": None}  # -> `sample_clip_spec(num_objects=...)`
OCCLUDER_CHOICES = {"sampled": None, "never": False, "always": True}  # -> `sample_clip_spec(occluder=...)`
DEMO_PROMPT = canonical_caption("red", "circle", "right")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Target:
    """One target: the mean over clips of `metric` (a per-clip score) compared with `threshold`."""

    task: str
    metric: str
    description: str
    threshold: float
    higher_is_better: bool = True

    def met(self, value: float | None) -> bool:
        if value is None or math.isnan(value):
            return False
        return value >= self.threshold if self.higher_is_better else value <= self.threshold

    @property
    def text(self) -> str:
        return f"{'>=' if self.higher_is_better else '<='} {self.threshold:g}"


def _extension_targets(task: str) -> tuple[Target, ...]:
    return (
        Target(task, "seam_continuity", "seam change / own frame-to-frame change", 1.5, higher_is_better=False),
        Target(task, "motion_continued", "motion continued in the given direction", 0.85),
        Target(task, "objects_kept", "no object the clip and prompt do not explain", 1.0),
    )


TARGETS = (
    Target("t2v", "prompt_adherence", "colour, shape and direction all right", 0.90),
    Target("t2v", "shape_stable", "one shape read in 80% of the frames", 0.90),
    Target("t2v", "permanence", "object permanence (share of frames)", 0.95),
    Target("t2v_held_out", "adherence_gap", "adherence, generator's captions minus held-out words", 0.10, False),
    Target("image", "image_adherence", "one frame: colour and shape right", 0.90),
    Target("i2v", "first_frame_psnr", "first-frame PSNR (dB)", 28.0),
    Target("i2v", "motion_accuracy", "motion as prompted", 0.85),
    Target("i2v", "appearance_kept", "colour and shape kept (share of frames)", 0.90),
    *_extension_targets("extend_forward"),
    *_extension_targets("extend_backward"),
    Target("loop", "loop_jump", "last-to-first change / median frame-to-frame change", 1.5, higher_is_better=False),
    Target("connect", "seam_continuity", "seam into the generated frames", 1.5, higher_is_better=False),
    Target("connect", "seam_end", "seam into the second clip", 1.5, higher_is_better=False),
    Target("connect", "connected", "moves from the first clip's end to the second's start, one object", 0.90),
)
DEMO_TARGET = Target("demo", "total_s", "demo generation, load to file (s)", 20.0, higher_is_better=False)


# ---------------------------------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="pipeline folder (default: the embedded model)")
    parser.add_argument("--lora", help="a LoRA to load into the model (file, folder or Hub id), as the CLI's --lora")
    parser.add_argument("--lora_scale", type=float, default=1.0, help="the LoRA's scale (default 1.0)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS), help="default: all")
    parser.add_argument("--num_clips", type=_positive_int, default=24, help="held-out clips per task (default 24)")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="clip i uses seed 10_000_000 + seed + i")
    sampling = parser.add_argument_group("sampling (default: the pipeline's own defaults)")
    sampling.add_argument("--num_inference_steps", type=_positive_int)
    sampling.add_argument("--guidance_scale", type=_non_negative_float)
    sampling.add_argument("--height", type=_positive_int, help="default: the pipeline's default_height")
    sampling.add_argument("--width", type=_positive_int, help="default: the pipeline's default_width")
    sampling.add_argument("--num_frames", type=_positive_int, help="default: the pipeline's default_num_frames")
    sampling.add_argument(
        "--image_num_frames", type=_positive_int, default=1, help="image task: frames generated, frame 0 scored (1)"
    )
    scenes = parser.add_argument_group("held-out scenes")
    scenes.add_argument("--objects", choices=OBJECT_COUNTS, default="one", help="one object, or 1-2 as sampled")
    scenes.add_argument("--motions", choices=MOTION_SETS, default="directional", help="8 compass directions, or all")
    scenes.add_argument("--occluder", choices=OCCLUDER_CHOICES, default="sampled", help="grey bar (default sampled)")
    demo = parser.add_argument_group("demo timing")
    demo.add_argument("--time_demo", action="store_true", help="also time one text-to-video generation, load to file")
    demo.add_argument("--demo_height", type=_positive_int, default=256)
    demo.add_argument("--demo_width", type=_positive_int, default=256)
    demo.add_argument("--demo_num_frames", type=_positive_int, default=33)
    run = parser.add_argument_group("run")
    run.add_argument("--output_dir", help="writes results.json and sample videos here")
    run.add_argument("--num_saved_videos", type=_non_negative_int, default=2, help="videos saved per task (default 2)")
    run.add_argument("--device", default="cpu", help="torch device (default cpu)")
    run.add_argument("--dtype", choices=DTYPES, default="float32")
    run.add_argument("--torch_threads", type=_positive_int, help="torch intra-op threads (default: torch's)")
    return parser


def check_size(pipe: SoraPipeline, height: int, width: int, num_frames: int, flags: str, tasks=()) -> None:
    """Refuse a size the pipeline or the scene generator cannot use, naming the flags, before any generation."""
    multiple = pipe.vae_scale_factor_spatial * pipe.transformer.config.patch_size[1]
    r_t = pipe.vae_scale_factor_temporal
    for flag, value in ((f"{flags}height", height), (f"{flags}width", width)):
        if value % multiple or value < max(multiple, MIN_SIDE):
            raise ValueError(f"{flag} must be a multiple of {multiple} and at least {MIN_SIDE}, got {value}")
    if (num_frames - 1) % r_t or num_frames < 1 + r_t:
        raise ValueError(f"{flags}num_frames must be 1 + k*{r_t} with k >= 1, got {num_frames}")
    # extend: a given and a generated part of r_t frames at least; loop and connect: given clips of 1 + r_t frames
    # (`connect_length`) and at least as many generated ones
    groups = 4 if {"loop", "connect"} & set(tasks) else 2 if {"extend_forward", "extend_backward"} & set(tasks) else 0
    if num_frames < 1 + groups * r_t:
        raise ValueError(
            f"{flags}num_frames must be at least {1 + groups * r_t} for the tasks {sorted(set(tasks) & set(EXTENSION_TASKS))}"
            f" (given parts and generated parts of at least {r_t} frames each), got {num_frames}"
        )


# ---------------------------------------------------------------------------------------------------------------------
# Held-out scenes
# ---------------------------------------------------------------------------------------------------------------------


def sample_eval_scene(seed: int, width: int, height: int, num_frames: int, args) -> tuple[ClipSpec, str]:
    """The held-out scene of `seed` that fits the selection flags, and its caption (deterministic)."""
    rng = np.random.default_rng(seed)
    allowed = MOTION_SETS[args.motions]
    opt_in = {"motions": allowed} if args.motions == "zigzag" else {}
    for _ in range(MAX_DRAWS):
        try:
            spec = sample_clip_spec(
                rng, width, height, num_frames, num_objects=OBJECT_COUNTS[args.objects],
                occluder=OCCLUDER_CHOICES[args.occluder], **opt_in,
            )  # fmt: skip
        except ValueError:  # a forced occluder that does not fit this draw (or a zig-zag asked to pass a bar)
            continue
        if spec.label["motion"] in allowed:
            return spec, caption_clip(spec, rng)
    raise ValueError(
        f"no scene with --objects {args.objects} --motions {args.motions} --occluder {args.occluder} in {MAX_DRAWS} "
        f"draws at {width}x{height}x{num_frames}; choose other flags or a larger size"
    )


def seam_index(num_frames: int, temporal_ratio: int) -> int:
    """First generated frame of a forward extension = first given frame of a backward one: 1 + r*floor(k/2)."""
    return 1 + temporal_ratio * ((num_frames - 1) // temporal_ratio // 2)


def _pil_frames(video: np.ndarray) -> list[PIL.Image.Image]:
    # PIL, not arrays: the video processor takes numpy images as floats in [0, 1] and does not rescale uint8
    return [PIL.Image.fromarray(frame) for frame in video]


# ---------------------------------------------------------------------------------------------------------------------
# Scores of one clip
# ---------------------------------------------------------------------------------------------------------------------


def _all_correct(report: dict, key: str = "shape_correct") -> float:
    return float(bool(report["color_correct"] and report[key] and report["motion_correct"]))


def connect_length(num_frames: int, temporal_ratio: int) -> int:
    """Frames of each given clip of the connect task: 1 + r*floor(k/4), a quarter of the video (9 of 33)."""
    return 1 + temporal_ratio * ((num_frames - 1) // temporal_ratio // 4)


def loop_jump(video: np.ndarray) -> float:
    """Change from the last frame back to the first / the median frame-to-frame change (a seamless loop: ~1)."""
    frames = as_video_array(video)
    changes = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))
    return float(np.abs(frames[0] - frames[-1]).mean() / max(float(np.median(changes)), 0.05))


def _objects_kept(part: dict, given: dict) -> float:
    """1 when the generated part shows no colour the given part lacks and never more objects of the target's colour
    in one frame than the given part (an object hidden by the bar or leaving the frame is not a new one)."""
    new_colour = not set(part["detected_colors"]) <= set(given["detected_colors"])
    return float(not new_colour and part["max_target_count"] <= max(given["max_target_count"], 1))


def score_clip(task: str, video: np.ndarray, label: dict, reference: np.ndarray, seam: int) -> dict:
    """Evaluator reports of one output `video` (T, H, W, 3) and its per-clip scores (the `Target` metrics and more).

    `reference` is the rendered scene: the conditioning image is its frame 0 (i2v); extensions are scored at `seam`,
    and their generated frames (after the seam going forward, before it going backward) are scored on their own. A
    connect output is the first clip, `seam` generated frames... see `generate`: its seams are at `len(first clip)`
    and `len(video) - len(second clip)`.
    """
    if task == "image":
        report = evaluate_clip(video, label["color"], label["shape"])
        return {
            "report": report,
            "scores": {"image_adherence": float(bool(report["color_correct"] and report["shape_correct"]))},
        }
    image = reference[0] if task == "i2v" else None
    seam_at = seam if task in ("extend_forward", "extend_backward", "connect") else None
    report = evaluate_clip(video, **label, image=image, seam_index=seam_at)
    scores = {
        "color_accuracy": float(bool(report["color_correct"])),
        "prompt_adherence": _all_correct(report),
        "prompt_adherence_lenient": _all_correct(report, "shape_correct_lenient"),
        "shape_stable": float(report["shape_stable"]),
        "motion_accuracy": float(report["motion_correct"]),
        "permanence": report["permanence"],
    }
    result = {"report": report, "scores": scores}
    if task == "i2v":
        scores["first_frame_psnr"] = report["first_frame_psnr"]
        scores["appearance_kept"] = min(report["permanence"], report["shape_read_shares"].get(label["shape"], 0.0))
    if task in ("extend_forward", "extend_backward"):
        forward = task == "extend_forward"
        generated, given = (video[seam:], video[:seam]) if forward else (video[:seam], video[seam:])
        result["continuation"] = evaluate_clip(generated, **label)
        scores["seam_continuity"] = report["seam_continuity"]
        scores["motion_continued"] = float(result["continuation"]["motion_correct"])
        scores["objects_kept"] = _objects_kept(result["continuation"], evaluate_clip(given, **label))
    if task == "loop":
        scores["loop_jump"] = loop_jump(video)
    if task == "connect":
        end = len(video) - seam
        result["continuation"] = evaluate_clip(video[seam:end], **label)
        given = evaluate_clip(np.concatenate([video[:seam], video[end:]]), label["color"], label["shape"])
        scores["seam_continuity"] = report["seam_continuity"]
        scores["seam_end"] = seam_continuity(video, end)
        moved = result["continuation"]["motion_correct"]
        scores["connected"] = float(bool(moved) and _objects_kept(result["continuation"], given) == 1.0)
    return result


# ---------------------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------------------


def generate(task: str, pipes: dict, scene: dict, seam: int, generator, sampling: dict):
    """One output video (T, H, W, 3) float in [0, 1] for `task`, conditioned on the rendered scene as the task says.

    t2v / t2v_held_out: the caption / the label in held-out words. image: one frame of "a COLOUR SHAPE on a ...
    background". i2v: frame 0 + the caption. extend_*: see the module docstring. loop: frames 0 .. seam-1 given,
    the rest generated to lead back into frame 0. connect: the first and last `seam` frames given, the middle
    generated.

    Conditioned tasks are scored on the model's rendering of the given frames (`return_decoded_conditions=True`):
    the pipeline otherwise returns them as given, which would make the first-frame PSNR infinite and score the seam
    against the input instead of what the model made of it (and no longer compare with earlier results).
    """
    rendered, caption, label = scene["rendered"], scene["prompt"], scene["label"]
    decoded = {"return_decoded_conditions": True}
    if task == "t2v":
        output = pipes["t2v"](caption, generator=generator, **sampling)
    elif task == "t2v_held_out":
        output = pipes["t2v"](
            held_out_caption(**label, background=_background_name(scene)), generator=generator, **sampling
        )
    elif task == "image":  # `sampling` holds the image's frame count (`RunConfig.image_num_frames`); frame 0 scored
        prompt = f"{'an' if label['color'][0] in 'aeiou' else 'a'} {label['color']} {label['shape']} on a {_background_name(scene)} background"
        return pipes["t2v"](prompt, generator=generator, **sampling).frames[0][:1]
    elif task == "i2v":
        output = pipes["i2v"](PIL.Image.fromarray(rendered[0]), caption, generator=generator, **decoded, **sampling)
    elif task == "connect":
        first, second = _pil_frames(rendered[:seam]), _pil_frames(rendered[len(rendered) - seam :])
        output = pipes["extend"](
            first, caption, mode="connect", video_end=second, generator=generator, **decoded, **sampling
        )
    else:
        mode = {"extend_forward": "forward", "extend_backward": "backward", "loop": "loop"}[task]
        given = rendered[seam:] if mode == "backward" else rendered[:seam]  # loop: `seam` is the connect length
        output = pipes["extend"](_pil_frames(given), caption, mode=mode, generator=generator, **decoded, **sampling)
    return output.frames[0]


def _background_name(scene: dict) -> str:
    """The scene's background colour name (a solid one), or "black" for a gradient."""
    background = scene["spec"]["background"]
    return background["colors"][0] if background["kind"] == "solid" else "black"


def _video_suffix() -> str:
    """The suffix of saved videos: mp4 when imageio-ffmpeg finds an ffmpeg binary, else gif."""
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return ".gif"
    return ".mp4"


@dataclass
class RunConfig:
    """What every clip of a run shares: the generation arguments and where sample videos go."""

    generation: dict  # height, width, num_frames, output_type and the sampling flags given
    seam: int  # see `seam_index`
    connect_length: int  # see `connect_length`
    device: str
    video_dir: Path | None = None
    num_saved_videos: int = 0
    video_suffix: str = ".mp4"
    image_num_frames: int = 1  # the image task generates this many frames and scores frame 0


def run_task(task: str, pipes: dict, scenes: list[dict], config: RunConfig) -> dict:
    """Generate and score every clip of one task: the means over the clips and the per-clip records."""
    start = time.perf_counter()
    records = []
    for index, scene in enumerate(tqdm(scenes, desc=task, unit="clip")):
        generator = torch.Generator(config.device).manual_seed(scene["seed"])
        seam = config.connect_length if task in ("loop", "connect") else config.seam
        generation = {**config.generation, "num_frames": config.image_num_frames} if task == "image" else None
        video = generate(task, pipes, scene, seam, generator, generation or config.generation)
        record = {key: scene[key] for key in ("index", "seed", "prompt", "label", "spec")}
        if task in EXTENSION_TASKS:
            record["seam_index"] = seam
        record["generated"] = score_clip(task, video, scene["label"], scene["rendered"], seam)
        truth = scene["rendered"][:1] if task == "image" else scene["rendered"]  # a loop has no rendered counterpart
        record["ground_truth"] = (
            None if task == "loop" else score_clip(task, truth, scene["label"], scene["rendered"], seam)
        )
        if config.video_dir is not None and index < config.num_saved_videos:
            path = config.video_dir / f"{task}_{index:03d}{config.video_suffix}"
            metadata = {"task": task, "prompt": scene["prompt"], "seed": scene["seed"]}
            record["video"] = export_to_video(video, path, fps=scene["spec"]["fps"], metadata=metadata)
        records.append(record)
    return {
        "num_clips": len(records),
        "seconds": time.perf_counter() - start,
        "metrics": summarize(records, "generated"),
        "ground_truth": summarize(records, "ground_truth") if task != "loop" else {},
        "clips": records,
    }


def summarize(records: list[dict], which: str) -> dict[str, float | None]:
    """Mean of every per-clip score over the clips (`which`: "generated" or "ground_truth")."""
    names = records[0][which]["scores"]
    return {name: _mean([record[which]["scores"][name] for record in records]) for name in names}


def _mean(values: list) -> float | None:
    values = [float(v) for v in values if v is not None]
    return float(np.mean(values)) if values else None


def time_demo(pipe: SoraPipeline, args, sampling: dict, load_s: float, config: RunConfig) -> dict:
    """Wall time of one text-to-video generation at the demo size, written to a file (the model load counted too)."""
    import tempfile

    generator = torch.Generator(config.device).manual_seed(args.seed)
    size = {"height": args.demo_height, "width": args.demo_width, "num_frames": args.demo_num_frames}
    start = time.perf_counter()
    video = pipe(DEMO_PROMPT, generator=generator, output_type="np", **size, **sampling).frames[0]
    generated = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        path = (config.video_dir or Path(scratch)) / f"demo{config.video_suffix}"
        export_to_video(video, path, metadata={"prompt": DEMO_PROMPT, "seed": args.seed})
    exported = time.perf_counter()
    generate_s, export_s = generated - start, exported - generated
    timing = {"load_s": load_s, "generate_s": generate_s, "export_s": export_s}
    return {"prompt": DEMO_PROMPT, **size, **timing, "total_s": load_s + generate_s + export_s}


# ---------------------------------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------------------------------


def target_rows(results: dict) -> list[dict]:
    """One row per target of the tasks run, then the lenient shape figures (no target) to compare with older runs."""
    tasks = results["tasks"]
    if "t2v" in tasks and "t2v_held_out" in tasks:  # how much worse prompts in other words do
        for which in ("metrics", "ground_truth"):
            gap = tasks["t2v"][which]["prompt_adherence"] - tasks["t2v_held_out"][which]["prompt_adherence"]
            tasks["t2v_held_out"][which]["adherence_gap"] = gap
    rows = []
    for target in TARGETS:
        if target.task in tasks and target.metric in tasks[target.task]["metrics"]:
            task = tasks[target.task]
            value, truth = task["metrics"][target.metric], task["ground_truth"].get(target.metric)
            row = _row(target, value, truth)
            frames = results.get("settings", {}).get("image_num_frames", 1)
            if target.task == "image" and frames != 1:  # a probe, not the one-frame target
                row = {
                    **row,
                    "description": f"frame 0 of {frames}: colour and shape right",
                    "target": "-",
                    "met": None,
                }
            rows.append(row)
    if "t2v" in tasks and "t2v_held_out" in tasks:  # the gap by part: adherence 0 in both would hide it
        for metric, what in (("color_accuracy", "colour"), ("motion_accuracy", "direction")):
            info = Target(
                "t2v_held_out", f"{metric}_gap", f"{what} right, generator's captions minus held-out words", 0
            )
            gap = tasks["t2v"]["metrics"][metric] - tasks["t2v_held_out"]["metrics"][metric]
            rows.append({**_row(info, gap, None), "target": "-", "met": None})
    for name in ("t2v", "t2v_held_out"):
        if name in tasks:
            lenient = Target(
                name, "prompt_adherence_lenient", "adherence, lenient shape reading (before 2026-12)", 0.90
            )
            row = _row(lenient, tasks[name]["metrics"]["prompt_adherence_lenient"],
                       tasks[name]["ground_truth"]["prompt_adherence_lenient"])  # fmt: skip
            rows.append({**row, "target": "-", "met": None})
    if "demo" in results:
        rows.append(_row(DEMO_TARGET, results["demo"]["total_s"], None))
    return rows


def _row(target: Target, value: float | None, truth: float | None) -> dict:
    return {
        "task": target.task,
        "metric": target.metric,
        "description": target.description,
        "value": value,
        "ground_truth": truth,
        "target": target.text,
        "met": target.met(value),
    }


def markdown_table(rows: list[dict]) -> str:
    lines = ["| task | metric | value | ground truth | target | met |", "|---|---|---:|---:|---|---|"]
    for row in rows:
        value, truth = _format(row["value"]), _format(row["ground_truth"])
        met = "-" if row["met"] is None else "yes" if row["met"] else "no"
        lines.append(f"| {row['task']} | {row['description']} | {value} | {truth} | {row['target']} | {met} |")
    return "\n".join(lines)


def _format(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _json_ready(value):
    """Non-finite floats (the PSNR of an exact first frame is inf) become strings; strict JSON has no inf."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    return value


def write_json(path: Path, data: dict) -> None:
    """Write atomically (`sora_diffusers.utils.atomic`), so a reader never sees half a file."""
    write_text(path, json.dumps(_json_ready(data), indent=2) + "\n")


# ---------------------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------------------


def load_pipelines(args) -> tuple[dict, float]:
    """The text-to-video pipeline and its variants on the same weights (`from_pipe`), and the load time in seconds."""
    start = time.perf_counter()
    pipe = load_default_pipeline(SoraPipeline, model_path=args.model, dtype=DTYPES[args.dtype]).to(args.device)
    if args.lora:  # the variants below share the transformer, so they get the LoRA too
        pipe.load_lora_weights(args.lora, adapter_name="lora")
        pipe.set_adapters(["lora"], adapter_weights=[args.lora_scale])
    load_s = time.perf_counter() - start
    pipes = {
        "t2v": pipe,
        "i2v": SoraImageToVideoPipeline.from_pipe(pipe),
        "extend": SoraVideoExtensionPipeline.from_pipe(pipe),
    }
    for variant in pipes.values():
        variant.set_progress_bar_config(disable=True)  # tqdm over clips instead
    return pipes, load_s


def evaluation_size(args, pipe: SoraPipeline) -> dict[str, int]:
    """`height`, `width`, `num_frames`: the flags or the pipeline's defaults, checked (with the demo's) against it."""
    size = {
        "height": args.height or pipe.config.default_height,
        "width": args.width or pipe.config.default_width,
        "num_frames": args.num_frames or pipe.config.default_num_frames,
    }
    check_size(pipe, size["height"], size["width"], size["num_frames"], "--", args.tasks)
    if args.time_demo:
        check_size(pipe, args.demo_height, args.demo_width, args.demo_num_frames, "--demo_")
    return size


def held_out_scenes(args, size: dict[str, int]) -> list[dict]:
    """Clip `i`: seed, caption, label, spec and the rendered scene (T, H, W, 3) uint8; shared by every task."""
    scenes = []
    for index in range(args.num_clips):
        seed = EVAL_SEED_OFFSET + args.seed + index
        spec, caption = sample_eval_scene(seed, size["width"], size["height"], size["num_frames"], args)
        scene = {"index": index, "seed": seed, "prompt": caption, "label": spec.label, "spec": spec.to_dict()}
        scenes.append({**scene, "rendered": render_clip(spec)})
    return scenes


def _call_default(name: str):
    """A `SoraPipeline.__call__` default (what the pipeline uses when the flag is not given), for the record."""
    return inspect.signature(SoraPipeline.__call__).parameters[name].default


def settings_record(args, size: dict[str, int], seam: int) -> dict:
    """Everything that determines the numbers, with the pipeline's defaults filled in."""
    first_seed = EVAL_SEED_OFFSET + args.seed
    return {
        **size,
        "num_inference_steps": args.num_inference_steps or _call_default("num_inference_steps"),
        "guidance_scale": _call_default("guidance_scale") if args.guidance_scale is None else args.guidance_scale,
        "num_clips": args.num_clips,
        "clip_seeds": [first_seed, first_seed + args.num_clips - 1],
        "objects": args.objects,
        "motions": args.motions,
        "occluder": args.occluder,
        "seam_index": seam,
        "image_num_frames": args.image_num_frames,
        "device": args.device,
        "dtype": args.dtype,
    }


def main(argv: list[str] | None = None) -> dict:
    """Parse `argv` (default: `sys.argv[1:]`), evaluate, print the table; returns what `results.json` holds."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.tasks = list(dict.fromkeys(args.tasks))  # each task once, in the order given
    output_dir = Path(args.output_dir) if args.output_dir else None
    if output_dir and output_dir.exists() and not output_dir.is_dir():
        parser.error(f"--output_dir {args.output_dir!r} exists and is not a folder")
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    if not math.isfinite(args.lora_scale):
        parser.error(f"--lora_scale must be a finite number, got {args.lora_scale}")

    # 1. Load the model, then check every size against it before any generation
    pipes, load_s = load_pipelines(args)
    size = evaluation_size(args, pipes["t2v"])
    sampling = {name: getattr(args, name) for name in ("num_inference_steps", "guidance_scale")}
    sampling = {name: value for name, value in sampling.items() if value is not None}  # else the pipeline's
    config = RunConfig(
        generation={**size, **sampling, "output_type": "np"},
        seam=seam_index(size["num_frames"], pipes["t2v"].vae_scale_factor_temporal),
        connect_length=connect_length(size["num_frames"], pipes["t2v"].vae_scale_factor_temporal),
        device=args.device,
        video_dir=output_dir / "videos" if output_dir else None,
        num_saved_videos=args.num_saved_videos,
        video_suffix=_video_suffix(),
        image_num_frames=args.image_num_frames,
    )
    if config.video_dir:
        config.video_dir.mkdir(parents=True, exist_ok=True)

    # 2. Held-out scenes, then every task on them
    scenes = held_out_scenes(args, size)
    results = {
        "model": args.model or "embedded default model",
        "lora": None if args.lora is None else {"path": args.lora, "scale": args.lora_scale},
        "settings": settings_record(args, size, config.seam),
        "tasks": {task: run_task(task, pipes, scenes, config) for task in args.tasks},
    }
    if args.time_demo:
        results["demo"] = time_demo(pipes["t2v"], args, sampling, load_s, config)

    # 3. Report
    results["targets"] = target_rows(results)
    print(markdown_table(results["targets"]))
    if output_dir:
        write_json(output_dir / "results.json", results)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
