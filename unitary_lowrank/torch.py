r"""PyTorch: an optimizer for unitary, orthogonal and Stiefel weights, and orthogonal layers.

:class:`ProjUNN` is a :class:`torch.optim.Optimizer`: each :meth:`~ProjUNN.step`
takes the Euclidean gradient in ``.grad``, forms a direction (Adam's, RMSprop's
or the gradient itself), and retracts the step ``−lr·D`` onto the manifold with
:func:`unitary_lowrank.step` (projUNN-T, projUNN-D or the Cayley update): at
full rank where the weight is small enough for that to cost little, else
sketched to rank k in O(n²k). Parameter groups marked ``"constrained": False``
take the same direction rule unconstrained, so one optimizer trains a whole
model (:func:`param_groups`).

The layers and initialisers (:class:`OrthogonalRNN`, :class:`ModReLU`,
:class:`OrthogonalConv2d`, :func:`orthogonal_`, :func:`unitary_`,
:func:`param_groups`, :func:`is_constrained`) mark the weights they constrain.

This module imports torch; the rest of the library does not need it.
"""

from __future__ import annotations

import math
import numbers
import sys
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

import unitary_lowrank as ul

from ._signals import deferred_interrupts
from ._torch_layers import (
    ModReLU,
    OrthogonalConv2d,
    OrthogonalRNN,
    is_constrained,
    orthogonal_,
    param_groups,
    unitary_,
)
from ._tunables import AUTO_FULL_MAX, AUTO_RANK, EXACT_CHECK_MAX, auto_rank
from .methods import DIRECTIONS, METHODS, SAMPLERS, needs_square
from .typing import Direction, Method, Rank, Sampler

__all__ = [
    "AUTO_FULL_MAX",
    "AUTO_RANK",
    "ModReLU",
    "OrthogonalConv2d",
    "OrthogonalRNN",
    "ProjUNN",
    "is_constrained",
    "orthogonal_",
    "param_groups",
    "unitary_",
]

_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)
#: Hyper-parameters that every saved ProjUNN state has had (the others take their defaults
#: when a state saved before they existed is loaded).
_SAVED_KEYS = ("lr", "method", "rank", "sampler", "direction")
#: Per-weight running means: those of |G|² are real, the others have the weight's dtype.
_REAL_STATE = ("square_avg", "exp_avg_sq")
_LIKE_STATE = ("exp_avg", "momentum_buffer")
#: Key of the root entropy in :meth:`ProjUNN.state_dict`.
_ENTROPY_KEY = "projunn_entropy"


