"""The packed GEMM engine: accuracy against float64 sums, NaN/Inf, a summation order that
does not depend on how C is cut, the micro-kernel's machine code, and the portable target."""
import os
import platform
import re
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

from convtranspose.cpu import engine, simd
from convtranspose.cpu.engine import gemm

DTYPES = [np.float32, np.float64]
MR = simd.MR
NR = {d: simd.tile(d)[1] for d in DTYPES}
#: small blocks, so that small matrices cross every block boundary (KC, MC, NC)
SMALL = (7, 2 * MR + 1, 40)


def _operands(m, k, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((m, k)).astype(dtype),
            rng.standard_normal((k, n)).astype(dtype))


def _check_close(c, a, b, c0=None):
    """c against the float64 product, within the summation bound K * eps * (|a| @ |b|)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    ref = a64 @ b64 + (0 if c0 is None else c0)
    bound = (a.shape[1] + 2) * np.finfo(c.dtype).eps * (
        np.abs(a64) @ np.abs(b64) + (0 if c0 is None else np.abs(c0)))
    assert c.dtype == a.dtype
    assert np.all(np.abs(c - ref) <= bound + np.finfo(c.dtype).tiny)


def _shapes(dtype):
    nr = NR[dtype]
    return [(1, 1, 1), (1, 5, 1), (MR, 1, nr), (MR - 1, 3, nr + 1), (MR + 1, 7, 2 * nr - 1),
            (2 * MR + 3, 8, 3 * nr + 5), (1, 23, 2 * nr), (17, 1, 3), (13, 30, 37)]


def test_hand_computed():
    a = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    b = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    np.testing.assert_array_equal(gemm(a, b), [[4.0, 5.0], [10.0, 11.0]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("blocks", [None, SMALL], ids=["default", "small"])
def test_against_float64(dtype, blocks):
    for i, (m, k, n) in enumerate(_shapes(dtype)):
        a, b = _operands(m, k, n, dtype, seed=i)
        _check_close(gemm(a, b, blocks=blocks), a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_deep_and_wide(dtype):
    # K over two default KC blocks, M over one MC block, N not a multiple of NR
    a, b = _operands(engine.blocking(dtype)[1] + 5, 2 * engine.blocking(dtype)[0] + 3, 71, dtype)
    _check_close(gemm(a, b), a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_accumulate(dtype):
    a, b = _operands(MR + 2, 20, NR[dtype] + 3, dtype)
    c0 = np.random.default_rng(5).standard_normal((MR + 2, NR[dtype] + 3)).astype(dtype)
    c = c0.copy()
    assert gemm(a, b, c, accumulate=True, blocks=SMALL) is c
    _check_close(c, a, b, c0.astype(np.float64))


@pytest.mark.parametrize("m, k, n", [(0, 3, 4), (3, 0, 4), (3, 4, 0), (0, 0, 0)])
def test_zero_sizes(m, k, n):
    a, b = _operands(m, k, n, np.float64)
    c = np.full((m, n), np.nan)
    np.testing.assert_array_equal(gemm(a, b, c), np.zeros((m, n)))
    c = np.ones((m, n))
    np.testing.assert_array_equal(gemm(a, b, c, accumulate=True), np.ones((m, n)))


def test_non_contiguous_operands():
    a, b = _operands(20, 9, 30, np.float64)
    _check_close(gemm(a[::2], b[:, 1::3]), a[::2], b[:, 1::3])
    _check_close(gemm(b.T, a.T), b.T, a.T)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_where_the_definition_puts_them(dtype):
    m, k, n = MR + 1, 9, NR[dtype] + 3           # partial tiles: zero padding meets Inf
    a, b = _operands(m, k, n, dtype, seed=3)
    a[2, 4] = np.nan
    b[1, 5] = np.inf
    a[0, 1] = 0.0                                # 0 * inf = nan at C[0, 5]
    b[8, 0] = np.inf                             # +-inf down column 0
    b[7, n - 1] = -np.inf                        # inf - inf = nan where a[:, 7] and a[:, 8]
    b[8, n - 1] = np.inf                         # have the same sign, +-inf elsewhere
    with np.errstate(invalid="ignore"):
        ref = (a.astype(np.float64)[:, :, None] * b.astype(np.float64)[None]).sum(axis=1)
        c = gemm(a, b, blocks=SMALL)
    np.testing.assert_array_equal(np.isnan(c), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(c), np.isposinf(ref))
    np.testing.assert_array_equal(np.isneginf(c), np.isneginf(ref))
    assert np.isnan(ref).any() and np.isinf(ref).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_summation_order_does_not_depend_on_the_cut(dtype):
    m, k, n = 3 * MR + 4, 30, 4 * NR[dtype] + 5
    a, b = _operands(m, k, n, dtype, seed=7)
    kc = SMALL[0]
    whole = gemm(a, b, blocks=SMALL)
    for mc, nc in [(MR, NR[dtype]), (m, n), (5, 11), (1, 1)]:
        np.testing.assert_array_equal(gemm(a, b, blocks=(kc, mc, nc)), whole)
    for i0, i1, j0, j1 in [(1, m, 0, n), (0, 5, 3, n - 2), (MR + 1, 2 * MR + 3, NR[dtype], n),
                           (m - 1, m, n - 1, n)]:
        np.testing.assert_array_equal(gemm(a[i0:i1], b[:, j0:j1], blocks=SMALL),
                                      whole[i0:i1, j0:j1])


@pytest.mark.parametrize("m, n", [(3 * MR + 1, 40), (MR + 1, 9 * 16 + 3)], ids=["rows", "columns"])
def test_threads_do_not_change_the_result(m, n):
    a, b = _operands(m, 19, n, np.float32, seed=11)
    one = gemm(a, b, blocks=SMALL)
    for threads in (2, 3):
        np.testing.assert_array_equal(gemm(a, b, blocks=SMALL, threads=threads), one)


@pytest.mark.parametrize("kwargs, error", [
    (dict(a=np.ones((2, 2), np.int64), b=np.ones((2, 2), np.int64)), TypeError),
    (dict(a=np.ones((2, 2), np.float32), b=np.ones((2, 2))), TypeError),
    (dict(a=np.ones((2, 3)), b=np.ones((2, 3))), ValueError),
    (dict(a=np.ones(3), b=np.ones((3, 1))), ValueError),
    (dict(a=np.ones((2, 3)), b=np.ones((3, 4)), c=np.ones((2, 5))), ValueError),
    (dict(a=np.ones((2, 3)), b=np.ones((3, 4)), c=np.ones((4, 2)).T), ValueError),
    (dict(a=np.ones((2, 3)), b=np.ones((3, 4)), accumulate=True), ValueError),
    (dict(a=np.ones((2, 3)), b=np.ones((3, 4)), threads=0), ValueError),
    (dict(a=np.ones((2, 3)), b=np.ones((3, 4)), blocks=(0, 6, 8)), ValueError),
])
def test_validation(kwargs, error):
    with pytest.raises(error, match="gemm"):
        gemm(**kwargs)


def test_packing_layout():
    a = np.arange((MR + 3) * 5, dtype=np.float64).reshape(MR + 3, 5)
    ap = np.full(2 * MR * 3, np.nan)
    engine.pack_a(a, 1, MR + 1, 2, 3, ap)           # rows 1..MR+1, columns 2..4
    block = np.zeros((2 * MR, 3))
    block[:MR + 1] = a[1:MR + 2, 2:5]
    np.testing.assert_array_equal(ap.reshape(2, 3, MR), block.reshape(2, MR, 3).transpose(0, 2, 1))

    nr = NR[np.float64]
    b = np.arange(4 * (nr + 5), dtype=np.float64).reshape(4, nr + 5)
    bp = np.full(2 * nr * 3, np.nan)
    engine.pack_b(b, 1, 3, 2, nr + 3, nr, bp)       # rows 1..3, columns 2..nr+4
    block = np.zeros((3, 2 * nr))
    block[:, :nr + 3] = b[1:4, 2:nr + 5]
    np.testing.assert_array_equal(bp.reshape(2, 3, nr), block.reshape(3, 2, nr).transpose(1, 0, 2))


def _hot_loop(asm):
    """The basic block with the most FMA instructions, up to its first branch (what
    follows a loop's branch back is the code after the loop)."""
    blocks = [re.split(r"\n\tj\w+\s", blk)[0] for blk in re.split(r"\n\.?L\w+:", asm)]
    return max(blocks, key=lambda blk: len(re.findall(r"\bvfmadd\w+", blk)))


@pytest.mark.skipif(not (simd.FMA and simd.ISA in ("avx2", "avx512")),
                    reason="checks x86 FMA code; this target has none")
@pytest.mark.parametrize("dtype", DTYPES)
def test_micro_kernel_machine_code(dtype):
    mr, nr = simd.tile(dtype)
    kb = 4
    c = np.zeros(mr * nr, dtype)
    engine._macro_kernel(np.ones(mr * kb, dtype), np.ones(nr * kb, dtype), mr, nr, kb,
                         c, 0, nr, False, np.empty(mr * nr, dtype))
    np.testing.assert_array_equal(c, kb)
    sig, = [s for s in engine._macro_kernel.signatures if s[0].dtype == numba.from_dtype(dtype)]
    loop = _hot_loop(engine._macro_kernel.inspect_asm(sig))
    reg = "zmm" if simd.VECTOR_BITS == 512 else "ymm"
    suffix = "ps" if dtype == np.float32 else "pd"
    fmas = re.findall(rf"vfmadd\w*{suffix}\s+%{reg}\d+, %{reg}\d+, %{reg}\d+", loop)
    broadcasts = re.findall(r"vbroadcasts[sd]\s+-?\d*\(", loop)
    assert len(fmas) >= MR * simd.NR_VECTORS, loop       # a whole k step, maybe unrolled
    assert len(fmas) == len(broadcasts) * simd.NR_VECTORS, loop
    assert "rsp" not in loop, loop                       # accumulators never spill


#: Run in the builds' subprocesses: each form of the weight gradient (B sampled, packed
#: from the channels-last copy, the transposed product) against the float64 reference.
WEIGHT_GRAD_FORMS = """
from convtranspose.cpu import deconv
from convtranspose.reference import conv_transpose2d_backward_reference
real_copy = deconv._channels_last_copy
for dtype, tol in ((np.float32, 1e-5), (np.float64, 1e-12)):
    for c_in, c_out in ((7, 9), (20, 3), (40, 17)):
        x = rng.standard_normal((2, c_in, 5, 6)).astype(dtype)
        g = rng.standard_normal((2, c_out, 9, 12)).astype(dtype)
        _, ref, _ = conv_transpose2d_backward_reference(
            g.astype(float), x.astype(float), np.zeros((c_in, c_out, 3, 4)), stride=2,
            padding=1)
        for form in ("sampled", "packed", "rows"):
            deconv.tap_rows_wins = lambda c_a_g, c_b_g: form == "rows"
            deconv.copy_pays = lambda *sizes: True
            deconv._channels_last_copy = ((lambda *a: real_copy(*a)._replace(size=2**60))
                                          if form == "sampled" else real_copy)
            gw = deconv.weight_grad(x, g, np.empty((c_in, c_out, 3, 4), dtype), (2, 2),
                                    (1, 1), (1, 1), 1)
            assert np.max(np.abs(gw - ref)) <= tol * np.max(np.abs(ref)), (dtype, form)
"""


def test_portable_target_in_a_subprocess():
    script = textwrap.dedent("""
        import numpy as np
        from convtranspose.cpu import simd
        from convtranspose.cpu.engine import gemm
        assert simd.ISA == "portable" and simd.VECTOR_BITS == 128, simd.ISA
        rng = np.random.default_rng(0)
        for dtype in (np.float32, np.float64):
            a = rng.standard_normal((9, 13)).astype(dtype)
            b = rng.standard_normal((13, 11)).astype(dtype)
            ref = a.astype(np.float64) @ b.astype(np.float64)
            bound = 15 * np.finfo(dtype).eps * (np.abs(a).astype(float) @ np.abs(b))
            assert np.all(np.abs(gemm(a, b, blocks=(5, 7, 6)) - ref) <= bound), dtype
    """) + WEIGHT_GRAD_FORMS + 'print("ok")\n'
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")}
    env["NUMBA_CPU_NAME"] = "generic"
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]


