"""Reading image headers and rendering derivatives with Pillow."""

from __future__ import annotations

import logging
import os
import re
import resource
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import NotRequired, TypedDict

from PIL import Image, UnidentifiedImageError

from storage.records import Header, Output, Preview

from . import formats
from .colour import kept_profile, to_working_mode
from .encode import Encoding, check_encodable, is_photographic, save
from .errors import BadImage, DamagedImage, OverLimit, TooManyPixels, UnsupportedFeature, UnsupportedFormat
from .metadata import displayed_size, exif_of, kept_metadata, turn_of, upright
from .ops import OpCall, parse_ops
from .preview import save_previews

log = logging.getLogger("darkroom.imaging")

# Darkroom refuses every image over its limit itself, from the header and
# before any pixel is decoded (_check_pixels), with one message for every
# size. Pillow's own check (a warning, then its own error past twice its
# limit) would only say the same thing differently.
Image.MAX_IMAGE_PIXELS = None

#: Formats whose several frames are an animation (a TIFF's pages, a HEIF's pictures are not).
ANIMATED = {"GIF", "PNG", "WEBP", "AVIF"}
#: Formats whose other frames are never what a user sees: a JPEG's depth or gain map, PSD's layers.
ONE_PICTURE = {"MPO", "PSD", "JPEG", "ICO", "QOI", "BMP", "JPEG2000"}
#: TIFF compressions every build of libtiff decodes; a TIFF using another that fails names it.
_TIFF_BASELINE = {"raw", "tiff_ccitt", "group3", "group4", "tiff_lzw", "jpeg", "tiff_jpeg", "packbits",
                  "tiff_adobe_deflate", "tiff_deflate", "tiff_raw_16", "tiff_sgilog", "tiff_sgilog24"}
_TIFF_NAMES = {"webp": "WebP", "lzma": "LZMA", "zstd": "Zstandard", "jpeg2000": "JPEG 2000", "lerc": "LERC",
               "tiff_thunderscan": "ThunderScan", "tiff_nextlzw": "NeXT"}
#: How Pillow's decoders say a file uses something they lack (rather than being broken).
_PATH = re.compile(r"'?/[^\s']*'?")
_UNSUPPORTED = re.compile(r"unsupported|not supported|not configured|unknown (compression|pixel format)", re.I)


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    if size[0] * size[1] > max_pixels:
        raise TooManyPixels(
            f"The image is {size[0]:,}×{size[1]:,} pixels; the limit is {max_pixels / 1e6:.0f} megapixels."
        )


def _reason(exc: BaseException) -> str:
    """The decoder's own words, on one line and short (they may hold newlines, byte dumps and paths)."""
    if isinstance(exc, UnidentifiedImageError):  # its words name the server's path
        return "its header does not parse"
    text = " ".join(_PATH.sub("the file", str(exc)).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:119] + "…"


def decoder_failed(fmt: str, exc: BaseException, im: Image.Image | None = None) -> BadImage:
    """The refusal for a decoder that raised ``exc`` on a file of readable format ``fmt``."""
    name = formats.format_name(fmt)
    compression = str(im.info.get("compression", "")) if im is not None and fmt == "TIFF" else ""
    if compression and compression not in _TIFF_BASELINE:
        shown = _TIFF_NAMES.get(compression, compression)
        return UnsupportedFeature(f"This TIFF uses {shown} compression, which Darkroom cannot decode; "
                                  "save it with LZW, Deflate or JPEG compression instead.")
    if _UNSUPPORTED.search(str(exc)):
        return UnsupportedFeature(f"This {name} file uses a feature Darkroom cannot decode ({_reason(exc)}).")
    return DamagedImage(f"This {name} file is damaged or incomplete ({_reason(exc)}).")


def unreadable(path: Path, head: bytes, exc: BaseException | None = None) -> BadImage:
    """The refusal for a file no readable format's decoder could open."""
    fmt = formats.readable_format(head)
    if fmt is not None:
        return decoder_failed(fmt, exc or ValueError("its header does not parse"))
    other = formats.other_format(path, head)
    if other:
        return UnsupportedFormat(f"This is {other}; Darkroom reads {formats.READABLE}.")
    return UnsupportedFormat(f"This file is not an image Darkroom reads; it reads {formats.READABLE}.")


