"""Train a small convolutional autoencoder on scikit-learn's 8x8 digits with NumPy only.

Encoder: two stride-2 ``Conv2d`` layers (8x8 -> 4x4 -> 2x2); decoder: two stride-2
``ConvTranspose2d`` layers (2x2 -> 4x4 -> 8x8) and a sigmoid. Gradients come from the
layers' ``backward``; the optimiser is Adam written in NumPy (PyTorch's update rule).
With PyTorch installed, :func:`torch_check` runs the same model's forward pass and one
training step in PyTorch autograd and reports the largest differences.

Needs scikit-learn for the digits and matplotlib for ``--plot``: ``pip install
".[examples]"`` from the repository. Run ``python examples/train_autoencoder.py
[--steps 600] [--plot out.png]``; the environment variable ``CONVTRANSPOSE_TRAIN_STEPS``
overrides the default step count (CI uses it to keep the notebook short).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import convtranspose as ct

DEFAULT_STEPS = 600


def _optional(module, purpose):
    """Import ``module`` (scikit-learn or matplotlib), or say how to install it."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{purpose} needs {exc.name}, which is not installed: "
                          'pip install ".[examples]" (scikit-learn, matplotlib)') from exc


def default_steps():
    """Steps to train: ``CONVTRANSPOSE_TRAIN_STEPS`` if set, else :data:`DEFAULT_STEPS`."""
    return int(os.environ.get("CONVTRANSPOSE_TRAIN_STEPS", DEFAULT_STEPS))


class ReLU:
    def forward(self, x):
        self._mask = x > 0
        return np.where(self._mask, x, 0).astype(x.dtype, copy=False)

    def backward(self, g):
        return np.where(self._mask, g, 0).astype(g.dtype, copy=False)

    def parameters(self):
        return []

    def gradients(self):
        return []


class Sigmoid:
    def forward(self, x):
        self._y = 1 / (1 + np.exp(-x))
        return self._y

    def backward(self, g):
        return g * self._y * (1 - self._y)

    def parameters(self):
        return []

    def gradients(self):
        return []


class Autoencoder:
    """1x8x8 -> 32x2x2 -> 1x8x8, the layers initialised as PyTorch initialises them."""

    def __init__(self, dtype=np.float32, seed=0):
        rng = np.random.default_rng(seed)
        kw = dict(dtype=dtype, seed=rng)
        self.layers = [
            ct.Conv2d(1, 16, 3, stride=2, padding=1, **kw), ReLU(),
            ct.Conv2d(16, 32, 3, stride=2, padding=1, **kw), ReLU(),
            ct.ConvTranspose2d(32, 16, 4, stride=2, padding=1, **kw), ReLU(),
            ct.ConvTranspose2d(16, 1, 4, stride=2, padding=1, **kw), Sigmoid(),
        ]

    def forward(self, x):
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, g):
        for layer in reversed(self.layers):
            g = layer.backward(g)
        return g

    def parameters(self):
        return [p for layer in self.layers for p in layer.parameters()]

    def gradients(self):
        return [g for layer in self.layers for g in layer.gradients()]