class ProjUNN(torch.optim.Optimizer):
    r"""Optimizer for weights that must stay unitary, orthogonal or on the Stiefel manifold.

    Every parameter is a matrix (or a batch of matrices, shape ``(..., n, p)``)
    with orthonormal columns (``WᴴW = I``), or, when it has more columns than
    rows (``p > n``, e.g. the weight of ``nn.Linear(in, out)`` with
    ``out < in``), orthonormal rows (``WWᴴ = I``); except in a parameter group
    with ``"constrained": False`` (see below). A step computes, under
    :func:`torch.no_grad`, for each parameter whose ``.grad`` is not None::

        G = −.grad if maximize else .grad
        D, m, v = m̂ / (√v̂ + ε)     (direction="adam", ul.adam_direction)
        D, v = G / (√v + ε)         (direction="rmsprop", ul.rmsprop_direction)
        D = G                       (direction="gradient")
        b = μ b + D; D = b          (momentum μ > 0; not with "adam")
        W ← ul.step(W, D, lr, rank=rank, method=method, sampler=sampler, rng=...)

    i.e. the retraction of ``−lr·D`` onto the manifold, whole (``rank="full"``,
    O(n³)) or sketched to rank k (O(n²k)), so the weight stays unitary to
    rounding after any number of steps. A wide weight is stepped as its
    conjugate transpose ``Wᴴ`` (which has orthonormal columns) and written
    back transposed.

    Parameters
    ----------
    params : iterable of tensors, of (name, tensor) pairs, or of dicts
        The weights, or parameter groups (dicts with a ``"params"`` entry and
        any of the hyper-parameters below, which override the defaults for
        that group). Each weight has dtype float32, float64, complex64 or
        complex128; in a constrained group (the default) it has at least two
        dimensions. A group with ``"constrained": False`` holds any other
        parameters (biases, input and output layers): they take the same
        direction rule unconstrained, ``p ← p − lr·D`` (with `weight_decay`,
        ``p ← p(1 − lr·wd) − lr·D``, decoupled as AdamW's), so that
        ``ProjUNN(param_groups(model), lr=1e-3)`` trains a whole model. A
        plain list of weights is constrained, as before.
    lr : float, default: 1e-3
        Learning rate (>= 0): the step is ``−lr·D`` before the retraction. It
        is read from ``group["lr"]`` at every step, so learning-rate
        schedulers work (for ``OneCycleLR`` pass ``cycle_momentum=False``: it
        would write ``betas``/``momentum`` on its own schedule otherwise).
    method : {"exp", "polar", "cayley"}, default: "exp"
        Retraction, as in :func:`unitary_lowrank.retract`: projUNN-T
        (``"exp"``), projUNN-D (``"polar"``) or the Cayley update. Only
        ``"polar"`` applies to non-square weights (Stiefel, tall or wide).
    rank : int, "full" or "auto", default: "auto"
        Rank of the step, ``1 <= rank <= min(n, p)``; ``"full"``: the whole
        step, retracted by the dense O(n³) computation of
        :func:`unitary_lowrank.step` (no sketch); ``"auto"``: ``"full"`` for
        weights whose larger side is at most :data:`AUTO_FULL_MAX` (where it
        costs little next to a network's own forward and backward pass, and
        learns the most per step), else rank :data:`AUTO_RANK`. See the docs
        page "Choosing settings" for the measurements behind these values.
    sampler : {"lsi", "randomized", "column"}, default: "lsi"
        How the direction is sketched (low ranks), as in
        :func:`unitary_lowrank.lowrank`; ``"lsi"`` (the paper's) costs two
        products with D.
    direction : {"adam", "rmsprop", "gradient"}, default: "adam"
        ``"adam"``: Adam's direction ``m̂ / (√v̂ + ε)`` of
        :func:`unitary_lowrank.adam_direction`, its running means in
        ``state[p]["exp_avg"]`` and ``["exp_avg_sq"]``. ``"rmsprop"``:
        RMSprop's ``G / (√v + ε)`` of :func:`unitary_lowrank.rmsprop_direction`,
        the mean of ``|G|²`` in ``state[p]["square_avg"]`` (the projUNN paper's
        code). ``"gradient"``: D is the gradient.
    alpha : float, default: 0.99
        Smoothing constant of RMSprop's running mean, in [0, 1).
    betas : tuple of two floats, default: (0.9, 0.999)
        Adam's smoothing constants, each in [0, 1).
    momentum : float, default: 0
        Heavy-ball momentum μ in [0, 1) on the direction of ``"rmsprop"`` or
        ``"gradient"`` (as ``torch.optim.RMSprop``'s `momentum`), its buffer in
        ``state[p]["momentum_buffer"]``; ``"adam"`` has its own (``betas[0]``).
    eps : float, default: 1e-8
        Added to ``√v`` by RMSprop and Adam, > 0 and finite.
    maximize : bool, default: False
        Ascend the objective instead (the direction is built from ``−G``).
    weight_decay : float, default: 0
        Decoupled weight decay of the ``"constrained": False`` groups. On a
        constrained group it is refused: every unitary weight has the same
        norm, so decaying toward zero has no meaning there.
    repair_every : int, optional
        Every `repair_every` steps of a weight, check its drift with
        :class:`unitary_lowrank.DriftGuard` (a cheap probe estimate of
        ``‖WᴴW − I‖₂``) and re-unitarize it when the estimate exceeds the
        guard's default tolerance (32·eps of the dtype). Default: never
        (the low-rank updates are backward stable; drift grows like the
        square root of the number of steps).
    check_unitary : bool, default: True
        Check each constrained weight at its first step (see Notes). False
        skips it (no host synchronisation; the steps still refuse a weight
        that is not unitary along the step).
    generator : None, int or torch.Generator, optional
        Randomness of the sketches. None: one draw from torch's default
        generator at construction (so ``torch.manual_seed`` makes a run
        reproducible, as it does dropout's); an int: a seed (>= 0); a
        :class:`torch.Generator`: one draw from it. Under
        :mod:`torch.distributed` with more than one process, the first step
        broadcasts the seed of rank 0 to every process (one small collective),
        so DistributedDataParallel replicas draw the same sketches and stay
        bit-identical whatever each process's random state. Either way the i-th
        parameter (counted over all groups, in order, as in
        :meth:`state_dict`) gets its own NumPy generator
        ``numpy.random.Generator(numpy.random.PCG64(numpy.random.SeedSequence(entropy,
        spawn_key=(i,))))`` at its first step, whose state is kept in
        ``state[p]["rng_state"]``; a weight without a gradient draws nothing.

    Raises
    ------
    TypeError
        If a hyper-parameter has the wrong type (named in the message), a
        weight is not a tensor or has an unsupported dtype, or `generator` is
        not None, an int or a :class:`torch.Generator`.
    ValueError
        If a hyper-parameter is out of range or unknown (named in the
        message), a weight has fewer than two dimensions, `method` is
        ``"exp"`` or ``"cayley"`` for a non-square weight, or `rank` exceeds
        ``min(n, p)`` of a weight.

    See Also
    --------
    unitary_lowrank.step : The update of one weight.
    unitary_lowrank.rmsprop_direction : RMSprop's direction.
    unitary_lowrank.DriftGuard : The drift repair policy.

    Notes
    -----
    **First step.** A weight that is not unitary (orthonormal columns, or
    rows when wide) at its first step is refused with a `ValueError` naming
    it: ``‖WᴴW − I‖₂`` (exact for up to 512 columns, the probe estimate of
    :func:`unitary_lowrank.unitarity_error` beyond) must be at most
    ``sqrt(eps)`` of its dtype, the threshold of :func:`unitary_lowrank.retract`.
    Initialise it with :func:`torch.nn.init.orthogonal_` or copy in
    :func:`unitary_lowrank.random_unitary`.

    **Failures change nothing.** Each step first computes every new weight and
    state, then writes them all (``p.copy_(new)``). When anything fails — a
    gradient holding NaN or infinity, a step too large for the dtype, a
    weight that is not finite or no longer unitary — the step raises a
    `ValueError` that names the weight, and no weight, running mean or random
    state has changed: the caller may skip the batch and go on. (The weights
    being all updated at once, a step holds one new copy of each of them.)
    A Ctrl-C (SIGINT) that arrives while the new values are written, in the
    main thread, is held until every weight is written, so an interrupted
    step leaves all weights old or all new. A gradient entry whose square
    overflows the dtype (above about 1.8e19 in float32) is refused the same
    way: a running mean of infinity would freeze the weight for good.

    **Devices and dtypes.** Weights, gradients and running means stay on
    their device and in their dtype (the running mean of a complex weight is
    real). The sketch's random test vectors are drawn on the host by the
    weight's NumPy generator and moved to the device once per step, as
    :func:`unitary_lowrank.step` does, so a seed gives the same sketch on every
    device. With ``repair_every``, ``state[p]["repairs"]`` counts the repairs.

    **Complex weights.** For a real loss of a complex weight, torch's
    ``.grad`` is already the steepest-ascent direction (``∂L/∂W̄``), so
    ``−lr·G`` descends; RMSprop's running mean is of ``|G|²`` (real).

    **Resuming.** :meth:`state_dict` holds, per weight, the step count, the
    running mean and the generator's state (as a tuple of ints), plus the
    root entropy; :meth:`load_state_dict` into an optimizer built over the
    same parameters continues bit-identically on the same machine.

    Examples
    --------
    >>> import torch
    >>> import unitary_lowrank as ul
    >>> from unitary_lowrank.torch import ProjUNN
    >>> g = torch.Generator().manual_seed(0)
    >>> W = torch.nn.Parameter(torch.empty(6, 6, dtype=torch.float64))
    >>> _ = torch.nn.init.orthogonal_(W, generator=g)
    >>> target = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64, generator=g))[0]
    >>> opt = ProjUNN([W], lr=0.05, rank=2, generator=0)
    >>> first = ((W - target) ** 2).sum().item()
    >>> for _ in range(50):
    ...     opt.zero_grad()
    ...     loss = ((W - target) ** 2).sum()
    ...     loss.backward()
    ...     _ = opt.step()
    >>> bool(loss.item() < first), bool(ul.unitarity_error(W.detach()) < 1e-13)
    (True, True)

    A closure, and a wide weight (orthonormal rows) in a group of its own:

    >>> lin = torch.nn.Linear(8, 3, bias=False, dtype=torch.float64)
    >>> _ = torch.nn.init.orthogonal_(lin.weight, generator=g)
    >>> opt = ProjUNN([{"params": [lin.weight], "method": "polar", "lr": 0.01}], generator=1)
    >>> x = torch.randn(4, 8, dtype=torch.float64, generator=g)
    >>> def closure():
    ...     opt.zero_grad()
    ...     loss = lin(x).square().sum()
    ...     loss.backward()
    ...     return loss
    >>> loss = opt.step(closure)
    >>> bool(ul.unitarity_error(lin.weight.detach().mT) < 1e-13)
    True
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        *,
        method: Method = "exp",
        rank: Rank = "auto",
        sampler: Sampler = "lsi",
        direction: Direction = "adam",
        alpha: float = 0.99,
        betas: tuple[float, float] = (0.9, 0.999),
        momentum: float = 0.0,
        eps: float = 1e-8,
        maximize: bool = False,
        weight_decay: float = 0.0,
        repair_every: int | None = None,
        check_unitary: bool = True,
        generator: None | int | torch.Generator = None,
    ) -> None:
        defaults = {"lr": lr, "method": method, "rank": rank, "sampler": sampler,
                    "direction": direction, "alpha": alpha, "betas": tuple(betas)
                    if isinstance(betas, list) else betas, "momentum": momentum, "eps": eps,
                    "maximize": maximize, "weight_decay": weight_decay,
                    "repair_every": repair_every, "check_unitary": check_unitary,
                    "constrained": True}
        _check_hyper(defaults, "")
        self._entropy = _root_entropy(generator)
        self._synced = False  # the entropy shared with the process group (first step)
        # each weight's live generator and the state tuple it was saved as: reused while
        # state[p]["rng_state"] is still that very tuple (rebuilding one costs ~0.1 ms)
        self._live: dict[torch.Tensor, tuple[np.random.Generator, tuple[int, ...]]] = {}
        super().__init__(params, defaults)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled state (and that of ``copy.deepcopy``): torch's, plus the root entropy."""
        state = super().__getstate__()
        state["_entropy"] = self._entropy
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled state; the live generators are rebuilt from ``state``."""
        super().__setstate__(state)
        self.__dict__.setdefault("_entropy", _root_entropy(None))
        self.__dict__.setdefault("_synced", False)
        self._live = {}

    # ------------------------------------------------------------------ groups
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a parameter group (hyper-parameters not given take the defaults).

        Parameters
        ----------
        param_group : dict
            ``{"params": ..., "lr": ..., "rank": ..., ...}``.

        Raises
        ------
        TypeError, ValueError
            As for the constructor: a bad hyper-parameter or weight, named.
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        index = len(getattr(self, "param_groups", []))
        merged = {**self.defaults, **{k: v for k, v in param_group.items() if k != "params"}}
        _check_hyper(merged, f" (param group {index})")
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            for i, p in enumerate(group["params"]):
                (_check_weight if group["constrained"] else _check_free)(
                    p, group, _describe(group, index, i))
        except (TypeError, ValueError):
            self.param_groups.pop()
            raise

    # ------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """The state, as :meth:`torch.optim.Optimizer.state_dict`, plus the root entropy.

        Returns
        -------
        dict
            ``{"state": ..., "param_groups": ..., "projunn_entropy": int}``;
            ``state[i]`` holds ``"step"`` (int), ``"rng_state"`` (tuple of
            ints) and, with RMSprop, ``"square_avg"`` (a real tensor).
        """
        sd = super().state_dict()
        sd[_ENTROPY_KEY] = self._entropy
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state from :meth:`state_dict` (same parameters, same order).

        Parameters
        ----------
        state_dict : dict
            As returned by :meth:`state_dict`.
        """
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= state_dict.keys():
            raise TypeError("ProjUNN.load_state_dict: state_dict must be a dict with 'state' and "
                            f"'param_groups', got {type(state_dict).__name__}")
        state_dict = dict(state_dict)
        entropy = state_dict.pop(_ENTROPY_KEY, None)
        groups = []
        for g, group in enumerate(state_dict["param_groups"]):
            missing = [k for k in _SAVED_KEYS if k not in group]
            if missing:
                raise ValueError(
                    f"ProjUNN.load_state_dict: param group {g} has no {', '.join(missing)}: "
                    "this is not the state of a ProjUNN optimizer (e.g. torch.optim.RMSprop's); "
                    "load it into the optimizer that saved it")
            # hyper-parameters added since the state was saved take their defaults
            groups.append({**{k: v for k, v in self.defaults.items() if k not in group},
                           **group})
        state_dict["param_groups"] = groups
        super().load_state_dict(state_dict)
        names = {id(p): _describe(group, g, i) for g, group in enumerate(self.param_groups)
                 for i, p in enumerate(group["params"])}
        for p, st in self.state.items():
            _check_loaded_state(p, st, f"ProjUNN.load_state_dict: {names.get(id(p), 'a weight')}")
        self._live.clear()
        if entropy is not None:
            self._entropy = int(entropy)
            self._synced = True  # every replica loads the same checkpoint

    # -------------------------------------------------------------------- step
    @torch.compiler.disable  # host-side work: one graph break under torch.compile, no retracing
    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Take one step for every weight that has a gradient.

        Parameters
        ----------
        closure : callable, optional
            Re-evaluates the model and returns the loss (called with
            gradients enabled, before the step).

        Returns
        -------
        The closure's loss, or None.

        Raises
        ------
        ValueError
            If a weight is not unitary at its first step, a gradient holds NaN
            or infinity, or the step fails; nothing is changed then (see Notes
            of the class).
        TypeError, ValueError
            If a hyper-parameter of a group was set to an invalid value.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if not self._synced:
            self._entropy = _shared_entropy(self._entropy, self.param_groups)
            self._synced = True
        pending = []
        index = 0
        try:
            for g, group in enumerate(self.param_groups):
                _check_hyper(group, f" (param group {g})")
                prepare = self._prepare if group["constrained"] else self._prepare_free
                for i, p in enumerate(group["params"]):
                    if p.grad is not None:
                        pending.append(prepare(p, group, _describe(group, g, i), index + i))
                index += len(group["params"])
        except BaseException:
            self._live.clear()  # generators drawn from: rebuilt from the (unchanged) state
            raise
        # every new value is complete and finite; a Ctrl-C waits until all are written
        with deferred_interrupts():
            for p, new, state, gen in pending:
                p.copy_(new)
                self.state[p].update(state)
                if gen is not None:
                    self._live[p] = (gen, state["rng_state"])
        return loss

    def _prepare_free(self, p: torch.Tensor, group: dict[str, Any], name: str, index: int
                      ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any], None]:
        """The new value of an unconstrained `p` (``"constrained": False``): ``p − lr·D``."""
        _check_free(p, group, name)
        grad = p.grad
        assert grad is not None  # step() prepares only the parameters that have a gradient
        if grad.is_sparse:
            raise ValueError(f"ProjUNN: {name} has a sparse gradient, which is not supported")
        state = self.state.get(p, {})
        steps = int(state.get("step", 0))
        new_state: dict[str, Any] = {"step": steps + 1}
        D = _direction(grad, state, new_state, group, steps + 1, name)
        lr, wd = group["lr"], group["weight_decay"]
        new = p.detach() * (1.0 - lr * wd) if wd else p.detach()
        new = new - lr * D
        if new.numel() and not bool(torch.isfinite(new).all()):
            raise ValueError(f"ProjUNN: the step of {name} failed, nothing was changed: the new "
                             "value holds NaN or infinity (is the gradient finite?)")
        return p, new, new_state, None

    def _prepare(self, p: torch.Tensor, group: dict[str, Any], name: str, index: int
                 ) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any], np.random.Generator]:
        """The new value of `p`, its new state and its generator; `p` and its state unchanged."""
        _check_weight(p, group, name)
        grad = p.grad
        assert grad is not None  # step() prepares only the parameters that have a gradient
        if grad.is_sparse:
            raise ValueError(f"ProjUNN: {name} has a sparse gradient, which is not supported")
        state = self.state.get(p, {})  # no empty entry for a weight whose step fails
        steps = int(state.get("step", 0))
        wide = p.shape[-1] > p.shape[-2]
        W = p.detach().mH if wide else p.detach()  # orthonormal columns
        if steps == 0 and group["check_unitary"]:
            _check_unitary(W, name, wide)
        new_state: dict[str, Any] = {"step": steps + 1}
        D = _direction(grad, state, new_state, group, steps + 1, name)
        packed = state.get("rng_state")
        live = self._live.get(p)
        if live is not None and packed is not None and live[1] is packed:
            gen = live[0]
        else:
            gen = _generator(packed, self._entropy, index)
        try:
            new = ul.step(W, D.mH if wide else D, group["lr"],
                          rank=auto_rank(group["rank"], tuple(W.shape)),
                          method=group["method"], sampler=group["sampler"], rng=gen)
            every = group["repair_every"]
            if every is not None and (steps + 1) % every == 0:
                guard = ul.DriftGuard(every=1, rng=gen)
                new = guard(new)
                new_state["repairs"] = int(state.get("repairs", 0)) + guard.repairs
            # One reduction instead of an elementwise scan: NaN or ±inf anywhere makes the
            # sum non-finite, and the entries of a matrix with orthonormal columns are at
            # most 1 in modulus, so a finite result cannot overflow it.
            if not bool(torch.isfinite(new.sum())):
                raise ValueError("the new weight holds NaN or infinity (is the weight itself "
                                 "finite?)")
        except ValueError as exc:
            raise ValueError(f"ProjUNN: the step of {name} failed, nothing was changed: "
                             f"{exc}") from exc
        new_state["rng_state"] = _pack(gen)
        return p, new.mH if wide else new, new_state, gen


