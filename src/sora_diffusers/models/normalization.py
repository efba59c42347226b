"""adaLN helpers shared by the transformer blocks and the output layer."""

import torch


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x * (1 + scale) + shift, with x (B, T_m, S_f, D) and shift/scale (B, T_m, 1, D): one modulation per frame."""
    return x * (1 + scale) + shift


def frames_view(x: torch.Tensor, num_modulated_frames: int) -> torch.Tensor:
    """(B, S, D) -> (B, T_m, S / T_m, D): tokens are frame-major, so each group of S / T_m tokens is one frame."""
    return x.unflatten(1, (num_modulated_frames, -1))
