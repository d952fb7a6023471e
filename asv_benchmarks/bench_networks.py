"""Whole networks (``suite.NETWORKS``): the library's functions with NumPy between the
layers, timed per call of the whole network (ours alone; ``bench --networks`` compares
with PyTorch in one run).

A network's time includes what per-layer benchmarks hide: a layer that starts right after
a BLAS call of NumPy's or of the library's own. ``setup()`` runs the network once, so
compilation is never timed. Commits without ``suite.NETWORKS`` skip (``NotImplementedError``).
"""
import numpy as np

from .common import BoundedSampling, require_backend

try:
    from convtranspose.suite import NETWORKS as _NETWORKS
except ImportError:     # a commit before the networks
    _NETWORKS = ()

#: every network, by name (asv parameters must be plain values)
NETWORK_NAMES = [n.name for n in _NETWORKS]


def network(name):
    """The network ``name`` of the installed commit."""
    for net in _NETWORKS:
        if net.name == name:
            return net
    raise NotImplementedError(f"network {name!r} is not in this commit's suite")


class TimeNetwork(BoundedSampling):
    """Wall time of one call of a whole network, per network, backend and dtype."""

    params = (NETWORK_NAMES, ["auto", "direct"], ["float32", "float64"])
    param_names = ["network", "backend", "dtype"]

    def setup(self, name, backend, dtype):
        require_backend(backend)
        self.call = network(name).runner(np.dtype(dtype), backend)
        self.call()   # warm-up: compiles (or loads from cache) and touches the buffers

    def time_network(self, name, backend, dtype):
        self.call()
