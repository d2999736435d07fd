"""The command line end to end, at tiny sizes (seconds): training, --json, --plot, errors."""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import array_api_compat.numpy as npx
import numpy as np
import pytest

import unitary_lowrank as ul
from unitary_lowrank.cli import main
from unitary_lowrank.cli.tasks import rnn
from unitary_lowrank.cli.tasks import train as T
from unitary_lowrank.testing import compare_tol, eps_of, unitarity_bound
from unitary_lowrank.testing.reference import reference_step

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


def failure_lines(err: str) -> list[str]:
    """The lines of stderr that are not the run's own (one per evaluation, ``step N ...``)."""
    return [line for line in err.strip().splitlines() if not line.startswith("step ")]


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
    # --quiet: no progress bar, the plain test lines only
    assert "\r" not in err and err.splitlines() and all(
        line.startswith("step ") for line in err.splitlines())
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

    Checked over three steps against the dense references (``testing.reference``), at
    full rank so the sketch is exact: projUNN-T ``U expm(skew(Uᵀ Δ))``, projUNN-D and
    dense-polar ``polar(U + Δ)``, Cayley ``U (I − Ω/2)⁻¹ (I + Ω/2)``.
    """
    scipy_linalg = pytest.importorskip("scipy.linalg")
    n, m = 6, 9
    cfg = T.default_config("copy", method=method, hidden=n, rank=n, dtype="float64",
                           unitary_direction="rmsprop", lr=0.05, unitary_lr_divider=2.0)
    cfg.validate()
    update = T.UnitaryUpdate(cfg, npx, rng=np.random.default_rng(1))
    rng = np.random.default_rng(0)
    U = scipy_linalg.qr(rng.standard_normal((n, n)))[0]
    v = np.zeros((n, n))
    for _ in range(3):
        X, Y = rng.standard_normal((n, m)), rng.standard_normal((n, m))
        G = X @ Y.T
        v = 0.99 * v + 0.01 * G * G
        step = -(0.05 / 2.0) * G / (np.sqrt(v) + 1e-8)  # entries of size lr_U · 10 at first
        want = reference_step(U, step, {"transport": "exp", "cayley": "cayley"}.get(
            method, "polar"))
        U_in = U.copy()
        got = update(U, (X, Y))
        assert np.array_equal(U, U_in)  # the caller's U is not modified
        assert np.abs(got - want).max() <= compare_tol(n, "float64")  # 100·n·eps
        U = want


@pytest.mark.parametrize("method", ["transport", "project", "cayley"])
def test_adam_direction_at_full_rank(method):
    """``--unitary-direction adam --rank full``: U moves along Adam's direction, unsketched."""
    n, m = 6, 9
    cfg = T.default_config("copy", method=method, hidden=n, rank="full", dtype="float64",
                           unitary_direction="adam", lr=0.05, unitary_lr_divider=2.0)
    cfg.validate()
    update = T.UnitaryUpdate(cfg, npx, rng=np.random.default_rng(1))
    rng = np.random.default_rng(0)
    U = ul.random_unitary(n, dtype="float64", rng=rng)
    mom = v = np.zeros((n, n))
    for t in range(1, 4):
        X, Y = rng.standard_normal((n, m)), rng.standard_normal((n, m))
        G = X @ Y.T
        mom, v = 0.9 * mom + 0.1 * G, 0.999 * v + 0.001 * G * G
        D = (mom / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        want = reference_step(U, -(0.05 / 2.0) * D, {"transport": "exp", "cayley": "cayley"}.get(
            method, "polar"))
        got = update(U, (X, Y))
        assert np.abs(got - want).max() <= compare_tol(n, "float64")
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
    assert "stopping early" in err and "(stopped early: below 10000% of the baseline)" in out


def test_stop_recall_gates_the_early_stop_on_copy(capsys):
    # Any loss is below 1000 × the baseline; recall decides. After 4 steps it is far
    # below 100 %, so --stop-recall 1 never stops and --stop-recall 0 stops at once.
    argv = ["copy", *TINY, "--steps", "6", "--stop-below", "1000"]
    code, out, err = run([*argv, "--stop-recall", "1"], capsys)
    assert code == 0, err
    assert "stopping early" not in err and "steps           6 of 6\n" in out
    code, out, err = run([*argv, "--stop-recall", "0"], capsys)
    assert code == 0, err
    assert "steps           2 of 6 (stopped early: below 100000% of the baseline with >= 0% " \
           "recall)" in out


def test_default_rank_is_capped_by_a_small_hidden_size():
    assert T.default_config("copy").rank == 4
    assert T.default_config("copy", hidden=2).rank == 2
    assert T.default_config("copy", hidden=2, rank=3).rank == 3  # explicit: validate() says no
    with pytest.raises(T.ConfigError, match="--rank"):
        T.default_config("copy", hidden=2, rank=3).validate()


def test_progress_bar_on_a_terminal():
    """The built-in bar (without tqdm; tests/test_pixels.py checks the tqdm one)."""
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    cfg = T.default_config("adding", seq_len=4, hidden=6, batch=4, steps=50, eval_every=50,
                           test_batch=8)
    T.train(cfg, stream=stream, use_tqdm=False)
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


def test_version_prints_the_package_version_and_exits_zero(capsys):
    code, out, err = run(["--version"], capsys)
    assert code == 0 and err == ""
    assert out == f"unitary-lowrank {ul.__version__}\n"
    proc = subprocess.run([sys.executable, "-m", "unitary_lowrank", "--version"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0 and proc.stdout == out and proc.stderr == ""


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
    (["copy", "--unitary-direction", "adamw"], "--unitary-direction"),
    (["copy", "--rank", "half"], "--rank"),
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
    # Values the run itself would reject (each must fail in the parser, in one line),
    # and the other limits of each option.
    (["copy", "--seed", "-1"], "--seed"),
    (["adding", "--seed", "1.5"], "--seed"),
    (["copy", "--seed", "nan"], "--seed"),
    (["copy", "--lr", "inf"], "--lr"),
    (["copy", "--lr", "0"], "--lr"),
    (["copy", "--unitary-lr-divider", "0"], "--unitary-lr-divider"),
    (["copy", "--unitary-lr-divider", "-8"], "--unitary-lr-divider"),
    (["copy", "--unitary-lr-divider", "nan"], "--unitary-lr-divider"),
    (["copy", "--unitary-lr-divider", "inf"], "--unitary-lr-divider"),
    (["copy", "--lr-decay", "0"], "--lr-decay"),
    (["copy", "--lr-decay", "nan"], "--lr-decay"),
    (["copy", "--decay-below", "0"], "--decay-below"),
    (["copy", "--decay-below", "-inf"], "--decay-below"),
    (["copy", "--stop-below", "-1"], "--stop-below"),
    (["copy", "--stop-below", "nan"], "--stop-below"),
    (["copy", "--stop-below", "inf"], "--stop-below"),
    (["copy", "--stop-recall", "nan"], "--stop-recall"),
    (["copy", "--stop-recall", "-0.5"], "--stop-recall"),
    (["copy", "--eval-every", "0"], "--eval-every"),
    (["copy", "--test-batch", "-1"], "--test-batch"),
    (["copy", "--threads", "0"], "--threads"),
    (["copy", "--preset", "paper", "--hidden", "1", "--rank", "2"], "--rank"),
    (["adding", "--rank", "65"], "--rank"),  # above the default hidden size 64
    (["copy", "--backend", "jax"], "--backend"),
    (["copy", "--json", "/proc/no-such-dir/s.json"], "--json"),
    (["copy", "--plot", "/no/such/folder/p.png"], "--plot"),
    (["bench", "--repeats", "0"], "--repeats"),
    (["bench", "--n", "-4"], "--n"),
    (["bench", "--rank", "1,0"], "--rank"),
    (["bench", "--json", "/no/such/folder/b.json"], "--json"),
    (["plot", "missing.json", "--out", "/no/such/folder/p.png"], "--out"),
    # Sizes that cannot be allocated: refused at once, in one line.
    (["adding", "--hidden", "100000000", "--steps", "1"], "memory"),
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


def test_seed_is_checked_by_the_config_too():
    for seed in (-1, 1.5, True, "0"):
        with pytest.raises(T.ConfigError, match="--seed"):
            T.default_config("copy", seed=seed).validate()
    T.default_config("copy", seed=2**80).validate()  # any integer >= 0 seeds NumPy


# --- a run that diverges: summary, JSON, exit status 1 --------------------------------

DIVERGING = [
    ("adding", ["--lr", "1e6"]),  # the losses explode (finite, far above the start)
    ("copy", ["--lr", "1e6"]),
    ("adding", ["--method", "unconstrained", "--lr", "1e6"]),
    # lr / divider overflows: the step on U is not finite
    ("adding", ["--unitary-lr-divider", "1e-300"]),
    ("adding", ["--unitary-lr-divider", "1e-300", "--method", "project"]),
    ("copy", ["--unitary-lr-divider", "1e-300", "--method", "cayley"]),
    ("adding", ["--unitary-lr-divider", "1e-300", "--method", "dense-polar"]),
    ("copy", ["--unitary-lr-divider", "1e-300", "--unitary-direction", "gradient"]),
]


@pytest.mark.parametrize(("task", "opts"), DIVERGING, ids=[" ".join([t, *o]) for t, o in DIVERGING])
def test_a_diverging_run_stops_cleanly_and_exits_1(task, opts, tmp_path, capsys):
    js = tmp_path / "d.json"
    code, out, err = run([task, *TINY, "--steps", "200", *opts, "--quiet", "--json", str(js)],
                         capsys)
    assert code == 1
    lines = failure_lines(err)
    assert len(lines) == 1 and "diverged" in lines[0] and "Traceback" not in err
    s = json.loads(js.read_text())  # written, and valid JSON (no NaN)
    assert s["stop_reason"] == "diverged" and s["diverged"] is True
    assert s["stopped_early"] is False and s["iterations"] < 200 and s["target_met"] is False
    assert f"steps           {s['iterations']} of 200 (stopped: DIVERGED)" in out
    assert "summary written to" in out


def test_a_diverging_run_says_why_on_its_progress_lines(capsys):
    code, out, err = run(["adding", *TINY, "--steps", "200", "--lr", "1e6"], capsys)
    assert code == 1
    assert "stopping (diverged)" in err and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("unitary-lowrank adding: error: the run diverged")


def test_a_healthy_run_is_not_called_diverged(tmp_path, capsys):
    # The initial loss of ReLU copy is many times the baseline; the limit is relative to it.
    js = tmp_path / "s.json"
    code, _, err = run(["copy", *TINY, "--steps", "20", "--quiet", "--json", str(js)], capsys)
    assert code == 0, err
    assert json.loads(js.read_text())["stop_reason"] == "steps"


# --- output paths are checked before any training or timing starts --------------------

def _no_work(monkeypatch):
    """Make training and timing fail loudly: the checks must refuse before them."""
    import unitary_lowrank.cli.bench as demo

    def boom(*args, **kwargs):
        raise AssertionError("training or timing started")

    monkeypatch.setattr(T, "train", boom)
    monkeypatch.setattr(demo, "bench", boom)


def _bad_paths(tmp_path):
    return {
        "a folder": str(tmp_path),
        "a folder with a slash": str(tmp_path) + os.sep,
        "a missing folder": str(tmp_path / "missing" / "out.json"),
        "under /proc": "/proc/no-such-dir/out.json",
        "a file in /proc": "/proc/out.json",  # /proc takes no new files, even from root
        "empty": "",
    }


@pytest.mark.parametrize("case", list(_bad_paths(Path("/x"))))
@pytest.mark.parametrize("flag", ["--json", "--plot", "bench --json", "plot --out"])
def test_unwritable_output_is_refused_before_any_work(case, flag, tmp_path, capsys,
                                                      monkeypatch):
    if "/proc" in case and not os.path.isdir("/proc/self"):
        pytest.skip("no /proc here")
    path = _bad_paths(tmp_path)[case]
    if flag == "bench --json":
        argv = ["bench", "--n", "4", "--repeats", "1", "--json", path]
    elif flag == "plot --out":
        run_json = tmp_path / "run.json"
        assert main(["adding", *TINY, "--quiet", "--json", str(run_json)]) == 0
        argv = ["plot", str(run_json), "--out", path]
    else:
        argv = ["adding", *TINY, flag, path]
    _no_work(monkeypatch)
    before = sorted(os.listdir(tmp_path))
    capsys.readouterr()
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in err, err
    assert flag.split()[-1] in lines[0]
    assert sorted(os.listdir(tmp_path)) == before  # nothing left behind


def test_the_writability_check_leaves_no_file_and_keeps_existing_ones(tmp_path, capsys,
                                                                      monkeypatch):
    _no_work(monkeypatch)
    new, old = tmp_path / "new.json", tmp_path / "old.json"
    old.write_text("keep me\n")
    mtime = os.stat(old).st_mtime_ns
    # --json is fine (checked by creating and removing the file), --plot is a folder.
    code, _, err = run(["adding", *TINY, "--json", str(new), "--plot", str(tmp_path)], capsys)
    assert code == 2 and "--plot" in err
    code, _, err = run(["adding", *TINY, "--json", str(old), "--plot", str(tmp_path)], capsys)
    assert code == 2 and "--plot" in err
    assert sorted(os.listdir(tmp_path)) == ["old.json"]
    assert old.read_text() == "keep me\n" and os.stat(old).st_mtime_ns == mtime


def test_an_output_may_not_overwrite_another_or_an_input(tmp_path, capsys, monkeypatch):
    _no_work(monkeypatch)
    p = tmp_path / "same"
    code, _, err = run(["adding", *TINY, "--json", str(p), "--plot", str(p)], capsys)
    assert code == 2 and "same file" in err and len(err.strip().splitlines()) == 1
    run_json = tmp_path / "run.json"
    run_json.write_text("{}")
    code, _, err = run(["plot", str(run_json), "--out", str(run_json)], capsys)
    assert code == 2 and "same file" in err
    assert run_json.read_text() == "{}"
    # The same input twice is no conflict (it is refused here for its content).
    code, _, err = run(["plot", str(run_json), str(run_json), "--out", str(p)], capsys)
    assert code == 2 and "not a summary" in err


def test_plot_is_written_at_the_path_given_whatever_its_extension(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curve"  # matplotlib alone would write curve.png
    code, _, err = run(["adding", *TINY, "--quiet", "--plot", str(png)], capsys)
    assert code == 0, err
    assert os.listdir(tmp_path) == ["curve"] and png.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("content", [
    '{"task": "adding", "baseline_loss": 0.1, "history": [{"x": 1}], "method": "frozen"}',
    '{"task": "adding", "baseline_loss": 0.1, "history": 3, "method": "frozen"}',
    '{"task": "copy", "baseline_loss": "a", "history": [], "method": "frozen"}',
    '[1, 2]',
])
def test_plot_refuses_a_malformed_summary_in_one_line(content, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    code, out, err = run(["plot", str(bad), "--out", str(tmp_path / "p.png")], capsys)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "not a summary" in err
    assert not (tmp_path / "p.png").exists()


# --- Ctrl-C: the summary so far, the JSON, exit status 130 ----------------------------

def _interrupt_at(monkeypatch, name, call):
    """Make ``rnn.<name>`` (which the training loop calls) raise Ctrl-C at call `call`."""
    real = getattr(rnn, name)
    calls = []

    def fake(*args, **kwargs):
        calls.append(1)
        if len(calls) >= call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(rnn, name, fake)
    return calls


def test_ctrl_c_in_process_prints_the_summary_writes_json_exits_130(tmp_path, capsys,
                                                                     monkeypatch):
    _interrupt_at(monkeypatch, "backward", 4)  # during step 4: steps 1-3 are done
    js = tmp_path / "i.json"
    code, out, err = run(["adding", *TINY, "--steps", "50", "--json", str(js)], capsys)
    assert code == 130
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "unitary-lowrank adding: interrupted after 3 steps"
    assert "steps           3 of 50 (stopped: interrupted)" in out and "test loss" in out
    s = json.loads(js.read_text())
    assert s["stop_reason"] == "interrupted" and s["iterations"] == 3
    assert s["diverged"] is False and s["stopped_early"] is False
    assert [h["step"] for h in s["history"]] == [0, 2, 3]  # the state reached is evaluated


def test_ctrl_c_with_quiet_leaves_one_line_on_stderr(tmp_path, capsys, monkeypatch):
    _interrupt_at(monkeypatch, "backward", 2)
    code, out, err = run(["copy", *TINY, "--quiet", "--json", str(tmp_path / "i.json")], capsys)
    assert code == 130 and err.endswith("\nunitary-lowrank copy: interrupted after 1 steps\n")
    assert "Traceback" not in err and "\r" not in err
    assert "(stopped: interrupted)" in out


def test_ctrl_c_before_the_first_evaluation(tmp_path, capsys, monkeypatch):
    calls = _interrupt_at(monkeypatch, "forward", 1)  # the first test evaluation, and again
    js = tmp_path / "i.json"
    code, out, err = run(["adding", *TINY, "--json", str(js)], capsys)
    assert code == 130 and "Traceback" not in err and len(calls) == 2
    assert "steps           0 of 4 (stopped: interrupted)" in out and "not evaluated" in out
    s = json.loads(js.read_text())
    assert s["stop_reason"] == "interrupted" and s["history"] == [] and s["final_loss"] is None


def test_train_raises_training_interrupted_carrying_the_summary(monkeypatch):
    _interrupt_at(monkeypatch, "backward", 3)
    cfg = T.default_config("adding", seq_len=4, hidden=6, batch=4, steps=10, eval_every=5,
                           test_batch=8)
    with pytest.raises(KeyboardInterrupt) as info:  # a loop over runs still stops
        T.train(cfg, quiet=True)
    assert isinstance(info.value, T.TrainingInterrupted)
    s = info.value.summary
    assert s["stop_reason"] == "interrupted" and s["iterations"] == 2


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
def test_ctrl_c_for_real_sigint_to_a_subprocess(tmp_path):
    """A real SIGINT once the first test line is out: summary, JSON, exit status 130."""
    js, out_file = tmp_path / "i.json", tmp_path / "out.txt"
    argv = [sys.executable, "-m", "unitary_lowrank", "adding", *TINY, "--steps", "1000000000",
            "--eval-every", "1000000", "--json", str(js)]
    # A shell that starts pytest in the background ignores SIGINT, and the child would
    # inherit that: restore the default, then exec the command line in the same process.
    argv = [sys.executable, "-c", "import os, signal, sys; "
            "signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])",
            *argv]
    lines: queue.Queue = queue.Queue()
    seen: list[str] = []

    def read(stream):
        for line in stream:
            lines.put(line)

    with open(out_file, "w") as out, subprocess.Popen(
        argv, stdout=out, stderr=subprocess.PIPE, text=True
    ) as proc:
        reader = threading.Thread(target=read, args=(proc.stderr,), daemon=True)
        reader.start()
        try:
            while not any(line.startswith("step      0  test loss") for line in seen):
                seen.append(lines.get(timeout=120))  # under way (it never ends by itself)
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=30)
    while not lines.empty():
        seen.append(lines.get())
    err = "".join(seen)
    assert code == 130, err
    assert "Traceback" not in err
    assert seen[-1].startswith("unitary-lowrank adding: interrupted after")
    s = json.loads(js.read_text())
    assert s["stop_reason"] == "interrupted" and 0 <= s["iterations"] < 1000000000
    out = out_file.read_text()
    assert "(stopped: interrupted)" in out and f"summary written to {js}" in out


# --- stop_reason and the steps line ---------------------------------------------------

def test_stop_reason_steps_and_target(tmp_path, capsys):
    js = tmp_path / "s.json"
    code, out, _ = run(["adding", *TINY, "--quiet", "--json", str(js)], capsys)
    assert code == 0 and json.loads(js.read_text())["stop_reason"] == "steps"
    assert "steps           4 of 4\n" in out
    code, out, _ = run(["adding", *TINY, "--stop-below", "100", "--quiet", "--json", str(js)],
                       capsys)
    s = json.loads(js.read_text())
    assert code == 0 and s["stop_reason"] == "target" and s["stopped_early"] is True
    assert s["iterations"] == 2


def test_a_stop_at_the_last_step_is_not_called_early(tmp_path, capsys):
    # The stop test passes at the last evaluation, which is also the last step.
    js = tmp_path / "s.json"
    code, out, err = run(["adding", *TINY, "--eval-every", "4", "--stop-below", "100",
                          "--json", str(js)], capsys)
    assert code == 0, err
    s = json.loads(js.read_text())
    assert s["stop_reason"] == "target" and s["iterations"] == s["steps"] == 4
    assert s["stopped_early"] is False
    assert "early" not in out and "early" not in err
    assert "steps           4 of 4 (below 10000% of the baseline at the last step)" in out


def test_format_summary_of_a_summary_without_stop_reason():
    s = T.train(T.default_config("adding", seq_len=4, hidden=6, batch=4, steps=4, eval_every=2,
                                 test_batch=8, stop_below=100), quiet=True)
    old = {k: v for k, v in s.items() if k != "stop_reason"}  # written by an older version
    assert "(stopped early: below 10000% of the baseline)" in T.format_summary(old)
    old["stopped_early"], old["diverged"] = False, True
    assert "(stopped: DIVERGED)" in T.format_summary(old)


# --- other failures: one line, never a traceback --------------------------------------

def test_an_unexpected_error_is_one_line_exit_1(capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(T, "train", broken)
    code, out, err = run(["adding", *TINY], capsys)
    assert code == 1 and out == ""
    assert err == "unitary-lowrank adding: error: RuntimeError: boom second line\n"


def test_output_that_cannot_be_written_after_the_run_is_one_line_exit_1(tmp_path, capsys,
                                                                        monkeypatch):
    def full(summary, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(T, "write_json", full)
    code, out, err = run(["adding", *TINY, "--quiet", "--json", str(tmp_path / "s.json")],
                         capsys)
    assert code == 1 and "adding task" in out  # the summary is printed first
    assert len(failure_lines(err)) == 1 and "No space left" in err


def test_a_closed_stdout_is_not_a_traceback(capsys, monkeypatch):
    class Closed(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["adding", *TINY, "--quiet"]) == 1
    assert "Traceback" not in capsys.readouterr().err


def test_docs_state_exit_codes_stop_reason_and_where_runs_are_deterministic():
    from unitary_lowrank import cli

    doc = cli.__doc__
    for needle in ("stop_reason", "130", "diverged", "interrupted", "- 1:", "- 2:", "- 0:"):
        assert needle in doc
    text = (Path(__file__).parents[1] / "docs" / "tasks.md").read_text(encoding="utf-8")
    for needle in ("stop_reason", "130", "`\"diverged\"`", "`\"interrupted\"`"):
        assert needle in text
    assert "deterministic given the seed;" not in text  # no claim across machines
    assert "BLAS build" in text
