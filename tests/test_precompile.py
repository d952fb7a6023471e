"""Compiling ahead of time (``python -m convtranspose compile``) and the notice that a call
is about to compile."""
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from convtranspose.tools.precompile import STEPS, compile_kernels

NOTICE = "convtranspose: compiling the CPU kernel"

# two tiny calls in two dtypes, so two kernels compile on a cold cache
TWO_CALLS = """
import warnings
warnings.simplefilter("error")
import numpy as np
import convtranspose as ct
for dtype in (np.float32, np.float64):
    ct.conv_transpose2d(np.ones((1, 2, 3, 3), dtype), np.ones((2, 2, 3, 3), dtype), stride=2)
print("ok")
"""


def _python(code, cache_dir, *args):
    """Run ``code`` (or ``-m convtranspose`` with ``args``) in a fresh interpreter that
    caches Numba's kernels in ``cache_dir``, warnings as errors; return the process."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    argv = ["-m", "convtranspose", *args] if code is None else ["-c", textwrap.dedent(code)]
    proc = subprocess.run([sys.executable, "-W", "error", *argv], capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_compile_notice_once_on_a_cold_cache_and_not_when_warm(tmp_path):
    """Logged once per process (two kernels compiled), on stderr through logging's
    last-resort handler, not as a warning (warnings are errors here); not at all when the
    cache holds the kernels."""
    cold = _python(TWO_CALLS, tmp_path)
    assert cold.stdout == "ok\n"
    assert cold.stderr.count(NOTICE) == 1
    assert "direct_kernel_serial for float32" in cold.stderr
    assert "python -m convtranspose compile" in cold.stderr
    warm = _python(TWO_CALLS, tmp_path)
    assert warm.stdout == "ok\n" and warm.stderr == ""


def test_compile_notice_silenced_by_configuring_the_logger(tmp_path):
    quiet = _python("import logging\nlogging.getLogger('convtranspose').setLevel(logging.ERROR)"
                    + TWO_CALLS, tmp_path)
    assert quiet.stdout == "ok\n" and quiet.stderr == ""


def test_compile_command_fills_the_cache(tmp_path):
    """``compile`` for one kernel (the whole set takes minutes on a cold cache): a line
    for it, compiled; run again, loaded from the cache; then a call that uses the kernel
    compiles nothing (no notice)."""
    first = _python(None, tmp_path, "compile", "--dtype", "float64", "--kernels",
                    "direct-serial")
    lines = first.stdout.splitlines()
    assert lines[0].startswith("compiling every CPU kernel for float64")
    assert "keyed by the CPU" in lines[0]
    assert lines[1].startswith("[1/1] float64 direct-serial: compiled in ")
    assert lines[2].endswith("1 compiled, 0 already in the cache")
    assert NOTICE not in first.stderr
    again = _python(None, tmp_path, "compile", "--dtype", "float64", "--kernels",
                    "direct-serial")
    assert "direct-serial: already compiled, loaded in " in again.stdout
    assert again.stdout.splitlines()[2].endswith("0 compiled, 1 already in the cache")
    use = _python("""
        import numpy as np
        import convtranspose as ct
        ct.conv_transpose2d(np.ones((1, 2, 3, 3)), np.ones((2, 2, 3, 3)), stride=2)
        """, tmp_path)
    assert use.stderr == ""


EVERY_CALL = """
import itertools
import sys
import numpy as np
import convtranspose as ct
from convtranspose import _jit
from convtranspose.tools.precompile import STEPS, compile_kernels

def signatures():
    return {(k.py_func.__qualname__, s) for k in list(_jit._kernels) for s in k.overloads}

