# How many taps reach each output pixel (docs/guide/semantics.md)
import matplotlib.pyplot as plt
import numpy as np
import convtranspose as ct

x = np.ones((1, 6, 6))
fig, axes = plt.subplots(1, 2, figsize=(8, 3.8))
for ax, k in zip(axes, (3, 4)):
    w = np.ones((1, 1, k, k))
    counts = ct.conv_transpose2d(x, w, stride=2, padding=1)[0]
    ax.imshow(counts, cmap="Blues", vmin=0, vmax=4)
    for (i, j), c in np.ndenumerate(counts):
        ax.text(j, i, int(c), ha="center", va="center", fontsize=7)
    h, w_out = counts.shape
    ax.set_title(f"kernel {k}, stride 2, padding 1: {h} x {w_out}")
    ax.axis("off")
fig.tight_layout()
