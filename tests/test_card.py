"""Model card rendering: model-index round-trip, sections, clear errors."""

from __future__ import annotations

import pytest
from huggingface_hub import ModelCard

from hf_model.card import card_metric_values, render_model_card

CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")


def _metrics() -> dict:
    per_class = {
        name: {"precision": 0.5, "recall": 0.25 * (i % 4), "f1": 0.3, "roc_auc": 0.8, "support": i}
        for i, name in enumerate(CLASSES)
    }
    per_class["UNK"] |= {"recall": None, "roc_auc": None}
    calib = {"ece": 0.12, "mce": 0.3, "nll": 1.1, "brier": 0.6, "accuracy": 0.7}
    return {
        "dataset": "synthderm",
        "n_train": 160,
        "n_validation": 40,
        "best_epoch": 3,
        "validation": {
            "n": 40,
            "accuracy": 0.725,
            "balanced_accuracy": 0.6123456789,
            "macro_f1": 0.55,
            "roc_auc_ovr_macro": 0.81,
            "nll": 1.0,
            "ece": 0.1,
            "per_class": per_class,
            "confusion_matrix": [[0] * 9 for _ in range(9)],
        },
        "calibration": {
            "temperature": 1.83,
            "conformal": {
                "method": "lac",
                "alpha": 0.1,
                "threshold": 0.91,
                "coverage": 0.9,
                "mean_set_size": 2.4,
                "n_calibration": 20,
                "n_test": 20,
            },
            "metrics_before": calib,
            "metrics_after": calib | {"ece": 0.04},
            "n_calibration": 20,
            "n_test": 20,
        },
        "history": [],
    }


CONFIG = {"model_name": "resnet50.a1_in1k", "pretrained": True, "val_fraction": 0.2, "seed": 42}


def test_card_round_trips_eval_results(tmp_path):
    metrics = _metrics()
    render_model_card(tmp_path, metrics=metrics, config=CONFIG, model_id="me/dermxai")
    card = ModelCard.load(tmp_path / "README.md")
    reported = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert reported == card_metric_values(metrics)
    assert reported["balanced_accuracy"] == 0.6123456789
    assert reported["ece_after_scaling"] == 0.04
    assert {r.dataset_split for r in card.data.eval_results} == {"validation"}
    assert card.data.license == "cc-by-nc-4.0"
    assert card.data.base_model == "timm/resnet50.a1_in1k"


def test_card_sections(tmp_path):
    card = render_model_card(tmp_path, metrics=_metrics(), config=CONFIG, model_id="me/dermxai")
    text = card.text
    for needle in (
        'pipeline("image-classification", model="me/dermxai")',
        "| UNK | 0.500 | n/a |",
        "Temperature T = 1.8300",
        "covered the\ntrue class 90.0%",
        "Not a medical device",
        "Skin tone",
        "UNK is never seen in training",
        "reliability_diagram.png",
        "confusion_matrix.png",
        "No explanation evaluation",
        "| `model_name` | `resnet50.a1_in1k` |",
        "guo2017calibration",
        "# resnet50.a1_in1k fine-tuned for skin-lesion",
    ):
        assert needle in text, needle
    scratch = render_model_card(tmp_path, metrics=_metrics(), config=CONFIG | {"pretrained": False})
    assert "# resnet50.a1_in1k trained from random initialization for" in scratch.text


def test_card_includes_explanation_table(tmp_path):
    table = "| method | IoU |\n|---|---|\n| gradcam | 0.41 |"
    card = render_model_card(
        tmp_path, metrics=_metrics(), config=CONFIG, explanations_markdown=table
    )
    assert table in card.text
    assert "No explanation evaluation" not in card.text


def test_card_flags_synthetic_training_data(tmp_path):
    real = render_model_card(tmp_path / "real", metrics=_metrics(), config=CONFIG)
    assert "Trained on synthetic lesions" not in real.text
    metrics = _metrics() | {
        "synthetic_data": {"generator": "SynthDerm", "n": 2400, "seed": 7, "image_size": 256}
    }
    card = render_model_card(tmp_path / "synth", metrics=metrics, config=CONFIG)
    assert "Trained on synthetic lesions" in card.text
    assert "SynthDerm\n> (2400 generated images, seed 7" in card.text
    assert "predictions on real dermoscopic photos mean nothing" in card.text


def test_card_without_conformal_says_so(tmp_path):
    metrics = _metrics()
    metrics["calibration"]["conformal"] = None
    card = render_model_card(tmp_path, metrics=metrics, config=CONFIG | {"conformal_alpha": 0.1})
    assert "Not computed: too few validation images" in card.text


def test_card_rejects_incomplete_metrics(tmp_path):
    metrics = _metrics()
    del metrics["validation"]["balanced_accuracy"]
    with pytest.raises(ValueError, match=r"validation\.balanced_accuracy"):
        render_model_card(tmp_path, metrics=metrics, config=CONFIG)
    with pytest.raises(TypeError, match="mappings"):
        render_model_card(tmp_path, metrics=[], config=CONFIG)
