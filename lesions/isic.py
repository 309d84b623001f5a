"""ISIC 2019 ingestion: the official tables, a lesion-aware stratified split, ``datasets`` loading.

The folder layout (real or SynthDerm)::

    DATA/ISIC_2019_Training_Input/<image>.jpg
    DATA/ISIC_2019_Training_GroundTruth.csv     image, MEL, NV, BCC, AK, BKL, DF, VASC, SCC, UNK
    DATA/ISIC_2019_Training_Metadata.csv        image, age_approx, anatom_site_general,
                                                lesion_id, sex
    DATA/masks/<image>_segmentation.png         optional, 255 = lesion
"""

from __future__ import annotations

import os
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, concatenate_datasets
from datasets import Image as ImageFeature
from sklearn.model_selection import StratifiedGroupKFold

CLASSES: tuple[str, ...] = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")
METADATA_COLUMNS: tuple[str, ...] = ("age_approx", "anatom_site_general", "lesion_id", "sex")
TABLE_COLUMNS: tuple[str, ...] = ("image", *CLASSES, *METADATA_COLUMNS)

IMAGE_DIR = "ISIC_2019_Training_Input"
GROUND_TRUTH_CSV = "ISIC_2019_Training_GroundTruth.csv"
METADATA_CSV = "ISIC_2019_Training_Metadata.csv"
MASK_DIR = "masks"
MASK_SUFFIX = "_segmentation.png"

_SHOW = 5  # how many offending ids an error message lists


def _first(values) -> str:
    values = list(values)
    more = f" (+{len(values) - _SHOW} more)" if len(values) > _SHOW else ""
    return ", ".join(str(v) for v in values[:_SHOW]) + more


def _read_csv(path: Path, expected: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"{path.name} not found in {path.parent}")
    table = pd.read_csv(path, dtype={"image": str, "lesion_id": str})
    unknown = [c for c in table.columns if c not in expected]
    missing = [c for c in expected if c not in table.columns]
    if unknown or missing:
        raise ValueError(
            f"{path.name}: unknown columns {unknown}, missing columns {missing}; "
            f"expected exactly {list(expected)}"
        )
    if table["image"].isna().any():
        rows = table.index[table["image"].isna()]
        raise ValueError(f"{path.name}: {len(rows)} rows have no image id (rows {_first(rows)})")
    dup = table["image"][table["image"].duplicated(keep=False)].unique()
    if len(dup):
        raise ValueError(f"{path.name}: {len(dup)} duplicate images: {_first(dup)}")
    return table


def read_isic2019_tables(data_dir: str | Path) -> pd.DataFrame:
    """Reads and merges the ISIC 2019 ground-truth and metadata tables on ``image``.

    Args:
        data_dir: Folder holding ``ISIC_2019_Training_GroundTruth.csv`` and
            ``ISIC_2019_Training_Metadata.csv``.

    Returns:
        One row per image with the 14 original columns ``image``, ``MEL`` … ``UNK`` (int 0/1),
        ``age_approx`` (float, NaN when unknown), ``anatom_site_general``, ``lesion_id``, ``sex``,
        in ground-truth order.

    Raises:
        FileNotFoundError: If a table is missing.
        ValueError: On unknown or missing columns, class values other than 0/1, rows with zero or
            several positive classes, duplicate images, or images present in only one table; the
            message gives the count and the first offending rows.
    """
    data_dir = Path(data_dir)
    truth = _read_csv(data_dir / GROUND_TRUTH_CSV, ("image", *CLASSES))
    meta = _read_csv(data_dir / METADATA_CSV, ("image", *METADATA_COLUMNS))

    onehot = truth[list(CLASSES)].apply(pd.to_numeric, errors="coerce")
    bad = onehot.isna().any(axis=1) | ~onehot.isin([0, 1]).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{GROUND_TRUTH_CSV}: {int(bad.sum())} rows have class values other than 0/1: "
            f"{_first(truth['image'][bad])}"
        )
    positives = onehot.sum(axis=1)
    if (positives != 1).any():
        rows = truth["image"][positives != 1]
        raise ValueError(
            f"{GROUND_TRUTH_CSV}: {len(rows)} rows have zero or several positive classes: "
            f"{_first(rows)}"
        )
    truth[list(CLASSES)] = onehot.astype(np.int64)

    only_truth = truth["image"][~truth["image"].isin(meta["image"])]
    only_meta = meta["image"][~meta["image"].isin(truth["image"])]
    if len(only_truth) or len(only_meta):
        raise ValueError(
            f"{len(only_truth)} images have no metadata row ({_first(only_truth)}) and "
            f"{len(only_meta)} metadata rows have no ground truth ({_first(only_meta)})"
        )
    meta["age_approx"] = pd.to_numeric(meta["age_approx"], errors="coerce").astype(np.float64)
    table = truth.merge(meta, on="image", how="left", validate="one_to_one")
    return table[list(TABLE_COLUMNS)].reset_index(drop=True)


