"""Held-out prompts use no word of the training captions (but the background phrase and function words)."""

import re

import numpy as np

from sora_diffusers.data import caption_clip, sample_clip_spec
from sora_diffusers.data.captions import (
    HELD_OUT_COLOR_WORDS,
    HELD_OUT_MOTION_PHRASES,
    HELD_OUT_SHAPE_WORDS,
    held_out_caption,
)
from sora_diffusers.data.shapes import ALL_MOTIONS, COLORS, SHAPES, ZIGZAG_MOTIONS


FUNCTION_WORDS = {"a", "an", "the", "on", "its", "off", "each"}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z-]+", text.lower()))


def test_held_out_words_never_appear_in_captions():
    caption_words = set()
    for seed in range(400):
        rng = np.random.default_rng(seed)
        caption_words |= _words(caption_clip(sample_clip_spec(rng, 64, 64, 17), rng))
    for seed in range(100):  # the opt-in zig-zags' captions too
        rng = np.random.default_rng(seed)
        caption_words |= _words(caption_clip(sample_clip_spec(rng, 64, 64, 33, motions=ZIGZAG_MOTIONS), rng))
    sampled = {"red", "circle", "moves", "right", "disc", "ball", "zig-zags", "zigzag"}
    assert sampled <= caption_words  # the vocabulary was sampled
    held_out = set().union(
        *(_words(phrase) for table in (HELD_OUT_COLOR_WORDS, HELD_OUT_SHAPE_WORDS, HELD_OUT_MOTION_PHRASES)
          for phrase in table.values())
    )  # fmt: skip
    assert held_out & caption_words <= FUNCTION_WORDS, held_out & caption_words - FUNCTION_WORDS


def test_every_label_has_a_held_out_phrasing():
    assert set(HELD_OUT_COLOR_WORDS) == set(COLORS) and set(HELD_OUT_SHAPE_WORDS) == set(SHAPES)
    assert set(HELD_OUT_MOTION_PHRASES) == set(ALL_MOTIONS)
    assert held_out_caption("red", "circle", "right") == "a scarlet orb heads east on a black background"
    assert held_out_caption("orange", "triangle", "up").startswith("a tangerine wedge climbs")
