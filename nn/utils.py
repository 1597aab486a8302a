"""Training utilities, as `torch.nn.utils`: `clip_grad_norm_`.

`import nn; nn.utils.clip_grad_norm_(model.parameters(), 1.0)`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from autograd import Tensor

__all__ = ["clip_grad_norm_"]


def clip_grad_norm_(
    parameters: Tensor | Iterable[Tensor],
    max_norm: float,
    norm_type: float = 2.0,
    error_if_nonfinite: bool = False,
) -> Tensor:
    """Scale the gradients of `parameters` in place so that their joint norm is at most
    `max_norm`, as `torch.nn.utils.clip_grad_norm_`.

    The total norm is the `norm_type`-norm of all gradients taken together (the norm of the
    per-parameter norms; `float("inf")` for the largest absolute value); parameters whose
    `.grad` is None are skipped. Every gradient is multiplied by
    min(1, max_norm / (total + 1e-6)). Returns the total norm BEFORE clipping, as a 0-d
    Tensor (the gradients' dtype; 0.0 when no parameter has a gradient). With
    `error_if_nonfinite=True` a NaN or infinite total raises RuntimeError instead.
    """
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad for p in params if p.grad is not None]
    norm_type = float(norm_type)
    if not norm_type > 0:
        raise ValueError(f"clip_grad_norm_: norm_type must be positive or inf, got {norm_type}")
    if not grads:
        return Tensor(0.0)
    dtype = grads[0].dtype
    if math.isinf(norm_type):
        norms = np.array([np.max(np.abs(g)) if g.size else 0.0 for g in grads])
        total = float(norms.max())
    else:
        # per-parameter norms in float64 (no overflow of a float32 sum of squares), then
        # the norm of those norms
        norms = np.array(
            [np.sum(np.abs(g.astype(np.float64, copy=False)) ** norm_type) for g in grads]
        )
        total = float(np.sum(norms) ** (1.0 / norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"clip_grad_norm_: the total norm of order {norm_type} of the gradients is "
            f"{total}; set error_if_nonfinite=False to clip anyway"
        )
    coefficient = max_norm / (total + 1e-6)
    if not coefficient >= 1.0:  # (a NaN total makes the gradients NaN, as in PyTorch)
        for g in grads:
            g *= coefficient
    return Tensor(np.asarray(total, dtype=dtype))
