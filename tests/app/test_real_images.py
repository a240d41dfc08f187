"""Real photos and real breakage: each class of defect the outside world sends, animations and wide gamut.

Files from the outside corpus (Pillow's own test images) where one shows the defect; inputs
made here only where none does.
"""

import io

import pytest
from coloraide import Color
from PIL import Image, ImageCms, ImageDraw, PngImagePlugin

from tests.support.corpus import corpus_dir
from tests.support.icc import display_p3
from tests.support.jobs import upload
from tests.support.machine import require
from tests.support.photos import decode


@pytest.fixture
def real(request):
    """A file of the outside corpus, by its path inside it."""
    path = corpus_dir() / request.param
    if not path.is_file():
        require(f"the outside corpus is missing at {corpus_dir()} (set DARKROOM_CORPUS)")
    return path


def post_file(client, path, ops=("thumbnail", "resize", "rotate", "invert"), **fields):
    return upload(client, path.read_bytes(), ops=list(ops), name=path.name, fields=fields)


def encode(im, fmt, **options):
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def assert_nothing_left(app):
    from pathlib import Path
    root = Path(app.config["DARKROOM_STORAGE_ROOT"])
    assert not any(p.is_dir() and p.name != "calls" for p in root.glob("*/*"))
    assert not any(root.glob("*/calls/*")) and not any(root.glob(".uploads/*"))


# Photos that answered 500 -------------------------------------------------------------------------

@pytest.mark.parametrize("real", ["frozenpond.mpo", "sugarshack.mpo", "sugarshack_ifd_offset.mpo"], indirect=True)
def test_multi_picture_jpegs_are_photos_like_any_jpeg(client, real):
    response = post_file(client, real)
    assert response.status_code == 201, response.get_json()
    job = response.get_json()
    assert job["source"]["format"] == "MPO" and job["source"]["url"].endswith("/source.jpg")
    assert "frames" not in job["source"]  # the second picture is not a frame of an animation
    assert decode(client.get(job["outputs"][0]["url"]).data).size == (320, 240)


@pytest.mark.parametrize("real", ["invalid-exif.jpg", "truncated_exif_dpi.jpg"], indirect=True)
def test_broken_exif_never_sinks_a_photo(client, real):
    response = post_file(client, real)
    assert response.status_code == 201, response.get_json()
    with Image.open(real) as im:  # the stored size: the broken EXIF says no orientation
        assert (response.get_json()["source"]["width"], response.get_json()["source"]["height"]) == im.size


def test_a_png_whose_exif_text_chunk_does_not_parse_is_processed(client):
    info = PngImagePlugin.PngInfo()
    info.add_text("Raw profile type exif", "\nexif\n      20\nnot hex at all, zz\n", zip=True)
    data = encode(Image.new("RGB", (50, 40), (10, 120, 200)), "PNG", pnginfo=info)
    response = upload(client, data, ops=["grayscale", "rotate"], name="screenshot.png")
    assert response.status_code == 201, response.get_json()
    assert {o["op"]: (o["width"], o["height"]) for o in response.get_json()["outputs"]} == {
        "grayscale": (50, 40), "rotate": (40, 50)}


@pytest.mark.slow
@pytest.mark.parametrize("size", [(5000, 1), (1, 5000), (1, 1)])
def test_every_op_makes_an_image_of_a_strip_or_a_single_pixel(client, size):
    ops = ["thumbnail", "resize", "resize:100x100,cover", "grayscale", "blur", "sharpen", "edges", "sepia",
           "rotate", "rotate:45", "invert"]
    response = upload(client, encode(Image.new("RGB", size, (200, 30, 30)), "PNG"), ops=ops, name="strip.png")
    assert response.status_code == 201, response.get_json()
    for out in response.get_json()["outputs"]:
        im = decode(client.get(out["url"]).data)
        assert im.size == (out["width"], out["height"]) and min(im.size) >= 1


@pytest.mark.slow
def test_auto_writes_a_panorama_too_wide_for_webp_as_png_keeping_transparency(client):
    # Photo-like (tens of thousands of colours) and transparent: auto would pick WebP,
    # which holds 16,383 px a side.
    bands = [Image.effect_noise((17000, 200), 60).convert("L") for _ in range(4)]
    response = upload(client, encode(Image.merge("RGBA", bands), "PNG"), ops=["invert"], name="pano.png")
    assert response.status_code == 201, response.get_json()
    out = response.get_json()["outputs"][0]
    assert (out["format"], out["width"]) == ("PNG", 17000)
    assert decode(client.get(out["url"]).data).mode == "RGBA"


