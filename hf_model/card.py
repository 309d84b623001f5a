"""Render the model card (``README.md``) from ``metrics.json`` with ``huggingface_hub.ModelCard``.

The Jinja template is the top-level ``model_card.md``; the card's YAML header carries a
``model-index`` built from :class:`huggingface_hub.EvalResult`, so the Hub shows the numbers and
``ModelCard.load(OUT / "README.md").data.eval_results`` gives them back equal to ``metrics.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "model_card.md"
LICENSE = "cc-by-nc-4.0"

# (metric_type in the model-index, display name, path into metrics.json)
CARD_METRICS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("accuracy", "Accuracy", ("validation", "accuracy")),
    ("balanced_accuracy", "Balanced accuracy", ("validation", "balanced_accuracy")),
    ("f1", "Macro F1", ("validation", "macro_f1")),
    (
        "ece_before_scaling",
        "ECE (15 bins) before scaling",
        ("calibration", "metrics_before", "ece"),
    ),
    ("ece_after_scaling", "ECE (15 bins) after scaling", ("calibration", "metrics_after", "ece")),
)


def _lookup(metrics: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = metrics
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            raise ValueError(f"metrics lacks {'.'.join(path)}")
        value = value[key]
    return value


def card_metric_values(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The values the card's model-index reports, keyed by metric type, read from metrics.json."""
    return {kind: float(_lookup(metrics, path)) for kind, _, path in CARD_METRICS}


def eval_results(metrics: Mapping[str, Any]) -> list[EvalResult]:
    """``EvalResult`` entries (validation split) for the card's model-index."""
    dataset = str(metrics.get("dataset", "isic2019"))
    values = card_metric_values(metrics)
    return [
        EvalResult(
            task_type="image-classification",
            task_name="Skin lesion classification",
            dataset_type=dataset,
            dataset_name=dataset,
            dataset_split="validation",
            metric_type=kind,
            metric_name=name,
            metric_value=values[kind],
        )
        for kind, name, _ in CARD_METRICS
    ]


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def render_model_card(
    out_dir: str | Path,
    *,
    metrics: Mapping[str, Any],
    config: Mapping[str, Any],
    explanations_markdown: str | None = None,
    model_id: str | None = None,
    template_path: str | Path = TEMPLATE_PATH,
) -> ModelCard:
    """Render ``model_card.md`` into ``out_dir/README.md``.

    Args:
        out_dir: The exported model folder (plots are linked relative to it).
        metrics: The content of ``metrics.json`` (``validation``, ``calibration``, ...).
        config: The resolved training configuration (``train_config.json``).
        explanations_markdown: ``explain.evaluate.to_markdown(report)``, or ``None`` when the
            data had no masks (the card then says so).
        model_id: Hub id shown in the usage snippet (default: ``config["hub_model_id"]``).
        template_path: The Jinja template.

    Returns:
        The rendered :class:`huggingface_hub.ModelCard` (also saved as ``README.md``).

    Raises:
        ValueError: If ``metrics`` lacks a reported value.
    """
    if not isinstance(metrics, Mapping) or not isinstance(config, Mapping):
        raise TypeError("metrics and config must be mappings")
    validation = _lookup(metrics, ("validation",))
    calibration = _lookup(metrics, ("calibration",))
    model_id = model_id or config.get("hub_model_id") or "path/to/OUT"
    card_data = ModelCardData(
        license=LICENSE,
        library_name="timm",
        pipeline_tag="image-classification",
        tags=["image-classification", "timm", "transformers", "dermatology", "isic2019"],
        datasets=[config["dataset"]] if config.get("dataset") else None,
        metrics=["accuracy", "balanced_accuracy", "f1", "ece"],
        model_name=f"DermXAI {config.get('model_name', 'resnet50')}",
        base_model=f"timm/{config['model_name']}" if config.get("pretrained") else None,
        eval_results=eval_results(metrics),
    )
    per_class = [
        {"name": name}
        | {k: _fmt(v[k]) for k in ("precision", "recall", "f1", "roc_auc")}
        | {"support": v["support"]}
        for name, v in validation["per_class"].items()
    ]
    card = ModelCard.from_template(
        card_data,
        template_path=str(template_path),
        model_id=model_id,
        metrics=metrics,
        values={kind: _fmt(v) for kind, v in card_metric_values(metrics).items()},
        per_class=per_class,
        calibration=calibration,
        before={k: _fmt(v) for k, v in calibration["metrics_before"].items()},
        after={k: _fmt(v) for k, v in calibration["metrics_after"].items()},
        config=dict(config),
        explanations_markdown=explanations_markdown,
    )
    card.save(Path(out_dir) / "README.md")
    return card
