"""Signal handlers that compute, and KeyboardInterrupt at any point of a call."""
from __future__ import annotations

import dis
import signal
import sys
import threading

import numpy as np
import pytest

import convtranspose as ct
from convtranspose import _calls, _threading
from convtranspose.cpu import blas, im2col
from convtranspose.cpu import workspace as ws
from convtranspose.cpu.kernels import pack_phase_weights
from convtranspose.params import normalise
from convtranspose.reference import conv_transpose2d_reference as reference
from convtranspose.testing import assert_close

KW = dict(stride=2, padding=1)


def _problem(seed, dtype=np.float64, shape=(2, 6, 9, 8), c_out=5):
    """``(x, w, b, params, out_shape)`` of a stride-2 problem that the phase form takes."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((shape[1], c_out, 4, 3)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype)
    params, out_shape, _ = normalise(x.shape, w.shape, b.shape, [x.dtype], **KW)
    return x, w, b, params, out_shape


def _phases(x, w, b, params, out_shape):
    return im2col.run_phases(x, w, b, params, np.empty(out_shape, x.dtype))


def test_call_between_pack_and_gemm_keeps_the_packed_weight(monkeypatch):
    """A call made between the phase form's two launches (as a signal handler may) gets its
    own workspace: the interrupted call's packed weight is not overwritten."""
    outer, inner = _problem(1), _problem(2)     # same sizes, other values
    nested, started = [], []
    launch = im2col.launch

    def launch_with_a_call_in_between(kernel, *args):
        result = launch(kernel, *args)
        if kernel is pack_phase_weights and not started:
            started.append(True)
            nested.append(_phases(*inner))
        return result

    monkeypatch.setattr(im2col, "launch", launch_with_a_call_in_between)
    y = _phases(*outer)
    assert len(nested) == 1
    assert_close(nested[0], reference(*inner[:3], **KW), np.float64)
    assert_close(y, reference(*outer[:3], **KW), np.float64)


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigalrm_handler_computing_during_computations(dtype):
    """SIGALRM's handler runs im2col on another problem in the middle of the main thread's
    im2col calls: every result matches the reference."""
    main, other = _problem(3, dtype, (2, 8, 12, 10)), _problem(4, dtype, (1, 3, 7, 6), 4)
    x, w, b = main[:3]
    expected = reference(x, w, b, **KW)
    expected_other = reference(*other[:3], **KW)
    handled, in_handler = [], []
    ct.conv_transpose2d(*other[:3], backend="im2col", **KW)      # compiled before it starts

    def handler(signum, frame):
        if in_handler:      # a signal during the handler's own call: skip it
            return
        in_handler.append(True)
        try:
            handled.append(ct.conv_transpose2d(*other[:3], backend="im2col", **KW))
        finally:
            in_handler.clear()

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.002, 0.002)
        results = [ct.conv_transpose2d(x, w, b, backend="im2col", **KW) for _ in range(300)]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert handled, "the handler never ran"
    for y in results:
        assert_close(y, expected, dtype)
    for y in handled:
        assert_close(y, expected_other, dtype)


def test_signal_handler_inside_the_blas_bookkeeping_does_not_deadlock():
    """A call made while its own thread holds the BLAS-limiting lock, as a signal handler's
    call in the middle of that bookkeeping does, completes (the lock is re-entrant)."""
    x, w, b = _problem(5)[:3]
    done = []

    def handler_inside_the_bookkeeping():
        with blas._lock:
            done.append(ct.conv_transpose2d(x, w, b, backend="im2col", **KW))

    th = threading.Thread(target=handler_inside_the_bookkeeping, daemon=True)
    th.start()
    th.join(timeout=120)
    assert not th.is_alive(), "deadlocked"
    assert_close(done[0], reference(x, w, b, **KW), np.float64)


# ----------------------------------------------------------------------------
# KeyboardInterrupt at every bytecode of the bookkeeping

MODULES = {"blas": blas, "threading": _threading, "workspace": ws, "calls": _calls}


class _Interrupt:
    """A trace function that raises KeyboardInterrupt at the ``k``-th bytecode executed in
    ``module``'s functions (``k = 0``: never; ``count`` tells how many ran)."""

    def __init__(self, module, k):
        self.file, self.k, self.count, self.opname = module.__file__, k, 0, None

    def __call__(self, frame, event, arg):
        if event == "call" and frame.f_code.co_filename == self.file:
            frame.f_trace_opcodes = True
            return self._local
        return None

    def _local(self, frame, event, arg):
        if event == "opcode":
            self.count += 1
            if self.count == self.k:
                self.opname = dis.opname[frame.f_code.co_code[frame.f_lasti]]
                raise KeyboardInterrupt
        return self._local


def _traced(tracer, call):
    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        return call()
    finally:
        sys.settrace(old)


#: The opcodes of a ``with`` statement's exit before its ``__exit__`` runs (Python 3.11+).
_WITH_EXIT = {"NOP", "LOAD_CONST", "PRECALL", "CALL", "PUSH_EXC_INFO", "WITH_EXCEPT_START"}


def _release_leaked_holds():
    """Release the bookkeeping locks if this thread still holds them; return how many.

    An exception raised by a trace function at the opcodes of a ``with`` statement's
    normal exit (before its ``__exit__`` call) skips the release; CPython delivers
    signals only after calls, at function starts and at loop back-edges, so Ctrl-C cannot
    land there. Released so that other threads of the test session never wait on them.
    """
    leaked = 0
    for lock in (blas._lock, _threading._gate_lock, _threading._lock):
        while lock._is_owned():
            lock.release()
            leaked += 1
    return leaked


def _state():
    """What must be back to normal after any call: the BLAS counts, and nothing held."""
    with blas._lock:
        limited = len(_calls.prune(blas._limited))
    return blas.blas_threads(), limited, dict(blas._saved), _threading.active_launches(), \
        ws._held()


@pytest.mark.parametrize("form", sorted(im2col.FORMS))
@pytest.mark.parametrize("module", sorted(MODULES))
def test_keyboard_interrupt_at_any_bytecode_leaves_nothing_behind(module, form):
    """Ctrl-C at any point of a call never leaves the BLAS at one thread, a launch counted
    (a fork would wait for it) or the workspace held, once the next call has run."""
    x, w, b, params, out_shape = _problem(6)
    expected = reference(x, w, b, **KW)

    def call():
        return im2col.FORMS[form](x, w, b, params, np.empty(out_shape))

    call()
    normal = _state()
    assert normal[1:] == (0, {}, 0, False)
    probe = _Interrupt(MODULES[module], 0)
    _traced(probe, call)
    assert probe.count > 0
    interrupted, leaked = 0, set()
    for k in range(1, probe.count + 1):
        tracer = _Interrupt(MODULES[module], k)
        try:
            _traced(tracer, call)
        except KeyboardInterrupt:
            interrupted += 1
        if _release_leaked_holds():
            leaked.add(tracer.opname)
        assert_close(call(), expected, np.float64)
        assert _state() == normal, (module, k)
    assert interrupted == probe.count
    assert leaked <= _WITH_EXIT, leaked
