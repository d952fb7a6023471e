"""What a transposed convolution call runs, for every rank, layout and array kind.

:func:`convtranspose.explain` sends Dask operands to :func:`dask_plan` and everything else
to :func:`choice`. Both read shapes and dtypes only, never data, and validate the call
exactly as the operation would (the same :mod:`convtranspose.params` functions), so an
argument the call refuses is refused here with the same message.

How each rank runs, which is what the answers describe:

* 2-D: one problem for the dispatcher (:func:`convtranspose.dispatch.choose`);
* 1-D: the 2-D problem of unit height (kernel height 1) that the 1-D functions run;
* 3-D: the transposed convolutions that ``direct`` runs on the channels-last engine as
  one 3-D problem (:func:`convtranspose.cpu.direct.volume_uses_engine`); the others one
  2-D problem per kernel depth tap, the depth slices that tap links folded into the
  batch; ``backend="auto"`` chooses for each one.
"""
from __future__ import annotations

import math

import numpy as np

from . import dispatch
from .cpu.direct import uses_engine
from .problem import Op, validate
from ._arrays import host_array, is_dask_array, is_device_array
from .params import (DATA_FORMATS, ConvParams, _first_shape, check_device_dtype,
                     is_channels_last, is_half, normalise, spatial_output_size)

__all__ = ["choice", "dask_plan", "lifted_1d", "depth_problems"]


def _layout(data_format, rank):
    """Whether ``data_format`` (``None``: the rank's channels-first one) is channels-last."""
    return False if data_format is None else is_channels_last(data_format, rank)


def _described(operands, on_gpu):
    """``{name: (shape, (name, dtype))}`` of the operands, read from their attributes."""
    if on_gpu:
        from .cuda.arrays import dtype_of     # imports numba.cuda: only for CUDA arrays

    def one(a, name):
        if on_gpu:
            return tuple(getattr(a, "shape", ())), (name, np.dtype(dtype_of(a, name)))
        try:
            return tuple(a.shape), (name, np.dtype(a.dtype))
        except (AttributeError, TypeError):    # lists, None, torch dtypes: as arrays
            a = host_array(a, name)
            return a.shape, (name, a.dtype)

    return {n: one(a, n) for n, a in operands.items()}


def _rank(w_shape):
    rank = len(w_shape) - 2
    if rank not in DATA_FORMATS:
        raise ValueError(f"weight must be 3-D, 4-D or 5-D (C_in, C_out // groups, "
                         f"*kernel_size) for a 1-D, 2-D or 3-D transposed convolution, got "
                         f"shape {tuple(w_shape)}")
    return rank


def lifted_1d(x_shape, w_shape, params):
    """The 2-D problem of unit height that a validated 1-D one runs as: ``(x_shape,
    w_shape, params)`` with ``x_shape`` batched."""
    n, c, length = x_shape if len(x_shape) == 3 else (1, *x_shape)
    (pad,), (s,), (d,), (op,) = params.pads, params.stride, params.dilation, \
        params.output_padding
    return ((n, c, 1, length), (*w_shape[:2], 1, w_shape[2]),
            ConvParams((1, s), ((0, 0), pad), (0, op), (1, d), params.groups))


def depth_problems(x_shape, w_shape, params, out_depth):
    """The 2-D problems a validated 3-D one runs, one per kernel depth tap that links
    slices: ``[(tap, x_shape, w_shape, plane_params)]`` with the linked depth slices of
    every image folded into the batch."""
    from .depth import depth_taps
    n, c, depth, h, w = x_shape if len(x_shape) == 5 else (1, *x_shape)
    return [(t, (n * (i1 - i0), c, h, w), (*w_shape[:2], *w_shape[3:]), params.plane)
            for t, i0, i1, _ in depth_taps(depth, out_depth, w_shape[2], params.stride[0],
                                           params.dilation[0], params.pads[0][0])]


