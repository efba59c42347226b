"""Nothing half-written, nothing left behind: every writer of the package writes to a temporary name and renames it
(`sora_diffusers.utils.atomic`). For each kind of writer: a temporary a killed writer left (its PID gone) is removed by
the next write to the same target, one of a writer still running is kept, and a write that fails leaves the target as
it was and no temporary."""

import errno
import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from accelerate import PartialState

from sora_diffusers import SoraPipeline, SpacetimeVAE
from sora_diffusers.loaders.wan_conversion import write_atomically
from sora_diffusers.training.caches import PromptEmbeddingCache
from sora_diffusers.training.checkpoints import save_checkpoint
from sora_diffusers.training.logging import MetricsLog, plot_curve
from sora_diffusers.utils import atomic, export_to_image, export_to_video
from sora_diffusers.utils.atomic import (
    atomic_entries,
    atomic_path,
    delete,
    is_stale,
    remove_stale_temps,
    target_of,
    temp_path,
    write_text,
)

from .conftest import dead_pid
from .models.test_autoencoder_spacetime import TINY_VAE_CONFIG


@pytest.fixture(scope="module")
def live_pid():
    """A process that is running while the test runs: a concurrent writer whose temporary must be kept."""
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield writer.pid
    writer.kill()
    writer.wait()


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _fail_before_rename(monkeypatch, target: Path) -> None:
    """The disk fills up once `target`'s temporary is written, before it is renamed (every writer fsyncs there)."""
    fsync_tree = atomic._fsync_tree

    def full(path):
        if target.name in str(path):  # `.NAME.tmp-...`, or NAME in a staging folder: not other files of the write
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        fsync_tree(path)

    monkeypatch.setattr(atomic, "_fsync_tree", full)


# ---- the helper -----------------------------------------------------------------------------------------------------


def test_temporary_names_say_target_and_writer(tmp_path):
    target = tmp_path / "video.mp4"
    temporary = temp_path(target)

    assert re.fullmatch(rf"\.video\.mp4\.tmp-{os.getpid()}-[0-9a-f]{{8}}\.mp4", temporary.name), temporary.name
    assert target_of(temporary) == target and atomic.writer_pid(temporary) == os.getpid()
    sibling = temp_path(temporary)  # a temporary of a temporary (C2PA signing an export in progress)
    assert target_of(sibling) == target and sibling != temporary
    assert target_of(tmp_path / ".checkpoint-4.tmp-123") == tmp_path / "checkpoint-4"
    assert target_of(tmp_path / ".checkpoint-4.old-123-1a2b3c4d") == tmp_path / "checkpoint-4"
    for other in (".hidden", "video.tmp", ".video.mp4.tmp-12.gif", ".video.mp4.1a2b3c4d.tmp.mp4", ".x.tmp-y"):
        assert target_of(tmp_path / other) is None, other


def test_a_writer_is_gone_when_its_pid_is_or_was_reused(tmp_path, live_pid):
    dead = temp_path(tmp_path / "a.txt", token=f"{dead_pid()}-1a2b3c4d")
    ours = temp_path(tmp_path / "a.txt")
    running = temp_path(tmp_path / "a.txt", token=f"{live_pid}-1a2b3c4d")
    for path in (dead, ours, running):
        path.write_text("partial")

    assert is_stale(dead) and not is_stale(ours) and not is_stale(running)
    hour_ago = time.time() - 3600  # written before this process (which has its PID now) started: not its writer
    os.utime(ours, (hour_ago, hour_ago))
    assert is_stale(ours)
    assert not is_stale(tmp_path / "a.txt")  # not a temporary name


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError, match="crashed"), atomic_path(target) as temporary:
        temporary.write_text("half of the new")
        raise RuntimeError("crashed")
    assert target.read_text() == "old" and _listing(tmp_path) == ["a.txt"]


