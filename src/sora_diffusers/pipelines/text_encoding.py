"""`SoraTextEncodingMixin`: prompts -> text hidden states and padding masks, for `SoraPipeline`."""

import torch
from diffusers.utils import logging

from .text_encoder_package import TEXT_COMPONENTS


logger = logging.get_logger(__name__)

# Upper bound on text tokens when the tokenizer reports no usable `model_max_length` (UMT5's context, as Wan uses).
DEFAULT_MAX_SEQUENCE_LENGTH = 512


class SoraTextEncodingMixin:
    """`encode_prompt` (diffusers' name and return order) over the pipeline's `tokenizer` and `text_encoder`."""

    def _encode_text(
        self, prompt: list[str], max_sequence_length: int, device: torch.device, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokenise (pad to the longest prompt, truncate with a warning) and encode; returns (B, L, D) and mask (B, L)."""
        inputs = self.tokenizer(
            prompt,
            padding="longest",
            max_length=max_sequence_length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        full_length = self.tokenizer(prompt, padding="longest", return_tensors="pt").input_ids.shape[-1]
        if full_length > inputs.input_ids.shape[-1]:
            logger.warning(
                f"A prompt is longer than `max_sequence_length`={max_sequence_length} tokens and was truncated "
                f"({full_length} tokens)."
            )
        mask = inputs.attention_mask.to(device)
        hidden = self.text_encoder(inputs.input_ids.to(device), attention_mask=mask).last_hidden_state
        # zeros at padded tokens (as Wan's encode_prompt): a prompt's embeddings do not depend on its batch mates,
        # and `_pad_tokens` pads with zeros too
        hidden = hidden * mask.unsqueeze(-1).to(hidden.dtype)
        return hidden.to(dtype), mask

    def encode_prompt(
        self,
        prompt: str | list[str],
        negative_prompt: str | list[str] | None = None,
        do_classifier_free_guidance: bool = True,
        num_videos_per_prompt: int = 1,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        prompt_attention_mask: torch.Tensor | None = None,
        negative_prompt_attention_mask: torch.Tensor | None = None,
        max_sequence_length: int | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Text hidden states and padding masks for the prompts (and the negative prompts under guidance).

        Returns:
            prompt_embeds (B*n, L, D), prompt_attention_mask (B*n, L), and the same two for the negative prompts
            (padded to the same L) or `None` without guidance.
        """
        needs_encoder = prompt_embeds is None or (do_classifier_free_guidance and negative_prompt_embeds is None)
        if needs_encoder and (self.text_encoder is None or self.tokenizer is None):
            missing = " and ".join(f"`{name}`" for name in TEXT_COMPONENTS if getattr(self, name) is None)
            raise ValueError(
                f"This pipeline has no {missing} (None), so it cannot encode "
                f"{'`prompt`' if prompt_embeds is None else 'the negative prompt for guidance'}. Pass `prompt_embeds` "
                "(and `negative_prompt_embeds` when `guidance_scale` > 1), or a `text_encoder` and `tokenizer` "
                "(`SoraPipeline.from_pretrained(path, text_encoder=..., tokenizer=...)`)."
            )
        device = device or self._execution_device
        dtype = dtype or (self.text_encoder.dtype if self.text_encoder is not None else self.transformer.dtype)
        if max_sequence_length is None:  # not `or`: 0 is an error (`check_inputs`), not the default
            max_sequence_length = _tokenizer_max_length(self.tokenizer)
        if prompt_embeds is None:
            prompt = [prompt] if isinstance(prompt, str) else list(prompt)
            prompt_embeds, prompt_attention_mask = self._encode_text(prompt, max_sequence_length, device, dtype)
        elif prompt_attention_mask is None:
            prompt_attention_mask = torch.ones(prompt_embeds.shape[:2], dtype=torch.long, device=device)
        batch_size = prompt_embeds.shape[0]

        if do_classifier_free_guidance and negative_prompt_embeds is None:
            negative_prompt = negative_prompt or ""
            negative_prompt = batch_size * [negative_prompt] if isinstance(negative_prompt, str) else negative_prompt
            negative_prompt_embeds, negative_prompt_attention_mask = self._encode_text(
                list(negative_prompt), max_sequence_length, device, dtype
            )
        elif do_classifier_free_guidance and negative_prompt_attention_mask is None:
            negative_prompt_attention_mask = torch.ones(
                negative_prompt_embeds.shape[:2], dtype=torch.long, device=device
            )

        if negative_prompt_embeds is not None:
            length = max(prompt_embeds.shape[1], negative_prompt_embeds.shape[1])
            prompt_embeds, prompt_attention_mask = _pad_tokens(prompt_embeds, prompt_attention_mask, length)
            negative_prompt_embeds, negative_prompt_attention_mask = _pad_tokens(
                negative_prompt_embeds, negative_prompt_attention_mask, length
            )
            negative_prompt_embeds = negative_prompt_embeds.repeat_interleave(num_videos_per_prompt, dim=0)
            negative_prompt_attention_mask = negative_prompt_attention_mask.repeat_interleave(num_videos_per_prompt, 0)
        prompt_embeds = prompt_embeds.repeat_interleave(num_videos_per_prompt, dim=0)
        prompt_attention_mask = prompt_attention_mask.repeat_interleave(num_videos_per_prompt, dim=0)
        return prompt_embeds, prompt_attention_mask, negative_prompt_embeds, negative_prompt_attention_mask


def _tokenizer_max_length(tokenizer) -> int:
    length = getattr(tokenizer, "model_max_length", None)
    return length if isinstance(length, int) and 0 < length <= 100_000 else DEFAULT_MAX_SEQUENCE_LENGTH


def _pad_tokens(embeds: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad (B, L, D) embeddings and their (B, L) mask to `length` tokens."""
    pad = length - embeds.shape[1]
    if pad <= 0:
        return embeds, mask
    return torch.nn.functional.pad(embeds, (0, 0, 0, pad)), torch.nn.functional.pad(mask, (0, pad))
