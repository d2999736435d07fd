"""The pixels task, the paper presets, progress and plots of the command line (tiny sizes)."""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import math

import array_api_compat.numpy as npx
import numpy as np
import pytest

from unitary_lowrank.cli import main
from unitary_lowrank.cli.tasks import rnn
from unitary_lowrank.cli.tasks import train as T
from unitary_lowrank.testing import compare_tol, eps_of, unitarity_bound

#: The bundled 8x8 digits (the default dataset) come from scikit-learn (the cli extra).
needs_digits = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                                  reason="the 8x8 digits need scikit-learn")

TINY = ["--hidden", "6", "--batch", "8", "--steps", "4", "--eval-every", "2",
        "--test-batch", "50"]
#: The keys every task's --json summary has (those of tests/test_cli.py).
JSON_KEYS = {"task", "method", "rank", "seq_len", "hidden", "iterations", "wall_seconds",
             "final_loss", "baseline_loss", "accuracy", "unitarity_error",
             "seconds_per_update", "history", "stop_reason", "target_met"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@needs_digits
def test_pixels_on_digits_writes_json_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    js, png = tmp_path / "run.json", tmp_path / "run.png"
    code, out, err = run(["pixels", *TINY, "--json", str(js), "--plot", str(png)], capsys)
    assert code == 0, err
    assert "pixels task, digits 8×8, permuted, length T = 64" in out
    assert "test accuracy" in out and "validation" in out
    assert "step      0  val loss" in err  # evaluations on the validation set, to stderr
    s = json.loads(js.read_text())
    assert JSON_KEYS <= set(s)
    assert s["task"] == "pixels" and s["dataset"] == "digits" and s["permute"] is True
    assert s["seq_len"] == 64 and s["side"] == 8 and s["iterations"] == 4
    assert s["baseline_loss"] == pytest.approx(math.log(10), rel=eps_of("float64"))
    assert 0.0 <= s["accuracy"] <= 1.0 and 0.0 <= s["val_accuracy"] <= 1.0
    # 1797 images: 20 % test, then 10 % of the rest for validation
    assert s["test_size"] + s["val_size"] + s["train_size"] == 1797
    assert s["val_size"] == pytest.approx(0.1 * (s["val_size"] + s["train_size"]), abs=10)
    assert [h["step"] for h in s["history"]] == [0, 2, 4]
    assert s["best_step"] in (0, 2, 4)
    assert s["unitarity_error"] <= unitarity_bound(6, "float32")
    assert png.read_bytes().startswith(PNG_MAGIC)


@needs_digits
def test_no_permute_and_relu_run(tmp_path, capsys):
    js = tmp_path / "run.json"
    code, out, err = run(["pixels", *TINY, "--no-permute", "--nonlinearity", "relu",
                          "--quiet", "--json", str(js)], capsys)
    assert code == 0, err
    assert "\r" not in err and "permuted" not in out.splitlines()[0]  # --quiet: no bar
    s = json.loads(js.read_text())
    assert s["permute"] is False and s["nonlinearity"] == "relu"


@needs_digits
@pytest.mark.parametrize("method", T.METHODS)
def test_every_method_runs_pixels(method, capsys):
    code, out, err = run(["pixels", *TINY, "--method", method, "--quiet"], capsys)
    assert code == 0, err
    assert f"U updated by    {method}" in out


def _digits(n_train=40, n_eval=23, T_=9, seed=0):
    """A small PixelData built by hand, for the loop's own checks.

    Each class has a random template image; an image is its template plus noise.
    """
    from unitary_lowrank.cli.tasks.datasets import PixelData

    rng = np.random.default_rng(seed)
    templates = rng.uniform(0, 1, (10, T_))

    def split(n):
        y = rng.integers(0, 10, n)
        x = np.clip(templates[y] + 0.3 * rng.standard_normal((n, T_)), 0, 1)
        return x.astype(np.float32), y

    (tx, ty), (vx, vy), (sx, sy) = split(n_train), split(n_eval), split(n_eval)
    return PixelData(tx, ty, vx, vy, sx, sy, side=3, name="digits", permutation=None)


@pytest.mark.parametrize("nonlinearity", ["modrelu", "relu"])
def test_pixels_on_torch_match_numpy(nonlinearity):
    """The pixels loop (minibatched evaluation included) in torch, float64: rounding only."""
    pytest.importorskip("torch")
    px = _digits()
    kw = {"hidden": 5, "batch": 8, "steps": 6, "eval_every": 3, "test_batch": 7,
          "dtype": "float64", "nonlinearity": nonlinearity}
    ref = T.train(T.default_config("pixels", **kw), quiet=True, pixels=px)
    got = T.train(T.default_config("pixels", backend="torch", **kw), quiet=True, pixels=px)
    tol = 1e3 * eps_of("float64")
    assert len(got["history"]) == len(ref["history"]) == 3
    for a, b in zip(ref["history"], got["history"], strict=True):
        assert abs(a["loss"] - b["loss"]) <= tol * a["loss"]
        assert a["accuracy"] == b["accuracy"]
    assert abs(ref["final_loss"] - got["final_loss"]) <= tol * ref["final_loss"]
    assert got["accuracy"] == ref["accuracy"] and got["best_step"] == ref["best_step"]
    assert got["unitarity_error"] <= unitarity_bound(5, "float64")


def test_minibatch_evaluation_equals_one_batch():
    """Loss and accuracy in minibatches of 5 are those of the 23 images at once."""
    px = _digits()
    cfg = T.default_config("pixels", hidden=5, test_batch=5, dtype="float64")
    xp, dev = T.resolve_backend("numpy")
    task = T.Task(cfg, xp, dev, px)
    params = rnn.init_params(1, 5, 10, init="haar", nonlinearity="modrelu", dtype="float64",
                             rng=0)
    loss, acc = task.evaluate(params, task.eval_sets("val", np.random.default_rng(0)))
    out, _ = rnn.forward(params, px.val_x.T[:, :, None].astype(np.float64),
                         nonlinearity="modrelu", readout="last", xp=npx)
    ref_loss, _ = rnn.cross_entropy(out, np.eye(10)[px.val_y], xp=npx)
    ref_acc = np.mean(np.argmax(out, axis=1) == px.val_y)
    assert abs(loss - float(ref_loss)) <= compare_tol(23, "float64") * max(1.0, float(ref_loss))
    assert acc == ref_acc


def test_training_batches_cover_every_image_once_per_epoch():
    px = _digits(n_train=40)
    cfg = T.default_config("pixels", hidden=5)
    xp, dev = T.resolve_backend("numpy")
    task = T.Task(cfg, xp, dev, px)
    rng = np.random.default_rng(1)
    seen = [task.batch(16, rng)[0] for _ in range(5)]  # 80 images: two epochs of 40
    images = np.concatenate([x[:, :, 0].T for x in seen])
    rows = {tuple(r) for r in px.train_x}
    assert all(tuple(r) in rows for r in images)
    for epoch in (images[:40], images[40:]):
        assert len({tuple(r) for r in epoch}) == 40


def test_plateau_decays_then_stops_and_reports_the_best_state():
    """A learning rate too small to change anything: decay after `patience`, then stop."""
    px = _digits()
    cfg = T.default_config("pixels", hidden=5, batch=4, steps=100, eval_every=3, patience=1,
                           max_decays=1, lr=1e-12, lr_decay=0.5, test_batch=50)
    s = T.train(cfg, quiet=True, pixels=px)
    assert s["stop_reason"] == "plateau" and s["iterations"] == 6 and s["stopped_early"]
    decays = [e for e in s["events"] if e["event"] == "decay"]
    assert [(e["step"], e["factor"]) for e in decays] == [(3, 0.5)]
    assert decays[0]["lr"] == pytest.approx(0.5e-12)
    assert s["events"][-1] == {"step": 6, "event": "stop", "reason": "plateau"}
    assert s["best_step"] == 0  # nothing improved on the first evaluation
    assert s["history"][1]["lr"] == 1e-12 and s["history"][2]["lr"] == pytest.approx(0.5e-12)


def test_test_set_is_evaluated_with_the_best_validation_state():
    """The long run reports the test accuracy of its state at `best_step`, not its last.

    A run is deterministic given its seed, so a run stopped at `best_step` holds the
    same parameters there (and, its history being a prefix of the long one's, the same
    best step).
    """
    px = _digits()
    kw = {"hidden": 5, "batch": 8, "eval_every": 5, "test_batch": 50, "patience": None,
          "dtype": "float64", "lr": 1e-2}
    s = T.train(T.default_config("pixels", steps=40, **kw), quiet=True, pixels=px)
    best = max(s["history"], key=lambda h: h["accuracy"])  # the first of the best
    assert s["best_step"] == best["step"] and s["val_accuracy"] == best["accuracy"]
    assert 0 < s["best_step"] < 40  # the state reported is not the last one
    short = T.train(T.default_config("pixels", steps=s["best_step"], **kw), quiet=True,
                    pixels=px)
    assert short["best_step"] == s["best_step"]
    assert short["accuracy"] == s["accuracy"] and short["final_loss"] == s["final_loss"]


@pytest.mark.parametrize(("argv", "message"), [
    pytest.param(["--downsample", "3"], "downsample", marks=needs_digits),
    (["--dataset", "imagenet"], "--dataset"),
    (["--dataset", "mnist", "--data-dir", "{tmp}"], "mnist"),
])
def test_bad_pixel_input_is_one_line_and_status_2(argv, message, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, out, err = run(["pixels", *TINY, *argv], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("unitary-lowrank pixels: error:")
    assert message in err and out == ""


def test_corrupt_data_files_are_one_line_and_status_2(tmp_path, capsys):
    from unitary_lowrank.cli.tasks.datasets import IDX_FILES

    for name in IDX_FILES:  # gzip files of the right names whose content is not MNIST's
        with gzip.open(tmp_path / f"{name}.gz", "wb") as f:
            f.write(b"\x00\x00\x08\x03" + bytes(12))
    code, out, err = run(["pixels", *TINY, "--dataset", "mnist", "--data-dir", str(tmp_path)],
                         capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("unitary-lowrank pixels: error:")


@pytest.mark.parametrize("task", ["copy", "adding", pytest.param("pixels", marks=needs_digits)])
def test_paper_presets_run_a_few_steps_at_tiny_sizes(task, tmp_path, capsys):
    """The paper's settings, with the sizes and the epoch made tiny: the schedule runs."""
    js = tmp_path / "p.json"
    sizes = ["--hidden", "6", "--steps", "3", "--eval-every", "2", "--test-batch", "8",
             "--epoch-steps", "1"]
    if task == "pixels":
        sizes += ["--dataset", "digits", "--test-batch", "50"]
    else:
        sizes += ["--seq-len", "5", "--batch", "4"]
    code, out, err = run([task, "--preset", "paper", *sizes, "--quiet", "--json", str(js)],
                         capsys)
    assert code == 0, err
    s = json.loads(js.read_text())
    paper = T.PRESETS[task]
    assert s["lr"] == paper["lr"] and s["unitary_lr_divider"] == paper["unitary_lr_divider"]
    assert s["unitary_direction"] == "rmsprop" and s["rank"] == 1 and s["io_init"] == "paper"
    if task == "copy":
        assert (s["sampler"], s["oversample"], s["epoch_decay"]) == ("column", 0, 0.9)
    if task == "adding":
        assert (s["init"], s["batch"], s["epoch_decay"]) == ("identity", 4, 0.94)
        assert T.default_config("adding", "paper").batch == 50
    decays = [e for e in s["events"] if e["event"] == "decay"]
    if task == "pixels":  # permuted_mnist.py at HEAD: StepLR x 0.2 (every 60 epochs)
        assert (s["method"], s["nonlinearity"], s["init"]) == ("project", "modrelu", "identity")
    factor = paper["epoch_decay"]
    assert [e["step"] for e in decays] == [1, 2, 3]
    assert decays[-1]["lr"] == pytest.approx(paper["lr"] * factor**3, rel=1e-12)


def test_paper_preset_settings():
    copy, adding, pixels = (T.default_config(t, "paper") for t in ("copy", "adding", "pixels"))
    assert (copy.seq_len, copy.hidden, copy.batch, copy.steps, copy.epoch_steps) == (
        1000, 190, 128, 20000, 4000)
    assert (adding.seq_len, adding.hidden, adding.lr, adding.unitary_lr_divider) == (
        200, 170, 1e-3, 32.0)
    assert (adding.epoch_steps, adding.epoch_decay, adding.init) == (2000, 0.94, "identity")
    assert (pixels.dataset, pixels.downsample, pixels.hidden, pixels.lr) == (
        "mnist", 1, 170, 1e-3)
    assert (pixels.steps, pixels.epoch_steps, pixels.epoch_decay) == (84400, 25320, 0.2)
    assert T.default_config("pixels", "paper", hidden=512).hidden == 512
    assert T.default_config("copy", "paper", seq_len=2000).seq_len == 2000


@pytest.mark.parametrize("task", ["copy", "adding", "pixels"])
def test_paper_io_init_draws_as_the_papers_code(task):
    """W_in, V of the presets: the bounds or spreads of the paper's PyTorch initialisers."""
    n_in, n, n_out = {"copy": (10, 190, 9), "adding": (2, 170, 1), "pixels": (1, 170, 10)}[task]
    p = T.paper_io_init(task, n_in, n, n_out, np.random.default_rng(0))
    assert p["W_in"].shape == (n, n_in) and p["V"].shape == (n_out, n)
    W, V = p["W_in"], p["V"]
    if task in ("copy", "adding"):  # Glorot-uniform: |w| <= sqrt(6 / (fan_in + fan_out))
        bound = math.sqrt(6 / (n_in + n))
        assert np.abs(W).max() <= bound and np.abs(W).max() > 0.9 * bound
    else:  # He-normal, fan in 1: standard deviation sqrt(2)
        assert abs(W.std() - math.sqrt(2)) < 4 * math.sqrt(2) / math.sqrt(2 * W.size)
    if task == "copy":  # He-normal on the fan in n
        assert abs(V.std() - math.sqrt(2 / n)) < 4 * math.sqrt(2 / n) / math.sqrt(2 * V.size)
    else:
        bound = 0.5 * math.sqrt(6 / (n + n_out)) if task == "adding" else 1 / math.sqrt(n)
        assert np.abs(V).max() <= bound and np.abs(V).max() > 0.9 * bound
    assert T.default_config(task, "paper").io_init == "paper"
    assert T.default_config(task).io_init == "default"


def test_oversample_reaches_the_sketch():
    """Column sampling of c = k columns and of k + 10 give different steps on U."""
    kw = {"seq_len": 4, "hidden": 8, "batch": 4, "steps": 2, "eval_every": 2, "test_batch": 8,
          "sampler": "column", "rank": 1, "dtype": "float64"}
    a = T.train(T.default_config("copy", oversample=0, **kw), quiet=True)
    b = T.train(T.default_config("copy", oversample=10, **kw), quiet=True)
    assert a["oversample"] == 0 and b["oversample"] == 10
    assert a["final_loss"] != b["final_loss"]
    with pytest.raises(T.ConfigError, match="--oversample"):
        T.default_config("copy", oversample=-1).validate()


def test_identity_init_starts_exactly_orthogonal(tmp_path, capsys):
    js = tmp_path / "i.json"
    code, _, err = run(["adding", "--seq-len", "4", "--hidden", "6", "--batch", "4", "--steps",
                        "2", "--test-batch", "8", "--init", "identity", "--method", "frozen",
                        "--quiet", "--json", str(js)], capsys)
    assert code == 0, err
    s = json.loads(js.read_text())
    assert s["init"] == "identity" and s["unitarity_error"] == 0.0


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_tqdm_progress_bar_on_a_terminal():
    pytest.importorskip("tqdm")
    stream = _Tty()
    cfg = T.default_config("adding", seq_len=4, hidden=6, batch=4, steps=50, eval_every=50,
                           test_batch=8)
    T.train(cfg, stream=stream)
    text = stream.getvalue()
    assert "50/50" in text and "|UᵀU−I|" in text and "% of baseline" in text
    assert "step      0  test loss" in text  # the evaluations still print their lines


def test_log_lines_carry_the_progress_off_a_terminal():
    stream = io.StringIO()
    cfg = T.default_config("adding", seq_len=4, hidden=6, batch=4, steps=50, eval_every=25,
                           test_batch=8)
    T.train(cfg, stream=stream)
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    later = [ln for ln in lines if ln.startswith("step     25") or ln.startswith("step     50")]
    assert len(later) == 2 and all("train loss" in ln and "ETA" in ln for ln in later)


@needs_digits
def test_plot_overlays_pixel_runs(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    paths = []
    for method in ("transport", "frozen"):
        p = tmp_path / f"{method}.json"
        assert main(["pixels", *TINY, "--method", method, "--quiet", "--json", str(p)]) == 0
        paths.append(str(p))
    capsys.readouterr()
    png = tmp_path / "both.png"
    code, out, err = run(["plot", *paths, "--out", str(png)], capsys)
    assert code == 0, err
    assert png.read_bytes().startswith(PNG_MAGIC)
