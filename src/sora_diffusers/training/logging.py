"""What a training run records besides its weights: averaged metrics (`metrics.jsonl`, checkpointed with the
state), the loss curve (`loss.png`) and validation videos, each written atomically (`utils.atomic`) except the
lines appended to `metrics.jsonl` (a log: a run killed mid-line leaves a partial last line, and its resume rewrites
the file, atomically, from the checkpoint's records)."""

import json
import math
from pathlib import Path

import numpy as np
import torch

from ..utils import export_to_video
from ..utils.atomic import atomic_path, write_text


class MetricsLog:
    """Averaged metrics, one record per `--logging_steps`; checkpointed with the state, mirrored to metrics.jsonl."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.records: list[dict] = []

    def state_dict(self) -> dict:
        return {"records": self.records}

    def load_state_dict(self, state: dict) -> None:
        self.records = list(state["records"])

    def rewrite(self) -> None:
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in self.records))

    def append(self, record: dict) -> None:
        self.records.append(record)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def series(self, key: str) -> tuple[list[int], list[float]]:
        pairs = [(r["step"], r[key]) for r in self.records if key in r]
        return [s for s, _ in pairs], [v for _, v in pairs]


def plot_curve(steps: list[int], values: list[float], path: str | Path, title: str = "training loss") -> Path:
    """The curve as a PNG, log-scaled when all values are positive: matplotlib (Agg) if installed, else Pillow."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return _plot_curve_pil(steps, values, path, title)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot(steps, values, lw=1)
    if values and min(values) > 0:
        ax.set_yscale("log")
    ax.set(xlabel="step", ylabel=title, title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as temporary:
        fig.savefig(temporary)  # the temporary keeps the extension, which picks the format
    plt.close(fig)
    return Path(path)


def _plot_curve_pil(steps: list[int], values: list[float], path: str | Path, title: str) -> Path:
    from PIL import Image, ImageDraw

    width, height, margin = 700, 400, 50
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([margin, margin // 2, width - margin // 2, height - margin], outline="black")
    log_scale = bool(values) and min(values) > 0
    ys = [math.log10(v) for v in values] if log_scale else list(values)
    if len(steps) >= 2:
        x0, x1, y0, y1 = min(steps), max(steps), min(ys), max(ys)
        to_x = lambda s: margin + (s - x0) / max(x1 - x0, 1e-12) * (width - 1.5 * margin)  # noqa: E731
        to_y = lambda y: height - margin - (y - y0) / max(y1 - y0, 1e-12) * (height - 1.5 * margin)  # noqa: E731
        draw.line([(to_x(s), to_y(y)) for s, y in zip(steps, ys)], fill=(31, 119, 180), width=2)
        label = lambda y: f"{10**y:.3g}" if log_scale else f"{y:.3g}"  # noqa: E731
        draw.text((4, margin // 2), label(y1), fill="black")
        draw.text((4, height - margin - 10), label(y0), fill="black")
        draw.text((margin, height - margin + 5), str(x0), fill="black")
        draw.text((width - margin, height - margin + 5), str(x1), fill="black")
    draw.text((width // 2 - 60, 5), title + (" (log)" if log_scale else ""), fill="black")
    with atomic_path(path) as temporary:
        image.save(temporary)
    return Path(path)


def to_uint8_video(video: torch.Tensor) -> np.ndarray:
    """(3, T, H, W) in [-1, 1] -> (T, H, W, 3) uint8."""
    frames = ((video.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return frames.permute(1, 2, 3, 0).cpu().numpy()


def write_video(frames: np.ndarray, path: str | Path, fps: int = 16, metadata: dict | None = None) -> str:
    """(T, H, W, 3) uint8 or floats in [0, 1] -> mp4 (or gif by extension).

    An mp4 becomes a gif (Pillow, always installed) where no ffmpeg is available, so a long run never dies at its
    first validation on a machine without imageio-ffmpeg (seen on a lent GPU machine).
    """
    path = Path(path)
    if path.suffix == ".mp4" and not _has_ffmpeg():
        path = path.with_suffix(".gif")
    path.parent.mkdir(parents=True, exist_ok=True)
    return export_to_video(frames, str(path), fps=fps, metadata=metadata)


def _has_ffmpeg() -> bool:
    try:
        import imageio_ffmpeg

        imageio_ffmpeg.get_ffmpeg_exe()
        return True
    except Exception:
        return False
