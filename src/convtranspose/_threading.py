"""How the parallel CPU kernels meet Python threads and ``fork``.

Numba runs ``prange`` loops on one of three threading layers, and two of them need care:

* ``workqueue`` is not thread-safe: two Python threads launching a parallel kernel at
  once abort the process. When Numba picked it (no OpenMP or TBB runtime, or
  ``NUMBA_THREADING_LAYER=workqueue``), :func:`launch` serialises the launches with a
  lock. ``omp`` and ``tbb`` run concurrent launches safely and take no lock.
* GNU OpenMP (``omp`` with libgomp, the default on Linux) is not fork-safe: a child
  forked after the parent ran a parallel region terminates ("fork() called from a
  process already using GNU OpenMP") the moment it enters one. A fork handler marks
  such a child, and :func:`launch` runs a serial build of the same kernel there (made
  on first use from the kernel's Python function and flags, not disk-cached: Numba's
  cache keys on the function, not on ``parallel=``, so a cached serial build would be
  confused with the parallel one).
  Results are identical (every output element is summed in a fixed order whatever the
  thread count); only the speed differs. ``spawn`` and ``forkserver`` children start
  fresh and run in parallel.

The layer is known only after the first parallel launch, so that first launch holds the
lock too.
"""
from __future__ import annotations

import os
import threading

import numba
from numba import njit

__all__ = ["launch", "serial_build", "threading_layer", "serialised", "forked_serial"]

# re-entrant: a signal handler that computes while this thread holds it must not deadlock
_lock = threading.RLock()
_serialise = None        # None until the first launch tells which layer Numba chose
_forked_serial = False   # True in a child forked after GNU OpenMP ran in the parent
_serial_builds = {}      # parallel dispatcher -> serial dispatcher of the same function


def threading_layer():
    """Numba's threading layer, or ``None`` before the first parallel launch."""
    try:
        return numba.threading_layer()
    except ValueError:
        return None


def serialised():
    """Whether parallel launches are serialised by a lock (the ``workqueue`` layer)."""
    return bool(_serialise)


def forked_serial():
    """Whether this process runs the serial kernels (forked after OpenMP was used)."""
    return _forked_serial


def serial_build(kernel):
    """A serial (``parallel=False``), uncached build of the ``@njit`` dispatcher ``kernel``."""
    build = _serial_builds.get(kernel)
    if build is None:
        options = {k: v for k, v in kernel.targetoptions.items()
                   if k in ("fastmath", "error_model", "boundscheck", "nogil")}
        build = _serial_builds[kernel] = njit(**options)(kernel.py_func)
    return build


def launch(kernel, *args):
    """Run the ``@njit`` dispatcher ``kernel(*args)`` safely for this process and thread.

    A parallel kernel runs under the lock while the layer is unknown or ``workqueue``, and
    as its serial build in a child forked after GNU OpenMP ran; any other kernel just runs.
    """
    global _serialise
    options = getattr(kernel, "targetoptions", None)
    if options is None or not options.get("parallel"):   # serial, or NUMBA_DISABLE_JIT=1
        return kernel(*args)
    if _forked_serial:
        return serial_build(kernel)(*args)
    if _serialise is False:
        return kernel(*args)
    with _lock:
        result = kernel(*args)
        _serialise = threading_layer() == "workqueue"
    return result


def _after_fork_in_child():
    global _lock, _forked_serial
    _lock = threading.RLock()    # a thread of the parent may have held it at the fork
    if threading_layer() == "omp":
        _forked_serial = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