def test_a_chosen_format_too_small_for_an_output_is_refused_before_any_child(app, client):
    data = encode(Image.new("RGB", (17000, 100)), "PNG")
    response = upload(client, data, ops=["grayscale"], name="pano.png", fields={"format": "webp"})
    assert (response.status_code, response.get_json()["kind"]) == (413, "over_limit")
    assert response.get_json()["error"] == ("WebP holds at most 16,383 pixels a side, and Grayscale would be "
                                            "17,000×100; choose another format, or Auto.")
    assert app.extensions["handoff"]._runner is None  # no child was needed to know
    assert_nothing_left(app)
    rotated = upload(client, encode(Image.new("RGB", (100, 17000)), "PNG"), ops=["thumbnail", "rotate"],
                     name="tall.png", fields={"format": "webp"})
    assert rotated.status_code == 413
    assert "and Rotate (90° clockwise) would be 17,000×100;" in rotated.get_json()["error"]


# Decoder failures are the file's; Darkroom's own exceptions are bugs -------------------------------

@pytest.mark.parametrize("real", ["crash-2020-10-test.tif", "crash-63b1dffefc8c075ddc606c0a2f5fdc15ece78863.tif"],
                         indirect=True)
def test_a_decoder_raising_an_unexpected_type_is_a_damaged_file(app, client, real):
    response = post_file(client, real)
    assert (response.status_code, response.get_json()["kind"]) == (400, "damaged")
    assert response.get_json()["error"].startswith("This TIFF file is damaged or incomplete (")
    assert_nothing_left(app)


def test_an_exception_in_darkroom_code_stays_a_bug_with_an_id(client, caplog):
    response = upload(client, ops=["explode"])
    body = response.get_json()
    assert response.status_code == 500 and "kind" not in body
    assert "bug in Darkroom" in body["error"] and body["error_id"] in body["error"]
    assert "again" in body["error"] and "try again" not in body["error"].replace("trying again will not", "")


# Refusals that say what to do ---------------------------------------------------------------------

@pytest.mark.parametrize("real, status, kind, message", [
    ("hopper_webp.tif", 422, "unsupported_feature",
     "This TIFF uses WebP compression, which Darkroom cannot decode; save it with LZW, Deflate or JPEG"),
    ("tga/common/1x1_l_bl_rle.tga", 415, "unsupported_format", "This is a Targa (TGA) image; Darkroom reads"),
    ("ati1.dds", 415, "unsupported_format", "This is a DirectDraw Surface (DDS) texture; Darkroom reads"),
    ("truncated_jpeg.jpg", 400, "damaged", "This JPEG file is damaged or incomplete (image file is truncated"),
    ("truncated_image.png", 400, "damaged", "This PNG file is damaged or incomplete"),
    ("decompression_bomb.gif", 413, "over_limit", "The image is 65,535×66,601 pixels; the limit is 60 megapixels."),
], indirect=["real"])
def test_each_refusal_names_its_class_and_what_to_do(app, client, real, status, kind, message):
    response = post_file(client, real)
    assert (response.status_code, response.get_json()["kind"]) == (status, kind)
    assert response.get_json()["error"].startswith(message)
    assert "\n" not in response.get_json()["error"]
    assert_nothing_left(app)