def choice(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
           *, output_size=None, backend="auto", data_format=None):
    """:func:`convtranspose.explain` for NumPy and CUDA operands (and anything with a
    ``.shape`` and a NumPy ``.dtype``): a :class:`~convtranspose.dispatch.Choice`.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.explain import choice
    >>> choice(np.empty((1, 512, 32), np.float32), np.empty((512, 256, 16), np.float32),
    ...        stride=8, padding=4).flops
    134217728
    """
    operands = {n: a for n, a in (("x", x), ("weight", weight), ("bias", bias))
                if a is not None or n != "bias"}
    for name, a in operands.items():
        if is_dask_array(a):
            raise TypeError(f"{name} is a Dask array: convtranspose.explain describes the "
                            "graph the call would build for it")
    name = dispatch.check_backend(backend)
    on_gpu = any(a is not None and is_device_array(a, n) for n, a in operands.items())
    described = _described(operands, on_gpu)
    (xs, _), (ws, _) = described["x"], described["weight"]
    rank = _rank(ws)
    last = _layout(data_format, rank)
    if last and (on_gpu or name in dispatch.GPU_BACKENDS):
        from .operation import GPU_LAYOUT
        raise NotImplementedError(GPU_LAYOUT)
    if on_gpu and name not in ("auto", *dispatch.GPU_BACKENDS):
        raise ValueError(f"backend {backend!r} runs on the CPU but CUDA arrays were given: "
                         "use backend='auto' or 'cuda', or copy them to NumPy arrays")
    complexes = [(n, dt) for n, (_, (_, dt)) in described.items() if dt.kind == "c"]
    if complexes:
        return _complex_choice(described, rank, last, name, complexes,
                               dict(stride=stride, padding=padding,
                                    output_padding=output_padding, dilation=dilation,
                                    groups=groups, output_size=output_size), on_gpu)
    problem = validate(Op(True, rank), xs, ws, described["bias"][0] if "bias" in described
                       else None, [d for _, d in described.values()],
                       (stride, padding, output_padding, groups, dilation), output_size,
                       DATA_FORMATS[rank][last], backend)        # as the call validates
    params, shape, dtype = problem.params, problem.shape, problem.dtype
    xs = _first_shape(xs, rank, last)
    halves = [(n, dt) for n, (_, (_, dt)) in described.items() if is_half(dt)]
    if halves:
        return _half_choice(xs, ws, params, dtype, name, halves, last)
    if on_gpu or name in dispatch.GPU_BACKENDS:
        return _gpu_choice(xs, ws, params, rank, on_gpu)
    if rank == 3:
        return _depth_choice(xs, ws, params, shape, dtype, name, last)
    if rank == 1:
        xs, ws, params = lifted_1d(xs, ws, params)
    x4 = xs if len(xs) == 4 else (1, *xs)
    picked = dispatch.choose(x4, ws, params, dtype, channels_last=last)
    return picked if name == "auto" else _named(picked, name)


def _half_choice(xs, ws, params, dtype, name, halves, last):
    """The :class:`Choice` of a call with half-precision operands ``halves`` (``(name,
    dtype)`` pairs): the engine where the float32 call would run it (in 3-D always), else
    the float32 backend on float32 batch chunks (``TypeError`` for ``"cuda"``, as the
    call)."""
    for operand, dt in halves:
        if name in dispatch.GPU_BACKENDS:
            check_device_dtype(dt, operand)
    which = ", ".join(f"{operand} is {dt.name}" for operand, dt in halves)
    rounded = (f", each result rounded once to {dtype.name}" if is_half(dtype) else
               f", the result in {dtype.name}")
    batched = xs if len(xs) == len(ws) else (1, *xs)
    picked = None
    if len(ws) < 5:
        x4, w4, p4 = (xs, ws, params) if len(ws) == 4 else lifted_1d(xs, ws, params)
        picked = dispatch.choose(x4 if len(x4) == 4 else (1, *x4), w4, p4,
                                 np.dtype(np.float32), channels_last=last)
        if name != "auto":
            picked = _named(picked, name)
    if picked is None or (picked.backend == "direct" and uses_engine(ws, params)):
        reason = (f"half precision ({which}) runs on the channels-last engine, as float32 "
                  "would: the input widened to float32 in its copy, one batch chunk at a time "
                  "within the workspace limit, the weight when packed, sums in float32"
                  + rounded + "; a weight with Inf or NaN runs the float32 code on float32 "
                  "batch chunks instead")
        return dispatch.Choice("direct", reason,
                               {} if picked is None else picked.estimates, _flops(batched, ws))
    reason = (f"half precision ({which}) runs the float32 code of {picked.backend} on float32 "
              "copies of one batch chunk at a time within the workspace limit" + rounded
              + " (float32: " + picked.reason + ")")
    return dispatch.Choice(picked.backend, reason, picked.estimates, picked.flops)


