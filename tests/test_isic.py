"""ISIC 2019 tables, validation errors, the lesion-aware split and DatasetDict loading."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from datasets import ClassLabel, Dataset, Features, Value
from datasets import Image as ImageFeature
from PIL import Image

from lesions.isic import (
    CLASSES,
    labels_of,
    load_isic2019,
    read_isic2019_tables,
    split_indices,
)

GT = "ISIC_2019_Training_GroundTruth.csv"
META = "ISIC_2019_Training_Metadata.csv"


@pytest.fixture(scope="module")
def real_table(isic_tables_dir):
    return read_isic2019_tables(isic_tables_dir)


@pytest.fixture(scope="module")
def real_split(real_table):
    return split_indices(real_table, 0.2, seed=42)


def test_real_tables_shape_and_counts(real_table):
    assert real_table.shape == (25331, 14)
    assert list(real_table.columns[:10]) == ["image", *CLASSES]
    counts = real_table[list(CLASSES)].sum().to_dict()
    assert counts == {
        "MEL": 4522,
        "NV": 12875,
        "BCC": 3323,
        "AK": 867,
        "BKL": 2624,
        "DF": 239,
        "VASC": 253,
        "SCC": 628,
        "UNK": 0,
    }
    assert real_table["image"].is_unique


def test_real_split_is_lesion_aware_and_stratified(real_table, real_split):
    train, val = real_split
    assert len(train) + len(val) == len(real_table)
    assert not np.intersect1d(train, val).size
    assert 0.19 <= len(val) / len(real_table) <= 0.21
    ids = real_table["lesion_id"]
    assert not set(ids.iloc[train].dropna()) & set(ids.iloc[val].dropna())
    labels = labels_of(real_table)
    for k, name in enumerate(CLASSES):
        total = int((labels == k).sum())
        if total >= 200:
            share = (labels[val] == k).sum() / total
            assert abs(share - 0.2) <= 0.01, (name, share)


def test_split_is_deterministic_and_seeded(real_table, real_split):
    small = real_table.iloc[:3000].reset_index(drop=True)
    first = split_indices(small, 0.25, seed=1)
    again = split_indices(small, 0.25, seed=1)
    other = split_indices(small, 0.25, seed=2)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[1], other[1])
    assert 0.22 <= len(first[1]) / len(small) <= 0.28


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_rejects_bad_fractions(real_table, fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        split_indices(real_table.iloc[:50], fraction)


def _write_tables(folder, truth_rows, meta_rows=None):
    folder.mkdir(parents=True, exist_ok=True)
    truth = pd.DataFrame(truth_rows)
    truth.to_csv(folder / GT, index=False)
    if meta_rows is None:
        meta_rows = {
            "image": truth["image"],
            "age_approx": 50,
            "anatom_site_general": "head/neck",
            "lesion_id": None,
            "sex": "male",
        }
    pd.DataFrame(meta_rows).to_csv(folder / META, index=False)
    return folder


def _onehot(image, label, value=1):
    return {"image": image, **{c: (value if c == label else 0) for c in CLASSES}}


def test_accepts_float_one_hot(tmp_path):
    rows = [
        {"image": "ISIC_1", **{c: float(c == "MEL") for c in CLASSES}},
        {"image": "ISIC_2", **{c: float(c == "SCC") for c in CLASSES}},
    ]
    table = read_isic2019_tables(_write_tables(tmp_path, rows))
    assert labels_of(table).tolist() == [0, 7]
    assert table["MEL"].dtype == np.int64


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([_onehot("ISIC_1", "NV"), _onehot("ISIC_1", "MEL")], r"1 duplicate images: ISIC_1"),
        (
            [_onehot("ISIC_1", "NV"), {"image": "ISIC_2", **dict.fromkeys(CLASSES, 0)}],
            r"1 rows have zero or several positive classes: ISIC_2",
        ),
        (
            [_onehot("ISIC_1", "NV"), {**_onehot("ISIC_3", "NV"), "MEL": 1}],
            r"1 rows have zero or several positive classes: ISIC_3",
        ),
        ([_onehot("ISIC_1", "NV", value=2)], r"1 rows have class values other than 0/1: ISIC_1"),
        ([{**_onehot("ISIC_1", "NV"), "EXTRA": 0}], r"unknown columns \['EXTRA'\]"),
        (
            [{k: v for k, v in _onehot("ISIC_1", "NV").items() if k != "UNK"}],
            r"missing columns \['UNK'\]",
        ),
    ],
)
def test_malformed_ground_truth(tmp_path, rows, message):
    with pytest.raises(ValueError, match=message):
        read_isic2019_tables(_write_tables(tmp_path, rows))


def test_many_bad_rows_are_counted_and_listed(tmp_path):
    rows = [{"image": f"ISIC_{i}", **dict.fromkeys(CLASSES, 0)} for i in range(9)]
    with pytest.raises(ValueError, match=r"9 rows .*ISIC_0, ISIC_1.*\(\+4 more\)"):
        read_isic2019_tables(_write_tables(tmp_path, rows))


def test_tables_must_cover_the_same_images(tmp_path):
    meta = {"image": ["ISIC_1", "ISIC_9"], "age_approx": [50, 60]}
    meta.update({"anatom_site_general": None, "lesion_id": None, "sex": None})
    folder = _write_tables(tmp_path, [_onehot("ISIC_1", "NV"), _onehot("ISIC_2", "NV")], meta)
    with pytest.raises(ValueError, match=r"1 images have no metadata row \(ISIC_2\)"):
        read_isic2019_tables(folder)


def test_missing_table(tmp_path):
    with pytest.raises(FileNotFoundError, match=GT):
        read_isic2019_tables(tmp_path)


@pytest.fixture(scope="module")
def real_subset_dir(isic_tables_dir, tmp_path_factory, real_table):
    """The real tables with tiny JPEGs for 60 real image ids (several photos per lesion)."""
    root = tmp_path_factory.mktemp("isic_real")
    shutil.copy(isic_tables_dir / GT, root / GT)
    shutil.copy(isic_tables_dir / META, root / META)
    repeated = real_table["lesion_id"].value_counts()
    repeated = repeated[repeated.between(2, 4)].index[:15]
    chosen = pd.concat(
        [
            real_table[real_table["lesion_id"].isin(repeated)],
            real_table[real_table["lesion_id"].isna()].head(10),
        ]
    ).head(60)
    (root / "ISIC_2019_Training_Input").mkdir()
    for i, image_id in enumerate(chosen["image"]):
        Image.new("RGB", (24, 16), (i * 4, 100, 50)).save(
            root / "ISIC_2019_Training_Input" / f"{image_id}.jpg"
        )
    return root, chosen


def test_missing_images_raise_with_count(real_subset_dir):
    root, chosen = real_subset_dir
    missing = 25331 - len(chosen)
    with pytest.raises(FileNotFoundError, match=rf"{missing} of 25331 images are missing"):
        load_isic2019(root)


def test_skip_missing_loads_the_present_images(real_subset_dir):
    root, chosen = real_subset_dir
    with pytest.warns(UserWarning, match=rf"{25331 - len(chosen)} of 25331 images are missing"):
        data = load_isic2019(root, val_fraction=0.2, seed=0, skip_missing=True)
    ids = list(data["train"]["image_id"]) + list(data["validation"]["image_id"])
    assert sorted(ids) == sorted(chosen["image"])
    assert "mask" not in data["train"].column_names
    row = data["train"][0]
    assert row["image"].size == (24, 16)
    expected = chosen.set_index("image").loc[row["image_id"]]
    assert CLASSES[row["label"]] == CLASSES[int(np.argmax(expected[list(CLASSES)]))]
    train_lesions = set(data["train"]["lesion_id"]) - {None}
    assert not train_lesions & set(data["validation"]["lesion_id"])


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="exactly one of data_dir"):
        load_isic2019()
    with pytest.raises(ValueError, match="exactly one of data_dir"):
        load_isic2019(tmp_path, dataset="someone/isic")
    with pytest.raises(ValueError, match="image_size"):
        load_isic2019(tmp_path, image_size=0)


def test_hub_dataset_offline_gives_a_clear_error():
    with pytest.raises(OSError, match="Hub may be unreachable"):
        load_isic2019(dataset="dermxai-nonexistent/isic2019-for-tests")


def test_local_datasets_folder_maps_onto_our_features(tmp_path):
    n = 20
    names = ["NV", "MEL", "BCC", "BKL"]
    source = Dataset.from_dict(
        {
            "img": [Image.new("RGB", (10, 12), (i * 10, 0, 0)) for i in range(n)],
            "label": [i % 4 for i in range(n)],
            "isic_id": [f"ISIC_{i:07d}" for i in range(n)],
            "sex": ["male" if i % 2 else "female" for i in range(n)],
        },
        features=Features(
            {
                "img": ImageFeature(),
                "label": ClassLabel(names=names),
                "isic_id": Value("string"),
                "sex": Value("string"),
            }
        ),
    )
    (tmp_path / "hub").mkdir()
    source.to_parquet(tmp_path / "hub" / "train.parquet")
    data = load_isic2019(dataset=str(tmp_path / "hub"), val_fraction=0.25, seed=0)
    assert len(data["train"]) + len(data["validation"]) == n
    row = data["validation"][0]
    i = int(row["image_id"][-7:])
    assert CLASSES[row["label"]] == names[i % 4]
    assert row["image"].size == (10, 12) and row["image"].getpixel((0, 0))[0] == i * 10
    assert row["sex"] == ("male" if i % 2 else "female")
    assert row["lesion_id"] is None and row["age_approx"] is None
    assert data["train"].features["label"].names == list(CLASSES)
