"""Score-CAM, exact and fast.

Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural Networks",
CVPR Workshops 2020. Each channel ``A^k`` of the layer, upsampled to the input size and min-max
scaled to [0, 1], masks the input; the class score of the masked input weights the channel:

    H^k  = (up(A^k) - min) / (max - min)
    s_k  = Y^c(X * H^k)
    w_k  = softmax_k(s_k)
    L^c  = ReLU(sum_k w_k A^k)

The score is the raw logit and the weights its softmax over channels, as in pytorch-grad-cam
(the test oracle); the paper's reference code uses the softmax probability instead.

``mode="exact"`` scores every channel. It batches masked forwards under ``inference_mode`` and
scores identical masks once. Bilinear upsampling is a convex combination of the low-resolution
values, so it commutes with positive affine maps, and the min-max scaling removes them: channels
equal up to ``a * A + b`` (``a > 0``) give the same mask. Keys are therefore the min-max scaled
low-resolution maps, rounded to 2^-20: constant channels (dead ReLU channels are common in
``layer4``) all give the all-zero mask, and channels active in a single cell give one of
``h * w`` one-hot masks. The masked passes run on a copy of the model whose BatchNorm layers
are folded into the convolutions they follow (``torch.nn.utils.fusion.fuse_conv_bn_eval``), kept
only if its logits match the model's on the first masked image; the caller's model is never
touched. Both change the result only by float rounding. (``torch.fx`` fusion is not used: its
tracer patches ``nn.Module.__call__`` for every thread, which would break forward passes that
other threads run on the same model meanwhile.)

``mode="fast"`` (the default) scores only the ``top_k`` channels with the largest Grad-CAM
contribution ``mean(dY/dA^k) * mean(A^k)`` (one backward pass), with masked passes at ``scale``
times the input resolution but never below ``min_side`` pixels (below ~112 px layer4 collapses to
1-2 cells and the scores stop tracking the full-resolution ones); the other channels get weight
0. Fidelity to exact is measured in ``bench/explain_latency.py`` and BENCHMARKS.md.
"""

from __future__ import annotations

import copy
import itertools
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from explain.base import BaseCAM
from explain.capture import capture, resolve_targets

MODES = ("fast", "exact")


