"""A minimal reference of the original Wan release's UMT5 text encoder, written for the tests.

It follows Wan-AI's Wan2.1 `wan/modules/t5.py` (Apache-2.0): `T5Encoder` built by `umt5_xxl(encoder_only=True)`,
i.e. `shared_pos=False` (a relative position bias in every block), with the same module names, so its `state_dict()`
is what `models_t5_umt5-xxl-enc-bf16.pth` holds. Only the encoder's inference forward is here (no dropout, no fp16
clamp); it does not import transformers, so it checks the key map against Wan's semantics, not against itself.
"""

import math

import torch
from torch import nn


class RMSNorm(nn.Module):
    """Wan's `T5LayerNorm`: scale by the root mean square (no mean, no bias), eps 1e-6."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps))


class RelativePositionBias(nn.Module):
    """Wan's bidirectional `T5RelativeEmbedding`: (L_q, L_k) bucketed distances -> a (1, N, L_q, L_k) bias."""

    def __init__(self, num_buckets: int, num_heads: int, max_dist: int = 128):
        super().__init__()
        self.num_buckets, self.max_dist = num_buckets, max_dist
        self.embedding = nn.Embedding(num_buckets, num_heads)

    def bucket(self, rel_pos: torch.Tensor) -> torch.Tensor:
        half = self.num_buckets // 2  # keys after the query use the upper half of the buckets
        buckets = (rel_pos > 0).long() * half
        distance = rel_pos.abs()
        max_exact = half // 2  # below it, one bucket per distance; above, logarithmic up to max_dist
        ratio = torch.log(distance.float() / max_exact) / math.log(self.max_dist / max_exact)
        log_bucket = (max_exact + (ratio * (half - max_exact)).long()).clamp(max=half - 1)
        return buckets + torch.where(distance < max_exact, distance, log_bucket)

    def forward(self, length: int) -> torch.Tensor:
        positions = torch.arange(length)
        rel_pos = positions[None, :] - positions[:, None]  # key position - query position, (L_q, L_k)
        return self.embedding(self.bucket(rel_pos)).permute(2, 0, 1).unsqueeze(0)  # (1, N, L_q, L_k)


class Attention(nn.Module):
    """Wan's `T5Attention` as self-attention: unscaled dot products plus the position bias; masked keys get -inf-ish."""

    def __init__(self, dim: int, dim_attn: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim_attn, bias=False)
        self.k = nn.Linear(dim, dim_attn, bias=False)
        self.v = nn.Linear(dim, dim_attn, bias=False)
        self.o = nn.Linear(dim_attn, dim, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None, bias: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        q, k, v = (proj(x).view(B, L, self.num_heads, -1) for proj in (self.q, self.k, self.v))  # (B, L, N, D)
        scores = torch.einsum("bind,bjnd->bnij", q, k) + bias  # (B, N, L, L); T5 does not scale
        if mask is not None:
            scores = scores.masked_fill(mask.view(B, 1, 1, L) == 0, torch.finfo(x.dtype).min)
        out = torch.einsum("bnij,bjnd->bind", scores.softmax(dim=-1), v)  # (B, L, N, D)
        return self.o(out.reshape(B, L, -1))


class GatedFeedForward(nn.Module):
    """Wan's `T5FeedForward`: fc2(fc1(x) * gelu_tanh(gate(x))); `gate` is a Sequential(Linear, GELU), hence gate.0."""

    def __init__(self, dim: int, dim_ffn: int):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(dim, dim_ffn, bias=False), nn.GELU(approximate="tanh"))
        self.fc1 = nn.Linear(dim, dim_ffn, bias=False)
        self.fc2 = nn.Linear(dim_ffn, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(x) * self.gate(x))


class Block(nn.Module):
    """Wan's `T5SelfAttention` with `shared_pos=False`: pre-norm attention and feed-forward, its own position bias."""

    def __init__(self, dim: int, dim_attn: int, dim_ffn: int, num_heads: int, num_buckets: int):
        super().__init__()
        self.norm1 = RMSNorm(dim)
        self.attn = Attention(dim, dim_attn, num_heads)
        self.norm2 = RMSNorm(dim)
        self.ffn = GatedFeedForward(dim, dim_ffn)
        self.pos_embedding = RelativePositionBias(num_buckets, num_heads)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask, self.pos_embedding(x.shape[1]))
        return x + self.ffn(self.norm2(x))


class WanUMT5EncoderReference(nn.Module):
    """Wan's `T5Encoder(vocab, dim, dim_attn, dim_ffn, num_heads, num_layers, num_buckets, shared_pos=False)`."""

    def __init__(
        self, vocab: int, dim: int, dim_attn: int, dim_ffn: int, num_heads: int, num_layers: int, num_buckets: int
    ):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(Block(dim, dim_attn, dim_ffn, num_heads, num_buckets) for _ in range(num_layers))
        self.norm = RMSNorm(dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """ids (B, L) -> hidden states (B, L, dim); mask (B, L), 0 at padding."""
        x = self.token_embedding(ids)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)


def tiny_wan_umt5(seed: int = 0, **overrides) -> WanUMT5EncoderReference:
    """A tiny random Wan UMT5 encoder: attention width != model width and d_ff odd-sized, so swapped or transposed
    tensors fail the shape checks, and norms, embeddings and biases perturbed far from their initial values."""
    config = dict(vocab=48, dim=16, dim_attn=24, dim_ffn=40, num_heads=3, num_layers=2, num_buckets=32)
    torch.manual_seed(seed)
    model = WanUMT5EncoderReference(**{**config, **overrides}).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.copy_(1.0 + 0.3 * torch.randn_like(param))
            elif "pos_embedding" in name:
                param.normal_(0.0, 1.0)  # as large as the attention scores: a wrong bucket or head order shows
            else:
                param.normal_(0.0, param.shape[-1] ** -0.5)
    return model


TINY_WORDS = ("a", "red", "blue", "green", "circle", "square", "triangle", "moving", "to", "the", "right", "left")


def tiny_umt5_tokenizer():
    """A tiny UMT5-style tokenizer (what the release's google/umt5-xxl/ folder holds, in miniature): a Unigram
    vocabulary, pad 0, eos 1, unk 2, `</s>` appended; built offline with transformers' `T5Tokenizer`. 42 ids."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + word, -1.0) for word in TINY_WORDS] + [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    return T5Tokenizer(vocab=vocab, extra_ids=0)
