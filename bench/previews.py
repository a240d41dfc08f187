"""``python -m bench.previews``: what the gallery's previews add to a job, and what they weigh.

Renders a 24 MP photo with all nine built-in ops on the machine's cores, as a
job alone does, interleaving rounds with the
previews written and without them (``save_previews`` replaced by a no-op for
the measurement only), and prints the medians, the difference and the bytes
of the previews against those of the full files.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

from bench.load import make_photo
from bench.vips import OPS
from imaging import pipeline
from imaging.preview import save_previews
from storage.cores import machine_cores


def main(rounds: int = 3) -> None:
    """Print the medians of ``rounds`` interleaved renders with and without previews."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        source = out / "source.jpg"
        source.write_bytes(make_photo(6000, 4000, 1))
        seconds: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(rounds):
            for previews in (False, True):
                with mock.patch.object(pipeline, "save_previews", save_previews if previews else
                                       (lambda *args, **kwargs: [])):
                    started = time.perf_counter()
                    decoded, outputs = pipeline.render(source, out, OPS, 10**9, threads=machine_cores())
                    seconds[previews].append(time.perf_counter() - started)
        without, with_ = statistics.median(seconds[False]), statistics.median(seconds[True])
        full = source.stat().st_size + sum(o["bytes"] for o in outputs)
        small = sum(p["bytes"] for e in [decoded, *outputs] for p in e["previews"])
        print(f"24 MP, {len(OPS)} ops, median of {rounds}: without previews {without:.2f} s, with {with_:.2f} s "
              f"(+{(with_ - without) * 1000:.0f} ms, {(with_ / without - 1) * 100:+.1f}%)")
        print(f"files: {full / 1e6:.1f} MB in full, {small / 1e3:.0f} kB of previews "
              f"({len(outputs) + 1} images, 240 and 480 px)")


if __name__ == "__main__":
    main()
