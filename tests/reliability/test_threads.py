"""Python threads and Numba thread counts give results identical to serial calls."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numba
import numpy as np
import pytest

import convtranspose as ct
from convtranspose import _threading
from convtranspose.cpu import blas
from convtranspose.testing import random_problem

BACKENDS = ("direct", "im2col", "auto")
SRC = str(Path(ct.__file__).resolve().parents[1])


def _jobs(count, seed):
    """Mixed shapes, both dtypes, every backend: ``(x, w, b, kwargs, backend)``."""
    rng = np.random.default_rng(seed)
    jobs = []
    for i in range(count):
        p = random_problem(rng, max_channels=12, max_size=12)
        dtype = (np.float32, np.float64)[i % 2]
        x, w, b = p.arrays(dtype, seed=i)
        jobs.append((x, w, b, p.kwargs, BACKENDS[i % 3]))
    return jobs


def _run(job):
    x, w, b, kwargs, backend = job
    return ct.conv_transpose2d(x, w, b, backend=backend, **kwargs)


def test_eight_threads_match_serial():
    jobs = _jobs(48, seed=7)
    expected = [_run(j) for j in jobs]
    iterations = 3
    results = [[None] * len(jobs) for _ in range(8)]
    errors = []
    barrier = threading.Barrier(8)

    def worker(t):
        try:
            barrier.wait()
            for it in range(iterations):
                # every thread walks the jobs in its own order, so different shapes,
                # dtypes and backends overlap in time
                for k in range(len(jobs)):
                    i = (k * (t + 1) + it) % len(jobs)
                    y = _run(jobs[i])
                    if it == iterations - 1:
                        results[t][i] = y
                    elif not np.array_equal(y, expected[i], equal_nan=True):
                        raise AssertionError(f"thread {t} job {i} differs")
        except BaseException as exc:   # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert not any(th.is_alive() for th in threads), "a thread hung"
    assert not errors, errors
    for t in range(8):
        for i, y in enumerate(results[t]):
            if y is None:   # visited only in earlier iterations
                continue
            assert y.dtype == expected[i].dtype
            assert np.array_equal(y, expected[i]), (t, i)


def _bytes_on_1_and_2_threads(run):
    """The bytes of every array ``run()`` returns, with Numba on one thread, then on two
    (the caller restores the thread count)."""
    out = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        out.append([a.tobytes() for a in run()])
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_thread_count_does_not_change_bits(backend, dtype):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has a single thread")
    rng = np.random.default_rng(3)
    problems = [random_problem(rng, max_channels=16, max_size=16) for _ in range(12)]
    # plus one large enough that every thread gets many rows
    old = numba.get_num_threads()
    try:
        for i, p in enumerate(problems):
            x, w, b = p.arrays(dtype, seed=i)
            one, two = _bytes_on_1_and_2_threads(
                lambda: [ct.conv_transpose2d(x, w, b, backend=backend, **p.kwargs)])
            assert one == two, str(p)
        x = rng.standard_normal((4, 32, 20, 20)).astype(dtype)
        w = rng.standard_normal((32, 16, 4, 4)).astype(dtype)
        one, two = _bytes_on_1_and_2_threads(
            lambda: [ct.conv_transpose2d(x, w, stride=2, padding=1, backend=backend)])
        assert one == two
    finally:
        numba.set_num_threads(old)


def _backward_problems(rng, dtype):
    """Random problems, plus some that the im2col backward cuts into many tasks: many
    images, bands of one image, and (with a small workspace) several units per task."""
    out = []
    for i in range(8):
        p = random_problem(rng, max_channels=16, max_size=16)
        x, w, _ = p.arrays(dtype, seed=i)
        out.append((x, w, p.kwargs, None))
    for shape, limit in (((9, 16, 10, 10), None), ((1, 16, 40, 36), None),
                         ((5, 16, 12, 12), 20000), ((1, 16, 30, 30), 20000)):
        x = rng.standard_normal(shape).astype(dtype)
        w = rng.standard_normal((16, 8, 3, 4)).astype(dtype)
        out.append((x, w, dict(stride=2, padding=1, dilation=(1, 2)), limit))
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_thread_count_does_not_change_backward_bits(backend, dtype):
    """Gradients of both convolutions, and conv2d's forward (the correlation kernels)."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("Numba has a single thread")
    rng = np.random.default_rng(5)
    old, old_limit = numba.get_num_threads(), ct.get_workspace_limit()
    try:
        for i, (x, w, kw, limit) in enumerate(_backward_problems(rng, dtype)):
            ct.set_workspace_limit(limit or old_limit)
            y = ct.conv_transpose2d(x, w, backend="direct", **kw)
            gy = rng.standard_normal(y.shape).astype(dtype)
            conv_kw = {k: v for k, v in kw.items()
                       if k in ("stride", "padding", "dilation", "groups")}
            def run():
                grads = ct.conv_transpose2d_backward(gy, x, w, backend=backend, **kw)
                fwd = ct.conv2d(y, w, backend=backend, **conv_kw)
                cgrads = ct.conv2d_backward(fwd, y, w, backend=backend, **conv_kw)
                return [*grads, fwd, *cgrads]
            one, two = _bytes_on_1_and_2_threads(run)
            assert one == two, (i, x.shape, w.shape, kw)
    finally:
        numba.set_num_threads(old)
        ct.set_workspace_limit(old_limit)


