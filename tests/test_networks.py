"""The whole networks of ``suite.NETWORKS`` against PyTorch, and ``bench --networks``.

Sizes are cut (batch 2 where the network has a batch to cut); no timing is asserted.
"""
import dataclasses
import json

import numpy as np
import pytest

from convtranspose.suite import NETWORKS, get_network, torch_outputs

torch = pytest.importorskip("torch")

#: float32 results against PyTorch's float32: max |diff| / max |torch|; a wrong layer,
#: weight or activation gives errors of order one
TOL = 1e-4


def _small(net):
    return dataclasses.replace(net, batch=min(net.batch, 2))


@pytest.mark.parametrize("name", [n.name for n in NETWORKS])
def test_network_matches_torch(name):
    net = _small(get_network(name))
    ours = net.runner(np.float32)()
    theirs = torch_outputs(net.torch_runner(np.float32)())
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape and a.dtype == np.float32
        assert np.max(np.abs(a - b)) <= TOL * np.max(np.abs(b))
        assert np.max(np.abs(b)) > 0


def test_network_errors_are_seen():
    """The comparison fails on a network whose weights differ from PyTorch's."""
    from convtranspose.tools.bench_networks import max_error
    net = _small(get_network("vae_dec"))
    theirs = torch_outputs(net.torch_runner(np.float32)())
    assert max_error(net.runner(np.float32)(), theirs) < TOL
    assert max_error(net.runner(np.float32, seed=1)(), theirs) > 100 * TOL


def test_unknown_network():
    with pytest.raises(KeyError, match="no network 'nope'"):
        get_network("nope")


def test_bench_networks_cli(tmp_path, capsys, monkeypatch):
    import convtranspose.tools.bench_networks as bn
    from convtranspose.tools.cli import main
    monkeypatch.setattr(bn, "NETWORKS", (_small(get_network("vae_dec")),))
    path = tmp_path / "net.json"
    assert main(["bench", "--networks", "--repeat", "1", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "vae_dec" in out and "load average before" in out and "geomean" in out
    report = json.loads(path.read_text())
    assert report["meta"]["gemm_gflops"] > 0 and len(report["meta"]["load_before"]) == 3
    rows = {r["backend"]: r for r in report["results"]}
    assert set(rows) == {"torch", "auto"}
    assert rows["auto"]["median_s"] > 0 and rows["auto"]["max_error"] < TOL
