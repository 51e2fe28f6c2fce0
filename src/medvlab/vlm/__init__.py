"""Vision-language models: loading any HF image-text-to-text model, prompting, streaming, the tiny model."""

from medvlab.vlm.engine import Backend, StreamStats, TransformersBackend, load_backend
from medvlab.vlm.prompting import Turn, build_messages, detect_language, disclaimer, with_disclaimer

__all__ = [
    "Backend",
    "StreamStats",
    "TransformersBackend",
    "Turn",
    "build_messages",
    "detect_language",
    "disclaimer",
    "load_backend",
    "with_disclaimer",
]
