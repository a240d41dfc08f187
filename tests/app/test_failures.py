"""Hostile uploads and dying children: a clear error, nothing lost, nothing half-written."""

import io
import json
import os
import struct
import subprocess
import sys
import threading
import time
import zipfile

import pytest
from PIL import Image

from tests.support import Client, Server
from tests.support.jobs import assert_state, error_json, upload, wait_for_child_at_work, workspace_of
from tests.support.photos import decode, image_bytes


def png_bomb():
    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, "PNG")
    return buf.getvalue()


def gif_claiming(width, height):
    header = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    frame = b"," + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return header + frame + b";"


def zip_bytes():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.txt", "hello")
    return buf.getvalue()


def truncated_jpeg():
    data = image_bytes((1200, 900))
    return data[: len(data) // 2]


def corrupt_png():
    data = bytearray(image_bytes((400, 300), "PNG"))
    start = data.index(b"IDAT") + 40
    data[start : start + 200] = os.urandom(200)
    return bytes(data)


NOT_READ = "not an image Darkroom reads; it reads JPEG, PNG, GIF, WebP, HEIC, AVIF, TIFF"
BAD_UPLOADS = {
    "empty file": (b"", 400, "bad_upload", "The uploaded file is empty."),
    "text": (b"just some words\n" * 10, 415, "unsupported_format", NOT_READ),
    "html": (b"<!doctype html><html><body>hi</body></html>", 415, "unsupported_format", NOT_READ),
    "zip": (zip_bytes(), 415, "unsupported_format", "This is a ZIP archive; Darkroom reads JPEG, PNG"),
    "pdf": (b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", 415, "unsupported_format",
            "This is a PDF document; Darkroom reads"),
    "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', 415, "unsupported_format",
            "This is an SVG drawing; Darkroom reads"),
    "truncated jpeg": (truncated_jpeg(), 400, "damaged", "This JPEG file is damaged or incomplete"),
    "corrupt png": (corrupt_png(), 400, "damaged", "This PNG file is damaged or incomplete"),
    "cut png header": (image_bytes((40, 30), "PNG")[:30], 400, "damaged", "This PNG file is damaged or incomplete"),
    "png bomb 20000x20000": (png_bomb(), 413, "over_limit",
                             "The image is 20,000×20,000 pixels; the limit is 60 megapixels."),
    "gif claiming 65535x65535": (gif_claiming(65535, 65535), 413, "over_limit",
                                 "The image is 65,535×65,535 pixels; the limit is 60 megapixels."),
    "just past the limit": (gif_claiming(7746, 7746), 413, "over_limit",
                            "The image is 7,746×7,746 pixels; the limit is 60 megapixels."),
}


@pytest.mark.parametrize("case", BAD_UPLOADS)
def test_bad_upload_is_refused_and_leaves_nothing(app, client, case):
    data, status, kind, message = BAD_UPLOADS[case]
    good = upload(client).get_json()["id"]
    response = upload(client, data, name="bad.jpg")
    assert (response.status_code, response.get_json()["kind"]) == (status, kind)
    assert message in response.get_json()["error"]
    assert "/" not in response.get_json()["error"].replace("/PGM/", "")  # no server path
    assert_state(app, client, [good])


def test_bomb_is_refused_before_any_child_starts(app, client, caplog):
    response = upload(client, png_bomb())
    assert response.status_code == 413
    assert "handoff" not in {r.name for r in caplog.records}  # no call was made
    assert app.extensions["handoff"]._runner is None  # no child was ever needed


def test_pixel_limit_comes_from_config(make_app):
    client = make_app(DARKROOM_MAX_PIXELS=100 * 100).test_client()
    assert upload(client, image_bytes((100, 100))).status_code == 201
    response = upload(client, image_bytes((101, 100)))
    assert response.status_code == 413
    assert "101×100" in response.get_json()["error"]


def test_missing_file_field(app, client):
    response = client.post("/jobs", data={"ops": "blur"}, headers={"Accept": "application/json"})
    assert response.status_code == 400
    assert error_json(response) == {"error": "Choose an image file to upload.", "kind": "bad_upload"}
    assert_state(app, client, [])


def test_missing_file_from_the_form_flashes(client):
    client.get("/api/session")  # a session, as the page starts one before it posts
    response = client.post("/jobs", data={"ops": "blur"})
    assert response.status_code == 303
    assert "Choose an image file to upload." in client.get("/").get_data(as_text=True)


def test_body_over_the_limit_is_413_json(make_app):
    app = make_app(MAX_CONTENT_LENGTH=2 * 1024 * 1024)
    client = app.test_client()
    response = upload(client, os.urandom(3 * 1024 * 1024))
    assert response.status_code == 413
    assert error_json(response) == {"error": "The upload is larger than the limit of 2 MB."}
    assert_state(app, client, [])


