"""`set_safety_hooks`: a prompt filter refuses before any model work; a frame classifier raises or blanks frames."""

import numpy as np
import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, ViTConfig, ViTForImageClassification
from transformers import pipeline as transformers_pipeline

from sora_diffusers.pipelines import FramesFlaggedError, PromptRefusedError

from .conftest import HEIGHT, WIDTH, seed


NUM_FRAMES = 5
CALL = dict(num_frames=NUM_FRAMES, num_inference_steps=2, output_type="np")


def _biased(model: torch.nn.Module, logits: list[float]) -> torch.nn.Module:
    """Zero the classifier head's weights and set its bias: the model then answers `logits` for any input."""
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor(logits))
    return model.eval()


def tiny_text_classifier(vocab_size: int, unsafe: bool) -> BertForSequenceClassification:
    config = BertConfig(
        vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        id2label={0: "safe", 1: "unsafe"}, label2id={"safe": 0, "unsafe": 1},
    )  # fmt: skip
    return _biased(BertForSequenceClassification(config), [0.0, 6.0] if unsafe else [6.0, 0.0])


def tiny_image_classifier(unsafe: bool) -> ViTForImageClassification:
    config = ViTConfig(
        image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        id2label={0: "safe", 1: "nsfw"}, label2id={"safe": 0, "nsfw": 1},
    )  # fmt: skip
    return _biased(ViTForImageClassification(config), [0.0, 6.0] if unsafe else [6.0, 0.0])


def _count_text_encoder_calls(pipe) -> list[int]:
    calls = []
    pipe.text_encoder.register_forward_pre_hook(lambda *_: calls.append(1))
    return calls


# ---- prompt filter --------------------------------------------------------------------------------------------------


def test_callable_prompt_filter_refuses_before_any_model_work(make_pipe, fresh_components):
    pipe = make_pipe(text_encoder=fresh_components["text_encoder"])
    pipe.set_safety_hooks(prompt_filter=lambda prompt: "names a forbidden colour" if "purple" in prompt else False)
    calls = _count_text_encoder_calls(pipe)

    with pytest.raises(PromptRefusedError, match="Prompt 1 was refused .*: names a forbidden colour") as error:
        pipe(["a red circle", "a purple square"], generator=seed(), **CALL)
    assert isinstance(error.value, ValueError) and error.value.prompt_index == 1
    assert calls == []  # refused before the text encoder ran

    frames = pipe("a red circle", generator=seed(), **CALL).frames
    assert frames.shape == (1, NUM_FRAMES, HEIGHT, WIDTH, 3) and len(calls) > 0


@pytest.mark.parametrize("as_transformers_pipeline", [False, True])
def test_text_classifier_prompt_filter(make_pipe, components, as_transformers_pipeline):
    tokenizer = components["tokenizer"]
    for unsafe in (True, False):
        classifier = tiny_text_classifier(tokenizer.vocab_size, unsafe)
        if as_transformers_pipeline:
            classifier = transformers_pipeline("text-classification", model=classifier, tokenizer=tokenizer)
        pipe = make_pipe()
        pipe.set_safety_hooks(prompt_filter=classifier, blocked_prompt_labels={"unsafe"})
        if unsafe:
            with pytest.raises(PromptRefusedError, match=r"'unsafe' 1\.00"):
                pipe("a red circle", generator=seed(), **CALL)
        else:
            assert pipe("a red circle", generator=seed(), **CALL).frames.shape[1] == NUM_FRAMES


def test_hook_arguments_are_checked(make_pipe, components):
    pipe = make_pipe()
    classifier = tiny_text_classifier(components["tokenizer"].vocab_size, unsafe=True)
    with pytest.raises(ValueError, match="pass `blocked_prompt_labels`"):
        pipe.set_safety_hooks(prompt_filter=classifier)
    with pytest.raises(ValueError, match=r"\['toxic'\] are not labels of `prompt_filter` \(\['safe', 'unsafe'\]\)"):
        pipe.set_safety_hooks(prompt_filter=classifier, blocked_prompt_labels={"toxic"})
    with pytest.raises(ValueError, match="`on_flagged` must be one of \\('raise', 'blank'\\), got 'drop'"):
        pipe.set_safety_hooks(frame_classifier=lambda frames: False, on_flagged="drop")
    with pytest.raises(TypeError, match="`frame_classifier` must be a callable"):
        pipe.set_safety_hooks(frame_classifier="nsfw-detector")


# ---- frame classifier -----------------------------------------------------------------------------------------------


def test_frame_classifier_raises_or_blanks_flagged_frames(make_pipe):
    pipe = make_pipe()
    reference = pipe("a red circle", generator=seed(), **CALL).frames[0]
    seen = []

    def second_frame_is_bad(frames: np.ndarray) -> list:
        seen.append(frames)
        return [index == 1 and "frame looks wrong" for index in range(len(frames))]

    pipe.set_safety_hooks(frame_classifier=second_frame_is_bad)
    with pytest.raises(FramesFlaggedError, match=r"Video 0 .* \(frames \[1\]\): frame looks wrong"):
        pipe("a red circle", generator=seed(), **CALL)
    assert seen[0].shape == (NUM_FRAMES, HEIGHT, WIDTH, 3) and seen[0].dtype == np.float32
    np.testing.assert_allclose(seen[0], reference, atol=1e-5)  # the hook sees the frames the caller would get

    pipe.set_safety_hooks(frame_classifier=second_frame_is_bad, on_flagged="blank")
    blanked = pipe("a red circle", generator=seed(), **CALL).frames[0]
    assert np.all(blanked[1] == 0)  # black
    np.testing.assert_allclose(blanked[[0, 2, 3, 4]], reference[[0, 2, 3, 4]], atol=1e-6)

    pipe.set_safety_hooks()  # removed
    np.testing.assert_allclose(pipe("a red circle", generator=seed(), **CALL).frames[0], reference, atol=1e-6)


@pytest.mark.parametrize("as_transformers_pipeline", [False, True])
def test_image_classifier_frame_check(make_pipe, as_transformers_pipeline):
    from transformers import ViTImageProcessor

    for unsafe in (True, False):
        classifier = tiny_image_classifier(unsafe)
        if as_transformers_pipeline:
            processor = ViTImageProcessor(size={"height": 16, "width": 16})
            classifier = transformers_pipeline("image-classification", model=classifier, image_processor=processor)
        pipe = make_pipe()
        pipe.set_safety_hooks(frame_classifier=classifier, blocked_frame_labels={"nsfw"}, on_flagged="blank")
        frames = pipe("a red circle", generator=seed(), **CALL).frames[0]
        if unsafe:
            assert np.all(frames == 0)  # every frame flagged: all black
        else:
            assert frames.std() > 0.01  # untouched: a generated (random-model) video is not flat
