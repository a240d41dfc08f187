"""Reading image headers and rendering derivatives with Pillow."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from .ops import OPS, THUMBNAIL_BOX

#: Formats Darkroom accepts, as Pillow names them, with the extension stored on disk.
FORMATS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp"}
JPEG_QUALITY = 85

# Darkroom refuses every image over its limit itself, from the header and
# before any pixel is decoded (_check_pixels), with one message for every
# size. Pillow's own check (a warning, then its own error past twice its
# limit) would only say the same thing differently.
Image.MAX_IMAGE_PIXELS = None


class BadImage(ValueError):
    """The upload is not an image Darkroom can read (a user error, not a fault)."""


class TooManyPixels(BadImage):
    """The image's header claims more pixels than the configured limit."""


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    if size[0] * size[1] > max_pixels:
        raise TooManyPixels(
            f"The image is {size[0]}×{size[1]} pixels; the limit is "
            f"{max_pixels / 1e6:.0f} megapixels."
        )


def _open(path: Path, max_pixels: int) -> Image.Image:
    try:
        im = Image.open(path, formats=list(FORMATS))
    except (UnidentifiedImageError, SyntaxError, OSError, ValueError) as exc:
        raise BadImage("The file is not a JPEG, PNG, GIF or WebP image.") from exc
    _check_pixels(im.size, max_pixels)
    return im


def probe(path: Path, max_pixels: int) -> dict[str, Any]:
    """Read only the header of an image: its format and size. Decodes no pixels."""
    with _open(path, max_pixels) as im:
        return {"format": im.format, "width": im.width, "height": im.height}


def extension(fmt: str) -> str:
    """Return the file extension Darkroom stores an image of Pillow format ``fmt`` under."""
    return FORMATS[fmt]


def decode(path: Path, max_pixels: int, *, reduced: bool = False) -> Image.Image:
    """Decode the source once; with ``reduced``, let JPEG decode at a fraction of its size."""
    im = _open(path, max_pixels)
    try:
        if reduced and im.format == "JPEG":
            # DCT scaling: decode 1/2, 1/4 or 1/8 of the size, still above the box.
            im.draft("RGB", (THUMBNAIL_BOX[0] * 2, THUMBNAIL_BOX[1] * 2))
        im.load()
        ImageOps.exif_transpose(im, in_place=True)
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImage(f"The image data is damaged or incomplete ({exc}).") from exc
    if im.mode not in ("RGB", "RGBA", "L", "LA"):
        has_alpha = im.mode in ("PA", "RGBa") or "transparency" in im.info
        im = im.convert("RGBA" if has_alpha else "RGB")
    return im


def save(im: Image.Image, path_stem: Path) -> dict[str, Any]:
    """Save an output (JPEG, or PNG if it has alpha) and describe the file written."""
    fmt = "PNG" if "A" in im.mode else "JPEG"
    path = path_stem.with_suffix("." + FORMATS[fmt])
    if fmt == "JPEG":
        im.save(path, fmt, quality=JPEG_QUALITY, optimize=False)
    else:
        im.save(path, fmt, compress_level=3)
    return {
        "file": path.name,
        "width": im.width,
        "height": im.height,
        "format": fmt,
        "bytes": path.stat().st_size,
    }


ProgressCallback = Callable[[str, int], None]


def render(
    source: Path,
    out_dir: Path,
    ops: Sequence[str],
    max_pixels: int,
    on_op: ProgressCallback | None = None,
) -> list[dict[str, Any]]:
    """Decode ``source`` once, apply each op and save its output into ``out_dir``.

    Returns one description per output, in the order of ``ops``, each with
    the op's time in milliseconds.
    """
    reduced = all(OPS[name].shrinks for name in ops)
    im = decode(source, max_pixels, reduced=reduced)
    outputs = []
    for done, name in enumerate(ops):
        if on_op:
            on_op(name, done)
        started = time.perf_counter()
        result = OPS[name].apply(im)
        info = save(result, out_dir / name)
        info["ms"] = round((time.perf_counter() - started) * 1000, 1)
        outputs.append({"op": name, **info})
        del result
    return outputs
