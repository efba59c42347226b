"""A web demo of every task (Gradio Blocks): text-to-video, image-to-video, extension, connecting clips, editing.

    sora-diffusers serve                                   # the embedded model, on http://127.0.0.1:7860
    python examples/app.py                                 # the same app, as a Hugging Face Space runs it

or from Python, with any Sora pipeline:

    from sora_diffusers.app import build_app
    build_app(pipe).launch()

One pipeline is loaded once and shared by every visitor: requests wait in Gradio's queue and run one at a time, and
a Cancel button stops the denoising loop of the visitor's own request at the next step. What runs a request
(`DemoRunner`) needs no Gradio and no browser; `build_app` puts a page around it.
"""

import html
import inspect
import secrets
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import PIL.Image
import PIL.ImageSequence
import torch


try:
    import gradio as gr
except ImportError as error:  # gradio is an extra: say how to get it rather than only "No module named 'gradio'"
    raise ImportError(
        "The web demo needs gradio: `pip install 'sora_diffusers[demo]'` (or `pip install gradio`)."
    ) from error

from . import __version__
from .default_model import default_model_path
from .pipelines import SoraImageToVideoPipeline, SoraPipeline, SoraVideoExtensionPipeline, SoraVideoToVideoPipeline
from .utils.export import export_to_video


TASKS: dict[str, type[SoraPipeline]] = {
    "text-to-video": SoraPipeline,
    "image-to-video": SoraImageToVideoPipeline,
    "extend": SoraVideoExtensionPipeline,
    "connect": SoraVideoExtensionPipeline,
    "edit": SoraVideoToVideoPipeline,
}
EXTEND_MODES = ("forward", "backward", "loop")
# Pipeline argument -> the label of the field that sets it, so the pipeline's own input errors name what the visitor
# sees (as the CLI names its options).
FIELD_OF_ARGUMENT = {
    "num_frames": "Frames",
    "height": "Height",
    "width": "Width",
    "num_inference_steps": "Steps",
    "guidance_scale": "Guidance",
    "strength": "Strength",
    "negative_prompt": "Negative prompt",
    "video_end": "Second clip",
    "video": "Video",
    "image": "Image",
    "prompt": "Prompt",
}
# Defaults of the pipeline's own signature, so the page starts where `pipe(...)` would.
_CALL_DEFAULTS = inspect.signature(SoraPipeline.__call__).parameters
DEFAULT_STEPS = _CALL_DEFAULTS["num_inference_steps"].default
DEFAULT_GUIDANCE = _CALL_DEFAULTS["guidance_scale"].default
DEFAULT_STRENGTH = inspect.signature(SoraVideoToVideoPipeline.__call__).parameters["strength"].default


class GenerationCancelled(Exception):
    """Raised from the step callback when the visitor pressed Cancel: it ends the denoising loop at once."""


@dataclass
class Settings:
    """The advanced settings shared by every tab. `num_frames` is the length of text-to-video and image-to-video
    outputs (extension and connecting count their new frames in their own tab; an edit keeps its clip's length);
    `seed=None` draws one; `lora_scales` maps adapter names to scales."""

    height: int
    width: int
    num_frames: int
    num_inference_steps: int = DEFAULT_STEPS
    guidance_scale: float = DEFAULT_GUIDANCE
    seed: int | None = None
    negative_prompt: str = ""
    lora_scales: dict[str, float] = field(default_factory=dict)


@dataclass
class Result:
    path: str  # the mp4, with `metadata` in its comment tag
    metadata: dict[str, Any]
    caption: str


