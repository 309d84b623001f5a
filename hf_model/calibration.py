"""Confidence calibration: temperature scaling, calibration metrics, split-conformal sets.

* Temperature scaling (Guo et al., 2017, "On Calibration of Modern Neural Networks"): one
  scalar ``T`` fitted by LBFGS on the validation NLL; probabilities ``softmax(z / T)``.
* Metrics: expected and maximum calibration error over 15 equal-width confidence bins
  (``ECE = sum_b |B_b| / n * |acc(B_b) - conf(B_b)|``, ``MCE = max_b |acc(B_b) - conf(B_b)|``),
  NLL (``sklearn.metrics.log_loss``) and multi-class Brier score
  (``sklearn.metrics.brier_score_loss``).
* Split-conformal prediction sets (Angelopoulos & Bates, 2021, "A Gentle Introduction to
  Conformal Prediction"): with nonconformity scores ``s_i`` on ``n`` held-apart calibration
  images, ``q = quantile(s, ceil((n + 1)(1 - alpha)) / n)`` guarantees
  ``P(y in C(x)) >= 1 - alpha``. Scores: LAC ``s = 1 - p_y``; APS ``s = sum of p_k over the
  classes ranked at or above y``.

Usage::

    report = calibrate(val_logits, val_labels, alpha=0.1, method="lac")
    report["temperature"], report["conformal"]["threshold"], report["coverage"]
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import brier_score_loss, log_loss
from sklearn.model_selection import train_test_split

N_BINS = 15
CONFORMAL_METHODS = ("lac", "aps")


def _as_numpy(array: Any, name: str, ndim: int) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().float().numpy()
    try:
        array = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be numeric array-like: {err}") from err
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _check_pair(scores: Any, labels: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    scores = _as_numpy(scores, name, 2)
    labels_f = _as_numpy(labels, "labels", 1)
    if len(labels_f) != len(scores):
        raise ValueError(f"{name} has {len(scores)} rows but labels has {len(labels_f)}")
    labels_i = labels_f.astype(np.int64)
    if not np.array_equal(labels_i, labels_f) or labels_i.min() < 0:
        raise ValueError("labels must be non-negative integer class indices")
    if labels_i.max() >= scores.shape[1]:
        raise ValueError(f"label {labels_i.max()} out of range for {scores.shape[1]} classes")
    return scores, labels_i


def _check_probs(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    probs, labels = _check_pair(probs, labels, "probs")
    if probs.min() < 0 or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("probs must be non-negative rows that sum to 1 (apply softmax first)")
    return probs, labels


def softmax(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """Return ``softmax(logits / temperature)`` along the last axis, as float64 numpy."""
    logits = _as_numpy(logits, "logits", 2)
    return torch.from_numpy(logits / temperature).softmax(dim=1).numpy()


def fit_temperature(logits: Any, labels: Any, *, max_iter: int = 200) -> float:
    """Fit the softmax temperature that minimises the NLL of ``logits`` (LBFGS on ``log T``).

    Args:
        logits: ``(n, k)`` uncalibrated logits.
        labels: ``(n,)`` true class indices.
        max_iter: LBFGS iterations.

    Returns:
        ``T > 0``: ``T > 1`` softens over-confident logits, ``T < 1`` sharpens.

    Raises:
        TypeError, ValueError: On malformed inputs.
    """
    logits, labels = _check_pair(logits, labels, "logits")
    z = torch.from_numpy(logits)
    y = torch.from_numpy(labels)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def _bin_stats(probs: np.ndarray, labels: np.ndarray, n_bins: int):
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # right-closed bins (lo, hi]; a confidence of exactly 0 cannot happen for a softmax
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    acc_sum = np.bincount(index, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = acc_sum / count
        mean_conf = conf_sum / count
    return edges, count, accuracy, mean_conf


def calibration_metrics(probs: Any, labels: Any, *, n_bins: int = N_BINS) -> dict[str, float]:
    """Top-label ECE and MCE (equal-width bins), NLL, multi-class Brier score and accuracy.

    Args:
        probs: ``(n, k)`` probabilities (rows sum to 1).
        labels: ``(n,)`` true class indices.
        n_bins: Number of equal-width confidence bins.

    Returns:
        ``{"ece", "mce", "nll", "brier", "accuracy"}`` as floats.
    """
    probs, labels = _check_probs(probs, labels)
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins}")
    _, count, accuracy, confidence = _bin_stats(probs, labels, n_bins)
    used = count > 0
    gaps = np.abs(accuracy[used] - confidence[used])
    classes = np.arange(probs.shape[1])
    return {
        "ece": float((count[used] / len(labels) * gaps).sum()),
        "mce": float(gaps.max()),
        "nll": float(log_loss(labels, probs, labels=classes)),
        "brier": float(brier_score_loss(labels, probs, labels=classes, scale_by_half=False)),
        "accuracy": float((probs.argmax(axis=1) == labels).mean()),
    }


def reliability_diagram(
    curves: Mapping[str, Any],
    labels: Any,
    path: str | Path,
    *,
    n_bins: int = N_BINS,
    title: str = "Reliability diagram",
) -> Path:
    """Plot accuracy against confidence per bin for one or more probability sets.

    Args:
        curves: ``{"before": probs, "after": probs_calibrated}`` (any names).
        labels: True class indices.
        path: PNG file to write.
        n_bins: Number of equal-width confidence bins.
        title: Figure title.

    Returns:
        The PNG path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not isinstance(curves, Mapping) or not curves:
        raise ValueError("curves must be a non-empty mapping of name -> probabilities")
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    for name, probs in curves.items():
        probs, y = _check_probs(probs, labels)
        _, count, accuracy, confidence = _bin_stats(probs, y, n_bins)
        used = count > 0
        ece = calibration_metrics(probs, y, n_bins=n_bins)["ece"]
        ax.plot(confidence[used], accuracy[used], marker="o", label=f"{name} (ECE {ece:.3f})")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy", title=title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _check_method(method: str) -> str:
    if method not in CONFORMAL_METHODS:
        raise ValueError(f"conformal method must be one of {CONFORMAL_METHODS}, got {method!r}")
    return method


