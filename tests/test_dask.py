"""Dask arrays in, lazy Dask arrays out: results against the NumPy call on the same data.

For ``backend="direct"`` (each output element summed in a fixed order whatever the
problem's size) the chunked result must be bitwise the NumPy call's, whatever the batch and
spatial chunks; channel partials are checked against the same partial sums added in the
documented order, and every other backend against the NumPy call within the tolerance.
The 3-D functions are tiled by the same graph builder (the section at the end), and the
operand rules are checked at every rank.
"""
import math
import pickle
import subprocess
import sys

import numpy as np
import pytest

import convtranspose as ct
from convtranspose import dask_ops
from convtranspose.testing import assert_close, random_problem

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

SYNC = dict(scheduler="synchronous")


def random_chunks(rng, n, zero=False):
    """A random split of ``n`` into chunks (sometimes with a zero-size chunk)."""
    if n == 0:
        return (0,)
    cuts = sorted(set(rng.integers(1, n, size=int(rng.integers(0, min(n, 4)))).tolist()))
    sizes = list(np.diff([0, *cuts, n]))
    if zero and rng.random() < 0.5:
        sizes.insert(int(rng.integers(0, len(sizes) + 1)), 0)
    return tuple(int(s) for s in sizes)


def group_chunks(rng, c_in, groups):
    """Random channel chunks made of whole groups."""
    per = c_in // groups
    return tuple(per * s for s in random_chunks(rng, groups))


def operands(problem, dtype, rng):
    x = rng.standard_normal(problem.x_shape).astype(dtype)
    w = rng.standard_normal(problem.w_shape).astype(dtype)
    c_out = problem.w_shape[1] * problem.kwargs["groups"]
    b = rng.standard_normal(c_out).astype(dtype) if problem.bias else None
    return x, w, b


def chunked(x, rng, groups, zero=False, c_axis=None):
    """``x`` as a Dask array with random batch and spatial chunks and channel chunks of
    whole groups (so no channel partials) on axis ``c_axis`` (default: channels-first
    2-D)."""
    chunks = [random_chunks(rng, n, zero) for n in x.shape]
    c_axis = x.ndim - 3 if c_axis is None else c_axis
    chunks[c_axis] = (group_chunks(rng, x.shape[c_axis], groups) if groups > 1
                      else (x.shape[c_axis],))
    return da.from_array(x, chunks=tuple(chunks))


@pytest.mark.parametrize("seed", range(40))
def test_forward_bitwise_whatever_the_chunks(seed):
    rng = np.random.default_rng(seed)
    problem = random_problem(rng)
    dtype = np.float32 if seed % 2 else np.float64
    x, w, b = operands(problem, dtype, rng)
    xd = chunked(x, rng, problem.kwargs["groups"], zero=seed % 3 == 0)
    expected = ct.conv_transpose2d(x, w, b, backend="direct", **problem.kwargs)
    y = ct.conv_transpose2d(xd, w, b, backend="direct", **problem.kwargs)
    assert isinstance(y, da.Array) and y.shape == expected.shape and y.dtype == expected.dtype
    got = y.compute(**SYNC)
    np.testing.assert_array_equal(got, expected, strict=True)


@pytest.mark.parametrize("backend", ["im2col", "auto"])
@pytest.mark.parametrize("seed", range(8))
def test_forward_other_backends_close(backend, seed):
    rng = np.random.default_rng(100 + seed)
    problem = random_problem(rng)
    x, w, b = operands(problem, np.float64, rng)
    xd = chunked(x, rng, problem.kwargs["groups"])
    expected = ct.conv_transpose2d(x, w, b, backend=backend, **problem.kwargs)
    got = ct.conv_transpose2d(xd, w, b, backend=backend, **problem.kwargs).compute(**SYNC)
    assert_close(got, expected, np.float64)


def test_output_size_and_unbatched():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 9, 11))
    w = rng.standard_normal((6, 3, 3, 4))
    xd = da.from_array(x, chunks=(6, 4, 5))
    kw = dict(stride=(3, 2), padding=1, output_size=(27, 23))
    y = ct.conv_transpose2d(xd, w, backend="direct", **kw)
    assert y.shape == (3, 27, 23)
    np.testing.assert_array_equal(y.compute(**SYNC), ct.conv_transpose2d(x, w, backend="direct",
                                                                        **kw))


def test_output_chunks_follow_the_input():
    x = da.zeros((4, 3, 64, 48), chunks=(2, 3, 16, 12), dtype=np.float32)
    w = np.zeros((3, 2, 4, 4), np.float32)
    y = ct.conv_transpose2d(x, w, stride=2, padding=1)
    assert y.chunks == ((2, 2), (2,), (32,) * 4, (24,) * 4)
    plan = ct.explain(x, w, stride=2, padding=1)
    assert plan.output_chunks == y.chunks and plan.halo == ((1, 1), (1, 1))
    # 32 tiles, the weight, and the halo strips copied out of neighbouring chunks
    assert plan.tasks == len(y.dask.layers[y.name]) > 33
    assert sum(plan.backends.values()) == 32
    assert "halo" in str(plan) and f"tasks: {plan.tasks}" in str(plan)


