"""SynthDerm: synthetic dermoscopy images with ground-truth lesion masks, in the ISIC 2019 layout.

No ISIC image can be downloaded here, so SynthDerm draws one lesion per image whose class is shown
by textbook dermoscopic cues (Argenziano et al. 2003; Kittler et al. 2016):

- NV: symmetric, round, uniform brown, smooth border, faint pigment network.
- MEL: asymmetric, irregular border, several colours (dark brown, black, blue-white veil).
- BCC: pink translucent with arborizing red vessels, sometimes blue-grey ovoid nests.
- AK: red scaly patch with an ill-defined border.
- BKL: tan "stuck-on" lesion with a sharp border and milia-like white dots.
- DF: brown ring with a central white patch.
- VASC: red/purple lacunae separated by pale septa.
- SCC: pink-white keratin centre with dotted vessels around it.

UNK gets no images, as in the ISIC 2019 training set. Sizes, colours and cue strengths overlap
between classes so the task is learnable but not trivial. Each image also has skin of a random
Fitzpatrick-like tone with texture, lighting gradients, hair, sometimes a dark dermoscope frame,
JPEG compression and, optionally, artifacts (rulers, ink marks, gel bubbles) whose frequency can
be correlated with one class, with their own masks.

Output (``generate`` or ``python -m lesions.synth --out DIR --n N --seed S``)::

    DIR/ISIC_2019_Training_Input/ISIC_0000000.jpg ...
    DIR/ISIC_2019_Training_GroundTruth.csv
    DIR/ISIC_2019_Training_Metadata.csv
    DIR/masks/ISIC_0000000_segmentation.png        (255 = lesion)
    DIR/artifacts/ISIC_0000000_artifact.png        (255 = artifact; only when artifacts > 0)

The output is byte-identical for a seed: every lesion and every photo draws from its own
``numpy.random.Generator`` seeded from ``(seed, index)``, JPEGs use a fixed quality, and no
time stamp or random id is written.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from lesions.isic import (
    CLASSES,
    GROUND_TRUTH_CSV,
    IMAGE_DIR,
    MASK_DIR,
    MASK_SUFFIX,
    METADATA_CSV,
)

ARTIFACT_DIR = "artifacts"
PROVENANCE_FILE = "SYNTHDERM.json"
"""Written beside the tables so that anything trained on the folder knows its data is synthetic."""
ARTIFACT_SUFFIX = "_artifact.png"
JPEG_QUALITY = 90

# Image counts per class in the real ISIC 2019 training table (the default class frequencies).
ISIC_CLASS_COUNTS = {
    "MEL": 4522,
    "NV": 12875,
    "BCC": 3323,
    "AK": 867,
    "BKL": 2624,
    "DF": 239,
    "VASC": 253,
    "SCC": 628,
    "UNK": 0,
}
# anatom_site_general counts in the real ISIC 2019 metadata (2,631 rows have no site).
ISIC_SITE_COUNTS = {
    "anterior torso": 6915,
    "lower extremity": 4990,
    "head/neck": 4587,
    "upper extremity": 2910,
    "posterior torso": 2787,
    "palms/soles": 398,
    "oral/genital": 59,
    "lateral torso": 54,
    None: 2631,
}
# Mean age per class (years); keratinocyte cancers and AK appear later in life.
_CLASS_AGE = {
    "MEL": 60,
    "NV": 45,
    "BCC": 67,
    "AK": 70,
    "BKL": 62,
    "DF": 45,
    "VASC": 50,
    "SCC": 72,
    "UNK": 55,
}


@dataclass(frozen=True)
class _Style:
    """How one class is drawn: size, shape irregularity, border softness and colours (RGB 0-1)."""

    radius: tuple[float, float]  # mean, sd of the lesion radius as a fraction of the image size
    irregularity: tuple[float, float]  # range of the high-frequency border harmonics' amplitude
    asymmetry: tuple[float, float]  # range of the first harmonic (off-centre bulge)
    soft: tuple[float, float]  # range of the border blur, in units of the lesion radius
    color: tuple[float, float, float]  # base colour
    opacity: tuple[float, float]  # range of the lesion's opacity over the skin


_STYLES = {
    "NV": _Style(
        (0.20, 0.05), (0.00, 0.05), (0.00, 0.05), (0.03, 0.10), (0.45, 0.29, 0.18), (0.8, 1)
    ),
    "MEL": _Style(
        (0.24, 0.06), (0.05, 0.16), (0.06, 0.20), (0.02, 0.12), (0.38, 0.23, 0.15), (0.85, 1)
    ),
    "BCC": _Style(
        (0.20, 0.05), (0.02, 0.10), (0.02, 0.10), (0.05, 0.15), (0.84, 0.58, 0.56), (0.5, 0.8)
    ),
    "AK": _Style(
        (0.21, 0.06), (0.03, 0.10), (0.03, 0.12), (0.15, 0.30), (0.78, 0.42, 0.36), (0.5, 0.85)
    ),
    "BKL": _Style(
        (0.22, 0.06), (0.02, 0.09), (0.02, 0.10), (0.01, 0.04), (0.62, 0.45, 0.30), (0.8, 1)
    ),
    "DF": _Style(
        (0.16, 0.04), (0.00, 0.06), (0.00, 0.06), (0.08, 0.18), (0.50, 0.33, 0.22), (0.75, 1)
    ),
    "VASC": _Style(
        (0.17, 0.05), (0.01, 0.07), (0.01, 0.08), (0.02, 0.08), (0.62, 0.22, 0.32), (0.8, 1)
    ),
    "SCC": _Style(
        (0.21, 0.05), (0.03, 0.11), (0.03, 0.12), (0.05, 0.15), (0.86, 0.58, 0.55), (0.7, 1)
    ),
}


@dataclass(frozen=True)
class _Lesion:
    """One lesion (possibly photographed several times): class, patient and shape parameters."""

    index: int
    label: str
    n_photos: int
    has_lesion_id: bool


def _class_probabilities(balanced: bool) -> np.ndarray:
    counts = np.array([ISIC_CLASS_COUNTS[c] for c in CLASSES], dtype=np.float64)
    if balanced:
        counts = (counts > 0).astype(np.float64)
    return counts / counts.sum()


def _plan_lesions(n: int, seed: int, balanced: bool) -> list[_Lesion]:
    """Decides the lesions behind ``n`` photos: class, photos per lesion (1-3), lesion_id or not."""
    rng = np.random.default_rng([seed, 2])
    probs = _class_probabilities(balanced)
    lesions: list[_Lesion] = []
    photos = 0
    while photos < n:
        n_photos = min(int(rng.choice(3, p=[0.7, 0.2, 0.1])) + 1, n - photos)
        label = CLASSES[int(rng.choice(len(CLASSES), p=probs))]
        has_id = n_photos > 1 or bool(rng.random() > 0.1)
        lesions.append(_Lesion(len(lesions), label, n_photos, has_id))
        photos += n_photos
    return lesions


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-scale noise smooth at ``size / cells`` pixels (bicubic upsampling)."""
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(grid).resize((size, size), Image.Resampling.BICUBIC))


