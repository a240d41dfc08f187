"""Reading image headers and rendering derivatives with Pillow."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from .colour import to_working_mode
from .encode import Encoding, is_photographic, kept_metadata, save
from .ops import parse_ops
from .preview import save_previews

#: Formats Darkroom accepts, as Pillow names them, with the extension stored on disk.
FORMATS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "HEIF": "heic", "AVIF": "avif",
           "TIFF": "tif", "BMP": "bmp"}
NOT_AN_IMAGE = "The file is not an image Darkroom reads (JPEG, PNG, GIF, WebP, HEIC, AVIF, TIFF or BMP)."
#: Read from their header by Pillow in the web process, without decoding.
_HEADER_FORMATS = ["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP"]
#: HEIF and AVIF brands of an ISO-BMFF ``ftyp`` box. Pillow's AVIF plugin and
#: pillow-heif read the whole file to open it, so the web process only sniffs
#: these; the child reads their header before it decodes a pixel.
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}

# Darkroom refuses every image over its limit itself, from the header and
# before any pixel is decoded (_check_pixels), with one message for every
# size. Pillow's own check (a warning, then its own error past twice its
# limit) would only say the same thing differently.
Image.MAX_IMAGE_PIXELS = None

_ORIENTATION = 0x0112


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


def _open(path: Path, max_pixels: int, formats: list[str]) -> Image.Image:
    try:
        im = Image.open(path, formats=formats)
    except (UnidentifiedImageError, SyntaxError, OSError, ValueError, RuntimeError) as exc:
        raise BadImage(NOT_AN_IMAGE) from exc
    try:
        _check_pixels(im.size, max_pixels)
    except TooManyPixels:
        im.close()
        raise
    return im


def _sniff_isobmff(path: Path) -> str | None:
    with open(path, "rb") as f:
        head = f.read(64)
    if head[4:8] != b"ftyp":
        return None
    size = min(int.from_bytes(head[:4], "big"), len(head))
    brands = {head[8:12], *(head[i:i + 4] for i in range(16, size - 3, 4))}
    if brands & _AVIF_BRANDS:
        return "AVIF"
    return "HEIF" if brands & _HEIF_BRANDS else None


def displayed_size(im: Image.Image) -> tuple[int, int]:
    """The size a viewer shows: EXIF orientations 5 to 8 turn the stored image a quarter.

    Reads the EXIF the header already holds (``getexif`` would decode a PNG's pixels).
    """
    raw = im.info.get("exif")
    if isinstance(raw, bytes):
        exif = Image.Exif()
        exif.load(raw)
        orientation = exif.get(_ORIENTATION)
    else:
        tags = getattr(im, "tag_v2", None)  # TIFF keeps it among its own tags
        orientation = tags.get(_ORIENTATION) if tags is not None else None
    return (im.height, im.width) if orientation in (5, 6, 7, 8) else im.size


def probe(path: Path, max_pixels: int) -> dict[str, Any]:
    """Read only the header of an image: its format and displayed size. Decodes no pixels.

    HEIC and AVIF are recognised by their brand only (width and height None):
    the child checks their size before decoding.
    """
    fmt = _sniff_isobmff(path)
    if fmt:
        return {"format": fmt, "width": None, "height": None}
    with _open(path, max_pixels, _HEADER_FORMATS) as im:
        width, height = displayed_size(im)
        return {"format": im.format, "width": width, "height": height}


def extension(fmt: str) -> str:
    """Return the file extension Darkroom stores an image of Pillow format ``fmt`` under."""
    return FORMATS[fmt]


def decode(path: Path, max_pixels: int, *, reduced_to: tuple[int, int] | None = None) -> Image.Image:
    """Decode the source's first frame once, upright, in sRGB, 8-bit L/LA/RGB/RGBA.

    With ``reduced_to``, a JPEG may decode at 1/2, 1/4 or 1/8 of its size, still
    at least that large. The decoded image keeps ``info["frames"]`` (its frame
    count), ``info["format"]``, ``info["shown"]`` (the size a viewer sees,
    not the reduced one) and ``info["kept"]`` (the metadata a user may keep).
    """
    from . import child_codecs  # noqa: F401  (HEIC and the rest: only where pixels are decoded)

    im = _open(path, max_pixels, list(FORMATS))
    try:
        fmt, frames, shown = im.format or "", getattr(im, "n_frames", 1), displayed_size(im)
        drafted = reduced_to is not None and fmt == "JPEG"
        if reduced_to is not None and drafted:
            # DCT scaling, in the decoder; the box is in stored (not yet upright) pixels.
            im.draft(None, reduced_to if shown == im.size else (reduced_to[1], reduced_to[0]))
        im.load()
        kept = kept_metadata(im)
        ImageOps.exif_transpose(im, in_place=True)
        im = to_working_mode(im)
    except (OSError, SyntaxError, ValueError, RuntimeError, EOFError) as exc:
        raise BadImage(f"The image data is damaged or incomplete ({exc}).") from exc
    im.info.clear()  # comments, XMP, GPS: never carried to an output
    im.info.update(format=fmt, frames=frames, kept=kept, shown=shown if drafted else im.size)
    return im


ProgressCallback = Callable[[str, int], None]


def render(
    source: Path,
    out_dir: Path,
    ops: Sequence[str],
    max_pixels: int,
    on_op: ProgressCallback | None = None,
    encoding: Encoding | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Decode ``source`` once, apply each op and save its output into ``out_dir``.

    Returns what was decoded (``width``, ``height`` as shown, ``frames``,
    ``previews`` of the source) and one description per output, in the order
    of ``ops``, each with its time in milliseconds and its ``previews``.
    """
    encoding = encoding or Encoding()
    calls = parse_ops(ops)
    reduced_to = None
    if all(c.op.shrinks and c.op.needs for c in calls):
        needs = [c.op.needs(c.value) for c in calls if c.op.needs]
        reduced_to = (max(n[0] for n in needs), max(n[1] for n in needs))
    im = decode(source, max_pixels, reduced_to=reduced_to)
    info = im.info.copy()
    photographic = is_photographic(im, info["format"])
    decoded = {"width": info["shown"][0], "height": info["shown"][1], "frames": info["frames"],
               "previews": save_previews(im, out_dir, "source")}
    outputs = []
    for done, call in enumerate(calls):
        if on_op:
            on_op(call.spec, done)
        started = time.perf_counter()
        result = call.apply(im)
        written = save(result, out_dir, call.stem, encoding, photographic=photographic, metadata=info["kept"])
        written["ms"] = round((time.perf_counter() - started) * 1000, 1)
        # A JPEG has no alpha: its preview shows the white background it was written on.
        written["previews"] = save_previews(result, out_dir, call.stem, opaque=written["format"] == "JPEG")
        outputs.append({"op": call.spec, "label": call.label, **written})
        del result
    return decoded, outputs
