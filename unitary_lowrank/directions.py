r"""Step directions built from a gradient: RMSprop's and Adam's preconditioned directions.

A direction ``D`` is what a training step moves along: the Euclidean step is
``−lr·D``, which :func:`unitary_lowrank.step` (or a retraction of its low-rank
factors) maps back onto the unitary group. The plain gradient is one
direction; :func:`rmsprop_direction` is RMSprop's, which divides each entry of
the gradient by the root of a running mean of its squared modulus, so that the
size of the step no longer depends on the scale of the loss;
:func:`adam_direction` is Adam's, which also keeps a running mean of the
gradient itself (momentum) and corrects both means for their start at zero.

The functions are written with array-API expressions only (no in-place
writes, no Python branching on values), so they run on every supported
library and device and under ``jax.jit``; the state they keep is returned,
never stored.
"""

from __future__ import annotations

import math
import numbers
from types import ModuleType
from typing import Any

from array_api_compat import is_torch_namespace

from ._array_api import dtype_name, get_namespace, is_complex, real_dtype
from ._validation import as_real, check_dtype, check_same_device

__all__ = ["adam_direction", "rmsprop_direction"]


def rmsprop_direction(
    G: Any,
    square_avg: Any = None,
    /,
    *,
    alpha: float = 0.99,
    eps: float = 1e-8,
    xp: ModuleType | None = None,
) -> tuple[Any, Any]:
    r"""RMSprop's direction ``G / (√v + ε)`` and the new running mean ``v`` of ``|G|²``.

    With ``v₀`` the previous running mean (`square_avg`)::

        v = α v₀ + (1 − α) |G|²        ((1 − α) |G|² when square_avg is None)
        D = G / (√v + ε)

    element by element. ``|G|²`` is the squared modulus ``Re(G Ḡ)``, so `v` is
    real and non-negative for complex gradients too (``G²`` would be complex).
    An RMSprop step of a weight ``W`` is ``W − lr·D``; for a unitary weight,
    hand ``D`` to :func:`~unitary_lowrank.step` as its gradient.

    Parameters
    ----------
    G : array, shape (...)
        The gradient, float32, float64, complex64 or complex128, of any shape
        (every axis is element-wise; leading axes may be batch axes).
    square_avg : array, shape (...), optional
        The running mean ``v₀`` returned by the previous call, of the shape of
        `G` and its real dtype (float32 for complex64 `G`) on its device; None
        for the first step.
    alpha : float, default: 0.99
        Smoothing constant α of the running mean, in [0, 1).
    eps : float, default: 1e-8
        Added to ``√v`` before dividing, > 0 and finite.
    xp : array namespace, optional
        Namespace of `G`; inferred when omitted.

    Returns
    -------
    direction : array, shape (...)
        ``G / (√v + ε)``, of the dtype of `G`.
    square_avg : array, shape (...)
        The new running mean ``v``, real, to pass to the next call.

    Raises
    ------
    TypeError
        If `G` or `square_avg` is not an array of a supported library and
        dtype (`square_avg` must have the real dtype of `G`), they come from
        different libraries, or `alpha`, `eps` are not real numbers.
    ValueError
        If `square_avg` has another shape than `G` or lies on another device,
        `alpha` is not in [0, 1) or `eps` is not a positive finite number.

    Notes
    -----
    Neither input is modified. The values are never inspected (no check for
    NaN), so the function may be traced by ``jax.jit`` with `alpha` and `eps`
    as Python numbers.

    Examples
    --------
    >>> import numpy as np
    >>> import unitary_lowrank as ul
    >>> G = np.array([3.0, -4.0])
    >>> D, v = ul.rmsprop_direction(G, alpha=0.75)
    >>> v.tolist()  # (1 - 0.75) * |G|²
    [2.25, 4.0]
    >>> np.round(D, 6).tolist()  # G / (√v + ε): a first step of ±1 / √(1 − α)
    [2.0, -2.0]
    >>> D, v = ul.rmsprop_direction(G, v, alpha=0.75)
    >>> v.tolist()  # 0.75 * v + 0.25 * |G|²
    [3.9375, 7.0]

    Complex gradients give a real running mean:

    >>> D, v = ul.rmsprop_direction(np.array([1j]), alpha=0.99)
    >>> v.dtype, bool(np.allclose(D, 10j))
    (dtype('float64'), True)
    """
    if square_avg is None:
        xp = get_namespace(("G", G), xp=xp)
    else:
        xp = get_namespace(("G", G), ("square_avg", square_avg), xp=xp)
    check_dtype(G, "G", xp)
    alpha = as_real(alpha, "alpha")
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must be in [0, 1), got {alpha!r}")
    eps = as_real(eps, "eps", positive=True)
    complex_ = is_complex(xp, G.dtype)
    if square_avg is not None:
        want = real_dtype(xp, G.dtype)
        if square_avg.dtype != want:
            raise TypeError(
                f"square_avg must have dtype {dtype_name(xp, want)}, the real dtype of G "
                f"({dtype_name(xp, G.dtype)}), got {dtype_name(xp, square_avg.dtype)}"
            )
        if tuple(square_avg.shape) != tuple(G.shape):
            raise ValueError(
                f"square_avg must have the shape of G {tuple(G.shape)}, "
                f"got {tuple(square_avg.shape)}"
            )
        check_same_device([("G", G), ("square_avg", square_avg)])
    if not complex_ and _fused_torch(xp, G, square_avg):
        return _rmsprop_torch(G, square_avg, alpha, eps)
    sq = xp.real(G * xp.conj(G)) if complex_ else G * G
    if square_avg is None:
        v = (1.0 - alpha) * sq
    else:
        v = alpha * square_avg + (1.0 - alpha) * sq
    return G / (xp.sqrt(v) + eps), v


