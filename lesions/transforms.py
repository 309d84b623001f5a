"""Train and eval transforms, PIL image -> normalized float tensor (C, H, W).

Both take timm's resolved data config (``timm.data.resolve_data_config``, or the
``LoadedModel.data_config`` of a saved model): ``input_size``, ``mean``, ``std`` and, for eval,
``crop_pct``, ``crop_mode``, ``interpolation``. Inputs that are not RGB PIL images go through
``lesions.preprocess.load_image`` first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

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


def train_transform(
    data_config: Mapping[str, Any], *, scale: tuple[float, float] = (0.35, 1.0)
) -> Callable[[Any], torch.Tensor]:
    """Training augmentation for dermoscopy.

    Random resized crop to ``input_size`` (area ``scale``, aspect 3/4-4/3), horizontal and
    vertical flips, a random multiple of 90° rotation, mild colour jitter (brightness, contrast,
    saturation 0.1, hue 0.02), then scaling to [0, 1] and normalization with the config's mean/std.

    Args:
        data_config: timm's resolved data config.
        scale: Area range of the random resized crop.

    Returns:
        A callable image -> float32 tensor (3, H, W); randomness follows ``torch.manual_seed``.

    Raises:
        TypeError, ValueError: If ``data_config`` is not a valid data config.
    """
    height, width = _validated(data_config)
    interpolation = str_to_interp_mode(data_config.get("interpolation", "bicubic"))
    return v2.Compose(
        [
            EnsureRGB(),
            v2.ToImage(),
            v2.RandomResizedCrop((height, width), scale=scale, interpolation=interpolation),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            RandomRot90() if height == width else v2.Identity(),
            v2.ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.02),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(data_config["mean"]), std=list(data_config["std"])),
        ]
    )


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
