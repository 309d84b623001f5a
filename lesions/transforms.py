"""Train and eval transforms.

``eval_transform``: PIL image -> normalized float tensor (C, H, W). Training is split in two so
that DataLoader workers only decode, crop and flip: ``train_transform`` turns an image into a
uint8 tensor plus its drawn colour-jitter factors (a quarter of the bytes of a float tensor to pass
between processes), and ``TrainBatchTransform``, on the training device, jitters and normalizes
whole batches.

Both take timm's resolved data config (``timm.data.resolve_data_config``, or the
``LoadedModel.data_config`` of a saved model): ``input_size``, ``mean``, ``std`` and, for eval,
``crop_pct``, ``crop_mode``, ``interpolation``. Inputs that are not RGB PIL images go through
``lesions.preprocess.load_image`` first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import kornia
import torch
from PIL import Image
from timm.data import create_transform
from timm.data.transforms import str_to_interp_mode
from torchvision.transforms import v2

from lesions.preprocess import load_image

REQUIRED_KEYS = ("input_size", "mean", "std")


class EnsureRGB:
    """Passes RGB PIL images through; loads anything else with ``load_image``."""

    def __call__(self, image: Any) -> Image.Image:
        if isinstance(image, Image.Image) and image.mode == "RGB":
            return image
        return load_image(image)

    def __repr__(self) -> str:
        return "EnsureRGB()"


class RandomRot90(torch.nn.Module):
    """Rotates a (..., H, W) tensor by k * 90° with k uniform in {0, 1, 2, 3}.

    Dermoscopy has no canonical orientation, so the four right-angle rotations (with the flips)
    are label-preserving and exact (no interpolation).
    """

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        k = int(torch.randint(4, ()).item())
        return torch.rot90(image, k, dims=(-2, -1))


def _validated(data_config: Mapping[str, Any]) -> tuple[int, int]:
    if not isinstance(data_config, Mapping):
        raise TypeError(
            f"data_config must be timm's resolved data config, got {type(data_config).__name__}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in data_config]
    if missing:
        raise ValueError(f"data_config lacks {missing} (has {sorted(data_config)})")
    size = tuple(data_config["input_size"])
    if len(size) != 3 or size[0] != 3 or min(size[1:]) < 1:
        raise ValueError(f"data_config input_size must be (3, H, W), got {size}")
    for key in ("mean", "std"):
        if len(tuple(data_config[key])) != 3:
            raise ValueError(f"data_config {key} must have 3 values, got {data_config[key]}")
    return int(size[1]), int(size[2])


JITTER = {"brightness": 0.1, "contrast": 0.1, "saturation": 0.1, "hue": 0.02}
"""Colour-jitter strengths: factors 1 +- 0.1, hue shift +- 0.02 of the colour circle."""

_GRAY = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


class TrainTransform:
    """Per-image training augmentation, run in DataLoader workers.

    Random resized crop to ``input_size`` (area ``scale``, aspect 3/4-4/3), horizontal and
    vertical flips and a random multiple of 90° rotation (square inputs), on uint8 pixels, plus
    the image's colour-jitter factors ``(brightness, contrast, saturation, hue)`` drawn uniformly
    within :data:`JITTER`. :class:`TrainBatchTransform` applies them. Randomness follows
    ``torch.manual_seed``.
    """

    def __init__(self, data_config: Mapping[str, Any], scale: tuple[float, float]) -> None:
        height, width = _validated(data_config)
        interpolation = str_to_interp_mode(data_config.get("interpolation", "bicubic"))
        self.geometry = v2.Compose(
            [
                EnsureRGB(),
                v2.ToImage(),
                v2.RandomResizedCrop((height, width), scale=scale, interpolation=interpolation),
                v2.RandomHorizontalFlip(),
                v2.RandomVerticalFlip(),
                RandomRot90() if height == width else v2.Identity(),
            ]
        )
        spread = torch.tensor([JITTER[k] for k in ("brightness", "contrast", "saturation", "hue")])
        self.low = torch.tensor([1.0, 1.0, 1.0, 0.0]) - spread
        self.high = torch.tensor([1.0, 1.0, 1.0, 0.0]) + spread

    def __call__(self, image: Any) -> tuple[torch.Tensor, torch.Tensor]:
        pixels = self.geometry(image).as_subclass(torch.Tensor)
        factors = self.low + (self.high - self.low) * torch.rand(4)
        return pixels, factors


def train_transform(
    data_config: Mapping[str, Any], *, scale: tuple[float, float] = (0.35, 1.0)
) -> TrainTransform:
    """Training augmentation for dermoscopy, worker half (see :class:`TrainTransform`).

    Args:
        data_config: timm's resolved data config.
        scale: Area range of the random resized crop.

    Returns:
        A callable image -> ``(uint8 tensor (3, H, W), float32 factors (4,))``; batches of its
        outputs go through :class:`TrainBatchTransform` on the training device.

    Raises:
        TypeError, ValueError: If ``data_config`` is not a valid data config.
    """
    return TrainTransform(data_config, scale)


class TrainBatchTransform(torch.nn.Module):
    """Training augmentation, device half: colour jitter per image, then normalization.

    Takes a uint8 batch (B, 3, H, W) and its (B, 4) factors from :class:`TrainTransform` and
    returns float32 ``(x / 255 - mean) / std``. Brightness, contrast and saturation blend as
    torchvision's ``adjust_*`` functions do (scale; blend with the image's mean gray; blend with
    the per-pixel gray), each clamped to [0, 1]; the hue shift is kornia's per-image HSV rotation
    (``kornia.enhance.adjust_hue``), equal to torchvision's ``adjust_hue`` (tested). The order is
    fixed (brightness, contrast, saturation, hue) where torchvision's ``ColorJitter`` draws one.

    Args:
        data_config: timm's resolved data config (``mean`` and ``std`` are used).
    """

    def __init__(self, data_config: Mapping[str, Any]) -> None:
        super().__init__()
        _validated(data_config)
        self.register_buffer("mean", torch.tensor(data_config["mean"]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(data_config["std"]).view(1, 3, 1, 1))
        self.register_buffer("gray", torch.tensor(_GRAY).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"expected a uint8 batch (B, 3, H, W), got {images.dtype} {tuple(images.shape)}"
            )
        if factors.shape != (images.shape[0], 4):
            raise ValueError(
                f"expected factors of shape ({images.shape[0]}, 4), got {tuple(factors.shape)}"
            )
        x = images.float() / 255.0
        brightness, contrast, saturation, hue = factors.float().T.reshape(4, -1, 1, 1, 1)
        x = (x * brightness).clamp(0.0, 1.0)
        mean_gray = (x * self.gray).sum(dim=1, keepdim=True).mean(dim=(2, 3), keepdim=True)
        x = (contrast * x + (1 - contrast) * mean_gray).clamp(0.0, 1.0)
        gray = (x * self.gray).sum(dim=1, keepdim=True)
        x = (saturation * x + (1 - saturation) * gray).clamp(0.0, 1.0)
        x = kornia.enhance.adjust_hue(x, 2 * torch.pi * hue.view(-1))  # radians
        return (x - self.mean) / self.std


def eval_transform(data_config: Mapping[str, Any]) -> Callable[[Any], torch.Tensor]:
    """Deterministic eval preprocessing: timm's resize + centre crop (``crop_pct``) + normalize.

    Args:
        data_config: timm's resolved data config.

    Returns:
        A callable image -> float32 tensor (3, H, W), identical to timm's eval transform for
        RGB images.

    Raises:
        TypeError, ValueError: If ``data_config`` is not a valid data config.
    """
    _validated(data_config)
    keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    timm_eval = create_transform(
        **{k: data_config[k] for k in keys if k in data_config}, is_training=False
    )
    return v2.Compose([EnsureRGB(), timm_eval])
