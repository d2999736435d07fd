"""ProjUNN under torch.distributed: DDP replicas stay bit-identical; FSDP2 shards are refused.

Each case starts real gloo processes on the CPU (tests/_ddp_worker.py), each with its own
random state, and compares what they saved.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

WORKER = Path(__file__).with_name("_ddp_worker.py")
pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def _run(world: int, tmp_path: Path, mode: str) -> list[subprocess.CompletedProcess]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(r), str(world),
                               str(tmp_path / "init"), str(tmp_path), mode],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for r in range(world)]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


@pytest.mark.parametrize("world", [2, 4])
def test_ddp_replicas_stay_bit_identical(world, tmp_path):
    for r in _run(world, tmp_path, "ddp"):
        assert r.returncode == 0, r.stderr[-3000:]
    states = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    start = torch.nn.RNN(3, 12)  # the weights moved away from any fresh module's
    for name, value in states[0].items():
        for other in states[1:]:
            assert torch.equal(other[name], value), name
    w = states[0]["weight_hh_l0"].double()
    assert float((w.T @ w - torch.eye(12, dtype=torch.float64)).abs().max()) < 1e-5
    assert not torch.equal(states[0]["weight_ih_l0"], start.weight_ih_l0)


def test_fsdp2_sharded_weights_are_refused_by_name(tmp_path):
    pytest.importorskip("torch.distributed.fsdp")
    results = _run(2, tmp_path, "fsdp")
    for r in results:
        assert r.returncode == 0, r.stdout + r.stderr[-3000:]
        assert "refused: ProjUNN:" in r.stdout and "sharded DTensor" in r.stdout
        assert "ignored_params" in r.stdout
