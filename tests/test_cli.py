"""The command line: info, check and bench run and report."""
import json
import subprocess
import sys

import pytest

from convtranspose.cli import main


def test_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for key in ("numba threading layer", "numba threads", "backends", "GPU", "numpy"):
        assert key in out


def test_check_passes(capsys):
    assert main(["check", "--count", "20", "--no-suite"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and out.count("PASS") == 6


def test_check_fails_on_a_wrong_backend(monkeypatch, capsys):
    import convtranspose.dispatch as dispatch
    real = dispatch.BACKENDS["direct"]

    def off_by_one(x, w, b, params, out):
        real(x, w, b, params, out)
        out[..., 0, 0] += 1
        return out
    monkeypatch.setitem(dispatch.BACKENDS, "direct", off_by_one)
    assert main(["check", "--count", "5", "--no-suite", "--backends", "direct"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_bench_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--shapes", "seed_tiny", "seed_shape", "--repeat", "2",
                 "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    backends = {r["backend"] for r in report["results"]}
    assert {"direct", "im2col", "auto"} <= backends
    assert report["meta"]["gemm_gflops"] > 0
    assert all(r["median_s"] > 0 and r["gflops"] > 0 for r in report["results"])
    assert "seed_tiny" in capsys.readouterr().out


def test_bench_unknown_shape(capsys):
    assert main(["bench", "--shapes", "nope"]) == 2
    assert "no suite shape 'nope'" in capsys.readouterr().err


def test_module_entry_point():
    proc = subprocess.run([sys.executable, "-m", "convtranspose", "--help"], capture_output=True,
                          text=True)
    assert proc.returncode == 0 and "check" in proc.stdout


def test_bad_subcommand():
    with pytest.raises(SystemExit):
        main(["frobnicate"])
