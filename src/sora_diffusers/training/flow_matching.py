"""Flow-matching training math shared by the training scripts, the pipeline and the scheduler.

Forward process x_t = (1 - sigma) * x0 + sigma * noise (`add_noise`, the one place it is written: the pipeline's
conditioning and video-to-video start and the scheduler's `scale_noise` call it too); the model learns the velocity
v = noise - x0 (`flow_target`). Sigmas are per sample `(B,)` or per latent frame `(B, T)`: frames given as conditioning
carry sigma 0, so they stay clean (`prepare_frame_conditioning_sigmas`), the model sees timestep = sigma *
num_train_timesteps of the same shape (`sigmas_to_timesteps`), and the loss skips them
(`flow_matching_loss(..., mask=~cond_mask)`).

A training step:

    sigmas = sample_sigmas(B, weighting_scheme="logit_normal", generator=generator)         # (B,)
    sigmas = prepare_frame_conditioning_sigmas(sigmas, cond_mask)                          # (B, T)
    noisy = add_noise(x0, noise, sigmas)                                                    # (B, C, T, H, W)
    pred = transformer(noisy, timestep=sigmas_to_timesteps(sigmas), ...).sample
    loss = flow_matching_loss(pred, flow_target(x0, noise), loss_weighting(sigmas, "none"), mask=~cond_mask)
"""

import math

import torch

from ..schedulers.scheduling_flow_match import DEFAULT_NUM_TRAIN_TIMESTEPS, shift_sigmas


WEIGHTING_SCHEMES = ("uniform", "logit_normal", "mode")
LOSS_WEIGHTING_SCHEMES = ("none", "sigma_sqrt", "cosmap")
# Sampled sigmas stay inside (0, 1): sigma 0 is reserved for clean conditioning frames (and would make the
# "sigma_sqrt" weight infinite); "mode" and float32 rounding of the sigmoid can otherwise reach the end points.
SIGMA_EPS = 1e-5


def _expand_to(values: torch.Tensor | float, x: torch.Tensor, name: str) -> torch.Tensor:
    """Reshape per-sample `(B,)` or per-frame `(B, T)` values to broadcast onto `x` of shape `(B, C, T, H, W)`."""
    values = torch.as_tensor(values, device=x.device)
    if values.ndim == 0:
        return values
    if values.ndim == 1 and values.shape[0] == x.shape[0]:
        return values.reshape(-1, *([1] * (x.ndim - 1)))  # (B, 1, ..., 1)
    if values.ndim == 2 and x.ndim == 5 and values.shape == (x.shape[0], x.shape[2]):
        return values[:, None, :, None, None]  # (B, 1, T, 1, 1)
    if values.ndim == x.ndim:
        try:
            torch.broadcast_shapes(values.shape, x.shape)
            return values
        except RuntimeError:
            pass
    raise ValueError(
        f"`{name}` must be a scalar, (B,), (B, T) or broadcastable to {tuple(x.shape)} (B, C, T, H, W); "
        f"got shape {tuple(values.shape)}"
    )


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor | float) -> torch.Tensor:
    """
    Forward process x_t = (1 - sigma) * x0 + sigma * noise.

    Args:
        x0 (`torch.Tensor` of shape `(B, C, T, H, W)`): Clean latents.
        noise (`torch.Tensor`, same shape as `x0`): Gaussian noise.
        sigmas (`torch.Tensor` of shape `(B,)` or `(B, T)`, or a float): Noise level per sample or per latent frame;
            0 keeps the frame clean, 1 is pure noise.
    """
    if noise.shape != x0.shape:
        raise ValueError(f"`noise` must have the shape of `x0` {tuple(x0.shape)}, got {tuple(noise.shape)}")
    if not isinstance(sigmas, (int, float)):  # a Python number stays one: 1 - sigma in double precision
        sigmas = _expand_to(sigmas, x0, "sigmas").to(x0.dtype)
    return (1.0 - sigmas) * x0 + sigmas * noise


def flow_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The velocity the model learns, v = d x_t / d sigma = noise - x0 (constant along the straight path)."""
    return noise - x0


def sample_sigmas(
    batch_size: int,
    *,
    weighting_scheme: str = "uniform",
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    mode_scale: float = 1.29,
    shift: float = 1.0,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """
    Training noise levels in (0, 1), one per sample, drawn by the SD3 paper's densities then statically shifted.

    Args:
        batch_size (`int`): Number of sigmas.
        weighting_scheme (`str`): "uniform", "logit_normal" (sigmoid of a normal, concentrates on mid noise) or
            "mode" (heavier at mid noise, controlled by `mode_scale`).
        logit_mean (`float`): Mean of the normal for "logit_normal".
        logit_std (`float`): Standard deviation of the normal for "logit_normal".
        mode_scale (`float`): Scale for "mode"; 0 is uniform.
        shift (`float`): Static shift applied after sampling (`shift_sigmas`), as the sampler's `shift`.
        generator (`torch.Generator`, *optional*): For reproducible draws; must live on `device`.
        device (`str` or `torch.device`, *optional*): Device of the result.

    Returns:
        `torch.Tensor` of shape `(batch_size,)`, float32, in [SIGMA_EPS, 1 - SIGMA_EPS].
    """
    if weighting_scheme not in WEIGHTING_SCHEMES:
        raise ValueError(f"`weighting_scheme` must be one of {WEIGHTING_SCHEMES}, got {weighting_scheme!r}")
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be a positive integer, got {batch_size}")
    if logit_std <= 0:
        raise ValueError(f"`logit_std` must be > 0, got {logit_std}")
    if shift <= 0:
        raise ValueError(f"`shift` must be > 0, got {shift}")

    # Adapted from diffusers 0.42: training_utils.py::compute_density_for_timestep_sampling (same draws)
    if weighting_scheme == "logit_normal":
        u = torch.normal(mean=logit_mean, std=logit_std, size=(batch_size,), device=device, generator=generator)
        u = torch.sigmoid(u)
    elif weighting_scheme == "mode":
        u = torch.rand(size=(batch_size,), device=device, generator=generator)
        u = 1 - u - mode_scale * (torch.cos(math.pi * u / 2) ** 2 - 1 + u)
    else:
        u = torch.rand(size=(batch_size,), device=device, generator=generator)
    return shift_sigmas(u, shift).clamp(SIGMA_EPS, 1 - SIGMA_EPS)


def sigmas_to_timesteps(sigmas: torch.Tensor, num_train_timesteps: int = DEFAULT_NUM_TRAIN_TIMESTEPS) -> torch.Tensor:
    """The model's `timestep` input, sigma * num_train_timesteps (same shape as `sigmas`: `(B,)` or `(B, T)`)."""
    return sigmas * num_train_timesteps


