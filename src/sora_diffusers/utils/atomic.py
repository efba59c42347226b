"""Atomic writes: every file and folder the package writes appears under its name only once it is complete.

A writer writes to a temporary name beside the target, `.NAME.tmp-PID-RANDOM` (the target's extension kept at the
end, for writers that pick a format from it: `.video.mp4.tmp-4242-1a2b3c4d.mp4`), then renames it onto the target
(`os.replace`, atomic on one file system). An error, Ctrl-C included, removes the temporary instead and leaves an
existing target as it was. A run killed mid-write (SIGKILL, power loss) leaves its temporary behind; the name says
which process wrote it, so the next write to the same target removes it once that process is gone, and keeps the
temporary of a writer that is still running (two processes writing one target, each to its own temporary).

    with atomic_path("out/video.mp4") as temporary:   # a file, or a folder the writer creates
        write_something(temporary)
    write_text("out/metrics.json", text)
    with atomic_entries("runs/vae") as staging:      # a model saved into a folder that holds other files too
        vae.save_pretrained(staging)

A folder replaces an existing one in two renames: the old folder goes aside as `.NAME.old-PID-RANDOM`, the new one
takes its name, the old one is deleted. A run killed between the two renames leaves the target missing and the old
folder aside: the next write to the target puts it back first.

Whether a writer is gone: no process has its PID, or the process that has it started after the temporary was last
written (the PID was reused, e.g. a container whose runs are all PID 1). The liveness of a PID is a question for this
machine: temporaries of other machines on a shared file system count as live only if a local process has their PID,
so runs of several machines should not write the same target (in the training scripts only the main process writes).
"""

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


__all__ = [
    "atomic_entries",
    "atomic_path",
    "commit",
    "delete",
    "is_stale",
    "remove_stale_temps",
    "remove_stale_temps_in",
    "temp_path",
    "write_bytes",
    "write_text",
]

# `.NAME.tmp-PID-RANDOM.SUFFIX` (a write in progress) or `.NAME.old-PID-RANDOM` (a folder being replaced); RANDOM is
# optional so that processes writing one folder together can share a name made of the main process's PID alone.
_TEMP = re.compile(r"^\.(?P<name>.+?)\.(?P<tag>tmp|old)-(?P<pid>\d+)(?:-[0-9a-f]{8})?(?P<suffix>\.[^.]*)?$")
STAGING_NAME = "staging"  # `atomic_entries` stages in `FOLDER/.staging.tmp-PID-RANDOM`
_CLOCK_SLACK_S = 2.0  # /proc gives boot time to the second and start times in clock ticks


def temp_path(path: str | os.PathLike, tag: str = "tmp", token: str | None = None) -> Path:
    """A temporary name beside `path` for this process: `.NAME.tmp-PID-RANDOM` plus the extension of `path`.

    `path` may itself be a temporary name: the new name is then a sibling temporary of the same target, so a writer
    that post-processes a temporary file (C2PA signing) leaves names the target's next write recognises. `token`
    replaces `PID-RANDOM` (a name every process of a run must know, e.g. the main process's PID).
    """
    path = Path(path)
    target = target_of(path) or path
    token = token or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    suffix = target.suffix if tag == "tmp" else ""
    return target.with_name(f".{target.name}.{tag}-{token}{suffix}")


def target_of(path: str | os.PathLike) -> Path | None:
    """The target a temporary name is for (`.video.mp4.tmp-42-1a2b3c4d.mp4` -> `video.mp4`), `None` for another
    name."""
    path = Path(path)
    match = _TEMP.match(path.name)
    if match is None or match["suffix"] not in (None, Path(match["name"]).suffix):
        return None
    return path.with_name(match["name"])


def writer_pid(path: str | os.PathLike) -> int | None:
    """The PID in a temporary name, `None` for another name."""
    match = _TEMP.match(Path(path).name)
    return int(match["pid"]) if match and target_of(path) is not None else None


def is_stale(path: str | os.PathLike) -> bool:
    """Whether `path` is a temporary name whose writer is gone: no process has its PID, or the one that has it started
    after `path` was last modified (so it is not the writer)."""
    pid = writer_pid(path)
    if pid is None:
        return False
    try:
        modified = os.lstat(path).st_mtime
    except FileNotFoundError:
        return False  # removed meanwhile: nothing to do
    if not os.path.exists("/proc/self/stat"):  # no /proc (macOS, Windows): the PID alone
        return not _pid_alive(pid)
    started = _process_start_time(pid)
    return started is None or started > modified + _CLOCK_SLACK_S


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of target `path` left by writers that are gone (see `is_stale`); returns them.

    A folder set aside by a replacement that was killed before it finished (`.NAME.old-PID-RANDOM` with `NAME`
    missing) is put back as `NAME` instead.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    prefix = f".{path.name}."
    with os.scandir(path.parent) as entries:  # a name test per entry: cheap in folders of many files
        found = [path.with_name(e.name) for e in entries if e.name.startswith(prefix)]
    return _remove_stale([p for p in found if target_of(p) == path])