def test_channel_partials_summed_in_fixed_order():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 10, 7, 6)).astype(np.float32)
    w = rng.standard_normal((10, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    xd = da.from_array(x, chunks=(1, (3, 2, 4, 1), 4, 3))
    got = ct.conv_transpose2d(xd, w, b, stride=2, backend="direct").compute(**SYNC)
    bounds = [0, 3, 5, 9, 10]
    parts = [ct.conv_transpose2d(x[:, a:e], w[a:e], b if a == 0 else None, stride=2,
                                 backend="direct") for a, e in zip(bounds, bounds[1:])]
    expected = ((parts[0] + parts[1]) + (parts[2] + parts[3]))
    np.testing.assert_array_equal(got, expected)
    assert_close(got, ct.conv_transpose2d(x, w, b, stride=2), np.float32)
    assert ct.explain(xd, w, b, stride=2).channel_partials


def test_lazy_until_compute():
    calls = []

    def load():
        calls.append(1)
        return np.ones((1, 2, 8, 8))

    x = da.from_delayed(dask.delayed(load)(), shape=(1, 2, 8, 8), dtype=np.float64)
    y = ct.conv_transpose2d(x, np.ones((2, 1, 3, 3)), stride=2)
    gx, gw, gb = ct.conv_transpose2d_backward(da.ones(y.shape), x, np.ones((2, 1, 3, 3)),
                                              stride=2)
    ct.explain(x, np.ones((2, 1, 3, 3)), stride=2)
    assert not calls
    dask.compute(y, gx, gw, gb, **SYNC)
    assert calls


def test_weight_enters_the_graph_once():
    w = np.random.default_rng(0).standard_normal((64, 64, 3, 3))
    x = da.zeros((8, 64, 64, 64), chunks=(1, 64, 16, 16))
    y = ct.conv_transpose2d(x, w, np.zeros(64), stride=2)
    layer = dict(y.dask.layers[y.name])
    holding = [k for k, v in layer.items() if isinstance(v, np.ndarray) and v.shape == w.shape]
    assert len(holding) == 1 and len(layer) > 100
    # the pickled graph holds one weight, not one per task
    assert len(pickle.dumps(layer)) < 2 * w.nbytes


@pytest.mark.parametrize("seed", range(12))
def test_backward_against_numpy(seed):
    rng = np.random.default_rng(200 + seed)
    problem = random_problem(rng)
    dtype = np.float64
    x, w, _ = operands(problem, dtype, rng)
    g = rng.standard_normal(ct.output_shape(x.shape, w.shape, **problem.kwargs)).astype(dtype)
    groups = problem.kwargs["groups"]
    xd = chunked(x, rng, groups, zero=seed % 4 == 0)
    gd = da.from_array(g, chunks=tuple(random_chunks(rng, n) for n in g.shape))
    expected = ct.conv_transpose2d_backward(g, x, w, backend="direct", **problem.kwargs)
    got = ct.conv_transpose2d_backward(gd, xd, w, backend="direct", **problem.kwargs)
    assert got[0].chunks == xd.chunks
    for a, e in zip(dask.compute(*got, **SYNC), expected):
        assert a.shape == e.shape and a.dtype == e.dtype
        assert_close(a, e, dtype, factor=10)


def test_backward_grad_input_bitwise_and_flags():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 9, 10)).astype(np.float32)
    w = rng.standard_normal((4, 5, 3, 3)).astype(np.float32)
    kw = dict(stride=2, padding=((0, 2), (1, 0)), output_padding=1)
    g = rng.standard_normal(ct.output_shape(x.shape, w.shape, **kw)).astype(np.float32)
    gd = da.from_array(g, chunks=(1, 5, 7, 6))          # one channel chunk: no partials
    gx, gw, gb = ct.conv_transpose2d_backward(gd, da.from_array(x, chunks=(1, 4, 4, 5)), w,
                                              backend="direct", needs_bias_grad=False, **kw)
    assert gb is None
    ex, ew, _ = ct.conv_transpose2d_backward(g, x, w, backend="direct", **kw)
    np.testing.assert_array_equal(gx.compute(**SYNC), ex)
    assert_close(gw.compute(**SYNC), ew, np.float32, factor=10)
    # a NumPy x beside a Dask grad_output
    only = ct.conv_transpose2d_backward(gd, x, w, backend="direct", needs_weight_grad=False,
                                        **kw)
    np.testing.assert_array_equal(only[0].compute(**SYNC), ex)
    assert only[1] is None


@pytest.mark.parametrize("seed", range(6))
def test_conv2d_forward_and_backward(seed):
    rng = np.random.default_rng(300 + seed)
    groups = [1, 2, 3][seed % 3]
    x = rng.standard_normal((2, 3 * groups, 11, 9))
    w = rng.standard_normal((2 * groups, 3, 3, 2))
    b = rng.standard_normal(2 * groups)
    kw = dict(stride=(1, 2), padding=[1, "same", ((2, 0), (0, 1))][seed % 3], dilation=1,
              groups=groups)
    if kw["padding"] == "same":
        kw["stride"] = 1
    xd = da.from_array(x, chunks=(1, 3 * groups if groups == 1 else 3, 4, 5))
    y = ct.conv2d(xd, w, b, backend="direct", **kw)
    np.testing.assert_array_equal(y.compute(**SYNC), ct.conv2d(x, w, b, backend="direct", **kw))
    g = rng.standard_normal(y.shape)
    got = ct.conv2d_backward(da.from_array(g, chunks=(1, 2, 3, 3)), xd, w, **kw)
    assert got[0].chunks == xd.chunks
    for a, e in zip(dask.compute(*got, **SYNC), ct.conv2d_backward(g, x, w, **kw)):
        assert_close(a, e, np.float64, factor=10)


