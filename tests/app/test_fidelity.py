"""Real photos in, the right pixels out: colour, orientation, transparency, depth, frames, metadata,
formats in and out, op arguments, and the same limits for every decoder. Inputs are generated here."""

import io
import random
from pathlib import Path

import pillow_heif
import pytest
from PIL import Image, ImageCms, ImageDraw, ImageStat

import imaging
from tests.support.icc import adobe_rgb, adobe_to_srgb, display_p3, p3_to_srgb
from tests.support.jobs import upload
from tests.support.photos import decode, image_bytes

pillow_heif.register_heif_opener()  # the tests encode HEIC; the app itself registers it only in children


def encode(im, fmt, **options):
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def job_of(client, data, ops, name="in.png", **fields):
    response = upload(client, data, ops=ops, name=name, fields=fields)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def outputs(client, job):
    """The job's outputs by op, each decoded from what the server sends."""
    return {o["op"]: decode(client.get(o["url"]).data) for o in job["outputs"]}


def close(a, b, tolerance=4):
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def photo(size=(320, 240), mode="RGB", seed=1):
    """A photo-like image: smooth gradients under fine noise (tens of thousands of colours)."""
    rng = random.Random(seed)
    im = Image.linear_gradient("L").resize(size).convert("RGB")
    noise = Image.frombytes("RGB", size, bytes(rng.randrange(256) for _ in range(size[0] * size[1] * 3)))
    im = Image.blend(im, noise, 0.35)
    if mode == "RGBA":
        im.putalpha(Image.linear_gradient("L").resize(size))
    return im


# 1. Colour ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("profile, to_srgb", [(display_p3, p3_to_srgb), (adobe_rgb, adobe_to_srgb)],
                         ids=["display-p3", "adobe-rgb"])
@pytest.mark.parametrize("colour", [(230, 60, 50), (40, 200, 70), (200, 40, 180)])
def test_wide_gamut_photos_are_converted_to_srgb_and_tagged(client, profile, to_srgb, colour):
    data = encode(Image.new("RGB", (64, 64), colour), "JPEG", quality=98, subsampling=0,
                  icc_profile=profile())
    expected = to_srgb(colour)
    assert not close(expected, colour, 12)  # the patch is one whose colour a screen would show wrong
    job = job_of(client, data, ["rotate", "invert", "grayscale"], name="wide.jpg")
    out = outputs(client, job)
    assert close(out["rotate"].getpixel((32, 32)), expected)
    assert close(out["invert"].getpixel((32, 32)), tuple(255 - c for c in expected))
    for op in ("rotate", "invert"):
        tagged = ImageCms.ImageCmsProfile(io.BytesIO(out[op].info["icc_profile"]))
        assert "sRGB" in ImageCms.getProfileDescription(tagged)
    assert out["grayscale"].mode == "L" and "icc_profile" not in out["grayscale"].info


# 2. Dimensions -----------------------------------------------------------------------------------

@pytest.mark.parametrize("orientation", range(1, 9))
def test_the_reported_size_is_the_size_a_viewer_sees(client, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.new("RGB", (80, 120), (90, 140, 200)), "JPEG", exif=exif)
    shown = (120, 80) if orientation >= 5 else (80, 120)
    job = job_of(client, data, ["grayscale"], name="phone.jpg")
    assert (job["source"]["width"], job["source"]["height"]) == shown
    assert outputs(client, job)["grayscale"].size == shown
    assert f"{shown[0]}×{shown[1]}" in client.get("/").get_data(as_text=True)


def test_a_reduced_decode_still_reports_the_full_displayed_size(client):
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.new("RGB", (1600, 2400), (90, 140, 200)), "JPEG", exif=exif)
    job = job_of(client, data, ["thumbnail"], name="tall.jpg")  # decoded at half size
    assert (job["source"]["width"], job["source"]["height"]) == (2400, 1600)
    assert (job["outputs"][0]["width"], job["outputs"][0]["height"]) == (320, 213)


# 3. Transparency ---------------------------------------------------------------------------------

