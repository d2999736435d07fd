"""The README's quick example runs as written (so that the front door cannot rot)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from unitary_lowrank.testing import assert_unitary, unitarity_bound

README = Path(__file__).resolve().parents[1] / "README.md"


def _run_readme_block(heading: str) -> dict:
    """Execute the first ```python block under the README section `heading`; its namespace."""
    text = README.read_text(encoding="utf-8")
    pattern = rf"## {re.escape(heading)}\n\n```python\n(.*?)```"
    code = re.search(pattern, text, re.DOTALL).group(1)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - our own README
    return namespace


def test_readme_quick_example_runs():
    pytest.importorskip("torch")
    namespace = _run_readme_block("Quick example")
    ul = namespace["ul"]
    # U: two chained float32 updates of a 1024×1024 Haar matrix, each unitary to
    # 30·n·eps (unitarity_bound, the README's own testing contract); Xt: one update
    assert float(ul.unitarity_error(namespace["U"])) <= 2 * unitarity_bound(1024, "float32")
    assert_unitary(namespace["Xt"])


def test_readme_testing_example_runs():
    pytest.importorskip("hypothesis")
    namespace = _run_readme_block("Testing your own code")
    namespace["test_my_layer_stays_unitary"]()


def test_readme_pytorch_example_runs():
    torch = pytest.importorskip("torch")
    namespace = _run_readme_block("Training with PyTorch")
    W = namespace["rnn"].weight_hh_l0.detach()
    assert_unitary(W)  # three ProjUNN steps: orthogonal to 30·n·eps
    assert namespace["opt_u"].state[namespace["rnn"].weight_hh_l0]  # it did step
    assert torch.isfinite(namespace["loss"])


def test_readme_jax_example_runs():
    pytest.importorskip("optax")
    namespace = _run_readme_block("Training with JAX and optax")
    assert "jax" in type(namespace["params"]["W"]).__module__
    # three steps, each unitary to 30·n·eps and one rounding of apply_updates more
    assert float(namespace["ul"].unitarity_error(np.asarray(namespace["params"]["W"]))) <= (
        3 * 2 * unitarity_bound(32, "float32"))