def _fused_torch(xp: ModuleType, G: Any, square_avg: Any) -> bool:
    """Whether the fused torch path applies: real torch tensors outside autograd."""
    if not is_torch_namespace(xp):
        return False
    return not (G.requires_grad or (square_avg is not None and square_avg.requires_grad))


def _rmsprop_torch(G: Any, square_avg: Any, alpha: float, eps: float) -> tuple[Any, Any]:
    """:func:`rmsprop_direction` for real torch tensors in four passes and two new tensors.

    The same formula as the portable expression (which allocates seven temporaries,
    one per operation), written into the two results in place: ``v`` by ``mul`` and
    ``addcmul_``, the direction by ``sqrt``, ``add_`` and ``div`` into one buffer.
    Neither input is written. Only outside autograd (``sqrt`` keeps its output for
    the backward pass, which the in-place ``add_`` would spoil).
    """
    import torch  # G is a torch tensor: torch is imported

    if square_avg is None:
        v = torch.mul(G, G).mul_(1.0 - alpha)
    else:
        v = torch.mul(square_avg, alpha).addcmul_(G, G, value=1.0 - alpha)
    D = torch.sqrt(v).add_(eps)
    return torch.div(G, D, out=D), v


def adam_direction(
    G: Any,
    exp_avg: Any = None,
    exp_avg_sq: Any = None,
    step: int = 1,
    /,
    *,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    xp: ModuleType | None = None,
) -> tuple[Any, Any, Any]:
    r"""Adam's direction ``m̂ / (√v̂ + ε)`` and the new running means ``m`` and ``v``.

    With ``m₀``, ``v₀`` the previous running means (`exp_avg`, `exp_avg_sq`)
    and ``t`` the number of this step (`step`, 1 for the first)::

        m = β₁ m₀ + (1 − β₁) G          ((1 − β₁) G when exp_avg is None)
        v = β₂ v₀ + (1 − β₂) |G|²       ((1 − β₂) |G|² when exp_avg_sq is None)
        D = (m / (1 − β₁ᵗ)) / (√(v / (1 − β₂ᵗ)) + ε)

    element by element, as :class:`torch.optim.Adam` computes it. ``|G|²`` is
    the squared modulus, so `v` is real for complex gradients; `m` has the
    dtype of `G`. An Adam step of a weight ``W`` is ``W − lr·D``; for a unitary
    weight, hand ``D`` to :func:`~unitary_lowrank.step` as its gradient.

    Parameters
    ----------
    G : array, shape (...)
        The gradient, float32, float64, complex64 or complex128.
    exp_avg : array, shape (...), optional
        The running mean ``m₀`` of the gradient from the previous call (dtype
        of `G`); None for the first step.
    exp_avg_sq : array, shape (...), optional
        The running mean ``v₀`` of ``|G|²`` from the previous call (the real
        dtype of `G`); None for the first step.
    step : int, default: 1
        The number ``t >= 1`` of this step, for the bias corrections.
    betas : tuple of two floats, default: (0.9, 0.999)
        Smoothing constants ``β₁``, ``β₂``, each in [0, 1).
    eps : float, default: 1e-8
        Added to ``√v̂`` before dividing, > 0 and finite.
    xp : array namespace, optional
        Namespace of `G`; inferred when omitted.

    Returns
    -------
    direction : array, shape (...)
        ``m̂ / (√v̂ + ε)``, of the dtype of `G`.
    exp_avg : array, shape (...)
        The new running mean ``m``, of the dtype of `G`.
    exp_avg_sq : array, shape (...)
        The new running mean ``v``, real.

    Raises
    ------
    TypeError
        If an array is not of a supported library and dtype (`exp_avg` must
        have the dtype of `G`, `exp_avg_sq` its real dtype), they come from
        different libraries, `step` is not an int, or `betas`, `eps` are not
        real numbers.
    ValueError
        If a running mean has another shape than `G` or lies on another
        device, `step` < 1, a beta is not in [0, 1), or `eps` is not a
        positive finite number.

    See Also
    --------
    rmsprop_direction : RMSprop's direction (no momentum, no bias correction).

    Notes
    -----
    Neither input is modified and the values are never inspected, so the
    function may be traced by ``jax.jit`` with `betas`, `eps` as Python numbers
    (`step` too; a traced `step` is not accepted).

    Examples
    --------
    >>> import numpy as np
    >>> import unitary_lowrank as ul
    >>> G = np.array([3.0, -4.0])
    >>> D, m, v = ul.adam_direction(G)
    >>> np.round(D, 6).tolist()  # the bias-corrected first step: G / |G|, about ±1
    [1.0, -1.0]
    >>> D, m, v = ul.adam_direction(-G, m, v, 2)
    >>> np.round(m, 12).tolist()  # 0.9 m + 0.1 (−G)
    [-0.03, 0.04]
    """
    named = [("G", G)] + [(k, x) for k, x in (("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq))
                          if x is not None]
    xp = get_namespace(*named, xp=xp)
    check_dtype(G, "G", xp)
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        raise TypeError(f"step must be an int >= 1, got {type(step).__name__} {step!r}")
    if step < 1:
        raise ValueError(f"step must be >= 1 (the number of this step), got {step!r}")
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"betas must be a pair of real numbers, got {betas!r}")
    b1, b2 = as_real(betas[0], "betas[0]"), as_real(betas[1], "betas[1]")
    for name, b in (("betas[0]", b1), ("betas[1]", b2)):
        if not 0.0 <= b < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {b!r}")
    eps = as_real(eps, "eps", positive=True)
    complex_ = is_complex(xp, G.dtype)
    for name, x, want in (("exp_avg", exp_avg, G.dtype),
                          ("exp_avg_sq", exp_avg_sq, real_dtype(xp, G.dtype))):
        if x is None:
            continue
        if x.dtype != want:
            raise TypeError(f"{name} must have dtype {dtype_name(xp, want)} (G is "
                            f"{dtype_name(xp, G.dtype)}), got {dtype_name(xp, x.dtype)}")
        if tuple(x.shape) != tuple(G.shape):
            raise ValueError(f"{name} must have the shape of G {tuple(G.shape)}, "
                             f"got {tuple(x.shape)}")
    check_same_device(named)
    c1 = 1.0 - b1 ** int(step)
    c2 = math.sqrt(1.0 - b2 ** int(step))
    if not complex_ and _fused_torch(xp, G, exp_avg) and _fused_torch(xp, G, exp_avg_sq):
        return _adam_torch(G, exp_avg, exp_avg_sq, b1, b2, c1, c2, eps)
    sq = xp.real(G * xp.conj(G)) if complex_ else G * G
    m = (1.0 - b1) * G if exp_avg is None else b1 * exp_avg + (1.0 - b1) * G
    v = (1.0 - b2) * sq if exp_avg_sq is None else b2 * exp_avg_sq + (1.0 - b2) * sq
    # m̂ / (√v̂ + ε) = (m / c1) / (√v / c2 + ε) = m · (c2 / c1) / (√v + ε·c2)
    return m * (c2 / c1) / (xp.sqrt(v) + eps * c2), m, v


def _adam_torch(G: Any, m0: Any, v0: Any, b1: float, b2: float, c1: float, c2: float,
                eps: float) -> tuple[Any, Any, Any]:
    """:func:`adam_direction` for real torch tensors outside autograd, fused in place."""
    import torch  # G is a torch tensor: torch is imported

    m = torch.mul(G, 1.0 - b1) if m0 is None else torch.mul(m0, b1).add_(G, alpha=1.0 - b1)
    v = (torch.mul(G, G).mul_(1.0 - b2) if v0 is None
         else torch.mul(v0, b2).addcmul_(G, G, value=1.0 - b2))
    D = torch.sqrt(v).add_(eps * c2)
    return torch.div(m, D, out=D).mul_(c2 / c1), m, v