def labels_of(table: pd.DataFrame) -> np.ndarray:
    """Class indices (into ``CLASSES``) of a table from ``read_isic2019_tables``."""
    missing = [c for c in CLASSES if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks the class columns {missing}")
    return table[list(CLASSES)].to_numpy().argmax(axis=1)


def split_indices(
    table: pd.DataFrame, val_fraction: float = 0.2, seed: int = 42
) -> tuple[np.ndarray, np.ndarray]:
    """Lesion-aware, label-stratified train/validation split of an ISIC table.

    Images sharing a ``lesion_id`` stay on one side; an image without ``lesion_id`` is its own
    group. ``val_fraction`` is approximated by a fraction ``m/k`` (k <= 20) and the validation
    set is ``m`` of the ``k`` folds of scikit-learn's ``StratifiedGroupKFold``, which keeps each
    class's validation share close to the target (within 1 point for ISIC classes with >= 200
    images).

    Args:
        table: DataFrame with ``image``, the class columns and ``lesion_id``.
        val_fraction: Validation share, strictly between 0 and 1.
        seed: Shuffling seed.

    Returns:
        ``(train_positions, validation_positions)``: sorted row positions into ``table``.

    Raises:
        ValueError: If ``val_fraction`` is out of range or there are fewer lesions than folds.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction!r}")
    frac = Fraction(val_fraction).limit_denominator(20)
    if frac == 0 or frac == 1:
        frac = Fraction(1, 20) if frac == 0 else Fraction(19, 20)
    n_splits, n_val = frac.denominator, frac.numerator
    if "lesion_id" not in table.columns or "image" not in table.columns:
        raise ValueError("table needs the columns 'image' and 'lesion_id'")
    groups = table["lesion_id"].where(table["lesion_id"].notna(), "image:" + table["image"])
    if groups.nunique() < n_splits:
        raise ValueError(
            f"val_fraction={val_fraction} needs at least {n_splits} distinct lesions, "
            f"the table has {groups.nunique()}"
        )
    labels = labels_of(table)
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # Rare classes in small tables cannot fill every fold; the split is still valid.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        fold_tests = [test for _, test in folds.split(np.zeros(len(labels)), labels, groups)]
    val = np.sort(np.concatenate(fold_tests[:n_val]))
    train = np.setdiff1d(np.arange(len(table)), val)
    return train, val


def features(with_mask: bool) -> Features:
    """The ``datasets`` features of ``load_isic2019``'s splits."""
    spec = {
        "image_id": Value("string"),
        "image": ImageFeature(),
        "label": ClassLabel(names=list(CLASSES)),
        "age_approx": Value("float64"),
        "anatom_site_general": Value("string"),
        "lesion_id": Value("string"),
        "sex": Value("string"),
    }
    if with_mask:
        spec["mask"] = ImageFeature()
    return Features(spec)


def _none_for_nan(values: pd.Series) -> list:
    return [None if pd.isna(v) else v for v in values]


def _to_dataset(table: pd.DataFrame, rows: np.ndarray, with_mask: bool) -> Dataset:
    part = table.iloc[rows]
    columns = {
        "image_id": part["image"].tolist(),
        "image": part["image_path"].tolist(),
        "label": labels_of(part).tolist(),
        "age_approx": _none_for_nan(part["age_approx"]),
        "anatom_site_general": _none_for_nan(part["anatom_site_general"]),
        "lesion_id": _none_for_nan(part["lesion_id"]),
        "sex": _none_for_nan(part["sex"]),
    }
    if with_mask:
        columns["mask"] = _none_for_nan(part["mask_path"])
    return Dataset.from_dict(columns, features=features(with_mask))


def _drop_missing_images(table: pd.DataFrame, image_dir: Path, skip_missing: bool) -> pd.DataFrame:
    present = set(os.listdir(image_dir)) if image_dir.is_dir() else set()
    found = (table["image"] + ".jpg").isin(present)
    missing = table["image"][~found]
    if len(missing):
        message = f"{len(missing)} of {len(table)} images are missing in {image_dir}: " + _first(
            missing
        )
        if not skip_missing:
            raise FileNotFoundError(message + " (pass skip_missing=True to drop them)")
        warnings.warn(message + "; skipped", stacklevel=3)
    return table[found].reset_index(drop=True)


def load_isic2019(
    data_dir: str | Path | None = None,
    val_fraction: float = 0.2,
    seed: int = 42,
    *,
    dataset: str | None = None,
    skip_missing: bool = False,
    image_size: int | None = None,
    cache_dir: str | Path | None = None,
    num_proc: int = 1,
) -> DatasetDict:
    """Loads ISIC 2019 (or SynthDerm) as a ``DatasetDict`` with a lesion-aware split.

    Args:
        data_dir: Folder in the ISIC 2019 layout (see the module docstring).
        val_fraction: Validation share (see ``split_indices``).
        seed: Split seed.
        dataset: A Hub dataset id (or local ``datasets`` folder) used instead of ``data_dir``;
            its train split is mapped onto the same features (see ``from_hub``).
        skip_missing: Drop table rows whose image file is missing (with a warning) instead of
            raising.
        image_size: When set, images (and masks) come from a cache of frame-cropped images
            resized to this short side, built once by ``lesions.preprocess.build_cache``;
            unreadable images are dropped with a warning and listed in the cache report.
        cache_dir: Where that cache lives (default ``data_dir/.cache/short<image_size>``).
        num_proc: Processes used to build the cache.

    Returns:
        ``DatasetDict`` with ``train`` and ``validation``: ``image_id``, ``image`` (lazily
        decoded ``datasets.Image``), ``label`` (``ClassLabel`` over ``CLASSES``), ``age_approx``,
        ``anatom_site_general``, ``lesion_id``, ``sex`` and ``mask`` when ``masks/`` exists.

    Raises:
        ValueError: If neither or both of ``data_dir`` and ``dataset`` are given, or on bad tables.
        FileNotFoundError: If images are missing and ``skip_missing`` is false.
        OSError: If a Hub dataset cannot be loaded (for example offline).
    """
    if (data_dir is None) == (dataset is None):
        raise ValueError("pass exactly one of data_dir (ISIC folder) and dataset (Hub id)")
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8
    ):
        raise ValueError(f"image_size must be an integer >= 8, got {image_size!r}")
    if dataset is not None:
        return from_hub(dataset, val_fraction, seed)

    data_dir = Path(data_dir)
    table = read_isic2019_tables(data_dir)
    image_dir = data_dir / IMAGE_DIR
    table = _drop_missing_images(table, image_dir, skip_missing)
    if table.empty:
        raise ValueError(f"no images to load from {data_dir}")
    table["image_path"] = [str(image_dir / f"{i}.jpg") for i in table["image"]]
    mask_dir = data_dir / MASK_DIR
    with_mask = mask_dir.is_dir()
    if with_mask:
        present = set(os.listdir(mask_dir))
        table["mask_path"] = [
            str(mask_dir / f"{i}{MASK_SUFFIX}") if f"{i}{MASK_SUFFIX}" in present else None
            for i in table["image"]
        ]

    if image_size is not None:
        from lesions.preprocess import build_cache

        cache = Path(cache_dir) if cache_dir else data_dir / ".cache" / f"short{image_size}"
        sources = zip(
            table["image"],
            table["image_path"],
            table["mask_path"] if with_mask else [None] * len(table),
            strict=True,
        )
        report = build_cache(sources, cache, size=image_size, num_proc=num_proc)
        if report.skipped:
            warnings.warn(
                f"{len(report.skipped)} unreadable images skipped ({_first(report.skipped)}); "
                f"reasons in {report.report_path}",
                stacklevel=2,
            )
        table = table[table["image"].isin(report.entries)].reset_index(drop=True)
        table["image_path"] = [report.entries[i][0] for i in table["image"]]
        if with_mask:
            table["mask_path"] = [report.entries[i][1] for i in table["image"]]

    train, val = split_indices(table, val_fraction, seed)
    return DatasetDict(
        train=_to_dataset(table, train, with_mask),
        validation=_to_dataset(table, val, with_mask),
    )


