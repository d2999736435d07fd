"""The library on JAX arrays sharded by rows over 4 host devices, under ``jax.jit``.

JAX takes its number of CPU devices from ``XLA_FLAGS`` once, when it is imported, so
the sharded programs run in one subprocess (``tests/_sharded_jax_worker.py``, with
``--xla_force_host_platform_device_count=4``) that runs every case and reports a JSON
record per case; each case is one test here. For every case:

- the result keeps the input's sharding (U by rows, a batch of U by rows or by
  matrices; the n×k factors of ``lowrank`` and the basis of ``range_finder`` by rows
  or whole on every device);
- it equals the library's single-device NumPy result (a JAX key: the unsharded jit)
  within ``compare_tol`` (the probe estimate within ``unitarity_bound`` of its
  precision), and a U result is unitary within ``unitarity_bound``
  (``rounded_unitarity_bound`` for ``reunitarize``);
- no collective of the compiled program (HLO text) moves more than
  ``2·f·(n·w + w²)`` entries, w the widest thin block of the case (n = 256, w <= 6):
  U is never gathered. ``reunitarize`` (Newton–Schulz) is the one exception, by
  its arithmetic: each step all-reduces the p×p Gram matrix ``UᴴU`` (one per step,
  and nothing else above the bound).

The checker itself is tested on programs that do gather U (``UᵀU``, a replicated
result), which it must flag, and on a parsed snippet of HLO text.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jax")

ROOT = Path(__file__).resolve().parents[1]
WORKER_PATH = Path(__file__).with_name("_sharded_jax_worker.py")
EXAMPLE = ROOT / "docs" / "examples" / "jax_sharded.py"


def _load_worker():
    spec = importlib.util.spec_from_file_location("_sharded_jax_worker", WORKER_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


worker = _load_worker()
CASES = worker.cases()


def _env() -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={worker.DEVICES}"
    env["JAX_PLATFORMS"] = "cpu"
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


@pytest.fixture(scope="session")  # once per run, also when the tests run interleaved
def report() -> dict:
    """The worker's record of every case (one subprocess for the whole run)."""
    out = subprocess.run([sys.executable, str(WORKER_PATH)], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["devices"] >= worker.DEVICES, f"JAX saw {data['devices']} CPU devices"
    data["by_id"] = {r["id"]: r for r in data["results"]}
    return data


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_sharded_case(report, case):
    rec = report["by_id"][case["id"]]
    assert "error" not in rec, rec.get("error")
    assert rec["sharded_as_expected"], (
        f"result sharding {rec['shardings']} is not that of the input ({case['layout']})")
    assert rec["diff"] <= rec["tol"], (
        f"max |sharded − single device| = {rec['diff']:.3e} > {rec['tol']:.3e}")
    if rec["unitarity"] is not None:
        assert rec["unitarity"] <= rec["unitarity_tol"], (
            f"‖XᴴX − I‖₂ = {rec['unitarity']:.3e} > {rec['unitarity_tol']:.3e}")
    assert not rec["violations"], (
        f"collectives above {rec['limit']} entries: {rec['violations']} "
        f"(all: {rec['collectives']})")


@pytest.mark.parametrize("name", ["replicated", "rows spelled P('rows')"])
def test_eager_call_on_one_set_of_devices_is_one_placement(report, name):
    """Outside jit, U by rows and A, B replicated (or P("rows")) are not "other devices"."""
    rec = next(r for r in report["eager"] if r["name"] == name)
    assert "error" not in rec, rec.get("error")
    assert rec["diff"] <= rec["tol"], f"{rec['diff']:.3e} > {rec['tol']:.3e}"


def test_updates_communicate_only_thin_blocks(report):
    """On U by rows a rank-k update exchanges n×k and n×2k blocks, a batch by matrices nothing."""
    for func in ("project", "transport", "retract-cayley"):
        rows = report["by_id"][f"{func}-rows-float32"]["collectives"]
        assert rows and max(e for _, e in rows) <= 2 * worker.K * worker.N, rows
        assert report["by_id"][f"{func}-batch-axis-float64"]["collectives"] == []


def test_newton_schulz_all_reduces_one_gram_per_step(report):
    """reunitarize: exactly one p×p all-reduce per step (per matrix), nothing gathered."""
    n, f = worker.N, worker.F
    for layout, size in (("rows", n * n), ("batch-rows", f * n * n)):
        dtype = "float32" if layout == "rows" else "complex64"
        coll = report["by_id"][f"reunitarize-{layout}-{dtype}"]["collectives"]
        grams = [c for c in coll if c[1] > worker.limit("reunitarize", layout)]
        assert [c[0] for c in grams] == ["all-reduce"] * worker.NS_STEPS, coll
        assert all(e == size for _, e in grams), coll


@pytest.mark.parametrize("name", ["U.T @ U", "replicated result", "U @ U"])
def test_checker_flags_a_gather_of_U(report, name):
    """Programs that move U across devices are caught by the checker."""
    rec = next(c for c in report["checker"] if c["name"] == name)
    assert rec["must_flag"]
    assert rec["violations"], f"not flagged: {rec['collectives']}"
    assert max(e for _, e in rec["collectives"]) >= worker.N * worker.N // worker.DEVICES


def test_checker_passes_a_rank_k_program(report):
    rec = next(c for c in report["checker"] if not c["must_flag"])
    assert rec["collectives"] and not rec["violations"], rec


def test_collective_parser_on_hlo_text():
    """Shapes from the instruction itself and, for operands, from their definitions."""
    hlo = """
  %p = f32[64,256]{1,0} parameter(0)
  %dot = f32[256,2]{1,0} dot(%p, %q), lhs_contracting_dims={0}, rhs_contracting_dims={0}
  %all-reduce = f32[256,2]{1,0} all-reduce(%dot), channel_id=1, to_apply=%add
  %ag = (c64[64,4]{1,0}, c64[256,4]{1,0}) all-gather-start(%x), dimensions={0}
  ROOT %rs = f32[64,256]{1,0} reduce-scatter(%big), dimensions={0}
  %big = f32[256,256]{1,0} add(%a, %b)
  %cp = f32[16,256]{1,0} collective-permute(%p), source_target_pairs={{0,1}}
"""
    found = worker.collectives(hlo)
    assert [c["op"] for c in found] == ["all-reduce", "all-gather-start", "reduce-scatter",
                                        "collective-permute"]
    # %big is defined after its use: the result's 64·256 entries are what is known
    assert [c["entries"] for c in found] == [512, 1024, 64 * 256, 64 * 256]
    assert worker.check_collectives(found, 1024) == [
        "reduce-scatter of f32[64,256]{1,0} moves 16384 entries > 1024",
        "collective-permute of f32[16,256]{1,0} moves 16384 entries > 1024",
    ]
    assert worker.check_collectives(found, 20000) == []
    # declared Gram all-reduces: allowed up to their number, and only all-reduces
    grams = [{"op": "all-reduce", "shape": "f32[256,256]", "entries": 65536}] * 2
    assert worker.check_collectives(grams, 1024, allowed=2) == []
    assert worker.check_collectives(grams, 1024, allowed=1) == [
        "2 all-reduces above 1024 entries, 1 allowed"]


def test_sharded_example_runs_tiny(tmp_path):
    """docs/examples/jax_sharded.py at a tiny size: the loss falls, U stays unitary."""
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), "--n", "64", "--steps", "6", "--rank", "2", "--batch", "8",
         "--log-every", "3", "--json", str(tmp_path / "r.json")],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    res = json.loads((tmp_path / "r.json").read_text())
    from unitary_lowrank.testing import unitarity_bound

    assert res["devices"] == worker.DEVICES
    assert res["by_rows"]
    assert res["largest_collective"] < 64 * 64 // worker.DEVICES  # never U, nor a shard of it
    assert res["losses"][-1] < res["losses"][0]
    # one step of float32 rounding per update, adding up like a random walk
    bound = unitarity_bound(64, "float32") * (res["steps"] + 1) ** 0.5
    assert res["probe_estimate"] <= bound
    assert res["unitarity_error"] <= bound
    assert re.search(r"^step +6 +loss", out.stdout, re.MULTILINE)


