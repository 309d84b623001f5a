"""DermXAI Space: calibrated skin-lesion classification with validated Grad-CAM, Grad-CAM++ and
Score-CAM, served with Gradio.

Run it::

    python app.py                         # the embedded SynthDerm demo model (hf_model/demo)
    MODEL_ID=owner/dermxai python app.py  # or MODEL_ID=path/to/exported/folder

The server listens on ``GRADIO_SERVER_PORT`` (default 7860) and ``GRADIO_SERVER_NAME``. The API
endpoint ``/explain`` takes (image filepath, methods, layer) and returns the calibrated confidences
(``gr.Label`` value) first, then the overlays, the text, the prediction-set verdict and the
mask scores; ``/compare_layers`` takes (image filepath, method) and returns one overlay per layer.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr
import numpy as np
import torch
from huggingface_hub import ModelCard
from PIL import Image

from explain import Explainer, Explanation
from explain.evaluate import to_markdown
from explain.metrics import iou, pointing_game
from hf_model import DEMO_DIR
from hf_model.loading import LoadedModel, load_model
from lesions.isic import CLASSES, labels_of, read_isic2019_tables
from lesions.preprocess import ImageLoadError, load_image
from lesions.synth import generate

METHODS: dict[str, str] = {
    "Grad-CAM": "gradcam",
    "Grad-CAM++": "gradcam++",
    "Score-CAM": "scorecam",
}
"""UI/API method names mapped to ``explain`` method names."""
LAYERS: tuple[str, ...] = ("layer1", "layer2", "layer3", "layer4")
MAX_UPLOAD_MB: int = int(os.environ.get("MAX_UPLOAD_MB", "20"))
"""Upload size cap, enforced by the server (``max_file_size``) and again by the handlers."""
MAX_SIDE: int = 1024
"""Uploads are shrunk (aspect kept) so their longer side is at most this before explaining;
the model sees a 224-ish crop anyway, and this bounds heatmap and overlay memory."""
MAX_ASPECT: float = 10.0
"""Longest/shortest side ratio above which an image is refused (it is not a lesion photo)."""
REFERRAL_CONFIDENCE: float = 0.5
"""Without a conformal threshold, a top probability below this triggers the referral banner."""
CONCURRENCY: int = int(os.environ.get("DERMXAI_CONCURRENCY", "2"))
"""Requests explained at once (one per vCPU on a CPU Space); the rest wait in the queue."""
QUEUE_SIZE: int = 32
EXAMPLES_SEED: int = 2019
N_EXAMPLES: int = 6
EXAMPLE_SIZE: int = 256
PLOTS: dict[str, str] = {
    "reliability_diagram.png": "Reliability diagram",
    "confusion_matrix.png": "Confusion matrix",
}
"""Plots that train.py saves beside the model, shown in the Model tab."""

DISCLAIMER = (
    "**Research demo, not a medical device.** It must not be used to diagnose, treat or triage "
    "anyone. The embedded demo model was trained on synthetic lesions (SynthDerm) to demonstrate "
    "the pipeline; its predictions on real photos mean nothing."
)

F = TypeVar("F", bound=Callable[..., Any])


class ModelNotAvailableError(RuntimeError):
    """No model can be served: the demo is not built and ``MODEL_ID`` is unset or unloadable."""


@dataclass(frozen=True)
class Service:
    """The model loaded once per process and its thread-safe explainer."""

    loaded: LoadedModel
    explainer: Explainer


@dataclass(frozen=True)
class Example:
    """A SynthDerm example image with its ground-truth mask and label."""

    image: Path
    mask: Path
    label: str


def _zero_gpu(fn: F) -> F:
    """Wrap ``fn`` with ``spaces.GPU`` on ZeroGPU Spaces; return it unchanged elsewhere."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(duration=120)(fn)


def model_source() -> str:
    """Return what to serve: ``MODEL_ID`` when set, else the embedded demo folder.

    Raises:
        ModelNotAvailableError: If ``MODEL_ID`` is unset and the demo model is not built.
    """
    source = os.environ.get("MODEL_ID", "").strip()
    if source:
        return source
    if not (DEMO_DIR / "config.json").is_file():
        raise ModelNotAvailableError(
            f"demo model not built yet: {DEMO_DIR} has no config.json. Train and export it "
            "(see README, 'Embedded demo model'), or set MODEL_ID=<Hub id or model folder>."
        )
    return str(DEMO_DIR)


