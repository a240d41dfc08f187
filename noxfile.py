"""flask-handoff's matrix: each cell a real server serving ``tests/handoff/matrix/app.py`` from the built wheel.

``nox -s matrix`` runs every cell (``nox -s matrix -- gevent uwsgi`` those
named); ``nox -s package`` builds and checks the sdist and wheel; ``nox -s
docs`` builds the documentation with warnings as errors. Each cell gets a
fresh virtualenv (made with uv) holding the wheel, the versions the cell
names, and its server; nothing is imported from this source tree.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import nox

nox.options.sessions = ["package", "matrix", "docs"]
ROOT = Path(__file__).parent
WORK = ROOT / ".nox"
CHECK = ROOT / "tests" / "handoff" / "matrix" / "check.py"

LATEST = ["flask==3.1.3", "werkzeug==3.1.9", "flask-session==0.8.0"]
FLASK_30 = ["flask==3.0.3", "werkzeug==3.0.6", "flask-session==0.7.0"]
FLASK_23 = ["flask==2.3.3", "werkzeug==2.3.8", "flask-session==0.6.0"]
FLASK_22 = ["flask==2.2.5", "werkzeug==2.2.3", "flask-session==0.5.0"]
#: Every dependency at the lowest version pyproject.toml allows (Werkzeug: the lowest Flask 2.2.0 runs on here).
MINIMUM = ["flask==2.2.0", "werkzeug==2.2.2", "flask-session==0.5.0", "filelock==3.30.0"]
BACKENDS = {"sqlalchemy": ["flask-sqlalchemy", "sqlalchemy"], "redis": ["redis"], "cachelib": ["cachelib"],
            "filesystem": [], "cookie": []}
GUNICORN = ["gunicorn==27.0.1"]
UWSGI = ["uwsgi==2.0.31"]  # built from source by pip: the server binary embeds the cell's Python
#: What each server of check.py needs installed. gunicorn dropped its eventlet worker after 23.
SERVER_PACKAGES = {
    "flask-run-debug": [], "app-run-reloader": [],
    "gunicorn-sync": GUNICORN, "gunicorn-gthread": GUNICORN, "gunicorn-preload": GUNICORN,
    "gunicorn-max-requests": GUNICORN, "gunicorn-gevent": ["gunicorn[gevent]==27.0.1", "gevent==26.9.0"],
    "gunicorn-eventlet": ["gunicorn[eventlet]==23.0.0", "eventlet==0.40.4"],
    "uwsgi": UWSGI, "uwsgi-threads": UWSGI, "uwsgi-lazy-apps": UWSGI, "waitress": ["waitress==3.0.2"],
}

#: name: (python, versions, server, backend, mode)
CELLS = {
    "flask-run": ("3.11", LATEST, "flask-run-debug", "sqlalchemy", "warm"),
    "app-run-flask22": ("3.11", FLASK_22, "app-run-reloader", "filesystem", "warm"),
    "gthread-py313": ("3.13", LATEST, "gunicorn-gthread", "cachelib", "warm"),
    "gevent": ("3.11", LATEST, "gunicorn-gevent", "sqlalchemy", "warm"),
    "eventlet-flask23": ("3.11", FLASK_23, "gunicorn-eventlet", "redis", "warm"),
    "preload-cookie": ("3.12", LATEST, "gunicorn-preload", "cookie", "warm"),
    "max-requests": ("3.11", FLASK_30, "gunicorn-max-requests", "cachelib", "warm"),
    "uwsgi": ("3.11", LATEST, "uwsgi", "sqlalchemy", "warm"),
    "uwsgi-threads-flask23": ("3.11", FLASK_23, "uwsgi-threads", "filesystem", "warm"),
    "uwsgi-lazy-apps": ("3.11", FLASK_30, "uwsgi-lazy-apps", "redis", "warm"),
    "waitress-py313": ("3.13", LATEST, "waitress", "filesystem", "warm"),
    "minimum": ("3.11", MINIMUM, "gunicorn-sync", "sqlalchemy", "warm"),
    "spawn": ("3.11", LATEST, "gunicorn-gthread", "filesystem", "spawn"),
}


def python_path(version: str) -> str:
    """This machine's interpreter for ``version``: one pyenv installed, or one on PATH (not a virtualenv's)."""
    for candidate in (*sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}"))),
                      shutil.which(f"python{version}")):
        if not candidate or "shims" in candidate or (Path(candidate).parent.parent / "pyvenv.cfg").exists():
            continue
        if os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(f"no Python {version} on this machine (pyenv install {version})")


_built: dict[str, Path] = {}


def build(session: nox.Session) -> dict[str, Path]:
    """Build the sdist and wheel once per nox run; return their paths."""
    if not _built:
        out = WORK / "dist"
        shutil.rmtree(out, ignore_errors=True)
        session.run("uv", "build", "-q", "-o", str(out), str(ROOT), external=True)
        _built["wheel"], = out.glob("*.whl")
        _built["sdist"], = out.glob("*.tar.gz")
    return _built


@nox.session(python=False)
def package(session: nox.Session) -> None:
    """Build the sdist and wheel, check their metadata, and list what each holds."""
    built = build(session)
    session.run("twine", "check", "--strict", *map(str, built.values()), external=True)
    with zipfile.ZipFile(built["wheel"]) as wheel:
        names = wheel.namelist()
    stray = [n for n in names if not n.startswith(("handoff/", "flask_handoff-"))]
    assert not stray, f"the wheel holds more than the library: {stray}"
    with tarfile.open(built["sdist"]) as sdist:
        members = [m.name.split("/", 1)[1] for m in sdist.getmembers() if m.isfile()]
    allowed = ("handoff/", "tests/handoff/", "docs/handoff/", "flask_handoff.egg-info/")
    top = {"LICENSE", "CHANGES.md", "pyproject.toml", "setup.cfg", "PKG-INFO", "MANIFEST.in"}
    stray = [m for m in members if not m.startswith(allowed) and m not in top]
    assert not stray, f"the sdist holds more than the library, its tests and docs: {stray}"
    session.log(f"wheel: {len(names)} files; sdist: {len(members)} files; twine check --strict passed")
    # The README's ten lines, as written, in a fresh environment holding only the wheel.
    venv = WORK / "readme"
    shutil.rmtree(venv, ignore_errors=True)
    session.run("uv", "venv", "-q", "-p", python_path("3.11"), str(venv), external=True)
    session.run("uv", "pip", "install", "-q", "-p", str(venv / "bin" / "python"), str(built["wheel"]), external=True)
    session.run(str(venv / "bin" / "python"), str(ROOT / "tests" / "handoff" / "matrix" / "readme_check.py"),
                str(ROOT / "docs" / "handoff" / "README.md"), external=True)
    # The sdist's own tests, from the unpacked sdist, against the installed wheel.
    unpacked = WORK / "sdist"
    shutil.rmtree(unpacked, ignore_errors=True)
    with tarfile.open(built["sdist"]) as sdist:
        sdist.extractall(unpacked, filter="data")
    [top] = unpacked.iterdir()
    session.run("uv", "pip", "install", "-q", "-p", str(venv / "bin" / "python"), "pytest==9.2.0", external=True)
    with session.chdir(top):
        # The merging save's tests need session stores and gunicorn; they run from the source tree in `make test`.
        session.run(str(venv / "bin" / "pytest"), "-q", "-p", "no:cacheprovider", "tests/handoff",
                    "--ignore=tests/handoff/matrix", "-m", "not gunicorn", "-o", "pythonpath=", external=True,
                    env={"PYTHONPATH": ""})


@nox.session(python=False)
def matrix(session: nox.Session) -> None:
    """Run every cell (or those named after ``--``) and print the table."""
    names = session.posargs or list(CELLS)
    unknown = set(names) - set(CELLS)
    if unknown:
        session.error(f"no such cells: {sorted(unknown)}; cells: {sorted(CELLS)}")
    # HANDOFF_WHEEL: run the cells against another build (an earlier release, say) instead.
    wheel = Path(os.environ["HANDOFF_WHEEL"]) if os.environ.get("HANDOFF_WHEEL") else build(session)["wheel"]
    rows = []
    for name in names:
        python, versions, server, backend, mode = CELLS[name]
        venv = WORK / "cells" / name
        shutil.rmtree(venv, ignore_errors=True)
        session.run("uv", "venv", "-q", "-p", python_path(python), str(venv), external=True)
        packages = [str(wheel), *versions, *BACKENDS[backend], *SERVER_PACKAGES[server]]
        installed = session.run("uv", "pip", "install", "-q", "-p", str(venv / "bin" / "python"), *packages,
                                external=True, success_codes=[0, 1, 2], silent=True)
        if not (venv / "bin" / "flask").exists():
            session.log(installed or "")
            rows.append({"cell": name, "server": server, "backend": backend, "mode": mode, "passed": False,
                         "checks": {"install": f"FAILED: {(installed or '').strip().splitlines()[-1:]}"}})
            continue
        status = session.run(str(venv / "bin" / "python"), str(CHECK), "--server", server, "--backend", backend,
                             "--mode", mode, "--cell", name, external=True, success_codes=[0, 1], silent=True)
        (WORK / "cells" / f"{name}.log").write_text(status or "")
        lines = (status or "").strip().splitlines()
        row = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {"cell": name, "passed": False,
                                                                                  "checks": {"check.py": "crashed"}}
        if not row["passed"]:
            session.log(status or "")
        rows.append(row)
    table = _table(rows)
    (WORK / "matrix.md").write_text(table)
    print(table)
    failed = [r["cell"] for r in rows if not r["passed"]]
    if failed:
        session.error(f"{len(failed)} of {len(rows)} cells failed: {', '.join(failed)}")
    session.log(f"all {len(rows)} cells passed")


def _table(rows: list[dict]) -> str:
    head = ["cell", "server", "Python", "Flask", "Flask-Session", "session", "mode", "result", "web RSS",
            "32 at once", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        checks = r.get("checks", {})
        failed = [f"{k}: {v}" for k, v in checks.items() if not v.startswith("ok")]
        rss = next((v for k, v in checks.items() if k.startswith("web RSS")), "").removeprefix("ok: ").split(" (")[0]
        at_once = checks.get("32 writes at once", "").removeprefix("ok: ").split(" kept")[0]
        notes = "; ".join(failed) if failed else checks.get("reloads", "").removeprefix("ok: ")
        lines.append("| " + " | ".join([
            r.get("cell", "?"), r.get("server", "?"), r.get("python", "?"), r.get("flask", "?"),
            r.get("flask-session", "?"), r.get("backend", "?"), r.get("mode", "?"),
            "pass" if r.get("passed") else "FAIL", rss, at_once,
            " ".join(notes.replace("|", "/").split())[:300]]) + " |")
    return "\n".join(lines) + "\n"


@nox.session(python=False)
def docs(session: nox.Session) -> None:
    """Build the Sphinx site with warnings as errors."""
    session.run("sphinx-build", "-W", "--keep-going", "-q", "-b", "html", "docs/handoff",
                str(WORK / "docs-html"), external=True)
    session.log(f"docs built: {WORK / 'docs-html' / 'index.html'}")
