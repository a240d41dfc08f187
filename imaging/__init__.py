"""The Pillow pipeline and the child runner. Knows nothing of Flask."""

from .ops import DEFAULT_OPS, OPS, load_plugins
from .pipeline import BadImage, TooManyPixels, extension, probe
from .runner import (
    Busy,
    JobFailed,
    JobTimedOut,
    create_runner,
    default_max_children,
    mp_context,
    raise_for_result,
)

__all__ = [
    "DEFAULT_OPS",
    "OPS",
    "BadImage",
    "Busy",
    "JobFailed",
    "JobTimedOut",
    "TooManyPixels",
    "create_runner",
    "default_max_children",
    "extension",
    "load_plugins",
    "mp_context",
    "probe",
    "raise_for_result",
]
