"""Heatmap overlays: a matplotlib colormap blended over the image, plus the contour of the
thresholded region."""

from __future__ import annotations

import matplotlib
import numpy as np
from PIL import Image
from scipy import ndimage


def check_heatmap(heatmap: object) -> np.ndarray:
    """Validate a heatmap: a finite 2-D array with values in [0, 1]; returned as float32.

    Raises:
        TypeError: If it is not array-like.
        ValueError: If it is not 2-D, empty, not finite or outside [0, 1].
    """
    try:
        heat = np.asarray(heatmap, dtype=np.float32)
    except (TypeError, ValueError) as err:
        raise TypeError(f"heatmap must be a numeric array, got {type(heatmap).__name__}") from err
    if heat.ndim != 2 or heat.size == 0:
        raise ValueError(f"heatmap must be a non-empty 2-D array, got shape {heat.shape}")
    if not np.isfinite(heat).all():
        raise ValueError("heatmap contains NaN or infinite values")
    if heat.min() < 0 or heat.max() > 1:
        raise ValueError(f"heatmap values must lie in [0, 1], got [{heat.min()}, {heat.max()}]")
    return heat


def overlay(
    image: Image.Image,
    heatmap: np.ndarray,
    *,
    alpha: float = 0.45,
    cmap: str = "jet",
    threshold: float | None = 0.5,
    contour_color: tuple[int, int, int] = (255, 255, 255),
) -> Image.Image:
    """Blend a colored heatmap over an image and outline the region where it is high.

    Args:
        image: The image (any mode; converted to RGB).
        heatmap: Float map in [0, 1] shaped (height, width) of the image.
        alpha: Weight of the colored heatmap, in [0, 1].
        cmap: A matplotlib colormap name.
        threshold: Outline the region ``heatmap >= threshold``; ``None`` draws no contour.
        contour_color: RGB color of the outline.

    Returns:
        An RGB image the size of ``image``.

    Raises:
        TypeError: If ``image`` is not a PIL image.
        ValueError: On a shape mismatch, an unknown colormap or out-of-range alpha/threshold.
    """
    if not isinstance(image, Image.Image):
        raise TypeError(f"image must be a PIL.Image.Image, got {type(image).__name__}")
    heat = check_heatmap(heatmap)
    if heat.shape != (image.height, image.width):
        raise ValueError(
            f"heatmap shape {heat.shape} does not match the image (height, width) "
            f"{(image.height, image.width)}"
        )
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    if threshold is not None and not 0 < threshold <= 1:
        raise ValueError(f"threshold must lie in (0, 1] or be None, got {threshold}")
    try:
        colormap = matplotlib.colormaps[cmap]
    except KeyError as err:
        raise ValueError(f"unknown matplotlib colormap {cmap!r}") from err
    base = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    colored = colormap(heat)[..., :3].astype(np.float32)
    out = (1 - alpha) * base + alpha * colored
    if threshold is not None:
        region = heat >= threshold
        edge = region & ~ndimage.binary_erosion(region, border_value=0)
        width = max(1, round(min(heat.shape) / 150))
        if width > 1:
            edge = ndimage.binary_dilation(edge, iterations=width - 1)
        out[edge] = np.asarray(contour_color, dtype=np.float32) / 255.0
    return Image.fromarray(np.clip(out * 255 + 0.5, 0, 255).astype(np.uint8), mode="RGB")
