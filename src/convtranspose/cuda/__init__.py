"""The ``cuda`` backend: ``numba.cuda`` kernels for CUDA arrays, and GPU offload of NumPy input.

Importing this package is cheap and never touches ``numba.cuda``; the functions below
import it when called, so ``import convtranspose`` works without a GPU, a CUDA driver or
``numba-cuda``.

* :func:`conv_transpose2d` -- the device path: CUDA arrays in (Numba device arrays, CuPy
  arrays, PyTorch CUDA tensors), an array of the caller's kind out, on the caller's stream.
* :func:`conv_transpose2d_backward`, :func:`conv2d`, :func:`conv2d_backward` -- the
  same for the gradients and the convolution (kernels in :mod:`convtranspose.cuda.backward`),
  taking CUDA arrays or NumPy arrays (copied to the GPU and back; PyTorch CPU tensors
  count as NumPy arrays and give NumPy arrays).
* :func:`run` -- the backend entry used by ``backend="cuda"`` with NumPy arrays: copies to
  the GPU, computes, copies back into ``out``.
* :func:`is_available`, :func:`info` -- for ``python -m convtranspose info``.
* :func:`time_call`, :func:`to_device` -- synchronised timing of device-resident calls for
  ``python -m convtranspose bench``; :mod:`convtranspose.cuda.bench` compares a suite
  shape against PyTorch cuDNN.
"""
from __future__ import annotations

import importlib.metadata
import time
from typing import TYPE_CHECKING

import numpy as np

from .._arrays import is_device_array
from ..params import check_device_dtype

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._typing import Array, ArrayLike, Conv2dPadding, Gradients, IntPair, Padding, Shape

__all__ = ["conv_transpose2d", "conv_transpose2d_backward", "conv2d", "conv2d_backward", "run",
           "is_available", "info", "require", "time_call", "to_device", "implementation"]


def _numba_cuda():
    from numba import cuda
    return cuda


def implementation() -> str:
    """Say which CUDA implementation ``from numba import cuda`` gives.

    Returns
    -------
    str
        ``"numba-cuda <version>"`` (NVIDIA's package, installed by the ``cuda12`` and
        ``cuda13`` extras) or ``"numba <version> built-in numba.cuda"``.

    See Also
    --------
    info : everything about the GPU backend, this included.

    Examples
    --------
    >>> from convtranspose import cuda
    >>> "numba" in cuda.implementation()
    True
    """
    try:
        redirected = "numba_cuda" in (_numba_cuda().__file__ or "")
    except ImportError:
        redirected = False
    if redirected:
        return f"numba-cuda {importlib.metadata.version('numba-cuda')}"
    return f"numba {importlib.metadata.version('numba')} built-in numba.cuda"


def _simulator():
    from numba import config
    return bool(config.ENABLE_CUDASIM)


def is_available() -> bool:
    """Tell whether the ``cuda`` backend can run here.

    Returns
    -------
    bool
        True with a GPU and a working driver, or under Numba's simulator
        (``NUMBA_ENABLE_CUDASIM=1``); False otherwise, ``numba.cuda`` failing to import
        included.

    See Also
    --------
    info : why not, when it cannot.
    require : raise instead of returning False.

    Examples
    --------
    >>> from convtranspose import cuda
    >>> cuda.is_available() in (True, False)
    True
    """
    try:
        return bool(_numba_cuda().is_available())
    except ImportError:
        return False


