"""The image operations: each takes a decoded image (and its argument) and returns a new one.

An op is asked for by name, optionally with one argument after a colon:
``thumbnail``, ``thumbnail:640``, ``rotate:45``, ``resize:800x600,cover``.
:func:`parse_op` checks the argument and gives the op's canonical spelling,
which names its output file: only text this module wrote reaches a path.
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw, ImageFilter, ImageOps

#: An op's function: ``(Image) -> Image``, or ``(Image, value) -> Image`` for an op with a param.
OpFunction = Callable[..., Image.Image]


class BadOp(ValueError):
    """An op name or argument the registry does not accept (a user error)."""


@dataclass(frozen=True)
class Param:
    """An op's one argument: its default (as text), what it means, and how to read it.

    ``read`` turns the text into ``(value, canonical_text)`` or raises ValueError.
    """

    default: str
    help: str  # "a longest edge in px, 16 to 4096": in the form, the README and every 400
    read: Callable[[str], tuple[Any, str]]
    shown: str = "{}"  # how a label shows the argument: "{} px", "radius {}"
    options: tuple[str, ...] = ()  # a second part after a comma, chosen from a list ("cover")

    @property
    def around(self) -> tuple[str, str]:
        """The text before and after the argument's field in the form: ("radius", ""), ("", "px")."""
        before, _, after = self.shown.partition("{}")
        return before.strip(), after.strip()


@dataclass(frozen=True)
class Op:
    """A named operation with the label a person sees next to its checkbox."""

    name: str
    label: str
    apply: Callable[..., Image.Image]  # (im) or, with a param, (im, value)
    shrinks: bool = False  # output is far smaller than the source: may decode reduced
    param: Param | None = None
    # With shrinks: the smallest decoded size (w, h) that still makes the output exactly.
    needs: Callable[[Any], tuple[int, int]] | None = None
    # Time relative to grayscale's on the same image, encoding and previews included
    # (12 MP photo): what the progress bar advances by when the op is done.
    cost: float = 1.5
    # The output's size for a source of ``size`` and the op's argument (ops that keep it: None).
    sized: Callable[[tuple[int, int], Any], tuple[int, int]] | None = None


@dataclass(frozen=True)
class OpCall:
    """One requested op with its argument read: what the child applies."""

    op: Op
    value: Any
    spec: str  # canonical: "thumbnail" for the default, "thumbnail:640" otherwise

    @property
    def stem(self) -> str:
        """The output file's name without extension: ``thumbnail``, ``rotate-45``, ``resize-800x600-cover``."""
        return self.spec.replace(":", "-").replace(",", "-")

    @property
    def label(self) -> str:
        """What a person sees under the output: "Thumbnail (640 px)", "Grayscale"."""
        if self.op.param is None:
            return self.op.label
        arg = self.spec.partition(":")[2] or self.op.param.default
        return f"{self.op.label} ({self.op.param.shown.format(arg)})"

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The size of this op's output for a source of ``size``, without running it."""
        return size if self.op.sized is None else self.op.sized(size, self.value)

    def apply(self, im: Image.Image) -> Image.Image:
        """Run the op on ``im``."""
        return self.op.apply(im) if self.op.param is None else self.op.apply(im, self.value)


OPS: dict[str, Op] = {}


def register(
    name: str, label: str, *, shrinks: bool = False, param: Param | None = None,
    needs: Callable[[Any], tuple[int, int]] | None = None, cost: float = Op.cost,
    sized: Callable[[tuple[int, int], Any], tuple[int, int]] | None = None,
) -> Callable[[OpFunction], OpFunction]:
    """Decorator adding a function ``Image -> Image`` (``(Image, value) -> Image`` with a param)."""

    def add(fn: OpFunction) -> OpFunction:
        OPS[name] = Op(name, label, fn, shrinks, param, needs, cost, sized)
        return fn

    return add


def load_plugins(modules: Iterable[str]) -> None:
    """Import modules (named by the operator's config) that register more ops."""
    for module in modules:
        importlib.import_module(module)


def parse_op(text: str) -> OpCall:
    """Read ``name`` or ``name:argument``; raise BadOp with the allowed names or range."""
    name, colon, arg = text.partition(":")
    op = OPS.get(name)
    if op is None:
        raise BadOp(_unknown([name]))
    if op.param is None:
        if colon:
            raise BadOp(f"The operation {name!r} takes no argument.")
        return OpCall(op, None, name)
    try:
        value, canonical = op.param.read(arg.strip() if colon else op.param.default)
    except ValueError:
        raise BadOp(f"{_shown(text)} is not valid: {name} takes {op.param.help}.") from None
    _, default = op.param.read(op.param.default)
    return OpCall(op, value, name if canonical == default else f"{name}:{canonical}")


