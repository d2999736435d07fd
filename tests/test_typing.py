"""The public API type-checks at a user's call site.

mypy accepts typed NumPy and torch code and reports a misspelt choice (``method="qr"``) as an
error of its literal type.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import get_args

import pytest

from unitary_lowrank import updates
from unitary_lowrank.methods import DIRECTIONS, METHODS, SAMPLERS
from unitary_lowrank.typing import Direction, Engine, Method, Sampler

ROOT = Path(__file__).resolve().parents[1]

GOOD = """\
import numpy as np
import torch

import unitary_lowrank as ul
from unitary_lowrank.torch import ProjUNN
from unitary_lowrank.typing import Array, Method

U = ul.random_unitary(8, dtype="float64", rng=0)
A = np.zeros((8, 1))
B = np.ones((8, 1))
V: Array = ul.project(U, A, B)
W = ul.step(U, np.zeros((8, 8)), 1e-3, rank="full", method="exp")
W2, info = ul.step(U, np.zeros((8, 8)), 1e-3, rank=2, return_info=True)
r: int = info.rank
m: Method = "cayley"
W3 = ul.retract(U, A, B, m, engine="blas")
A2, B2 = ul.lowrank(np.zeros((8, 8)), 2, sampler="lsi")

Ut = torch.eye(4, dtype=torch.float64)
At = torch.zeros(4, 1, dtype=torch.float64)
Vt = ul.project(Ut, At, At)
Wt = ul.step(Ut, torch.zeros(4, 4, dtype=torch.float64), 1e-3, rank="full", method="exp")
params = [torch.nn.Parameter(torch.eye(4))]
opt = ProjUNN(params, lr=1e-3, rank="auto")
opt2 = ProjUNN(params, lr=1e-3, method="polar", rank=3, sampler="randomized",
               direction="rmsprop")
"""

BAD = """\
import numpy as np
import torch

import unitary_lowrank as ul
from unitary_lowrank.torch import ProjUNN

U = np.eye(4)
V = ul.retract(U, U[:, :1], U[:, :1], method="qr")
W = ul.step(U, np.zeros((4, 4)), 1e-3, method="qr")
opt = ProjUNN([torch.nn.Parameter(torch.eye(4))], lr=1e-3, rank="half")
"""


def test_literal_types_match_the_registries():
    assert get_args(Method) == METHODS
    assert get_args(Sampler) == SAMPLERS
    assert get_args(Direction) == DIRECTIONS
    assert get_args(Engine) == updates.ENGINES


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
def test_mypy_accepts_a_typed_call_site_and_reports_a_wrong_literal(tmp_path):
    (tmp_path / "good.py").write_text(GOOD, encoding="utf-8")
    (tmp_path / "bad.py").write_text(BAD, encoding="utf-8")
    # one run for both files (a cold run reads numpy's and torch's stubs once); only the
    # user's files are reported, not the library's own modules
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--python-version", "3.11", "--follow-imports", "silent",
         "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", "--hide-error-context",
         "good.py", "bad.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    out = proc.stdout + proc.stderr
    errors = [line for line in out.splitlines() if ": error:" in line]
    assert proc.returncode == 1, out
    assert not [e for e in errors if not e.startswith("bad.py:")], out
    lines = {int(e.split(":")[1]) for e in errors}
    assert lines == {8, 9, 10}, out
    assert "Literal['polar', 'exp', 'cayley']" in out, out
    assert "Literal['full', 'auto']" in out, out


def test_the_package_ships_its_marker():
    assert (ROOT / "unitary_lowrank" / "py.typed").is_file()
