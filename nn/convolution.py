"""Convolution and pooling kernels: conv2d, max_pool2d, avg_pool2d (re-exported by `F`).

All three are *once differentiable*: a numpy forward and a numpy backward, whose gradients go
through `autograd.once_differentiable` (differentiating them a second time raises).

Memory layout. The API is NCHW, but conv2d computes on, and returns, **HWNC** memory: an
(N, C, H, W) view of an array stored as (H, W, N, C), channels innermost and the batch next.
The im2col matrix then has rows (h, w, n) and columns (i, j, c), so that

- the output of the matmul, rows (h, w, n) by channels, *is* the HWNC array (no copy);
- a pooling window's element (a, b) is one strided view whose contiguous runs are N*C long
  (in NHWC they would be C long: numpy's per-run overhead made the pools 3-4x slower);
- col2im adds each kernel offset's gradient onto a block of whole rows of the padded input.

numpy's ufuncs write in their inputs' memory order, so ReLU, BatchNorm (which works on the
same memory as (rows, C)) and the pools keep HWNC from one conv to the next; a CNN pays for
a layout change at its first conv (N x C x H x W: the input images) and at `flatten`.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from autograd import Tensor, once_differentiable
from autograd.parallel import (
    blas_single_threaded,
    blas_threads_settable,
    get_num_threads,
    one_blas_thread,
    parallel_for,
)

__all__ = ["conv2d", "max_pool2d", "avg_pool2d"]

# Work buffers: im2col is computed in blocks of about this many bytes, each into a buffer that
# the thread computing it reuses from call to call (col2im's products go there too). Measured
# on the benchmark CNN's second conv (batch 128, one BLAS thread): 2-4 MiB blocks take 14.0 ms
# forward and 28.0 ms backward, one whole-batch im2col (a 29 MB matrix) 16.3 and 32.6 ms.
# Not smaller: with two BLAS threads and one core busy elsewhere every matmul call waits
# for a thread hand-over, and 2 MiB blocks made a training step ~1.5x slower than 8 MiB.
# With several autograd threads the blocks are shared out, each block's copies and matmul on
# one thread (see `_run_blocks`), so that one block's copies run beside another's product;
# wherever the matmuls run on one BLAS thread the blocks are half as long, so that two
# threads' buffers take what one did (and 1 and 2 threads cut the same blocks).
_CHUNK_BYTES = 4 << 20
# col2im adds each kernel offset's gradient in bands of output rows of about this many bytes
_COL2IM_BYTES = 4 << 20
# Larger work buffers (huge batches) are allocated per call instead of being kept.
_SCRATCH_KEEP_BYTES = 16 << 20
# Below this many input channels im2col writes the transposed matrix (columns, rows): its
# copies then run along whole rows of the input instead of C elements at a time.
_TRANSPOSED_BELOW_C = 4

_local = threading.local()


def _tensor(x: Any) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def _scratch(name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A C-contiguous work array of `shape` (contents undefined), reused by later calls.

    One buffer per (name, dtype) and thread; a caller must be done with it before it asks
    for the same name again (the kernels here never nest).
    """
    size = math.prod(shape)
    if size * dtype.itemsize > _SCRATCH_KEEP_BYTES:
        return np.empty(shape, dtype)
    buffers = _local.__dict__.setdefault("buffers", {})
    key = (name, dtype)
    buf = buffers.get(key)
    if buf is None or buf.size < size:
        buf = buffers[key] = np.empty(size, dtype)
    return buf[:size].reshape(shape)


def _pair(op: str, name: str, value: int | Sequence[int]) -> tuple[int, int]:
    """`3` or `(3, 3)` as a pair of ints."""
    if isinstance(value, (int, np.integer)):
        return int(value), int(value)
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ValueError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    return pair  # type: ignore[return-value]


