"""Work for the BLAS-pool tests, run in a fresh interpreter (one Python thread to start
with): ``python _blaspool_work.py SCENARIO`` prints one JSON object."""
from __future__ import annotations

import json
import sys
import threading

import numpy as np
from threadpoolctl import threadpool_info

import convtranspose as ct
from convtranspose import _blaspool


def blas_threads():
    return sorted((d["filepath"], d["num_threads"]) for d in threadpool_info()
                  if d["user_api"] == "blas")


def pools_up():
    """Whether each OpenBLAS pool of NumPy and SciPy is up (its workers exist)."""
    return [bool(avail.value) for _, avail, _ in _blaspool._find_pools()]


def main(scenario):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((512, 512)).astype(np.float32)
    # big enough for the parallel kernels (above direct's serial threshold)
    x = rng.standard_normal((4, 32, 12, 12)).astype(np.float32)
    w = rng.standard_normal((32, 16, 4, 4)).astype(np.float32)
    z = rng.standard_normal((64, 100, 1, 1)).astype(np.float32)     # DCGAN's first layer
    w1 = rng.standard_normal((100, 64, 4, 4)).astype(np.float32)

    def layer():
        return ct.conv_transpose2d(x, w, stride=2, padding=1, backend="direct")

    alone = layer()
    before = blas_threads()
    out = dict(found=len(_blaspool._find_pools()), enabled=_blaspool.enabled())
    if scenario == "sequential":
        np.matmul(a, a)
        out["up_after_matmul"] = pools_up()
        c0 = _blaspool.counts()
        after_matmul = layer()
        out["shutdowns"] = _blaspool.counts()["shutdowns"] - c0["shutdowns"]
        out["up_after_layer"] = pools_up()
        np.matmul(a, a)                    # the user's next call restarts the workers
        out["up_after_next_matmul"] = pools_up()
        layer()
        # the library's own 1x1 layer (im2col's dense path) starts no BLAS pool
        ones, out["up_after_1x1"] = [], []
        for b in ("auto", "im2col", "direct"):
            ones.append(ct.conv_transpose2d(z, w1, backend=b))
            out["up_after_1x1"] += pools_up()
        after_1x1 = layer()
        out["same_after_matmul"] = bool(np.array_equal(after_matmul, alone))
        out["same_after_1x1"] = bool(np.array_equal(after_1x1, alone))
        from convtranspose import reference
        ref = reference.conv_transpose2d_scatter(z.astype(np.float64), w1.astype(np.float64))
        out["err_1x1"] = max(float(np.max(np.abs(o - ref)) / np.max(np.abs(ref)))
                             for o in ones)
    elif scenario == "threads":
        stop = threading.Event()
        calls = [0]

        def user():
            while not stop.is_set():
                np.matmul(a, a)
                calls[0] += 1
        t = threading.Thread(target=user)
        t.start()
        try:
            while calls[0] < 2:
                pass
            c0 = _blaspool.counts()
            results = [layer() for _ in range(20)]
            c1 = _blaspool.counts()
        finally:
            stop.set()
            t.join()
        out["user_calls"] = calls[0]
        out["shutdowns"] = c1["shutdowns"] - c0["shutdowns"]
        out["skipped"] = c1["skipped"] - c0["skipped"]
        out["same"] = all(np.array_equal(r, alone) for r in results)
    elif scenario == "idle_thread":     # another Python thread exists but runs no BLAS
        stop = threading.Event()
        t = threading.Thread(target=stop.wait)
        t.start()
        try:
            c0 = _blaspool.counts()
            np.matmul(a, a)
            result = layer()
            c1 = _blaspool.counts()
            out["up_after_layer"] = pools_up()
        finally:
            stop.set()
            t.join()
        out["shutdowns"] = c1["shutdowns"] - c0["shutdowns"]
        out["skipped"] = c1["skipped"] - c0["skipped"]
        out["same"] = bool(np.array_equal(result, alone))
    out["threads_unchanged"] = blas_threads() == before
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