class _Spec:
    """An operand's shape and dtype, all :func:`choice` reads."""

    def __init__(self, shape, dtype):
        self.shape, self.dtype = shape, dtype


def _complex_choice(described, rank, last, name, complexes, kwargs, on_gpu):
    """The :class:`Choice` of a call with complex operands ``complexes``: that of the real
    call of three convolutions it runs as (:mod:`convtranspose.complexops`)."""
    from .complexops import complex_result
    if on_gpu or name in dispatch.GPU_BACKENDS:
        raise TypeError("complex operands run on the CPU only: the cuda backend takes "
                        "float32 or float64")
    dtype = complex_result([d for _, d in described.values()])
    part = np.dtype(f"f{dtype.itemsize // 2}")
    (xs, _), (ws, _) = described["x"], described["weight"]
    bs = described["bias"][0] if "bias" in described else None
    params, _, _ = normalise(_first_shape(xs, rank, last), ws, bs, [part] * 2, rank=rank,
                             last=last, **kwargs)
    axis = len(xs) - 1 if last else len(xs) - rank - 1
    real_x = (*xs[:axis], 3 * xs[axis], *xs[axis + 1:])
    picked = choice(_Spec(real_x, part), _Spec((3 * ws[0], *ws[1:]), part), None,
                    params.stride, params.pads, params.output_padding, 3 * params.groups,
                    params.dilation, backend=name,
                    data_format=DATA_FORMATS[rank][1 if last else 0])
    which = ", ".join(f"{operand} is {dt.name}" for operand, dt in complexes)
    return dispatch.Choice(picked.backend,
                           f"complex ({which}) runs as three real convolutions in {part.name} "
                           "(Gauss's form, as PyTorch), one call with three times the groups: "
                           + picked.reason, picked.estimates, picked.flops)


def _named(picked, name):
    """The :class:`Choice` of a backend the caller named (estimates kept for comparison)."""
    return dispatch.Choice(name, f"backend={name!r} was named by the call (auto would pick "
                           f"{picked.backend})", picked.estimates, picked.flops)


def _gpu_choice(xs, ws, params, rank, on_gpu):
    from .cuda.kernels import pick_kernel
    where = "CUDA arrays run on their GPU" if on_gpu else \
        "backend='cuda' copies the arrays to the GPU and the result back"
    if rank == 1:
        xs, ws, params = lifted_1d(xs, ws, params)
    if rank == 3:
        work = _flops(xs if len(xs) == 5 else (1, *xs), ws)
        return dispatch.Choice("cuda", f"{where}; 3-D: the depth taps that reach each output "
                               "slice are stacked as input channels of 2-D kernel launches",
                               {}, work)
    x4 = xs if len(xs) == 4 else (1, *xs)
    kernel = pick_kernel(x4, ws, params.groups)
    return dispatch.Choice("cuda", f"{where}; the {kernel} kernel (C_in/groups = "
                           f"{x4[1] // params.groups}, C_out/groups = {ws[1]})", {},
                           dispatch.flops(x4, ws, params.groups))


