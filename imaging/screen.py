"""Screen-sized copies of a job's images, for the viewer, made the first time someone opens one.

The viewer shows an image fitted to a screen, about 1,600 px at most. The
24 MP file there costs megabytes a view and the 480 px tile preview is too
soft; a WebP at ``SCREEN_SIZE`` costs about 200 kB. Making it with every
job would cost each job's outputs about a second; most are never opened
large, so the first view pays instead, in a child like every decode.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PIL import Image

from .errors import BadImage
from .pipeline import decode

#: The long side of a screen copy: a full-HD screen's, or a 2× phone's width.
SCREEN_SIZE = 1600
SCREEN_QUALITY = 80


def save_screen_copy(source: str, target: str, max_pixels: int) -> bool:
    """Write a WebP of the image at ``source``, at most SCREEN_SIZE on its long side, to ``target``.

    Returns False if ``source`` cannot be decoded (the caller shows what it
    has instead). The copy appears whole or not at all: two viewers opening
    the image at once both get a complete file.
    """
    try:
        src = decode(Path(source), max_pixels, reduced_to=(SCREEN_SIZE, SCREEN_SIZE), keep_colour=True)
    except BadImage:
        return False
    im = src.frames[0]
    # reducing_gap: halve by whole factors first (a JPEG decoded at its draft size is already near).
    im.thumbnail((SCREEN_SIZE, SCREEN_SIZE), Image.Resampling.LANCZOS, reducing_gap=1.5)
    profile = {"icc_profile": src.icc} if src.icc and im.mode in ("RGB", "RGBA") else {}
    fd, partial = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".screen-", suffix=".webp")
    try:
        with os.fdopen(fd, "wb") as out:
            im.save(out, "WEBP", quality=SCREEN_QUALITY, method=2, **profile)
        os.replace(partial, target)
    except BaseException:
        os.unlink(partial)
        raise
    return True
