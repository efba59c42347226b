"""`benchmarks/eval_text_encoder_words.py` on the packaged MiniLM (offline, seconds): caption words find themselves,
and the held-out words' figures are the ones model_card.md reports."""

import pytest

from sora_diffusers.data.captions import HELD_OUT_COLOR_WORDS

from .conftest import load_script


eval_text_encoder_words = load_script("benchmarks/eval_text_encoder_words.py")


@pytest.fixture
def report(one_torch_thread):
    return eval_text_encoder_words.main([])


def test_caption_words_are_nearest_themselves(one_torch_thread):
    embed = eval_text_encoder_words.SentenceEmbedder()
    colors = {c: c for c in HELD_OUT_COLOR_WORDS}
    assert eval_text_encoder_words.word_table(embed, colors, colors) == colors
    sentence = "a {} {} moves to the left on a black background"
    scores = eval_text_encoder_words.sentence_scores(embed, lambda c, s, d: sentence.format(c, s).replace("left", d))
    assert scores["color"] == scores["shape"] == 1.0


def test_held_out_words_as_reported(report):
    words, held_out = report["words"], report["sentences"]["held-out words"]
    assert [sum(k == v for k, v in words[a].items()) for a in ("color", "shape", "direction")] == [3, 2, 2]
    assert words["color"]["red"] == "orange" and words["shape"]["circle"] == "circle"
    assert held_out == pytest.approx({"color": 0.28, "shape": 0.62, "direction": 0.32, "all three": 0.05}, abs=0.005)
    assert report["sentences"]["captions' words"]["color"] == 1.0
