"""The command line: info, check and bench run and report."""
import json
import subprocess
import sys

import pytest

from convtranspose.tools.cli import main


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


def _usage_error(capsys, argv):
    """Run ``main(argv)``, expect argparse's exit 2; return its one-line message."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_check_with_nothing_to_check(capsys):
    assert "nothing to check" in _usage_error(capsys, ["check", "--count", "0", "--no-suite"])


@pytest.mark.parametrize("argv, message", [
    (["check", "--count", "-1"], "argument --count: must be >= 0, got -1"),
    (["bench", "--repeat", "0"], "argument --repeat: must be >= 1, got 0"),
    (["bench", "--repeat", "x"], "argument --repeat: invalid int value: 'x'"),
])
def test_counts_out_of_range(capsys, argv, message):
    assert message in _usage_error(capsys, argv)


@pytest.mark.parametrize("threads", ["0", "-3", "100000"])
def test_bench_threads_out_of_range(capsys, threads):
    import numba
    message = _usage_error(capsys, ["bench", "--threads", threads])
    assert f"argument --threads: must be between 1 and NUMBA_NUM_THREADS = " \
           f"{numba.config.NUMBA_NUM_THREADS}, got {threads}" in message


def test_bench_shapes_separated_by_commas(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "--shapes", "seed_tiny,seed_shape", "--repeat", "1", "--no-torch",
                 "--backends", "direct", "--threads", "1", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert [r["shape"] for r in report["results"]] == ["seed_tiny", "seed_shape"]
    assert report["meta"]["threads"] == 1


def test_bench_json_path_checked_before_the_run(tmp_path, capsys, monkeypatch):
    import convtranspose.tools.bench as bench
    monkeypatch.setattr(bench, "run_suite", lambda *a, **k: pytest.fail("the suite ran"))
    bad = tmp_path / "no such folder" / "bench.json"
    message = _usage_error(capsys, ["bench", "--shapes", "seed_tiny", "--json", str(bad)])
    assert f"--json {bad}: cannot write" in message


def test_cuda_backend_without_a_gpu(capsys, monkeypatch):
    from convtranspose import cuda
    monkeypatch.setattr(cuda, "info", lambda: {"available": False, "reason": "no CUDA GPU"})
    for argv in (["check", "--backends", "cuda"], ["bench", "--backends", "auto", "cuda"]):
        assert _usage_error(capsys, argv).endswith("--backends cuda needs a GPU: no CUDA GPU")


def test_info_lists_auto(capsys):
    assert main(["info"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("backends"))
    assert {"auto", "direct", "im2col", "cuda"} <= set(line.replace(",", " ").split())


def test_check_reports_progress_when_piped():
    """Through a pipe (CI logs) check prints a line per stage, flushed as it goes."""
    proc = subprocess.run([sys.executable, "-m", "convtranspose", "check", "--count", "150",
                           "--no-suite", "--backends", "direct", "--dtype", "float64"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = [x for x in proc.stdout.splitlines() if x.startswith("checked ")]
    assert [x.split()[1] for x in lines] == ["100/150", "150/150"]
    assert proc.stdout.index(lines[-1]) < proc.stdout.index("PASS")


def test_bench_held_out(tmp_path, capsys):
    """--held-out times the layers that no tuning saw (after --shapes when both are given)."""
    from convtranspose.suite import HELD_OUT, SUITE
    assert not {s.name for s in HELD_OUT} & {s.name for s in SUITE}
    out = tmp_path / "b.json"
    assert main(["bench", "--shapes", "seed_tiny", "--held-out", "--backends", "direct",
                 "--repeat", "1", "--no-torch", "--json", str(out)]) == 0
    names = [r["shape"] for r in json.loads(out.read_text())["results"]]
    assert names == ["seed_tiny", *(s.name for s in HELD_OUT)]


def test_check_piped_starts_at_once_with_whole_labels():
    """Piped, check's first line comes before any problem runs, and its progress lines give
    the last problem whole (it was cut at 60 characters, mid-argument)."""
    import numpy as np
    from convtranspose.testing import random_problem
    proc = subprocess.Popen([sys.executable, "-m", "convtranspose", "check", "--count", "100",
                             "--no-suite", "--backends", "direct", "--dtype", "float64"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert first == "checking 100 random problems and 0 suite shapes\n"
    rng = np.random.default_rng(0)
    last = [random_problem(rng) for _ in range(100)][-1]
    assert f"checked 100/100 (last: random {last}) in " in out
    assert "\r" not in out + err


def test_bench_piped_prints_whole_lines(tmp_path):
    """Piped, bench's progress is one line per step, no carriage returns; without torch the
    header promises no ratio to it."""
    proc = subprocess.run([sys.executable, "-m", "convtranspose", "bench", "--shapes",
                           "seed_tiny", "seed_shape", "--repeat", "1", "--no-torch",
                           "--backends", "direct"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "\r" not in proc.stdout + proc.stderr
    assert proc.stderr.splitlines() == ["[0/2] GEMM rate", "[0/2] seed_tiny", "[1/2] seed_shape",
                                        "[2/2] done"]
    header = proc.stdout.splitlines()[0]
    assert header.endswith("per backend: ms  GFLOP/s") and "torch" not in proc.stdout


@pytest.mark.parametrize("argv, command", [
    (["check", "--backends", "cuda"], "check"),
    (["bench", "--json", "/nonexistent/x.json"], "bench"),
    (["check", "--count", "0", "--no-suite"], "check"),
])
def test_argument_errors_show_the_subcommands_usage(capsys, monkeypatch, argv, command):
    from convtranspose import cuda
    monkeypatch.setattr(cuda, "info", lambda: {"available": False, "reason": "no CUDA GPU"})
    with pytest.raises(SystemExit):
        main(argv)
    usage = capsys.readouterr().err.splitlines()[0]
    assert usage.startswith(f"usage: python -m convtranspose {command} ")


@pytest.mark.parametrize("command", ["check", "bench", "compile"])
def test_every_option_has_help(capsys, command):
    """Each option of the subcommand's --help has a description after its name."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    options = text[text.index("options:"):].splitlines()[1:]
    for i, line in enumerate(options):
        if line.lstrip().startswith("-") and not line.lstrip().startswith("-h"):
            described = len(line.split("  ")) > 2 or (
                i + 1 < len(options) and not options[i + 1].lstrip().startswith("-"))
            assert described, line


@pytest.mark.parametrize("rank, data_format", [(1, "NWC"), (2, "NCHW"), (3, "NDHWC")])
def test_bench_backward_runs_every_rank_and_layout(rank, data_format):
    """``bench --backward`` times the rank's own backward in the shape's layout, and
    PyTorch's autograd on the same layer where PyTorch is installed."""
    from convtranspose.suite import Shape
    from convtranspose.tools.bench_backward import run_backward_suite
    shape = Shape("tiny", 2, 8, 4, 1 if rank == 1 else 5, 6, 3, 2, 1, rank=rank,
                  d=4 if rank == 3 else 1, data_format=data_format)
    report = run_backward_suite([shape], ["direct"], repeat=1)
    rows = {r["backend"]: r for r in report["results"]}
    assert rows["direct"]["median_s"] > 0
    if "torch" in rows:
        assert rows["direct"]["ratio_torch"] > 0
