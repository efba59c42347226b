"""Uploading a training run's result to the Hugging Face Hub: the repo is created before training (so a bad login
fails at once, not after hours), a model card (`README.md`: what was trained, how to load it, the flags, the last
metrics, the validation samples) is written into the output folder, and the folder is uploaded without checkpoints
and logs."""

import argparse
import os
import sys
from pathlib import Path

from accelerate.logging import get_logger

from ..utils.atomic import atomic_path
from .checkpoints import CHECKPOINT_PREFIX


logger = get_logger(__name__)


def create_hub_repo(args: argparse.Namespace) -> str | None:
    """Create the `--hub_model_id` repo before training, so a bad login or no network fails now, not after hours."""
    if not args.push_to_hub:
        return None
    if not args.hub_model_id:
        raise SystemExit("--push_to_hub needs --hub_model_id (e.g. your-name/sora-shapes).")
    from huggingface_hub import create_repo

    try:
        return create_repo(args.hub_model_id, exist_ok=True).repo_id
    except Exception as error:  # offline, not logged in, no permission: all end the same way
        raise SystemExit(
            f"--push_to_hub: cannot create the Hub repo {args.hub_model_id!r} ({type(error).__name__}: {error}). "
            "Check the network and `hf auth login`, or run without --push_to_hub and upload the output folder later."
        ) from None


def upload_to_hub(args: argparse.Namespace, repo_id: str | None) -> None:
    """Upload `--output_dir` (checkpoints and logs left out) to `repo_id`; a failure is logged, the run still ends."""
    if repo_id is None:
        return
    from huggingface_hub import upload_folder

    try:
        upload_folder(
            repo_id=repo_id,
            folder_path=args.output_dir,
            commit_message="End of training",
            # checkpoints, logs, and temporaries a killed write left (`utils.atomic`: `.NAME.tmp-PID-...`)
            ignore_patterns=[f"{CHECKPOINT_PREFIX}*", f".{CHECKPOINT_PREFIX}*", "logs/*", ".*.tmp-*", ".*.old-*"],
        )
    except Exception as error:
        logger.error(
            f"Upload to {repo_id} failed ({type(error).__name__}: {error}); the model is in {args.output_dir}."
        )


def save_model_card(
    args: argparse.Namespace,
    repo_id: str,
    description: str,
    model_class: str = "SoraPipeline",
    pipeline_tag: str | None = "text-to-video",
    tags: tuple[str, ...] = (),
    last_record: dict | None = None,
    hardware: str = "cpu",
) -> Path:
    """Write `--output_dir/README.md`, the model card the Hub shows, from `cards.create_model_card` (the one card
    template): metadata (license, library, pipeline tag, tags, base model), `description`, how to load it, the data,
    the command (local paths reduced to their names), hardware and steps, the last metrics as its evaluation, then every
    flag of the run and its validation samples."""
    from .cards import create_model_card

    output_dir = Path(args.output_dir)
    pretrained = [getattr(args, k, None) for k in ("pretrained_model", "pretrained_vae", "pretrained_transformer")]
    base_model = next((p for p in pretrained if p and not os.path.exists(p)), None)  # a Hub id, not a local folder
    flags = {k: v for k, v in sorted(vars(args).items()) if k not in ("output_dir", "push_to_hub", "hub_model_id")}
    data_dir = getattr(args, "data_dir", None)
    dataset = (
        f"A folder of captioned videos (`{_shown(data_dir)}`)."
        if data_dir
        else "The procedural shapes world of `sora_diffusers.data`: coloured circles, squares and triangles that move, "
        "on plain or gradient backgrounds, some behind a grey bar, captioned by the generator."
    )
    step = last_record.get("step", 0) if last_record else 0
    metrics = {k: f"{v:.4g}" for k, v in (last_record or {}).items() if k != "step" and isinstance(v, (int, float))}
    card = create_model_card(
        description,
        training_command=["python", Path(sys.argv[0]).name, *(_shown(a) for a in sys.argv[1:])],
        hardware=hardware,
        train_steps=int(step),
        dataset_description=dataset,
        base_model=base_model,
        eval_results={f"{name} (training, step {step})": value for name, value in metrics.items()} or None,
        repo_id=repo_id,
        model_class=model_class,
        tags=["diffusers-training", *tags],
        pipeline_tag=pipeline_tag,
    )
    lines = ["", "## Training flags", "", "| flag | value |", "| --- | --- |"]
    lines += [f"| `--{k}` | `{_shown(v)}` |" for k, v in flags.items()]
    samples = sorted(
        p.relative_to(output_dir).as_posix() for p in (output_dir / "validation").glob("*") if p.is_file()
    )
    if samples:
        lines += ["", "## Validation samples", "", *[f"- [{name}]({name})" for name in samples[-8:]]]
    card.text = card.text.rstrip("\n") + "\n" + "\n".join(lines) + "\n"
    path = output_dir / "README.md"
    with atomic_path(path) as temporary:
        card.save(temporary)
    return path


def _shown(value):
    """A flag value as a card may show it: absolute local paths reduced to their last part (no local layout leaks)."""
    if isinstance(value, str) and os.path.isabs(value):
        return Path(value).name
    return value
