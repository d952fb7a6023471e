"""One thread pool: a layer right after a user's ``np.matmul`` or the library's own 1x1
layer gives the bits it gives alone; the library starts no BLAS pool, shuts down a
spinning one only when no other Python thread exists, and never changes the user's BLAS
thread counts. Each scenario runs in a fresh interpreter (one Python thread); no timing
is asserted."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORK = Path(__file__).with_name("_blaspool_work.py")


#: Thread-count variables that the scenarios must not inherit: Dask's distributed sets
#: them to 1 in the test process's own environment when a test imports it.
_CLEARED = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def run(scenario, **env):
    inherited = {k: v for k, v in os.environ.items() if k not in _CLEARED}
    proc = subprocess.run([sys.executable, str(WORK), scenario], capture_output=True,
                          text=True, timeout=600, env={**inherited, **env})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def sequential():
    return run("sequential")


def test_layer_after_matmul_is_unchanged(sequential):
    assert sequential["same_after_matmul"] and sequential["same_after_1x1"]
    assert sequential["threads_unchanged"]


def test_spinning_pool_is_shut_down_and_restarts(sequential):
    if not sequential["found"]:
        pytest.skip("no OpenBLAS with its own threads here")
    assert any(sequential["up_after_matmul"])
    assert sequential["shutdowns"] == 1
    assert not any(sequential["up_after_layer"])
    assert any(sequential["up_after_next_matmul"])


def test_own_1x1_layer_starts_no_pool(sequential):
    if not sequential["found"]:
        pytest.skip("no OpenBLAS with its own threads here")
    assert not any(sequential["up_after_1x1"])
    assert sequential["err_1x1"] < 1e-5


def test_no_shutdown_while_another_thread_runs_blas():
    out = run("threads")
    assert out["same"] and out["threads_unchanged"] and out["user_calls"] >= 2
    assert out["shutdowns"] == 0
    if out["found"]:
        assert out["skipped"] > 0


def test_environment_variable_turns_it_off():
    out = run("sequential", CONVTRANSPOSE_BLAS_SHUTDOWN="0")
    assert not out["enabled"] and out["shutdowns"] == 0
    assert out["same_after_matmul"] and out["threads_unchanged"]
    if out["found"]:
        assert any(out["up_after_layer"])


@pytest.mark.parametrize("setting", ["1", "always"])
def test_idle_second_thread(setting):
    """Beside another Python thread the pool stays up, unless the user said ``always``."""
    out = run("idle_thread", CONVTRANSPOSE_BLAS_SHUTDOWN=setting)
    assert out["same"] and out["threads_unchanged"]
    if not out["found"]:
        pytest.skip("no OpenBLAS with its own threads here")
    if setting == "always":
        assert out["shutdowns"] == 1 and not any(out["up_after_layer"])
    else:
        assert out["shutdowns"] == 0 and out["skipped"] >= 1 and any(out["up_after_layer"])
