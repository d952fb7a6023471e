"""multiprocessing pools with every start method, including fork after a parallel run."""
from __future__ import annotations

import multiprocessing as mp
import os
import subprocess
import sys
import textwrap
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


_FORK_DURING_COMPUTATION = textwrap.dedent("""
    import multiprocessing as mp, os, sys, threading, time
    import numpy as np
    import convtranspose as ct
    from convtranspose import _threading
    from convtranspose.reference import conv_transpose2d_reference as ref
    from convtranspose.testing import relative_error, TOLERANCE
    CHILDREN, POOLS, WAIT = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    rng = np.random.default_rng(0)
    big = rng.standard_normal((8, 64, 24, 24)), rng.standard_normal((64, 32, 4, 4))
    small = rng.standard_normal((2, 6, 7, 5)), rng.standard_normal((6, 4, 3, 3))
    expected = ref(*small, stride=2, padding=1)

    def child_work(_=None):
        y = ct.conv_transpose2d(*small, stride=2, padding=1, backend="im2col")
        return relative_error(y, expected) <= TOLERANCE[y.dtype]

    # warm up the parent: the parallel kernels, and the serial builds that children forked
    # after GNU OpenMP ran use (so that children do not spend seconds compiling)
    first = ct.conv_transpose2d(*big, stride=2, padding=1, backend="im2col")
    _threading._forked_serial = True
    child_work()
    _threading._forked_serial = False
    stop, wrong, calls = threading.Event(), [], [0]

    def busy():     # GEMMs in the kernels' threads, all the time
        while not stop.is_set():
            y = ct.conv_transpose2d(*big, stride=2, padding=1, backend="im2col")
            calls[0] += 1
            if not np.array_equal(y, first):
                wrong.append(1)

    th = threading.Thread(target=busy)
    th.start()
    time.sleep(0.2)
    ok = hung = bad = 0
    for i in range(CHILDREN):
        time.sleep(0.01 * (i % 5))             # land at different points of the loop
        pid = os.fork()
        if pid == 0:
            os._exit(0 if child_work() else 1)
        deadline = time.monotonic() + WAIT
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                ok += os.waitstatus_to_exitcode(status) == 0
                bad += os.waitstatus_to_exitcode(status) != 0
                break
            if time.monotonic() > deadline:
                hung += 1
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                break
            time.sleep(0.01)
    pool_ok = pool_hung = 0
    for i in range(POOLS):
        pool = mp.get_context("fork").Pool(2)
        try:
            pool_ok += all(pool.map_async(child_work, range(4)).get(timeout=WAIT))
        except mp.TimeoutError:
            pool_hung += 1
        finally:
            pool.terminate()
            pool.join()
    stop.set()
    th.join()
    print(ok, hung, bad, pool_ok, pool_hung, len(wrong), calls[0] > 0)
""")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_another_thread_computes():
    """Children forked (os.fork, a fork Pool) while another thread runs im2col's GEMMs
    finish and compute correctly: the fork waits until no kernel is running."""
    children, pools = 8, 3
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(ct.__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", _FORK_DURING_COMPUTATION, str(children),
                           str(pools), "60"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ok, hung, bad, pool_ok, pool_hung, wrong, busy = proc.stdout.split()
    assert (hung, bad, pool_hung, wrong, busy) == ("0", "0", "0", "0", "True"), proc.stdout
    assert (int(ok), int(pool_ok)) == (children, pools), proc.stdout
