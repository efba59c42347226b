"""`sora_diffusers.training.Trainer` as a library: a script of a few lines trains any module on the bucketed shapes
world, stops at `--stop_at_step` with a checkpoint, and resumes to the very weights of an uninterrupted run."""

import pytest
import torch
from accelerate.state import AcceleratorState, GradientState
from safetensors.torch import load_file, save_file

from sora_diffusers.data import Bucket, write_dataset
from sora_diffusers.training import Trainer, build_dataset, build_parser, check_args, list_checkpoints


pytestmark = pytest.mark.usefixtures("one_torch_thread")

FLAGS = [
    "--resolution", "32", "--num_frames", "5", "--num_train_samples", "8", "--train_batch_size", "2",
    "--dataloader_num_workers", "0", "--logging_steps", "1", "--checkpointing_steps", "2", "--validation_steps", "0",
    "--learning_rate", "1e-2", "--lr_warmup_steps", "0", "--max_train_steps", "4",
]  # fmt: skip


def train(argv: list[str], global_draws: bool = False) -> dict:
    """The examples/README.md recipe: flags, a model, a step function. With `global_draws`, the script draws from
    torch's global generator between `prepare` and `train` (as a script building validation clips may) and its step
    noises from it too, instead of from the step's own stream."""
    args = build_parser("a tiny trainer").parse_args(argv)
    check_args(args)
    try:
        trainer = Trainer(args)
        torch.manual_seed(0)
        model = torch.nn.Conv3d(3, 3, 3, padding=1)
        dataset, bucket_ids = build_dataset(args, group_size=args.train_batch_size)
        prepared = trainer.prepare(model, dataset, bucket_ids)
        if global_draws:
            torch.rand(3)

        def step_fn(batch: dict, step: int) -> dict:
            rng = trainer.micro_batch_rng()
            generator = None if global_draws else torch.Generator().manual_seed(int(rng.integers(1e9)))
            noise = torch.randn(batch["video"].shape, generator=generator)
            return {"loss": (prepared(batch["video"] + 0.1 * noise) - batch["video"]).square().mean()}

        validated = []
        if trainer.train(step_fn, validated.append):
            trainer.save_final_model(
                lambda final: save_file(final.state_dict(), f"{args.output_dir}/model.safetensors")
            )
        return {**trainer.end(), "validated": validated}
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()


def test_a_few_line_trainer_stops_resumes_and_ends_on_the_uninterrupted_weights(tmp_path):
    straight = train([*FLAGS, "--output_dir", str(tmp_path / "straight")])
    assert straight["global_step"] == 4 and straight["validated"] == [4]
    assert [p.name for p in list_checkpoints(tmp_path / "straight")] == ["checkpoint-2", "checkpoint-4"]

    stopped = train([*FLAGS, "--output_dir", str(tmp_path / "resumed"), "--stop_at_step", "3"])
    assert stopped["stopped"] and stopped["global_step"] == 3 and stopped["validated"] == []
    assert not (tmp_path / "resumed" / "model.safetensors").exists()
    resumed = train([*FLAGS, "--output_dir", str(tmp_path / "resumed"), "--resume_from_checkpoint", "latest"])
    assert resumed["first_step"] == 3 and resumed["global_step"] == 4

    a, b = (load_file(tmp_path / run / "model.safetensors") for run in ("straight", "resumed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["last_record"]["loss"] == straight["last_record"]["loss"]


def test_a_run_on_videos_cut_at_random_starts_with_global_draws_resumes_to_the_same_weights(tmp_path):
    """Clips longer than the bucket are cut at random starts, two data-loader workers load them, epochs are crossed,
    and the script draws from torch's global generator: stopped at step 3 (mid-epoch) and resumed, the run still ends
    on the uninterrupted run's weights. Before 2026-12 it did not: each epoch's loader drew from the global generator
    (the resumed one at another moment), and the random starts came from the workers' generators."""
    write_dataset(tmp_path / "clips", 6, buckets=[Bucket(32, 32, 13)], seed=3)
    flags = [*FLAGS, "--data_dir", str(tmp_path / "clips"), "--max_train_steps", "5", "--dataloader_num_workers", "2"]
    straight = train([*flags, "--output_dir", str(tmp_path / "straight")], global_draws=True)
    train([*flags, "--output_dir", str(tmp_path / "resumed"), "--stop_at_step", "3"], global_draws=True)
    resumed = train([*flags, "--output_dir", str(tmp_path / "resumed"), "--resume_from_checkpoint", "latest"], True)

    assert resumed["first_step"] == 3 and resumed["global_step"] == straight["global_step"] == 5
    a, b = (load_file(tmp_path / run / "model.safetensors") for run in ("straight", "resumed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["last_record"]["loss"] == straight["last_record"]["loss"]
