"""``python -m bench.vips``: Darkroom's all-ops job on a 24 MP photo beside the same job in libvips.

Each side runs in a fresh process of its own, with the malloc setting
Darkroom's children get, and on the cores the machine has: Darkroom's
``imaging.job.run_job`` as a child runs it (within the app's default
``HANDOFF_MEMORY_MB``, and recording its job in a scratch workspace), and
the same nine ops through pyvips (libvips from the ``pyvips-binary`` wheel,
in requirements-bench.txt only): decoded once, each output written with the
same encoder settings (JPEG q85, optimised Huffman tables, progressive up
to 4 MP) and the same two WebP previews per image. Rounds are interleaved;
each figure is the median: wall time, CPU time and peak RSS of the job's process.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.load import ROOT, make_photo
from handoff._processes import CHILD_GLIBC_TUNABLES
from storage.cores import machine_cores

OPS = ["thumbnail", "resize", "grayscale", "blur", "sharpen", "edges", "sepia", "rotate", "invert"]
SIDES = ("darkroom", "libvips")
#: The app's default HANDOFF_MEMORY_MB: the address space a job's child may use.
MEMORY_MB = 2048
#: Well above the photo's 24 MP.
MAX_PIXELS = 60_000_000


def run_darkroom(photo: Path, scratch: Path) -> None:
    from imaging import probe
    from imaging.job import run_job
    from storage import Upload, Workspace

    ws = Workspace(str(scratch), "0" * 24)
    job_dir = ws.create_job_dir("1" * 24)
    os.link(photo, job_dir / "source.jpg")
    header = probe(job_dir / "source.jpg", MAX_PIXELS)
    source: Upload = {"name": photo.name, "file": "source.jpg", "bytes": photo.stat().st_size, **header}
    run_job({"workspace": ws, "job_id": "1" * 24, "ops": OPS, "source": source, "created": "",
             "max_pixels": MAX_PIXELS})


def run_libvips(photo: Path, scratch: Path) -> None:
    import pyvips
    from PIL import Image, ImageOps

    from imaging.encode import PROGRESSIVE_PIXELS
    from imaging.ops import _EDGE_INK

    def lut(values: bytes, bands: int) -> Any:
        return pyvips.Image.new_from_memory(values, 256, 1, bands, "uchar")

    ramp = Image.linear_gradient("L").rotate(90, expand=True).resize((256, 1))
    sepia_lut = lut(ImageOps.colorize(ramp, black="#2e1f0f", white="#fff3dc", mid="#a67c52").tobytes(), 3)
    ink_lut = lut(bytes(_EDGE_INK), 1)
    find_edges = pyvips.Image.new_from_list([[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]])

    def sharpen(im: Any) -> Any:  # Pillow's UnsharpMask(radius=2, percent=150, threshold=3)
        diff = im.cast("short") - im.gaussblur(2).cast("short")
        return (abs(diff) >= 3).ifthenelse(im + diff * 1.5, im).cast("uchar")

    def edges(im: Any) -> Any:
        grey = im.colourspace("b-w").gaussblur(max(1.0, max(im.width, im.height) / 800))
        return grey.conv(find_edges, precision="integer").cast("uchar").maplut(ink_lut)

    ops = {
        "thumbnail": lambda im: im.thumbnail_image(320, height=320),
        "resize": lambda im: im.thumbnail_image(1024, height=768),
        "grayscale": lambda im: im.colourspace("b-w"),
        "blur": lambda im: im.gaussblur(4),
        "sharpen": sharpen,
        "edges": edges,
        "sepia": lambda im: im.colourspace("b-w").maplut(sepia_lut),
        "rotate": lambda im: im.rot90(),
        "invert": lambda im: im.invert(),
    }

    def previews(im: Any, stem: str) -> None:
        for size in (480, 240):
            im.thumbnail_image(size, height=size).webpsave(str(scratch / f"preview-{stem}-{size}.webp"),
                                                           Q=75, effort=4, keep="none")

    def write(name: str) -> None:
        out = ops[name](source).copy_memory()
        out.jpegsave(str(scratch / f"{name}.jpg"), Q=85, optimize_coding=True, keep="none",
                     interlace=out.width * out.height <= PROGRESSIVE_PIXELS)
        previews(out, name)

    source = pyvips.Image.new_from_file(str(photo)).copy_memory()  # decoded once, as Darkroom does
    previews(source, "source")
    # libvips computes each image on all cores, but writes a JPEG on one: the outputs are written
    # on as many threads as the machine has cores, as Darkroom's are.
    with ThreadPoolExecutor(machine_cores()) as pool:
        list(pool.map(write, OPS))


def measure_side(side: str, photo: Path) -> dict[str, float]:
    """Run one side's job in this process and return its figures (what ``--side`` prints)."""
    if side == "darkroom":
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_MB * 2**20, resource.RLIM_INFINITY))
    job = run_darkroom if side == "darkroom" else run_libvips
    with tempfile.TemporaryDirectory(prefix="darkroom-vips-") as scratch:
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        job(photo, Path(scratch))
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"s": wall, "cpu_s": cpu, "peak_mb": after.ru_maxrss / 1024}


def run(rounds: int, photo_bytes: bytes | None = None) -> dict[str, dict[str, float]]:
    """Each side's median figures over ``rounds`` interleaved runs, each in a fresh process."""
    runs: dict[str, list[dict[str, float]]] = {side: [] for side in SIDES}
    with tempfile.TemporaryDirectory(prefix="darkroom-vips-") as folder:
        photo = Path(folder) / "photo.jpg"
        photo.write_bytes(photo_bytes or make_photo(6000, 4000, 1))
        env = {**os.environ, "GLIBC_TUNABLES": CHILD_GLIBC_TUNABLES, "PYTHONPATH": str(ROOT)}
        for _ in range(rounds):
            for side in SIDES:
                done = subprocess.run([sys.executable, "-m", "bench.vips", "--side", side, "--photo", str(photo)],
                                      cwd=ROOT, env=env, capture_output=True, text=True, check=True)
                runs[side].append(json.loads(done.stdout.splitlines()[-1]))
    return {side: {key: statistics.median(r[key] for r in results) for key in results[0]}
            for side, results in runs.items()}


def table(figures: dict[str, dict[str, float]]) -> str:
    dark, vips = figures["darkroom"], figures["libvips"]
    rows = ["| | Darkroom (Pillow) | libvips | ratio |", "|---|---|---|---|"]
    for key, label, unit in (("s", "job time", "s"), ("cpu_s", "CPU time", "s"), ("peak_mb", "peak RSS", "MB")):
        digits = 0 if unit == "MB" else 2
        rows.append(f"| {label} | {dark[key]:.{digits}f} {unit} | {vips[key]:.{digits}f} {unit} | "
                    f"{dark[key] / vips[key]:.2f}× |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.vips", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--photo", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(measure_side(args.side, args.photo)))
        return
    print(f"24 MP JPEG, {len(OPS)} ops, median of {args.rounds} interleaved rounds:")
    print(table(run(args.rounds)))


if __name__ == "__main__":
    main()
