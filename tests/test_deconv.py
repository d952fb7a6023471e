"""The weight gradient on the register-blocked GEMM (cpu/deconv.py): against the float64
reference, the same bits whatever the threads, the cut into tasks and the workspace
limit, and Inf/NaN as the other backends give them. (The transposed convolution and the
correlation that ``direct`` runs are tested with their engine, tests/test_nd_engine.py.)"""
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

import convtranspose as ct
from convtranspose.cpu import deconv
from convtranspose.params import normalise
from convtranspose.reference import conv_transpose2d_backward_reference
from convtranspose.testing import assert_close, random_problem

DTYPES = [np.float32, np.float64]


def _weight_grad(x, g, w_shape, kwargs):
    """The engine's weight gradient of a transposed convolution (``a = x``, ``b = g``)."""
    params, _, _ = normalise(x.shape, w_shape, None, [x.dtype], **kwargs)
    gw = np.full(w_shape, np.nan, x.dtype)
    return deconv.weight_grad(x, g, gw, params.stride, params.dilation,
                              (params.pad_h[0], params.pad_w[0]), params.groups)


def _grad_output(rng, x, w_shape, kwargs):
    _, shape, _ = normalise(x.shape, w_shape, None, [x.dtype], **kwargs)
    return rng.standard_normal(shape).astype(x.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_grad_random_problems(dtype):
    rng = np.random.default_rng(31)
    for i in range(50):
        p = random_problem(rng)
        x, w, _ = p.arrays(dtype, i)
        x = x if x.ndim == 4 else x[None]
        g = _grad_output(rng, x, w.shape, p.kwargs)
        _, want, _ = conv_transpose2d_backward_reference(g, x, w, **p.kwargs)
        assert_close(_weight_grad(x, g, w.shape, p.kwargs), want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((8, 16, 32, 32), (16, 3, 4, 4), dict(stride=2, padding=1)),        # pixel parts
    ((4, 12, 20, 20), (12, 5, 3, 3), dict(padding=1, groups=3)),        # groups, parts
    ((2, 64, 9, 9), (64, 40, 3, 3), dict(stride=2, padding=2, dilation=2)),   # column blocks
    ((1, 8, 1, 1), (8, 9, 4, 4), dict(stride=3)),                       # one pixel
])
def test_weight_grad_tasks_and_threads(dtype, x_shape, w_shape, kwargs):
    rng = np.random.default_rng(32)
    x = rng.standard_normal(x_shape).astype(dtype)
    g = _grad_output(rng, x, w_shape, kwargs)
    ref = _weight_grad(x, g, w_shape, kwargs)
    _, want, _ = conv_transpose2d_backward_reference(g, x, np.zeros(w_shape), **kwargs)
    assert_close(ref, want, dtype)
    if numba.config.NUMBA_NUM_THREADS > 1:
        old = numba.get_num_threads()
        try:
            numba.set_num_threads(1)
            np.testing.assert_array_equal(_weight_grad(x, g, w_shape, kwargs), ref)
        finally:
            numba.set_num_threads(old)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_grad_nonfinite_as_the_other_backends(dtype):
    # an Inf in x meets a zero read outside grad_output: NaN there, as the im2col backend
    # (zero-filled patches) and PyTorch's float64 path give it (PyTorch's float32 oneDNN
    # path skips those zeros; the package follows one rule, convtranspose.nonfinite's)
    import convtranspose as ct
    rng = np.random.default_rng(33)
    x = rng.standard_normal((2, 8, 5, 5)).astype(dtype)
    x[1, 3, 0, 0] = np.inf
    w = rng.standard_normal((8, 4, 3, 3)).astype(dtype)
    kwargs = dict(stride=2, padding=1)
    g = _grad_output(rng, x, w.shape, kwargs)
    got = _weight_grad(x, g, w.shape, kwargs)
    wants = [ct.conv_transpose2d_backward(g, x, w, **kwargs, backend="im2col")[1]]
    if dtype == np.float64:
        torch = pytest.importorskip("torch")
        wants.append(torch.ops.aten.convolution_backward(
            torch.from_numpy(g), torch.from_numpy(x), torch.from_numpy(w), None, [2, 2],
            [1, 1], [1, 1], True, [0, 0], 1, [False, True, False])[1].numpy())
    assert np.isnan(got).any()
    for want in wants:
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        finite = np.isfinite(want)
        assert_close(got[finite], want[finite], dtype)


def test_direct_gradients_run_the_engine_on_channel_heavy_layers(monkeypatch):
    import convtranspose as ct
    from convtranspose.cpu import nd_engine
    calls = []
    for module, name in ((nd_engine, "correlate"), (deconv, "weight_grad")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name,
                            lambda *a, real=real, name=name, **k: calls.append(name) or real(*a, **k))
    rng = np.random.default_rng(34)
    x = rng.standard_normal((2, 16, 6, 6))
    w = rng.standard_normal((16, 8, 4, 4))
    y = ct.conv_transpose2d(x, w, stride=2, padding=1)
    g = rng.standard_normal(y.shape)
    got = ct.conv_transpose2d_backward(g, x, w, stride=2, padding=1, backend="direct")
    assert calls == ["correlate", "weight_grad"]
    want = conv_transpose2d_backward_reference(g, x, w, stride=2, padding=1)
    for a, b in zip(got, want):
        assert_close(a, b, np.float64)