def test_layers_take_dask_arrays():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((4, 6, 8, 8)).astype(np.float32)
    xd = da.from_array(x, chunks=(2, 6, 4, 4))
    for layer in (ct.ConvTranspose2d(6, 4, 4, stride=2, padding=1, seed=0),
                  ct.Conv2d(6, 4, 3, padding=1, seed=0)):
        y = layer(xd)
        assert isinstance(y, da.Array)
        g = np.ones(y.shape, np.float32)
        gx = layer.backward(da.from_array(g, chunks=y.chunks))
        assert isinstance(gx, da.Array)
        # the parameters' gradients are NumPy arrays (reduced at backward), so an
        # optimiser step keeps the weights NumPy
        assert isinstance(layer.weight_grad, np.ndarray)
        assert isinstance(layer.bias_grad, np.ndarray)
        gw, gb = layer.weight_grad, layer.bias_grad
        layer(x)
        layer.backward(g)
        assert_close(gw, layer.weight_grad, np.float32, factor=10)
        assert_close(gb, layer.bias_grad, np.float32, factor=10)
        assert_close(gx.compute(**SYNC), layer.backward(g), np.float32)


def test_zero_size_chunks_and_empty_batch():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 4, 8, 6))
    w = rng.standard_normal((4, 2, 3, 3))
    xd = da.from_array(x, chunks=((1, 0, 2), (4,), (0, 5, 3, 0), (6,)))
    np.testing.assert_array_equal(ct.conv_transpose2d(xd, w, stride=2, backend="direct")
                                  .compute(**SYNC), ct.conv_transpose2d(x, w, stride=2,
                                                                        backend="direct"))
    empty = ct.conv_transpose2d(xd[:0], w, stride=2)
    assert empty.shape == (0, 2, 17, 13) and empty.compute(**SYNC).shape == (0, 2, 17, 13)


def test_bad_input():
    x = da.zeros((1, 2, 4, 4), chunks=2)
    w = np.zeros((2, 1, 3, 3))
    with pytest.raises(TypeError, match="weight is a Dask array"):
        ct.conv_transpose2d(x, da.from_array(w))
    with pytest.raises(TypeError, match="bias is a Dask array"):
        ct.conv_transpose2d(x, w, da.zeros(1))
    with pytest.raises(TypeError, match="weight is a Dask array"):
        ct.conv_transpose2d(np.zeros((1, 2, 4, 4)), da.from_array(w))
    with pytest.raises(TypeError, match="out="):
        ct.conv_transpose2d(x, w, out=np.empty((1, 1, 6, 6)))
    unknown = x[x[:, 0, 0, 0] > -1]           # boolean indexing: NaN chunk sizes
    with pytest.raises(ValueError, match="x has unknown"):
        ct.conv_transpose2d(unknown, w)
    with pytest.raises(ValueError, match="grad_output has unknown"):
        ct.conv_transpose2d_backward(unknown, x, w)

    class FakeCuda:
        __cuda_array_interface__ = {}
        shape, dtype = (2, 1, 3, 3), np.dtype(np.float64)

    with pytest.raises(TypeError, match="mixed Dask and CUDA"):
        ct.conv_transpose2d(x, FakeCuda())
    with pytest.raises(TypeError, match="mixed Dask and CUDA"):
        ct.conv_transpose2d_backward(da.zeros((1, 1, 6, 6)), FakeCuda(), w)
    with pytest.raises(ValueError, match="stride"):       # validation as for NumPy
        ct.conv_transpose2d(x, w, stride=0)
    with pytest.raises(ValueError, match="backend"):
        ct.conv_transpose2d(x, w, backend="gpu")


def test_threaded_scheduler_and_repeatability():
    rng = np.random.default_rng(13)
    x = rng.standard_normal((4, 8, 24, 24)).astype(np.float32)
    w = rng.standard_normal((8, 4, 4, 4)).astype(np.float32)
    xd = da.from_array(x, chunks=(1, 4, 8, 12))
    y = ct.conv_transpose2d(xd, w, stride=2, padding=1, backend="direct")
    first = y.compute(scheduler="threads", num_workers=4)
    assert np.array_equal(first, y.compute(scheduler="threads", num_workers=2))
    assert np.array_equal(first, y.compute(**SYNC))


