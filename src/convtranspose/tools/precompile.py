"""Every CPU kernel of a dtype, compiled ahead of time into Numba's disk cache.

Behind ``python -m convtranspose compile`` and ``docs/first_call.py``. Each step of
:data:`STEPS` runs one small call that reaches one kernel (or one pair that always runs
together); every public function, of every rank and layout, forward or backward, runs
these kernels with the same argument types, so once the steps have run for a dtype no call
in that dtype compiles again (``tests/test_precompile.py`` checks it). Read-only operands
(``np.load(..., mmap_mode="r")``, ``np.broadcast_to``) are other argument types to Numba:
the kernels that read them compile once more on first use. Numba's cache is keyed by the
CPU: fill it on the CPU model that will run the code.
"""
from __future__ import annotations

import time
from typing import Callable, NamedTuple

import numpy as np
from numba.core import event

from .. import _jit

__all__ = ["Step", "STEPS", "compile_kernels"]


class Step(NamedTuple):
    """One kernel (or pair) and the call that compiles it for a dtype."""

    name: str                       #: short name, for ``compile --kernels``
    kernels: str                    #: what it compiles
    run: Callable[[np.dtype], object]


def _ones(dtype, *shapes):
    return [np.ones(shape, dtype) for shape in shapes]


def _form(name):
    """An ``im2col`` form on a small problem (the backend picks one by the model)."""
    def run(dtype):
        from ..cpu import im2col
        from ..params import normalise
        x, w = _ones(dtype, (2, 4, 5, 5), (4, 3, 3, 3))
        params, shape, _ = normalise(x.shape, w.shape, None, [dtype], stride=2)
        im2col.FORMS[name](x, w, None, params, np.empty(shape, dtype))
    return run


def _forward(x_shape, w_shape, backend):
    def run(dtype):
        from .. import conv_transpose2d
        x, w = _ones(dtype, x_shape, w_shape)
        conv_transpose2d(x, w, stride=2, padding=1, backend=backend)
    return run


def _correlation(x_shape, w_shape, backend):
    def run(dtype):
        from .. import conv2d
        x, w = _ones(dtype, x_shape, w_shape)
        conv2d(x, w, stride=2, padding=1, backend=backend)
    return run


def _weight_grad(x_shape, w_shape, backend):
    def run(dtype):
        from .. import conv_transpose2d_backward, output_shape
        x, w = _ones(dtype, x_shape, w_shape)
        g = np.ones(output_shape(x_shape, w_shape, stride=2, padding=1), dtype)
        conv_transpose2d_backward(g, x, w, stride=2, padding=1, backend=backend,
                                  needs_input_grad=False, needs_bias_grad=False)
    return run


def _bias_grad(dtype):
    from .. import conv2d_backward
    g, x, w = _ones(dtype, (2, 3, 3, 3), _SMALL[0], (3, 4, 3, 3))
    conv2d_backward(g, x, w, stride=2, padding=1, needs_input_grad=False,
                    needs_weight_grad=False)


def _complex(dtype):
    """A complex call of the dtype whose parts are ``dtype``: the passes of Gauss's form."""
    from .. import conv_transpose2d, conv_transpose2d_backward
    c = np.dtype(np.complex64 if np.dtype(dtype) == np.float32 else np.complex128)
    x, w, b = _ones(c, _SMALL[0], _SMALL[1], (3,))
    y = conv_transpose2d(x, w, b, stride=2, padding=1)
    conv_transpose2d_backward(y, x, w, stride=2, padding=1)


def _calls(*runs):
    """One step of several calls (one kernel's signatures reached by several paths)."""
    def run(dtype):
        for one in runs:
            one(dtype)
    return run


_SMALL = (2, 4, 5, 5), (4, 3, 3, 3)            # the gather and GEMM kernels' sizes
_ENGINE = (2, 16, 6, 6), (16, 8, 4, 4)         # a layer the register-blocked engine runs