def parse_ops(texts: Iterable[str]) -> list[OpCall]:
    """Read every requested op, deduplicated by canonical spelling, in order; raise BadOp.

    Unknown names come first, all in one message (a few named, then how many more).
    """
    texts = list(texts)
    unknown = [text for text in texts if text.partition(":")[0] not in OPS]
    if unknown:
        raise BadOp(_unknown(unknown))
    calls: dict[str, OpCall] = {}
    for text in texts:
        call = parse_op(text)
        calls.setdefault(call.spec, call)
    return list(calls.values())


def _unknown(names: list[str]) -> str:
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return f"Unknown operation {', '.join(_shown(n) for n in names[:3])}{more}; choose from: {', '.join(OPS)}."


def _shown(text: str) -> str:
    # Quoted and shortened: a message must not grow with what the client sent.
    return repr("".join(c for c in text if c.isprintable())[:30])


def number(low: float, high: float, *, whole: bool = False) -> Callable[[str], tuple[Any, str]]:
    """A reader of a number from ``low`` to ``high`` (a whole number with ``whole``)."""

    def read(text: str) -> tuple[Any, str]:
        value = float(text)  # ValueError for anything that is not a number
        if not math.isfinite(value) or not low <= value <= high or (whole and not value.is_integer()):
            raise ValueError(text)
        return (int(value), str(int(value))) if whole else (value, f"{value:g}")

    return read


def _degrees(text: str) -> tuple[float, str]:
    value, _ = number(-360, 360)(text)
    value %= 360  # -90 and 270 are one rotation, with one file name
    return value, f"{value:g}"


_BOX = re.compile(r"(\d{1,5})x(\d{1,5})(?:,(contain|cover))?")
MAX_EDGE = 8192


def _box(text: str) -> tuple[tuple[int, int, str], str]:
    match = _BOX.fullmatch(text.lower())
    if not match or not all(1 <= int(n) <= MAX_EDGE for n in match.group(1, 2)):
        raise ValueError(text)
    width, height, fit = int(match[1]), int(match[2]), match[3] or "contain"
    return (width, height, fit), f"{width}x{height}" + (",cover" if fit == "cover" else "")


def _premultiplied(im: Image.Image, fn: Callable[[Image.Image], Image.Image]) -> Image.Image:
    """Apply a filter to colour weighted by alpha, so transparent pixels lend no colour to edges."""
    weighted = {"RGBA": "RGBa", "LA": "La"}.get(im.mode)
    return fn(im.convert(weighted)).convert(im.mode) if weighted else fn(im)


def _with_alpha_of(source: Image.Image, out: Image.Image) -> Image.Image:
    """``out`` with ``source``'s transparency, for ops that work on grey levels."""
    if "A" in source.mode:
        out = out.convert("RGBA" if out.mode == "RGB" else "LA")
        out.putalpha(source.getchannel("A"))
    return out


