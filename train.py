"""Fine-tune a timm ResNet-50 on ISIC 2019, calibrate it, and export a Hub-ready model folder.

Run it::

    # a synthetic ISIC-layout data set, then a short CPU run
    python -m lesions.synth --out data/synth --n 2000 --seed 0
    accelerate launch train.py --data_dir data/synth --output_dir out --no-pretrained \
        --epochs 3 --image_size 128

    # ISIC 2019 on one GPU (bf16), then push
    accelerate launch --mixed_precision bf16 train.py --data_dir ISIC2019 --output_dir out \
        --class_weighting balanced --push_to_hub --hub_model_id me/dermxai-resnet50

    # several GPUs / nodes (DDP); CPU DDP on gloo for testing
    accelerate launch --multi_gpu --num_processes 8 train.py --data_dir ISIC2019 --output_dir out
    accelerate launch --num_machines 2 --machine_rank 0 --main_process_ip HOST \
        --num_processes 16 train.py --data_dir ISIC2019 --output_dir out
    accelerate launch --cpu --num_processes 2 train.py --data_dir data/synth --output_dir out

    # resume an interrupted run (mid-epoch checkpoints with --checkpointing_steps)
    accelerate launch train.py ... --resume_from_checkpoint out/checkpoints/step_00000300

Defaults are the study's (224 px, Adam lr 1e-4, cross-entropy, batch 64, stratified 80/20 split,
seed 42). OUT receives ``config.json``, ``model.safetensors`` (temperature baked in),
``calibration.json``, ``metrics.json``, ``train_config.json``, ``README.md`` (the model card),
``reliability_diagram.png``, ``confusion_matrix.png`` and ``checkpoints/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from safetensors.torch import load_file, save_file
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm.auto import tqdm

from hf_model import calibration as calib
from hf_model.card import render_model_card
from hf_model.export import EXPORT_DTYPES, check_hub_access, push_to_hub, save_pretrained
from lesions.isic import CLASSES, load_isic2019
from lesions.preprocess import load_image
from lesions.synth import read_provenance
from lesions.transforms import TrainBatchTransform, eval_transform, train_transform


@dataclass
class TrainConfig:
    """Everything a run depends on; saved as ``train_config.json`` beside the model."""

    # data
    data_dir: str | None = None
    dataset: str | None = None
    output_dir: str = "out"
    val_fraction: float = 0.2
    max_train_samples: int | None = None
    use_cache: bool = True
    # model
    model_name: str = "resnet50.a1_in1k"
    pretrained: bool = True
    image_size: int = 224
    # optimisation
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.0
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    class_weighting: str = "none"
    weighted_sampler: bool = False
    early_stopping_patience: int = 0
    seed: int = 42
    # calibration
    conformal_alpha: float = 0.1
    conformal_method: str = "lac"
    calibration_fraction: float = 0.5
    # explanations (when the data has masks); 0 skips the evaluation
    explain_max_images: int = 16
    explain_layers: str = "layer4"  # comma-separated, e.g. "layer3,layer4"
    # hardware and bookkeeping
    num_workers: int = 4
    channels_last: bool = True
    compile: bool = False
    mixed_precision: str | None = None
    checkpointing_steps: int | None = None
    checkpoints_total_limit: int = 2
    resume_from_checkpoint: str | None = None
    report_to: str | None = None
    export_dtype: str = "float32"
    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_private: bool = False

    def __post_init__(self) -> None:
        if (self.data_dir is None) == (self.dataset is None):
            raise ValueError("pass exactly one of --data_dir and --dataset")
        positive = ("epochs", "batch_size", "image_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must lie in (0, 1), got {self.val_fraction}")
        if self.class_weighting not in ("none", "balanced"):
            raise ValueError(
                f"class_weighting must be none or balanced, got {self.class_weighting}"
            )
        if self.conformal_method not in calib.CONFORMAL_METHODS:
            raise ValueError(f"conformal_method must be one of {calib.CONFORMAL_METHODS}")
        if self.export_dtype not in EXPORT_DTYPES:
            raise ValueError(f"export_dtype must be one of {EXPORT_DTYPES}")
        if self.push_to_hub and not self.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id")
        if self.checkpointing_steps is not None and self.checkpointing_steps < 1:
            raise ValueError("checkpointing_steps must be >= 1")


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """Parse command-line flags into a :class:`TrainConfig` (one flag per field)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for field in dataclasses.fields(TrainConfig):
        flag = f"--{field.name}"
        if field.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=field.default)
            continue
        kind = {"int": int, "float": float}.get(field.type.split(" |")[0], str)
        kwargs: dict[str, Any] = {"type": kind, "default": field.default}
        if field.name == "class_weighting":
            kwargs["choices"] = ("none", "balanced")
        elif field.name == "conformal_method":
            kwargs["choices"] = calib.CONFORMAL_METHODS
        elif field.name == "mixed_precision":
            kwargs["choices"] = ("no", "fp16", "bf16")
        elif field.name == "export_dtype":
            kwargs["choices"] = EXPORT_DTYPES
        elif field.name == "report_to":
            kwargs["choices"] = ("tensorboard", "wandb", "all")
        parser.add_argument(flag, **kwargs)
    try:
        return TrainConfig(**vars(parser.parse_args(argv)))
    except ValueError as err:
        parser.error(str(err))