class ScoreCAM(BaseCAM):
    """Score-CAM with batched masked forwards.

    Args:
        model: Classifier in eval mode (never modified).
        layer: Module path or submodule.
        mode: ``"fast"`` (top-k channels at reduced resolution) or ``"exact"`` (every channel).
        batch_size: Masked images per forward pass.
        top_k: Channels scored in fast mode.
        scale: Input-resolution factor of the masked passes in fast mode, in (0, 1].
        min_side: Smallest side, in pixels, of the masked passes in fast mode (never above the
            input's own size).
    """

    name = "scorecam"

    def __init__(
        self,
        model: nn.Module,
        layer: str | nn.Module = "layer4",
        *,
        mode: str = "fast",
        batch_size: int = 16,
        top_k: int = 48,
        scale: float = 0.5,
        min_side: int = 112,
    ) -> None:
        super().__init__(model, layer)
        if mode not in MODES:
            raise ValueError(f"unknown Score-CAM mode {mode!r}; valid modes are {list(MODES)}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive int, got {top_k!r}")
        if not 0 < scale <= 1:
            raise ValueError(f"scale must be in (0, 1], got {scale!r}")
        if not isinstance(min_side, int) or min_side < 1:
            raise ValueError(f"min_side must be a positive int, got {min_side!r}")
        self.mode = mode
        self.batch_size = batch_size
        self.top_k = top_k
        self.scale = scale
        self.min_side = min_side

    def layer_map(
        self, x: Tensor, target: int | list[int] | Tensor | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Score-weighted activations at the layer's resolution, logits and targets."""
        with capture(self.model, self.layer) as cap:
            if self.mode == "exact":
                logits = cap.forward(x, grad=False)
                targets = resolve_targets(logits, target)
                acts = cap.activations.float()
                importance = None
            else:
                logits = cap.forward(x)
                targets = resolve_targets(logits, target)
                grads = cap.gradients(logits, targets).float()
                acts = cap.activations.detach().float()
                importance = grads.mean(dim=(2, 3)) * acts.mean(dim=(2, 3))
        size = [min(s, max(self.min_side, round(s * self.scale))) for s in x.shape[-2:]]
        if importance is not None and size != list(x.shape[-2:]):
            x = F.interpolate(x.float(), size=size, mode="bilinear", antialias=True).to(x.dtype)
        scorer = self.model if importance is not None else _fused_for_inference(self.model)
        cams = []
        for b in range(x.shape[0]):
            channels = torch.arange(acts.shape[1], device=acts.device)
            if importance is not None:
                k = min(self.top_k, acts.shape[1])
                channels = importance[b].topk(k).indices
            scores = self._channel_scores(x[b], acts[b, channels], int(targets[b]), scorer)
            weights = torch.softmax(scores, dim=0)
            cams.append((weights[:, None, None] * acts[b, channels]).sum(dim=0))
        return torch.stack(cams), logits, targets

    def _channel_scores(
        self, image: Tensor, maps: Tensor, target: int, scorer: nn.Module | None = None
    ) -> Tensor:
        """Target logit of ``image`` masked by each of ``maps`` (K, h, w); identical masks once.

        ``scorer`` runs the masked passes (default: the model itself).
        """
        scorer = self.model if scorer is None else scorer
        flat = maps.flatten(1)
        lo = flat.min(dim=1, keepdim=True).values
        span = flat.max(dim=1, keepdim=True).values - lo
        scaled = torch.where(span > 0, (flat - lo) / span.clamp_min(1e-30), torch.zeros_like(flat))
        # on a 2^-20 grid (~1e-6, a few float32 roundings of the scaling) so that a * A + b and A,
        # computed in float32, meet; the scaled map on that grid is also the mask's source
        unique, inverse = torch.unique(torch.round(scaled * 2**20), dim=0, return_inverse=True)
        unique = (unique / 2**20).view(-1, *maps.shape[1:])
        scores = []
        with torch.inference_mode():
            for start in range(0, unique.shape[0], self.batch_size):
                masks = F.interpolate(
                    unique[start : start + self.batch_size, None],
                    size=image.shape[-2:],
                    mode="bilinear",
                    align_corners=True,
                )
                lo = masks.amin(dim=(2, 3), keepdim=True)
                hi = masks.amax(dim=(2, 3), keepdim=True)
                masks = (masks - lo) / (hi - lo + 1e-8)
                # channels_last input (the model's weights are left as they are): oneDNN and
                # cuDNN pick faster NHWC convolutions, ~1.4x on a 2-vCPU CPU for ResNet-50.
                masked = (image[None] * masks.to(image.dtype)).contiguous(
                    memory_format=torch.channels_last
                )
                logits = scorer(masked)
                if start == 0 and scorer is not self.model:
                    reference = self.model(masked[:1])
                    if not torch.allclose(logits[:1], reference, rtol=1e-3, atol=1e-3):
                        scorer, logits = self.model, self.model(masked)  # folding changed it
                scores.append(logits[:, target].float())
        return torch.cat(scores)[inverse]


def _fused_for_inference(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with each BatchNorm2d folded into the Conv2d registered just before it.

    Pairs are found by registration order (conv, then a BatchNorm over its output channels, as in
    ``convN``/``bnN`` attributes or ``Sequential(conv, bn)``); registration order need not be data
    flow, so callers check the copy's outputs (see :meth:`ScoreCAM._channel_scores`). The copy
    carries no hooks: every hook dictionary is swapped for an empty one through ``deepcopy``'s memo,
    so hooks that other threads add or remove meanwhile are never iterated. Models that cannot be
    deep-copied are returned as they are.
    """
    fresh = {
        id(value): OrderedDict()
        for module in model.modules()
        for name, value in vars(module).items()
        if "hooks" in name and isinstance(value, dict)
    }
    try:
        fused = copy.deepcopy(model, fresh)
    except (TypeError, RuntimeError, copy.Error):  # unpicklable attributes, non-leaf tensors...
        return model
    for parent in list(fused.modules()):
        for (conv_name, conv), (bn_name, bn) in itertools.pairwise(list(parent.named_children())):
            if (
                type(conv) is nn.Conv2d
                and type(bn) is nn.BatchNorm2d
                and bn.num_features == conv.out_channels
                and bn.track_running_stats
            ):
                setattr(parent, conv_name, fuse_conv_bn_eval(conv, bn))
                setattr(parent, bn_name, nn.Identity())
    return fused
