"""A full disk, for real: the storage root on a small tmpfs, filled up."""

import os

import pytest

from tests.support.jobs import assert_state, error_json, upload
from tests.support.machine import tmpfs
from tests.support.photos import image_bytes

STORAGE_FULL = "The server's storage is full; please try again later."


@pytest.fixture
def small_disk(tmp_path):
    with tmpfs(tmp_path / "small-disk", "size=2m") as mount_point:
        yield mount_point


def fill(directory, leave=0):
    """Fill the file system of ``directory`` to the last byte, then give ``leave`` bytes back."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (65536, 4096, 512, 1):  # big writes, then smaller ones into what is left
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    if leave:
        os.truncate(filler, max(0, os.path.getsize(filler) - leave))
    return filler


@pytest.fixture
def app_on_small_disk(make_app, small_disk):
    # No reserve: these tests are about what happens when the disk fills regardless.
    return make_app(DARKROOM_STORAGE_ROOT=str(small_disk), DARKROOM_MIN_FREE_MB=0, DARKROOM_CLIENT_LIMITS=False)


def test_an_upload_to_a_full_disk_is_507_and_deleting_still_works(app_on_small_disk, small_disk):
    app = app_on_small_disk
    client = app.test_client()
    client.get("/api/session")
    jobs = [upload(client, image_bytes((320, 240)), ops=["invert"]).get_json()["id"] for _ in range(2)]
    filler = fill(small_disk)
    response = upload(client, image_bytes((320, 240)), ops=["invert"])
    assert (response.status_code, error_json(response)) == (507, {"error": STORAGE_FULL})
    assert_state(app, client, jobs)
    page = upload(client, image_bytes((320, 240)), ops=["invert"], json=False)
    assert page.status_code == 303 and STORAGE_FULL.replace("'", "&#39;") in client.get("/").get_data(as_text=True)
    # At 0 bytes free, delete and "Clear all" still work: they free first.
    assert client.post(f"/jobs/{jobs[0]}/delete", headers={"Accept": "application/json"}).status_code == 200
    assert_state(app, client, jobs[1:])
    fill(small_disk)
    assert client.post("/session/clear", headers={"Accept": "application/json"}).status_code == 200
    assert_state(app, client, [])
    filler.unlink()
    assert upload(client, image_bytes((320, 240)), ops=["invert"]).status_code == 201


def test_a_child_that_fills_the_disk_is_507_and_leaves_nothing(app_on_small_disk, small_disk):
    app = app_on_small_disk
    client = app.test_client()
    client.get("/api/session")
    good = upload(client, image_bytes((320, 240)), ops=["invert"]).get_json()["id"]
    data = image_bytes((800, 600))
    fill(small_disk, leave=len(data) + 64 * 1024)  # room for the upload, not for eight outputs
    response = upload(client, data, ops=["thumbnail", "grayscale", "blur", "sharpen", "edges", "sepia", "rotate",
                                         "invert"])
    assert (response.status_code, error_json(response)) == (507, {"error": STORAGE_FULL})
    assert_state(app, client, [good])
