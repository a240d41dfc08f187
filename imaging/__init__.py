"""The Pillow pipeline and Darkroom's image job. Knows nothing of Flask or of processes."""

from .encode import OUTPUT_FORMATS, BadEncoding, Encoding, EncodingFields, check_encodable, parse_encoding
from .errors import (
    BadImage,
    DamagedImage,
    OverLimit,
    TooManyPixels,
    UnsupportedFeature,
    UnsupportedFormat,
)
from .formats import extension
from .ops import DEFAULT_OPS, OPS, BadOp, OpCall, load_plugins, parse_ops
from .pipeline import probe

#: What the forkserver imports once, so every child starts with the job, Pillow and its codecs loaded.
CHILD_PRELOAD = ["imaging.job", "PIL.Image", "PIL.JpegImagePlugin", "PIL.PngImagePlugin",
                  "imaging.child_codecs"]

__all__ = [
    "CHILD_PRELOAD",
    "DEFAULT_OPS",
    "OPS",
    "OUTPUT_FORMATS",
    "BadEncoding",
    "BadImage",
    "BadOp",
    "DamagedImage",
    "Encoding",
    "EncodingFields",
    "OpCall",
    "OverLimit",
    "TooManyPixels",
    "UnsupportedFeature",
    "UnsupportedFormat",
    "check_encodable",
    "extension",
    "load_plugins",
    "parse_encoding",
    "parse_ops",
    "probe",
]
