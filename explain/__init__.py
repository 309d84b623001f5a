"""CAM engine: Grad-CAM (Captum), Grad-CAM++ and Score-CAM at any ResNet stage, thread-safe.

Public entry points: :class:`Explainer` / :class:`Explanation`, the method classes and
:func:`make_method`; ``explain.metrics``, ``explain.text``, ``explain.overlay`` and
``explain.evaluate`` for the rest.
"""

from explain.base import BaseCAM, CAMResult
from explain.explainer import METHOD_NAMES, METHODS, Explainer, Explanation, make_method
from explain.gradcam import GradCAM
from explain.gradcampp import GradCAMPlusPlus
from explain.scorecam import ScoreCAM

__all__ = [
    "METHODS",
    "METHOD_NAMES",
    "BaseCAM",
    "CAMResult",
    "Explainer",
    "Explanation",
    "GradCAM",
    "GradCAMPlusPlus",
    "ScoreCAM",
    "make_method",
]