compile_kernels(["float64"], sys.argv[1:])
before = signatures()
rng = np.random.default_rng(0)
last_format = {1: "NWC", 2: "NHWC", 3: "NDHWC"}
for rank, last, (c_in, c_out), backend in itertools.product(
        (1, 2, 3), (False, True), ((4, 3), (16, 16)), ("direct", "im2col", "auto")):
    f = {name: getattr(ct, name.format(rank)) for name in (
        "conv_transpose{}d", "conv{}d", "conv_transpose{}d_backward", "conv{}d_backward")}
    x = rng.standard_normal((2, *(6,) * rank, c_in) if last else (2, c_in, *(6,) * rank))
    w = rng.standard_normal((c_in, c_out, *(3,) * rank))
    wc = rng.standard_normal((c_out, c_in, *(3,) * rank))
    b = rng.standard_normal(c_out)
    kw = dict(stride=2, padding=1, backend=backend,
              **({"data_format": last_format[rank]} if last else {}))
    y = f["conv_transpose{}d"](x, w, b, **kw)
    f["conv_transpose{}d_backward"](y, x, w, **kw)
    f["conv_transpose{}d_backward"](y, x, w, needs_input_grad=False, **kw)
    z = f["conv{}d"](x, wc, b, **kw)
    f["conv{}d_backward"](z, x, wc, **kw)
    if backend == "auto" and c_in == 4:       # complex128: Gauss's passes around real calls
        xc, wcc = x + 1j * x, w - 1j * w
        f["conv_transpose{}d_backward"](f["conv_transpose{}d"](xc, wcc, b + 0j, **kw), xc,
                                        wcc, **kw)
for name, signature in sorted(signatures() - before, key=str):
    print(name, signature)
"""


def _added_by_every_call(steps):
    """In a fresh process (no earlier test's calls hide a missing step): the steps named,
    in float64, then every public function of every rank, layout, backend and gradient
    flag (and complex128 calls); the kernels' signatures those calls added (each one a
    compile)."""
    proc = subprocess.run([sys.executable, "-W", "error", "-c", EVERY_CALL, *steps],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.splitlines()


def test_steps_cover_every_kernel():
    """After the steps for a dtype, no call in it compiles a kernel (on writeable arrays:
    read-only ones are other signatures, compiled on first use; README says so)."""
    assert _added_by_every_call([step.name for step in STEPS]) == []


def test_a_missing_step_shows():
    """The check above can fail: without the last step its kernel compiles on use."""
    names = [step.name for step in STEPS]
    added = _added_by_every_call([n for n in names if n != "weight-grad-gemm"])
    assert any(line.startswith("weight_grad_gemm_kernel ") for line in added), added


def test_compile_kernels_unknown_name():
    with pytest.raises(ValueError, match="names: no kernel step 'nope'; the steps are "
                                         "direct-serial, "):
        compile_kernels(["float64"], ["nope"])


def test_compile_kernels_reports_each_step_and_dtype(capsys):
    import io
    stream = io.StringIO()
    done = compile_kernels(["float32", "float64"], ["direct-serial", "correlate"], stream)
    assert [(r["name"], r["dtype"]) for r in done] == [
        ("direct-serial", "float32"), ("correlate", "float32"),
        ("direct-serial", "float64"), ("correlate", "float64")]
    lines = stream.getvalue().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "[1/4] float32 direct-serial", "[2/4] float32 correlate",
        "[3/4] float64 direct-serial", "[4/4] float64 correlate"]
    assert len({step.name for step in STEPS}) == len(STEPS)


def test_compile_notice_is_a_log_record_not_a_warning(monkeypatch, caplog):
    """The notice in this process: a WARNING record of the ``convtranspose`` logger, once
    (a compile event of one of the package's kernels triggers it; another's does not)."""
    from numba.core import event

    from convtranspose import _jit
    from convtranspose.cpu.kernels import direct_kernel_serial
    monkeypatch.setattr(_jit, "_notice_due", True)
    args = (direct_kernel_serial.nopython_signatures or [None])[0]
    data = dict(dispatcher=direct_kernel_serial, args=args.args if args else (),
                return_type=None)
    with caplog.at_level(logging.WARNING, logger="convtranspose"):
        event.broadcast(event.Event("numba:compile", event.EventStatus.START,
                                    data=dict(data, dispatcher=object())))
        assert not caplog.records
        for _ in range(2):
            event.broadcast(event.Event("numba:compile", event.EventStatus.START, data=data))
    assert [(r.name, r.levelno) for r in caplog.records] == [("convtranspose", logging.WARNING)]