def test_unknown_op_names_the_allowed_ops(app, client):
    response = upload(client, ops=["blur", "melt"])
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert "'melt'" in error
    for op in ("thumbnail", "grayscale", "blur", "sharpen", "edges", "sepia", "rotate", "invert"):
        assert op in error
    assert_state(app, client, [])


@pytest.mark.parametrize(
    "name", ["../../../../etc/passwd.jpg", "/etc/passwd.jpg", "a\x00b\t\x1b[31m\x7f.jpg", "..\\..\\win.jpg"]
)
def test_client_file_name_is_never_a_path(app, client, tmp_path, name):
    job = upload(client, name=name).get_json()
    assert job["source"]["url"].endswith("/source.jpg")
    assert not any(ch in job["source"]["name"] for ch in "\x00\t\x1b\x7f")
    ws = workspace_of(app, client)
    assert ws
    served = [e["url"] for e in [job["source"], *job["outputs"]]]
    served += [p["url"] for e in [job["source"], *job["outputs"]] for p in e["previews"]]
    assert sorted(os.listdir(ws.path / job["id"])) == sorted(["job.json"] + [u.rsplit("/", 1)[1] for u in served])


def test_client_file_name_is_shown_escaped(client):
    upload(client, name="<img src=x onerror=alert(1)>.jpg")
    page = client.get("/").get_data(as_text=True)
    assert "<img src=x onerror" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;.jpg" in page


FAULTS = {
    "explode": (500, "bug", "This is a bug in Darkroom, not a problem with your file or your connection, and "
                "trying again will not help. Nothing was saved. If you report it, quote error {error_id}."),
    "die": (500, "killed", "The image worker was killed by signal 9; nothing was saved."),
    "hog": (500, "out_of_memory", "The image needs more memory than one photo may use (512 MB)."),
}


@pytest.mark.parametrize("op", FAULTS)
def test_child_fault_is_a_clear_5xx_and_loses_nothing(make_app, op, caplog):
    app = make_app(HANDOFF_MEMORY_MB=512)
    client = app.test_client()
    good = upload(client).get_json()["id"]
    response = upload(client, ops=["grayscale", op])
    status, kind, message = FAULTS[op]
    body = error_json(response)
    assert response.status_code == status
    if kind == "bug":  # the id finds the child's traceback in the log
        assert body == {"error": message.format(error_id=body["error_id"]), "error_id": body["error_id"]}
        assert f"error {body['error_id']}" in "\n".join(r.getMessage() for r in caplog.records)
        assert "RuntimeError" in caplog.text
    else:
        assert body == {"error": message, "kind": kind}
    assert_state(app, client, [good])
    # The next job works, and the earlier one still serves its files.
    after = upload(client).get_json()
    assert_state(app, client, [good, after["id"]])
    first = client.get("/api/session").get_json()["jobs"][0]
    assert decode(client.get(first["outputs"][0]["url"]).data).size == (320, 240)


@pytest.mark.slow
def test_child_past_its_time_limit_is_killed_with_504(make_app):
    app = make_app(HANDOFF_TIMEOUT=1.0)
    client = app.test_client()
    good = upload(client).get_json()["id"]
    started = time.monotonic()
    response = upload(client, ops=["stall"])
    assert time.monotonic() - started < 10
    assert response.status_code == 504
    assert error_json(response) == {"error": "Processing this photo took longer than 1 s and was stopped."}
    assert_state(app, client, [good])
    assert upload(client).status_code == 201


def test_fault_from_the_form_is_flashed(make_app):
    client = make_app().test_client()
    client.get("/api/session")
    response = upload(client, ops=["explode"], json=False)
    assert response.status_code == 303
    assert "This is a bug in Darkroom" in client.get("/").get_data(as_text=True)


@pytest.mark.slow
def test_too_many_jobs_wait_then_get_503_with_retry_after(make_app):
    app = make_app(HANDOFF_MAX_CHILDREN=1, HANDOFF_QUEUE_TIMEOUT=0.2)
    client = app.test_client()
    upload(client)  # create the session, so both requests share it
    cookie = client.get_cookie("session")
    other = app.test_client()
    other.set_cookie("session", cookie.value)
    slow = threading.Thread(target=upload, args=(client,), kwargs={"ops": ["slow", "grayscale"]})
    slow.start()
    wait_for_child_at_work(client)
    response = upload(other)
    slow.join()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "busy" in response.get_json()["error"]
    assert len(client.get("/api/session").get_json()["jobs"]) == 2
    assert upload(other).status_code == 201


@pytest.mark.slow
def test_progress_reports_the_running_op(make_app):
    app = make_app()
    client = app.test_client()
    client.get("/api/session")
    seen = []
    worker = threading.Thread(target=upload, args=(client,), kwargs={"ops": ["grayscale", "slow", "invert"]})
    worker.start()
    while worker.is_alive():
        seen.extend(client.get("/api/progress").get_json()["running"])
        time.sleep(0.05)
    worker.join()
    # The outputs begin costliest first (invert, slow, grayscale), on as many threads as the job
    # may run: once invert is done, and grayscale with it on a second thread, slow is worked on.
    assert any((s["op"], s["total"]) == ("slow", 3) and s["done"] >= 1 for s in seen), seen
    assert client.get("/api/progress").get_json() == {"running": []}


