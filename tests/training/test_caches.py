"""The latent cache holds exactly the latents the pipeline conditions on: the cache and the pipeline's
`encode_condition` go through one recipe (`pipelines.conditioning.encode_clip`), so a model trains on what it is given
at inference. Prompt embeddings are encoded once per caption."""

from types import SimpleNamespace

import pytest
import torch

from sora_diffusers import FrameCondition, SoraPipeline, SpacetimeVAE
from sora_diffusers.training.buckets import make_buckets
from sora_diffusers.training.caches import PromptEmbeddingCache, build_latent_cache
from sora_diffusers.training.conditioning_sampler import tail_clip_start
from sora_diffusers.training.datasets import shapes_dataset

from ..pipelines.conftest import TINY_VAE_CONFIG


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class _OneProcess(SimpleNamespace):
    """What `build_latent_cache` asks of an `Accelerator`, for one process on the CPU."""

    def __init__(self):
        super().__init__(
            process_index=0, num_processes=1, is_main_process=True, is_local_main_process=True, device="cpu"
        )

    def wait_for_everyone(self):
        pass


@pytest.fixture(scope="module")
def vae() -> SpacetimeVAE:
    torch.manual_seed(0)
    vae = SpacetimeVAE(**{**TINY_VAE_CONFIG, "latents_mean": [0.1, -0.2, 0.3, 0.0], "latents_std": [0.5, 2, 1, 3]})
    return vae.eval()


@torch.no_grad()  # as in `SoraPipeline.__call__` (oneDNN convolutions round differently when recording gradients)
def test_cached_latents_are_the_pipelines_conditioning_latents(vae, tmp_path):
    dataset, bucket_ids = shapes_dataset(6, make_buckets(32, (9, 13), ("square",)), seed=5, group_size=1)
    args = SimpleNamespace(train_batch_size=1, dataloader_num_workers=0, seed=5)
    cache = build_latent_cache(tmp_path / "cache", dataset, bucket_ids, vae, _OneProcess(), {"test": 1}, args)
    pipe = SoraPipeline(None, None, None, vae, None)
    tails = set()
    for index in range(len(dataset)):
        video = dataset[index]["video"][None]  # (1, 3, T, 32, 32)
        num_frames = video.shape[2]
        item = cache[index]
        assert item["caption"] == dataset[index]["caption"]

        clip, latent_index, video_start = pipe.prepare_condition(FrameCondition(video, 0), num_frames, 32, 32)
        head = pipe.encode_condition(clip, latent_index, video_start, 1.0, 1).latents[0]  # the whole clip
        assert head.shape == item["latents"].shape
        assert torch.equal(item["latents"], head.half().float())  # cached in 16 bits, otherwise the same numbers

        k = item["tail_length"]
        tails.add(k)
        start = tail_clip_start(head.shape[1], k, vae.temporal_compression_ratio)
        condition = FrameCondition(video[:, :, start:], start)
        clip, latent_index, video_start = pipe.prepare_condition(condition, num_frames, 32, 32)
        tail = pipe.encode_condition(clip, latent_index, video_start, 1.0, 1)
        assert (tail.latent_index, video_start) == (head.shape[1] - k, False)
        assert torch.equal(item["tail_latents"], tail.latents[0].half().float())
        # a tail encoded at its place differs from the same frames of the whole clip's encoding (the causal cache)
        assert not torch.allclose(item["tail_latents"], head[:, -k:], atol=1e-3)
    assert len(tails) > 1, tails  # the tail lengths cached vary per clip


def test_a_cache_built_before_safetensors_is_still_read(vae, tmp_path):
    """Caches of `.pt` files (before 2026-12) are read with torch's weights-only loader and not encoded again."""
    dataset, bucket_ids = shapes_dataset(2, make_buckets(32, (9,), ("square",)), seed=5, group_size=1)
    args = SimpleNamespace(train_batch_size=2, dataloader_num_workers=0, seed=5)
    old = {"latents": torch.ones(4, 3, 4, 4).half(), "tail_latents": torch.zeros(4, 1, 4, 4).half()}
    tmp_path.mkdir(exist_ok=True)
    torch.save({**old, "tail_length": 1, "caption": "an old clip"}, tmp_path / "00000000.pt")

    cache = build_latent_cache(tmp_path, dataset, bucket_ids, vae, _OneProcess(), {"test": 2}, args)

    assert sorted(p.name for p in tmp_path.iterdir()) == ["00000000.pt", "00000001.safetensors", "info.json"]
    item = cache[0]
    assert item["caption"] == "an old clip" and item["tail_length"] == 1
    assert item["latents"].dtype == torch.float32 and torch.equal(item["latents"], torch.ones(4, 3, 4, 4))
    assert cache[1]["caption"] == dataset[1]["caption"] and cache[1]["latents"].shape == (4, 3, 4, 4)


def _fake_encoder(calls: list):
    """Captions -> (B, L, 3) embeddings and masks: a caption of n words has n tokens, each from its word."""

    def encode(captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(list(captions))
        length = max(max(len(c.split()), 1) for c in captions)
        embeds, mask = torch.zeros(len(captions), length, 3), torch.zeros(len(captions), length, dtype=torch.long)
        for b, caption in enumerate(captions):
            words = caption.split() or [""]
            for i, word in enumerate(words):
                embeds[b, i] = torch.tensor([len(word), i, sum(map(ord, word)) % 7], dtype=torch.float32)
            mask[b, : len(words)] = 1
        return embeds, mask

    return encode


def test_prompt_embeddings_are_encoded_once_per_caption_and_padded_per_batch(tmp_path):
    calls = []
    cache = PromptEmbeddingCache(_fake_encoder(calls), tmp_path / "prompts", {"text_encoder": "fake"})
    embeds, mask = cache(["a red circle", "", "a red circle moving right"])
    embeds_again, mask_again = cache(["a red circle moving right", "a red circle"])

    assert calls == [["a red circle"], [""], ["a red circle moving right"]]  # one caption at a time, each once
    assert embeds.shape == (3, 5, 3) and mask.tolist() == [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]]
    assert torch.equal(embeds[0, :3], _fake_encoder([])(["a red circle"])[0][0]) and not embeds[0, 3:].any()
    assert torch.equal(embeds_again[0], embeds[2]) and torch.equal(embeds_again[1], embeds[0])
    assert mask_again.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]

    reread = PromptEmbeddingCache(_fake_encoder(calls), tmp_path / "prompts", {"text_encoder": "fake"})
    assert torch.equal(reread(["a red circle", ""])[0], embeds[:2, :3]) and reread.encoded == 0  # from disk
    assert len(list((tmp_path / "prompts").glob("*.safetensors"))) == 3
    with pytest.raises(ValueError, match="holds prompt embeddings of another text encoder"):
        PromptEmbeddingCache(_fake_encoder(calls), tmp_path / "prompts", {"text_encoder": "other"})
