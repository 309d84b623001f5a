"""Save a trained timm classifier in the Hub format that timm and transformers both load.

The folder written by :func:`save_pretrained` holds

* ``config.json``: timm's Hub config (``architecture``, ``num_classes``, ``num_features``,
  ``label_names``, ``model_args``, ``pretrained_cfg`` with *our* preprocessing), which
  transformers reads as a ``TimmWrapperConfig``;
* ``model.safetensors``: the weights (safetensors only, never pickle);
* ``calibration.json``: the temperature and conformal threshold (transformers drops unknown
  ``config.json`` keys, so they live beside it).

The temperature ``T`` is baked into the classifier (``fc.weight / T``, ``fc.bias / T``): every
loader (timm, ``transformers.pipeline``, the app) then returns calibrated probabilities.

Usage::

    from hf_model.export import save_pretrained
    save_pretrained(model, "out", labels=CLASSES, data_config=data_config,
                    calibration={"temperature": 1.7, "conformal": None})
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CALIBRATION_NAME = "calibration.json"

# Keys of the data config that describe preprocessing (timm's resolved data config).
DATA_CONFIG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
# pretrained_cfg fields that describe the *source* checkpoint (e.g. resnet50.a1_in1k), not ours.
_SOURCE_FIELDS = ("tag", "origin_url", "paper_ids", "paper_name", "notes", "license", "description")
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
EXPORT_DTYPES: tuple[str, ...] = tuple(_DTYPES)
"""Weight dtypes ``save_pretrained`` (and ``train.py --export_dtype``) can store."""


def _check_labels(labels: Sequence[str], num_classes: int) -> list[str]:
    if isinstance(labels, str) or not isinstance(labels, Sequence):
        raise TypeError(f"labels must be a sequence of class names, got {type(labels).__name__}")
    labels = list(labels)
    if not all(isinstance(label, str) and label for label in labels):
        raise TypeError("labels must be non-empty strings")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be unique, got {labels}")
    if len(labels) != num_classes:
        raise ValueError(f"got {len(labels)} labels for a classifier with {num_classes} outputs")
    return labels


def _check_data_config(data_config: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(data_config, Mapping):
        raise TypeError(f"data_config must be a mapping, got {type(data_config).__name__}")
    missing = [key for key in ("input_size", "mean", "std") if key not in data_config]
    if missing:
        raise ValueError(f"data_config lacks {missing}; pass timm's resolved data config")
    input_size = tuple(data_config["input_size"])
    if len(input_size) != 3 or not all(isinstance(v, int) and v > 0 for v in input_size):
        raise ValueError(f"data_config input_size must be (C, H, W) integers, got {input_size}")
    for key in ("mean", "std"):
        values = tuple(float(v) for v in data_config[key])
        if len(values) != input_size[0]:
            raise ValueError(f"data_config {key} needs {input_size[0]} values, got {values}")
        if key == "std" and min(values) <= 0:
            raise ValueError(f"data_config std must be positive, got {values}")
    return {key: data_config[key] for key in DATA_CONFIG_KEYS if key in data_config}


def check_temperature(temperature: Any) -> float:
    """Validate a softmax temperature.

    Args:
        temperature: The candidate temperature.

    Returns:
        The temperature as a float.

    Raises:
        TypeError: If it is not a real number.
        ValueError: If it is not finite and positive.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise TypeError(f"temperature must be a number, got {type(temperature).__name__}")
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be finite and > 0, got {temperature}")
    return float(temperature)


def bake_temperature(model: nn.Module, temperature: float) -> nn.Module:
    """Return a copy of ``model`` whose classifier logits are divided by ``temperature``.

    ``softmax(W x + b) / T == softmax((W / T) x + b / T)``, so dividing the weight and bias of the
    final linear layer makes the raw logits calibrated. The caller's model is left untouched.

    Args:
        model: A timm classifier whose ``get_classifier()`` is an ``nn.Linear``.
        temperature: The fitted temperature (> 0).

    Returns:
        A deep copy of the model with the temperature baked in.

    Raises:
        TypeError: If the classifier is not a linear layer.
    """
    temperature = check_temperature(temperature)
    baked = copy.deepcopy(model)
    head = baked.get_classifier() if hasattr(baked, "get_classifier") else None
    if not isinstance(head, nn.Linear):
        raise TypeError(f"cannot bake a temperature into a {type(head).__name__} classifier")
    with torch.no_grad():
        head.weight.div_(temperature)
        if head.bias is not None:
            head.bias.div_(temperature)
    return baked