def test_a_cut_heic_is_called_a_damaged_heic(app, client):
    import pillow_heif

    pillow_heif.register_heif_opener()
    data = encode(Image.effect_noise((256, 256), 40).convert("RGB"), "HEIF", quality=80)
    response = upload(client, data[: len(data) * 2 // 3], ops=["invert"], name="phone.heic")
    assert (response.status_code, response.get_json()["kind"]) == (400, "damaged")
    assert response.get_json()["error"].startswith("This HEIC file is damaged or incomplete")
    assert "\n" not in response.get_json()["error"]
    assert_nothing_left(app)


def test_an_avif_past_the_pixel_limit_is_refused_from_its_header(make_app):
    app = make_app(DARKROOM_MAX_PIXELS=10_000)
    client = app.test_client()
    response = upload(client, encode(Image.new("RGB", (200, 100)), "AVIF"), ops=["invert"], name="big.avif")
    assert (response.status_code, response.get_json()["kind"]) == (413, "over_limit")
    assert response.get_json()["error"] == "The image is 200×100 pixels; the limit is 0 megapixels."
    assert app.extensions["handoff"]._runner is None  # refused by the web process, from the file's boxes


# More of what Pillow reads ----------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("real, fmt, size", [
    ("hopper.psd", "PSD", (128, 128)), ("hopper.qoi", "QOI", (128, 128)), ("python.ico", "ICO", (48, 48)),
    ("balloon.jpf", "JPEG2000", (2717, 3701)),
], indirect=["real"])
def test_psd_qoi_ico_and_jpeg_2000_are_read(client, real, fmt, size):
    response = post_file(client, real)
    assert response.status_code == 201, response.get_json()
    job = response.get_json()
    assert (job["source"]["format"], job["source"]["width"], job["source"]["height"]) == (fmt, *size)
    rotated = next(o for o in job["outputs"] if o["op"] == "rotate")
    assert decode(client.get(rotated["url"]).data).size == (size[1], size[0])


# Animations --------------------------------------------------------------------------------------

def animation(fmt, **options):
    """Four frames, each a square moved along on a background of its own colour (so even their edges differ)."""
    frames = [Image.new("RGB", (60, 40), c) for c in ((200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 0))]
    for step, frame in enumerate(frames):
        ImageDraw.Draw(frame).rectangle((5 + 10 * step, 10, 20 + 10 * step, 25), fill=(255, 255, 255))
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=[100, 200, 300, 400],
                  loop=0, **options)


ALL_OPS = ["thumbnail", "resize", "grayscale", "blur", "sharpen", "edges", "sepia", "rotate", "invert"]


@pytest.mark.parametrize("fmt, name, written", [("GIF", "spin.gif", "GIF"), ("WEBP", "spin.webp", "WEBP"),
                                                ("PNG", "spin.png", "PNG")])
def test_animations_keep_every_frame_with_its_timing_for_every_op(client, fmt, name, written):
    job = upload(client, animation(fmt), ops=ALL_OPS, name=name).get_json()
    assert job["source"]["frames"] == 4
    for out in job["outputs"]:
        im = decode(client.get(out["url"]).data)
        frames = getattr(im, "n_frames", 1)
        assert (out["format"], out["frames"], im.format, frames) == (written, 4, written, 4), out["op"]
        durations = []
        for index in range(frames):
            im.seek(index)
            im.load()
            durations.append(im.info["duration"])
        assert durations == [100, 200, 300, 400] and im.info["loop"] == 0
    assert "Animated (4 frames): every frame was processed." in client.get("/").get_data(as_text=True)
    still = upload(client, encode(Image.new("RGB", (60, 40)), "GIF"), ops=["invert"], name="still.gif").get_json()
    assert "frames" not in still["source"] and "frames" not in still["outputs"][0]


def test_an_animation_over_the_pixel_budget_keeps_its_first_frame_and_says_so(make_app):
    client = make_app(DARKROOM_MAX_PIXELS=60 * 40 * 3).test_client()  # 3 frames' worth: 4 do not fit
    job = upload(client, animation("GIF"), ops=["invert"], name="spin.gif").get_json()
    assert job["source"]["frames"] == 4 and "frames" not in job["outputs"][0]
    assert decode(client.get(job["outputs"][0]["url"]).data).convert("RGB").getpixel((5, 5)) == (55, 255, 255)
    assert "Animated (4 frames): only the first frame was processed." in client.get("/").get_data(as_text=True)


# Wide gamut ---------------------------------------------------------------------------------------

#: Display P3 colours outside sRGB, away from its corners (where converting and clipping could
#: give back the same numbers): a green and a magenta no sRGB screen can show.
P3_PATCHES = [(40, 200, 70), (200, 40, 180)]


def lab_of(im, xy):
    """One pixel's colour under the profile the image is tagged with (Display P3 or sRGB), by ColorAide."""
    described = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(im.info["icc_profile"])))
    space = "display-p3" if "P3" in described else "srgb"
    assert space == "display-p3" or "sRGB" in described, described
    return Color(space, [channel / 255 for channel in im.convert("RGB").getpixel(xy)])


