"""The Explainer: image in, calibrated prediction, heatmaps, overlays and text out.

Preprocessing is the model's own (timm ``create_transform`` from its data config). Heatmaps are
mapped back to the input image's exact (height, width) by undoing the resize and center crop;
pixels outside the crop, which the model never saw, get 0. The saved model's logits are already
temperature-scaled, so ``softmax(logits)`` is the calibrated probability.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from timm.data import create_transform
from torch import Tensor, nn
from torchvision import transforms as T

from explain.base import BaseCAM
from explain.capture import check_eval_mode, model_device_dtype, resolve_layer
from explain.gradcam import GradCAM
from explain.gradcampp import GradCAMPlusPlus
from explain.overlay import overlay
from explain.scorecam import MODES as SCORECAM_MODES
from explain.scorecam import ScoreCAM
from explain.text import describe
from hf_model.calibration import prediction_set as conformal_set
from lesions.preprocess import load_image

METHODS: dict[str, type[BaseCAM]] = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "scorecam": ScoreCAM,
}
METHOD_NAMES = tuple(METHODS)


def make_method(name: str, model: nn.Module, layer: str = "layer4", **kwargs: Any) -> BaseCAM:
    """Instantiate a CAM method by name ("gradcam", "gradcam++", "scorecam").

    Raises:
        ValueError: Unknown method (the message lists the valid ones) or layer.
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid methods are {list(METHOD_NAMES)}")
    return METHODS[name](model, layer, **kwargs)


@dataclass(frozen=True)
class CropGeometry:
    """Where the model input came from: resize to ``resized`` (h, w), then crop ``box``.

    Attributes:
        size: The input image's (height, width).
        resized: (height, width) after the resize.
        box: (top, left, height, width) of the crop in resized coordinates (may exceed it:
            torchvision pads).
    """

    size: tuple[int, int]
    resized: tuple[int, int]
    box: tuple[int, int, int, int]

    def to_input(self, heatmap: Tensor) -> np.ndarray:
        """Map a (crop_h, crop_w) heatmap back onto the input image; 0 outside the crop."""
        top, left, ch, cw = self.box
        rh, rw = self.resized
        canvas = torch.zeros(rh, rw, dtype=torch.float32)
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + ch, rh), min(left + cw, rw)
        canvas[y0:y1, x0:x1] = heatmap.float().cpu()[y0 - top : y1 - top, x0 - left : x1 - left]
        out = F.interpolate(canvas[None, None], size=self.size, mode="bilinear")[0, 0]
        return out.clamp(0, 1).numpy()


def _resize_size(size: Any, height: int, width: int) -> tuple[int, int]:
    if isinstance(size, int) or len(size) == 1:
        short = size if isinstance(size, int) else size[0]
        if height <= width:
            return short, int(short * width / height)
        return int(short * height / width), short
    return int(size[0]), int(size[1])


