"""Optional safety hooks of the Sora pipelines: refuse a prompt before any generation, check the decoded frames.

    pipe.set_safety_hooks(
        prompt_filter=text_classifier,  # a callable, a transformers text-classification pipeline or model
        blocked_prompt_labels={"toxic"},
        frame_classifier=image_classifier,  # a callable, a transformers image-classification pipeline or model
        blocked_frame_labels={"nsfw"},
        on_flagged="blank",  # or "raise"
    )

A callable hook returns a falsy value (`False`, `None`, "") to let the prompt or video through, and `True` or a
string (the reason) to flag it. A frame classifier callable gets one video as a (T, H, W, 3) float32 array in [0, 1]
and may also return one such value per frame (a list or array of length T) to flag frames one by one. A classifier
model flags when the probability of a label of `blocked_*_labels` reaches `threshold`.
"""

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from diffusers.utils import logging


logger = logging.get_logger(__name__)

ON_FLAGGED = ("raise", "blank")


class SafetyCheckError(ValueError):
    """A safety hook refused the request or its output (a `ValueError`: what was asked for is not allowed)."""


class PromptRefusedError(SafetyCheckError):
    """The `prompt_filter` refused a prompt; raised before any model work."""

    def __init__(self, prompt_index: int, reason: str):
        self.prompt_index, self.reason = prompt_index, reason
        super().__init__(f"Prompt {prompt_index} was refused by the pipeline's `prompt_filter`: {reason}")


class FramesFlaggedError(SafetyCheckError):
    """The `frame_classifier` flagged generated frames and `on_flagged="raise"`."""

    def __init__(self, video_index: int, frames: list[int], reason: str):
        self.video_index, self.frames, self.reason = video_index, frames, reason
        super().__init__(
            f"Video {video_index} was flagged by the pipeline's `frame_classifier` (frames {frames}): {reason}. "
            'Nothing is returned; `set_safety_hooks(on_flagged="blank")` returns it with those frames black instead.'
        )


class SafetyHooksMixin:
    r"""
    `set_safety_hooks` for a pipeline, and the two checks its `__call__` runs: `_check_prompt_safety` right after
    the input checks, `_check_frame_safety` right after decoding. Without hooks (the default) both do nothing.
    """

    _prompt_filter: Callable[[str], Any] | None = None
    _frame_classifier: Callable[[np.ndarray], Any] | None = None
    _on_flagged: str = "raise"

    def set_safety_hooks(
        self,
        prompt_filter: Any = None,
        frame_classifier: Any = None,
        on_flagged: str = "raise",
        blocked_prompt_labels: Iterable[str] | None = None,
        blocked_frame_labels: Iterable[str] | None = None,
        threshold: float = 0.5,
        prompt_filter_tokenizer: Any = None,
        frame_classifier_processor: Any = None,
    ) -> None:
        r"""
        Set (or, with `None`, remove) the pipeline's safety hooks; they apply to every later call.

        Args:
            prompt_filter (*optional*): checks each prompt before any generation; a flagged prompt raises
                `PromptRefusedError` (a `ValueError`). A callable `str -> bool | str` (truthy: refuse, a string is
                the reason), a transformers text-classification `Pipeline`, or a sequence-classification
                `PreTrainedModel` (tokenized with `prompt_filter_tokenizer`, default: the pipeline's tokenizer).
            frame_classifier (*optional*): checks the decoded frames of each video. A callable on one video
                ((T, H, W, 3) float32 in [0, 1]) returning `bool | str` for the video or one per frame, a
                transformers image-classification `Pipeline`, or an image-classification `PreTrainedModel` (frames
                prepared by `frame_classifier_processor`, default: resized to the model's `image_size` and
                normalised with mean 0.5, std 0.5, as ViT's processor does).
            on_flagged (`str`, defaults to `"raise"`): what flagged frames do: `"raise"` a `FramesFlaggedError`, or
                `"blank"` them (black frames, a warning is logged) and return the rest.
            blocked_prompt_labels, blocked_frame_labels (`Iterable[str]`): the labels of a classifier model or
                pipeline that flag; needed with one.
            threshold (`float`, defaults to 0.5): the probability of a blocked label from which it flags.
        """
        if on_flagged not in ON_FLAGGED:
            raise ValueError(f"`on_flagged` must be one of {ON_FLAGGED}, got {on_flagged!r}.")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"`threshold` must be a probability in [0, 1], got {threshold}.")
        self._prompt_filter = None
        if prompt_filter is not None:
            tokenizer = prompt_filter_tokenizer or getattr(self, "tokenizer", None)
            self._prompt_filter = _as_hook(
                prompt_filter, "prompt_filter", blocked_prompt_labels, threshold, "text", tokenizer
            )
        self._frame_classifier = None
        if frame_classifier is not None:
            self._frame_classifier = _as_hook(
                frame_classifier, "frame_classifier", blocked_frame_labels, threshold, "image",
                frame_classifier_processor,
            )  # fmt: skip
        self._on_flagged = on_flagged

    def _check_prompt_safety(self, prompt: str | list[str] | None) -> None:
        if self._prompt_filter is None:
            return
        if prompt is None:
            logger.warning("The `prompt_filter` cannot check `prompt_embeds`: only text prompts are filtered.")
            return
        for index, text in enumerate([prompt] if isinstance(prompt, str) else prompt):
            verdict = self._prompt_filter(text)
            if verdict:
                raise PromptRefusedError(index, verdict if isinstance(verdict, str) else "flagged")

    def _check_frame_safety(self, video: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) pixels in [-1, 1] -> the same, with flagged frames black (or `FramesFlaggedError`)."""
        if self._frame_classifier is None:
            return video
        num_frames = video.shape[2]
        for index in range(video.shape[0]):
            frames = ((video[index].permute(1, 2, 3, 0).float().cpu().numpy() + 1) / 2).clip(0, 1)  # (T, H, W, 3)
            flagged, reason = _per_frame(self._frame_classifier(frames), num_frames)
            if not flagged:
                continue
            if self._on_flagged == "raise":
                raise FramesFlaggedError(index, flagged, reason)
            logger.warning(f"Video {index}: frames {flagged} flagged by the `frame_classifier` ({reason}); blanked.")
            video[index, :, flagged] = -1.0  # black (the decoded tensor is the pipeline's own: changed in place)
        return video


def _per_frame(verdict: Any, num_frames: int) -> tuple[list[int], str]:
    """A hook's answer -> (indices of flagged frames, reason)."""
    if isinstance(verdict, (list, tuple, np.ndarray, torch.Tensor)):
        verdicts = list(verdict)
        if len(verdicts) != num_frames:
            raise ValueError(
                f"The `frame_classifier` returned {len(verdicts)} verdicts for a video of {num_frames} frames; return "
                "one value for the video or one per frame."
            )
        flagged = [i for i, v in enumerate(verdicts) if bool(v)]
        reasons = sorted({v for v in verdicts if isinstance(v, str) and v})
        return flagged, "; ".join(reasons) or "flagged"
    if verdict:
        return list(range(num_frames)), verdict if isinstance(verdict, str) else "flagged"
    return [], ""


