"""Why an upload is refused: one class per reason, each with its HTTP status and a name clients can test.

::

    BadImage                 400  the upload is not usable as sent (base class)
    ├── DamagedImage         400  damaged         a format Darkroom reads, but the data is broken or cut short
    ├── UnsupportedFormat    415  unsupported_format  a format Darkroom does not read
    ├── UnsupportedFeature   422  unsupported_feature a format it reads, using a feature it does not
    └── OverLimit            413  over_limit      too many pixels, frames, or too large for an output format
        └── TooManyPixels

Raised in the child that decodes an upload, they reach the web process as
themselves (``handoff``'s ``HANDOFF_RERAISE``); anything else raised there is
a bug, and reaches it as ``ChildFailed``.
"""

from __future__ import annotations


class BadImage(ValueError):
    """An upload Darkroom refuses: a user's error, never a fault of the server."""

    kind = "bad_upload"
    status = 400


class DamagedImage(BadImage):
    """A file of a format Darkroom reads whose data is damaged or incomplete."""

    kind = "damaged"
    status = 400


class UnsupportedFormat(BadImage):
    """A file that is not an image, or an image in a format Darkroom does not read."""

    kind = "unsupported_format"
    status = 415


class UnsupportedFeature(BadImage):
    """A file of a format Darkroom reads that uses a feature its decoder lacks (a TIFF compression)."""

    kind = "unsupported_feature"
    status = 422


class OverLimit(BadImage):
    """An image past a limit: the pixel limit, or what an output format can hold."""

    kind = "over_limit"
    status = 413


class TooManyPixels(OverLimit):
    """The image's header claims more pixels than the configured limit."""
