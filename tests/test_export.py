"""Export and loading: timm Hub format that transformers' TimmWrapper loads, T baked in."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from hf_model import DEMO_DIR
from hf_model.export import bake_temperature, check_hub_access, push_to_hub, save_pretrained
from hf_model.loading import LoadedModel, load_model

LABELS = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
DATA_CONFIG = {
    "input_size": (3, 64, 64),
    "interpolation": "bicubic",
    "mean": (0.6, 0.5, 0.4),
    "std": (0.2, 0.25, 0.3),
    "crop_pct": 1.0,
    "crop_mode": "center",
}
TEMPERATURE = 1.7
CONFORMAL = {"method": "lac", "alpha": 0.1, "threshold": 0.8}


def _model(name: str = "resnet18") -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=len(LABELS)).eval()
    with torch.no_grad():  # a non-trivial head so that T visibly changes the scores
        model.get_classifier().weight.mul_(20)
    return model


@pytest.fixture(scope="module")
def resnet50_export(tmp_path_factory):
    model = _model("resnet50")
    out = tmp_path_factory.mktemp("r50")
    calibration = {"temperature": TEMPERATURE, "conformal": CONFORMAL, "metrics_before": {}}
    save_pretrained(model, out, labels=LABELS, data_config=DATA_CONFIG, calibration=calibration)
    return model, out


def _image(seed: int = 0, size: tuple[int, int] = (90, 80)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_export_writes_safetensors_and_clean_config(resnet50_export):
    _, out = resnet50_export
    assert sorted(p.name for p in out.iterdir()) == [
        "calibration.json",
        "config.json",
        "model.safetensors",
    ]
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "resnet50"
    assert config["num_classes"] == 9
    assert config["num_features"] == 2048
    assert config["label_names"] == LABELS
    assert "num_classes" not in config.get("model_args", {})
    cfg = config["pretrained_cfg"]
    assert cfg["input_size"] == [3, 64, 64]
    assert cfg["mean"] == list(DATA_CONFIG["mean"])
    assert cfg["std"] == list(DATA_CONFIG["std"])
    assert cfg["crop_pct"] == 1.0
    assert cfg["interpolation"] == "bicubic"
    assert "tag" not in cfg  # no claim to be the ImageNet source checkpoint
    calibration = json.loads((out / "calibration.json").read_text())
    assert calibration["temperature"] == TEMPERATURE
    assert calibration["conformal"] == CONFORMAL


def test_timm_save_for_hf_pitfall_is_stripped(tmp_path):
    """timm's own export writes model_args.num_classes, which transformers 5.24 rejects."""
    from transformers import AutoModelForImageClassification

    model = _model()
    timm.models.save_for_hf(
        model, tmp_path / "raw", model_config={"label_names": LABELS}, safe_serialization=True
    )
    raw = json.loads((tmp_path / "raw" / "config.json").read_text())
    assert raw["model_args"]["num_classes"] == 9
    with pytest.raises((TypeError, KeyError)):
        AutoModelForImageClassification.from_pretrained(tmp_path / "raw")

    save_pretrained(model, tmp_path / "ours", labels=LABELS, data_config=DATA_CONFIG)
    ours = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert "num_classes" not in ours.get("model_args", {})
    assert AutoModelForImageClassification.from_pretrained(tmp_path / "ours").num_labels == 9


def test_pipeline_scores_are_temperature_scaled_softmax(resnet50_export):
    from transformers import pipeline

    model, out = resnet50_export
    classifier = pipeline("image-classification", model=str(out))  # no trust_remote_code
    image = _image()
    results = classifier(image, top_k=len(LABELS))
    pixels = classifier.image_processor(image, return_tensors="pt")["pixel_values"]
    assert pixels.shape[-2:] == (64, 64)
    with torch.no_grad():
        expected = (model(pixels) / TEMPERATURE).softmax(-1)[0]
        uncalibrated = model(pixels).softmax(-1)[0]
    scores = {r["label"]: r["score"] for r in results}
    assert set(scores) == set(LABELS)
    for i, label in enumerate(LABELS):
        assert scores[label] == pytest.approx(expected[i].item(), abs=1e-5)
    assert (expected - uncalibrated).abs().max() > 1e-3  # T really changed the scores