def _device() -> str:
    """CPU by default; CUDA only on a ZeroGPU Space (``spaces`` importable and a GPU present)."""
    try:
        import spaces  # noqa: F401
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


@functools.lru_cache(maxsize=4)
def _load_service(source: str, device: str) -> Service:
    try:
        loaded = load_model(source, device=device)
    except (OSError, ValueError) as err:
        raise ModelNotAvailableError(f"cannot load model {source!r}: {err}") from err
    explainer = Explainer(
        loaded.model, loaded.labels, loaded.data_config, conformal=loaded.conformal
    )
    return Service(loaded=loaded, explainer=explainer)


def get_service() -> Service:
    """Return the process-wide model and explainer, loading them on first use.

    Raises:
        ModelNotAvailableError: If no model can be loaded (the message says why).
    """
    return _load_service(model_source(), _device())


def examples_dir() -> Path:
    """Folder of the SynthDerm examples (``DERMXAI_EXAMPLES_DIR`` or one in the temp dir)."""
    default = Path(tempfile.gettempdir()) / f"dermxai-examples-{EXAMPLES_SEED}-{N_EXAMPLES}"
    return Path(os.environ.get("DERMXAI_EXAMPLES_DIR") or default)


@functools.lru_cache(maxsize=1)
def load_examples() -> tuple[Example, ...]:
    """Generate (once per machine) and return the SynthDerm examples with their masks.

    The folder is written to a sibling temp folder and renamed into place, so processes that
    start together never see a half-written set.
    """
    root = examples_dir()
    if not (root / "ISIC_2019_Training_GroundTruth.csv").is_file():
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root.parent))
        generate(staging, N_EXAMPLES, seed=EXAMPLES_SEED, image_size=EXAMPLE_SIZE, balanced=True)
        try:
            staging.rename(root)
        except OSError:  # another process renamed its copy first
            shutil.rmtree(staging, ignore_errors=True)
    table = read_isic2019_tables(root)
    found = []
    for name, label in zip(table["image"], labels_of(table), strict=True):
        image = root / "ISIC_2019_Training_Input" / f"{name}.jpg"
        mask = root / "masks" / f"{name}_segmentation.png"
        if image.is_file() and mask.is_file():
            found.append(Example(image=image, mask=mask, label=CLASSES[label]))
    return tuple(found)


@functools.lru_cache(maxsize=1)
def _examples_by_digest() -> dict[str, Example]:
    return {hashlib.sha256(ex.image.read_bytes()).hexdigest(): ex for ex in load_examples()}


def _read_upload(image: Any) -> tuple[Image.Image, str | None]:
    """Turn a handler's image argument into an RGB image (shrunk to ``MAX_SIDE``) and a digest.

    Raises:
        gradio.Error: Naming the problem (missing, too large, unreadable, extreme aspect ratio).
    """
    if isinstance(image, dict):  # a FileData payload (the events run with preprocess=False)
        url = image.get("url") or ""
        if image.get("path"):
            image = image["path"]
        elif url.startswith("data:"):
            try:
                image = base64.b64decode(url.partition(",")[2], validate=True)
            except (binascii.Error, ValueError) as err:
                raise gr.Error(f"The image data URL is not valid base64: {err}") from err
        else:
            image = None
    if image is None:
        raise gr.Error("No image: upload a photo, use the webcam or paste one, or pick an example.")
    name = "image"
    data: bytes | None = None
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        if not path.is_file():
            raise gr.Error(f"The uploaded file {path.name!r} was not found on the server.")
        size = path.stat().st_size
        if size > MAX_UPLOAD_MB * 2**20:
            raise gr.Error(f"The upload is {size / 2**20:.1f} MB, over the {MAX_UPLOAD_MB} MB cap.")
        data, name = path.read_bytes(), path.name
    elif isinstance(image, bytes):
        if len(image) > MAX_UPLOAD_MB * 2**20:
            raise gr.Error(f"The upload is over the {MAX_UPLOAD_MB} MB cap.")
        data = image
    try:
        picture = load_image(image)
    except (ImageLoadError, TypeError) as err:  # the message names the server path: shorten it
        reason = str(err).replace(str(image), name) if name != "image" else str(err)
        raise gr.Error(f"Cannot use this image: {reason}") from err
    width, height = picture.size
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise gr.Error(
            f"The image is {width}×{height} px: an aspect ratio over {MAX_ASPECT:g}:1 is not a "
            "lesion photo. Crop it around the lesion and try again."
        )
    if max(width, height) > MAX_SIDE:
        picture = picture.copy()
        picture.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    digest = hashlib.sha256(data).hexdigest() if data is not None else None
    return picture, digest


