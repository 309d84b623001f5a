"""Calibration math on hand-made logits and conformal coverage on synthetic scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hf_model.calibration import (
    calibrate,
    calibration_metrics,
    conformal_report,
    conformal_threshold,
    fit_temperature,
    prediction_set,
    prediction_sets,
    reliability_diagram,
    softmax,
)


def _calibrated_logits(n: int, k: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax *is* the true label distribution (perfectly calibrated)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, size=(n, k))
    probs = softmax(logits)
    u = rng.random((n, 1))
    labels = np.minimum((probs.cumsum(axis=1) < u).sum(axis=1), k - 1)  # inverse-CDF sampling
    return logits, labels


def test_hand_checked_metrics():
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.8, 0.2]])
    labels = np.array([0, 1, 1, 0])
    m = calibration_metrics(probs, labels, n_bins=10)
    # bins: 0.9 -> (0.8, 0.9] acc 1; 0.6 -> (0.5, 0.6] acc 0; 0.7 -> (0.6, 0.7] acc 1;
    # 0.8 -> (0.7, 0.8] acc 1 => ECE = (0.1 + 0.6 + 0.3 + 0.2) / 4
    assert m["ece"] == pytest.approx((0.1 + 0.6 + 0.3 + 0.2) / 4)
    assert m["mce"] == pytest.approx(0.6)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["nll"] == pytest.approx(-np.mean(np.log([0.9, 0.4, 0.7, 0.8])))
    assert m["brier"] == pytest.approx(np.mean([0.02, 0.72, 0.18, 0.08]))


def test_calibrated_logits_keep_temperature_near_one():
    logits, labels = _calibrated_logits(4000)
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.08)


def test_overconfident_logits_get_t_above_one_and_lower_ece():
    logits, labels = _calibrated_logits(4000, seed=1)
    overconfident = 3.0 * logits
    t = fit_temperature(overconfident, labels)
    assert t == pytest.approx(3.0, rel=0.1)
    before = calibration_metrics(softmax(overconfident), labels)
    after = calibration_metrics(softmax(overconfident, t), labels)
    assert after["ece"] < before["ece"] / 3
    assert after["nll"] < before["nll"]
    assert after["brier"] < before["brier"]
    assert after["accuracy"] == before["accuracy"]  # T never changes the argmax


def test_underconfident_logits_get_t_below_one():
    logits, labels = _calibrated_logits(4000, seed=2)
    assert fit_temperature(logits / 2.0, labels) == pytest.approx(0.5, rel=0.1)


def test_torch_inputs_are_accepted():
    logits, labels = _calibrated_logits(500)
    t_np = fit_temperature(logits, labels)
    t_torch = fit_temperature(torch.from_numpy(logits).float(), torch.from_numpy(labels))
    assert t_torch == pytest.approx(t_np, rel=1e-3)


@pytest.mark.parametrize("method", ["lac", "aps"])
def test_conformal_coverage_on_synthetic_scores(method):
    coverages, sizes = [], []
    for trial in range(20):
        logits, labels = _calibrated_logits(1000, k=9, seed=100 + trial)
        probs = softmax(logits)
        q = conformal_threshold(probs[:500], labels[:500], alpha=0.1, method=method)
        report = conformal_report(probs[500:], labels[500:], q, method=method)
        coverages.append(report["coverage"])
        sizes.append(report["mean_set_size"])
    # marginal guarantee: mean coverage >= 1 - alpha (up to sampling noise), not far above
    assert 0.89 <= np.mean(coverages) <= 0.95
    assert 1.0 < np.mean(sizes) < 9.0


def test_lac_threshold_by_hand():
    probs = np.array([[0.7, 0.2, 0.1]] * 9)
    labels = np.array([0, 0, 0, 0, 0, 0, 0, 1, 2])  # scores 0.3 x7, 0.8, 0.9
    # n = 9, alpha = 0.2: level = ceil(10 * 0.8) / 9 = 8 / 9 -> 8th smallest score = 0.8
    q = conformal_threshold(probs, labels, alpha=0.2, method="lac")
    assert q == pytest.approx(0.8)
    assert prediction_set(probs[0], q) == [0, 1]  # 1 - 0.7 <= 0.8, 1 - 0.2 <= 0.8


def test_aps_sets_are_ranked_prefixes():
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    assert prediction_set(probs, 0.79, method="aps") == [0]
    assert prediction_set(probs, 0.8, method="aps") == [0, 1]
    assert prediction_set(probs, 0.96, method="aps") == [0, 1, 2]
    assert prediction_set(probs, 1.0, method="aps") == [0, 1, 2, 3]


def test_sets_are_never_empty():
    assert prediction_set(np.array([0.4, 0.35, 0.25]), 0.1) == [0]
    assert prediction_sets(np.array([[0.1, 0.9], [0.6, 0.4]]), 0.0) == [[1], [0]]


def test_calibrate_reports_on_the_held_apart_rest():
    logits, labels = _calibrated_logits(600, k=9, seed=4)
    report = calibrate(2.5 * logits, labels, alpha=0.1, method="aps", seed=0)
    assert report["temperature"] == pytest.approx(2.5, rel=0.15)
    assert report["n_calibration"] + report["n_test"] == 600
    assert report["metrics_after"]["ece"] < report["metrics_before"]["ece"]
    conformal = report["conformal"]
    assert conformal["method"] == "aps" and conformal["alpha"] == 0.1
    assert conformal["coverage"] >= 0.85
    assert conformal["n_test"] == report["n_test"]


def test_calibrate_with_too_few_images_skips_conformal():
    logits, labels = _calibrated_logits(8, k=3)
    report = calibrate(logits, labels, alpha=0.1)
    assert report["conformal"] is None
    assert math.isfinite(report["temperature"])


def test_reliability_diagram_writes_png(tmp_path):
    logits, labels = _calibrated_logits(300, seed=5)
    path = reliability_diagram(
        {"before": softmax(3 * logits), "after": softmax(logits)}, labels, tmp_path / "r.png"
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: fit_temperature(np.ones(3), [0, 1, 2]), ValueError, "2 dimension"),
        (lambda: fit_temperature(np.ones((3, 2)), [0, 1]), ValueError, "rows"),
        (lambda: fit_temperature(np.ones((2, 2)), [0, 5]), ValueError, "out of range"),
        (lambda: fit_temperature(np.ones((2, 2)), [0.5, 1]), ValueError, "integer"),
        (lambda: fit_temperature([[np.nan, 1.0]], [0]), ValueError, "NaN"),
        (lambda: fit_temperature("abc", [0]), TypeError, "numeric"),
        (lambda: calibration_metrics(np.ones((2, 2)), [0, 1]), ValueError, "sum to 1"),
        (lambda: conformal_threshold(np.eye(3), [0, 1, 2], alpha=1.5), ValueError, "alpha"),
        (lambda: conformal_threshold(np.eye(3), [0, 1, 2], method="raps"), ValueError, "lac"),
        (lambda: conformal_threshold(np.eye(3), [0, 1, 2], alpha=0.1), ValueError, "too few"),
        (lambda: prediction_set(np.eye(3), 0.5), ValueError, "one image"),
        (lambda: prediction_set(np.ones(2) / 2, "0.5"), TypeError, "threshold"),
        (lambda: reliability_diagram({}, [0], "x.png"), ValueError, "non-empty"),
    ],
)
def test_bad_input_raises_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()
