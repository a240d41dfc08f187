"""What a test needs of the machine (a tool, a PostgreSQL server, a tmpfs), skipped only outside CI."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest
import sqlalchemy as sa

#: The PostgreSQL server the tests create their databases on (`.ci/start-postgres` prints one).
POSTGRES_URL = os.environ.get("DARKROOM_TEST_POSTGRES_URL")


def require(reason: str) -> NoReturn:
    """Skip for a missing tool on a developer's machine; never in CI."""
    if os.environ.get("CI"):
        pytest.fail(f"must not be skipped in CI: {reason}")
    pytest.skip(reason)


@contextmanager
def postgres_database() -> Iterator[str]:
    """Create an empty PostgreSQL database on the test server; yield its URL; drop it after."""
    if not POSTGRES_URL:
        require("no PostgreSQL server: export DARKROOM_TEST_POSTGRES_URL=$(.ci/start-postgres)")
    name = f"darkroom_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.engine.make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def tmpfs(folder: Path, options: str) -> Iterator[Path]:
    """Mount a tmpfs with ``options`` (e.g. ``size=2m`` or ``ro``) on a new ``folder``; unmount after."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        require(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); this test needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)