def size_presets(default_height: int, default_width: int) -> dict[str, tuple[int, int]]:
    """Sizes by aspect ratio at the model's scale: label -> (width, height).

    The longer default side S gives S x S, landscape S x 9S/16 and portrait 9S/16 x S (multiples of 8; 256 gives 256x144
    and 144x256), plus the model's own default size when it is none of them. Any size works: the pipeline generates the
    next size it can and centre-crops.
    """
    side = max(default_height, default_width)
    short = max(8, round(side * 9 / 16 / 8) * 8)
    presets = {
        f"{side}x{side} square": (side, side),
        f"{side}x{short} landscape 16:9": (side, short),
        f"{short}x{side} portrait 9:16": (short, side),
    }
    if (default_width, default_height) not in presets.values():
        presets[f"{default_width}x{default_height} model default"] = (default_width, default_height)
    return presets


def read_clip(path: str, max_frames: int, max_side: int, name: str = "video") -> list[PIL.Image.Image]:
    """An uploaded video -> RGB frames, read one at a time: a clip longer than `max_frames` is refused as soon as its
    frame `max_frames + 1` is read, and frames are shrunk to at most `max_side` pixels as they arrive, so a long or
    large upload never has to fit in memory."""
    frames = []
    try:
        if path.lower().endswith(".gif"):  # Pillow composes gif frames; each is converted from its palette here
            with PIL.Image.open(path) as image:
                source = (frame.convert("RGB") for frame in PIL.ImageSequence.Iterator(image))
                frames = _take_frames(source, max_frames, max_side, name)
        else:
            reader = imageio.get_reader(path, format="FFMPEG")
            try:
                frames = _take_frames((PIL.Image.fromarray(a[..., :3]) for a in reader), max_frames, max_side, name)
            finally:
                reader.close()
    except ValueError:
        raise
    except Exception as error:  # imageio and Pillow raise many kinds on a file that is not a video
        raise ValueError(f"`{name}`: cannot read {Path(path).name}: {error}") from error
    if not frames:
        raise ValueError(f"`{name}`: {Path(path).name} holds no frames.")
    return frames


def _take_frames(frames, max_frames: int, max_side: int, name: str) -> list[PIL.Image.Image]:
    taken = []
    for frame in frames:
        if len(taken) == max_frames:
            raise ValueError(f"`{name}` is longer than {max_frames} frames, the most this demo takes; trim it first.")
        frame.thumbnail((max_side, max_side))  # in place, keeps the aspect ratio, only ever shrinks
        taken.append(frame)
    return taken


