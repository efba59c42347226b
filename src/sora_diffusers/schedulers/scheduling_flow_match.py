"""Rectified-flow Euler scheduler: x_t = (1 - sigma) * x0 + sigma * noise, the model predicts v = noise - x0, and sampling
integrates dx/dsigma = v from sigma = 1 (noise) to 0 (data). Timesteps, sigmas and `prev_sample` equal diffusers'
`FlowMatchEulerDiscreteScheduler` for the options kept: static or dynamic (exponential) shift, custom sigmas/timesteps
(`prev_sample` exactly for float32 inputs; for float16/bfloat16 ones the step is taken in float32, where diffusers
multiplies in the half type, so about a fifth of the values differ by one unit in the last place)."""

import inspect
import math

import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin, SchedulerOutput
from diffusers.utils import logging


logger = logging.get_logger(__name__)


DEFAULT_NUM_TRAIN_TIMESTEPS = 1000
# Resolution-dependent shift: mu goes linearly from BASE_SHIFT at BASE_SEQ_LEN tokens to MAX_SHIFT at MAX_SEQ_LEN
# tokens (diffusers' FlowMatchEulerDiscreteScheduler defaults, so configs convert both ways unchanged).
DEFAULT_BASE_SHIFT = 0.5
DEFAULT_MAX_SHIFT = 1.15
DEFAULT_BASE_SEQ_LEN = 256
DEFAULT_MAX_SEQ_LEN = 4096


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """Static shift sigma' = shift * sigma / (1 + (shift - 1) * sigma); shift > 1 spends more steps at high noise."""
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def time_shift_sigmas(sigmas: torch.Tensor, mu: float) -> torch.Tensor:
    """Exponential time shift exp(mu) / (exp(mu) + 1 / sigma - 1), i.e. `shift_sigmas` with shift = exp(mu)."""
    # Adapted from diffusers 0.42: schedulers/scheduling_flow_match_euler_discrete.py::_time_shift_exponential
    # (written the same way, not via shift_sigmas, so the floats match diffusers bit for bit).
    return math.exp(mu) / (math.exp(mu) + (1 / sigmas - 1))


def calculate_shift(
    seq_len: int,
    base_seq_len: int = DEFAULT_BASE_SEQ_LEN,
    max_seq_len: int = DEFAULT_MAX_SEQ_LEN,
    base_shift: float = DEFAULT_BASE_SHIFT,
    max_shift: float = DEFAULT_MAX_SHIFT,
) -> float:
    """
    The `mu` of `set_timesteps` for a latent of `seq_len` tokens: linear in the token count, `base_shift` at
    `base_seq_len` tokens and `max_shift` at `max_seq_len` (extrapolated outside that range).

    Args:
        seq_len (`int`): Number of transformer tokens S = T' * H' * W' of the latent being sampled.
        base_seq_len (`int`): Token count at which mu equals `base_shift`.
        max_seq_len (`int`): Token count at which mu equals `max_shift`.
        base_shift (`float`): mu at `base_seq_len`.
        max_shift (`float`): mu at `max_seq_len`.
    """
    # Adapted from diffusers 0.42: pipelines/flux/pipeline_flux.py::calculate_shift
    if max_seq_len == base_seq_len:
        raise ValueError(f"`max_seq_len` must differ from `base_seq_len`, both are {base_seq_len}")
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    intercept = base_shift - slope * base_seq_len
    return seq_len * slope + intercept


