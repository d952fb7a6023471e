"""Array interop of the ``cuda`` backend: caller's arrays in, caller's kind out.

Anything with ``__cuda_array_interface__`` is viewed zero-copy as a Numba device array
(``cuda.as_cuda_array``); the result is allocated by the caller's library (CuPy in, CuPy
out; torch in, torch out; Numba in, Numba out) and the kernels run on the caller's current
stream (torch and CuPy streams through ``cuda.external_stream``). Mixing rules:

* ``x`` on the GPU: ``weight`` and ``bias`` may be NumPy arrays (small; copied to ``x``'s
  GPU once per call); ``out`` must be a CUDA array.
* ``x`` a NumPy array: every operand must be a NumPy array (copied in; result copied back).
* All CUDA operands on one GPU.
"""
from __future__ import annotations

import contextlib

import numpy as np
from numba import config, cuda

from .._arrays import compute_into, host_operands, is_device_array
from ..params import check_device_dtype, normalise
from . import kernels

__all__ = ["conv_transpose2d", "run_host", "array_kind", "caller_stream", "dtype_of",
           "operand_kinds", "common_device", "gpu_context", "device_operand"]

_SIM = bool(config.ENABLE_CUDASIM)


def array_kind(a, name):
    """``"numpy"``, ``"numba"``, ``"cupy"``, ``"torch"`` or ``"cuda"`` (another CUDA array)."""
    if not is_device_array(a, name):
        return "numpy"
    module = type(a).__module__.split(".")[0]
    if module in ("torch", "cupy"):
        return module
    if module in ("numba", "numba_cuda") or cuda.devicearray.is_cuda_ndarray(a):
        return "numba"
    return "cuda"


def operand_kinds(lead_name, lead, others):
    """``(kind of lead, {name: kind or None})`` by :func:`array_kind`; ``TypeError`` when
    ``lead`` is a host array but another operand is a CUDA array."""
    lead_kind = array_kind(lead, lead_name)
    kinds = {n: None if a is None else array_kind(a, n) for n, a in others.items()}
    if lead_kind == "numpy":
        for name, k in kinds.items():
            if k not in (None, "numpy"):
                raise TypeError(f"{lead_name} is a host (NumPy) array but {name} is a CUDA "
                                "array: pass all arrays on the GPU, or all on the host")
    return lead_kind, kinds


def common_device(arrays, kinds):
    """The GPU that the CUDA arrays among ``arrays`` (name -> array) share: its id, or
    ``None`` for the current one; ``ValueError`` when they are on different GPUs."""
    devices = {n: _device_id(a, kinds[n]) for n, a in arrays.items()
               if a is not None and kinds[n] not in (None, "numpy")}
    known = {n: d for n, d in devices.items() if d is not None}
    if len(set(known.values())) > 1:
        listing = ", ".join(f"{n} on GPU {d}" for n, d in known.items())
        raise ValueError(f"arrays must all be on one GPU, got {listing}")
    return next(iter(known.values()), None)


def gpu_context(dev):
    """A context making GPU ``dev`` (from :func:`common_device`) current."""
    return cuda.gpus[dev] if (dev is not None and not _SIM) else contextlib.nullcontext()


def _device_id(a, kind):
    if kind == "torch":
        return a.device.index
    if kind == "cupy":
        return a.device.id
    if kind == "numba" and not _SIM:
        try:
            return a.gpu_data.context.device.id
        except AttributeError:
            return None
    return None     # unknown: the current device


def _view(a, kind):
    """A Numba device array sharing ``a``'s memory."""
    if kind == "numba":
        return a
    return cuda.as_cuda_array(a, sync=False)   # we launch on the caller's stream


def caller_stream(x, kind):
    """The stream the caller's library is using for ``x`` (a Numba stream, or 0)."""
    if _SIM:
        return 0
    ptr = 0
    if kind == "torch":
        import torch
        ptr = torch.cuda.current_stream(x.device).cuda_stream
    elif kind == "cupy":
        import cupy
        try:
            ptr = cupy.cuda.get_current_stream(x.device.id).ptr
        except TypeError:       # CuPy < 13: the current device's stream
            ptr = cupy.cuda.get_current_stream().ptr
    return cuda.external_stream(ptr) if ptr else cuda.default_stream()


def _empty(kind, x, shape, dtype, stream):
    if kind == "torch":
        import torch
        tdtype = torch.float32 if dtype == np.float32 else torch.float64
        return torch.empty(shape, dtype=tdtype, device=x.device)
    if kind == "cupy":
        import cupy
        with cupy.cuda.Device(x.device.id):
            return cupy.empty(shape, dtype)
    if _SIM:
        return cuda.device_array(shape, dtype)
    return cuda.device_array(shape, dtype, stream=stream)


def _to_device(a, dtype, stream):
    a = np.ascontiguousarray(a, dtype)
    return cuda.to_device(a) if _SIM else cuda.to_device(a, stream=stream)


def device_operand(a, kind, dtype, stream):
    """A Numba device array for operand ``a`` of ``kind``: a view of a CUDA array, or a
    copy of a host array converted to ``dtype``."""
    return _to_device(a, dtype, stream) if kind == "numpy" else _view(a, kind)


def _host_ndarray(a, name):
    try:
        return np.asarray(a)
    except Exception as exc:
        raise TypeError(f"{name} must be an array of float32 or float64, "
                        f"got {type(a).__name__}: {exc}") from None


