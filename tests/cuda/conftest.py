"""The CUDA tests: their own pytest process.

* Under the simulator (``NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/cuda``) or on a
  real GPU every test runs; under the simulator the launch shapes are patched tiny
  (a simulated thread costs ~120 us, a barrier ~8 ms).
* Without either, only the tests that need no device run (``NEEDS_NO_DEVICE``): the PTX
  test (compiles for compute capability 9.0 with the CUDA toolkit), the lazy-import and
  no-GPU tests, and the benchmark helpers on the CPU. The PTX test skips itself under the simulator, whose ``compile_ptx`` is a stub.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
NEEDS_NO_DEVICE = {"test_ptx.py", "test_lazy_import.py", "test_bench.py"}


def _device_available():
    if SIMULATOR:
        return True
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except ImportError:
        return False


DEVICE = _device_available()


def pytest_collection_modifyitems(config, items):
    if DEVICE:
        return
    skip = pytest.mark.skip(reason="no CUDA GPU; run with NUMBA_ENABLE_CUDASIM=1 for the simulator")
    here = os.path.dirname(__file__)
    for item in items:
        path = str(item.path)
        if path.startswith(here) and os.path.basename(path) not in NEEDS_NO_DEVICE:
            item.add_marker(skip)


# Tiny launch shapes for the simulator; the real GPU keeps the defaults but also runs the
# tiny shapes in test_kernels.py's launch-shape test.
TINY = dict(GATHER_THREADS=4, GATHER_MAX_GRID=(1, 2, 2), TILE_CO=2, TILE_P=4, TILE_K=2, REG_CO=1,
            REG_P=2, TILED_MAX_BLOCKS=2)
#: ... and of the backward kernels (convtranspose.cuda.backward).
TINY_BACKWARD = dict(CORRELATE_THREADS=4, CORRELATE_MAX_BLOCKS=2, REDUCE_THREADS=4,
                     REDUCE_MAX_BLOCKS=2)


#: ... and of the 3-D copies (convtranspose.cuda.rank3).
TINY_RANK3 = dict(_THREADS=4, _MAX_BLOCKS=2)


@pytest.fixture(autouse=True)
def _launch_shapes(request, monkeypatch):
    """Patch the launch-shape constants small under the simulator."""
    if SIMULATOR and os.path.basename(str(request.path)) not in NEEDS_NO_DEVICE:
        from convtranspose.cuda import backward, kernels, rank3
        for module, tiny in ((kernels, TINY), (backward, TINY_BACKWARD), (rank3, TINY_RANK3)):
            for name, value in tiny.items():
                monkeypatch.setattr(module, name, value)
    yield


@pytest.fixture(scope="session", autouse=True)
def _fast_thread_switching():
    """The simulator runs one Python thread per CUDA thread; barriers wait on switches."""
    old = sys.getswitchinterval()
    if SIMULATOR:
        sys.setswitchinterval(5e-4)
    yield
    sys.setswitchinterval(old)


@pytest.fixture(scope="session", autouse=True)
def _thread_safe_shared_arrays():
    """Numba's simulator hands each ``cuda.shared.array`` call site one array per block
    through an unlocked check-then-set (``FakeCUDAShared.array``): two of a block's
    threads that reach it at once can get different arrays, and a reduction over
    "shared" memory then sums only some of the block's partials (seen once in CI: a
    bias gradient off in the elements of a block that handled two). Real GPUs have no
    such race; under the simulator the call is serialised here."""
    if not SIMULATOR:
        yield
        return
    import threading
    from numba.core import types
    from numba.cuda.simulator import kernelapi
    from numba.np import numpy_support
    original = kernelapi.FakeCUDAShared.array
    lock = threading.Lock()

    def array(self, shape, dtype):
        if shape == 0:                       # dynamic shared memory: one buffer, no race
            return original(self, shape, dtype)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        frame = sys._getframe(1)             # the call site, as the simulator keys it
        site = (frame.f_code.co_filename, frame.f_lineno)
        with lock:
            found = self._allocations.get(site)
            if found is None:
                found = self._allocations[site] = np.empty(shape, dtype)
        return found

    kernelapi.FakeCUDAShared.array = array
    yield
    kernelapi.FakeCUDAShared.array = original


@pytest.fixture(params=["gather", "tiled"])
def kernel(request, monkeypatch):
    """Force the size rule to pick one kernel."""
    from convtranspose.cuda import kernels
    monkeypatch.setattr(kernels, "TILED_MIN_CHANNELS", 1 if request.param == "tiled" else 10**9)
    return request.param
