"""Any requested video size, and the size it is generated at.

The VAE compresses space `r_s`x and the transformer cuts latents into `p_h` x `p_w` patches, so a generated frame's
sides are multiples of `r_s * p`; the causal VAE makes `1 + r_t * k` frames, and the transformer's temporal patch `p_t`
must divide the latent frame count. A request the model cannot take directly is generated on the smallest valid canvas
that covers it (each side rounded up to its multiple, the frame count up to the next valid one) and the output is cut
back to the request: centre-cropped in space, its first `num_frames` frames kept in time.

Conditioning images and clips are resized to the requested frame, as for a size the model takes directly, and then
placed in the canvas where the crop will take them back (`GenerationCanvas.pad_space`): the cropped output and the
conditioning line up pixel for pixel, so a frame given at strength 1 can be returned as given.
"""

from dataclasses import dataclass

import torch

from .conditioning import num_latent_frames


@dataclass(frozen=True)
class GenerationCanvas:
    """A requested video size and the size it is generated at (equal when the model takes the request directly).

    Args:
        height, width, num_frames: what was asked for.
        generation_height, generation_width, generation_num_frames: what the model generates; the output is its
            centre crop in space and its first `num_frames` frames.
    """

    height: int
    width: int
    num_frames: int
    generation_height: int
    generation_width: int
    generation_num_frames: int

    @property
    def top(self) -> int:
        """Rows of the canvas above the requested frame (the extra row of an odd margin goes below)."""
        return (self.generation_height - self.height) // 2

    @property
    def left(self) -> int:
        """Columns of the canvas left of the requested frame (the extra column of an odd margin goes right)."""
        return (self.generation_width - self.width) // 2

    @property
    def crops_space(self) -> bool:
        return (self.generation_height, self.generation_width) != (self.height, self.width)

    @property
    def trims_frames(self) -> bool:
        return self.generation_num_frames != self.num_frames

    def pad_space(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, C, T, height, width) -> (B, C, T, generation_height, generation_width), the frames where `crop` takes
        them back and their edge pixels repeated into the margins.

        Why the request-size frames padded, not the frames resized to cover the canvas: the output is cropped to the
        request, so the conditioning must sit exactly where the crop takes it. A frame resized to the canvas would be
        scaled by up to canvas/request (e.g. 160/144) and its content would land a few pixels off the output's, and a
        strength-1 frame could no longer come back as given. Why replicate and not reflect: the margins (fewer than
        `r_s * p` pixels a side, cut off afterwards) only need to encode as a plausible continuation, so the latents
        at the border agree with their neighbours. A reflection mirrors an object near an edge into the margin,
        where the model may take it for a second object and move it into view; repeating the edge pixels extends the
        background and brings no object. Reflection also needs margins narrower than the frame, which a small
        request (e.g. 10 pixels high on a 32-pixel canvas) does not have.
        """
        if not self.crops_space:
            return frames
        B, C, T, H, W = frames.shape
        if (H, W) != (self.height, self.width):
            raise ValueError(f"Frames of {H}x{W} pixels do not fit the requested {self.height}x{self.width}.")
        bottom = self.generation_height - self.height - self.top
        right = self.generation_width - self.width - self.left
        flat = frames.reshape(B, C * T, H, W)  # (B, C*T, H, W): replicate padding pads the last two dims of 4D input
        padded = torch.nn.functional.pad(flat, (self.left, right, self.top, bottom), mode="replicate")
        return padded.reshape(B, C, T, self.generation_height, self.generation_width)

    def pad_time(self, video: torch.Tensor) -> torch.Tensor:
        """(B, C, num_frames, H, W) -> (B, C, generation_num_frames, H, W): the last frame held for the extra frames
        (a source video for video-to-video, whose frames past the request are generated and dropped)."""
        extra = self.generation_num_frames - video.shape[2]
        if extra <= 0:
            return video
        return torch.cat([video, video[:, :, -1:].expand(-1, -1, extra, -1, -1)], dim=2)

    def crop(self, video: torch.Tensor) -> torch.Tensor:
        """(B, C, generation_num_frames, generation_height, generation_width) -> (B, C, num_frames, height, width)."""
        return video[:, :, : self.num_frames, self.top : self.top + self.height, self.left : self.left + self.width]


def covering_multiple(value: int, multiple: int) -> int:
    """The smallest multiple of `multiple` that is >= `value` (and >= `multiple`)."""
    return max(multiple, -(-value // multiple) * multiple)


def covering_num_frames(num_frames: int, temporal_ratio: int, temporal_patch: int = 1) -> int:
    """The smallest frame count >= `num_frames` that a causal VAE makes (1 + k * `temporal_ratio`) and whose latent
    frame count is a multiple of the transformer's `temporal_patch`."""
    count = max(1, 1 + -(-(num_frames - 1) // temporal_ratio) * temporal_ratio)
    while num_latent_frames(count, temporal_ratio) % temporal_patch:
        count += temporal_ratio
    return count


def generation_canvas(
    height: int,
    width: int,
    num_frames: int,
    spatial_multiple: int | tuple[int, int],
    temporal_ratio: int,
    temporal_patch: int = 1,
) -> GenerationCanvas:
    """The smallest canvas the model can generate that covers `height` x `width` x `num_frames`.

    Args:
        spatial_multiple: what the sides must be multiples of, one for both or (height's, width's): VAE spatial
            compression times the transformer's spatial patch (32 for the embedded model, 16 for Wan 2.1).
        temporal_ratio, temporal_patch: the VAE's temporal compression and the transformer's temporal patch.

    Example: 1920x1080 with a multiple of 32 is generated at 1920x1088 and cropped 4 rows from the top and bottom.
    """
    multiple_h, multiple_w = (spatial_multiple,) * 2 if isinstance(spatial_multiple, int) else spatial_multiple
    return GenerationCanvas(
        height=height,
        width=width,
        num_frames=num_frames,
        generation_height=covering_multiple(height, multiple_h),
        generation_width=covering_multiple(width, multiple_w),
        generation_num_frames=covering_num_frames(num_frames, temporal_ratio, temporal_patch),
    )