# ---------------------------------------------------------------------- helpers
def _direction(grad: torch.Tensor, state: dict[str, Any], new_state: dict[str, Any],
               group: dict[str, Any], t: int, name: str) -> torch.Tensor:
    """The direction D of step `t` of a weight; its new running means go into `new_state`.

    `ValueError` (nothing changed) when a running mean of ``|G|²`` would not be finite:
    a gradient holding NaN or infinity, or entries whose square overflows the dtype.
    """
    G = -grad if group["maximize"] else grad
    kind = group["direction"]
    if kind != "gradient" and grad.numel():
        # |G|² must not overflow: a running mean of inf would make every later step zero
        big = float(grad.abs().amax())  # NaN propagates
        if not big <= math.sqrt(torch.finfo(grad.dtype).max):
            raise ValueError(
                f"ProjUNN: the step of {name} was refused, nothing was changed: its gradient "
                + ("holds NaN or infinity" if not math.isfinite(big) else
                   f"has entries whose square overflows {grad.dtype} (largest |G| = {big:.3g})")
                + "; the running mean of |G|² would stay infinite and freeze the weight. "
                "Skip this batch, or scale the loss down"
            )
    if kind == "adam":
        D, new_state["exp_avg"], new_state["exp_avg_sq"] = ul.adam_direction(
            G, state.get("exp_avg"), state.get("exp_avg_sq"), t, betas=group["betas"],
            eps=group["eps"])
    elif kind == "rmsprop":
        D, new_state["square_avg"] = ul.rmsprop_direction(
            G, state.get("square_avg"), alpha=group["alpha"], eps=group["eps"])
    else:
        D = G
    mu = group["momentum"]
    if mu:
        buf = state.get("momentum_buffer")
        D = D.clone() if buf is None else torch.mul(buf, mu).add_(D)
        new_state["momentum_buffer"] = D
    return D


