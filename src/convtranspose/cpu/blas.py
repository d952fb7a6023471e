"""Which BLAS the GEMMs use, whether it uses the CPU's widest vectors, and its threads.

The ``im2col`` backend's GEMMs run inside Numba kernels through ``np.dot``, which calls
SciPy's BLAS (in the PyPI wheels a library apart from NumPy's); the dense 1x1 path calls
NumPy's. The OpenBLAS in those wheels picks its kernels from the CPU it detects at load
time; on some AVX-512 CPUs (AMD Zen 4/5 with OpenBLAS 0.3.30/0.3.31) it detects
"Haswell" and runs AVX2 kernels at about half the machine's speed. :func:`blas_info`
reports what was detected and, when the CPU has AVX-512 but the kernels do not use it,
says how to fix that. :func:`single_threaded_blas` keeps SciPy's BLAS on one thread
while the parallel kernels call it from each of their own threads.
"""
from __future__ import annotations

import ctypes
import itertools
import os
import threading

from .. import _blaspool
from .._calls import prune, tracked
from .._threading import FORK_WAIT_S

__all__ = ["blas_info", "cpu_has_avx512", "single_threaded_blas", "blas_threads"]

# OpenBLAS core types whose kernels use 512-bit vectors.
_AVX512_CORES = {"skylakex", "cooperlake", "sapphirerapids", "zen4", "zen5"}
_REMEDY = ("set OPENBLAS_CORETYPE=SkylakeX in the environment before Python starts "
           "(NumPy loads OpenBLAS at import, so setting it later has no effect)")


