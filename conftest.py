"""Doctest collection: skip the modules whose optional dependency is not installed.

``pytest`` collects the doctests of every module of the package; a module that
imports an optional library at its top (the Numba kernels, the PyTorch
optimizer) cannot be imported without it, which is not a failure of the tests.
"""

import importlib.util

_OPTIONAL = {
    "numba": ["unitary_lowrank/_engines/numba.py"],
    "torch": ["unitary_lowrank/torch.py", "unitary_lowrank/_torch_layers.py"],
    "optax": ["unitary_lowrank/optax.py"],
}

collect_ignore = [path for module, paths in _OPTIONAL.items()
                  if importlib.util.find_spec(module) is None for path in paths]