def _open(path: Path, head: bytes, max_pixels: int, allowed: list[str]) -> Image.Image:
    try:
        im = Image.open(path, formats=allowed)
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a decoder raises, the file is what failed
        raise unreadable(path, head, exc) from exc
    try:
        _check_pixels(im.size, max_pixels)
    except TooManyPixels:
        im.close()
        raise
    return im


def _check_isobmff(path: Path, max_pixels: int) -> tuple[int, int] | None:
    """A HEIF or AVIF's declared size, checked against the limit before its decoder reads the file."""
    size = formats.isobmff_size(path)
    if size is not None:
        _check_pixels(size, max_pixels)
    return size


def probe(path: Path, max_pixels: int) -> Header:
    """Read only the header of an image: its format and displayed size. Decodes no pixels.

    HEIC and AVIF are read from their boxes (their size, None if not found);
    the child checks their size again before decoding.
    """
    head = formats.head_of(path)
    fmt = formats.sniff_isobmff(head)
    if fmt:
        size = _check_isobmff(path, max_pixels)
        return {"format": fmt, "width": size[0] if size else None, "height": size[1] if size else None}
    with _open(path, head, max_pixels, formats.HEADER_FORMATS) as im:
        width, height = displayed_size(im)
        return {"format": im.format or "", "width": width, "height": height}


class Rendered(TypedDict):
    """What rendering learnt of the source: its size as shown, its previews, frames or pictures, threads used."""

    width: int
    height: int
    previews: list[Preview]
    frames: NotRequired[int]
    pictures: NotRequired[int]
    threads: int


@dataclass
class Decoded:
    """A source decoded once: its frames in the working mode, with what a viewer and the outputs need."""

    frames: list[Image.Image]
    format: str
    shown: tuple[int, int]  # the size a viewer sees (not a reduced decode's)
    kept: dict[int, str] = field(default_factory=dict)  # the metadata a user may keep
    icc: bytes | None = None  # the source's profile, kept with ``colour=keep``
    count: int = 1  # the frames (an animation) or pictures (a TIFF's pages) the source holds
    animated: bool = False  # the source is an animation, whether or not all its frames fit the budget
    durations: list[int] = field(default_factory=list)
    loop: int | None = None  # None: plays once


def _frames_to_read(im: Image.Image, fmt: str, count: int, max_pixels: int) -> int:
    """How many frames to decode: all of an animation whose frames × pixels fit the limit, else one."""
    animated = fmt in ANIMATED and count > 1 and bool(getattr(im, "is_animated", False))
    return count if animated and count * im.width * im.height <= max_pixels else 1


