"""First-call time: Numba compiling the kernels (cold) or loading them from its cache (warm).

Each measurement runs in a fresh Python process whose ``NUMBA_CACHE_DIR`` is a new temporary
directory: empty for the cold case; filled by one earlier process for the warm case. Only the
first ``conv_transpose2d`` call is timed, not the imports.
"""
import os
import shutil
import subprocess
import sys
import tempfile

from .common import CPU_BACKENDS, require_backend

_CHILD = """
import sys, time
import numpy as np
import convtranspose as ct
backend, dtype = sys.argv[1], sys.argv[2]
x = np.ones((1, 2, 3, 3), dtype)
w = np.ones((2, 2, 3, 3), dtype)
t0 = time.perf_counter()
ct.conv_transpose2d(x, w, stride=2, padding=1, backend=backend)
print(time.perf_counter() - t0)
"""


def first_call_seconds(backend, dtype, cache_dir):
    """Seconds of the first call in a new interpreter using ``cache_dir`` as Numba's cache."""
    import convtranspose
    # the child imports the very package this process benchmarks
    where = os.path.dirname(os.path.dirname(os.path.abspath(convtranspose.__file__)))
    path = os.pathsep.join(p for p in (where, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=path)
    done = subprocess.run([sys.executable, "-c", _CHILD, backend, dtype], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"first-call child failed:\n{done.stderr}")
    return float(done.stdout.split()[-1])


class TrackFirstCall:
    """Seconds of the first call of a backend in a new process, cold and warm cache."""

    params = (CPU_BACKENDS, ["float32"])
    param_names = ["backend", "dtype"]
    timeout = 180
    unit = "seconds"

    def setup(self, backend, dtype):
        require_backend(backend)
        self.tmp = tempfile.mkdtemp(prefix="asv-numba-cache-")
        self.warm_dir = os.path.join(self.tmp, "warm")
        first_call_seconds(backend, dtype, self.warm_dir)   # fills the warm cache

    def teardown(self, backend, dtype):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def track_compile_cold(self, backend, dtype):
        cold = tempfile.mkdtemp(dir=self.tmp)
        return first_call_seconds(backend, dtype, cold)

    track_compile_cold.unit = "seconds"

    def track_compile_warm(self, backend, dtype):
        return first_call_seconds(backend, dtype, self.warm_dir)

    track_compile_warm.unit = "seconds"
