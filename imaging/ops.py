"""The image operations: each takes a decoded image and returns a new one."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from PIL import Image, ImageFilter, ImageOps

THUMBNAIL_BOX = (320, 320)


@dataclass(frozen=True)
class Op:
    """A named operation with the label a person sees next to its checkbox."""

    name: str
    label: str
    apply: Callable[[Image.Image], Image.Image]
    shrinks: bool = False  # output is far smaller than the source: may decode reduced


OPS: dict[str, Op] = {}


def register(name: str, label: str, *, shrinks: bool = False):
    """Decorator adding a function ``Image -> Image`` to the registry under ``name``."""

    def add(fn: Callable[[Image.Image], Image.Image]) -> Callable[[Image.Image], Image.Image]:
        OPS[name] = Op(name, label, fn, shrinks)
        return fn

    return add


def load_plugins(modules: Iterable[str]) -> None:
    """Import modules (named by the operator's config) that register more ops."""
    for module in modules:
        importlib.import_module(module)


def _rgb(im: Image.Image) -> Image.Image:
    return im if im.mode == "RGB" else im.convert("RGB")


@register("thumbnail", f"Thumbnail ({THUMBNAIL_BOX[0]} px)", shrinks=True)
def thumbnail(im: Image.Image) -> Image.Image:
    # reducing_gap: shrink by an integer factor with reduce() first, then
    # resample the last 2x; nearly a full LANCZOS's quality at a fraction of its cost.
    return im.resize(_fit(im.size, THUMBNAIL_BOX), Image.Resampling.LANCZOS, reducing_gap=2.0)


def _fit(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    scale = min(box[0] / size[0], box[1] / size[1], 1.0)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


@register("grayscale", "Grayscale")
def grayscale(im: Image.Image) -> Image.Image:
    return im.convert("LA") if "A" in im.mode else im.convert("L")


@register("blur", "Blur (radius 4)")
def blur(im: Image.Image) -> Image.Image:
    return im.filter(ImageFilter.GaussianBlur(4))


@register("sharpen", "Sharpen")
def sharpen(im: Image.Image) -> Image.Image:
    return im.filter(ImageFilter.UnsharpMask(radius=2, percent=150, threshold=3))


@register("edges", "Edges")
def edges(im: Image.Image) -> Image.Image:
    return im.convert("L").filter(ImageFilter.FIND_EDGES)


@register("sepia", "Sepia")
def sepia(im: Image.Image) -> Image.Image:
    return ImageOps.colorize(im.convert("L"), black="#2e1f0f", white="#fff3dc", mid="#a67c52")


@register("rotate", "Rotate 90° clockwise")
def rotate(im: Image.Image) -> Image.Image:
    return im.transpose(Image.Transpose.ROTATE_270)


@register("invert", "Invert colours")
def invert(im: Image.Image) -> Image.Image:
    if im.mode == "RGBA":
        r, g, b, a = im.split()
        return Image.merge("RGBA", (*ImageOps.invert(Image.merge("RGB", (r, g, b))).split(), a))
    return ImageOps.invert(_rgb(im) if im.mode not in ("L", "RGB") else im)


DEFAULT_OPS = ("thumbnail", "grayscale", "sepia")
