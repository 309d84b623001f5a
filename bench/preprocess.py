"""Preprocessing throughput on one core: our draft-mode resize vs naive Pillow, in one run.

    python -m bench.preprocess [--n 24] [--repeat 3]     (from the repository root)

Generates ISIC-sized SynthDerm JPEGs (half 1024x1024, half cropped to 1024x768), then times
turning them into 256-px cache entries:

- naive: ``Image.open(p).convert("RGB").resize(...)`` (full decode, bicubic),
- ours: ``lesions.preprocess.resize_short_side`` (JPEG draft mode, then bicubic),
- both again as full cache entries written the same way (uncompressed BMP, the cache's format;
  ours also removes the dermoscope frame), plus naive with a PNG write for context.

Also times SynthDerm generation at 256 px. Prints images/s and the ratios (best of --repeat).
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

from PIL import Image

from lesions.preprocess import cache_entry, resize_short_side
from lesions.synth import generate


def _naive(path: Path, size: int) -> Image.Image:
    img = Image.open(path).convert("RGB")
    scale = size / min(img.size)
    return img.resize((round(img.width * scale), round(img.height * scale)))


def _write(img: Image.Image, fmt: str = "BMP") -> None:
    img.save(io.BytesIO(), format=fmt, **({"compress_level": 1} if fmt == "PNG" else {}))


def _rate(func, paths: list[Path], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for path in paths:
            func(path)
        best = min(best, time.perf_counter() - start)
    return len(paths) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24, help="number of ISIC-sized JPEGs")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core

    with tempfile.TemporaryDirectory() as tmp:
        root = generate(Path(tmp) / "big", args.n, seed=0, image_size=1024)
        paths = sorted((root / "ISIC_2019_Training_Input").glob("*.jpg"))
        for path in paths[::2]:  # ISIC's other common size
            Image.open(path).crop((0, 128, 1024, 896)).save(path, quality=90)

        size = args.size
        rates = {
            "naive open+convert+resize": _rate(lambda p: _naive(p, size), paths, args.repeat),
            "ours resize_short_side (draft)": _rate(
                lambda p: resize_short_side(p, size), paths, args.repeat
            ),
            "naive cache entry (BMP)": _rate(lambda p: _write(_naive(p, size)), paths, args.repeat),
            "ours cache entry (draft+frame crop, BMP)": _rate(
                lambda p: _write(cache_entry(p, None, size, crop=True)[0]), paths, args.repeat
            ),
            "naive + PNG write (context)": _rate(
                lambda p: _write(_naive(p, size), "PNG"), paths, args.repeat
            ),
        }
        start = time.perf_counter()
        generate(Path(tmp) / "synth", 100, seed=1, image_size=256)
        synth_rate = 100 / (time.perf_counter() - start)

    print(f"{args.n} JPEGs (1024x1024 and 1024x768) -> {size}-px short side, one core")
    for name, rate in rates.items():
        print(f"  {name:42s} {rate:8.1f} images/s")
    naive, ours = rates["naive open+convert+resize"], rates["ours resize_short_side (draft)"]
    print(f"  ratio ours/naive (resize)       {ours / naive:.2f}x")
    cache_ratio = (
        rates["ours cache entry (draft+frame crop, BMP)"] / rates["naive cache entry (BMP)"]
    )
    print(f"  ratio ours/naive (cache entry)  {cache_ratio:.2f}x")
    print(f"SynthDerm generation at 256 px: {synth_rate:.1f} images/s (100 images, one core)")


if __name__ == "__main__":
    main()
