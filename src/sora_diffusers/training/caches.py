"""Frozen models' outputs computed once: the latents of a frozen VAE, with each clip's conditioning tail, in an on-disk
cache (`--cache_latents DIR`) so training runs without the VAE, and the text encoder's embedding of each caption
(`PromptEmbeddingCache`, `--cache_prompt_embeds`).

The latents are the ones `SoraPipeline` conditions on at inference, made by the same function
(`pipelines.conditioning.encode_clip`, through `conditioning_sampler.encode_clips` / `encode_tails`): normalised
posterior means. A clip at the head of a video is the head of its encoding (the VAE is causal); a clip at the tail is
encoded at its place in the video, after a still copy of its first frame, so the cache stores one such tail per clip,
of a length fixed per clip (`cached_tail_length`). Each clip is one safetensors file: nothing is unpickled to read it.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_bytes
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

from ..utils.atomic import remove_stale_temps_in, write_bytes, write_text
from .buckets import BucketBatchSampler
from .conditioning_sampler import encode_clips, encode_tails
from .datasets import build_dataloader


CACHE_VERSION = 2  # 2: tail latents encoded at their place in the video (`with_lead_frames`), not after one frame
_TAIL_STREAM = 7


def cached_tail_length(index: int, num_latent_frames: int, seed: int) -> int:
    """The tail (in latent frames) cached for clip `index`: 1 .. T'-2, leaving room for a head and a generated frame
    (1 for T' = 2, none for an image)."""
    if num_latent_frames < 2:
        return 0
    if num_latent_frames == 2:
        return 1
    return int(np.random.default_rng([seed, index, _TAIL_STREAM]).integers(1, num_latent_frames - 1))


class _Indexed(Dataset):
    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return {**self.dataset[index], "index": index}


def build_latent_cache(
    cache_dir: str | Path, dataset: Dataset, bucket_ids: np.ndarray, vae, accelerator, info: dict, args
) -> "CachedLatentDataset":
    """Encode every clip of `dataset` once (each process takes every n-th clip; clips already cached are skipped, so
    an interrupted build resumes) and return the cached dataset.

    Raises:
        ValueError: `cache_dir` holds a cache built from other data or another VAE (`info` differs).
    """
    cache_dir = Path(cache_dir)
    info = {"version": CACHE_VERSION, "num_samples": len(dataset), **info}
    info_path = cache_dir / "info.json"
    if info_path.is_file():
        found = json.loads(info_path.read_text(encoding="utf-8"))
        if found != json.loads(json.dumps(info)):
            raise ValueError(
                f"--cache_latents {cache_dir} holds latents of other data or another VAE ({info_path}); "
                "give a new folder or delete this one."
            )
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        cache_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temps_in(cache_dir)  # items of a build that was killed while writing them
        write_text(info_path, json.dumps(info, indent=2))

    mine = range(accelerator.process_index, len(dataset), accelerator.num_processes)
    todo = [i for i in mine if not _is_cached(cache_dir, i)]
    if todo:
        sampler = BucketBatchSampler(bucket_ids[todo], args.train_batch_size, shuffle=False)
        loader = build_dataloader(Subset(_Indexed(dataset), todo), sampler, args.dataloader_num_workers)
        progress = tqdm(total=len(todo), desc="caching latents", disable=not accelerator.is_local_main_process)
        for batch in loader:
            _cache_batch(cache_dir, batch, vae, accelerator.device, args.seed)
            progress.update(len(batch["index"]))
        progress.close()
    accelerator.wait_for_everyone()
    return CachedLatentDataset(cache_dir, len(dataset))


def _cache_batch(cache_dir: Path, batch: dict, vae, device, seed: int) -> None:
    video = batch["video"].to(device)  # (B, 3, T, H, W)
    latents = encode_clips(vae, video)  # (B, C, T', H', W')
    lengths = [cached_tail_length(i, latents.shape[2], seed) for i in batch["index"]]
    tails = {k: encode_tails(vae, video[[b for b, n in enumerate(lengths) if n == k]], k) for k in set(lengths) if k}
    position = dict.fromkeys(tails, 0)
    for b, index in enumerate(batch["index"]):
        k = lengths[b]
        tail = latents[b, :, :0]
        if k:
            tail, position[k] = tails[k][position[k]], position[k] + 1
        tensors = {"latents": latents[b].half().cpu().contiguous(), "tail_latents": tail.half().cpu().contiguous()}
        metadata = {"tail_length": str(k), "caption": batch["caption"][b]}
        _write_safetensors(_cache_file(cache_dir, index), tensors, metadata)


def _write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """One item, atomically (`utils.atomic`: a temporary of this process, renamed), made in memory: safetensors'
    `save_file` would leave its own temporary (`.tmpXXXXXX`, which names no process) in the cache if killed. Stale
    temporaries are removed once per cache (`remove_stale_temps_in`), not by every item's write."""
    write_bytes(path, safetensors_bytes(tensors, metadata), clean=False)


def _cache_file(cache_dir: Path, index: int) -> Path:
    return cache_dir / f"{index:08d}.safetensors"


def _is_cached(cache_dir: Path, index: int) -> bool:
    return _cache_file(cache_dir, index).is_file() or _cache_file(cache_dir, index).with_suffix(".pt").is_file()


def read_cached_item(cache_dir: str | Path, index: int) -> dict:
    """Item `index` of a latent cache: `{"latents", "tail_latents", "tail_length", "caption"}`, latents in float32.

    Items are safetensors files (16-bit latents, caption and tail length in their metadata). Caches built before
    2026-12 hold `.pt` files instead, read with `torch.load(weights_only=True)`, which rebuilds tensors and plain
    values and refuses anything else.
    """
    path = _cache_file(Path(cache_dir), index)
    if path.is_file():
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata()
            record = {name: f.get_tensor(name) for name in ("latents", "tail_latents")}
        record.update(tail_length=int(metadata["tail_length"]), caption=metadata["caption"])
    else:
        record = torch.load(path.with_suffix(".pt"), weights_only=True)
    record["latents"] = record["latents"].float()
    record["tail_latents"] = record["tail_latents"].float()
    return record


class CachedLatentDataset(Dataset):
    """Items `{"latents": (C, T', H', W'), "tail_latents": (C, k, H', W'), "tail_length": k, "caption": str}`."""

    def __init__(self, cache_dir: str | Path, num_samples: int):
        self.cache_dir = Path(cache_dir)
        self.num_samples = num_samples

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict:
        return read_cached_item(self.cache_dir, index)


class PromptEmbeddingCache:
    """
    The text encoder's output per caption, computed once: a run sees each caption (and the empty one of caption
    dropout) many times, and the encoder is frozen.

    Each caption is encoded alone (`encode_fn([caption])`, so its embedding does not depend on the batch it first came
    in), trimmed to its tokens, and kept in memory; with `cache_dir` also written there as a safetensors file, so
    another run (or a resume) reads it instead of encoding it again. A batch is padded to its longest caption, with a
    mask, as the pipeline pads.

    Args:
        encode_fn (`Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]]`): captions -> text embeddings (B, L, D)
            and attention mask (B, L), e.g. the first two outputs of `SoraPipeline.encode_prompt`.
        cache_dir (`str` or `os.PathLike`, *optional*): where to keep the embeddings on disk.
        info (`dict`, *optional*): what the embeddings depend on (text encoder, sequence length); a `cache_dir` holding
            other `info` is refused.
    """

    def __init__(self, encode_fn, cache_dir: str | Path | None = None, info: dict | None = None):
        self.encode_fn = encode_fn
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.memory: dict[str, torch.Tensor] = {}
        self.encoded = 0  # captions that went through the encoder
        if self.cache_dir is not None:
            info_path = self.cache_dir / "info.json"
            info = json.loads(json.dumps(info or {}))
            if info_path.is_file() and json.loads(info_path.read_text(encoding="utf-8")) != info:
                raise ValueError(
                    f"{self.cache_dir} holds prompt embeddings of another text encoder ({info_path}); "
                    "give a new folder or delete this one."
                )
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temps_in(self.cache_dir)  # embeddings a killed run was writing
            write_text(info_path, json.dumps(info, indent=2))

    def _file(self, caption: str) -> Path:
        return self.cache_dir / f"{hashlib.sha256(caption.encode('utf-8')).hexdigest()[:32]}.safetensors"

    def embedding(self, caption: str) -> torch.Tensor:
        """(L_caption, D) hidden states of one caption's tokens."""
        if caption in self.memory:
            return self.memory[caption]
        path = self._file(caption) if self.cache_dir is not None else None
        if path is not None and path.is_file():
            with safe_open(path, framework="pt") as f:
                if f.metadata().get("caption") == caption:  # not a hash collision
                    self.memory[caption] = f.get_tensor("embedding")
                    return self.memory[caption]
        embeds, mask = self.encode_fn([caption])
        embedding = embeds[0, : int(mask[0].sum())].detach()
        self.encoded += 1
        if path is not None:
            _write_safetensors(path, {"embedding": embedding.cpu().contiguous()}, {"caption": caption})
        self.memory[caption] = embedding
        return embedding

    def __call__(self, captions: list[str], device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Text embeddings (B, L, D), zero-padded to the longest caption, and the mask (B, L) of real tokens."""
        embeddings = [self.embedding(caption) for caption in captions]
        length = max(e.shape[0] for e in embeddings)
        embeds = embeddings[0].new_zeros(len(captions), length, embeddings[0].shape[-1])
        mask = torch.zeros(len(captions), length, dtype=torch.long)
        for b, e in enumerate(embeddings):
            embeds[b, : e.shape[0]] = e
            mask[b, : e.shape[0]] = 1
        return embeds.to(device), mask.to(device)