def remove_stale_temps_in(folder: str | os.PathLike) -> list[Path]:
    """Remove every stale temporary in `folder` (of any target); returns them. For folders that hold many targets
    written one after another (caches): one listing instead of one per write."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    with os.scandir(folder) as entries:
        found = [folder / e.name for e in entries if e.name.startswith(".")]
    return _remove_stale([p for p in found if target_of(p) is not None])


def _remove_stale(candidates: list[Path]) -> list[Path]:
    removed = []
    for temp in sorted(candidates):
        if not is_stale(temp):
            continue
        target = target_of(temp)
        try:
            if _TEMP.match(temp.name)["tag"] == "old" and not os.path.lexists(target):
                os.rename(temp, target)  # a replacement killed between its two renames: the old one goes back
            else:
                _remove(temp)
        except FileNotFoundError:
            continue  # another process cleaned it first
        removed.append(temp)
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike, clean: bool = True, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary name beside `path`; the caller writes a file or creates a folder there. On success it is
    renamed onto `path` (`commit`); on any error, Ctrl-C included, it is removed and an existing `path` is untouched.

    Args:
        path: the target file or folder.
        clean (`bool`, defaults to `True`): first remove the target's stale temporaries (`remove_stale_temps`); pass
            `False` when a caller writing many files into one folder cleaned it once (`remove_stale_temps_in`).
        durable (`bool`, defaults to `True`): fsync the data before the rename makes it visible, and the folder after.
    """
    path = Path(path)
    if clean:
        remove_stale_temps(target_of(path) or path)
    temporary = temp_path(path)
    try:
        yield temporary
        commit(temporary, path, durable)
    except BaseException:
        _remove(temporary)
        raise


def commit(temporary: str | os.PathLike, path: str | os.PathLike, durable: bool = True) -> None:
    """Rename the complete file or folder `temporary` onto `path`: a file replaces a file atomically; a folder replaces
    a folder in two renames (the old one aside as `.NAME.old-PID-RANDOM`, then deleted)."""
    temporary, path = Path(temporary), Path(path)
    if durable:
        _fsync_tree(temporary)
    if temporary.is_dir() and not temporary.is_symlink() and path.is_dir() and not path.is_symlink():
        aside = temp_path(path, tag="old")
        os.rename(path, aside)
        os.rename(temporary, path)
        _remove(aside)
    else:
        os.replace(temporary, path)
    if durable:
        _fsync(path.parent)


@contextmanager
def atomic_entries(folder: str | os.PathLike, durable: bool = True) -> Iterator[Path]:
    """Yield an empty staging folder inside `folder`; on success each file and folder written into it replaces its
    namesake in `folder` (`commit`: folders first, then files, so an index such as model_index.json comes last), and
    the other entries of `folder` stay. Each entry is replaced atomically, not all of them at once.

    For models saved into a folder that holds more (a training run's output folder, with its checkpoints and logs),
    and for writers that make temporaries of their own (safetensors writes `.tmpXXXXXX` beside its target): those
    stay inside the staging folder, which an error removes, or the next write once its writer is gone.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(folder / STAGING_NAME)
    staging = temp_path(folder / STAGING_NAME)
    staging.mkdir()
    try:
        yield staging
        entries = sorted(staging.iterdir(), key=lambda p: (not p.is_dir(), p.name == "model_index.json", p.name))
        for entry in entries:
            remove_stale_temps(folder / entry.name)
            commit(entry, folder / entry.name, durable)
    finally:
        _remove(staging)


def delete(path: str | os.PathLike) -> None:
    """Delete a file or folder by first renaming it to a temporary name: a run killed while deleting a large folder
    leaves a stale temporary, which the next write removes, rather than a half-deleted folder under its name."""
    path = Path(path)
    doomed = temp_path(path)
    os.rename(path, doomed)
    _remove(doomed)


def write_bytes(path: str | os.PathLike, data: bytes, clean: bool = True) -> Path:
    """Write `data` to `path` atomically (`atomic_path`); returns `path`."""
    path = Path(path)
    with atomic_path(path, clean=clean) as temporary:
        temporary.write_bytes(data)
    return path


def write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8", clean: bool = True) -> Path:
    """Write `text` to `path` atomically (`atomic_path`); returns `path`."""
    return write_bytes(path, text.encode(encoding), clean=clean)


# ---- processes ------------------------------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:  # not a valid PID here (Windows refuses 0 and some others)
        return False
    return True


def _process_start_time(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), from /proc; `None` when no live process has that PID
    (none, or a zombie: finished, waiting for its parent to read its status, so no longer writing)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(line for line in Path("/proc/stat").read_text().splitlines() if line.startswith("btime "))
    except (OSError, StopIteration):
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "PID (COMM) ": fields 3 (state) to 52 of proc(5)
    if fields[0] in ("Z", "X"):
        return None
    return int(boot.split()[1]) + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime, in ticks


# ---- files ----------------------------------------------------------------------------------------------------------


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _fsync_tree(path: Path) -> None:
    if not path.is_dir():
        _fsync(path)
        return
    for file in path.rglob("*"):
        if file.is_file() and not file.is_symlink():
            _fsync(file)
    _fsync(path)


def _fsync(path: Path) -> None:
    """fsync a file or folder (a folder's entries: where a rename is recorded); skipped where folders cannot be opened
    (Windows), where the rename is still atomic and only its durability is the OS's."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