def test_timm_and_transformers_logits_agree(resnet50_export):
    from transformers import AutoModelForImageClassification

    model, out = resnet50_export
    hf = AutoModelForImageClassification.from_pretrained(out).eval()
    native = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        hf_logits = hf(pixel_values=x).logits
        timm_logits = native(x)
        torch.testing.assert_close(hf_logits, timm_logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(timm_logits, model(x) / TEMPERATURE, atol=1e-5, rtol=1e-5)
    assert hf.config.id2label == dict(enumerate(LABELS))


def test_load_model_returns_calibrated_eval_model(resnet50_export):
    model, out = resnet50_export
    loaded = load_model(out)
    assert isinstance(loaded, LoadedModel)
    assert not loaded.model.training
    assert next(loaded.model.parameters()).dtype == torch.float32
    assert loaded.labels == LABELS
    assert loaded.data_config["input_size"] == (3, 64, 64)
    assert tuple(loaded.data_config["mean"]) == DATA_CONFIG["mean"]
    assert loaded.calibration["temperature"] == TEMPERATURE
    assert loaded.conformal == CONFORMAL
    assert loaded.path == out
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x) / TEMPERATURE, atol=1e-5, rtol=1e-5)
    with pytest.raises(AttributeError):
        loaded.labels = []  # frozen


def test_save_leaves_callers_model_untouched_and_bakes_copy():
    model = _model()
    before = model.fc.weight.clone()
    baked = bake_temperature(model, 2.0)
    assert torch.equal(model.fc.weight, before)
    torch.testing.assert_close(baked.fc.weight, before / 2.0)
    torch.testing.assert_close(baked.fc.bias, model.fc.bias / 2.0)


def test_half_precision_export_loads_as_float32(tmp_path):
    model = _model()
    save_pretrained(model, tmp_path, labels=LABELS, data_config=DATA_CONFIG, dtype="float16")
    loaded = load_model(tmp_path)
    assert next(loaded.model.parameters()).dtype == torch.float32
    assert loaded.calibration == {} and loaded.conformal is None
    assert not (tmp_path / "calibration.json").exists()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x), atol=0.05, rtol=0.01)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"labels": LABELS[:3]}, ValueError, "3 labels"),
        ({"labels": ["A"] * 9}, ValueError, "unique"),
        ({"labels": "MEL"}, TypeError, "sequence"),
        ({"data_config": {"mean": (0.5,) * 3}}, ValueError, "input_size"),
        ({"data_config": {**DATA_CONFIG, "std": (0, 1, 1)}}, ValueError, "positive"),
        ({"calibration": {"temperature": 0.0}}, ValueError, "temperature"),
        ({"calibration": {"temperature": "2"}}, TypeError, "temperature"),
        ({"calibration": {"conformal": None}}, ValueError, "temperature"),
        ({"calibration": {"temperature": 1.0, "conformal": {"alpha": 0.1}}}, ValueError, "thresh"),
        ({"dtype": "int8"}, ValueError, "dtype"),
    ],
)
def test_save_pretrained_rejects_bad_input(tmp_path, kwargs, error, match):
    args = {"labels": LABELS, "data_config": DATA_CONFIG, **kwargs}
    with pytest.raises(error, match=match):
        save_pretrained(_model(), tmp_path, **args)


def test_save_pretrained_rejects_non_timm_model(tmp_path):
    with pytest.raises(TypeError, match="timm model"):
        save_pretrained(torch.nn.Linear(2, 9), tmp_path, labels=LABELS, data_config=DATA_CONFIG)


def test_load_model_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing" / "deeper")
    with pytest.raises(FileNotFoundError, match=r"lacks config\.json"):
        load_model(tmp_path)
    with pytest.raises(TypeError):
        load_model(42)
    with pytest.raises(ValueError, match="device"):
        load_model(tmp_path, device="warp-drive")


def test_offline_hub_id_says_how_to_pass_a_folder(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="unreachable") as info:
        load_model("someone/dermxai-not-cached")
    assert "local folder" in str(info.value)


def test_push_checks_fail_fast_offline(tmp_path):
    with pytest.raises(ValueError, match="repo id"):
        check_hub_access("not a/valid/id")
    with pytest.raises(OSError, match="cannot push"):
        check_hub_access("someone/dermxai", token="hf_invalid")
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        push_to_hub(tmp_path, "someone/dermxai")


def test_demo_dir_points_inside_the_package():
    assert DEMO_DIR.name == "demo"
    assert DEMO_DIR.parent.name == "hf_model"
