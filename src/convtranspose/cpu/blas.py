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

import os
import threading
from contextlib import contextmanager

__all__ = ["blas_info", "cpu_has_avx512", "single_threaded_blas"]

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

_lock = threading.Lock()
_users = 0          # calls inside single_threaded_blas() now, over all Python threads
_saved = []         # thread counts to restore when the last one leaves
_controllers = None


def _numba_blas():
    """threadpoolctl controllers of the BLAS behind ``scipy.linalg.cython_blas``.

    Numba's ``np.dot`` calls SciPy's BLAS, which in the PyPI wheels is a library of its
    own (NumPy has another); where both share one library (e.g. conda), that one.
    """
    global _controllers
    if _controllers is None:
        try:
            import scipy
            import scipy.linalg.cython_blas  # noqa: F401  (loads the library)
            from threadpoolctl import ThreadpoolController
            blas = ThreadpoolController().select(user_api="blas").lib_controllers
        except Exception:   # no threadpoolctl, or it cannot read this platform: run as is
            blas = []
        root = os.path.dirname(os.path.abspath(scipy.__file__)) if blas else ""
        own = [c for c in blas if os.path.abspath(c.filepath).startswith(root)]
        _controllers = own or (blas if len(blas) == 1 else [])
    return _controllers


@contextmanager
def single_threaded_blas():
    """Run the block with one thread in the BLAS that Numba's ``np.dot`` calls.

    The parallel phase kernel calls BLAS from each of its own threads; a multithreaded
    BLAS there would oversubscribe the cores. The previous thread counts come back when
    the last concurrent user leaves; other code calling SciPy's BLAS in the meantime
    runs on one thread too (a matter of speed, never of results).

    Examples
    --------
    >>> from convtranspose.cpu.blas import single_threaded_blas
    >>> with single_threaded_blas():
    ...     pass
    """
    global _users, _saved
    libs = _numba_blas()
    with _lock:
        if _users == 0:
            _saved = [c.num_threads for c in libs]
            for c in libs:
                c.set_num_threads(1)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                for c, n in zip(libs, _saved):
                    c.set_num_threads(n)
