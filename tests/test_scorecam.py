"""Score-CAM exact against pytorch-grad-cam; fast mode close to exact."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import timm
import torch
from pytorch_grad_cam import ScoreCAM as OracleScoreCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from scipy.stats import spearmanr

from explain.scorecam import ScoreCAM
from explain.scorecam import _fused_for_inference as _fused


@pytest.fixture(scope="module")
def resnet50():
    torch.manual_seed(0)
    return timm.create_model("resnet50", num_classes=9).eval()


@pytest.mark.slow
def test_exact_matches_pytorch_grad_cam(resnet50):
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    ours = ScoreCAM(resnet50, "layer4", mode="exact", batch_size=64)(x)
    oracle = OracleScoreCAM(resnet50, [resnet50.layer4])
    oracle.batch_size = 64
    ref = oracle(x, [ClassifierOutputTarget(int(ours.targets[0]))])
    assert np.corrcoef(ours.heatmaps.numpy().ravel(), ref.ravel())[0, 1] >= 0.99


def test_exact_dedupes_identical_masks_without_changing_result():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=9).eval()
    x = torch.randn(1, 3, 48, 48)
    cam = ScoreCAM(model, "layer3", mode="exact", batch_size=32)
    maps = torch.rand(8, 3, 3)
    maps[4] = maps[1]
    maps[5] = 0.0
    maps[2] = 0.7  # constant -> all-zero mask, like maps[5]
    maps[6] = 2.5 * maps[0] + 0.3  # same mask as maps[0] after min-max scaling
    maps[7] = 0.0
    maps[7, 1, 2] = 4.0  # one active cell: a one-hot mask
    unique_masks = 5  # maps 0/6, 1/4, 2/5, 3, 7
    calls = []
    handle = model.conv1.register_forward_pre_hook(lambda _m, args: calls.append(len(args[0])))
    try:
        got = cam._channel_scores(x[0], maps, 2)
    finally:
        handle.remove()
    assert sum(calls) == unique_masks
    want = []
    for k in range(8):
        m = torch.nn.functional.interpolate(
            maps[k][None, None], size=(48, 48), mode="bilinear", align_corners=True
        )
        # a constant channel masks everything out (its upsampling may add float noise that
        # the division by max - min would blow up, so the reference sets it exactly)
        m = (
            torch.zeros_like(m)
            if maps[k].max() == maps[k].min()
            else (m - m.min()) / (m.max() - m.min() + 1e-8)
        )
        with torch.no_grad():
            want.append(model(x * m)[0, 2])
    torch.testing.assert_close(got, torch.stack(want), atol=1e-4, rtol=1e-4)


def _with_batchnorm_statistics(model):
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding them changes weights
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model


def test_exact_scores_on_a_folded_copy_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = _with_batchnorm_statistics(timm.create_model("resnet18", num_classes=9).eval())
    handle = model.layer2.register_forward_hook(lambda *_: None)  # someone else's hook
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modules = dict(model.named_modules())
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    cam = ScoreCAM(model, "layer4", mode="exact")
    result = cam(x)
    assert dict(model.named_modules()) == modules
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert not model.training and len(model.layer2._forward_hooks) == 1
    handle.remove()
    folded = _fused(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert not any(m._forward_hooks for m in folded.modules())
    assert not set(map(id, folded.parameters())) & set(map(id, model.parameters()))
    # the same scores through the unfolded model, up to float rounding
    with torch.no_grad():
        acts = model.forward_features(x)[0]
    target = int(result.targets[0])
    plain = cam._channel_scores(x[0], acts, target, scorer=model)
    torch.testing.assert_close(
        cam._channel_scores(x[0], acts, target, scorer=folded), plain, atol=1e-4, rtol=1e-4
    )


def test_a_fold_that_changes_the_function_is_not_used():
    class Misleading(torch.nn.Module):  # conv then bn in registration order, not in data flow
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(4)
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(torch.relu(self.bn(self.conv(x) + 1.0)).mean(dim=(2, 3)))

    torch.manual_seed(0)
    model = _with_batchnorm_statistics(Misleading()).eval()
    x = torch.rand(3, 16, 16)
    maps = torch.rand(5, 4, 4)
    cam = ScoreCAM(model, "bn", mode="exact")
    with torch.no_grad():
        assert not torch.allclose(_fused(model)(x[None]), model(x[None]), atol=1e-3)
    torch.testing.assert_close(
        cam._channel_scores(x, maps, 1, scorer=_fused(model)),
        cam._channel_scores(x, maps, 1, scorer=model),
    )


def test_folding_never_disturbs_other_threads():
    # torch.fx tracing would patch nn.Module.__call__ for every thread; our copy-and-fold must
    # leave forward passes and hook (de)registrations of other threads alone.
    torch.manual_seed(0)
    model = _with_batchnorm_statistics(timm.create_model("resnet18", num_classes=9).eval())
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = model(x)
    stop, errors = threading.Event(), []

    def other_thread() -> None:
        try:
            while not stop.is_set():
                handle = model.layer1.register_forward_hook(lambda *_: None)
                with torch.no_grad():
                    got = model(x)
                handle.remove()
                if not torch.equal(got, want):
                    errors.append("changed output")
        except Exception as error:  # reported below, with its type
            errors.append(repr(error))

    worker = threading.Thread(target=other_thread)
    worker.start()
    try:
        for _ in range(20):
            assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in _fused(model).modules())
    finally:
        stop.set()
        worker.join()
    assert errors == []


def test_fast_close_to_exact():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=9).eval()
    x = torch.randn(1, 3, 64, 64)
    exact = ScoreCAM(model, "layer4", mode="exact")(x)
    fast = ScoreCAM(model, "layer4")(x)
    assert fast.targets.tolist() == exact.targets.tolist()
    rho = spearmanr(fast.heatmaps.numpy().ravel(), exact.heatmaps.numpy().ravel()).statistic
    assert rho > 0.8
    assert fast.heatmaps.min() >= 0 and fast.heatmaps.max() <= 1


def test_bad_arguments():
    model = timm.create_model("resnet18", num_classes=9).eval()
    with pytest.raises(ValueError, match=r"fast.*exact"):
        ScoreCAM(model, mode="quick")
    with pytest.raises(ValueError, match="scale"):
        ScoreCAM(model, scale=0)
    with pytest.raises(ValueError, match="top_k"):
        ScoreCAM(model, top_k=0)
    with pytest.raises(ValueError, match="min_side"):
        ScoreCAM(model, min_side=0)


@pytest.mark.parametrize(
    ("side", "scale", "min_side", "expected"),
    [(256, 0.25, 112, 112), (256, 0.5, 112, 128), (64, 0.5, 112, 64), (200, 1.0, 112, 200)],
)
def test_fast_masked_pass_resolution(side, scale, min_side, expected):
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=9).eval()
    seen = []
    handle = model.conv1.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape))
    try:
        ScoreCAM(model, "layer4", scale=scale, min_side=min_side, top_k=2)(
            torch.randn(1, 3, side, side)
        )
    finally:
        handle.remove()
    assert seen[0][-2:] == (side, side)  # the forward pass that picks the channels
    assert {tuple(shape[-2:]) for shape in seen[1:]} == {(expected, expected)}