class DemoRunner:
    r"""
    Runs the demo's requests on one shared pipeline, one at a time, with progress and cancellation. No Gradio here.

    Args:
        pipe (`SoraPipeline`): any Sora pipeline; the other tasks' pipelines share its components (`from_pipe`).
        output_dir (`str`, *optional*): where videos are written; by default a temporary folder removed when the
            runner is garbage-collected or the process exits.
        fps (`float`, defaults to 16): frames per second of the written videos.
        lora_scales (`dict[str, float]`, *optional*): loaded LoRA adapters (names as in `pipe.get_list_adapters()`)
            and their default scales; without it, every adapter of the transformer at scale 1.
        model_name (`str`, *optional*): the model recorded in each video's metadata (default: `pipe.name_or_path`).
        max_side (`int`, defaults to 1024), max_num_frames (`int`, defaults to 129): the largest request served
            (a shared demo should not be held for an hour by one visitor); uploads are read up to these sizes.
        num_inference_steps (`int`, defaults to the pipeline's 50): the Steps field's starting value.
    """

    def __init__(
        self,
        pipe: SoraPipeline,
        *,
        output_dir: str | None = None,
        fps: float = 16,
        lora_scales: Mapping[str, float] | None = None,
        model_name: str | None = None,
        max_side: int = 1024,
        max_num_frames: int = 129,
        num_inference_steps: int = DEFAULT_STEPS,
    ):
        self.pipe = pipe
        self.num_inference_steps = num_inference_steps
        self.pipelines = {task: pipe if type(pipe) is cls else cls.from_pipe(pipe) for task, cls in TASKS.items()}
        if lora_scales is None:
            adapters = pipe.get_list_adapters().get("transformer", []) if hasattr(pipe, "get_list_adapters") else []
            lora_scales = dict.fromkeys(adapters, 1.0)
        self.lora_scales = dict(lora_scales)
        self.model_name = model_name or getattr(pipe, "name_or_path", None) or type(pipe).__name__
        self.fps = fps
        self.max_side = max_side
        self.max_num_frames = max_num_frames
        if output_dir is None:
            output_dir = tempfile.mkdtemp(prefix="sora-diffusers-app-")
            weakref.finalize(self, shutil.rmtree, output_dir, ignore_errors=True)
        self.output_dir = Path(output_dir)
        self._lock = threading.Lock()  # one request on the model at a time, even after Gradio has let a run go
        self._cancel_events: dict[str, set[threading.Event]] = {}
        self._events_lock = threading.Lock()

    @property
    def default_settings(self) -> Settings:
        config = self.pipe.config
        return Settings(
            height=config.default_height,
            width=config.default_width,
            num_frames=config.default_num_frames,
            num_inference_steps=self.num_inference_steps,
            lora_scales=dict(self.lora_scales),
        )

    def cancel(self, session: str) -> int:
        """Stop the requests of `session` at their next denoising step; returns how many were running or waiting."""
        with self._events_lock:
            events = list(self._cancel_events.get(session, ()))
        for event in events:
            event.set()
        return len(events)

    def generate(
        self,
        task: str,
        prompt: str,
        settings: Settings,
        *,
        image: str | PIL.Image.Image | None = None,
        video: str | None = None,
        video_end: str | None = None,
        mode: str = "forward",
        new_frames: int = 16,
        strength: float = DEFAULT_STRENGTH,
        session: str = "",
        progress: Callable[[int, int], None] | None = None,
    ) -> Result:
        r"""
        Run one request and write its mp4.

        Args:
            task (`str`): one of `TASKS`.
            prompt (`str`): what the video shows (required for text-to-video).
            settings (`Settings`): size, frames, steps, guidance, seed, negative prompt, LoRA scales.
            image: the first frame, for "image-to-video" (a path or PIL image).
            video, video_end (`str`): paths of the clip ("extend", "connect", "edit") and of the second clip
                ("connect").
            mode (`str`): "forward", "backward" or "loop", for "extend".
            new_frames (`int`): frames generated besides the clips, for "extend" and "connect".
            strength (`float`): how much "edit" changes the clip, 0 to 1.
            session (`str`): who asks; `cancel(session)` stops this request.
            progress (`Callable[[int, int], None]`): called with (steps done, steps in all) after each step.

        Raises:
            `ValueError`: bad input, with the pipeline's message where the pipeline found it.
            `GenerationCancelled`: `cancel(session)` was called before the request finished denoising.
        """
        # 1. Check and read the inputs, before waiting for the model
        kwargs, inputs = self._task_arguments(
            task, prompt, settings, image, video, video_end, mode, new_frames, strength
        )
        seed = settings.seed if settings.seed is not None else secrets.randbelow(2**31)  # exact in a JS number
        cancelled = threading.Event()
        with self._events_lock:
            self._cancel_events.setdefault(session, set()).add(cancelled)
        try:
            # 2. Generate, alone on the model
            with self._lock:
                if cancelled.is_set():
                    raise GenerationCancelled
                start = time.perf_counter()
                pipe = self.pipelines[task]
                if self.lora_scales:
                    scales = {**self.lora_scales, **settings.lora_scales}
                    pipe.set_adapters(list(scales), adapter_weights=list(scales.values()))
                output = pipe(
                    **kwargs,
                    generator=torch.Generator(pipe._execution_device).manual_seed(seed),
                    output_type="np",
                    callback_on_step_end=_step_callback(cancelled, progress),
                )
                frames = output.frames[0]  # (T, H, W, 3) in [0, 1]
                seconds = time.perf_counter() - start
        finally:
            with self._events_lock:
                self._cancel_events[session].discard(cancelled)
                if not self._cancel_events[session]:
                    del self._cancel_events[session]

        # 3. Write the mp4 with what made it
        metadata = {
            "software": f"sora-diffusers {__version__}",
            "model": self.model_name,
            "pipeline": type(pipe).__name__,
            "task": task,
            "seed": seed,
            "inputs": inputs,
            **({"lora": {name: float(scale) for name, scale in scales.items()}} if self.lora_scales else {}),
            **{name: value for name, value in kwargs.items() if isinstance(value, (str, int, float))},
        }
        path = self.output_dir / uuid.uuid4().hex[:12] / f"{task}_seed{seed}.mp4"
        path.parent.mkdir(parents=True)
        export_to_video(frames, path, fps=self.fps, metadata=metadata)
        height, width = frames.shape[1:3]
        caption = f"{task}: {prompt}" if prompt else task
        metadata["summary"] = f"{len(frames)} frames of {width}x{height}, seed {seed}, {seconds:.1f} s"
        return Result(str(path), metadata, caption)

    def _task_arguments(
        self, task, prompt, settings: Settings, image, video, video_end, mode, new_frames, strength
    ) -> tuple[dict[str, Any], list[str]]:
        """The pipeline arguments of a request, with its clips read, and the names of its input files."""
        if task not in TASKS:
            raise ValueError(f"`task` must be one of {tuple(TASKS)}, got {task!r}.")
        prompt = (prompt or "").strip()
        if task == "text-to-video" and not prompt:
            raise ValueError("Type a prompt: text-to-video makes a video of what it says.")
        for name, value in (("height", settings.height), ("width", settings.width)):
            # checked here too: the pipeline reads 0 (and None) as "the model's default size"
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}.")
            if value > self.max_side:
                raise ValueError(
                    f"`{name}` is {value}; this demo makes videos of at most {self.max_side} pixels a side."
                )
        kwargs = {
            "prompt": prompt,
            "negative_prompt": settings.negative_prompt or None,
            "height": settings.height,
            "width": settings.width,
            "num_inference_steps": settings.num_inference_steps,
            "guidance_scale": settings.guidance_scale,
        }
        inputs: list[str] = []
        if task in ("text-to-video", "image-to-video"):
            kwargs["num_frames"] = settings.num_frames
        if task == "image-to-video":
            if image is None:
                raise ValueError("Upload an image: it becomes the first frame of the video.")
            if isinstance(image, str):
                inputs.append(Path(image).name)
                try:
                    with PIL.Image.open(image) as opened:
                        image = opened.convert("RGB")
                except OSError as error:
                    raise ValueError(f"`image`: cannot read {inputs[-1]}: {error}") from error
            kwargs["image"] = image
        if task in ("extend", "connect", "edit"):
            if video is None:
                raise ValueError(f"Upload a video to {'connect' if task == 'connect' else task}.")
            kwargs["video"] = read_clip(video, self.max_num_frames, self.max_side)
            inputs.append(Path(video).name)
        if task == "connect":
            if video_end is None:
                raise ValueError("Upload the second clip: the new frames lead from the first clip to it.")
            kwargs["video_end"] = read_clip(video_end, self.max_num_frames, self.max_side, name="video_end")
            kwargs["mode"] = "connect"
            inputs.append(Path(video_end).name)
        if task == "extend":
            if mode not in EXTEND_MODES:
                raise ValueError(f"`mode` must be one of {EXTEND_MODES}, got {mode!r}.")
            kwargs["mode"] = mode
        if task in ("extend", "connect"):
            given = len(kwargs["video"]) + len(kwargs.get("video_end", ()))
            kwargs["num_frames"] = given + int(new_frames)
        if task == "edit":
            kwargs["strength"] = strength
        num_frames = kwargs.get("num_frames", len(kwargs.get("video", ())))
        if isinstance(num_frames, (int, float)) and num_frames > self.max_num_frames:
            raise ValueError(
                f"`num_frames` is {num_frames} (clips included); this demo makes videos of at most "
                f"{self.max_num_frames} frames."
            )
        return kwargs, inputs