def info() -> dict:
    """Describe what the ``cuda`` backend would run on, as a dict.

    Returns
    -------
    dict
        ``available`` (bool), ``implementation`` (see :func:`implementation`),
        ``simulator`` (bool), and when available ``device`` (name),
        ``compute_capability`` ((major, minor)), ``device_count``; ``reason`` says why
        not when unavailable.

    See Also
    --------
    is_available : the ``available`` entry alone.
    implementation : the ``implementation`` entry.

    Examples
    --------
    >>> from convtranspose import cuda
    >>> sorted(k for k in cuda.info() if k in ("available", "implementation", "simulator"))
    ['available', 'implementation', 'simulator']
    """
    result = {"available": False, "implementation": implementation(), "simulator": False}
    try:
        cuda = _numba_cuda()
    except ImportError as exc:
        result["reason"] = f"numba.cuda cannot be imported: {exc}"
        return result
    result["simulator"] = _simulator()
    if not cuda.is_available():
        result["reason"] = "no CUDA GPU or driver found"
        return result
    dev = cuda.current_context().device
    name = getattr(dev, "name", "simulated GPU")
    result.update(available=True,
                  device=name.decode() if isinstance(name, bytes) else str(name or "simulator"),
                  compute_capability=tuple(dev.compute_capability),
                  device_count=len(cuda.gpus))
    return result


def conv_transpose2d(x: Array, weight: ArrayLike, bias: ArrayLike | None = None,
                     stride: IntPair = 1, padding: Padding = 0, output_padding: IntPair = 0,
                     groups: int = 1, dilation: IntPair = 1, *, output_size: Shape | None = None,
                     out: Array | None = None) -> Array:
    """:func:`convtranspose.conv_transpose2d` on the GPU; the result is of ``x``'s kind.

    Parameters
    ----------
    x : CUDA array, shape (N, C_in, H, W) or (C_in, H, W)
        A Numba device array, CuPy array or PyTorch CUDA tensor (read in place, any strides).
        A NumPy array is copied to the GPU and the result copied back; so is a PyTorch CPU
        tensor (read as ``numpy.asarray`` reads it), which gives a NumPy array.
    weight, bias : CUDA arrays or NumPy arrays
        On ``x``'s GPU, or small host arrays copied to it.
    stride, padding, output_padding, groups, dilation, output_size : int, tuple or None
        As for :func:`convtranspose.conv_transpose2d`.
    out : CUDA array, optional
        C-contiguous, of the result's shape and dtype, on ``x``'s GPU.

    Returns
    -------
    array of x's kind
        CuPy in, CuPy out; torch in, torch out; Numba in, Numba out.

    Raises
    ------
    TypeError
        Host ``x`` with CUDA ``weight``/``bias``/``out`` (or CUDA ``out`` for host input),
        a torch tensor that requires grad, non-float dtypes, CUDA arrays where no GPU
        can be used.
    ValueError
        Operands on different GPUs, and every bad argument
        :func:`convtranspose.conv_transpose2d` rejects.

    See Also
    --------
    convtranspose.conv_transpose2d : the same with any arrays; CUDA arrays come here.
    conv_transpose2d_backward : the gradients on the GPU.

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> from convtranspose import cuda
    >>> x = np.ones((1, 1, 2, 2), np.float32)
    >>> w = np.ones((1, 1, 3, 3), np.float32)
    >>> if cuda.is_available():             # a Numba device array in, one out
    ...     from numba import cuda as nbcuda
    ...     y = cuda.conv_transpose2d(nbcuda.to_device(x), w, stride=2).copy_to_host()
    ... else:
    ...     y = ct.conv_transpose2d(x, w, stride=2)
    >>> y[0, 0, 2]
    array([2., 2., 4., 2., 2.], dtype=float32)
    """
    _refuse_half(x=x, weight=weight, bias=bias, out=out)
    if not is_available():
        raise _no_gpu_for_cuda_arrays()
    from .arrays import conv_transpose2d as impl
    return impl(x, weight, bias, stride, padding, output_padding, groups, dilation,
                output_size=output_size, out=out)


def _no_gpu_for_cuda_arrays():
    return TypeError(f"CUDA arrays were given but no CUDA GPU can be used here: "
                     f"{info().get('reason')}; copy them to NumPy arrays")


