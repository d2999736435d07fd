"""The library's named choices, in one registry: retractions, samplers and step directions.

Every function and adapter that takes a ``method``, ``sampler`` or ``direction``
checks it against these tuples, and asks :func:`needs_square` whether a retraction
applies to non-square (Stiefel) matrices. Adding a retraction means adding its
name here, its core to ``unitary_lowrank._agnostic._updates`` and its dense
reference to :mod:`unitary_lowrank.testing.reference` (docs/architecture.md).

This module imports nothing from the package, so every layer may use it.

Examples
--------
>>> from unitary_lowrank.methods import METHODS, needs_square
>>> METHODS
('polar', 'exp', 'cayley')
>>> [m for m in METHODS if not needs_square(m)]
['polar']
"""

from __future__ import annotations

from typing import Literal, TypeAlias, get_args

__all__ = [
    "DIRECTIONS", "METHODS", "SAMPLERS", "SQUARE_METHODS", "Direction", "Method", "Sampler",
    "needs_square",
]

#: The name of a retraction, for type checkers (re-exported by :mod:`unitary_lowrank.typing`).
Method: TypeAlias = Literal["polar", "exp", "cayley"]
#: The name of a sketch of :func:`unitary_lowrank.lowrank`, for type checkers.
Sampler: TypeAlias = Literal["randomized", "lsi", "column"]
#: The name of a step direction of the optimizers, for type checkers.
Direction: TypeAlias = Literal["adam", "rmsprop", "gradient"]

#: The retractions: ``"polar"`` (projUNN-D, the polar factor of ``U + ABᴴ``), ``"exp"``
#: (projUNN-T, ``U expm(skew(UᴴABᴴ))``) and ``"cayley"`` (the Cayley transform of the same
#: tangent step).
METHODS: tuple[Method, ...] = get_args(Method)
#: The retractions defined only for square (unitary or orthogonal) matrices: a tangent step
#: ``U·skew(UᴴABᴴ)`` needs ``UUᴴ = I``.
SQUARE_METHODS: frozenset[Method] = frozenset({"exp", "cayley"})
#: The sketches of :func:`unitary_lowrank.lowrank`: the randomized range finder, the paper's
#: LSI sketch, and column sampling.
SAMPLERS: tuple[Sampler, ...] = get_args(Sampler)
#: The step directions of the optimizers: Adam's, RMSprop's, and the gradient itself.
DIRECTIONS: tuple[Direction, ...] = get_args(Direction)


def needs_square(method: str) -> bool:
    """Whether the retraction `method` applies to square matrices only.

    Parameters
    ----------
    method : str
        One of :data:`METHODS`.

    Returns
    -------
    bool
        True for ``"exp"`` and ``"cayley"``, False for ``"polar"``.

    Raises
    ------
    ValueError
        If `method` is not one of :data:`METHODS`.

    Examples
    --------
    >>> from unitary_lowrank.methods import needs_square
    >>> needs_square("exp"), needs_square("polar")
    (True, False)
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}")
    return method in SQUARE_METHODS