class Adam:
    """``torch.optim.Adam``'s update (no weight decay, no amsgrad), in place on NumPy arrays."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads):
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1 ** self.t, 1 - b2 ** self.t
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            p -= (self.lr / c1) * m / (np.sqrt(v) / np.sqrt(c2) + self.eps)


def mse(y, target):
    """Mean squared error and its gradient with respect to ``y``."""
    diff = y - target
    return float(np.mean(diff * diff)), (2 / diff.size) * diff


def load_digits(dtype=np.float32, test_fraction=0.2, seed=0):
    """The 1797 8x8 digits scaled to [0, 1] as ``(N, 1, 8, 8)``; a train/test split."""
    datasets = _optional("sklearn.datasets", "loading the digits")
    images = (datasets.load_digits().images / 16.0).astype(dtype)[:, None]
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = int(len(images) * test_fraction)
    return images[order[n_test:]], images[order[:n_test]]


def train(model, train_x, test_x, steps, batch=64, lr=3e-3, seed=0, log_every=100,
          verbose=True):
    """Adam on mini-batches; returns ``(train_losses, [(step, test_loss), ...])``, the test
    loss measured before the first step and every ``log_every`` steps."""
    rng = np.random.default_rng(seed)
    opt = Adam(model.parameters(), lr=lr)
    losses, test_losses = [], [(0, mse(model.forward(test_x), test_x)[0])]
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        xb = train_x[rng.integers(0, len(train_x), batch)]
        loss, g = mse(model.forward(xb), xb)
        model.backward(g)
        opt.step(model.gradients())
        losses.append(loss)
        if step % log_every == 0 or step == steps:
            test_loss = mse(model.forward(test_x), test_x)[0]
            test_losses.append((step, test_loss))
            if verbose:
                print(f"step {step:5d}  train {np.mean(losses[-log_every:]):.4f}  "
                      f"test {test_loss:.4f}  ({time.perf_counter() - t0:.1f} s)")
    return losses, test_losses


def torch_check(seed=0, batch=16, lr=3e-3):
    """Forward and one Adam step of the float64 model here and in PyTorch autograd.

    Returns ``{"output", "loss", "input_grad", "gradients", "parameters"}``: the largest
    relative differences, or ``None`` without torch.
    """
    try:
        import torch
    except ImportError:
        return None
    model = Autoencoder(np.float64, seed)
    ref = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(16, 1, 4, stride=2, padding=1), torch.nn.Sigmoid(),
    ).double()
    with torch.no_grad():
        for tp, p in zip(ref.parameters(), model.parameters()):
            tp.copy_(torch.from_numpy(p))
    x = load_digits(np.float64)[0][:batch]
    tx = torch.tensor(x, requires_grad=True)

    def rel(a, b):
        b = np.asarray(b)
        return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))

    y = model.forward(x)
    loss, g = mse(y, x)
    gx = model.backward(g)
    ty = ref(tx)
    tloss = torch.nn.functional.mse_loss(ty, torch.from_numpy(x))
    topt = torch.optim.Adam(ref.parameters(), lr=lr)
    topt.zero_grad()
    tloss.backward()
    result = dict(output=rel(y, ty.detach().numpy()), loss=abs(loss - tloss.item()) / tloss.item(),
                  input_grad=rel(gx, tx.grad.numpy()),
                  gradients=max(rel(a, tp.grad.numpy())
                                for a, tp in zip(model.gradients(), ref.parameters())))
    Adam(model.parameters(), lr=lr).step(model.gradients())
    topt.step()
    result["parameters"] = max(rel(p, tp.detach().numpy())
                               for p, tp in zip(model.parameters(), ref.parameters()))
    return result


def plot(losses, test_losses, model, test_x, path=None, n=10):
    """Loss curve and ``n`` test digits above their reconstructions."""
    plt = _optional("matplotlib.pyplot", "--plot")
    fig = plt.figure(figsize=(10, 5.5))
    ax = fig.add_subplot(2, 1, 1)
    window = max(1, len(losses) // 50)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    ax.semilogy(np.arange(window, len(losses) + 1), smooth, label="train (running mean)")
    ax.semilogy(*zip(*test_losses), "o-", label="test")
    ax.set_xlabel("step")
    ax.set_ylabel("MSE")
    ax.legend()
    recon = model.forward(test_x[:n])
    for i in range(n):
        for row, img in enumerate((test_x[i, 0], recon[i, 0])):
            a = fig.add_subplot(4, n, 2 * n + row * n + i + 1)
            a.imshow(img, cmap="gray_r", vmin=0, vmax=1)
            a.set_axis_off()
    fig.tight_layout()
    if path:
        fig.savefig(path, dpi=80)
    return fig


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=default_steps())
    parser.add_argument("--plot", default=None, help="save the figure to this file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train_x, test_x = load_digits()
    model = Autoencoder(np.float32, args.seed)
    losses, test_losses = train(model, train_x, test_x, args.steps, seed=args.seed,
                                log_every=max(1, min(100, args.steps // 5)))
    print(f"test MSE: {test_losses[0][1]:.4f} at step {test_losses[0][0]} -> "
          f"{test_losses[-1][1]:.4f} at step {test_losses[-1][0]}")
    check = torch_check(args.seed)
    if check is None:
        print("PyTorch not installed: skipped the autograd check")
    else:
        print("largest relative difference to PyTorch autograd (float64): "
              + ", ".join(f"{k} {v:.1e}" for k, v in check.items()))
    if args.plot:
        plot(losses, test_losses, model, test_x, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
