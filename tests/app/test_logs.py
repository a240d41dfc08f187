"""Request ids and job lines: a user's error report finds its log lines, and the log never holds a
session id."""

import json
import logging
import re

import pytest

from tests.support import Client, Server
from tests.support.jobs import error_json, upload
from tests.support.photos import image_bytes


def test_every_answer_has_a_request_id_and_a_proxys_is_taken_only_when_trusted(make_app):
    plain, proxied = make_app().test_client(), make_app(DARKROOM_PROXY_HOPS=1).test_client()
    ids = {plain.get("/healthz").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3 and all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)
    sent = {"X-Request-ID": "nginx-5f2a9c31e0b4"}
    assert plain.get("/healthz", headers=sent).headers["X-Request-ID"] != sent["X-Request-ID"]  # anyone can send it
    assert proxied.get("/healthz", headers=sent).headers["X-Request-ID"] == sent["X-Request-ID"]
    for forged in ("short", "has spaces in it", "x" * 65, "quote\"d-value-here"):
        assert proxied.get("/healthz", headers={"X-Request-ID": forged}).headers["X-Request-ID"] != forged


def test_an_error_answer_carries_its_request_id_in_json_and_on_the_page(client):
    refused = upload(client, b"not an image at all", name="notes.txt")
    assert refused.status_code == 415
    assert error_json(refused)["kind"] == "unsupported_format"  # error_json checks the id against the header
    page = client.get("/no-such-page")
    assert page.status_code == 404
    assert f"quote request {page.headers['X-Request-ID']}" in page.get_data(as_text=True)


def job_lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "darkroom.jobs"]


def test_one_json_line_per_job_whatever_its_outcome_with_a_hash_of_the_session_never_its_id(make_app, caplog):
    app = make_app(DARKROOM_LOG_FORMAT="json")
    client = app.test_client()
    with caplog.at_level(logging.INFO, logger="darkroom.jobs"):
        done = upload(client, image_bytes((300, 200)), ops=["sepia", "thumbnail:100"])
        refused = upload(client, image_bytes((300, 200))[:400])
    sid = client.get_cookie("session").value
    first, second = [json.loads(line) for line in job_lines(caplog)]
    assert first["request_id"] == done.headers["X-Request-ID"] and first["id"] == done.get_json()["id"]
    assert (first["status"], first["ops"], first["bytes_in"]) == ("done", "sepia,thumbnail:100",
                                                                 done.get_json()["source"]["bytes"])
    assert first["bytes_out"] == sum(o["bytes"] for o in done.get_json()["outputs"])
    assert first["peak_rss_kb"] > 10_000 and first["queue_ms"] >= 0 and first["duration_ms"] > 0
    assert second["request_id"] == refused.headers["X-Request-ID"] and second["status"] == "refused_damaged"
    assert first["session"] == second["session"] and re.fullmatch(r"[0-9a-f]{12}", first["session"])
    assert sid not in caplog.text  # the session id is a secret: only its hash is logged


@pytest.mark.slow
def test_a_bugs_log_lines_carry_the_request_id_the_user_sees():
    env = {"FLASK_DARKROOM_PLUGINS": '["tests.support.faulty_ops"]'}
    with Server("flask", env=env) as server:
        status, body = Client(server.port).upload(image_bytes(), ["explode"])
        assert status == 500
        answer = json.loads(body)
        lines = [line for line in server.log_text().splitlines() if f"[{answer['request_id']}]" in line]
        assert any(f"error {answer['error_id']}" in line for line in lines)  # the traceback's line
        assert any(line.split(": ", 1)[1].startswith("job ") and "status=failed" in line for line in lines)