def _step_callback(cancelled: threading.Event, progress: Callable[[int, int], None] | None):
    """`callback_on_step_end`: report the step, and end the loop at once when the request was cancelled."""

    def callback(pipe: SoraPipeline, i: int, t, callback_kwargs: dict) -> dict:
        if cancelled.is_set():
            raise GenerationCancelled
        if progress is not None:
            progress(i + 1, pipe.num_timesteps)
        return {}

    return callback


def with_field_names(message: str) -> str:
    """Rename the pipeline's arguments in an error message to the fields of the page (`num_frames` -> 'Frames')."""
    for argument, label in FIELD_OF_ARGUMENT.items():
        message = message.replace(f"`{argument}`", f"'{label}'")
    return message


# ---- the page -------------------------------------------------------------------------------------------------------


def build_app(
    pipe: SoraPipeline | None = None,
    *,
    lora_scales: Mapping[str, float] | None = None,
    model_name: str | None = None,
    fps: float = 16,
    output_dir: str | None = None,
    max_side: int = 1024,
    max_num_frames: int = 129,
    num_inference_steps: int = DEFAULT_STEPS,
) -> gr.Blocks:
    r"""
    The demo page, queued (one generation at a time on the shared pipeline); call `.launch()` on it.

    Args:
        pipe (`SoraPipeline`, *optional*): the model, loaded once and shared by every visitor. Defaults to the model
            embedded in the package, on CUDA when there is one.
        lora_scales, model_name, fps, output_dir, max_side, max_num_frames, num_inference_steps: see `DemoRunner`.

    Returns:
        `gr.Blocks`: tabs for text-to-video, image-to-video, extend (forward, backward, loop), connect and edit; shared
        advanced settings (size presets, frames, steps, guidance, seed, negative prompt, LoRA scales); the video, its
        mp4 download (with its provenance metadata) and a gallery of what the page made since it was opened.
    """
    if pipe is None:
        pipe = SoraPipeline.from_default_model().to("cuda" if torch.cuda.is_available() else "cpu")
        model_name = model_name or default_model_path()
    runner = DemoRunner(
        pipe,
        output_dir=output_dir,
        fps=fps,
        lora_scales=lora_scales,
        model_name=model_name,
        max_side=max_side,
        max_num_frames=max_num_frames,
        num_inference_steps=num_inference_steps,
    )
    defaults = runner.default_settings
    presets = size_presets(defaults.height, defaults.width)

    with gr.Blocks(title="sora-diffusers", analytics_enabled=False, delete_cache=(3600, 24 * 3600)) as demo:
        demo.runner = runner  # for whoever serves it: tests, scripts
        gr.Markdown(
            f"# sora-diffusers\nGenerate videos from text, images and clips. Model: {_describe_model(runner.model_name)}"
        )
        with gr.Row():
            with gr.Column(scale=1):
                with gr.Tabs():
                    task_inputs = _task_tabs(max_num_frames)
                with gr.Row():
                    cancel = gr.Button("Cancel", variant="stop", elem_id="cancel")
                with gr.Accordion("Advanced settings", open=False, elem_id="advanced"):
                    settings_inputs = _settings_fields(defaults, presets, max_num_frames)
            with gr.Column(scale=1):
                video_out = gr.Video(label="Video", interactive=False, autoplay=True, loop=True, elem_id="video")
                file_out = gr.File(label="Download (mp4 with its prompt, seed and settings)", elem_id="download")
                status = gr.Markdown(elem_id="status")
        gallery = gr.Gallery(
            label="Made on this page",
            columns=6,
            height=240,
            object_fit="contain",
            preview=False,
            elem_id="gallery",
            **_if_supported(gr.Gallery, fit_columns=False),  # gradio 6: keep thumbnails small while there are few
        )
        made = gr.State([])  # [(path, caption)] of this page since it was opened

        events = []
        for task, (button, fields) in task_inputs.items():
            handler = _handler(runner, task, list(fields), len(settings_inputs))
            events.append(
                button.click(
                    handler,
                    inputs=[*fields.values(), *settings_inputs, made],
                    outputs=[video_out, file_out, status, gallery, made],
                    concurrency_id="model",  # every tab shares one worker: the model
                )
            )

        def request_cancel(request: gr.Request) -> str:
            runner.cancel(request.session_hash)
            return "Cancelled."

        cancel.click(request_cancel, inputs=None, outputs=status, cancels=events, queue=False)
    demo.queue(default_concurrency_limit=1)
    return demo


