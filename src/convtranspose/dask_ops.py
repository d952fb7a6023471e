"""Dask arrays in, lazy Dask arrays out, at every rank.

A Dask ``x`` (or ``grad_output``) makes the transposed convolutions, the convolutions and
their gradients build a graph whose tasks call the same operation on NumPy pieces, with the
same ``backend``: the operation layer's path for NumPy operands
(:mod:`convtranspose.operation`, which every non-Dask call takes too), handed in by the
caller as a :class:`TileCalls` (it sits above this module; 1-D runs as 2-D of unit height).
One graph builder serves every rank: a tiling per spatial axis. Nothing runs
before ``.compute()``; ``weight`` and ``bias`` enter the graph once, as one key each, and
every task slices what it needs from them.

Chunks are honoured, not collapsed:

* along the batch, output chunk ``b`` comes from input chunk ``b``;
* along each spatial axis (H and W; D, H and W), the output is cut where the input is
  (boundaries ``b*s`` for a transposed convolution, ``b // s`` for a convolution, clipped to
  the output) and each output tile is computed from the input rows that reach it along
  every axis: its chunk plus a halo read from the neighbouring chunks, with the sub-call's
  padding set so that the tile lands exactly where it belongs in the whole result;
* along the input channels, each block of whole groups is computed on its own (its output
  channels are independent of the other groups'); with ``groups == 1`` and more than one
  channel chunk, each chunk gives a partial result and the partials are summed in a fixed
  pairwise order.

Per spatial axis, with kernel ``k``, stride ``s``, dilation ``d``, padding ``(lo, hi)`` and
``r = d*(k - 1)``: in a transposed convolution input ``i`` reaches outputs ``i*s - lo + j*d``
(``0 <= j < k``), so the output tile ``[o0, o1)`` reads inputs
``floor((o0 + lo - r)/s) .. floor((o1 - 1 + lo)/s)`` and is the sub-call on those with
padding ``o0 + lo - i0*s`` before. In a convolution output ``o`` reads inputs
``o*s - lo .. o*s - lo + r``. One more input row than strictly needed may be read in front
(so that the sub-call's padding is never negative); it reaches no output of the tile.

Numerics: each output element of a tile is the same sum, over the same terms in the same
order, as in the whole call, so a backend whose per-element order does not depend on the
problem's size (``direct``) gives bitwise the result of the NumPy call whatever the batch
and spatial chunks. Channel partials and the weight gradient's partials change the order
of the sum, within the float accuracy bound of README's Guarantees.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from . import cuda, dispatch, halfops, ops
from ._arrays import channels_first, host_array, is_dask_array, is_device_array, laid_out
from .params import (DATA_FORMATS, ConvParams, is_channels_last, is_half, normalise,
                     normalise_backward, normalise_conv, normalise_conv_backward,
                     spatial_output_size)

__all__ = ["is_dask_array", "conv_transpose", "conv", "conv_transpose_backward",
           "conv_backward", "explain", "GraphPlan", "TileCalls", "dask_layout",
           "as_small", "known_chunks"]


def dask_layout(data_format, *arrays, rank=2):
    """Whether ``data_format`` (``None``: the rank's channels-first layout) is
    channels-last, and ``arrays`` as channels-first (lazy) views if so: a Dask graph runs
    channels-first chunks, each tile's transposition a task of its own."""
    last = is_channels_last(DATA_FORMATS[rank][0] if data_format is None else data_format,
                            rank)
    return (last, *(channels_first(a, rank) if last else a for a in arrays))


@dataclass(frozen=True)
class TileCalls:
    """The NumPy functions of one rank that a graph's tasks call on channels-first tiles:
    ``transposed`` (``conv_transpose{rank}d``), ``correlation`` (``conv{rank}d``) and
    ``backward`` (``conv_transpose{rank}d_backward``), each taking that operation's
    keywords (:func:`convtranspose.operation.tiles` makes them)."""

    rank: int
    transposed: object
    correlation: object
    backward: object


# ----------------------------------------------------------------------------
# one spatial axis: which input range each output tile reads


@dataclass(frozen=True)
class Tile:
    """One tile of one spatial axis: output rows ``out``, input rows ``src`` read, and
    the sub-call's padding ``pad = (before, after)`` and ``output_padding`` ``extra``."""

    out: tuple[int, int]
    src: tuple[int, int]
    pad: tuple[int, int]
    extra: int = 0


@dataclass(frozen=True)
class Axis:
    """Kernel extent ``r = d*(k - 1)``, stride, padding and input/output lengths of one
    spatial axis."""

    r: int
    s: int
    lo: int
    n_in: int
    n_out: int
    hi: int = 0
    extra: int = 0

    def whole(self):
        """The whole axis as one tile, with the call's own padding and output padding:
        for an axis where no cut leaves every tile an input that reaches it."""
        return Tile((0, self.n_out), (0, self.n_in), (self.lo, self.hi), self.extra)

    def transposed(self, o0, o1):
        """The tile of a transposed convolution's outputs ``[o0, o1)``, or None when no
        input reaches it."""
        i0 = max(0, (o0 + self.lo - self.r) // self.s)
        i1 = min(self.n_in, (o1 - 1 + self.lo) // self.s + 1)
        if i1 <= i0:
            return None
        before = o0 + self.lo - i0 * self.s
        rest = (i1 - i0 - 1) * self.s + self.r + 1 - before - (o1 - o0)
        return Tile((o0, o1), (i0, i1), (before, max(rest, 0)), max(-rest, 0))

    def _strided(self, a0, a1, n):
        """Positions ``a*s - lo .. a*s - lo + r`` of ``a0 <= a < a1`` clipped to ``[0, n)``,
        and how much the clipping cut before and after; None when nothing is left."""
        start = a0 * self.s - self.lo
        stop = (a1 - 1) * self.s - self.lo + self.r + 1
        b0, b1 = max(0, start), min(n, stop)
        return None if b1 <= b0 else ((b0, b1), (b0 - start, stop - b1))

    def convolution(self, o0, o1):
        """The tile of a convolution's outputs ``[o0, o1)``, or None when it reads only
        padding."""
        found = self._strided(o0, o1, self.n_in)
        return None if found is None else Tile((o0, o1), *found)

    def reach(self, i0, i1):
        """Inputs ``[i0, i1)`` of a transposed convolution and the output rows they reach
        (clipped to the output), as a tile whose ``out`` is that region and whose ``pad``
        is the sub-call's cropping; None when they reach only cropped rows."""
        found = self._strided(i0, i1, self.n_out)
        return None if found is None else Tile(found[0], (i0, i1), found[1])


def _bounds(chunks):
    """Chunk sizes -> boundaries ``[0, c0, c0 + c1, ..., n]``."""
    return [0, *np.cumsum(chunks).tolist()] if len(chunks) else [0]


def _cuts(points, n):
    """Sorted distinct cut points in ``[0, n]`` with both ends."""
    return sorted({0, n, *(min(max(p, 0), n) for p in points)})


def _tiles(cuts, make, whole):
    """Tiles ``make(a, b)`` for consecutive ``cuts``, a tile that reads nothing merged with
    its right neighbour (the last with its left one). When even the whole axis as one
    tile reads nothing (no input reaches any output of the axis, which only large
    ``output_padding`` or padding can do), the one tile ``whole`` (the call's own
    arithmetic on the whole axis)."""
    cuts = list(cuts)
    while True:
        tiles = [make(a, b) for a, b in zip(cuts, cuts[1:])]
        empty = [i for i, t in enumerate(tiles) if t is None]
        if not empty:
            return tiles
        if len(cuts) <= 2:
            return [whole]
        i = empty[0]
        del cuts[i + 1 if i + 1 < len(cuts) - 1 else i]


def _overlaps(bounds, lo, hi):
    """Per chunk (by ``bounds``) overlapping ``[lo, hi)``: its index and the slice of it that
    lies in the range."""
    first = int(np.searchsorted(bounds, lo, side="right")) - 1
    last = int(np.searchsorted(bounds, hi, side="left"))
    return [(j, slice(max(lo, bounds[j]) - bounds[j], min(hi, bounds[j + 1]) - bounds[j]))
            for j in range(max(first, 0), last) if bounds[j + 1] > bounds[j]]


# ----------------------------------------------------------------------------
# tasks: module-level functions (picklable for dask.distributed)


@dataclass(frozen=True)
class _Call:
    """What one task does, opaque to Dask: ``fn(x_piece, weight[w_index], bias[b_index],
    **kwargs)``, where ``x_piece`` is the task's pieces joined, input channels
    ``channels`` of them."""

    fn: object
    channels: slice | tuple
    w_index: tuple = (slice(None),)
    b_index: tuple | None = None
    kwargs: dict = field(default_factory=dict)
    dtype: object = None      # the joined pieces' dtype (the call's result dtype)


def _strip(block, index):
    """A copy of part of a block (a copy, so that the block itself can be freed)."""
    return np.array(block[index])


def _cells(nested):
    """``(index, block)`` of every block of a nested list (one level per axis)."""
    if not isinstance(nested, list):
        return [((), nested)]
    return [((i, *index), block) for i, sub in enumerate(nested)
            for index, block in _cells(sub)]


def _join(blocks, channels, dtype=None):
    """The task's input pieces (nested lists over channels and each spatial axis of
    ``(N, C, *spatial)`` arrays) joined into one C-contiguous array of ``dtype`` (default:
    the pieces'), keeping the input channels ``channels`` of it: each piece is copied once,
    straight into place."""
    cells = _cells(blocks)
    starts = []     # per axis (channels, then the spatial ones), where each piece begins
    for axis in range(len(cells[0][0])):
        line = sorted((index[axis], block.shape[1 + axis]) for index, block in cells
                      if not any(index[:axis] + index[axis + 1:]))
        starts.append(np.cumsum([0] + [n for _, n in line]).tolist())
    c_lo, c_hi, _ = channels.indices(starts[0][-1])
    if dtype is None:
        dtype = np.result_type(*(block.dtype for _, block in cells))
    out = np.empty((cells[0][1].shape[0], c_hi - c_lo, *(s[-1] for s in starts[1:])), dtype)
    for index, block in cells:
        c0, c1 = starts[0][index[0]], starts[0][index[0] + 1]
        lo, hi = max(c0, c_lo), min(c1, c_hi)
        if hi <= lo:
            continue
        place = tuple(slice(s[i], s[i + 1]) for s, i in zip(starts[1:], index[1:]))
        out[(slice(None), slice(lo - c_lo, hi - c_lo), *place)] = block[:, lo - c0:hi - c0]
    return out


def _run(call, blocks, weight, bias):
    x = _join(blocks, call.channels, call.dtype)
    b = None if bias is None or call.b_index is None else bias[call.b_index]
    return call.fn(x, weight[call.w_index], b, **call.kwargs)


def _run_pair(call, blocks_a, blocks_b, weight):
    """A weight-gradient partial: ``fn(a_piece, b_piece, weight)``; ``call.channels`` holds
    both pieces' channel slices."""
    a = _join(blocks_a, call.channels[0])
    b = _join(blocks_b, call.channels[1])
    return call.fn(a, b, weight[call.w_index], **call.kwargs)


def _add(a, b):
    with np.errstate(over="ignore", invalid="ignore"):     # inf - inf is NaN, silently
        return np.add(a, b)


def _sum_bias(g, dtype):
    """A block's sum over all but the channels: :func:`convtranspose.ops.bias_grad`, the
    spatial axes after the first folded into one (at every rank)."""
    g = np.asarray(g, dtype)
    return ops.bias_grad(g.reshape(*g.shape[:3], math.prod(g.shape[3:])))


def _concat(parts):
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)


def _tree(dsk, prefix, keys):
    """Sum ``keys`` pairwise in a fixed order (``(k0 + k1) + (k2 + k3)``, ...) under keys
    ``(prefix, level, i)``; return the key of the total."""
    level = 0
    while len(keys) > 1:
        nxt = [(prefix, level, i) for i in range(len(keys) // 2)]
        for i, key in enumerate(nxt):
            dsk[key] = (_add, keys[2 * i], keys[2 * i + 1])
        keys = nxt + keys[len(nxt) * 2:]
        level += 1
    return keys[0]


# ----------------------------------------------------------------------------
# operands


def as_small(a, name):
    """``weight`` or ``bias`` as a NumPy array: they enter the graph whole, so a Dask or
    CUDA one is refused (``TypeError`` naming it)."""
    if a is None:
        return None
    if is_dask_array(a):
        raise TypeError(f"{name} is a Dask array; convtranspose puts {name} into the graph "
                        f"once as a NumPy array: pass {name}.compute()")
    if is_device_array(a, name):
        raise TypeError(f"{name} is a CUDA array but the input is a Dask array: mixed Dask "
                        "and CUDA arrays are not supported; pass NumPy arrays for weight "
                        "and bias (each chunk can still run on the GPU with backend='cuda')")
    return host_array(a, name)


def _as_dask(a, name, rank, like=None):
    """``a`` as a batched or unbatched Dask array of ``rank`` spatial axes with known
    chunks; a NumPy ``a`` is wrapped with ``like``'s batch chunks and one chunk along every
    other axis."""
    import dask.array as da
    if not is_dask_array(a):
        if a is not None and is_device_array(a, name):
            raise TypeError(f"{name} is a CUDA array and another operand a Dask array: mixed "
                            "Dask and CUDA arrays are not supported")
        a = host_array(a, name)
        batch = like.chunks[0] if like is not None and a.ndim == rank + 2 else -1
        a = da.from_array(a, chunks=(batch,) + (-1,) * (a.ndim - 1))
    known_chunks(a, name)
    if a.ndim not in (rank + 1, rank + 2):
        axes = ", ".join(("D", "H", "W")[3 - rank:])
        raise ValueError(f"{name} must be {rank + 2}-D (N, C, {axes}) or {rank + 1}-D "
                         f"(C, {axes}), got shape {a.shape}")
    return a


def known_chunks(a, name):
    """``ValueError`` naming ``name`` when the Dask array ``a`` has unknown (NaN) chunk
    sizes, which no graph of any rank can be planned from; else ``a``."""
    for axis, sizes in enumerate(a.chunks):
        if any(math.isnan(c) for c in sizes):
            raise ValueError(f"{name} has unknown (NaN) chunk sizes along axis {axis}: call "
                             f"{name}.compute_chunk_sizes() first")
    return a


def _check_gpu(backend):
    """``backend="cuda"`` without a usable GPU fails when the graph is built, as the NumPy
    call would, not at ``compute()``."""
    if backend == "cuda":
        cuda.require()


def _no_out(out):
    if out is not None:
        raise TypeError("out= is not supported with Dask input: the result is a lazy Dask "
                        "array; write it with dask.array.store or .compute()")


def _meta(dtype, ndim):
    return np.empty((0,) * ndim, dtype)


def _token(*parts):
    from dask.base import tokenize
    return tokenize(*parts)


# ----------------------------------------------------------------------------
# channel blocks


@dataclass(frozen=True)
class _Channels:
    """Channel blocks of a call: per block the input channels ``[c0, c1)``, the output
    channels it gives, its number of groups, and whether the blocks are partial sums of
    one output (``groups == 1`` and several chunks) or independent groups."""

    blocks: tuple          # ((c0, c1, oc0, oc1, groups), ...)
    partial: bool


def _channel_blocks(bounds, c_in_g, c_out_g, groups):
    """Blocks from the channel chunk ``bounds``: the chunks themselves (partials) for one
    group, else the chunks widened to whole groups."""
    if groups == 1:
        blocks = [(a, b, 0, c_out_g, 1) for a, b in zip(bounds, bounds[1:]) if b > a]
        return _Channels(tuple(blocks) or ((0, 0, 0, c_out_g, 1),), len(blocks) > 1)
    cuts = _cuts([round(b / c_in_g) * c_in_g for b in bounds], bounds[-1])
    blocks = [(a, b, a // c_in_g * c_out_g, b // c_in_g * c_out_g, (b - a) // c_in_g)
              for a, b in zip(cuts, cuts[1:])]
    return _Channels(tuple(blocks), False)


def _rechunk_channels(a, channels):
    """``a`` with channel chunks matching the blocks (only the channel axis changes)."""
    sizes = tuple(c1 - c0 for c0, c1, *_ in channels.blocks)
    return a if a.chunks[1] == sizes or not sizes[0] else a.rechunk({1: sizes})


# ----------------------------------------------------------------------------
# graphs


def _pieces(dsk, name, chunks, nb, cbs, spans):
    """Nested list ``[channel][i_1][i_2]...`` (one level per spatial axis) of the keys of
    ``name``'s pieces in the input ranges ``spans`` (``(start, stop)`` per spatial axis) of
    batch chunk ``nb``: a whole chunk by its own key, a part of one (a halo strip) by a task
    of ``dsk`` that copies it out."""
    per_axis = [_overlaps(_bounds(c), *span) for c, span in zip(chunks[2:], spans)]

    def piece(c, found):
        index, parts = tuple(i for i, _ in found), tuple(sl for _, sl in found)
        key = (name, nb, c, *index)
        if any(sl.stop - sl.start != sizes[i]
               for (i, sl), sizes in zip(found, chunks[2:])):
            strip = (f"{name}-strip", nb, c, *index,
                     *(end for sl in parts for end in (sl.start, sl.stop)))
            dsk[strip] = (_strip, key, (slice(None), slice(None), *parts))
            key = strip
        return key

    def nest(c, found):
        if len(found) == len(per_axis):
            return piece(c, found)
        return [nest(c, (*found, f)) for f in per_axis[len(found)]]

    return [nest(c, ()) for c in cbs]


def _tile_grid(tiles):
    """``(index, tile)`` for every choice of one tile per spatial axis (``tiles``: the
    tiles of each axis), the last axis varying fastest."""
    for chosen in itertools.product(*(enumerate(t) for t in tiles)):
        yield tuple(i for i, _ in chosen), tuple(t for _, t in chosen)


@dataclass
class _Graph:
    """A graph under construction: its layer dict, the weight and bias keys."""

    name: str
    weight: np.ndarray
    bias: np.ndarray | None
    dsk: dict = field(default_factory=dict)

    def __post_init__(self):
        self.wkey = f"{self.name}-weight"
        self.bkey = None if self.bias is None else f"{self.name}-bias"
        # copies: the graph computes with the values of the call, whatever happens to the
        # caller's arrays (an optimiser's in-place step) before it runs
        self.dsk[self.wkey] = np.array(self.weight)
        if self.bkey is not None:
            self.dsk[self.bkey] = np.array(self.bias)

    def array(self, shape_chunks, dtype, *deps):
        import dask.array as da
        from dask.highlevelgraph import HighLevelGraph
        graph = HighLevelGraph.from_collections(self.name, self.dsk, dependencies=deps)
        return da.Array(graph, self.name, chunks=shape_chunks,
                        meta=_meta(dtype, len(shape_chunks)))


def _block_indices(channels, weight_axis):
    """Per channel block, the index into the weight and into the bias of its call. A
    partial sum takes its input channels of the weight (axis ``weight_axis``) and, for the
    first block only, the whole bias; a block of groups takes its groups' weights (input
    channels on axis 0 for a transposed convolution, output channels for a convolution)
    and its output channels' bias."""
    out = []
    for cb, (c0, c1, oc0, oc1, _) in enumerate(channels.blocks):
        if channels.partial:
            out.append(((slice(None),) * weight_axis + (slice(c0, c1),),
                        slice(None) if cb == 0 else None))
        else:
            out.append(((slice(oc0, oc1) if weight_axis else slice(c0, c1),), slice(oc0, oc1)))
    return out


def _forward(op, x, weight, bias, dtype, tiles, channels, weight_axis, kwargs):
    """The graph of a forward operation ``op`` (NumPy function) over ``x``'s chunks: one
    task per (batch chunk, channel block, tile of every spatial axis; ``tiles`` holds each
    axis's), channel partials summed in a fixed order. ``weight_axis`` is the weight's
    axis of ``x``'s channels: 0 for a transposed convolution (whose tiles also set
    ``output_padding``), 1 for a convolution."""
    x = _rechunk_channels(x, channels)
    indices = _block_indices(channels, weight_axis)
    token = _token(op.__name__, x.name, weight, bias, tiles, channels, weight_axis, kwargs,
                   dtype)
    # half-precision partials are summed in float32 and rounded once, at the end
    part_dtype = np.dtype(np.float32) if channels.partial and is_half(dtype) else dtype
    g = _Graph(f"{op.__name__}-{token}", weight, bias)
    for nb in range(len(x.chunks[0])):
        for index, tile in _tile_grid(tiles):
            call_kw = dict(kwargs, padding=tuple(t.pad for t in tile))
            if weight_axis == 0:
                call_kw["output_padding"] = tuple(t.extra for t in tile)
            parts = []
            for cb, (*_, groups) in enumerate(channels.blocks):
                w_index, b_index = indices[cb]
                call = _Call(op, slice(None), w_index, b_index, dict(call_kw, groups=groups),
                             part_dtype)
                key = ((g.name, nb, cb, *index) if not channels.partial
                       else (f"{g.name}-part", nb, cb, *index))
                pieces = _pieces(g.dsk, x.name, x.chunks, nb, [cb], [t.src for t in tile])
                g.dsk[key] = (_run, call, pieces, g.wkey, g.bkey)
                parts.append(key)
            if channels.partial:
                total = _tree(g.dsk, "-".join(map(str, (f"{g.name}-sum", nb, *index))), parts)
                g.dsk[(g.name, nb, 0, *index)] = (total if part_dtype == dtype
                                                  else (halfops.rounded, total, dtype))
    c_chunks = ((channels.blocks[0][3],) if channels.partial
                else tuple(oc1 - oc0 for _, _, oc0, oc1, _ in channels.blocks))
    chunks = (x.chunks[0], c_chunks, *(tuple(t.out[1] - t.out[0] for t in axis)
                                       for axis in tiles))
    return g.array(chunks, dtype, x)


def _axes(x_sizes, out_sizes, k_sizes, params):
    return [Axis(d * (k - 1), s, pad[0], n_in, n_out, pad[1], op)
            for d, k, s, pad, n_in, n_out, op in
            zip(params.dilation, k_sizes, params.stride, params.padding, x_sizes, out_sizes,
                params.output_padding)]


def _ct_tiles(x, k_sizes, params, out_sizes, out_chunks=None):
    """Per spatial axis, the output tiles of a transposed convolution: cut at the input's
    chunk boundaries times the stride, or at ``out_chunks``'s boundaries."""
    tiles = []
    for i, axis in enumerate(_axes(x.shape[2:], out_sizes, k_sizes, params)):
        if out_chunks is None:
            cuts = _cuts([b * axis.s for b in _bounds(x.chunks[2 + i])[1:-1]], axis.n_out)
        else:
            cuts = _cuts(_bounds(out_chunks[i])[1:-1], axis.n_out)
        tiles.append(_tiles(cuts, axis.transposed, axis.whole()))
    return tiles


def _conv_tiles(x, k_sizes, params, out_sizes, out_chunks=None):
    """Per spatial axis, the output tiles of a convolution: cut at the input's chunk
    boundaries divided by the stride, or at ``out_chunks``'s boundaries."""
    tiles = []
    for i, axis in enumerate(_axes(x.shape[2:], out_sizes, k_sizes, params)):
        if out_chunks is None:
            cuts = _cuts([b // axis.s for b in _bounds(x.chunks[2 + i])[1:-1]], axis.n_out)
        else:
            cuts = _cuts(_bounds(out_chunks[i])[1:-1], axis.n_out)
        tiles.append(_tiles(cuts, axis.convolution, axis.whole()))
    return tiles


def _batched(a, rank):
    return a if a.ndim == rank + 2 else a[None]


def _unbatched_like(result, x, rank):
    return result if x.ndim == rank + 2 else result[0]


def _validate(x, weight, bias, normaliser, kwargs, rank):
    x = _as_dask(x, "x", rank)
    weight, bias = as_small(weight, "weight"), as_small(bias, "bias")
    dtypes = [("x", x.dtype), ("weight", weight.dtype)] + (
        [] if bias is None else [("bias", bias.dtype)])
    params, shape, dtype = normaliser(x.shape, weight.shape,
                                      None if bias is None else bias.shape, dtypes, rank=rank,
                                      **kwargs)
    return x, weight, bias, params, shape, dtype


def _caller_output_size(output_size, x, rank, last):
    """``output_size`` for a validation of channels-first ``x``: a whole shape given in a
    channels-last caller's layout read as its spatial sizes."""
    if last and output_size is not None:
        return spatial_output_size(output_size, x.ndim, rank, last)
    return output_size


def conv_transpose(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                   dilation=1, *, output_size=None, out=None, backend="auto", data_format=None,
                   calls):
    """The transposed convolution of rank ``calls.rank`` (:func:`convtranspose.conv_transpose2d`,
    :func:`convtranspose.conv_transpose3d`) of a Dask ``x``: a lazy Dask array in
    ``data_format``'s layout (``None``: channels-first)."""
    _no_out(out)
    dispatch.check_backend(backend)
    rank = calls.rank
    last, x = dask_layout(data_format, x, rank=rank)
    x, weight, bias, params, shape, dtype = _validate(
        x, weight, bias, normalise, dict(
            stride=stride, padding=padding, output_padding=output_padding, dilation=dilation,
            groups=groups, output_size=_caller_output_size(output_size, x, rank, last)), rank)
    _check_gpu(backend)
    y = _ct_graph(_batched(x, rank), weight, bias, params, dtype, shape[-rank:], backend,
                  calls)
    return laid_out(_unbatched_like(y, x, rank), last, rank)


def _ct_graph(x, weight, bias, params, dtype, out_sizes, backend, calls, out_chunks=None):
    tiles = _ct_tiles(x, weight.shape[2:], params, out_sizes, out_chunks)
    channels = _channel_blocks(_bounds(x.chunks[1]), weight.shape[0] // params.groups,
                               weight.shape[1], params.groups)
    kwargs = dict(stride=params.stride, dilation=params.dilation, backend=backend)
    return _forward(calls.transposed, x, weight, bias, dtype, tiles, channels, 0, kwargs)


def _conv_graph(x, weight, bias, params, dtype, out_sizes, backend, calls, out_chunks=None):
    tiles = _conv_tiles(x, weight.shape[2:], params, out_sizes, out_chunks)
    channels = _channel_blocks(_bounds(x.chunks[1]), weight.shape[1],
                               weight.shape[0] // params.groups, params.groups)
    kwargs = dict(stride=params.stride, dilation=params.dilation, backend=backend)
    return _forward(calls.correlation, x, weight, bias, dtype, tiles, channels, 1, kwargs)


def conv(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, backend="auto",
         data_format=None, calls):
    """The convolution of rank ``calls.rank`` (:func:`convtranspose.conv2d`,
    :func:`convtranspose.conv3d`) of a Dask ``x``: a lazy Dask array in ``data_format``'s
    layout (``None``: channels-first)."""
    dispatch.check_method(backend)
    rank = calls.rank
    last, x = dask_layout(data_format, x, rank=rank)
    x, weight, bias, params, shape, dtype = _validate(
        x, weight, bias, normalise_conv, dict(stride=stride, padding=padding,
                                              dilation=dilation, groups=groups), rank)
    _check_gpu(backend)
    y = _conv_graph(_batched(x, rank), weight, bias, params, dtype, shape[-rank:], backend,
                    calls)
    return laid_out(_unbatched_like(y, x, rank), last, rank)


def _weight_grad_piece(backward, g, x, weight, **kwargs):
    return backward(g, x, weight, needs_input_grad=False, needs_weight_grad=True,
                    needs_bias_grad=False, **kwargs)[1]


def _weight_grad(g4, x4, weight, params, dtype, backend, calls):
    """``grad_weight`` as a one-chunk Dask array: a partial per (batch chunk, input tile)
    of each channel block, read against the ``grad_output`` region the tile reaches,
    summed in a fixed order; channel blocks concatenated."""
    c_out_g = weight.shape[1]
    channels = _channel_blocks(_bounds(x4.chunks[1]), weight.shape[0] // params.groups,
                               c_out_g, params.groups)
    if channels.partial:     # each x channel chunk gives its own rows of grad_weight
        channels = _Channels(channels.blocks, False)
    x4 = _rechunk_channels(x4, channels)
    axes = _axes(x4.shape[2:], g4.shape[2:], weight.shape[2:], params)
    tiles = [_tiles(_cuts(_bounds(c)[1:-1], ax.n_in), ax.reach, ax.whole())
             for ax, c in zip(axes, x4.chunks[2:])]
    token = _token(g4.name, x4.name, weight, params, backend, tiles, channels, dtype)
    g = _Graph(f"grad_weight-{token}", weight, None)
    kwargs = dict(stride=params.stride, dilation=params.dilation, backend=backend)
    blocks = []
    for cb, (c0, c1, oc0, oc1, groups) in enumerate(channels.blocks):
        parts = []
        for nb in range(len(x4.chunks[0])):
            for index, tile in _tile_grid(tiles):
                call = _Call(partial(_weight_grad_piece, calls.backward,
                                     padding=tuple(t.pad for t in tile),
                                     output_padding=tuple(t.extra for t in tile),
                                     groups=groups, **kwargs),
                             (slice(oc0, oc1), slice(None)), (slice(c0, c1),))
                key = (f"{g.name}-part", cb, nb, *index)
                g.dsk[key] = (_run_pair, call,
                              _pieces(g.dsk, g4.name, g4.chunks, nb, range(len(g4.chunks[1])),
                                      [t.out for t in tile]),
                              _pieces(g.dsk, x4.name, x4.chunks, nb, [cb],
                                      [t.src for t in tile]),
                              g.wkey)
                parts.append(key)
        blocks.append(_tree(g.dsk, f"{g.name}-sum-{cb}", parts))
    g.dsk[(g.name, *(0,) * weight.ndim)] = (_concat, blocks)
    return g.array(tuple((n,) for n in weight.shape), dtype, g4, x4)


def _bias_grad(g4, dtype):
    """``grad_bias`` as a one-chunk Dask array: a sum per ``grad_output`` block, summed over
    the blocks of each channel chunk in a fixed order."""
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph
    name = f"grad_bias-{_token(g4.name, dtype)}"
    dsk, totals = {}, []
    for cb in range(len(g4.chunks[1])):
        parts = []
        for nb in range(len(g4.chunks[0])):
            for index in itertools.product(*(range(len(c)) for c in g4.chunks[2:])):
                key = (f"{name}-part", cb, nb, *index)
                dsk[key] = (_sum_bias, (g4.name, nb, cb, *index), dtype)
                parts.append(key)
        totals.append(_tree(dsk, f"{name}-sum-{cb}", parts))
    dsk[(name, 0)] = (_concat, totals)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[g4])
    return da.Array(graph, name, chunks=((g4.shape[1],),), meta=_meta(dtype, 1))


def _gradient_operands(grad_output, x, weight, backend, data_format, rank):
    """A gradient call's operands: ``(last, g, x, weight)`` with ``g`` and ``x``
    channels-first Dask arrays with the same batch chunks (a NumPy one wrapped to match the
    other) and ``weight`` a NumPy array."""
    dispatch.check_method(backend)
    _check_gpu(backend)
    last, grad_output, x = dask_layout(data_format, grad_output, x, rank=rank)
    x_is_dask = is_dask_array(x)
    if x_is_dask:
        x = _as_dask(x, "x", rank)
    g = _as_dask(grad_output, "grad_output", rank,
                 like=_batched(x, rank) if x_is_dask else None)
    if not x_is_dask:
        x = _as_dask(x, "x", rank, like=_batched(g, rank))
    return last, g, x, as_small(weight, "weight")


def _gradients(g, x, dtype, needs, input_graph, weight_graph, last, rank):
    """``(grad_input, grad_weight, grad_bias)`` as asked for by ``needs``:
    ``input_graph(g4, x4)`` rechunked like ``x`` where they differ (zero-size or channel
    chunks of ``x``) and in the caller's layout, ``weight_graph(g4, x4)``, where ``g4`` and
    ``x4`` are the batched operands with the same batch chunks."""
    x4, g4 = _batched(x, rank), _batched(g, rank)
    if g4.chunks[0] != x4.chunks[0]:
        g4 = g4.rechunk({0: x4.chunks[0]})
    grad_input = grad_weight = grad_bias = None
    if needs[0]:
        gx = input_graph(g4, x4)
        gx = gx if gx.chunks == x4.chunks else gx.rechunk(x4.chunks)
        grad_input = laid_out(_unbatched_like(gx, x, rank), last, rank)
    if needs[1]:
        grad_weight = weight_graph(g4, x4)
    if needs[2]:
        grad_bias = _bias_grad(g4, dtype)
    return grad_input, grad_weight, grad_bias


def conv_transpose_backward(grad_output, x, weight, stride=1, padding=0, output_padding=0,
                            groups=1, dilation=1, *, output_size=None, needs_input_grad=True,
                            needs_weight_grad=True, needs_bias_grad=True, backend="auto",
                            data_format=None, calls):
    """The gradients of rank ``calls.rank`` (:func:`convtranspose.conv_transpose2d_backward`,
    :func:`convtranspose.conv_transpose3d_backward`) with a Dask ``grad_output`` or ``x``:
    lazy Dask arrays (``grad_input`` chunked like ``x``, in ``data_format``'s layout;
    ``grad_weight`` and ``grad_bias`` in one chunk each)."""
    rank = calls.rank
    last, g, x, weight = _gradient_operands(grad_output, x, weight, backend, data_format, rank)
    params, dtype = normalise_backward(
        g.shape, x.shape, weight.shape, [g.dtype, x.dtype, weight.dtype], stride=stride,
        padding=padding, output_padding=output_padding, dilation=dilation, groups=groups,
        output_size=_caller_output_size(output_size, x, rank, last), rank=rank)
    return _gradients(
        g, x, dtype, (needs_input_grad, needs_weight_grad, needs_bias_grad),
        lambda g4, x4: _conv_graph(g4, weight, None, params, dtype, x4.shape[2:], backend,
                                   calls, out_chunks=x4.chunks[2:]),
        lambda g4, x4: _weight_grad(g4, x4, weight, params, dtype, backend, calls), last, rank)


def conv_backward(grad_output, x, weight, stride=1, padding=0, dilation=1, groups=1, *,
                  needs_input_grad=True, needs_weight_grad=True, needs_bias_grad=True,
                  backend="auto", data_format=None, calls):
    """The gradients of rank ``calls.rank`` (:func:`convtranspose.conv2d_backward`,
    :func:`convtranspose.conv3d_backward`) with a Dask ``grad_output`` or ``x``: lazy Dask
    arrays (``grad_input`` chunked like ``x``). The gradients are the adjoint transposed
    convolution's forward and weight gradient, with ``grad_output`` as its input."""
    rank = calls.rank
    last, g, x, weight = _gradient_operands(grad_output, x, weight, backend, data_format, rank)
    params, dtype = normalise_conv_backward(
        g.shape, x.shape, weight.shape, [g.dtype, x.dtype, weight.dtype], stride=stride,
        padding=padding, dilation=dilation, groups=groups, rank=rank)
    # the rows of x that no output reads, per axis: output_padding of the adjoint
    x_sizes, g_sizes = x.shape[-rank:], g.shape[-rank:]
    extra = tuple(n - ((o - 1) * s - sum(p) + d * (k - 1) + 1) for n, o, s, p, d, k in
                  zip(x_sizes, g_sizes, params.stride, params.padding, params.dilation,
                      weight.shape[2:]))
    adjoint = ConvParams(params.stride, params.pads, extra, params.dilation, params.groups)
    return _gradients(
        g, x, dtype, (needs_input_grad, needs_weight_grad, needs_bias_grad),
        lambda g4, x4: _ct_graph(g4, weight, None, adjoint, dtype, x_sizes, backend, calls,
                                 out_chunks=x4.chunks[2:]),
        lambda g4, x4: _weight_grad(x4, g4, weight, adjoint, dtype, backend, calls), last, rank)


# ----------------------------------------------------------------------------
# explain


@dataclass(frozen=True)
class GraphPlan:
    """What the Dask graph of one transposed convolution call (of any rank) will do.

    :func:`convtranspose.explain` returns one for a Dask ``x``; ``str(plan)`` gives a
    readable summary, and ``plan.backend`` the backend most tiles run.

    Parameters
    ----------
    input_chunks, output_chunks : tuple of tuple of int
        Chunk sizes per axis (batched form).
    halo : tuple of (int, int)
        Per spatial axis (D, H, W in 3-D), the most input rows a tile reads before and
        after the input chunk it comes from.
    channel_blocks : int
        Blocks of input channels computed separately.
    channel_partials : bool
        Whether those blocks are partial sums of one output (``groups == 1``), summed in a
        fixed pairwise order.
    tasks : int
        Tasks of the operation's own graph layer (tiles, sums, weight and bias).
    backends : dict
        Backend -> number of tile tasks that run it (``backend="auto"`` picks per tile).

    See Also
    --------
    convtranspose.explain : what makes a :class:`GraphPlan`.
    convtranspose.dispatch.Choice : the result for NumPy and CUDA arrays.

    Examples
    --------
    >>> import numpy as np
    >>> import dask.array as da
    >>> import convtranspose as ct
    >>> x = da.zeros((4, 8, 32, 32), chunks=(2, 8, 16, 16), dtype=np.float32)
    >>> plan = ct.explain(x, np.zeros((8, 4, 4, 4), np.float32), stride=2, padding=1)
    >>> plan.output_chunks[0], plan.channel_blocks
    ((2, 2), 1)
    """

    input_chunks: tuple
    output_chunks: tuple
    halo: tuple
    channel_blocks: int
    channel_partials: bool
    tasks: int
    backends: dict

    @property
    def backend(self):
        """The backend most tiles run."""
        return max(self.backends, key=self.backends.get)

    def __str__(self):
        tiles = [len(c) for c in self.output_chunks]
        names = {2: ("rows", "columns"), 3: ("slices", "rows", "columns")}[len(self.halo)]
        lines = [f"dask graph: {tiles[0]} batch chunk(s) x "
                 + " x ".join(str(t) for t in tiles[2:])
                 + f" tiles x {self.channel_blocks} channel block(s)"
                 + (" summed in a fixed order" if self.channel_partials else ""),
                 f"input chunks: {self.input_chunks}",
                 f"output chunks: {self.output_chunks}",
                 "halo (before, after): " + ", ".join(f"{n} {h}" for n, h in
                                                        zip(names, self.halo)),
                 f"tasks: {self.tasks}",
                 "backend per tile: " + ", ".join(f"{b} x {n}"
                                                  for b, n in self.backends.items())]
        return "\n".join(lines)


def _halo(tiles, s):
    """Most rows read before and after the input chunk of each output tile (the rows the
    tile's output cut, divided by the stride, names)."""
    before = max(max(0, -(-t.out[0] // s) - t.src[0]) for t in tiles)
    after = max(max(0, t.src[1] - -(-t.out[1] // s)) for t in tiles)
    return before, after


def _plane_backend(x_shape, w_shape, params, dtype, out_sizes):
    """The backend ``auto`` runs for one 2-D tile: the dispatcher's choice."""
    return dispatch.choose(x_shape, w_shape, params, dtype, out_sizes).backend


def explain(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
            dilation=1, *, output_size=None, backend="auto", calls,
            tile_backend=_plane_backend):
    """:func:`convtranspose.explain` for a channels-first Dask ``x``: a :class:`GraphPlan`
    of the graph :func:`conv_transpose` builds with ``calls``; ``tile_backend(x_shape,
    w_shape, params, dtype, out_sizes)`` names the backend ``auto`` runs for one tile."""
    rank = calls.rank
    x, weight, bias, params, shape, dtype = _validate(
        x, weight, bias, normalise, dict(stride=stride, padding=padding,
                                         output_padding=output_padding, dilation=dilation,
                                         groups=groups, output_size=output_size), rank)
    dispatch.check_backend(backend)
    half = any(a is not None and is_half(a.dtype) for a in (x, weight, bias))
    x4 = _batched(x, rank)
    y4 = _ct_graph(x4, weight, bias, params, dtype, shape[-rank:], backend, calls)
    tiles = _ct_tiles(x4, weight.shape[2:], params, shape[-rank:])
    channels = _channel_blocks(_bounds(x4.chunks[1]), weight.shape[0] // params.groups,
                               weight.shape[1], params.groups)
    backends, seen = {}, {}
    for n in x4.chunks[0]:
        for c0, c1, _, _, grp in channels.blocks:
            for _, tile in _tile_grid(tiles):
                name = "direct" if half else backend     # half precision: the engine
                if name == "auto":
                    x_shape = (n, c1 - c0, *(t.src[1] - t.src[0] for t in tile))
                    w_shape = (c1 - c0, *weight.shape[1:])
                    key = (x_shape, tile, grp)
                    if key not in seen:
                        sub = normalise(x_shape, w_shape, None, [dtype], stride=params.stride,
                                        padding=tuple(t.pad for t in tile),
                                        output_padding=tuple(t.extra for t in tile),
                                        dilation=params.dilation, groups=grp, rank=rank)[0]
                        seen[key] = tile_backend(x_shape, w_shape, sub, dtype,
                                                 tuple(t.out[1] - t.out[0] for t in tile))
                    name = seen[key]
                backends[name] = backends.get(name, 0) + 1
    return GraphPlan(x4.chunks, y4.chunks,
                     tuple(_halo(t, s) for t, s in zip(tiles, params.stride)),
                     len(channels.blocks), channels.partial, len(y4.dask.layers[y4.name]),
                     backends)