def _check_methods(methods: Sequence[str] | str | None) -> list[str]:
    if isinstance(methods, str):
        methods = [methods]
    if not methods:
        raise gr.Error(f"No method selected: tick at least one of {', '.join(METHODS)}.")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise gr.Error(f"Unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}.")
    return list(dict.fromkeys(methods))


def _check_layer(layer: str | None) -> str:
    if layer not in LAYERS:
        raise gr.Error(f"Unknown layer {layer!r}; choose one of {', '.join(LAYERS)}.")
    return layer


def _explain(
    service: Service, picture: Image.Image, methods: Sequence[str], layer: str
) -> Explanation:
    try:
        return service.explainer.explain(
            picture, methods=tuple(METHODS[m] for m in methods), layer=layer
        )
    except ValueError as err:
        raise gr.Error(str(err)) from err


def _service() -> Service:
    try:
        return get_service()
    except ModelNotAvailableError as err:
        raise gr.Error(str(err)) from err


def verdict_markdown(explanation: Explanation) -> str:
    """Describe the prediction set and raise a referral banner when the model is uncertain.

    Args:
        explanation: The explainer's result.

    Returns:
        Markdown: a banner when uncertain, then the prediction set (or the top probability).
    """
    top = max(explanation.probabilities.values())
    if explanation.prediction_set is not None:
        members = ", ".join(explanation.prediction_set) or "empty"
        coverage = "" if explanation.coverage is None else f" ({explanation.coverage:.0%} coverage)"
        detail = (
            f"**Prediction set**{coverage}, split-conformal: {members} "
            f"({len(explanation.prediction_set)} of {len(explanation.probabilities)} classes)."
        )
        uncertain = len(explanation.prediction_set) != 1
        reason = "the prediction set does not single out one class"
    else:
        detail = (
            f"**Top class** {explanation.label} at {top:.1%} (this model has no conformal "
            "threshold, so no prediction set)."
        )
        uncertain = top < REFERRAL_CONFIDENCE
        reason = f"the top probability is below {REFERRAL_CONFIDENCE:.0%}"
    if not uncertain:
        return detail
    banner = f"### ⚠️ Uncertain: refer to a dermatologist\nThe model is unsure: {reason}."
    return f"{banner}\n\n{detail}"


def mask_scores_markdown(heatmaps: dict[str, np.ndarray], example: Example) -> str:
    """Score each method's heatmap against an example's ground-truth lesion mask.

    Args:
        heatmaps: UI method name -> heatmap at the image's size, in display order.
        example: The example whose mask is known.

    Returns:
        A markdown table with IoU and pointing-game hit per method.
    """
    with Image.open(example.mask) as mask_image:
        mask_image = mask_image.convert("L")
        rows = [
            f"Ground truth: **{example.label}** (SynthDerm example with a lesion mask).",
            "",
            "| method | IoU with mask | pointing game |",
            "|---|---|---|",
        ]
        for name, heatmap in heatmaps.items():
            height, width = heatmap.shape
            if mask_image.size != (width, height):
                mask_image = mask_image.resize((width, height), Image.Resampling.NEAREST)
            mask = np.asarray(mask_image) > 127
            hit = "hit" if pointing_game(heatmap, mask) else "miss"
            rows.append(f"| {name} | {iou(heatmap, mask):.3f} | {hit} |")
    return "\n".join(rows)


