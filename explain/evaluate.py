"""Quantitative evaluation of the CAM methods on a folder with lesion masks.

Run::

    python -m explain.evaluate --model OUT --data_dir SYNTHDERM --layers layer3 layer4 \\
        --out report.json

For every method x layer it reports localization (IoU at Otsu and top-15%, pointing game, energy
pointing game), faithfulness (deletion/insertion AUC, Average Drop, Increase in Confidence),
the model-randomization sanity check and, when artifact masks exist, attribution mass on
artifacts; each as a mean with a 95% bootstrap interval. Two baseline rows — uniform random maps
and a centered Gaussian — show what no localization looks like: a method that does not beat the
center prior localizes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from explain import metrics
from explain.explainer import METHOD_NAMES, Explainer, make_method
from lesions.isic import read_isic2019_tables, split_indices
from lesions.preprocess import load_image

IMAGE_DIR = "ISIC_2019_Training_Input"
MASK_DIR = "masks"
ARTIFACT_DIR = "artifacts"
BASELINES = ("random", "center")
METRICS = {
    "iou_otsu": ("IoU (Otsu)", "higher"),
    "iou_top15": ("IoU (top 15%)", "higher"),
    "pointing_game": ("Pointing game", "higher"),
    "energy_pointing": ("Energy pointing", "higher"),
    "deletion_auc": ("Deletion AUC", "lower"),
    "insertion_auc": ("Insertion AUC", "higher"),
    "average_drop": ("Average Drop %", "lower"),
    "increase_in_confidence": ("Increase in Conf.", "higher"),
    "artifact_mass": ("Artifact mass", "lower"),
    "randomization_spearman": ("Randomization ρ", "lower"),
}


def center_gaussian(height: int, width: int, sigma: float = 0.25) -> np.ndarray:
    """A centered Gaussian map in [0, 1]; ``sigma`` is a fraction of each side."""
    ys = (np.arange(height) + 0.5) / height - 0.5
    xs = (np.arange(width) + 0.5) / width - 0.5
    heat = np.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma**2))
    return (heat / heat.max()).astype(np.float32)


def _mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    img = load_image(path).convert("L").resize((size[1], size[0]), Image.NEAREST)
    return np.asarray(img) > 127


def _score(
    row: dict[str, list[float]],
    model: torch.nn.Module,
    x: torch.Tensor,
    heat_model: np.ndarray,
    heat_input: np.ndarray,
    target: int,
    mask: np.ndarray,
    artifact: np.ndarray | None,
    steps: int,
) -> None:
    row["iou_otsu"].append(metrics.iou(heat_input, mask))
    row["iou_top15"].append(metrics.iou(heat_input, mask, top_percent=15))
    row["pointing_game"].append(float(metrics.pointing_game(heat_input, mask)))
    row["energy_pointing"].append(metrics.energy_pointing_game(heat_input, mask))
    curves = metrics.deletion_insertion(model, x, heat_model, target, steps=steps)
    row["deletion_auc"].append(curves["deletion_auc"])
    row["insertion_auc"].append(curves["insertion_auc"])
    drop, increase = metrics.average_drop_increase(model, x, heat_model, target)
    row["average_drop"].append(drop)
    row["increase_in_confidence"].append(float(increase))
    if artifact is not None and artifact.any():
        row["artifact_mass"].append(metrics.artifact_mass(heat_input, artifact))


def evaluate_explanations(
    model_or_dir: Explainer | str | Path,
    data_dir: str | Path,
    *,
    layers: Sequence[str] = ("layer4",),
    methods: Sequence[str] = METHOD_NAMES,
    max_images: int | None = None,
    image_ids: Sequence[str] | None = None,
    scorecam_mode: str = "fast",
    sanity_images: int = 8,
    steps: int = 10,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate every method x layer on the images of ``data_dir`` that have lesion masks.

    Args:
        model_or_dir: An :class:`Explainer` or a saved model folder / Hub id.
        data_dir: ISIC 2019 layout with ``masks/<id>_segmentation.png`` (and optionally
            ``artifacts/<id>_artifact.png``), e.g. a SynthDerm folder.
        layers: Layers to explain.
        methods: Method names.
        max_images: Use at most this many images (sorted by id).
        image_ids: Only these images (e.g. the validation split); ``None`` for every image.
        scorecam_mode: "fast" or "exact".
        sanity_images: Images used for the model-randomization check (it re-explains them with a
            re-initialized copy of the model).
        steps: Steps of the deletion/insertion curves.
        n_resamples: Bootstrap resamples of the 95% intervals.
        seed: Seed of the random baseline and the bootstrap.

    Returns:
        ``{"n_images", "layers", "methods", "metrics", "rows": [{"method", "layer", <metric>:
        {"mean", "low", "high", "n"}}]}``; baseline rows have ``layer`` "-".

    Raises:
        ValueError: If the folder has no masks, or a method/layer is unknown.
        FileNotFoundError: If the data folder or its tables are missing.
    """
    explainer = (
        model_or_dir
        if isinstance(model_or_dir, Explainer)
        else Explainer.from_pretrained(model_or_dir, scorecam_mode=scorecam_mode)
    )
    data_dir = Path(data_dir)
    cams = {
        (name, layer): make_method(
            name, explainer.model, layer, **({"mode": scorecam_mode} if name == "scorecam" else {})
        )
        for layer in layers
        for name in methods
    }
    if not cams:
        raise ValueError("give at least one method and one layer")
    table = read_isic2019_tables(data_dir)
    wanted = set(table["image"]) if image_ids is None else set(image_ids)
    ids = sorted(
        i
        for i in table["image"]
        if i in wanted and (data_dir / MASK_DIR / f"{i}_segmentation.png").exists()
    )
    if not ids:
        raise ValueError(f"no lesion masks in {data_dir / MASK_DIR}; evaluation needs masks")
    ids = ids[:max_images] if max_images is not None else ids
    rng = np.random.default_rng(seed)
    values: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    model = explainer.model
    for index, image_id in enumerate(ids):
        _, x, geometry = explainer.preprocess(data_dir / IMAGE_DIR / f"{image_id}.jpg")
        mask = _mask(data_dir / MASK_DIR / f"{image_id}_segmentation.png", geometry.size)
        artifact_path = data_dir / ARTIFACT_DIR / f"{image_id}_artifact.png"
        artifact = _mask(artifact_path, geometry.size) if artifact_path.exists() else None
        target = None
        for (name, layer), cam in cams.items():
            result = cam(x)
            target = int(result.targets[0])
            heat = result.heatmaps[0]
            _score(
                values[(name, layer)],
                model,
                x[0],
                heat.numpy(),
                geometry.to_input(heat),
                target,
                mask,
                artifact,
                steps,
            )
            if index < sanity_images:
                rho = metrics.randomization_correlation(
                    lambda m, c=cam, x=x: (
                        type(c)(m, c.layer, **_method_kwargs(c))(x).heatmaps[0].numpy()
                    ),
                    model,
                )
                values[(name, layer)]["randomization_spearman"].append(rho)
        h, w = x.shape[-2:]
        baselines = {
            "random": rng.random((h, w), dtype=np.float32),
            "center": center_gaussian(h, w),
        }
        for name, heat in baselines.items():
            _score(
                values[(name, "-")],
                model,
                x[0],
                heat,
                geometry.to_input(torch.from_numpy(heat)),
                target,
                mask,
                artifact,
                steps,
            )
    rows = []
    for (name, layer), per_metric in values.items():
        row: dict[str, Any] = {"method": name, "layer": layer}
        for key in METRICS:
            if per_metric.get(key):
                mean, low, high = metrics.bootstrap_ci(
                    per_metric[key], n_resamples=n_resamples, seed=seed
                )
                row[key] = {"mean": mean, "low": low, "high": high, "n": len(per_metric[key])}
        rows.append(row)
    return {
        "n_images": len(ids),
        "layers": list(layers),
        "methods": list(methods),
        "scorecam_mode": scorecam_mode,
        "metrics": {key: {"name": n, "better": b} for key, (n, b) in METRICS.items()},
        "rows": rows,
    }