def _extent(d):
    """(start, end) device addresses of a Numba device array, or ``None``."""
    if _SIM:
        return None
    ptr = d.__cuda_array_interface__["data"][0]
    span = sum((s - 1) * abs(st) for s, st in zip(d.shape, d.strides)) + d.dtype.itemsize
    return (ptr, ptr + span) if d.size else None


def _overlaps(d, others):
    if _SIM:
        base = getattr(d, "_ary", None)
        return base is not None and any(
            np.may_share_memory(base, getattr(o, "_ary", None)) for o in others
            if getattr(o, "_ary", None) is not None)
    e = _extent(d)
    return e is not None and any(
        (f := _extent(o)) is not None and f[0] < e[1] and e[0] < f[1] for o in others)


def _as4(d):
    """``(C, H, W)`` -> ``(1, C, H, W)`` as a view, whatever the strides."""
    if d.ndim == 4:
        return d
    if _SIM or d.is_c_contiguous():
        return d[None] if _SIM else d.reshape(1, *d.shape)
    return cuda.devicearray.DeviceNDArray((1, *d.shape), (d.strides[0] * d.shape[0], *d.strides),
                                          d.dtype, gpu_data=d.gpu_data)


def _compute(x4, w, b, out4, params, stream=0):
    """Launch the kernel the size rule picks; all Numba device arrays on one device."""
    kind = kernels.pick_kernel(x4.shape, w.shape, params.groups)
    kernels.launch(kind, x4, w, b, out4, params, stream=stream)


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, output_size=None, out=None):
    """The device path; see :func:`convtranspose.cuda.conv_transpose2d`."""
    kx, kinds = operand_kinds("x", x, {"weight": weight, "bias": bias, "out": out})
    if kx == "numpy":       # validated as the CPU call is; copied in, the result copied back
        x, weight, bias, dtypes = host_operands(x, weight, bias)
        for name, dt in zip(("x", "weight", "bias"), dtypes):
            check_device_dtype(dt, name)
        params, shape, dtype = normalise(
            x.shape, weight.shape, None if bias is None else bias.shape, dtypes, stride=stride,
            padding=padding, output_padding=output_padding, dilation=dilation, groups=groups,
            output_size=output_size)
        return compute_into(x, weight, bias, params, shape, dtype, out, run_host)
    if kinds["out"] == "numpy":
        raise TypeError("x is a CUDA array but out is a host (NumPy) array: out must be a "
                        "CUDA array too")
    host = {"weight": kinds["weight"] == "numpy", "bias": kinds["bias"] == "numpy"}
    weight = _host_ndarray(weight, "weight") if host["weight"] else weight
    if bias is not None and host["bias"]:
        bias = _host_ndarray(bias, "bias")
    operands = {"x": x, "weight": weight, "bias": bias}
    params, shape, dtype = normalise(
        tuple(x.shape), tuple(weight.shape), None if bias is None else tuple(bias.shape),
        [np.dtype(dtype_of(a, n)) for n, a in operands.items() if a is not None],
        stride=stride, padding=padding, output_padding=output_padding, dilation=dilation,
        groups=groups, output_size=output_size)
    dev = common_device({**operands, "out": out}, {"x": kx, **kinds})
    if out is not None:
        if tuple(out.shape) != shape:
            raise ValueError(f"out must have shape {shape}, got {tuple(out.shape)}")
        if np.dtype(dtype_of(out, "out")) != dtype:
            raise ValueError(f"out must have dtype {dtype}, got {np.dtype(dtype_of(out, 'out'))}")
    with gpu_context(dev):
        stream = caller_stream(x, kx)
        result = out if out is not None else _empty(kx, x, shape, dtype, stream)
        if not int(np.prod(shape)):
            return result
        xd = _view(x, kx)
        wd = device_operand(weight, kinds["weight"], dtype, stream)
        bd = None if bias is None else device_operand(bias, kinds["bias"], dtype, stream)
        rd = _view(result, kinds["out"] or kx)
        if out is not None and not _is_c_contiguous(rd):
            raise ValueError("out must be C-contiguous")
        inputs = [a for a in (xd, wd, bd) if a is not None]
        tmp = (_empty("numba", None, shape, dtype, stream)
               if out is not None and _overlaps(rd, inputs) else rd)
        _compute(_as4(xd), wd, bd, _as4(tmp), params, stream)
        if tmp is not rd:
            if _SIM:
                rd.copy_to_device(tmp)
            else:
                rd.copy_to_device(tmp, stream=stream)
    return result


def dtype_of(a, name):
    dt = getattr(a, "dtype", None)
    if dt is None:
        raise TypeError(f"{name} must be an array of float32 or float64, got {type(a).__name__}")
    if type(a).__module__.split(".")[0] == "torch":
        names = {"torch.float32": np.float32, "torch.float64": np.float64}
        if str(dt) not in names:
            raise TypeError(f"{name} must be float32 or float64, got dtype {dt}")
        return names[str(dt)]
    return check_device_dtype(np.dtype(dt), name)


def _is_c_contiguous(d):
    return bool(d.is_c_contiguous()) if hasattr(d, "is_c_contiguous") else True


def run_host(x, weight, bias, params, out):
    """NumPy in, NumPy out through the GPU; see :func:`convtranspose.cuda.run`."""
    dtype = out.dtype
    xd = _to_device(x, dtype, 0)
    wd = _to_device(weight, dtype, 0)
    bd = None if bias is None else _to_device(bias, dtype, 0)
    rd = cuda.device_array(out.shape, dtype)
    _compute(xd, wd, bd, rd, params)
    rd.copy_to_host(out)
    return out
