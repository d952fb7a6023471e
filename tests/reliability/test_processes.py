"""multiprocessing pools with every start method, including fork after a parallel run."""
from __future__ import annotations

import multiprocessing as mp
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import convtranspose as ct
from convtranspose import _threading

sys.path.insert(0, str(Path(__file__).parent))
import _pool_work  # noqa: E402

JOBS = [(seed, backend, dtype) for seed in range(2) for backend in ("direct", "im2col", "auto")
        for dtype in (np.float32, np.float64)]
METHODS = [m for m in ("fork", "spawn", "forkserver") if m in mp.get_all_start_methods()]


def _pool_results(method):
    ctx = mp.get_context(method)
    env = os.environ.get("PYTHONPATH", "")
    src = str(Path(ct.__file__).resolve().parents[1])
    here = str(Path(__file__).parent)
    os.environ["PYTHONPATH"] = os.pathsep.join([src, here, env])   # for spawned children
    try:
        with ctx.Pool(2) as pool:
            return pool.map_async(_pool_work.conv_sum, JOBS).get(timeout=240)
    finally:
        os.environ["PYTHONPATH"] = env


@pytest.mark.parametrize("method", METHODS)
def test_pool_matches_parent(method):
    # the parent has already run parallel kernels (earlier tests and this line), so the
    # fork case is the "fork after a parallel kernel ran" case
    expected = [_pool_work.conv_sum(job)[0] for job in JOBS]
    assert _threading.threading_layer() is not None
    results = _pool_results(method)
    for (y, serial), e in zip(results, expected):
        assert y.dtype == e.dtype
        assert np.array_equal(y, e)
        if method != "fork":
            assert not serial     # fresh interpreters run in parallel
        elif _threading.threading_layer() == "omp":
            assert serial         # GNU OpenMP is not fork-safe: the serial build ran


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_bare_fork_after_parallel_kernel_and_grandchild():
    """os.fork twice (child, grandchild) after a parallel launch: correct, no abort."""
    x = np.random.default_rng(1).standard_normal((3, 5, 6, 6))
    w = np.random.default_rng(2).standard_normal((5, 2, 4, 4))
    expected = {b: ct.conv_transpose2d(x, w, stride=2, backend=b) for b in ("direct", "im2col")}
    r, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:   # pragma: no cover - child
        code, msg = 1, b"done"
        try:
            ok = all(np.array_equal(ct.conv_transpose2d(x, w, stride=2, backend=b), e)
                     for b, e in expected.items())
            gpid = os.fork()
            if gpid == 0:
                os._exit(0 if np.array_equal(
                    ct.conv_transpose2d(x, w, stride=2, backend="direct"), expected["direct"])
                    else 1)
            _, status = os.waitpid(gpid, 0)
            code = 0 if ok and os.waitstatus_to_exitcode(status) == 0 else 1
            msg = f"ok={ok} grandchild={os.waitstatus_to_exitcode(status)}".encode()
        except BaseException as exc:
            msg = repr(exc).encode()
        finally:
            os.write(wfd, msg)
            os._exit(code)
    os.close(wfd)
    _, status = os.waitpid(pid, 0)
    msg = os.read(r, 4096).decode()
    os.close(r)
    assert os.waitstatus_to_exitcode(status) == 0, msg