def _check_loaded_state(p: torch.Tensor, st: dict[str, Any], where: str) -> None:
    """Cast a loaded weight's running means to its dtypes; `ValueError` for what cannot fit.

    A state saved in another precision (complex128 resumed as complex64) is cast, as
    torch does for real weights; a shape that differs, a non-tensor mean or a malformed
    generator state is refused, naming the weight.
    """
    for key in _REAL_STATE + _LIKE_STATE:
        if key not in st:
            continue
        v = st[key]
        if not torch.is_tensor(v):
            raise ValueError(f"{where}: state {key!r} must be a tensor, got {type(v).__name__}")
        if tuple(v.shape) != tuple(p.shape):
            raise ValueError(f"{where}: state {key!r} has shape {tuple(v.shape)}, the weight "
                             f"{tuple(p.shape)}: was the state saved for another model?")
        want = p.real.dtype if (key in _REAL_STATE and p.is_complex()) else p.dtype
        if v.dtype.is_complex and not want.is_complex:
            raise ValueError(f"{where}: state {key!r} is complex ({v.dtype}) for a real "
                             f"weight ({p.dtype}): was the state saved for another model?")
        st[key] = v.to(dtype=want, device=p.device)
    packed = st.get("rng_state")
    if packed is not None:
        ok = (isinstance(packed, tuple | list) and len(packed) == 4
              and all(isinstance(x, numbers.Integral) and not isinstance(x, bool) and int(x) >= 0
                      for x in packed))
        if not ok:
            raise ValueError(f"{where}: state 'rng_state' must be the 4 non-negative ints "
                             f"saved by ProjUNN, got {packed!r}")
        st["rng_state"] = tuple(int(x) for x in packed)
    step = st.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, numbers.Integral)
                             or step < 0):
        raise ValueError(f"{where}: state 'step' must be an int >= 0, got {step!r}")


