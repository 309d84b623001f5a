"""Per-call capture: hooks removed, caller's model untouched, thread-safe."""

from __future__ import annotations

import threading

import pytest
import timm
import torch

from explain.capture import capture, resolve_layer, resolve_targets
from explain.gradcampp import GradCAMPlusPlus


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return timm.create_model("resnet18", num_classes=9).eval()


def test_resolve_layer_by_stage_and_path(model):
    assert resolve_layer(model, "layer4") is model.layer4
    assert resolve_layer(model, "layer3.1.conv2") is model.layer3[1].conv2
    assert resolve_layer(model, model.layer2) is model.layer2
    with pytest.raises(ValueError, match=r"layer1.*layer4"):
        resolve_layer(model, "layer9")
    with pytest.raises(TypeError):
        resolve_layer(model, 4)


def test_hooks_removed_and_model_unchanged(model):
    for p in model.parameters():
        p.requires_grad_(False)
    model.layer2.requires_grad_(True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    flags = [p.requires_grad for p in model.parameters()]
    x = torch.randn(2, 3, 64, 64)
    with capture(model, "layer4") as cap:
        logits = cap.forward(x)
        grads = cap.gradients(logits, resolve_targets(logits, None))
        assert model.layer4._forward_hooks
    assert grads.shape == cap_shape(model, x)
    assert not model.layer4._forward_hooks
    assert not model.training
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    model.requires_grad_(True)


def cap_shape(model, x):
    with torch.no_grad():
        return model.forward_features(x).shape


def test_hook_removed_on_error(model):
    with pytest.raises(RuntimeError, match="boom"), capture(model, "layer3"):
        raise RuntimeError("boom")
    assert not model.layer3._forward_hooks


def test_training_mode_refused(model):
    model.train()
    try:
        with pytest.raises(ValueError, match=r"model\.eval"), capture(model, "layer4"):
            pass
    finally:
        model.eval()


def test_targets_validated():
    logits = torch.tensor([[0.1, 2.0, 0.3]])
    assert resolve_targets(logits, None).tolist() == [1]
    assert resolve_targets(logits, 2).tolist() == [2]
    with pytest.raises(ValueError, match="target must be in"):
        resolve_targets(logits, 3)
    with pytest.raises(TypeError):
        resolve_targets(logits, "MEL")


def test_two_threads_get_their_own_results(model):
    """Two threads, different images, one model, started together: results equal serial ones."""
    torch.manual_seed(1)
    images = [torch.randn(1, 3, 64, 64), torch.randn(1, 3, 64, 64) * 2 + 1]
    cam = GradCAMPlusPlus(model, "layer3")
    serial = [cam(x).heatmaps for x in images]
    assert not torch.allclose(serial[0], serial[1])
    for _ in range(3):
        barrier = threading.Barrier(2)
        results: list = [None, None]
        errors: list = []

        def work(i: int, barrier=barrier, results=results, errors=errors) -> None:
            try:
                barrier.wait()
                for _ in range(4):
                    results[i] = cam(images[i]).heatmaps
            except Exception as err:  # pragma: no cover - reported below
                errors.append(err)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        for got, want in zip(results, serial, strict=True):
            torch.testing.assert_close(got, want)