def _aps_scores(probs: np.ndarray) -> np.ndarray:
    """APS score of every class: the probability mass of the classes ranked at or above it."""
    order = np.argsort(-probs, axis=1, kind="stable")
    cumulative = np.take_along_axis(probs, order, axis=1).cumsum(axis=1)
    scores = np.empty_like(probs)
    np.put_along_axis(scores, order, cumulative, axis=1)
    return scores


def _class_scores(probs: np.ndarray, method: str) -> np.ndarray:
    return 1.0 - probs if method == "lac" else _aps_scores(probs)


def conformal_threshold(
    probs: Any, labels: Any, *, alpha: float = 0.1, method: str = "lac"
) -> float:
    """Split-conformal threshold ``q`` on the nonconformity score of the true class.

    Args:
        probs: ``(n, k)`` calibrated probabilities of the held-apart calibration images.
        labels: ``(n,)`` true class indices.
        alpha: Miscoverage level: sets contain the true class with probability ``>= 1 - alpha``.
        method: ``"lac"`` (score ``1 - p_y``) or ``"aps"`` (cumulative mass down to ``y``).

    Returns:
        The threshold ``q``; pass it to :func:`prediction_set`.

    Raises:
        ValueError: If ``alpha`` is outside (0, 1), the method is unknown, or there are too
            few calibration images for this ``alpha`` (need ``n >= 1 / alpha - 1``).
    """
    probs, labels = _check_probs(probs, labels)
    method = _check_method(method)
    if not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    n = len(labels)
    rank = math.ceil(round((n + 1) * (1 - alpha), 9))  # round: 10 * 0.9 must give 9, not 10
    if rank > n:
        raise ValueError(f"{n} calibration images are too few for alpha={alpha}")
    scores = _class_scores(probs, method)[np.arange(n), labels]
    return float(np.sort(scores)[rank - 1])


def prediction_set(probs: Any, threshold: float, *, method: str = "lac") -> list[int]:
    """Classes whose nonconformity score is at most ``threshold`` (never empty).

    An empty set is replaced by the top class; this only enlarges sets, so coverage keeps its
    guarantee.

    Args:
        probs: ``(k,)`` calibrated probabilities of one image (or ``(1, k)``).
        threshold: The value returned by :func:`conformal_threshold`.
        method: The method the threshold was fitted with.

    Returns:
        Class indices sorted by decreasing probability.
    """
    if isinstance(probs, torch.Tensor):
        probs = probs.detach().cpu().float().numpy()
    probs = np.atleast_2d(np.asarray(probs))
    if probs.ndim != 2 or probs.shape[0] != 1:
        raise ValueError(f"prediction_set takes one image's probabilities, got {probs.shape}")
    return prediction_sets(probs, threshold, method=method)[0]