def _describe(group: dict[str, Any], g: int, i: int) -> str:
    names = group.get("param_names")
    label = f"parameter {i} ({names[i]!r})" if names else f"parameter {i}"
    p = group["params"][i]
    return f"{label} of param group {g} (shape {tuple(p.shape)}, {p.dtype})"


def _check_hyper(h: dict[str, Any], where: str) -> None:
    """`TypeError`/`ValueError` naming the first invalid hyper-parameter of a group."""
    lr = h["lr"]
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        raise TypeError(f"lr must be a real number{where}, got {type(lr).__name__} {lr!r}")
    if not (0.0 <= float(lr) < math.inf):
        raise ValueError(f"lr must be finite and >= 0{where}, got {lr!r}")
    for key, allowed in (("method", METHODS), ("sampler", SAMPLERS),
                         ("direction", DIRECTIONS)):
        if not isinstance(h[key], str) or h[key] not in allowed:
            raise ValueError(f"{key} must be one of {', '.join(map(repr, allowed))}{where}, "
                             f"got {h[key]!r}")
    rank = h["rank"]
    if isinstance(rank, str):
        if rank not in ("full", "auto"):
            raise ValueError(f"rank must be an int >= 1, 'full' or 'auto'{where}, got {rank!r}")
    elif isinstance(rank, bool) or not isinstance(rank, numbers.Integral):
        raise TypeError(f"rank must be an int, 'full' or 'auto'{where}, got "
                        f"{type(rank).__name__} {rank!r}")
    elif rank < 1:
        raise ValueError(f"rank must be >= 1{where}, got {rank!r}")
    for key in ("maximize", "check_unitary", "constrained"):
        if not isinstance(h[key], bool):
            raise TypeError(f"{key} must be a bool{where}, got {type(h[key]).__name__} "
                            f"{h[key]!r}")
    betas = h["betas"]
    if not isinstance(betas, tuple) or len(betas) != 2:
        raise TypeError(f"betas must be a pair of real numbers{where}, got {betas!r}")
    alpha, eps, mu = h["alpha"], h["eps"], h["momentum"]
    for key, value in (("alpha", alpha), ("eps", eps), ("momentum", mu),
                       ("betas[0]", betas[0]), ("betas[1]", betas[1])):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{key} must be a real number{where}, got "
                            f"{type(value).__name__} {value!r}")
    for key, value in (("alpha", alpha), ("momentum", mu), ("betas[0]", betas[0]),
                       ("betas[1]", betas[1])):
        if not 0.0 <= float(value) < 1.0:
            raise ValueError(f"{key} must be in [0, 1){where}, got {value!r}")
    wd = h["weight_decay"]
    if isinstance(wd, bool) or not isinstance(wd, numbers.Real):
        raise TypeError(f"weight_decay must be a real number{where}, got {type(wd).__name__} "
                        f"{wd!r}")
    if not 0.0 <= float(wd) < math.inf:
        raise ValueError(f"weight_decay must be finite and >= 0{where}, got {wd!r}")
    if wd and h["constrained"]:
        raise ValueError(
            f"weight_decay applies to unconstrained groups only{where}: on the unitary group "
            "every weight has the same norm, so decay toward 0 has no meaning there (it would "
            "only pull W off the group). Set it on the \"constrained\": False group")
    if mu and h["direction"] == "adam":
        raise ValueError(f"momentum applies to direction='rmsprop' or 'gradient'{where}; "
                         "direction='adam' carries its own momentum, betas[0]")
    if not 0.0 < float(eps) < math.inf:
        raise ValueError(f"eps must be finite and > 0{where}, got {eps!r}")
    every = h["repair_every"]
    if every is not None:
        if isinstance(every, bool) or not isinstance(every, numbers.Integral):
            raise TypeError(f"repair_every must be None or an int{where}, got "
                            f"{type(every).__name__} {every!r}")
        if every < 1:
            raise ValueError(f"repair_every must be >= 1{where}, got {every!r}")


