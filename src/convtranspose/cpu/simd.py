"""Vector registers for Numba kernels: a vector type per dtype and intrinsics that use it.

A register-blocked micro-kernel keeps its output tile in vector registers for a whole
``k`` loop. Numba has no vector type of its own, and accumulators kept in NumPy arrays
live in memory (5-26 GFLOP/s where the same loop in registers runs at 80-93; see
DESIGN.md section 4). This module adds one: :class:`VectorType` is a Numba type whose
data model is an LLVM vector (``<8 x float>`` on AVX2), so a local variable of that type
is an SSA value that LLVM keeps in a register. The intrinsics below are the only
operations on it:

=========================  ======================================================
``zero(arr)``              a vector of zeros of ``arr``'s dtype
``load(arr, i)``           ``arr.flat[i : i + width]`` (unaligned, no wraparound)
``store(arr, i, v)``       ``arr.flat[i : i + width] = v``
``broadcast(arr, i)``      ``arr.flat[i]`` in every lane (``vbroadcastss`` from memory)
``fmadd(acc, a, b)``       ``acc + a * b`` lane by lane; a scalar ``a`` is broadcast
``add(x, y)``              ``x + y`` lane by lane
``prefetch(arr, i)``       hint that ``arr.flat[i]`` will be written soon (``prefetchw``/``prefetcht0``)
``width(arr)``             the number of lanes for ``arr``'s dtype, a compile-time constant
=========================  ======================================================

``i`` is a flat element offset into a C-contiguous array; the intrinsics never check
bounds or wrap negative indices (kernels never validate, see STYLE.md). The multiply and
add of :func:`fmadd` carry LLVM's ``contract`` flag only, so LLVM fuses them into one FMA
where the target has one and NaN and Inf propagate as IEEE says (no ``nnan``/``ninf``).

The width comes from the *effective* compilation target, read once at import: Numba's
``NUMBA_CPU_FEATURES`` when it is set (``NUMBA_CPU_NAME=generic`` sets it empty), else
the host's features as Numba sees them (``NUMBA_ENABLE_AVX=0`` removes AVX). Reading
only ``llvmlite.binding.get_host_cpu_features()`` would pick 512-bit vectors for code
that Numba compiles for AVX2 (DESIGN.md section 4).

=============  ===========  ==========  ===========  =====================
target         vector bits  registers   float32 MxN  float64 MxN
=============  ===========  ==========  ===========  =====================
AVX-512F       512          32          6 x 32       6 x 16
AVX / AVX2     256          16          6 x 16       6 x 8
otherwise      128          16          6 x 8        6 x 4
=============  ===========  ==========  ===========  =====================

The micro-tile is ``MR = 6`` rows by ``NR_VECTORS = 2`` vectors: 12 accumulators, 2
vectors of ``B`` and one broadcast of ``A`` use 15 registers, which fits the 16 of AVX2
and SSE (BLIS's Haswell kernels use the same shape). The 128-bit fallback is correct
wherever Numba runs: LLVM legalises a ``<4 x float>`` into whatever the target has
(SSE2, NEON, VSX, or scalar code).
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils, codegen, config
from numba.extending import intrinsic, models, register_model

__all__ = ["VectorType", "ISA", "VECTOR_BITS", "REGISTERS", "FMA", "MR", "NR_VECTORS",
           "lanes", "tile", "target_features",
           "zero", "load", "store", "broadcast", "fmadd", "add", "prefetch", "width"]


def target_features():
    """The ISA features Numba compiles for, as a set of names (``{"avx2", "fma", ...}``).

    Returns
    -------
    set of str
        Features enabled in ``NUMBA_CPU_FEATURES`` when that is set, else in the host's
        feature string as Numba passes it to LLVM. Empty for ``NUMBA_CPU_NAME=generic``.

    Examples
    --------
    >>> from convtranspose.cpu.simd import target_features
    >>> isinstance(target_features(), set)
    True
    """
    feats = config.CPU_FEATURES
    if feats is None:
        feats = codegen.get_host_cpu_features()
    return {f[1:].strip().lower() for f in feats.split(",") if f.strip().startswith("+")}


def _pick_isa(features):
    """(ISA name, vector bits, registers, fma) for a feature set."""
    fma = "fma" in features
    if "avx512f" in features:
        return "avx512", 512, 32, fma
    if "avx" in features:
        return ("avx2" if "avx2" in features else "avx"), 256, 16, fma
    return "portable", 128, 16, fma


#: ``"avx512"``, ``"avx2"``, ``"avx"`` or ``"portable"``: the instruction set the widths assume.
#: ``VECTOR_BITS``: bits per vector register; ``REGISTERS``: vector registers; ``FMA``: fused
#: multiply-add available.
ISA, VECTOR_BITS, REGISTERS, FMA = _pick_isa(target_features())

#: Micro-tile rows (broadcasts of ``A`` per ``k`` step).
MR = 6
#: Micro-tile columns in vectors (loads of ``B`` per ``k`` step); ``NR = NR_VECTORS * lanes``.
NR_VECTORS = 2

_LANES = {np.dtype(np.float32): VECTOR_BITS // 32, np.dtype(np.float64): VECTOR_BITS // 64}


def lanes(dtype):
    """Lanes of one vector register for ``dtype`` (float32 or float64) on the effective target.

    Parameters
    ----------
    dtype : numpy dtype or type
        ``float32`` or ``float64``.

    Returns
    -------
    int

    Raises
    ------
    KeyError
        For any other dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu import simd
    >>> simd.lanes(np.float32) == simd.VECTOR_BITS // 32
    True
    """
    return _LANES[np.dtype(dtype)]


def tile(dtype):
    """The micro-tile ``(MR, NR)`` that the GEMM engine uses for ``dtype``.

    Parameters
    ----------
    dtype : numpy dtype or type
        ``float32`` or ``float64``.

    Returns
    -------
    tuple of int
        ``(MR, NR_VECTORS * lanes(dtype))``: ``(6, 16)`` for float32 on AVX2.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu import simd
    >>> mr, nr = simd.tile(np.float64)
    >>> mr == simd.MR and nr == simd.NR_VECTORS * simd.lanes(np.float64)
    True
    """
    return MR, NR_VECTORS * lanes(dtype)


class VectorType(types.Type):
    """Numba type of a vector register holding ``count`` values of ``dtype``.

    Parameters
    ----------
    dtype : numba.types.Float
        ``numba.float32`` or ``numba.float64``.
    count : int
        Lanes.

    Examples
    --------
    >>> import numba
    >>> from convtranspose.cpu.simd import VectorType
    >>> VectorType(numba.float32, 8)
    vector(float32 x 8)
    """

    def __init__(self, dtype, count):
        self.dtype = dtype
        self.count = count
        super().__init__(name=f"vector({dtype} x {count})")


@register_model(VectorType)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.count))


_FLOATS = (types.float32, types.float64)
_CONTRACT = ("contract",)   # fuse a*b+c into an FMA; no nnan/ninf, so NaN and Inf propagate


def _vector_of(dtype):
    """The target's vector type for a Numba float type, ``None`` for anything else."""
    if dtype not in _FLOATS:
        return None
    return VectorType(dtype, _LANES[np.dtype(str(dtype))])


