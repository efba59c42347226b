from .lora import SoraLoraLoaderMixin


__all__ = ["SoraLoraLoaderMixin"]
