"""Screenshot of the web demo for the README: docs/app.png.

Serves `sora_diffusers.app` on the embedded model on 127.0.0.1 (a free port), generates two videos in headless
Chromium (Debian's `chromium`, driven by playwright), and saves the page with the result playing and both videos in
its gallery.

    python benchmarks/screenshot_app.py [--output docs/app.png] [--steps 50]
"""

import argparse
import shutil
import socket
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

from sora_diffusers.app import build_app


PROMPTS = ("a blue square moving up", "a red circle moving to the right")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=str(Path(__file__).parents[1] / "docs" / "app.png"))
    parser.add_argument("--steps", type=int, default=50, help="denoising steps of each video (default 50)")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("screenshot_app.py: needs Debian's chromium (apt-get install chromium)")

    demo = build_app(num_inference_steps=args.steps)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(300_000)
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_text("Advanced settings").click()  # seed 0, so the screenshot is the same each time
            page.fill("#seed input", "0")
            page.press("#seed input", "Enter")
            page.get_by_text("Advanced settings").click()
            for index, prompt in enumerate(PROMPTS):
                page.fill("#text-to-video-prompt textarea", prompt)
                page.click("#text-to-video-generate")
                page.wait_for_selector(f"#gallery .thumbnail-item >> nth={index}")
            page.wait_for_function(  # the player and every gallery thumbnail show a frame
                "() => [...document.querySelectorAll('#video video, #gallery video')].every(v => v.readyState >= 2)"
            )
            # every video at its middle frame: a shape in motion, where a first frame may still be empty
            page.eval_on_selector_all(
                "#video video, #gallery video", "vs => vs.forEach(v => { v.pause(); v.currentTime = v.duration / 2; })"
            )
            page.wait_for_timeout(1000)
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.output, full_page=True)
            browser.close()
    finally:
        demo.close()
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
