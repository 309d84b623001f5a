"""Quantitative checks of saliency maps: localization, faithfulness and sanity.

* IoU with the lesion mask after a top-k% or Otsu threshold.
* Pointing game (Zhang et al. 2016): the maximum falls inside the mask, with a 15-px tolerance;
  energy-based variant (Wang et al. 2020): share of the map's mass inside the mask.
* Deletion / insertion curves and their AUC (Petsiuk et al., RISE, BMVC 2018).
* Average Drop and Increase in Confidence (Chattopadhyay et al., Grad-CAM++, 2018).
* Model-randomization sanity check (Adebayo et al., NeurIPS 2018): Spearman correlation of the
  maps before and after re-initializing ``layer4`` and ``fc``; a faithful method must drop.
* Attribution mass on artifact masks (rulers, ink, bubbles in SynthDerm).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage, stats
from torch import Tensor, nn

from explain.overlay import check_heatmap


def _pair(heatmap: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    heat = check_heatmap(heatmap)
    m = np.asarray(mask)
    if m.shape != heat.shape:
        raise ValueError(f"mask shape {m.shape} does not match heatmap shape {heat.shape}")
    return heat, m > 0 if m.dtype != bool else m


def otsu_threshold(heatmap: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the cut maximizing the between-class variance of the map's values."""
    heat = check_heatmap(heatmap)
    hist, edges = np.histogram(heat, bins=bins, range=(0.0, 1.0))
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers) / np.maximum(w0, 1)
    m1 = ((hist * centers).sum() - np.cumsum(hist * centers)) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def binarize(heatmap: np.ndarray, top_percent: float | None = None) -> np.ndarray:
    """Region of the top ``top_percent`` % pixels, or Otsu's region when None."""
    heat = check_heatmap(heatmap)
    if top_percent is None:
        return (
            heat >= otsu_threshold(heat) if heat.max() > heat.min() else np.zeros_like(heat, bool)
        )
    if not 0 < top_percent <= 100:
        raise ValueError(f"top_percent must lie in (0, 100], got {top_percent}")
    k = max(1, round(heat.size * top_percent / 100))
    order = np.argsort(-heat, axis=None, kind="stable")[:k]
    region = np.zeros(heat.size, dtype=bool)
    region[order] = True
    return region.reshape(heat.shape)


def iou(heatmap: np.ndarray, mask: np.ndarray, *, top_percent: float | None = None) -> float:
    """Intersection over union of the thresholded map and the mask (0 when both are empty)."""
    heat, m = _pair(heatmap, mask)
    region = binarize(heat, top_percent)
    union = (region | m).sum()
    return float((region & m).sum() / union) if union else 0.0


def pointing_game(heatmap: np.ndarray, mask: np.ndarray, *, tolerance: float = 15.0) -> bool:
    """Whether the map's maximum lies within ``tolerance`` pixels of the mask."""
    heat, m = _pair(heatmap, mask)
    if not m.any():
        raise ValueError("the mask is empty")
    distance = ndimage.distance_transform_edt(~m)
    peak = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return bool(distance[peak] <= tolerance)