def red_square_on_clear(mode="RGBA", colour=(255, 0, 0), hidden=(0, 0, 0)):
    """An opaque square on transparent pixels whose (invisible) colour is ``hidden``."""
    im = Image.new("RGBA", (100, 100), (*hidden, 0))
    ImageDraw.Draw(im).rectangle((30, 30, 69, 69), fill=(*colour, 255))
    return im if mode == "RGBA" else im.convert("LA")


@pytest.mark.parametrize("op", ["sepia", "edges", "invert", "grayscale"])
def test_ops_keep_transparency(client, op):
    source = red_square_on_clear()
    out = outputs(client, job_of(client, encode(source, "PNG"), [op]))[op]
    assert out.mode in ("RGBA", "LA")
    assert list(out.getchannel("A").get_flattened_data()) == list(source.getchannel("A").get_flattened_data())


def test_invert_keeps_the_transparency_of_grey_images(client):
    source = red_square_on_clear("LA")
    out = outputs(client, job_of(client, encode(source, "PNG"), ["invert"]))["invert"]
    assert out.mode == "LA"
    assert list(out.getchannel("A").get_flattened_data()) == list(source.getchannel("A").get_flattened_data())


@pytest.mark.parametrize("op", ["blur", "sharpen", "thumbnail:50", "rotate:30", "resize:70x50,cover"])
def test_filters_lend_no_colour_from_transparent_pixels(client, op):
    """Filtered with premultiplied alpha, the colour under transparent pixels cannot reach the result."""
    seen = []
    for hidden in ((0, 0, 0), (255, 255, 255)):
        source = red_square_on_clear(colour=(128, 128, 128), hidden=hidden)
        out = outputs(client, job_of(client, encode(source, "PNG"), [op]))[op].convert("RGBA")
        assert out.getpixel((0, 0))[3] == 0
        seen.append([px[:3] if px[3] > 8 else None for px in out.get_flattened_data()])
        # A soft edge keeps the square's grey (below alpha 32, 8-bit rounding alone moves it more).
        edge = [px for px in out.get_flattened_data() if 32 < px[3] < 247]
        if edge:
            assert all(abs(c - 128) <= 12 for px in edge for c in px[:3] if op != "sharpen"), hidden
    assert seen[0] == seen[1]


# 4. Depth ----------------------------------------------------------------------------------------

def test_16_bit_greyscale_keeps_every_tone(client):
    ramp = Image.new("I;16", (256, 8))
    ramp.putdata([x * 257 for _ in range(8) for x in range(256)])
    out = outputs(client, job_of(client, encode(ramp, "PNG"), ["grayscale", "invert", "thumbnail:128"]))
    assert [out["grayscale"].getpixel((x, 4)) for x in (0, 64, 128, 255)] == [0, 64, 128, 255]
    assert [out["invert"].convert("L").getpixel((x, 4)) for x in (0, 128, 255)] == [255, 127, 0]
    assert 124 <= out["thumbnail:128"].convert("L").getpixel((64, 2)) <= 132


# 5. Animation: see test_real_images.py ---------------------------------------------------------


# 6. Metadata -------------------------------------------------------------------------------------

def tagged_jpeg():
    exif = Image.Exif()
    exif[0x013B] = "Ann Author"
    exif[0x8298] = "(c) 2026 Ann Author"
    exif[0xA431] = "SN-0042"  # BodySerialNumber
    exif.get_ifd(0x8825)[2] = (51.0, 30.0, 0.0)  # GPSLatitude
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/>where: 51.5N</x:xmpmeta>'
    return encode(photo(), "JPEG", exif=exif, comment="shot at 51.5N, serial SN-0042", xmp=xmp)


@pytest.mark.parametrize("metadata", ["", "copyright"])
def test_metadata_is_stripped_but_for_what_the_user_keeps(client, metadata):
    job = job_of(client, tagged_jpeg(), ["rotate", "grayscale", "thumbnail"], name="gps.jpg", metadata=metadata)
    for op, out in outputs(client, job).items():
        assert out.format == "JPEG"
        assert "comment" not in out.info and "xmp" not in out.info, op
        exif = out.getexif()
        assert 0x8825 not in exif and 0xA431 not in exif, op
        if metadata:
            assert (exif.get(0x013B), exif.get(0x8298)) == ("Ann Author", "(c) 2026 Ann Author"), op
        else:
            assert len(exif) == 0, op


