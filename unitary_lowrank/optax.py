r"""projUNN as an optax gradient transformation, for JAX users (needs optax).

:func:`projunn` keeps unitary (or orthogonal) matrices of a JAX model on their
group while it trains: every leaf it is given takes a rank-`rank` step along
the gradient, RMSprop's or Adam's direction, retracted in O(n²·rank) with
:func:`unitary_lowrank.retract` (or, with ``rank="full"``, the whole step by
the dense retraction of :func:`unitary_lowrank.step`). Route the other
parameters to an ordinary optimiser with ``optax.multi_transform``.

The transformation uses the library's public functions
(:func:`~unitary_lowrank.rmsprop_direction`, :func:`~unitary_lowrank.lowrank`,
:func:`~unitary_lowrank.retract`, :func:`~unitary_lowrank.step`), all of which
trace under ``jax.jit``; Adam's direction is that of
:func:`~unitary_lowrank.adam_direction`, with the step count of the state
(traced under ``jax.jit``) in its bias corrections.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from typing import Any, Literal, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
import optax

import unitary_lowrank as ul

from ._array_api import is_lazy_array
from ._tunables import EXACT_CHECK_MAX, auto_rank
from .methods import DIRECTIONS, METHODS, SAMPLERS, needs_square
from .typing import Direction, Method, Rank, Sampler

__all__ = ["ProjUNNState", "projunn"]



class ProjUNNState(NamedTuple):
    """State of :func:`projunn`.

    Attributes
    ----------
    count : jax.Array
        Number of updates so far (int32 scalar): the argument of a schedule.
    key : jax.Array
        The JAX PRNG key of the next update's sketches, split at every update.
    square_avg : pytree or None
        RMSprop's running mean of ``|G|²`` per leaf (the leaf's shape and real
        dtype); None unless ``direction="rmsprop"``.
    exp_avg : pytree or None
        Adam's running mean ``m`` of ``G`` per leaf (the leaf's shape and
        dtype); None unless ``direction="adam"``.
    exp_avg_sq : pytree or None
        Adam's running mean ``v`` of ``|G|²`` per leaf (the leaf's shape and
        real dtype); None unless ``direction="adam"``.
    momentum_buffer : pytree or None
        The heavy-ball buffer ``b`` per leaf (the leaf's shape and dtype);
        None without `momentum`.
    """

    count: Any
    key: Any
    square_avg: Any
    exp_avg: Any = None
    exp_avg_sq: Any = None
    momentum_buffer: Any = None


_Choice = TypeVar("_Choice", bound=str)


def _check_choice(value: Any, name: str, choices: tuple[_Choice, ...]) -> _Choice:
    if not isinstance(value, str) or value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {options}, got {value!r}")
    return value


def _check_real(value: Any, name: str, low: float, high: float, *, open_low: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    below = value <= low if open_low else value < low
    if below or not value < high:
        lo = "(" if open_low else "["
        raise ValueError(f"{name} must be in {lo}{low:g}, {high:g}), got {value!r}")
    return value


def _check_key(key: Any) -> Any:
    """A JAX PRNG key from an int seed or a key (typed or raw uint32 of shape (2,)).

    A seed below 2³² is ``jax.random.key(seed)``; a larger one (of any size) is
    ``jax.random.key`` of its low 32 bits with each further 32-bit word folded in
    (``jax.random.fold_in``), so that no two seeds share a key (``jax.random.key``
    itself keeps only the low 32 bits of a seed with x64 off, and overflows
    from 2⁶³ on).
    """
    if isinstance(key, numbers.Integral) and not isinstance(key, bool):
        seed = int(key)
        if seed < 0:
            raise ValueError(f"key must be a non-negative int seed or a JAX PRNG key, got {key}")
        out = jax.random.key(seed & 0xFFFFFFFF)
        seed >>= 32
        while seed:
            out = jax.random.fold_in(out, seed & 0xFFFFFFFF)
            seed >>= 32
        return out
    if isinstance(key, jax.Array) and (
        jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
        or (key.dtype == jnp.uint32 and tuple(key.shape) == (2,))
    ):
        return key
    raise TypeError(
        "key must be a non-negative int seed or a JAX PRNG key (jax.random.key(seed)), "
        f"got {type(key).__name__}"
    )


def _where(path: Any) -> str:
    """The path of a leaf as ``jax.tree_util.keystr`` writes it (``params`` for a bare array)."""
    return jax.tree_util.keystr(path) or "params"


def _check_leaf(path: Any, p: Any, method: str, rank: int | Literal["full"]) -> None:
    """`ValueError`/`TypeError` for a leaf that cannot be a unitary weight of this method."""
    where = _where(path)
    dtype = getattr(p, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.inexact):
        raise TypeError(
            f"projunn needs floating or complex matrices, got {type(p).__name__} "
            f"of dtype {dtype} at {where}"
        )
    shape = tuple(p.shape)
    if len(shape) < 2:
        raise ValueError(f"projunn needs (..., n, p) matrices, got shape {shape} at {where}")
    n, q = shape[-2:]
    if n != q and needs_square(method):
        raise ValueError(
            f"method {method!r} needs square (..., n, n) matrices, got shape {shape} at "
            f"{where}; use method='polar' for (..., n, p) matrices with orthonormal columns"
        )
    if q > n:
        raise ValueError(
            f"method 'polar' needs (..., n, p) matrices with p <= n (orthonormal columns), "
            f"got the wide shape {shape} at {where}; keep the weight as its (..., p, n) "
            "transpose, whose columns are orthonormal"
        )
    if rank != "full" and rank > min(n, q):
        raise ValueError(f"rank {rank} exceeds min(n, p) = {min(n, q)} at {where} {shape}")


def _check_learning_rate(lr: Any) -> None:
    """A real number (finite, >= 0), a schedule, or a real 0-d array (inject_hyperparams').

    The value of a 0-d array is checked too, unless it is traced; a schedule's
    values are not (they are traced under ``jax.jit``).
    """
    if callable(lr):
        return
    if isinstance(lr, numbers.Real) and not isinstance(lr, bool):
        if not 0.0 <= float(lr) < math.inf:
            raise ValueError(f"learning_rate must be finite and >= 0, got {float(lr)!r}")
        return
    dtype = getattr(lr, "dtype", None)
    if (getattr(lr, "shape", None) == () and dtype is not None
            and jnp.issubdtype(dtype, jnp.floating)):
        if not is_lazy_array(lr) and not 0.0 <= float(lr) < math.inf:
            raise ValueError(f"learning_rate must be finite and >= 0, got {float(lr)!r}")
        return
    raise TypeError(
        "learning_rate must be a real number, a real 0-d array or a schedule (a callable "
        f"of the step count), got {type(lr).__name__}"
    )


def _check_coefficient(value: Any, name: str) -> Any:
    """A smoothing coefficient in [0, 1): a real number, or a real 0-d array.

    A 0-d array (``optax.inject_hyperparams`` passes one) is checked unless it
    is traced, and kept as it is.
    """
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return _check_real(value, name, 0.0, 1.0, open_low=False)
    dtype = getattr(value, "dtype", None)
    if (getattr(value, "shape", None) == () and dtype is not None
            and jnp.issubdtype(dtype, jnp.floating)):
        if not is_lazy_array(value) and not 0.0 <= float(value) < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {float(value)!r}")
        return value
    raise TypeError(f"{name} must be a real number or a real 0-d array, got "
                    f"{type(value).__name__}")


def _real_dtype(dtype: Any) -> Any:
    return jnp.finfo(dtype).dtype


def _check_unitary(path: Any, p: Any) -> None:
    """`ValueError` naming the leaf unless ``‖WᴴW − I‖₂ <= sqrt(eps)``; nothing for a tracer."""
    if is_lazy_array(p) or 0 in tuple(p.shape):
        return  # init under jax.jit: no value to read
    if p.shape[-1] <= EXACT_CHECK_MAX:
        err = ul.unitarity_error(p)
    else:  # a lower estimate; a fixed seed, so init draws nothing
        err = ul.unitarity_error(p, method="probe", rng=0)
    worst = float(jnp.max(err))
    tol = math.sqrt(float(jnp.finfo(p.dtype).eps))
    if not worst <= tol:  # NaN too
        n, q = tuple(p.shape[-2:])
        raise ValueError(
            f"projunn: the leaf at {_where(path)} is not unitary (orthonormal columns): "
            f"‖WᴴW − I‖₂ = {worst:.3g} > sqrt(eps) = {tol:.3g}; the steps keep a unitary "
            "weight unitary but never make one. Initialise it first, e.g. with "
            f"unitary_lowrank.random_unitary({n}, {q}, dtype=jnp.{jnp.dtype(p.dtype).name}, "
            "rng=jax.random.key(0)), or route it to another optimiser "
            "(optax.multi_transform); check_unitary=False skips this check"
        )


def projunn(learning_rate: float | Callable[[Any], Any], *, method: Method = "exp",
            rank: Rank = "auto", sampler: Sampler = "lsi", direction: Direction = "adam",
            decay: float = 0.99, b1: float = 0.9, b2: float = 0.999,
            momentum: float = 0.0, eps: float = 1e-8,
            key: int | Any = 0, check_unitary: bool = True) -> optax.GradientTransformation:
    r"""ProjUNN for optax: rank-`rank` steps retracted onto the unitary group.

    For every leaf ``U`` of the parameters (a unitary or orthogonal (..., n, n)
    matrix, or for ``method="polar"`` an (..., n, p) matrix with orthonormal
    columns; leading axes are batch axes), an update

    1. takes the descent direction from the incoming gradient ``g``: ``G = g``
       for real leaves and ``G = conj(g)`` for complex ones (``jax.grad`` of a
       real loss returns the conjugate of the steepest-ascent direction);
    2. forms the direction ``D``, with running means kept in the state:

       - ``"gradient"``: ``D = G``;
       - ``"rmsprop"``: ``D = G / (√v + eps)`` with
         ``v ← decay·v + (1 − decay)·|G|²``
         (:func:`~unitary_lowrank.rmsprop_direction`);
       - ``"adam"``: ``D = m̂ / (√v̂ + eps)`` with ``m ← b1·m + (1 − b1)·G``,
         ``v ← b2·v + (1 − b2)·|G|²``, ``m̂ = m / (1 − b1ᵗ)``,
         ``v̂ = v / (1 − b2ᵗ)`` and ``t`` the number of this update (1 for
         the first), as :func:`~unitary_lowrank.adam_direction` and
         :class:`torch.optim.Adam`;
       - with `momentum` μ > 0 (not for ``"adam"``, whose momentum is `b1`):
         ``b ← μ·b + D`` (``b = D`` at the first update), then ``D = b``;
    3. sketches ``D ≈ A Bᴴ`` at rank `rank` (:func:`~unitary_lowrank.lowrank`)
       with a key split from the one kept in the state;
    4. retracts ``U_new = retract(U, −lr·A, B, method)`` and returns
       ``U_new − U``, so that ``optax.apply_updates`` lands on ``U_new``.

    With ``rank="full"`` steps 3 and 4 are one: ``U_new = step(U, D, lr,
    rank="full", method=method)`` (:func:`~unitary_lowrank.step`), the dense
    O(n³) retraction of the whole step ``−lr·D``, e.g. for ``"exp"``
    ``U expm(Ω)`` with ``Ω = skew(Uᴴ(−lr·D))``.

    Parameters
    ----------
    learning_rate : float, 0-d array or callable
        Step size, or an optax schedule: a function of the update count
        (an int32 scalar kept in the state) returning the step size. A 0-d
        array may be traced, as ``optax.inject_hyperparams`` passes it (give
        it ``static_args=("rank", "decay", "eps", "key")``; `b1`, `b2` and
        `momentum` may be injected too).
    method : {"exp", "polar", "cayley"}, default: "exp"
        Retraction of :func:`~unitary_lowrank.retract`: projUNN-T (``"exp"``),
        projUNN-D (``"polar"``, also for non-square leaves) or Cayley.
    rank : int, "full" or "auto", default: "auto"
        Rank of each step, at most ``min(n, p)`` of every leaf; ``"full"``:
        no sketch, the whole step retracted densely (see above); ``"auto"``:
        ``"full"`` for leaves whose larger side is at most
        ``unitary_lowrank.torch.AUTO_FULL_MAX`` (512), else rank 1, as the
        PyTorch optimizer chooses (docs/choosing.md).
    sampler : {"lsi", "randomized", "column"}, default: "lsi"
        Sketch of :func:`~unitary_lowrank.lowrank`; ``"lsi"`` is the paper's.
    direction : {"adam", "rmsprop", "gradient"}, default: "adam"
        The direction sketched: Adam's bias-corrected direction (learns the
        most per step, docs/choosing.md), RMSprop's preconditioned gradient
        (as the paper), or the plain gradient.
    decay : float, default: 0.99
        RMSprop's smoothing constant α, in [0, 1).
    b1, b2 : float, default: 0.9, 0.999
        Adam's smoothing constants β₁ (its momentum) and β₂, each in [0, 1);
        real numbers, or 0-d arrays (possibly traced, from
        ``optax.inject_hyperparams``).
    momentum : float, default: 0
        Heavy-ball momentum μ in [0, 1) on the direction of ``"rmsprop"`` or
        ``"gradient"`` (as ``torch.optim.RMSprop``'s and ``SGD``'s
        `momentum`), its buffer in the state; refused with ``"adam"``. A real
        number, or a 0-d array (possibly traced; the buffer is then always kept).
    eps : float, default: 1e-8
        RMSprop's and Adam's ε, positive.
    key : int or JAX PRNG key, default: 0
        Seed (or key, ``jax.random.key(...)``) of the sketches. The key lives in
        the state and is split at every update, so that each step draws a new
        sketch, also under ``jax.jit``. A seed may be any non-negative int
        (below 2³², the key of ``jax.random.key(seed)``; larger seeds fold
        their further 32-bit words in with ``jax.random.fold_in``).
    check_unitary : bool, default: True
        At ``init``, check that every leaf is unitary (has orthonormal
        columns): ``‖WᴴW − I‖₂ <= √eps`` of its dtype (the exact norm up to
        512 columns, a probe estimate beyond), as the PyTorch optimizer does
        at a weight's first step. The steps keep a unitary weight unitary but
        never make one; a non-unitary start (``2·U``) would train without an
        error and stay off the group. Skipped for traced leaves (an ``init``
        under ``jax.jit``) and with False.

    Returns
    -------
    optax.GradientTransformation
        ``init(params)`` and ``update(grads, state, params)``; `params` is
        required.

    Raises
    ------
    ValueError
        At construction, for an unknown `method`, `sampler` or `direction`, a
        `rank` below 1 (or a string other than ``"full"``), `decay`, `b1`,
        `b2` or `momentum` outside [0, 1), a `momentum` with ``"adam"``, a
        non-positive `eps` or a negative (or not finite) `learning_rate`; at
        ``init``, for a leaf that
        is not a matrix (or not square for ``"exp"``/``"cayley"``, or wider
        than tall for ``"polar"``), smaller than `rank`, or not unitary (with
        `check_unitary`); at ``update``, when `params` is None, or a gradient
        does not have its leaf's shape. Errors about a leaf name its path in
        the pytree.
    TypeError
        For arguments of the wrong type (a `learning_rate` neither a number
        nor callable, `key` neither a seed nor a JAX key, a leaf that is not a
        floating array, a complex gradient for a real leaf).

    See Also
    --------
    unitary_lowrank.step : The same step for one array, outside optax.
    unitary_lowrank.torch.ProjUNN : The PyTorch optimizer.

    Notes
    -----
    The leaves must be unitary to begin with (e.g. from
    :func:`~unitary_lowrank.random_unitary`); the retraction keeps them so.
    ``optax.apply_updates`` adds ``U_new − U`` back to ``U``, which rounds once
    more: the applied leaf is unitary to about eps·√n more than ``U_new``.

    The learning rate scales the sketch's left factor (``−lr·A``; with
    ``rank="full"`` the step ``−lr·D``), so a traced learning rate (a schedule
    under ``jax.jit``) is never read on the host.
    With ``jax_enable_x64`` off the small cores, which the library computes in
    double precision where it can, run in single precision; JAX's warning
    about the truncated dtype is silenced inside the update.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, optax
    >>> import unitary_lowrank as ul
    >>> from unitary_lowrank.optax import projunn
    >>> target = ul.random_unitary(8, dtype=jnp.float32, rng=jax.random.key(1))
    >>> params = {"W": ul.random_unitary(8, dtype=jnp.float32, rng=jax.random.key(0))}
    >>> loss = lambda p: jnp.sum((p["W"] - target) ** 2)
    >>> opt = projunn(0.05, rank=2)
    >>> state = opt.init(params)
    >>> @jax.jit
    ... def train_step(params, state):
    ...     updates, state = opt.update(jax.grad(loss)(params), state, params)
    ...     return optax.apply_updates(params, updates), state
    >>> before = loss(params)
    >>> for _ in range(20):
    ...     params, state = train_step(params, state)
    >>> bool(loss(params) < before)
    True
    >>> import numpy as np
    >>> from unitary_lowrank.testing import unitarity_bound
    >>> W = np.asarray(params["W"])
    >>> bool(ul.unitarity_error(W) <= unitarity_bound(8, W.dtype))
    True

    Only the unitary weights, the rest by Adam:

    >>> params = {"W": params["W"], "b": jnp.zeros(8)}
    >>> labels = {"W": "unitary", "b": "other"}
    >>> opt = optax.multi_transform(
    ...     {"unitary": projunn(1e-3), "other": optax.adam(1e-3)}, labels)
    >>> state = opt.init(params)
    """
    _check_learning_rate(learning_rate)
    method = _check_choice(method, "method", METHODS)
    sampler = _check_choice(sampler, "sampler", SAMPLERS)
    direction = _check_choice(direction, "direction", DIRECTIONS)
    if isinstance(rank, str):
        if rank not in ("full", "auto"):
            raise ValueError(f"rank must be an int >= 1, 'full' or 'auto', got {rank!r}")
    elif isinstance(rank, bool) or not isinstance(rank, numbers.Integral):
        raise TypeError(f"rank must be an int, 'full' or 'auto', got {type(rank).__name__}")
    else:
        rank = int(rank)
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
    decay = _check_real(decay, "decay", 0.0, 1.0, open_low=False)
    b1 = _check_coefficient(b1, "b1")
    b2 = _check_coefficient(b2, "b2")
    momentum = _check_coefficient(momentum, "momentum")
    # a traced momentum (inject_hyperparams) keeps a buffer: its value is not known here
    heavy_ball = not isinstance(momentum, float) or momentum > 0.0
    if direction == "adam":
        if heavy_ball and (isinstance(momentum, float) or not is_lazy_array(momentum)
                           and float(momentum) != 0.0):
            raise ValueError(
                f"momentum does not apply to direction='adam' (its momentum is b1), got "
                f"{float(momentum)!r}; set b1 instead"
            )
        heavy_ball = False
    eps = _check_real(eps, "eps", 0.0, math.inf, open_low=True)
    seed = _check_key(key)
    if not isinstance(check_unitary, bool):
        raise TypeError(f"check_unitary must be a bool, got {type(check_unitary).__name__}")

    def zeros(params: Any, real: bool) -> Any:
        return jax.tree.map(
            lambda p: jnp.zeros(p.shape, dtype=_real_dtype(p.dtype) if real else p.dtype),
            params)

    def init_fn(params: Any) -> ProjUNNState:
        leaves = jax.tree_util.tree_leaves_with_path(params)
        for path, p in leaves:
            _check_leaf(path, p, method, auto_rank(rank, tuple(p.shape)))
        if check_unitary:
            for path, p in leaves:
                _check_unitary(path, p)
        return ProjUNNState(
            jnp.zeros([], jnp.int32), seed,
            square_avg=zeros(params, True) if direction == "rmsprop" else None,
            exp_avg=zeros(params, False) if direction == "adam" else None,
            exp_avg_sq=zeros(params, True) if direction == "adam" else None,
            momentum_buffer=zeros(params, False) if heavy_ball else None,
        )

    def update_fn(updates: Any, state: ProjUNNState, params: Any = None
                  ) -> tuple[Any, ProjUNNState]:
        if params is None:
            raise ValueError(
                "projunn needs the current parameters: call update(grads, state, params) "
                "(the step is retracted from them onto the unitary group)"
            )
        lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
        treedef: Any  # jaxlib's PyTreeDef comes without type information
        with_paths, treedef = jax.tree_util.tree_flatten_with_path(updates)
        paths = [path for path, _ in with_paths]
        grads = [g for _, g in with_paths]
        weights = treedef.flatten_up_to(params)
        for path, g, U in zip(paths, grads, weights, strict=True):
            _check_leaf(path, U, method, auto_rank(rank, tuple(U.shape)))
            _check_gradient(path, g, U)
        names = ("square_avg", "exp_avg", "exp_avg_sq", "momentum_buffer")
        # per leaf: its entries of the state's running means (None where there are none)
        per_leaf = [dict(zip(names, values, strict=True)) for values in zip(*(
            treedef.flatten_up_to(getattr(state, name)) if getattr(state, name) is not None
            else [None] * len(grads) for name in names), strict=True)]
        t = state.count + 1  # the number of this update (traced under jax.jit)
        keys = jax.random.split(state.key, len(grads) + 1)
        new_updates, new_means = [], []
        with warnings.catch_warnings():
            # x64 off: the library's double-precision cores fall back to single precision
            warnings.filterwarnings(
                "ignore", message="Explicitly requested dtype", category=UserWarning
            )
            for path, g, U, means, k in zip(paths, grads, weights, per_leaf, keys[1:],
                                            strict=True):
                try:
                    D, means = _direction(g, U, means, t, direction, decay, b1, b2, momentum,
                                          eps)
                    new_updates.append(_retracted_step(U, D, k, lr, method,
                                                       auto_rank(rank, tuple(U.shape)), sampler))
                except (ValueError, TypeError) as exc:  # name the leaf (eager value checks)
                    kind = TypeError if isinstance(exc, TypeError) else ValueError
                    raise kind(f"projunn: at {_where(path)}: {exc}") from exc
                new_means.append(means)
        kept = {name: (treedef.unflatten([m[name] for m in new_means])
                       if getattr(state, name) is not None else None) for name in names}
        new_state = ProjUNNState(optax.safe_increment(state.count), keys[0], **kept)
        return treedef.unflatten(new_updates), new_state

    return optax.GradientTransformation(init_fn, update_fn)


def _check_gradient(path: Any, g: Any, U: Any) -> None:
    """`ValueError`/`TypeError` naming the leaf for a gradient that does not fit it (static)."""
    where = _where(path)
    dtype = getattr(g, "dtype", None)
    if dtype is None or not jnp.issubdtype(dtype, jnp.inexact):
        raise TypeError(f"the gradient at {where} must be a floating or complex array, got "
                        f"{type(g).__name__} of dtype {dtype}")
    if tuple(g.shape) != tuple(U.shape):
        raise ValueError(f"the gradient at {where} must have its parameter's shape "
                         f"{tuple(U.shape)}, got {tuple(g.shape)}")
    if jnp.issubdtype(dtype, jnp.complexfloating) and not jnp.iscomplexobj(U):
        raise TypeError(
            f"the gradient at {where} is complex ({jnp.dtype(dtype).name}) but the parameter "
            f"is real ({jnp.dtype(U.dtype).name}): its imaginary part would be dropped. "
            "Differentiate a real loss of the real parameter (or take the real part "
            "yourself if that is what you mean)"
        )


def _direction(g: Any, U: Any, means: dict[str, Any], t: Any, direction: str, decay: float,
               b1: Any, b2: Any, momentum: Any, eps: float) -> tuple[Any, dict[str, Any]]:
    """The direction D of one leaf and its new running means; see :func:`projunn`.

    `t` is the number of this update (an int32 scalar, traced under ``jax.jit``).
    """
    G = jnp.asarray(g, dtype=U.dtype)
    if jnp.iscomplexobj(G):
        G = jnp.conj(G)  # jax.grad's convention: the conjugate of the ascent direction
    means = dict(means)
    if direction == "rmsprop":
        G, means["square_avg"] = ul.rmsprop_direction(G, means["square_avg"], alpha=decay,
                                                      eps=eps)
    elif direction == "adam":
        # ul.adam_direction's rule with a step count that may be traced (its `step` is an
        # int): m̂ / (√v̂ + ε) = m · (c2 / c1) / (√v + ε·c2), c1 = 1 − b1ᵗ, c2 = √(1 − b2ᵗ)
        real = _real_dtype(U.dtype)
        b1 = jnp.asarray(b1, dtype=real)
        b2 = jnp.asarray(b2, dtype=real)
        sq = jnp.real(G * jnp.conj(G)) if jnp.iscomplexobj(G) else G * G
        m = b1 * means["exp_avg"] + (1 - b1) * G
        v = b2 * means["exp_avg_sq"] + (1 - b2) * sq
        tr = jnp.asarray(t, dtype=real)
        c1 = 1 - b1 ** tr
        c2 = jnp.sqrt(1 - b2 ** tr)
        G = m * (c2 / c1) / (jnp.sqrt(v) + eps * c2)
        means["exp_avg"], means["exp_avg_sq"] = m, v
    if means["momentum_buffer"] is not None:
        # b = μ·b + D, with b = 0 before the first update: b = D then, as torch's buffer
        mu = jnp.asarray(momentum, dtype=_real_dtype(U.dtype))
        G = mu * means["momentum_buffer"] + G
        means["momentum_buffer"] = G
    return G, means


def _retracted_step(U: Any, D: Any, key: Any, lr: Any, method: Method,
                    rank: int | Literal["full"], sampler: Sampler) -> Any:
    """``U_new − U`` for one leaf, ``U_new`` the retraction of the step ``−lr·D``."""
    step = jnp.asarray(lr, dtype=_real_dtype(U.dtype))  # keeps U's dtype, traced or not
    if rank == "full":
        return ul.step(U, D, step, rank="full", method=method) - U
    A, B = ul.lowrank(D, rank, sampler=sampler, rng=key)
    U_new = ul.retract(U, -step * A, B, method)
    return U_new - U
