"""Writing outputs: the format chosen by content or by the user, encoded compactly, metadata stripped."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypedDict

from PIL import Image

from storage.records import Written

from .colour import SRGB_ICC, flatten
from .errors import OverLimit
from .formats import LOSSLESS, MAX_SIDE, format_name
from .ops import OpCall

#: An animation's frame durations (ms), its loop count (None: plays once) and its source's format.
Timing = tuple[list[int], int | None, str]
#: Formats that hold every frame of an animation (PNG as APNG).
ANIMATES = {"GIF", "PNG", "WEBP", "AVIF"}
#: What Pillow says when libwebp runs out of memory (VP8_ENC_ERROR_OUT_OF_MEMORY is 1).
WEBP_OUT_OF_MEMORY = "encoding error 1"
#: The extension each output format is written with (GIF only for an animated GIF's outputs).
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "AVIF": "avif", "GIF": "gif"}

#: Output formats by the name a user gives, as Pillow names them, with the extension written.
OUTPUT_FORMATS = {fmt.lower(): (fmt, EXTENSIONS[fmt]) for fmt in ("JPEG", "PNG", "WEBP", "AVIF")}
#: Each lossy format's default quality (their scales differ: AVIF 60 looks like JPEG 85).
DEFAULT_QUALITY = {"JPEG": 85, "WEBP": 80, "AVIF": 60}
METADATA_CHOICES = ("none", "copyright")
#: The largest JPEG output written progressive. Progressive coding saves a further 5% of bytes but
#: takes five times as long as baseline: 0.35 s more for each 24 MP output, and under 20 ms for a
#: screen-sized one (bench/ENCODING.md). Every JPEG's Huffman tables are optimised (4% for twice
#: baseline's time: about 0.1 s at 24 MP).
PROGRESSIVE_PIXELS = 4_000_000
#: ``srgb``: convert colour to sRGB (every screen shows it right); ``keep``: keep a wide-gamut profile.
COLOUR_CHOICES = ("srgb", "keep")


class BadEncoding(ValueError):
    """A ``format``, ``quality``, ``metadata`` or ``colour`` field that is not one of its choices."""


class EncodingFields(TypedDict):
    """An :class:`Encoding` as plain data, as the web process hands it to a job's child."""

    format: str
    quality: int | None
    metadata: str
    colour: str


@dataclass(frozen=True)
class Encoding:
    """How outputs are written: ``format`` auto/jpeg/png/webp/avif, ``quality`` 1–100 or the format's default."""

    format: str = "auto"
    quality: int | None = None
    metadata: str = "none"  # or "copyright": keep the source's author and copyright
    colour: str = "srgb"  # or "keep": keep the source's RGB profile and its colours beyond sRGB

    def fields(self) -> EncodingFields:
        """This encoding as plain, picklable data; ``Encoding(**fields)`` gives it back."""
        return {"format": self.format, "quality": self.quality, "metadata": self.metadata, "colour": self.colour}


def parse_encoding(
    fmt: str | None, quality: str | None, metadata: str | None, colour: str | None = None,
) -> Encoding:
    """Read the ``format``, ``quality``, ``metadata`` and ``colour`` fields (empty means default); raise BadEncoding."""
    fmt = (fmt or "auto").strip().lower()
    if fmt != "auto" and fmt not in OUTPUT_FORMATS:
        raise BadEncoding(f"The format must be one of: auto, {', '.join(OUTPUT_FORMATS)}.")
    level = None
    if quality and quality.strip():
        if not quality.strip().isdigit() or not 1 <= int(quality) <= 100:
            raise BadEncoding("The quality must be a whole number from 1 to 100.")
        level = int(quality)
    metadata = (metadata or "none").strip().lower()
    if metadata not in METADATA_CHOICES:
        raise BadEncoding(f"The metadata option must be one of: {', '.join(METADATA_CHOICES)}.")
    colour = (colour or "srgb").strip().lower()
    if colour not in COLOUR_CHOICES:
        raise BadEncoding(f"The colour option must be one of: {', '.join(COLOUR_CHOICES)}.")
    return Encoding(fmt, level, metadata, colour)


def is_photographic(im: Image.Image, source_format: str) -> bool:
    """Whether lossy output suits the image: a lossy source, or a lossless one with photo-like colour.

    Screenshots and line art use a few thousand colours at most; a photo
    uses tens of thousands even in a 256 px sample (nearest-neighbour, so
    resampling invents no colours).
    """
    if source_format not in LOSSLESS:
        return True
    sample = im.resize((min(im.width, 256), min(im.height, 256)), Image.Resampling.NEAREST)
    return sample.getcolors(maxcolors=4096) is None


def _fits(fmt: str, size: tuple[int, int]) -> bool:
    return max(size) <= MAX_SIDE[fmt]


