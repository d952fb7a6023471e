"""Speed, memory and throughput of ``conv_transpose2d`` on the benchmark suite.

Every class is parametrised over the suite shapes of :mod:`convtranspose.suite`, the
backends and (for timings) the dtypes; the ``RanksLayouts`` classes over the 1-D, 3-D
and channels-last layers (``suite.RANKS_LAYOUTS``). ``setup()`` builds the problem and runs it once, so
Numba's compilation is never timed (first-call cost has its own benchmark in
``bench_compile``).
"""
import numpy as np

from .common import (BACKENDS, CPU_BACKENDS, DTYPES, RANKS_LAYOUTS, SHAPES, BoundedSampling,
                     bench_helpers, problem, ratio_to_torch)


class TimeConvTranspose(BoundedSampling):
    """Wall time of one call, per suite shape, backend and dtype.

    Sampling is bounded (one round, at most 5 samples or 2 s per combination) so that the
    whole grid stays within minutes on a 2-core machine; warm-up happens in ``setup()``.
    """

    params = (SHAPES, BACKENDS, DTYPES)
    param_names = ["shape", "backend", "dtype"]

    def setup(self, name, backend, dtype):
        _, self.call = problem(name, backend, dtype)
        self.call()   # warm-up: compiles (or loads from cache) and touches the buffers

    def time_forward(self, name, backend, dtype):
        self.call()


class TimeOtherDtypes(BoundedSampling):
    """Wall time of one ``auto`` call in half precision and complex64, per suite shape
    (beside ``TimeConvTranspose``'s float32 times); skipped at commits that refuse the
    dtype."""

    params = (SHAPES, ["auto"], ["float16", "complex64"])
    param_names = ["shape", "backend", "dtype"]

    def setup(self, name, backend, dtype):
        try:
            _, self.call = problem(name, backend, dtype)
            self.call()
        except TypeError as exc:         # a commit before the dtype was taken
            raise NotImplementedError(str(exc)) from None

    def time_forward(self, name, backend, dtype):
        self.call()


class PeakMemConvTranspose:
    """Peak memory of a call, beside an empty reference with the same setup.

    ``setup()`` warms the kernels up on a one-image batch so that compilation is in the
    reference too; ``peakmem_forward - peakmem_reference`` is then the output, the
    ``im2col`` workspace and any copies the call makes.
    """

    params = (SHAPES, CPU_BACKENDS, ["float32"])
    param_names = ["shape", "backend", "dtype"]
    timeout = 120

    def setup(self, name, backend, dtype):
        _, warm = problem(name, backend, dtype, batch=1)
        warm()
        _, self.call = problem(name, backend, dtype)

    def peakmem_forward(self, name, backend, dtype):
        self.call()

    def peakmem_reference(self, name, backend, dtype):
        pass


class TrackThroughput:
    """GFLOP/s (``Shape.flops`` over the median time) and the time ratio to PyTorch.

    Tracked for what a caller gets by default (``auto``, and ``cuda`` where it runs); the
    per-backend times are in :class:`TimeConvTranspose`.

    ``track_ratio_torch`` is this backend's time over PyTorch's CPU ``conv_transpose2d``
    measured in the same process (below 1: faster than PyTorch); it is skipped where torch
    is not importable. The medians come from ``convtranspose.tools.bench.median_time``.
    """

    params = (SHAPES, ["auto", "cuda"], ["float32"])
    param_names = ["shape", "backend", "dtype"]
    timeout = 180
    repeat = 3

    def setup(self, name, backend, dtype):
        self.bench = bench_helpers()
        self.shape, self.call = problem(name, backend, dtype)
        self.call()

    def _median(self, fn):
        return self.bench.median_time(fn, repeat=self.repeat, warmup=0, min_seconds=0.02)

    def track_gflops(self, name, backend, dtype):
        return self.shape.flops / self._median(self.call) / 1e9

    track_gflops.unit = "GFLOP/s"

    def track_ratio_torch(self, name, backend, dtype):
        if backend == "cuda":
            raise NotImplementedError("the PyTorch ratio is measured on the CPU only")
        x, w, b = self.shape.arrays(np.dtype(dtype))
        return ratio_to_torch(self._median, self.call,
                              self.bench.torch_runner(x, w, b, self.shape.kwargs()))

    track_ratio_torch.unit = "time / torch"


class TimeRanksLayouts(BoundedSampling):
    """Wall time of one call of ``conv_transpose{1,2,3}d`` on the layers of the other ranks
    and of the channels-last layouts, per CPU backend (float32)."""

    params = (RANKS_LAYOUTS, ["direct", "im2col", "auto"], ["float32"])
    param_names = ["shape", "backend", "dtype"]

    def setup(self, name, backend, dtype):
        _, self.call = problem(name, backend, dtype)
        self.call()

    def time_forward(self, name, backend, dtype):
        self.call()


class TrackRanksLayouts(TrackThroughput):
    """GFLOP/s and the time ratio to PyTorch's ``conv_transpose{1,2,3}d`` (channels-last
    layers against PyTorch's channels_last memory format) for ``auto``."""

    params = (RANKS_LAYOUTS, ["auto"], ["float32"])

    def track_ratio_torch(self, name, backend, dtype):
        x, w, b = self.shape.arrays(np.dtype(dtype))
        try:
            runner = self.bench.torch_runner(x, w, b, self.shape.kwargs(), self.shape.rank,
                                             self.shape.channels_last)
        except TypeError:
            raise NotImplementedError("this commit's torch_runner is 2-D only") from None
        return ratio_to_torch(self._median, self.call, runner)

    track_ratio_torch.unit = "time / torch"
