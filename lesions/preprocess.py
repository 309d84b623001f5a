"""Image loading and preprocessing: safe decoding, dermoscope frame removal, resize cache.

Everyone who opens an image goes through ``load_image``: it applies the EXIF orientation,
turns every Pillow mode into 8-bit RGB and refuses what should not be decoded (empty, truncated
or non-image files, decompression bombs, images under 8 px a side) with ``ImageLoadError``.

``resize_short_side`` uses Pillow's JPEG draft mode, so the DCT decoder scales by 1/2, 1/4 or
1/8 while decoding and the full resolution is never materialized. ``build_cache`` writes each
image once, frame-cropped and resized, as an uncompressed 8-bit BMP (raw pixel rows: writing
and reading one costs a fraction of a millisecond, against several for PNG), its mask cropped
and resized identically as PNG, in parallel, and reports what it skipped.
"""

from __future__ import annotations

import io
import json
import math
import multiprocessing
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 50_000_000
MIN_SIDE = 8
# Pixels darker than this (0-255 luminance) count as dermoscope frame.
FRAME_THRESHOLD = 40

ImageSource = (
    str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | Image.Image | np.ndarray
)


class ImageLoadError(ValueError):
    """An image could not be loaded; the message names the problem and the source."""


def _describe(source: object) -> str:
    if isinstance(source, str | os.PathLike):
        return str(source)
    return type(source).__name__


