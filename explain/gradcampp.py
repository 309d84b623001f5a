"""Grad-CAM++ with the closed-form weights of the paper.

Chattopadhyay et al., "Grad-CAM++: Improved Visual Explanations for Deep Convolutional
Networks", WACV 2018. With the class score passed through the exponential, ``S^c = exp(Y^c)``,
the higher derivatives reduce to powers of the first one (eq. 19), ``g = d Y^c / d A``:

    alpha_ij^kc = g_ij^2 / (2 g_ij^2 + sum_ab A_ab^k g_ij^3)      (0 where g_ij = 0)
    w_k^c       = sum_ij alpha_ij^kc ReLU(g_ij)

(the common factor ``exp(Y^c)`` is dropped: maps are min-max normalized).
"""

from __future__ import annotations

import torch
from torch import Tensor

from explain.base import GradientCAM


class GradCAMPlusPlus(GradientCAM):
    """Grad-CAM++: pixel-wise weighted positive gradients (eq. 19 of the paper)."""

    name = "gradcam++"

    def channel_weights(self, activations: Tensor, gradients: Tensor) -> Tensor:
        """``w_k = sum_ij alpha_ij^k ReLU(g_ij)`` with the closed-form ``alpha``."""
        g2 = gradients.pow(2)
        g3 = g2 * gradients
        act_sum = activations.sum(dim=(2, 3), keepdim=True)
        denom = 2 * g2 + act_sum * g3
        alpha = torch.where(
            (gradients != 0) & (denom != 0), g2 / torch.where(denom != 0, denom, 1.0), 0.0
        )
        return (alpha * torch.relu(gradients)).sum(dim=(2, 3))
