"""Darkroom's settings: every default in one mapping (the README's Configuration table), read in one order."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

import imaging
import storage

from . import store

#: Every setting Darkroom reads, with its default; the README's Configuration table lists the same.
#: The two paths are ``None`` here: they default to the instance folder (:func:`load`).
#: ``handoff``'s own settings are not repeated: ``Handoff(...)`` in app.py passes it what differs.
DEFAULTS: dict[str, Any] = {
    "SECRET_KEY": None,  # None: generated into <instance>/secret_key
    "SQLALCHEMY_DATABASE_URI": None,  # None: sqlite:///<instance>/darkroom.db
    "MAX_CONTENT_LENGTH": 40 * 1024 * 1024,
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "SESSION_COOKIE_SECURE": None,  # None: Secure exactly when PREFERRED_URL_SCHEME is "https" (web/security.py)
    "PERMANENT_SESSION_LIFETIME": 7 * 24 * 3600,
    "SESSION_REFRESH_EACH_REQUEST": False,
    "DARKROOM_STORAGE_ROOT": None,  # None: <instance>/workspaces
    "DARKROOM_LOCK_TYPE": "file",
    "DARKROOM_MAX_PIXELS": 60_000_000,
    "DARKROOM_JOB_THREADS": None,  # None: the machine's cores
    "DARKROOM_CORES_DIR": None,  # None: <tmp>/darkroom-cores-<uid>
    "DARKROOM_PAGE_SIZE": 10,
    "DARKROOM_SESSION_JOBS": 20,
    "DARKROOM_DB_TIMEOUT": 2.0,
    "DARKROOM_PLUGINS": [],
    "DARKROOM_PROXY_HOPS": 0,
    "DARKROOM_TRUSTED_ORIGINS": [],
    "DARKROOM_CLIENT_LIMITS": True,
    "DARKROOM_CLIENT_JOB_RATE": "60 per minute; 600 per hour",
    "DARKROOM_CLIENT_SESSION_RATE": "10 per minute; 100 per hour",
    "DARKROOM_CLIENT_ZIP_RATE": "20 per minute; 200 per hour",
    "DARKROOM_CLIENT_BYTES_PER_HOUR": 1024**3,
    "DARKROOM_SESSION_QUOTA_MB": 1024,
    "DARKROOM_MIN_FREE_MB": 512,
    "DARKROOM_METRICS_ALLOW": ["127.0.0.1/32", "::1/128"],
    "DARKROOM_METRICS_TOKEN": None,
    "DARKROOM_LOG_FORMAT": "text",
    "RATELIMIT_STORAGE_URI": "memory://",
    # Redis down: count in each process's memory (a warning, once) until it answers again.
    "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": True,
}

#: What every job's child imports before it is needed, besides the operator's own HANDOFF_PRELOAD.
CHILD_PRELOAD = [*imaging.CHILD_PRELOAD, "web.seed_child"]


def load(app: Flask, test_config: Mapping[str, Any] | None = None) -> None:
    """Read the settings: the defaults, then ``<instance>/config.py``, then ``FLASK_*`` variables, then ``test_config``.

    The later wins. Then the settings are checked, the secret key is loaded
    (or created), and ``handoff`` is given the settings it shares with Darkroom.
    """
    config = app.config
    config.from_mapping(copy.deepcopy(DEFAULTS))  # an app's lists are its own, never another app's
    config.update(SQLALCHEMY_DATABASE_URI="sqlite:///" + os.path.join(app.instance_path, "darkroom.db"),
                  DARKROOM_STORAGE_ROOT=os.path.join(app.instance_path, "workspaces"))
    config.from_pyfile("config.py", silent=True)
    config.from_prefixed_env()
    config.update(test_config or {})
    if config["DARKROOM_LOCK_TYPE"] not in storage.LOCK_TYPES:
        raise ValueError(f"DARKROOM_LOCK_TYPE must be one of {sorted(storage.LOCK_TYPES)}, "
                         f"not {config['DARKROOM_LOCK_TYPE']!r}")
    os.makedirs(app.instance_path, exist_ok=True)
    store.check_instance_writable(app)
    if not config["SECRET_KEY"]:
        config["SECRET_KEY"] = store.load_or_create_secret(app.instance_path)
    share_with_handoff(app)


def share_with_handoff(app: Flask) -> None:
    """Give ``handoff`` the settings it shares with Darkroom; an operator's own lock type wins.

    ``handoff`` keeps its call records in the session's workspace, beside the
    manifest: one root for both. Its children always preload the image code.
    """
    config = app.config
    root = config.setdefault("HANDOFF_STORAGE_ROOT", config["DARKROOM_STORAGE_ROOT"])
    if os.path.realpath(root) != os.path.realpath(config["DARKROOM_STORAGE_ROOT"]):
        raise ValueError("HANDOFF_STORAGE_ROOT must be DARKROOM_STORAGE_ROOT (set only the latter)")
    config.setdefault("HANDOFF_LOCK_TYPE", config["DARKROOM_LOCK_TYPE"])
    config["HANDOFF_PRELOAD"] = [*CHILD_PRELOAD, *config.get("HANDOFF_PRELOAD", [])]