def test_png_author_and_copyright_can_be_kept():
    from PIL import PngImagePlugin

    from imaging.metadata import kept_metadata

    text = PngImagePlugin.PngInfo()
    text.add_text("Author", "Bo")
    text.add_text("Copyright", "CC-BY Bo")
    text.add_text("Comment", "home address")
    im = Image.open(io.BytesIO(encode(Image.new("RGB", (8, 8)), "PNG", pnginfo=text)))
    assert kept_metadata(im) == {0x013B: "Bo", 0x8298: "CC-BY Bo"}


# 7. Formats in -----------------------------------------------------------------------------------

FORMATS_IN = {
    "HEIF": ("phone.heic", lambda im: encode(im, "HEIF", quality=90), "heic"),
    "AVIF": ("web.avif", lambda im: encode(im, "AVIF", quality=90), "avif"),
    "TIFF": ("scan.tif", lambda im: encode(im, "TIFF", compression="tiff_lzw"), "tif"),
    "BMP": ("old.bmp", lambda im: encode(im, "BMP"), "bmp"),
}


@pytest.mark.parametrize("fmt", FORMATS_IN)
def test_heic_avif_tiff_and_bmp_are_accepted(client, fmt):
    name, make, ext = FORMATS_IN[fmt]
    job = job_of(client, make(Image.new("RGB", (120, 80), (30, 160, 90))), ["invert", "thumbnail:60"], name=name)
    assert job["source"]["format"] == fmt
    assert (job["source"]["width"], job["source"]["height"]) == (120, 80)
    assert job["source"]["url"].endswith(f"/source.{ext}")
    out = outputs(client, job)
    assert close(out["invert"].convert("RGB").getpixel((60, 40)), (225, 95, 165), 6)
    assert out["thumbnail:60"].size == (60, 40)


# 8. Formats out and encoding ---------------------------------------------------------------------

def line_art():
    im = Image.new("RGB", (600, 400), "white")
    draw = ImageDraw.Draw(im)
    for i in range(0, 600, 25):
        draw.line((i, 0, 600 - i, 400), fill=(20, 20, 120), width=2)
    draw.text((40, 40), "Settings · Display · Colour", fill="black")
    return im


def test_auto_format_keeps_lossless_content_lossless_and_smaller(client):
    data = encode(line_art(), "PNG")
    auto = job_of(client, data, ["grayscale", "invert"])
    assert {o["format"] for o in auto["outputs"]} == {"PNG"}
    jpeg = job_of(client, data, ["grayscale", "invert"], format="jpeg")
    for png_out, jpeg_out in zip(auto["outputs"], jpeg["outputs"], strict=True):
        assert jpeg_out["format"] == "JPEG"
        assert png_out["bytes"] < jpeg_out["bytes"], (png_out, jpeg_out)


def test_auto_format_makes_photos_jpeg_and_transparent_photos_webp(client):
    as_png = job_of(client, encode(photo(), "PNG"), ["invert"])  # a photo saved losslessly
    assert as_png["outputs"][0]["format"] == "JPEG"
    clear = job_of(client, encode(photo(mode="RGBA"), "PNG"), ["invert"])
    assert clear["outputs"][0]["format"] == "WEBP"
    assert outputs(client, clear)["invert"].mode == "RGBA"


def test_jpeg_outputs_are_progressive_up_to_a_screens_size_and_baseline_beyond(client):
    """Progressive coding saves 5% for five times baseline's time: worth it on a screen-sized output only."""
    out = outputs(client, job_of(client, encode(photo(), "JPEG", quality=95), ["invert"], name="p.jpg"))
    assert out["invert"].info.get("progressive") and out["invert"].info.get("progression")
    large = Image.effect_noise((2500, 2000), 40).convert("RGB")  # 5 MP
    out = outputs(client, job_of(client, encode(large, "JPEG"), ["invert", "resize"], name="p.jpg"))
    assert not out["invert"].info.get("progressive") and out["invert"].size == (2500, 2000)
    assert out["resize"].info.get("progressive") and out["resize"].size == (960, 768)


