"""Valid images of every format Darkroom reads, damaged at random: each is processed or refused, never a 500.

Hypothesis flips bits, cuts files short, overwrites header bytes and duplicates chunks. The
number of cases is bounded (``DARKROOM_MUTATIONS``, 100 by default) and derandomized, so CI
runs the same cases every time; a developer can raise it to search further.
"""

import io
import os

import pillow_heif
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from app import create_app
from tests.support.corpus import expected_size
from tests.support.jobs import PLUGINS, close_app

pytestmark = pytest.mark.slow  # a hundred damaged files

pillow_heif.register_heif_opener()  # the tests encode HEIC; the app registers it only in children

OPS = ["thumbnail", "resize", "rotate", "invert"]


def photo(size=(48, 32), mode="RGB"):
    im = Image.merge("RGB", [Image.effect_noise(size, 50).convert("L") for _ in range(3)])
    return im.convert(mode) if mode != "RGB" else im


def encode(im, fmt, **options):
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def seeds():
    """One small valid file of each format Darkroom reads that Pillow can write."""
    still = photo()
    frames = [photo(), photo(), photo()]
    return {
        "jpeg": encode(still, "JPEG", exif=Image.Exif().tobytes()),
        "mpo": encode(still, "MPO", save_all=True, append_images=[photo()]),
        "png": encode(photo(mode="RGBA"), "PNG"),
        "apng": encode(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=80),
        "gif": encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=80, loop=0),
        "webp": encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=80),
        "tiff": encode(still, "TIFF", compression="tiff_lzw"),
        "bmp": encode(still, "BMP"),
        "heic": encode(still, "HEIF", quality=70),
        "avif": encode(still, "AVIF", quality=70),
        "jp2": encode(still, "JPEG2000"),
        "ico": encode(photo(mode="RGBA"), "ICO", sizes=[(32, 32)]),
        "qoi": encode(still, "QOI"),
    }


SEEDS = seeds()


@st.composite
def damaged(draw):
    """A seed file with one kind of damage: bits flipped, cut short, header bytes replaced, a chunk twice."""
    name = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[name])
    how = draw(st.sampled_from(["flip", "cut", "header", "duplicate"]))
    if how == "flip":
        for position in draw(st.lists(st.integers(0, len(data) * 8 - 1), min_size=1, max_size=8)):
            data[position // 8] ^= 1 << position % 8
    elif how == "cut":
        data = data[: draw(st.integers(1, len(data) - 1))]
    elif how == "header":
        start = draw(st.integers(0, min(64, len(data) - 1)))
        data[start:start + 4] = draw(st.binary(min_size=1, max_size=4))
    else:
        start = draw(st.integers(0, len(data) - 2))
        end = draw(st.integers(start + 1, min(len(data), start + 512)))
        at = draw(st.integers(0, len(data)))
        data[at:at] = data[start:end]
    return name, how, bytes(data)


@pytest.fixture(scope="module")
def mutation_client(tmp_path_factory):
    app = create_app({"TESTING": True, "DARKROOM_PLUGINS": PLUGINS, "DARKROOM_CLIENT_LIMITS": False,
                      "DARKROOM_SESSION_QUOTA_MB": 100_000},
                     instance_path=str(tmp_path_factory.mktemp("mutations")))
    yield app.test_client()
    close_app(app)


@settings(max_examples=int(os.environ.get("DARKROOM_MUTATIONS", 100)), deadline=None, derandomize=True,
          database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=damaged())
def test_a_damaged_file_is_processed_or_refused_never_a_500(mutation_client, case):
    name, how, data = case
    client = mutation_client
    response = client.post("/jobs", data={"image": (io.BytesIO(data), f"seed.{name}"), "ops": OPS},
                           headers={"Accept": "application/json"}, content_type="multipart/form-data")
    body = response.get_json()
    if response.status_code == 201:
        shown = (body["source"]["width"], body["source"]["height"])
        for out in body["outputs"]:
            im = Image.open(io.BytesIO(client.get(out["url"]).data))
            im.load()
            assert im.size == expected_size(out["op"], shown), (name, how, out["op"])
        client.post(f"/jobs/{body['id']}/delete", headers={"Accept": "application/json"})
    else:
        assert 400 <= response.status_code < 500 and body.get("kind"), (name, how, response.status_code, body)
