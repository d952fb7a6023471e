"""``njit`` for the package's kernels: Numba's, with a disk cache where one can be written.

Every CPU kernel is compiled with ``cache=True`` so that a new process loads it instead of
compiling it again (seconds per dtype). Numba refuses to *define* such a function when no
cache location is writable (a read-only install with an unwritable home directory, as in
many containers): ``RuntimeError: cannot cache function ...`` at import. Here that case
falls back to compiling without a disk cache, with one :class:`RuntimeWarning` that says
how to get the cache back (``NUMBA_CACHE_DIR``).
"""
from __future__ import annotations

import warnings

import numba

__all__ = ["njit", "disk_cache"]

_cache_ok = True     # False once a kernel could not get a cache location


def disk_cache():
    """Whether the kernels compiled so far are cached on disk."""
    return _cache_ok


def njit(**options):
    """``numba.njit(**options)``, dropping ``cache=True`` where Numba cannot cache.

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
                return numba.njit(**options)(func)
            except RuntimeError as exc:
                if "cannot cache" not in str(exc):
                    raise
                _cache_ok = False
                warnings.warn(
                    "convtranspose: no writable location for Numba's disk cache "
                    f"({exc}); kernels are compiled in every process. Set NUMBA_CACHE_DIR "
                    "to a writable directory to cache them.", RuntimeWarning, stacklevel=3)
        return numba.njit(**{k: v for k, v in options.items() if k != "cache"})(func)
    return decorate
