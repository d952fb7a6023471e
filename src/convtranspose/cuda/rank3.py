"""The 3-D operations on CUDA arrays, by depth-stacking onto the 2-D kernels.

The CPU path (:mod:`convtranspose.rank3`) adds one 2-D result per depth tap; here the
taps that reach one output depth slice are instead stacked as extra input channels, so
each 2-D kernel launch writes its slices whole and nothing is accumulated:

* the **transposed convolution**'s output slice ``o`` gets the taps ``t`` with ``o + front
  - t*dD`` a multiple of ``sD`` whose input slice exists. Slices with the same taps (one
  group per stride phase, and the few near the ends) form one launch: their inputs are
  gathered by :func:`fold` as ``(N*J, T*C_in, H, W)`` (channels ``(group, tap, c)``), the
  weight's taps stacked the same way on the host, and the 2-D result scattered back into
  the output's slices by :func:`unfold`. Only real (input, tap) pairs meet, as the
  definition has it;
* the **correlation** (``conv3d``, the input gradient) stacks all ``kD`` taps for every
  output slice, with zero slices where a tap reads outside the input: PyTorch multiplies
  those zeros too (``0 * inf`` is NaN there, as on the CPU);
* the **weight gradient** of tap ``t`` is the 2-D weight gradient of the input slices and
  the grad slices that ``t`` pairs (zeros outside, as in the correlation), the batch and
  the depth folded together; the ``kD`` planes are assembled on the host.

Memory on the GPU besides the result: one stacked input and one 2-D result per launch.
Results are of the lead operand's kind on its stream, as for the 2-D functions.
"""
from __future__ import annotations

import numpy as np
from numba import cuda

from ..params import (adjoint_params, normalise, normalise_backward, normalise_conv,
                      normalise_conv_backward)
from .arrays import _compute
from .backward import _Call, _launch, bias_grad, correlate, weight_grad

__all__ = ["conv_transpose3d", "conv3d", "conv_transpose3d_backward", "conv3d_backward",
           "fold", "unfold"]

_THREADS = 256
_MAX_BLOCKS = 4096