@pytest.mark.parametrize("fmt", ["jpeg", "png", "webp", "avif"])
def test_the_chosen_format_and_quality_are_used(client, fmt):
    data = encode(photo(), "JPEG", quality=95)
    low = job_of(client, data, ["invert"], name="p.jpg", format=fmt, quality="20")["outputs"][0]
    high = job_of(client, data, ["invert"], name="p.jpg", format=fmt.upper(), quality="95")["outputs"][0]
    assert low["format"] == high["format"] == fmt.upper()
    assert low["url"].endswith({"jpeg": ".jpg"}.get(fmt, f".{fmt}"))
    if fmt != "png":
        assert low["bytes"] < high["bytes"] * 0.7


def test_transparent_images_written_as_jpeg_are_flattened_onto_white(client):
    out = outputs(client, job_of(client, encode(red_square_on_clear(), "PNG"), ["invert"], format="jpeg"))
    assert out["invert"].mode == "RGB"
    assert close(out["invert"].getpixel((5, 5)), (255, 255, 255), 2)  # what was transparent
    assert close(out["invert"].getpixel((50, 50)), (0, 255, 255), 6)


@pytest.mark.parametrize("fields, message", [
    ({"format": "gif"}, "The format must be one of: auto, jpeg, png, webp, avif."),
    ({"quality": "0"}, "The quality must be a whole number from 1 to 100."),
    ({"quality": "101"}, "The quality must be a whole number from 1 to 100."),
    ({"quality": "high"}, "The quality must be a whole number from 1 to 100."),
    ({"metadata": "all"}, "The metadata option must be one of: none, copyright."),
])
def test_bad_encoding_fields_are_400_and_name_what_is_allowed(app, client, fields, message):
    response = upload(client, ops=["invert"], fields=fields)
    assert response.status_code == 400
    assert response.get_json()["error"] == message
    assert not any(p.is_dir() and p.name != "calls" for p in Path(app.config["DARKROOM_STORAGE_ROOT"]).glob("*/*"))
    assert not any(Path(app.config["DARKROOM_STORAGE_ROOT"]).glob("*/calls/*"))  # nor a call's note


def test_the_encoding_fields_have_an_error_of_their_own_and_travel_as_plain_data():
    with pytest.raises(imaging.BadEncoding, match="The quality must be"):
        imaging.parse_encoding("jpeg", "high", None)
    assert not issubclass(imaging.BadEncoding, imaging.BadOp)  # an op's error names the ops, not these fields
    encoding = imaging.parse_encoding(" WebP ", "70", "copyright", "keep")
    assert encoding.fields() == {"format": "webp", "quality": 70, "metadata": "copyright", "colour": "keep"}
    assert imaging.Encoding(**encoding.fields()) == encoding


# 9. Op arguments ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_op_arguments_set_size_angle_radius_and_fit(client):
    source = photo((800, 600))
    job = job_of(client, encode(source, "PNG"), [
        "thumbnail", "thumbnail:640", "rotate:180", "rotate:-90", "rotate:45", "blur", "blur:8",
        "resize:300x200", "resize:300x200,cover",
    ], format="png")  # lossless, to compare pixels
    assert [o["op"] for o in job["outputs"]] == [
        "thumbnail", "thumbnail:640", "rotate:180", "rotate:270", "rotate:45", "blur", "blur:8",
        "resize:300x200", "resize:300x200,cover",
    ]
    assert [o["label"] for o in job["outputs"]][:3] == [
        "Thumbnail (320 px)", "Thumbnail (640 px)", "Rotate (180° clockwise)"]
    out = outputs(client, job)
    assert out["thumbnail"].size == (320, 240) and out["thumbnail:640"].size == (640, 480)
    assert out["rotate:180"].getpixel((0, 0))[:3] == source.getpixel((799, 599))
    assert out["rotate:270"].size == (600, 800)
    assert out["rotate:270"].getpixel((0, 0))[:3] == source.getpixel((799, 0))
    assert out["rotate:45"].size == (990, 990)  # the canvas grows to hold the turned image
    assert out["rotate:45"].getpixel((0, 0))[3] == 0 and out["rotate:45"].getpixel((495, 495))[3] == 255
    detail = {op: ImageStat.Stat(out[op].convert("L")).stddev[0] for op in ("blur", "blur:8")}
    assert detail["blur:8"] < detail["blur"]
    assert out["resize:300x200"].size == (267, 200) and out["resize:300x200,cover"].size == (300, 200)
    files = {o["url"].rsplit("/", 1)[1] for o in job["outputs"]}
    assert {"thumbnail.png", "thumbnail-640.png", "resize-300x200-cover.png", "rotate-45.png"} <= files


