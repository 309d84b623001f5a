"""train.py end to end on tiny SynthDerm: outputs, resume equivalence, DDP, start-up checks."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import train
from lesions.isic import CLASSES
from lesions.synth import generate

ROOT = Path(__file__).resolve().parent.parent
N_IMAGES = 64


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("synth"), N_IMAGES, seed=0, image_size=64)


def _config(data_dir: Path, out: Path, **overrides) -> train.TrainConfig:
    args = {
        "data_dir": str(data_dir),
        "output_dir": str(out),
        "model_name": "resnet18",
        "pretrained": False,
        "image_size": 64,
        "epochs": 2,
        "batch_size": 16,
        "num_workers": 0,
        "use_cache": False,
        "checkpointing_steps": 2,
        "checkpoints_total_limit": 10,
        "explain_max_images": 0,  # explain.evaluate has its own tests
    }
    return train.TrainConfig(**(args | overrides))


@pytest.fixture(scope="module")
def trained(synth_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    metrics = train.main(_config(synth_dir, out))
    return out, metrics


def test_two_epoch_run_writes_every_output(trained):
    out, metrics = trained
    for name in (
        "config.json",
        "model.safetensors",
        "calibration.json",
        "metrics.json",
        "train_config.json",
        "README.md",
        "reliability_diagram.png",
        "confusion_matrix.png",
    ):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.bin")) and not list(out.glob("*.pt"))
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert len(metrics["history"]) == 2
    assert metrics["synthetic_data"]["generator"] == "SynthDerm"
    assert "Trained on synthetic lesions" in (out / "README.md").read_text()
    validation = metrics["validation"]
    assert set(validation["per_class"]) == set(CLASSES)
    assert np.asarray(validation["confusion_matrix"]).sum() == validation["n"]
    assert validation["n"] + metrics["n_train"] == N_IMAGES
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "nll", "ece", "roc_auc_ovr_macro"):
        assert validation[key] is not None
    calibration = json.loads((out / "calibration.json").read_text())
    assert calibration["temperature"] > 0
    assert calibration == json.loads(json.dumps(metrics["calibration"]))
    saved = json.loads((out / "train_config.json").read_text())
    assert saved["model_name"] == "resnet18" and saved["epochs"] == 2
    assert (out / "checkpoints" / "best" / "model.safetensors").is_file()


def test_output_loads_with_pipeline_and_is_calibrated(trained):
    from PIL import Image
    from transformers import pipeline

    from hf_model.loading import load_model

    out, _ = trained
    classifier = pipeline("image-classification", model=str(out))
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (70, 70, 3), dtype=np.uint8))
    scores = {r["label"]: r["score"] for r in classifier(image, top_k=9)}
    loaded = load_model(out)
    pixels = classifier.image_processor(image, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        probs = loaded.model(pixels).softmax(-1)[0]
    for i, label in enumerate(CLASSES):
        assert scores[label] == pytest.approx(probs[i].item(), abs=1e-5)


def test_card_eval_results_equal_metrics_json(trained):
    from huggingface_hub import ModelCard

    from hf_model.card import card_metric_values

    out, _ = trained
    metrics = json.loads((out / "metrics.json").read_text())
    card = ModelCard.load(out / "README.md")
    reported = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert reported == card_metric_values(metrics)
    assert card.data.license == "cc-by-nc-4.0"
    assert "Not a medical device" in card.text


def test_resume_mid_epoch_equals_uninterrupted_run(trained, synth_dir, tmp_path):
    """A run killed after step 6 (mid-epoch 2) and resumed from that checkpoint ends identical.

    The uninterrupted run saved the same checkpoint a killed run would have (training is
    deterministic on CPU), so resuming from it in a fresh output folder reproduces the kill.
    """
    out, metrics = trained
    steps_per_epoch = -(-metrics["n_train"] // 16)
    assert 6 % steps_per_epoch != 0, "step 6 must fall inside an epoch"
    checkpoint = out / "checkpoints" / "step_00000006"
    assert checkpoint.is_dir()
    torch.manual_seed(1234)  # the resumed process starts from a different RNG state
    resumed = train.main(_config(synth_dir, tmp_path, resume_from_checkpoint=str(checkpoint)))
    expected = load_file(out / "model.safetensors")
    actual = load_file(tmp_path / "model.safetensors")
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    assert resumed["history"] == metrics["history"]
    assert resumed["calibration"]["temperature"] == metrics["calibration"]["temperature"]


def test_offline_pretrained_fails_at_startup_with_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = _config(tmp_path / "no-data-needed", tmp_path / "out", pretrained=True)
    cfg = dataclasses.replace(cfg, model_name="resnet18.a1_in1k")
    with pytest.raises(SystemExit) as info:
        train.main(cfg)
    message = str(info.value)
    assert "--no-pretrained" in message and "HF cache" in message
    assert not (tmp_path / "out" / "checkpoints").exists()


def test_explanation_table_on_validation_images(synth_dir, tmp_path):
    out = tmp_path / "out"
    cfg = _config(
        synth_dir,
        out,
        epochs=1,
        checkpointing_steps=None,
        explain_max_images=2,
        explain_layers="layer3,layer4",
    )
    train.main(cfg)
    report = json.loads((out / "explanations.json").read_text())
    assert report["n_images"] == 2
    assert {(r["method"], r["layer"]) for r in report["rows"]} >= {
        ("gradcam++", "layer3"),
        ("scorecam", "layer4"),
    }
    card = (out / "README.md").read_text()
    assert "| gradcam++ | layer3 |" in card and "No explanation evaluation" not in card


def test_unknown_explain_layer_fails_before_training(tmp_path):
    cfg = _config(tmp_path / "no-data-needed", tmp_path / "out", explain_max_images=2)
    with pytest.raises(ValueError, match="layer9"):
        train.main(dataclasses.replace(cfg, explain_layers="layer4,layer9"))


def test_push_to_hub_checks_access_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = _config(tmp_path, tmp_path / "out", push_to_hub=True, hub_model_id="me/dermxai")
    with pytest.raises(OSError, match="cannot push"):
        train.main(cfg)


def test_parse_args_defaults_are_the_studys():
    cfg = train.parse_args(["--data_dir", "d", "--output_dir", "o"])
    assert (cfg.image_size, cfg.lr, cfg.batch_size, cfg.seed) == (224, 1e-4, 64, 42)
    assert cfg.val_fraction == 0.2 and cfg.pretrained and cfg.model_name.startswith("resnet50")
    cfg = train.parse_args(
        [
            "--dataset",
            "me/isic",
            "--no-pretrained",
            "--class_weighting",
            "balanced",
            "--max_train_samples",
            "10",
            "--epochs",
            "3",
            "--export_dtype",
            "float16",
        ]
    )
    assert cfg.dataset == "me/isic" and not cfg.pretrained
    assert cfg.class_weighting == "balanced" and cfg.max_train_samples == 10 and cfg.epochs == 3
    assert cfg.export_dtype == "float16"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--data_dir", "d", "--dataset", "x/y"],
        ["--data_dir", "d", "--epochs", "0"],
        ["--data_dir", "d", "--class_weighting", "inverse"],
        ["--data_dir", "d", "--push_to_hub"],
        ["--data_dir", "d", "--lr", "abc"],
        ["--data_dir", "d", "--export_dtype", "int8"],
    ],
)
def test_parse_args_rejects_bad_flags(argv):
    with pytest.raises(SystemExit):
        train.parse_args(argv)


def test_balanced_class_weights_are_inverse_frequency():
    cfg = _config(Path("d"), Path("o"), class_weighting="balanced")
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    weights = train.loss_weights(cfg, labels)
    expected = [10 / (3 * 6), 10 / (3 * 3), 10 / (3 * 1)] + [1.0] * 6
    torch.testing.assert_close(weights, torch.tensor(expected, dtype=torch.float32))
    assert train.loss_weights(_config(Path("d"), Path("o")), labels) is None


def test_epoch_sampler_is_reproducible_and_weighted():
    sampler = train.EpochSampler(10, seed=3)
    sampler.set_epoch(1)
    first = list(sampler)
    assert first == list(sampler) and sorted(first) == list(range(10, 20))
    sampler.set_epoch(2)
    assert [i - 20 for i in sampler] != [i - 10 for i in first]
    weighted = train.EpochSampler(1000, seed=0, weights=np.r_[np.full(500, 1.0), np.full(500, 9.0)])
    draws = np.asarray(list(weighted))
    assert 0.85 < (draws >= 500).mean() < 0.95  # class-balanced draws favour the rare half


def test_classification_metrics_by_hand():
    logits = np.log(
        np.array(
            [
                [0.8, 0.1, 0.1] + [0] * 6,
                [0.2, 0.7, 0.1] + [0] * 6,
                [0.1, 0.2, 0.7] + [0] * 6,
                [0.6, 0.3, 0.1] + [0] * 6,
            ]
        )
        + 1e-12
    )
    labels = np.array([0, 1, 2, 1])
    m = train.classification_metrics(logits, labels)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["balanced_accuracy"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert m["per_class"]["NV"]["recall"] == pytest.approx(0.5)
    assert m["per_class"]["MEL"]["precision"] == pytest.approx(0.5)
    assert m["per_class"]["UNK"]["recall"] is None  # no UNK images: undefined, not zero
    assert m["confusion_matrix"][1][:3] == [1, 1, 0]


@pytest.mark.slow
def test_ddp_two_cpu_processes_evaluate_each_image_once(synth_dir, trained, tmp_path):
    _, single = trained
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        str(ROOT / "train.py"), "--data_dir", str(synth_dir), "--output_dir", str(tmp_path),
        "--model_name", "resnet18", "--no-pretrained", "--image_size", "64", "--epochs", "1",
        "--batch_size", "8", "--num_workers", "0", "--no-use_cache", "--explain_max_images", "0",
    ]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    n = single["validation"]["n"]  # 13 images: not divisible by 2 processes x batch 8
    assert metrics["validation"]["n"] == n
    assert np.asarray(metrics["validation"]["confusion_matrix"]).sum() == n
    assert [row["support"] for row in metrics["validation"]["per_class"].values()] == [
        row["support"] for row in single["validation"]["per_class"].values()
    ]


def test_throughput_benchmark_runs_a_few_cpu_steps(tmp_path):
    from bench.train_throughput import main as bench_main

    out = tmp_path / "bench.json"
    argv = ["--device", "cpu", "--model", "resnet18", "--input-size", "32", "--source-size", "96",
            "--images", "16", "--batch-study", "4", "--batch-ours", "8", "--num-workers", "0",
            "--steps", "2", "--json", str(out)]  # fmt: skip
    results = bench_main(argv)
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    for setup in ("study", "ours", "ours_compute_only", "ours_loader_only"):
        assert results[setup]["steps"] == 2 and results[setup]["images_per_s"] > 0
    assert results["ours"]["layout"] == "channels_last" and results["study"]["batch_size"] == 4
    assert results["ratio_ours_vs_study"] == pytest.approx(
        results["ours"]["images_per_s"] / results["study"]["images_per_s"]
    )
