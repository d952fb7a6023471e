"""What every entry point asks of its operands before a kernel runs.

Which kind of array an operand is (a Dask array, a CUDA array, else a host array), host
operands as NumPy arrays with a ``TypeError`` that names the argument, checks of a
caller's ``out``, and :func:`compute_into`, the common tail of a host call (allocate or
use ``out``, run a backend, copy back). Imports nothing of the package but the allocator
and the names of the accepted dtypes, so the public functions,
:mod:`convtranspose.dask_ops`, the dispatcher and the ``cuda`` backend all use these
without importing each other; never imports dask or numba.cuda.
"""
from __future__ import annotations

import numpy as np

from ._alloc import allocate
from .params import ACCEPTED_DTYPES

__all__ = ["is_dask_array", "any_dask", "is_device_array", "host_array", "host_operands", "batched",
           "check_out", "native", "compute_into", "channels_first", "channels_last", "laid_out",
           "in_layout", "new_result"]


def is_dask_array(a):
    """True for a ``dask.array.Array``; never imports dask.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose._arrays import is_dask_array
    >>> is_dask_array(np.zeros(3)), is_dask_array(None)
    (False, False)
    """
    t = type(a)
    return t.__name__ == "Array" and t.__module__.split(".")[:2] == ["dask", "array"]


def any_dask(*arrays):
    """True when one of ``arrays`` is a Dask array (NumPy arrays and ``None`` are skipped
    first: the public functions ask this on every call)."""
    for a in arrays:
        if a is not None and type(a) is not np.ndarray and is_dask_array(a):
            return True
    return False


def is_complex(a):
    """Whether the operand ``a`` (any array-like, or ``None``) holds complex numbers.
    Arrays with a NumPy ``dtype`` are asked for it; anything else (a nested list, a torch
    tensor) is read with ``numpy.asarray``.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose._arrays import is_complex
    >>> is_complex(np.zeros(2, np.complex64)), is_complex([1j]), is_complex(None)
    (True, True, False)
    """
    if a is None:
        return False
    dtype = getattr(a, "dtype", None)
    if isinstance(dtype, np.dtype):
        return dtype.kind == "c"
    try:
        if hasattr(a, "__cuda_array_interface__"):
            return False
        return np.asarray(a).dtype.kind == "c"
    except Exception:   # (a tensor that requires grad raises RuntimeError): the real path
        return False    # says what is wrong with the operand, naming it


def is_device_array(a, name):
    """True for a CUDA array (``__cuda_array_interface__``, or a simulated Numba device
    array); ``TypeError`` for a torch tensor that requires grad. Never imports numba.cuda.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose._arrays import is_device_array
    >>> is_device_array(np.zeros(3), "x")
    False
    """
    try:
        if hasattr(a, "__cuda_array_interface__"):
            return True
    except RuntimeError:   # torch tensors that require grad raise from the attribute
        raise TypeError(f"{name} is a torch tensor that requires grad; convtranspose does not "
                        f"track gradients: pass {name}.detach()") from None
    return type(a).__module__.startswith(("numba.cuda.", "numba_cuda."))


def host_array(a, name, required=True):
    """``np.asarray(a)``, with a ``TypeError`` naming ``name`` when that fails or when
    ``a`` is ``None`` and ``required`` (else ``None`` stays ``None``).

    Examples
    --------
    >>> from convtranspose._arrays import host_array
    >>> host_array([[1.0, 2.0]], "x").shape
    (1, 2)
    >>> host_array(None, "x")
    Traceback (most recent call last):
    ...
    TypeError: x must be an array of float16, bfloat16, float32, float64, complex64 or
    complex128, got None
    """
    if a is None:
        if required:
            raise TypeError(f"{name} must be an array of {ACCEPTED_DTYPES}, got None")
        return None
    try:
        return np.asarray(a)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be an array of {ACCEPTED_DTYPES}, "
                        f"got {type(a).__name__}: {exc}") from None


def host_operands(x, weight, bias):
    """``x``, ``weight`` and ``bias`` as NumPy arrays (``TypeError`` naming the one that
    cannot be), and the dtypes of those given."""
    x = host_array(x, "x")
    weight = host_array(weight, "weight")
    bias = host_array(bias, "bias", required=False)
    return x, weight, bias, [a.dtype for a in (x, weight, bias) if a is not None]