def test_the_form_sends_arguments_in_their_own_fields(client):
    job = job_of(client, encode(photo((800, 600)), "JPEG"), ["thumbnail", "resize"], name="p.jpg",
                 **{"arg-thumbnail": "100", "arg-resize": ["300x300", "cover"]})
    assert [o["op"] for o in job["outputs"]] == ["thumbnail:100", "resize:300x300,cover"]
    assert [(o["width"], o["height"]) for o in job["outputs"]] == [(100, 75), (300, 300)]


def test_an_argument_equal_to_the_default_is_the_bare_op(client):
    job = job_of(client, image_bytes(), ["thumbnail:320", "thumbnail", "rotate:90", "rotate:-270"],
                 name="p.jpg")
    assert [o["op"] for o in job["outputs"]] == ["thumbnail", "rotate"]


@pytest.mark.parametrize("op, allowed", [
    ("thumbnail:8", "thumbnail takes a longest edge in px, 16 to 4096."),
    ("thumbnail:640.5", "thumbnail takes a longest edge in px, 16 to 4096."),
    ("blur:0", "blur takes a radius in px, 0.1 to 100."),
    ("blur:nan", "blur takes a radius in px, 0.1 to 100."),
    ("rotate:720", "rotate takes degrees clockwise, -360 to 360"),
    ("resize:300", "resize takes WIDTHxHEIGHT (1 to 8192 px)"),
    ("resize:9000x10", "resize takes WIDTHxHEIGHT (1 to 8192 px)"),
    ("resize:30x10,stretch", "resize takes WIDTHxHEIGHT (1 to 8192 px)"),
])
def test_invalid_arguments_are_400_and_name_the_range(client, op, allowed):
    response = upload(client, ops=[op])
    assert response.status_code == 400
    assert f"'{op}' is not valid: {allowed}" in response.get_json()["error"]


def test_ops_without_an_argument_refuse_one(client):
    response = upload(client, ops=["grayscale:2"])
    assert response.status_code == 400
    assert response.get_json()["error"] == "The operation 'grayscale' takes no argument."


# 10. The same limits for every decoder -----------------------------------------------------------

@pytest.mark.parametrize("fmt", ["PNG", "HEIF", "AVIF", "TIFF"])
def test_every_decoder_refuses_images_over_the_pixel_limit_alike(make_app, fmt):
    app = make_app(DARKROOM_MAX_PIXELS=1_000_000)
    client = app.test_client()
    data = encode(Image.new("RGB", (1250, 1000), (10, 20, 30)), fmt)
    response = upload(client, data, ops=["invert"], name="bomb")
    assert (response.status_code, response.get_json()["kind"]) == (413, "over_limit")
    assert response.get_json()["error"] == "The image is 1,250×1,000 pixels; the limit is 1 megapixels."
    assert client.get("/api/session").get_json() == {"jobs": [], "next": None}
    assert not any(p.is_dir() and p.name != "calls" for p in Path(app.config["DARKROOM_STORAGE_ROOT"]).glob("*/*"))
    assert not any(Path(app.config["DARKROOM_STORAGE_ROOT"]).glob("*/calls/*"))  # nor a call's note