@cuda.jit
def _fold_kernel(src, dst, base, js, ts, taps, c_g):
    n_img, c_in, depth = src.shape[0], src.shape[1], src.shape[2]
    h, w = src.shape[3], src.shape[4]
    per = dst.shape[0] // n_img
    total = dst.shape[0] * dst.shape[1] * h * w
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for e in range(start, total, step):
        iw = e % w
        ih = (e // w) % h
        k = (e // (w * h)) % dst.shape[1]
        b = e // (w * h * dst.shape[1])
        n, j = b // per, b % per
        g, rest = k // (taps * c_g), k % (taps * c_g)
        m, c = rest // c_g, rest % c_g
        d = base + j * js + m * ts
        ch = g * c_g + c
        if 0 <= d < depth and ch < c_in:
            dst[b, k, ih, iw] = src[n, ch, d, ih, iw]
        else:
            dst[b, k, ih, iw] = 0


@cuda.jit
def _unfold_kernel(src, dst, base, js):
    n_img, c, h, w = dst.shape[0], dst.shape[1], dst.shape[3], dst.shape[4]
    per = src.shape[0] // n_img
    total = src.shape[0] * c * h * w
    start = cuda.grid(1)
    step = cuda.gridsize(1)
    for e in range(start, total, step):
        iw = e % w
        ih = (e // w) % h
        ch = (e // (w * h)) % c
        b = e // (w * h * c)
        dst[b // per, ch, base + (b % per) * js, ih, iw] = src[b, ch, ih, iw]


def _blocks(total):
    return max(1, min(-(-total // _THREADS), _MAX_BLOCKS))


def fold(src, per, channels, base, js, ts, taps, c_g, dtype, stream=0):
    """``(N*per, channels, H, W)``: ``[n*per + j, (g*taps + m)*c_g + c] = src[n, g*c_g + c,
    base + j*js + m*ts]`` for a 5-D device ``src``, zero where that depth (or channel) lies
    outside it."""
    n, _, _, h, w = src.shape
    dst = cuda.device_array((n * per, channels, h, w), dtype, stream=stream)
    if dst.size:
        _launch(_fold_kernel, _blocks(dst.size), _THREADS, stream, src, dst, base, js, ts,
                taps, c_g)
    return dst


def unfold(src, dst, base, js, stream=0):
    """``dst[n, c, base + j*js] = src[n*J + j, c]``: a fold's layout back into the depth
    slices of a 5-D device ``dst``."""
    if src.size:
        _launch(_unfold_kernel, _blocks(src.size), _THREADS, stream, src, dst, base, js)
    return dst


def _lead(d):
    """A device array of 4 dimensions as 5 (one image); others as they are."""
    if d.ndim == 5:
        return d
    return d[None] if not hasattr(d, "gpu_data") else cuda.devicearray.DeviceNDArray(
        (1, *d.shape), (d.strides[0] * d.shape[0], *d.strides), d.dtype, gpu_data=d.gpu_data)


def _host_weight(c, name="weight"):
    """The weight (small) on the host, in the result dtype, for stacking its taps."""
    a = c.arrays[name]
    a = a if isinstance(a, np.ndarray) else c.device(name).copy_to_host()
    return np.asarray(a, c.dtype)


def _transposed_groups(small, large, k, s, d, front):
    """Output slices of a transposed convolution grouped by their taps: ``(taps, first
    slice, count)`` with the slices ``first + s*i``; the taps a tuple of kernel depths."""
    by_taps = {}
    for o in range(large):
        taps = tuple(t for t in range(k) if (o + front - t * d) % s == 0
                     and 0 <= (o + front - t * d) // s < small)
        by_taps.setdefault((o % s, taps), []).append(o)
    groups = []
    for (_, taps), slices in sorted(by_taps.items()):
        run = [slices[0]]
        for o in slices[1:]:
            if o == run[-1] + s:
                run.append(o)
            else:
                groups.append((taps, run[0], len(run)))
                run = [o]
        groups.append((taps, run[0], len(run)))
    return groups


def _stack_transposed(weight, taps, groups):
    """The weight ``(C_in, C_out_g, kD, kH, kW)``'s depth ``taps`` stacked as input channels
    ``(group, tap, c)``: ``(T*C_in, C_out_g, kH, kW)``."""
    c_in, c_out_g = weight.shape[:2]
    c_g = c_in // groups
    w = weight[:, :, list(taps)].reshape(groups, c_g, c_out_g, len(taps), *weight.shape[3:])
    return np.ascontiguousarray(w.transpose(0, 3, 1, 2, 4, 5)).reshape(
        groups * len(taps) * c_g, c_out_g, *weight.shape[3:])


def _stack_conv(weight, groups):
    """A convolution weight ``(C_out, C_in_g, kD, kH, kW)`` with its depth taps as input
    channels ``(tap, c)``: ``(C_out, kD*C_in_g, kH, kW)``."""
    c_out, c_in_g, k_d = weight.shape[:3]
    return np.ascontiguousarray(weight.transpose(0, 2, 1, 3, 4)).reshape(
        c_out, k_d * c_in_g, *weight.shape[3:])


def _scatter(x5, weight, bias, params, out5, stream):
    """The transposed convolution of device ``x5`` with host ``weight`` into device
    ``out5`` (bias a device array or ``None``)."""
    n, c_in, depth = x5.shape[:3]
    plane, g = params.plane, params.groups
    s, d, front = params.stride[0], params.dilation[0], params.pads[0][0]
    for taps, first, count in _transposed_groups(depth, out5.shape[2], weight.shape[2], s, d,
                                                 front):
        y = cuda.device_array((n * count, out5.shape[1], *out5.shape[3:]), out5.dtype,
                              stream=stream)
        if taps:
            # input slice of output slice first + s*j through tap t: (first + front - t*d)/s + j
            t0 = taps[0]
            base = (first + front - t0 * d) // s
            ts = -(taps[1] - t0) * d // s if len(taps) > 1 else 0
            xs = fold(x5, count, len(taps) * c_in, base, 1, ts, len(taps), c_in // g,
                      out5.dtype, stream)
            w = cuda.to_device(_stack_transposed(weight, taps, g), stream=stream)
            _compute(xs, w, bias, y, plane, stream)
        else:                                   # slices no tap reaches: the bias alone
            zeros = fold(x5, count, g, -1, 0, 0, 1, 1, out5.dtype, stream)   # depth -1: zeros
            w = cuda.to_device(np.zeros((g, out5.shape[1] // g, *weight.shape[3:]),
                                        out5.dtype), stream=stream)
            _compute(zeros, w, bias, y, plane, stream)
        unfold(y, out5, first, s, stream)
    return out5


def _correlate(x5, weight, bias, params, out5, stream):
    """The correlation (``conv3d``) of device ``x5`` with host ``weight`` (C_out, C_in_g,
    kD, kH, kW) into device ``out5``."""
    n, c_in = x5.shape[:2]
    g, k_d = params.groups, weight.shape[2]
    s, d, front = params.stride[0], params.dilation[0], params.pads[0][0]
    count = out5.shape[2]
    xs = fold(x5, count, k_d * c_in, -front, s, d, k_d, c_in // g, out5.dtype, stream)
    y = cuda.device_array((n * count, out5.shape[1], *out5.shape[3:]), out5.dtype,
                          stream=stream)
    plane = params.plane
    correlate(xs, cuda.to_device(_stack_conv(weight, g), stream=stream), bias, y,
              plane.stride, plane.dilation, (plane.pads[0][0], plane.pads[1][0]), g, stream)
    unfold(y, out5, 0, 1, stream)
    return out5


def _weight_grad(a5, b5, shape, params, dtype, stream):
    """The weight gradient ``(C_a, C_b_g, kD, kH, kW)`` on the host: per depth tap the 2-D
    weight gradient of ``a5``'s slices (on the strided grid) against ``b5``'s (sampled,
    zero outside)."""
    n, c_a, depth_a = a5.shape[:3]
    c_b = b5.shape[1]
    s, d, front = params.stride[0], params.dilation[0], params.pads[0][0]
    plane = params.plane
    before = (plane.pads[0][0], plane.pads[1][0])
    a4 = fold(a5, depth_a, c_a, 0, 1, 0, 1, c_a, dtype, stream)
    gw = np.zeros(shape, dtype)
    part = cuda.device_array((shape[0], shape[1], *shape[3:]), dtype, stream=stream)
    for t in range(shape[2]):
        b4 = fold(b5, depth_a, c_b, t * d - front, s, 0, 1, c_b, dtype, stream)
        weight_grad(a4, b4, part, plane.stride, plane.dilation, before, params.groups, stream)
        gw[:, :, t] = part.copy_to_host(stream=stream)
        if stream:
            stream.synchronize()
    return gw


# ----------------------------------------------------------------------------
# array-level entries


def conv_transpose3d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, output_size=None):
    """The device path of :func:`convtranspose.conv_transpose3d`."""
    call = _Call(x=x, weight=weight, bias=bias)
    params, shape, dtype = normalise(
        call.shape("x"), call.shape("weight"), call.shape("bias"), call.dtypes, stride=stride,
        padding=padding, output_padding=output_padding, dilation=dilation, groups=groups,
        output_size=output_size, rank=3)

    def compute(c):
        out = c.empty(shape)
        if int(np.prod(shape)):
            _scatter(_lead(c.device("x")), _host_weight(c), c.device("bias"), params,
                     _lead(c.view(out)), c.stream)
        return (out,)

    return call.run(compute, dtype)[0]


def conv3d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """The device path of :func:`convtranspose.conv3d`."""
    call = _Call(x=x, weight=weight, bias=bias)
    params, shape, dtype = normalise_conv(
        call.shape("x"), call.shape("weight"), call.shape("bias"), call.dtypes, stride=stride,
        padding=padding, dilation=dilation, groups=groups, rank=3)

    def compute(c):
        out = c.empty(shape)
        if int(np.prod(shape)):
            _correlate(_lead(c.device("x")), _host_weight(c), c.device("bias"), params,
                       _lead(c.view(out)), c.stream)
        return (out,)

    return call.run(compute, dtype)[0]


def _gradients(call, params, dtype, needs, transposed):
    def compute(c):
        g5, x5 = _lead(c.device("grad_output")), _lead(c.device("x"))
        w = _host_weight(c)
        gi = gw = gb = None
        if needs[0]:
            gi = c.empty(c.shape("x"))
            gi5 = _lead(c.view(gi))
            if gi5.size:
                if transposed:
                    _correlate(g5, w, None, params, gi5, c.stream)
                else:
                    _scatter(g5, w, None, adjoint_params(params, g5.shape[2:], w.shape[2:],
                                                         gi5.shape[2:]), gi5, c.stream)
        if needs[1]:
            gw = c.empty(c.shape("weight"))
            a, b = (x5, g5) if transposed else (g5, x5)
            host = (_weight_grad(a, b, w.shape, params, dtype, c.stream) if a.size
                    else np.zeros(w.shape, dtype))
            _lead(c.view(gw)).copy_to_device(host)
        if needs[2]:
            gb = c.empty((g5.shape[1],))
            flat = fold(g5, g5.shape[2], g5.shape[1], 0, 1, 0, 1, g5.shape[1], dtype, c.stream)
            bias_grad(flat, c.view(gb), c.stream)
        return gi, gw, gb

    return call.run(compute, dtype)


def conv_transpose3d_backward(grad_output, x, weight, stride=1, padding=0, output_padding=0,
                              groups=1, dilation=1, *, output_size=None, needs_input_grad=True,
                              needs_weight_grad=True, needs_bias_grad=True):
    """The device path of :func:`convtranspose.conv_transpose3d_backward`."""
    call = _Call(grad_output=grad_output, x=x, weight=weight)
    params, dtype = normalise_backward(
        call.shape("grad_output"), call.shape("x"), call.shape("weight"), call.dtypes,
        stride=stride, padding=padding, output_padding=output_padding, dilation=dilation,
        groups=groups, output_size=output_size, rank=3)
    return _gradients(call, params, dtype, (needs_input_grad, needs_weight_grad,
                                            needs_bias_grad), True)


def conv3d_backward(grad_output, x, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    needs_input_grad=True, needs_weight_grad=True, needs_bias_grad=True):
    """The device path of :func:`convtranspose.conv3d_backward`."""
    call = _Call(grad_output=grad_output, x=x, weight=weight)
    params, dtype = normalise_conv_backward(
        call.shape("grad_output"), call.shape("x"), call.shape("weight"), call.dtypes,
        stride=stride, padding=padding, dilation=dilation, groups=groups, rank=3)
    return _gradients(call, params, dtype, (needs_input_grad, needs_weight_grad,
                                            needs_bias_grad), False)
