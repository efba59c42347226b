"""The training library behind `examples/train_vae.py` and `examples/train_text_to_video.py`.

    flow_matching         noise, targets, sigma sampling and loss weighting (the training math)
    conditioning_sampler  random frame conditioning: which latent frames a sample is given clean, and their latents
    autoencoder           the pieces of training a SpacetimeVAE: reconstruction, crops, losses, init, statistics
    buckets               native shapes: `Bucket`, `make_buckets`, `nearest_bucket`, `BucketBatchSampler`
    datasets              the shapes world or a folder of captioned videos, batched by bucket
    caches                latents (with each clip's conditioning tail) and prompt embeddings, encoded once
    arguments             the command-line flags every training script shares
    trainer               accelerate setup, optimizer, the step loop with `--stop_at_step`, the final model
    checkpoints           atomic checkpoint-STEP folders; resume from the latest complete one, without pickles
    state                 state dicts (optimizer, schedule, random generators) as JSON + safetensors
    ema                   an exponential moving average of the weights, saved as a model folder
    logging               metrics.jsonl, loss.png and validation videos
    hub                   the Hugging Face Hub: repo, model card, upload
    text_to_video         the text-to-video step (random clean conditioning frames), its flags, data and validation

A script supplies a model, a `step_fn(batch, step)` returning its loss, and a `validate_fn(step)`:

    trainer = Trainer(args)
    model = trainer.prepare(model, dataset, bucket_ids)
    if trainer.train(step_fn, validate_fn):
        trainer.save_final_model(lambda final, folder: final.save_pretrained(folder))  # folder: staged, then moved
    result = trainer.end()

Names are imported on first use, so `import sora_diffusers.training` stays light (the scheduler and the pipeline
import `flow_matching` from here).
"""

import importlib

from .flow_matching import (
    LOSS_WEIGHTING_SCHEMES,
    WEIGHTING_SCHEMES,
    add_noise,
    flow_matching_loss,
    flow_target,
    loss_weighting,
    prepare_frame_conditioning_sigmas,
    sample_sigmas,
    sigmas_to_timesteps,
)


_LAZY = {
    "arguments": ["build_parser", "check_args", "refuse_architecture_flags"],
    "autoencoder": ["ReconstructionModel", "measure_latent_stats"],
    "buckets": ["ASPECT_RATIOS", "Bucket", "BucketBatchSampler", "make_buckets", "nearest_bucket"],
    "caches": ["CachedLatentDataset", "PromptEmbeddingCache", "build_latent_cache"],
    "checkpoints": [
        "CorruptCheckpointError",
        "apply_state",
        "is_complete",
        "is_legacy",
        "list_checkpoints",
        "read_legacy_state",
        "read_state",
        "save_checkpoint",
        "temp_folders",
        "trainable_state_dict",
        "verify_checkpoint",
        "write_state",
    ],
    "conditioning_sampler": [
        "CONDITION_MODES",
        "DEFAULT_CONDITION_PROBS",
        "conditioned_latents",
        "encode_clips",
        "encode_tails",
        "normalize_condition_probs",
        "sample_condition_mask",
        "tail_clip_start",
        "tail_length_of",
    ],
    "datasets": [
        "VideoFolderDataset",
        "build_dataloader",
        "build_dataset",
        "buckets_from_args",
        "collate",
        "read_frames",
        "resize_crop",
        "shapes_dataset",
    ],
    "ema": ["create_ema", "ema_weights"],
    "hub": ["create_hub_repo", "save_model_card", "upload_to_hub"],
    "logging": ["MetricsLog", "plot_curve", "to_uint8_video", "write_video"],
    "models": ["load_json_config", "load_transformer", "load_vae"],
    "state": [
        "load_optimizer_state",
        "random_states",
        "read_state_dict",
        "save_optimizer_state",
        "save_state_dict",
        "set_random_states",
    ],
    "text_to_video": [
        "add_flow_matching_arguments",
        "add_validation_arguments",
        "build_training_data",
        "frame_conditioning_step",
        "generate_validation",
        "prompt_encoder",
        "validation_clip",
    ],
    "trainer": ["Trainer", "create_optimizer", "setup_accelerator", "step_generator", "weight_dtype"],
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


__all__ = [
    "LOSS_WEIGHTING_SCHEMES",
    "WEIGHTING_SCHEMES",
    "add_noise",
    "flow_matching_loss",
    "flow_target",
    "loss_weighting",
    "prepare_frame_conditioning_sigmas",
    "sample_sigmas",
    "sigmas_to_timesteps",
    *sorted(_WHERE),
]