def _check_weight(p: torch.Tensor, group: dict[str, Any], name: str) -> None:
    """Shape, dtype, method and rank of a weight; O(1)."""
    if p.dtype not in _DTYPES:
        raise TypeError(f"ProjUNN: {name}: the dtype must be float32, float64, complex64 or "
                        f"complex128, got {p.dtype}")
    _refuse_dtensor(p, name)
    if p.ndim < 2:
        raise ValueError(f"ProjUNN: {name}: a weight must be a matrix or a batch of matrices "
                         f"(..., n, p), got {p.ndim} dimension(s); put weights that need no "
                         "constraint (biases, ...) in a group with \"constrained\": False "
                         "(unitary_lowrank.torch.param_groups(model) makes both groups)")
    n, q = p.shape[-2:]
    if n != q and needs_square(group["method"]):
        raise ValueError(f"ProjUNN: {name}: method={group['method']!r} needs square weights; "
                         "use method='polar' for a non-square (Stiefel) weight")
    if not isinstance(group["rank"], str) and group["rank"] > min(n, q):
        raise ValueError(f"ProjUNN: {name}: rank must be <= min(n, p) = {min(n, q)}, "
                         f"got {group['rank']}")


def _check_free(p: torch.Tensor, group: dict[str, Any], name: str) -> None:
    """Dtype of a weight of an unconstrained group (any shape)."""
    if not isinstance(p, torch.Tensor):
        raise TypeError(f"ProjUNN: {name} must be a tensor, got {type(p).__name__}")
    if p.dtype not in _DTYPES:
        raise TypeError(f"ProjUNN: {name}: the dtype must be float32, float64, complex64 or "
                        f"complex128, got {p.dtype}")
    _refuse_dtensor(p, name)


