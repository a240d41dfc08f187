"""Small previews of every image of a job, for the gallery's tiles.

A tile shows an image about 170 px wide (two to a row on a phone). Loading
the full 24 MP file there costs megabytes per tile; a WebP preview at one
and two times that size costs a few kilobytes, and the browser picks the
one that fits the screen from ``srcset``.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from storage.records import Preview

from .colour import flatten

#: The long sides of the previews, smallest first: 1× and 2× a tile.
PREVIEW_SIZES = (240, 480)
PREVIEW_QUALITY = 75
#: Formats a tile may show as they are, where the image is no larger than the smallest preview.
SHOWN_AS_IS = {"JPEG", "PNG", "GIF", "WEBP"}


def save_previews(
    im: Image.Image, out_dir: Path, stem: str, *, opaque: bool = False, icc: bytes | None = None,
    file: tuple[str, tuple[int, int]] | None = None,
) -> list[Preview]:
    """Write WebP previews of ``im`` at each of PREVIEW_SIZES and describe them, smallest first.

    An image smaller than a preview size gets no larger copy of itself, and
    none at all if its ``file`` (a still image: its format and size) is one
    every browser shows, no larger than the smallest preview: its tile shows the file. With
    ``opaque`` (the output is a JPEG), the previews show the background the
    output was flattened onto. ``icc`` tags colour previews with a kept wide-gamut profile.
    """
    if file and file[0] in SHOWN_AS_IS and max(file[1]) <= PREVIEW_SIZES[0]:
        return []
    previews: list[Preview] = []
    current = im
    for size in sorted(PREVIEW_SIZES, reverse=True):
        if previews and max(current.size) <= size:
            continue  # the image is no larger than this: the preview already made serves
        scale = min(1.0, size / max(current.size))
        box = (max(1, round(current.width * scale)), max(1, round(current.height * scale)))
        # A new image, never im itself (its info is cleared below). reducing_gap:
        # shrink by whole factors first (fast), then resample the rest well.
        current = current.resize(box, Image.Resampling.LANCZOS, reducing_gap=3.0)
        if opaque:
            current = flatten(current)
        path = out_dir / f"preview-{stem}-{size}.webp"
        current.info.clear()
        profile = {"icc_profile": icc} if icc and current.mode in ("RGB", "RGBA") else {}
        current.save(path, "WEBP", quality=PREVIEW_QUALITY, method=4, **profile)
        previews.append({"file": path.name, "width": current.width, "height": current.height,
                         "bytes": path.stat().st_size})
    return previews[::-1]