def loss_weighting(sigmas: torch.Tensor, scheme: str = "none") -> torch.Tensor:
    """
    Per-sample (or per-frame) loss weights, same shape as `sigmas`.

    Args:
        sigmas (`torch.Tensor` of shape `(B,)` or `(B, T)`): The training noise levels.
        scheme (`str`): "none" (all ones), "sigma_sqrt" (1 / sigma**2; diffusers' name, infinite at sigma 0, which
            the loss mask must exclude) or "cosmap" (2 / (pi * (1 - 2 sigma + 2 sigma**2)), SD3 paper).
    """
    # Adapted from diffusers 0.42: training_utils.py::compute_loss_weighting_for_sd3
    if scheme not in LOSS_WEIGHTING_SCHEMES:
        raise ValueError(f"`scheme` must be one of {LOSS_WEIGHTING_SCHEMES}, got {scheme!r}")
    sigmas = sigmas.float()
    if scheme == "sigma_sqrt":
        return sigmas**-2.0
    if scheme == "cosmap":
        return 2 / (math.pi * (1 - 2 * sigmas + 2 * sigmas**2))
    return torch.ones_like(sigmas)


def flow_matching_loss(
    model_pred: torch.Tensor,
    target: torch.Tensor,
    weighting: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """
    Weighted mean squared error in float32: mean over each sample's counted elements, then over the batch.

    Args:
        model_pred (`torch.Tensor` of shape `(B, C, T, H, W)`): The model's velocity.
        target (`torch.Tensor`, same shape): `flow_target(x0, noise)`.
        weighting (`torch.Tensor` of shape `(B,)` or `(B, T)`, *optional*): From `loss_weighting`.
        mask (`torch.Tensor` of shape `(B, T)` or broadcastable to `model_pred`, *optional*): Nonzero/True where the
            element counts; pass `~cond_mask` so clean conditioning frames (sigma 0) are left out. Left-out elements
            do not touch the loss at all, even if their prediction or weight is inf/nan. A sample with nothing
            counted adds 0.

    Returns:
        A scalar float32 tensor.
    """
    if model_pred.shape != target.shape:
        raise ValueError(
            f"`model_pred` and `target` must have the same shape, got {tuple(model_pred.shape)} and {tuple(target.shape)}"
        )
    squared_error = (model_pred.float() - target.float()) ** 2  # (B, C, T, H, W)
    if weighting is not None:
        squared_error = squared_error * _expand_to(weighting.float(), squared_error, "weighting")
    if mask is None:
        return squared_error.flatten(1).mean(1).mean()

    keep = _expand_to(mask, squared_error, "mask").ne(0).expand_as(squared_error)
    per_sample_sum = torch.where(keep, squared_error, 0.0).flatten(1).sum(1)  # (B,)
    per_sample_count = keep.flatten(1).sum(1)  # (B,)
    return (per_sample_sum / per_sample_count.clamp_min(1)).mean()


def prepare_frame_conditioning_sigmas(sigma: torch.Tensor, cond_mask: torch.Tensor) -> torch.Tensor:
    """
    Per-frame sigmas: each sample's sigma on its generated frames, 0 on its conditioning frames (kept clean).

    Args:
        sigma (`torch.Tensor` of shape `(B,)`): One noise level per sample, e.g. from `sample_sigmas`.
        cond_mask (`torch.Tensor` of shape `(B, T)`, bool): True where the latent frame is given as conditioning.

    Returns:
        `torch.Tensor` of shape `(B, T)`, dtype of `sigma`.
    """
    if sigma.ndim != 1:
        raise ValueError(f"`sigma` must have shape (B,), got {tuple(sigma.shape)}")
    if cond_mask.dtype != torch.bool:
        raise ValueError(f"`cond_mask` must be a bool tensor, got dtype {cond_mask.dtype}")
    if cond_mask.ndim != 2 or cond_mask.shape[0] != sigma.shape[0]:
        raise ValueError(f"`cond_mask` must have shape (B={sigma.shape[0]}, T), got {tuple(cond_mask.shape)}")
    return torch.where(cond_mask, 0.0, sigma[:, None])  # (B, T)
