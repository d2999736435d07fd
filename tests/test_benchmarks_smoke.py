"""The benchmark suite runs (tiny sizes) so that it cannot rot; speed is not judged here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from unitary_lowrank.testing import unitarity_bound

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_suite_quick(tmp_path):
    pytest.importorskip("scipy")
    pytest.importorskip("matplotlib")
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--json", str(tmp_path / "r.json"),
         "--plot", str(tmp_path / "p.png")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    sections = {r["section"].split(":")[0] for r in rows}
    assert {"updates", "sketch", "conv", "train"} <= sections
    for r in rows:
        assert r["time_s"] > 0
    upd = [r for r in rows if r["section"] == "updates"]
    # one update of a Haar matrix per row: unitary to 30·n·eps of its dtype (unitarity_bound)
    for r in upd:
        p = r["params"]
        assert p["unitarity_error"] <= unitarity_bound(p["n"], p["dtype"]), p
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert "== updates ==" in out.stdout
    summary = subprocess.run([sys.executable, "-m", "benchmarks.summary", str(tmp_path / "r.json")],
                             cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert summary.returncode == 0, summary.stderr
    assert "not measured" in summary.stdout  # the quick sizes do not include the targets
