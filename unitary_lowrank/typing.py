"""Types of the public API, for annotating code that calls the library.

The functions take and return arrays of any supported library, so :data:`Array`
is an alias of :data:`typing.Any`: a type checker accepts a NumPy, CuPy,
PyTorch, JAX, Dask or array-api-strict array wherever the library does, and the
result takes the type the caller gives it. The named choices are
:class:`typing.Literal` types, so a misspelt ``method="qr"`` is an error of the
type checker, not only a :class:`ValueError` at run time.

Examples
--------
>>> import numpy as np
>>> import unitary_lowrank as ul
>>> from unitary_lowrank.typing import Array, Method
>>> def update(U: Array, G: Array, method: Method = "exp") -> Array:
...     return ul.step(U, G, 1e-3, rank="full", method=method)
>>> update(np.eye(3), np.zeros((3, 3))).shape
(3, 3)
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Literal, TypeAlias

from .methods import Direction, Method, Sampler

__all__ = [
    "Array", "DType", "Direction", "Engine", "Method", "Namespace", "Rank", "Repair", "Sampler",
    "Seed",
]

#: An array of NumPy, CuPy, PyTorch, JAX, Dask or array-api-strict (any Array-API array).
Array: TypeAlias = Any
#: An array namespace (``xp``): ``numpy``, ``array_api_strict``, or the namespace that
#: ``array_api_compat.array_namespace`` returns for an array.
Namespace: TypeAlias = ModuleType
#: A dtype: its name (``"float32"``, ``"complex128"``, ...) or a dtype object of the library.
DType: TypeAlias = Any
#: Randomness: None, a seed, a :class:`numpy.random.Generator`, a JAX PRNG key or a
#: ``torch.Generator`` (each function says which it accepts).
Seed: TypeAlias = Any
#: The two-pass kernel of :func:`unitary_lowrank.project` and friends
#: (:data:`unitary_lowrank.updates.ENGINES`).
Engine: TypeAlias = Literal["auto", "numba", "blas", "array_api"]
#: The repair of :func:`unitary_lowrank.reunitarize` and :class:`unitary_lowrank.DriftGuard`.
Repair: TypeAlias = Literal["auto", "newton-schulz", "polar"]
#: The rank of an optimizer's step: a number, the whole step (``"full"``), or the library's
#: choice by the weight's size (``"auto"``).
Rank: TypeAlias = int | Literal["full", "auto"]