# --------------------------------------------------------------------------- model


def create_model(cfg: TrainConfig) -> nn.Module:
    """Build the classifier; with ``pretrained`` load ImageNet weights or fail with a clear hint."""
    try:
        return timm.create_model(
            cfg.model_name, pretrained=cfg.pretrained, num_classes=len(CLASSES)
        )
    except RuntimeError as err:
        if "Unknown model" in str(err):
            raise ValueError(f"unknown timm model {cfg.model_name!r}") from err
        if not cfg.pretrained:
            raise
        hint = err
    except OSError as err:  # offline hub, missing cache entry, HTTP errors
        hint = err
    raise SystemExit(
        f"Could not load pretrained ImageNet weights for {cfg.model_name!r} from the Hugging Face "
        f"Hub ({type(hint).__name__}: {hint}). The Hub is unreachable or HF_HUB_OFFLINE is set. "
        "Pass --no-pretrained to start from random weights, or fill the HF cache on a connected "
        f"machine (`hf download timm/{cfg.model_name}`) and copy it to HF_HOME."
    )


# --------------------------------------------------------------------------- data


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed python, numpy and torch RNGs for one block, then restore their previous states."""
    states = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])


class LesionImages(Dataset):
    """``(transform(image), label)`` pairs from a ``datasets`` split.

    Indices may exceed ``len(split)``: index ``i`` is image ``i % len(split)`` and its random
    augmentation is seeded by ``(seed, i)``, so a run resumed mid-epoch sees exactly the
    augmentations the uninterrupted run would have (see :class:`EpochSampler`).
    """

    def __init__(self, split, transform, seed: int = 0) -> None:
        self.split = split.select_columns(["image", "label"])
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        row = self.split[index % len(self.split)]
        image = load_image(row["image"])
        with _seeded(self.seed * 1_000_003 + index):
            return self.transform(image), row["label"]


class EpochSampler(Sampler[int]):
    """Shuffled (or class-weighted) indices, reproducible from ``(seed, epoch)`` alone.

    Yields ``epoch * n + i`` so that :class:`LesionImages` can seed each augmentation.
    """

    def __init__(self, n: int, seed: int, weights: np.ndarray | None = None) -> None:
        self.n, self.seed, self.epoch = n, seed, 0
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + 7919 * self.epoch)
        if self.weights is None:
            order = torch.randperm(self.n, generator=generator)
        else:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=generator)
        return iter((self.epoch * self.n + order).tolist())


def load_data(cfg: TrainConfig, data_config: dict[str, Any]):
    """Load train/validation splits and build their ``DataLoader``s."""
    cache_size = None
    if cfg.use_cache and cfg.data_dir is not None:
        cache_size = math.ceil(cfg.image_size / data_config.get("crop_pct", 1.0))
    splits = load_isic2019(
        cfg.data_dir,
        cfg.val_fraction,
        cfg.seed,
        dataset=cfg.dataset,
        image_size=cache_size,
        num_proc=max(1, cfg.num_workers),
    )
    train, validation = splits["train"], splits["validation"]
    if cfg.max_train_samples is not None:
        n = min(cfg.max_train_samples, len(train))
        train = train.shuffle(seed=cfg.seed).select(range(n))
    train_labels = np.asarray(train["label"])
    weights = None
    if cfg.weighted_sampler:
        counts = np.bincount(train_labels, minlength=len(CLASSES))
        weights = 1.0 / counts[train_labels]
    sampler = EpochSampler(len(train), cfg.seed, weights)
    loader_kwargs = {
        "batch_size": cfg.batch_size,
        "num_workers": cfg.num_workers,
        "pin_memory": torch.cuda.is_available(),
        "persistent_workers": cfg.num_workers > 0,
    }
    train_dl = DataLoader(
        LesionImages(train, train_transform(data_config), cfg.seed),
        sampler=sampler,
        **loader_kwargs,
    )
    val_dl = DataLoader(LesionImages(validation, eval_transform(data_config)), **loader_kwargs)
    return train_dl, val_dl, train_labels, validation


def loss_weights(cfg: TrainConfig, train_labels: np.ndarray) -> torch.Tensor | None:
    """Inverse-frequency class weights (``n / (k * n_c)``) for ``--class_weighting balanced``."""
    if cfg.class_weighting == "none":
        return None
    present = np.unique(train_labels)
    weights = np.ones(len(CLASSES))  # classes absent from training (UNK) never occur as targets
    weights[present] = compute_class_weight("balanced", classes=present, y=train_labels)
    return torch.tensor(weights, dtype=torch.float32)


# --------------------------------------------------------------------------- metrics


def _nan_to_none(values: Sequence[float]) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in values]


def classification_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro F1, per-class P/R/F1/AUC, confusion matrix, NLL, ECE."""
    classes = list(range(len(CLASSES)))
    probs = calib.softmax(logits)
    predicted = probs.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=classes, zero_division=np.nan
    )
    auc = []
    for k in classes:
        positives = labels == k
        scorable = 0 < positives.sum() < len(labels)
        auc.append(roc_auc_score(positives, probs[:, k]) if scorable else math.nan)
    per_class = {
        name: {
            "precision": p,
            "recall": r,
            "f1": f,
            "roc_auc": a,
            "support": int(s),
        }
        for name, p, r, f, a, s in zip(
            CLASSES,
            _nan_to_none(precision),
            _nan_to_none(recall),
            _nan_to_none(f1),
            _nan_to_none(auc),
            support,
            strict=True,
        )
    }
    present = sorted(set(labels.tolist()))
    scored_auc = [a for a in auc if not math.isnan(a)]
    calibration = calib.calibration_metrics(probs, labels)
    return {
        "n": len(labels),
        "accuracy": float(accuracy_score(labels, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, labels=present, average="macro")),
        "roc_auc_ovr_macro": float(np.mean(scored_auc)) if scored_auc else None,
        "nll": calibration["nll"],
        "ece": calibration["ece"],
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(labels, predicted, labels=classes).tolist(),
    }


