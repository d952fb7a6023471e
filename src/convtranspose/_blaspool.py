"""One thread pool: OpenBLAS's idle workers sent away before a parallel kernel starts.

After a multi-threaded call, OpenBLAS's worker threads keep spinning for a while (about
``2**28`` cycles by default) waiting for more work, and a Numba parallel kernel that starts
meanwhile shares its cores with them: on a 2-core machine a kernel right after a
``512 x 512`` ``np.matmul`` ran 1.8x slower. The library itself runs no multi-threaded
BLAS call (its GEMMs run on Numba's threads), but a user's NumPy between two layers does.

So before a parallel kernel, :func:`defend` calls ``blas_thread_shutdown_()`` of each
OpenBLAS that NumPy and SciPy loaded (found through threadpoolctl) whose pool is up
(``blas_server_avail``): its workers exit (about 40 us). The library that the ``im2col``
GEMMs call (SciPy's, in the PyPI wheels) is left alone (:func:`leave_alone`): setting its
thread count around each GEMM kernel would restart its pool after every shutdown. Nothing of the user's settings
changes: the thread count stays, and the next multi-threaded BLAS call starts the workers
again by itself. Shutting the pool down while another thread is inside OpenBLAS is not
safe, and the library cannot see what other threads do, so it happens only when this is
the process's only Python thread (``threading.active_count() == 1``) and no other call of
the library is inside a kernel; otherwise the pool is left alone (counted as skipped).
Threads started by C code that never ran Python are invisible here: a process whose C
threads call NumPy's or SciPy's OpenBLAS should turn the defence off.

``CONVTRANSPOSE_BLAS_SHUTDOWN``, read at import: ``0`` (or ``off``, ``no``, ``false``) turns it
off; ``always`` drops the one-Python-thread condition, for processes whose other threads
never call NumPy's or SciPy's BLAS while the library computes (a Jupyter kernel runs seven
threads of its own, none of them in BLAS). What users can do instead, for any library:
``OPENBLAS_THREAD_TIMEOUT=4`` (workers stop spinning after ``2**4`` cycles) or
``OPENBLAS_NUM_THREADS=1``, set before NumPy loads.
"""
from __future__ import annotations

import ctypes
import os
import threading

__all__ = ["ENV_VAR", "enabled", "defend", "counts", "leave_alone"]

ENV_VAR = "CONVTRANSPOSE_BLAS_SHUTDOWN"


def _read_env():
    """``False`` (off), ``True`` (on, one Python thread) or ``"always"``."""
    value = os.environ.get(ENV_VAR, "1").strip().lower()
    return "always" if value == "always" else value not in ("0", "off", "no", "false")


_enabled = _read_env()
_pools = None        # [(path, blas_server_avail as a c_int, blas_thread_shutdown_)], found once
_left_alone = set()  # paths of the libraries whose thread count the library itself sets
_counts = {"shutdowns": 0, "skipped": 0}


def enabled():
    """Whether the defence is on: ``False``, ``True`` or ``"always"``
    (``CONVTRANSPOSE_BLAS_SHUTDOWN`` at import)."""
    return _enabled


def _set_enabled(flag):
    """Set the defence (``False``, ``True`` or ``"always"``); return the previous setting."""
    global _enabled
    previous, _enabled = _enabled, flag if flag == "always" else bool(flag)
    return previous


def counts():
    """``{"shutdowns": ..., "skipped": ...}``: pool shutdowns so far, and launches that
    found a pool up but left it alone because other Python threads exist.

    Examples
    --------
    >>> from convtranspose._blaspool import counts
    >>> sorted(counts())
    ['shutdowns', 'skipped']
    """
    return dict(_counts)


def _find_pools():
    """The OpenBLAS libraries of NumPy and SciPy that run their own threads (pthreads)."""
    try:
        import numpy  # noqa: F401  (load the libraries before asking about them)
        import scipy.linalg.cython_blas  # noqa: F401
        from threadpoolctl import ThreadpoolController
        libs = ThreadpoolController().select(internal_api="openblas").lib_controllers
    except Exception:    # no threadpoolctl, or it cannot read this platform: no defence
        return []
    pools = []
    for lib in libs:
        if getattr(lib, "threading_layer", None) != "pthreads":
            continue     # an OpenMP build's threads are OpenMP's
        try:
            dll = ctypes.CDLL(lib.filepath)
            pools.append((os.path.realpath(lib.filepath),
                          ctypes.c_int.in_dll(dll, "blas_server_avail"),
                          dll.blas_thread_shutdown_))
        except (OSError, AttributeError, ValueError):
            continue     # a build without these symbols: left as it is
    return pools


def leave_alone(paths):
    """Never shut down the OpenBLAS libraries at ``paths``: those whose thread count the
    library sets around its own GEMMs (:func:`convtranspose.cpu.blas.single_threaded_blas`).

    ``openblas_set_num_threads`` starts a pool that is down, whose new workers then spin:
    shutting that library's pool down before each kernel would restart it after each.
    """
    _left_alone.update(os.path.realpath(p) for p in paths)


def defend(alone):
    """Shut down OpenBLAS pools that are up, where safe: ``alone`` says that no other call
    of the library is inside a kernel; the process must also have one Python thread."""
    global _pools
    if not _enabled:
        return
    if _pools is None:
        _pools = _find_pools()
    up = [shutdown for path, avail, shutdown in _pools
          if avail.value and path not in _left_alone]
    if not up:
        return
    if not alone or (_enabled != "always" and threading.active_count() != 1):
        _counts["skipped"] += 1
        return
    for shutdown in up:
        shutdown()
    _counts["shutdowns"] += 1


def _after_fork_in_child():
    global _pools
    _pools = None        # OpenBLAS shut its pools down at the fork; found again on use


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
