"""RMSprop for the ordinary (unconstrained) parameters of the network; Adam's direction for U."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import unitary_lowrank as ul

__all__ = ["Adam", "RMSprop"]


class RMSprop:
    r"""RMSprop: ``v ← ρ v + (1 − ρ) |g|²``, ``p ← p − lr · g / (√v + ε)``.

    The direction ``g / (√v + ε)`` and the running mean ``v`` of each parameter
    come from :func:`unitary_lowrank.rmsprop_direction` (``|g|²`` is the squared
    modulus, so ``v`` stays real and positive for complex parameters too); this
    class keeps ``v`` per parameter name and takes the step.

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
    >>> from unitary_lowrank.cli.tasks.optim import RMSprop
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
        if not eps > 0:
            raise ValueError(f"eps must be positive, got {eps}")
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
            `params` with the updated entries replaced by ``p − lr · direction``.
        """
        new = dict(params)
        for name, g in grads.items():
            new[name] = params[name] - self.lr * self.direction(name, g)
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
        d, self.square_avg[name] = ul.rmsprop_direction(
            g, self.square_avg.get(name), alpha=self.alpha, eps=self.eps, xp=self.xp
        )
        return d


class Adam(RMSprop):
    r"""Adam: ``m ← β₁ m + (1 − β₁) g``, ``v ← β₂ v + (1 − β₂) |g|²``, ``p ← p − lr · m̂/(√v̂ + ε)``.

    The direction and the running means come from
    :func:`unitary_lowrank.adam_direction`, kept per parameter name with the
    step count of each (for the bias corrections).

    Parameters
    ----------
    lr : float
        Learning rate.
    betas : tuple of two floats, default: (0.9, 0.999)
        Smoothing constants of the means of ``g`` and ``|g|²``.
    eps : float, default: 1e-8
        Added to ``√v̂``.
    xp : array namespace
        Namespace of the parameters.

    Examples
    --------
    >>> import numpy as np, array_api_compat.numpy as xp
    >>> from unitary_lowrank.cli.tasks.optim import Adam
    >>> opt = Adam(0.1, xp=xp)
    >>> p = opt.step({"w": np.array([1.0, -1.0])}, {"w": np.array([2.0, -0.5])})
    >>> np.round(p["w"], 6).tolist()  # a first step of lr·sign(g)
    [0.9, -0.9]
    """

    def __init__(self, lr: float, *, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, xp: ModuleType):
        super().__init__(lr, eps=eps, xp=xp)
        self.betas = (float(betas[0]), float(betas[1]))
        self.exp_avg: dict[str, Any] = {}
        self.steps: dict[str, int] = {}

    def direction(self, name: str, g: Any) -> Any:
        """Update the running means of `name` and return Adam's ``m̂ / (√v̂ + ε)``.

        Parameters
        ----------
        name : str
            Which parameter `g` is the gradient of.
        g : array
            The gradient.

        Returns
        -------
        array
            The direction, of the shape of `g`.
        """
        t = self.steps.get(name, 0) + 1
        d, self.exp_avg[name], self.square_avg[name] = ul.adam_direction(
            g, self.exp_avg.get(name), self.square_avg.get(name), t, betas=self.betas,
            eps=self.eps, xp=self.xp)
        self.steps[name] = t
        return d
