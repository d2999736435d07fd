"""RMSprop for the ordinary (unconstrained) parameters of the network."""

from __future__ import annotations

from types import ModuleType
from typing import Any

__all__ = ["RMSprop"]


class RMSprop:
    r"""RMSprop: ``v ← ρ v + (1 − ρ) |g|²``, ``p ← p − lr · g / (√v + ε)``.

    The running average of the squared gradient uses ``|g|²`` (the squared
    modulus), so it stays real and positive for complex parameters too. The
    update is written with pure array expressions of the namespace `xp`.

    Parameters
    ----------
    lr : float
        Learning rate (may be changed between steps through the ``lr``
        attribute, for a schedule).
    alpha : float, default: 0.99
        Smoothing constant ρ of the squared-gradient average.
    eps : float, default: 1e-8
        Added to the root mean square to avoid division by zero.
    xp : array namespace
        Namespace of the parameters.

    Examples
    --------
    >>> import numpy as np, array_api_compat.numpy as xp
    >>> from unitary_lowrank.tasks.optim import RMSprop
    >>> opt = RMSprop(0.1, xp=xp)
    >>> p = opt.step({"w": np.array([1.0, -1.0])}, {"w": np.array([2.0, -0.5])})
    >>> bool(np.allclose(p["w"], 0.0, atol=1e-6))  # a first step of lr/sqrt(1 - alpha)
    True
    """

    def __init__(self, lr: float, *, alpha: float = 0.99, eps: float = 1e-8, xp: ModuleType):
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if not 0 <= alpha < 1:
            raise ValueError(f"alpha must be in [0, 1), got {alpha}")
        self.lr = float(lr)
        self.alpha = float(alpha)
        self.eps = float(eps)
        self.xp = xp
        self.square_avg: dict[str, Any] = {}

    def step(self, params: dict[str, Any], grads: dict[str, Any]) -> dict[str, Any]:
        """New values of the parameters that have a gradient in `grads`.

        Parameters
        ----------
        params : dict
            Current parameters (not modified).
        grads : dict
            Gradients of the parameters to update, by name.

        Returns
        -------
        dict
            `params` with the updated entries replaced.
        """
        xp = self.xp
        new = dict(params)
        for name, g in grads.items():
            v = self._average(name, g)
            new[name] = params[name] - self.lr * g / (xp.sqrt(v) + self.eps)
        return new

    def direction(self, name: str, g: Any) -> Any:
        """Update the running mean of ``|g|²`` of `name` and return ``g / (√v + ε)``.

        The step :meth:`step` takes is ``−lr`` times this; the orthogonal
        methods of the training loop hand it to their own update instead.

        Parameters
        ----------
        name : str
            Which parameter `g` is the gradient of (its running mean is kept).
        g : array
            The gradient.

        Returns
        -------
        array
            ``g / (√v + ε)``, of the shape of `g`.
        """
        v = self._average(name, g)
        return g / (self.xp.sqrt(v) + self.eps)

    def _average(self, name: str, g: Any) -> Any:
        """``v ← ρ v + (1 − ρ) |g|²`` for `name` (``(1 − ρ) |g|²`` at first); returns v."""
        xp = self.xp
        sq = xp.real(g * xp.conj(g)) if xp.isdtype(g.dtype, "complex floating") else g * g
        v = self.square_avg.get(name)
        v = (1.0 - self.alpha) * sq if v is None else self.alpha * v + (1.0 - self.alpha) * sq
        self.square_avg[name] = v
        return v