def crop_geometry(transform: T.Compose, height: int, width: int) -> CropGeometry:
    """Replay the geometric steps (Resize, CenterCrop) of a torchvision/timm eval transform.

    Raises:
        ValueError: If the transform has a geometric step other than Resize/CenterCrop.
    """
    h, w = height, width
    top = left = 0
    resized = (h, w)
    crop = None
    for step in transform.transforms:
        if isinstance(step, T.Resize):
            if crop is not None:
                raise ValueError("a Resize after CenterCrop is not supported")
            h, w = _resize_size(step.size, h, w)
            resized = (h, w)
        elif isinstance(step, T.CenterCrop):
            ch, cw = step.size
            top = round((h - ch) / 2.0) if h >= ch else -((ch - h) // 2)
            left = round((w - cw) / 2.0) if w >= cw else -((cw - w) // 2)
            crop = (top, left, ch, cw)
            h, w = ch, cw
        elif not any(key in type(step).__name__ for key in ("ToTensor", "Normalize")):
            raise ValueError(
                f"unsupported preprocessing step {type(step).__name__}; the explainer maps "
                "heatmaps back through Resize and CenterCrop only (crop_mode 'center' or 'squash')"
            )
    return CropGeometry((height, width), resized, crop or (0, 0, h, w))


@dataclass(frozen=True)
class Explanation:
    """An explained prediction.

    Attributes:
        label: Predicted class.
        probabilities: Calibrated probability per class, in label order.
        prediction_set: Conformal prediction set (labels), or None without a conformal threshold.
        heatmaps: Method name -> float32 (height, width) map in [0, 1] at the input's size.
        overlays: Method name -> RGB overlay at the input's size.
        text: Plain-language description (from the first method's map).
        target: The class the maps explain.
        layer: The explained layer.
        coverage: Nominal coverage of the prediction set (1 - alpha), or None.
    """

    label: str
    probabilities: dict[str, float]
    prediction_set: list[str] | None
    heatmaps: dict[str, np.ndarray]
    overlays: dict[str, Image.Image]
    text: str
    target: str = ""
    layer: str = "layer4"
    coverage: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no arrays or images)."""
        return {
            "label": self.label,
            "target": self.target,
            "layer": self.layer,
            "probabilities": self.probabilities,
            "prediction_set": self.prediction_set,
            "coverage": self.coverage,
            "methods": list(self.heatmaps),
            "text": self.text,
        }


@dataclass(frozen=True)
class Explainer:
    """Explain a classifier's predictions with Grad-CAM, Grad-CAM++ and Score-CAM.

    The explainer holds no per-call state, so one instance (and one model) can serve many threads.
    The model is used as given: it must be in eval mode and is never modified.

    Args:
        model: A timm classifier (any device, float32/bf16/fp16) in eval mode.
        labels: Class names in output order.
        data_config: timm resolved data config (input_size, mean, std, crop_pct, crop_mode,
            interpolation).
        conformal: ``{"method", "alpha", "threshold"}`` from calibration.json, or None.
        scorecam_mode: "fast" (default) or "exact".
    """

    model: nn.Module
    labels: list[str]
    data_config: dict[str, Any]
    conformal: dict[str, Any] | None = None
    scorecam_mode: str = "fast"
    transform: T.Compose = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(self.model).__name__}")
        labels = list(self.labels)
        if not labels or not all(isinstance(name, str) for name in labels):
            raise ValueError("labels must be a non-empty list of class names")
        num_classes = getattr(self.model, "num_classes", len(labels))
        if num_classes != len(labels):
            raise ValueError(f"{len(labels)} labels for a model with {num_classes} classes")
        missing = {"input_size", "mean", "std"} - set(self.data_config)
        if missing:
            raise ValueError(f"data_config lacks {sorted(missing)}")
        if self.conformal is not None and "threshold" not in self.conformal:
            raise ValueError("conformal must hold a 'threshold'")
        keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
        config = {k: self.data_config[k] for k in keys if k in self.data_config}
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "transform", create_transform(**config, is_training=False))
        crop_geometry(self.transform, 64, 64)
        if self.scorecam_mode not in SCORECAM_MODES:
            raise ValueError(
                f"unknown scorecam_mode {self.scorecam_mode!r}; valid: {list(SCORECAM_MODES)}"
            )

    @classmethod
    def from_pretrained(
        cls, path_or_id: str | Path, *, device: str | torch.device = "cpu", **kwargs: Any
    ) -> Explainer:
        """Load a saved model (folder or Hub id) with :func:`hf_model.loading.load_model`."""
        from hf_model.loading import load_model

        loaded = load_model(path_or_id, device=device)
        return cls(
            loaded.model, loaded.labels, loaded.data_config, conformal=loaded.conformal, **kwargs
        )

    def preprocess(self, image: Any) -> tuple[Image.Image, Tensor, CropGeometry]:
        """Load any image (path, bytes, PIL, numpy) as RGB and apply the model's transform.

        Returns:
            The RGB image, the (1, 3, h, w) model input and the crop geometry.
        """
        rgb = load_image(image)
        x = self.transform(rgb)[None]
        return rgb, x, crop_geometry(self.transform, rgb.height, rgb.width)

    def _probabilities(self, logits: Tensor) -> dict[str, float]:
        probs = torch.softmax(logits.float(), dim=-1)[0].cpu().tolist()
        return dict(zip(self.labels, probs, strict=True))

    def predict(self, image: Any) -> dict[str, float]:
        """Calibrated probability per class for one image."""
        check_eval_mode(self.model)
        _, x, _ = self.preprocess(image)
        device, dtype = model_device_dtype(self.model)
        with torch.inference_mode():
            logits = self.model(x.to(device=device, dtype=dtype))
        return self._probabilities(logits)

    def _target_index(self, target: str | int | None) -> int | None:
        if target is None:
            return None
        if isinstance(target, str):
            if target not in self.labels:
                raise ValueError(f"unknown target {target!r}; valid labels are {self.labels}")
            return self.labels.index(target)
        if isinstance(target, int) and not isinstance(target, bool):
            if not 0 <= target < len(self.labels):
                raise ValueError(f"target index must be in [0, {len(self.labels)})")
            return target
        raise TypeError(f"target must be a label, an index or None, got {type(target).__name__}")

    def explain(
        self,
        image: Any,
        methods: tuple[str, ...] | list[str] | str = METHOD_NAMES,
        layer: str = "layer4",
        target: str | int | None = None,
    ) -> Explanation:
        """Predict and explain one image.

        Args:
            image: Path, bytes, file object, PIL image or numpy array, any mode and size.
            methods: Method names among "gradcam", "gradcam++", "scorecam" (or one name).
            layer: "layer1".."layer4" or any module path.
            target: Class to explain (label or index); defaults to the prediction.

        Returns:
            An :class:`Explanation` with heatmaps at the input image's (height, width).

        Raises:
            ValueError: Unknown method or layer, no methods, or an unreadable image.
        """
        names = [methods] if isinstance(methods, str) else list(methods)
        if not names:
            raise ValueError(f"give at least one method among {list(METHOD_NAMES)}")
        cams = []
        for name in dict.fromkeys(names):
            kwargs = {"mode": self.scorecam_mode} if name == "scorecam" else {}
            cams.append(make_method(name, self.model, layer, **kwargs))
        resolve_layer(self.model, layer)
        index = self._target_index(target)
        rgb, x, geometry = self.preprocess(image)
        heatmaps: dict[str, np.ndarray] = {}
        logits = None
        for cam in cams:
            result = cam(x, index)
            logits = result.logits
            heatmaps[cam.name] = geometry.to_input(result.heatmaps[0])
        probabilities = self._probabilities(logits)
        label = max(probabilities, key=probabilities.__getitem__)
        pset = coverage = None
        if self.conformal is not None:
            probs = np.array([probabilities[name] for name in self.labels])
            method = self.conformal.get("method", "lac")
            pset = [
                self.labels[i]
                for i in conformal_set(probs, self.conformal["threshold"], method=method)
            ]
            if self.conformal.get("alpha") is not None:
                coverage = 1.0 - float(self.conformal["alpha"])
        first = next(iter(heatmaps.values()))
        text = describe(
            first,
            rgb,
            label=label,
            probabilities=probabilities,
            prediction_set=pset,
            coverage=coverage,
        )
        return Explanation(
            label=label,
            probabilities=probabilities,
            prediction_set=pset,
            heatmaps=heatmaps,
            overlays={name: overlay(rgb, heat) for name, heat in heatmaps.items()},
            text=text,
            target=self.labels[int(result.targets[0])],
            layer=layer,
            coverage=coverage,
        )
