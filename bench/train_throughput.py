"""Training throughput, end to end (data loading included): the study's setup vs ours, one run.

* study: full-size JPEG decoded per item, timm's default training transform, fp16 autocast
  (+ grad scaler on CUDA), batch 64, NCHW.
* ours:  train.py's data path: the short-side BMP cache of ``lesions.preprocess.build_cache``
  (built once, not timed) and ``lesions.transforms.train_transform``; bf16 autocast,
  channels_last, larger batch, pinned memory, persistent workers, non-blocking copies, optional
  ``torch.compile``.

Two more rows locate the bottleneck: ``ours_compute_only`` trains ours on one batch already on
the device (no data loading), ``ours_loader_only`` iterates ours' DataLoader without training.
All train the same timm model with AdamW on synthetic JPEGs written to a temp folder.

    python -m bench.train_throughput --device cpu --model resnet18 --input-size 64 --steps 3
    python -m bench.train_throughput --device cuda --seconds 60 --compile --json out.json

Prints one JSON line (images/s per setup and ours/study ratio) and writes it to ``--json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config
from torch.utils.data import DataLoader, Dataset

from lesions.preprocess import build_cache, load_image
from lesions.transforms import TrainBatchTransform, train_transform


class JpegFolder(Dataset):
    """Decode an image file per item (JPEG or cached BMP), then apply a training transform."""

    def __init__(self, paths: list[Path], transform) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        return self.transform(load_image(self.paths[index])), index % 9


def write_jpegs(folder: Path, n: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    """Smooth random colour images (JPEG, quality 90) like dermoscopy photos in size."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
        path = folder / f"img_{i:05d}.jpg"
        image.save(path, quality=90)
        paths.append(path)
    return paths


def measure(
    model, loader, device, *, dtype, channels_last, scaler, steps, seconds, augment=None
) -> dict:
    """Train for a warm-up then ``steps`` steps or ``seconds``; return images/s.

    With ``augment`` (a :class:`TrainBatchTransform`), batches are ``((uint8, factors), y)``
    finished on the device, as train.py does.
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    criterion = torch.nn.CrossEntropyLoss()
    model.train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    warmup, images, done, start = 2, 0, 0, None
    while True:
        for x, y in loader:
            if augment is not None:
                pixels, factors = x
                x = augment(pixels.to(device, non_blocking=True), factors.to(device))
            x = x.to(device, non_blocking=True, memory_format=memory_format)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=dtype):
                loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            done += 1
            if done == warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            elif done > warmup:
                images += len(x)
                elapsed = time.perf_counter() - start
                if done - warmup >= steps or (seconds and elapsed >= seconds):
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    elapsed = time.perf_counter() - start
                    return {
                        "images_per_s": images / elapsed,
                        "steps": done - warmup,
                        "seconds": elapsed,
                        "final_loss": float(loss.detach()),
                    }


def loader_rate(loader: DataLoader, steps: int, seconds: float) -> dict:
    """Images/s of ``loader`` alone (batches produced, nothing trained), after one batch."""
    images, done, start = 0, 0, None
    while True:
        for _, y in loader:
            if start is None:
                start = time.perf_counter()
                continue
            images += len(y)
            done += 1
            elapsed = time.perf_counter() - start
            if done >= steps or elapsed >= seconds:
                return {"images_per_s": images / elapsed, "steps": done, "seconds": elapsed}


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but no CUDA device is visible")
    torch.backends.cudnn.benchmark = device.type == "cuda"
    workers = args.num_workers
    results: dict = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "model": args.model,
        "input_size": args.input_size,
        "source_size": args.source_size,
        "num_workers": workers,
    }
    with tempfile.TemporaryDirectory() as tmp:
        n_images = max(args.images, args.batch_ours * 2)
        paths = write_jpegs(
            Path(tmp) / "jpeg", n_images, (args.source_size * 4 // 3, args.source_size)
        )
        model = timm.create_model(args.model, pretrained=False, num_classes=9).to(device)
        data_config = resolve_data_config(
            model=model, args={"input_size": (3, args.input_size, args.input_size)}
        )
        transform = create_transform(**data_config, is_training=True)
        report = build_cache(
            [(path.stem, path, None) for path in paths],
            Path(tmp) / "cache",
            math.ceil(args.input_size / data_config["crop_pct"]),  # as train.py sizes it
            num_proc=max(1, workers),
        )
        cached = [Path(image) for image, _ in report.entries.values()]
        pin = device.type == "cuda"

        study_loader = DataLoader(
            JpegFolder(paths, transform),
            batch_size=args.batch_study,
            shuffle=True,
            num_workers=workers,
            drop_last=True,
        )
        scaler = torch.amp.GradScaler("cuda") if device.type == "cuda" else None
        results["study"] = measure(
            model,
            study_loader,
            device,
            dtype=torch.float16,
            channels_last=False,
            scaler=scaler,
            steps=args.steps,
            seconds=args.seconds,
        )
        results["study"] |= {"batch_size": args.batch_study, "precision": "fp16", "layout": "NCHW"}

        model = timm.create_model(args.model, pretrained=False, num_classes=9).to(device)
        model = model.to(memory_format=torch.channels_last)
        if args.compile:
            model = torch.compile(model)
        augment = TrainBatchTransform(data_config).to(device)
        ours_loader = DataLoader(
            JpegFolder(cached, train_transform(data_config)),
            batch_size=args.batch_ours,
            shuffle=True,
            num_workers=workers,
            drop_last=True,
            pin_memory=pin,
            persistent_workers=workers > 0,
        )
        ours_setup = {
            "dtype": torch.bfloat16,
            "channels_last": True,
            "scaler": None,
            "steps": args.steps,
            "augment": augment,
        }
        results["ours"] = measure(model, ours_loader, device, seconds=args.seconds, **ours_setup)
        results["ours"] |= {
            "batch_size": args.batch_ours,
            "precision": "bf16",
            "layout": "channels_last",
            "compile": args.compile,
        }
        (pixels, factors), y = next(iter(ours_loader))
        on_device = [((pixels.to(device), factors.to(device)), y.to(device))]
        results["ours_compute_only"] = measure(
            model, on_device, device, seconds=args.seconds / 2, **ours_setup
        )
        results["ours_loader_only"] = loader_rate(ours_loader, args.steps, args.seconds / 2)
    results["ratio_ours_vs_study"] = (
        results["ours"]["images_per_s"] / results["study"]["images_per_s"]
    )
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--source-size", type=int, default=768, help="height of the JPEGs (4:3)")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-study", type=int, default=64)
    parser.add_argument("--batch-ours", type=int, default=256)
    parser.add_argument("--num-workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--steps", type=int, default=1_000_000, help="timed steps per setup")
    parser.add_argument("--seconds", type=float, default=60.0, help="time budget per setup")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if (
        min(
            args.input_size,
            args.source_size,
            args.images,
            args.batch_study,
            args.batch_ours,
            args.steps,
        )
        < 1
    ):
        parser.error("sizes, counts and steps must be >= 1")
    results = run(args)
    line = json.dumps(results)
    print(line)
    if args.json:
        args.json.write_text(line + "\n")
    return results


if __name__ == "__main__":
    main()
