"""The benchmark suite of DESIGN.md section 3: one definition for the CLI, asv and notebooks."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Shape", "SUITE", "HELD_OUT", "get"]


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

    @property
    def k_hw(self):
        """The kernel's ``(kH, kW)``."""
        return tuple(self.k) if isinstance(self.k, tuple) else (self.k, self.k)

    @property
    def x_shape(self):
        return (self.n, self.c_in, self.h, self.w)

    @property
    def w_shape(self):
        return (self.c_in, self.c_out // self.groups, *self.k_hw)

    @property
    def flops(self):
        """``2*N*C_in*(C_out/groups)*kH*kW*H*W``, the count every GFLOP/s figure uses."""
        k_h, k_w = self.k_hw
        return 2 * self.n * self.c_in * (self.c_out // self.groups) * k_h * k_w * self.h * self.w

    def kwargs(self):
        """Keyword arguments for :func:`convtranspose.conv_transpose2d`."""
        return dict(stride=self.stride, padding=self.padding,
                    output_padding=self.output_padding, groups=self.groups,
                    dilation=self.dilation)

    def arrays(self, dtype=np.float32, seed=0, batch=None):
        """Random ``(x, weight, bias)`` of this shape; ``batch`` overrides ``n``."""
        rng = np.random.default_rng(seed)
        n = self.n if batch is None else batch
        x = rng.standard_normal((n, *self.x_shape[1:]), dtype=np.float64).astype(dtype)
        bound = 1.0 / np.sqrt(self.w_shape[1] * self.k_hw[0] * self.k_hw[1])
        w = rng.uniform(-bound, bound, self.w_shape).astype(dtype)
        b = rng.uniform(-bound, bound, self.c_out).astype(dtype)
        return x, w, b


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

_BY_NAME = {s.name: s for s in SUITE + HELD_OUT}


def get(name):
    """The suite (or held-out) shape called ``name``; ``KeyError`` lists the names otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no suite shape {name!r}; known: {', '.join(_BY_NAME)}") from None