def _refuse_dtensor(p: torch.Tensor, name: str) -> None:
    """`ValueError` for a sharded DTensor (FSDP2's ``fully_shard``): say what to do instead."""
    dist = sys.modules.get("torch.distributed.tensor")
    if dist is not None and isinstance(p, getattr(dist, "DTensor", ())):
        raise ValueError(
            f"ProjUNN: {name} is a sharded DTensor (FSDP2 fully_shard); the low-rank update "
            "needs each constrained weight whole. Leave the constrained weights unsharded: "
            "fully_shard(module, ignored_params=set(p for p in model.parameters() if "
            "unitary_lowrank.torch.is_constrained(p))), and keep them replicated as "
            "DistributedDataParallel does (docs/distributed.md)")


def _shared_entropy(entropy: int, groups: list[dict[str, Any]]) -> int:
    """The root entropy of rank 0 of the default process group, else `entropy` itself.

    Under DistributedDataParallel every replica must draw the same sketches, whatever
    each process's random state: one broadcast of two int64 at the first step.
    """
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available() or not dist.is_initialized():
        return entropy
    if dist.get_world_size() < 2:
        return entropy
    device = None
    if dist.get_backend() == "nccl":
        device = next((p.device for g in groups for p in g["params"] if p.is_cuda),
                      torch.device("cuda", torch.cuda.current_device()))
    box = [int(entropy)]
    dist.broadcast_object_list(box, src=0, device=device)
    return int(box[0])


