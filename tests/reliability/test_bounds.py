"""Bounds of the CPU forward (issue 12): NaN only where the definition puts it, memory and
planning that do not grow with the output, bits that do not depend on call history.

Oracles: the float64 reference, and for outputs too large for it the definition worked
out by hand (each input row stamps the kernel, so the output is the stamps of a small
problem placed at ``i*s + k*d - pad``, and zero elsewhere).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import convtranspose as ct
from convtranspose import api, dispatch
from convtranspose.cpu import im2col, taps
from convtranspose.params import normalise
from convtranspose.reference import conv_transpose2d_reference as reference
from convtranspose.testing import assert_close

SRC = str(Path(ct.__file__).resolve().parents[1])
BACKENDS = ("direct", "im2col", "auto")


def _assert_matches_with_nonfinite(y, e, dtype):
    """NaN and Inf exactly where the reference has them; the finite values close."""
    np.testing.assert_array_equal(np.isnan(y), np.isnan(e))
    np.testing.assert_array_equal(np.isposinf(y), np.isposinf(e))
    np.testing.assert_array_equal(np.isneginf(y), np.isneginf(e))
    fin = np.isfinite(e)
    assert_close(np.where(fin, y, 0), np.where(fin, e, 0), dtype)


@pytest.mark.parametrize("backend", [*BACKENDS, "phases"])
def test_inf_weight_gives_nan_only_where_the_definition_does(backend):
    x = np.ones((1, 1, 2, 1))
    w = np.ones((1, 1, 3, 1))
    w[0, 0, 0, 0] = np.inf
    params, shape, _ = normalise(x.shape, w.shape, None, [x.dtype], stride=(2, 1))
    if backend == "phases":     # the form itself, not only the backend that picks it
        y = im2col.FORMS["phases"](x, w, None, params, np.full(shape, -1.0))
    else:
        y = ct.conv_transpose2d(x, w, stride=(2, 1), backend=backend)
    np.testing.assert_array_equal(y.ravel(), [np.inf, 1, np.inf, 1, 1])
    np.testing.assert_array_equal(y, reference(x, w, stride=(2, 1)))


@pytest.mark.parametrize("backend", [*BACKENDS, "phases"])
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_nonfinite_weight_in_a_decoder_layer(backend, bad):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 128, 8, 8)).astype(np.float32)
    w = rng.standard_normal((128, 64, 5, 5)).astype(np.float32)
    w[5, 7, 1, 2] = bad
    b = rng.standard_normal(64).astype(np.float32)
    kw = dict(stride=2, padding=2, output_padding=1)
    if backend == "phases":
        params, shape, _ = normalise(x.shape, w.shape, b.shape, [x.dtype], **kw)
        y = im2col.FORMS["phases"](x, w, b, params, np.full(shape, -1.0, np.float32))
    else:
        y = ct.conv_transpose2d(x, w, b, backend=backend, **kw)
    _assert_matches_with_nonfinite(y, reference(x, w, b, **kw), np.float32)


@pytest.mark.parametrize("backend", ["im2col", "auto"])
def test_inf_latents_on_the_dense_1x1_path_raise_no_warning(backend):
    """DCGAN's first layer (1x1 input): pytest turns a RuntimeWarning into an error."""
    rng = np.random.default_rng(4)
    z = rng.standard_normal((4, 100, 1, 1)).astype(np.float32)
    z[1, 3], z[1, 4] = np.inf, -np.inf      # inf - inf in the GEMM: "invalid value"
    z[2, 5] = np.nan
    w = rng.standard_normal((100, 64, 4, 4)).astype(np.float32)
    for kw in (dict(), dict(stride=2, padding=1)):       # GEMM = output, and the sliced copy
        y = ct.conv_transpose2d(z, w, backend=backend, **kw)
        _assert_matches_with_nonfinite(y, reference(z, w, **kw), np.float32)


def _clear_caches():
    api._VALIDATED.clear()
    dispatch._forms.cache_clear()
    dispatch._choose.cache_clear()
    for cached in (im2col.plan_col2im, im2col.plan_phases, taps.tap_tables):
        cached.cache_clear()


