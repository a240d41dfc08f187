"""Writing outputs: the format chosen by content or by the user, encoded compactly, metadata stripped."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from .colour import SRGB_ICC, flatten
from .ops import BadOp

#: Output formats by the name a user gives, as Pillow names them, with the extension written.
OUTPUT_FORMATS = {"jpeg": ("JPEG", "jpg"), "png": ("PNG", "png"), "webp": ("WEBP", "webp"),
                  "avif": ("AVIF", "avif")}
#: Each lossy format's default quality (their scales differ: AVIF 60 looks like JPEG 85).
DEFAULT_QUALITY = {"JPEG": 85, "WEBP": 80, "AVIF": 60}
#: EXIF tags kept with ``metadata=copyright`` (Artist, Copyright), each with the PNG text key
#: that holds the same; everything else (GPS, serial numbers, comments) never is kept.
KEPT_TAGS = {0x013B: "Author", 0x8298: "Copyright"}
METADATA_CHOICES = ("none", "copyright")


@dataclass(frozen=True)
class Encoding:
    """How outputs are written: ``format`` auto/jpeg/png/webp/avif, ``quality`` 1–100 or the format's default."""

    format: str = "auto"
    quality: int | None = None
    metadata: str = "none"  # or "copyright": keep the source's author and copyright


def parse_encoding(fmt: str | None, quality: str | None, metadata: str | None) -> Encoding:
    """Read the ``format``, ``quality`` and ``metadata`` fields (empty means default); raise BadOp."""
    fmt = (fmt or "auto").strip().lower()
    if fmt != "auto" and fmt not in OUTPUT_FORMATS:
        raise BadOp(f"The format must be one of: auto, {', '.join(OUTPUT_FORMATS)}.")
    level = None
    if quality and quality.strip():
        if not quality.strip().isdigit() or not 1 <= int(quality) <= 100:
            raise BadOp("The quality must be a whole number from 1 to 100.")
        level = int(quality)
    metadata = (metadata or "none").strip().lower()
    if metadata not in METADATA_CHOICES:
        raise BadOp(f"The metadata option must be one of: {', '.join(METADATA_CHOICES)}.")
    return Encoding(fmt, level, metadata)


def kept_metadata(im: Image.Image) -> dict[int, str]:
    """The source's author and copyright (EXIF, or PNG text chunks), by EXIF tag."""
    exif = im.getexif()
    kept = {}
    for tag, png_key in KEPT_TAGS.items():
        if exif.get(tag):
            kept[tag] = str(exif[tag])
        elif isinstance(im.info.get(png_key), str):
            kept[tag] = im.info[png_key]
    return kept


def is_photographic(im: Image.Image, source_format: str) -> bool:
    """Whether lossy output suits the image: a lossy source, or a lossless one with photo-like colour.

    Screenshots and line art use a few thousand colours at most; a photo
    uses tens of thousands even in a 256 px sample (nearest-neighbour, so
    resampling invents no colours).
    """
    if source_format not in ("PNG", "GIF", "BMP", "TIFF"):
        return True
    sample = im.resize((min(im.width, 256), min(im.height, 256)), Image.Resampling.NEAREST)
    return sample.getcolors(maxcolors=4096) is None


def output_format(im: Image.Image, encoding: Encoding, photographic: bool) -> tuple[str, str]:
    """Pillow's format and the extension for one output.

    ``auto``: lossless content stays PNG; photographic content is JPEG, or
    WebP (lossy with alpha) if it is transparent.
    """
    if encoding.format != "auto":
        return OUTPUT_FORMATS[encoding.format]
    if not photographic:
        return OUTPUT_FORMATS["png"]
    return OUTPUT_FORMATS["webp" if "A" in im.mode else "jpeg"]


def save(
    im: Image.Image, out_dir: Path, stem: str, encoding: Encoding, *,
    photographic: bool, metadata: dict[int, str],
) -> dict[str, Any]:
    """Write one output and describe the file: name, size, format, bytes."""
    fmt, ext = output_format(im, encoding, photographic)
    if fmt == "JPEG":
        im = flatten(im)
    # Only what is passed here is written: Pillow would otherwise re-emit the
    # source's comment, XMP or profile from ``info``.
    im.info.clear()
    options: dict[str, Any] = {}
    if im.mode in ("RGB", "RGBA"):
        options["icc_profile"] = SRGB_ICC
    if metadata and encoding.metadata == "copyright":
        exif = Image.Exif()
        exif.update(metadata)
        options["exif"] = exif.tobytes()
    quality = encoding.quality or DEFAULT_QUALITY.get(fmt)
    if fmt == "JPEG":
        options.update(quality=quality, optimize=True, progressive=True)
    elif fmt == "PNG":
        options.update(compress_level=6)
    elif fmt == "WEBP":
        options.update(quality=quality, method=4)
    else:
        options.update(quality=quality, speed=8)
    path = out_dir / f"{stem}.{ext}"
    im.save(path, fmt, **options)
    return {"file": path.name, "width": im.width, "height": im.height, "format": fmt,
            "bytes": path.stat().st_size}
