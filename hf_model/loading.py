"""Load an exported DermXAI model (local folder or Hub id) as a plain timm module.

Usage::

    from hf_model.loading import load_model
    loaded = load_model("hf_model/demo")          # or a Hub id such as "me/dermxai"
    probs = loaded.model(x).softmax(-1)            # calibrated: T is baked into fc
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from timm.data import resolve_data_config
from torch import nn

from hf_model.export import CALIBRATION_NAME, CONFIG_NAME, WEIGHTS_NAME

_HUB_FILES = [CONFIG_NAME, WEIGHTS_NAME, CALIBRATION_NAME, "README.md"]


@dataclass(frozen=True)
class LoadedModel:
    """A loaded model with everything needed to preprocess, predict and explain.

    Attributes:
        model: The timm classifier in eval mode, float32, on the requested device.
        labels: Class names in classifier order.
        data_config: timm's resolved data config (input_size, mean, std, crop_pct, ...).
        calibration: Content of ``calibration.json`` (``{}`` when absent).
        conformal: ``calibration["conformal"]`` (method, alpha, threshold) or ``None``.
        source: What the caller passed (folder or Hub id).
        path: The local folder the files were read from.
    """

    model: nn.Module
    labels: list[str]
    data_config: dict[str, Any]
    calibration: dict[str, Any] = field(default_factory=dict)
    conformal: dict[str, Any] | None = None
    source: str = ""
    path: Path = Path()


def _looks_like_repo_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~"))


def resolve_model_dir(path_or_id: str | Path) -> Path:
    """Return a local folder for a model folder or a Hub id (downloaded into the HF cache).

    Args:
        path_or_id: A local folder, a Hub id ``owner/name`` or ``hf-hub:owner/name``.

    Returns:
        The local folder holding ``config.json`` and ``model.safetensors``.

    Raises:
        TypeError: If ``path_or_id`` is not a string or path.
        FileNotFoundError: If a local path does not exist or lacks the model files.
        OSError: If a Hub id cannot be fetched (offline, unreachable or unknown repo).
    """
    if not isinstance(path_or_id, str | Path):
        raise TypeError(f"path_or_id must be a folder or Hub id, got {type(path_or_id).__name__}")
    text = str(path_or_id)
    if not text:
        raise ValueError("path_or_id is empty; pass a model folder or a Hub id")
    local = Path(text).expanduser()
    if not local.exists() and (text.startswith("hf-hub:") or _looks_like_repo_id(text)):
        repo_id = text.removeprefix("hf-hub:")
        from huggingface_hub import snapshot_download

        try:
            local = Path(snapshot_download(repo_id, allow_patterns=_HUB_FILES))
        except Exception as err:
            raise OSError(
                f"could not fetch {repo_id!r} from the Hugging Face Hub: the Hub is unreachable "
                f"or offline (HF_HUB_OFFLINE), or the repo does not exist "
                f"({type(err).__name__}: {err}). Pass a local folder holding {CONFIG_NAME} and "
                f"{WEIGHTS_NAME} instead, e.g. load_model('hf_model/demo')."
            ) from err
    if not local.is_dir():
        raise FileNotFoundError(f"model folder {local} does not exist (nor is it a Hub id)")
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        if not (local / name).is_file():
            raise FileNotFoundError(f"{local} lacks {name}; is it a folder from save_pretrained?")
    return local


def load_model(path_or_id: str | Path, *, device: str | torch.device = "cpu") -> LoadedModel:
    """Load an exported model with timm (``timm.create_model("local-dir:...")``).

    Args:
        path_or_id: A folder written by :func:`hf_model.export.save_pretrained` or a Hub id.
        device: Torch device to put the model on.

    Returns:
        The :class:`LoadedModel` (model in eval mode, float32).

    Raises:
        TypeError, ValueError: On a bad argument or an inconsistent config.
        FileNotFoundError: If the folder or its files are missing.
        OSError: If a Hub id cannot be fetched (the message says how to pass a folder instead).
    """
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"invalid device {device!r}: {err}") from err
    path = resolve_model_dir(path_or_id)
    config = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
    labels = config.get("label_names")
    num_classes = config.get("num_classes")
    if not isinstance(labels, list) or len(labels) != num_classes:
        raise ValueError(f"{path / CONFIG_NAME}: label_names must list num_classes={num_classes}")
    model = timm.create_model(f"local-dir:{path}", pretrained=True)
    model = model.float().eval().to(device)
    data_config = resolve_data_config(model=model)
    calibration_path = path / CALIBRATION_NAME
    calibration: dict[str, Any] = {}
    if calibration_path.is_file():
        calibration = json.loads(calibration_path.read_text(encoding="utf-8"))
    return LoadedModel(
        model=model,
        labels=[str(label) for label in labels],
        data_config=dict(data_config),
        calibration=calibration,
        conformal=calibration.get("conformal"),
        source=str(path_or_id),
        path=path,
    )
