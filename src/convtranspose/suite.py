"""The benchmark suite of DESIGN.md section 3: one definition for the CLI, asv and notebooks."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Shape", "SUITE", "HELD_OUT", "RANKS_LAYOUTS", "get", "Network", "NETWORKS",
           "get_network"]


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
        dtype = np.dtype(dtype)
        x = rng.standard_normal((n, *self.x_shape[1:]), dtype=np.float64)
        bound = 1.0 / np.sqrt(self.w_shape[1] * math.prod(self.kernel))
        w = rng.uniform(-bound, bound, self.w_shape)
        b = rng.uniform(-bound, bound, self.c_out)
        if dtype.kind == "c":     # imaginary parts drawn after the real ones
            x = x + 1j * rng.standard_normal(x.shape)
            w = w + 1j * rng.uniform(-bound, bound, w.shape)
            b = b + 1j * rng.uniform(-bound, bound, b.shape)
        return self.in_layout(x.astype(dtype)), w.astype(dtype), b.astype(dtype)


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
    # added 7 December 2026 (issue 21: at least 12 layers), before any tuning on them
    Shape("melgan_1d", 4, 256, 128, 1, 128, 16, 8, 4, rank=1, data_format="NCW",
          note="MelGAN upsampler, length 128 -> 1024"),
    Shape("hifigan_1d_nwc", 16, 512, 256, 1, 32, 16, 8, 4, rank=1, data_format="NWC",
          note="hifigan_1d_b16, channels-last"),
    Shape("vnet_up", 1, 128, 64, 16, 16, 2, 2, 0, rank=3, d=16, data_format="NCDHW",
          note="V-Net up-convolution, 16^3 -> 32^3"),
    Shape("video_up", 2, 64, 32, 32, 32, (3, 4, 4), (1, 2, 2), 1, rank=3, d=8,
          data_format="NDHWC", note="video decoder, 8 frames, 32x32 -> 64x64"),
    Shape("vae_dec_nhwc", 128, 64, 32, 7, 7, 4, 2, 1, data_format="NHWC",
          note="vae_dec, channels-last"),
    Shape("srgan_up_nhwc", 1, 64, 64, 96, 96, 3, 2, 1, output_padding=1, data_format="NHWC",
          note="srgan_up, channels-last"),
)

_BY_NAME = {s.name: s for s in SUITE + HELD_OUT + RANKS_LAYOUTS}


def get(name):
    """The suite (or held-out) shape called ``name``; ``KeyError`` lists the names otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no suite shape {name!r}; known: {', '.join(_BY_NAME)}") from None



# ----------------------------------------------------------------------------
# whole networks (issue 21): the library's public functions with plain NumPy between the
# layers, and the same network in PyTorch with the same weights. Defined before any tuning
# on them; used by ``bench --networks``, the asv benchmarks and the tests.

@dataclass(frozen=True)
class Network:
    """A whole network: its parameters, our forward (NumPy between the library's functions)
    and PyTorch's, which compute the same thing from the same arrays.

    ``make(rng, dtype, batch)`` returns a dict of NumPy arrays (weights and inputs);
    ``ours(p, backend)`` and ``torch(p)`` (``p`` of torch tensors) return a tuple of
    outputs, in the same order. ``batch`` is the default batch of ``make``.
    """

    name: str
    batch: int
    make: Callable
    ours: Callable
    torch: Callable
    note: str = ""

    def arrays(self, dtype=np.float32, seed=0, batch=None):
        """The parameters and inputs, a dict of ``dtype`` arrays (``batch`` overrides the
        network's)."""
        return self.make(np.random.default_rng(seed), np.dtype(dtype),
                         self.batch if batch is None else batch)

    def runner(self, dtype=np.float32, backend="auto", seed=0, batch=None):
        """A zero-argument callable running our network; it returns the tuple of outputs."""
        p = self.arrays(dtype, seed, batch)
        return lambda: self.ours(p, backend)

    def torch_runner(self, dtype=np.float32, seed=0, batch=None):
        """A zero-argument callable running the network in PyTorch on the CPU, on tensors
        sharing the parameters' memory, or None without torch; it returns a tuple of tensors
        (:func:`torch_outputs` converts them)."""
        try:
            import torch
        except ImportError:
            return None
        p = {k: torch.from_numpy(v) for k, v in self.arrays(dtype, seed, batch).items()}
        return lambda: self.torch(p)


def torch_outputs(outputs):
    """A network's PyTorch outputs as NumPy arrays."""
    return tuple(o.detach().numpy() for o in outputs)


def _uniform(rng, dtype, shape, fan):
    bound = 1.0 / math.sqrt(fan)
    return rng.uniform(-bound, bound, shape).astype(dtype)


