"""``python -m bench.encoding``: output bytes and encode time for 24 MP images, before and after.

"Before" is how every output used to be written: JPEG, quality 85, baseline,
unoptimised, whatever the content. "After" is Darkroom's writer with the
default ``format=auto`` (and, for comparison, each explicit format).
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

from bench.load import ROOT, make_photo
from imaging.encode import Encoding, is_photographic, save
from imaging.ops import parse_op


def make_screenshot(width: int, height: int) -> bytes:
    """A PNG like a screenshot of an app: flat panels, rules, text, a few icons."""
    im = Image.new("RGB", (width, height), (246, 244, 240))
    draw = ImageDraw.Draw(im)
    for y in range(0, height, 120):
        draw.rectangle((80, y + 10, width - 80, y + 100), fill=(255, 255, 255), outline=(220, 216, 210), width=2)
        draw.ellipse((110, y + 30, 160, y + 80), fill=(26, 115, 232))
        for x in range(200, width - 400, 260):
            draw.text((x, y + 45), "Settings · Display", fill=(30, 30, 30))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def measure(im: Image.Image, op: str, write, rounds: int) -> tuple[int, float]:
    """Bytes written and median ms to encode ``op``'s output with ``write(result, folder)``."""
    result = parse_op(op).apply(im)
    times, size = [], 0
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(rounds):
            started = time.perf_counter()
            path = write(result, Path(folder))
            times.append((time.perf_counter() - started) * 1000)
            size = path.stat().st_size
    return size, statistics.median(times)


def before(result: Image.Image, folder: Path) -> Path:
    path = folder / "before.jpg"
    flat = result.convert("RGB") if "A" in result.mode else result
    flat.save(path, "JPEG", quality=85, optimize=False)
    return path


def after(encoding: Encoding, photographic: bool):
    def write(result: Image.Image, folder: Path) -> Path:
        info = save([result.copy()], folder, "after", encoding, photographic=photographic, metadata={})
        return folder / info["file"]

    return write


#: The JPEG encoder's choices: (name, Pillow's options).
EFFORTS = [("baseline", {}), ("optimised", {"optimize": True}),
           ("optimised + progressive", {"optimize": True, "progressive": True})]


def effort_table(photo: bytes, rounds: int) -> list[str]:
    """Bytes and median ms of each JPEG choice on 24 MP and screen-sized outputs, and Darkroom's choice."""
    from imaging.encode import PROGRESSIVE_PIXELS

    lines = ["", "## What each JPEG choice buys", "",
             f"Q85, median of {rounds} encodes. Darkroom writes every JPEG optimised, and progressive up to "
             f"{PROGRESSIVE_PIXELS / 1e6:.0f} MP (`imaging.encode.PROGRESSIVE_PIXELS`): beyond that, "
             "progressive costs a third of a second an output for a few percent.", "",
             "| output | choice | KB | ms | bytes vs baseline | time vs baseline | Darkroom's |",
             "|---|---|---|---|---|---|---|"]
    with Image.open(io.BytesIO(photo)) as im:
        im.load()
        for op in ("invert", "sepia", "resize"):
            result = parse_op(op).apply(im)
            progressive = result.width * result.height <= PROGRESSIVE_PIXELS
            figures = []
            for name, options in EFFORTS:
                times, size = [], 0
                for _ in range(rounds):
                    buf = io.BytesIO()
                    started = time.perf_counter()
                    result.save(buf, "JPEG", quality=85, **options)
                    times.append((time.perf_counter() - started) * 1000)
                    size = buf.tell()
                figures.append((name, options, size, statistics.median(times)))
            base_size, base_ms = figures[0][2], figures[0][3]
            for name, options, size, ms in figures:
                chosen = options == ({"optimize": True, "progressive": True} if progressive else {"optimize": True})
                lines.append(f"| {op} {result.width}×{result.height} | {name} | {size / 1024:.0f} | {ms:.0f} "
                             f"| {size / base_size:.2f} | {ms / base_ms:.1f}× | {'yes' if chosen else ''} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.encoding", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ops", default="grayscale,sepia,invert")
    parser.add_argument("--write", action="store_true", help="write bench/ENCODING.md")
    args = parser.parse_args()
    sources = {"24 MP photo (JPEG)": ("JPEG", make_photo(6000, 4000, 1)),
               "24 MP screenshot (PNG)": ("PNG", make_screenshot(6000, 4000))}
    lines = ["# Output size and encode time, 24 MP", "",
             f"Median of {args.rounds} encodes per cell, one process; 'before' is JPEG q85 baseline unoptimised "
             "for every output, 'after' is the default `format=auto` (JPEG q85 optimised, progressive up to 4 MP, "
             "for photos; PNG for lossless content).", "",
             "| source | op | before KB | before ms | auto | auto KB | auto ms | auto/before | webp KB | avif KB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for label, (fmt, data) in sources.items():
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            photographic = is_photographic(im, fmt)
            for op in args.ops.split(","):
                old_bytes, old_ms = measure(im, op, before, args.rounds)
                auto = Encoding()
                new_bytes, new_ms = measure(im, op, after(auto, photographic), args.rounds)
                chosen = "JPEG" if photographic else "PNG"
                webp, _ = measure(im, op, after(Encoding("webp"), photographic), 1)
                avif, _ = measure(im, op, after(Encoding("avif"), photographic), 1)
                row = (f"| {label} | {op} | {old_bytes / 1024:.0f} | {old_ms:.0f} | {chosen} | {new_bytes / 1024:.0f} "
                       f"| {new_ms:.0f} | {new_bytes / old_bytes:.2f} | {webp / 1024:.0f} | {avif / 1024:.0f} |")
                lines.append(row)
                print(row, flush=True)
    lines += effort_table(sources["24 MP photo (JPEG)"][1], args.rounds)
    report = "\n".join(lines) + "\n"
    print()
    print(report)
    if args.write:
        (ROOT / "bench" / "ENCODING.md").write_text(report)
        print("wrote bench/ENCODING.md")


if __name__ == "__main__":
    main()
