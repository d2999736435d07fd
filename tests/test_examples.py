"""The scripts in docs/examples run, shrunk to a few seconds, and do what they say.

``torch_rnn.py`` and ``jax_rnn.py`` train the same RNN on the adding problem, the
recurrent matrix by ``ProjUNN`` or ``projunn``, and print the same log lines.
"""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import pytest

from unitary_lowrank.testing import unitarity_bound

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"
TINY = ["--length", "10", "--hidden", "16", "--batch", "20", "--log-every", "10", "--seed", "1"]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=["torch_rnn", "jax_rnn"])
def rnn_example(request):
    if request.param == "torch_rnn":
        pytest.importorskip("torch")
    else:
        pytest.importorskip("jax")
        pytest.importorskip("optax")
    return request.param, _load(request.param)


def test_rnn_example_trains_and_keeps_the_recurrent_matrix_orthogonal(rnn_example, capsys):
    """T = 10, h = 16, 40 steps (JAX under its default configuration): loss falls, W orthogonal."""
    name, example = rnn_example
    steps = 40
    out = example.main(["--steps", str(steps), *TINY])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("adding problem T=10, hidden 16, float32")
    if name == "jax_rnn":
        assert "projunn" in lines[0] and "RMSprop" in lines[0]
    logged = [ln for ln in lines if ln.startswith("step ")]
    assert len(logged) == 1 + steps // 10
    evals = [float(re.search(r"eval loss (\S+)", ln).group(1)) for ln in logged]
    errors = [float(re.search(r"‖WᵀW−I‖₂ (\S+)", ln).group(1)) for ln in logged]
    assert evals == pytest.approx(out["eval_losses"], rel=1e-3)  # printed to 4 digits
    assert evals[-1] < evals[0]
    # one Haar start (rounded to float32) plus `steps` backward-stable steps (and, in JAX,
    # apply_updates sums) adding up like a random walk (docs/theory.md, drift)
    bound = unitarity_bound(16, "float32") * math.sqrt(steps + 1)
    assert max(errors) <= bound and out["unitarity_error"] <= bound


def test_rnn_example_refuses_bad_sizes(rnn_example, capsys):
    name, example = rnn_example
    with pytest.raises(SystemExit):
        example.main(["--steps", "0"])
    assert "--steps must be >= 1" in capsys.readouterr().err
    if name == "jax_rnn":
        with pytest.raises(SystemExit):
            example.main(["--hidden", "4", "--rank", "5"])
        assert "--rank must be <= --hidden" in capsys.readouterr().err


def test_jax_rnn_in_double_precision_restores_x64(capsys):
    pytest.importorskip("optax")
    import jax

    example = _load("jax_rnn")
    before = bool(jax.config.jax_enable_x64)
    out = example.main(["--steps", "4", "--length", "6", "--hidden", "8", "--batch", "8",
                        "--log-every", "2", "--dtype", "float64", "--rank", "2",
                        "--method", "polar"])
    assert bool(jax.config.jax_enable_x64) == before
    assert out["dtype"] == "float64"
    assert out["unitarity_error"] <= unitarity_bound(8, "float64") * math.sqrt(4 + 1)
    assert capsys.readouterr().out.startswith("adding problem T=6, hidden 8, float64")
