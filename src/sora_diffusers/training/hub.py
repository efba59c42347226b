"""Uploading a training run's result to the Hugging Face Hub: the repo is created before training (so a bad login
fails at once, not after hours) and the output folder is uploaded at the end, without checkpoints and logs."""

import argparse

from accelerate.logging import get_logger

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
            ignore_patterns=[f"{CHECKPOINT_PREFIX}*", f".{CHECKPOINT_PREFIX}*", "logs/*"],
        )
    except Exception as error:
        logger.error(
            f"Upload to {repo_id} failed ({type(error).__name__}: {error}); the model is in {args.output_dir}."
        )
