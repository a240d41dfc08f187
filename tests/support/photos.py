"""Images made on the spot with Pillow: small test images, photos for tests that need many or large ones."""

from __future__ import annotations

import io

from PIL import Image


def image_bytes(size: tuple[int, int] = (640, 480), fmt: str = "JPEG", color: tuple[int, ...] | int = (180, 90, 40),
                mode: str = "RGB") -> bytes:
    """Return an encoded test image made with Pillow."""
    buf = io.BytesIO()
    im = Image.new(mode, size, color)
    # A gradient, so filters and encoders have real work to do.
    for x in range(0, size[0], max(1, size[0] // 32)):
        im.paste((x % 256, 120, 255 - x % 256) if mode == "RGB" else 128, (x, 0, x + 2, size[1]))
    im.save(buf, fmt)
    return buf.getvalue()


def decode(data: bytes) -> Image.Image:
    """Return a fully decoded Pillow image from bytes."""
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def make_photo(width: int, height: int, seed: int) -> bytes:
    """Return a JPEG that compresses like a photo (~0.2 bytes a pixel at quality 90)."""
    coarse = Image.effect_noise((max(1, width // 8), max(1, height // 8)), 40 + seed)
    coarse = coarse.resize((width, height), Image.Resampling.BICUBIC)
    grain = Image.blend(coarse, Image.effect_noise((width, height), 12), 0.25)
    gradient = Image.linear_gradient("L").resize((width, height))
    im = Image.merge("RGB", (grain, gradient, coarse.transpose(Image.Transpose.FLIP_LEFT_RIGHT)))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()
