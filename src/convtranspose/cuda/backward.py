"""``numba.cuda`` kernels for ``conv2d`` and the gradients of both convolutions.

The GPU sibling of :mod:`convtranspose.cpu.backward`, with the same two operators and
function names:

* a **correlation** ``out[n, co, oh, ow] = bias[co] + sum_{c, kh, kw} x[n, g*C_in_g + c,
  oh*sH + kh*dH - top, ow*sW + kw*dW - left] * weight[co, c, kh, kw]``, reading zero
  outside ``x`` (``conv2d``'s forward, and the transposed convolution's input gradient
  with ``x = grad_output`` and the forward weight): :func:`correlate_kernel`, gather
  form, one thread per output element, taps in the order ``kh``, ``kw``, ``c``;
* a **weight gradient** ``gw[ca, j, kh, kw] = sum_{n, oh, ow} a[n, ca, oh, ow] *
  b[n, g*C_b_g + j, oh*sH + kh*dH - top, ow*sW + kw*dW - left]`` (for a transposed
  convolution ``a = x`` and ``b = grad_output``; for ``conv2d`` ``a = grad_output`` and
  ``b = x``): :func:`weight_grad_kernel`;
* and the **bias gradient** ``gb[co] = sum_{n, oh, ow} g[n, co, oh, ow]``:
  :func:`bias_grad_kernel`.

The zeros read outside ``x`` (resp. ``b``) are multiplied like any other value, as in
PyTorch's zero-padded patches: a padding zero times an Inf or NaN is NaN (the rule of
:mod:`convtranspose.nonfinite`, which the CPU backends apply after their kernels).

Deterministic reductions, no atomics: one block of ``T`` threads owns one weight (or
bias) element at a time. Thread ``t`` adds the terms of the flat pixel indices ``p = t,
t + T, t + 2T, ...`` (``p`` running over ``(n, oh, ow)`` in C order) into a register,
in that increasing order; the ``T`` partial sums then go through a fixed pairwise tree in
shared memory (``s[t] += s[t + h]`` for ``h = T/2, T/4, ..., 1``), and ``s[0]`` is the
result. ``T = min(REDUCE_THREADS, next power of two >= N*H_o*W_o)`` depends only on the
shape and :data:`REDUCE_THREADS`, never on the grid, the GPU or the timing, so two runs
give the same bits.

Kernels are made by factories cached per dtype (and block size, which sizes the shared
memory); the launch-shape constants below are read at call time, so a test can patch
them. Float32 kernels compute in float32 (typed zeros, operands cast to the result
type; ``tests/cuda/test_ptx.py`` checks the PTX). Kernels assume valid arguments and
never allocate. They call no device functions (so each repeats its own index arithmetic):
with the built-in ``numba.cuda``, compiling a kernel that calls one asks the current GPU
for its compute capability, so ``compile_ptx`` would then need a GPU.

:func:`correlate`, :func:`weight_grad` and :func:`bias_grad` launch the kernels on Numba
device arrays; :func:`conv_transpose2d_backward`, :func:`conv2d` and
:func:`conv2d_backward` are the array-level entries (see :mod:`convtranspose.cuda`).
"""
from __future__ import annotations

import functools

import numba
import numpy as np
from numba import cuda

from ..params import (adjoint_params, normalise_backward, normalise_conv2d,
                      normalise_conv2d_backward)
from . import kernels
from .arrays import (_as4, _compute, _empty, _host_ndarray, _view, caller_stream, common_device,
                     device_operand, dtype_of, gpu_context, operand_kinds)

__all__ = ["CORRELATE_THREADS", "CORRELATE_MAX_BLOCKS", "REDUCE_THREADS", "REDUCE_MAX_BLOCKS",
           "correlate_kernel", "weight_grad_kernel", "bias_grad_kernel", "correlate",
           "weight_grad", "bias_grad", "conv_transpose2d_backward", "conv2d",
           "conv2d_backward"]

# ---------------------------------------------------------------------------------------
# launch shapes (patched small by tests/cuda/conftest.py)

#: Threads per block of the correlation kernel, and the most blocks (a grid-stride loop
#: covers the rest).
CORRELATE_THREADS = 256
CORRELATE_MAX_BLOCKS = 1 << 20
#: Threads per block of the reductions (a power of two: the tree halves it), and the most
#: blocks; each block reduces one weight or bias element at a time.
REDUCE_THREADS = 256
REDUCE_MAX_BLOCKS = 1 << 20

_NB_TYPES = {np.dtype(np.float32): numba.float32, np.dtype(np.float64): numba.float64}