def output_format(
    im: Image.Image, encoding: Encoding, photographic: bool, animation_of: str | None = None,
) -> tuple[str, str]:
    """Pillow's format and the extension for one output (``animation_of``: an animated source's format).

    ``auto``: lossless content stays PNG; photographic content is JPEG, or
    WebP (lossy with alpha) if it is transparent; an animation keeps its
    source's format (GIF, WebP, APNG; an AVIF one becomes WebP). A format
    that cannot hold the image's size gives way to PNG, which can.
    """
    if encoding.format != "auto":
        return OUTPUT_FORMATS[encoding.format]
    if animation_of is not None:
        fmt = {"GIF": "GIF", "PNG": "PNG"}.get(animation_of, "WEBP")
    elif not photographic:
        fmt = "PNG"
    else:
        fmt = "WEBP" if "A" in im.mode else "JPEG"
    if not _fits(fmt, im.size):
        fmt = "PNG"
    return fmt, EXTENSIONS[fmt]


def check_encodable(calls: list[OpCall], size: tuple[int | None, int | None], encoding: Encoding) -> None:
    """Refuse, before any op runs, a chosen format that cannot hold an output's size (OverLimit).

    A size not known yet (a HEIF whose header did not say) is checked once it is decoded.
    """
    width, height = size
    if encoding.format == "auto" or width is None or height is None:
        return
    fmt = OUTPUT_FORMATS[encoding.format][0]
    for call in calls:
        out = call.output_size((width, height))
        if not _fits(fmt, out):
            raise OverLimit(
                f"{format_name(fmt)} holds at most {MAX_SIDE[fmt]:,} pixels a side, and {call.label} "
                f"would be {out[0]:,}×{out[1]:,}; choose another format, or Auto."
            )


def _frame_options(fmt: str, timing: Timing) -> dict[str, Any]:
    durations, loop, _ = timing
    options: dict[str, Any] = {"save_all": True, "duration": [max(d, 10) if fmt != "PNG" else d for d in durations]}
    if fmt == "GIF":
        if loop is not None:
            options["loop"] = loop
        options["disposal"] = 2  # every frame is whole: clear before drawing the next
    else:  # WebP and APNG count loops the same way; "plays once" is 1
        options["loop"] = 1 if loop is None else loop
    return options


def save(
    frames: list[Image.Image], out_dir: Path, stem: str, encoding: Encoding, *,
    photographic: bool, metadata: dict[int, str], icc: bytes | None = None, timing: Timing | None = None,
) -> Written:
    """Write one output (every frame, with ``timing``, where the format animates) and describe the file.

    ``icc`` is the source's profile to tag colour outputs with (``colour=keep``); sRGB otherwise.
    """
    im = frames[0]
    fmt, ext = output_format(im, encoding, photographic, timing[2] if timing else None)
    if fmt not in ANIMATES:
        frames, timing = [im], None  # a JPEG holds one frame: the first
    if fmt == "JPEG":
        frames = [flatten(im)]
    elif fmt == "GIF" and im.mode == "RGB":
        # Pillow would choose an RGB frame's palette by median cut, about 0.3 s for a 768×768 frame;
        # fast octree, which it already uses for RGBA, takes a fiftieth of that.
        frames = [frame.quantize(256, method=Image.Quantize.FASTOCTREE) for frame in frames]
    # Only what is passed here is written: Pillow would otherwise re-emit the
    # source's comment, XMP or profile from ``info``.
    for frame in frames:
        frame.info.clear()
    options: dict[str, Any] = {}
    if frames[0].mode in ("RGB", "RGBA") and fmt != "GIF":
        options["icc_profile"] = icc or SRGB_ICC
    if metadata and encoding.metadata == "copyright" and fmt != "GIF":
        exif = Image.Exif()
        exif.update(metadata)
        options["exif"] = exif.tobytes()
    quality = encoding.quality or DEFAULT_QUALITY.get(fmt)
    if fmt == "JPEG":
        options.update(quality=quality, optimize=True, progressive=im.width * im.height <= PROGRESSIVE_PIXELS)
    elif fmt == "PNG":
        options.update(compress_level=6)
    elif fmt == "WEBP":
        options.update(quality=quality, method=4)
    elif fmt == "AVIF":
        options.update(quality=quality, speed=8)
    if timing is not None:
        options.update(_frame_options(fmt, timing), append_images=frames[1:])
    path = out_dir / f"{stem}.{ext}"
    try:
        frames[0].save(path, fmt, **options)
    except ValueError as exc:
        if fmt != "WEBP" or str(exc) != WEBP_OUT_OF_MEMORY:
            raise
        path.unlink(missing_ok=True)
        if encoding.format == "auto":  # PNG's encoder streams: it holds what WebP's cannot
            return save(frames, out_dir, stem, replace(encoding, format="png"), photographic=photographic,
                        metadata=metadata, icc=icc, timing=timing)
        raise OverLimit(f"WebP cannot encode a {im.width:,}×{im.height:,} image within a job's memory; "
                        "choose PNG, or Auto.") from exc
    described: Written = {"file": path.name, "width": im.width, "height": im.height, "format": fmt,
                 "bytes": path.stat().st_size}
    if len(frames) > 1:
        # GIF and APNG writers merge a frame identical to the last into it: count what was written.
        with Image.open(path) as written:
            if (count := getattr(written, "n_frames", 1)) > 1:
                described["frames"] = count
    return described
