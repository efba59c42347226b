"""Training state without pickles: optimizer, schedule and random generator states round-trip through JSON +
safetensors exactly, and checkpoints of the older `accelerator.save_state` layout are read without running code."""

import math
import pickle
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sora_diffusers.training.checkpoints import apply_state, is_legacy, read_legacy_state
from sora_diffusers.training.logging import MetricsLog
from sora_diffusers.training.state import (
    flatten_state,
    load_optimizer_state,
    random_states,
    read_state_dict,
    save_optimizer_state,
    save_state_dict,
    set_random_states,
    unflatten_state,
)


@pytest.fixture
def no_unpickling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("unpickled something")

    for module, name in ((pickle, "load"), (pickle, "loads"), (torch, "load"), (torch.serialization, "load")):
        monkeypatch.setattr(module, name, refuse)


def _trained(steps: int = 3):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.GELU(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.99), weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 10))
    for _ in range(steps):
        model(torch.randn(3, 4)).square().mean().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return model, optimizer, scheduler


def _assert_same(a, b, where="state"):
    assert type(a) is type(b), (where, type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b), where
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, where


def test_optimizer_state_round_trips_exactly_without_pickles(tmp_path, no_unpickling):
    model, optimizer, _ = _trained()
    save_optimizer_state(optimizer, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["optimizer.json", "optimizer.safetensors"]

    twin, fresh, _ = _trained(steps=0)
    twin.load_state_dict(model.state_dict())
    load_optimizer_state(fresh, tmp_path)
    _assert_same(fresh.state_dict(), optimizer.state_dict())  # int keys, the betas tuple, 0-dim step tensors

    for m, o in ((model, optimizer), (twin, fresh)):  # and the next step is the same to the bit
        m(torch.ones(3, 4)).square().mean().backward()
        o.step()
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), twin.parameters()))


def test_state_trees_keep_their_types_and_refuse_what_json_cannot_hold(tmp_path, no_unpickling):
    _, _, scheduler = _trained()
    state = {
        "schedule": scheduler.state_dict(),
        1: (2.5, None, [True, "x"]),
        "floats": [float("inf"), float("nan"), 0.1 + 0.2, -0.0],
        "array": np.arange(5, dtype=np.uint32),
        "empty": torch.zeros(4, 0, 2, dtype=torch.float16),
    }
    save_state_dict(state, tmp_path, "tree")
    _assert_same(read_state_dict(tmp_path, "tree"), state)
    with pytest.raises(TypeError, match="cannot store set at a/b of a training state without pickles"):
        flatten_state({"a": {"b": {1, 2}}}, {})
    assert unflatten_state(flatten_state((1, {2: 3}), {}), {}) == (1, {2: 3})


def test_random_states_round_trip(tmp_path, no_unpickling):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_state_dict(random_states(), tmp_path, "random_states_0")
    expected = (random.random(), np.random.rand(), torch.rand(3))

    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_random_states(read_state_dict(tmp_path, "random_states_0"))
    again = (random.random(), np.random.rand(), torch.rand(3))
    assert again[:2] == expected[:2] and torch.equal(again[2], expected[2])


def test_a_checkpoint_written_by_accelerator_save_state_is_read_without_running_code(tmp_path, monkeypatch):
    """The layout before this one (pickled optimizer, schedule, metrics and random states) still resumes: its files
    are read with torch's weights-only loader, never with `weights_only=False`."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    try:
        accelerator = Accelerator(cpu=True)
        model, optimizer, scheduler = accelerator.prepare(*_trained())
        metrics = MetricsLog(tmp_path / "metrics.jsonl")
        metrics.records = [{"step": 1, "loss": 0.5}, {"step": 2, "loss": float("nan")}]
        accelerator.register_for_checkpointing(metrics)
        folder = tmp_path / "checkpoint-3"
        accelerator.save_state(str(folder))
        expected_draw = torch.rand(2)
        assert is_legacy(folder)

        fresh_model, fresh_optimizer, fresh_scheduler = accelerator.prepare(*_trained(steps=0))
        loads = []
        real_load = torch.load

        def weights_only_load(*args, **kwargs):
            loads.append(kwargs.get("weights_only"))
            return real_load(*args, **kwargs)

        monkeypatch.setattr(torch, "load", weights_only_load)
        monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("pickle.loads"))
        loaded = read_legacy_state(folder, accelerator)
        training_state = apply_state(loaded, accelerator, fresh_model, fresh_optimizer, fresh_scheduler)
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()

    assert loads and all(flag is True for flag in loads)
    _assert_same(fresh_model.state_dict(), model.state_dict())
    _assert_same(fresh_optimizer.state_dict(), optimizer.state_dict())
    assert fresh_scheduler.state_dict() == scheduler.state_dict()
    assert training_state["metrics"][0] == {"step": 1, "loss": 0.5} and math.isnan(
        training_state["metrics"][1]["loss"]
    )
    assert torch.equal(torch.rand(2), expected_draw)  # the random states are restored too


def test_read_legacy_state_names_a_damaged_file(tmp_path):
    from sora_diffusers.training.checkpoints import CorruptCheckpointError

    for name in (
        "model.safetensors",
        "optimizer.bin",
        "scheduler.bin",
        "random_states_0.pkl",
        "custom_checkpoint_0.pkl",
    ):
        (tmp_path / name).write_bytes(b"\x00" * 16)
    accelerator = SimpleNamespace(process_index=0, scaler=None)
    with pytest.raises(CorruptCheckpointError, match=f"{tmp_path.name} is corrupt: model.safetensors"):
        read_legacy_state(tmp_path, accelerator)