def energy_pointing_game(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share of the map's total mass inside the mask (0 for an all-zero map)."""
    heat, m = _pair(heatmap, mask)
    total = heat.sum()
    return float(heat[m].sum() / total) if total > 0 else 0.0


def artifact_mass(heatmap: np.ndarray, artifact_mask: np.ndarray) -> float:
    """Share of the map's mass on artifact pixels (rulers, ink marks, bubbles)."""
    return energy_pointing_game(heatmap, artifact_mask)


def _probabilities(model: nn.Module, batch: Tensor, target: int, batch_size: int) -> np.ndarray:
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    out = []
    with torch.inference_mode():
        for start in range(0, batch.shape[0], batch_size):
            logits = model(batch[start : start + batch_size].to(device=device, dtype=dtype))
            out.append(torch.softmax(logits.float(), dim=1)[:, target].cpu())
    return torch.cat(out).numpy()


def _check_image(x: Tensor, heatmap: np.ndarray) -> np.ndarray:
    if not isinstance(x, Tensor) or x.ndim != 3:
        raise ValueError("x must be one preprocessed image tensor shaped (channels, H, W)")
    heat = check_heatmap(heatmap)
    if heat.shape != tuple(x.shape[-2:]):
        raise ValueError(f"heatmap shape {heat.shape} does not match the input {tuple(x.shape)}")
    return heat


def deletion_insertion(
    model: nn.Module,
    x: Tensor,
    heatmap: np.ndarray,
    target: int,
    *,
    steps: int = 20,
    batch_size: int = 16,
    blur_sigma: float = 5.0,
) -> dict[str, float | list[float]]:
    """Deletion and insertion curves (Petsiuk et al. 2018) and their AUCs.

    Pixels are ranked by the map. Deletion replaces the top fraction with 0 (the dataset mean after
    normalization) and tracks the target probability (lower AUC = more faithful); insertion starts
    from a blurred image and restores the top fraction (higher AUC = more faithful).

    Args:
        model: Classifier in eval mode.
        x: One preprocessed image (channels, H, W).
        heatmap: Map at (H, W).
        target: Class index.
        steps: Number of fractions after 0 (the curves have ``steps + 1`` points).
        batch_size: Images per forward pass.
        blur_sigma: Gaussian blur of the insertion start image, in pixels.

    Returns:
        ``{"fractions", "deletion", "insertion", "deletion_auc", "insertion_auc"}``.
    """
    heat = _check_image(x, heatmap)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    x = x.detach().float().cpu()
    order = torch.from_numpy(np.argsort(-heat, axis=None, kind="stable").copy())
    fractions = np.linspace(0.0, 1.0, steps + 1)
    n_pix = heat.size
    keep = torch.zeros(steps + 1, n_pix)
    for i, frac in enumerate(fractions):
        keep[i, order[: round(frac * n_pix)]] = 1.0
    keep = keep.view(steps + 1, 1, *heat.shape)
    radius = max(1, int(3 * blur_sigma))
    grid = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(grid**2) / (2 * blur_sigma**2))
    kernel = (kernel / kernel.sum()).view(1, 1, 1, -1).repeat(x.shape[0], 1, 1, 1)
    blurred = F.conv2d(
        F.pad(x[None], (radius, radius, 0, 0), mode="replicate"), kernel, groups=x.shape[0]
    )
    blurred = F.conv2d(
        F.pad(blurred, (0, 0, radius, radius), mode="replicate"),
        kernel.transpose(2, 3),
        groups=x.shape[0],
    )
    deletion = _probabilities(model, x[None] * (1 - keep), target, batch_size)
    insertion = _probabilities(model, blurred * (1 - keep) + x[None] * keep, target, batch_size)
    return {
        "fractions": fractions.tolist(),
        "deletion": deletion.tolist(),
        "insertion": insertion.tolist(),
        "deletion_auc": float(np.trapezoid(deletion, fractions)),
        "insertion_auc": float(np.trapezoid(insertion, fractions)),
    }


def average_drop_increase(
    model: nn.Module, x: Tensor, heatmap: np.ndarray, target: int
) -> tuple[float, bool]:
    """Average Drop term and Increase in Confidence for one image (Grad-CAM++ paper, sec. 6).

    With ``Y`` the target probability on the image and ``O`` on the image multiplied by the map:
    drop = ``max(0, Y - O) / Y * 100``; increase = ``O > Y``. Averaging over images gives the
    paper's Average Drop % and % Increase in Confidence.
    """
    heat = _check_image(x, heatmap)
    x = x.detach().float().cpu()
    masked = x * torch.from_numpy(heat)[None]
    y, o = _probabilities(model, torch.stack([x, masked]), target, 2)
    return float(max(0.0, y - o) / max(y, 1e-12) * 100), bool(o > y)


def randomize_layers(model: nn.Module, names: Sequence[str] = ("layer4", "fc"), seed: int = 0):
    """A deep copy of ``model`` with the named submodules re-initialized (the original is kept).

    Raises:
        ValueError: If a name is not a submodule.
    """
    clone = copy.deepcopy(model)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for name in names:
            try:
                root = clone.get_submodule(name)
            except AttributeError as err:
                raise ValueError(f"model has no submodule {name!r}") from err
            for module in root.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.reset_running_stats()
    finally:
        torch.random.set_rng_state(generator_state)
    return clone


def randomization_correlation(
    explain_fn: Callable[[nn.Module], np.ndarray],
    model: nn.Module,
    *,
    names: Sequence[str] = ("layer4", "fc"),
    seed: int = 0,
) -> float:
    """Spearman correlation between a map of ``model`` and of its randomized copy.

    Args:
        explain_fn: Model -> heatmap for a fixed image and target.
        model: The trained model (unchanged).
        names: Submodules to re-initialize (Adebayo et al.'s cascading test stops at these).
        seed: Seed of the re-initialization.

    Returns:
        Spearman rho; high values mean the map does not depend on the learned weights.
    """
    before = check_heatmap(explain_fn(model)).ravel()
    after = check_heatmap(explain_fn(randomize_layers(model, names, seed))).ravel()
    if before.std() == 0 or after.std() == 0:
        return 0.0
    return float(stats.spearmanr(before, after).statistic)


def bootstrap_ci(
    values: Sequence[float], *, confidence: float = 0.95, n_resamples: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap confidence interval of ``values``.

    Returns:
        (mean, low, high); low = high = mean for fewer than two values or constant values.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError("values must be a non-empty 1-D sequence")
    mean = float(arr.mean())
    if arr.size < 2 or np.all(arr == arr[0]):
        return mean, mean, mean
    res = stats.bootstrap(
        (arr,),
        np.mean,
        confidence_level=confidence,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return mean, float(res.confidence_interval.low), float(res.confidence_interval.high)
