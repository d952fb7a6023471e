"""Both CUDA kernels over edge shapes, against the float64 reference.

Out-of-bounds indexing is what the simulator catches (``NUMBA_ENABLE_CUDASIM=1``) and what
``compute-sanitizer --tool memcheck`` catches on a GPU (``scripts/gpu_run.sh``), so these
shapes stress every bound of the kernels' index arithmetic: 1x1 images, one channel,
kernels larger than the image, strides larger than the kernel, large strides and
dilations on tiny images, padding that crops all but one pixel, the largest
output_padding, groups equal to the channels, empty and one-image batches, channel counts
and output sizes that are not multiples of the tiles (with the simulator's tiny tiles and
the real ones), and non-contiguous device views. The extreme problems of the CPU
(``convtranspose.testing.extreme_problems``) run here scaled down to what the simulator
affords.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from numba import cuda

import convtranspose as ct
from convtranspose.reference import conv_transpose2d_reference
from convtranspose.testing import assert_close, extreme_problems

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
HUGE_STRIDE = 2**31 - 1

# (name, x shape, weight shape, kwargs): the CPU's extreme problems, scaled down
EXTREME = extreme_problems(stride=16, dilation=9, kernel=7, channels=37, huge_stride=HUGE_STRIDE)

EDGES = [
    ("all_ones", (1, 1, 1, 1), (1, 1, 1, 1), {}),
    ("kernel_over_image", (2, 2, 2, 1), (2, 3, 5, 4), dict(padding=(1, 0))),
    ("stride_over_kernel", (2, 2, 3, 2), (2, 2, 2, 1), dict(stride=(5, 3))),
    ("stride16_dilation9", (1, 2, 2, 2), (2, 2, 3, 2), dict(stride=(16, 3), dilation=(2, 9))),
    ("crop_from_top_left", (1, 3, 4, 4), (3, 2, 3, 3), dict(stride=2, padding=((8, 0), (8, 0)))),
    ("crop_from_bottom_right", (1, 3, 4, 4), (3, 2, 3, 3),
     dict(stride=2, padding=((0, 8), (1, 7)))),
    ("output_padding_max", (1, 2, 3, 3), (2, 2, 2, 3),
     dict(stride=(3, 2), dilation=(1, 4), output_padding=(2, 3))),
    ("output_padding_max_crop", (2, 2, 2, 2), (2, 3, 3, 3),
     dict(stride=4, padding=((3, 2), (0, 5)), output_padding=3)),
    ("groups_eq_channels_multiplier", (2, 5, 3, 3), (5, 2, 2, 2), dict(groups=5, stride=2)),
    ("groups_eq_channels_1x1", (1, 3, 1, 1), (3, 1, 3, 3), dict(groups=3)),
    ("n0", (0, 3, 2, 2), (3, 2, 3, 3), dict(stride=2)),
    ("n1_unbatched", (3, 2, 3), (3, 4, 2, 2), dict(stride=(1, 3))),
    ("channels_5x3_tile_remainders", (2, 5, 3, 5), (5, 3, 2, 3), dict(stride=(2, 1))),
    ("channels_17x19_real_tile_remainders", (1, 17, 2, 2), (17, 19, 1, 2), dict(stride=2)),
    ("pixels_prime", (1, 2, 7, 3), (2, 2, 1, 1), dict(stride=(1, 2))),
    # stride**2 * groups > 2**63: the tiled kernel's old tile count wrapped around
    ("groups4_stride_huge", (2, 4, 1, 1), (4, 2, 2, 2), dict(stride=HUGE_STRIDE, groups=4)),
]

# every case through both kernels; the tiled kernel's huge-stride cases run in a child
# process (a regression there would hang, not fail)
HUGE = [c for c in EXTREME + EDGES if c[3].get("stride") == HUGE_STRIDE]
CASES = [(k, c) for c in EXTREME + EDGES for k in ("gather", "tiled")
         if not (k == "tiled" and c in HUGE)]


def _arrays(name, x_shape, w_shape, kwargs, dtype):
    rng = np.random.default_rng(len(name))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[1] * kwargs.get("groups", 1)).astype(dtype)
    return x, w, b


def _check(y, x, w, b, kwargs, dtype):
    e = conv_transpose2d_reference(x, w, b, **kwargs)
    assert y.dtype == dtype
    assert y.shape == e.shape == ct.output_shape(x.shape, w.shape, **kwargs)
    assert_close(y, e, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("kernel,case", CASES, indirect=["kernel"],
                         ids=[f"{k}-{c[0]}" for k, c in CASES])
def test_edge_shape_against_reference(kernel, case, dtype):
    name, x_shape, w_shape, kwargs = case
    x, w, b = _arrays(name, x_shape, w_shape, kwargs, dtype)
    y = ct.conv_transpose2d(*(cuda.to_device(a) for a in (x, w, b)), **kwargs)
    _check(y.copy_to_host(), x, w, b, kwargs, dtype)


def _strided(a, step):
    """A device view of ``a``'s values that is not contiguous (every ``step``-th column of
    a wider array)."""
    wide = cuda.to_device(np.ascontiguousarray(np.repeat(a, step, axis=-1)))
    view = wide[..., ::step]
    assert not view.is_c_contiguous()
    return view


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("x_shape,w_shape,kwargs", [
    ((2, 3, 3, 2), (3, 2, 2, 3), dict(stride=2, padding=((1, 0), (0, 2)))),
    ((3, 1, 4), (3, 3, 3, 1), dict(stride=(1, 3), output_padding=(0, 2))),     # unbatched
], ids=["batched", "unbatched"])
def test_non_contiguous_device_views(kernel, x_shape, w_shape, kwargs, dtype):
    x, w, b = _arrays("strided", x_shape, w_shape, kwargs, dtype)
    y = ct.conv_transpose2d(_strided(x, 2), _strided(w, 3), _strided(b, 2), **kwargs)
    _check(y.copy_to_host(), x, w, b, kwargs, dtype)


_CHILD = """
import json, sys
import numpy as np
from numba import cuda
import convtranspose as ct
from convtranspose.cuda import kernels
from convtranspose.reference import conv_transpose2d_reference
from convtranspose.testing import assert_close
shapes, x_shape, w_shape, kwargs = json.loads(sys.argv[1])
for name, value in shapes.items():
    setattr(kernels, name, tuple(value) if isinstance(value, list) else value)