def _spatial_geometry(
    op: str,
    shape: tuple[int, ...],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> tuple[int, int]:
    """Output height and width, after checking the kernel fits the padded input."""
    h, w = shape[-2:]
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if sh < 1 or sw < 1 or ph < 0 or pw < 0:
        raise ValueError(
            f"{op}: stride must be >= 1 and padding >= 0, got stride {stride}, padding {padding}"
        )
    if kh > h + 2 * ph or kw > w + 2 * pw:
        raise ValueError(
            f"{op}: kernel {kernel} is larger than the padded input "
            f"{(h + 2 * ph, w + 2 * pw)} (input of shape {shape}, padding {padding})"
        )
    return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1


def _check_4d(op: str, x: Tensor) -> None:
    if x.ndim != 4:
        raise ValueError(f"{op}: expected input of shape (N, C, H, W), got shape {x.shape}")


def _axis_order(a: np.ndarray) -> tuple[int, ...]:
    """a's axes from the outermost in memory (largest stride) to the innermost."""
    return tuple(sorted(range(a.ndim), key=lambda axis: -abs(a.strides[axis])))


def _empty_in_layout(order: tuple[int, ...], shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """An empty array of `shape` whose axes lie in memory in `order` (see `_axis_order`)."""
    return np.empty([shape[axis] for axis in order], dtype).transpose(np.argsort(order))


# A thread's piece of a memory-bound kernel has at least this many elements: smaller work runs
# inline, where handing it to a second thread (~20-50 us) would cost more than it saves.
_GRAIN_ELEMENTS = 1 << 17


def _flat_in_memory(*arrays: np.ndarray) -> list[np.ndarray] | None:
    """1-D views of same-shaped arrays, each in its memory order, such that element k of
    every view is the same index of the arrays; None unless all of them are contiguous in
    the memory order of the first (a transposed C-contiguous array, such as HWNC, is)."""
    order = _axis_order(arrays[0])
    flats = []
    for a in arrays:
        in_order = a.transpose(order)
        if not in_order.flags.c_contiguous:
            return None
        flats.append(in_order.reshape(-1))
    return flats


def _in_pieces(
    a: np.ndarray, axes: Sequence[int], body: Callable[[tuple[slice, ...]], None]
) -> None:
    """Call `body(index)` for pieces `a[index]` that cover `a`, cut along its outermost axis in
    memory among `axes`, one piece per autograd thread, each of at least `_GRAIN_ELEMENTS`
    (smaller arrays: one piece, here). `body` must write only what belongs to its piece.
    (Cutting the pieces into cache-sized blocks measured no faster: the pools' passes are
    few, and each block's ufunc calls cost microseconds.)"""
    long_axes = [axis for axis in axes if a.shape[axis] > 1] or list(axes[:1])
    axis = max(long_axes, key=lambda ax: abs(a.strides[ax]))
    length = a.shape[axis]
    per_index = max(1, a.size // max(length, 1))
    lead = (slice(None),) * axis
    parallel_for(
        lambda lo, hi: body(lead + (slice(lo, hi),)),
        length,
        max(1, -(-_GRAIN_ELEMENTS // per_index)),
    )


def _fill(a: np.ndarray, value: float) -> None:
    """a[...] = value, shared out over threads when a is large and contiguous in memory."""
    flat = _flat_in_memory(a) if a.size >= 2 * _GRAIN_ELEMENTS else None
    if flat is None:
        a[...] = value
    else:
        parallel_for(lambda lo, hi: flat[0][lo:hi].fill(value), a.size, _GRAIN_ELEMENTS)


def release_buffers() -> None:
    """Drop the calling thread's work buffer, e.g. before measuring peak memory from a clean
    start."""
    _local.__dict__.clear()


# ----- conv2d ------------------------------------------------------------------------------
def _hwnc_padded(x: np.ndarray, ph: int, pw: int, dtype: np.dtype) -> np.ndarray:
    """x (N, C, H, W) as a C-contiguous (H + 2ph, W + 2pw, N, C) array, zero-padded: a view
    when x is already unpadded HWNC memory of `dtype`."""
    n, c, h, w = x.shape
    hwnc = x.transpose(2, 3, 0, 1)
    if not (ph or pw) and hwnc.flags.c_contiguous and x.dtype == dtype:
        return hwnc
    xp = np.empty((h + 2 * ph, w + 2 * pw, n, c), dtype)
    if ph:
        xp[:ph] = 0
        xp[ph + h :] = 0
    if pw:
        xp[ph : ph + h, :pw] = 0
        xp[ph : ph + h, pw + w :] = 0
    xp[ph : ph + h, pw : pw + w] = hwnc
    return xp


def _chunks(ho: int, wo: int, n: int, row_bytes: int) -> list[tuple[int, int, int, int]]:
    """Blocks (y0, y1, x0, x1) of output positions whose im2col rows, (y, x, n) in order, are
    contiguous and at most about `limit` bytes long (see `_CHUNK_BYTES`): bands of whole
    output rows (of equal heights, give or take one), or pieces of one row when a single
    output row is larger."""
    limit = _CHUNK_BYTES // 2 if _sharing_blocks() or blas_single_threaded() else _CHUNK_BYTES
    per_y = wo * n * row_bytes
    if per_y <= limit:
        count = -(-ho * per_y // limit)
        bounds = [ho * k // count for k in range(count + 1)]
        return [(y0, y1, 0, wo) for y0, y1 in itertools.pairwise(bounds) if y1 > y0]
    step = max(1, limit // (n * row_bytes))
    return [(y, y + 1, x0, min(x0 + step, wo)) for y in range(ho) for x0 in range(0, wo, step)]


def _share_out(count: int, task: Callable[[int], None]) -> None:
    """task(k) for every k in range(count), on autograd's threads: each thread takes the next
    k when it is done with its last, so that one slowed by a busy core takes fewer. A task
    writes only its own part of the result: the outcome does not depend on who ran what."""
    ticket = itertools.count()  # (next() on it is atomic under the GIL)

    def worker(lo: int, hi: int) -> None:
        while (k := next(ticket)) < count:
            task(k)

    parallel_for(worker, min(count, get_num_threads()), 1)


def _sharing_blocks() -> bool:
    """Whether conv2d shares its blocks out over autograd's threads: there are several (see
    `autograd.parallel`: by default only where OpenBLAS's idle workers sleep), and BLAS's
    thread count can be set, so that each block's matmul runs on one BLAS thread."""
    return get_num_threads() > 1 and blas_threads_settable()


def _run_blocks(count: int, task: Callable[[int], None]) -> None:
    """task(k) for k in range(count), each writing only its own part of the result: shared
    out over autograd's threads with one BLAS thread per matmul (see `_sharing_blocks`;
    two BLAS threads under each of two Python threads would put four on two cores), else
    in order, here, with BLAS's own threads."""
    if count > 1 and _sharing_blocks():
        with one_blas_thread():
            _share_out(count, task)
    else:
        for k in range(count):
            task(k)


class _Im2col:
    """The im2col matrix of a padded HWNC input, block by block: rows (y, x, n), columns
    (i, j, c) for kernel offset (i, j) and channel c, plus a column of ones when `ones` (the
    matmul then adds the bias, and the weight gradient's matmul sums the bias gradient).

    `transposed` (few channels) stores it (columns, rows): each kernel offset is then copied
    along whole rows of the input (N elements at a time for C = 1) instead of C at a time.
    """

    def __init__(
        self,
        xp: np.ndarray,
        kernel: tuple[int, int],
        stride: tuple[int, int],
        out_hw: tuple[int, int],
        ones: bool,
    ) -> None:
        self.xp, self.kernel, self.stride, self.out_hw, self.ones = xp, kernel, stride, out_hw, ones
        _, _, self.n, self.c = xp.shape
        self.k = kernel[0] * kernel[1] * self.c
        self.width = self.k + ones  # columns
        self.transposed = self.c < _TRANSPOSED_BELOW_C

        self.chunks = _chunks(*out_hw, self.n, self.width * xp.dtype.itemsize)

    def block(self, index: int) -> tuple[int, int, np.ndarray]:
        """(first row, end row, the (rows, columns) matrix of those rows) of block `index`
        (of `len(self.chunks)`); the matrix is a view of the calling thread's work buffer,
        overwritten by its next block."""
        (kh, kw), (sh, sw), wo, n, c = self.kernel, self.stride, self.out_hw[1], self.n, self.c
        y0, y1, x0, x1 = self.chunks[index]
        rows, cols = y1 - y0, x1 - x0
        count = rows * cols * n
        band = self.xp[y0 * sh : (y1 - 1) * sh + kh, x0 * sw : (x1 - 1) * sw + kw]
        if self.transposed:
            buf = _scratch("work", (self.width, count), self.xp.dtype)
            dst = buf[: self.k].reshape(kh, kw, c, rows, cols, n)
            for i in range(kh):
                for j in range(kw):
                    src = band[i : i + sh * rows : sh, j : j + sw * cols : sw]
                    dst[i, j] = src.transpose(3, 0, 1, 2)  # (c, rows, cols, n)
            if self.ones:
                buf[self.k] = 1
            matrix = buf.T
        else:
            buf = _scratch("work", (count, self.width), self.xp.dtype)
            windows = sliding_window_view(band, (kh, kw), axis=(0, 1))[::sh, ::sw]
            dst = buf[:, : self.k].reshape(rows, cols, n, kh, kw, c)
            np.copyto(dst, windows.transpose(0, 1, 2, 4, 5, 3))  # (rows, cols, n, kh, kw, c)
            if self.ones:
                buf[:, self.k] = 1
            matrix = buf
        start = (y0 * wo + x0) * n
        return start, start + count, matrix


def _col2im(
    d: np.ndarray,
    w_blocks: np.ndarray,
    padded_shape: tuple[int, int, int, int],
    stride: tuple[int, int],
    out_hw: tuple[int, int],
) -> np.ndarray:
    """The padded input gradient (Hp, Wp, N, C) of a convolution, from its output gradient
    d (rows (y, x, n), O) and weights w_blocks (kh, kw, C, O): for each kernel offset (i, j)
    the input positions it read get d @ w[i, j].T, added as one block of whole rows.

    Computed in bands of input rows, each band by one thread (see `_share_out`): for each
    offset (i, j) in order, the product of the output rows that reach the band, added while
    it is in cache. Every position sums its terms in the order of (i, j), whatever the bands.
    """
    kh, kw, c, o = w_blocks.shape
    (sh, sw), (ho, wo) = stride, out_hw
    hp, n = padded_shape[0], padded_shape[2]
    dxp = np.empty(padded_shape, d.dtype)
    per_y = wo * n
    # a band's products: about _COL2IM_BYTES (kh / sh output rows per input row)
    out_rows = max(1, _COL2IM_BYTES // (per_y * c * d.dtype.itemsize))
    step = max(1, out_rows * sh)
    if d.size * c >= _GRAIN_ELEMENTS and _sharing_blocks():
        # bands enough to keep every thread busy (the sums don't depend on them)
        step = min(step, -(-hp // (4 * get_num_threads())))
    bands = [(r0, min(r0 + step, hp)) for r0 in range(0, hp, step)]

    def band(k: int) -> None:
        r0, r1 = bands[k]
        dxp[r0:r1] = 0
        for i in range(kh):
            # the output rows y with r0 <= y * sh + i < r1
            y0, y1 = max(0, -(-(r0 - i) // sh)), min(ho, -(-(r1 - i) // sh))
            if y1 <= y0:
                continue
            rows = d[y0 * per_y : y1 * per_y]
            part = _scratch("work", (len(rows), c), d.dtype)
            top = y0 * sh + i
            for j in range(kw):
                np.matmul(rows, w_blocks[i, j].T, out=part)
                region = dxp[top : top + sh * (y1 - y0) : sh, j : j + sw * wo : sw]
                region += part.reshape(y1 - y0, wo, n, c)

    _run_blocks(len(bands), band)
    return dxp


def conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
) -> Tensor:
    """2-D cross-correlation (PyTorch's conv2d, no groups or dilation).

    x (N, C, H, W) (or (C, H, W)), weight (O, C, kh, kw), bias (O,) -> (N, O, Ho, Wo) with
    Ho = (H + 2 ph - kh) // sh + 1 (an NCHW view of HWNC memory, see the module docstring):
    out[n, o, y, x] = bias[o] + sum_{c, i, j} xpad[n, c, y*sh + i, x*sw + j] w[o, c, i, j].
    im2col in blocks of rows and one matmul per block; the bias rides in the matmul as a
    column of ones. Backward recomputes im2col block by block for the weight gradient
    (saving the input, not the 9x larger matrix), and adds each kernel offset's input
    gradient, g @ w[:, :, i, j], onto the padded input gradient (col2im).

    With several autograd threads (`autograd.set_num_threads`) the blocks are shared out over
    them, each matmul on one BLAS thread; every block writes its own rows and the weight
    gradient sums the blocks in order, so the result is the same for any thread count as long
    as BLAS runs on one thread. (With one autograd thread the matmuls use BLAS's threads,
    whose products round differently in the last bits.)
    """
    x, weight = _tensor(x), _tensor(weight)
    if x.ndim == 3:
        out = conv2d(x.reshape(1, *x.shape), weight, bias, stride, padding)
        return out.reshape(out.shape[1:])
    _check_4d("conv2d", x)
    if weight.ndim != 4 or weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"conv2d: weight of shape {weight.shape} does not fit input of shape {x.shape} "
            f"(expected weight (O, {x.shape[1]}, kh, kw): input channels must match)"
        )
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    (sh, sw), (ph, pw) = _pair("conv2d", "stride", stride), _pair("conv2d", "padding", padding)
    ho, wo = _spatial_geometry("conv2d", x.shape, (kh, kw), (sh, sw), (ph, pw))
    parents: tuple[Tensor, ...] = (x, weight)
    if bias is not None:
        bias = _tensor(bias)
        if bias.shape != (o,):
            raise ValueError(
                f"conv2d: bias of shape {bias.shape} does not fit weight of shape "
                f"{weight.shape} (expected ({o},))"
            )
        parents += (bias,)
    dtype = np.result_type(x.data, weight.data, *(() if bias is None else (bias.data,)))

    xp = _hwnc_padded(x.data, ph, pw, dtype)  # (Hp, Wp, N, C)
    im2col = _Im2col(xp, (kh, kw), (sh, sw), (ho, wo), ones=bias is not None)
    k = kh * kw * c
    # the matmul's right-hand side: rows (i, j, c) of the weights, then the bias
    w_rows = np.empty((im2col.width, o), dtype)
    w_rows[:k] = weight.data.transpose(2, 3, 1, 0).reshape(k, o)
    if bias is not None:
        w_rows[k] = bias.data
    out = np.empty((ho * wo * n, o), dtype)

    def forward_block(k: int) -> None:
        start, end, matrix = im2col.block(k)
        np.matmul(matrix, w_rows, out=out[start:end])

    _run_blocks(len(im2col.chunks), forward_block)
    data = out.reshape(ho, wo, n, o).transpose(2, 3, 0, 1)  # NCHW view of HWNC memory

    need_x, need_w = x.requires_grad, weight.requires_grad
    need_b = bias is not None and bias.requires_grad
    # what backward reads: the input (for grad_weight) and the weights (for grad_input)
    saved = (x,) if need_w and np.may_share_memory(xp, x.data) else ()
    if need_x:
        saved += (weight,)
    if not need_w:
        im2col = None  # only grad_weight needs the input: don't keep it alive
    w_blocks = w_rows[:k].reshape(kh, kw, c, o) if need_x else None

    def backward(g: Tensor, out: Tensor) -> tuple:
        d = g.data.transpose(2, 3, 0, 1)  # (Ho, Wo, N, O): free when g is HWNC memory
        d = (d if d.flags.c_contiguous else np.ascontiguousarray(d)).reshape(ho * wo * n, o)
        gx = gw = gb = None
        if need_w:
            # each block's product (rows (i, j, c), then the bias's), summed in block order
            parts = np.empty((len(im2col.chunks), im2col.width, o), dtype)

            def weight_block(k: int) -> None:
                start, end, matrix = im2col.block(k)
                np.matmul(matrix.T, d[start:end], out=parts[k])

            _run_blocks(len(parts), weight_block)
            acc = parts[0]
            for part in parts[1:]:
                acc += part
            gw = np.ascontiguousarray(acc[:k].reshape(kh, kw, c, o).transpose(3, 2, 0, 1))
            if need_b:
                gb = acc[k].copy()
        elif need_b:
            gb = np.ones(len(d), dtype) @ d  # (a matrix-vector product: faster than sum(0))
        if need_x:
            dxp = _col2im(d, w_blocks, (h + 2 * ph, w + 2 * pw, n, c), (sh, sw), (ho, wo))
            gx = dxp[ph : ph + h, pw : pw + w].transpose(2, 3, 0, 1)
        inputs = out._parents  # (x, weight[, bias]): the closure captures no Tensor
        return once_differentiable("conv2d", inputs + (g,), (gx, gw, gb)[: len(inputs)])

    return Tensor._from_op(
        data,
        parents,
        "conv2d",
        backward,
        saved=saved,
        saves_output=False,
        stride=(sh, sw),
        padding=(ph, pw),
    )


# ----- pooling -----------------------------------------------------------------------------
def _pool_setup(
    op: str, x: Tensor, kernel_size: Any, stride: Any, padding: Any
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], int, int]:
    _check_4d(op, x)
    kernel = _pair(op, "kernel_size", kernel_size)
    strides = kernel if stride is None else _pair(op, "stride", stride)
    pads = _pair(op, "padding", padding)
    if pads[0] > kernel[0] // 2 or pads[1] > kernel[1] // 2:
        raise ValueError(f"{op}: padding {pads} must be at most half the kernel {kernel}")
    ho, wo = _spatial_geometry(op, x.shape, kernel, strides, pads)
    return kernel, strides, pads, ho, wo


def _padded(a: np.ndarray, ph: int, pw: int, value: float) -> np.ndarray:
    """a (N, C, H, W) padded with `value`, in a's memory layout."""
    if not (ph or pw):
        return a
    n, c, h, w = a.shape
    out = _empty_in_layout(_axis_order(a), (n, c, h + 2 * ph, w + 2 * pw), a.dtype)
    out[...] = value
    out[:, :, ph : ph + h, pw : pw + w] = a
    return out


def _windows(
    a: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], ho: int, wo: int
) -> list[np.ndarray]:
    """For each kernel offset (i, j), row-major, the view of padded `a` that it reads:
    element [.., y, x] of that view is offset (i, j) of output window (y, x). Views of
    one array, written to as well as read."""
    (kh, kw), (sh, sw) = kernel, stride
    if (sh, sw) == (kh, kw):  # tiled: H split into (Ho, kh) and W into (Wo, kw)
        n, c = a.shape[:2]
        s_n, s_c, s_h, s_w = a.strides
        tiles = as_strided(
            a, (n, c, ho, kh, wo, kw), (s_n, s_c, s_h * kh, s_h, s_w * kw, s_w), writeable=True
        )
        return [tiles[:, :, :, i, :, j] for i in range(kh) for j in range(kw)]
    return [
        a[..., i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw]
        for i in range(kh)
        for j in range(kw)
    ]


def _combine_windows(
    views: list[np.ndarray], combine: np.ufunc, divisor: np.ndarray | None = None
) -> np.ndarray:
    """combine(combine(views[0], views[1]), views[2])... (then / divisor): a new array in the
    views' memory layout, computed in pieces on autograd's threads (see `_in_pieces`)."""
    first = views[0]
    data = _empty_in_layout(_axis_order(first), first.shape, first.dtype)

    def piece(index: tuple[slice, ...]) -> None:
        part = data[index]
        if len(views) == 1:
            part[...] = first[index]
        else:
            combine(first[index], views[1][index], out=part)
        for view in views[2:]:
            combine(part, view[index], out=part)
        if divisor is not None:
            part /= divisor

    _in_pieces(data, range(data.ndim), piece)
    return data


def _like(g: np.ndarray, out: np.ndarray) -> np.ndarray:
    """The gradient g in the memory layout of `out` (a copy only when they differ, as after
    `flatten`, whose gradient is NCHW): ufuncs over mixed layouts crawl."""
    order = _axis_order(out)
    if _axis_order(g) == order:
        return g
    same = _empty_in_layout(order, out.shape, g.dtype)

    def copy(index: tuple[slice, ...]) -> None:
        same[index] = g[index]

    _in_pieces(same, range(same.ndim), copy)
    return same


def max_pool2d(
    x: Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
) -> Tensor:
    """Max over kh x kw windows (stride defaults to the kernel; padding counts as -inf).

    x (N, C, H, W) (or (C, H, W)) -> (N, C, Ho, Wo), in x's memory layout. Each window's
    gradient goes to its FIRST maximum in row-major order, as in PyTorch (ties are everywhere
    on MNIST's blank background); overlapping windows add up. One numpy pass per kernel
    offset, each over a view of x: backward finds the first maximum by comparing each offset
    with the output, offsets in order (a NaN window passes its gradient to its last element).
    """
    x = _tensor(x)
    if x.ndim == 3:
        out = max_pool2d(x.reshape(1, *x.shape), kernel_size, stride, padding)
        return out.reshape(out.shape[1:])
    kernel, strides, (ph, pw), ho, wo = _pool_setup("max_pool2d", x, kernel_size, stride, padding)
    xp = _padded(x.data, ph, pw, -np.inf)
    views = _windows(xp, kernel, strides, ho, wo)
    data = _combine_windows(views, np.maximum)
    overlapping = strides[0] < kernel[0] or strides[1] < kernel[1]
    # the windows cover the padded input exactly: backward writes every position once
    covered = strides == kernel and xp.shape[2:] == (ho * kernel[0], wo * kernel[1])
    h, w = x.shape[2:]

    order = _axis_order(xp)

    def backward(g: Tensor, out: Tensor) -> tuple:
        gd, top = _like(g.data, out.data), out.data
        dxp = _empty_in_layout(order, xp.shape, gd.dtype)
        if not covered:
            _fill(dxp, 0)
        targets = _windows(dxp, kernel, strides, ho, wo)

        def backward_piece(index: tuple[slice, ...]) -> None:
            grad, peak = gd[index], top[index]

            def route(target: np.ndarray, first: np.ndarray) -> None:
                if overlapping:
                    target += grad * first
                else:
                    np.multiply(grad, first, out=target)

            if len(views) == 1:
                route(targets[0][index], np.ones((), dtype=bool))
                return
            # taken: the windows whose first maximum an earlier offset already was
            taken = np.equal(views[0][index], peak)
            route(targets[0][index], taken)
            seen, first = np.empty_like(taken), np.empty_like(taken)
            for view, target in zip(views[1:-1], targets[1:-1], strict=True):
                np.equal(view[index], peak, out=seen)
                np.greater(seen, taken, out=first)  # seen and not taken
                np.logical_or(taken, seen, out=taken)
                route(target[index], first)
            # the last offset is the maximum wherever no earlier one was
            route(targets[-1][index], np.logical_not(taken, out=first))

        # overlapping windows add into shared input positions: pieces of whole images or
        # channels then (never a band of rows), so that no two threads add to one position
        _in_pieces(top, (0, 1) if overlapping else range(4), backward_piece)
        gx = dxp[:, :, ph : ph + h, pw : pw + w]
        return once_differentiable("max_pool2d", (x, g), (gx,))

    return Tensor._from_op(
        data,
        (x,),
        "max_pool2d",
        backward,
        saved=(x,),
        saves_output=True,
        kernel_size=kernel,
        stride=strides,
        padding=(ph, pw),
    )


def avg_pool2d(
    x: Tensor,
    kernel_size: int | tuple[int, int],
    stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0,
) -> Tensor:
    """Mean over kh x kw windows; zero padding counts in the mean (PyTorch's default
    count_include_pad=True). x (N, C, H, W) (or (C, H, W)) -> (N, C, Ho, Wo)."""
    x = _tensor(x)
    if x.ndim == 3:
        out = avg_pool2d(x.reshape(1, *x.shape), kernel_size, stride, padding)
        return out.reshape(out.shape[1:])
    kernel, strides, (ph, pw), ho, wo = _pool_setup("avg_pool2d", x, kernel_size, stride, padding)
    xp = _padded(x.data, ph, pw, 0.0)
    views = _windows(xp, kernel, strides, ho, wo)
    divisor = np.asarray(len(views), dtype=x.dtype)
    data = _combine_windows(views, np.add, divisor)
    overlapping = strides[0] < kernel[0] or strides[1] < kernel[1]
    covered = strides == kernel and xp.shape[2:] == (ho * kernel[0], wo * kernel[1])
    order, padded_shape, (h, w) = _axis_order(xp), xp.shape, x.shape[2:]
    del xp, views  # backward needs only shapes and the memory layout

    def backward(g: Tensor, out: Tensor) -> tuple:
        share = g.data / divisor
        dxp = _empty_in_layout(order, padded_shape, share.dtype)
        if not covered or overlapping:
            _fill(dxp, 0)
        targets = _windows(dxp, kernel, strides, ho, wo)

        def backward_piece(index: tuple[slice, ...]) -> None:
            part = share[index]
            for target in targets:
                if overlapping:
                    target[index] += part
                else:
                    target[index] = part

        # (overlapping windows: pieces of whole images or channels, as in max_pool2d)
        _in_pieces(share, (0, 1) if overlapping else range(4), backward_piece)
        gx = dxp[:, :, ph : ph + h, pw : pw + w]
        return once_differentiable("avg_pool2d", (g,), (gx,))

    return Tensor._from_op(
        data,
        (x,),
        "avg_pool2d",
        backward,
        saved=(),
        saves_output=False,
        kernel_size=kernel,
        stride=strides,
        padding=(ph, pw),
    )