def decode(path: Path, max_pixels: int, *, reduced_to: tuple[int, int] | None = None,
           keep_colour: bool = False) -> Decoded:
    """Decode the source once, upright, as 8-bit L/LA/RGB/RGBA: every frame of an animation that fits.

    With ``reduced_to``, a JPEG may decode at 1/2, 1/4 or 1/8 of its size, still
    at least that large. Colour becomes sRGB unless ``keep_colour`` (then an RGB
    source's own profile is kept). Whatever the decoder raises is the file's fault
    (:class:`DamagedImage` or :class:`UnsupportedFeature`); what follows is Darkroom's.
    """
    from . import child_codecs  # noqa: F401  (HEIC and the rest: only where pixels are decoded)

    head = formats.head_of(path)
    sniffed = formats.sniff_isobmff(head)
    if sniffed:
        _check_isobmff(path, max_pixels)
    im = _open(path, head, max_pixels, formats.DECODERS)
    fmt = im.format or sniffed or ""
    stored = im.size
    with im:
        try:
            # A TIFF's EXIF is read from the file, which loading closes: before the pixels. A PNG's
            # may follow its pixels, and reading it first would load them outside this check.
            # (An EXIF block read before is lazy: its orientation too is read now.)
            exif = exif_of(im) if fmt != "PNG" else None
            turn = turn_of(exif) if exif is not None else None
            raw, count = _read(im, fmt, max_pixels, reduced_to)
            exif = exif_of(im) if exif is None else exif
        except BadImage:
            raise
        except MemoryError as exc:  # the file asks for more than a job may hold: a limit, not a bug
            raise OverLimit("Decoding this image needs more memory than one photo may use.") from exc
        except Image.DecompressionBombError as exc:  # a frame larger than the picture it belongs to
            raise OverLimit(f"A frame of this image is larger than the limit of {max_pixels / 1e6:.0f} "
                            "megapixels.") from exc
        except Exception as exc:  # noqa: BLE001 - the decoder's failure: the file's, not Darkroom's
            raise decoder_failed(fmt, exc, im) from exc
        turn = turn_of(exif) if turn is None else turn
        kept, icc = kept_metadata(im, exif), kept_profile(im) if keep_colour else None
    frames = [to_working_mode(upright(frame, turn), srgb=icc is None) for frame, _ in raw]
    if len({f.mode for f in frames}) > 1:  # a GIF's later frames may gain alpha the first lacked
        frames = [f.convert("RGBA" if f.mode in ("RGB", "RGBA") else "LA") for f in frames]
    animated = fmt in ANIMATED and count > 1
    for frame in frames:
        frame.info.clear()  # comments, XMP, GPS: never carried to an output
    shown = (stored[1], stored[0]) if turn in (5, 6, 7, 8) else stored
    return Decoded(frames, fmt, shown, kept, icc, count, animated, [d for _, d in raw],
                   raw_loop(im) if animated else None)


def raw_loop(im: Image.Image) -> int | None:
    """How often an animation repeats (0: for ever), None if it plays once."""
    loop = im.info.get("loop")
    return loop if isinstance(loop, int) else None


def _read(im: Image.Image, fmt: str, max_pixels: int,
          reduced_to: tuple[int, int] | None) -> tuple[list[tuple[Image.Image, int]], int]:
    """The decoder's part: each frame to keep with its duration (ms), and how many the source holds."""
    count = 1 if fmt in ONE_PICTURE else getattr(im, "n_frames", 1)
    wanted = _frames_to_read(im, fmt, count, max_pixels)
    if reduced_to is not None and fmt in ("JPEG", "MPO") and wanted == 1:
        # DCT scaling, in the decoder; the box is in stored (not yet upright) pixels.
        upright_size = displayed_size(im)
        im.draft(None, reduced_to if upright_size == im.size else (reduced_to[1], reduced_to[0]))
    frames = []
    # A later frame may claim a larger canvas than the header: Pillow checks each seek against this.
    pillow_limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels // 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            for index in range(wanted):
                if index:
                    im.seek(index)
                im.load()
                frame = im.copy()  # with its info: the profile and transparency to_working_mode reads
                frames.append((frame, int(im.info.get("duration") or 0)))
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit
    return frames, count


#: Told of the op being worked on (None once all are done) and of every op done so far.
ProgressCallback = Callable[[OpCall | None, list[OpCall]], None]

#: What one output in progress holds, in multiples of its source's decoded bytes: the op's
#: result, a working copy (premultiplied alpha, a JPEG's flattened frame) and the encoder's buffers.
WORKING_COPIES = 3
#: Address space each further thread reserves besides its images: its stack and its own malloc arena.
THREAD_RESERVE = 72 * 2**20


def reduced_size(calls: list[OpCall]) -> tuple[int, int] | None:
    """The smallest decode that still makes every output exactly, if every op shrinks; else None."""
    if not all(c.op.shrinks and c.op.needs for c in calls):
        return None
    needs = [c.op.needs(c.value) for c in calls if c.op.needs]
    return max(n[0] for n in needs), max(n[1] for n in needs)


