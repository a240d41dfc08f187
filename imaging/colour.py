"""Colour, depth and transparency: what a decoded image becomes before any op sees it.

Every op works on 8-bit ``L``, ``LA``, ``RGB`` or ``RGBA`` pixels in sRGB.
Colour-managed inputs (Display P3, Adobe RGB, CMYK with a profile) are
converted with LittleCMS (``PIL.ImageCms``); outputs in colour are tagged sRGB.
"""

from __future__ import annotations

import io
import logging

from PIL import Image, ImageCms

log = logging.getLogger("darkroom.imaging")

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
#: Embedded in every colour output, so no viewer has to guess (588 bytes).
SRGB_ICC = SRGB.tobytes()

#: Where a transparent image is flattened for a format without alpha (JPEG).
BACKGROUND = (255, 255, 255)

def to_srgb(im: Image.Image) -> Image.Image:
    """Convert an image carrying an ICC profile to sRGB pixels; untagged images are sRGB already.

    A greyscale image keeps its grey levels (its profile is dropped with the
    rest of the metadata). A profile LittleCMS cannot read, or one that does
    not match the image's mode, is ignored, as a browser would.
    """
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "RGBA", "CMYK"):
        return im
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "sRGB" in ImageCms.getProfileDescription(profile):
            return im
        out = ImageCms.profileToProfile(im, profile, SRGB, outputMode="RGBA" if im.mode == "RGBA" else "RGB")
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        log.info("ignoring an unusable ICC profile: %s", exc)
        return im
    assert out is not None  # profileToProfile returns None only with inPlace
    return out


def kept_profile(im: Image.Image) -> bytes | None:
    """The source's own RGB profile when it is not sRGB (``colour=keep`` tags outputs with it), else None."""
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "RGBA"):
        return None
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if profile.profile.xcolor_space.strip() != "RGB" or "sRGB" in ImageCms.getProfileDescription(profile):
            return None
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        log.info("ignoring an unusable ICC profile: %s", exc)
        return None
    return bytes(icc)


def to_8bit(im: Image.Image) -> Image.Image:
    """Scale 16-bit and 32-bit greyscale to 8 bits, keeping every tone (not clipping to white)."""
    if im.mode.startswith("I;16"):
        im, top = im.convert("I"), 65535.0
    elif im.mode in ("I", "F"):
        _, high = im.getextrema()  # one band: (low, high)
        assert isinstance(high, (int, float))
        # Integers up to 16 bits are 16-bit samples; floats up to 1 are fractions.
        top = float(high) if high > 65535 else 65535.0 if high > 255 else 1.0 if im.mode == "F" else 255.0
    else:
        return im
    return im.point(lambda v: v * (255.0 / top)).convert("L")


def to_working_mode(im: Image.Image, *, srgb: bool = True) -> Image.Image:
    """Return ``im`` as 8-bit L, LA, RGB or RGBA pixels (alpha kept where it exists).

    Colour is converted to sRGB unless ``srgb`` is false (the source's profile is kept).
    """
    im = to_8bit(to_srgb(im) if srgb else im)
    has_alpha = im.mode in ("LA", "La", "RGBA", "RGBa", "PA") or "transparency" in im.info
    grey = im.mode in ("1", "L", "LA", "La")
    target = ("LA" if has_alpha else "L") if grey else ("RGBA" if has_alpha else "RGB")
    return im if im.mode == target else im.convert(target)


def flatten(im: Image.Image) -> Image.Image:
    """Composite a transparent image onto :data:`BACKGROUND` (for formats without alpha)."""
    if "A" not in im.mode:
        return im
    mode = im.mode[:-1]
    background = Image.new(mode, im.size, BACKGROUND if mode == "RGB" else BACKGROUND[0])
    background.paste(im.convert(mode), mask=im.getchannel("A"))
    return background
