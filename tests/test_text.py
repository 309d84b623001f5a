"""Text from synthetic heatmaps of known geometry."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from explain.text import analyze_region, describe


def ellipse(h, w, cy, cx, ry, rx, angle=0.0):
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    c, s = np.cos(angle), np.sin(angle)
    u = ((xs - cx) * c + (ys - cy) * s) / rx
    v = (-(xs - cx) * s + (ys - cy) * c) / ry
    return ((u**2 + v**2) <= 1).astype(np.float32)


def test_lower_right_elongated_ellipse():
    heat = ellipse(200, 200, 160, 150, 12, 40)
    region = analyze_region(heat)
    assert region.location == "lower-right"
    assert region.shape == "elongated"
    assert region.boundary == "smooth"
    assert region.foci == 1


def test_round_central_large_and_two_foci():
    region = analyze_region(ellipse(100, 100, 50, 50, 35, 35))
    assert (region.shape, region.location, region.size) == ("round", "center", "large")
    two = ellipse(100, 100, 20, 20, 8, 8) + ellipse(100, 100, 80, 80, 8, 8)
    assert analyze_region(two).foci == 2
    assert analyze_region(np.zeros((10, 10))) is None


def test_irregular_boundary():
    heat = np.zeros((100, 100), np.float32)
    heat[20:80, 20:30] = 1
    heat[20:30, 20:80] = 1
    heat[70:80, 20:80] = 1  # a C shape: solidity well below 0.9
    assert analyze_region(heat).boundary == "irregular"


def test_color_relative_to_skin():
    rgb = np.full((100, 100, 3), (230, 190, 170), np.uint8)
    heat = ellipse(100, 100, 50, 50, 20, 20)
    rgb[heat > 0] = (110, 60, 30)  # brown lesion
    region = analyze_region(heat, Image.fromarray(rgb))
    assert (region.intensity, region.hue) == ("darker", "brown")


def test_describe_study_example_and_referral():
    heat = ellipse(200, 200, 150, 150, 12, 40)
    text = describe(heat, None, label="NV", probabilities={"NV": 0.9374, "MEL": 0.0626})
    assert text.startswith(
        "Prediction: NV (93.74% confidence). Focus: medium, elongated region in the "
        "lower-right part of the image"
    ) or text.startswith("Prediction: NV (93.74% confidence). Focus: small, elongated region")
    assert "Nevus is benign" in text
    assert "refer" not in text
    unsure = describe(
        heat,
        None,
        label="MEL",
        probabilities={"NV": 0.45, "MEL": 0.55},
        prediction_set=["MEL", "NV"],
        coverage=0.9,
    )
    assert "Prediction set (90% coverage): MEL or NV." in unsure
    assert "dermatologist" in unsure
    with pytest.raises(ValueError, match="not among"):
        describe(heat, None, label="XX", probabilities={"NV": 1.0})