def cpu_has_avx512():
    """``True`` when the CPU reports AVX-512F (read from ``/proc/cpuinfo``; ``None`` if unknown)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return "avx512f" in line.split()
    except OSError:
        pass
    return None


def blas_info():
    """Describe the BLAS that the ``im2col`` GEMMs call (SciPy's, else NumPy's).

    Returns
    -------
    dict
        ``library`` (e.g. ``"openblas"``), ``version``, ``architecture`` (the core type the
        library detected, e.g. ``"SkylakeX"``), ``threads``, ``cpu_avx512`` (whether the CPU
        has AVX-512F) and ``warning``: ``None``, or a sentence saying that the BLAS kernels
        underuse this CPU and how to fix it. Fields that cannot be found are ``None``.

    Examples
    --------
    >>> from convtranspose.cpu.blas import blas_info
    >>> sorted(blas_info())
    ['architecture', 'cpu_avx512', 'library', 'threads', 'version', 'warning']
    """
    info = dict(library=None, version=None, architecture=None, threads=None,
                cpu_avx512=cpu_has_avx512(), warning=None)
    try:
        import numpy  # noqa: F401  (load the BLAS libraries before asking about them)
        import scipy
        import scipy.linalg.cython_blas  # noqa: F401
        from threadpoolctl import threadpool_info
    except ImportError:
        info["warning"] = "threadpoolctl or SciPy is not installed: cannot inspect the BLAS"
        return info
    blas = [d for d in threadpool_info() if d.get("user_api") == "blas"]
    if not blas:
        return info
    root = os.path.dirname(os.path.abspath(scipy.__file__))
    scipy_blas = [d for d in blas if os.path.abspath(d.get("filepath", "")).startswith(root)]
    numpy_blas = [d for d in blas if "numpy" in d.get("filepath", "")]
    d = (scipy_blas or numpy_blas or blas)[0]
    info.update(library=d.get("internal_api"), version=d.get("version"),
                architecture=d.get("architecture"), threads=d.get("num_threads"))
    arch = (info["architecture"] or "").lower()
    if info["library"] == "openblas" and info["cpu_avx512"] and arch not in _AVX512_CORES:
        info["warning"] = (f"OpenBLAS detected this AVX-512 CPU as {info['architecture']!r} and "
                           f"runs narrower kernels (about half speed for im2col's GEMM): "
                           f"{_REMEDY}")
    return info


# ----------------------------------------------------------------------------
# the BLAS that Numba's np.dot calls, limited to one thread inside parallel kernels

# Re-entrant: a signal handler that computes while this thread is in here must not
# deadlock. Every change below is one C-level operation, ordered so that a call
# interrupted anywhere (KeyboardInterrupt), or a whole call made by a signal handler in
# between, leaves nothing behind that the next call does not set right.
_lock = threading.RLock()
_limited = set()     # Calls inside single_threaded_blas() now, over all Python threads
_saved = {}          # {"counts": [...]}: the counts to restore, while held at one thread
_counters = None     # per library, (get, set) of its thread count


def _numba_blas():
    """threadpoolctl controllers of the BLAS behind ``scipy.linalg.cython_blas``.

    Numba's ``np.dot`` calls SciPy's BLAS, which in the PyPI wheels is a library of its
    own (NumPy has another); where both share one library (e.g. conda), that one.
    """
    try:
        import scipy
        import scipy.linalg.cython_blas  # noqa: F401  (loads the library)
        from threadpoolctl import ThreadpoolController
        blas = ThreadpoolController().select(user_api="blas").lib_controllers
    except Exception:   # no threadpoolctl, or it cannot read this platform: run as is
        return []
    root = os.path.dirname(os.path.abspath(scipy.__file__))
    own = [c for c in blas if os.path.abspath(c.filepath).startswith(root)]
    return own or (blas if len(blas) == 1 else [])


def _counter(controller):
    """``(get, set)`` of one library's process-wide thread count, callable from any thread.

    For OpenBLAS on its own threads (not OpenMP), the library's
    ``openblas_{get,set}_num_threads`` (with the build's affixes, e.g.
    ``scipy_openblas_set_num_threads``) through ctypes: threadpoolctl's
    ``set_num_threads`` does nothing there when called from a thread other than the first
    that set a limit. Any other library through threadpoolctl (MKL, BLIS and FlexiBLAS
    take a limit from any thread; an OpenMP build's limit is per thread).
    """
    if controller.internal_api == "openblas" and \
            getattr(controller, "threading_layer", None) != "openmp":
        lib = ctypes.CDLL(controller.filepath)
        for prefix, suffix in itertools.product(("", "scipy_"), ("", "64_", "_64")):
            get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
            put = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
            if get is not None and put is not None:
                return get, put
    return controller.get_num_threads, controller.set_num_threads


def _blas_counters():
    """The ``(get, set)`` pairs of the BLAS that Numba's ``np.dot`` calls (found once)."""
    global _counters
    if _counters is None:
        controllers = _numba_blas()
        # setting a count restarts a pool that is down: the pool defence must leave it be
        _blaspool.leave_alone([c.filepath for c in controllers])
        _counters = [_counter(c) for c in controllers]
    return _counters


def blas_threads():
    """The thread count of each BLAS library that the ``im2col`` GEMMs call, as a list.

    Examples
    --------
    >>> from convtranspose.cpu.blas import blas_threads, single_threaded_blas
    >>> with single_threaded_blas():
    ...     all(n == 1 for n in blas_threads())
    True
    """
    return [get() for get, _ in _blas_counters()]


@tracked
def single_threaded_blas(call):
    """Run the block with one thread in the BLAS that Numba's ``np.dot`` calls.

    The parallel kernels call BLAS from each of their own threads; a multithreaded BLAS
    there would oversubscribe the cores. The limit holds whichever Python thread enters
    (see :func:`_counter` for how each library is driven), and the previous thread
    counts come back when the last concurrent user leaves; other code calling SciPy's
    BLAS in the meantime runs on one thread too (a matter of speed, never of results).
    Re-entrant (a signal handler may compute inside the block); a call interrupted at
    any point (``KeyboardInterrupt``) leaves the counts to be restored by the next call.

    Examples
    --------
    >>> from convtranspose.cpu.blas import single_threaded_blas
    >>> with single_threaded_blas():
    ...     pass
    """
    try:
        _limit(call)
        yield
    finally:
        _unlimit(call)


def _limit(call):
    counters = _blas_counters()
    with _lock:
        _limited.add(call)
        # kept if present: a nested or interrupted call may have limited the counts already
        _saved.setdefault("counts", [get() for get, _ in counters])
        for _, put in counters:
            put(1)


def _unlimit(call):
    with _lock:
        _limited.discard(call)
        if not prune(_limited):
            counts = _saved.get("counts")
            for (_, put), n in zip(_blas_counters(), counts or ()):
                put(n)
            _saved.pop("counts", None)     # only once restored


_held_for_fork = []    # the lock, while this thread forks


def _before_fork():
    # no other thread is then between two C calls that change the counts
    if _lock.acquire(timeout=FORK_WAIT_S):
        _held_for_fork.append(_lock)


def _after_fork_in_parent():
    if _held_for_fork:
        _held_for_fork.pop().release()


def _after_fork_in_child():
    global _lock
    _lock = threading.RLock()        # held by the forking thread, or by a thread now gone
    _held_for_fork.clear()
    me = threading.get_ident()
    _limited.difference_update([c for c in _limited if c.thread != me])


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
