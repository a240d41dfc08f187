"""ICC profiles for wide-gamut test images, built byte by byte (Pillow's ImageCms can only create sRGB).

A matrix/TRC display profile (ICC v4): D50-adapted colorants and a tone curve,
the same structure as Apple's Display P3 and Adobe RGB (1998) profiles.
"""

import io
import struct

from PIL import ImageCms

D50 = (0.9642, 1.0, 0.8249)

# D50-adapted colorants (Bradford), as published in each space's reference profile.
DISPLAY_P3 = {"r": (0.5151, 0.2412, -0.0011), "g": (0.2920, 0.6922, 0.0419), "b": (0.1571, 0.0666, 0.7841)}
ADOBE_RGB = {"r": (0.6097, 0.3111, 0.0195), "g": (0.2053, 0.6257, 0.0609), "b": (0.1492, 0.0632, 0.7446)}

#: The linear-light matrices from each space to sRGB (both D65), from their published primaries.
P3_TO_SRGB = ((1.2249, -0.2247, 0.0), (-0.0420, 1.0419, 0.0), (-0.0197, -0.0786, 1.0979))
ADOBE_TO_SRGB = ((1.3982, -0.3982, 0.0), (0.0, 1.0, 0.0), (0.0, -0.0429, 1.0429))
ADOBE_GAMMA = 563 / 256


def _s15(value):
    return struct.pack(">i", round(value * 65536))


def _xyz(values):
    return b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in values)


def _text(text):
    utf16 = text.encode("utf-16-be")
    return b"mluc\0\0\0\0" + struct.pack(">II2s2sII", 1, 12, b"en", b"US", len(utf16), 28) + utf16


def _srgb_curve():
    # Parametric type 3: the sRGB transfer function.
    params = (2.4, 1 / 1.055, 0.055 / 1.055, 1 / 12.92, 0.04045)
    return b"para\0\0\0\0" + struct.pack(">HH", 3, 0) + b"".join(_s15(p) for p in params)


def _gamma_curve(gamma):
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"


def rgb_profile(description, colorants, curve):
    """Return the bytes of an RGB display profile; LittleCMS must accept it (checked here)."""
    tags = [(b"desc", _text(description)), (b"cprt", _text("No copyright, use freely")),
            (b"wtpt", _xyz(D50)), (b"rXYZ", _xyz(colorants["r"])), (b"gXYZ", _xyz(colorants["g"])),
            (b"bXYZ", _xyz(colorants["b"])), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        table += struct.pack(">4sII", signature, offset + len(data), len(body))
        data += body + b"\0" * (-len(body) % 4)
    size = offset + len(data)
    header = struct.pack(">I4sI4s4s4s6H4s", size, b"\0" * 4, 0x04300000, b"mntr", b"RGB ", b"XYZ ",
                         2026, 1, 1, 0, 0, 0, b"acsp")
    header += b"\0" * (64 - len(header)) + struct.pack(">I", 0) + b"".join(_s15(v) for v in D50)
    header += b"\0" * (128 - len(header))
    profile = header + struct.pack(">I", len(tags)) + table + data
    ImageCms.ImageCmsProfile(io.BytesIO(profile))  # raises if LittleCMS cannot read it
    return profile


def display_p3():
    return rgb_profile("Display P3 (test)", DISPLAY_P3, _srgb_curve())


def adobe_rgb():
    return rgb_profile("Adobe RGB (1998) (test)", ADOBE_RGB, _gamma_curve(ADOBE_GAMMA))


def _srgb_decode(v):
    return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4


def _srgb_encode(v):
    v = min(max(v, 0.0), 1.0)
    return 12.92 * v if v <= 0.0031308 else 1.055 * v ** (1 / 2.4) - 0.055


def expected_srgb(rgb, matrix, decode):
    """The sRGB 8-bit value of ``rgb`` in a space with linear ``matrix`` to sRGB, worked out by hand."""
    linear = [decode(c / 255) for c in rgb]
    return tuple(round(255 * _srgb_encode(sum(m * c for m, c in zip(row, linear, strict=True))))
                 for row in matrix)


def p3_to_srgb(rgb):
    return expected_srgb(rgb, P3_TO_SRGB, _srgb_decode)


def adobe_to_srgb(rgb):
    return expected_srgb(rgb, ADOBE_TO_SRGB, lambda v: v ** ADOBE_GAMMA)
