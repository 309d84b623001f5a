"""Shared test setup: offline, deterministic, single-threaded torch.

Fixtures that belong to one module live in that module's test file; fixtures shared by
several areas live here.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest
import torch

torch.manual_seed(0)
# One intra-op thread: on a 2-core runner the tiny test models run several times faster, and
# results do not depend on the runner's core count.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def isic_tables_dir():
    """The real ISIC 2019 ground-truth and metadata tables (no images)."""
    from pathlib import Path

    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "shared" / "isic2019", here.parent / "shared" / "isic2019"):
        if (candidate / "ISIC_2019_Training_GroundTruth.csv").exists():
            return candidate
    pytest.fail(
        "ISIC 2019 tables not found in ../shared/isic2019 (CI copies shared/ beside the clone)"
    )
