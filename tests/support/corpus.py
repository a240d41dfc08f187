"""Uploading files nobody in this project made, and checking every answer the way a user would.

The outside corpus is Pillow's own ``Tests/images`` folder (see ``../shared/corpus/README.md``),
found at ``$DARKROOM_CORPUS`` or beside this repository at ``../shared/corpus/pillow``. Each
file is posted to ``POST /jobs`` with all nine ops; the answer must be a 201 whose every
output decodes at the size its op implies, or a 4xx of one of Darkroom's refusal classes.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from tests.support import ROOT, Client

#: Every op, each with its default argument.
ALL_OPS = ["thumbnail", "resize", "grayscale", "blur", "sharpen", "edges", "sepia", "rotate", "invert"]


def corpus_dir() -> Path:
    """Where the outside corpus lies: ``$DARKROOM_CORPUS``, else ``shared/corpus/pillow`` beside the
    repository (``../shared``) or beside one of its parent folders."""
    named = os.environ.get("DARKROOM_CORPUS")
    if named:
        return Path(named)
    beside = [folder / "shared" / "corpus" / "pillow" for folder in ROOT.parents]
    return next((path for path in beside if path.is_dir()), beside[0])


def pinned_files(folder: Path) -> list[Path]:
    """The corpus's files, each checked against its pinned SHA-256 (a changed file is an error)."""
    sums = folder.parent / f"{folder.name}.SHA256SUMS"
    files = []
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        path = folder / name
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != digest:
            raise AssertionError(f"{name} does not match its pinned SHA-256")
        files.append(path)
    return files


def _displayed(path: Path) -> tuple[int, int] | None:
    """The size a viewer shows for ``path``, read with Pillow alone (None if Pillow cannot say)."""
    try:
        with Image.open(path) as im:
            size = im.size
            try:
                orientation = im.getexif().get(0x0112)
            except Exception:  # noqa: BLE001 - a broken EXIF means no orientation, as in Darkroom
                orientation = None
    except Exception:  # noqa: BLE001
        return None
    return (size[1], size[0]) if orientation in (5, 6, 7, 8) else size


def expected_size(op: str, source: tuple[int, int]) -> tuple[int, int]:
    """The size an op's output has for a source shown at ``source`` (default arguments)."""
    width, height = source
    if op == "thumbnail":
        scale = min(320 / width, 320 / height, 1.0)
        return max(1, round(width * scale)), max(1, round(height * scale))
    if op == "resize":  # fit inside 1024×768, larger or smaller
        if width / height > 1024 / 768:
            return 1024, max(1, round(height / width * 1024))
        return max(1, round(width / height * 768)), 768
    if op == "rotate":
        return height, width
    return source


@dataclass
class Tally:
    """What the corpus run saw: answers by status and refusal class, and every problem."""

    answers: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, answer: str, problem: str | None = None) -> None:
        with self.lock:
            self.answers[answer] += 1
            if problem:
                self.problems.append(problem)

    def report(self) -> str:
        lines = [f"{count:5d}  {answer}" for answer, count in sorted(self.answers.items())]
        return "\n".join(["corpus answers:", *lines, f"{sum(self.answers.values()):5d}  in all"])


def check_job(client, name: str, job: dict, reference: tuple[int, int] | None) -> str | None:
    """Check a 201's outputs against the sizes their ops imply; return what is wrong, or None."""
    shown = (job["source"]["width"], job["source"]["height"])
    if reference is not None and reference != shown:
        return f"{name}: reported {shown}, Pillow shows {reference}"
    for output in job["outputs"]:
        status, data = client.get(output["url"])
        try:
            assert status == 200, status
            im = Image.open(io.BytesIO(data))
            im.load()
            frames = getattr(im, "n_frames", 1)
        except Exception as exc:  # noqa: BLE001
            return f"{name}: {output['op']} does not decode ({exc!r})"
        if im.size != expected_size(output["op"].partition(":")[0], shown):
            return f"{name}: {output['op']} is {im.size} for a source of {shown}"
        if frames != output.get("frames", 1):
            return f"{name}: {output['op']} has {frames} frames, the job says {output.get('frames', 1)}"
    return None


def upload_each(port: int, files: list[Path], tally: Tally, threads: int = 2) -> None:
    """Post every file with all nine ops from ``threads`` clients at once; delete each job once checked."""

    def one(client: Client, path: Path) -> None:
        name = str(path.relative_to(corpus_dir()))
        status, data = client.upload(path.read_bytes(), ALL_OPS)
        try:
            body = json.loads(data)
        except ValueError:
            body = {}
        if status == 201:
            problem = check_job(client, name, body, _displayed(path))
            client.request("POST", f"/jobs/{body['id']}/delete")
            tally.add("201" if problem is None else "201 wrong", problem)
        elif 400 <= status < 500 and body.get("kind"):
            tally.add(f"{status} {body['kind']}")
        else:
            tally.add(f"{status} {body.get('kind', '')}".strip(), f"{name}: {status} {body.get('error')!r}")

    def worker(share: list[Path]) -> None:
        client = Client(port, timeout=120)  # a hang fails the run
        for path in share:
            one(client, path)

    with ThreadPoolExecutor(threads) as pool:
        for done in pool.map(worker, [files[i::threads] for i in range(threads)]):
            assert done is None


def leftovers(root: Path) -> list[Path]:
    """Files under the storage root that are not bookkeeping (manifests, locks, notes)."""
    root, kept = Path(root), {"manifest.json", ".lock"}
    return [p for p in root.rglob("*") if p.is_file() and p.name not in kept
            and not p.name.endswith((".lock", ".log")) and ".notes" not in p.parts
            and "handoff" not in p.parts]