kernels.TILED_MIN_CHANNELS = 1
rng = np.random.default_rng(0)
x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
ct.conv_transpose2d(cuda.to_device(x), cuda.to_device(w), **dict(kwargs, stride=2))  # compiled
print("compiled", flush=True)
y = ct.conv_transpose2d(cuda.to_device(x), cuda.to_device(w), **kwargs)
assert_close(y.copy_to_host(), conv_transpose2d_reference(x, w, **kwargs), np.float64)
print("done", flush=True)
"""


@pytest.mark.parametrize("case", HUGE, ids=[c[0] for c in HUGE])
def test_tiled_kernel_finishes_for_huge_stride(case):
    """Stride 2**31 - 1 on 1x1 images: a 2x2 output that the tiled kernel covers with the
    2x2 residue classes that exist (it used to loop over all (2**31 - 1)**2 of them, and
    with groups 4 that count overflowed int64, so the loop ran zero times on a GPU and left
    the output unwritten). It runs in a child process so that a hang costs the timeout."""
    from convtranspose.cuda import kernels
    _, x_shape, w_shape, kwargs = case
    shapes = {n: getattr(kernels, n) for n in kernels.__all__ if n.isupper()}
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(ct.__file__)), env.get("PYTHONPATH", "")])
    timeout = 20 if SIMULATOR else 30
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, json.dumps([shapes, x_shape, w_shape, kwargs])],
            env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        if "compiled" in out:
            pytest.fail(f"the huge-stride launch did not finish in {timeout} s")
        pytest.skip(f"the child did not even compile in {timeout} s")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "done" in done.stdout


def _out_size(x_shape, w_shape, kwargs):
    return int(np.prod(ct.output_shape(x_shape, w_shape, **kwargs)))


def _tiles(x_shape, w_shape, kwargs, tile_co, tile_p):
    from convtranspose.cuda import kernels
    *_, h_out, w_out = ct.output_shape(x_shape, w_shape, **kwargs)
    n = x_shape[0] if len(x_shape) == 4 else 1
    stride = kwargs.get("stride", 1)
    s_h, s_w = (stride, stride) if isinstance(stride, int) else stride
    return kernels._tiled_tiles(n, w_shape[1], h_out, w_out, s_h, s_w,
                                kwargs.get("groups", 1), tile_co, tile_p)


@pytest.mark.parametrize("tile", [(2, 4), (64, 64)], ids=["tiny", "real"])
def test_tiled_tile_count_is_bounded_by_the_output(tile):
    """The tiled kernel's tile count (int64 on a GPU) stays below 10 per output element
    for every stride, so it cannot overflow; groups of 4096 with stride 2**31 - 1 gave
    (2**31 - 1)**2 * 4096 before. Shapes whose stride fits in the output (every suite
    shape) keep all stride**2 classes: the same tiles, the same work, as before."""
    from convtranspose.suite import SUITE
    wide = [("groups4096_stride_huge", (1, 4096, 1, 1), (4096, 1, 2, 2),
             dict(stride=HUGE_STRIDE, groups=4096)),
            ("stride_huge_x_3", (3, 2, 1, 5), (2, 70, 1, 3), dict(stride=(HUGE_STRIDE, 3)))]
    for name, x_shape, w_shape, kwargs in EXTREME + EDGES + wide:
        tiles = _tiles(x_shape, w_shape, kwargs, *tile)
        assert tiles < 10 * _out_size(x_shape, w_shape, kwargs) + 1, name
    for shp in SUITE:
        *_, h_out, w_out = ct.output_shape(shp.x_shape, shp.w_shape, **shp.kwargs())
        s = shp.stride
        assert s <= min(h_out, w_out)
        p_tiles = -(-(shp.n * -(-h_out // s) * -(-w_out // s)) // tile[1])
        assert _tiles(shp.x_shape, shp.w_shape, shp.kwargs(), *tile) == (
            s ** 2 * shp.groups * -(-shp.w_shape[1] // tile[0]) * p_tiles), shp.name


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_gather_tap_tables_widen_past_int32(dtype, monkeypatch):
    """Tap tables hold input rows and kernel taps as int32 while they fit, else int64
    (an image of 2**31 rows fits on a large GPU; int32 wrapped its row numbers). With the
    limit patched small, a 5x4 image runs the int64 tables through the gather kernel."""
    from convtranspose.cuda import kernels
    kwargs = dict(stride=(2, 3), padding=(1, 0), dilation=(1, 2))
    x, w, b = _arrays("int64_tables", (2, 3, 5, 4), (3, 2, 3, 3), kwargs, dtype)
    assert kernels._tables(9, 5, 3, 2, 1, 1)[2].dtype == np.int32
    monkeypatch.setattr(kernels, "TABLE_INT32_MAX", 3)
    assert [t.dtype for t in kernels._tables(9, 5, 3, 2, 1, 1)] == [np.int64] * 3
    monkeypatch.setattr(kernels, "TILED_MIN_CHANNELS", 10**9)
    y = ct.conv_transpose2d(*(cuda.to_device(a) for a in (x, w, b)), **kwargs)
    _check(y.copy_to_host(), x, w, b, kwargs, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_backward_kernels_for_huge_stride(dtype):
    """The backward kernels loop over pixels and taps, never over stride classes, and
    their index products (``oh*sH + kh*dH``) stay below 2**31 times a size: gradients of a
    grouped problem with stride 2**31 - 1 are right (conv2d's input gradient runs the
    forward kernel with that stride)."""
    from convtranspose.reference import (conv2d_backward_reference, conv2d_reference,
                                         conv_transpose2d_backward_reference)
    kwargs = dict(stride=HUGE_STRIDE, groups=4)
    x, w, _ = _arrays("backward_huge", (2, 4, 1, 1), (4, 2, 2, 2), kwargs, dtype)
    rng = np.random.default_rng(7)
    gy = rng.standard_normal((2, 8, 2, 2)).astype(dtype)
    x3 = rng.standard_normal((2, 8, 3, 3)).astype(dtype)      # conv2d: to a 1x1 output
    g1 = rng.standard_normal((2, 4, 1, 1)).astype(dtype)
    got = ct.conv_transpose2d_backward(*(cuda.to_device(a) for a in (gy, x, w)), **kwargs)
    want = conv_transpose2d_backward_reference(gy, x, w, **kwargs)
    y = ct.conv2d(cuda.to_device(x3), cuda.to_device(w), **kwargs).copy_to_host()
    assert_close(y, conv2d_reference(x3, w, **kwargs), dtype)
    got += ct.conv2d_backward(*(cuda.to_device(a) for a in (g1, x3, w)), **kwargs)
    want += conv2d_backward_reference(g1, x3, w, **kwargs)
    for g, e in zip(got, want):
        assert g.shape == e.shape
        assert_close(g.copy_to_host(), e, dtype, 10.0)
