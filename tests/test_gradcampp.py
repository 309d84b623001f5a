"""Grad-CAM++ against pytorch-grad-cam on a random-init ResNet-50."""

from __future__ import annotations

import numpy as np
import timm
import torch
from pytorch_grad_cam import GradCAMPlusPlus as OracleGradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from explain.gradcampp import GradCAMPlusPlus


def test_matches_pytorch_grad_cam():
    torch.manual_seed(0)
    model = timm.create_model("resnet50", num_classes=9).eval()
    x = torch.randn(2, 3, 96, 96)
    ours = GradCAMPlusPlus(model, "layer4")(x, target=[3, 5])
    targets = [ClassifierOutputTarget(3), ClassifierOutputTarget(5)]
    ref = OracleGradCAMPlusPlus(model, [model.layer4])(x, targets)
    for i in range(2):
        rho = np.corrcoef(ours.heatmaps[i].numpy().ravel(), ref[i].ravel())[0, 1]
        assert rho >= 0.99
    assert ours.targets.tolist() == [3, 5]


def test_closed_form_weights_by_hand():
    cam = GradCAMPlusPlus.__new__(GradCAMPlusPlus)
    acts = torch.tensor([[[[1.0, 3.0]]]])  # sum = 4
    grads = torch.tensor([[[[0.5, -1.0]]]])
    # alpha = g^2 / (2 g^2 + 4 g^3): 0.25 / (0.5 + 0.5) = 0.25 ; 1 / (2 - 4) = -0.5
    # w = 0.25 * relu(0.5) + (-0.5) * relu(-1) = 0.125
    torch.testing.assert_close(cam.channel_weights(acts, grads), torch.tensor([[0.125]]))