def test_import_does_not_import_dask():
    code = ("import sys, convtranspose, numpy as np; "
            "convtranspose.conv_transpose2d(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2))); "
            "print('dask' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_is_dask_array():
    assert dask_ops.is_dask_array(da.zeros(3))
    assert not dask_ops.is_dask_array(np.zeros(3))
    assert not dask_ops.is_dask_array(None)


def test_local_cluster_of_two_processes():
    distributed = pytest.importorskip("distributed")
    rng = np.random.default_rng(17)
    x = rng.standard_normal((4, 6, 40, 36)).astype(np.float32)
    w = rng.standard_normal((6, 3, 4, 4)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    xd = da.from_array(x, chunks=(2, 6, 20, 12))
    kw = dict(stride=2, padding=1, backend="direct")
    expected = ct.conv_transpose2d(x, w, b, **kw)
    g = rng.standard_normal(expected.shape).astype(np.float32)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        y = ct.conv_transpose2d(xd, w, b, **kw)
        grads = ct.conv_transpose2d_backward(da.from_array(g, chunks=(2, 3, 40, 24)), xd, w,
                                             **kw)
        got, *got_grads = client.compute([y, *grads], sync=True)
        ran_on = client.run(lambda: "convtranspose" in sys.modules)
    assert len(ran_on) == 2 and all(ran_on.values())
    np.testing.assert_array_equal(got, expected)
    for a, e in zip(got_grads, ct.conv_transpose2d_backward(g, x, w, **kw)):
        assert_close(a, e, np.float32, factor=10)


@pytest.mark.parametrize("call", [
    lambda a, one, b: ct.conv_transpose2d(a, one, b, stride=1, padding=1, output_padding=2,
                                          dilation=3, backend="direct"),
    lambda a, one, b: ct.conv2d(a, one, b, stride=3, padding=1, backend="direct"),
    lambda a, one, b: ct.conv_transpose2d_backward(a, one, one, stride=3, padding=1,
                                                   output_padding=2, backend="direct"),
    lambda a, one, b: ct.conv2d_backward(a[..., :1, :1], one, one, stride=3, padding=1,
                                         backend="direct"),
], ids=["ct_output_padding", "conv2d_padding_only", "ct_backward", "conv2d_backward"])
def test_axes_that_no_input_reaches(call):
    """Valid calls where no input reaches any output of an axis (output padding beyond
    the stride, padding beyond the kernel) as the NumPy call computes them."""
    one, b = np.ones((1, 1, 1, 1)), np.array([5.0])
    expected = call(one, one, b)
    got = call(da.from_array(one), one, b)
    got = dask.compute(*got, **SYNC) if isinstance(got, tuple) else got.compute(**SYNC)
    for a, e in zip(got if isinstance(got, tuple) else [got],
                    expected if isinstance(expected, tuple) else [expected]):
        np.testing.assert_array_equal(a, e)


def test_calls_that_differ_only_in_groups_get_their_own_graphs():
    rng = np.random.default_rng(21)
    x = rng.standard_normal((1, 4, 3, 3))
    w = rng.standard_normal((4, 2, 2, 2))
    xd = da.from_array(x)
    y1, y2 = (ct.conv_transpose2d(xd, w, groups=g, backend="direct") for g in (1, 2))
    assert y1.name != y2.name
    r1, r2 = dask.compute(y1, y2, **SYNC)
    np.testing.assert_array_equal(r1, ct.conv_transpose2d(x, w, groups=1, backend="direct"))
    np.testing.assert_array_equal(r2, ct.conv_transpose2d(x, w, groups=2, backend="direct"))
    g = rng.standard_normal((1, 4, 2, 2))
    gd = da.from_array(g)
    w2 = rng.standard_normal((4, 2, 2, 2))
    a = ct.conv2d_backward(gd, rng.standard_normal((1, 2, 3, 3)), w2, groups=1)[0]
    b = ct.conv2d_backward(gd, rng.standard_normal((1, 4, 3, 3)), w2, groups=2)[0]
    ra, rb = dask.compute(a, b, **SYNC)
    assert ra.shape == a.shape and rb.shape == b.shape


@pytest.mark.parametrize("dtypes", [("f4", "f8", "f4"), ("f4", "f4", "f8"), ("f8", "f4", "f4")])
def test_gradient_dtypes_follow_all_operands(dtypes):
    rng = np.random.default_rng(23)
    g_dt, x_dt, w_dt = dtypes
    x = rng.standard_normal((2, 3, 4, 5)).astype(x_dt)
    w = rng.standard_normal((3, 2, 3, 3)).astype(w_dt)
    g = rng.standard_normal(ct.output_shape(x.shape, w.shape, stride=2)).astype(g_dt)
    expected = ct.conv_transpose2d_backward(g, x, w, stride=2, backend="direct")
    lazy = ct.conv_transpose2d_backward(da.from_array(g, chunks=(1, 2, 4, 5)), x, w, stride=2,
                                        backend="direct")
    for a, e in zip(dask.compute(*lazy, **SYNC), expected):
        assert a.dtype == e.dtype
        assert_close(a, e, e.dtype, factor=10)
    cx = ct.conv2d(x, np.ones((2, 3, 2, 2), w_dt))
    lazy = ct.conv2d_backward(da.from_array(cx.astype(g_dt)), x, np.ones((2, 3, 2, 2), w_dt))
    expected = ct.conv2d_backward(cx.astype(g_dt), x, np.ones((2, 3, 2, 2), w_dt))
    for a, e in zip(dask.compute(*lazy, **SYNC), expected):
        assert a.dtype == e.dtype


@pytest.mark.parametrize("case", [
    ((2, 49, 11, 6), (49, 14, 4, 4), dict(padding=1), (1, 49, 2, 4)),
    ((2, 64, 16, 16), (64, 64, 3, 3), dict(dilation=2, padding=2), (1, 64, 5, 7)),
    ((3, 32, 9, 10), (32, 16, 4, 4), dict(stride=2, padding=1), (1, 32, 1, 3)),
    ((2, 16, 7, 9), (16, 24, 3, 5), dict(stride=(3, 2), padding=((2, 0), (1, 3)),
                                          output_padding=(1, 1)), (2, 16, 2, 4)),
])
def test_engine_layers_bitwise_whatever_the_chunks(case):
    """Layers with many channels, which ``direct`` runs on the register-blocked engine: its
    per-pixel sum (taps from the kernel's residue class, fixed blocks of the depth) does
    not change with the image's size, so tiles are bitwise the whole call."""
    from convtranspose.cpu.direct import uses_engine
    from convtranspose.params import normalise
    x_shape, w_shape, kw, chunks = case
    rng = np.random.default_rng(29)
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    params = normalise(x.shape, w.shape, None, [x.dtype, w.dtype], **kw)[0]
    assert uses_engine(w.shape, params)
    expected = ct.conv_transpose2d(x, w, backend="direct", **kw)
    got = ct.conv_transpose2d(da.from_array(x, chunks=chunks), w, backend="direct", **kw)
    np.testing.assert_array_equal(got.compute(**SYNC), expected)


def test_graph_keeps_the_values_of_the_call():
    rng = np.random.default_rng(31)
    layer = ct.ConvTranspose2d(3, 2, 3, stride=2, seed=0)
    x = rng.standard_normal((1, 3, 5, 5)).astype(np.float32)
    expected = layer(x)
    y = layer(da.from_array(x))
    layer.weight -= 1.0                   # an optimiser's in-place step before compute
    layer.bias *= 2.0
    np.testing.assert_array_equal(y.compute(**SYNC), expected)


@pytest.mark.skipif(ct.cuda.is_available(), reason="a GPU (or the simulator) is here")
def test_cuda_backend_without_gpu_fails_when_built():
    with pytest.raises(RuntimeError, match="cuda"):
        ct.conv_transpose2d(da.zeros((1, 1, 4, 4)), np.ones((1, 1, 2, 2)), backend="cuda")


# ----------------------------------------------------------------------------
# 3-D: the same tiles, halos and channel blocks as 2-D (issue 23, item 4)

LAYOUTS_3D = ("NCDHW", "NDHWC")
SMALL_3D = dict(max_channels=6, max_size=6, max_kernel=3, max_stride=3, max_dilation=2, rank=3)


def in_layout(a, fmt):
    """A channels-first 3-D array (batched or not) as C-contiguous memory of ``fmt``."""
    return np.ascontiguousarray(np.moveaxis(a, -4, -1)) if fmt == "NDHWC" else a


def channel_axis(a, fmt):
    return a.ndim - 1 if fmt == "NDHWC" else a.ndim - 4


def conv_problem_3d(rng):
    """A valid random ``conv3d`` problem: ``(x_shape, w_shape, bias, kwargs)``."""
    from convtranspose.params import normalise_conv
    while True:
        p = random_problem(rng, **SMALL_3D)
        groups = p.kwargs["groups"]
        w_shape = (p.w_shape[1] * groups, p.x_shape[-4] // groups, *p.w_shape[2:])
        kwargs = {k: v for k, v in p.kwargs.items() if k != "output_padding"}
        try:
            normalise_conv(p.x_shape, w_shape, None, [np.dtype(np.float64)], rank=3, **kwargs)
        except ValueError:      # the dilated kernel is larger than the padded input
            continue
        return p.x_shape, w_shape, p.bias, kwargs


def merges_chunks(y):
    """Whether ``y``'s graph rechunks anything (the tiles read the input's own chunks)."""
    return any(name.startswith("rechunk") for name in y.dask.layers)


@pytest.mark.parametrize("fmt", LAYOUTS_3D)
def test_3d_output_chunks_follow_the_input(fmt):
    x = da.zeros((4, 3, 16, 12, 8), chunks=(2, 3, 4, 6, 4), dtype=np.float32)
    x = x.transpose(0, 2, 3, 4, 1) if fmt == "NDHWC" else x

    def laid(chunks):       # channels-first chunks in the layout of fmt
        return chunks[:1] + chunks[2:] + chunks[1:2] if fmt == "NDHWC" else chunks

    y = ct.conv_transpose3d(x, np.zeros((3, 2, 4, 4, 4), np.float32), stride=2, padding=1,
                            data_format=fmt)
    # times the stride: not one chunk per image
    assert y.chunks == laid(((2, 2), (2,), (8,) * 4, (12,) * 2, (8,) * 2))
    c = ct.conv3d(x, np.zeros((5, 3, 3, 3, 3), np.float32), stride=2, padding=1,
                  data_format=fmt)
    assert c.chunks == laid(((2, 2), (5,), (2,) * 4, (3,) * 2, (2,) * 2))   # divided by it
    one = ct.conv3d(x, np.zeros((5, 3, 1, 1, 1), np.float32), data_format=fmt)
    assert one.chunks == laid(((2, 2), (5,), (4,) * 4, (6,) * 2, (4,) * 2))   # x's own


@pytest.mark.parametrize("seed", range(24))
def test_3d_forward_bitwise_whatever_the_chunks(seed):
    rng = np.random.default_rng(1000 + seed)
    problem = random_problem(rng, **SMALL_3D)
    dtype = np.float32 if seed % 2 else np.float64
    fmt = LAYOUTS_3D[seed // 2 % 2]
    x, w, b = operands(problem, dtype, rng)
    x = in_layout(x, fmt)
    xd = chunked(x, rng, problem.kwargs["groups"], zero=seed % 3 == 0,
                 c_axis=channel_axis(x, fmt))
    kw = dict(problem.kwargs, backend="direct", data_format=fmt)
    expected = ct.conv_transpose3d(x, w, b, **kw)
    y = ct.conv_transpose3d(xd, w, b, **kw)
    assert isinstance(y, da.Array) and y.shape == expected.shape and y.dtype == expected.dtype
    assert not merges_chunks(y)
    np.testing.assert_array_equal(y.compute(**SYNC), expected, strict=True)


@pytest.mark.parametrize("seed", range(12))
def test_3d_conv3d_bitwise_whatever_the_chunks(seed):
    rng = np.random.default_rng(1100 + seed)
    x_shape, w_shape, has_bias, kwargs = conv_problem_3d(rng)
    fmt = LAYOUTS_3D[seed % 2]
    x = in_layout(rng.standard_normal(x_shape), fmt)
    w = rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0]) if has_bias else None
    xd = chunked(x, rng, kwargs["groups"], zero=seed % 3 == 0, c_axis=channel_axis(x, fmt))
    kw = dict(kwargs, backend="direct", data_format=fmt)
    expected = ct.conv3d(x, w, b, **kw)
    y = ct.conv3d(xd, w, b, **kw)
    assert not merges_chunks(y)
    np.testing.assert_array_equal(y.compute(**SYNC), expected, strict=True)


@pytest.mark.parametrize("backend", ["im2col", "auto"])
@pytest.mark.parametrize("seed", range(4))
def test_3d_other_backends_and_any_channel_chunks_close(backend, seed):
    rng = np.random.default_rng(1150 + seed)
    problem = random_problem(rng, **SMALL_3D)
    x, w, b = operands(problem, np.float64, rng)
    # any channel chunks: partial sums with one group, blocks widened to whole groups else
    xd = da.from_array(x, chunks=tuple(random_chunks(rng, n) for n in x.shape))
    expected = ct.conv_transpose3d(x, w, b, backend=backend, **problem.kwargs)
    got = ct.conv_transpose3d(xd, w, b, backend=backend, **problem.kwargs).compute(**SYNC)
    assert_close(got, expected, np.float64)


def test_3d_channel_partials_summed_in_fixed_order():
    rng = np.random.default_rng(1170)
    x = rng.standard_normal((2, 10, 5, 4, 3)).astype(np.float32)
    w = rng.standard_normal((10, 3, 3, 2, 2)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    xd = da.from_array(x, chunks=(1, (3, 2, 4, 1), 3, 2, 2))
    got = ct.conv_transpose3d(xd, w, b, stride=2, backend="direct").compute(**SYNC)
    bounds = [0, 3, 5, 9, 10]
    parts = [ct.conv_transpose3d(x[:, a:e], w[a:e], b if a == 0 else None, stride=2,
                                 backend="direct") for a, e in zip(bounds, bounds[1:])]
    np.testing.assert_array_equal(got, (parts[0] + parts[1]) + (parts[2] + parts[3]))
    assert_close(got, ct.conv_transpose3d(x, w, b, stride=2), np.float32)
    assert ct.explain(xd, w, b, stride=2).channel_partials


@pytest.mark.parametrize("seed", range(10))
def test_3d_backward_against_numpy(seed):
    rng = np.random.default_rng(1200 + seed)
    problem = random_problem(rng, **SMALL_3D)
    fmt, groups = LAYOUTS_3D[seed % 2], problem.kwargs["groups"]
    x, w, _ = operands(problem, np.float64, rng)
    g = rng.standard_normal(ct.output_shape(x.shape, w.shape, **problem.kwargs))
    x, g = in_layout(x, fmt), in_layout(g, fmt)
    xd = chunked(x, rng, groups, zero=seed % 4 == 0, c_axis=channel_axis(x, fmt))
    gd = chunked(g, rng, groups, c_axis=channel_axis(g, fmt))    # no channel partials
    kw = dict(problem.kwargs, backend="direct", data_format=fmt)
    expected = ct.conv_transpose3d_backward(g, x, w, **kw)
    got = ct.conv_transpose3d_backward(gd, xd, w, **kw)
    assert got[0].chunks == xd.chunks
    assert got[1].chunks == tuple((n,) for n in w.shape)
    assert got[2].chunks == ((w.shape[1] * groups,),)
    gx, gw, gb = dask.compute(*got, **SYNC)
    np.testing.assert_array_equal(gx, expected[0], strict=True)
    for a, e in ((gw, expected[1]), (gb, expected[2])):     # sums in another order
        assert a.shape == e.shape and a.dtype == e.dtype
        assert_close(a, e, np.float64, factor=10)


@pytest.mark.parametrize("seed", range(6))
def test_3d_conv3d_backward_against_numpy(seed):
    rng = np.random.default_rng(1300 + seed)
    x_shape, w_shape, _, kwargs = conv_problem_3d(rng)
    fmt, groups = LAYOUTS_3D[seed % 2], kwargs["groups"]
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    g = rng.standard_normal(ct.conv3d(x, w, **kwargs).shape)
    x, g = in_layout(x, fmt), in_layout(g, fmt)
    xd = chunked(x, rng, groups, zero=seed % 3 == 0, c_axis=channel_axis(x, fmt))
    gd = chunked(g, rng, groups, c_axis=channel_axis(g, fmt))
    kw = dict(kwargs, backend="direct", data_format=fmt)
    expected = ct.conv3d_backward(g, x, w, **kw)
    got = ct.conv3d_backward(gd, xd, w, **kw)
    assert got[0].chunks == xd.chunks and got[1].chunks == tuple((n,) for n in w.shape)
    gx, gw, gb = dask.compute(*got, **SYNC)
    np.testing.assert_array_equal(gx, expected[0], strict=True)
    for a, e in ((gw, expected[1]), (gb, expected[2])):
        assert_close(a, e, np.float64, factor=10)


def test_3d_explain_describes_the_tiles():
    x = da.zeros((2, 4, 8, 12, 16), chunks=(1, 4, 4, 6, 8), dtype=np.float32)
    w = np.zeros((4, 2, 4, 4, 4), np.float32)
    plan = ct.explain(x, w, stride=2, padding=1)
    y = ct.conv_transpose3d(x, w, stride=2, padding=1)
    assert isinstance(plan, dask_ops.GraphPlan)
    assert plan.input_chunks == x.chunks
    assert plan.output_chunks == y.chunks == ((1, 1), (2,), (8, 8), (12, 12), (16, 16))
    assert plan.halo == ((1, 1),) * 3
    # 16 tiles, the weight, and the halo strips copied out of neighbouring chunks
    assert plan.tasks == len(y.dask.layers[y.name]) > 17
    assert sum(plan.backends.values()) == 16
    text = str(plan)
    assert "x 2 x 2 x 2 tiles" in text and "slices (1, 1)" in text
    assert ct.explain(x, w, stride=2, padding=1, backend="direct").backends == {"direct": 16}
    last = ct.explain(x.transpose(0, 2, 3, 4, 1), w, stride=2, padding=1,
                      data_format="NDHWC")
    assert last.output_chunks == plan.output_chunks and last.halo == plan.halo


def piece_size(key, x):
    """Elements of the piece of ``x`` a tile task names: a chunk, or a halo strip of one
    (whose key ends with the strip's bounds)."""
    rank = x.ndim - 2
    sizes = [x.chunks[0][key[1]], x.chunks[1][key[2]]]
    if key[0] == x.name:
        return math.prod(sizes + [x.chunks[2 + a][key[3 + a]] for a in range(rank)])
    assert key[0] == f"{x.name}-strip"
    ends = key[3 + rank:]
    return math.prod(sizes + [ends[2 * a + 1] - ends[2 * a] for a in range(rank)])


@pytest.mark.parametrize("op", ["conv_transpose3d", "conv3d"])
def test_3d_no_task_reads_more_than_its_chunk_and_halo(op):
    """Small chunks of a larger volume: every tile task reads its chunk plus the halo, never
    the whole image, and no layer merges the chunks first."""
    x = da.zeros((2, 3, 24, 24, 24), chunks=(1, 3, 6, 6, 6), dtype=np.float32)
    if op == "conv_transpose3d":
        y = ct.conv_transpose3d(x, np.zeros((3, 2, 3, 3, 3), np.float32), stride=2, padding=1)
    else:
        y = ct.conv3d(x, np.zeros((2, 3, 3, 3, 3), np.float32), padding=1)
    layer = dict(y.dask.layers[y.name])
    tasks = [v for v in layer.values() if isinstance(v, tuple) and v[0] is dask_ops._run]
    assert len(tasks) == 2 * 4 ** 3
    chunk_and_halo = 3 * (6 + 1 + 1) ** 3         # halo of one row each side on every axis
    for task in tasks:
        read = sum(piece_size(key, x) for _, key in dask_ops._cells(task[2]))
        assert read <= chunk_and_halo < x[0].size
    assert set(y.dask.dependencies[y.name]) == {x.name}


# ----------------------------------------------------------------------------
# the operand rules, the same at every rank

FUNCTIONS = {1: (ct.conv_transpose1d, ct.conv1d, ct.conv_transpose1d_backward,
                 ct.conv1d_backward),
             2: (ct.conv_transpose2d, ct.conv2d, ct.conv_transpose2d_backward,
                 ct.conv2d_backward),
             3: (ct.conv_transpose3d, ct.conv3d, ct.conv_transpose3d_backward,
                 ct.conv3d_backward)}

REFUSALS = {      # case: (exception, message), whatever the rank
    "dask weight": (TypeError, "weight is a Dask array"),
    "dask weight, numpy x": (TypeError, "weight is a Dask array"),
    "dask bias": (TypeError, "bias is a Dask array"),
    "dask bias, numpy x": (TypeError, "bias is a Dask array"),
    "conv3d-like dask weight": (TypeError, "weight is a Dask array"),
    "conv dask bias, numpy x": (TypeError, "bias is a Dask array"),
    "backward dask weight": (TypeError, "weight is a Dask array"),
    "conv backward dask weight": (TypeError, "weight is a Dask array"),
    "out=": (TypeError, "out= is not supported with Dask"),
    "dask out, numpy x": (TypeError, "out= is not supported with Dask"),
    "unknown x": (ValueError, "x has unknown"),
    "conv unknown x": (ValueError, "x has unknown"),
    "unknown grad_output": (ValueError, "grad_output has unknown"),
    "unknown x beside grad_output": (ValueError, "x has unknown"),
}


def bad_calls(rank):
    """The calls of :data:`REFUSALS` at ``rank``."""
    f, conv, back, conv_back = FUNCTIONS[rank]
    x = np.zeros((2, 2) + (4,) * rank)
    w, cw, b = np.zeros((2, 1) + (3,) * rank), np.zeros((1, 2) + (3,) * rank), np.zeros(1)
    y, c = f(x, w), conv(x, cw)
    xd, yd, cd = (da.from_array(a, chunks=1) for a in (x, y, c))

    def unknown(a):          # boolean indexing: NaN batch chunk sizes
        return a[a.reshape(a.shape[0], -1).sum(axis=1) > -1]

    return {
        "dask weight": lambda: f(xd, da.from_array(w)),
        "dask weight, numpy x": lambda: f(x, da.from_array(w)),
        "dask bias": lambda: f(xd, w, da.from_array(b)),
        "dask bias, numpy x": lambda: f(x, w, da.from_array(b)),
        "conv3d-like dask weight": lambda: conv(xd, da.from_array(cw)),
        "conv dask bias, numpy x": lambda: conv(x, cw, da.from_array(b)),
        "backward dask weight": lambda: back(yd, xd, da.from_array(w)),
        "conv backward dask weight": lambda: conv_back(cd, xd, da.from_array(cw)),
        "out=": lambda: f(xd, w, out=np.empty(y.shape)),
        "dask out, numpy x": lambda: f(x, w, out=da.from_array(np.empty(y.shape))),
        "unknown x": lambda: f(unknown(xd), w),
        "conv unknown x": lambda: conv(unknown(xd), cw),
        "unknown grad_output": lambda: back(unknown(yd), xd, w),
        "unknown x beside grad_output": lambda: back(yd, unknown(xd), w),
    }


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_dask_refusals_are_the_same_at_every_rank(rank):
    calls = bad_calls(rank)
    assert calls.keys() == REFUSALS.keys()
    for case, call in calls.items():
        error, message = REFUSALS[case]
        with pytest.raises(error, match=message) as info:
            call()
        assert type(info.value) is error, case


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_zero_size_chunks_at_every_rank(rank):
    rng = np.random.default_rng(1400 + rank)
    f, conv, back, _ = FUNCTIONS[rank]
    x = rng.standard_normal((3, 4) + (5,) * rank)
    w = rng.standard_normal((4, 2) + (3,) * rank)
    xd = da.from_array(x, chunks=((1, 0, 2), (4,)) + ((0, 3, 2, 0),) * rank)
    kw = dict(stride=2, backend="direct")
    y = f(x, w, **kw)
    np.testing.assert_array_equal(f(xd, w, **kw).compute(**SYNC), y)
    cw = np.ascontiguousarray(np.swapaxes(w, 0, 1))
    np.testing.assert_array_equal(conv(xd, cw, **kw).compute(**SYNC), conv(x, cw, **kw))
    gx = back(da.from_array(y, chunks=2), xd, w, **kw)[0]
    assert gx.chunks == xd.chunks
    np.testing.assert_array_equal(gx.compute(**SYNC), back(y, x, w, **kw)[0])
    empty = f(xd[:0], w, stride=2)
    assert empty.shape == (0,) + y.shape[1:] and empty.compute(**SYNC).shape == empty.shape


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_whole_output_size_in_channels_last_gradients(rank):
    """A whole result shape given as ``output_size`` is read in the caller's layout by the
    lazy gradients too (C_out differs from the spatial sizes, so a misreading shows)."""
    rng = np.random.default_rng(1500 + rank)
    fmt = ("NWC", "NHWC", "NDHWC")[rank - 1]
    x = rng.standard_normal((2,) + (2,) * rank + (5,))
    w = rng.standard_normal((5, 4) + (3,) * rank)
    f, _, back, _ = FUNCTIONS[rank]
    y = f(x, w, stride=3, output_padding=1, data_format=fmt)
    kw = dict(stride=3, output_size=y.shape, data_format=fmt, backend="direct")
    got = back(da.from_array(y, chunks=1), da.from_array(x, chunks=1), w, **kw)
    for a, e in zip(dask.compute(*got, **SYNC), back(y, x, w, **kw)):
        assert_close(a, e, np.float64, factor=10)


def test_3d_graph_pickles_for_distributed_workers():
    """The 3-D tasks name the NumPy 3-D functions, which pickle by reference."""
    rng = np.random.default_rng(1600)
    x = rng.standard_normal((2, 3, 6, 5, 4))
    w = rng.standard_normal((3, 2, 3, 3, 3))
    y = ct.conv_transpose3d(da.from_array(x, chunks=(1, 3, 3, 3, 2)), w, stride=2,
                            backend="direct")
    graph = pickle.loads(pickle.dumps(dict(y.__dask_graph__())))
    again = da.Array(graph, y.name, chunks=y.chunks, dtype=y.dtype)
    np.testing.assert_array_equal(again.compute(**SYNC),
                                  ct.conv_transpose3d(x, w, stride=2, backend="direct"))
