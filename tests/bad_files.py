"""Files an adversarial user hands the pipelines and the command line: 16-bit PNGs, decompression bombs, model
folders with a broken model_index.json, configs that do not match their weights, pickled or corrupted weights."""

import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import torch


def _png(width: int, height: int, bit_depth: int, color_type: int, raw_rows: bytes) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw_rows)) + chunk(b"IEND", b"")
    )


def write_png16(path: str | Path, pixels: np.ndarray) -> str:
    """(H, W) or (H, W, 3) uint16 -> a 16-bit grayscale or 48-bit RGB PNG (PIL cannot write the latter)."""
    pixels = np.asarray(pixels, dtype=">u2")  # PNG stores 16-bit samples big-endian
    rows = b"".join(b"\x00" + row.tobytes() for row in pixels)  # filter byte 0 (none) before each row
    Path(path).write_bytes(_png(pixels.shape[1], pixels.shape[0], 16, 0 if pixels.ndim == 2 else 2, rows))
    return str(path)


def write_png_bomb(path: str | Path, side: int = 20_000) -> str:
    """A PNG header announcing side x side grayscale pixels with almost no data: PIL refuses it at open (above
    `PIL.Image.MAX_IMAGE_PIXELS` it warns, above twice that it raises), before decoding anything."""
    Path(path).write_bytes(_png(side, side, 8, 0, b"\x00" * (side + 1)))
    return str(path)


def copy_model(source: str | Path, target: str | Path) -> Path:
    shutil.copytree(source, target)
    return Path(target)


def edit_json(path: str | Path, **changes) -> None:
    data = json.loads(Path(path).read_text())
    data.update(changes)
    Path(path).write_text(json.dumps(data))


def corrupt_tail(path: str | Path, num_bytes: int = 64) -> None:
    """Overwrite the last bytes of a file with 0xFF: a safetensors file still parses (its header is at the start)
    and its last float32 values become NaN."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:-num_bytes] + b"\xff" * num_bytes)


def truncate(path: str | Path, num_bytes: int) -> None:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:-num_bytes])


def pickle_weights(folder: str | Path) -> None:
    """Replace a transformers model's model.safetensors by a pickled pytorch_model.bin with the same weights."""
    from safetensors.torch import load_file

    folder = Path(folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
