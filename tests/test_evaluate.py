"""explain.evaluate and the batch CLI on a tiny saved model and a few SynthDerm images."""

from __future__ import annotations

import json

import pytest
import timm
import torch

from explain.__main__ import main as explain_main
from explain.evaluate import evaluate_explanations, main, to_markdown, validation_ids
from hf_model.export import save_pretrained
from lesions.isic import CLASSES, load_isic2019
from lesions.synth import generate


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = timm.create_model("resnet18", num_classes=9).eval()
    cfg = timm.data.resolve_data_config({"input_size": (3, 48, 48)}, model=model)
    return save_pretrained(
        model, tmp_path_factory.mktemp("m"), labels=list(CLASSES), data_config=cfg
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth"), 3, seed=1, image_size=64, artifacts=1.0)


def test_report_rows_and_markdown(model_dir, data_dir):
    report = evaluate_explanations(
        model_dir,
        data_dir,
        methods=("gradcam", "gradcam++"),
        sanity_images=1,
        steps=4,
        n_resamples=100,
    )
    assert report["n_images"] == 3
    names = [(r["method"], r["layer"]) for r in report["rows"]]
    assert names == [
        ("gradcam", "layer4"),
        ("gradcam++", "layer4"),
        ("random", "-"),
        ("center", "-"),
    ]
    for row in report["rows"]:
        cell = row["iou_otsu"]
        assert cell["low"] <= cell["mean"] <= cell["high"] and cell["n"] == 3
    assert report["rows"][0]["randomization_spearman"]["n"] == 1
    assert "randomization_spearman" not in report["rows"][2]
    table = to_markdown(report)
    assert "| gradcam++ | layer4 |" in table and "*baseline: center*" in table


def test_cli_writes_json(model_dir, data_dir, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(
        [
            "--model",
            str(model_dir),
            "--data_dir",
            str(data_dir),
            "--methods",
            "gradcam",
            "--max_images",
            "1",
            "--sanity_images",
            "0",
            "--split",
            "all",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert json.loads(out.read_text())["n_images"] == 1
    assert "| gradcam | layer4 |" in capsys.readouterr().out
    assert main(["--model", str(model_dir), "--data_dir", str(tmp_path), "--out", str(out)]) == 2


def test_batch_cli_html_report(model_dir, data_dir, tmp_path):
    images = sorted((data_dir / "ISIC_2019_Training_Input").glob("*.jpg"))[:2]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    out = tmp_path / "out"
    code = explain_main(
        [
            *map(str, images),
            str(bad),
            "--model",
            str(model_dir),
            "--out",
            str(out),
            "--methods",
            "gradcam",
            "gradcam++",
            "--layer",
            "layer3",
        ]
    )
    assert code == 0
    records = json.loads((out / "explanations.json").read_text())
    assert len(records) == 3 and "error" in records[2]
    assert (out / f"{images[0].stem}_gradcampp.png").exists()
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 6 and "http" not in page


def test_validation_ids_are_train_pys_split(model_dir, tmp_path):
    data = generate(tmp_path / "d", 40, seed=3, image_size=48, balanced=True)
    want = list(load_isic2019(data)["validation"]["image_id"])
    assert validation_ids(model_dir, data) == want  # no train_config.json: 0.2 and seed 42
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "train_config.json").write_text(json.dumps({"val_fraction": 0.5, "seed": 1}))
    assert (
        validation_ids(tmp_path / "m", data)
        == load_isic2019(data, 0.5, seed=1)["validation"]["image_id"]
    )
    report = evaluate_explanations(
        model_dir, data, methods=("gradcam",), image_ids=want[:2], sanity_images=0, steps=2
    )
    assert report["n_images"] == 2
