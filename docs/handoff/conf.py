"""Sphinx configuration of flask-handoff's documentation (``nox -s docs``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import handoff  # noqa: E402

project = "flask-handoff"
author = "The Darkroom authors"
copyright = "2026, The Darkroom authors"
release = handoff.__version__
version = ".".join(release.split(".")[:2])

extensions = ["sphinx.ext.autodoc"]
exclude_patterns = ["README.md", "_build"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
html_theme = "furo"
html_title = f"flask-handoff {release}"
