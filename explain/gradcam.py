"""Grad-CAM through Captum's ``LayerGradCam``.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", ICCV 2017: ``L^c = ReLU(sum_k alpha_k^c A^k)`` with
``alpha_k^c = 1/Z sum_ij d y^c / d A^k_ij`` (global-average-pooled gradients).
"""

from __future__ import annotations

from captum.attr import LayerGradCam
from torch import Tensor, nn

from explain.base import BaseCAM
from explain.capture import capture, resolve_targets


class GradCAM(BaseCAM):
    """Grad-CAM computed by Captum ``LayerGradCam`` with ``relu_attributions=True``.

    Captum hooks the layer it is given and keeps what it records on that module for the call, so
    it is not safe on a model shared by threads. Each call therefore hands Captum a fresh
    ``nn.Identity`` that only this call's forward pass runs (the capture routes the real layer's
    output through it); the caller's model receives no Captum hook.
    """

    name = "gradcam"

    def layer_map(
        self, x: Tensor, target: int | list[int] | Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Captum Grad-CAM map at the layer's resolution, logits and targets."""
        route = nn.Identity()
        seen: dict[str, Tensor] = {}
        with capture(self.model, self.layer, route=route) as cap:

            def target_logit(inp: Tensor) -> Tensor:
                logits = cap.forward(inp)
                seen["logits"] = logits
                seen["targets"] = resolve_targets(logits, target)
                return logits.gather(1, seen["targets"].view(-1, 1))[:, 0]

            attr = LayerGradCam(target_logit, route).attribute(x, relu_attributions=True)
        return attr[:, 0].float(), seen["logits"], seen["targets"]
