"""Limits per client address and per session; the free-disk reserve; what refusals leave behind."""

import io
import os
import time
from datetime import UTC, datetime, timedelta

import pytest

from app import create_app
from handoff import Handoff
from tests.support.jobs import error_json, upload
from tests.support.photos import image_bytes


def session_rows(app):
    """How many session rows the database holds."""
    with app.app_context():
        return app.session_interface.sql_session_model.query.count()


def stored_files(app):
    """Every file under the storage root except lock files."""
    root = app.config["DARKROOM_STORAGE_ROOT"]
    return sorted(
        os.path.relpath(os.path.join(d, f), root)
        for d, _, files in os.walk(root) for f in files if not f.endswith(".lock")
    )


def client_at(app, address):
    """A test client whose requests come from ``address``."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def test_job_rate_per_client_address(make_app):
    app = make_app(DARKROOM_CLIENT_JOB_RATE="2 per minute")
    client = app.test_client()
    assert [upload(client).status_code for _ in range(2)] == [201, 201]
    before = stored_files(app)
    response = upload(client)
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.get_json()["error"].startswith("Too many photos from your address (the limit is 2 per minute).")
    assert stored_files(app) == before
    # Every view that starts a child shares the rate.
    assert client.get("/value").status_code == 429
    # Another address has its own.
    other = client_at(app, "192.0.2.7")
    assert upload(other).status_code == 201


def test_each_file_of_a_form_counts_against_the_job_rate(make_app):
    app = make_app(DARKROOM_CLIENT_JOB_RATE="5 per minute")
    client = app.test_client()
    files = [(io.BytesIO(image_bytes((120, 80))), f"photo{i:02}.jpg") for i in range(30)]
    response = client.post("/jobs", data={"ops": ["grayscale"], "image": files}, content_type="multipart/form-data")
    assert response.status_code == 303
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    # The five the rate admits are kept, in order; the other 25 are named and not stored.
    names = [j["source"]["name"] for j in client.get("/api/session").get_json()["jobs"]]
    assert names == [f"photo{i:02}.jpg" for i in range(5)]
    assert len({path.split(os.sep)[1] for path in stored_files(app) if path.count(os.sep) >= 2}) == 5
    page = client.get("/").get_data(as_text=True)
    assert ("Not processed: photo05.jpg, photo06.jpg, photo07.jpg and 22 more. Too many photos from your "
            "address (the limit is 5 per minute). Please try again in ") in page
    assert upload(client).status_code == 429  # the rate is spent: the next request is refused whole


def test_zip_downloads_have_a_rate_of_their_own(make_app):
    app = make_app(DARKROOM_CLIENT_ZIP_RATE="2 per minute", DARKROOM_CLIENT_JOB_RATE="2 per minute")
    client = app.test_client()
    job = upload(client).get_json()
    assert client.get("/download.zip").status_code == 200
    assert client.get(f"/jobs/{job['id']}/download.zip").status_code == 200
    refused = client.get("/download.zip", headers={"Accept": "application/json"})
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert error_json(refused)["error"].startswith(
        "Too many downloads of ZIP archives from your address (the limit is 2 per minute). Please try again in ")
    # Single files and uploads have limits of their own.
    assert client.get(job["outputs"][0]["url"]).status_code == 200
    assert upload(client).status_code == 201
    assert client_at(app, "192.0.2.7").get("/download.zip").status_code == 404  # another address: not limited


def test_forged_forwarded_for_does_not_reset_the_rate(make_app):
    app = make_app(DARKROOM_CLIENT_JOB_RATE="1 per minute")
    client = app.test_client()
    assert upload(client).status_code == 201
    assert upload(client, **{"X-Forwarded-For": "192.0.2.99"}).status_code == 429


def test_rate_follows_the_real_address_behind_a_trusted_proxy(make_app):
    app = make_app(DARKROOM_CLIENT_JOB_RATE="1 per minute", DARKROOM_PROXY_HOPS=1)
    client = app.test_client()
    assert upload(client, **{"X-Forwarded-For": "192.0.2.1"}).status_code == 201
    assert upload(client, **{"X-Forwarded-For": "192.0.2.1"}).status_code == 429
    assert upload(client, **{"X-Forwarded-For": "192.0.2.2"}).status_code == 201


def test_byte_budget_counts_what_a_job_stores(make_app):
    data = image_bytes((800, 600))
    app = make_app()
    probe = upload(app.test_client(), data=data, ops=["grayscale", "blur"]).get_json()
    stored = probe["source"]["bytes"] + sum(o["bytes"] for o in probe["outputs"])
    # Room for two uploads but not for one upload plus its outputs and another upload.
    budget = stored + len(data) // 2
    assert 2 * len(data) < budget
    app = make_app(DARKROOM_CLIENT_BYTES_PER_HOUR=budget)
    client = app.test_client()
    assert upload(client, data=data, ops=["grayscale", "blur"]).status_code == 201
    response = upload(client, data=data, ops=["grayscale", "blur"])
    assert response.status_code == 429
    assert "stored its" in response.get_json()["error"]
    assert int(response.headers["Retry-After"]) > 60


def test_refused_jobs_do_not_use_the_byte_budget(make_app):
    refused = b"not an image".ljust(20_000, b".")
    # Five refused uploads would spend the budget twice over, if they were charged.
    app = make_app(DARKROOM_CLIENT_BYTES_PER_HOUR=50_000)
    client = app.test_client()
    for _ in range(5):
        assert upload(client, data=refused).status_code == 415
    assert upload(client, ops=["invert"]).status_code == 201


def test_session_quota(make_app):
    app = make_app(DARKROOM_SESSION_QUOTA_MB=0.05)  # about 52 kB
    client = app.test_client()
    first = upload(client, ops=["grayscale", "sepia"])
    assert first.status_code == 201
    before = stored_files(app)
    response = upload(client, ops=["invert"])
    assert response.status_code == 507
    assert "of the 51 kB a session may keep; delete some photos" in response.get_json()["error"]
    assert stored_files(app) == before
    assert [j["id"] for j in client.get("/api/session").get_json()["jobs"]] == [first.get_json()["id"]]
    # Deleting makes room again.
    client.post(f"/jobs/{first.get_json()['id']}/delete", headers={"Accept": "application/json"})
    assert upload(client, ops=["invert"]).status_code == 201


def test_free_disk_reserve_is_always_on(make_app):
    app = make_app(DARKROOM_CLIENT_LIMITS=False, DARKROOM_MIN_FREE_MB=10**12)  # an exabyte
    client = app.test_client()
    response = upload(client)
    assert response.status_code == 507
    assert error_json(response) == {"error": "The server's storage is full; please try again later."}
    assert stored_files(app) == []
    page = upload(client, json=False)
    assert page.status_code == 507 and "storage is full" in page.get_data(as_text=True)


def test_one_switch_turns_the_client_limits_off(monkeypatch, tmp_path):
    monkeypatch.setenv("FLASK_DARKROOM_CLIENT_LIMITS", "false")
    app = create_app(
        {"TESTING": True, "DARKROOM_CLIENT_JOB_RATE": "1 per hour", "DARKROOM_CLIENT_BYTES_PER_HOUR": 1,
         "DARKROOM_SESSION_QUOTA_MB": 0.001},
        instance_path=str(tmp_path / "instance"),
    )
    client = app.test_client()
    assert [upload(client, ops=["invert"]).status_code for _ in range(3)] == [201] * 3
    with app.app_context():
        Handoff.close()


def test_refusals_from_clients_without_a_session_write_no_row(make_app):
    app = make_app(DARKROOM_CLIENT_JOB_RATE="1 per minute")
    assert upload(app.test_client()).status_code == 201
    rows = session_rows(app)
    refusals = [
        upload(app.test_client()),  # 429
        upload(app.test_client(), json=False),  # 429 from the form
        upload(client_at(app, "192.0.2.3"), json=False, data=b"junk"),  # 415
        upload(app.test_client(), json=False, Origin="https://evil.example"),  # 403
        app.test_client().post("/session/clear"),
        app.test_client().get("/api/progress"),
    ]
    assert [r.status_code for r in refusals] == [429, 429, 415, 403, 303, 200]
    assert all("Set-Cookie" not in r.headers for r in refusals)
    assert session_rows(app) == rows


def test_form_refusal_of_a_known_session_is_flashed(make_app):
    app = make_app(DARKROOM_CLIENT_JOB_RATE="1 per minute")
    client = app.test_client()
    client.get("/api/session")
    assert upload(client, json=False).status_code == 303
    assert upload(client, json=False).status_code == 303
    assert "Too many photos from your address" in client.get("/").get_data(as_text=True)


def test_unknown_ops_are_not_echoed_in_full(client):
    ops = [f"op{i}-" + "x" * 500 for i in range(950)]
    response = upload(client, ops=ops)
    assert response.status_code == 400
    message = response.get_json()["error"]
    assert len(message) < 300
    assert message.startswith("Unknown operation 'op0-xxxx")
    assert "and 947 more; choose from: thumbnail," in message


def test_clearing_gives_the_session_a_new_id(app, client):
    upload(client)
    old = client.get_cookie("session").value
    response = client.post("/session/clear", headers={"Accept": "application/json"})
    new = client.get_cookie("session").value
    assert response.status_code == 200 and new != old
    # The new cookie outlives the browser, as the old one did: the images are kept for days.
    assert "Expires=" in response.headers["Set-Cookie"]
    # The old id no longer names a session: whoever planted it sees nothing of what follows.
    upload(client)
    planted = app.test_client()
    planted.set_cookie("session", old)
    assert planted.get("/api/session").get_json() == {"jobs": [], "next": None}
    assert len(client.get("/api/session").get_json()["jobs"]) == 1


def expiry(app, client):
    with app.app_context():
        model = app.session_interface.sql_session_model
        row = model.query.filter_by(session_id="session:" + client.get_cookie("session").value).one()
        return row, model


def test_viewing_the_gallery_extends_the_session(app, client):
    upload(client)
    with app.app_context():
        row, model = expiry(app, client)
        row.expiry = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1)
        app.session_interface.client.session.commit()
    with client.session_transaction() as sess:
        sess["_seen"] = time.time() - 7200
    assert "Set-Cookie" in client.get("/").headers
    with app.app_context():
        row, _ = expiry(app, client)
        assert row.expiry > datetime.now(UTC).replace(tzinfo=None) + timedelta(days=6)
    # Within the hour, looking again writes nothing.
    assert "Set-Cookie" not in client.get("/").headers


@pytest.mark.slow
def test_two_thousand_cookie_less_looks_at_the_page_write_no_session_row(make_app):
    app = make_app(DARKROOM_CLIENT_LIMITS=False)  # no rate to hide behind: a look writes nothing
    looks = [app.test_client().get("/") for _ in range(2000)]
    assert {r.status_code for r in looks} == {200}
    assert [r for r in looks if "Set-Cookie" in r.headers] == []
    assert session_rows(app) == 0


@pytest.mark.slow
def test_sessions_asked_for_are_limited_per_address_and_expire_within_the_hour(make_app):
    app = make_app(DARKROOM_CLIENT_SESSION_RATE="10 per minute")
    flood = [app.test_client().get("/api/session") for _ in range(2000)]
    assert {r.status_code for r in flood} == {200}
    assert sum("Set-Cookie" in r.headers for r in flood) == 10
    assert session_rows(app) == 10
    with app.app_context():
        expiries = [row.expiry for row in app.session_interface.sql_session_model.query]
    in_an_hour = datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=1, minutes=1)
    assert max(expiries) <= in_an_hour
    # A session that comes to hold a job lives its full lifetime; a client past the rate
    # still starts one with its first stored upload.
    client = client_at(app, "10.0.0.9")
    client.get("/api/session")
    assert expiry(app, client)[0].expiry <= in_an_hour
    assert upload(client).status_code == 201
    assert expiry(app, client)[0].expiry > in_an_hour + timedelta(days=6)
    late = app.test_client()
    assert late.get("/api/session").status_code == 200 and late.get_cookie("session") is None
    assert upload(late).status_code == 201 and session_rows(app) == 12
