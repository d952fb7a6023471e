"""Scale-out figures on Dask: ``python -m convtranspose bench --dask``.

Two jobs, each on a ``dask.distributed.LocalCluster`` of 1 and of 2 worker processes (one
task thread each, ``NUMBA_NUM_THREADS`` = cores / workers):

* ``image``: a single-channel ``size x size`` float32 image in ``tile x tile`` chunks,
  generated chunk by chunk in the workers from the pixel coordinates, upsampled
  (stride 2, kernel 4, padding 1) and written tile by tile into a ``.npy`` file on disk;
  the file is then compared with the NumPy call on the whole image, a band of rows at a
  time (skipped with ``verify=False``), and that call and an ``np.save`` of its result are
  timed for comparison.
* ``decoder``: the suite's ``dcgan_g3`` layer over a dataset of ``batch`` images chunked
  by 64 along the batch; compared with the NumPy call on the whole batch.

Reported per job and worker count: wall time, the NumPy call's time on the same data in
this process, and each worker's peak resident memory above its resident memory before the
job (Linux's ``VmHWM`` after resetting it with ``clear_refs``, after a warm-up that compiled
the kernels).
"""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np

__all__ = ["run_dask_bench", "format_dask_table", "image_block"]


def image_block(block, block_info=None):
    """One chunk of the benchmark image: a smooth pattern plus a hash of the pixel's
    coordinates, a function of the global position only (so any region can be rebuilt).
    Made in bands of rows, so that its temporaries stay small beside the chunk."""
    (r0, r1), (c0, c1) = block_info[None]["array-location"][-2:]
    out = np.empty((1, 1, r1 - r0, c1 - c0), np.float32)
    j = np.arange(c0, c1, dtype=np.uint32)[None, :]
    wave = np.cos(j * 0.0071).astype(np.float32)
    hj = j * np.uint32(19349663)
    for a in range(r0, r1, 256):
        i = np.arange(a, min(a + 256, r1), dtype=np.uint32)[:, None]
        noise = ((i * np.uint32(73856093)) ^ hj) % np.uint32(1009)
        band = out[0, 0, a - r0:a - r0 + len(i)]
        np.multiply(np.sin(i * 0.0123).astype(np.float32), wave, out=band)
        band += noise.astype(np.float32) / np.float32(1009) - np.float32(0.5)
    return out


def _image(size, tile):
    import dask.array as da
    shape, chunks = (1, 1, size, size), (1, 1, tile, tile)
    return da.map_blocks(image_block, da.empty(shape, chunks=chunks, dtype=np.float32),
                         dtype=np.float32)


def _write_tile(block, path, offset, block_info=None):
    """Write one output tile into the ``.npy`` file at ``path`` (data from byte ``offset``),
    row by row with ``os.pwrite`` (a memory map would count the file's pages in the worker's
    resident memory); return its pixel count."""
    (n0, _), (c0, _), (r0, r1), (q0, _) = block_info[0]["array-location"]
    _, _, h, w = block_info[0]["shape"]
    item = block.dtype.itemsize
    fd = os.open(path, os.O_WRONLY)
    try:
        for n in range(block.shape[0]):
            for c in range(block.shape[1]):
                for r in range(r1 - r0):
                    row = np.ascontiguousarray(block[n, c, r])
                    at = offset + ((((n0 + n) * block_info[0]["shape"][1] + c0 + c) * h
                                    + r0 + r) * w + q0) * item
                    os.pwrite(fd, row.tobytes(), at)
    finally:
        os.close(fd)
    return np.full((1,) * block.ndim, block.size, np.int64)


def _status(field):
    """A ``/proc/self/status`` field in bytes (``VmRSS``, ``VmHWM``)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak():
    """Reset this process's peak resident memory (Linux ``clear_refs`` 5); return the
    resident memory now."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    return _status("VmRSS")


def _peak():
    return _status("VmHWM")


def _warm():
    import convtranspose as ct
    x = np.ones((2, 4, 8, 8), np.float32)
    ct.conv_transpose2d(x, np.ones((4, 2, 4, 4), np.float32), stride=2, padding=1)
    for backend in ("direct", "im2col"):
        ct.conv_transpose2d(x, np.ones((4, 2, 4, 4), np.float32), stride=2, padding=1,
                            backend=backend)
    return True


