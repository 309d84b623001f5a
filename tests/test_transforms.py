"""Train/eval transforms: shapes, normalization from the data config, augmentations, errors."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config

from lesions.transforms import RandomRot90, eval_transform, train_transform

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
    assert train_transform(CONFIG)(np.zeros((50, 60, 3), np.uint8)).shape == (3, 64, 64)


def test_train_is_random_seeded_and_shaped():
    transform = train_transform(CONFIG)
    img = _image()
    torch.manual_seed(1)
    first = transform(img)
    torch.manual_seed(1)
    again = transform(img)
    other = transform(img)
    assert first.shape == (3, 64, 64) and first.dtype == torch.float32
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_train_keeps_colour_statistics_close():
    # Mild jitter: a flat colour stays within a few percent after augmentation.
    transform = train_transform(CONFIG)
    img = Image.new("RGB", (80, 80), (128, 128, 128))
    torch.manual_seed(0)
    means = torch.stack([transform(img).mean(dim=(1, 2)) for _ in range(20)])
    expected = (128 / 255 - torch.tensor(CONFIG["mean"])) / torch.tensor(CONFIG["std"])
    assert (means - expected).abs().max() < 0.1 / 0.2


def test_random_rot90_covers_all_four_rotations_exactly():
    x = torch.arange(9.0).reshape(1, 3, 3)
    rotations = {tuple(torch.rot90(x, k, dims=(-2, -1)).flatten().tolist()) for k in range(4)}
    torch.manual_seed(0)
    seen = {tuple(RandomRot90()(x).flatten().tolist()) for _ in range(40)}
    assert seen == rotations


def test_non_square_inputs_skip_rot90():
    config = {**CONFIG, "input_size": (3, 48, 64)}
    assert train_transform(config)(_image()).shape == (3, 48, 64)


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
    for make in (train_transform, eval_transform):
        with pytest.raises(error, match=message):
            make(config)
