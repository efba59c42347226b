"""The embedded default model: a saved `SoraPipeline` shipped inside the package, in this folder.

`sora-diffusers generate` uses it when no `--model` is given. The folder holds `model_index.json` and one subfolder
per component once a trained model is installed here (`pipe.save_pretrained(default_model_path())`).
"""

from pathlib import Path


MODEL_DIR = Path(__file__).parent


def default_model_path() -> str:
    """The folder of the embedded default model, ready for `SoraPipeline.from_pretrained`.

    Raises:
        FileNotFoundError: no model is installed in the package yet.
    """
    if not (MODEL_DIR / "model_index.json").is_file():
        raise FileNotFoundError(
            "no embedded default model is installed yet; pass --model PATH (a folder saved with "
            f"`pipe.save_pretrained`) or a Hub repo id (looked for model_index.json in {MODEL_DIR})"
        )
    return str(MODEL_DIR)
