"""Uploads go straight to a file beside the workspaces, so keeping one is a rename."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO

from flask import Flask, Request, current_app, g
from werkzeug.datastructures import FileStorage

UPLOADS_DIR = ".uploads"


class UploadRequest(Request):
    """A request whose file parts are written to disk under the storage root, never kept in memory."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        directory = Path(current_app.config["DARKROOM_STORAGE_ROOT"]) / UPLOADS_DIR
        directory.mkdir(parents=True, exist_ok=True)
        stream = tempfile.NamedTemporaryFile(dir=directory, prefix="upload-", delete=False)  # noqa: SIM115
        g.setdefault("upload_paths", []).append(stream.name)
        return stream


def keep_upload(upload: FileStorage, destination: Path) -> None:
    """Move an uploaded file to ``destination`` (a rename: it is already on the same disk)."""
    upload.stream.flush()
    os.replace(upload.stream.name, destination)


def _remove_leftovers(_exc: BaseException | None) -> None:
    # Uploads that no view kept (refused requests, errors) go when the request ends.
    for path in g.pop("upload_paths", ()):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def init_app(app: Flask) -> None:
    """Use UploadRequest and clean up after it."""
    app.request_class = UploadRequest
    app.teardown_request(_remove_leftovers)