@torch.no_grad()
def predict(model: nn.Module, loader, accelerator: Accelerator, channels_last: bool):
    """Logits and labels of the whole loader, gathered once per sample across processes."""
    model.eval()
    all_logits, all_labels = [], []
    bar = tqdm(loader, desc="eval", leave=False, disable=not accelerator.is_local_main_process)
    for images, labels in bar:
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        logits = model(images)
        logits, labels = accelerator.gather_for_metrics((logits, labels))
        all_logits.append(logits.float().cpu())
        all_labels.append(labels.cpu())
    return torch.cat(all_logits).numpy(), torch.cat(all_labels).numpy()


# --------------------------------------------------------------------------- checkpoints


@dataclass
class TrainState:
    """Progress saved with every ``accelerator.save_state``."""

    global_step: int = 0
    best_score: float = -1.0
    best_epoch: int = -1
    stale_epochs: int = 0
    epoch_loss_sum: float = 0.0  # of the current epoch up to global_step (mean over processes)
    history: list = dataclasses.field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        return {"json": json.dumps(dataclasses.asdict(self))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in json.loads(state["json"]).items():
            setattr(self, key, value)


def save_checkpoint(accelerator: Accelerator, out: Path, state: TrainState, keep: int) -> None:
    """``accelerator.save_state`` into ``checkpoints/step_N``, keeping the newest ``keep``."""
    folder = out / "checkpoints" / f"step_{state.global_step:08d}"
    accelerator.save_state(folder)
    if accelerator.is_main_process:
        old = sorted((out / "checkpoints").glob("step_*"))[:-keep]
        for path in old:
            shutil.rmtree(path)


# --------------------------------------------------------------------------- plots


def plot_confusion_matrix(matrix: list[list[int]], path: Path) -> Path:
    """Row-normalised confusion matrix with counts, via scikit-learn's display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = plt.subplots(figsize=(7, 6), dpi=100)
    ConfusionMatrixDisplay(np.asarray(matrix), display_labels=CLASSES).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45
    )
    ax.set_title("Validation confusion matrix (rows: true class)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- main


def _explanation_report(cfg: TrainConfig, out: Path, validation: Any) -> str | None:
    """Evaluate the explanations on validation images with masks; the card's Markdown table."""
    if cfg.data_dir is None or "mask" not in validation.column_names or not cfg.explain_max_images:
        return None
    from explain.evaluate import evaluate_explanations, to_markdown  # imports captum: only here

    report = evaluate_explanations(
        out,
        cfg.data_dir,
        layers=tuple(cfg.explain_layers.split(",")),
        max_images=cfg.explain_max_images,
        image_ids=list(validation["image_id"]),
    )
    (out / "explanations.json").write_text(json.dumps(report, indent=2) + "\n")
    return to_markdown(report)


def main(cfg: TrainConfig) -> dict[str, Any]:
    """Train, evaluate, calibrate, export and (optionally) push; return ``metrics.json``."""
    out = Path(cfg.output_dir)
    if cfg.push_to_hub:  # fail now, not after hours of training
        check_hub_access(cfg.hub_model_id)
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision, log_with=cfg.report_to, project_dir=out
    )
    set_seed(cfg.seed)
    model = create_model(cfg)
    if cfg.explain_max_images:  # a misspelt layer fails now, not after training
        from explain.capture import resolve_layer

        for layer in cfg.explain_layers.split(","):
            resolve_layer(model, layer)
    data_config = timm.data.resolve_data_config(
        model=model, args={"input_size": (3, cfg.image_size, cfg.image_size)}
    )
    with accelerator.main_process_first():
        train_dl, val_dl, train_labels, validation = load_data(cfg, data_config)

    steps_per_epoch = len(train_dl)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    from transformers import get_cosine_schedule_with_warmup

    scheduler = get_cosine_schedule_with_warmup(
        optimizer,
        num_warmup_steps=round(cfg.warmup_epochs * steps_per_epoch),
        num_training_steps=cfg.epochs * steps_per_epoch,
    )
    weight = loss_weights(cfg, train_labels)
    criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)
    model, optimizer, train_dl, val_dl, scheduler = accelerator.prepare(
        model, optimizer, train_dl, val_dl, scheduler
    )
    criterion = criterion.to(accelerator.device)
    augment = TrainBatchTransform(data_config).to(accelerator.device)  # jitter + normalize
    if cfg.compile:
        model = torch.compile(model)
    state = TrainState()
    accelerator.register_for_checkpointing(state)
    if cfg.report_to:
        accelerator.init_trackers("dermxai", config=_flat_config(cfg))

    if cfg.resume_from_checkpoint:
        accelerator.load_state(cfg.resume_from_checkpoint)
        accelerator.print(f"resumed from {cfg.resume_from_checkpoint} at step {state.global_step}")
    batches_per_epoch = len(train_dl)
    start_epoch, skip = divmod(state.global_step, batches_per_epoch)
    best_path = out / "checkpoints" / "best" / "model.safetensors"
    if cfg.resume_from_checkpoint and accelerator.is_main_process:
        # resuming into another output folder: bring the best weights seen so far along
        previous_best = Path(cfg.resume_from_checkpoint).parent / "best" / "model.safetensors"
        if previous_best.is_file() and previous_best.resolve() != best_path.resolve():
            best_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(previous_best, best_path)

    for epoch in range(start_epoch, cfg.epochs):
        if cfg.early_stopping_patience and state.stale_epochs >= cfg.early_stopping_patience:
            accelerator.print(f"early stopping: no balanced-accuracy gain for {state.stale_epochs}")
            break
        model.train()
        train_dl.set_epoch(epoch)  # reaches EpochSampler; the skipping loader copies the epoch
        loader = accelerator.skip_first_batches(train_dl, skip) if skip else train_dl
        done = skip  # batches of this epoch trained before a resume
        total_loss = torch.tensor(state.epoch_loss_sum if skip else 0.0, device=accelerator.device)
        bar = tqdm(
            loader,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            initial=skip,
            total=batches_per_epoch,
            disable=not accelerator.is_local_main_process,
        )
        for (pixels, factors), labels in bar:
            images = augment(pixels, factors)
            if cfg.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with accelerator.autocast():
                loss = criterion(model(images), labels)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.global_step += 1
            total_loss += loss.detach()
            done += 1
            if done % 25 == 0:  # .item() waits for the device: not every step
                bar.set_postfix(loss=f"{loss.item():.4f}")
            if cfg.checkpointing_steps and state.global_step % cfg.checkpointing_steps == 0:
                state.epoch_loss_sum = accelerator.reduce(total_loss, reduction="mean").item()
                save_checkpoint(accelerator, out, state, cfg.checkpoints_total_limit)
        skip = 0

        logits, labels = predict(model, val_dl, accelerator, cfg.channels_last)
        metrics = classification_metrics(logits, labels)
        train_loss = accelerator.reduce(total_loss / max(done, 1), reduction="mean").item()
        recall = {k: v["recall"] for k, v in metrics["per_class"].items()}
        state.history.append(
            {"epoch": epoch + 1, "train_loss": train_loss, "lr": scheduler.get_last_lr()[0]}
            | {k: metrics[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "nll", "ece")}
            | {"recall": recall}
        )
        improved = metrics["balanced_accuracy"] > state.best_score
        if improved:
            state.best_score, state.best_epoch, state.stale_epochs = (
                metrics["balanced_accuracy"],
                epoch + 1,
                0,
            )
            if accelerator.is_main_process:
                best_path.parent.mkdir(parents=True, exist_ok=True)
                weights = accelerator.unwrap_model(model).state_dict()
                save_file({k: v.contiguous() for k, v in weights.items()}, best_path)
        else:
            state.stale_epochs += 1
        accelerator.print(
            f"epoch {epoch + 1}: loss {train_loss:.4f} | acc {metrics['accuracy']:.3f} "
            f"bal_acc {metrics['balanced_accuracy']:.3f} f1 {metrics['macro_f1']:.3f} "
            f"ece {metrics['ece']:.3f}{' *' if improved else ''} | recall "
            + " ".join(f"{k} {'-' if v is None else f'{v:.2f}'}" for k, v in recall.items())
        )
        accelerator.log(
            {k: v for k, v in state.history[-1].items() if isinstance(v, float)}, step=epoch + 1
        )
        save_checkpoint(accelerator, out, state, cfg.checkpoints_total_limit)

    accelerator.wait_for_everyone()
    final = accelerator.unwrap_model(model)
    final = getattr(final, "_orig_mod", final)  # torch.compile wrapper
    final.load_state_dict(load_file(best_path, device=str(accelerator.device)))
    logits, labels = predict(model, val_dl, accelerator, cfg.channels_last)
    report = _finish(
        cfg,
        out,
        accelerator,
        final,
        data_config,
        state,
        logits,
        labels,
        validation,
        len(train_labels),
    )
    accelerator.end_training()
    return report