def _describe_model(name: str) -> str:
    """Markdown naming the model: the embedded one by its model card's title, any other by its path or repo id."""
    try:
        embedded = Path(name).resolve() == Path(default_model_path()).resolve()
    except (OSError, FileNotFoundError):
        embedded = False
    if embedded:
        card = (Path(default_model_path()) / "README.md").read_text(encoding="utf-8")
        title = next((line[2:].strip() for line in card.splitlines() if line.startswith("# ")), "default model")
        return f"{html.escape(title)}, embedded in the package (a shapes world: coloured shapes that move)"
    return f"`{html.escape(name)}`"


def _if_supported(component: type, **kwargs) -> dict:
    """The keyword arguments `component` takes in the installed gradio (the demo runs on gradio 5 and 6)."""
    parameters = inspect.signature(component.__init__).parameters
    return {name: value for name, value in kwargs.items() if name in parameters}


def _task_tabs(max_num_frames: int) -> dict[str, tuple[gr.Button, dict[str, gr.components.Component]]]:
    """One tab per task: task -> (its Generate button, {argument of `DemoRunner.generate`: field})."""
    tabs = {}

    def prompt(task: str, placeholder: str) -> gr.Textbox:
        return gr.Textbox(label="Prompt", placeholder=placeholder, lines=2, elem_id=f"{task}-prompt")

    def button(task: str) -> gr.Button:
        return gr.Button("Generate", variant="primary", elem_id=f"{task}-generate")

    def new_frames(task: str) -> gr.Slider:
        return gr.Slider(1, max_num_frames, value=16, step=1, label="New frames", elem_id=f"{task}-new-frames")

    with gr.Tab("Text to video", id="text-to-video"):
        fields = {"prompt": prompt("text-to-video", "a red circle moving to the right")}
        tabs["text-to-video"] = (button("text-to-video"), fields)
    with gr.Tab("Image to video", id="image-to-video"):
        fields = {
            "image": gr.Image(label="First frame", type="filepath", sources=["upload", "clipboard"], elem_id="image"),
            "prompt": prompt("image-to-video", "what happens next"),
        }
        tabs["image-to-video"] = (button("image-to-video"), fields)
    with gr.Tab("Extend", id="extend"):
        fields = {
            "video": gr.Video(label="Clip", sources=["upload"], elem_id="extend-video"),
            "mode": gr.Radio(
                list(EXTEND_MODES),
                value="forward",
                label="Mode",
                info="forward: frames after the clip; backward: frames before it; loop: frames that lead back into "
                "its start",
                elem_id="extend-mode",
            ),
            "new_frames": new_frames("extend"),
            "prompt": prompt("extend", "what happens in the new frames"),
        }
        tabs["extend"] = (button("extend"), fields)
    with gr.Tab("Connect", id="connect"):
        with gr.Row():
            first = gr.Video(label="First clip", sources=["upload"], elem_id="connect-video")
            second = gr.Video(label="Second clip", sources=["upload"], elem_id="connect-video-end")
        fields = {
            "video": first,
            "video_end": second,
            "new_frames": new_frames("connect"),
            "prompt": prompt("connect", "how the first clip becomes the second"),
        }
        tabs["connect"] = (button("connect"), fields)
    with gr.Tab("Edit", id="edit"):
        fields = {
            "video": gr.Video(label="Clip", sources=["upload"], elem_id="edit-video"),
            "strength": gr.Slider(
                0,
                1,
                value=DEFAULT_STRENGTH,
                step=0.05,
                label="Strength",
                info="0 keeps the clip, 1 ignores it",
                elem_id="edit-strength",
            ),
            "prompt": prompt("edit", "the clip as it should become"),
        }
        tabs["edit"] = (button("edit"), fields)
    return tabs


