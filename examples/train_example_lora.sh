#!/usr/bin/env bash
# The worked LoRA example: teach the embedded default model a motion it cannot draw, the zig-zag ("a red circle
# zig-zags to the right"), from 200 clips on a CPU; the exact commands behind examples/assets/lora/zigzag and its
# figures in examples/README.md ("The worked example: a zig-zag LoRA"). A LoRA belongs to its base model: when the
# default model is replaced, run this again (all stages) and ship the new file. The data and train stages resume or
# skip what is done when run again (same RUNS); install, eval and card write their files anew.
#
#   bash examples/train_example_lora.sh                   # data, train, install, eval, card
#   STAGES="eval card" bash examples/train_example_lora.sh   # only some stages
#
# Stages: data (examples/make_zigzag_dataset.py: 160 zig-zag clips + 40 of the default world, 33 x 256 px),
# train (examples/train_lora.py on the embedded model, latents and prompts cached once), install (the LoRA file in
# float16 into examples/assets/lora/zigzag), eval (benchmarks/eval_default_model.py on 24 held-out zig-zag scenes and
# the 24 canonical text-to-video scenes, with and without the LoRA, at the pipeline's defaults: 50 steps, guidance 5),
# card (the LoRA's model card, README.md beside it, with the training run's steps and the eval stage's figures).
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS=${RUNS:-../runs/lora_zigzag}  # data, caches, checkpoints and evaluations stay outside the work tree
TRAIN_DIR=${TRAIN_DIR:-train}  # the training run's folder in RUNS: a new name starts a new run, the same name resumes
STAGES=${STAGES:-"data train install eval card"}
# Training rounds, PEAK:END each: lr 1e-3 constant to step PEAK, then linear to 0 at step END; a round goes on from the
# last one's final step. The shipped LoRA: the first round read 0.71 of the held-out zig-zags, the second 0.83.
ROUNDS=${ROUNDS:-"4000:5000 6500:7500"}
LORA=examples/assets/lora/zigzag
# 1 torch thread: on a CPU shared with other jobs two threads spin-wait on each other and a step takes twice as long
# (examples/README.md, "Speed"); give THREADS=2 on an idle 2-core machine.
THREADS=(--torch_threads "${THREADS:-1}")

for stage in $STAGES; do
  case "$stage" in
    data)
      [ -f "$RUNS/data/metadata.jsonl" ] || python examples/make_zigzag_dataset.py --output_dir "$RUNS/data" \
        --num_zigzag 160 --num_base 40 --resolution 256 --num_frames 33 --seed 1
      ;;
    train)
      # Rank 32 on the attention projections (to_q, to_k, to_v, to_out.0 of self- and cross-attention) and the FFN
      # linears of all 6 blocks: 1.28 M parameters. Training sigmas shifted by 3 as the base model's were (motion is
      # laid out at high noise). Frame conditioning as train_text_to_video.py's, with more unconditioned samples
      # (0.7 against its 0.4: the zig-zag must be drawn from the prompt alone), so image-to-video and extension keep
      # working. Each round has two phases: the lr constant at 1e-3 (after 50 warm-up steps at the start of the run) to
      # step PEAK, then a cooldown, linear to 0 at step END (the lr schedule is rebuilt from the flags on resume).
      LORA_ARGS=(--data_dir "$RUNS/data" --output_dir "$RUNS/$TRAIN_DIR" --seed 0
        --resolution 256 --resolution_multiple 32 --num_frames 33 --aspect_ratios landscape portrait square
        --rank 32 --train_ffn --condition_probs 0.7 0.15 0.1 0.05 0
        --train_batch_size 8 --learning_rate 1e-3 --shift 3.0
        --cache_latents "$RUNS/cache" --cache_prompt_embeds
        --checkpointing_steps 100 --checkpoints_total_limit 2 --resume_from_checkpoint latest --logging_steps 20
        --validation_steps 0 --validation_height 256 --validation_width 256 --validation_num_frames 33
        --validation_prompts "a red circle zig-zags to the right on a black background"
        "a red circle moves to the right on a black background"
        --dataloader_num_workers 1 "${THREADS[@]}")
      for round in $ROUNDS; do
        PEAK=${round%:*} END=${round#*:}
        last=$(ls -d "$RUNS/$TRAIN_DIR"/checkpoint-* 2>/dev/null | sed 's/.*checkpoint-//' | sort -n | tail -1 || true)
        [ "${last:-0}" -ge "$END" ] && continue  # a round that is done (its final model is written) is not rerun
        python examples/train_lora.py "${LORA_ARGS[@]}" --lr_scheduler constant_with_warmup --lr_warmup_steps 50 \
          --max_train_steps "$END" --stop_at_step "$PEAK"
        python examples/train_lora.py "${LORA_ARGS[@]}" --lr_scheduler linear --lr_warmup_steps "$PEAK" \
          --max_train_steps "$END"
      done
      ;;
    install)
      # Stored in float16 (half the bytes; the LoRA's update to the float32 model moves by ~1e-3 of itself).
      mkdir -p "$LORA"
      python - "$RUNS/$TRAIN_DIR/pytorch_lora_weights.safetensors" "$LORA/pytorch_lora_weights.safetensors" <<'PY'