def _refuse_half(**arrays):
    """``TypeError`` for a half-precision operand: the kernels take float32 and float64."""
    for name, a in arrays.items():
        if isinstance(getattr(a, "dtype", None), np.dtype):
            check_device_dtype(a.dtype, name)


def _check_usable(**arrays):
    """``TypeError`` for half-precision operands, and for CUDA arrays unless a GPU can be
    used; ``RuntimeError`` (:func:`require`) for host arrays unless a GPU can be used."""
    _refuse_half(**arrays)
    if is_available():
        return
    if any(is_device_array(a, n) for n, a in arrays.items() if a is not None):
        raise _no_gpu_for_cuda_arrays()
    require()


def conv_transpose2d_backward(grad_output: Array, x: ArrayLike, weight: ArrayLike,
                              stride: IntPair = 1, padding: Padding = 0,
                              output_padding: IntPair = 0, groups: int = 1,
                              dilation: IntPair = 1, *, output_size: Shape | None = None,
                              needs_input_grad: bool = True, needs_weight_grad: bool = True,
                              needs_bias_grad: bool = True) -> Gradients:
    """:func:`convtranspose.conv_transpose2d_backward` on the GPU.

    Parameters
    ----------
    grad_output, x, weight : CUDA arrays or NumPy arrays
        As for :func:`convtranspose.conv_transpose2d_backward`. A CUDA ``grad_output``
        (Numba, CuPy, torch; any strides) decides the results' kind, GPU and stream;
        ``x`` and ``weight`` may then be host arrays (copied to its GPU). A NumPy
        ``grad_output`` needs NumPy ``x`` and ``weight``: they are copied to the GPU and
        the results copied back. PyTorch CPU tensors count as NumPy arrays (read as
        ``numpy.asarray`` reads them) and give NumPy arrays.
    stride, padding, output_padding, groups, dilation, output_size : int, tuple or None
        As for :func:`convtranspose.conv_transpose2d_backward`.
    needs_input_grad, needs_weight_grad, needs_bias_grad : bool, default True
        Which gradients to compute; the others are returned as ``None``.

    Returns
    -------
    grad_input : array of grad_output's kind, or None
        Shape of ``x``.
    grad_weight : array of grad_output's kind, or None
        Shape of ``weight``.
    grad_bias : array of grad_output's kind, or None
        Shape ``(C_out,)``.

    Raises
    ------
    TypeError
        Host ``grad_output`` with CUDA ``x`` or ``weight``, a torch tensor that requires
        grad, non-float dtypes, CUDA arrays where no GPU can be used.
    ValueError
        Operands on different GPUs, and every bad argument
        :func:`convtranspose.conv_transpose2d_backward` rejects.
    RuntimeError
        NumPy arrays where no GPU can be used.

    See Also
    --------
    convtranspose.conv_transpose2d_backward : the same with any arrays; CUDA arrays come
        here.
    conv_transpose2d : the forward on the GPU.

    Notes
    -----
    ``grad_input`` is a correlation, one thread per element; ``grad_weight`` and
    ``grad_bias`` are block reductions in a fixed order, without atomics, so they are
    the same bits on every run (``convtranspose.cuda.backward`` gives the order).

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> from convtranspose import cuda
    >>> x, w = np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3))
    >>> gy = np.ones((1, 1, 5, 5))
    >>> if cuda.is_available():             # Numba device arrays in, ones out
    ...     from numba import cuda as nbcuda
    ...     grads = cuda.conv_transpose2d_backward(nbcuda.to_device(gy), x, w, stride=2)
    ...     gx, gw, gb = (g.copy_to_host() for g in grads)
    ... else:
    ...     gx, gw, gb = ct.conv_transpose2d_backward(gy, x, w, stride=2)
    >>> gx[0, 0], gb
    (array([[9., 9.],
           [9., 9.]]), array([25.]))
    """
    _check_usable(grad_output=grad_output, x=x, weight=weight)
    from .backward import conv_transpose2d_backward as impl
    return impl(grad_output, x, weight, stride, padding, output_padding, groups, dilation,
                output_size=output_size, needs_input_grad=needs_input_grad,
                needs_weight_grad=needs_weight_grad, needs_bias_grad=needs_bias_grad)