def _float_array(arr):
    return isinstance(arr, types.Array) and arr.layout == "C" and arr.dtype in _FLOATS


def _element_ptr(context, builder, arrty, arr, indty, index):
    """Address of ``arr.flat[index]``: a plain GEP, no wraparound and no bounds check."""
    data = context.make_array(arrty)(context, builder, arr).data
    index = context.cast(builder, index, indty, types.intp)
    return builder.gep(data, [index], inbounds=True)


def _vector_ptr(context, builder, vecty, ptr):
    return builder.bitcast(ptr, context.get_value_type(vecty).as_pointer())


def _splat(builder, vecty_ll, scalar):
    """``scalar`` in every lane (insertelement + a zero shuffle: LLVM's broadcast idiom)."""
    one = builder.insert_element(ir.Constant(vecty_ll, ir.Undefined), scalar,
                                 ir.Constant(ir.IntType(32), 0))
    mask = ir.Constant(ir.VectorType(ir.IntType(32), vecty_ll.count), None)
    return builder.shuffle_vector(one, ir.Constant(vecty_ll, ir.Undefined), mask)


@intrinsic
def zero(typingctx, arr):
    """A vector of zeros of ``arr``'s dtype (``arr`` is only read for its type).

    Examples
    --------
    >>> import numpy as np, numba
    >>> from convtranspose.cpu import simd
    >>> @numba.njit
    ... def fill_zero(x):
    ...     simd.store(x, 0, simd.zero(x))
    >>> x = np.ones(simd.lanes(np.float32), np.float32)
    >>> fill_zero(x); x.sum()
    np.float32(0.0)
    """
    if not _float_array(arr):
        return None
    vecty = _vector_of(arr.dtype)

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(vecty), None)
    return vecty(arr), codegen


@intrinsic
def width(typingctx, arr):
    """Lanes of the vector type for ``arr``'s dtype, a constant that LLVM folds.

    Examples
    --------
    >>> import numpy as np, numba
    >>> from convtranspose.cpu import simd
    >>> @numba.njit
    ... def w(x):
    ...     return simd.width(x)
    >>> w(np.zeros(1, np.float64)) == simd.lanes(np.float64)
    True
    """
    if not _float_array(arr):
        return None
    count = _vector_of(arr.dtype).count

    def codegen(context, builder, sig, args):
        return context.get_constant(types.intp, count)
    return types.intp(arr), codegen


@intrinsic
def load(typingctx, arr, i):
    """The vector ``arr.flat[i : i + width(arr)]`` (an unaligned load).

    Examples
    --------
    >>> import numpy as np, numba
    >>> from convtranspose.cpu import simd
    >>> @numba.njit
    ... def copy(x, y, i):
    ...     simd.store(y, 0, simd.load(x, i))
    >>> n = simd.lanes(np.float64)
    >>> x = np.arange(n + 1.0); y = np.zeros(n)
    >>> copy(x, y, 1); np.array_equal(y, x[1:])
    True
    """
    if not (_float_array(arr) and isinstance(i, types.Integer)):
        return None
    vecty = _vector_of(arr.dtype)

    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        return builder.load(_vector_ptr(context, builder, vecty, ptr),
                            align=context.get_abi_sizeof(context.get_value_type(arr.dtype)))
    return vecty(arr, i), codegen


