"""The Pillow pipeline and the child runner. Knows nothing of Flask."""

from .ops import DEFAULT_OPS, OPS, load_plugins
from .pipeline import BadImage, TooManyPixels, extension, probe
from .processes import mp_context
from .runner import Busy, JobFailed, JobTimedOut, Runner, raise_for_result
from .strategies import check_runner, create_runner, default_max_children

__all__ = [
    "DEFAULT_OPS",
    "OPS",
    "Runner",
    "BadImage",
    "Busy",
    "JobFailed",
    "JobTimedOut",
    "TooManyPixels",
    "check_runner",
    "create_runner",
    "default_max_children",
    "extension",
    "load_plugins",
    "mp_context",
    "probe",
    "raise_for_result",
]