def _settings_fields(defaults: Settings, presets: dict[str, tuple[int, int]], max_num_frames: int) -> list:
    """The advanced settings' fields, in `_settings`' order; choosing a size preset fills in width and height."""
    default_size = (defaults.width, defaults.height)
    preset = gr.Dropdown(
        list(presets),
        value=next((label for label, size in presets.items() if size == default_size), None),
        label="Size preset",
        elem_id="size-preset",
    )
    with gr.Row():
        width = gr.Number(value=defaults.width, precision=0, label="Width", elem_id="width")
        height = gr.Number(value=defaults.height, precision=0, label="Height", elem_id="height")
    preset.change(lambda label: presets[label], inputs=preset, outputs=[width, height], queue=False)
    frames = gr.Slider(
        1,
        max_num_frames,
        value=defaults.num_frames,
        step=1,
        label="Frames",
        info="text and image to video (1 = an image)",
        elem_id="frames",
    )
    steps = gr.Slider(1, 100, value=defaults.num_inference_steps, step=1, label="Steps", elem_id="steps")
    guidance = gr.Slider(
        0, 15, value=defaults.guidance_scale, step=0.5, label="Guidance", info="<= 1 turns it off", elem_id="guidance"
    )
    seed = gr.Number(value=-1, precision=0, label="Seed", info="-1: a new one each time", elem_id="seed")
    negative = gr.Textbox(label="Negative prompt", placeholder="what to steer away from", elem_id="negative-prompt")
    loras = [
        gr.Slider(-2, 2, value=scale, step=0.05, label=f"LoRA scale: {name}", elem_id=f"lora-{name}")
        for name, scale in defaults.lora_scales.items()
    ]
    return [width, height, frames, steps, guidance, seed, negative, *loras]