def test_a_folder_is_replaced_whole_and_a_killed_swap_is_undone(tmp_path):
    target = tmp_path / "model"
    with atomic_path(target) as temporary:
        temporary.mkdir()
        (temporary / "weights").write_text("old")
    with atomic_path(target) as temporary:
        temporary.mkdir()
        (temporary / "weights").write_text("new")
    assert (target / "weights").read_text() == "new" and _listing(tmp_path) == ["model"]

    # killed between the swap's two renames: the old folder aside, the new one still under its temporary name
    dead = dead_pid()
    os.rename(target, temp_path(target, tag="old", token=f"{dead}-1a2b3c4d"))
    temp_path(target, token=f"{dead}-1a2b3c4d").mkdir()
    assert remove_stale_temps(target) and (target / "weights").read_text() == "new"
    assert _listing(tmp_path) == ["model"]


def test_a_killed_delete_leaves_a_temporary_the_next_write_removes(tmp_path):
    target = tmp_path / "checkpoint-2"
    target.mkdir()
    delete(target)
    assert _listing(tmp_path) == []

    target.mkdir()
    os.rename(target, temp_path(target, token=f"{dead_pid()}-1a2b3c4d"))  # `delete` killed after its rename
    write_text(tmp_path / "checkpoint-2", "a file now")
    assert _listing(tmp_path) == ["checkpoint-2"]  # removed, not put back: only `.old` folders are


def test_entries_replace_their_namesakes_and_leave_the_rest(tmp_path):
    (tmp_path / "vae").mkdir()
    (tmp_path / "vae" / "old.bin").write_text("old")
    (tmp_path / "checkpoint-2").mkdir()
    (tmp_path / "config.json").write_text("old")

    with atomic_entries(tmp_path) as staging:
        (staging / "vae").mkdir()
        (staging / "vae" / "new.bin").write_text("new")
        (staging / "config.json").write_text("new")
    assert _listing(tmp_path) == ["checkpoint-2", "config.json", "vae"] and _listing(tmp_path / "vae") == ["new.bin"]

    with pytest.raises(RuntimeError), atomic_entries(tmp_path) as staging:
        (staging / "config.json").write_text("newer")
        raise RuntimeError("save_pretrained failed")
    assert (tmp_path / "config.json").read_text() == "new"
    assert _listing(tmp_path) == ["checkpoint-2", "config.json", "vae"]


# ---- every kind of writer -------------------------------------------------------------------------------------------


class _OneProcess(SimpleNamespace):
    def __init__(self):
        super().__init__(process_index=0, num_processes=1, is_main_process=True)

    def wait_for_everyone(self):
        pass


def _video(version: int) -> np.ndarray:
    return np.full((3, 16, 16, 3), 40 * version, dtype=np.uint8)


def _write_vae(folder: Path, version: int) -> None:
    torch.manual_seed(version)
    SpacetimeVAE(**TINY_VAE_CONFIG).save_pretrained(folder)


class Writer:
    """One kind of writer: `write(folder, version)` writes `target(folder)`; `temp(folder, token)` is the name a
    writer with that `PID-RANDOM` token writes to (a file or a folder, as `temp_is_dir`)."""

    def __init__(self, name, target, write, temp=None, temp_is_dir=False, rewrites=True):
        self.name, self.target, self.write = name, target, write
        self.temp = temp or (lambda folder, token: temp_path(target(folder), token=token))
        self.temp_is_dir, self.rewrites = temp_is_dir, rewrites

    def __repr__(self) -> str:
        return self.name


def _embedding_cache(folder: Path, version: int) -> None:
    cache = PromptEmbeddingCache(lambda captions: (torch.full((1, 3, 4), float(version)), torch.ones(1, 3)), folder)
    cache.embedding("a red circle")


