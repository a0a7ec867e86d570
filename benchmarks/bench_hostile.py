"""Robustness count: hostile and randomly damaged image files, read in a child process.

Builds the hostile folder of the test suite (truncated, zero-byte, 16-bit, palette with
transparency, CMYK, EXIF-rotated, decompression bomb, text named .jpg, directory,
vanished file) plus ``--mutants`` damaged JPEG/PNG/GIF/BMP/TIFF/WebP files, reads each
through sktransfer's input layer in a child interpreter (a dead child counts as a crash)
and counts the outcomes: read, clear error naming the file, crash.

Run: .venv/bin/python benchmarks/bench_hostile.py [--mutants 20000]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from tests.hostile_files import build_hostile_folder, mutants, read_in_subprocess


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/hostile.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        hostile = build_hostile_folder(Path(tmp) / "hostile")
        paths = [Path(tmp) / "hostile" / name for name in hostile]
        paths += mutants(args.seed, args.mutants, Path(tmp) / "mutants")
        start = time.perf_counter()
        results = read_in_subprocess(paths, timeout=3600)
        seconds = time.perf_counter() - start
    counts = collections.Counter("crash" if r.startswith("crash") else r
                                 for r in results.values())
    crashes = sorted({r for r in results.values() if r.startswith("crash")})
    summary = {"files": len(paths), "read": counts["read"], "error": counts["error"],
               "crash": counts["crash"], "crash_kinds": crashes[:20], "seconds": seconds,
               "hostile_as_expected": all(
                   results[str(Path(tmp) / "hostile" / n)] == o for n, o in hostile.items())}
    print(f"{summary['files']} files: {summary['read']} read, {summary['error']} clear "
          f"errors naming the file, {summary['crash']} crashes ({seconds:.1f} s)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