def _check_calibration(calibration: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(calibration, Mapping):
        raise TypeError(f"calibration must be a mapping, got {type(calibration).__name__}")
    if "temperature" not in calibration:
        raise ValueError("calibration needs a 'temperature' entry")
    calibration = dict(calibration)
    calibration["temperature"] = check_temperature(calibration["temperature"])
    conformal = calibration.setdefault("conformal", None)
    required = {"method", "alpha", "threshold"}
    if conformal is not None and (
        not isinstance(conformal, Mapping) or not required <= set(conformal)
    ):
        raise ValueError(
            f"calibration['conformal'] must hold method, alpha and threshold, got {conformal}"
        )
    try:
        json.dumps(calibration, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"calibration is not JSON serializable: {err}") from err
    return calibration


def _clean_config(path: Path) -> None:
    """Make timm's ``config.json`` loadable by transformers and honest about its source.

    timm 1.0.31 ``save_for_hf`` records ``num_classes`` in ``model_args``; transformers 5.24 passes
    ``num_classes`` itself and then fails with "got multiple values for keyword argument
    'num_classes'". The class count stays at the top level and in ``pretrained_cfg``.
    """
    config = json.loads(path.read_text(encoding="utf-8"))
    model_args = config.get("model_args", {})
    model_args.pop("num_classes", None)
    if not model_args:
        config.pop("model_args", None)
    for key in _SOURCE_FIELDS:
        config["pretrained_cfg"].pop(key, None)
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def save_pretrained(
    model: nn.Module,
    out_dir: str | Path,
    *,
    labels: Sequence[str],
    data_config: Mapping[str, Any],
    calibration: Mapping[str, Any] | None = None,
    dtype: torch.dtype | str | None = None,
) -> Path:
    """Save a timm classifier as ``config.json`` + ``model.safetensors`` (+ ``calibration.json``).

    Uses ``timm.models.save_for_hf`` and then strips ``num_classes`` from ``model_args`` (see
    :func:`_clean_config`). With ``calibration`` the temperature is baked into the classifier.
    The caller's model is never modified.

    Args:
        model: A timm classification model (e.g. ``timm.create_model("resnet50", num_classes=9)``).
        out_dir: Folder to write; created if needed.
        labels: Class names in classifier order.
        data_config: timm's resolved data config (``input_size``, ``mean``, ``std``,
            ``crop_pct``, ``crop_mode``, ``interpolation``) used for training and evaluation.
        calibration: ``{"temperature": T, "conformal": {...} | None, "metrics_before": {...},
            "metrics_after": {...}}`` written to ``calibration.json``; ``None`` writes none.
        dtype: Weight dtype to store (``torch.float16``, ``"bfloat16"``, ...); ``None`` keeps the
            model's. Loaders cast back to float32.

    Returns:
        The output folder.

    Raises:
        TypeError: If the model is not a timm classifier or an argument has the wrong type.
        ValueError: If labels, data config, calibration or dtype are invalid.
    """
    if not isinstance(model, nn.Module) or not hasattr(model, "pretrained_cfg"):
        raise TypeError(f"model must be a timm model, got {type(model).__name__}")
    labels = _check_labels(labels, getattr(model, "num_classes", -1))
    data_config = _check_data_config(data_config)
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        dtype = _DTYPES[dtype]
    if dtype is not None and dtype not in _DTYPES.values():
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {dtype}")
    if calibration is not None:
        calibration = _check_calibration(calibration)
        model = bake_temperature(model, calibration["temperature"])
    else:
        model = copy.deepcopy(model)
    # safetensors needs contiguous tensors (a channels_last model has none)
    model = model.to(dtype=dtype, memory_format=torch.contiguous_format)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timm.models.save_for_hf(
        model,
        out_dir,
        model_config={"label_names": labels},
        safe_serialization=True,
        data_config=data_config,
    )
    _clean_config(out_dir / CONFIG_NAME)
    calibration_path = out_dir / CALIBRATION_NAME
    if calibration is not None:
        calibration_path.write_text(json.dumps(calibration, indent=2) + "\n", encoding="utf-8")
    else:
        calibration_path.unlink(missing_ok=True)
    return out_dir


def check_hub_access(repo_id: str, token: str | None = None) -> str:
    """Check at start-up that the Hub is reachable and the token may write ``repo_id``.

    Args:
        repo_id: ``owner/name`` of the model repo to push to.
        token: A Hugging Face token; ``None`` uses the stored login or ``HF_TOKEN``.

    Returns:
        The user name the token belongs to.

    Raises:
        ValueError: If ``repo_id`` is malformed.
        OSError: If the Hub is unreachable or no valid token is available.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.utils import validate_repo_id

    if not isinstance(repo_id, str) or not repo_id:
        raise ValueError("--hub_model_id is required with --push_to_hub (e.g. 'me/dermxai')")
    try:
        validate_repo_id(repo_id)
    except Exception as err:  # HFValidationError
        raise ValueError(f"invalid Hub repo id {repo_id!r}: {err}") from err
    try:
        user = HfApi(token=token).whoami()
    except Exception as err:
        raise OSError(
            f"cannot push to the Hugging Face Hub ({type(err).__name__}: {err}). Check the "
            "network (HF_HUB_OFFLINE must be unset) and log in with `hf auth login` or set "
            "HF_TOKEN."
        ) from err
    return user["name"]


def push_to_hub(
    out_dir: str | Path,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload DermXAI model",
) -> str:
    """Upload an exported folder with ``create_repo`` + ``upload_folder``.

    Args:
        out_dir: Folder written by :func:`save_pretrained` (plus card and plots).
        repo_id: Target model repo (``owner/name``).
        token: Hugging Face token; ``None`` uses the stored login.
        private: Create the repo as private.
        commit_message: Commit message on the Hub.

    Returns:
        The URL of the commit.

    Raises:
        FileNotFoundError: If ``out_dir`` lacks ``config.json`` or ``model.safetensors``.
    """
    from huggingface_hub import HfApi

    out_dir = Path(out_dir)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (out_dir / name).is_file():
            raise FileNotFoundError(f"{out_dir / name} is missing; run save_pretrained first")
    api = HfApi(token=token)
    repo_url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    commit = api.upload_folder(
        repo_id=repo_url.repo_id,
        folder_path=out_dir,
        commit_message=commit_message,
        ignore_patterns=["checkpoints/*", "runs/*", "*.pt", "*.bin", "*.pkl"],
    )
    return str(commit.commit_url)