def test_keep_wide_gamut_keeps_display_p3_colours_and_tags_every_output(client):
    source = Image.new("RGB", (128, 64), P3_PATCHES[0])
    source.paste(P3_PATCHES[1], (64, 0, 128, 64))
    source.info["icc_profile"] = display_p3()
    data = encode(source, "PNG", icc_profile=display_p3())
    job = upload(client, data, ops=["grayscale", "thumbnail:64", "blur"], name="iphone.png",
                 fields={"colour": "keep"}).get_json()
    references = [lab_of(source, (32, 32)), lab_of(source, (96, 32))]
    for reference in references:  # neither is a colour sRGB holds
        assert reference.convert("srgb").in_gamut() is False
    for out in [*job["outputs"][1:], *[{"url": p["url"]} for p in job["source"]["previews"]]]:
        im = decode(client.get(out["url"]).data)
        assert im.info["icc_profile"] == display_p3()
        for reference, x in zip(references, (0.25, 0.75), strict=True):
            shown = lab_of(im, (round(im.width * x), im.height // 2))
            assert shown.delta_e(reference, method="2000") <= 1  # the promise is 2; lossless ops give ~0
    assert "icc_profile" not in decode(client.get(job["outputs"][0]["url"]).data).info  # grey: no profile
    converted = upload(client, data, ops=["thumbnail:64"], name="iphone.png").get_json()  # to sRGB
    im = decode(client.get(converted["outputs"][0]["url"]).data)
    assert lab_of(im, (16, 16)).delta_e(references[0], method="2000") > 3  # sRGB cannot show it


def test_the_colour_field_names_its_choices(client):
    response = upload(client, ops=["invert"], fields={"colour": "p3"})
    assert response.status_code == 400
    assert response.get_json()["error"] == "The colour option must be one of: srgb, keep."



@pytest.mark.parametrize("real", ["frame_size.mpo"], indirect=True)
def test_a_phones_display_p3_photo_keeps_its_profile_and_colours(client, real):
    with Image.open(real) as source:
        source.load()
        assert "Display P3" in ImageCms.getProfileDescription(
            ImageCms.ImageCmsProfile(io.BytesIO(source.info["icc_profile"])))
        # Rotated a half turn and written losslessly, each output pixel is a source pixel.
        points = [(x, y) for x in range(0, source.width, 7) for y in range(0, source.height, 9)]
        colours = [lab_of(source, p) for p in points]
        job = post_file(client, real, ops=("rotate:180",), colour="keep", format="png").get_json()
        out = decode(client.get(job["outputs"][0]["url"]).data)
        assert out.info["icc_profile"] == source.info["icc_profile"]
        worst = max(lab_of(out, (source.width - 1 - x, source.height - 1 - y)).delta_e(c, method="2000")
                    for (x, y), c in zip(points, colours, strict=True))
        assert worst <= 2


@pytest.mark.parametrize("real", ["g4_orientation_6.tif", "g4_orientation_8.tif"], indirect=True)
def test_a_tiffs_orientation_turns_it_like_a_jpegs(client, real):
    job = post_file(client, real, ops=("invert",)).get_json()
    assert (job["source"]["width"], job["source"]["height"]) == (88, 590)  # stored 590×88, turned a quarter
    assert decode(client.get(job["outputs"][0]["url"]).data).size == (88, 590)


# Ops on real photos ---------------------------------------------------------------------------------

@pytest.mark.parametrize("real", ["xmp_test.jpg", "icc_profile_big.jpg"], indirect=True)
def test_edges_draws_dark_lines_on_white_in_a_file_no_larger_than_the_photo(client, real):
    response = post_file(client, real, ops=["edges"])
    assert response.status_code == 201, response.get_json()
    edges = response.get_json()["outputs"][0]
    data = client.get(edges["url"]).data
    drawing = decode(data).convert("L")
    histogram = drawing.histogram()
    assert sum(histogram[200:]) / sum(histogram) > 0.9  # mostly paper
    assert sum(histogram[:128]) > 0  # and some lines
    assert len(data) <= real.stat().st_size
