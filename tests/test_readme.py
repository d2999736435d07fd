"""The README's quick example runs as written (so that the front door cannot rot)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from unitary_lowrank.testing import assert_unitary, unitarity_bound

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_block(heading: str) -> str:
    """The first ```python block under the README section `heading`."""
    text = README.read_text(encoding="utf-8")
    pattern = rf"## {re.escape(heading)}\n\n```python\n(.*?)```"
    return re.search(pattern, text, re.DOTALL).group(1)


def _run_readme_block(heading: str) -> dict:
    """Execute the first ```python block under the README section `heading`; its namespace."""
    code = _readme_block(heading)
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


def test_readme_testing_example_passes_under_hypothesis_defaults(tmp_path):
    """The README's property test, verbatim, run by pytest in a fresh process.

    With Hypothesis's default settings (none of this suite's profiles, whose
    ``deadline=None`` would hide it): the first example must not pay for
    loading the compiled kernels (about a second against the 200 ms deadline),
    which failed the test with ``FlakyFailure`` from ``DeadlineExceeded``.
    """
    pytest.importorskip("hypothesis")
    test_file = tmp_path / "test_readme_snippet.py"
    test_file.write_text(_readme_block("Testing your own code"), encoding="utf-8")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HYPOTHESIS", "UNITARY_LOWRANK_HYPOTHESIS", "PYTEST"))}
    # the repository on the path (as an installed package would be), nothing else of it:
    # the test directory has no conftest, pytest.ini or hypothesis profile
    env["PYTHONPATH"] = os.pathsep.join([str(README.parent), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(test_file)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout, proc.stdout[-4000:]


def test_readme_pytorch_example_runs():
    torch = pytest.importorskip("torch")
    namespace = _run_readme_block("Training with PyTorch")
    W = namespace["rnn"].weight_hh_l0.detach()
    assert_unitary(W)  # three ProjUNN steps: orthogonal to 30·n·eps
    assert namespace["opt"].state[namespace["rnn"].weight_hh_l0]  # it did step
    assert torch.isfinite(namespace["loss"])


def test_readme_jax_example_runs():
    pytest.importorskip("optax")
    namespace = _run_readme_block("Training with JAX and optax")
    assert "jax" in type(namespace["params"]["W"]).__module__
    # three steps, each unitary to 30·n·eps and one rounding of apply_updates more
    assert float(namespace["ul"].unitarity_error(np.asarray(namespace["params"]["W"]))) <= (
        3 * 2 * unitarity_bound(32, "float32"))
