"""docs/examples/jax_rnn.py runs, shrunk to a few seconds, and does what it says."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import pytest

from unitary_lowrank.testing import unitarity_bound

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def jax_rnn():
    pytest.importorskip("jax")
    pytest.importorskip("optax")
    return _load("jax_rnn")


def test_jax_rnn_trains_and_keeps_the_recurrent_matrix_orthogonal(jax_rnn, capsys):
    """T = 10, h = 16, 40 steps under JAX's default configuration: loss falls, W orthogonal."""
    steps = 40
    out = jax_rnn.main(["--steps", str(steps), "--length", "10", "--hidden", "16",
                        "--batch", "20", "--log-every", "10", "--seed", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("adding problem T=10, hidden 16, float32")
    assert "projunn" in lines[0] and "RMSprop" in lines[0]
    logged = [ln for ln in lines if ln.startswith("step ")]
    assert len(logged) == 1 + steps // 10
    evals = [float(re.search(r"eval loss (\S+)", ln).group(1)) for ln in logged]
    errors = [float(re.search(r"‖WᵀW−I‖₂ (\S+)", ln).group(1)) for ln in logged]
    assert evals == pytest.approx(out["eval_losses"], rel=1e-3)  # printed to 4 digits
    assert evals[-1] < evals[0]
    # a single-precision Haar start (x64 off) plus `steps` backward-stable steps and
    # apply_updates sums, adding up like a random walk (docs/theory.md, drift)
    bound = unitarity_bound(16, "float32") * math.sqrt(steps + 1)
    assert max(errors) <= bound and out["unitarity_error"] <= bound


def test_jax_rnn_in_double_precision_restores_x64(jax_rnn, capsys):
    import jax

    before = bool(jax.config.jax_enable_x64)
    out = jax_rnn.main(["--steps", "4", "--length", "6", "--hidden", "8", "--batch", "8",
                        "--log-every", "2", "--dtype", "float64", "--rank", "2",
                        "--method", "polar"])
    assert bool(jax.config.jax_enable_x64) == before
    assert out["dtype"] == "float64"
    assert out["unitarity_error"] <= unitarity_bound(8, "float64") * math.sqrt(4 + 1)
    assert capsys.readouterr().out.startswith("adding problem T=6, hidden 8, float64")


def test_jax_rnn_refuses_bad_sizes(jax_rnn, capsys):
    with pytest.raises(SystemExit):
        jax_rnn.main(["--steps", "0"])
    assert "--steps must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        jax_rnn.main(["--hidden", "4", "--rank", "5"])
    assert "--rank must be <= --hidden" in capsys.readouterr().err
