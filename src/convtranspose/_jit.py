"""``njit`` for the package's kernels: Numba's, with a disk cache where one can be written.

Every CPU kernel is compiled with ``cache=True`` so that a new process loads it instead of
compiling it again (seconds per dtype). Numba refuses to *define* such a function when no
cache location is writable (a read-only install with an unwritable home directory, as in
many containers): ``RuntimeError: cannot cache function ...`` at import. Here that case
falls back to compiling without a disk cache, with one :class:`RuntimeWarning` that says
how to get the cache back (``NUMBA_CACHE_DIR``).

A kernel's first call for a new dtype compiles it (seconds) unless the cache holds it. The
first time in a process that one of these kernels compiles, the logger ``convtranspose``
says so at WARNING level (Python's last-resort handler prints it on stderr unless logging
is configured; ``logging.getLogger("convtranspose").setLevel(logging.ERROR)`` silences it).
It listens to Numba's ``"numba:compile"`` event, which Numba sends only when it compiles
(after a cache miss), so calls pay nothing for it.
"""
from __future__ import annotations

import logging
import threading
import warnings
import weakref

import numba
from numba.core import event

__all__ = ["njit", "disk_cache", "logger", "is_kernel", "compile_notice_given"]

_cache_ok = True     # False once a kernel could not get a cache location
logger = logging.getLogger("convtranspose")
_kernels = weakref.WeakSet()     # the dispatchers njit made with cache=True
_notice_lock = threading.Lock()
_notice_due = True               # until a kernel compiles (or compile_notice_given())


def is_kernel(dispatcher):
    """Whether ``dispatcher`` is one of the package's cached CPU kernels."""
    return dispatcher in _kernels


def compile_notice_given():
    """Say nothing more in this process about kernels compiling (the command that
    compiles them all says it itself)."""
    global _notice_due
    _notice_due = False


class _CompileNotice(event.Listener):
    """Logs, once per process, that one of the package's kernels is compiling."""

    def on_start(self, ev):
        global _notice_due
        dispatcher = ev.data["dispatcher"]
        if not _notice_due or not is_kernel(dispatcher):
            return
        with _notice_lock:
            if not _notice_due:
                return
            _notice_due = False
        dtypes = sorted({str(a.dtype) for a in ev.data["args"]
                         if isinstance(a, numba.types.Array)
                         and isinstance(a.dtype, numba.types.Float)})
        cached = ("later processes load them from Numba's disk cache, and "
                  "`python -m convtranspose compile` compiles them all ahead of time"
                  if _cache_ok else "without a disk cache every process compiles them")
        logger.warning(
            "convtranspose: compiling the CPU kernel %s for %s: seconds per kernel on first "
            "use, a minute or more for all that a script uses; %s. Silence this with "
            "logging.getLogger('convtranspose').setLevel(logging.ERROR)",
            dispatcher.py_func.__name__, "/".join(dtypes) or "these arguments", cached)

    def on_end(self, ev):
        pass


event.register("numba:compile", _CompileNotice())


def disk_cache():
    """Whether the kernels compiled so far are cached on disk."""
    return _cache_ok


def njit(notice=True, **options):
    """``numba.njit(**options)``, dropping ``cache=True`` where Numba cannot cache.

    ``notice=False`` leaves the function out of the compile notice (planning helpers of
    integers, which compile before the kernel the notice should name).

    Examples
    --------
    >>> from convtranspose._jit import njit
    >>> @njit(fastmath={"contract"})     # a kernel in a module file would add cache=True
    ... def add(a, b):
    ...     return a + b
    >>> add(1, 2)
    3
    """
    def decorate(func):
        global _cache_ok
        if options.get("cache") and _cache_ok:
            try:
                kernel = numba.njit(**options)(func)
                if notice:
                    _kernels.add(kernel)
                return kernel
            except RuntimeError as exc:
                if "cannot cache" not in str(exc):
                    raise
                _cache_ok = False
                warnings.warn(
                    "convtranspose: no writable location for Numba's disk cache "
                    f"({exc}); kernels are compiled in every process. Set NUMBA_CACHE_DIR "
                    "to a writable directory to cache them.", RuntimeWarning, stacklevel=3)
        kernel = numba.njit(**{k: v for k, v in options.items() if k != "cache"})(func)
        if options.get("cache") and notice:
            _kernels.add(kernel)
        return kernel
    return decorate
