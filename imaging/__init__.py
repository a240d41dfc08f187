"""The Pillow pipeline and Darkroom's image job. Knows nothing of Flask or of processes."""

from .ops import DEFAULT_OPS, OPS, load_plugins
from .pipeline import BadImage, TooManyPixels, extension, probe

#: What the forkserver imports once, so every child starts with the job and Pillow loaded.
CHILD_PRELOAD = ["imaging.job", "PIL.Image", "PIL.JpegImagePlugin", "PIL.PngImagePlugin"]

__all__ = [
    "CHILD_PRELOAD",
    "DEFAULT_OPS",
    "OPS",
    "BadImage",
    "TooManyPixels",
    "extension",
    "load_plugins",
    "probe",
]
