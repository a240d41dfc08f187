"""``flask cleanup``: expired sessions and orphaned workspaces go, live ones stay."""

import os
import time
from datetime import UTC, datetime, timedelta

from tests.support.jobs import upload


def test_cleanup_deletes_expired_sessions_and_their_workspaces(db_app):
    app, runner = db_app, db_app.test_cli_runner()
    live, expired = app.test_client(), app.test_client()
    live_job = upload(live).get_json()
    upload(expired)
    root = app.config["DARKROOM_STORAGE_ROOT"]
    with expired.session_transaction() as sess:
        expired_ws = sess["_workspace"]
    with live.session_transaction() as sess:
        live_ws = sess["_workspace"]
    with app.app_context():
        model = app.session_interface.sql_session_model
        row = model.query.filter_by(session_id="session:" + expired.get_cookie("session").value).one()
        row.expiry = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1)
        app.session_interface.client.session.commit()
    old = time.time() - 7200
    os.utime(os.path.join(root, expired_ws), (old, old))

    result = runner.invoke(args=["cleanup"])
    assert result.exit_code == 0, result.output
    assert "Deleted 1 expired sessions, 1 orphaned workspaces, 0 abandoned jobs and 0 stale uploads." in result.output
    assert not os.path.exists(os.path.join(root, expired_ws))
    assert not os.path.exists(os.path.join(root, expired_ws + ".lock"))
    assert os.path.isdir(os.path.join(root, live_ws))
    assert live.get(live_job["outputs"][0]["url"]).status_code == 200
    with app.app_context():
        assert app.session_interface.sql_session_model.query.count() == 1


def test_cleanup_spares_recent_workspaces(db_app):
    app, runner = db_app, db_app.test_cli_runner()
    orphan = os.path.join(app.config["DARKROOM_STORAGE_ROOT"], "ab" * 12)
    os.makedirs(orphan)
    assert "0 orphaned" in runner.invoke(args=["cleanup"]).output
    assert os.path.isdir(orphan)
    assert "1 orphaned" in runner.invoke(args=["cleanup", "--grace", "0"]).output
    assert not os.path.exists(orphan)


def test_cleanup_deletes_stale_uploads(db_app):
    app, runner = db_app, db_app.test_cli_runner()
    uploads = os.path.join(app.config["DARKROOM_STORAGE_ROOT"], ".uploads")
    os.makedirs(uploads)
    stale, fresh = os.path.join(uploads, "upload-stale"), os.path.join(uploads, "upload-fresh")
    for path in (stale, fresh):
        with open(path, "wb") as f:
            f.write(b"half an upload")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    assert "1 stale uploads" in runner.invoke(args=["cleanup"]).output
    assert not os.path.exists(stale) and os.path.exists(fresh)
