"""Fourier-domain convolutions: the projUNN update of every frequency block in one batched call.

A unitary convolution with C = 64 channels on a 32×32 grid has F = 1024
frequency blocks of size 64×64. A rank-1 step of all of them is one batched
:func:`unitary_lowrank.project` (projUNN-D) or :func:`unitary_lowrank.transport`
(projUNN-T) call on the (1024, 64, 64) stack (also ``project`` with the result
pool off: its 32 MiB result on fresh memory), compared with the dense baseline:
the SVD polar factor of each of the same stepped blocks (:func:`unitary_lowrank.polar`
of the stack: ``np.linalg.svd`` on the whole stack, in complex64; accuracy is
measured against :mod:`unitary_lowrank.testing.reference` in complex128). The
last rows time the whole layer step :func:`unitary_lowrank.conv.update` from
batch-8 gradient factors (batched
rank-1 sketch, then the batched retraction), and one forward convolution of
the batch for scale. Every variant runs in the same process on the same data.
"""

from __future__ import annotations

import numpy as np

import unitary_lowrank as ul
from benchmarks._timing import measure, without_result_pool
from unitary_lowrank import conv
from unitary_lowrank.testing.reference import reference_retract

__all__ = ["run"]


def _case(N: int, C: int, batch: int, dtype: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    layout = conv.FourierLayout(N, real=False)
    W = conv.random_blocks(C, layout, dtype=dtype, rng=rng)
    F = layout.n_blocks
    a = (0.01 * (rng.standard_normal((F, C, 1)) + 1j * rng.standard_normal((F, C, 1))))
    b = rng.standard_normal((F, C, 1)) + 1j * rng.standard_normal((F, C, 1))
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    x = rng.standard_normal((batch, C, N, N)).astype(np.float32)
    dy = rng.standard_normal((batch, C, N, N)).astype(np.float32)
    return layout, W, a.astype(dtype), b.astype(dtype), x, dy


def run(quick: bool) -> list[dict]:
    """Benchmark rows (see the module docstring); `quick` uses a 4×4 grid with 8 channels."""
    N, C, batch = (4, 8, 4) if quick else (32, 64, 8)
    dtype = "complex64"
    repeats, warmup = (3, 1) if quick else (5, 1)
    layout, W, a, b, x, dy = _case(N, C, batch, dtype)
    F = layout.n_blocks
    grad = conv.gradient_factors(x, dy, layout)
    lr = 0.01

    variants = {
        "dense SVD polar (np.linalg.svd on the stack)": lambda: ul.polar(
            W + a @ np.conj(np.swapaxes(b, -1, -2))),
        "project (projUNN-D), one batched call": lambda: ul.project(W, a, b),
        "transport (projUNN-T), one batched call": lambda: ul.transport(W, a, b),
        "conv.update polar: sketch + project": lambda: conv.update(
            W, grad, layout, lr=lr, rank=1, method="polar", rng=0),
        "conv.update exp: sketch + transport": lambda: conv.update(
            W, grad, layout, lr=lr, rank=1, method="exp", rng=0),
        "conv.convolve of the batch (for scale)": lambda: conv.convolve(W, x, layout),
    }
    times = {name: measure(fn, repeats=repeats, warmup=warmup) for name, fn in variants.items()}
    with without_result_pool():  # every result on fresh memory (the default reuses dropped ones)
        times["project, result pool off"] = measure(
            variants["project (projUNN-D), one batched call"], repeats=repeats, warmup=warmup)
    dense = times["dense SVD polar (np.linalg.svd on the stack)"]

    # accuracy of the compared variants, so a fast wrong answer cannot hide
    ref = reference_retract(W, a, b, "polar")  # in complex128
    proj_err = float(np.max(np.abs(ul.project(W, a, b) - ref)))
    new = conv.update(W, grad, layout, lr=lr, rank=1, method="exp", rng=0)
    orth = float(conv.orthogonality_error(new, layout))

    params = {"frequencies": F, "channels": C, "k": 1, "dtype": dtype, "grid": N,
              "batch": batch, "backend": "numpy"}
    rows = []
    for name, t in times.items():
        row_params = dict(params)
        if name.startswith("project"):
            row_params["max_abs_diff_vs_dense_polar_c128"] = proj_err
        if name.startswith("conv.update exp"):
            row_params["orthogonality_error_after"] = orth
        rows.append({
            "section": "conv",
            "case": name,
            "params": row_params,
            "time_s": t,
            "ratios": {"dense_svd_polar / this": dense / t},
        })
    return rows


if __name__ == "__main__":
    import sys

    for row in run(quick="--quick" in sys.argv):
        print(f"{row['case']:48s} {row['time_s'] * 1e3:10.2f} ms  "
              f"dense/this = {row['ratios']['dense_svd_polar / this']:7.2f}  {row['params']}")
