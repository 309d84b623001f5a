"""app.py handlers called directly: outputs, bad input, model tab, no hook or memory growth."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import timm
import torch
from PIL import Image
from test_export import DATA_CONFIG  # the tiny model's preprocessing, one definition

import app
from hf_model.export import save_pretrained
from lesions.isic import CLASSES

ALL_METHODS = ["Grad-CAM", "Grad-CAM++", "Score-CAM"]


def make_model_dir(out: Path, *, conformal_threshold: float = 0.9) -> Path:
    """A tiny random-init resnet18 export with calibration, card and model-tab files."""
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=len(CLASSES)).eval()
    calibration = {
        "temperature": 1.5,
        "conformal": {"method": "lac", "alpha": 0.1, "threshold": conformal_threshold},
        "metrics_before": {"ece": 0.2, "nll": 2.1},
        "metrics_after": {"ece": 0.05, "nll": 1.9},
    }
    save_pretrained(
        model, out, labels=list(CLASSES), data_config=DATA_CONFIG, calibration=calibration
    )
    (out / "README.md").write_text(
        "---\nlicense: cc-by-nc-4.0\n---\n# Tiny test model\nRandom weights.\n", encoding="utf-8"
    )
    Image.new("RGB", (40, 30), "white").save(out / "reliability_diagram.png")
    Image.new("RGB", (40, 30), "gray").save(out / "confusion_matrix.png")
    cell = {"mean": 0.4, "low": 0.3, "high": 0.5, "n": 6}
    report = {"n_images": 6, "rows": [{"method": "gradcam", "layer": "layer4", "iou_otsu": cell}]}
    (out / "explanations.json").write_text(json.dumps(report), encoding="utf-8")
    return out


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg(image: Image.Image, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **kwargs)
    return buffer.getvalue()


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _bomb_png(side: int = 20000) -> bytes:
    """A valid 1-bit PNG of side×side pixels that compresses to a few tens of kB."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"\x00" * (side * (1 + (side + 7) // 8))
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (48, 40), color) for color in ("red", "green", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return buffer.getvalue()


def _exif_rotated() -> bytes:
    image = _noise(96, 64, seed=3)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display: 64 wide, 96 high
    return _jpeg(image, exif=exif)


def bad_uploads() -> dict[str, tuple[bytes, str]]:
    """Uploads the app must refuse: name -> (file bytes, text the error must contain)."""
    valid_jpeg = _jpeg(_noise(64, 64))
    return {
        "not_an_image.txt": (b"this is plain text, not a picture\n" * 4, "image"),
        "empty.jpg": (b"", "empty"),
        "truncated.jpg": (valid_jpeg[: len(valid_jpeg) // 2], "truncated"),
        "one_pixel.png": (_png(Image.new("RGB", (1, 1), "red")), "small"),
        "bomb.png": (_bomb_png(), "pixels"),
        "extreme_aspect.png": (_png(_noise(800, 20)), "aspect ratio"),
    }


def odd_uploads() -> dict[str, tuple[bytes, tuple[int, int]]]:
    """Unusual but valid uploads: name -> (file bytes, expected overlay size (width, height))."""
    gray16 = np.linspace(0, 65535, 50 * 70, dtype=np.uint16).reshape(50, 70)
    rgba = Image.fromarray(np.dstack([np.asarray(_noise(60, 40)), np.full((40, 60), 128, "uint8")]))
    return {
        "sixteen_bit.png": (_png(Image.fromarray(gray16)), (70, 50)),
        "cmyk.jpg": (_jpeg(Image.new("CMYK", (64, 48), (10, 200, 30, 0))), (64, 48)),
        "rgba.png": (_png(rgba), (60, 40)),
        "la.png": (_png(_noise(40, 44).convert("LA")), (40, 44)),
        "palette.png": (_png(_noise(50, 50).convert("P")), (50, 50)),
        "animated.gif": (_animated_gif(), (48, 40)),
        "exif_rotated.jpg": (_exif_rotated(), (64, 96)),
        "grayscale.jpg": (_jpeg(_noise(72, 56).convert("L")), (72, 56)),
        "wide.png": (_png(_noise(300, 40)), (300, 40)),
        "large.jpg": (_jpeg(_noise(2400, 1800)), (1024, 768)),
    }


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_model_dir(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="module", autouse=True)
def serve_tiny_model(model_dir, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODEL_ID", str(model_dir))
        patch.setenv("DERMXAI_EXAMPLES_DIR", str(tmp_path_factory.mktemp("ex") / "examples"))
        app.load_examples.cache_clear()
        app._examples_by_digest.cache_clear()
        yield


@pytest.fixture(scope="module")
def example():
    return app.load_examples()[0]


def _write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_examples_are_synthderm_images_with_masks():
    examples = app.load_examples()
    assert len(examples) == app.N_EXAMPLES
    for ex in examples:
        assert ex.label in CLASSES
        with Image.open(ex.image) as image, Image.open(ex.mask) as mask:
            assert image.size == mask.size == (app.EXAMPLE_SIZE, app.EXAMPLE_SIZE)
            assert np.asarray(mask.convert("L")).max() == 255


def test_explain_example_gives_label_overlays_text_verdict_and_mask_scores(example):
    label, overlays, text, verdict, scores = app.explain_image(
        str(example.image), ALL_METHODS, "layer4"
    )
    assert set(label) == set(CLASSES)
    assert sum(label.values()) == pytest.approx(1.0, abs=1e-5)
    assert [caption for _, caption in overlays] == ALL_METHODS
    for overlay, _ in overlays:
        assert isinstance(overlay, Image.Image)
        assert overlay.size == (app.EXAMPLE_SIZE, app.EXAMPLE_SIZE)
    assert isinstance(text, str) and text.strip()
    assert "Prediction set" in verdict and "90%" in verdict
    assert f"Ground truth: **{example.label}**" in scores
    rows = [line for line in scores.splitlines() if line.startswith("| Grad")]
    rows += [line for line in scores.splitlines() if line.startswith("| Score")]
    assert len(rows) == 3
    for row in rows:
        iou_value = float(row.split("|")[2])
        assert 0.0 <= iou_value <= 1.0
        assert row.split("|")[3].strip() in {"hit", "miss"}


def test_probabilities_are_the_calibrated_model_output(example):
    service = app.get_service()
    label, *_ = app.explain_image(str(example.image), ["Grad-CAM"], "layer4")
    with Image.open(example.image) as image:
        expected = service.explainer.predict(image.convert("RGB"))
    assert label == pytest.approx(dict(expected), abs=1e-6)
    assert max(label, key=label.get) == max(expected, key=expected.get)


def test_handler_is_deterministic_and_layer_changes_the_map(example):
    first = app.explain_image(str(example.image), ["Grad-CAM"], "layer3")
    second = app.explain_image(str(example.image), ["Grad-CAM"], "layer3")
    other = app.explain_image(str(example.image), ["Grad-CAM"], "layer4")
    assert first[0] == second[0]
    assert first[1][0][0].tobytes() == second[1][0][0].tobytes()
    assert first[1][0][0].tobytes() != other[1][0][0].tobytes()


def test_non_example_upload_has_no_mask_scores(tmp_path):
    path = _write(tmp_path, "photo.png", _png(_noise(80, 60)))
    _, overlays, _, _, scores = app.explain_image(path, ["Grad-CAM++"], "layer2")
    assert overlays[0][0].size == (80, 60)
    assert "No ground-truth mask" in scores


def test_gradio_payload_dict_and_data_url_are_accepted(tmp_path, example):
    path = _write(tmp_path, "photo.png", _png(_noise(64, 64)))
    by_path = app.explain_image({"path": path, "url": None}, ["Grad-CAM"], "layer4")
    import base64

    url = "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()
    by_url = app.explain_image({"path": None, "url": url}, ["Grad-CAM"], "layer4")
    assert by_path[0] == by_url[0]
    assert by_path[1][0][0].tobytes() == by_url[1][0][0].tobytes()


def test_compare_layers_returns_one_overlay_per_layer(example):
    overlays = app.compare_layers(str(example.image), "Grad-CAM")
    assert [caption for _, caption in overlays] == [f"Grad-CAM @ {ly}" for ly in app.LAYERS]
    assert len({overlay.tobytes() for overlay, _ in overlays}) == 4


@pytest.mark.parametrize("name", list(bad_uploads()))
def test_bad_upload_gets_a_clear_error(tmp_path, name):
    data, expected = bad_uploads()[name]
    path = _write(tmp_path, name, data)
    with pytest.raises(gr.Error) as info:
        app.explain_image(path, ["Grad-CAM"], "layer4")
    assert expected in str(info.value).lower()


@pytest.mark.parametrize("name", list(odd_uploads()))
def test_unusual_upload_is_handled(tmp_path, name):
    data, size = odd_uploads()[name]
    path = _write(tmp_path, name, data)
    label, overlays, text, _, _ = app.explain_image(path, ["Grad-CAM"], "layer4")
    assert sum(label.values()) == pytest.approx(1.0, abs=1e-5)
    assert overlays[0][0].size == size
    assert overlays[0][0].mode == "RGB"
    assert text


def test_upload_over_the_cap_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(app, "MAX_UPLOAD_MB", 1)
    path = _write(tmp_path, "big.png", _png(_noise(700, 700)))
    assert Path(path).stat().st_size > 2**20
    with pytest.raises(gr.Error, match="over the 1 MB cap"):
        app.explain_image(path, ["Grad-CAM"], "layer4")


@pytest.mark.parametrize(
    ("methods", "layer", "match"),
    [
        ([], "layer4", "No method selected"),
        (None, "layer4", "No method selected"),
        (["LIME"], "layer4", "Unknown method 'LIME'"),
        (["Grad-CAM"], "layer9", "Unknown layer 'layer9'"),
        (["Grad-CAM"], None, "Unknown layer"),
    ],
)
def test_bad_options_get_a_clear_error(example, methods, layer, match):
    with pytest.raises(gr.Error, match=match):
        app.explain_image(str(example.image), methods, layer)


def test_missing_image_gets_a_clear_error():
    with pytest.raises(gr.Error, match="No image"):
        app.explain_image(None, ["Grad-CAM"], "layer4")
    with pytest.raises(gr.Error, match="No image"):
        app.compare_layers({"path": None, "url": None}, "Grad-CAM")
    with pytest.raises(gr.Error, match="not found"):
        app.explain_image("/nonexistent/lesion.jpg", ["Grad-CAM"], "layer4")


def test_verdict_banner_follows_the_prediction_set(tmp_path, example):
    """threshold 0.9 on a random 9-class head: a multi-class set, so refer; 0.0: one class."""
    uncertain = app.explain_image(str(example.image), ["Grad-CAM"], "layer4")[3]
    assert "refer to a dermatologist" in uncertain
    confident_dir = make_model_dir(tmp_path / "confident", conformal_threshold=0.0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MODEL_ID", str(confident_dir))
        verdict = app.explain_image(str(example.image), ["Grad-CAM"], "layer4")[3]
    assert "Prediction set" in verdict
    assert "refer" not in verdict


def _hook_count(model: torch.nn.Module) -> int:
    return sum(
        len(m._forward_hooks)
        + len(m._forward_pre_hooks)
        + len(m._backward_hooks)
        + len(m._backward_pre_hooks)
        for m in model.modules()
    )


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20


def test_no_hook_or_memory_growth_over_200_requests(tmp_path):
    model = app.get_service().loaded.model
    path = _write(tmp_path, "photo.png", _png(_noise(64, 64)))
    assert _hook_count(model) == 0
    for layer in app.LAYERS * 5:  # warm-up: allocator pools and caches settle
        app.explain_image(path, ALL_METHODS, layer)
    baseline = _rss_mb()
    for index in range(200):
        method = "Score-CAM" if index % 50 == 0 else ALL_METHODS[index % 2]
        app.explain_image(path, [method], app.LAYERS[index % 4])
        assert _hook_count(model) == 0
        assert all(p.grad is None for p in model.parameters())
    growth = _rss_mb() - baseline
    assert growth < 30, f"RSS grew by {growth:.1f} MB over 200 requests"


def test_build_demo_wires_the_api_and_the_model_tab():
    demo = app.build_demo()
    config = demo.get_config_file()
    by_api = {d["api_name"]: d for d in config["dependencies"] if d.get("api_name")}
    components = {c["id"]: c for c in config["components"]}
    explain = by_api["explain"]
    kinds = [components[i]["type"] for i in explain["inputs"] + explain["outputs"]]
    assert kinds[:6] == ["image", "checkboxgroup", "dropdown", "label", "gallery", "markdown"]
    assert len(explain["outputs"]) == 5
    assert len(by_api["compare_layers"]["inputs"]) == 2
    markdown = " ".join(str(c["props"].get("value")) for c in config["components"])
    assert "not a medical device" in markdown
    assert "Tiny test model" in markdown and "license: cc-by-nc-4.0" not in markdown
    assert "T = 1.5000" in markdown and "| ece | 0.2000 | 0.0500 |" in markdown
    assert "| gradcam | layer4 | 0.400 [0.300, 0.500] |" in markdown
    titles = {c["props"].get("label") for c in config["components"] if c["type"] == "image"}
    assert {"Reliability diagram", "Confusion matrix"} <= titles


def test_main_without_a_model_prints_why_and_exits_non_zero(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MODEL_ID")
    monkeypatch.setattr(app, "DEMO_DIR", tmp_path / "demo")
    assert app.main() == 2
    err = capsys.readouterr().err
    assert "demo model not built yet" in err and "MODEL_ID" in err
    monkeypatch.setenv("MODEL_ID", "someone/not-cached-offline")
    assert app.main() == 2
    assert "Hub" in capsys.readouterr().err
