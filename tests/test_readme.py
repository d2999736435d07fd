"""The README's quick example runs as written (so that the front door cannot rot)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_quick_example_runs():
    pytest.importorskip("torch")
    text = README.read_text(encoding="utf-8")
    code = re.search(r"## Quick example\n\n```python\n(.*?)```", text, re.DOTALL).group(1)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - our own README
    ul = namespace["ul"]
    assert float(ul.unitarity_error(namespace["U"])) < 1e-5
    assert float(ul.unitarity_error(namespace["Xt"]).max()) < 1e-5


def test_readme_testing_example_runs():
    pytest.importorskip("hypothesis")
    text = README.read_text(encoding="utf-8")
    code = re.search(r"## Testing your own code\n\n```python\n(.*?)```", text, re.DOTALL).group(1)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - our own README
    namespace["test_my_layer_stays_unitary"]()