class SoraFlowMatchScheduler(SchedulerMixin, ConfigMixin):
    """
    Euler sampler for rectified flow (flow matching), a drop-in for diffusers' `FlowMatchEulerDiscreteScheduler`.

    Args:
        num_train_timesteps (`int`, defaults to 1000): Timestep scale: timestep = sigma * num_train_timesteps.
        shift (`float`, defaults to 1.0): Static shift of the sigmas (see `shift_sigmas`); ignored with dynamic shifting.
        use_dynamic_shifting (`bool`, defaults to `False`): Shift by resolution instead: `set_timesteps` needs `mu`
            (from `calculate_shift` with the four values below).
        base_shift (`float`, defaults to 0.5): mu at `base_image_seq_len` tokens.
        max_shift (`float`, defaults to 1.15): mu at `max_image_seq_len` tokens.
        base_image_seq_len (`int`, defaults to 256): Token count of `base_shift`. Named as in diffusers, whose
            pipelines read it from any scheduler's config; for a video it counts spacetime tokens T' * H' * W'.
        max_image_seq_len (`int`, defaults to 4096): Token count of `max_shift`.
    """

    _compatibles = ["FlowMatchEulerDiscreteScheduler", "UniPCMultistepScheduler"]
    order = 1

    @classmethod
    def from_config(cls, config=None, return_unused_kwargs=False, **kwargs):
        """diffusers' `ConfigMixin.from_config`, with a warning naming the settings of `FlowMatchEulerDiscreteScheduler`
        this scheduler does not implement when they are set to anything but their defaults (`shift_terminal`,
        `time_shift_type="linear"`, `use_karras_sigmas`, ...): diffusers drops a compatible scheduler's settings
        silently, and these would have changed the sigmas."""
        given = {**(config if isinstance(config, dict) else {}), **kwargs}
        ours = inspect.signature(cls.__init__).parameters
        ignored = {
            name: given[name]
            for name, param in inspect.signature(FlowMatchEulerDiscreteScheduler.__init__).parameters.items()
            if name not in ours and name in given and given[name] != param.default
        }
        if ignored:
            logger.warning(
                f"{cls.__name__} does not implement {ignored} of FlowMatchEulerDiscreteScheduler and ignores them, so "
                "its sigmas differ from that scheduler's; for these settings use FlowMatchEulerDiscreteScheduler "
                "itself (it plugs into SoraPipeline too)."
            )
        return super().from_config(config, return_unused_kwargs=return_unused_kwargs, **kwargs)

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = DEFAULT_NUM_TRAIN_TIMESTEPS,
        shift: float = 1.0,
        use_dynamic_shifting: bool = False,
        base_shift: float = DEFAULT_BASE_SHIFT,
        max_shift: float = DEFAULT_MAX_SHIFT,
        base_image_seq_len: int = DEFAULT_BASE_SEQ_LEN,
        max_image_seq_len: int = DEFAULT_MAX_SEQ_LEN,
    ):
        if num_train_timesteps < 1:
            raise ValueError(f"`num_train_timesteps` must be a positive integer, got {num_train_timesteps}")
        if shift <= 0:
            raise ValueError(f"`shift` must be > 0, got {shift}")
        # Training schedule: sigmas N/N, (N-1)/N, ..., 1/N; with dynamic shifting the shift waits for set_timesteps.
        sigmas = torch.arange(num_train_timesteps, 0, -1, dtype=torch.float32) / num_train_timesteps
        if not use_dynamic_shifting:
            sigmas = shift_sigmas(sigmas, shift)
        self.timesteps = sigmas * num_train_timesteps
        self.sigmas = sigmas
        self.sigma_min = sigmas[-1].item()
        self.sigma_max = sigmas[0].item()
        self.num_inference_steps = None
        self._step_index = None
        self._begin_index = None

    @property
    def step_index(self) -> int | None:
        """Index of the current timestep; grows by one after each `step`."""
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        """Index of the first timestep, set by a pipeline that starts mid-schedule (video-to-video)."""
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """
        Args:
            begin_index (`int`, defaults to 0): Index of the first timestep `step` will see.
        """
        self._begin_index = begin_index

    def __len__(self) -> int:
        return self.config.num_train_timesteps

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        sigmas: list[float] | None = None,
        mu: float | None = None,
        timesteps: list[float] | None = None,
    ) -> None:
        """
        Sets the sampling schedule: `self.timesteps` (num_inference_steps,) and `self.sigmas` (num_inference_steps + 1,),
        the last sigma being 0.

        Args:
            num_inference_steps (`int`, *optional*): Number of Euler steps; may be omitted when `sigmas` or
                `timesteps` are given.
            device (`str` or `torch.device`, *optional*): Device of the returned schedule.
            sigmas (`list[float]`, *optional*): Custom unshifted sigmas, high to low; they are shifted like the default.
            mu (`float`, *optional*): Resolution-dependent shift, required when `use_dynamic_shifting` is set.
            timesteps (`list[float]`, *optional*): Custom timesteps, used as given; without `sigmas` the sigmas are
                timesteps / num_train_timesteps, shifted.
        """
        num_train_timesteps = self.config.num_train_timesteps
        if self.config.use_dynamic_shifting and mu is None:
            raise ValueError("`mu` must be passed when `use_dynamic_shifting` is True (see `calculate_shift`)")
        if sigmas is not None and timesteps is not None and len(sigmas) != len(timesteps):
            raise ValueError(
                f"`sigmas` and `timesteps` must have the same length, got {len(sigmas)} and {len(timesteps)}"
            )
        custom = sigmas if sigmas is not None else timesteps
        if custom is None and num_inference_steps is None:
            raise ValueError("pass `num_inference_steps`, `sigmas` or `timesteps`")
        if custom is not None and num_inference_steps is not None and len(custom) != num_inference_steps:
            raise ValueError(f"`num_inference_steps`={num_inference_steps} but {len(custom)} sigmas/timesteps given")
        self.num_inference_steps = len(custom) if custom is not None else num_inference_steps

        # 1. Unshifted sigmas: given, derived from the given timesteps, or evenly spaced.
        if sigmas is not None:
            sigmas = torch.as_tensor(sigmas, dtype=torch.float32)
        elif timesteps is not None:
            sigmas = torch.as_tensor(timesteps, dtype=torch.float32) / num_train_timesteps
        else:
            # As in diffusers, the spacing ends at the smallest *training* sigma, which is already shifted, and step 2
            # shifts again. Kept (float64 like diffusers' numpy) so both schedulers give identical schedules.
            t_max, t_min = self.sigma_max * num_train_timesteps, self.sigma_min * num_train_timesteps
            sigmas = torch.linspace(t_max, t_min, self.num_inference_steps, dtype=torch.float64) / num_train_timesteps

        # 2. Shift, by resolution (mu) or by the static config value.
        if self.config.use_dynamic_shifting:
            sigmas = time_shift_sigmas(sigmas, mu)
        else:
            sigmas = shift_sigmas(sigmas, self.config.shift)

        # 3. Timesteps are the given ones or sigma * N; the sigmas end with 0, the clean sample.
        sigmas = sigmas.to(dtype=torch.float32, device=device)
        if timesteps is not None:
            self.timesteps = torch.as_tensor(timesteps, dtype=torch.float32).to(device=device, copy=True)
        else:
            self.timesteps = sigmas * num_train_timesteps
        self.sigmas = torch.cat([sigmas, sigmas.new_zeros(1)])
        self._step_index = None
        self._begin_index = None

    def index_for_timestep(
        self, timestep: float | torch.Tensor, schedule_timesteps: torch.Tensor | None = None
    ) -> int:
        """
        Position of `timestep` in the schedule (exact match). A timestep found twice maps to its second occurrence, as
        in diffusers, so that starting mid-schedule (video-to-video) never skips a sigma.

        Args:
            timestep (`float` or one-element `torch.Tensor`): One of `self.timesteps`.
            schedule_timesteps (`torch.Tensor`, *optional*): Schedule to search; defaults to `self.timesteps`.
        """
        if schedule_timesteps is None:
            schedule_timesteps = self.timesteps
        timestep = torch.as_tensor(timestep, device=schedule_timesteps.device).reshape(())
        indices = (schedule_timesteps == timestep).nonzero().flatten()
        if len(indices) == 0:
            raise ValueError(f"`timestep` {timestep.item()} is not in the schedule: pass one of `scheduler.timesteps`")
        return indices[1 if len(indices) > 1 else 0].item()

    def _init_step_index(self, timestep: float | torch.Tensor) -> None:
        if self.begin_index is None:
            self._step_index = self.index_for_timestep(timestep)
        else:
            self._step_index = self._begin_index

    def scale_noise(self, sample: torch.Tensor, timestep: float | torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """
        Forward process (x_t = (1 - sigma) * x0 + sigma * noise) at a scheduled timestep, to start video-to-video
        (SDEdit) mid-schedule.

        Args:
            sample (`torch.Tensor` of shape `(B, C, T, H, W)`): Clean latents x0.
            timestep (`float` or `torch.Tensor` of shape `(B,)` or `(1,)`): Scheduled timestep(s); with a begin index
                set (`set_begin_index`), the current/begin step's sigma is used instead.
            noise (`torch.Tensor`, same shape as `sample`): Gaussian noise.
        """
        # Adapted from diffusers 0.42: schedulers/scheduling_flow_match_euler_discrete.py::scale_noise
        timestep = torch.as_tensor(timestep, device=sample.device).reshape(-1)
        if self.begin_index is None:  # training, or a pipeline that does not call set_begin_index
            schedule_timesteps = self.timesteps.to(sample.device)
            step_indices = [self.index_for_timestep(t, schedule_timesteps) for t in timestep]
        elif self.step_index is not None:  # called after the first step (inpainting-style re-noising)
            step_indices = [self.step_index] * len(timestep)
        else:  # called before the first step to build the initial latents
            step_indices = [self.begin_index] * len(timestep)
        sigma = self.sigmas.to(device=sample.device, dtype=sample.dtype)[step_indices]
        sigma = sigma.reshape(-1, *([1] * (sample.ndim - 1)))  # (B, 1, ..., 1)
        from ..training.flow_matching import add_noise  # here: training.flow_matching imports this module

        return add_noise(sample, noise, sigma)

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> SchedulerOutput | tuple[torch.Tensor]:
        """
        One Euler step: prev_sample = sample + (sigma_next - sigma) * model_output, computed in float32.

        Args:
            model_output (`torch.Tensor` of shape `(B, C, T, H, W)`): Predicted velocity v = noise - x0.
            timestep (`float` or one-element `torch.Tensor`): The current timestep, one of `self.timesteps`.
            sample (`torch.Tensor` of shape `(B, C, T, H, W)`): Current noisy latents x_t.
            generator (`torch.Generator`, *optional*): Unused (the step is deterministic); kept for diffusers' signature.
            return_dict (`bool`, defaults to `True`): Return a `SchedulerOutput` instead of a tuple.

        Returns:
            `SchedulerOutput` (or `(prev_sample,)`): `prev_sample` in `model_output`'s dtype.
        """
        is_integer_tensor = isinstance(timestep, torch.Tensor) and not timestep.is_floating_point()
        if isinstance(timestep, int) or is_integer_tensor:
            raise ValueError(
                "`timestep` must be one of `scheduler.timesteps` (float), not an integer index such as the one from "
                f"`enumerate(timesteps)`; got {timestep}"
            )
        if isinstance(timestep, torch.Tensor) and timestep.numel() != 1:
            raise ValueError(f"`timestep` must be a number or a one-element tensor, got shape {tuple(timestep.shape)}")
        if self.step_index is None:
            self._init_step_index(timestep)

        sigma = self.sigmas[self.step_index]
        sigma_next = self.sigmas[self.step_index + 1]
        # fp32: near sigma = 0 the steps are smaller than a bf16 latent's resolution.
        prev_sample = sample.to(torch.float32) + (sigma_next - sigma) * model_output.to(torch.float32)
        prev_sample = prev_sample.to(model_output.dtype)
        self._step_index += 1

        if not return_dict:
            return (prev_sample,)
        return SchedulerOutput(prev_sample=prev_sample)
