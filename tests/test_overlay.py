"""Overlay blending and contour."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from explain.overlay import overlay


def test_alpha_zero_keeps_image_and_draws_contour():
    img = Image.new("RGB", (40, 30), (10, 20, 30))
    heat = np.zeros((30, 40), np.float32)
    heat[10:20, 10:30] = 1.0
    out = np.asarray(overlay(img, heat, alpha=0.0, contour_color=(255, 0, 0)))
    assert out.shape == (30, 40, 3)
    assert tuple(out[0, 0]) == (10, 20, 30)
    assert tuple(out[15, 20]) == (10, 20, 30)  # inside, not on the edge
    assert tuple(out[10, 20]) == (255, 0, 0)  # on the edge of the region


def test_alpha_one_is_colormap():
    img = Image.new("L", (8, 8), 0)
    heat = np.full((8, 8), 1.0, np.float32)
    out = np.asarray(overlay(img, heat, alpha=1.0, cmap="gray", threshold=None))
    assert (out == 255).all()


def test_bad_inputs():
    img = Image.new("RGB", (8, 8))
    with pytest.raises(ValueError, match="does not match"):
        overlay(img, np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        overlay(img, np.full((8, 8), 2.0))
    with pytest.raises(ValueError, match="colormap"):
        overlay(img, np.zeros((8, 8)), cmap="nope")
    with pytest.raises(TypeError):
        overlay(np.zeros((8, 8, 3)), np.zeros((8, 8)))