def batched(a):
    """A 4-D view of ``a``: itself, or ``(C, H, W)`` as ``(1, C, H, W)``."""
    return a if a.ndim == 4 else a[None]


def batched_to(a, rank):
    """:func:`batched` at ``rank``: ``a`` with ``rank + 2`` dimensions, an unbatched one
    viewed as one image."""
    return a if a.ndim == rank + 2 else a[None]


def check_out(out, shape, dtype):
    """``TypeError``/``ValueError`` unless ``out`` is a writeable ndarray of ``shape`` and
    ``dtype`` (either byte order)."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"out must have shape {shape}, got {out.shape}")
    if out.dtype.newbyteorder("=") != dtype:
        raise ValueError(f"out must have dtype {dtype}, got {out.dtype}")
    if not out.flags.writeable:
        raise ValueError("out must be writeable, got a read-only array")


def native(a, dtype):
    """``a`` as a C-contiguous array of ``dtype`` (itself when it already is one)."""
    if a.dtype == dtype and a.dtype.isnative and a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a, dtype)


def channels_first(a, rank):
    """A channels-last ``(..., *spatial, C)`` array viewed as ``(..., C, *spatial)`` (NumPy
    and Dask arrays; never a copy)."""
    return np.moveaxis(a, -1, -rank - 1)


def channels_last(a, rank):
    """The view of :func:`channels_first` undone: ``(..., C, *spatial)`` as
    ``(..., *spatial, C)``."""
    return np.moveaxis(a, -rank - 1, -1)


def laid_out(a, last, rank):
    """A channels-first result (or ``None``) as the caller's layout: its channels-last view
    with ``last``, else itself."""
    return channels_last(a, rank) if last and a is not None else a


def in_layout(a, dtype, last, rank):
    """``a`` (indexed channels-first) as an array of native ``dtype`` whose memory is
    C-contiguous in its layout: channels-first, or with ``last`` channels-last (a
    channels-first view of such memory). Itself when it already is one, else a copy."""
    if not last:
        return native(a, dtype)
    mem = channels_last(a, rank)
    if a.dtype == dtype and a.dtype.isnative and mem.flags.c_contiguous:
        return a
    return channels_first(np.ascontiguousarray(mem, dtype), rank)


def new_result(shape, dtype, last, rank, what="output"):
    """A new array of channels-first ``shape``: C-contiguous, or with ``last`` a
    channels-first view of C-contiguous channels-last memory (see :func:`in_layout`)."""
    if not last:
        return allocate(shape, dtype, what)
    mem = allocate((*shape[:-rank - 1], *shape[-rank:], shape[-rank - 1]), dtype, what)
    return channels_first(mem, rank)


def _in_own_layout(a, last, rank):
    return (channels_last(a, rank) if last else a).flags.c_contiguous and a.dtype.isnative


def compute_into(x, weight, bias, params, shape, dtype, out, run, last=False, convert=True):
    """The host call once validated: ``run(x4, weight, bias, params, out4)`` on native
    C-contiguous operands of ``dtype`` into ``out`` (checked against ``shape`` and
    ``dtype``) or a new array; returns it.

    ``run`` gets batched arrays (unbatched ones viewed as one image: as many dimensions
    as ``weight``) and is not called for an empty result. It computes straight into
    ``out`` when ``out`` is C-contiguous in its layout, native and aliases no operand;
    otherwise into a new array copied to ``out``. With ``last``, ``x`` and ``out`` are
    channels-first views of channels-last memory (:func:`in_layout`), and so is the
    result. With ``convert=False`` the operands reach ``run`` as they are (any dtype,
    strides and byte order: a ``run`` that converts them itself, as the half-precision
    path does).
    """
    if out is not None:
        check_out(out, shape, dtype)
    operands = (x, weight) if bias is None else (x, weight, bias)
    rank = weight.ndim - 2
    if convert:
        x, weight = in_layout(x, dtype, last, rank), native(weight, dtype)
        bias = None if bias is None else native(bias, dtype)
    # compute straight into `out` when the kernels can write it and it aliases no input
    direct_out = (out is not None and _in_own_layout(out, last, rank)
                  and not any(np.may_share_memory(out, a) for a in operands))
    result = out if direct_out else new_result(shape, dtype, last, rank)
    if result.size:
        x4, r4 = (x, result) if x.ndim == weight.ndim else (x[None], result[None])
        run(x4, weight, bias, params, r4)
    if out is not None and result is not out:
        out[...] = result
        return out
    return result