_X86 = "+sse,+sse2,+sse3,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16,+movbe,+lzcnt,+bmi,+bmi2,+f16c"
#: Numba's target per build: a CPU name and the features it compiles for (an explicit
#: list: the host's features would switch AVX-512 off, or on, whatever the name says)
TARGETS = {"avx512": ("skylake-avx512", _X86 + ",+avx,+avx2,+fma,+avx512f,+avx512cd,"
                                        "+avx512dq,+avx512bw,+avx512vl"),
           "avx2": ("haswell", _X86 + ",+avx,+avx2,+fma,-avx512f")}


def _in_subprocess(script, target, tmp_path):
    """Run ``script`` with Numba compiling for ``TARGETS[target]`` (its own cache)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")}
    name, features = TARGETS[target]
    env.update(NUMBA_CPU_NAME=name, NUMBA_CPU_FEATURES=features, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 code")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_avx512_build_uses_zmm_fmas(dtype, tmp_path):
    """The AVX-512 build's hot loop, compiled (never run) on any x86 machine: whole k
    steps of zmm FMAs fed by broadcasts, accumulators in registers."""
    script = f"""
        import re
        import numba
        from numba import types
        from convtranspose.cpu import engine, simd
        assert simd.ISA == "avx512" and simd.VECTOR_BITS == 512, simd.ISA
        a = types.Array(types.{dtype}, 1, "C")
        sig = (a, a, types.int64, types.int64, types.int64, a, types.int64, types.int64,
               types.boolean, a)
        engine._macro_kernel.compile(sig)
        print(simd.MR, simd.NR_VECTORS)
        print(engine._macro_kernel.inspect_asm(sig))
    """
    out = _in_subprocess(script, "avx512", tmp_path)
    head, asm = out.split("\n", 1)
    mr, nr_vectors = map(int, head.split())
    loop = _hot_loop(asm)
    suffix = "ps" if dtype == "float32" else "pd"
    fmas = re.findall(rf"vfmadd\w*{suffix}\s+%zmm\d+, %zmm\d+, %zmm\d+", loop)
    assert len(fmas) >= mr * nr_vectors, loop
    assert "rsp" not in loop, loop


@pytest.mark.skipif(not (simd.FMA and simd.ISA in ("avx2", "avx512")),
                    reason="needs a CPU that runs AVX2 code")
def test_avx2_build_in_a_subprocess(tmp_path):
    """The AVX2 (haswell) build computes the GEMM and the weight gradient on it correctly,
    also on an AVX-512 machine where the default build is the wider one."""
    script = """
        import numpy as np
        from convtranspose.cpu import simd, deconv
        from convtranspose.cpu.engine import gemm
        from convtranspose.reference import conv_transpose2d_backward_reference
        assert simd.ISA == "avx2" and simd.VECTOR_BITS == 256, simd.ISA
        rng = np.random.default_rng(0)
        for dtype in (np.float32, np.float64):
            tol = 1e-5 if dtype == np.float32 else 1e-12
            a = rng.standard_normal((9, 13)).astype(dtype)
            b = rng.standard_normal((13, 37)).astype(dtype)
            ref = a.astype(float) @ b.astype(float)
            assert np.max(np.abs(gemm(a, b) - ref)) <= tol * np.max(np.abs(ref)), dtype
            x = rng.standard_normal((2, 7, 5, 6)).astype(dtype)
            g = rng.standard_normal((2, 9, 9, 12)).astype(dtype)
            gw = deconv.weight_grad(x, g, np.empty((7, 9, 3, 4), dtype), (2, 2), (1, 1),
                                    (1, 1), 1)
            _, ref, _ = conv_transpose2d_backward_reference(
                g.astype(float), x.astype(float), np.zeros((7, 9, 3, 4)), stride=2, padding=1)
            assert np.max(np.abs(gw - ref)) <= tol * np.max(np.abs(ref)), dtype
    """
    script = textwrap.dedent(script) + WEIGHT_GRAD_FORMS + 'print("ok")\n'
    assert _in_subprocess(script, "avx2", tmp_path).strip() == "ok"