def test_probe_draws_from_a_jax_key():
    """One device, x64 off: a key gives the jitted and the eager call the same start block.

    The estimate is a lower bound of the exact error (up to the rounding of the
    float32 check, ``unitarity_bound``) and, for this drifted U, within a factor 2;
    another key gives another estimate; a key with NumPy input is a TypeError.
    """
    import jax
    import numpy as np

    import unitary_lowrank as ul
    from unitary_lowrank.testing import unitarity_bound

    rng = np.random.default_rng(0)
    n = 64
    U = ul.random_unitary(n, dtype="float32", rng=rng)
    U = (U + 1e-3 / n**0.5 * rng.standard_normal((n, n))).astype("float32")
    exact = float(ul.unitarity_error(U))
    Uj = jax.numpy.asarray(U)
    probe = jax.jit(lambda U, key: ul.unitarity_error(U, method="probe", probes=2, rng=key))
    key = jax.random.key(0)
    est = float(probe(Uj, key))
    eager = float(ul.unitarity_error(Uj, method="probe", probes=2, rng=key))
    bound = unitarity_bound(n, "float32")
    assert abs(est - eager) <= bound
    assert exact / 2 <= est <= exact + bound
    assert float(probe(Uj, jax.random.key(1))) != est
    with pytest.raises(TypeError, match="rng is a JAX PRNG key"):
        ul.unitarity_error(U, method="probe", rng=key)