def _hub_labels(ds: Dataset) -> list[int]:
    if "label" in ds.column_names:
        feature = ds.features["label"]
        values = list(ds["label"])
        if isinstance(feature, ClassLabel):
            values = [feature.int2str(v) for v in values]
        if all(isinstance(v, str) for v in values):
            unknown = sorted({v for v in values if v not in CLASSES})
            if unknown:
                raise ValueError(f"dataset labels {unknown} are not ISIC 2019 classes {CLASSES}")
            return [CLASSES.index(v) for v in values]
        return [int(v) for v in values]
    if all(c in ds.column_names for c in CLASSES):
        return np.asarray([list(ds[c]) for c in CLASSES]).argmax(axis=0).tolist()
    raise ValueError(
        f"dataset needs a 'label' column or one-hot columns {list(CLASSES)}; has {ds.column_names}"
    )


def from_hub(dataset: str, val_fraction: float = 0.2, seed: int = 42) -> DatasetDict:
    """Loads a Hub dataset (or a local ``datasets`` folder) and maps it onto our features.

    The dataset's ``train`` split needs an image column (the first ``datasets.Image`` feature)
    and a ``label`` column (class names, indices into ``CLASSES`` or a ``ClassLabel``) or the
    nine one-hot class columns. ``image_id`` is taken from ``image_id``, ``isic_id`` or
    ``image_name`` when present, metadata columns when present (else empty). The lesion-aware
    split of ``split_indices`` is applied.

    Raises:
        OSError: If the dataset cannot be loaded (offline, unknown id).
        ValueError: If the columns cannot be mapped.
    """
    from datasets import load_dataset

    try:
        ds = load_dataset(dataset, split="train")
    except (OSError, ConnectionError, ValueError, FileNotFoundError) as err:
        raise OSError(
            f"could not load the dataset {dataset!r} ({type(err).__name__}: {err}). The Hub may be "
            "unreachable (HF_HUB_OFFLINE / no network): pass a local ISIC 2019 folder as data_dir."
        ) from err
    image_cols = [n for n, f in ds.features.items() if isinstance(f, ImageFeature)]
    if not image_cols:
        raise ValueError(f"dataset {dataset!r} has no image column: {ds.column_names}")
    labels = _hub_labels(ds)
    id_col = next((c for c in ("image_id", "isic_id", "image_name") if c in ds.column_names), None)
    ids = list(ds[id_col]) if id_col else [f"{dataset}/{i}" for i in range(len(ds))]
    meta = {c: list(ds[c]) if c in ds.column_names else [None] * len(ds) for c in METADATA_COLUMNS}
    table = pd.DataFrame({"image": ids, **meta})
    onehot = np.eye(len(CLASSES), dtype=np.int64)[labels]
    for k, name in enumerate(CLASSES):
        table[name] = onehot[:, k]
    train, val = split_indices(table, val_fraction, seed)

    images = ds.select_columns([image_cols[0]]).rename_column(image_cols[0], "image")
    images = images.cast_column("image", ImageFeature())
    columns = {
        "image_id": [str(i) for i in ids],
        "label": labels,
        "age_approx": [None if pd.isna(v) else float(v) for v in table["age_approx"]],
        **{c: _none_for_nan(table[c]) for c in ("anatom_site_general", "lesion_id", "sex")},
    }

    meta_features = Features({k: v for k, v in features(False).items() if k != "image"})
    metadata = Dataset.from_dict(columns, features=meta_features)
    merged = concatenate_datasets([images, metadata], axis=1)
    merged = merged.select_columns(list(features(False))).cast(features(False))

    return DatasetDict(train=merged.select(train), validation=merged.select(val))
