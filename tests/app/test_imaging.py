"""The Pillow pipeline on its own: header reads, decoding and every op."""

import io

import pytest
from PIL import Image

import imaging
from imaging.ops import OPS
from imaging.pipeline import decode, render
from tests.support.photos import image_bytes


def write(tmp_path, data, name="src"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_probe_reads_the_header_only(tmp_path):
    data = image_bytes((1200, 900))
    # Cut the file after its header: a decoder would fail, the probe must not.
    path = write(tmp_path, data[:2000])
    assert imaging.probe(path, 10**8) == {"format": "JPEG", "width": 1200, "height": 900}


def test_probe_refuses_too_many_pixels(tmp_path):
    path = write(tmp_path, image_bytes((200, 100), "PNG"))
    with pytest.raises(imaging.TooManyPixels):
        imaging.probe(path, 200 * 100 - 1)


def test_thumbnail_alone_decodes_a_reduced_jpeg(tmp_path):
    path = write(tmp_path, image_bytes((4000, 3000)))
    assert decode(path, 10**8, reduced_to=(640, 640)).frames[0].size == (1000, 750)
    assert decode(path, 10**8).frames[0].size == (4000, 3000)


def test_render_writes_every_op_and_reports_its_time(tmp_path):
    src = write(tmp_path, image_bytes((600, 400)))
    out = tmp_path / "out"
    out.mkdir()
    seen = []
    ops = ["thumbnail", "grayscale", "blur", "sharpen", "edges", "sepia", "rotate", "invert"]
    decoded, outputs = render(src, out, ops, 10**8, lambda working, done: seen.append(
        (working.spec if working else None, [call.spec for call in done])))
    assert {k: decoded[k] for k in ("width", "height")} == {"width": 600, "height": 400}
    assert "frames" not in decoded and "pictures" not in decoded  # a still photo
    assert [(p["width"], p["height"]) for p in decoded["previews"]] == [(240, 160), (480, 320)]
    # On one thread, the outputs are made one after another, the costliest first.
    order = sorted(ops, key=lambda op: -OPS[op].cost)
    assert seen == [(order[i] if i < len(order) else None, order[:i]) for i in range(len(order) + 1)]
    sizes = {o["op"]: (o["width"], o["height"]) for o in outputs}
    assert sizes == {"thumbnail": (320, 213), "grayscale": (600, 400), "blur": (600, 400),
                     "sharpen": (600, 400), "edges": (600, 400), "sepia": (600, 400),
                     "rotate": (400, 600), "invert": (600, 400)}
    for o in outputs:
        assert o["ms"] >= 0
        with Image.open(out / o["file"]) as im:
            im.load()
            assert im.size == (o["width"], o["height"])
            assert im.format == o["format"]
        for preview in o["previews"]:
            with Image.open(out / preview["file"]) as im:
                assert im.format == "WEBP" and im.size == (preview["width"], preview["height"])
                assert max(im.size) <= 480
    with Image.open(out / "grayscale.jpg") as im:
        assert im.mode == "L"


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (60, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90°
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif)
    assert decode(write(tmp_path, buf.getvalue()), 10**8).frames[0].size == (40, 60)


def test_palette_and_cmyk_sources_are_normalised(tmp_path):
    for mode, fmt in (("P", "GIF"), ("CMYK", "JPEG")):
        buf = io.BytesIO()
        Image.new(mode, (30, 20)).save(buf, fmt)
        assert decode(write(tmp_path, buf.getvalue(), mode), 10**8).frames[0].mode == "RGB"


def test_a_reduced_decode_of_a_turned_jpeg_stays_large_enough_for_its_box(tmp_path):
    im = Image.new("RGB", (4000, 1000))
    exif = Image.Exif()
    exif[0x0112] = 6  # shown 1000×4000
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif)
    decoded = decode(write(tmp_path, buf.getvalue()), 10**8, reduced_to=(400, 1600))
    assert decoded.frames[0].size == (500, 2000)  # 1/2, not the 1/8 that the unturned box would allow
