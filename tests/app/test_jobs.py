import logging
import os
import re
import threading
import time

import pytest

import imaging
import storage
from tests.support.jobs import upload
from tests.support.photos import decode, image_bytes


def session_jobs(client):
    response = client.get("/api/session")
    assert response.status_code == 200
    return response.get_json()["jobs"]


def test_upload_lists_outputs_that_serve_images_of_their_size(client):
    response = upload(client, image_bytes((800, 600)), ops=["thumbnail", "grayscale", "rotate", "edges"])
    assert response.status_code == 201
    job = response.get_json()
    assert set(job) == {"id", "created", "source", "outputs", "zip_url"}
    assert job["source"] == {
        "name": "photo.jpg", "width": 800, "height": 600, "format": "JPEG",
        "bytes": job["source"]["bytes"], "url": job["source"]["url"],
        "download_url": job["source"]["url"] + "?download=1",
        "previews": job["source"]["previews"], "preview_url": job["source"]["previews"][-1]["url"],
    }
    assert [o["op"] for o in job["outputs"]] == ["thumbnail", "grayscale", "rotate", "edges"]

    jobs = session_jobs(client)
    assert jobs == [job]
    expected_sizes = {"thumbnail": (320, 240), "grayscale": (800, 600), "rotate": (600, 800), "edges": (800, 600)}
    for out in job["outputs"] + [job["source"]]:
        served = client.get(out["url"])
        assert served.status_code == 200
        assert served.mimetype == f"image/{out['format'].lower()}"
        assert len(served.data) == out["bytes"]
        im = decode(served.data)
        assert im.size == (out["width"], out["height"])
        if "op" in out:
            assert im.size == expected_sizes[out["op"]]
        for preview in out["previews"]:
            im = decode(client.get(preview["url"]).data)
            assert im.format == "WEBP" and im.size == (preview["width"], preview["height"])


def test_default_ops_apply_when_none_chosen(client):
    job = upload(client).get_json()
    assert [o["op"] for o in job["outputs"]] == list(imaging.DEFAULT_OPS)


@pytest.mark.parametrize("op", sorted(set(imaging.OPS) - {"explode", "die", "hog", "stall", "slow"}))
def test_every_op_produces_a_decodable_image(client, op):
    response = upload(client, image_bytes((300, 200), "PNG"), ops=[op], name="x.png")
    assert response.status_code == 201, response.get_json()
    out = response.get_json()["outputs"][0]
    assert decode(client.get(out["url"]).data).size == (out["width"], out["height"])


def test_png_with_alpha_keeps_alpha(client):
    response = upload(client, image_bytes((100, 80), "PNG", (10, 20, 30, 100), "RGBA"), ops=["invert"], name="a.png")
    out = response.get_json()["outputs"][0]
    assert out["format"] == "PNG"
    assert decode(client.get(out["url"]).data).mode == "RGBA"


def test_work_runs_in_a_child_process(client, caplog):
    with caplog.at_level(logging.INFO):
        assert upload(client).status_code == 201
    [line] = [r.getMessage() for r in caplog.records if r.name == "darkroom.jobs"]
    found = re.search(r"child_pid=(\d+)", line)
    assert found, line
    child_pid = int(found.group(1))
    assert child_pid != os.getpid()
    assert re.search(r"status=done .* mode=warm", line)
    [call] = [r.getMessage() for r in caplog.records if r.name == "handoff"]
    assert re.search(rf"fn=imaging.job.run_job status=ok .* exit=0 child_pid={child_pid} child_peak_rss_kb=\d+", call)


def test_manifest_on_disk_matches_the_session(db_app):
    app, client = db_app, db_app.test_client()
    for _ in range(2):
        upload(client)
    jobs = session_jobs(client)
    with app.app_context():
        interface = app.session_interface
        [row] = interface.sql_session_model.query.all()
        data = interface.serializer.decode(row.data)
    ws = storage.Workspace(app.config["DARKROOM_STORAGE_ROOT"], data["_workspace"])
    manifest = storage.read_manifest(ws)  # from the files, not this process's cache
    assert manifest["jobs"] == data["jobs"]
    assert [j["id"] for j in manifest["jobs"]] == [j["id"] for j in jobs]
    for job in manifest["jobs"]:
        for out in job["outputs"]:
            assert (ws.path / job["id"] / out["file"]).is_file()


