"""Measure the issue-5 targets of a shapes-world model (default: the embedded one) with `sora_diffusers.eval`.

    python benchmarks/eval_default_model.py                                      # embedded model, 16 clips per task
    python benchmarks/eval_default_model.py --model PATH --output_dir eval_out --time_demo
    python benchmarks/eval_default_model.py --tasks t2v i2v --num_clips 64 --num_inference_steps 20 --device cuda

Targets (model_card.md): text-to-video prompt adherence (colour, shape and direction all right) >= 0.90 and object
permanence >= 0.95; image-to-video first-frame PSNR >= 28 dB and motion as prompted >= 0.85; extension forward and
backward: seam change ratio <= 1.5 and motion continued >= 0.85; demo generation (33 frames of 256x256) <= 60 s.

Held-out scenes. Clip `i` of every task is the same scene, drawn from `numpy.random.default_rng(10_000_000 + seed + i)`
(`--seed`, default 0). Training draws clip `j` of `ShapesWorldDataset(seed=s)` from `default_rng([s, j, 1])`, another
seed sequence, so every evaluated scene (positions, sizes, speeds, backgrounds) and every noise seed is new. Captions
come from the same finite grammar, so a prompt's text can still equal some training caption.
Which scenes (flags; any scene the generator draws that does not fit is redrawn): by default one object
(`--objects one`) moving in one of the 8 compass directions (`--motions directional`), so that "direction" is defined
for every clip; backgrounds and grey occluder bars as the generator samples them (`--occluder sampled`). Scenes are
rendered at the evaluation size: the pipeline's `default_height` / `default_width` / `default_num_frames`, unless
`--height` / `--width` / `--num_frames` are given. The prompt is the generator's caption of the scene.

Tasks, on N = 1 + r*k frames (r: the VAE's temporal ratio) with seam s = 1 + r*floor(k/2) (N = 33, r = 4: s = 17):
- t2v: generate from the caption. Adherence: share of clips with colour, shape and motion all right; permanence:
  mean share of frames where the object is present exactly once (or hidden behind the bar).
- i2v: frame 0 of the rendered scene + the caption. First-frame PSNR against that image; share of motion_correct.
- extend_forward: rendered frames 0 .. s-1 are given, the model generates frames s .. N-1.
- extend_backward: rendered frames s .. N-1 are given (a whole number of latent groups, so all of them are kept), the
  model generates frames 0 .. s-1.
  For both: the evaluator's `seam_continuity` at frame s of the output (change across the seam / the median
  frame-to-frame change before it; ~1 is seamless), and the share of clips whose generated frames alone show the
  given clip's motion ("motion continued").
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
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from tqdm.auto import tqdm

from sora_diffusers.data import DIRECTIONS, MOTIONS, ClipSpec, canonical_caption, caption_clip, render_clip
from sora_diffusers.data.shapes import MIN_SIDE, sample_clip_spec
from sora_diffusers.default_model import load_default_pipeline
from sora_diffusers.eval import evaluate_clip
from sora_diffusers.pipelines import SoraImageToVideoPipeline, SoraPipeline, SoraVideoExtensionPipeline
from sora_diffusers.utils.export import export_to_video


TASKS = ("t2v", "i2v", "extend_forward", "extend_backward")
EVAL_SEED_OFFSET = 10_000_000  # far above any training seed (see the module docstring)
MAX_DRAWS = 1000  # scene draws per clip before the selection flags are declared unsatisfiable at this size
MOTION_SETS = {"directional": tuple(DIRECTIONS), "all": MOTIONS}
OBJECT_COUNTS = {"one": 1, "any": None}  # -> `sample_clip_spec(num_objects=...)`
OCCLUDER_CHOICES = {"sampled": None, "never": False, "always": True}  # -> `sample_clip_spec(occluder=...)`
DEMO_PROMPT = canonical_caption("red", "circle", "right")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Target:
    """One issue target: the mean over clips of `metric` (a per-clip score) compared with `threshold`."""

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


def _extension_targets(task: str) -> tuple[Target, Target]:
    return (
        Target(task, "seam_continuity", "seam change / own frame-to-frame change", 1.5, higher_is_better=False),
        Target(task, "motion_continued", "motion continued in the given direction", 0.85),
    )


TARGETS = (
    Target("t2v", "prompt_adherence", "colour, shape and direction all right", 0.90),
    Target("t2v", "permanence", "object permanence (share of frames)", 0.95),
    Target("i2v", "first_frame_psnr", "first-frame PSNR (dB)", 28.0),
    Target("i2v", "motion_accuracy", "motion as prompted", 0.85),
    *_extension_targets("extend_forward"),
    *_extension_targets("extend_backward"),
)
DEMO_TARGET = Target("demo", "total_s", "demo generation, load to file (s)", 60.0, higher_is_better=False)


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
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS), help="default: all")
    parser.add_argument("--num_clips", type=_positive_int, default=16, help="held-out clips per task (default 16)")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="clip i uses seed 10_000_000 + seed + i")
    sampling = parser.add_argument_group("sampling (default: the pipeline's own defaults)")
    sampling.add_argument("--num_inference_steps", type=_positive_int)
    sampling.add_argument("--guidance_scale", type=_non_negative_float)
    sampling.add_argument("--height", type=_positive_int, help="default: the pipeline's default_height")
    sampling.add_argument("--width", type=_positive_int, help="default: the pipeline's default_width")
    sampling.add_argument("--num_frames", type=_positive_int, help="default: the pipeline's default_num_frames")
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


def check_size(pipe: SoraPipeline, height: int, width: int, num_frames: int, flags: str, extension: bool) -> None:
    """Refuse a size the pipeline or the scene generator cannot use, naming the flags, before any generation."""
    multiple = pipe.vae_scale_factor_spatial * pipe.transformer.config.patch_size[1]
    r_t = pipe.vae_scale_factor_temporal
    for flag, value in ((f"{flags}height", height), (f"{flags}width", width)):
        if value % multiple or value < max(multiple, MIN_SIDE):
            raise ValueError(f"{flag} must be a multiple of {multiple} and at least {MIN_SIDE}, got {value}")
    if (num_frames - 1) % r_t or num_frames < 1 + r_t:
        raise ValueError(f"{flags}num_frames must be 1 + k*{r_t} with k >= 1, got {num_frames}")
    if extension and num_frames < 1 + 2 * r_t:
        raise ValueError(
            f"{flags}num_frames must be at least {1 + 2 * r_t} for the extension tasks (a given part and a generated "
            f"part of at least {r_t} frames each), got {num_frames}"
        )


# ---------------------------------------------------------------------------------------------------------------------
# Held-out scenes
# ---------------------------------------------------------------------------------------------------------------------


def sample_eval_scene(seed: int, width: int, height: int, num_frames: int, args) -> tuple[ClipSpec, str]:
    """The held-out scene of `seed` that fits the selection flags, and its caption (deterministic)."""
    rng = np.random.default_rng(seed)
    allowed = MOTION_SETS[args.motions]
    for _ in range(MAX_DRAWS):
        try:
            spec = sample_clip_spec(
                rng, width, height, num_frames, num_objects=OBJECT_COUNTS[args.objects],
                occluder=OCCLUDER_CHOICES[args.occluder],
            )  # fmt: skip
        except ValueError:  # a forced occluder that does not fit this draw
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


def _all_correct(report: dict) -> float:
    return float(bool(report["color_correct"] and report["shape_correct"] and report["motion_correct"]))


def score_clip(task: str, video: np.ndarray, label: dict, reference: np.ndarray, seam: int) -> dict:
    """Evaluator reports of one output `video` (T, H, W, 3) and its per-clip scores (the `Target` metrics and more).

    `reference` is the rendered scene: the conditioning image is its frame 0 (i2v); extensions are scored at `seam`,
    and their generated frames (after the seam going forward, before it going backward) are scored on their own.
    """
    image = reference[0] if task == "i2v" else None
    seam_at = seam if task.startswith("extend") else None
    report = evaluate_clip(video, **label, image=image, seam_index=seam_at)
    scores = {
        "prompt_adherence": _all_correct(report),
        "motion_accuracy": float(report["motion_correct"]),
        "permanence": report["permanence"],
    }
    result = {"report": report, "scores": scores}
    if task == "i2v":
        scores["first_frame_psnr"] = report["first_frame_psnr"]
    if seam_at is not None:
        generated = video[seam:] if task == "extend_forward" else video[:seam]
        result["continuation"] = evaluate_clip(generated, **label)
        scores["seam_continuity"] = report["seam_continuity"]
        scores["motion_continued"] = float(result["continuation"]["motion_correct"])
    return result


# ---------------------------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------------------------


def generate(task: str, pipes: dict, rendered: np.ndarray, caption: str, seam: int, generator, sampling: dict):
    """One output video (T, H, W, 3) float in [0, 1] for `task`, conditioned on the rendered scene as the task says.

    Conditioned tasks are scored on the model's rendering of the given frames (`return_decoded_conditions=True`):
    the pipeline otherwise returns them as given, which would make the first-frame PSNR infinite and score the seam
    against the input instead of what the model made of it (and no longer compare with earlier results).
    """
    if task == "t2v":
        output = pipes["t2v"](caption, generator=generator, **sampling)
    elif task == "i2v":
        output = pipes["i2v"](
            PIL.Image.fromarray(rendered[0]), caption, generator=generator, return_decoded_conditions=True, **sampling
        )
    else:
        mode = task.removeprefix("extend_")
        given = rendered[:seam] if mode == "forward" else rendered[seam:]
        output = pipes["extend"](
            _pil_frames(given), caption, mode=mode, generator=generator, return_decoded_conditions=True, **sampling
        )
    return output.frames[0]


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
    device: str
    video_dir: Path | None = None
    num_saved_videos: int = 0
    video_suffix: str = ".mp4"


def run_task(task: str, pipes: dict, scenes: list[dict], config: RunConfig) -> dict:
    """Generate and score every clip of one task: the means over the clips and the per-clip records."""
    start = time.perf_counter()
    records = []
    for index, scene in enumerate(tqdm(scenes, desc=task, unit="clip")):
        generator = torch.Generator(config.device).manual_seed(scene["seed"])
        video = generate(task, pipes, scene["rendered"], scene["prompt"], config.seam, generator, config.generation)
        record = {key: scene[key] for key in ("index", "seed", "prompt", "label", "spec")}
        if task.startswith("extend"):
            record["seam_index"] = config.seam
        record["generated"] = score_clip(task, video, scene["label"], scene["rendered"], config.seam)
        record["ground_truth"] = score_clip(task, scene["rendered"], scene["label"], scene["rendered"], config.seam)
        if config.video_dir is not None and index < config.num_saved_videos:
            path = config.video_dir / f"{task}_{index:03d}{config.video_suffix}"
            metadata = {"task": task, "prompt": scene["prompt"], "seed": scene["seed"]}
            record["video"] = export_to_video(video, path, fps=scene["spec"]["fps"], metadata=metadata)
        records.append(record)
    return {
        "num_clips": len(records),
        "seconds": time.perf_counter() - start,
        "metrics": summarize(records, "generated"),
        "ground_truth": summarize(records, "ground_truth"),
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
    rows = []
    for target in TARGETS:
        if target.task in results["tasks"]:
            task = results["tasks"][target.task]
            value, truth = task["metrics"][target.metric], task["ground_truth"][target.metric]
            rows.append(_row(target, value, truth))
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
        met = "yes" if row["met"] else "no"
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
    """Write atomically: a temporary file beside `path`, then `os.replace`, so a reader never sees half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(_json_ready(data), indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------------------


def load_pipelines(args) -> tuple[dict, float]:
    """The text-to-video pipeline and its variants on the same weights (`from_pipe`), and the load time in seconds."""
    start = time.perf_counter()
    pipe = load_default_pipeline(SoraPipeline, model_path=args.model, dtype=DTYPES[args.dtype]).to(args.device)
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
    extension = any(task.startswith("extend") for task in args.tasks)
    check_size(pipe, size["height"], size["width"], size["num_frames"], "--", extension)
    if args.time_demo:
        check_size(pipe, args.demo_height, args.demo_width, args.demo_num_frames, "--demo_", False)
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

    # 1. Load the model, then check every size against it before any generation
    pipes, load_s = load_pipelines(args)
    size = evaluation_size(args, pipes["t2v"])
    sampling = {name: getattr(args, name) for name in ("num_inference_steps", "guidance_scale")}
    sampling = {name: value for name, value in sampling.items() if value is not None}  # else the pipeline's
    config = RunConfig(
        generation={**size, **sampling, "output_type": "np"},
        seam=seam_index(size["num_frames"], pipes["t2v"].vae_scale_factor_temporal),
        device=args.device,
        video_dir=output_dir / "videos" if output_dir else None,
        num_saved_videos=args.num_saved_videos,
        video_suffix=_video_suffix(),
    )
    if config.video_dir:
        config.video_dir.mkdir(parents=True, exist_ok=True)

    # 2. Held-out scenes, then every task on them
    scenes = held_out_scenes(args, size)
    results = {
        "model": args.model or "embedded default model",
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
