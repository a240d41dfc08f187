"""Photos made on the spot, for tests that need many or large ones."""

from __future__ import annotations

import io

from PIL import Image


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
