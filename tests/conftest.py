"""Shared fixtures: tiny random-weight models (dims ~16, 2 layers) so every test runs in seconds on 2 CPU cores."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from .hub import HubRecorder, use_hub_cache


REPO_ROOT = Path(__file__).resolve().parents[1]


# Tiny Wan-shaped transformer: head dim 12 splits RoPE channels 4 (t) / 4 (h) / 4 (w).
TINY_TRANSFORMER_CONFIG = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=12,
    in_channels=4,
    out_channels=4,
    text_dim=16,
    freq_dim=32,
    ffn_dim=48,
    num_layers=2,
)


def load_script(relative_path: str) -> ModuleType:
    """A script of `examples/` or `benchmarks/` (folders of scripts, not packages) as a module, loaded from its file
    and registered under its file name, so a test can call its `main(argv)` and read its constants."""
    path = REPO_ROOT / relative_path
    if path.stem in sys.modules and getattr(sys.modules[path.stem], "__file__", None) == str(path):
        return sys.modules[path.stem]
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses and pickling look a module up by name
    spec.loader.exec_module(module)
    return module


def ffmpeg_children(pid: int) -> list[int]:
    """PIDs of the live ffmpeg processes whose parent is `pid`, from /proc (psutil is not a dependency)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        command, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        if command.startswith("ffmpeg") and int(fields[1]) == pid and fields[0] not in "ZX":
            found.append(int(entry.name))
    return found


def is_running(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (ended, not yet reaped by its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def dead_pid() -> int:
    """The PID of a process that has ended: a writer killed before it could clean up."""
    import subprocess

    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return child.pid


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module's tiny models: they gain nothing from a second thread, and on a busy 2-core
    machine OpenMP's barriers make every op wait for a core (~40 ms instead of ~0.1 ms per tiny conv, measured).
    Use with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`; the thread count is restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def _c2pa_development_certificate(tmp_path_factory):
    """Files written by tests are signed with a development certificate made once in a temporary cache, not the
    user's `~/.cache/sora_diffusers/c2pa/`."""
    patch = pytest.MonkeyPatch()
    # its own variable: XDG_CACHE_HOME would also move the Hugging Face cache of the command lines tests start
    patch.setenv("SORA_DIFFUSERS_C2PA_DIR", str(tmp_path_factory.mktemp("c2pa")))
    yield
    patch.undo()


@pytest.fixture
def offline_hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty huggingface_hub cache that `HF_HUB_CACHE` names, with Hub requests off (`HF_HUB_OFFLINE=1`): fill it
    with `tests.hub.add_to_hub_cache` to load Hub ids from it."""
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    return use_hub_cache(monkeypatch, cache)


@pytest.fixture
def hub_push(offline_hub_cache, monkeypatch) -> HubRecorder:
    """The Hub's side of a push: records the repos created and the commits' files (`tests.hub.HubRecorder`). Offline
    and with an empty cache otherwise, so a repo has no model card before the push."""
    return HubRecorder().install(monkeypatch)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def perturb_(module: torch.nn.Module, std: float = 0.1) -> torch.nn.Module:
    """Add noise to every parameter, so zero/one-initialised weights (norm gains, biases) take part in the test."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) * std)
    return module


@pytest.fixture
def tiny_transformer():
    from sora_diffusers.models.transformer_sora import DiTVideoTransformer3D

    return perturb_(DiTVideoTransformer3D(**TINY_TRANSFORMER_CONFIG)).eval()