def _flat_config(cfg: TrainConfig) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(cfg).items() if v is not None}


def _finish(cfg, out, accelerator, model, data_config, state, logits, labels, validation, n_train):
    """On the main process: calibrate, export, write metrics, plots and card, then push."""
    metrics: dict[str, Any] = {}
    if accelerator.is_main_process:
        validation_metrics = classification_metrics(logits, labels)
        calibration = calib.calibrate(
            logits,
            labels,
            alpha=cfg.conformal_alpha,
            method=cfg.conformal_method,
            calibration_fraction=cfg.calibration_fraction,
            seed=cfg.seed,
        )
        temperature = calibration["temperature"]
        calib.reliability_diagram(
            {"before": calib.softmax(logits), "after": calib.softmax(logits, temperature)},
            labels,
            out / "reliability_diagram.png",
        )
        plot_confusion_matrix(validation_metrics["confusion_matrix"], out / "confusion_matrix.png")
        save_pretrained(
            model,
            out,
            labels=CLASSES,
            data_config=data_config,
            calibration=calibration,
            dtype=cfg.export_dtype,
        )
        metrics = {
            "dataset": cfg.dataset or Path(cfg.data_dir).name,
            "synthetic_data": read_provenance(cfg.data_dir) if cfg.data_dir else None,
            "n_train": n_train,
            "n_validation": validation_metrics["n"],
            "best_epoch": state.best_epoch,
            "validation": validation_metrics,
            "calibration": calibration,
            "history": state.history,
        }
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (out / "train_config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2))
        explanations = _explanation_report(cfg, out, validation)
        render_model_card(
            out, metrics=metrics, config=dataclasses.asdict(cfg), explanations_markdown=explanations
        )
        if cfg.push_to_hub:
            url = push_to_hub(out, cfg.hub_model_id, private=cfg.hub_private)
            print(f"pushed to {url}")
    accelerator.wait_for_everyone()
    return metrics


if __name__ == "__main__":
    main(parse_args())
