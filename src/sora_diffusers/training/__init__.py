from .flow_matching import (
    LOSS_WEIGHTING_SCHEMES,
    WEIGHTING_SCHEMES,
    add_noise,
    flow_matching_loss,
    flow_target,
    loss_weighting,
    prepare_frame_conditioning_sigmas,
    sample_sigmas,
    sigmas_to_timesteps,
)


__all__ = [
    "LOSS_WEIGHTING_SCHEMES",
    "WEIGHTING_SCHEMES",
    "add_noise",
    "flow_matching_loss",
    "flow_target",
    "loss_weighting",
    "prepare_frame_conditioning_sigmas",
    "sample_sigmas",
    "sigmas_to_timesteps",
]