@intrinsic
def store(typingctx, arr, i, v):
    """Write the vector ``v`` to ``arr.flat[i : i + width(arr)]`` (an unaligned store).

    Examples
    --------
    >>> import numpy as np, numba
    >>> from convtranspose.cpu import simd
    >>> @numba.njit
    ... def fill(y, i, x):
    ...     simd.store(y, i, simd.broadcast(x, 0))
    >>> n = simd.lanes(np.float32)
    >>> y = np.zeros(n + 2, np.float32)
    >>> fill(y, 2, np.array([7.0], np.float32)); y.tolist() == [0, 0] + [7] * n
    True
    """
    if not (_float_array(arr) and isinstance(i, types.Integer) and v == _vector_of(arr.dtype)):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        builder.store(args[2], _vector_ptr(context, builder, v, ptr),
                      align=context.get_abi_sizeof(context.get_value_type(arr.dtype)))
        return context.get_dummy_value()
    return types.none(arr, i, v), codegen


@intrinsic
def broadcast(typingctx, arr, i):
    """A vector with ``arr.flat[i]`` in every lane.

    Examples
    --------
    >>> import numpy as np, numba
    >>> from convtranspose.cpu import simd
    >>> @numba.njit
    ... def splat(x, i, y):
    ...     simd.store(y, 0, simd.broadcast(x, i))
    >>> y = np.zeros(simd.lanes(np.float64))
    >>> splat(np.array([1.0, 2.5]), 1, y); set(y.tolist())
    {2.5}
    """
    if not (_float_array(arr) and isinstance(i, types.Integer)):
        return None
    vecty = _vector_of(arr.dtype)

    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        return _splat(builder, context.get_value_type(vecty), builder.load(ptr))
    return vecty(arr, i), codegen


@intrinsic
def fmadd(typingctx, acc, a, b):
    """``acc + a * b`` lane by lane; a scalar ``a`` (of the vectors' dtype) is broadcast.

    Multiply and add carry LLVM's ``contract`` flag, so they become one fused
    multiply-add (one rounding) on targets with FMA and a multiply then an add elsewhere.

    Examples
    --------
    >>> import numpy as np, numba
    >>> from convtranspose.cpu import simd
    >>> @numba.njit
    ... def axpy(s, x, y):
    ...     simd.store(y, 0, simd.fmadd(simd.load(y, 0), s, simd.load(x, 0)))
    >>> n = simd.lanes(np.float32)
    >>> x = np.arange(n, dtype=np.float32); y = np.ones(n, np.float32)
    >>> axpy(np.float32(2), x, y); np.array_equal(y, 1 + 2 * x)
    True
    """
    if not (isinstance(acc, VectorType) and b == acc and (a == acc or a == acc.dtype)):
        return None

    def codegen(context, builder, sig, args):
        va, vb, vc = args[1], args[2], args[0]
        if not isinstance(sig.args[1], VectorType):
            va = _splat(builder, context.get_value_type(acc), va)
        return builder.fadd(vc, builder.fmul(va, vb, flags=_CONTRACT), flags=_CONTRACT)
    return acc(acc, a, b), codegen


@intrinsic
def add(typingctx, x, y):
    """``x + y`` lane by lane.

    Examples
    --------
    >>> import numpy as np, numba
    >>> from convtranspose.cpu import simd
    >>> @numba.njit
    ... def double(x):
    ...     v = simd.load(x, 0)
    ...     simd.store(x, 0, simd.add(v, v))
    >>> x = np.arange(simd.lanes(np.float64), dtype=np.float64)
    >>> double(x); x[1]
    np.float64(2.0)
    """
    if not (isinstance(x, VectorType) and y == x):
        return None

    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])
    return x(x, y), codegen


@intrinsic
def prefetch(typingctx, arr, i):
    """Hint that the cache line holding ``arr.flat[i]`` is about to be read and written.

    LLVM's ``llvm.prefetch`` (write, high locality, data cache); it never faults and does
    nothing where the target has no prefetch instruction.

    Examples
    --------
    >>> import numpy as np, numba
    >>> from convtranspose.cpu import simd
    >>> @numba.njit
    ... def touch(x):
    ...     simd.prefetch(x, 0)
    ...     return x[0]
    >>> float(touch(np.ones(3)))
    1.0
    """
    if not (_float_array(arr) and isinstance(i, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element_ptr(context, builder, sig.args[0], args[0], sig.args[1], args[1])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
            "llvm.prefetch.p0i8")
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 1), ir.Constant(i32, 3),
                          ir.Constant(i32, 1)])
        return context.get_dummy_value()
    return types.none(arr, i), codegen