def test_clear_deletes_files_and_jobs(app, client):
    job = upload(client).get_json()
    with client.session_transaction() as sess:
        workspace_dir = os.path.join(app.config["DARKROOM_STORAGE_ROOT"], sess["_workspace"])
    assert os.path.isdir(os.path.join(workspace_dir, job["id"]))
    response = client.post("/session/clear", headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert response.get_json() == {"jobs": []}
    assert session_jobs(client) == []
    assert not os.path.exists(os.path.join(workspace_dir, job["id"]))
    assert client.get(job["outputs"][0]["url"]).status_code == 404


def test_clear_from_the_form_redirects(client):
    upload(client)
    response = client.post("/session/clear")
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    assert session_jobs(client) == []


def test_delete_one_job(client):
    first = upload(client).get_json()
    second = upload(client).get_json()
    response = client.post(f"/jobs/{first['id']}/delete", headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert [j["id"] for j in session_jobs(client)] == [second["id"]]
    assert client.post(f"/jobs/{first['id']}/delete", headers={"Accept": "application/json"}).status_code == 404


def test_html_form_upload_redirects_and_shows_the_gallery(client):
    response = upload(client, ops=["thumbnail", "sepia"], json=False)
    assert response.status_code == 303
    [job] = session_jobs(client)
    assert response.headers["Location"] == f"/#job-{job['id']}"
    page = client.get("/").get_data(as_text=True)
    assert "Done: 2 images from photo.jpg." in page
    for out in job["outputs"]:
        assert out["url"] in page


def test_jobs_are_listed_oldest_first_and_shown_newest_first(client):
    ids = [upload(client).get_json()["id"] for _ in range(3)]
    assert [j["id"] for j in session_jobs(client)] == ids
    page = client.get("/").get_data(as_text=True)
    assert page.index(ids[2]) < page.index(ids[1]) < page.index(ids[0])


def test_progress_is_empty_when_nothing_runs(client):
    assert client.get("/api/progress").get_json() == {"running": []}


@pytest.mark.parametrize("mode", ["warm", "spawn", "pool", "inline"])
def test_every_mode_produces_the_same_job(make_app, mode, caplog):
    client = make_app(HANDOFF_MODE=mode).test_client()
    with caplog.at_level(logging.INFO, logger="darkroom.jobs"):
        response = upload(client, image_bytes((500, 400)), ops=["thumbnail", "invert"])
    assert response.status_code == 201
    job = response.get_json()
    sizes = [(o["op"], o["width"], o["height"]) for o in job["outputs"]]
    assert sizes == [("thumbnail", 320, 256), ("invert", 500, 400)]
    assert session_jobs(client) == [job]
    assert f"mode={mode}" in caplog.text


def test_unknown_mode_is_refused_at_start(make_app):
    with pytest.raises(ValueError, match="HANDOFF_MODE must be one of"):
        make_app(HANDOFF_MODE="threads")


def test_a_retried_upload_returns_the_job_it_already_made(client):
    first = upload(client, **{"Idempotency-Key": "file-1"})
    again = upload(client, **{"Idempotency-Key": "file-1"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    form = upload(client, json=False, **{"Idempotency-Key": "file-1"})
    assert form.status_code == 303 and "Already done" in client.get("/").get_data(as_text=True)
    assert [j["id"] for j in session_jobs(client)] == [first.get_json()["id"]]
    assert upload(client, **{"Idempotency-Key": "file-2"}).status_code == 201  # another file, another job


@pytest.mark.slow
def test_a_retry_while_the_job_runs_is_409(client):
    client.get("/api/session")
    worker = threading.Thread(target=upload, args=(client,), kwargs={"ops": ["slow"], "Idempotency-Key": "k"})
    worker.start()
    deadline = time.monotonic() + 10
    while not client.get("/api/progress").get_json()["running"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    response = upload(client, ops=["slow"], **{"Idempotency-Key": "k"})
    worker.join()
    assert response.status_code == 409
    assert "still being processed" in response.get_json()["error"]
    assert len(session_jobs(client)) == 1


def test_a_malformed_idempotency_key_is_400(client):
    response = upload(client, **{"Idempotency-Key": "../../etc"})
    assert response.status_code == 400
    assert "Idempotency-Key" in response.get_json()["error"]


def test_darkroom_passes_handoff_its_own_defaults_and_an_operators_environment_wins(make_app, monkeypatch):
    app = make_app()
    assert (app.config["HANDOFF_MEMORY_MB"], app.config["HANDOFF_REHEARSAL"]) == (2048, "imaging.job:rehearse")
    assert app.config["HANDOFF_LOCK_TYPE"] == app.config["DARKROOM_LOCK_TYPE"] == "file"
    monkeypatch.setenv("FLASK_HANDOFF_MEMORY_MB", "700")
    monkeypatch.setenv("FLASK_HANDOFF_LOCK_TYPE", '"soft"')
    app = make_app()
    assert (app.config["HANDOFF_MEMORY_MB"], app.config["HANDOFF_LOCK_TYPE"]) == (700, "soft")
    assert app.extensions["handoff"].memory_mb == 700 and app.extensions["handoff"].lock_type == "soft"


def test_an_operators_handoff_settings_win_and_the_children_still_preload_the_image_code(make_app, tmp_path):
    app = make_app(HANDOFF_LOCK_TYPE="soft", HANDOFF_PRELOAD=["json"], HANDOFF_REHEARSAL=None)
    assert app.config["HANDOFF_LOCK_TYPE"] == "soft" and app.config["HANDOFF_REHEARSAL"] is None
    assert app.config["HANDOFF_PRELOAD"] == [*imaging.CHILD_PRELOAD, "web.seed_child", "json"]
    assert upload(app.test_client()).status_code == 201
    # One root holds a workspace's manifest and its call records: a second one is refused, not replaced.
    with pytest.raises(ValueError, match="HANDOFF_STORAGE_ROOT must be DARKROOM_STORAGE_ROOT"):
        make_app(HANDOFF_STORAGE_ROOT=str(tmp_path / "elsewhere"))
