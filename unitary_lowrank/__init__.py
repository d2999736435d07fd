"""Cheap unitary and orthogonal weight updates: projUNN's low-rank retractions, any array library.

A rank-k step ``A @ Bᴴ`` is retracted onto the unitary group in O(n²k)
operations, instead of the O(n³) of a dense SVD, matrix exponential or solve:

- :func:`project` (projUNN-D): the polar factor of ``U + A Bᴴ``;
- :func:`transport` (projUNN-T): ``U expm(skew(Uᴴ A Bᴴ))``;
- :func:`retract`: either of them, or the Cayley transform.

All functions take arrays from any Array-API library (NumPy, CuPy, PyTorch,
JAX, array-api-strict) and return arrays of the same library, device and dtype.
"""

from ._parallel import get_num_threads, set_num_threads
from ._pool import ResultPoolInfo, result_pool_info, set_result_pool
from .dense import polar, unitarity_error
from .directions import adam_direction, rmsprop_direction
from .drift import DriftGuard, reunitarize
from .haar import random_unitary
from .sketch import LowRank, lowrank, range_finder
from .training import step
from .updates import project, retract, transport

__version__ = "0.1.0"

__all__ = [
    "DriftGuard",
    "LowRank",
    "ResultPoolInfo",
    "adam_direction",
    "get_num_threads",
    "lowrank",
    "polar",
    "project",
    "random_unitary",
    "range_finder",
    "result_pool_info",
    "retract",
    "reunitarize",
    "rmsprop_direction",
    "set_num_threads",
    "set_result_pool",
    "step",
    "transport",
    "unitarity_error",
]