WRITERS = [
    Writer("mp4 video", lambda d: d / "v.mp4", lambda d, v: export_to_video(_video(v), d / "v.mp4", c2pa=False)),
    Writer("gif video", lambda d: d / "v.gif", lambda d, v: export_to_video(_video(v), d / "v.gif", c2pa=False)),
    Writer("png image", lambda d: d / "i.png", lambda d, v: export_to_image(_video(v)[:1], d / "i.png", c2pa=False)),
    Writer(
        "checkpoint",
        lambda d: d / "checkpoint-4",
        lambda d, v: save_checkpoint(_OneProcess(), d, 4, lambda f: (f / "model.bin").write_text(f"v{v}")),
        temp=lambda d, token: d / f".checkpoint-4.tmp-{token.split('-')[0]}",
        temp_is_dir=True,
    ),
    Writer(
        "converted model folder",
        lambda d: d / "converted",
        lambda d, v: write_atomically(d / "converted", lambda f: (f / "config.json").write_text(f"v{v}")),
        temp_is_dir=True,
    ),
    Writer(
        "LoRA file",
        lambda d: d / "pytorch_lora_weights.safetensors",
        lambda d, v: SoraPipeline.save_lora_weights(
            d, transformer_lora_layers={"b.lora_A.weight": torch.full((2,), v)}
        ),
        temp=lambda d, token: d / f".staging.tmp-{token}",
        temp_is_dir=True,
    ),
    Writer(
        "final model (staged into the output folder)",
        lambda d: d / "diffusion_pytorch_model.safetensors",
        lambda d, v: _staged(d, lambda staging: _write_vae(staging, v)),
        temp=lambda d, token: d / f".staging.tmp-{token}",
        temp_is_dir=True,
    ),
    Writer(
        "prompt-embedding cache",
        lambda d: d / f"{hashlib.sha256(b'a red circle').hexdigest()[:32]}.safetensors",  # named by the caption
        _embedding_cache,
        rewrites=False,  # a cached item is read, not written again
    ),
    Writer("metrics.jsonl", lambda d: d / "metrics.jsonl", lambda d, v: _metrics(d, v)),
    Writer("loss curve", lambda d: d / "loss.png", lambda d, v: plot_curve([1, 2, 3], [v, 2, 1], d / "loss.png")),
    Writer(
        "text file (cards, captions, info.json)",
        lambda d: d / "README.md",
        lambda d, v: write_text(d / "README.md", f"v{v}"),
    ),
]


def _staged(folder: Path, save) -> None:
    with atomic_entries(folder) as staging:
        save(staging)


def _metrics(folder: Path, version: int) -> None:
    log = MetricsLog(folder / "metrics.jsonl")
    log.load_state_dict({"records": [{"step": version}]})
    log.rewrite()


@pytest.fixture(autouse=True)
def _accelerate_state():
    PartialState()  # accelerate's logger needs its state (other tests reset it)


def _content(path: Path) -> bytes:
    if path.is_dir():
        return b"".join(p.name.encode() + p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file())
    return path.read_bytes()


@pytest.mark.parametrize("writer", WRITERS, ids=repr)
def test_the_next_write_removes_a_killed_writers_temporary_and_keeps_a_running_ones(writer, tmp_path, live_pid):
    writer.write(tmp_path, 1)
    target = writer.target(tmp_path)
    before = _listing(tmp_path)
    killed, running = writer.temp(tmp_path, f"{dead_pid()}-1a2b3c4d"), writer.temp(tmp_path, f"{live_pid}-1a2b3c4d")
    for temporary in (killed, running):
        if writer.temp_is_dir:
            temporary.mkdir()
            (temporary / "part").write_bytes(b"half")
        else:
            temporary.write_bytes(b"half")
    if not writer.rewrites:
        target.unlink()

    writer.write(tmp_path, 2)

    assert not killed.exists() and running.exists()
    assert sorted(set(_listing(tmp_path)) - {running.name}) == before
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    writer.write(fresh, 2)
    assert _content(target) == _content(writer.target(fresh))


@pytest.mark.parametrize("writer", WRITERS, ids=repr)
def test_a_write_failing_before_its_rename_leaves_the_old_target_and_no_temporary(writer, tmp_path, monkeypatch):
    writer.write(tmp_path, 1)
    target = writer.target(tmp_path)
    old, before = _content(target), _listing(tmp_path)
    if not writer.rewrites:
        target.unlink()
        before = _listing(tmp_path)

    _fail_before_rename(monkeypatch, target)
    with pytest.raises(OSError, match="No space left"):
        writer.write(tmp_path, 2)

    assert _listing(tmp_path) == before
    if writer.rewrites:
        assert _content(target) == old
