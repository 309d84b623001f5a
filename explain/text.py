"""Deterministic text from a heatmap, the image and the calibrated prediction.

The focus region is ``heatmap >= threshold`` (relative to its maximum). Its size comes from the
area fraction, its location from the heat-weighted centroid of the largest component, its shape
from the eigenvalues of the pixel coordinates' covariance (second moments), its boundary from
solidity (area over convex-hull area), its color from the image pixels inside versus outside the
region. The study's example: "Prediction: NV (93.74% confidence). Focus: medium, elongated region
in the lower-right part of the image. Clinical insight: Nevus is benign and symmetrical."
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from explain.overlay import check_heatmap

CLINICAL_NOTES = {
    "MEL": "Melanoma is malignant; it is often asymmetric, with irregular borders and "
    "variegated color. Urgent dermatological assessment is advised.",
    "NV": "Nevus is benign and usually symmetrical, with even color and regular borders.",
    "BCC": "Basal cell carcinoma is a malignant, slow-growing tumor, often pearly with "
    "arborizing vessels; it rarely spreads but needs treatment.",
    "AK": "Actinic keratosis is a precancerous, scaly lesion on sun-damaged skin that can "
    "progress to squamous cell carcinoma.",
    "BKL": "Benign keratosis (seborrheic keratosis, solar lentigo, lichen-planus-like keratosis) "
    "is benign; it often looks 'stuck on', with sharp borders.",
    "DF": "Dermatofibroma is benign, firm, often with a central white patch and peripheral "
    "pigment network.",
    "VASC": "Vascular lesions (angiomas, angiokeratomas, hemorrhages) are usually benign, red "
    "to purple, with lacunae.",
    "SCC": "Squamous cell carcinoma is malignant, often keratotic or ulcerated; it needs "
    "treatment and can spread.",
    "UNK": "The lesion does not match a known class; clinical assessment is needed.",
}

_HUES = (
    (15, "red"),
    (45, "brown"),
    (70, "yellow"),
    (170, "green"),
    (260, "blue"),
    (300, "purple"),
    (345, "pink"),
    (360, "red"),
)


@dataclass(frozen=True)
class Region:
    """Geometry and appearance of the focus region of a heatmap.

    Attributes:
        area_fraction: Share of the image above the threshold.
        size: "small" (< 10%), "medium" (< 30%) or "large".
        location: e.g. "lower-right", "upper-center", "center".
        shape: "round", "oval" or "elongated" (axis ratio < 1.3, < 1.8, >= 1.8).
        axis_ratio: sqrt of the covariance eigenvalue ratio of the main component.
        boundary: "smooth" (solidity >= 0.9) or "irregular".
        solidity: Area over convex-hull area of the main component.
        foci: Number of components at least 20% the size of the largest.
        intensity: "darker", "lighter" or "similar" relative to the surrounding skin, or None.
        hue: Dominant color name inside the region, or None without an image.
    """

    area_fraction: float
    size: str
    location: str
    shape: str
    axis_ratio: float
    boundary: str
    solidity: float
    foci: int
    intensity: str | None
    hue: str | None


def _location(cy: float, cx: float, height: int, width: int) -> str:
    vertical = "upper" if cy < height / 3 else "lower" if cy >= 2 * height / 3 else "middle"
    horizontal = "left" if cx < width / 3 else "right" if cx >= 2 * width / 3 else "center"
    if vertical == "middle":
        return "center" if horizontal == "center" else f"middle-{horizontal}"
    return f"{vertical}-{horizontal}"


def _solidity(component: np.ndarray) -> float:
    ys, xs = np.nonzero(component)
    corners = np.concatenate(
        [np.stack([ys + dy, xs + dx], axis=1) for dy in (-0.5, 0.5) for dx in (-0.5, 0.5)]
    )
    try:
        hull_area = ConvexHull(corners).volume
    except QhullError:
        return 1.0
    return float(min(1.0, component.sum() / hull_area))


def _hue_name(pixels: np.ndarray) -> str:
    r, g, b = (pixels.mean(axis=0) / 255.0).tolist()
    hue, lightness, saturation = colorsys.rgb_to_hls(r, g, b)
    if saturation < 0.12:
        return "grey" if 0.2 < lightness < 0.8 else "black" if lightness <= 0.2 else "white"
    degrees = hue * 360
    return next(name for bound, name in _HUES if degrees < bound)


def analyze_region(
    heatmap: np.ndarray, image: Image.Image | None = None, *, threshold: float = 0.5
) -> Region | None:
    """Describe the region where ``heatmap >= threshold * heatmap.max()``.

    Args:
        heatmap: Float map in [0, 1], shaped (height, width).
        image: The image the map explains (resized to the map if needed), for color.
        threshold: Relative threshold in (0, 1].

    Returns:
        A :class:`Region`, or ``None`` when the map is all zero.
    """
    heat = check_heatmap(heatmap)
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must lie in (0, 1], got {threshold}")
    if heat.max() <= 0:
        return None
    height, width = heat.shape
    mask = heat >= threshold * heat.max()
    labels, count = ndimage.label(mask)
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    main = labels == int(np.argmax(sizes)) + 1
    foci = int((sizes >= 0.2 * sizes.max()).sum())
    area = float(mask.mean())
    size = "small" if area < 0.1 else "medium" if area < 0.3 else "large"
    cy, cx = ndimage.center_of_mass(heat * main)
    ys, xs = np.nonzero(main)
    if len(ys) > 2:
        eig = np.linalg.eigvalsh(np.cov(np.stack([ys, xs]).astype(np.float64)))
        ratio = float(np.sqrt(eig[1] / max(eig[0], 1e-9))) if eig[1] > 0 else 1.0
    else:
        ratio = 1.0
    shape = "round" if ratio < 1.3 else "oval" if ratio < 1.8 else "elongated"
    solidity = _solidity(main)
    intensity = hue = None
    if image is not None:
        if not isinstance(image, Image.Image):
            raise TypeError(f"image must be a PIL.Image.Image, got {type(image).__name__}")
        rgb = np.asarray(image.convert("RGB").resize((width, height), Image.BILINEAR))
        luma = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        hue = _hue_name(rgb[main].astype(np.float32))
        if (~mask).any():
            diff = float(luma[main].mean() - luma[~mask].mean())
            intensity = "darker" if diff < -10 else "lighter" if diff > 10 else "similar"
    return Region(
        area_fraction=area,
        size=size,
        location=_location(cy, cx, height, width),
        shape=shape,
        axis_ratio=ratio,
        boundary="smooth" if solidity >= 0.9 else "irregular",
        solidity=solidity,
        foci=foci,
        intensity=intensity,
        hue=hue,
    )


def _focus_sentence(region: Region | None) -> str:
    if region is None:
        return "Focus: the map has no salient region."
    place = "the center" if region.location == "center" else f"the {region.location} part"
    text = f"Focus: {region.size}, {region.shape} region in {place} of the image"
    details = []
    if region.intensity is not None:
        details.append(
            "similar in brightness to the surrounding skin"
            if region.intensity == "similar"
            else f"{region.intensity} than the surrounding skin"
        )
    if region.hue is not None:
        details.append(f"mostly {region.hue}")
    article = "an" if region.boundary == "irregular" else "a"
    details.append(f"with {article} {region.boundary} boundary")
    text += ", " + ", ".join(details) + "."
    if region.foci > 1:
        text += f" The map shows {region.foci} separate foci."
    return text


def describe(
    heatmap: np.ndarray,
    image: Image.Image | None,
    *,
    label: str,
    probabilities: dict[str, float],
    prediction_set: list[str] | None = None,
    coverage: float | None = None,
    uncertain_below: float = 0.6,
    threshold: float = 0.5,
) -> str:
    """Plain-language summary of a prediction and its heatmap.

    Args:
        heatmap: Float map in [0, 1] at the image's size.
        image: The input image (for color), or ``None``.
        label: Predicted class.
        probabilities: Calibrated probability per class.
        prediction_set: Conformal prediction set, if the model has one.
        coverage: Its nominal coverage (1 - alpha).
        uncertain_below: Confidence under which a referral sentence is added.
        threshold: Relative threshold of the focus region.

    Returns:
        Sentences: prediction, focus, prediction set, referral when uncertain, clinical note.

    Raises:
        ValueError: If ``label`` is not among ``probabilities``.
    """
    if label not in probabilities:
        raise ValueError(f"label {label!r} is not among the probabilities {list(probabilities)}")
    confidence = probabilities[label]
    parts = [
        f"Prediction: {label} ({confidence:.2%} confidence).",
        _focus_sentence(analyze_region(heatmap, image, threshold=threshold)),
    ]
    if prediction_set:
        cover = f" ({coverage:.0%} coverage)" if coverage is not None else ""
        parts.append(f"Prediction set{cover}: {' or '.join(prediction_set)}.")
    if confidence < uncertain_below or (prediction_set is not None and len(prediction_set) > 1):
        parts.append("The model is uncertain about this image; please refer it to a dermatologist.")
    note = CLINICAL_NOTES.get(label)
    if note:
        parts.append(f"Clinical insight: {note}")
    return " ".join(parts)