def _on_cluster(workers, job, warm_up=None):
    """Run ``job(client)`` on a fresh LocalCluster, after ``warm_up(client)`` (untimed: the
    workers load the kernels the job needs); return (seconds, [peak MiB above the resident
    memory before the job, per worker], job's result)."""
    from distributed import Client, LocalCluster
    cores = os.cpu_count() or 1
    env = {"NUMBA_NUM_THREADS": str(max(1, cores // workers)), "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, env=env) as cluster, Client(cluster) as client:
        client.run(_warm)
        if warm_up is not None:
            warm_up(client)
        before = client.run(_reset_peak)
        t0 = time.perf_counter()
        result = job(client)
        seconds = time.perf_counter() - t0
        after = client.run(_peak)
    peaks = [(after[w] - before[w]) / 2**20 for w in sorted(after)]
    return seconds, peaks, result


def _image_job(size, tile, backend, verify, workers):
    import convtranspose as ct
    from convtranspose.cpu.workspace import get_workspace_limit
    kw = dict(stride=2, padding=1, backend=backend)
    w = np.array([[[[0.25, 0.75, 0.75, 0.25]]]], np.float32)
    w = w * w.transpose(0, 1, 3, 2)          # bilinear x2 upsampling kernel, 4 x 4
    with tempfile.TemporaryDirectory(dir=os.environ.get("CONVTRANSPOSE_BENCH_DIR")) as tmp:
        path = os.path.join(tmp, "upsampled.npy")
        x = _image(size, tile)
        y = ct.conv_transpose2d(x, w, **kw)
        target = np.lib.format.open_memmap(path, "w+", np.float32, y.shape)
        offset = target.offset
        del target
        written = y.map_blocks(_write_tile, path, offset, dtype=np.int64, chunks=(1,) * 4)

        def job(client):
            return int(client.compute(written.sum(), sync=True))

        seconds, peaks, pixels = _on_cluster(workers, job)
        assert pixels == y.size
        row = dict(job="image", workers=workers, shape=f"{size}x{size} tiles {tile}",
                   seconds=seconds, peak_mib=peaks, tasks=len(y.dask.layers[y.name]),
                   tile_mib=(tile * tile + 4 * tile * tile) * 4 / 2**20,
                   workspace_mib=get_workspace_limit() / 2**20)
        if verify:
            row.update(_verify_image(path, x, w, kw))
    return row


def _verify_image(path, x, w, kw):
    """Compare the file with the NumPy call on the whole image (timed), a band at a time."""
    import convtranspose as ct
    image = x.compute(scheduler="threads")
    t0 = time.perf_counter()
    expected = ct.conv_transpose2d(image, w, **kw)
    numpy_s = time.perf_counter() - t0
    del image
    t0 = time.perf_counter()
    np.save(path + ".numpy.npy", expected)
    save_s = time.perf_counter() - t0
    os.remove(path + ".numpy.npy")
    got = np.load(path, mmap_mode="r")
    band = 2048
    equal = all(np.array_equal(got[..., r:r + band, :], expected[..., r:r + band, :])
                for r in range(0, expected.shape[2], band))
    return dict(numpy_seconds=numpy_s, numpy_save_seconds=save_s, bitwise=equal)


def _decoder_job(batch, backend, workers):
    import dask.array as da

    import convtranspose as ct
    from convtranspose.suite import get
    s = get("dcgan_g3")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, s.c_in, s.h, s.w)).astype(np.float32)
    w = rng.standard_normal((s.c_in, s.c_out, s.k, s.k)).astype(np.float32) * 0.05
    b = rng.standard_normal(s.c_out).astype(np.float32)
    kw = dict(stride=s.stride, padding=s.padding, backend=backend)
    t0 = time.perf_counter()
    expected = ct.conv_transpose2d(x, w, b, **kw)
    numpy_s = time.perf_counter() - t0

    def job(client, data=x):
        xd = client.scatter(data)       # the dataset lives in the workers, not in the graph
        xd = da.from_delayed(xd, data.shape, dtype=data.dtype).rechunk((64, *data.shape[1:]))
        return client.compute(ct.conv_transpose2d(xd, w, b, **kw), sync=True)

    seconds, peaks, got = _on_cluster(workers, job, lambda client: job(client, x[:128]))
    close = np.max(np.abs(got - expected)) <= 1e-5 * np.max(np.abs(expected))
    return dict(job="decoder", workers=workers, shape=f"dcgan_g3 N={batch} chunks 64",
                seconds=seconds, numpy_seconds=numpy_s, peak_mib=peaks,
                bitwise=bool(np.array_equal(got, expected)), close=bool(close))


def run_dask_bench(size=16384, tile=2048, batch=1024, workers=(1, 2), backend="direct",
                   decoder_backend="auto", verify=True, jobs=("image", "decoder")):
    """Time the jobs of this module; return a list of result rows (dicts)."""
    rows = []
    for n in workers:
        if "image" in jobs:
            rows.append(_image_job(size, tile, backend, verify and n == workers[0], n))
        if "decoder" in jobs:
            rows.append(_decoder_job(batch, decoder_backend, n))
    return rows


def format_dask_table(rows):
    """The rows as a text table."""
    lines = [f"{'job':8} {'workers':>7} {'shape':34} {'seconds':>8} {'numpy s':>8} "
             f"{'peak MiB/worker':>18}  check"]
    for r in rows:
        numpy_s = f"{r['numpy_seconds']:.2f}" if "numpy_seconds" in r else "-"
        check = ("bitwise" if r.get("bitwise") else "close" if r.get("close") else
                 "-" if "bitwise" not in r else "MISMATCH")
        lines.append(f"{r['job']:8} {r['workers']:>7} {r['shape']:34} {r['seconds']:8.2f} "
                     f"{numpy_s:>8} {', '.join(f'{p:.0f}' for p in r['peak_mib']):>18}  "
                     f"{check}")
        if "numpy_save_seconds" in r:
            lines.append(f"{'':8} NumPy call and np.save of its result: "
                         f"{r['numpy_seconds'] + r['numpy_save_seconds']:.2f} s")
        if r["job"] == "image":
            lines.append(f"{'':8} tile input+output {r['tile_mib']:.0f} MiB, workspace limit "
                         f"{r['workspace_mib']:.0f} MiB: bound 4 x {r['tile_mib']:.0f} + "
                         f"{r['workspace_mib']:.0f} = "
                         f"{4 * r['tile_mib'] + r['workspace_mib']:.0f} MiB; "
                         f"{r['tasks']} tasks")
    return "\n".join(lines)