#: Every CPU kernel, in the order ``compile`` runs them.
STEPS = (
    Step("direct-serial", "direct's gather kernel on one thread (direct_kernel_serial)",
         _forward(*_SMALL, "direct")),
    Step("direct-parallel", "direct's gather kernel in parallel (direct_kernel)",
         _forward((2, 4, 40, 40), _SMALL[1], "direct")),
    Step("im2col-phases", "im2col's sub-pixel phase form (pack_phase_weights, "
         "phase_gemm_kernel)", _form("phases")),
    Step("im2col-col2im", "im2col's col2im form (col2im_gemm_kernel)", _form("col2im")),
    Step("engine", "the channels-last engine: its one- and two-vector tiles and the "
         "correlation's weight packing (nd_engine: _pack_kernel, _relayout_kernel, "
         "_narrow_kernel, _kernel, _store_planes_kernel)",
         _calls(_forward(*_ENGINE, "direct"), _forward(_ENGINE[0], (16, 40, 4, 4), "direct"),
                _correlation(_ENGINE[0], (40, 16, 4, 4), "direct"))),
    Step("engine-weight-grad", "the engine's weight gradient (weight_grad_kernel)",
         _weight_grad(*_ENGINE, "direct")),
    Step("correlate", "the gather correlation (correlate_kernel)",
         _correlation(_SMALL[0], (3, 4, 3, 3), "direct")),
    Step("weight-grad", "the gather weight gradient (weight_grad_kernel)",
         _weight_grad(*_SMALL, "direct")),
    Step("correlate-gemm", "the GEMM correlation (correlate_gemm_kernel)",
         _correlation(_SMALL[0], (3, 4, 3, 3), "im2col")),
    Step("weight-grad-gemm", "the GEMM weight gradient (weight_grad_gemm_kernel, "
         "sum_partials)", _weight_grad(*_SMALL, "im2col")),
    Step("bias-grad", "the bias gradient (channel_sums)", _bias_grad),
    Step("complex", "the passes of complex operands, for the complex dtype of these parts "
         "(pairs: _split, _join, split3, join3, gradient_parts)", _complex),
)


def compile_kernels(dtypes=("float32", "float64"), names=None, stream=None):
    """Compile (or load from Numba's disk cache) every CPU kernel for ``dtypes``.

    Parameters
    ----------
    dtypes : sequence of str or numpy.dtype
        ``float32`` and/or ``float64``.
    names : sequence of str, optional
        Only the steps of :data:`STEPS` with these names (default: all).
    stream : file, optional
        Where a line per kernel and dtype goes as it is done (default: nowhere).

    Returns
    -------
    list of dict
        Per step and dtype: ``name``, ``dtype``, ``seconds`` and ``compiled`` (False when
        nothing compiled: everything came from the cache, or from this process).

    Raises
    ------
    ValueError
        If a name in ``names`` is not a step's.

    Examples
    --------
    >>> from convtranspose.tools.precompile import compile_kernels
    >>> [r["name"] for r in compile_kernels(["float64"], ["direct-serial"])]
    ['direct-serial']
    """
    known = [step.name for step in STEPS]
    unknown = [n for n in names or () if n not in known]
    if unknown:
        raise ValueError(f"names: no kernel step {unknown[0]!r}; the steps are "
                         f"{', '.join(known)}")
    steps = [step for step in STEPS if names is None or step.name in names]
    _jit.compile_notice_given()
    done = []
    total = len(steps) * len(dtypes)
    for dtype in map(np.dtype, dtypes):
        for step in steps:
            with event.install_recorder("numba:compile") as record:
                start = time.perf_counter()
                step.run(dtype)
                seconds = time.perf_counter() - start
            compiled = any(_jit.is_kernel(ev.data["dispatcher"]) for _, ev in record.buffer)
            done.append(dict(name=step.name, dtype=dtype.name, seconds=seconds,
                             compiled=compiled))
            if stream is not None:
                how = "compiled" if compiled else "already compiled, loaded"
                stream.write(f"[{len(done)}/{total}] {dtype.name} {step.name}: {how} in "
                             f"{seconds:.1f} s ({step.kernels})\n")
                stream.flush()
    return done