@_zero_gpu
def explain_image(
    image: Any,
    methods: Sequence[str] | str | None,
    layer: str | None,
    progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's idiom)
) -> tuple[dict[str, float], list[tuple[Image.Image, str]], str, str, str]:
    """Classify an image and explain it with the chosen CAM methods at one layer.

    Args:
        image: A file path, a Gradio FileData dict, raw bytes or a PIL image.
        methods: Some of ``"Grad-CAM"``, ``"Grad-CAM++"``, ``"Score-CAM"``.
        layer: One of ``"layer1"`` … ``"layer4"``.
        progress: Gradio's progress tracker, advanced once per method (Score-CAM is the slow one).

    Returns:
        (calibrated probabilities for ``gr.Label``, [(overlay, method)], text, verdict markdown,
        mask-score markdown: IoU and pointing game for examples with a known mask).

    Raises:
        gradio.Error: On bad input (the message names the problem).
    """
    names = _check_methods(methods)
    layer = _check_layer(layer)
    picture, digest = _read_upload(image)
    service = _service()
    parts = []
    for index, name in enumerate(names):  # one call per method, so progress advances per method
        slow = " (many masked forward passes)" if name == "Score-CAM" else ""
        progress((index, len(names)), desc=f"{name} at {layer}{slow}", unit="methods")
        parts.append(_explain(service, picture, [name], layer))
    first = parts[0]  # label, probabilities, prediction set and text are the same in every part
    heatmaps = {name: part.heatmaps[METHODS[name]] for name, part in zip(names, parts, strict=True)}
    overlays = [
        (part.overlays[METHODS[name]], name) for name, part in zip(names, parts, strict=True)
    ]
    example = _examples_by_digest().get(digest) if digest else None
    scores = (
        mask_scores_markdown(heatmaps, example)
        if example is not None
        else "No ground-truth mask for this image (IoU and pointing game need an example)."
    )
    return dict(first.probabilities), overlays, first.text, verdict_markdown(first), scores


@_zero_gpu
def compare_layers(
    image: Any,
    method: str | None,
    progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's idiom)
) -> list[tuple[Image.Image, str]]:
    """Explain an image with one method at every layer, layer1 to layer4 (the study's figure).

    Args:
        image: A file path, a Gradio FileData dict, raw bytes or a PIL image.
        method: One of ``"Grad-CAM"``, ``"Grad-CAM++"``, ``"Score-CAM"``.
        progress: Gradio's progress tracker, advanced once per layer.

    Returns:
        [(overlay, "method @ layer")] for the four layers.

    Raises:
        gradio.Error: On bad input (the message names the problem).
    """
    name = _check_methods(method)[0]
    picture, _ = _read_upload(image)
    service = _service()
    overlays = []
    for index, layer in enumerate(LAYERS):
        progress((index, len(LAYERS)), desc=f"{name} at {layer}")
        explanation = _explain(service, picture, [name], layer)
        overlays.append((explanation.overlays[METHODS[name]], f"{name} @ {layer}"))
    return overlays


def model_card_markdown(loaded: LoadedModel) -> str:
    """The model card's text (YAML metadata stripped), or a note when the folder has none."""
    card = loaded.path / "README.md"
    if not card.is_file():
        return f"No model card (README.md) in {loaded.source}."
    return ModelCard.load(card, ignore_metadata_errors=True).text


def calibration_markdown(loaded: LoadedModel) -> str:
    """Temperature, conformal threshold and calibration metrics before/after, as markdown."""
    calibration = loaded.calibration
    if not calibration:
        return "This model has no calibration.json: probabilities are uncalibrated softmax."
    lines = [f"Temperature **T = {float(calibration.get('temperature', 1.0)):.4f}** (baked in)."]
    conformal = calibration.get("conformal")
    if conformal:
        lines.append(
            f"Split-conformal ({conformal.get('method', '?')}): alpha = {conformal.get('alpha')}, "
            f"threshold = {conformal.get('threshold')}."
        )
    before = calibration.get("metrics_before") or {}
    after = calibration.get("metrics_after") or {}
    if before or after:
        lines += ["", "| metric | before | after |", "|---|---|---|"]
        for key in dict.fromkeys([*before, *after]):
            lines.append(f"| {key} | {_fmt(before.get(key))} | {_fmt(after.get(key))} |")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value if value is not None else "–")


def explanation_table_markdown(loaded: LoadedModel) -> str:
    """The explanation evaluation saved beside the model (``explanations.json``) as a table."""
    report = loaded.path / "explanations.json"
    if not report.is_file():
        return "No explanation evaluation (explanations.json) saved beside this model."
    return to_markdown(json.loads(report.read_text(encoding="utf-8")))


