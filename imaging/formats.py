"""Which formats Darkroom reads and writes, how to tell what a file is, and each encoder's size limit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from PIL import Image

#: Formats Darkroom reads, as Pillow names them: the extension a source is stored under and
#: the name people know. MPO is Pillow's name for a JPEG holding several pictures (a phone's
#: depth or gain map, a camera's preview): the first picture is the photo.
FORMATS = {
    "JPEG": ("jpg", "JPEG"), "MPO": ("jpg", "JPEG"), "PNG": ("png", "PNG"), "GIF": ("gif", "GIF"),
    "WEBP": ("webp", "WebP"), "HEIF": ("heic", "HEIC"), "AVIF": ("avif", "AVIF"), "TIFF": ("tif", "TIFF"),
    "BMP": ("bmp", "BMP"), "JPEG2000": ("jp2", "JPEG 2000"), "ICO": ("ico", "ICO"), "QOI": ("qoi", "QOI"),
    "PSD": ("psd", "Photoshop (PSD)"),
}
#: Pillow's decoders for them (its JPEG decoder opens MPO too).
DECODERS = [fmt for fmt in FORMATS if fmt != "MPO"]
#: What the refusals list as readable.
READABLE = "JPEG, PNG, GIF, WebP, HEIC, AVIF, TIFF, BMP, JPEG 2000, ICO, QOI and Photoshop (PSD)"
#: Read from their header by Pillow in the web process, without decoding (MPO comes with JPEG).
HEADER_FORMATS = ["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "JPEG2000", "ICO", "QOI", "PSD"]
#: Lossless formats: content decides whether an output may be lossy (see ``is_photographic``).
LOSSLESS = {"PNG", "GIF", "BMP", "TIFF", "ICO", "QOI", "PSD"}

#: HEIF and AVIF brands of an ISO-BMFF ``ftyp`` box. Pillow's AVIF plugin and pillow-heif
#: read the whole file to open it, so the web process only sniffs these; the child reads
#: their header before it decodes a pixel.
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
#: Other ISO-BMFF files people upload by mistake, by brand.
_OTHER_BRANDS = {b"crx ": "a Canon raw (CR3) photo", b"jxl ": "a JPEG XL image", b"qt  ": "a QuickTime video",
                 b"isom": "an MP4 video", b"mp41": "an MP4 video", b"mp42": "an MP4 video", b"M4V ": "an MP4 video",
                 b"3gp4": "a 3GP video"}

#: Files recognised by how they start, that Darkroom does not read.
_MAGIC = [
    (b"%PDF", "a PDF document"), (b"%!PS", "a PostScript (EPS) file"), (b"\xc5\xd0\xd3\xc6", "a PostScript (EPS) file"),
    (b"DDS ", "a DirectDraw Surface (DDS) texture"), (b"icns", "an Apple icon (ICNS)"),
    (b"BLP1", "a Blizzard (BLP) texture"), (b"BLP2", "a Blizzard (BLP) texture"), (b"SIMPLE  =", "a FITS file"),
    (b"\x01\xda", "an SGI image"), (b"\x59\xa6\x6a\x95", "a Sun raster image"), (b"/* XPM */", "an X pixmap (XPM)"),
    (b"#define", "an X bitmap (XBM)"), (b"\xff\x0a", "a JPEG XL image"), (b"\x00\x00\x00\x0cJXL ", "a JPEG XL image"),
    (b"PK\x03\x04", "a ZIP archive"), (b"\x1f\x8b", "a gzip archive"), (b"\x89HDF", "an HDF5 file"),
    (b"GRIB", "a GRIB weather file"), (b"BUFR", "a BUFR weather file"),
    (b"FUJIFILMCCD-RAW", "a Fujifilm raw (RAF) photo"),
    (b"\xd0\xcf\x11\xe0", "a Microsoft Office or FlashPix document"), (b"\xd7\xcd\xc6\x9a", "a Windows metafile (WMF)"),
    (b"\x00\x00\x02\x00", "a Windows cursor (CUR)"), (b"gimp xcf", "a GIMP (XCF) drawing"), (b"FLIF", "a FLIF image"),
    (b"<svg", "an SVG drawing"), (b"GIMP Palette", "a GIMP palette"), (b"ID3", "an MP3 file"),
    (b"\x1a\x45\xdf\xa3", "a Matroska or WebM video"),
]
#: Formats Pillow recognises from a header alone, which Darkroom does not read, by people's names.
_PILLOW_NAMES = {"TGA": "a Targa (TGA) image", "PCX": "a PCX image", "SGI": "an SGI image",
                 "PPM": "a Netpbm (PBM/PGM/PPM) image", "DDS": "a DirectDraw Surface (DDS) texture",
                 "BLP": "a Blizzard (BLP) texture", "SUN": "a Sun raster image", "MSP": "a Microsoft Paint (MSP) image",
                 "IM": "an IFUNC (IM) image", "CUR": "a Windows cursor (CUR)", "DCX": "a DCX fax image",
                 "FLI": "a FLIC (FLI/FLC) animation", "XPM": "an X pixmap (XPM)", "XBM": "an X bitmap (XBM)",
                 "PIXAR": "a Pixar image", "GBR": "a GIMP brush (GBR)", "FTEX": "an Independence War texture",
                 "MCIDAS": "a McIDAS satellite image", "SPIDER": "a SPIDER image", "PCD": "a Kodak Photo CD image"}

#: The largest side each output format holds (AVIF: libavif's default dimension limit).
MAX_SIDE = {"JPEG": 65_535, "WEBP": 16_383, "PNG": 2**31 - 1, "GIF": 65_535, "AVIF": 32_768}


def extension(fmt: str) -> str:
    """The file extension Darkroom stores a source of Pillow format ``fmt`` under."""
    return FORMATS[fmt][0]


def format_name(fmt: str) -> str:
    """A readable format as people call it ("HEIC" for Pillow's HEIF, "JPEG" for MPO)."""
    return FORMATS[fmt][1] if fmt in FORMATS else fmt


def head_of(path: Path, size: int = 64) -> bytes:
    """The first ``size`` bytes of a file."""
    with open(path, "rb") as f:
        return f.read(size)


def sniff_isobmff(head: bytes) -> str | None:
    """``"AVIF"`` or ``"HEIF"`` for an ISO-BMFF file with such a brand, else None."""
    brands = _brands(head)
    if brands & _AVIF_BRANDS:
        return "AVIF"
    return "HEIF" if brands & _HEIF_BRANDS else None


def _brands(head: bytes) -> set[bytes]:
    if head[4:8] != b"ftyp":
        return set()
    size = min(int.from_bytes(head[:4], "big"), len(head))
    return {head[8:12], *(head[i:i + 4] for i in range(16, size - 3, 4))}


def readable_format(head: bytes) -> str | None:
    """The Pillow name of a format Darkroom reads that ``head`` starts like, or None."""
    signatures = [(b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF8", "GIF"),
                  (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"), (b"qoif", "QOI"),
                  (b"8BPS", "PSD"), (b"\xff\x4f\xff\x51", "JPEG2000"), (b"\x00\x00\x00\x0cjP  ", "JPEG2000"),
                  (b"\x00\x00\x01\x00", "ICO")]
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    for prefix, fmt in signatures:
        if head.startswith(prefix):
            return fmt
    return sniff_isobmff(head)


def other_format(path: Path, head: bytes) -> str | None:
    """The name of a format Darkroom does not read that the file is, if it can be recognised."""
    brands = _brands(head)
    for brand, name in _OTHER_BRANDS.items():
        if brand in brands:
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "AVI video"
    for prefix, name in _MAGIC:
        if head.startswith(prefix):
            return name
    stripped = head.lstrip()
    if stripped.startswith(b"<?xml") and b"<svg" in head_of(path, 1024):
        return "an SVG drawing"
    try:  # the header-only plugins Pillow has for formats Darkroom does not read
        Image.init()
        with Image.open(path, formats=[f for f in _PILLOW_NAMES if f in Image.OPEN]) as im:
            return _PILLOW_NAMES.get(im.format or "", f"a {im.format_description or im.format} file")
    except Exception:  # noqa: BLE001 - whatever a plugin raises, the file is unrecognised
        return None


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """The ISO-BMFF boxes between ``start`` and ``end``: (type, body start, body end)."""
    while start + 8 <= end:
        size, kind = int.from_bytes(data[start:start + 4], "big"), data[start + 4:start + 8]
        header = 8
        if size == 1 and start + 16 <= end:
            size, header = int.from_bytes(data[start + 8:start + 16], "big"), 16
        elif size == 0:
            size = end - start
        if size < header or start + size > end:
            return
        yield kind, start + header, start + size
        start += size


def isobmff_size(path: Path, limit: int = 1 << 20) -> tuple[int, int] | None:
    """The largest image extent (``ispe``) a HEIF or AVIF file declares, read from its first MiB.

    A grid image's extent is the whole picture, so this is the size its decoder will allocate;
    None if the boxes cannot be found (the decoder's own header check still applies).
    """
    data = head_of(path, limit)
    sizes = []
    for kind, body, end in _boxes(data, 0, len(data)):
        if kind != b"meta":
            continue
        for inner, ibody, iend in _boxes(data, body + 4, end):  # meta is a full box: 4 bytes of flags
            if inner != b"iprp":
                continue
            for prop, pbody, pend in _boxes(data, ibody, iend):
                if prop != b"ipco":
                    continue
                for item, sbody, send in _boxes(data, pbody, pend):
                    if item == b"ispe" and send - sbody >= 12:
                        sizes.append((int.from_bytes(data[sbody + 4:sbody + 8], "big"),
                                      int.from_bytes(data[sbody + 8:sbody + 12], "big")))
    return max(sizes, key=lambda s: s[0] * s[1]) if sizes else None
