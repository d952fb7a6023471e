"""The 3-D operations: :func:`conv_transpose3d`, :func:`conv3d` and their gradients.

Each function validates its arguments at rank 3 (:mod:`convtranspose.params`, so errors
speak of the 3-D arguments) and reduces the problem to the 2-D operators of the CPU
backends, one per kernel depth tap. A tap ``t`` links depth ``i`` of the small grid (the
transposed convolution's input, the convolution's output) to depth ``o = i*sD + t*dD -
front`` of the large one (the transposed convolution's output, the convolution's input),
for the contiguous run of ``i`` where ``o`` falls inside (:func:`depth_taps`). The depth
slices of a run, folded into the batch (``(N*J, C, H, W)``), go through one
2-D call with the weight's plane ``weight[:, :, t]``:

* the transposed convolution scatters: ``out[:, :, o] += conv_transpose2d(x[:, :, i])``;
* the correlation (``conv3d``, the transposed convolution's input gradient) gathers:
  ``out[:, :, i] += conv2d(x[:, :, o])``;
* the weight gradient of tap ``t`` is the 2-D weight gradient of the run's pairs.

The 2-D calls use the backend named (``"auto"``: the one the cost model picks for each
2-D problem), and their NaN rules for padding zeros hold per plane; the rules across
depth are applied once at the end (:mod:`convtranspose.nonfinite`, which works at any
rank). Results are the definition's sums in another order: within rounding of the float64
reference, bitwise independent of the thread count as the 2-D backends are.

Memory: besides the result, at most one copy of each operand read (for one image its
depth slices folded once, :class:`_Runs`; for several, one tap's slices at a time) and
one 2-D result, sized for the longest run and reused by every tap. CUDA arrays (or
``backend="cuda"``) go to :mod:`convtranspose.cuda.rank3`, which stacks the taps as
channels on the GPU instead. A Dask operand gives a lazy Dask result tiled as at every rank
(:mod:`convtranspose.dask_ops`: spatial tiles with halos along D, H and W, channel blocks),
each tile a call of these functions on NumPy pieces (:data:`TILES`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import complexops, cuda, dask_ops, dispatch, halfops, nonfinite, ops
from .cpu import direct, nd_engine
from ._alloc import allocate
from ._arrays import (any_dask, channels_first, channels_last, compute_into, host_array,
                      in_layout, is_device_array, laid_out, native, new_result)
from .params import (adjoint_params, is_channels_last, normalise, normalise_backward,
                     normalise_conv, normalise_conv_backward)

if TYPE_CHECKING:
    from ._typing import Array, ArrayLike, AutoPadding, Backend, Gradients, IntTuple, Shape

__all__ = ["conv_transpose3d", "conv3d", "conv_transpose3d_backward", "conv3d_backward",
           "depth_taps"]


# ----------------------------------------------------------------------------
# the reduction to 2-D operators, on validated C-contiguous 5-D host arrays


def depth_taps(small, large, k, s, d, front):
    """The runs of depth slices each kernel depth tap links.

    Parameters
    ----------
    small, large : int
        Depths of the small grid (a transposed convolution's input) and the large one
        (its output).
    k, s, d, front : int
        Kernel depth, stride, dilation and leading padding along depth.

    Returns
    -------
    list of (int, int, int, int)
        ``(t, i0, i1, o0)``: tap ``t`` links small slices ``i0 <= i < i1`` to large slices
        ``o0 + (i - i0)*s``, all inside; taps that link nothing are left out.

    Examples
    --------
    >>> from convtranspose.rank3 import depth_taps
    >>> depth_taps(3, 6, 2, 2, 1, 0)        # kernel 2, stride 2: even and odd slices
    [(0, 0, 3, 0), (1, 0, 3, 1)]
    >>> depth_taps(3, 3, 3, 1, 1, 1)        # kernel 3, padding 1: the ends lose a tap
    [(0, 1, 3, 0), (1, 0, 3, 0), (2, 0, 2, 1)]
    """
    runs = []
    for t in range(k):
        i0, i1, o0 = tap_run(t, small, large, s, d, front)
        if i1 > i0:
            runs.append((t, i0, i1, o0))
    return runs


def tap_run(t, small, large, s, d, front):
    """``(i0, i1, o0)`` of depth tap ``t`` for :func:`depth_taps` (nothing linked when
    ``i1 <= i0``); one rule for Python and ``@njit`` code (:mod:`convtranspose.jit`
    compiles it)."""
    c = t * d - front
    i0 = max(0, -(c // s))
    i1 = min(small, (large - 1 - c) // s + 1)
    return i0, i1, i0 * s + c


class _Runs:
    """The runs of depth slices of ``a`` (N, C, D, H, W) that the taps take, each as a
    batch of 2-D images ``(N*J, C, H, W)``, image by image (``n``, then ``j``), in the
    layout (with ``last``, a channels-first view of channels-last memory).

    One image: ``a`` is copied once into depth-major memory (a view of channels-last
    memory when ``step`` is 1), its slices ordered by residue modulo ``step``, so that
    every run ``o0, o0 + step, ...`` is a contiguous block, taken as a view. Several
    images: a run is copied when taken (the caller drops it before taking the next), so
    at most one run's copy, never more than ``a``, exists at a time.
    """

    def __init__(self, a, last, step=1):
        self.a, self.last, self.step = a, last, step
        if a.shape[0] != 1:
            return
        d = a.shape[2]
        moved = a[0].transpose((1, 2, 3, 0) if last else (1, 0, 2, 3))   # depth first
        self.base = [sum(len(range(q, d, step)) for q in range(r)) for r in range(step)]
        if step == 1:
            self.mem = np.ascontiguousarray(moved)
            return
        self.mem = allocate(moved.shape, a.dtype, "depth slices")
        for r in range(min(step, d)):
            self.mem[self.base[r]:self.base[r] + len(range(r, d, step))] = moved[r::step]

    def images(self, o0, count):
        """Depth slices ``o0, o0 + step, ...`` (``count`` of them)."""
        if self.a.shape[0] != 1:
            part = self.a[:, :, o0:o0 + (count - 1) * self.step + 1:self.step]
            mem = part.transpose((0, 2, 3, 4, 1) if self.last else (0, 2, 1, 3, 4))
            part = np.ascontiguousarray(mem).reshape(-1, *mem.shape[2:])
        else:
            at = self.base[o0 % self.step] + o0 // self.step
            part = self.mem[at:at + count]
        return channels_first(part, 2) if self.last else part


def _results(shape, taps, n, dtype, last):
    """``result(J)``: a 2-D result of ``N*J`` images of ``shape`` (channels, height,
    width), carved from one buffer sized for the longest run of ``taps``: the taps reuse
    it, so no tap's result is allocated while another's is alive."""
    buf = new_result((n * max(i1 - i0 for _, i0, i1, _ in taps), *shape), dtype, last, 2)
    return lambda j: buf[:n * j]


def _unfold(y, n):
    """A 2-D result ``(N*J, C, H, W)`` as the depth run ``(N, C, J, H, W)`` (a view)."""
    return np.moveaxis(y.reshape(n, -1, *y.shape[1:]), 1, 2)


def _large_run(o0, count, s):
    return slice(o0, o0 + (count - 1) * s + 1, s)


def _start(out, bias):
    out[...] = 0 if bias is None else bias.reshape(-1, 1, 1, 1)


def scatter(x, weight, bias, params, out, method, last=False):
    """The transposed convolution of ``x`` (N, C_in, D, H, W) into ``out``, by the 2-D
    backend ``method`` (``"auto"``: chosen per 2-D problem); ``last``: both are
    channels-first views of channels-last memory. Returns ``out``. Layers that ``direct``
    runs on the channels-last engine go to it whole, with no loop over depth taps (``auto``
    too, but for large channels-first results: :func:`~convtranspose.cpu.direct.volume_uses_engine`)."""
    if method in ("auto", "direct") and direct.volume_uses_engine(
            x.shape, weight.shape, params, out.shape, out.dtype.itemsize,
            out.strides[1] == out.dtype.itemsize, method) and nd_engine.supported(weight):
        return direct.run_volume(x, weight, bias, params, out)
    _start(out, bias)
    n, plane = x.shape[0], params.plane
    taps = depth_taps(x.shape[2], out.shape[2], weight.shape[2], params.stride[0],
                      params.dilation[0], params.pads[0][0])
    if not taps:
        return out
    runs = _Runs(x, last)
    result = _results((out.shape[1], *out.shape[3:]), taps, n, out.dtype, last)
    for t, i0, i1, o0 in taps:
        x4 = runs.images(i0, i1 - i0)
        w4 = np.ascontiguousarray(weight[:, :, t])
        y4 = result(i1 - i0)
        name = method
        if name == "auto":
            name = dispatch.choose(x4.shape, w4.shape, plane, out.dtype, y4.shape[2:],
                                   last).backend
        dispatch.operation("conv_transpose", name)(x4, w4, None, plane, y4)
        with np.errstate(invalid="ignore", over="ignore"):
            out[:, :, _large_run(o0, i1 - i0, params.stride[0])] += _unfold(y4, n)
        del x4      # before the next tap's copy is made
    return out


def correlate(x, weight, bias, out, params, method, last=False):
    """The correlation (``conv3d``'s forward) of ``x`` (N, C_in, D, H, W) with ``weight``
    (C_out, C_in // groups, kD, kH, kW) into ``out``, by ``method``, with PyTorch's NaN
    where a padding zero meets a non-finite weight; ``last`` as for :func:`scatter`.
    Returns ``out``. Layers with many channels run on the channels-last engine whole
    (``auto``: unless the result is channels-first and large, as for :func:`scatter`)."""
    if method in ("auto", "direct") and direct.volume_correlation_uses_engine(
            x.shape, weight.shape, params, out.shape, out.dtype.itemsize,
            out.strides[1] == out.dtype.itemsize, method):
        direct.run_correlation(x, weight, bias, out, params.stride, params.dilation,
                               [lo for lo, _ in params.pads], params.groups)
    else:
        _taps_correlate(x, weight, bias, out, params, method, last)
    return nonfinite.correlate_nan(out, weight, x.shape[2:], params.stride, params.dilation,
                                   [lo for lo, _ in params.pads])


def _taps_correlate(x, weight, bias, out, params, method, last):
    """:func:`correlate` as one 2-D correlation per depth tap, before the NaN rule."""
    _start(out, bias)
    n, plane = x.shape[0], params.plane
    c_out, c_in_g = weight.shape[:2]
    taps = depth_taps(out.shape[2], x.shape[2], weight.shape[2], params.stride[0],
                      params.dilation[0], params.pads[0][0])
    if taps:
        runs = _Runs(x, last, params.stride[0])
        result = _results((c_out, *out.shape[3:]), taps, n, out.dtype, last)
    for t, i0, i1, o0 in taps:
        x4 = runs.images(o0, i1 - i0)
        w4 = np.ascontiguousarray(weight[:, :, t])
        y4 = result(i1 - i0)
        name = method
        if name == "auto":
            name = dispatch.correlate_method(c_out // params.groups, c_in_g, w4.shape[2:],
                                             y4.size // c_out)
        ops.correlate(x4, w4, None, y4, plane, name)
        with np.errstate(invalid="ignore", over="ignore"):
            out[:, :, i0:i1] += _unfold(y4, n)
        del x4      # before the next tap's copy is made


def weight_grad(a, b, gw, params, method, last=False):
    """``gw[ca, j, t, kh, kw] = sum a[n, ca, i, h, w] * b[n, cb, i*sD + t*dD - front, ...]``
    (``a`` on the strided grid, ``b`` sampled, both 5-D) by ``method``, with PyTorch's NaN
    where a non-finite ``a`` meets a zero read outside ``b``; ``last`` as for
    :func:`scatter`. Returns ``gw``."""
    plane = params.plane
    c_a, c_b_g = gw.shape[:2]
    runs_a, runs_b = _Runs(a, last), _Runs(b, last, params.stride[0])
    gw[...] = 0
    for t, i0, i1, o0 in depth_taps(a.shape[2], b.shape[2], gw.shape[2], params.stride[0],
                                    params.dilation[0], params.pads[0][0]):
        a4, b4 = runs_a.images(i0, i1 - i0), runs_b.images(o0, i1 - i0)
        g4 = np.empty((c_a, c_b_g, *gw.shape[3:]), gw.dtype)
        name = method
        if name == "auto":
            name = dispatch.weight_grad_method(c_a // params.groups, c_b_g, gw.shape[3:],
                                               a4.size // c_a)
        gw[:, :, t] = ops.weight_grad(a4, b4, g4, plane, name)
        del a4, b4      # before the next tap's copies are made
    return nonfinite.weight_grad_nan(gw, a, b.shape[2:], params.stride, params.dilation,
                                     [lo for lo, _ in params.pads])


# ----------------------------------------------------------------------------
# operands


def _host(a, name, required=True, last=False):
    """``a`` as a NumPy array (with ``last``, a channels-first view of the channels-last
    array given)."""
    if a is None and not required:
        return None
    a = host_array(a, name, required)
    if last and a.ndim < 4:
        raise ValueError(f"{name} must have 5 dimensions (N, D, H, W, C) or 4 (D, H, W, C) in "
                         f"the channels-last layout, got shape {a.shape}")
    return channels_first(a, 3) if last else a


def _method(backend):
    return dispatch.check_method(backend)


def _gpu(backend, data_format, **arrays):
    """The CUDA module of the 3-D operations when the call runs on the GPU (CUDA arrays, or
    ``backend="cuda"``), else ``None``."""
    device = [n for n, a in arrays.items() if a is not None and is_device_array(a, n)]
    name = dispatch.check_method(backend)
    if not device and name != "cuda":
        return None
    if device and name not in ("auto", "cuda"):
        raise ValueError(f"backend {backend!r} runs on the CPU but {device[0]} is a CUDA array: "
                         "use backend='auto' or 'cuda', or copy the arrays to NumPy")
    if is_channels_last(data_format, 3):
        raise NotImplementedError(ops.GPU_LAYOUT)
    cuda._check_usable(**arrays)
    from .cuda import rank3 as gpu
    return gpu


def _batched(a):
    return a if a.ndim == 5 else a[None]


def _forward_operands(x, weight, bias, data_format):
    last = is_channels_last(data_format, 3)
    x, weight = _host(x, "x", last=last), _host(weight, "weight")
    bias = _host(bias, "bias", False)
    dtypes = [("x", x.dtype), ("weight", weight.dtype)] + \
        ([] if bias is None else [("bias", bias.dtype)])
    return last, x, weight, bias, dtypes


def _grad_operands(grad_output, x, weight, data_format):
    last = is_channels_last(data_format, 3)
    g = _host(grad_output, "grad_output", last=last)
    x = _host(x, "x", last=last)
    weight = _host(weight, "weight")
    return last, g, x, weight, [("grad_output", g.dtype), ("x", x.dtype),
                                ("weight", weight.dtype)]


def _gradients(g, x, weight, dtype, last, needs, input_grad, weight_grad_of):
    """The three gradients of 5-D-able host operands: ``input_grad(g5, w, gx5)`` fills the
    input's, ``weight_grad_of(g5, x5, gw)`` the weight's; ``needs`` says which to compute."""
    g5, x5 = _batched(in_layout(g, dtype, last, 3)), _batched(in_layout(x, dtype, last, 3))
    weight = native(weight, dtype)
    gx = gw = gb = None
    if needs[0]:
        gx = new_result(x.shape, dtype, last, 3, "grad_input")
        gx[...] = 0
        if gx.size and g5.size:
            input_grad(g5, weight, _batched(gx))
        gx = laid_out(gx, last, 3)
    if needs[1]:
        gw = np.zeros(weight.shape, dtype)
        if gw.size and x5.size:
            weight_grad_of(g5, x5, gw)
    if needs[2]:
        gb = ops.bias_grad(g5)
    return gx, gw, gb


# ----------------------------------------------------------------------------
# the operations


@complexops.forward(3, correlation=False)
def conv_transpose3d(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None,
                     stride: IntTuple = 1, padding: AutoPadding = 0,
                     output_padding: IntTuple = 0, groups: int = 1, dilation: IntTuple = 1, *,
                     output_size: Shape | None = None, out: Array | None = None,
                     backend: Backend = "auto", data_format: str = "NCDHW") -> Array:
    """3-D transposed convolution with the semantics of ``torch.nn.functional.conv_transpose3d``.

    Parameters
    ----------
    x : array_like, shape (N, C_in, D, H, W) or (C_in, D, H, W)
        Input: float16, bfloat16, float32, float64, complex64 or complex128 (as for
        :func:`conv_transpose2d`, Notes there). A Dask array gives a lazy Dask
        array tiled along its batch, depth, height and width chunks, as in 2-D; a CUDA
        array runs on its GPU (channels-first only) and gives one of its kind.
    weight : array_like, shape (C_in, C_out // groups, kD, kH, kW)
        Kernel, laid out as in ``torch.nn.ConvTranspose3d.weight``.
    bias : array_like, shape (C_out,), optional
        Added to every output voxel of its channel.
    stride : int or (int, int, int), default 1
        Spacing of the input voxels on the output grid.
    padding : int, 3 ints, 3 (lo, hi) pairs, "valid" or "same", default 0
        Voxels cropped from the full result per dimension, as for
        :func:`conv_transpose2d` (``"same"`` gives an output of ``input * stride``).
    output_padding : int or (int, int, int), default 0
        Extra voxels at the end of each dimension; smaller than its stride or dilation.
    groups : int, default 1
        Input and output channels are split into ``groups`` independent groups.
    dilation : int or (int, int, int), default 1
        Spacing between kernel taps.
    output_size : sequence of int, optional
        Wanted ``(D_out, H_out, W_out)`` (or a full shape whose last three entries
        count); picks the ``output_padding`` as ``torch.nn.ConvTranspose3d.forward`` does.
    out : numpy.ndarray, optional
        Array of exactly the result's shape and dtype to write into; returned.
    backend : {"auto", "direct", "im2col", "cuda"}, default "auto"
        The CPU backend of the 2-D calls, or ``"cuda"`` (NumPy arrays copied to the GPU and
        the result back); ``"auto"`` picks one per 2-D call.
    data_format : {"NCDHW", "NDHWC"}, default "NCDHW"
        Layout of ``x`` and of the result (and of ``out``): channels first, as PyTorch has
        it, or channels last, ``(N, D, H, W, C)`` or ``(D, H, W, C)``. ``weight`` keeps
        PyTorch's layout.

    Returns
    -------
    numpy.ndarray, or an array of x's kind for CUDA or Dask input
        ``(N, C_out, D_out, H_out, W_out)``, or unbatched, with ``D_out = (D - 1)*sD -
        (front + back) + dD*(kD - 1) + output_padding_D + 1`` (and the same for ``H`` and
        ``W``), of dtype ``np.result_type(x, weight, bias)``. Anything else that
        ``numpy.asarray`` reads (a PyTorch CPU tensor, a nested list) gives a NumPy array.

    Raises
    ------
    TypeError
        Non-float arrays, non-integer hyper-parameters, an ``out`` that is not an ndarray.
    ValueError
        As :func:`conv_transpose2d`, for the 3-D shapes and tuples of three.
    NotImplementedError
        CUDA arrays with a channels-last ``data_format`` or an ``out``.
    RuntimeError
        ``backend="cuda"`` where no GPU can be used.

    See Also
    --------
    conv_transpose2d : the 2-D operation each depth tap runs.
    conv_transpose3d_backward : the gradients.
    ConvTranspose3d : the layer, holding its weight and bias.

    Notes
    -----
    Input voxel ``(i, j, l)`` reaches output voxel ``(i*sD + t*dD - front, j*sH + kh*dH -
    top, l*sW + kw*dW - left)`` through tap ``(t, kh, kw)``. Computed per depth tap on 2-D
    backends (see the module's notes): the input's depth slices folded into the batch,
    at most one copy of the input at a time.

    float16 and bfloat16 operands run on the engine in 3-D whatever CPU ``backend`` is named
    (a weight with Inf or NaN: float32 code on float32 chunks), summed in float32 and
    rounded once, as :func:`conv_transpose2d`'s Notes say.

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> x = np.ones((1, 1, 2, 1, 1))
    >>> ct.conv_transpose3d(x, np.ones((1, 1, 3, 1, 1)), stride=2)[0, 0, :, 0, 0]
    array([1., 1., 2., 1., 1.])
    >>> ct.conv_transpose3d(np.zeros((64, 8, 8, 8), np.float32),
    ...                     np.zeros((64, 32, 2, 2, 2), np.float32), stride=2).shape
    (32, 16, 16, 16)
    """
    if any_dask(x, weight, bias, out):
        return dask_ops.conv_transpose(x, weight, bias, stride, padding, output_padding, groups,
                                       dilation, output_size=output_size, out=out,
                                       backend=backend, data_format=data_format, calls=TILES)
    gpu = _gpu(backend, data_format, x=x, weight=weight, bias=bias, out=out)
    if gpu is not None:
        if out is not None:
            raise NotImplementedError("out= is not taken by the 3-D functions on the GPU")
        return gpu.conv_transpose3d(x, weight, bias, stride, padding, output_padding, groups,
                                    dilation, output_size=output_size)
    last, x, weight, bias, dtypes = _forward_operands(x, weight, bias, data_format)
    params, shape, dtype = normalise(
        x.shape, weight.shape, None if bias is None else bias.shape, dtypes, stride=stride,
        padding=padding, output_padding=output_padding, dilation=dilation, groups=groups,
        output_size=output_size, rank=3, last=last)
    method = _method(backend)
    given = out
    if out is not None and last:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
        out = _host(out, "out", last=True)

    def run(x5, w, b, p, r5):
        return scatter(x5, w, b, p, r5, method, last)

    half = halfops.takes(x, weight, bias)       # 3-D half precision: the engine
    y = compute_into(x, weight, bias, params, shape, dtype, out,
                     halfops.transposed(method, run) if half else run, last, convert=not half)
    return given if given is not None else (channels_last(y, 3) if last else y)


@complexops.forward(3, correlation=True)
def conv3d(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None,
           stride: IntTuple = 1, padding: AutoPadding = 0, dilation: IntTuple = 1,
           groups: int = 1, *, backend: Backend = "auto",
           data_format: str = "NCDHW") -> Array:
    """3-D convolution (cross-correlation) with the semantics of ``torch.nn.functional.conv3d``.

    Parameters
    ----------
    x : array_like, shape (N, C_in, D, H, W) or (C_in, D, H, W)
        Input: float16, bfloat16, float32, float64, complex64 or complex128 (as for
        :func:`conv_transpose2d`, Notes there). A Dask array gives a lazy Dask
        array tiled along its batch, depth, height and width chunks, as in 2-D; a CUDA
        array runs on its GPU (channels-first only) and gives one of its kind.
    weight : array_like, shape (C_out, C_in // groups, kD, kH, kW)
        Kernel, laid out as in ``torch.nn.Conv3d.weight``.
    bias : array_like, shape (C_out,), optional
        Added to every output voxel of its channel.
    stride : int or (int, int, int), default 1
        Step of the kernel over the input.
    padding : int, 3 ints, 3 (lo, hi) pairs, "valid" or "same", default 0
        Zeros added around the input, as for :func:`conv2d`.
    dilation : int or (int, int, int), default 1
        Spacing between kernel taps.
    groups : int, default 1
        Input and output channels are split into ``groups`` independent groups.
    backend : {"auto", "direct", "im2col", "cuda"}, default "auto"
        The CPU backend of the 2-D calls, or ``"cuda"`` (NumPy arrays copied to the GPU and
        the result back).
    data_format : {"NCDHW", "NDHWC"}, default "NCDHW"
        Layout of ``x`` and of the result: channels first, as PyTorch has it, or
        channels last, ``(N, D, H, W, C)`` or ``(D, H, W, C)``. ``weight`` keeps
        PyTorch's layout.

    Returns
    -------
    numpy.ndarray, or an array of x's kind for CUDA or Dask input
        ``(N, C_out, D_out, H_out, W_out)`` (or unbatched), ``D_out = floor((D + front +
        back - dD*(kD - 1) - 1) / sD) + 1`` and the same for ``H`` and ``W``.
        Anything else that ``numpy.asarray`` reads (a PyTorch CPU tensor, a nested list) gives a
        NumPy array.

    Raises
    ------
    TypeError, ValueError
        As :func:`conv2d`, for the 3-D shapes and tuples of three.
    NotImplementedError
        CUDA arrays with a channels-last ``data_format`` or an ``out``.
    RuntimeError
        ``backend="cuda"`` where no GPU can be used.

    See Also
    --------
    conv2d : the 2-D operation each depth tap runs.
    conv3d_backward : the gradients.
    Conv3d : the layer.

    Notes
    -----
    Padding zeros take part in the products, as in PyTorch: where one meets an Inf or NaN
    weight the output is NaN.

    float16 and bfloat16 operands run on the engine in 3-D whatever CPU ``backend`` is
    named, summed in float32 and rounded once; the engine's zero border is the padding, so
    an Inf or NaN weight gives PyTorch's NaN.

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> x = np.arange(4.0).reshape(1, 1, 4, 1, 1)
    >>> ct.conv3d(x, np.ones((1, 1, 2, 1, 1)), stride=2)[0, 0, :, 0, 0]
    array([1., 5.])
    >>> ct.conv3d(np.zeros((3, 5, 6, 7)), np.zeros((4, 3, 3, 3, 3)), padding="same").shape
    (4, 5, 6, 7)
    """
    if any_dask(x, weight, bias):
        return dask_ops.conv(x, weight, bias, stride, padding, dilation, groups, backend=backend,
                             data_format=data_format, calls=TILES)
    gpu = _gpu(backend, data_format, x=x, weight=weight, bias=bias)
    if gpu is not None:
        return gpu.conv3d(x, weight, bias, stride, padding, dilation, groups)
    last, x, weight, bias, dtypes = _forward_operands(x, weight, bias, data_format)
    params, shape, dtype = normalise_conv(
        x.shape, weight.shape, None if bias is None else bias.shape, dtypes, stride=stride,
        padding=padding, dilation=dilation, groups=groups, rank=3, last=last)
    method = _method(backend)
    half = halfops.takes(x, weight, bias)       # 3-D half precision: the engine
    y = compute_into(x, weight, bias, params, shape, dtype, None,
                     halfops.correlation(method, None) if half else
                     lambda x5, w, b, p, r5: correlate(x5, w, b, r5, p, method, last), last,
                     convert=not half)
    return channels_last(y, 3) if last else y


@complexops.gradients(3, correlation=False)
@halfops.float32_gradients
def conv_transpose3d_backward(grad_output: ArrayLike, x: ArrayLike, weight: ArrayLike,
                              stride: IntTuple = 1, padding: AutoPadding = 0,
                              output_padding: IntTuple = 0, groups: int = 1,
                              dilation: IntTuple = 1, *, output_size: Shape | None = None,
                              needs_input_grad: bool = True, needs_weight_grad: bool = True,
                              needs_bias_grad: bool = True, backend: Backend = "auto",
                              data_format: str = "NCDHW") -> Gradients:
    """Gradients of :func:`conv_transpose3d` with respect to its input, weight and bias.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to ``conv_transpose3d(x, weight, ...)``; of the
        forward result's shape.
    x : array_like, shape (N, C_in, D, H, W) or (C_in, D, H, W)
        The forward call's input.
    weight : array_like, shape (C_in, C_out // groups, kD, kH, kW)
        The forward call's weight.
    stride, padding, output_padding, groups, dilation, output_size : int, tuples or None
        The forward call's hyper-parameters, as for :func:`conv_transpose3d`.
    needs_input_grad, needs_weight_grad, needs_bias_grad : bool, default True
        Which gradients to compute; the others are returned as ``None``.
    backend : {"auto", "direct", "im2col", "cuda"}, default "auto"
        The CPU backend of the 2-D calls, or ``"cuda"`` (NumPy arrays copied to the GPU and
        the result back).
    data_format : {"NCDHW", "NDHWC"}, default "NCDHW"
        Layout of ``grad_output``, ``x`` and ``grad_input``, as for :func:`conv_transpose3d`.

    Returns
    -------
    grad_input : numpy.ndarray or None
        Shape of ``x``; dtype ``np.result_type(grad_output, x, weight)``, as the others.
    grad_weight : numpy.ndarray or None
        Shape of ``weight``.
    grad_bias : numpy.ndarray or None
        Shape ``(C_out,)``. NumPy arrays also for operands that ``numpy.asarray`` reads (a
        PyTorch CPU tensor, a nested list); arrays of the operands' kind for CUDA or Dask
        ones.

    Raises
    ------
    TypeError, ValueError, NotImplementedError
        As :func:`conv_transpose3d`, and for a ``grad_output`` not of the forward
        result's shape.

    See Also
    --------
    conv_transpose3d : the forward operation.
    conv3d : the operator that gives ``grad_input``.
    ConvTranspose3d : a layer that calls this in its ``backward``.

    Notes
    -----
    ``grad_input`` is ``conv3d(grad_output, weight, stride, padding, dilation, groups)``
    cropped to ``x``'s size; ``grad_weight[ci, j, t, kh, kw] = sum x[n, ci, i, h, w] *
    grad_output[n, g*C_out_g + j, i*sD + t*dD - front, h*sH + kh*dH - top, w*sW + kw*dW -
    left]``; ``grad_bias`` sums ``grad_output`` over all but the channels.

    Half-precision operands (float16, bfloat16) are converted to float32 copies, whole,
    the gradients computed in float32 and returned in the operands' promoted dtype
    (rounded once); ``backend="cuda"`` refuses them. Complex operands give PyTorch's
    gradients for a real loss (``dL/dRe + i dL/dIm``: the adjoint, with the conjugated
    weight or input), from the real call of the three convolutions
    (``convtranspose.complexops``).

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> x, w = np.ones((1, 1, 2, 1, 1)), np.ones((1, 1, 3, 1, 1))
    >>> y = ct.conv_transpose3d(x, w, stride=2)
    >>> gx, gw, gb = ct.conv_transpose3d_backward(np.ones_like(y), x, w, stride=2)
    >>> gx.ravel(), gw.ravel(), gb
    (array([3., 3.]), array([2., 2., 2.]), array([5.]))
    """
    if any_dask(grad_output, x, weight):
        return dask_ops.conv_transpose_backward(
            grad_output, x, weight, stride, padding, output_padding, groups, dilation,
            output_size=output_size, needs_input_grad=needs_input_grad,
            needs_weight_grad=needs_weight_grad, needs_bias_grad=needs_bias_grad,
            backend=backend, data_format=data_format, calls=TILES)
    gpu = _gpu(backend, data_format, grad_output=grad_output, x=x, weight=weight)
    if gpu is not None:
        return gpu.conv_transpose3d_backward(
            grad_output, x, weight, stride, padding, output_padding, groups, dilation,
            output_size=output_size, needs_input_grad=needs_input_grad,
            needs_weight_grad=needs_weight_grad, needs_bias_grad=needs_bias_grad)
    last, g, x, weight, dtypes = _grad_operands(grad_output, x, weight, data_format)
    params, dtype = normalise_backward(
        g.shape, x.shape, weight.shape, dtypes, stride=stride, padding=padding,
        output_padding=output_padding, dilation=dilation, groups=groups,
        output_size=output_size, rank=3, last=last)
    method = _method(backend)
    return _gradients(g, x, weight, dtype, last,
                      (needs_input_grad, needs_weight_grad, needs_bias_grad),
                      lambda g5, w, gx5: correlate(g5, w, None, gx5, params, method, last),
                      lambda g5, x5, gw: weight_grad(x5, g5, gw, params, method, last))


@complexops.gradients(3, correlation=True)
@halfops.float32_gradients
def conv3d_backward(grad_output: ArrayLike, x: ArrayLike, weight: ArrayLike,
                    stride: IntTuple = 1, padding: AutoPadding = 0, dilation: IntTuple = 1,
                    groups: int = 1, *, needs_input_grad: bool = True,
                    needs_weight_grad: bool = True, needs_bias_grad: bool = True,
                    backend: Backend = "auto", data_format: str = "NCDHW") -> Gradients:
    """Gradients of :func:`conv3d` with respect to its input, weight and bias.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to ``conv3d(x, weight, ...)``; of its shape.
    x : array_like, shape (N, C_in, D, H, W) or (C_in, D, H, W)
        The forward call's input.
    weight : array_like, shape (C_out, C_in // groups, kD, kH, kW)
        The forward call's weight.
    stride, padding, dilation, groups : int, tuples or str
        The forward call's hyper-parameters, as for :func:`conv3d`.
    needs_input_grad, needs_weight_grad, needs_bias_grad : bool, default True
        Which gradients to compute; the others are returned as ``None``.
    backend : {"auto", "direct", "im2col", "cuda"}, default "auto"
        The CPU backend of the 2-D calls, or ``"cuda"`` (NumPy arrays copied to the GPU and
        the result back).
    data_format : {"NCDHW", "NDHWC"}, default "NCDHW"
        Layout of ``grad_output``, ``x`` and ``grad_input``, as for :func:`conv3d`.

    Returns
    -------
    grad_input : numpy.ndarray or None
        Shape of ``x``.
    grad_weight : numpy.ndarray or None
        Shape of ``weight``.
    grad_bias : numpy.ndarray or None
        Shape ``(C_out,)``. NumPy arrays also for operands that ``numpy.asarray`` reads (a
        PyTorch CPU tensor, a nested list); arrays of the operands' kind for CUDA or Dask
        ones.

    Raises
    ------
    TypeError, ValueError, NotImplementedError
        As :func:`conv3d`, and for a ``grad_output`` not of the forward result's shape.

    See Also
    --------
    conv3d : the forward operation.
    conv_transpose3d : the operator that gives ``grad_input``.
    Conv3d : a layer that calls this in its ``backward``.

    Notes
    -----
    ``grad_input`` is the transposed convolution of ``grad_output`` with the same weight,
    sized to give back ``x``'s shape; ``grad_weight[co, c, t, kh, kw] = sum
    grad_output[n, co, i, h, w] * x[n, g*C_in_g + c, i*sD + t*dD - front, ...]``.

    Half-precision operands (float16, bfloat16) are converted to float32 copies, whole,
    the gradients computed in float32 and returned in the operands' promoted dtype
    (rounded once); ``backend="cuda"`` refuses them. Complex operands give PyTorch's
    gradients for a real loss (``dL/dRe + i dL/dIm``: the adjoint, with the conjugated
    weight or input), from the real call of the three convolutions
    (``convtranspose.complexops``).

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> x, w = np.ones((1, 1, 3, 1, 1)), np.ones((1, 1, 2, 1, 1))
    >>> gx, gw, gb = ct.conv3d_backward(np.ones((1, 1, 2, 1, 1)), x, w)
    >>> gx.ravel(), gw.ravel(), gb
    (array([1., 2., 1.]), array([2., 2.]), array([2.]))
    """
    if any_dask(grad_output, x, weight):
        return dask_ops.conv_backward(grad_output, x, weight, stride, padding, dilation, groups,
                                      needs_input_grad=needs_input_grad,
                                      needs_weight_grad=needs_weight_grad,
                                      needs_bias_grad=needs_bias_grad, backend=backend,
                                      data_format=data_format, calls=TILES)
    gpu = _gpu(backend, data_format, grad_output=grad_output, x=x, weight=weight)
    if gpu is not None:
        return gpu.conv3d_backward(grad_output, x, weight, stride, padding, dilation, groups,
                                   needs_input_grad=needs_input_grad,
                                   needs_weight_grad=needs_weight_grad,
                                   needs_bias_grad=needs_bias_grad)
    last, g, x, weight, dtypes = _grad_operands(grad_output, x, weight, data_format)
    params, dtype = normalise_conv_backward(
        g.shape, x.shape, weight.shape, dtypes, stride=stride, padding=padding,
        dilation=dilation, groups=groups, rank=3, last=last)
    method = _method(backend)

    def input_grad(g5, w, gx5):
        tparams = adjoint_params(params, g5.shape[2:], w.shape[2:], gx5.shape[2:])
        scatter(g5, w, None, tparams, gx5, method, last)

    return _gradients(g, x, weight, dtype, last,
                      (needs_input_grad, needs_weight_grad, needs_bias_grad), input_grad,
                      lambda g5, x5, gw: weight_grad(g5, x5, gw, params, method, last))


#: What the tasks of a 3-D Dask graph call on NumPy tiles (:mod:`convtranspose.dask_ops`).
TILES = dask_ops.TileCalls(3, conv_transpose3d, conv3d, conv_transpose3d_backward)