def _method_kwargs(cam: Any) -> dict[str, Any]:
    if cam.name != "scorecam":
        return {}
    return {"mode": cam.mode, "batch_size": cam.batch_size, "top_k": cam.top_k, "scale": cam.scale}


def to_markdown(report: dict[str, Any]) -> str:
    """Markdown table: one row per method x layer plus the baselines, mean [95% CI] per metric."""
    keys = [k for k in METRICS if any(k in row for row in report["rows"])]
    header = ["Method", "Layer"] + [
        f"{METRICS[k][0]} {'↑' if METRICS[k][1] == 'higher' else '↓'}" for k in keys
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in report["rows"]:
        cells = [
            row["method"] if row["layer"] != "-" else f"*baseline: {row['method']}*",
            row["layer"],
        ]
        for key in keys:
            cell = row.get(key)
            cells.append(
                f"{cell['mean']:.3f} [{cell['low']:.3f}, {cell['high']:.3f}]" if cell else "–"
            )
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"{report['n_images']} images; mean [95% bootstrap CI]; ↑ higher is better, ↓ lower is "
        "better. Randomization ρ: Spearman correlation of maps before/after re-initializing "
        "layer4 and fc (Adebayo et al. 2018)."
    )
    return "\n".join(lines)


def validation_ids(model: str | Path, data_dir: str | Path) -> list[str]:
    """Image ids of train.py's validation split of ``data_dir`` for the model in ``model``.

    The split is lesion-aware and stratified (``lesions.isic.split_indices``); its
    ``val_fraction`` and ``seed`` come from the model folder's ``train_config.json`` when there
    is one, else train.py's defaults (0.2, 42).
    """
    config_path = Path(model) / "train_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    table = read_isic2019_tables(data_dir)
    _, val = split_indices(table, config.get("val_fraction", 0.2), config.get("seed", 42))
    return table["image"].iloc[val].tolist()


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints the Markdown table and writes the JSON report."""
    parser = argparse.ArgumentParser(
        prog="python -m explain.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="saved model folder or Hub id")
    parser.add_argument("--data_dir", required=True, help="folder with images and masks/")
    parser.add_argument("--layers", nargs="+", default=["layer4"])
    parser.add_argument("--methods", nargs="+", default=list(METHOD_NAMES))
    parser.add_argument("--max_images", type=int, default=None)
    parser.add_argument(
        "--split",
        choices=("validation", "all"),
        default="validation",
        help="validation: only the images the model was not trained on (the lesion-aware split "
        "of train.py, with val_fraction and seed from the model's train_config.json when present)",
    )
    parser.add_argument("--scorecam_mode", choices=("fast", "exact"), default="fast")
    parser.add_argument("--sanity_images", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("explain_report.json"))
    args = parser.parse_args(argv)
    try:
        validation = args.split == "validation"
        image_ids = validation_ids(args.model, args.data_dir) if validation else None
        report = evaluate_explanations(
            args.model,
            args.data_dir,
            layers=args.layers,
            methods=args.methods,
            max_images=args.max_images,
            image_ids=image_ids,
            scorecam_mode=args.scorecam_mode,
            sanity_images=args.sanity_images,
            seed=args.seed,
        )
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(to_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
