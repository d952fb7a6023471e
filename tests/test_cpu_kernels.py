"""Focused tests of the CPU code paths: sub-pixel phases, chunking, workspace reuse,
the serial direct kernel, the cost model's plumbing, the caches and ``blas_info``.

Every numeric check compares against the float64 oracle
:func:`convtranspose.reference.conv_transpose2d_reference`.
"""
import numpy as np
import pytest

import convtranspose as ct
from convtranspose import dispatch
from convtranspose.cpu import blas, direct, im2col
from convtranspose.params import normalise
from convtranspose.reference import conv_transpose2d_reference
from convtranspose.testing import assert_close, random_problem

# (x_shape, w_shape, kwargs): strides, dilation, asymmetric padding, output_padding,
# groups, single-row / single-pixel inputs, stride 1 (the GEMM writes the output).
CASES = [
    ((2, 3, 5, 4), (3, 2, 4, 4), dict(stride=2, padding=1)),
    ((1, 4, 3, 6), (4, 3, 3, 2), dict(stride=(3, 2), padding=((0, 2), (1, 0)),
                                      output_padding=(1, 1))),
    ((2, 4, 5, 5), (4, 2, 3, 3), dict(stride=1, padding=2, dilation=2)),
    ((1, 6, 4, 4), (6, 1, 3, 3), dict(stride=2, groups=3, dilation=(1, 2))),
    ((3, 5, 1, 1), (5, 4, 4, 4), dict(stride=1)),                   # dense 1x1 path
    ((2, 4, 1, 1), (4, 3, 3, 2), dict(stride=2, padding=((1, 0), (0, 1)), dilation=2)),
    ((2, 4, 1, 5), (4, 2, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ((2, 4, 1, 1), (4, 1, 3, 3), dict(groups=2, padding=1)),        # 1x1 with groups
    ((3, 6, 1, 1), (6, 4, 4, 4), dict(groups=3)),                   # dense 1x1, 3 groups
    ((2, 9, 1, 1), (9, 2, 3, 3), dict(groups=3, stride=2, padding=((1, 0), (0, 1)),
                                      dilation=2)),                 # ... crops
    ((2, 17, 1, 1), (17, 2, 2, 2), dict(groups=17)),                # past _DENSE_GROUPS
    ((2, 3, 1, 1), (3, 2, 4, 4), dict(stride=3, padding=1, output_padding=2)),
    ((1, 2, 3, 3), (2, 2, 2, 2), dict(stride=5)),                   # phases with no taps
    ((1, 2, 6, 7), (2, 3, 16, 16), dict(stride=8, padding=4)),      # FCN-like
]
FORMS = sorted(im2col.FORMS)


def _problem(x_shape, w_shape, kwargs, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[1] * kwargs.get("groups", 1)).astype(dtype)
    params, shape, _ = normalise(x.shape, w.shape, b.shape, [x.dtype], **kwargs)
    return x, w, b, params, shape


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", range(len(CASES)))
def test_im2col_forms_match_reference(form, dtype, case):
    x_shape, w_shape, kwargs = CASES[case]
    x, w, b, params, shape = _problem(x_shape, w_shape, kwargs, dtype, seed=case)
    out = np.full(shape, np.nan, dtype)     # every element must be written
    im2col.FORMS[form](x, w, b, params, out)
    assert_close(out, conv_transpose2d_reference(x, w, b, **kwargs), dtype)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("limit", [1, 700, 5000])
def test_chunked_forms_match_reference(form, limit):
    old = im2col.set_workspace_limit(limit)
    try:
        for case, (x_shape, w_shape, kwargs) in enumerate(CASES):
            x, w, b, params, shape = _problem(x_shape, w_shape, kwargs, np.float64, seed=case)
            out = np.full(shape, np.nan)
            im2col.FORMS[form](x, w, b, params, out)
            assert_close(out, conv_transpose2d_reference(x, w, b, **kwargs), np.float64)
    finally:
        im2col.set_workspace_limit(old)


def test_phase_plan_covers_each_output_once_with_the_right_taps():
    rng = np.random.default_rng(1)
    for _ in range(200):
        in_len, k = int(rng.integers(1, 7)), int(rng.integers(1, 6))
        s, d, before = int(rng.integers(1, 5)), int(rng.integers(1, 4)), int(rng.integers(0, 4))
        out_len = (in_len - 1) * s - before + d * (k - 1) + 1 + int(rng.integers(-1, 3))
        if out_len < 1:
            continue
        stride, phases, n_phases = im2col._dim_phases(in_len, out_len, k, s, d, before)
        assert n_phases == min(stride, out_len)
        assert [ph.o0 for ph in phases] == sorted({ph.o0 for ph in phases})
        seen = np.zeros(out_len, int)
        for ph in phases:
            assert ph.k_idx and ph.count == len(range(ph.o0, out_len, stride))
            for a in range(ph.count):
                o = ph.o0 + stride * a
                seen[o] += 1
                got = {(kk, off + a) for kk, off in zip(ph.k_idx, ph.offsets)
                       if 0 <= off + a < in_len}
                want = {(kk, i) for kk in range(k) for i in range(in_len)
                        if i * s + kk * d - before == o}
                assert got == want
        # outputs in no listed phase receive no tap (they hold only the bias)
        for o in np.flatnonzero(seen == 0):
            assert not [(kk, i) for kk in range(k) for i in range(in_len)
                        if i * s + kk * d - before == o]
        assert seen.max() <= 1


def test_workspace_is_reused_safely_across_shapes():
    results = []
    for case in (0, 2, 0, 9, 2):
        x_shape, w_shape, kwargs = CASES[case]
        x, w, b, params, shape = _problem(x_shape, w_shape, kwargs, np.float32, seed=case)
        for form in FORMS:
            out = np.full(shape, np.nan, np.float32)
            im2col.FORMS[form](x, w, b, params, out)
            assert_close(out, conv_transpose2d_reference(x, w, b, **kwargs), np.float32)
            results.append(out)
    im2col.release_workspace()


@pytest.mark.parametrize("case", [1, 0, 3])     # C_out/groups = 3, 2 and 1 ...
@pytest.mark.parametrize("c_out_g", [None, 8])  # ... or 8: four channels per task
def test_serial_and_parallel_direct_kernels_agree_bitwise(monkeypatch, case, c_out_g):
    x_shape, w_shape, kwargs = CASES[case]
    if c_out_g:
        w_shape = (w_shape[0], c_out_g, *w_shape[2:])
    x, w, b, params, shape = _problem(x_shape, w_shape, kwargs, np.float32)
    outs = []
    for threshold in (0, 10**12):          # parallel kernel, then the serial one
        monkeypatch.setattr(direct, "SERIAL_FLOPS", threshold)
        out = np.empty(shape, np.float32)
        direct.run(x, w, b, params, out)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    assert_close(outs[0], conv_transpose2d_reference(x, w, b, **kwargs), np.float32)


def test_auto_matches_reference_on_random_problems():
    rng = np.random.default_rng(7)
    for i in range(40):
        p = random_problem(rng)
        x, w, b = p.arrays(np.float32, seed=i)
        for _ in range(2):                  # the second call uses the caches
            got = ct.conv_transpose2d(x, w, b, **p.kwargs)
            assert_close(got, conv_transpose2d_reference(x, w, b, **p.kwargs), np.float32)


def test_choice_names_a_backend_and_explains_every_estimate():
    x = np.empty((64, 512, 4, 4), np.float32)
    w = np.empty((512, 256, 4, 4), np.float32)
    choice = ct.explain(x, w, stride=2, padding=1)
    assert choice.backend in dispatch.BACKENDS
    assert set(choice.estimates) == {"direct", "im2col/phases", "im2col/col2im"}
    assert all(t > 0 for t in choice.estimates.values())
    assert "ms" in str(choice)


def test_cached_params_keep_validation():
    x, w = np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3))
    ct.conv_transpose2d(x, w, stride=1)                      # caches stride=1
    with pytest.raises(TypeError, match="stride"):
        ct.conv_transpose2d(x, w, stride=True)               # True == 1, but refused
    with pytest.raises(ValueError, match="stride"):
        ct.conv_transpose2d(x, w, stride=0)
    ct.conv_transpose2d(x, w, padding=(1, 1))
    with pytest.raises(ValueError, match="padding"):
        ct.conv_transpose2d(x, w, padding=(-1, 1))


def test_blas_info_fields():
    info = blas.blas_info()
    assert set(info) == {"library", "version", "architecture", "threads", "cpu_avx512",
                         "warning"}


def test_blas_info_warns_when_avx512_is_unused(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    fake = [dict(user_api="blas", internal_api="openblas", num_threads=2,
                 filepath="/x/numpy.libs/libscipy_openblas.so", version="0.3.30",
                 architecture="Haswell")]
    monkeypatch.setattr(threadpoolctl, "threadpool_info", lambda: fake)
    monkeypatch.setattr(blas, "cpu_has_avx512", lambda: True)
    info = blas.blas_info()
    assert info["architecture"] == "Haswell"
    assert "OPENBLAS_CORETYPE=SkylakeX" in info["warning"]
    fake[0]["architecture"] = "SkylakeX"
    assert blas.blas_info()["warning"] is None
