"""Per-call capture of one layer's activations and gradients.

Peer libraries keep hooks and activations on long-lived objects, so two threads that explain
different images with one shared model overwrite each other's tensors. Here every call opens its
own :func:`capture` context: the hook is registered on entry, records only the forward pass that
*this* call starts in *this* thread, and is removed in ``finally``. Gradients come from
:func:`torch.autograd.grad`, so no ``.grad`` attribute of the caller's parameters is ever touched,
and the caller's model is never changed (train/eval flag, device, dtype, ``requires_grad``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

STAGES = ("layer1", "layer2", "layer3", "layer4")


def resolve_layer(model: nn.Module, layer: str | nn.Module) -> nn.Module:
    """Find a layer of ``model`` by module path (``"layer4"``, ``"layer3.5.conv2"``) or identity.

    Args:
        model: The network.
        layer: A dotted module path as in ``model.named_modules()``, or a submodule of ``model``.

    Returns:
        The submodule.

    Raises:
        TypeError: If ``model`` is not an ``nn.Module`` or ``layer`` is neither a str nor a module.
        ValueError: If no such layer exists; the message lists the valid stage names.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(layer, nn.Module):
        if any(m is layer for m in model.modules()):
            return layer
        raise ValueError("layer module is not a submodule of the model")
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module path (str) or module, got {type(layer).__name__}")
    try:
        module = model.get_submodule(layer) if layer else None
    except AttributeError:
        module = None
    if module is None or module is model:
        stages = [name for name in STAGES if hasattr(model, name)]
        raise ValueError(
            f"unknown layer {layer!r}; valid stages are {stages} "
            "or any module path from model.named_modules(), e.g. 'layer4.2.conv3'"
        )
    return module


def model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device and floating dtype of the model's first parameter (CPU/float32 if none)."""
    for param in model.parameters():
        return param.device, param.dtype
    return torch.device("cpu"), torch.float32


def check_eval_mode(model: nn.Module) -> None:
    """Refuse a model in training mode instead of silently switching it to eval.

    A forward pass in training mode updates BatchNorm running statistics (changing the caller's
    model) and makes explanations depend on the batch, so the caller must call ``model.eval()``.

    Raises:
        ValueError: If ``model.training`` is True.
    """
    if model.training:
        raise ValueError(
            "model is in training mode; call model.eval() before explaining "
            "(explainers never change the caller's model)"
        )


def prepare_input(model: nn.Module, x: Tensor) -> Tensor:
    """Validate a batch and move a detached copy to the model's device and dtype.

    Raises:
        TypeError: If ``x`` is not a floating tensor.
        ValueError: If ``x`` is not shaped (batch, channels, height, width).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"input must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"input must be (batch, channels, height, width), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"input must be a floating tensor, got {x.dtype}")
    device, dtype = model_device_dtype(model)
    return x.detach().to(device=device, dtype=dtype)


class Capture:
    """What one call recorded: the hooked layer's output for the forward pass it ran.

    Attributes:
        activations: The layer output of the last :meth:`forward` (part of the autograd graph).
    """

    def __init__(self, model: nn.Module, route: nn.Module | None) -> None:
        self._model = model
        self._route = route
        self._owner = threading.get_ident()
        self._armed = False
        self.activations: Tensor | None = None

    def hook(self, module: nn.Module, args: object, output: object) -> Tensor | None:
        """Forward hook: records the output of this call's own forward pass, ignores others."""
        if not self._armed or threading.get_ident() != self._owner:
            return None
        if not isinstance(output, Tensor):
            raise TypeError(f"the hooked layer must output a tensor, got {type(output).__name__}")
        if self._route is not None:
            output = self._route(output)
        self.activations = output
        return output

    def forward(self, x: Tensor, *, grad: bool = True) -> Tensor:
        """Run the model, recording the layer output.

        With ``grad=True`` the input is cloned and marked ``requires_grad`` so the graph reaches
        the layer even when the caller froze every parameter (the parameters are not modified);
        with ``grad=False`` the pass runs under ``torch.inference_mode``.

        Args:
            x: A batch on the model's device and dtype.
            grad: Whether to build the autograd graph (needed for :meth:`gradients`).

        Returns:
            The logits, shaped (batch, classes).
        """
        self._armed = True
        try:
            if grad:
                with torch.inference_mode(False), torch.enable_grad():
                    logits = self._model(x.clone().requires_grad_(True))
            else:
                with torch.inference_mode():
                    logits = self._model(x)
        finally:
            self._armed = False
        if self.activations is None:
            raise RuntimeError("the hooked layer did not run during the forward pass")
        if not isinstance(logits, Tensor) or logits.ndim != 2:
            raise TypeError("the model must return logits shaped (batch, classes)")
        return logits

    def gradients(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Gradients of the target logits with respect to the recorded activations.

        Args:
            logits: Output of :meth:`forward`.
            targets: Class index per sample, shaped (batch,).

        Returns:
            d logit[target] / d activations, same shape as the activations.
        """
        if self.activations is None:
            raise RuntimeError("call forward() first")
        with torch.inference_mode(False), torch.enable_grad():
            score = logits.gather(1, targets.view(-1, 1)).sum()
            (grad,) = torch.autograd.grad(score, self.activations)
        return grad


@contextmanager
def capture(
    model: nn.Module, layer: str | nn.Module, *, route: nn.Module | None = None
) -> Iterator[Capture]:
    """Hook ``layer`` of ``model`` for the duration of one call.

    Args:
        model: The network, in eval mode.
        layer: Module path or submodule to capture.
        route: Optional per-call module the layer output is passed through (used to give Captum a
            module that only this call runs, which keeps Captum's own hooks thread-safe).

    Yields:
        A :class:`Capture` whose :meth:`Capture.forward` records this call's activations.

    Raises:
        ValueError: Unknown layer or model in training mode.
    """
    module = resolve_layer(model, layer)
    check_eval_mode(model)
    cap = Capture(model, route)
    handle = module.register_forward_hook(cap.hook)
    try:
        yield cap
    finally:
        handle.remove()
        cap.activations = None


def resolve_targets(logits: Tensor, target: int | list[int] | Tensor | None) -> Tensor:
    """Class index per sample: the prediction by default, else the given int/list/tensor.

    Raises:
        ValueError: If a target is out of range or the count does not match the batch.
        TypeError: If ``target`` has an unsupported type.
    """
    n, num_classes = logits.shape
    if target is None:
        return logits.detach().argmax(dim=1)
    if isinstance(target, bool):
        raise TypeError("target must be an int class index, not bool")
    if isinstance(target, int):
        out = torch.full((n,), target, dtype=torch.long)
    elif isinstance(target, list | tuple | Tensor):
        out = torch.as_tensor(target, dtype=torch.long).view(-1)
        if out.numel() != n:
            raise ValueError(f"got {out.numel()} targets for a batch of {n}")
    else:
        raise TypeError(f"target must be None, int, list or tensor, got {type(target).__name__}")
    if out.min() < 0 or out.max() >= num_classes:
        raise ValueError(f"target must be in [0, {num_classes}), got {out.tolist()}")
    return out.to(logits.device)