def threads_memory_allows(frames: list[Image.Image]) -> int:
    """How many outputs of ``frames`` may be in progress at once within this process's address-space limit."""
    limit, _ = resource.getrlimit(resource.RLIMIT_AS)
    if limit == resource.RLIM_INFINITY:
        return len(os.sched_getaffinity(0))
    with open("/proc/self/statm") as statm:
        in_use = int(statm.read().split()[0]) * resource.getpagesize()
    decoded = sum(len(frame.getbands()) * frame.width * frame.height for frame in frames)
    one = WORKING_COPIES * decoded  # the thread the job runs on anyway
    return max(1, 1 + (limit - in_use - one) // (one + THREAD_RESERVE))


def _on_threads(order: list[int], workers: int, make: Callable[[int], Output],
               ) -> Iterator[tuple[int, Output]]:
    """``make`` each index of ``order`` on up to ``workers`` threads, begun in that order.

    Yields ``(index, output)`` as each ends.
    """
    if workers <= 1:
        yield from ((index, make(index)) for index in order)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="darkroom-output") as pool:
        futures = {pool.submit(make, index): index for index in order}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:  # an op that failed fails the job: the outputs not yet begun are not made
            pool.shutdown(cancel_futures=True)


def render(
    source: Path,
    out_dir: Path,
    ops: Sequence[str],
    max_pixels: int,
    on_op: ProgressCallback | None = None,
    encoding: Encoding | None = None,
    threads: int = 1,
) -> tuple[Rendered, list[Output]]:
    """Decode ``source`` once, apply each op to every frame and save its output into ``out_dir``.

    The outputs are made on up to ``threads`` threads at once (Pillow's filters
    and encoders release the GIL), fewer if this process's memory limit would
    not hold them. Returns what was decoded (``width``, ``height`` as shown,
    ``frames`` of an animation, ``pictures`` of a multi-page file, ``previews``
    of the source, ``threads`` used) and one description per output, in the order of ``ops``,
    each with its time in milliseconds and its ``previews`` (of the first frame).
    """
    encoding = encoding or Encoding()
    calls = parse_ops(ops)
    src = decode(source, max_pixels, reduced_to=reduced_size(calls), keep_colour=encoding.colour == "keep")
    # Every output must fit its format before any op runs (a HEIC's size is known only now).
    check_encodable(calls, src.shown, encoding)
    first = src.frames[0]
    photographic = is_photographic(first, src.format)
    decoded: Rendered = {"width": src.shown[0], "height": src.shown[1], "threads": 1,
                         "previews": save_previews(first, out_dir, "source", icc=src.icc,
                                                         file=None if src.animated else (src.format, src.shown))}
    if src.count > 1 and src.animated:
        decoded["frames"] = src.count
    elif src.count > 1:
        decoded["pictures"] = src.count

    def make(call: OpCall) -> Output:
        started = time.perf_counter()
        results = [call.apply(frame) for frame in src.frames]
        written = save(results, out_dir, call.stem, encoding, photographic=photographic, metadata=src.kept,
                       icc=src.icc, timing=(src.durations, src.loop, src.format) if len(results) > 1 else None)
        ms = round((time.perf_counter() - started) * 1000, 1)
        # A JPEG has no alpha: its preview shows the white background it was written on.
        previews = save_previews(results[0], out_dir, call.stem, opaque=written["format"] == "JPEG",
                                 icc=src.icc, file=None if "frames" in written else
                                 (written["format"], (written["width"], written["height"])))
        return {"op": call.spec, "label": call.label, **written, "ms": ms, "previews": previews}

    workers = decoded["threads"] = min(threads, len(calls), threads_memory_allows(src.frames))
    order = sorted(range(len(calls)), key=lambda index: -calls[index].op.cost)  # the longest first
    outputs: dict[int, Output] = {}
    if on_op:
        on_op(calls[order[0]], [])
    for index, output in _on_threads(order, workers, lambda index: make(calls[index])):
        outputs[index] = output
        if on_op:  # the first not done of those begun in order is being worked on
            on_op(next((calls[i] for i in order if i not in outputs), None), [calls[i] for i in outputs])
    return decoded, [outputs[index] for index in range(len(calls))]


__all__ = ["BadImage", "DamagedImage", "Decoded", "OverLimit", "TooManyPixels", "UnsupportedFeature",
           "UnsupportedFormat", "decode", "probe", "render"]