def _normal(rng, dtype, shape, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def _batchnorm(rng, dtype, c):
    """Eval-mode BatchNorm's statistics and the NumPy affine that applies them."""
    gamma, var = rng.uniform(0.5, 1.5, c), rng.uniform(0.5, 1.5, c)
    beta, mean = 0.1 * rng.standard_normal(c), 0.1 * rng.standard_normal(c)
    scale = gamma / np.sqrt(var + 1e-5)
    return dict(gamma=gamma.astype(dtype), beta=beta.astype(dtype), mean=mean.astype(dtype),
                var=var.astype(dtype), scale=scale.astype(dtype),
                shift=(beta - mean * scale).astype(dtype))


def _per_channel(v, rank=2):
    return v.reshape((-1,) + (1,) * rank)


# DCGAN generator (Radford et al., 2016), batch 64: the suite's dcgan_g1..g5 in a row
_DCGAN = ((100, 512, 1, 0), (512, 256, 2, 1), (256, 128, 2, 1), (128, 64, 2, 1), (64, 3, 2, 1))


def _dcgan_make(rng, dtype, batch):
    p = {"z": _normal(rng, dtype, (batch, 100, 1, 1))}
    for i, (ci, co, _, _) in enumerate(_DCGAN):
        p[f"w{i}"] = _normal(rng, dtype, (ci, co, 4, 4), 0.02)
        if i < 4:
            p.update({f"bn{i}_{k}": v for k, v in _batchnorm(rng, dtype, co).items()})
    p["gy"] = _normal(rng, dtype, (batch, 3, 64, 64))      # the training step's dL/dy
    return p


def _dcgan_forward(p, backend, keep=None):
    import convtranspose as ct
    h = p["z"]
    for i, (_, _, s, pad) in enumerate(_DCGAN):
        if keep is not None:
            keep.append(h)
        y = ct.conv_transpose2d(h, p[f"w{i}"], None, s, pad, backend=backend)
        if i < 4:
            a = y * _per_channel(p[f"bn{i}_scale"]) + _per_channel(p[f"bn{i}_shift"])
            if keep is not None:
                keep.append(a)
            h = np.maximum(a, 0)
        else:
            h = np.tanh(y)
    return h


def _dcgan_ours(p, backend):
    return (_dcgan_forward(p, backend),)


def _torch_dcgan_forward(p):
    import torch
    import torch.nn.functional as F
    h = p["z"]
    for i, (_, _, s, pad) in enumerate(_DCGAN):
        y = F.conv_transpose2d(h, p[f"w{i}"], None, s, pad)
        if i < 4:
            y = F.batch_norm(y, p[f"bn{i}_mean"], p[f"bn{i}_var"], p[f"bn{i}_gamma"],
                             p[f"bn{i}_beta"], training=False, eps=1e-5)
            h = torch.relu(y)
        else:
            h = torch.tanh(y)
    return h


def _dcgan_torch(p):
    import torch
    with torch.no_grad():
        return (_torch_dcgan_forward(p),)


def _dcgan_train_ours(p, backend):
    """Forward, then dL/dW of every layer from ``gy`` through tanh, BatchNorm and ReLU."""
    import convtranspose as ct
    keep = []
    out = _dcgan_forward(p, backend, keep)
    g = p["gy"] * (1 - out * out)                        # through tanh
    grads = [None] * len(_DCGAN)
    for i in reversed(range(len(_DCGAN))):
        _, _, s, pad = _DCGAN[i]
        x = keep[2 * i]
        gx, grads[i], _ = ct.conv_transpose2d_backward(
            g, x, p[f"w{i}"], s, pad, needs_input_grad=i > 0, needs_bias_grad=False,
            backend=backend)
        if i:                                            # through ReLU and the affine
            g = np.where(keep[2 * i - 1] > 0, gx, 0) * _per_channel(p[f"bn{i - 1}_scale"])
    return tuple(grads)


def _dcgan_train_torch(p):
    import torch
    ws = [p[f"w{i}"].detach().requires_grad_() for i in range(len(_DCGAN))]
    q = dict(p, **{f"w{i}": w for i, w in enumerate(ws)})
    return torch.autograd.grad(_torch_dcgan_forward(q), ws, p["gy"])


# VAE decoder, batch 128: a linear layer (NumPy), then 64->32 7x7->14x14 and 32->1 -> 28x28
def _vae_make(rng, dtype, batch):
    return {"z": _normal(rng, dtype, (batch, 128)),
            "fc_w": _uniform(rng, dtype, (64 * 7 * 7, 128), 128),
            "fc_b": _uniform(rng, dtype, (64 * 7 * 7,), 128),
            "w1": _uniform(rng, dtype, (64, 32, 4, 4), 32 * 16),
            "b1": _uniform(rng, dtype, (32,), 32 * 16),
            "w2": _uniform(rng, dtype, (32, 1, 4, 4), 16),
            "b2": _uniform(rng, dtype, (1,), 16)}


def _vae_ours(p, backend):
    import convtranspose as ct
    h = np.maximum(p["z"] @ p["fc_w"].T + p["fc_b"], 0).reshape(-1, 64, 7, 7)
    h = np.maximum(ct.conv_transpose2d(h, p["w1"], p["b1"], 2, 1, backend=backend), 0)
    y = ct.conv_transpose2d(h, p["w2"], p["b2"], 2, 1, backend=backend)
    return (1 / (1 + np.exp(-y)),)


def _vae_torch(p):
    import torch
    import torch.nn.functional as F
    with torch.no_grad():
        h = torch.relu(F.linear(p["z"], p["fc_w"], p["fc_b"])).reshape(-1, 64, 7, 7)
        h = torch.relu(F.conv_transpose2d(h, p["w1"], p["b1"], 2, 1))
        return (torch.sigmoid(F.conv_transpose2d(h, p["w2"], p["b2"], 2, 1)),)


# U-Net decoder (Ronneberger et al., 2015), two stages: up-convolution, skip, 3x3 conv
def _unet_make(rng, dtype, batch):
    return {"x": _normal(rng, dtype, (batch, 256, 32, 32)),
            "skip1": _normal(rng, dtype, (batch, 128, 64, 64)),
            "skip2": _normal(rng, dtype, (batch, 64, 128, 128)),
            "up1_w": _uniform(rng, dtype, (256, 128, 2, 2), 128 * 4),
            "up1_b": _uniform(rng, dtype, (128,), 128 * 4),
            "c1_w": _uniform(rng, dtype, (128, 256, 3, 3), 256 * 9),
            "c1_b": _uniform(rng, dtype, (128,), 256 * 9),
            "up2_w": _uniform(rng, dtype, (128, 64, 2, 2), 64 * 4),
            "up2_b": _uniform(rng, dtype, (64,), 64 * 4),
            "c2_w": _uniform(rng, dtype, (64, 128, 3, 3), 128 * 9),
            "c2_b": _uniform(rng, dtype, (64,), 128 * 9)}


def _unet_ours(p, backend):
    import convtranspose as ct
    h = p["x"]
    for i in (1, 2):
        u = ct.conv_transpose2d(h, p[f"up{i}_w"], p[f"up{i}_b"], 2, backend=backend)
        h = np.concatenate([u, p[f"skip{i}"]], axis=1)
        h = np.maximum(ct.conv2d(h, p[f"c{i}_w"], p[f"c{i}_b"], padding=1, backend=backend), 0)
    return (h,)


def _unet_torch(p):
    import torch
    import torch.nn.functional as F
    with torch.no_grad():
        h = p["x"]
        for i in (1, 2):
            u = F.conv_transpose2d(h, p[f"up{i}_w"], p[f"up{i}_b"], 2)
            h = torch.cat([u, p[f"skip{i}"]], dim=1)
            h = torch.relu(F.conv2d(h, p[f"c{i}_w"], p[f"c{i}_b"], padding=1))
        return (h,)


# HiFi-GAN-like vocoder upsampler (Kong et al., 2020, V1's rates 8, 8, 2, 2): 64 frames
_HIFIGAN = ((512, 256, 16, 8, 4), (256, 128, 16, 8, 4), (128, 64, 4, 2, 1), (64, 32, 4, 2, 1))


def _hifigan_make(rng, dtype, batch):
    p = {"mel": _normal(rng, dtype, (batch, 80, 64)),
         "pre_w": _uniform(rng, dtype, (512, 80, 7), 80 * 7),
         "pre_b": _uniform(rng, dtype, (512,), 80 * 7),
         "post_w": _uniform(rng, dtype, (1, 32, 7), 32 * 7),
         "post_b": _uniform(rng, dtype, (1,), 32 * 7)}
    for i, (ci, co, k, _, _) in enumerate(_HIFIGAN):
        p[f"up{i}_w"] = _uniform(rng, dtype, (ci, co, k), co * k)
        p[f"up{i}_b"] = _uniform(rng, dtype, (co,), co * k)
    return p


def _leaky(a, slope=0.1):
    return np.where(a > 0, a, a * a.dtype.type(slope))


def _hifigan_ours(p, backend):
    import convtranspose as ct
    h = ct.conv1d(p["mel"], p["pre_w"], p["pre_b"], padding=3, backend=backend)
    for i, (_, _, _, s, pad) in enumerate(_HIFIGAN):
        h = ct.conv_transpose1d(_leaky(h), p[f"up{i}_w"], p[f"up{i}_b"], s, pad,
                                backend=backend)
    y = ct.conv1d(_leaky(h), p["post_w"], p["post_b"], padding=3, backend=backend)
    return (np.tanh(y),)


def _hifigan_torch(p):
    import torch
    import torch.nn.functional as F
    with torch.no_grad():
        h = F.conv1d(p["mel"], p["pre_w"], p["pre_b"], padding=3)
        for i, (_, _, _, s, pad) in enumerate(_HIFIGAN):
            h = F.conv_transpose1d(F.leaky_relu(h, 0.1), p[f"up{i}_w"], p[f"up{i}_b"], s, pad)
        return (torch.tanh(F.conv1d(F.leaky_relu(h, 0.1), p["post_w"], p["post_b"],
                                    padding=3)),)



def _hifigan_train_make(rng, dtype, batch):
    p = _hifigan_make(rng, dtype, batch)
    p["gy"] = _normal(rng, dtype, (batch, 1, 64 * 8 * 8 * 2 * 2))   # the step's dL/dy
    return p


def _leaky_grad(g, a, slope=0.1):
    """``g`` through a leaky ReLU whose input was ``a``."""
    return np.where(a > 0, g, g * g.dtype.type(slope))


def _hifigan_train_ours(p, backend):
    """Forward, then dL/dW and dL/db of every layer from ``gy`` through tanh and the leaky
    ReLUs (each activation computed once and kept): the weight gradients of ``conv1d`` and
    ``conv_transpose1d``."""
    import convtranspose as ct
    pre = [ct.conv1d(p["mel"], p["pre_w"], p["pre_b"], padding=3, backend=backend)]
    act = [_leaky(pre[0])]
    for i, (_, _, _, s, pad) in enumerate(_HIFIGAN):
        pre.append(ct.conv_transpose1d(act[-1], p[f"up{i}_w"], p[f"up{i}_b"], s, pad,
                                       backend=backend))
        act.append(_leaky(pre[-1]))
    y = np.tanh(ct.conv1d(act[-1], p["post_w"], p["post_b"], padding=3, backend=backend))
    g, post_w, post_b = ct.conv1d_backward(p["gy"] * (1 - y * y), act[-1], p["post_w"],
                                           padding=3, backend=backend)
    grads = [post_w, post_b]
    for i in reversed(range(len(_HIFIGAN))):
        _, _, _, s, pad = _HIFIGAN[i]
        g, gw, gb = ct.conv_transpose1d_backward(_leaky_grad(g, pre[i + 1]), act[i],
                                                 p[f"up{i}_w"], s, pad, backend=backend)
        grads[:0] = [gw, gb]
    _, pre_w, pre_b = ct.conv1d_backward(_leaky_grad(g, pre[0]), p["mel"], p["pre_w"],
                                         padding=3, needs_input_grad=False, backend=backend)
    return (pre_w, pre_b, *grads)


def _hifigan_train_torch(p):
    import torch
    names = ["pre_w", "pre_b", *(f"up{i}_{k}" for i in range(len(_HIFIGAN)) for k in "wb"),
             "post_w", "post_b"]
    leaves = {k: p[k].detach().requires_grad_() for k in names}
    q = dict(p, **leaves)
    with torch.enable_grad():
        import torch.nn.functional as F
        h = F.conv1d(q["mel"], q["pre_w"], q["pre_b"], padding=3)
        for i, (_, _, _, s, pad) in enumerate(_HIFIGAN):
            h = F.conv_transpose1d(F.leaky_relu(h, 0.1), q[f"up{i}_w"], q[f"up{i}_b"], s, pad)
        y = torch.tanh(F.conv1d(F.leaky_relu(h, 0.1), q["post_w"], q["post_b"], padding=3))
        return torch.autograd.grad(y, [leaves[k] for k in names], p["gy"])

# 3-D volume decoder stage: up-convolution 16^3 -> 32^3, then a 3x3x3 convolution
def _volume_make(rng, dtype, batch):
    return {"x": _normal(rng, dtype, (batch, 64, 16, 16, 16)),
            "up_w": _uniform(rng, dtype, (64, 32, 2, 2, 2), 32 * 8),
            "up_b": _uniform(rng, dtype, (32,), 32 * 8),
            "c_w": _uniform(rng, dtype, (16, 32, 3, 3, 3), 32 * 27),
            "c_b": _uniform(rng, dtype, (16,), 32 * 27)}


def _volume_ours(p, backend):
    import convtranspose as ct
    h = np.maximum(ct.conv_transpose3d(p["x"], p["up_w"], p["up_b"], 2, backend=backend), 0)
    return (np.maximum(ct.conv3d(h, p["c_w"], p["c_b"], padding=1, backend=backend), 0),)


def _volume_torch(p):
    import torch
    import torch.nn.functional as F
    with torch.no_grad():
        h = torch.relu(F.conv_transpose3d(p["x"], p["up_w"], p["up_b"], 2))
        return (torch.relu(F.conv3d(h, p["c_w"], p["c_b"], padding=1)),)



def _volume_train_make(rng, dtype, batch):
    p = _volume_make(rng, dtype, batch)
    p["gy"] = _normal(rng, dtype, (batch, 16, 32, 32, 32))          # the step's dL/dy
    return p


def _volume_train_ours(p, backend):
    """Forward, then dL/dW and dL/db of both layers from ``gy`` through the activations
    (tanh: a ReLU's kink would let one float32 rounding of a value near zero decide a
    whole gradient term, so the check against PyTorch would measure the data, not the
    code)."""
    import convtranspose as ct
    h = np.tanh(ct.conv_transpose3d(p["x"], p["up_w"], p["up_b"], 2, backend=backend))
    y = np.tanh(ct.conv3d(h, p["c_w"], p["c_b"], padding=1, backend=backend))
    g, c_w, c_b = ct.conv3d_backward(p["gy"] * (1 - y * y), h, p["c_w"], padding=1,
                                     backend=backend)
    _, up_w, up_b = ct.conv_transpose3d_backward(g * (1 - h * h), p["x"], p["up_w"], 2,
                                                 needs_input_grad=False, backend=backend)
    return (up_w, up_b, c_w, c_b)


def _volume_train_torch(p):
    import torch
    import torch.nn.functional as F
    leaves = [p[k].detach().requires_grad_() for k in ("up_w", "up_b", "c_w", "c_b")]
    with torch.enable_grad():
        h = torch.tanh(F.conv_transpose3d(p["x"], leaves[0], leaves[1], 2))
        y = torch.tanh(F.conv3d(h, leaves[2], leaves[3], padding=1))
        return torch.autograd.grad(y, leaves, p["gy"])


#: Whole networks (issue 21), chosen before any tuning on them.
NETWORKS = (
    Network("dcgan_gen", 64, _dcgan_make, _dcgan_ours, _dcgan_torch,
            "DCGAN generator, batch 64: 5 transposed convolutions, eval BatchNorm + ReLU "
            "(NumPy), tanh"),
    Network("dcgan_train", 32, _dcgan_make, _dcgan_train_ours, _dcgan_train_torch,
            "the DCGAN generator's training step at batch 32: forward and every weight "
            "gradient (against torch autograd)"),
    Network("vae_dec", 128, _vae_make, _vae_ours, _vae_torch,
            "VAE decoder, batch 128: NumPy linear layer, 64->32 7x7->14x14, 32->1 -> 28x28"),
    Network("unet_dec", 1, _unet_make, _unet_ours, _unet_torch,
            "U-Net decoder, two stages: 2x2 up-convolution, skip concatenation, 3x3 conv2d"),
    Network("hifigan_up", 1, _hifigan_make, _hifigan_ours, _hifigan_torch,
            "HiFi-GAN-like upsampler: conv1d, 4 conv_transpose1d (x8, x8, x2, x2), "
            "leaky ReLU, 64 frames -> 16384 samples"),
    Network("volume_dec", 1, _volume_make, _volume_ours, _volume_torch,
            "3-D volume decoder: conv_transpose3d 64->32 16^3 -> 32^3, conv3d 32->16"),
    Network("hifigan_train", 1, _hifigan_train_make, _hifigan_train_ours,
            _hifigan_train_torch,
            "the HiFi-GAN-like upsampler's training step: forward and every weight and bias "
            "gradient (against torch autograd)"),
    Network("volume_train", 1, _volume_train_make, _volume_train_ours, _volume_train_torch,
            "the 3-D volume decoder's training step (tanh activations): forward and every "
            "weight and bias gradient (against torch autograd)"),
)

_NETWORKS_BY_NAME = {n.name: n for n in NETWORKS}


def get_network(name):
    """The network called ``name``; ``KeyError`` lists the names otherwise."""
    try:
        return _NETWORKS_BY_NAME[name]
    except KeyError:
        raise KeyError(f"no network {name!r}; known: {', '.join(_NETWORKS_BY_NAME)}") from None
