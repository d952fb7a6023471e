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

A ``fork`` (``os.fork``, a ``multiprocessing`` ``fork`` pool) made while another Python
thread is inside a kernel could copy a lock held in the middle of a BLAS call or of a
compilation into the child, which then blocks forever on its first computation. So
every launch passes a *fork gate*: ``os.fork`` waits until no other thread is inside a
kernel (at most ``FORK_WAIT_S`` seconds), and launches that start meanwhile wait until
the fork is done. A fork made inside a computation of its own thread (a signal handler)
does not wait for that one. Forks that bypass Python's ``os.fork`` hooks (a C library
calling ``fork()``) are not gated.

The layer is known only after the first parallel launch, so that first launch holds the
lock too.

Before a parallel kernel, :func:`convtranspose._blaspool.defend` sends OpenBLAS's spinning
workers away where that is safe (one Python thread, no other launch running), so that
they take no core from Numba's threads.
"""
from __future__ import annotations

import os
import threading
import time

import numba
from numba import njit

from . import _blaspool
from ._calls import prune, tracked

__all__ = ["launch", "serial_build", "threading_layer", "serialised", "forked_serial",
           "active_launches", "FORK_WAIT_S"]

#: Longest a fork waits for other threads' kernels to finish (one that cannot, e.g. one
#: blocked on a lock the forking thread holds, must not block the fork for good).
FORK_WAIT_S = 60.0
_POLL_S = 0.05       # a fork re-checks this often (a launch interrupted in its clean-up)

# re-entrant: a signal handler that computes while this thread holds it must not deadlock
_lock = threading.RLock()
_serialise = None        # None until the first launch tells which layer Numba chose
_forked_serial = False   # True in a child forked after GNU OpenMP ran in the parent
_serial_builds = {}      # parallel dispatcher -> serial dispatcher of the same function


# the fork gate; re-entrant, like _lock (entered through the lock itself: C-level, cheaper)
_gate_lock = threading.RLock()
_gate = threading.Condition(_gate_lock)
_inside = set()      # Calls of the launches running now, over all Python threads
_forking = set()     # threads inside os.fork: new launches of other threads wait


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


def active_launches():
    """How many kernel launches are running now, over all Python threads.

    Examples
    --------
    >>> from convtranspose._threading import active_launches
    >>> active_launches()
    0
    """
    with _gate_lock:
        return len(prune(_inside))


def launch(kernel, *args):
    """Run the ``@njit`` dispatcher ``kernel(*args)`` safely for this process and thread.

    A parallel kernel (all that call BLAS are) passes the fork gate, runs under the lock
    while the layer is unknown or ``workqueue``, and as its serial build in a child
    forked after GNU OpenMP ran. A serial kernel passes the gate only while it has never
    been compiled (a fork must not copy Numba's compiler lock held); a plain function
    (``NUMBA_DISABLE_JIT=1``) passes it and runs.
    """
    options = getattr(kernel, "targetoptions", None)
    # (``overloads``, a dict, not ``signatures``, which builds a list: microseconds)
    if options is not None and not options.get("parallel") and kernel.overloads:
        return kernel(*args)         # compiled, serial, no BLAS: nothing a fork must wait for
    with _gated() as alone:
        if options is not None and options.get("parallel") and not _forked_serial:
            _blaspool.defend(alone)     # no spinning OpenBLAS workers on Numba's cores
        return _run(kernel, options, args)


def _run(kernel, options, args):
    global _serialise
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


@tracked
def _gated(call):
    """The block of one launch: entered when no other thread forks, left at its end.

    Yields whether no other launch (of any thread, or nested in this one) runs."""
    try:
        with _gate_lock:
            if _forking:
                me = call.thread
                if not any(c.thread == me for c in prune(_inside)):   # not nested in a launch
                    _gate.wait_for(lambda: not _forking.difference((me,)))
            alone = not prune(_inside)
            _inside.add(call)
        yield alone
    finally:
        with _gate_lock:
            _inside.discard(call)
            if _forking:
                _gate.notify_all()


def _others_inside(me):
    return any(c.thread != me for c in prune(_inside))


def _before_fork():
    me = threading.get_ident()
    with _gate:
        _forking.add(me)
        deadline = time.monotonic() + FORK_WAIT_S
        while _others_inside(me) and time.monotonic() < deadline:
            _gate.wait(_POLL_S)


def _after_fork_in_parent():
    with _gate:
        _forking.discard(threading.get_ident())
        _gate.notify_all()


def _after_fork_in_child():
    global _lock, _gate_lock, _gate, _forked_serial
    _lock = threading.RLock()    # a thread of the parent may have held it at the fork
    _gate_lock = threading.RLock()
    _gate = threading.Condition(_gate_lock)
    _forking.clear()
    me = threading.get_ident()
    _inside.difference_update([c for c in _inside if c.thread != me])
    if threading_layer() == "omp":
        _forked_serial = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
