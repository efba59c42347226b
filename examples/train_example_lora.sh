#!/usr/bin/env bash
# The worked LoRA example: teach the embedded default model a motion it cannot draw, the zig-zag ("a red circle
# zig-zags to the right"), from 200 clips on a CPU; the exact commands behind examples/assets/lora/zigzag and its
# figures in benchmarks/RESULTS.md. A LoRA belongs to its base model: when the default model is replaced, run this
# again (all stages) and ship the new file. Every stage resumes or skips what is done when run again (same RUNS).
#
#   bash examples/train_example_lora.sh                   # data, train, install, eval
#   STAGES="eval" bash examples/train_example_lora.sh     # only some stages
#
# Stages: data (examples/make_zigzag_dataset.py: 160 zig-zag clips + 40 of the default world, 33 x 256 px),
# train (examples/train_lora.py on the embedded model, latents and prompts cached once), install (the LoRA file and
# its card into examples/assets/lora/zigzag), eval (benchmarks/eval_default_model.py on 24 held-out zig-zag scenes and
# the 24 canonical text-to-video scenes, with and without the LoRA, at the pipeline's defaults: 50 steps, guidance 5).
set -euo pipefail

cd "$(dirname "$0")/.."
RUNS=${RUNS:-../runs/lora_zigzag}  # data, caches, checkpoints and evaluations stay outside the work tree
TRAIN_DIR=${TRAIN_DIR:-train}  # the training run's folder in RUNS: a new name starts a new run, the same name resumes
STAGES=${STAGES:-"data train install eval"}
PEAK=${PEAK:-4000} END=${END:-5000}  # training steps: constant lr to PEAK, then linear to 0 at END
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
      # working. Two phases: the lr constant at 1e-3 after 50 warm-up steps to step PEAK, then a cooldown, linear to 0
      # at step END (the lr schedule is rebuilt from the flags on resume).
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
      python examples/train_lora.py "${LORA_ARGS[@]}" --lr_scheduler constant_with_warmup --lr_warmup_steps 50 \
        --max_train_steps "$END" --stop_at_step "$PEAK"
      python examples/train_lora.py "${LORA_ARGS[@]}" --lr_scheduler linear --lr_warmup_steps "$PEAK" \
        --max_train_steps "$END"
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
      cp "$RUNS/$TRAIN_DIR/README.md" "$LORA/"
      ;;
    eval)
      for motions in zigzag directional; do
        python benchmarks/eval_default_model.py --tasks t2v --motions "$motions" --num_clips 24 --lora "$LORA" \
          --output_dir "$RUNS/eval_${motions}_lora" "${THREADS[@]}"
        python benchmarks/eval_default_model.py --tasks t2v --motions "$motions" --num_clips 24 \
          --output_dir "$RUNS/eval_${motions}_base" "${THREADS[@]}"
      done
      ;;
    *) echo "unknown stage '$stage' (data, train, install, eval)" >&2; exit 2 ;;
  esac
done
