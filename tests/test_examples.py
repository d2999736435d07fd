"""The scripts in docs/examples run, shrunk to a few seconds, and do what they say."""

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


def test_torch_rnn_trains_and_keeps_the_recurrent_matrix_orthogonal(capsys):
    """docs/examples/torch_rnn.py at T = 10, h = 16, 40 steps: loss falls, W stays orthogonal."""
    pytest.importorskip("torch")
    example = _load("torch_rnn")
    steps = 40
    out = example.main(["--steps", str(steps), "--length", "10", "--hidden", "16",
                        "--batch", "20", "--log-every", "10", "--seed", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("adding problem T=10, hidden 16, float32")
    logged = [ln for ln in lines if ln.startswith("step ")]
    assert len(logged) == 1 + steps // 10
    evals = [float(re.search(r"eval loss (\S+)", ln).group(1)) for ln in logged]
    errors = [float(re.search(r"‖WᵀW−I‖₂ (\S+)", ln).group(1)) for ln in logged]
    assert evals == pytest.approx(out["eval_losses"], rel=1e-3)  # printed to 4 digits
    assert evals[-1] < evals[0]
    # one Haar start (rounded to float32) plus `steps` backward-stable steps adding up like
    # a random walk (docs/theory.md, drift)
    bound = unitarity_bound(16, "float32") * math.sqrt(steps + 1)
    assert max(errors) <= bound and out["unitarity_error"] <= bound


def test_torch_rnn_refuses_bad_sizes(capsys):
    pytest.importorskip("torch")
    example = _load("torch_rnn")
    with pytest.raises(SystemExit):
        example.main(["--steps", "0"])
    assert "--steps must be >= 1" in capsys.readouterr().err