def build_demo() -> gr.Blocks:
    """Build the Space's UI (the model is loaded here, once per process).

    Returns:
        The ``gr.Blocks`` app with its queue configured; call ``launch(**launch_options())``.

    Raises:
        ModelNotAvailableError: If no model can be served.
    """
    service = get_service()
    loaded = service.loaded
    examples = load_examples()
    with gr.Blocks(title="DermXAI: explainable skin-lesion classification") as demo:
        gr.Markdown(
            "# DermXAI: calibrated, explained skin-lesion classification\n"
            f"ResNet-50 on ISIC 2019's 9 classes ({', '.join(loaded.labels)}), temperature-"
            "calibrated, explained with validated Grad-CAM, Grad-CAM++ and Score-CAM.\n\n"
            f"> {DISCLAIMER}"
        )
        with gr.Tab("Explain"):
            with gr.Row():
                with gr.Column(scale=1):
                    image = gr.Image(
                        type="filepath",
                        image_mode=None,
                        sources=["upload", "webcam", "clipboard"],
                        label="Dermoscopic image",
                        elem_id="input-image",
                    )
                    methods = gr.CheckboxGroup(
                        list(METHODS), value=list(METHODS), label="Explanation methods"
                    )
                    layer = gr.Dropdown(list(LAYERS), value="layer4", label="Layer")
                    run = gr.Button("Explain", variant="primary", elem_id="run")
                with gr.Column(scale=2):
                    verdict = gr.Markdown(elem_id="verdict")
                    label = gr.Label(num_top_classes=3, label="Calibrated confidence (top 3)")
                    overlays = gr.Gallery(
                        format="png", columns=3, height="auto", label="Overlays", elem_id="overlays"
                    )
                    text = gr.Markdown(elem_id="explanation-text")
                    scores = gr.Markdown(elem_id="mask-scores")
            outputs = [label, overlays, text, verdict, scores]
            gr.Examples(
                [[str(ex.image), list(METHODS), "layer4"] for ex in examples],
                inputs=[image, methods, layer],
                outputs=outputs,
                fn=explain_image,
                run_on_click=True,
                cache_examples=False,
                example_labels=[f"SynthDerm {ex.label}" for ex in examples],
                label="SynthDerm examples (with lesion masks: IoU and pointing game)",
            )
            with gr.Accordion("Compare layers (one method, layer1 to layer4)", open=False):
                with gr.Row():
                    compare_method = gr.Dropdown(list(METHODS), value="Grad-CAM", label="Method")
                    compare = gr.Button("Compare layers", elem_id="compare")
                layers_gallery = gr.Gallery(
                    format="png", columns=4, height="auto", label="Overlays per layer"
                )
        with gr.Tab("Model"):
            gr.Markdown(f"Serving `{loaded.source}`.")
            with gr.Row():
                for name, title in PLOTS.items():
                    if (loaded.path / name).is_file():
                        gr.Image(str(loaded.path / name), label=title, interactive=False)
                    else:
                        gr.Markdown(f"No {title.lower()} ({name}) saved beside this model.")
            gr.Markdown(calibration_markdown(loaded))
            gr.Markdown("## Explanation evaluation\n" + explanation_table_markdown(loaded))
            gr.Markdown("## Model card\n" + model_card_markdown(loaded))

        run.click(
            explain_image,
            inputs=[image, methods, layer],
            outputs=outputs,
            api_name="explain",
            preprocess=False,
            concurrency_limit=CONCURRENCY,
            concurrency_id="model",
        )
        compare.click(
            compare_layers,
            inputs=[image, compare_method],
            outputs=layers_gallery,
            api_name="compare_layers",
            preprocess=False,
            concurrency_limit=CONCURRENCY,
            concurrency_id="model",
        )
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=CONCURRENCY)
    return demo


def launch_options() -> dict[str, Any]:
    """Keyword arguments for ``demo.launch``: the upload cap (port/host come from env)."""
    return {"max_file_size": MAX_UPLOAD_MB * gr.FileSize.MB}


def main() -> int:
    """Build and serve the app; print a one-line reason and return non-zero when it cannot."""
    try:
        demo = build_demo()
    except ModelNotAvailableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    demo.launch(**launch_options())
    return 0


if __name__ == "__main__":
    sys.exit(main())
