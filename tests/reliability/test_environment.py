"""The process environment: no writable Numba cache, ``NUMBA_DISABLE_JIT=1``."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import convtranspose as ct

PACKAGE = Path(ct.__file__).resolve().parent

# Every CPU backend (and both im2col forms), conv2d and the gradients against the float64
# reference on small problems; prints "ok" when all agree.
_CHECK_ALL = textwrap.dedent("""
    import numpy as np
    import convtranspose as ct
    from convtranspose import reference as ref
    from convtranspose.cpu import im2col
    from convtranspose.params import normalise
    from convtranspose.testing import assert_close
    rng = np.random.default_rng(0)
    kw = dict(stride=2, padding=1, dilation=(1, 2))
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((2, 4, 5, 4)).astype(dtype)
        w = rng.standard_normal((4, 3, 3, 2)).astype(dtype)
        b = rng.standard_normal(3).astype(dtype)
        y_ref = ref.conv_transpose2d_scatter(x, w, b, **kw)
        for backend in ("direct", "im2col", "auto"):
            assert_close(ct.conv_transpose2d(x, w, b, backend=backend, **kw), y_ref, dtype)
        params, shape, _ = normalise(x.shape, w.shape, b.shape, [x.dtype], **kw)
        for form, run in sorted(im2col.FORMS.items()):
            assert_close(run(x, w, b, params, np.empty(shape, dtype)), y_ref, dtype)
        if FULL:
            g = rng.standard_normal(y_ref.shape).astype(dtype)
            grads_ref = ref.conv_transpose2d_backward_reference(g, x, w, **kw)
            y = rng.standard_normal(y_ref.shape).astype(dtype)
            c_ref = ref.conv2d_reference(y, w, **kw)
            for backend in ("direct", "im2col"):
                grads = ct.conv_transpose2d_backward(g, x, w, backend=backend, **kw)
                for got, want in zip(grads, grads_ref):
                    assert_close(got, want, dtype)
                assert_close(ct.conv2d(y, w, backend=backend, **kw), c_ref, dtype)
    print("ok")
""")


def _run(code, env, full):
    return subprocess.run([sys.executable, "-c", f"FULL = {full}\n{code}"], env=env,
                          capture_output=True, text=True, timeout=900)


def _unwritable_copy(root):
    """The package copied under ``root`` with a regular FILE named ``__pycache__`` in each
    package directory, so that no Numba cache locator can write beside the sources."""
    dst = root / "convtranspose"
    shutil.copytree(PACKAGE, dst, ignore=shutil.ignore_patterns("__pycache__"))
    for init in dst.rglob("__init__.py"):
        (init.parent / "__pycache__").write_text("not a directory\n")
    return root


def test_import_and_compute_without_a_writable_numba_cache(tmp_path):
    """No writable cache location (read-only install, unwritable HOME): import works, every
    backend computes correctly, and exactly one RuntimeWarning says so."""
    root = _unwritable_copy(tmp_path)
    env = dict(os.environ, NUMBA_CACHE_DIR="/dev/null/x", XDG_CACHE_HOME="/dev/null/c",
               HOME="/dev/null", PYTHONPATH=str(root), PYTHONWARNINGS="default")
    env.pop("NUMBA_DISABLE_JIT", None)
    proc = _run(_CHECK_ALL, env, full=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["ok"], proc.stdout
    assert proc.stderr.count("RuntimeWarning") == 1, proc.stderr[-3000:]
    assert "NUMBA_CACHE_DIR" in proc.stderr


def test_numba_disable_jit_computes_correctly():
    """``NUMBA_DISABLE_JIT=1`` (kernels run as Python, slowly) gives the reference's values
    for every CPU backend and im2col form, conv2d and the gradients."""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1",
               PYTHONPATH=os.pathsep.join([str(PACKAGE.parent),
                                           os.environ.get("PYTHONPATH", "")]))
    proc = _run(_CHECK_ALL, env, full=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["ok"], proc.stdout
