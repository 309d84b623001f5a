"""Metrics on hand-made masks and maps with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from explain import metrics


def square(h=40, w=40, y0=10, y1=20, x0=10, x1=20):
    m = np.zeros((h, w), np.float32)
    m[y0:y1, x0:x1] = 1
    return m


def test_iou_known_values():
    mask = square() > 0
    assert metrics.iou(square(), mask) == pytest.approx(1.0)
    half = square(y0=15, y1=25)
    assert metrics.iou(half, mask) == pytest.approx(50 / 150)
    # top 6.25% of 1600 pixels = 100 pixels = the square
    graded = square() * 0.9 + 0.05
    assert metrics.iou(graded, mask, top_percent=6.25) == pytest.approx(1.0)


def test_otsu_separates_two_levels():
    heat = square() * 0.8 + 0.1
    t = metrics.otsu_threshold(heat)
    assert 0.1 < t <= 0.9


def test_pointing_game_with_tolerance():
    mask = square() > 0
    heat = np.zeros((40, 40), np.float32)
    heat[15, 35] = 1.0  # 16 px right of the square's last column (19)
    assert not metrics.pointing_game(heat, mask, tolerance=15)
    assert metrics.pointing_game(heat, mask, tolerance=16)
    assert metrics.energy_pointing_game(square(), mask) == pytest.approx(1.0)
    assert metrics.energy_pointing_game(square() * 0 + 1, mask) == pytest.approx(100 / 1600)
    with pytest.raises(ValueError, match="empty"):
        metrics.pointing_game(heat, np.zeros((40, 40), bool))
    with pytest.raises(ValueError, match="does not match"):
        metrics.iou(heat, np.zeros((4, 4)))


def test_bootstrap_ci_contains_mean():
    mean, lo, hi = metrics.bootstrap_ci([0.0, 1.0] * 20, n_resamples=200)
    assert mean == 0.5 and lo < 0.5 < hi
    assert metrics.bootstrap_ci([2.0]) == (2.0, 2.0, 2.0)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return timm.create_model("resnet18", num_classes=3).eval()


def test_deletion_insertion_shapes_and_endpoints(model):
    x = torch.randn(3, 32, 32)
    heat = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    out = metrics.deletion_insertion(model, x, heat, 1, steps=4)
    assert len(out["deletion"]) == len(out["insertion"]) == 5
    with torch.no_grad():
        p_full = torch.softmax(model(x[None]), 1)[0, 1].item()
        p_zero = torch.softmax(model(torch.zeros(1, 3, 32, 32)), 1)[0, 1].item()
    assert out["deletion"][0] == pytest.approx(p_full, abs=1e-5)
    assert out["deletion"][-1] == pytest.approx(p_zero, abs=1e-5)
    assert out["insertion"][-1] == pytest.approx(p_full, abs=1e-5)
    assert 0 <= out["deletion_auc"] <= 1


def test_average_drop_full_map_is_zero(model):
    x = torch.randn(3, 32, 32)
    drop, increase = metrics.average_drop_increase(model, x, np.ones((32, 32), np.float32), 0)
    assert drop == pytest.approx(0.0, abs=1e-4)
    assert increase is False


def test_randomization_keeps_original(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    clone = metrics.randomize_layers(model, ("layer4", "fc"))
    assert not torch.equal(clone.fc.weight, model.fc.weight)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    with pytest.raises(ValueError, match="no submodule"):
        metrics.randomize_layers(model, ("layer9",))
    x = torch.randn(1, 3, 32, 32)

    def fn(m):
        from explain import GradCAM

        return GradCAM(m, "layer3")(x, 0).heatmaps[0].numpy()

    rho = metrics.randomization_correlation(fn, model)
    assert -1 <= rho <= 1
