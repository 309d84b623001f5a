"""The Hub artifact: export, loading, calibration and model card of the DermXAI classifier.

The exported folder is timm's Hub format, which transformers' ``TimmWrapper`` also loads:
``config.json`` + ``model.safetensors`` + ``calibration.json`` + ``README.md`` (the card).
The temperature is baked into the classifier, so raw logits of a saved model are calibrated.
"""

from __future__ import annotations

from pathlib import Path

DEMO_DIR: Path = Path(__file__).resolve().parent / "demo"
"""The embedded demo model served by the Space when ``MODEL_ID`` is not set."""

__all__ = ["DEMO_DIR"]
