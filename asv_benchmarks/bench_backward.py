"""Speed of ``conv_transpose2d_backward`` (input, weight and bias gradients) on the suite.

The backward counterpart of :mod:`bench_conv` (and of ``python -m convtranspose bench
--backward``): parametrised over the suite shapes of :mod:`convtranspose.suite`, the host
backends and the dtypes; ``setup()`` runs the backward once, so compilation is never timed.
Commits without ``conv_transpose2d_backward(..., backend=)`` skip (``NotImplementedError``).
"""
from .common import (CPU_BACKENDS, DTYPES, SHAPES, BoundedSampling, backward_problem,
                     bench_helpers, ratio_to_torch)


class TimeBackward(BoundedSampling):
    """Wall time of one backward call (all three gradients), per suite shape, host backend
    and dtype; sampling bounded as in ``bench_conv.TimeConvTranspose``."""

    params = (SHAPES, CPU_BACKENDS, DTYPES)
    param_names = ["shape", "backend", "dtype"]
    timeout = 180

    def setup(self, name, backend, dtype):
        _, self.call, _ = backward_problem(name, backend, dtype)
        self.call()   # warm-up: compiles (or loads from cache)

    def time_backward(self, name, backend, dtype):
        self.call()


class TrackBackward:
    """GFLOP/s of the backward (the input and weight gradients count ``2 * Shape.flops``,
    as in ``convtranspose.tools.bench_backward``) and its time over PyTorch autograd's backward of
    ``conv_transpose2d`` on the CPU (below 1: faster); the ratio skips without torch."""

    params = (SHAPES, ["auto"], ["float32"])
    param_names = ["shape", "backend", "dtype"]
    timeout = 240
    repeat = 3

    def setup(self, name, backend, dtype):
        self.bench = bench_helpers()
        self.shape, self.call, self.operands = backward_problem(name, backend, dtype)
        self.call()

    def _median(self, fn):
        return self.bench.median_time(fn, repeat=self.repeat, warmup=0, min_seconds=0.02)

    def track_backward_gflops(self, name, backend, dtype):
        return 2 * self.shape.flops / self._median(self.call) / 1e9

    track_backward_gflops.unit = "GFLOP/s"

    def track_backward_ratio_torch(self, name, backend, dtype):
        try:
            from convtranspose.tools.bench_backward import torch_backward_runner
        except ImportError:
            try:
                from convtranspose.bench_backward import torch_backward_runner
            except ImportError:
                raise NotImplementedError("convtranspose.bench_backward does not exist at "
                                          "this commit") from None
        return ratio_to_torch(self._median, self.call, torch_backward_runner(*self.operands))

    track_backward_ratio_torch.unit = "time / torch"
