"""Explainer: any image in, maps at the input size, calibrated probabilities, thread-safe."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from explain import Explainer
from lesions.isic import CLASSES


@pytest.fixture(scope="module")
def explainer():
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=9).eval()
    cfg = timm.data.resolve_data_config({"input_size": (3, 64, 64)}, model=model)
    conformal = {"method": "lac", "alpha": 0.1, "threshold": 0.95}
    return Explainer(model, list(CLASSES), cfg, conformal=conformal)


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGBA", (90, 70), (200, 120, 90, 128)),
        Image.new("L", (33, 50), 77),
        Image.new("CMYK", (80, 80)),
        Image.new("P", (64, 40)),
        np.random.default_rng(0).integers(0, 65535, (40, 60), dtype=np.uint16),
        np.zeros((12, 9, 3), np.uint8),
    ],
)
def test_any_image_mode_gives_maps_at_input_size(explainer, image):
    ex = explainer.explain(image, methods=("gradcam", "gradcam++"), layer="layer3")
    h, w = (image.height, image.width) if isinstance(image, Image.Image) else image.shape[:2]
    for heat in ex.heatmaps.values():
        assert heat.shape == (h, w) and heat.dtype == np.float32
        assert heat.min() >= 0 and heat.max() <= 1
    assert ex.overlays["gradcam"].size == (w, h)
    assert sum(ex.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert ex.label == max(ex.probabilities, key=ex.probabilities.get)
    assert ex.prediction_set and ex.label in ex.prediction_set
    assert ex.text.startswith(f"Prediction: {ex.label}")


def test_crop_outside_is_zero_and_geometry(explainer):
    img = Image.new("RGB", (200, 100), (180, 140, 120))
    _, x, geometry = explainer.preprocess(img)
    assert tuple(x.shape) == (1, 3, 64, 64)
    # short side 100 -> floor(64 / 0.95) = 67; long side 134; crop 64 wide in the middle
    assert geometry.resized == (67, 134)
    heat = explainer.explain(img, methods="gradcam", layer="layer3").heatmaps["gradcam"]
    assert heat[:, :40].max() == 0 and heat[:, -40:].max() == 0


def test_predict_matches_softmax(explainer):
    img = Image.new("RGB", (64, 64), (100, 50, 40))
    probs = explainer.predict(img)
    _, x, _ = explainer.preprocess(img)
    with torch.no_grad():
        want = torch.softmax(explainer.model(x), 1)[0]
    assert list(probs.values()) == pytest.approx(want.tolist(), abs=1e-6)


def test_bad_arguments(explainer):
    img = Image.new("RGB", (64, 64))
    with pytest.raises(ValueError, match="gradcam"):
        explainer.explain(img, methods=("lime",))
    with pytest.raises(ValueError, match="layer4"):
        explainer.explain(img, layer="layer7")
    with pytest.raises(ValueError, match="unknown target"):
        explainer.explain(img, methods="gradcam", target="XYZ")
    with pytest.raises(ValueError):
        explainer.explain(b"not an image", methods="gradcam")


def test_threads_share_the_model(explainer):
    images = [Image.new("RGB", (64, 64), (200, 30, 30)), Image.new("RGB", (80, 64), (20, 90, 200))]
    serial = [explainer.explain(i, methods=("gradcam", "gradcam++")).heatmaps for i in images]
    barrier = threading.Barrier(2)
    out: list = [None, None]

    def work(i: int) -> None:
        barrier.wait()
        out[i] = explainer.explain(images[i], methods=("gradcam", "gradcam++")).heatmaps

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(out, serial, strict=True):
        for name in want:
            np.testing.assert_allclose(got[name], want[name], atol=1e-6)
