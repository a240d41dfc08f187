import html
import logging
import pathlib
import re
import threading

import pytest

from tests.support.jobs import error_json, upload, wait_for_child_at_work


def page_text(response):
    return html.unescape(response.get_data(as_text=True))


def test_baseline_writes_in_process(client):
    text = page_text(client.get("/baseline"))
    assert "Initial session data" in text
    assert "dict_items([('outside_function', 'outside')])" in text
    assert "Session after function call" in text
    assert "dict_items([('outside_function', 'outside'), ('inside_function', 'inside')])" in text


def test_multi_hands_the_child_write_back(client):
    text = page_text(client.get("/multi"))
    initial, after = text.split("Session after function call")
    assert "dict_items([('outside_function', 'outside')])" in initial
    assert "dict_items([('outside_function', 'outside'), ('inside_function', 'inside')])" in after


def test_multi_value_persists_in_the_server_side_session(db_app):
    app, client = db_app, db_app.test_client()
    client.get("/multi")
    text = page_text(client.get("/multi"))
    initial = text.split("Session after function call")[0]
    assert "dict_items([('outside_function', 'outside'), ('inside_function', 'inside')])" in initial
    # And it is really in the database row, not only in a cookie.
    with app.app_context():
        interface = app.session_interface
        rows = interface.sql_session_model.query.all()
        assert len(rows) == 1
        assert interface.serializer.decode(rows[0].data)["inside_function"] == "inside"


def test_value_comes_back_through_a_pipe(client):
    text = page_text(client.get("/value"))
    assert "Initial Value: Hello initial!" in text
    assert "Value after function call: inside" in text
    assert "c_wchar_p" in text


def test_clear_all_leaves_no_value_to_come_back(app, client):
    client.get("/multi")
    assert client.post("/session/clear").status_code == 303
    text = page_text(client.get("/baseline"))
    assert "inside_function" not in text.split("Session after function call")[0]
    # Nothing of the call is left in the workspace for a later request to merge.
    root = app.config["DARKROOM_STORAGE_ROOT"]
    leftovers = [p for p in pathlib.Path(root).rglob("*") if p.is_file() and "inside" in p.read_text(errors="ignore")]
    assert leftovers == []


def test_multi_past_its_timeout_is_504(make_app):
    client = make_app(HANDOFF_TIMEOUT=0).test_client()
    response = client.get("/multi", headers={"Accept": "application/json"})
    assert response.status_code == 504
    assert error_json(response) == {"error": "Processing this photo took longer than 0 s and was stopped."}


@pytest.mark.slow
def test_value_goes_through_the_child_slots_and_the_log(make_app, caplog):
    app = make_app(HANDOFF_MAX_CHILDREN=1, HANDOFF_QUEUE_TIMEOUT=0.2)
    client = app.test_client()
    with caplog.at_level(logging.INFO, logger="handoff"):
        assert "Value after function call: inside" in page_text(client.get("/value"))
    assert re.search(r"fn=web\.seed_child\.return_value status=ok .* child_pid=\d+", caplog.text)
    client.get("/api/session")  # the session names its workspace, so /api/progress can see the job
    slow = threading.Thread(target=upload, args=(client,), kwargs={"ops": ["slow", "grayscale"]})
    slow.start()
    wait_for_child_at_work(client)
    busy = app.test_client().get("/value", headers={"Accept": "application/json"})
    slow.join()
    assert busy.status_code == 503


def test_the_about_page_explains_the_demos_and_the_header_no_longer_lists_them(client):
    about = client.get("/about")
    assert about.status_code == 200
    text = about.get_data(as_text=True)
    for path in ("/baseline", "/multi", "/value"):
        assert f'href="{path}"' in text
    assert "deleted 7 days after your last visit" in text
    header = client.get("/").get_data(as_text=True).split("<main>")[0]
    assert 'href="/about"' in header and "/baseline" not in header
