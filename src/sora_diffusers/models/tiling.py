"""Spatial tiling with linearly blended overlaps, as diffusers' `AutoencoderKLWan` tiles (used by `SpacetimeVAE`).

`tiled_apply` runs a function on overlapping (height, width) tiles of a (B, C, T, H, W) tensor and writes the blended
results into a preallocated output, keeping only the bands the next tiles blend with.
"""

from collections.abc import Callable, Iterable, Sequence

import torch


def _last(x: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """A copy of the last `n` entries of `x` along `dim` (all of them if fewer)."""
    n = min(n, x.shape[dim])
    return x.narrow(dim, x.shape[dim] - n, n).clone()


# Adapted from diffusers 0.42: models/autoencoders/autoencoder_kl_wan.py::AutoencoderKLWan.blend_v / blend_h
def _blend_edge(previous: torch.Tensor, tile: torch.Tensor, extent: int, dim: int) -> None:
    """Blend in place the first `extent` rows (dim=-2) or columns (dim=-1) of `tile` with the last ones of
    `previous`, the weight of `tile` ramping linearly as i / extent."""
    extent = min(previous.shape[dim], tile.shape[dim], extent)
    if extent == 0:
        return
    shape = [1] * tile.ndim
    shape[dim] = extent
    weight = (torch.arange(extent, device=tile.device, dtype=tile.dtype) / extent).view(shape)  # 0 -> 1 - 1/extent
    head = tile.narrow(dim, 0, extent)
    head.copy_(previous.narrow(dim, previous.shape[dim] - extent, extent) * (1 - weight) + head * weight)


# Adapted from diffusers 0.42: models/autoencoders/autoencoder_kl_wan.py::AutoencoderKLWan.tiled_decode
def tiled_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    out: torch.Tensor,
    tile_size: tuple[int, int],
    tile_stride: tuple[int, int],
    out_stride: tuple[int, int],
    blend: tuple[int, int],
) -> None:
    """Apply `fn` to overlapping spatial tiles of `x` and write the blended results into `out`.

    Same tiles and linear blends as diffusers' `AutoencoderKLWan.tiled_encode` / `tiled_decode`, so the results
    match; but instead of keeping every processed tile until the end, it keeps only the bands that the next tiles
    blend with.

    Args:
        fn (`Callable`): Maps a tile (B, C, T, h, w) of `x` to its output (B, C', T', h', w').
        x (`torch.Tensor` of shape `(B, C, T, H, W)`): The input.
        out (`torch.Tensor` of shape `(B, C', T', H', W')`): The result, written in place.
        tile_size (`tuple[int, int]`): (height, width) of a tile, in `x` pixels.
        tile_stride (`tuple[int, int]`): (height, width) step between tiles, in `x` pixels.
        out_stride (`tuple[int, int]`): The same step in `out` pixels: each tile fills that much of `out`.
        blend (`tuple[int, int]`): Rows / columns blended with the tile above / to the left, in `out` pixels.
    """
    windows, num_cols = tile_windows(x.shape[-2:], tile_size, tile_stride)
    tiles = (fn(x[..., rows, cols]) for rows, cols in windows)  # lazily: one processed tile alive at a time
    blend_tiles(tiles, out, num_cols, out_stride, blend)


def tile_windows(
    size: Sequence[int], tile_size: tuple[int, int], tile_stride: tuple[int, int]
) -> tuple[list[tuple[slice, slice]], int]:
    """The (rows, cols) slices of the tiles covering a (height, width) `size`, row by row, and the tiles per row."""
    starts_h, starts_w = range(0, size[0], tile_stride[0]), range(0, size[1], tile_stride[1])
    windows = [(slice(i, i + tile_size[0]), slice(j, j + tile_size[1])) for i in starts_h for j in starts_w]
    return windows, len(starts_w)


def blend_tiles(
    tiles: Iterable[torch.Tensor],
    out: torch.Tensor,
    num_cols: int,
    out_stride: tuple[int, int],
    blend: tuple[int, int],
) -> None:
    """Write processed tiles (B, C, T, h, w), given row by row with `num_cols` per row, into `out` (B, C, T, H, W),
    each blended in place with the bottom band of the tile above and the right band of the tile to its left."""
    out_height, out_width = out.shape[-2:]
    above: list[torch.Tensor] = []  # bottom band of each tile of the previous row, already blended
    bands: list[torch.Tensor] = []  # the same for the current row
    left = None  # right band of the previous tile in this row, already blended
    for k, tile in enumerate(tiles):
        row, col = divmod(k, num_cols)
        if row > 0 and col == 0:
            above, bands = bands, []
        if row > 0:
            _blend_edge(above[col], tile, blend[0], dim=-2)
        if col > 0:
            _blend_edge(left, tile, blend[1], dim=-1)
        bands.append(_last(tile, blend[0], dim=-2))
        left = _last(tile, blend[1], dim=-1)
        top, start = row * out_stride[0], col * out_stride[1]
        height, width = min(out_stride[0], out_height - top), min(out_stride[1], out_width - start)
        out[..., top : top + height, start : start + width] = tile[..., :height, :width]
