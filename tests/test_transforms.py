"""Train/eval transforms: shapes, normalization from the data config, augmentations, errors."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config
from torchvision.transforms.v2 import functional as TF

from lesions.transforms import (
    JITTER,
    RandomRot90,
    TrainBatchTransform,
    eval_transform,
    train_transform,
)

CONFIG = {
    "input_size": (3, 64, 64),
    "interpolation": "bicubic",
    "mean": (0.5, 0.4, 0.3),
    "std": (0.2, 0.25, 0.3),
    "crop_pct": 0.875,
    "crop_mode": "center",
}


def _image(width=96, height=80) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_eval_matches_timm_for_a_real_model_config():
    model = timm.create_model("resnet18", pretrained=False, num_classes=9)
    config = resolve_data_config({}, model=model)
    img = _image(300, 260)
    ours = eval_transform(config)(img)
    assert ours.shape == (3, 224, 224) and ours.dtype == torch.float32
    assert torch.equal(ours, create_transform(**config, is_training=False)(img))


def test_eval_normalizes_with_the_configs_mean_and_std():
    out = eval_transform(CONFIG)(Image.new("RGB", (100, 70), (255, 102, 0)))
    expected = [(1.0 - 0.5) / 0.2, (0.4 - 0.4) / 0.25, (0.0 - 0.3) / 0.3]
    assert out.shape == (3, 64, 64)
    assert torch.allclose(out.mean(dim=(1, 2)), torch.tensor(expected), atol=1e-3)


def test_transforms_accept_non_rgb_inputs():
    gray = Image.new("L", (90, 90), 128)
    assert eval_transform(CONFIG)(gray).shape == (3, 64, 64)
    pixels, factors = train_transform(CONFIG)(np.zeros((50, 60, 3), np.uint8))
    assert pixels.shape == (3, 64, 64) and factors.shape == (4,)


def test_train_is_random_seeded_shaped_and_within_the_jitter_ranges():
    transform = train_transform(CONFIG)
    img = _image()
    torch.manual_seed(1)
    first, first_factors = transform(img)
    torch.manual_seed(1)
    again, again_factors = transform(img)
    other, _ = transform(img)
    assert first.shape == (3, 64, 64) and first.dtype == torch.uint8
    assert type(first) is torch.Tensor  # a plain tensor crosses process boundaries cheaply
    assert torch.equal(first, again) and torch.equal(first_factors, again_factors)
    assert not torch.equal(first, other)
    torch.manual_seed(0)
    factors = torch.stack([transform(img)[1] for _ in range(200)])
    spread = torch.tensor([JITTER[k] for k in ("brightness", "contrast", "saturation", "hue")])
    centre = torch.tensor([1.0, 1.0, 1.0, 0.0])
    assert ((factors - centre).abs() <= spread).all()
    assert ((factors - centre).abs().amax(dim=0) > 0.8 * spread).all()  # the ranges are used


def test_train_keeps_colour_statistics_close():
    # Mild jitter: a flat colour stays within a few percent after augmentation.
    transform, finish = train_transform(CONFIG), TrainBatchTransform(CONFIG)
    img = Image.new("RGB", (80, 80), (128, 128, 128))
    torch.manual_seed(0)
    pixels, factors = zip(*(transform(img) for _ in range(20)), strict=True)
    means = finish(torch.stack(pixels), torch.stack(factors)).mean(dim=(2, 3))
    expected = (128 / 255 - torch.tensor(CONFIG["mean"])) / torch.tensor(CONFIG["std"])
    assert (means - expected).abs().max() < 0.1 / 0.2


def _batch(n: int = 3) -> torch.Tensor:
    rng = np.random.default_rng(3)
    return torch.from_numpy(rng.integers(0, 256, (n, 3, 24, 32), dtype=np.uint8))


def _normalized(x: torch.Tensor) -> torch.Tensor:
    return TF.normalize(x, list(CONFIG["mean"]), list(CONFIG["std"]))


@pytest.mark.parametrize(
    ("index", "value", "reference"),
    [
        (None, None, lambda x, _: x),
        (0, 1.1, TF.adjust_brightness),
        (1, 0.9, TF.adjust_contrast),
        (2, 1.1, TF.adjust_saturation),
    ],
)
def test_batch_transform_matches_torchvision_per_operation(index, value, reference):
    images = _batch()
    factors = torch.tensor([[1.0, 1.0, 1.0, 0.0]]).repeat(3, 1)
    if index is not None:
        factors[:, index] = value
    got = TrainBatchTransform(CONFIG)(images, factors)
    want = _normalized(reference(images.float() / 255, value))
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("hue", [-JITTER["hue"], JITTER["hue"], 0.3])
def test_hue_shift_matches_torchvision(hue):
    images = _batch(8)
    factors = torch.tensor([[1.0, 1.0, 1.0, hue]]).repeat(8, 1)
    got = TrainBatchTransform(CONFIG)(images, factors)
    want = _normalized(TF.adjust_hue(images.float() / 255, hue))
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)


def test_batch_transform_applies_each_images_own_factors():
    images = _batch(4)
    factors = torch.tensor(
        [[1.1, 0.9, 1.05, 0.01], [0.9, 1.1, 0.95, -0.02], [1.0, 1.0, 1.0, 0.0], [1.05, 1, 1, 0]]
    )
    finish = TrainBatchTransform(CONFIG)
    together = finish(images, factors)
    alone = torch.cat([finish(images[i : i + 1], factors[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(together, alone)


def test_batch_transform_rejects_bad_batches():
    finish = TrainBatchTransform(CONFIG)
    with pytest.raises(ValueError, match="uint8 batch"):
        finish(_batch().float(), torch.ones(3, 4))
    with pytest.raises(ValueError, match=r"factors of shape \(3, 4\)"):
        finish(_batch(), torch.ones(3, 3))


def test_random_rot90_covers_all_four_rotations_exactly():
    x = torch.arange(9.0).reshape(1, 3, 3)
    rotations = {tuple(torch.rot90(x, k, dims=(-2, -1)).flatten().tolist()) for k in range(4)}
    torch.manual_seed(0)
    seen = {tuple(RandomRot90()(x).flatten().tolist()) for _ in range(40)}
    assert seen == rotations


def test_non_square_inputs_skip_rot90():
    config = {**CONFIG, "input_size": (3, 48, 64)}
    assert train_transform(config)(_image())[0].shape == (3, 48, 64)


@pytest.mark.parametrize(
    ("config", "error", "message"),
    [
        ({"mean": (0, 0, 0), "std": (1, 1, 1)}, ValueError, "input_size"),
        ({**CONFIG, "input_size": (64, 64)}, ValueError, r"\(3, H, W\)"),
        ({**CONFIG, "mean": (0.5,)}, ValueError, "mean"),
        ([("input_size", (3, 8, 8))], TypeError, "data config"),
    ],
)
def test_bad_configs(config, error, message):
    for make in (train_transform, eval_transform, TrainBatchTransform):
        with pytest.raises(error, match=message):
            make(config)
