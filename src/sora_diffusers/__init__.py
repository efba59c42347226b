"""sora_diffusers: a diffusers-compatible text-to-video system."""

__version__ = "0.1.0.dev0"