def conv2d(x: Array, weight: ArrayLike, bias: ArrayLike | None = None, stride: IntPair = 1,
           padding: Conv2dPadding = 0, dilation: IntPair = 1, groups: int = 1) -> Array:
    """:func:`convtranspose.conv2d` on the GPU; the result is of ``x``'s kind.

    Parameters
    ----------
    x, weight, bias : CUDA arrays or NumPy arrays
        As for :func:`convtranspose.conv2d`. A CUDA ``x`` decides the result's kind, GPU
        and stream (``weight`` and ``bias`` may be host arrays, copied to it); a NumPy
        ``x`` needs NumPy ``weight`` and ``bias`` and gives a NumPy result, as PyTorch CPU
        tensors do.
    stride, padding, dilation, groups : int, tuple or str
        As for :func:`convtranspose.conv2d`.

    Returns
    -------
    array of x's kind
        ``(N, C_out, H_out, W_out)`` (or unbatched), as :func:`convtranspose.conv2d`.

    Raises
    ------
    TypeError, ValueError, RuntimeError
        As :func:`conv_transpose2d_backward`, for ``x`` in the place of ``grad_output``.

    See Also
    --------
    convtranspose.conv2d : the same with any arrays; CUDA arrays come here.
    conv2d_backward : the gradients on the GPU.

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> from convtranspose import cuda
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> w = np.ones((1, 1, 2, 2))
    >>> if cuda.is_available():
    ...     from numba import cuda as nbcuda
    ...     y = cuda.conv2d(nbcuda.to_device(x), w, stride=2).copy_to_host()
    ... else:
    ...     y = ct.conv2d(x, w, stride=2)
    >>> y[0, 0]
    array([[10., 18.],
           [42., 50.]])
    """
    _check_usable(x=x, weight=weight, bias=bias)
    from .backward import conv2d as impl
    return impl(x, weight, bias, stride, padding, dilation, groups)


