"""The output grid of a 3 x 3 input, kernel 3, stride 2, padding 1 (docs/guide/semantics.md)."""
import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle

import convtranspose as ct

H, k, s, p = 3, 3, 2, 1
full = (H - 1) * s + (k - 1) + 1          # the uncropped grid
out = ct.output_shape((1, H, H), (1, 1, k, k), stride=s, padding=p)[-1]


def shade(i, j):
    return 0.35 + 0.2 * ((i + j) % 2)


fig, (a, b) = plt.subplots(1, 2, figsize=(8.2, 4.0), width_ratios=[3, full])
for i in range(H):
    for j in range(H):
        a.add_patch(Rectangle((j, i), 1, 1, fc="tab:blue", ec="white", alpha=shade(i, j)))
        a.text(j + 0.5, i + 0.5, f"({i},{j})", ha="center", va="center", fontsize=8)
a.set(xlim=(0, H), ylim=(H, 0), title=f"input {H} x {H}")
for i in range(full):
    for j in range(full):
        cropped = min(i, j) < p or max(i, j) >= full - p
        b.add_patch(Rectangle((j, i), 1, 1, fc="0.85" if cropped else "white", ec="0.6"))
for i in range(H):
    for j in range(H):
        b.add_patch(Rectangle((j * s, i * s), 1, 1, fc="tab:blue", alpha=shade(i, j)))
        b.text(j * s + 0.5, i * s + 0.5, f"({i},{j})", ha="center", va="center", fontsize=7)
b.add_patch(Rectangle((s, s), k, k, fill=False, ec="tab:orange", lw=2.5, ls="--"))
b.add_patch(Rectangle((p, p), out, out, fill=False, ec="black", lw=2.5))
b.text(full / 2, full + 0.75, f"grey: cropped by padding={p}; black: the {out} x {out} "
       "output; dashed: taps of input (1,1)", ha="center", fontsize=8)
b.set(xlim=(0, full), ylim=(full + 1.2, 0), title=f"output grid, kernel {k}, stride {s}")
for ax in (a, b):
    ax.set_aspect("equal")
    ax.axis("off")
fig.tight_layout()
