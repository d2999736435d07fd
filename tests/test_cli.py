"""The command line end to end, at tiny sizes (seconds): training, --json, --plot, errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import array_api_compat.numpy as npx
import numpy as np
import pytest

from unitary_lowrank.__main__ import main
from unitary_lowrank.tasks import train as T
from unitary_lowrank.testing import eps_of, unitarity_bound

TINY = ["--seq-len", "4", "--hidden", "6", "--batch", "4", "--steps", "4", "--eval-every", "2",
        "--test-batch", "8"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JSON_KEYS = {"task", "method", "rank", "seq_len", "hidden", "iterations", "wall_seconds",
             "final_loss", "baseline_loss", "accuracy", "unitarity_error",
             "seconds_per_update", "history"}


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("task", ["copy", "adding"])
def test_train_writes_json_and_plot(task, tmp_path, capsys):
    pytest.importorskip("matplotlib")  # the plot extra (a test dependency)
    js, png = tmp_path / "run.json", tmp_path / "run.png"
    code, out, err = run([task, *TINY, "--json", str(js), "--plot", str(png)], capsys)
    assert code == 0, err
    assert f"{task} task" in out and "test loss" in out and "‖UᵀU − I‖₂" in out
    assert "step      0  test loss" in err  # the test evaluations go to stderr
    s = json.loads(js.read_text())
    assert JSON_KEYS <= set(s)
    assert s["task"] == task and s["method"] == "transport"
    assert s["rank"] == (4 if task == "copy" else 1)  # the tasks' defaults
    assert s["seq_len"] == 4 and s["hidden"] == 6 and s["iterations"] == 4
    assert [h["step"] for h in s["history"]] == [0, 2, 4]
    assert all({"step", "loss", "unitarity_error"} <= set(h) for h in s["history"])
    assert s["final_loss"] == s["history"][-1]["loss"] > 0
    if task == "copy":
        assert s["baseline_loss"] == pytest.approx(10 * np.log(8) / 24)
        assert 0.0 <= s["accuracy"] <= 1.0
    else:
        assert s["baseline_loss"] == pytest.approx(1 / 6) and s["accuracy"] is None
    assert s["unitarity_error"] <= unitarity_bound(6, "float32")
    assert s["seconds_per_update"] > 0 and s["wall_seconds"] > 0
    assert png.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("method", T.METHODS)
def test_every_method_runs_and_keeps_its_promise(method, capsys, tmp_path):
    js = tmp_path / "s.json"
    code, _, err = run(["adding", *TINY, "--method", method, "--dtype", "float64", "--quiet",
                        "--json", str(js)], capsys)
    assert code == 0, err
    assert err == ""  # --quiet
    s = json.loads(js.read_text())
    assert s["method"] == method
    assert (s["rank"] == 1) == (method in ("transport", "project", "cayley"))
    U_bound = unitarity_bound(6, "float64")
    if method == "unconstrained":
        assert s["unitarity_error"] > U_bound  # RMSprop moves U off the group
    else:
        assert s["unitarity_error"] <= U_bound
    if method == "frozen":
        assert s["seconds_per_update"] == 0.0


@pytest.mark.parametrize("sampler", T.SAMPLERS)
@pytest.mark.parametrize("rank", ["1", "3"])
def test_samplers_and_ranks(sampler, rank, capsys):
    code, out, err = run(["copy", *TINY, "--sampler", sampler, "--rank", rank, "--quiet"], capsys)
    assert code == 0, err
    assert f"rank {rank}, {sampler} sampler" in out


def test_frozen_U_does_not_move_but_transport_does():
    kw = {"seq_len": 5, "hidden": 8, "batch": 8, "steps": 6, "eval_every": 3,
          "test_batch": 8, "dtype": "float64"}
    frozen = T.train(T.default_config("adding", method="frozen", **kw), quiet=True)
    moved = T.train(T.default_config("adding", method="transport", **kw), quiet=True)
    # Same seed, same data: the runs differ only in U's update.
    assert frozen["history"][0]["loss"] == moved["history"][0]["loss"]
    assert frozen["final_loss"] != moved["final_loss"]


@pytest.mark.parametrize("method", ["transport", "project", "cayley", "dense-polar"])
def test_rmsprop_direction_of_the_unitary_step(method):
    """``--unitary-direction rmsprop``: U moves along ``G / (√v + ε)`` (the paper's code).

    Checked over three steps against the dense formulas with scipy, at full rank so
    the sketch is exact: projUNN-T ``U expm(skew(Uᵀ Δ))``, projUNN-D and dense-polar
    ``polar(U + Δ)``, Cayley ``(I − W/2)⁻¹ (I + W/2) U`` with ``W = skew(Δ Uᵀ)``.
    """
    scipy_linalg = pytest.importorskip("scipy.linalg")
    n, m = 6, 9
    cfg = T.default_config("copy", method=method, hidden=n, rank=n, dtype="float64",
                           unitary_direction="rmsprop", lr=0.05, unitary_lr_divider=2.0)
    cfg.validate()
    update = T._UnitaryUpdate(cfg, npx, rng=np.random.default_rng(1))
    rng = np.random.default_rng(0)
    U = scipy_linalg.qr(rng.standard_normal((n, n)))[0]
    v = np.zeros((n, n))
    for _ in range(3):
        X, Y = rng.standard_normal((n, m)), rng.standard_normal((n, m))
        G = X @ Y.T
        v = 0.99 * v + 0.01 * G * G
        step = -(0.05 / 2.0) * G / (np.sqrt(v) + 1e-8)  # entries of size lr_U · 10 at first
        if method == "transport":
            M = U.T @ step
            want = U @ scipy_linalg.expm((M - M.T) / 2)
        elif method == "cayley":
            W = (step @ U.T - U @ step.T) / 2
            want = np.linalg.solve(np.eye(n) - W / 2, (np.eye(n) + W / 2) @ U)
        else:
            want = scipy_linalg.polar(U + step)[0]
        U_in = U.copy()
        got = update(U, (X, Y))
        assert np.array_equal(U, U_in)  # the caller's U is not modified
        assert np.abs(got - want).max() <= 100 * n * eps_of("float64")
        U = want


def test_rmsprop_direction_is_reported(tmp_path, capsys):
    js = tmp_path / "s.json"
    code, out, err = run(["copy", *TINY, "--unitary-direction", "rmsprop", "--quiet",
                          "--json", str(js)], capsys)
    assert code == 0, err
    assert "along RMSprop's direction" in out
    assert json.loads(js.read_text())["unitary_direction"] == "rmsprop"
    code, out, err = run(["copy", *TINY, "--unitary-direction", "rmsprop", "--method",
                          "frozen", "--quiet", "--json", str(js)], capsys)
    assert code == 0, err
    assert "RMSprop" not in out  # a frozen U takes no step
    assert json.loads(js.read_text())["unitary_direction"] is None


def _other_backend(name):
    if name == "torch":
        pytest.importorskip("torch")
        return
    cupy = pytest.importorskip("cupy")
    try:
        cupy.zeros(1).sum().get()  # importing alone does not prove there is a GPU
    except Exception as exc:  # noqa: BLE001 - any CUDA failure means "no GPU here"
        pytest.skip(f"no usable CUDA device for CuPy: {exc}")


@pytest.mark.parametrize("backend", ["torch", pytest.param("cupy", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("direction", T.DIRECTIONS)
def test_training_on_another_backend_matches_numpy(backend, direction):
    """The whole loop (forward, BPTT, RMSprop, the step on U) in torch or CuPy, float64."""
    _other_backend(backend)
    kw = {"seq_len": 5, "hidden": 8, "batch": 8, "steps": 6, "eval_every": 2,
          "test_batch": 8, "dtype": "float64", "unitary_direction": direction}
    ref = T.train(T.default_config("copy", **kw), quiet=True)
    got = T.train(T.default_config("copy", backend=backend, **kw), quiet=True)
    assert got["backend"] == backend and len(got["history"]) == len(ref["history"]) == 4
    # Six steps of a well-conditioned problem: the backends differ by rounding only.
    tol = 1e3 * eps_of("float64")
    for a, b in zip(ref["history"], got["history"], strict=True):
        assert abs(a["loss"] - b["loss"]) <= tol * a["loss"]
        assert abs(a["accuracy"] - b["accuracy"]) <= 1e-12
    assert got["unitarity_error"] <= unitarity_bound(8, "float64")


def test_training_is_reproducible_with_a_seed():
    kw = {"seq_len": 5, "hidden": 8, "batch": 8, "steps": 4, "eval_every": 2, "test_batch": 8,
          "seed": 3}
    a = T.train(T.default_config("copy", **kw), quiet=True)
    b = T.train(T.default_config("copy", **kw), quiet=True)
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]


def test_preset_paper_sets_sizes_and_options_override():
    cfg = T.default_config("copy", "paper")
    assert (cfg.seq_len, cfg.hidden, cfg.batch, cfg.lr, cfg.unitary_lr_divider, cfg.rank) == (
        1000, 190, 128, 7e-4, 32.0, 1)
    assert T.default_config("copy", "paper", rank=4).rank == 4
    assert T.default_config("copy", "paper", seq_len=2000).seq_len == 2000
    cfg = T.default_config("adding", "paper")
    assert (cfg.seq_len, cfg.hidden, cfg.batch) == (200, 170, 50)


def test_stop_below_stops_early(capsys):
    code, out, err = run(["adding", *TINY, "--steps", "50", "--stop-below", "100"], capsys)
    assert code == 0, err
    assert "stopping early" in err and "(stopped early)" in out


def test_stop_recall_gates_the_early_stop_on_copy(capsys):
    # Any loss is below 1000 × the baseline; recall decides. After 4 steps it is far
    # below 100 %, so --stop-recall 1 never stops and --stop-recall 0 stops at once.
    argv = ["copy", *TINY, "--steps", "6", "--stop-below", "1000"]
    code, out, err = run([*argv, "--stop-recall", "1"], capsys)
    assert code == 0, err
    assert "stopping early" not in err and "steps           6 of 6\n" in out
    code, out, err = run([*argv, "--stop-recall", "0"], capsys)
    assert code == 0, err
    assert "(stopped early)" in out and "steps           2 of 6" in out


def test_default_rank_is_capped_by_a_small_hidden_size():
    assert T.default_config("copy").rank == 4
    assert T.default_config("copy", hidden=2).rank == 2
    assert T.default_config("copy", hidden=2, rank=3).rank == 3  # explicit: validate() says no
    with pytest.raises(T.ConfigError, match="--rank"):
        T.default_config("copy", hidden=2, rank=3).validate()


def test_progress_bar_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    cfg = T.default_config("adding", seq_len=4, hidden=6, batch=4, steps=50, eval_every=50,
                           test_batch=8)
    T.train(cfg, stream=stream)
    text = stream.getvalue()
    assert "\r[" in text and "ms/step" in text and "|UᵀU−I|" in text


def test_plot_subcommand(tmp_path, capsys):
    pytest.importorskip("matplotlib")  # the plot extra (a test dependency)
    paths = []
    for method in ("transport", "frozen"):
        p = tmp_path / f"{method}.json"
        assert main(["adding", *TINY, "--method", method, "--quiet", "--json", str(p)]) == 0
        paths.append(str(p))
    png = tmp_path / "both.png"
    code, out, err = run(["plot", *paths, "--out", str(png), "--title", "t"], capsys)
    assert code == 0, err
    assert "plot written" in out
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_bench_subcommand(tmp_path, capsys):
    pytest.importorskip("scipy")
    js = tmp_path / "bench.json"
    code, out, err = run(["bench", "--n", "16", "--rank", "1,2", "--rank", "3", "--dtype",
                          "float64", "--repeats", "1", "--json", str(js)], capsys)
    assert code == 0, err
    rows = json.loads(js.read_text())
    assert {r["k"] for r in rows} == {1, 2, 3} and {r["dtype"] for r in rows} == {"float64"}
    assert "16" in out


def test_help_exits_zero(capsys):
    assert main(["--help"]) == 0
    assert "copy" in capsys.readouterr().out
    assert main(["copy", "--help"]) == 0
    assert "--unitary-lr-divider" in capsys.readouterr().out


BAD = [
    (["copy", "--hidden", "0"], "--hidden"),
    (["copy", "--batch", "-3"], "--batch"),
    (["adding", "--seq-len", "0"], "--seq-len"),
    (["adding", "--seq-len", "1"], "--seq-len"),
    (["copy", "--steps", "0"], "--steps"),
    (["copy", "--steps", "many"], "--steps"),
    (["copy", "--lr", "-1"], "--lr"),
    (["copy", "--lr", "nan"], "--lr"),
    (["copy", "--method", "sgd"], "--method"),
    (["copy", "--sampler", "svd"], "--sampler"),
    (["copy", "--unitary-direction", "adam"], "--unitary-direction"),
    (["copy", "--stop-recall", "1.5"], "--stop-recall"),
    (["adding", "--stop-recall", "0.9"], "--stop-recall"),
    (["copy", "--rank", "9", "--hidden", "8"], "--rank"),
    (["copy", "--rank", "0"], "--rank"),
    (["copy", "--dtype", "complex64"], "--dtype"),
    (["copy", "--nonlinearity", "tanh"], "--nonlinearity"),
    (["copy", "--lr-decay", "2"], "--lr-decay"),
    (["copy", "--json", "/no/such/folder/s.json"], "--json"),
    (["copy", "--bogus"], "--bogus"),
    (["train"], "train"),
    ([], "command"),
    (["bench", "--n", "0"], "--n"),
    (["bench", "--dtype", "float16"], "--dtype"),
    (["bench", "--n", "4", "--rank", "5"], "--rank"),
    (["plot", "missing.json", "--out", "x.png"], "missing.json"),
]


@pytest.mark.parametrize(("argv", "needle"), BAD, ids=[" ".join(a) or "empty" for a, _ in BAD])
def test_bad_arguments_one_line_exit_2(argv, needle, capsys):
    code, out, err = run(argv, capsys)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "error" in lines[0] and needle in lines[0]
    assert "Traceback" not in err


def test_cupy_requested_without_cupy(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy now raises ImportError
    code, _, err = run(["copy", *TINY, "--backend", "cupy"], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "CuPy" in err and "Traceback" not in err


def test_plot_without_matplotlib(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out, err = run(["adding", *TINY, "--plot", str(tmp_path / "p.png")], capsys)
    assert code == 2 and out == ""  # refused before training, not after
    assert "matplotlib" in err and "unitary_lowrank[plot]" in err
    assert len(err.strip().splitlines()) == 1


def test_python_dash_m_entry_point(tmp_path):
    """`python -m unitary_lowrank` runs main() and exits with its status."""
    ok = subprocess.run(
        [sys.executable, "-m", "unitary_lowrank", "adding", *TINY, "--quiet"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert "adding task" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "unitary_lowrank", "copy", "--method", "nope"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert bad.returncode == 2
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