@functools.lru_cache(maxsize=None)
def correlate_kernel(dtype):
    """The correlation kernel computing in ``dtype`` (float32 or float64).

    Signature ``(x, weight, bias, out, s_h, s_w, d_h, d_w, top, left, groups, has_bias)``
    with ``x`` (N, C_in, H, W), ``weight`` (C_out, C_in // groups, kH, kW), ``bias``
    (C_out,) (read only when ``has_bias``) and ``out`` (N, C_out, H_out, W_out); taps
    outside ``x`` multiply a zero (the module docstring). One
    thread per output element (consecutive threads on consecutive columns), any 1-D
    launch: the threads loop over what the grid does not cover.
    """
    nbt = _NB_TYPES[np.dtype(dtype)]
    zero = nbt(0)

    @cuda.jit
    def kernel(x, weight, bias, out, s_h, s_w, d_h, d_w, top, left, groups, has_bias):
        h_in, w_in = x.shape[2], x.shape[3]
        c_out, c_in_g, k_h, k_w = weight.shape[0], weight.shape[1], weight.shape[2], weight.shape[3]
        h_out, w_out = out.shape[2], out.shape[3]
        c_out_g = c_out // groups
        total = out.shape[0] * c_out * h_out * w_out
        for e in range(cuda.grid(1), total, cuda.gridsize(1)):
            ow = e % w_out
            r = e // w_out
            oh = r % h_out
            r = r // h_out
            co = r % c_out
            n = r // c_out
            cbase = (co // c_out_g) * c_in_g
            acc = zero
            for kh in range(k_h):
                ih = oh * s_h + kh * d_h - top
                row_in = ih >= 0 and ih < h_in
                for kw in range(k_w):
                    iw = ow * s_w + kw * d_w - left
                    inside = row_in and iw >= 0 and iw < w_in
                    for c in range(c_in_g):
                        xv = zero                    # outside: a zero that is multiplied
                        if inside:
                            xv = nbt(x[n, cbase + c, ih, iw])
                        acc += xv * nbt(weight[co, c, kh, kw])
            if has_bias:
                acc += nbt(bias[co])
            out[n, co, oh, ow] = acc

    return kernel


def _check_threads(threads):
    if threads < 1 or threads & (threads - 1):
        raise ValueError(f"reduction blocks need a power-of-two thread count, got {threads}")


@functools.lru_cache(maxsize=None)
def _reduction_kernel(dtype, threads, products):
    """The block reduction behind :func:`weight_grad_kernel` (``products``: sums of
    ``a * b``) and :func:`bias_grad_kernel` (sums of ``a``; ``b`` and the integers are
    not read). ``out`` is 4-D, one block per element at a time."""
    _check_threads(threads)
    nbt = _NB_TYPES[np.dtype(dtype)]
    zero = nbt(0)

    @cuda.jit
    def kernel(a, b, out, s_h, s_w, d_h, d_w, top, left, groups):
        h_o, w_o = a.shape[2], a.shape[3]
        c_b_g, k_h, k_w = out.shape[1], out.shape[2], out.shape[3]
        c_a_g = a.shape[1] // groups
        n_elem = out.shape[0] * c_b_g * k_h * k_w
        n_pix = a.shape[0] * h_o * w_o
        buf = cuda.shared.array(threads, nbt)
        tid = cuda.threadIdx.x
        for e in range(cuda.blockIdx.x, n_elem, cuda.gridDim.x):   # the same for the block
            kw = e % k_w
            r = e // k_w
            kh = r % k_h
            r = r // k_h
            j = r % c_b_g
            ca = r // c_b_g
            cb = (ca // c_a_g) * c_b_g + j
            acc = zero
            for p in range(tid, n_pix, threads):
                ow = p % w_o
                q = p // w_o
                oh = q % h_o
                n = q // h_o
                if products:
                    ih = oh * s_h + kh * d_h - top
                    iw = ow * s_w + kw * d_w - left
                    bv = zero                        # outside: a zero that is multiplied
                    if ih >= 0 and ih < b.shape[2] and iw >= 0 and iw < b.shape[3]:
                        bv = nbt(b[n, cb, ih, iw])
                    acc += nbt(a[n, ca, oh, ow]) * bv
                else:
                    acc += nbt(a[n, ca, oh, ow])
            buf[tid] = acc
            cuda.syncthreads()
            half = threads // 2
            while half > 0:          # the fixed pairwise tree
                if tid < half:
                    buf[tid] += buf[tid + half]
                cuda.syncthreads()
                half //= 2
            if tid == 0:             # only thread 0 reads buf[0]: no barrier before reuse
                out[ca, j, kh, kw] = buf[0]

    return kernel


def weight_grad_kernel(dtype, threads):
    """The weight-gradient kernel for ``dtype`` and blocks of ``threads`` (a power of two).

    Signature ``(a, b, gw, s_h, s_w, d_h, d_w, top, left, groups)`` with ``a`` (N, C_a,
    H_o, W_o) on the strided grid, ``b`` (N, C_b, H, W) sampled and ``gw`` (C_a,
    C_b // groups, kH, kW). Launch 1-D blocks of ``threads``, any number of them; the
    summation order is the module docstring's.
    """
    return _reduction_kernel(np.dtype(dtype), threads, True)


def bias_grad_kernel(dtype, threads):
    """The bias-gradient kernel, signature as :func:`weight_grad_kernel`'s with ``a = g``
    (N, C, H, W) and ``gw = gb`` viewed as (C, 1, 1, 1) (``b`` and the integers are not
    read): ``gb[co]`` sums ``g[:, co]`` in the module docstring's order."""
    return _reduction_kernel(np.dtype(dtype), threads, False)


# ---------------------------------------------------------------------------------------
# launches on Numba device arrays (4-D, any strides); never validate


def _launch(kern, blocks, threads, stream, *args):
    kernels._run(kern, (blocks, threads), stream, *args)


def _reduce_threads(n_pix):
    """Block size of the reductions: a power of two, at most ``REDUCE_THREADS``, no larger
    than the pixel count needs. A function of the shape only, so the order is fixed."""
    _check_threads(REDUCE_THREADS)
    return min(REDUCE_THREADS, kernels._pow2_at_least(n_pix))


def correlate(x, weight, bias, out, stride, dilation, before, groups, stream=0):
    """``out`` = correlation of ``x`` with ``weight`` plus ``bias`` (or ``None``); see the
    module docstring. ``before`` is ``(top, left)``. Returns ``out``."""
    total = out.size
    if total:
        has_bias = bias is not None
        blocks = min(-(-total // CORRELATE_THREADS), CORRELATE_MAX_BLOCKS)
        _launch(correlate_kernel(np.dtype(out.dtype)), blocks, CORRELATE_THREADS, stream,
                x, weight, bias if has_bias else kernels._dummy(out.dtype), out,
                *stride, *dilation, *before, groups, has_bias)
    return out


def weight_grad(a, b, gw, stride, dilation, before, groups, stream=0):
    """``gw`` = weight gradient of ``a`` on the strided grid against ``b`` sampled; see the
    module docstring. Returns ``gw`` (zeros for an empty batch)."""
    threads = _reduce_threads(a.shape[0] * a.shape[2] * a.shape[3])
    blocks = min(gw.size, REDUCE_MAX_BLOCKS)
    _launch(weight_grad_kernel(gw.dtype, threads), blocks, threads, stream,
            a, b, gw, *stride, *dilation, *before, groups)
    return gw


def bias_grad(g, gb, stream=0):
    """``gb[co]`` = sum of ``g[:, co]`` over images and pixels; ``gb`` C-contiguous.
    Returns ``gb``."""
    threads = _reduce_threads(g.shape[0] * g.shape[2] * g.shape[3])
    blocks = min(gb.size, REDUCE_MAX_BLOCKS)
    _launch(bias_grad_kernel(gb.dtype, threads), blocks, threads, stream,
            g, g, gb.reshape(gb.size, 1, 1, 1), 1, 1, 1, 1, 0, 0, 1)
    return gb


# ---------------------------------------------------------------------------------------
# array-level entries: CUDA arrays (or NumPy arrays, copied) in, the caller's kind out


class _Call:
    """The operands of one call; ``lead`` (the first) decides the kind of the results.

    A CUDA ``lead`` gives results of its kind on its GPU and its stream; the other
    operands may be host arrays (copied to that GPU). A NumPy ``lead`` needs NumPy
    operands throughout: they are copied to the current GPU and the results copied back.
    """

    def __init__(self, **operands):
        (self.lead, lead), *others = operands.items()
        self.kind, kinds = operand_kinds(self.lead, lead, dict(others))
        self.kinds = {self.lead: self.kind, **kinds}
        self.arrays = {n: _host_ndarray(a, n) if self.kinds[n] == "numpy" else a
                       for n, a in operands.items() if a is not None}
        self.dtypes = [np.dtype(dtype_of(a, n)) for n, a in self.arrays.items()]
        self.stream, self.dtype = 0, None      # set by run()

    def shape(self, name):
        a = self.arrays.get(name)
        return None if a is None else tuple(a.shape)

    def run(self, compute, dtype):
        """``compute(call)`` on the GPU the operands share; its results (arrays from
        :meth:`empty`, or ``None``) come back as a tuple of the lead's kind."""
        with gpu_context(common_device(self.arrays, self.kinds)):
            lead = self.arrays[self.lead]
            self.stream = caller_stream(lead, self.kind)
            self.dtype = dtype
            results = compute(self)
            if self.kind == "numpy":
                results = tuple(None if r is None else r.copy_to_host() for r in results)
        return results

    def device(self, name):
        """Operand ``name`` as a 4-D Numba device array (a view, or a copy of a host array
        in the result dtype), or ``None``."""
        a = self.arrays.get(name)
        if a is None:
            return None
        return _batched(device_operand(a, self.kinds[name], self.dtype, self.stream))

    def empty(self, shape):
        """A result of ``shape`` and the lead's kind (a Numba device array for NumPy lead)."""
        if self.kind == "numpy":
            return _empty("numba", None, shape, self.dtype, self.stream)
        return _empty(self.kind, self.arrays[self.lead], shape, self.dtype, self.stream)

    def view(self, result):
        """A Numba device array sharing ``result``'s memory (4-D for a 3-D result)."""
        return _batched(_view(result, "numba" if self.kind == "numpy" else self.kind))


def _batched(d):
    return _as4(d) if d.ndim == 3 else d


def _gradients(call, params, dtype, needs, transposed):
    """``(grad_input, grad_weight, grad_bias)`` of a transposed convolution
    (``transposed``) or a convolution, ``None`` where ``needs`` says no."""
    s, d, grp = params.stride, params.dilation, params.groups
    before = (params.pad_h[0], params.pad_w[0])

    def compute(c):
        g4, x4, w = c.device("grad_output"), c.device("x"), c.device("weight")
        gi = gw = gb = None
        if needs[0]:
            gi = c.empty(c.shape("x"))
            gi4 = c.view(gi)
            if transposed:
                correlate(g4, w, None, gi4, s, d, before, grp, c.stream)
            elif gi4.size:   # the transposed convolution with the adjoint's parameters
                _compute(g4, w, None, gi4,
                         adjoint_params(params, g4.shape[2:], w.shape[2:], gi4.shape[2:]),
                         c.stream)
        if needs[1]:
            gw = c.empty(c.shape("weight"))
            a, b = (x4, g4) if transposed else (g4, x4)
            weight_grad(a, b, c.view(gw), s, d, before, grp, c.stream)
        if needs[2]:
            gb = c.empty((g4.shape[1],))
            bias_grad(g4, c.view(gb), c.stream)
        return gi, gw, gb

    return call.run(compute, dtype)


def conv_transpose2d_backward(grad_output, x, weight, stride=1, padding=0, output_padding=0,
                              groups=1, dilation=1, *, output_size=None, needs_input_grad=True,
                              needs_weight_grad=True, needs_bias_grad=True):
    """The device path of :func:`convtranspose.conv_transpose2d_backward`."""
    call = _Call(grad_output=grad_output, x=x, weight=weight)
    params, dtype = normalise_backward(
        call.shape("grad_output"), call.shape("x"), call.shape("weight"), call.dtypes,
        stride=stride, padding=padding, output_padding=output_padding, dilation=dilation,
        groups=groups, output_size=output_size)
    return _gradients(call, params, dtype,
                      (needs_input_grad, needs_weight_grad, needs_bias_grad), True)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """The device path of :func:`convtranspose.conv2d`."""
    call = _Call(x=x, weight=weight, bias=bias)
    params, shape, dtype = normalise_conv2d(
        call.shape("x"), call.shape("weight"), call.shape("bias"), call.dtypes, stride=stride,
        padding=padding, dilation=dilation, groups=groups)

    def compute(c):
        out = c.empty(shape)
        correlate(c.device("x"), c.device("weight"), c.device("bias"), c.view(out),
                  params.stride, params.dilation, (params.pad_h[0], params.pad_w[0]),
                  params.groups, c.stream)
        return (out,)

    return call.run(compute, dtype)[0]


def conv2d_backward(grad_output, x, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    needs_input_grad=True, needs_weight_grad=True, needs_bias_grad=True):
    """The device path of :func:`convtranspose.conv2d_backward`."""
    call = _Call(grad_output=grad_output, x=x, weight=weight)
    params, dtype = normalise_conv2d_backward(
        call.shape("grad_output"), call.shape("x"), call.shape("weight"), call.dtypes,
        stride=stride, padding=padding, dilation=dilation, groups=groups)
    return _gradients(call, params, dtype,
                      (needs_input_grad, needs_weight_grad, needs_bias_grad), False)