def _as_hook(
    hook: Any, name: str, blocked: Iterable[str] | None, threshold: float, modality: str, preprocessor: Any
) -> Callable[[Any], Any]:
    """A callable, a transformers pipeline or a transformers model -> a callable returning falsy or a reason."""
    from transformers import Pipeline, PreTrainedModel

    option = "blocked_prompt_labels" if modality == "text" else "blocked_frame_labels"
    if not isinstance(hook, (Pipeline, PreTrainedModel)):
        if not callable(hook):
            raise TypeError(
                f"`{name}` must be a callable, a transformers Pipeline or a PreTrainedModel, got {type(hook).__name__}."
            )
        if blocked is not None:
            raise ValueError(f"`{option}` applies to a classifier model or pipeline; `{name}` is a callable.")
        return hook
    blocked = set(blocked or ())
    if not blocked:
        raise ValueError(f"`{name}` is a classifier: pass `{option}`, the labels that flag.")
    labels = set(_labels(hook))
    if not blocked <= labels:
        raise ValueError(f"`{option}` {sorted(blocked - labels)} are not labels of `{name}` ({sorted(labels)}).")
    if modality == "text":
        if isinstance(hook, PreTrainedModel) and preprocessor is None:
            raise ValueError("`prompt_filter` is a model without a tokenizer: pass `prompt_filter_tokenizer`.")
        return _TextClassifierHook(hook, blocked, threshold, preprocessor)
    return _ImageClassifierHook(hook, blocked, threshold, preprocessor)


def _labels(hook: Any) -> list[str]:
    model = getattr(hook, "model", hook)
    return list(model.config.id2label.values())


def _flag(scores: dict[str, float], blocked: set[str], threshold: float) -> str | None:
    hits = {label: score for label, score in scores.items() if label in blocked and score >= threshold}
    if not hits:
        return None
    return ", ".join(f"{label!r} {score:.2f}" for label, score in sorted(hits.items()))


def _probabilities(model: Any, logits: torch.Tensor) -> torch.Tensor:
    if getattr(model.config, "problem_type", None) == "multi_label_classification":
        return logits.float().sigmoid()
    return logits.float().softmax(-1)


class _TextClassifierHook:
    def __init__(self, hook: Any, blocked: set[str], threshold: float, tokenizer: Any):
        self.hook, self.blocked, self.threshold, self.tokenizer = hook, blocked, threshold, tokenizer

    @torch.no_grad()
    def __call__(self, text: str) -> str | None:
        from transformers import Pipeline

        if isinstance(self.hook, Pipeline):
            scores = {entry["label"]: entry["score"] for entry in self.hook(text, top_k=None)}
        else:
            model = self.hook
            inputs = self.tokenizer(text, return_tensors="pt", truncation=True).to(model.device)
            probabilities = _probabilities(model, model(**inputs).logits)[0]
            scores = {model.config.id2label[i]: float(p) for i, p in enumerate(probabilities)}
        return _flag(scores, self.blocked, self.threshold)


class _ImageClassifierHook:
    def __init__(self, hook: Any, blocked: set[str], threshold: float, processor: Any):
        self.hook, self.blocked, self.threshold, self.processor = hook, blocked, threshold, processor

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> list[str | None]:
        """(T, H, W, 3) in [0, 1] -> one verdict per frame."""
        import PIL.Image
        from transformers import Pipeline

        if isinstance(self.hook, Pipeline):
            images = [PIL.Image.fromarray((frame * 255).round().astype(np.uint8)) for frame in frames]
            results = self.hook(images, top_k=None)
            return [
                _flag({e["label"]: e["score"] for e in result}, self.blocked, self.threshold) for result in results
            ]
        model = self.hook
        if self.processor is not None:
            pixels = self.processor(images=list(frames), do_rescale=False, return_tensors="pt")["pixel_values"]
        else:
            size = model.config.image_size
            pixels = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, 3, H, W)
            pixels = torch.nn.functional.interpolate(pixels, size=(size, size), mode="bilinear", antialias=True)
            pixels = (pixels - 0.5) / 0.5
        probabilities = _probabilities(model, model(pixel_values=pixels.to(model.device, model.dtype)).logits)
        return [
            _flag({model.config.id2label[i]: float(p) for i, p in enumerate(row)}, self.blocked, self.threshold)
            for row in probabilities
        ]