def _depth_choice(xs, ws, params, shape, dtype, name, last):
    """The :class:`Choice` of a 3-D problem: one 2-D choice per depth tap, estimates added
    up per backend; ``backend`` is the one that runs the most taps. Layers that run on the
    channels-last engine as one problem say so instead."""
    from .cpu.direct import volume_uses_engine
    x5 = xs if len(xs) == 5 else (1, *xs)
    if name in ("auto", "direct") and volume_uses_engine(x5, ws, params, shape,
                                                         dtype.itemsize, last, name):
        return dispatch.Choice("direct", "3-D runs as one problem on the channels-last "
                               "engine of direct (a weight with Inf or NaN runs one 2-D "
                               "problem per depth tap instead)", {},
                               2 * math.prod(x5) * math.prod(ws[1:]))
    taps, totals, work = [], {}, 0
    for t, x4, w4, plane in depth_problems(xs, ws, params, shape[-3]):
        picked = dispatch.choose(x4, w4, plane, dtype, channels_last=last)
        taps.append((t, picked.backend if name == "auto" else name))
        work += picked.flops
        for form, sec in picked.estimates.items():
            totals[form] = totals.get(form, 0.0) + sec
    counts = {}
    for _, b in taps:
        counts[b] = counts.get(b, 0) + 1
    best = max(counts, key=counts.get) if counts else ("direct" if name == "auto" else name)
    per_tap = ", ".join(f"tap {t}: {b}" for t, b in taps) or "no tap links a slice"
    how = "auto picks per depth tap" if name == "auto" else f"backend={name!r} was named"
    return dispatch.Choice(best, f"3-D runs one 2-D problem per kernel depth tap ({how}): "
                           f"{per_tap}", totals, work)


def dask_plan(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
              dilation=1, *, output_size=None, backend="auto", data_format=None):
    """:func:`convtranspose.explain` for Dask operands: the
    :class:`~convtranspose.dask_ops.GraphPlan` of the graph the call would build (for
    1-D the 2-D graph of unit height it runs; for 3-D the graph whose tiles ``auto`` runs as
    :func:`choice` says for their shapes)."""
    from . import dask_ops
    from .operation import tiles
    w_shape = tuple(np.shape(weight)) if not is_dask_array(weight) else weight.shape
    rank = _rank(w_shape)
    last, x = dask_ops.dask_layout(data_format or DATA_FORMATS[rank][0], x, rank=rank)
    if output_size is not None and last:
        output_size = spatial_output_size(output_size, x.ndim, rank, last)
    kwargs = dict(stride=stride, padding=padding, output_padding=output_padding,
                  groups=groups, dilation=dilation, output_size=output_size,
                  backend=backend)
    if rank == 1:
        x2, w2, b2, p2 = _lift_dask(x, weight, bias, kwargs)
        return dask_ops.explain(x2, w2, b2, calls=tiles(2), **p2)
    if rank == 3:
        return dask_ops.explain(x, weight, bias, calls=tiles(3), tile_backend=_volume_backend,
                                **kwargs)
    return dask_ops.explain(x, weight, bias, calls=tiles(2), **kwargs)


def _lift_dask(x, weight, bias, kwargs):
    """A 1-D Dask call's operands and keywords as the 2-D call of unit height it runs."""
    from . import dask_ops
    x = dask_ops.known_chunks(x, "x")
    weight, bias = dask_ops.as_small(weight, "weight"), dask_ops.as_small(bias, "bias")
    dtypes = [("x", x.dtype), ("weight", weight.dtype)] + (
        [] if bias is None else [("bias", bias.dtype)])
    params, _, _ = normalise(x.shape, weight.shape, None if bias is None else bias.shape,
                             dtypes, rank=1, **{k: v for k, v in kwargs.items()
                                                if k != "backend"})
    _, _, p2 = lifted_1d(x.shape, weight.shape, params)
    return x[..., None, :], weight[:, :, None], bias, dict(
        stride=p2.stride, padding=p2.pads, output_padding=p2.output_padding,
        dilation=p2.dilation, groups=p2.groups, backend=kwargs["backend"])


def _volume_backend(x_shape, w_shape, params, dtype, out_sizes):
    """The backend ``auto`` runs for one 3-D tile (channels-first): :func:`_depth_choice`'s."""
    out_shape = (x_shape[0], w_shape[1] * params.groups, *out_sizes)
    return _depth_choice(x_shape, w_shape, params, out_shape, dtype, "auto", False).backend


def _flops(x_shape, w_shape):
    """Two per multiply-add of a transposed convolution of any rank (batched ``x_shape``),
    as the benchmark suite counts them."""
    n, c_in, *spatial = x_shape
    return 2 * n * c_in * w_shape[1] * math.prod(w_shape[2:]) * math.prod(spatial)