def _fit(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    scale = min(box[0] / size[0], box[1] / size[1], 1.0)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _contain(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The largest size of ``size``'s shape inside ``box`` (enlarging too), never 0 a side."""
    if size[0] * box[1] > box[0] * size[1]:  # wider than the box: its width sets the scale
        return box[0], max(1, round(size[1] / size[0] * box[0]))
    return max(1, round(size[0] / size[1] * box[1])), box[1]


def _resized(size: tuple[int, int], box: tuple[int, int, str]) -> tuple[int, int]:
    return (box[0], box[1]) if box[2] == "cover" else _contain(size, box[:2])


def _rotated(size: tuple[int, int], degrees: float) -> tuple[int, int]:
    if degrees in (0, 180):
        return size
    if degrees in (90, 270):
        return size[1], size[0]
    # As Pillow's expand=True: the turned corners' extent, each edge rounded outwards.
    turn = math.radians(degrees)
    cos, sin = math.cos(turn), math.sin(turn)
    corners = [(x - size[0] / 2, y - size[1] / 2) for x, y in ((0, 0), (size[0], 0), size, (0, size[1]))]
    xs = [cos * x + sin * y for x, y in corners]
    ys = [-sin * x + cos * y for x, y in corners]
    return math.ceil(max(xs)) - math.floor(min(xs)), math.ceil(max(ys)) - math.floor(min(ys))


@register(
    "thumbnail", "Thumbnail", shrinks=True,
    param=Param("320", "a longest edge in px, 16 to 4096", number(16, 4096, whole=True), "{} px"),
    needs=lambda edge: (2 * edge, 2 * edge), cost=0.3, sized=lambda size, edge: _fit(size, (edge, edge)),
)
def thumbnail(im: Image.Image, edge: int) -> Image.Image:
    # Never enlarges. reducing_gap: shrink by an integer factor with reduce()
    # first, then resample the last 2x; nearly a full LANCZOS's quality at a
    # fraction of its cost. Pillow resizes RGBA premultiplied.
    return im.resize(_fit(im.size, (edge, edge)), Image.Resampling.LANCZOS, reducing_gap=2.0)


@register(
    "resize", "Resize", shrinks=True,
    param=Param("1024x768", "WIDTHxHEIGHT (1 to 8192 px), optionally ,contain (fit inside, the default) "
                "or ,cover (fill, cropped at the centre)", _box, "to {}", ("contain", "cover")),
    needs=lambda box: (2 * box[0], 2 * box[1]), cost=1.3, sized=_resized,
)
def resize(im: Image.Image, box: tuple[int, int, str]) -> Image.Image:
    width, height, fit = box
    if fit == "cover":
        return ImageOps.fit(im, (width, height), Image.Resampling.LANCZOS, centering=(0.5, 0.5))
    # Not ImageOps.contain: it rounds a side of a long strip to 0 pixels.
    return im.resize(_contain(im.size, (width, height)), Image.Resampling.LANCZOS)


@register("grayscale", "Grayscale", cost=1)
def grayscale(im: Image.Image) -> Image.Image:
    return im.convert("LA") if "A" in im.mode else im.convert("L")


@register("blur", "Blur", param=Param("4", "a radius in px, 0.1 to 100", number(0.1, 100), "radius {}"), cost=4.3)
def blur(im: Image.Image, radius: float) -> Image.Image:
    return _premultiplied(im, lambda i: i.filter(ImageFilter.GaussianBlur(radius)))


@register("sharpen", "Sharpen", cost=5.5)
def sharpen(im: Image.Image) -> Image.Image:
    return _premultiplied(im, lambda i: i.filter(ImageFilter.UnsharpMask(radius=2, percent=150, threshold=3)))


#: Edge strengths below this are grain, not lines: they stay paper-white.
EDGE_THRESHOLD = 10
#: How much darker each step of edge strength above the threshold draws its line.
EDGE_GAIN = 10
_EDGE_INK = [255 - max(0, min(255, (v - EDGE_THRESHOLD) * EDGE_GAIN)) for v in range(256)]


@register("edges", "Edges", cost=2)
def edges(im: Image.Image) -> Image.Image:
    """A line drawing: dark lines on white where the photo has edges.

    The grey image is smoothed in proportion to its size first (a 12 MP
    photo's grain would otherwise draw lines of its own), and weak edges are
    left white, so the drawing is mostly paper and encodes smaller than the photo.
    """
    grey = im.convert("L").filter(ImageFilter.GaussianBlur(max(1.0, max(im.size) / 800)))
    drawing = grey.filter(ImageFilter.FIND_EDGES).point(_EDGE_INK)
    # FIND_EDGES leaves a one-pixel frame of garbage: the paper goes to the border.
    ImageDraw.Draw(drawing).rectangle((0, 0, drawing.width - 1, drawing.height - 1), outline=255)
    return _with_alpha_of(im, drawing)


@register("sepia", "Sepia", cost=1.4)
def sepia(im: Image.Image) -> Image.Image:
    toned = ImageOps.colorize(im.convert("L"), black="#2e1f0f", white="#fff3dc", mid="#a67c52")
    return _with_alpha_of(im, toned)


@register(
    "rotate", "Rotate",
    param=Param("90", "degrees clockwise, -360 to 360 (other than multiples of 90, the canvas "
                "grows and its new corners are transparent)", _degrees, "{}° clockwise"), cost=1.5, sized=_rotated,
)
def rotate(im: Image.Image, degrees: float) -> Image.Image:
    quarter: dict[float, Image.Transpose | None] = {
        0: None, 90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90,
    }
    if degrees in quarter:  # exact: pixels move, none is resampled
        method = quarter[degrees]
        return im.copy() if method is None else im.transpose(method)
    clear = im if "A" in im.mode else im.convert("LA" if im.mode == "L" else "RGBA")
    return _premultiplied(
        clear, lambda i: i.rotate(-degrees, Image.Resampling.BICUBIC, expand=True, fillcolor=0)
    )


@register("invert", "Invert colours", cost=1.8)
def invert(im: Image.Image) -> Image.Image:
    colour = im.convert(im.mode.rstrip("A")) if "A" in im.mode else im
    return _with_alpha_of(im, ImageOps.invert(colour))


DEFAULT_OPS = ("thumbnail", "grayscale", "sepia")
