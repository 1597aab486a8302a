"""Matrix products with numpy's rules: 1-D, 2-D and batched N-D (batch axes broadcast)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import grad_mode
from ..tensor import Tensor
from .elementwise import _each_others, operands

_from_op = Tensor._from_op


def _matmul_nd(a: Tensor, b: Tensor, data: np.ndarray) -> Tensor:
    """`data = a.data @ b.data`, both operands of ndim >= 2; batch axes broadcast and the
    engine sums them back."""

    def backward(g: Tensor, out: Tensor) -> tuple:
        if not grad_mode._grad_enabled:  # plain backward: the same products in numpy
            wrap = Tensor._from_array
            ga = wrap(g.data @ b.data.swapaxes(-1, -2)) if a.requires_grad else None
            gb = wrap(a.data.swapaxes(-1, -2) @ g.data) if b.requires_grad else None
            return ga, gb
        ga = g @ b.swapaxes(-1, -2) if a.requires_grad else None
        gb = a.swapaxes(-1, -2) @ g if b.requires_grad else None
        return ga, gb

    return _from_op(data, (a, b), "matmul", backward, saved=_each_others(a, b))


def matmul(a: Any, b: Any) -> Tensor:
    a, b = operands(a, b)  # an ndarray on either side becomes a Tensor
    a_ndim, b_ndim = a.data.ndim, b.data.ndim
    if a_ndim == 0 or b_ndim == 0:
        raise ValueError(f"matmul: 0-d operand, shapes {a.shape} and {b.shape}")
    try:
        data = np.matmul(a.data, b.data)  # numpy checks inner and batch axes
    except ValueError:
        inner_b = b.shape[-2] if b_ndim > 1 else b.shape[0]
        raise ValueError(
            f"matmul: shapes {a.shape} and {b.shape} are not aligned "
            f"({a.shape[-1]} != {inner_b} or batch axes differ)"
        ) from None
    if a_ndim >= 2 and b_ndim >= 2:
        return _matmul_nd(a, b, data)
    # 1-D operands: promote to a row (a) or a column (b), then drop the added axis
    a2 = a.reshape(1, -1) if a_ndim == 1 else a
    b2 = b.reshape(-1, 1) if b_ndim == 1 else b
    out = _matmul_nd(a2, b2, np.matmul(a2.data, b2.data))
    if a_ndim == 1 and b_ndim == 1:
        return out.reshape(())
    return out.squeeze(-1) if b_ndim == 1 else out.squeeze(-2)
