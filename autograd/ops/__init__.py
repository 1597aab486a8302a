"""The ops, one file per family. Each op computes its output with numpy and defines its
`backward(g, out)` closure right beside it; `install()` binds them as Tensor methods."""

from . import elementwise, index, linalg, reduce, shape

__all__ = ["elementwise", "index", "linalg", "reduce", "shape"]
