"""``flask --app app cleanup``: expire old sessions and delete orphaned workspaces."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

import handoff
import storage

from .sessions import WORKSPACE_KEY, workspace_for
from .store import naive_utc_now, session_table
from .uploads import UPLOADS_DIR


def delete_expired_sessions() -> int:
    """Delete expired session rows; return how many went."""
    model, db = session_table(current_app)
    count: int = model.query.filter(model.expiry <= naive_utc_now()).delete()
    db.session.commit()
    return count


def live_workspace_ids() -> set[str]:
    """Return the workspace ids named by the remaining session rows."""
    interface: Any = current_app.session_interface  # Flask-Session's SQLAlchemy interface
    ids = set()
    for (data,) in interface.client.session.query(interface.sql_session_model.data):
        try:
            workspace_id = interface.serializer.decode(data).get(WORKSPACE_KEY)
        except Exception:  # an unreadable row names no workspace
            continue
        if workspace_id:
            ids.add(workspace_id)
    return ids


def delete_orphaned_workspaces(grace_seconds: float) -> int:
    """Delete workspaces no session names; spare ones touched within the grace period."""
    root = Path(current_app.config["DARKROOM_STORAGE_ROOT"])
    if not root.is_dir():
        return 0
    live = live_workspace_ids()
    cutoff = time.time() - grace_seconds
    deleted = 0
    for entry in root.iterdir():
        workspace_id = entry.name
        if not entry.is_dir() or workspace_id in live or not storage.is_valid_id(workspace_id):
            continue
        # A session created moments ago may not be saved yet: spare recent dirs.
        if entry.stat().st_mtime > cutoff:
            continue
        workspace_for(workspace_id).destroy()
        deleted += 1
    return deleted


def delete_stale_uploads(grace_seconds: float) -> int:
    """Delete uploads left behind by requests that died mid-way (older than the grace period)."""
    directory = Path(current_app.config["DARKROOM_STORAGE_ROOT"]) / UPLOADS_DIR
    cutoff = time.time() - grace_seconds
    stale = [p for p in directory.glob("upload-*") if p.stat().st_mtime <= cutoff] if directory.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def reclaim_abandoned_jobs(grace_seconds: float) -> int:
    """Delete the job directories of every workspace that no finished or running job owns."""
    root = Path(current_app.config["DARKROOM_STORAGE_ROOT"])
    reclaimed = 0
    for entry in root.iterdir() if root.is_dir() else ():
        if entry.is_dir() and storage.is_valid_id(entry.name):
            ws = workspace_for(entry.name)
            # The notes first: a job that finishes after they are read is in the manifest read next.
            running, ended = handoff.running(ws.id), handoff.abandoned(ws.id)
            reclaimed += storage.reclaim_abandoned(ws, storage.load_manifest(ws), grace_seconds, running, ended)
    if reclaimed:
        current_app.logger.warning("reclaimed %d abandoned job directories under %s", reclaimed, root)
    return reclaimed


@click.command("cleanup")
@with_appcontext
@click.option(
    "--grace", default=3600.0, show_default=True, help="Spare anything changed this many seconds ago or less."
)
def cleanup_command(grace: float) -> None:
    """Delete expired sessions, the workspaces no live session names, abandoned jobs and stale uploads."""
    sessions = delete_expired_sessions()
    workspaces = delete_orphaned_workspaces(grace)
    jobs = reclaim_abandoned_jobs(grace)
    uploads = delete_stale_uploads(grace)
    click.echo(
        f"Deleted {sessions} expired sessions, {workspaces} orphaned workspaces, {jobs} abandoned jobs "
        f"and {uploads} stale uploads."
    )


def init_app(app: Flask) -> None:
    """Register the CLI commands."""
    app.cli.add_command(cleanup_command)


def reclaim_at_start(app: Flask) -> None:
    """Reclaim the jobs a server killed mid-job left behind an hour ago or more (at every start)."""
    with app.app_context():
        reclaim_abandoned_jobs(grace_seconds=3600)