def _blend(canvas: np.ndarray, color: Sequence[float], alpha: np.ndarray) -> None:
    """In place: ``canvas = canvas * (1 - alpha) + color * alpha`` (alpha is HxW in [0, 1])."""
    a = alpha[..., None]
    canvas *= 1.0 - a
    canvas += a * np.asarray(color, dtype=np.float32)


def _layer(size: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    layer = Image.new("L", (size, size), 0)
    return layer, ImageDraw.Draw(layer)


def _as_alpha(layer: Image.Image) -> np.ndarray:
    return np.asarray(layer, dtype=np.float32) / 255.0


def _random_point_in(rng: np.random.Generator, region: np.ndarray) -> tuple[float, float]:
    flat = np.flatnonzero(region)
    if flat.size == 0:
        flat = np.array([region.size // 2])
    y, x = divmod(int(flat[rng.integers(flat.size)]), region.shape[1])
    return float(x), float(y)


def _draw_tree(draw, rng, x, y, angle, length, width, depth) -> None:
    """Arborizing vessel: a segment that forks into two thinner, shorter branches."""
    x2, y2 = x + length * math.cos(angle), y + length * math.sin(angle)
    draw.line([(x, y), (x2, y2)], fill=255, width=max(1, round(width)))
    if depth > 0:
        for side in (-1, 1):
            turn = side * rng.uniform(0.3, 0.8)
            _draw_tree(draw, rng, x2, y2, angle + turn, length * 0.7, width * 0.7, depth - 1)


def _draw_dots(draw, rng, region, count, radius_px) -> None:
    for _ in range(count):
        x, y = _random_point_in(rng, region)
        r = radius_px * rng.uniform(0.6, 1.4)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=255)


def _jitter(rng: np.random.Generator, color: Sequence[float], amount: float) -> np.ndarray:
    return np.clip(np.asarray(color) * (1 + rng.normal(0, amount, 3)), 0, 1).astype(np.float32)


def _lesion_colors(
    label: str,
    rng: np.random.Generator,
    size: int,
    rho: np.ndarray,
    inside: np.ndarray,
    base: np.ndarray,
    strength: float,
) -> np.ndarray:
    """The lesion's colour field (HxWx3) with the class cues painted in; ``rho`` < 1 is inside."""
    px = size / 256.0
    colors = np.broadcast_to(base, (size, size, 3)).copy()
    shade = 1.0 + 0.10 * _smooth_noise(rng, size, 9)[..., None]
    colors *= shade
    if label == "NV":
        # Faint, regular pigment network and a slightly darker centre.
        period = rng.uniform(6, 10) * px
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        net = np.abs(np.sin(xx / period) * np.sin(yy / period))
        _blend(colors, base * 0.6, 0.25 * strength * net * inside)
        _blend(colors, base * 0.8, 0.3 * strength * np.clip(1 - rho, 0, 1))
    elif label == "MEL":
        dark = _smooth_noise(rng, size, 6)
        veil = _smooth_noise(rng, size, 5)
        light = _smooth_noise(rng, size, 7)
        _blend(colors, _jitter(rng, (0.10, 0.07, 0.07), 0.15), np.clip(dark - 0.3, 0, 1) * strength)
        _blend(
            colors, _jitter(rng, (0.47, 0.52, 0.64), 0.1), np.clip(veil - 0.4, 0, 0.8) * strength
        )
        _blend(colors, _jitter(rng, (0.66, 0.48, 0.34), 0.1), np.clip(light - 0.5, 0, 0.7))
    elif label == "BCC":
        layer, draw = _layer(size)
        for _ in range(rng.integers(2, 5)):
            x, y = _random_point_in(rng, rho < 0.7)
            angle = rng.uniform(0, 2 * math.pi)
            length = rng.uniform(10, 22) * px
            _draw_tree(draw, rng, x, y, angle, length, 2.2 * px, int(rng.integers(2, 4)))
        _blend(colors, _jitter(rng, (0.72, 0.10, 0.13), 0.1), 0.9 * strength * _as_alpha(layer))
        if rng.random() < 0.4:
            layer, draw = _layer(size)
            _draw_dots(draw, rng, rho < 0.6, int(rng.integers(1, 4)), 7 * px)
            _blend(colors, (0.42, 0.45, 0.55), 0.7 * _as_alpha(layer))
    elif label == "AK":
        scales = _smooth_noise(rng, size, 40)
        _blend(colors, (0.93, 0.90, 0.85), np.clip(scales - 0.6, 0, 1) * strength)
        _blend(colors, (0.86, 0.30, 0.28), 0.3 * strength * np.clip(1 - rho, 0, 1))
    elif label == "BKL":
        ridges = _smooth_noise(rng, size, 14)
        _blend(colors, base * 0.7, 0.4 * strength * np.clip(np.abs(ridges) - 0.3, 0, 1))
        layer, draw = _layer(size)
        _draw_dots(draw, rng, rho < 0.85, int(rng.integers(3, 14)), 2.6 * px)
        _blend(colors, (0.96, 0.93, 0.82), 0.9 * strength * _as_alpha(layer))
    elif label == "DF":
        patch = rng.uniform(0.3, 0.55)
        center = np.clip((patch - rho) / 0.15 + 0.5, 0, 1)
        _blend(colors, _jitter(rng, (0.92, 0.86, 0.80), 0.04), 0.9 * strength * center)
        ring = np.clip(1 - np.abs(rho - 0.75) / 0.25, 0, 1)
        _blend(colors, base * 0.75, 0.4 * ring)
    elif label == "VASC":
        _blend(colors, (0.85, 0.65, 0.68), 0.5 * strength * inside)
        layer, draw = _layer(size)
        _draw_dots(draw, rng, rho < 0.85, int(rng.integers(6, 16)), 6 * px)
        lacuna = rng.choice([0, 1])
        tint = ((0.72, 0.08, 0.18), (0.42, 0.10, 0.35))[lacuna]
        _blend(colors, _jitter(rng, tint, 0.1), 0.95 * _as_alpha(layer))
    elif label == "SCC":
        keratin = np.clip((rng.uniform(0.35, 0.6) - rho) / 0.2 + 0.5, 0, 1)
        keratin *= np.clip(0.8 + 0.4 * _smooth_noise(rng, size, 8), 0, 1)
        _blend(colors, _jitter(rng, (0.95, 0.92, 0.80), 0.04), 0.9 * strength * keratin)
        layer, draw = _layer(size)
        _draw_dots(draw, rng, (rho > 0.45) & (rho < 0.9), int(rng.integers(8, 25)), 1.6 * px)
        _blend(colors, (0.75, 0.12, 0.15), 0.9 * strength * _as_alpha(layer))
    return colors


def _draw_hair(image: np.ndarray, rng: np.random.Generator, size: int) -> None:
    layer, draw = _layer(size)
    for _ in range(rng.integers(1, 15)):
        x0, y0 = rng.uniform(0, size, 2)
        angle = rng.uniform(0, 2 * math.pi)
        length = rng.uniform(0.2, 0.8) * size
        bend = rng.normal(0, 0.4)
        t = np.linspace(0, 1, 12)
        xs = x0 + length * t * np.cos(angle + bend * t)
        ys = y0 + length * t * np.sin(angle + bend * t)
        width = max(1, round(rng.uniform(0.8, 2.2) * size / 256))
        draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=255, width=width)
    _blend(image, _jitter(rng, (0.12, 0.09, 0.07), 0.3), 0.9 * _as_alpha(layer))


def _draw_artifact(image: np.ndarray, rng: np.random.Generator, size: int, lesion: np.ndarray):
    """Draws a ruler, ink mark or gel bubbles; returns the artifact's boolean mask."""
    layer, draw = _layer(size)
    kind = rng.integers(3)
    px = size / 256.0
    if kind == 0:  # ruler along one edge: a pale band with black ticks
        band = int(rng.uniform(14, 24) * px)
        offset = int(rng.uniform(4, 20) * px)
        rot = int(rng.integers(4))
        draw.rectangle([0, offset, size, offset + band], fill=255)
        ruler = np.rot90(_as_alpha(layer), rot)
        ticks, tdraw = _layer(size)
        for x in np.arange(rng.uniform(0, 6 * px), size, 6 * px):
            tick = band * (0.7 if round(x / (6 * px)) % 5 == 0 else 0.4)
            tdraw.line([(x, offset), (x, offset + tick)], fill=255, width=max(1, round(px)))
        tick_alpha = np.rot90(_as_alpha(ticks), rot)
        _blend(image, (0.93, 0.90, 0.72), ruler)
        _blend(image, (0.05, 0.05, 0.05), tick_alpha)
        return ruler > 0.5
    if kind == 1:  # ink mark: a thick purple stroke beside the lesion
        x, y = _random_point_in(rng, lesion)
        angle = rng.uniform(0, 2 * math.pi)
        dist = rng.uniform(40, 70) * px
        cx, cy = x + dist * math.cos(angle), y + dist * math.sin(angle)
        t = np.linspace(-1, 1, 10)
        xs = cx + 25 * px * t * math.cos(angle + math.pi / 2)
        ys = cy + 25 * px * t * math.sin(angle + math.pi / 2) + 4 * px * np.sin(3 * t)
        pts = list(zip(xs.tolist(), ys.tolist(), strict=True))
        draw.line(pts, fill=255, width=max(2, round(rng.uniform(4, 8) * px)))
        alpha = _as_alpha(layer)
        _blend(image, _jitter(rng, (0.35, 0.20, 0.55), 0.1), 0.85 * alpha)
        return alpha > 0.5
    # gel bubbles: pale discs with a bright rim
    rims, rdraw = _layer(size)
    for _ in range(rng.integers(2, 7)):
        x, y = rng.uniform(0, size, 2)
        r = rng.uniform(5, 18) * px
        draw.ellipse([x - r, y - r, x + r, y + r], fill=255)
        rdraw.ellipse([x - r, y - r, x + r, y + r], outline=255, width=max(1, round(1.5 * px)))
    alpha = _as_alpha(layer)
    _blend(image, (0.95, 0.95, 0.95), 0.25 * alpha)
    _blend(image, (1.0, 1.0, 1.0), 0.8 * _as_alpha(rims))
    return alpha > 0.5


def _render(
    lesion: _Lesion,
    photo: int,
    seed: int,
    size: int,
    artifact_probability: float | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Draws one photo of ``lesion``; returns (uint8 RGB, bool lesion mask, bool artifact mask).

    ``artifact_probability=None`` draws no artifact and returns no artifact mask.
    """
    style = _STYLES[lesion.label]
    lrng = np.random.default_rng([seed, 0, lesion.index])  # the lesion: same on every photo
    prng = np.random.default_rng([seed, 1, photo])  # this photo's variations

    # Lesion-level parameters.
    tone = lrng.uniform(0, 1)  # Fitzpatrick-like: 0 = very light, 1 = dark
    skin_color = np.array([0.93, 0.78, 0.68]) * (1 - tone) + np.array([0.42, 0.28, 0.20]) * tone
    skin_color = _jitter(lrng, skin_color, 0.04)
    radius = float(np.clip(lrng.normal(*style.radius), 0.08, 0.34))
    aspect = lrng.uniform(0.7, 1.0)
    harmonics = np.arange(2, 9)
    amps = lrng.uniform(*style.irregularity, harmonics.size) / np.sqrt(harmonics - 1)
    phases = lrng.uniform(0, 2 * math.pi, harmonics.size)
    # Border harmonics as complex coefficients: r(phi) = 1 + Re(sum_k c_k e^{i k phi}).
    coeffs = (amps * np.exp(1j * phases)).tolist()
    asym = complex(lrng.uniform(*style.asymmetry) * np.exp(1j * lrng.uniform(0, 2 * math.pi)))
    soft = float(lrng.uniform(*style.soft))
    opacity = float(lrng.uniform(*style.opacity))
    strength = float(lrng.uniform(0.35, 1.0))  # how clearly the class cues show
    base = _jitter(lrng, style.color, 0.12)
    # Pigmented lesions look darker on darker skin.
    base = (base * (1 - 0.3 * tone) + skin_color * 0.3 * tone).astype(np.float32)

    # Photo-level variations: position, orientation, zoom, lighting. Lesions sit off-center more
    # often than in ISIC photos (sd 12% of the side, kept inside the frame), so that a centered
    # prior cannot win the localization metrics by construction.
    radius *= float(prng.uniform(0.92, 1.08))
    reach = max(0.0, 0.42 - radius)
    cx, cy = np.clip(prng.normal(0, 0.12, 2), -reach, reach).tolist()
    theta = float(prng.uniform(0, 2 * math.pi))

    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    dx, dy = xx - cx, yy - cy
    u = dx * math.cos(theta) + dy * math.sin(theta)
    v = (-dx * math.sin(theta) + dy * math.cos(theta)) / aspect
    dist = np.maximum(np.hypot(u, v), 1e-6)
    direction = (u + 1j * v) / dist  # e^{i phi}, complex64
    power = direction * direction
    boundary = 1.0 + (asym * direction).real
    for coeff in coeffs:  # harmonics 2..8
        boundary += (coeff * power).real
        power *= direction
    rho = dist / (radius * np.maximum(boundary, 0.3))
    inside = rho <= 1.0
    # Soft edge whose 0.5 level is exactly the mask boundary.
    alpha = np.clip(0.5 + (1.0 - rho) / (2 * soft), 0, 1)

    image = np.broadcast_to(skin_color.astype(np.float32), (size, size, 3)).copy()
    image *= (1 + 0.06 * _smooth_noise(prng, size, 6))[..., None]
    image *= (1 + 0.025 * prng.standard_normal((size, size), dtype=np.float32))[..., None]

    colors = _lesion_colors(lesion.label, lrng, size, rho, inside, base, strength)
    image *= 1 - (opacity * alpha)[..., None]
    image += colors * (opacity * alpha)[..., None]

    artifact = None
    if artifact_probability is not None:
        if prng.random() < artifact_probability:
            artifact = _draw_artifact(image, prng, size, inside)
        else:
            artifact = np.zeros((size, size), dtype=bool)
    if prng.random() < 0.4:
        _draw_hair(image, prng, size)

    # Lighting gradient and a mild vignette.
    light_angle = float(prng.uniform(0, 2 * math.pi))
    gradient = float(prng.uniform(0, 0.3))
    vignette = float(prng.uniform(0, 0.6))
    image *= (
        1
        + gradient * (xx * math.cos(light_angle) + yy * math.sin(light_angle))
        - vignette * (xx * xx + yy * yy)
    )[..., None]

    mask = inside
    if prng.random() < 0.3:  # dark dermoscope frame
        frame_r = float(prng.uniform(0.46, 0.62))
        fx, fy = prng.normal(0, 0.02, 2).tolist()
        frame_rho = np.hypot(xx - fx, yy - fy) / frame_r
        visible = np.clip(0.5 + (1.0 - frame_rho) / 0.04, 0, 1)
        _blend(image, np.full(3, prng.uniform(0.0, 0.05)), 1 - visible)
        mask = mask & (frame_rho <= 1.0)
        if artifact is not None:
            artifact = artifact & (frame_rho <= 1.0)
    rgb = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    return rgb, mask, artifact


def _metadata(lesion: _Lesion, seed: int) -> dict[str, object]:
    rng = np.random.default_rng([seed, 3, lesion.index])
    age = float(np.clip(rng.normal(_CLASS_AGE[lesion.label], 14), 0, 85))
    sites = list(ISIC_SITE_COUNTS)
    counts = np.array(list(ISIC_SITE_COUNTS.values()), dtype=np.float64)
    site = sites[int(rng.choice(len(sites), p=counts / counts.sum()))]
    sex = ("male", "female", None)[int(rng.choice(3, p=[0.52, 0.465, 0.015]))]
    return {
        "age_approx": int(5 * round(age / 5)) if rng.random() > 0.02 else None,
        "anatom_site_general": site,
        "lesion_id": f"SYN_{lesion.index:07d}" if lesion.has_lesion_id else None,
        "sex": sex,
    }


def generate(
    out_dir: str | Path,
    n: int,
    seed: int = 0,
    image_size: int = 256,
    artifacts: float = 0.0,
    balanced: bool = False,
    *,
    artifact_class: str = "MEL",
    artifact_correlation: float = 0.5,
) -> Path:
    """Writes ``n`` SynthDerm images with masks and the two ISIC 2019 CSVs into ``out_dir``.

    Args:
        out_dir: Folder to write (created; existing files with the same names are overwritten).
        n: Number of images (>= 1).
        seed: Seed; the same seed gives byte-identical files.
        image_size: Side of the square images in pixels (>= 32).
        artifacts: Probability in [0, 1] that an image of ``artifact_class`` shows an artifact
            (ruler, ink mark or gel bubbles). When > 0, every image gets an artifact mask.
        balanced: Equal class frequencies instead of the ISIC 2019 ones (UNK never appears).
        artifact_class: The class whose images carry artifacts most often.
        artifact_correlation: In [0, 1]. Images of other classes show an artifact with
            probability ``artifacts * (1 - artifact_correlation)``: 0 makes artifacts independent
            of the class, 1 puts them on ``artifact_class`` only.

    Returns:
        ``out_dir`` as a ``Path``.

    Raises:
        ValueError: If an argument is out of range.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
        raise ValueError(f"image_size must be an integer >= 32, got {image_size!r}")
    if not 0.0 <= artifacts <= 1.0:
        raise ValueError(f"artifacts must be a probability in [0, 1], got {artifacts!r}")
    if not 0.0 <= artifact_correlation <= 1.0:
        raise ValueError(f"artifact_correlation must be in [0, 1], got {artifact_correlation!r}")
    if artifact_class not in _STYLES:
        raise ValueError(f"artifact_class must be one of {sorted(_STYLES)}, got {artifact_class!r}")

    out = Path(out_dir)
    image_dir, mask_dir = out / IMAGE_DIR, out / MASK_DIR
    image_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(exist_ok=True)
    if artifacts > 0:
        (out / ARTIFACT_DIR).mkdir(exist_ok=True)

    truth, meta = [], []
    photo = 0
    for lesion in _plan_lesions(n, seed, balanced):
        info = _metadata(lesion, seed)
        p_artifact = artifacts if artifacts > 0 else None
        if p_artifact is not None and lesion.label != artifact_class:
            p_artifact = artifacts * (1.0 - artifact_correlation)
        for _ in range(lesion.n_photos):
            image_id = f"ISIC_{photo:07d}"
            rgb, mask, artifact = _render(lesion, photo, seed, image_size, p_artifact)
            Image.fromarray(rgb).save(image_dir / f"{image_id}.jpg", quality=JPEG_QUALITY)
            Image.fromarray(mask.astype(np.uint8) * 255).save(mask_dir / f"{image_id}{MASK_SUFFIX}")
            if artifact is not None:
                Image.fromarray(artifact.astype(np.uint8) * 255).save(
                    out / ARTIFACT_DIR / f"{image_id}{ARTIFACT_SUFFIX}"
                )
            truth.append({"image": image_id, **{c: float(c == lesion.label) for c in CLASSES}})
            meta.append({"image": image_id, **info})
            photo += 1

    pd.DataFrame(truth).to_csv(out / GROUND_TRUTH_CSV, index=False, float_format="%.1f")
    meta_df = pd.DataFrame(meta)
    meta_df["age_approx"] = meta_df["age_approx"].astype("Int64")
    meta_df.to_csv(out / METADATA_CSV, index=False)
    provenance = {
        "generator": "SynthDerm",
        "n": n,
        "seed": seed,
        "image_size": image_size,
        "artifacts": artifacts,
        "artifact_class": artifact_class,
        "artifact_correlation": artifact_correlation,
        "balanced": balanced,
    }
    (out / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    return out


def read_provenance(data_dir: str | Path) -> dict | None:
    """Return the SynthDerm parameters a folder was generated with, or None for real data."""
    path = Path(data_dir) / PROVENANCE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m lesions.synth --out DIR --n N --seed S [...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m lesions.synth", description="Write a SynthDerm dataset (ISIC 2019 layout)."
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--n", required=True, type=int, help="number of images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=256, help="image side in pixels")
    parser.add_argument(
        "--artifacts", type=float, default=0.0, help="artifact probability for --artifact-class"
    )
    parser.add_argument("--artifact-class", default="MEL")
    parser.add_argument(
        "--artifact-correlation",
        type=float,
        default=0.5,
        help="0 = artifacts independent of class, 1 = only on --artifact-class",
    )
    parser.add_argument("--balanced", action="store_true", help="equal class frequencies")
    args = parser.parse_args(argv)
    try:
        out = generate(
            args.out,
            args.n,
            seed=args.seed,
            image_size=args.image_size,
            artifacts=args.artifacts,
            balanced=args.balanced,
            artifact_class=args.artifact_class,
            artifact_correlation=args.artifact_correlation,
        )
    except ValueError as err:
        parser.error(str(err))
    print(f"wrote {args.n} images to {out}")


if __name__ == "__main__":
    main()
