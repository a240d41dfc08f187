"""Reading metadata defensively: a block that does not parse is dropped and logged, never fatal.

Real photos carry EXIF that is truncated, points past its end or is not TIFF at all;
Pillow raises ``SyntaxError``, ``struct.error``, ``ValueError``, ``TypeError`` and more
while parsing it. None of that may sink a job whose pixels are fine.
"""

from __future__ import annotations

import logging
from typing import Any

from PIL import Image

log = logging.getLogger("darkroom.imaging")

ORIENTATION = 0x0112
#: EXIF tags kept with ``metadata=copyright`` (Artist, Copyright), each with the PNG text key
#: that holds the same; everything else (GPS, serial numbers, comments) never is kept.
KEPT_TAGS = {0x013B: "Author", 0x8298: "Copyright"}


def exif_of(im: Image.Image) -> Image.Exif:
    """The image's EXIF, or an empty one if it does not parse (logged)."""
    try:
        return im.getexif()
    except Exception as exc:  # noqa: BLE001 - any parser error: the block is dropped
        log.info("ignoring EXIF that does not parse: %s: %s", type(exc).__name__, exc)
        return Image.Exif()


def _valid(value: Any) -> int:
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def turn_of(exif: Image.Exif) -> int:
    """The orientation (1 to 8) an EXIF block holds, 1 if none or if it does not parse."""
    try:
        return _valid(exif.get(ORIENTATION))
    except Exception as exc:  # noqa: BLE001
        log.info("ignoring an EXIF orientation that does not parse: %s: %s", type(exc).__name__, exc)
        return 1


def orientation(im: Image.Image) -> int:
    """The EXIF orientation (1 to 8) the header holds, 1 if none or if it does not parse.

    Reads the EXIF the header already holds (``getexif`` would decode a PNG's pixels).
    """
    raw = im.info.get("exif")
    value: Any = None
    try:
        if isinstance(raw, bytes):
            exif = Image.Exif()
            exif.load(raw)
            value = exif.get(ORIENTATION)
        elif (tags := getattr(im, "tag_v2", None)) is not None:  # TIFF keeps it among its own tags
            value = tags.get(ORIENTATION)
    except Exception as exc:  # noqa: BLE001
        log.info("ignoring EXIF that does not parse: %s: %s", type(exc).__name__, exc)
    return _valid(value)


def displayed_size(im: Image.Image) -> tuple[int, int]:
    """The size a viewer shows: orientations 5 to 8 turn the stored image a quarter."""
    return (im.height, im.width) if orientation(im) in (5, 6, 7, 8) else im.size


def upright(im: Image.Image, turn: int) -> Image.Image:
    """``im`` turned as EXIF orientation ``turn`` says (``exif_transpose`` would reparse the EXIF)."""
    method = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
              6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}.get(turn)
    return im if method is None else im.transpose(method)


def kept_metadata(im: Image.Image, exif: Image.Exif | None = None) -> dict[int, str]:
    """The source's author and copyright (its ``exif`` if read already, or PNG text chunks), by EXIF tag."""
    exif = exif_of(im) if exif is None else exif
    kept = {}
    for tag, png_key in KEPT_TAGS.items():
        if exif.get(tag):
            kept[tag] = str(exif[tag])
        elif isinstance(im.info.get(png_key), str):
            kept[tag] = im.info[png_key]
    return kept


