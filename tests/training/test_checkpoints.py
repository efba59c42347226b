"""Atomic checkpoints: a checkpoint folder is complete (marker written last, then renamed into place) or not
picked; temp folders of killed saves are ignored and cleaned; a corrupt checkpoint is named and passed over for the
one before."""

import json
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from accelerate import PartialState

from sora_diffusers.training.checkpoints import (
    COMPLETE_MARKER,
    CorruptCheckpointError,
    list_checkpoints,
    resume,
    save_checkpoint,
    temp_folders,
    verify_checkpoint,
)

from ..conftest import dead_pid


class _OneProcess(SimpleNamespace):
    """What the checkpoint functions ask of an `Accelerator`, for one process."""

    def __init__(self):
        super().__init__(process_index=0, num_processes=1, is_main_process=True)

    def wait_for_everyone(self):
        pass


ACCELERATOR = _OneProcess()


@pytest.fixture(autouse=True)
def _accelerate_state():
    PartialState()  # accelerate's logger needs its state (other tests reset it)


def _write(folder: Path, payload: str = "weights") -> None:
    (folder / "model.bin").write_text(payload)
    (folder / "ema").mkdir()
    (folder / "ema" / "config.json").write_text("{}")


def _save(output_dir: Path, step: int, total_limit: int | None = None) -> Path:
    return save_checkpoint(ACCELERATOR, output_dir, step, lambda f: _write(f, f"step {step}"), total_limit)


def _resume(output_dir: Path, which: str = "latest") -> tuple[int, list[Path]]:
    loaded = []

    def load(path: Path) -> None:
        text = (path / "model.bin").read_text()
        if not text.startswith("step"):
            raise CorruptCheckpointError(path, "model.bin", "not a state")
        loaded.append(path)

    args = SimpleNamespace(resume_from_checkpoint=which, output_dir=str(output_dir), learning_rate=1e-4)
    return resume(ACCELERATOR, args, load), loaded


def test_a_checkpoint_is_renamed_into_place_with_its_marker_written_last(tmp_path):
    path = _save(tmp_path, 4)

    assert path == tmp_path / "checkpoint-4" and not temp_folders(tmp_path)
    marker = json.loads((path / COMPLETE_MARKER).read_text())
    assert marker == {"step": 4, "files": {"ema/config.json": 2, "model.bin": 6}}
    assert verify_checkpoint(path)["step"] == 4
    assert list_checkpoints(tmp_path) == [path]


def test_latest_skips_a_checkpoint_without_its_marker(tmp_path, caplog):
    _save(tmp_path, 2)
    partial = _save(tmp_path, 4)
    (partial / COMPLETE_MARKER).unlink()  # what a save killed before its end leaves (or an older, non-atomic one)

    with caplog.at_level(logging.WARNING):
        step, loaded = _resume(tmp_path)

    assert step == 2 and loaded == [tmp_path / "checkpoint-2"]
    assert list_checkpoints(tmp_path) == [tmp_path / "checkpoint-2"]
    assert "Skipping checkpoint-4" in caplog.text
    with pytest.raises(ValueError, match=f"checkpoint-4 is not a complete checkpoint \\(no {COMPLETE_MARKER}"):
        _resume(tmp_path, str(partial))


def test_a_temp_folder_is_ignored_and_removed_by_the_next_save_unless_its_writer_runs(tmp_path):
    _save(tmp_path, 2)
    killed = tmp_path / f".checkpoint-4.tmp-{dead_pid()}"  # a save a killed run did not finish: files, no marker
    killed.mkdir()
    _write(killed)
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        running = tmp_path / f".checkpoint-4.tmp-{writer.pid}"  # another run saving into this folder right now
        running.mkdir()

        assert temp_folders(tmp_path) == sorted([killed, running])
        assert temp_folders(tmp_path, stale_only=True) == [killed]
        assert list_checkpoints(tmp_path) == [tmp_path / "checkpoint-2"]
        assert _resume(tmp_path) == (2, [tmp_path / "checkpoint-2"])

        _save(tmp_path, 4)
        assert not killed.exists() and temp_folders(tmp_path) == [running]
        assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-4"]
    finally:
        writer.kill()
        writer.wait()
    _save(tmp_path, 6)
    assert not temp_folders(tmp_path)


def test_old_checkpoints_are_deleted_only_after_the_new_one_is_complete(tmp_path):
    for step in (2, 4):
        _save(tmp_path, step, total_limit=2)

    def dies(folder: Path) -> None:
        _write(folder)
        raise KeyboardInterrupt  # killed halfway through writing checkpoint-6

    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(ACCELERATOR, tmp_path, 6, dies, total_limit=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-2", "checkpoint-4"]  # both kept
    assert not temp_folders(tmp_path)  # the interrupted save removed its temp folder

    _save(tmp_path, 6, total_limit=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-4", "checkpoint-6"]
    assert not temp_folders(tmp_path)


def test_saving_a_step_again_replaces_it(tmp_path):
    _save(tmp_path, 4)
    save_checkpoint(ACCELERATOR, tmp_path, 4, lambda f: (f / "model.bin").write_text("step 4, again"))
    assert (tmp_path / "checkpoint-4" / "model.bin").read_text() == "step 4, again"
    assert not (tmp_path / "checkpoint-4" / "ema").exists() and not temp_folders(tmp_path)


@pytest.mark.parametrize("damage", ["truncate", "unreadable", "missing"])
def test_a_corrupt_checkpoint_is_named_and_the_one_before_is_resumed(tmp_path, caplog, damage):
    _save(tmp_path, 2)
    corrupt = _save(tmp_path, 4)
    if damage == "truncate":  # the file is shorter than its marker says
        (corrupt / "model.bin").write_text("st")
    elif damage == "unreadable":  # same size, content the loader refuses
        (corrupt / "model.bin").write_text("xxxx 4")
    else:
        (corrupt / "ema" / "config.json").unlink()

    with caplog.at_level(logging.WARNING):
        step, loaded = _resume(tmp_path)

    assert step == 2 and loaded == [tmp_path / "checkpoint-2"]
    file = "ema/config.json" if damage == "missing" else "model.bin"
    assert f"checkpoint-4 is corrupt: {file}" in caplog.text
    with pytest.raises(CorruptCheckpointError, match=f"checkpoint-4 is corrupt: {file}"):
        _resume(tmp_path, str(corrupt))  # asked for by name: no fallback


def test_latest_with_every_checkpoint_corrupt_raises_and_with_none_starts_anew(tmp_path):
    assert _resume(tmp_path) == (0, [])
    corrupt = _save(tmp_path, 2)
    (corrupt / "model.bin").write_text("xxxxxx")
    with pytest.raises(CorruptCheckpointError, match="checkpoint-2 is corrupt: model.bin"):
        _resume(tmp_path)