def test_weight_grad_bits_depend_on_neither_the_limit_nor_the_threads(tmp_path):
    # the pixel ranges (the summation order) come from the shapes alone; a small workspace
    # limit narrows the column blocks and adds the partials one after the other
    rng = np.random.default_rng(35)
    x = rng.standard_normal((16, 32, 16, 16)).astype(np.float32)
    w_shape, kwargs = (32, 64, 4, 4), dict(stride=2, padding=1)
    g = _grad_output(rng, x, w_shape, kwargs)
    want = _weight_grad(x, g, w_shape, kwargs)
    big = deconv.plan_weight_grad(x.shape, w_shape, 1, np.dtype(np.float32), 2**28, 2)
    small = deconv.plan_weight_grad(x.shape, w_shape, 1, np.dtype(np.float32), 2**19, 2)
    assert big.parts == small.parts > 1
    assert 2 * small.slot * 4 <= 2**19 < 2 * big.slot * 4
    old = ct.get_workspace_limit()
    try:
        ct.set_workspace_limit(2**19)           # no room for the partials at once
        np.testing.assert_array_equal(_weight_grad(x, g, w_shape, kwargs), want)
    finally:
        ct.set_workspace_limit(old)
    _, ref, _ = conv_transpose2d_backward_reference(g, x, np.zeros(w_shape), **kwargs)
    assert_close(want, ref, np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "g.npy", g)
    script = textwrap.dedent(f"""
        import numpy as np
        from convtranspose.cpu import deconv
        x, g = np.load({str(tmp_path / "x.npy")!r}), np.load({str(tmp_path / "g.npy")!r})
        gw = np.empty({w_shape}, np.float32)
        deconv.weight_grad(x, g, gw, (2, 2), (1, 1), (1, 1), 1)
        np.save({str(tmp_path / "gw.npy")!r}, gw)
    """)
    for threads in ("1", "3"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads)
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        np.testing.assert_array_equal(np.load(tmp_path / "gw.npy"), want)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_grad_forms_give_the_same_bits(dtype, monkeypatch):
    # B sampled from b itself (no room for the channels-last copy), packed from the copy,
    # or read in place by the taps-as-rows kernel: the same products in the same order
    rng = np.random.default_rng(36)
    real_copy, real_wins = deconv._channels_last_copy, deconv.tap_rows_wins
    shapes = [((3, 40, 9, 7), (40, 3, 4, 4), dict(stride=2, padding=1)),
              ((2, 18, 5, 6), (18, 7, 3, 2), dict(stride=(1, 2), padding=(2, 0), dilation=2)),
              ((2, 36, 6, 6), (36, 4, 3, 3), dict(padding=1, groups=2)),
              ((20, 16, 20, 20), (16, 1, 3, 3), dict(padding=1)),     # pixel parts
              ((1, 64, 3, 3), (64, 33, 2, 2), dict(stride=2))]
    for i in range(len(shapes) + 8):
        if i < len(shapes):
            x_shape, w_shape, kwargs = shapes[i]
        else:
            p = random_problem(rng)
            x, w, _ = p.arrays(dtype, i)
            x_shape, w_shape, kwargs = (1, *x.shape) if x.ndim == 3 else x.shape, w.shape, p.kwargs
        x = rng.standard_normal(x_shape).astype(dtype)
        x.ravel()[::17] = [np.inf, -np.inf, np.nan, 1e30][i % 4]
        g = _grad_output(rng, x, w_shape, kwargs)
        got = {}
        for form in ("sampled", "packed", "rows", "rows, small limit"):
            monkeypatch.setattr(deconv, "tap_rows_wins", lambda c_a_g, c_b_g: "rows" in form)
            monkeypatch.setattr(deconv, "copy_pays", lambda *sizes: True)
            monkeypatch.setattr(deconv, "_channels_last_copy", (
                lambda *a: real_copy(*a)._replace(size=2**60)) if form == "sampled"
                else real_copy)
            old = ct.get_workspace_limit()
            try:
                if "small" in form:
                    ct.set_workspace_limit(2**14)
                with np.errstate(all="ignore"):
                    got[form] = _weight_grad(x, g, w_shape, kwargs)
            finally:
                ct.set_workspace_limit(old)
        monkeypatch.setattr(deconv, "tap_rows_wins", real_wins)
        for form, gw in got.items():
            np.testing.assert_array_equal(gw, got["sampled"], err_msg=f"{form}, case {i}")
        x[~np.isfinite(x)] = 0
        _, want, _ = conv_transpose2d_backward_reference(g, x, np.zeros(w_shape), **kwargs)
        for form in ("packed", "rows"):
            monkeypatch.setattr(deconv, "tap_rows_wins", lambda c_a_g, c_b_g: form == "rows")
            monkeypatch.setattr(deconv, "copy_pays", lambda *sizes: True)
            assert_close(_weight_grad(x, g, w_shape, kwargs), want, dtype)
        monkeypatch.setattr(deconv, "tap_rows_wins", real_wins)