@pytest.mark.parametrize("backend", ["im2col", "auto"])
def test_bits_depend_on_the_limit_in_force_not_on_call_history(backend):
    """A shape whose im2col form differs between a 1 MiB and the default limit: the
    result under a limit is the same whichever limits the shape was seen under before."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((1, 32, 16, 16)).astype(np.float32)
    w = rng.standard_normal((32, 32, 4, 4)).astype(np.float32)
    kw = dict(stride=2, padding=1)
    small, default = 2**20, ct.get_workspace_limit()
    params, shape, _ = normalise(x.shape, w.shape, None, [x.dtype], **kw)
    fresh, forms = {}, {}
    try:
        for limit in (small, default):
            _clear_caches()
            ct.set_workspace_limit(limit)
            forms[limit] = dispatch._im2col_form(x.shape, w.shape, params, shape, x.dtype)
            fresh[limit] = ct.conv_transpose2d(x, w, backend=backend, **kw)
        assert forms[small] != forms[default]      # the case tests what it means to
        _clear_caches()
        for limit in (small, default, small, default):
            ct.set_workspace_limit(limit)
            np.testing.assert_array_equal(ct.conv_transpose2d(x, w, backend=backend, **kw),
                                          fresh[limit])
    finally:
        ct.set_workspace_limit(default)
    assert_close(fresh[default], reference(x, w, **kw), np.float32)


def test_byte_bounded_cache_keeps_its_bound():
    calls = []

    @taps.byte_bounded_cache(100_000)
    def table(n):
        calls.append(n)
        return np.zeros(n, np.uint8), (np.zeros(n, np.uint8),)

    for n in range(1000, 40_000, 1000):
        table(n)
        assert table.cache_bytes() <= 100_000
    table(39_000)                   # most recent: kept
    table(200_000)                  # larger than the bound: computed, not kept
    table(200_000)
    assert calls.count(39_000) == 1 and calls.count(200_000) == 2
    table.cache_clear()
    assert table.cache_bytes() == 0


@pytest.mark.parametrize("out_lo,out_hi", [(0, 1), (3, 9), (0, 40), (17, 18), (38, 40)])
def test_input_span_is_the_exact_range_of_rows_used(out_lo, out_hi):
    rng = np.random.default_rng(out_lo * 100 + out_hi)
    for _ in range(50):
        in_len, k = int(rng.integers(1, 8)), int(rng.integers(1, 6))
        s, d, before = int(rng.integers(1, 5)), int(rng.integers(1, 4)), int(rng.integers(0, 5))
        used = [i for i in range(in_len) for kk in range(k)
                if out_lo <= i * s + kk * d - before < out_hi]
        want = (min(used), max(used) + 1) if used else (0, 0)
        assert taps.input_span(out_lo, out_hi, in_len, k, s, d, before) == want


# ---------------------------------------------------------------------------------------
# memory and planning time, in a child process under an address-space limit

_CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np
    import convtranspose as ct
    backend, cases = sys.argv[1], json.loads(sys.argv[2])
    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    def run(x_shape, w_shape, kw):
        rng = np.random.default_rng(0)
        x = rng.standard_normal(x_shape).astype(np.float32)
        w = rng.standard_normal(w_shape).astype(np.float32)
        return x, w, ct.conv_transpose2d(x, w, backend=backend, **kw)
    # compile (or load) every kernel first: both im2col forms, the dense 1x1 path, the
    # serial and the parallel direct kernel (one and four channels per task)
    from convtranspose.cpu import direct, im2col
    from convtranspose.params import normalise
    for x_shape, w_shape in (((1, 1, 3, 3), (1, 1, 2, 2)), ((1, 16, 16, 16), (16, 16, 3, 3)),
                             ((1, 16, 16, 16), (16, 1, 3, 3)), ((2, 4, 1, 1), (4, 3, 2, 2))):
        x = np.ones(x_shape, np.float32)
        w = np.ones(w_shape, np.float32)
        params, shape, _ = normalise(x_shape, w_shape, None, [x.dtype], stride=2)
        for form in (direct.run, *im2col.FORMS.values()):
            form(x, w, None, params, np.empty(shape, np.float32))
    # at most 1.5 GiB more address space than now: a runaway plan raises MemoryError
    # instead of waking the kernel's out-of-memory killer
    room = status("VmSize") + 3 * 2**29
    resource.setrlimit(resource.RLIMIT_AS, (room, room))
    results = []
    for x_shape, w_shape, kw in cases:
        kw = {k: tuple(map(tuple, v)) if k == "padding" and isinstance(v, list) else
              tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
        with open("/proc/self/clear_refs", "w") as f:       # reset the peak (VmHWM)
            f.write("5")
        base = status("VmRSS")
        t0 = time.perf_counter()
        x, w, y = run(x_shape, w_shape, kw)
        sec = time.perf_counter() - t0
        peak = status("VmHWM") - base
        np.save(sys.argv[3] + f"/{len(results)}.npy", y if y.size < 10**6 else y[:, :, :64])
        nz = np.argwhere(y[0, 0] != 0)
        results.append(dict(sec=sec, peak=peak, out=y.nbytes, shape=y.shape,
                            rows=sorted({int(r) for r, _ in nz})))
        del y
    print(json.dumps(results))
""")


