from .export import export_to_image, export_to_video, frames_to_uint8, load_metadata, load_video_frames


__all__ = ["export_to_image", "export_to_video", "frames_to_uint8", "load_metadata", "load_video_frames"]
