"""Losses as Modules (`loss_fn = nn.CrossEntropyLoss(); loss = loss_fn(logits, target)`).

Each one stores its options and calls the function of the same name in `nn.functional`.
`reduction` is "mean" (default), "sum" or "none" (one loss per element / sample).
"""

from __future__ import annotations

from typing import Any

from autograd import Tensor

from . import functional as F
from .module import Module

__all__ = ["CrossEntropyLoss", "NLLLoss", "MSELoss", "BCEWithLogitsLoss"]

_REDUCTIONS = ("mean", "sum", "none")


class _Loss(Module):
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f"{type(self).__name__}: reduction must be one of {_REDUCTIONS}, got {reduction!r}"
            )
        self.reduction = reduction

    def extra_repr(self) -> str:
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of logits `(N, C)` against int class targets `(N,)`.

    `label_smoothing` mixes the one-hot target with the uniform distribution, as PyTorch.
    """

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0) -> None:
        super().__init__(reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(
                f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing}"
            )
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, target: Any) -> Tensor:
        return F.cross_entropy(
            logits, target, reduction=self.reduction, label_smoothing=self.label_smoothing
        )

    def extra_repr(self) -> str:
        parts = [super().extra_repr()] if self.reduction != "mean" else []
        if self.label_smoothing:
            parts.append(f"label_smoothing={self.label_smoothing}")
        return ", ".join(parts)


class NLLLoss(_Loss):
    """Negative log-likelihood of log-probabilities `(N, C)` at int class targets `(N,)`."""

    def forward(self, log_probs: Tensor, target: Any) -> Tensor:
        return F.nll_loss(log_probs, target, reduction=self.reduction)


class MSELoss(_Loss):
    """Mean squared error between `input` and `target` of the same shape."""

    def forward(self, input: Tensor, target: Any) -> Tensor:  # noqa: A002 (PyTorch's name)
        return F.mse_loss(input, target, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy of logits against targets in [0, 1], computed stably from the
    logits (no sigmoid then log)."""

    def forward(self, logits: Tensor, target: Any) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits, target, reduction=self.reduction)