def _check_unitary(W: torch.Tensor, name: str, wide: bool) -> None:
    """`ValueError` naming the weight unless ``‖WᴴW − I‖₂ <= sqrt(eps)`` (W tall or square)."""
    if W.shape[-1] <= EXACT_CHECK_MAX:
        err = ul.unitarity_error(W)
    else:  # a lower estimate, O(n·p·16); a fixed seed draws nothing from the optimizer
        err = ul.unitarity_error(W, method="probe", rng=0)
    worst = float(err.max()) if err.numel() else 0.0
    tol = math.sqrt(torch.finfo(W.dtype).eps)
    if not worst <= tol:  # also catches NaN (unitarity_error gives inf)
        kind = "rows" if wide else "columns"
        form = "W Wᴴ" if wide else "Wᴴ W"
        init = ("unitary_lowrank.torch.unitary_(weight) (torch.nn.init.orthogonal_ refuses "
                "complex tensors)" if W.is_complex() else
                "unitary_lowrank.torch.unitary_(weight) or torch.nn.init.orthogonal_(weight)")
        hint = ""
        if W.ndim == 4:
            hint = (f" A 4-D weight is read as a batch of {W.shape[0]}×{W.shape[1]} "
                    f"{W.shape[2]}×{W.shape[3]} matrices (e.g. each kernel tap of a Conv2d "
                    "weight on its own), which orthogonal_ does not make orthonormal; for "
                    "an orthogonal convolution use unitary_lowrank.torch.OrthogonalConv2d.")
        raise ValueError(
            f"ProjUNN: {name} does not have orthonormal {kind} at its first step: "
            f"‖{form} − I‖₂ = {worst:.3g} > {tol:.3g} (sqrt(eps)). Initialise it first, "
            f"e.g. {init}, or copy in "
            "unitary_lowrank.random_unitary(n, p, dtype=..., xp=torch)"
            + (" transposed" if wide else "") + "." + hint
        )


def _root_entropy(generator: Any) -> int:
    """The root entropy (a non-negative int) from None, a seed or a torch.Generator."""
    if generator is None or isinstance(generator, torch.Generator):
        # None: torch's default generator, so torch.manual_seed makes a run reproducible
        kw: dict[str, Any] = ({} if generator is None
                              else {"generator": generator, "device": generator.device})
        draws = torch.randint(0, 2**62, (2,), **kw)
        a, b = (int(x) for x in draws.tolist())
        return (a << 62) | b
    if isinstance(generator, bool) or not isinstance(generator, numbers.Integral):
        raise TypeError("generator must be None, an int seed or a torch.Generator, got "
                        f"{type(generator).__name__}")
    if generator < 0:
        raise ValueError(f"generator must be a non-negative int seed, got {generator}")
    return int(generator)


def _generator(packed: tuple[int, ...] | None, entropy: int, index: int) -> np.random.Generator:
    """The weight's NumPy generator: from its saved state, or seeded at its first step."""
    if packed is None:
        seq = np.random.SeedSequence(entropy, spawn_key=(index,))
        return np.random.Generator(np.random.PCG64(seq))
    bits = np.random.PCG64()
    state, inc, has_uint32, uinteger = packed
    bits.state = {"bit_generator": "PCG64", "state": {"state": int(state), "inc": int(inc)},
                  "has_uint32": int(has_uint32), "uinteger": int(uinteger)}
    return np.random.Generator(bits)


def _pack(gen: np.random.Generator) -> tuple[int, int, int, int]:
    """The generator's state as ints only (torch's load_state_dict would mangle strings)."""
    s = gen.bit_generator.state
    return (int(s["state"]["state"]), int(s["state"]["inc"]), int(s["has_uint32"]),
            int(s["uinteger"]))