@pytest.mark.parametrize("status", [404, 405, 413, 500])
def test_every_json_error_has_the_error_shape(make_app, status):
    app = make_app(MAX_CONTENT_LENGTH=1000)

    @app.get("/boom")
    def boom():
        raise ZeroDivisionError("secret detail")

    client = app.test_client()
    json_headers = {"Accept": "application/json"}
    response = {
        404: lambda: client.get("/nope", headers=json_headers),
        405: lambda: client.get("/jobs", headers=json_headers),
        413: lambda: upload(client, os.urandom(5000)),
        500: lambda: client.get("/boom", headers=json_headers),
    }[status]()
    assert response.status_code == status
    body = error_json(response)  # every error carries its request's id, as its X-Request-ID header says
    assert set(body) == ({"error", "error_id"} if status == 500 else {"error"}) and body["error"]
    assert "secret detail" not in body["error"]
    if status == 413:
        assert body["error"] == "The upload is larger than the limit of 1000 bytes."


def test_html_errors_are_pages_not_tracebacks(client):
    response = client.get("/nope", headers={"Accept": "text/html"})
    assert response.status_code == 404
    assert "Nothing here" in response.get_data(as_text=True)
    assert response.mimetype == "text/html"


@pytest.mark.parametrize("form", [
    {"ops": ["invert"] * 1001},  # Werkzeug's MAX_FORM_PARTS
    {"note": "x" * 600_000},  # MAX_FORM_MEMORY_SIZE
])
def test_form_limits_name_themselves(client, form):
    response = client.post("/jobs", data={**form, "image": (io.BytesIO(image_bytes()), "a.jpg")},
                           headers={"Accept": "application/json"})
    assert response.status_code == 413
    assert error_json(response) == {"error": "The form is too large: at most 1,000 fields, "
                                            "and at most 488 kB in a field other than the image."}


@pytest.mark.parametrize("damage", [
    b'{"jobs": [{"id": "ab', b"not json at all", b"", b"[]", b"null", b'{"jobs": {}}', b'{"jobs": [{"id": 1}]}',
])
def test_a_damaged_manifest_is_set_aside_and_rebuilt(app, client, damage, caplog):
    jobs = [upload(client).get_json()["id"] for _ in range(2)]
    ws = workspace_of(app, client)
    assert ws
    ws.manifest_path.write_bytes(damage)
    page = client.get("/")
    assert page.status_code == 200
    assert all(f'id="job-{job}"' in page.get_data(as_text=True) for job in jobs)
    assert_state(app, client, jobs)
    assert [p.name.split("-")[0] for p in ws.path.glob("manifest.json.damaged-*")] == ["manifest.json.damaged"]
    assert "damaged manifest set aside" in caplog.text
    # The gallery goes on working: another job, a delete, "Clear all".
    jobs.append(upload(client).get_json()["id"])
    client.post(f"/jobs/{jobs.pop(0)}/delete", headers={"Accept": "application/json"})
    assert_state(app, client, jobs)
    assert client.post("/session/clear").status_code == 303
    assert_state(app, client, [])


@pytest.mark.slow
def test_a_locked_session_database_is_a_prompt_503_that_says_the_job_was_saved(tmp_path):
    database = tmp_path / "locked.db"
    env = {"FLASK_DARKROOM_DB_TIMEOUT": "1"}
    with Server("flask", database_url=f"sqlite:///{database}", env=env) as server:
        client = Client(server.port)
        status, body = client.upload(image_bytes(), ["invert"])
        assert status == 201, body
        locker = subprocess.Popen(  # another process holding SQLite's write lock
            [sys.executable, "-c", "import sqlite3, sys, time; "
             "db = sqlite3.connect(sys.argv[1], isolation_level=None); "
             "db.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(60)", str(database)],
            stdout=subprocess.PIPE, text=True,
        )
        try:
            assert locker.stdout and locker.stdout.readline() == "locked\n"
            started = time.monotonic()
            status, body = client.upload(image_bytes(), ["invert"])
            # Flask-Session tries a query three times: about 3 × DARKROOM_DB_TIMEOUT, not minutes.
            assert time.monotonic() - started < 6
            assert status == 503, body
            assert client.headers["Retry-After"] == "5"
            assert json.loads(body)["error"].startswith("Your image was processed and saved (")
        finally:
            locker.kill()
            locker.wait()
        # It was saved: the session is repaired from the manifest on the next request.
        status, body = client.get("/api/session")
        assert len(json.loads(body)["jobs"]) == 2
