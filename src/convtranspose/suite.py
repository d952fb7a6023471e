"""The benchmark suite of DESIGN.md section 3: one definition for the CLI, asv and notebooks."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Shape", "SUITE", "HELD_OUT", "RANKS_LAYOUTS", "get"]


@dataclass(frozen=True)
class Shape:
    """One benchmark problem: a batch, its channels, image size and hyper-parameters."""

    name: str
    n: int
    c_in: int
    c_out: int
    h: int
    w: int
    k: int | tuple        # an int, or (kH, kW)
    stride: int | tuple
    padding: int | tuple
    output_padding: int | tuple = 0
    dilation: int | tuple = 1
    groups: int = 1
    note: str = ""
    rank: int = 2         # spatial dimensions: 1 (length w), 2 (h, w) or 3 (d, h, w)
    d: int = 1
    data_format: str = "NCHW"   # the layout of x and of the result (see `arrays`)

    @property
    def k_hw(self):
        """The kernel's ``(kH, kW)`` (2-D shapes)."""
        return tuple(self.k) if isinstance(self.k, tuple) else (self.k, self.k)

    @property
    def kernel(self):
        """The kernel's size per spatial dimension."""
        return tuple(self.k) if isinstance(self.k, tuple) else (self.k,) * self.rank

    @property
    def spatial(self):
        """The input's size per spatial dimension."""
        return {1: (self.w,), 2: (self.h, self.w), 3: (self.d, self.h, self.w)}[self.rank]

    @property
    def channels_last(self):
        return self.data_format in ("NWC", "NHWC", "NDHWC")

    @property
    def x_shape(self):
        """The input's shape, channels first (as PyTorch indexes it, whatever the layout)."""
        return (self.n, self.c_in, *self.spatial)

    @property
    def w_shape(self):
        return (self.c_in, self.c_out // self.groups, *self.kernel)

    @property
    def flops(self):
        """``2*N*C_in*(C_out/groups)*prod(kernel)*prod(spatial)``, the count every GFLOP/s
        figure uses."""
        return (2 * self.n * self.c_in * (self.c_out // self.groups) * math.prod(self.kernel)
                * math.prod(self.spatial))

    def kwargs(self):
        """Keyword arguments for the transposed convolution, PyTorch's and ours."""
        return dict(stride=self.stride, padding=self.padding,
                    output_padding=self.output_padding, groups=self.groups,
                    dilation=self.dilation)

    def function(self):
        """``convtranspose.conv_transpose{1,2,3}d`` with ``data_format`` bound (a callable
        taking ``x, weight, bias`` and the :meth:`kwargs`)."""
        import functools

        import convtranspose
        f = getattr(convtranspose, f"conv_transpose{self.rank}d")
        return f if self.data_format in ("NCW", "NCHW", "NCDHW") else \
            functools.partial(f, data_format=self.data_format)

    def in_layout(self, a):
        """A channels-first array laid out as this shape's ``data_format`` (C-contiguous
        there)."""
        return np.ascontiguousarray(np.moveaxis(a, 1, -1)) if self.channels_last else a

    def arrays(self, dtype=np.float32, seed=0, batch=None):
        """Random ``(x, weight, bias)`` of this shape; ``batch`` overrides ``n``; ``x`` in
        the shape's layout."""
        rng = np.random.default_rng(seed)
        n = self.n if batch is None else batch
        x = rng.standard_normal((n, *self.x_shape[1:]), dtype=np.float64).astype(dtype)
        bound = 1.0 / np.sqrt(self.w_shape[1] * math.prod(self.kernel))
        w = rng.uniform(-bound, bound, self.w_shape).astype(dtype)
        b = rng.uniform(-bound, bound, self.c_out).astype(dtype)
        return self.in_layout(x), w, b


def _shape(name, n, c_in, c_out, h, w, k, s, p, op=0, d=1, g=1, note=""):
    return Shape(name, n, c_in, c_out, h, w, k, s, p, op, d, g, note)


SUITE = (
    _shape("seed_tiny", 2, 1, 1, 2, 2, 5, 2, 2, note="the tutorial's example"),
    _shape("seed_shape", 1, 5, 3, 5, 7, 5, 1, 1),
    _shape("dcgan_g1", 64, 100, 512, 1, 1, 4, 1, 0, note="DCGAN generator, batch 64"),
    _shape("dcgan_g2", 64, 512, 256, 4, 4, 4, 2, 1),
    _shape("dcgan_g3", 64, 256, 128, 8, 8, 4, 2, 1),
    _shape("dcgan_g4", 64, 128, 64, 16, 16, 4, 2, 1),
    _shape("dcgan_g5", 64, 64, 3, 32, 32, 4, 2, 1),
    _shape("unet_up1", 1, 1024, 512, 28, 28, 2, 2, 0, note="U-Net up-convolutions"),
    _shape("unet_up4", 1, 128, 64, 128, 128, 2, 2, 0),
    _shape("fcn_up8", 1, 21, 21, 64, 64, 16, 8, 4, note="FCN-8s final upsampling"),
    _shape("depthwise_up", 8, 64, 64, 64, 64, 4, 2, 1, g=64,
           note="per-channel (bilinear-style) upsampling"),
    _shape("dilated", 8, 64, 64, 32, 32, 3, 1, 2, d=2),
    _shape("fsrcnn_up", 1, 56, 1, 128, 128, 9, 3, 4, op=2, note="super-resolution deconvolution"),
    _shape("stride1_big", 1, 16, 16, 256, 256, 3, 1, 1),
)

#: Layers of real networks outside the suite, chosen before any tuning on them (issue 11)
#: and never used to fit the cost model: speed is judged on them apart from the suite.
HELD_OUT = (
    _shape("vae_dec", 128, 64, 32, 7, 7, 4, 2, 1, note="VAE decoder, small image, big batch"),
    _shape("cifar_rgb", 256, 128, 3, 16, 16, 4, 2, 1, note="CIFAR GAN's RGB layer, batch 256"),
    _shape("torch_1d", 1, 1026, 1, 1, 224, (1, 1024), (1, 256), 0,
           note="1-D-shaped layer of PyTorch's slowness report"),
    _shape("hifigan_2d", 16, 512, 256, 1, 32, (1, 16), (1, 8), (0, 4),
           note="HiFi-GAN upsampler as a 1 x L image"),
    _shape("pointwise", 8, 256, 128, 32, 32, 1, 1, 0, note="1x1 transposed convolution"),
    _shape("odd_rect", 4, 32, 32, 24, 40, (3, 5), (3, 2), (1, 2), op=(2, 1),
           note="odd strides, rectangular kernel"),
    _shape("grouped", 8, 128, 128, 16, 16, 4, 2, 1, g=4, note="grouped (ResNeXt-style) decoder"),
    _shape("atrous", 4, 128, 64, 24, 24, 3, 1, 4, d=4, note="dilation 4"),
    _shape("srgan_up", 1, 64, 64, 96, 96, 3, 2, 1, op=1, note="SR upsampling, output_padding 1"),
    _shape("tiny_dec", 1, 32, 16, 20, 20, 3, 2, 1, op=1, note="batch-1 small decoder layer"),
)

#: Layers of the other ranks and of the channels-last layout (issue 13): a HiFi-GAN
#: upsampler (1-D), a 3-D U-Net up-convolution, and two suite layers read and written
#: channels-last (PyTorch runs them in its channels_last memory format).
RANKS_LAYOUTS = (
    Shape("hifigan_1d_b1", 1, 512, 256, 1, 32, 16, 8, 4, rank=1, data_format="NCW",
          note="HiFi-GAN upsampling layer, length 32 -> 256"),
    Shape("hifigan_1d_b16", 16, 512, 256, 1, 32, 16, 8, 4, rank=1, data_format="NCW"),
    Shape("unet3d_up", 1, 64, 32, 32, 32, 2, 2, 0, rank=3, d=32, data_format="NCDHW",
          note="3-D U-Net up-convolution, 32^3 -> 64^3"),
    Shape("unet3d_up_ndhwc", 1, 64, 32, 32, 32, 2, 2, 0, rank=3, d=32, data_format="NDHWC"),
    Shape("dcgan_g3_nhwc", 64, 256, 128, 8, 8, 4, 2, 1, data_format="NHWC",
          note="dcgan_g3, channels-last"),
    Shape("unet_up4_nhwc", 1, 128, 64, 128, 128, 2, 2, 0, data_format="NHWC",
          note="unet_up4, channels-last"),
)

_BY_NAME = {s.name: s for s in SUITE + HELD_OUT + RANKS_LAYOUTS}


def get(name):
    """The suite (or held-out) shape called ``name``; ``KeyError`` lists the names otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no suite shape {name!r}; known: {', '.join(_BY_NAME)}") from None