def conv2d_backward(grad_output: Array, x: ArrayLike, weight: ArrayLike, stride: IntPair = 1,
                    padding: Conv2dPadding = 0, dilation: IntPair = 1, groups: int = 1, *,
                    needs_input_grad: bool = True, needs_weight_grad: bool = True,
                    needs_bias_grad: bool = True) -> Gradients:
    """:func:`convtranspose.conv2d_backward` on the GPU; results of ``grad_output``'s kind.

    Parameters
    ----------
    grad_output, x, weight : CUDA arrays or NumPy arrays
        As for :func:`conv_transpose2d_backward`: a CUDA ``grad_output`` decides the
        results' kind, GPU and stream.
    stride, padding, dilation, groups : int, tuple or str
        As for :func:`convtranspose.conv2d_backward`.
    needs_input_grad, needs_weight_grad, needs_bias_grad : bool, default True
        Which gradients to compute; the others are returned as ``None``.

    Returns
    -------
    tuple
        ``(grad_input, grad_weight, grad_bias)``, as :func:`conv_transpose2d_backward`.

    Raises
    ------
    TypeError, ValueError, RuntimeError
        As :func:`conv_transpose2d_backward`.

    See Also
    --------
    convtranspose.conv2d_backward : the same with any arrays; CUDA arrays come here.
    conv2d : the forward on the GPU.

    Notes
    -----
    ``grad_input`` is a transposed convolution, run by the forward kernels of
    ``convtranspose.cuda.kernels``; ``grad_weight`` and ``grad_bias`` are the
    deterministic reductions of ``convtranspose.cuda.backward``.

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> from convtranspose import cuda
    >>> gy, x, w = np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2))
    >>> if cuda.is_available():
    ...     gx, gw, gb = cuda.conv2d_backward(gy, x, w)     # NumPy in, NumPy out
    ... else:
    ...     gx, gw, gb = ct.conv2d_backward(gy, x, w)
    >>> gx[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    _check_usable(grad_output=grad_output, x=x, weight=weight)
    from .backward import conv2d_backward as impl
    return impl(grad_output, x, weight, stride, padding, dilation, groups,
                needs_input_grad=needs_input_grad, needs_weight_grad=needs_weight_grad,
                needs_bias_grad=needs_bias_grad)


def run(x, weight, bias, params, out):
    """Backend entry for NumPy arrays: copy to the GPU, compute, copy back into ``out``.

    Same contract as the CPU backends' ``run``: 4-D C-contiguous arrays of one native
    float dtype, validated ``params``; returns ``out``.
    """
    require()
    from .arrays import run_host
    return run_host(x, weight, bias, params, out)


def require() -> None:
    """Raise ``RuntimeError`` saying why, unless :func:`is_available`.

    Raises
    ------
    RuntimeError
        When the ``cuda`` backend cannot run here; the message gives the reason and the
        ``numba.cuda`` in use.

    See Also
    --------
    is_available : the same question, answered with a bool.

    Examples
    --------
    >>> from convtranspose import cuda
    >>> try:
    ...     cuda.require()
    ... except RuntimeError as exc:
    ...     assert not cuda.is_available() and "needs a CUDA GPU" in str(exc)
    ... else:
    ...     assert cuda.is_available()
    """
    if not is_available():
        details = info()
        raise RuntimeError(f"backend='cuda' needs a CUDA GPU: {details.get('reason')} "
                           f"({details['implementation']}); use backend='auto' for the CPU, "
                           "or NUMBA_ENABLE_CUDASIM=1 for Numba's (slow) simulator")


def to_device(*arrays: ArrayLike | None) -> tuple:
    """Copy NumPy arrays to the current GPU as Numba device arrays (``None`` stays ``None``).

    For timing the kernels without transfers, e.g. with :func:`time_call`.

    Parameters
    ----------
    *arrays : numpy.ndarray or None
        The arrays to copy.

    Returns
    -------
    tuple
        One Numba device array (or ``None``) per argument, in order.

    Raises
    ------
    RuntimeError
        When no GPU can be used (see :func:`require`).

    See Also
    --------
    time_call : time a call on the copies.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose import cuda
    >>> if cuda.is_available():
    ...     (x,) = cuda.to_device(np.ones((1, 1, 2, 2), np.float32))
    ...     shape = x.shape
    ... else:
    ...     shape = (1, 1, 2, 2)
    >>> shape
    (1, 1, 2, 2)
    """
    require()
    cuda = _numba_cuda()
    return tuple(None if a is None else cuda.to_device(a) for a in arrays)


def time_call(fn: Callable[[], object], repeat: int = 10, warmup: int = 2) -> list[float]:
    """Time ``fn()`` on the GPU: seconds per call for each of ``repeat`` calls.

    The device is synchronised before the clock starts and before it stops, so queued
    kernels are counted; ``warmup`` untimed calls first take compilation out.

    Parameters
    ----------
    fn : callable
        Called with no arguments; typically launches kernels on device-resident arrays.
    repeat : int, default 10
        Timed calls.
    warmup : int, default 2
        Untimed calls before them.

    Returns
    -------
    list of float
        Seconds of each timed call, in order.

    Raises
    ------
    ImportError
        When ``numba.cuda`` cannot be imported; and whatever ``fn`` raises.

    See Also
    --------
    to_device : copy the operands to the GPU first.

    Examples
    --------
    >>> from convtranspose import cuda
    >>> times = cuda.time_call(lambda: None, repeat=3, warmup=0) if cuda.is_available() else [0.0] * 3
    >>> len(times)
    3
    """
    sync = _numba_cuda().synchronize
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times
