"""Backend registry and the choice ``backend="auto"`` makes.

The cost model estimates each CPU backend's time from the problem's size and picks the
smaller; :func:`explain` shows the estimates. Its constants were fitted to
``python -m convtranspose bench`` on the project's 2-core AVX-512 machines (see
``_RATES``); they decide between backends, they do not predict exact times.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .cpu import direct, im2col
from .params import normalise

__all__ = ["BACKENDS", "GPU_BACKENDS", "Choice", "check_backend", "choose", "explain", "flops",
           "is_device_array", "run_backend"]

#: name -> run(x, weight, bias, params, out), every one computing into ``out``.
BACKENDS = {"direct": direct.run, "im2col": im2col.run}
#: Backends on the GPU, loaded lazily by :func:`run_backend` (not in ``BACKENDS``, so
#: loops over the CPU backends never touch numba.cuda).
GPU_BACKENDS = ("cuda",)

# Fitted rates, FLOP/s, per dtype: direct kernel at long rows, GEMM at large K,
# col2im bytes/s, and the half-efficiency lengths (row length for direct, K for GEMM).
_RATES = {
    np.dtype(np.float32): dict(direct=60e9, gemm=200e9, col2im=8e9),
    np.dtype(np.float64): dict(direct=30e9, gemm=100e9, col2im=8e9),
}
_DIRECT_HALF_ROW = 8.0     # input row length at which the direct kernel runs at half rate
_GEMM_HALF_K = 16.0        # GEMM inner dimension (C_in / groups) at which BLAS runs at half rate


def check_backend(backend):
    """Return ``backend`` if it names a backend or ``"auto"``, else raise ``ValueError``."""
    names = ("auto", *BACKENDS, *GPU_BACKENDS)
    if not isinstance(backend, str) or backend not in names:
        raise ValueError(f"backend must be one of {names}, got {backend!r}")
    return backend


def is_device_array(a, name):
    """True for a CUDA array (``__cuda_array_interface__``, or a simulated Numba device
    array); ``TypeError`` for a torch tensor that requires grad. Never imports numba.cuda."""
    try:
        if hasattr(a, "__cuda_array_interface__"):
            return True
    except RuntimeError:   # torch tensors that require grad raise from the attribute
        raise TypeError(f"{name} is a torch tensor that requires grad; convtranspose does not "
                        f"track gradients: pass {name}.detach()") from None
    return type(a).__module__.startswith(("numba.cuda.", "numba_cuda."))


def run_backend(name):
    """The ``run(x, weight, bias, params, out)`` of backend ``name`` (host arrays);
    ``"cuda"`` copies to the GPU and back and is imported only when asked for."""
    if name in GPU_BACKENDS:
        from .cuda import run
        return run
    return BACKENDS[name]


def flops(x_shape, w_shape, groups):
    """Multiply-adds times two of the transposed convolution, as the suite counts them."""
    n, c_in, h, w = (1, *x_shape) if len(x_shape) == 3 else x_shape
    return 2 * n * c_in * w_shape[1] * w_shape[2] * w_shape[3] * h * w


@dataclass(frozen=True)
class Choice:
    """What ``backend="auto"`` picks for one problem, and why."""

    backend: str
    reason: str
    estimates: dict = field(default_factory=dict)   # backend -> estimated seconds
    flops: int = 0

    def __str__(self):
        lines = [f"backend: {self.backend}", f"reason: {self.reason}",
                 f"work: {self.flops / 1e9:.4g} GFLOP"]
        lines += [f"estimate {name}: {sec * 1e3:.4g} ms" for name, sec in self.estimates.items()]
        return "\n".join(lines)


def _estimates(x_shape, w_shape, params, dtype):
    n, c_in, h, w = x_shape
    rates = _RATES[np.dtype(dtype)]
    work = flops(x_shape, w_shape, params.groups)
    c_in_g = c_in // params.groups
    row = w  # the direct kernel's innermost loop runs over one input row
    t_direct = work / (rates["direct"] * row / (row + _DIRECT_HALF_ROW))
    cols_bytes = n * h * w * w_shape[1] * params.groups * w_shape[2] * w_shape[3] * np.dtype(dtype).itemsize
    t_im2col = (work / (rates["gemm"] * c_in_g / (c_in_g + _GEMM_HALF_K))
                + 2 * cols_bytes / rates["col2im"])
    return work, {"direct": t_direct, "im2col": t_im2col}


def choose(x_shape, w_shape, params, dtype):
    """Pick a CPU backend for a validated 4-D problem; returns a :class:`Choice`."""
    work, est = _estimates(x_shape, w_shape, params, dtype)
    best = min(est, key=est.get)
    other = "im2col" if best == "direct" else "direct"
    reason = (f"estimated {est[best] * 1e3:.3g} ms for {best} against {est[other] * 1e3:.3g} ms "
              f"for {other} (C_in/groups = {x_shape[1] // params.groups}, W = {x_shape[3]})")
    return Choice(best, reason, est, work)


def explain(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
            *, output_size=None):
    """Say which backend ``conv_transpose2d(..., backend="auto")`` would use, and why.

    Parameters
    ----------
    x, weight, bias
        Arrays, or anything with ``.shape`` and ``.dtype``, as for
        :func:`convtranspose.conv_transpose2d`; no data is read.
    stride, padding, output_padding, groups, dilation, output_size
        As for :func:`convtranspose.conv_transpose2d`.

    Returns
    -------
    Choice
        ``.backend``, ``.reason``, ``.estimates`` (seconds per backend) and ``.flops``;
        ``str()`` gives a readable summary.

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> choice = ct.explain(np.empty((64, 512, 4, 4), np.float32),
    ...                     np.empty((512, 256, 4, 4), np.float32), stride=2, padding=1)
    >>> choice.backend
    'im2col'
    """
    b_shape = None if bias is None else tuple(bias.shape)
    on_gpu = any(is_device_array(a, n) for a, n in ((x, "x"), (weight, "weight"), (bias, "bias"))
                 if a is not None)
    dtypes = [x.dtype, weight.dtype]
    if on_gpu:
        from .cuda.arrays import dtype_of
        dtypes = [np.dtype(dtype_of(a, n)) for a, n in ((x, "x"), (weight, "weight"))]
    params, _, dtype = normalise(tuple(x.shape), tuple(weight.shape), b_shape,
                                 dtypes, stride=stride, padding=padding,
                                 output_padding=output_padding, dilation=dilation,
                                 groups=groups, output_size=output_size)
    x_shape = tuple(x.shape) if len(x.shape) == 4 else (1, *x.shape)
    if on_gpu:
        from .cuda.kernels import pick_kernel
        kernel = pick_kernel(x_shape, tuple(weight.shape), params.groups)
        return Choice("cuda", f"CUDA arrays run on their GPU; the {kernel} kernel "
                      f"(C_in/groups = {x_shape[1] // params.groups}, "
                      f"C_out/groups = {weight.shape[1]})", {}, flops(x_shape, weight.shape,
                                                                      params.groups))
    return choose(x_shape, tuple(weight.shape), params, dtype)