def _array_to_image(array: np.ndarray) -> Image.Image:
    """HxW, HxWx1, HxWx3 or HxWx4 arrays of bool, integer or float [0, 1] values -> PIL image."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageLoadError(
            f"array of shape {array.shape} is not an image (expected HxW, HxWx3 or HxWx4)"
        )
    if array.size == 0:
        raise ImageLoadError("array is empty")
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif np.issubdtype(array.dtype, np.floating):
        finite = np.nan_to_num(array.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if finite.max(initial=0.0) <= 1.0 else 1.0
        array = np.clip(finite * scale + 0.5, 0, 255).astype(np.uint8)
    elif array.dtype == np.uint16:
        array = (array // 257).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.integer):
        array = np.clip(array, 0, 255).astype(np.uint8)
    else:
        raise ImageLoadError(f"array dtype {array.dtype} is not an image type")
    return Image.fromarray(np.ascontiguousarray(array))


def _open(source: ImageSource, max_pixels: int) -> Image.Image:
    """Opens ``source`` lazily (header only for files); refuses more than ``max_pixels``."""
    if isinstance(source, Image.Image):
        img = source
    elif isinstance(source, np.ndarray):
        img = _array_to_image(source)
    else:
        if isinstance(source, str | os.PathLike):
            path = Path(source)
            if not path.is_file():
                raise ImageLoadError(f"{path}: no such file")
            if path.stat().st_size == 0:
                raise ImageLoadError(f"{path}: empty file")
            stream: BinaryIO | Path = path
        elif isinstance(source, bytes | bytearray | memoryview):
            if len(source) == 0:
                raise ImageLoadError("empty bytes")
            stream = io.BytesIO(bytes(source))
        elif hasattr(source, "read"):
            stream = source
        else:
            raise TypeError(
                f"cannot load an image from {type(source).__name__}: pass a path, bytes, a file "
                "object, a PIL image or a numpy array"
            )
        try:
            img = Image.open(stream)
        except Image.DecompressionBombError as err:
            raise ImageLoadError(f"{_describe(source)}: decompression bomb ({err})") from err
        except UnidentifiedImageError as err:
            raise ImageLoadError(f"{_describe(source)}: not an image file") from err
        except OSError as err:
            raise ImageLoadError(
                f"{_describe(source)}: truncated or unreadable file ({err})"
            ) from err
    width, height = img.size
    if width * height > max_pixels:
        raise ImageLoadError(
            f"{_describe(source)}: {width}x{height} = {width * height:,} pixels exceeds "
            f"max_pixels={max_pixels:,} (possible decompression bomb)"
        )
    return img


def _decode(img: Image.Image, source: object) -> Image.Image:
    """Decodes the (first frame of the) image, applies EXIF orientation, converts to 8-bit RGB."""
    try:
        img.load()
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageLoadError(f"{_describe(source)}: truncated or corrupt image ({err})") from err
    img = ImageOps.exif_transpose(img)
    img = to_rgb(img)
    if min(img.size) < MIN_SIDE:
        raise ImageLoadError(
            f"{_describe(source)}: {img.width}x{img.height} is smaller than {MIN_SIDE} px a side"
        )
    return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Converts any Pillow mode to 8-bit RGB.

    16-bit and 32-bit integer modes (``I;16*``, ``I``) are scaled from 0-65535; float mode ``F``
    from [0, 1] when its maximum is <= 1, else clipped to 0-255; transparent modes are composited
    over white.

    Raises:
        ImageLoadError: If Pillow cannot convert the mode (e.g. ``LAB``).
    """
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I"):
        gray = np.asarray(img).astype(np.float64) / 257.0
        return Image.fromarray(np.clip(gray + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if mode == "F":
        return _array_to_image(np.asarray(img)).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except ValueError as err:
        raise ImageLoadError(f"cannot convert image mode {mode} to RGB") from err


def load_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Loads an image as 8-bit RGB, safely.

    Args:
        source: A path, bytes, a binary file object, a PIL image or a numpy array (HxW, HxWx3 or
            HxWx4; uint8, uint16, bool, or float in [0, 1]).
        max_pixels: Refuse images with more pixels than this (checked from the header, before
            decoding).

    Returns:
        A decoded ``PIL.Image.Image`` in mode ``RGB``, EXIF orientation applied, first frame of
        animations.

    Raises:
        ImageLoadError: For missing, empty, truncated, corrupt or non-image files, decompression
            bombs, unconvertible modes and images under 8 px a side.
        TypeError: If ``source`` is of an unsupported type.
    """
    return _decode(_open(source, max_pixels), source)


def _short_side_size(width: int, height: int, size: int) -> tuple[int, int]:
    scale = size / min(width, height)
    return max(size, round(width * scale)), max(size, round(height * scale))


def _load_reduced(source: ImageSource, size: int, max_pixels: int) -> Image.Image:
    """``load_image`` letting the JPEG decoder downscale while the short side stays >= size."""
    img = _open(source, max_pixels)
    if img.format == "JPEG" and min(img.size) > size:
        img.draft("RGB", _short_side_size(*img.size, size))
    return _decode(img, source)


def resize_short_side(
    path_or_img: ImageSource, size: int = 256, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Loads an image and resizes it (bicubic, antialiased) so its short side is ``size``.

    JPEG files are decoded in draft mode at the smallest 1/2, 1/4 or 1/8 scale whose short side
    is still >= ``size``, so the full resolution is never decoded.

    Args:
        path_or_img: Anything ``load_image`` accepts.
        size: Target short side in pixels (>= 8).
        max_pixels: As in ``load_image``.

    Returns:
        RGB image whose short side is ``size``, aspect ratio kept.

    Raises:
        ImageLoadError: As ``load_image``.
        ValueError: If ``size`` < 8.
    """
    _check_size(size)
    img = _load_reduced(path_or_img, size, max_pixels)
    return img.resize(_short_side_size(*img.size, size), Image.Resampling.BICUBIC)


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SIDE:
        raise ValueError(f"size must be an integer >= {MIN_SIDE}, got {size!r}")


def frame_box(
    img: Image.Image, *, threshold: int = FRAME_THRESHOLD
) -> tuple[int, int, int, int] | None:
    """Finds the skin inside a dark circular dermoscope frame.

    The field of view is the bright region of a 128-px grey thumbnail; its circle is estimated
    from the centroid (centre) and the median radius implied by the bright rows and columns
    that the image edges do not cut (chord half-length and distance to the centre). The box is the
    largest axis-aligned rectangle inside both that circle (shrunk by 3 %) and the image: a
    square of side ``r * sqrt(2)`` unless the image edges clip the circle.

    Args:
        img: An RGB (or L) image.
        threshold: Luminance (0-255) below which a pixel counts as frame.

    Returns:
        ``(left, upper, right, lower)`` in ``img`` pixels, or ``None`` when no frame is found
        (fewer than two dark corners, or almost nothing bright).
    """
    scale = 128 / min(img.size)
    small_size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    gray = np.asarray(img.convert("L").resize(small_size, Image.Resampling.BOX))
    height, width = gray.shape
    bright = gray >= threshold
    k = max(2, min(height, width) // 40)
    corners = [bright[:k, :k], bright[:k, -k:], bright[-k:, :k], bright[-k:, -k:]]
    if sum(float(c.mean()) < 0.2 for c in corners) < 2 or bright.mean() < 0.2:
        return None
    ys, xs = np.nonzero(bright)
    cy, cx = ys.mean() + 0.5, xs.mean() + 0.5
    radius = 0.97 * _circle_radius(bright, cy, cx)
    room_y, room_x = min(cy, height - cy), min(cx, width - cx)
    half_h = half_w = radius / math.sqrt(2)
    if half_h > room_y:
        half_h = room_y
        half_w = min(room_x, math.sqrt(max(radius**2 - room_y**2, 0.0)))
    elif half_w > room_x:
        half_w = room_x
        half_h = min(room_y, math.sqrt(max(radius**2 - room_x**2, 0.0)))
    sx, sy = img.width / width, img.height / height
    box = (
        max(0, math.ceil((cx - half_w) * sx)),
        max(0, math.ceil((cy - half_h) * sy)),
        min(img.width, math.floor((cx + half_w) * sx)),
        min(img.height, math.floor((cy + half_h) * sy)),
    )
    if min(box[2] - box[0], box[3] - box[1]) < MIN_SIDE:
        return None
    return box


def _circle_radius(bright: np.ndarray, cy: float, cx: float) -> float:
    """Radius of a bright disc centred at (cy, cx), from chords the image edges do not cut."""
    estimates = []
    for mask, center in ((bright, cy), (bright.T, cx)):
        chords = mask.sum(axis=1)
        whole = (chords > 0) & ~mask[:, 0] & ~mask[:, -1]
        offset = np.arange(mask.shape[0]) + 0.5 - center
        estimates.append(np.hypot(chords[whole] / 2, offset[whole]))
    chord_radii = np.concatenate(estimates)
    if chord_radii.size == 0:
        return max(bright.sum(axis=1).max(), bright.sum(axis=0).max()) / 2
    return float(np.median(chord_radii))


def crop_frame(img: Image.Image) -> Image.Image:
    """Crops a dermoscope image to the skin inside its dark circular frame (see ``frame_box``).

    Args:
        img: A PIL image (RGB or L).

    Returns:
        The cropped image, or ``img`` itself when it has no frame.

    Raises:
        TypeError: If ``img`` is not a PIL image.
    """
    if not isinstance(img, Image.Image):
        raise TypeError(f"crop_frame expects a PIL image, got {type(img).__name__}")
    box = frame_box(img)
    return img if box is None else img.crop(box)


@dataclass
class CacheReport:
    """What ``build_cache`` wrote and what it skipped.

    Attributes:
        cache_dir: The cache folder.
        entries: image id -> (cached image path, cached mask path or None).
        skipped: image id -> reason, for images that could not be read.
        report_path: ``cache_dir/report.json`` (settings, counts, skipped ids and reasons).
    """

    cache_dir: Path
    entries: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    report_path: Path | None = None


def _atomic_save(img: Image.Image, path: Path) -> None:
    """Writes ``img`` in the format of ``path``'s suffix, atomically (no half-written entries)."""
    tmp = path.with_name(path.name + ".tmp")
    fmt = "BMP" if path.suffix == ".bmp" else "PNG"
    img.save(tmp, format=fmt, **({"compress_level": 1} if fmt == "PNG" else {}))
    os.replace(tmp, path)


def cache_entry(
    image_path: str | Path, mask_path: str | Path | None, size: int, crop: bool
) -> tuple[Image.Image, Image.Image | None]:
    """One cache entry: the image frame-cropped and resized, its mask cropped and resized alike.

    The frame box is found on the draft-decoded image and scaled to the mask's resolution; the
    mask is resized with nearest neighbour and stays binary (0/255).

    Raises:
        ImageLoadError: If the image or the mask cannot be read.
    """
    img = _load_reduced(image_path, size, DEFAULT_MAX_PIXELS)
    box = frame_box(img) if crop else None
    decoded_size = img.size
    if box is not None:
        img = img.crop(box)
    out_size = _short_side_size(*img.size, size)
    img = img.resize(out_size, Image.Resampling.BICUBIC)
    if mask_path is None:
        return img, None
    mask = _open(mask_path, DEFAULT_MAX_PIXELS)
    try:
        mask = mask.convert("L")
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageLoadError(f"{mask_path}: truncated or corrupt mask ({err})") from err
    if box is not None:
        sx, sy = mask.width / decoded_size[0], mask.height / decoded_size[1]
        mask = mask.crop((box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy))
    mask = mask.resize(out_size, Image.Resampling.NEAREST).point(lambda v: 255 if v > 127 else 0)
    return img, mask


def _cache_one(job: tuple[str, str, str | None, str, int, bool]):
    image_id, image_path, mask_path, out_dir, size, crop = job
    out = Path(out_dir)
    image_out = out / "images" / f"{image_id}.bmp"
    mask_out = out / "masks" / f"{image_id}_segmentation.png" if mask_path else None
    if image_out.exists() and (mask_out is None or mask_out.exists()):
        return image_id, str(image_out), mask_out and str(mask_out), None
    try:
        img, mask = cache_entry(image_path, mask_path, size, crop)
    except ImageLoadError as err:
        return image_id, None, None, str(err)
    _atomic_save(img, image_out)
    if mask is not None:
        _atomic_save(mask, mask_out)
    return image_id, str(image_out), mask_out and str(mask_out), None


def build_cache(
    items: Iterable[tuple[str, str | Path, str | Path | None]],
    cache_dir: str | Path,
    size: int = 256,
    *,
    crop: bool = True,
    num_proc: int = 1,
) -> CacheReport:
    """Writes each image once, frame-cropped and resized to a short side, as 8-bit BMP.

    Entries already in the cache are reused, so an interrupted build resumes. Unreadable images
    are skipped and listed (with the reason) in the returned report and in ``report.json``.

    Args:
        items: ``(image_id, image_path, mask_path or None)`` triples.
        cache_dir: Output folder (``images/<id>.bmp``, ``masks/<id>_segmentation.png``,
            ``report.json``).
        size: Short side in pixels.
        crop: Remove the dermoscope frame first (``frame_box``).
        num_proc: Worker processes (1 = in this process).

    Returns:
        A ``CacheReport``.

    Raises:
        ValueError: If ``size`` or ``num_proc`` is invalid, or ``cache_dir`` holds a cache built
            with other settings.
    """
    _check_size(size)
    if isinstance(num_proc, bool) or not isinstance(num_proc, int) or num_proc < 1:
        raise ValueError(f"num_proc must be a positive integer, got {num_proc!r}")
    cache = Path(cache_dir)
    settings = {"size": size, "crop": crop, "format": "bmp-uint8"}
    report_path = cache / "report.json"
    if report_path.exists():
        previous = json.loads(report_path.read_text())
        if previous.get("settings") != settings:
            raise ValueError(
                f"{cache} holds a cache built with {previous.get('settings')}, not {settings}; "
                "pass another cache_dir"
            )
    (cache / "images").mkdir(parents=True, exist_ok=True)
    (cache / "masks").mkdir(exist_ok=True)
    jobs = [
        (str(i), str(p), None if m is None else str(m), str(cache), size, crop) for i, p, m in items
    ]
    if num_proc == 1:
        results = map(_cache_one, jobs)
        report = _collect(cache, results)
    else:
        with multiprocessing.get_context("fork").Pool(num_proc) as pool:
            report = _collect(cache, pool.imap(_cache_one, jobs, chunksize=16))
    report.report_path = report_path
    summary = {
        "settings": settings,
        "cached": len(report.entries),
        "skipped": len(report.skipped),
        "skipped_reasons": report.skipped,
    }
    report_path.write_text(json.dumps(summary, indent=1, sort_keys=True))
    return report


def _collect(cache: Path, results) -> CacheReport:
    report = CacheReport(cache_dir=cache)
    for image_id, image_out, mask_out, error in results:
        if error is None:
            report.entries[image_id] = (image_out, mask_out)
        else:
            report.skipped[image_id] = error
    return report