def _settings(values: list, lora_names: list[str]) -> Settings:
    width, height, frames, steps, guidance, seed, negative, *scales = values
    return Settings(
        height=_as_int(height),
        width=_as_int(width),
        num_frames=_as_int(frames),
        num_inference_steps=_as_int(steps),
        guidance_scale=float(guidance),
        seed=None if seed is None or seed < 0 else int(seed),
        negative_prompt=negative or "",
        lora_scales=dict(zip(lora_names, map(float, scales))),
    )


def _as_int(value):
    """Whole numbers (a slider sends 17.0) as int; anything else as it is, for the pipeline to report."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _handler(runner: DemoRunner, task: str, field_names: list[str], num_settings: int):
    """The click handler of a task's Generate button (Gradio passes the request and progress by position)."""

    def generate(request: gr.Request, progress=gr.Progress(), *values):  # noqa: B008 (Gradio's idiom)
        fields = dict(zip(field_names, values))
        settings = _settings(
            list(values[len(field_names) : len(field_names) + num_settings]), list(runner.lora_scales)
        )
        made = values[-1]

        def report(step: int, total: int) -> None:
            desc = "Decoding and writing the video" if step == total else "Denoising"
            progress((step, total), desc=desc, unit="steps")

        try:
            result = runner.generate(task, settings=settings, session=request.session_hash, progress=report, **fields)
        except (ValueError, TypeError) as error:  # the pipeline's and the runner's input checks
            raise gr.Error(html.escape(with_field_names(str(error))), print_exception=False) from error
        except GenerationCancelled:
            raise gr.Error("Cancelled.", print_exception=False) from None
        made = [*made, (result.path, result.caption)]
        status = f"{html.escape(result.caption)}: {result.metadata['summary']}"
        return result.path, result.path, status, made, made

    return generate