def test_layer_is_known_and_concurrent_safe_after_a_call():
    ct.conv_transpose2d(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)), backend="direct")
    layer = _threading.threading_layer()
    assert layer in ("omp", "tbb", "workqueue")
    assert _threading.serialised() == (layer == "workqueue")


_WORKQUEUE_SCRIPT = textwrap.dedent("""
    import threading
    import numpy as np
    import convtranspose as ct
    from convtranspose import _threading
    from convtranspose.reference import conv_transpose2d_reference as ref
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8, 24, 24))
    w = rng.standard_normal((8, 8, 3, 3))
    expected = ref(x, w, stride=2)
    bad = []
    def work():
        for _ in range(20):
            for backend in ("direct", "im2col"):
                y = ct.conv_transpose2d(x, w, stride=2, backend=backend)
                if not np.allclose(y, expected, rtol=1e-12, atol=1e-12):
                    bad.append(backend)
    threads = [threading.Thread(target=work) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    print(_threading.threading_layer(), _threading.serialised(), len(bad))
""")


@pytest.mark.slow
def test_workqueue_layer_is_serialised_not_aborted():
    """Forcing ``workqueue`` (which aborts on concurrent launches) is handled by the lock."""
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue",
               PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", _WORKQUEUE_SCRIPT], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["workqueue", "True", "0"], proc.stdout


def _scipy_blas_threads():
    """SciPy's BLAS thread counts as threadpoolctl reads them (independently of ``blas``)."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import scipy
    root = str(Path(scipy.__file__).resolve().parent)
    return [d["num_threads"] for d in threadpoolctl.threadpool_info()
            if d.get("user_api") == "blas" and str(Path(d["filepath"]).resolve()).startswith(root)]


def test_single_threaded_blas_holds_in_every_thread():
    """threadpoolctl sets OpenBLAS's threads only from its "controlling thread" (the first
    that set a limit, here the main thread); the limit must hold in any other thread too."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    pytest.importorskip("scipy.linalg.cython_blas")
    controllers = [c for c in threadpoolctl.ThreadpoolController().select(user_api="blas")
                   .lib_controllers if c.internal_api == "openblas"]
    if not _scipy_blas_threads() or not controllers:
        pytest.skip("SciPy's BLAS is not an OpenBLAS that threadpoolctl can read")
    before = [c.get_num_threads() for c in controllers]
    seen = []

    def worker():
        with blas.single_threaded_blas():
            seen.append(_scipy_blas_threads())
        seen.append(_scipy_blas_threads())

    try:
        for c in controllers:
            c.set_num_threads(2)     # the main thread becomes threadpoolctl's controlling one
        th = threading.Thread(target=worker)
        th.start()
        th.join(timeout=60)
        assert seen[0] == [1] * len(seen[0]), seen     # one thread inside, in this thread too
        assert seen[1] == [2] * len(seen[1]), seen     # and the previous count afterwards
    finally:
        for c, n in zip(controllers, before):
            c.set_num_threads(n)