def _child(backend, cases, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", _CHILD, backend, json.dumps(cases),
                           str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _x_w(x_shape, w_shape):
    rng = np.random.default_rng(0)
    return (rng.standard_normal(x_shape).astype(np.float32),
            rng.standard_normal(w_shape).astype(np.float32))


_S24, _S26, _S31 = 2**24 - 1, 2**26 - 1, 2**31 - 1
# huge strides: outputs of 64 MiB and 160 MiB whose rows the plans must not loop over;
# 1x1 inputs and inputs cropped to a 4x4 output by the padding, up to the largest stride
_TALL = [([1, 1, 2, 1], [1, 1, 3, 1], dict(stride=[_S24, 1])),
         ([1, 1, 2, 2], [1, 1, 3, 3], dict(stride=[10**7, 1]))]
_SMALL = ([([1, 1, 1, 1], [1, 1, 3, 3], dict(stride=s)) for s in (_S24, _S26, _S31)]
          + [([1, 1, 2, 2], [1, 1, 3, 3], dict(stride=s, padding=[[s - 1, 0], [s - 1, 0]]))
             for s in (_S24, _S31)])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_strides_plan_in_time_and_memory_independent_of_the_output(backend, tmp_path):
    results = _child(backend, _TALL + _SMALL, tmp_path)
    for i, ((x_shape, w_shape, kw), got) in enumerate(zip(_TALL + _SMALL, results)):
        assert got["sec"] < 15, (kw, got["sec"])                      # was 21 s to minutes
        assert got["peak"] <= got["out"] + 48 * 2**20, (kw, got)     # tables were GiBs
        x, w = _x_w(x_shape, w_shape)
        y = np.load(tmp_path / f"{i}.npy")
        if (x_shape, w_shape, kw) in _TALL:
            s = kw["stride"][0]
            # input row i stamps kernel rows 0..2 onto output rows i*s .. i*s + 2
            assert got["rows"] == [r for i in range(2) for r in range(i * s, i * s + 3)]
            assert_close(y[:, :, :3], reference(x[:, :, :1], w), np.float32)
            assert not y[:, :, 3:].any()
        elif "padding" in kw:
            # only input pixel (1, 1) lands inside the cropped output, at (1, 1)
            e = np.zeros((1, 1, 4, 4))
            e[:, :, 1:, 1:] = reference(x[:, :, 1:, 1:], w)
            assert_close(y, e, np.float32)
        else:
            assert_close(y, reference(x, w, **kw), np.float32)
    # the second input row's stamp of the tall outputs (not saved) is placed as checked
    # above; its values, on a moderate stride, against the reference
    x, w = _x_w(*_TALL[1][:2])
    kw = dict(stride=(1000, 1))
    assert_close(ct.conv_transpose2d(x, w, backend=backend, **kw), reference(x, w, **kw),
                 np.float32)


# tables that grew with H_out x kH (64 MiB per length, GiBs for long kernels) and phase
# maps of taps x pixels (about 2 GB for a 61 MiB output)
_MEMORY = ([([1, 16, n, 1], [16, 16, 64, 1], dict(stride=[4, 1])) for n in range(16380, 16385)]
           + [([1, 1, 1, 2], [1, 1, 20000, 1], {}),
              ([1, 1, 1000, 1000], [1, 16, 9, 9], dict(padding=4))])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
@pytest.mark.parametrize("backend", BACKENDS)
def test_index_tables_do_not_grow_with_the_output(backend, tmp_path):
    results = _child(backend, _MEMORY, tmp_path)
    limit = ct.get_workspace_limit()
    for (x_shape, w_shape, kw), got in zip(_MEMORY, results):
        workspace = limit        # im2col's workspace; direct's engine copies in its bound
        assert got["peak"] <= got["out"] + workspace + 48 * 2**20, (x_shape, w_shape, got)
    x, w = _x_w(*_MEMORY[5][:2])
    y = np.load(tmp_path / "5.npy")
    assert_close(y, reference(x, w), np.float32)
