"""The pieces of training a `SpacetimeVAE` (`examples/train_vae.py`): encode, sample and decode in one module, the
random crops and frames it trains on, its losses, its initialisation, and the latent statistics of the final model."""

import numpy as np
import torch
from torch import nn

from ..models.autoencoder_spacetime import SpacetimeVAE


class ReconstructionModel(nn.Module):
    """The VAE's encode -> sample -> decode in one `forward`, so DDP sees (and synchronises) the whole pass."""

    def __init__(self, vae: SpacetimeVAE, train_encoder: bool = True):
        super().__init__()
        self.vae = vae
        self.train_encoder = train_encoder

    def forward(
        self, video: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, T, H, W) -> reconstruction (same shape, unclamped so every pixel has a gradient) and the mean KL
        per latent element."""
        with torch.set_grad_enabled(self.train_encoder and torch.is_grad_enabled()):
            posterior = self.vae.encode(video).latent_dist
        recon = self.vae.decode(posterior.sample(generator), clamp=False).sample
        return recon, posterior.kl().sum() / posterior.mean.numel()


def random_crop(video: torch.Tensor, size: int | None, rng: np.random.Generator) -> torch.Tensor:
    """(B, 3, T, H, W) -> (B, 3, T, h, w): one random window of at most `size` x `size` pixels (None: the whole frame).

    Training on crops of full-resolution clips teaches the VAE the scale it will see at inference (objects of 40-80
    px at 256 px) at the cost of small frames.
    """
    if size is None:
        return video
    height, width = video.shape[-2:]
    h, w = min(size, height), min(size, width)
    top, left = int(rng.integers(height - h + 1)), int(rng.integers(width - w + 1))
    return video[..., top : top + h, left : left + w]


def cut_to_images(video: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """(B, 3, T, H, W) -> (B, 3, 1, H, W): one random frame of each clip."""
    frames = torch.as_tensor(rng.integers(video.shape[2], size=video.shape[0]), device=video.device)
    return video[torch.arange(video.shape[0], device=video.device), :, frames].unsqueeze(2)


def gradient_difference(error: torch.Tensor) -> torch.Tensor:
    """Mean |horizontal| + mean |vertical| pixel gradient of `error = recon - target` (..., H, W): the L1 distance
    between the two videos' gradients, as gradients are linear. Zero for a reconstruction off by a constant."""
    horizontal = error[..., :, 1:] - error[..., :, :-1]
    vertical = error[..., 1:, :] - error[..., :-1, :]
    return horizontal.abs().mean() + vertical.abs().mean()


def psnr(mse: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of videos in [-1, 1] (peak-to-peak 2)."""
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-10))


@torch.no_grad()
def measure_latent_stats(vae: SpacetimeVAE, dataset, num_samples: int, device) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the posterior means of `num_samples` clips (all latent positions pooled)."""
    total = total_sq = count = 0
    for index in range(min(num_samples, len(dataset))):
        video = dataset[index]["video"][None].to(device, vae.dtype)  # (1, 3, T, H, W)
        z = vae.encode(video).latent_dist.mode().double()  # (1, C, T', H', W')
        total = total + z.sum(dim=(0, 2, 3, 4))
        total_sq = total_sq + (z**2).sum(dim=(0, 2, 3, 4))
        count += z[:, 0].numel()
    mean = total / count
    std = (total_sq / count - mean**2).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()


def init_convs_kaiming_(vae: SpacetimeVAE) -> None:
    """He-normal conv weights (fan in, ReLU gain) and zero biases, so the input reaches the latents at init.

    PyTorch's default conv init shrinks the signal ~3x per convolution and its biases then dominate: at init the
    encoder's latents barely depend on the clip (mean |difference| between two clips 0.03 against a spread of 0.14; 0.30
    against 0.74 with this init).
    """
    for module in vae.modules():
        if isinstance(module, nn.Conv3d | nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def init_posterior_logvar_(vae: SpacetimeVAE, logvar: float) -> None:
    """Start the posterior narrow: zero the log-variance half of `quant_conv` and set its bias to `logvar`.

    With PyTorch's default init the posterior std starts near 1 while the latent means are ~0.1-0.2, so the decoder's
    first inputs are mostly noise. On its own this did not end the background-only plateau of the shapes world (that
    took training on unclamped decodes and `init_convs_kaiming_`); it is kept in the recipe that was measured.
    """
    half = vae.config.latent_channels
    with torch.no_grad():
        vae.quant_conv.weight[half:].zero_()
        vae.quant_conv.bias[half:].fill_(logvar)
