"""Shared CAM pipeline: a method only says how to weight the layer's channels.

Split as in pytorch-grad-cam's ``base_cam.py``, without its shared state: an instance holds only
the model and the layer name, every call opens its own :func:`explain.capture.capture`, and all
CAM math runs in float32 whatever the model's dtype.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from captum.attr import LayerAttribution
from torch import Tensor, nn

from explain.capture import capture, prepare_input, resolve_layer, resolve_targets


@dataclass(frozen=True)
class CAMResult:
    """Output of one CAM call on a batch.

    Attributes:
        heatmaps: Float32 maps in [0, 1] at the input tensor's resolution, shaped (batch, H, W).
        logits: Float32 logits of the unmodified input, shaped (batch, classes).
        targets: The explained class per sample, shaped (batch,).
    """

    heatmaps: Tensor
    logits: Tensor
    targets: Tensor


def normalize_maps(cam: Tensor) -> Tensor:
    """Per-sample min-max scaling of (batch, h, w) maps to [0, 1]; constant maps become 0."""
    flat = cam.flatten(1)
    lo = flat.min(dim=1).values.view(-1, 1, 1)
    span = flat.max(dim=1).values.view(-1, 1, 1) - lo
    return torch.where(span > 0, (cam - lo) / span.clamp_min(1e-12), torch.zeros_like(cam))


class BaseCAM(ABC):
    """Class activation map at one layer: ``ReLU(sum_k w_k A_k)``, scaled to [0, 1], upsampled.

    Subclasses implement :meth:`layer_map`; gradient methods subclass :class:`GradientCAM`.
    Instances are immutable and safe to share between threads.

    Args:
        model: A classifier in eval mode returning logits (batch, classes). It is never modified.
        layer: Module path such as ``"layer4"`` or ``"layer3.5"``, or a submodule.
    """

    name: ClassVar[str]

    def __init__(self, model: nn.Module, layer: str | nn.Module = "layer4") -> None:
        resolve_layer(model, layer)
        self.model = model
        self.layer = layer

    def __call__(self, x: Tensor, target: int | list[int] | Tensor | None = None) -> CAMResult:
        """Explain a batch.

        Args:
            x: Preprocessed images (batch, channels, H, W); moved to the model's device/dtype.
            target: Class to explain per sample; defaults to the predicted class.

        Returns:
            A :class:`CAMResult` with heatmaps at (H, W).
        """
        x = prepare_input(self.model, x)
        cam, logits, targets = self.layer_map(x, target)
        cam = normalize_maps(torch.relu(cam.float()))
        heat = LayerAttribution.interpolate(cam[:, None], tuple(x.shape[-2:]), "bilinear")[:, 0]
        return CAMResult(heat.clamp(0.0, 1.0).detach(), logits.detach().float(), targets)

    @abstractmethod
    def layer_map(
        self, x: Tensor, target: int | list[int] | Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Unnormalized map (batch, h, w) at the layer's resolution, logits and targets."""


class GradientCAM(BaseCAM):
    """A CAM whose channel weights come from the target logit's gradients at the layer."""

    def layer_map(
        self, x: Tensor, target: int | list[int] | Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Weighted sum of the layer's activations, logits and targets."""
        with capture(self.model, self.layer) as cap:
            logits = cap.forward(x)
            targets = resolve_targets(logits, target)
            grads = cap.gradients(logits, targets).float()
            acts = cap.activations.detach().float()
        weights = self.channel_weights(acts, grads)
        return (weights[:, :, None, None] * acts).sum(dim=1), logits, targets

    @abstractmethod
    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """Weight per channel, shaped (batch, channels), from float32 (batch, K, h, w) tensors."""