import sys
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from sora_diffusers.utils.atomic import atomic_path
source, target = sys.argv[1:]
with safe_open(source, "pt") as f:
    weights, metadata = {k: f.get_tensor(k).to(torch.float16) for k in f.keys()}, f.metadata()
with atomic_path(target) as temporary:
    save_file(weights, temporary, metadata)
PY
      ;;
    eval)
      for motions in zigzag directional; do
        python benchmarks/eval_default_model.py --tasks t2v --motions "$motions" --num_clips 24 --lora "$LORA" \
          --output_dir "$RUNS/eval_${motions}_lora" "${THREADS[@]}"
        python benchmarks/eval_default_model.py --tasks t2v --motions "$motions" --num_clips 24 \
          --output_dir "$RUNS/eval_${motions}_base" "${THREADS[@]}"
      done
      ;;
    card)
      # The LoRA's model card (README.md beside it), from the training metrics and the eval stage's results.
      python - "$RUNS" "$TRAIN_DIR" "$LORA" "$ROUNDS" <<'PY'
import json
import sys
from pathlib import Path
from sora_diffusers.training.cards import create_model_card
from sora_diffusers.utils.atomic import write_text
runs, train_dir, lora, rounds = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
records = [json.loads(line) for line in (runs / train_dir / "metrics.jsonl").read_text().splitlines() if line]
steps = [r["step"] for r in records]
seconds = sum((b - a) / r["steps_per_s"] for a, b, r in zip([0, *steps], steps, records))
def scores(motions, which):
    return json.loads((runs / f"eval_{motions}_{which}" / "results.json").read_text())["tasks"]["t2v"]["metrics"]
results = {}
for motions, metric, name in (
    ("zigzag", "motion_accuracy", "held-out zig-zag prompts: zig-zag the prompted way"),
    ("zigzag", "color_accuracy", "held-out zig-zag prompts: colour right"),
    ("directional", "color_accuracy", "text-to-video (compass directions): colour right"),
    ("directional", "motion_accuracy", "text-to-video (compass directions): direction right"),
    ("directional", "prompt_adherence_lenient", "text-to-video: colour, shape (lenient) and direction right"),
    ("directional", "permanence", "text-to-video: object permanence"),
):
    base, with_lora = scores(motions, "base")[metric], scores(motions, "lora")[metric]
    results[f"{name}, base / with the LoRA"] = f"{base:.2f} / {with_lora:.2f}"
card = create_model_card(
    "A LoRA that teaches the embedded default model of sora_diffusers (v1.6) a motion it never learned: the zig-zag, "
    "\"a red circle zig-zags to the right\". Rank 32 on every attention projection and FFN linear of its 6 blocks "
    "(1.28 M parameters), stored in float16. It is the worked example of examples/README.md (\"The worked example: "
    f"a zig-zag LoRA\"). Trained in rounds {rounds} (PEAK:END each: lr 1e-3 constant to step PEAK, then linear to 0 "
    "at step END).",
    model_class="LoRA",
    model_name="Zig-zag LoRA for the sora_diffusers default model",
    training_command="bash examples/train_example_lora.sh",
    hardware="CPU (2 threads)",
    train_steps=steps[-1],
    training_time=f"{seconds / 3600:.1f} h of training steps (latents and prompts cached first)",
    dataset_description="200 clips of the shapes world (`sora_diffusers.data`), 33 frames at 256 px in three aspect "
    "ratios: 160 of the zig-zag motion (`ZIGZAG_MOTIONS`: steady progress one way while the object swings sideways in "
    "legs of 8 frames, the first leg to the left of the travel) and 40 of the default world, so the base model's "
    "motions stay. Made by `examples/make_zigzag_dataset.py`.",
    eval_results=results,
    eval_command="benchmarks/eval_default_model.py --tasks t2v --motions {zigzag,directional} --num_clips 24 "
    "[--lora examples/assets/lora/zigzag] (24 held-out scenes each; 50 steps, guidance 5)",
    example_prompt="a red circle zig-zags to the right on a black background",
    limitations="It belongs to the embedded default model v1.6: on another base model it loads (same architecture) but "
    "means nothing. Shapes are only as crisp as that model draws them: the strict shape reader passes none of its "
    "clips, with or without the LoRA.",
    tags=["lora"],
)
write_text(lora / "README.md", str(card))
print(f"{lora / 'README.md'}: {results}")
PY
      ;;
    *) echo "unknown stage '$stage' (data, train, install, eval, card)" >&2; exit 2 ;;
  esac
done