def prediction_sets(probs: Any, threshold: float, *, method: str = "lac") -> list[list[int]]:
    """Vectorised :func:`prediction_set` for ``(n, k)`` probabilities."""
    probs = _as_numpy(probs, "probs", 2)
    method = _check_method(method)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise TypeError(f"threshold must be a number, got {type(threshold).__name__}")
    member = _class_scores(probs, method) <= threshold
    member[np.arange(len(probs)), probs.argmax(axis=1)] = True
    order = np.argsort(-probs, axis=1, kind="stable")
    return [
        [int(k) for k in row_order if row_member[k]]
        for row_order, row_member in zip(order, member, strict=True)
    ]


def conformal_report(
    probs: Any, labels: Any, threshold: float, *, method: str = "lac"
) -> dict[str, float]:
    """Empirical coverage and mean set size of the prediction sets on labelled images."""
    probs, labels = _check_probs(probs, labels)
    sets = prediction_sets(probs, threshold, method=method)
    return {
        "coverage": float(np.mean([y in s for y, s in zip(labels, sets, strict=True)])),
        "mean_set_size": float(np.mean([len(s) for s in sets])),
        "n": len(labels),
    }


def calibrate(
    logits: Any,
    labels: Any,
    *,
    alpha: float = 0.1,
    method: str = "lac",
    calibration_fraction: float = 0.5,
    seed: int = 0,
    n_bins: int = N_BINS,
) -> dict[str, Any]:
    """Temperature scaling plus split-conformal sets, evaluated on held-apart images.

    Validation is split (stratified when every class has two images) into a calibration part,
    on which ``T`` and the conformal threshold are fitted, and the rest, on which the metrics
    before/after scaling, coverage and mean set size are reported.

    Args:
        logits: ``(n, k)`` validation logits of the trained (uncalibrated) model.
        labels: ``(n,)`` true class indices.
        alpha: Conformal miscoverage level.
        method: ``"lac"`` or ``"aps"``.
        calibration_fraction: Share of validation used for fitting.
        seed: Seed of the split.
        n_bins: ECE/MCE bins.

    Returns:
        The ``calibration.json`` content: ``temperature``, ``conformal`` (method, alpha,
        threshold, coverage, mean_set_size, n_calibration, n_test), ``metrics_before``,
        ``metrics_after`` (on the rest), or ``conformal: None`` when there are too few images.
    """
    logits, labels = _check_pair(logits, labels, "logits")
    if not 0 < calibration_fraction < 1:
        raise ValueError(f"calibration_fraction must lie in (0, 1), got {calibration_fraction}")
    if len(labels) < 4:
        raise ValueError(f"need at least 4 validation images to calibrate, got {len(labels)}")
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 2 else None
    try:
        fit_idx, test_idx = train_test_split(
            np.arange(len(labels)),
            train_size=calibration_fraction,
            random_state=seed,
            stratify=stratify,
        )
    except ValueError:  # too few images per class for a stratified split
        fit_idx, test_idx = train_test_split(
            np.arange(len(labels)), train_size=calibration_fraction, random_state=seed
        )
    temperature = fit_temperature(logits[fit_idx], labels[fit_idx])
    conformal = None
    probs_fit = softmax(logits[fit_idx], temperature)
    try:
        threshold = conformal_threshold(probs_fit, labels[fit_idx], alpha=alpha, method=method)
    except ValueError as err:
        if "too few" not in str(err):
            raise
    else:
        report = conformal_report(
            softmax(logits[test_idx], temperature), labels[test_idx], threshold, method=method
        )
        conformal = {
            "method": method,
            "alpha": float(alpha),
            "threshold": threshold,
            "coverage": report["coverage"],
            "mean_set_size": report["mean_set_size"],
            "n_calibration": len(fit_idx),
            "n_test": len(test_idx),
        }
    return {
        "temperature": temperature,
        "conformal": conformal,
        "metrics_before": calibration_metrics(
            softmax(logits[test_idx]), labels[test_idx], n_bins=n_bins
        ),
        "metrics_after": calibration_metrics(
            softmax(logits[test_idx], temperature), labels[test_idx], n_bins=n_bins
        ),
        "n_calibration": len(fit_idx),
        "n_test": len(test_idx),
    }
