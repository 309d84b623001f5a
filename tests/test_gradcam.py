"""Grad-CAM (Captum) against a hand computation on a tiny CNN and pytorch-grad-cam."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from pytorch_grad_cam import GradCAM as OracleGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from explain.gradcam import GradCAM


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(1, 2, kernel_size=1, bias=False)
        self.fc = nn.Linear(2, 2, bias=False)
        with torch.no_grad():
            self.features.weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
            self.fc.weight.copy_(torch.tensor([[2.0, 1.0], [0.0, 3.0]]))

    def forward(self, x):
        return self.fc(F.relu(self.features(x)).mean(dim=(2, 3)))


def test_hand_computed_map():
    model = TinyCNN().eval()
    x = torch.tensor([[[[1.0, -2.0], [3.0, 0.0]]]])
    result = GradCAM(model, "features")(x, target=0)
    # A = relu([x, -x]); d y0/d A_k = fc[0, k] / 4 for every pixel (before the ReLU of the layer
    # output the hook sees conv output, so the gradient includes relu'): take the conv output.
    acts = torch.cat([x, -x], dim=1)[0]
    relu_mask = (acts > 0).float()
    weights = (torch.tensor([2.0, 1.0]).view(2, 1, 1) / 4 * relu_mask).mean(dim=(1, 2))
    cam = torch.relu((weights.view(2, 1, 1) * acts).sum(0))
    cam = (cam - cam.min()) / (cam.max() - cam.min())
    torch.testing.assert_close(result.heatmaps[0], cam)
    assert result.targets.tolist() == [0]
    assert result.heatmaps.dtype == torch.float32


def test_matches_pytorch_grad_cam():
    torch.manual_seed(0)
    model = timm.create_model("resnet50", num_classes=9).eval()
    x = torch.randn(1, 3, 96, 96)
    ours = GradCAM(model, "layer4")(x)
    ref = OracleGradCAM(model, [model.layer4])(x, [ClassifierOutputTarget(int(ours.targets[0]))])
    rho = np.corrcoef(ours.heatmaps.numpy().ravel(), ref.ravel())[0, 1]
    assert rho >= 0.99
    assert ours.heatmaps.shape == (1, 96, 96)


def test_bf16_model_gives_float32_maps():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=9).eval()
    x = torch.randn(1, 3, 64, 64)
    fp32 = GradCAM(model, "layer3")(x).heatmaps
    model_bf16 = timm.create_model("resnet18", num_classes=9).eval()
    model_bf16.load_state_dict(model.state_dict())
    model_bf16.to(torch.bfloat16)
    bf16 = GradCAM(model_bf16, "layer3")(x)
    assert bf16.heatmaps.dtype == torch.float32
    assert next(model_bf16.parameters()).dtype == torch.bfloat16
    assert np.corrcoef(bf16.heatmaps.numpy().ravel(), fp32.numpy().ravel())[0, 1] > 0.9


def test_unknown_layer():
    model = TinyCNN().eval()
    with pytest.raises(ValueError, match="unknown layer"):
        GradCAM(model, "layer4")
