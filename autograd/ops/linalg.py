"""Matrix products with numpy's rules: 1-D, 2-D and batched N-D (batch axes broadcast)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..tensor import Tensor
from .elementwise import operands

_from_op = Tensor._from_op


def _matmul_nd(a: Tensor, b: Tensor) -> Tensor:
    """Both operands have ndim >= 2; batch axes broadcast and the engine sums them back."""

    def backward(g: Tensor, out: Tensor) -> tuple:
        ga = g @ b.swapaxes(-1, -2) if a.requires_grad else None
        gb = a.swapaxes(-1, -2) @ g if b.requires_grad else None
        return ga, gb

    return _from_op(np.matmul(a.data, b.data), (a, b), "matmul", backward)


def matmul(a: Any, b: Any) -> Tensor:
    a, b = operands(a, b)  # an ndarray on either side becomes a Tensor
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: 0-d operand, shapes {a.shape} and {b.shape}")
    inner_a = a.shape[-1]
    inner_b = b.shape[-2] if b.ndim > 1 else b.shape[0]
    aligned = inner_a == inner_b
    if aligned and (a.ndim > 2 or b.ndim > 2):  # batch axes must broadcast too
        try:
            np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        except ValueError:
            aligned = False
    if not aligned:
        raise ValueError(
            f"matmul: shapes {a.shape} and {b.shape} are not aligned "
            f"({inner_a} != {inner_b} or batch axes differ)"
        )
    if a.ndim >= 2 and b.ndim >= 2:
        return _matmul_nd(a, b)
    # 1-D operands: promote to a row (a) or a column (b), then drop the added axis
    a2 = a.reshape(1, -1) if a.ndim == 1 else a
    b2 = b.reshape(-1, 1) if b.ndim == 1 else b
    out = _matmul_nd(a2, b2)
    if a.ndim == 1 and b.ndim == 1:
        return out.reshape(())
    return out.squeeze(-1) if b.ndim == 1 else out.squeeze(-2)
