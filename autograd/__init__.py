"""npgrad's engine: a numpy Tensor that records its graph and differentiates it."""

from .allocator import tune_malloc as _tune_malloc
from .methods import install as _install

_install()
_tune_malloc()  # freed arrays' memory stays for the next step (glibc; see autograd.allocator)

from . import functional  # noqa: E402
from .checkpoint import checkpoint  # noqa: E402
from .creation import (  # noqa: E402
    arange,
    eye,
    full,
    generator,
    manual_seed,
    ones,
    ones_like,
    rand,
    randn,
    tensor,
    zeros,
    zeros_like,
)
from .function import Function, FunctionCtx  # noqa: E402
from .grad_mode import (  # noqa: E402
    detect_anomaly,
    enable_grad,
    get_default_dtype,
    is_anomaly_enabled,
    is_grad_enabled,
    no_grad,
    retain_grads,
    scope,
    set_default_dtype,
    set_detect_anomaly,
    set_grad_enabled,
)
from .gradcheck import gradcheck, gradgradcheck  # noqa: E402
from .ops.elementwise import maximum, minimum, where  # noqa: E402
from .ops.linalg import einsum, tril, triu  # noqa: E402
from .ops.shape import cat, stack  # noqa: E402
from .parallel import get_num_threads, set_num_threads  # noqa: E402
from .tensor import (  # noqa: E402
    ReleasedTensor,
    RemovableHandle,
    Tensor,
    grad,
    once_differentiable,
    topological_order,
)

__all__ = [
    "Tensor",
    "get_num_threads",
    "set_num_threads",
    "Function",
    "FunctionCtx",
    "detect_anomaly",
    "set_detect_anomaly",
    "is_anomaly_enabled",
    "RemovableHandle",
    "ReleasedTensor",
    "tensor",
    "no_grad",
    "enable_grad",
    "is_grad_enabled",
    "set_grad_enabled",
    "zeros",
    "ones",
    "full",
    "zeros_like",
    "ones_like",
    "randn",
    "rand",
    "arange",
    "eye",
    "cat",
    "stack",
    "where",
    "maximum",
    "minimum",
    "grad",
    "gradcheck",
    "gradgradcheck",
    "set_default_dtype",
    "get_default_dtype",
    "manual_seed",
    "generator",
    "scope",
    "retain_grads",
    "once_differentiable",
    "topological_order",
    "functional",
    "checkpoint",
    "draw_graph",
    "save_graph",
    "tril",
    "triu",
    "einsum",
]


def __getattr__(name: str):  # noqa: ANN202
    # the drawing pulls in the graphviz package: import it only when asked for
    if name in ("draw_graph", "save_graph"):
        from . import viz

        return getattr(viz, name)
    raise AttributeError(f"module 'autograd' has no attribute {name!r}")
