"""``--preset paper`` against the paper and its public scripts, and the options it sets.

Tiny sizes (seconds): the fixed training set (``--train-size``), the scripts' marker
positions (``--markers paper``), no hidden bias (``--no-hidden-bias``), PyTorch's
initial readout bias (``--output-bias torch``), and the pixels preset (modReLU,
projUNN-D, identity start, lr x 0.2 every 60 epochs, 200 epochs).
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from array_api_compat import array_namespace

from unitary_lowrank.cli.app import main
from unitary_lowrank.cli.tasks import data, loop, rnn
from unitary_lowrank.cli.tasks.config import default_config
from unitary_lowrank.cli.tasks.evaluation import Task

XP = array_namespace(np.empty(0))
TINY = ["--seq-len", "6", "--hidden", "6", "--batch", "4", "--steps", "4", "--eval-every", "2",
        "--test-batch", "8", "--quiet"]


def test_copy_marker_of_the_paper_script_is_one_step_later_on_the_first_recall_step():
    symbols = np.array([[1, 2], [3, 4]])
    x, y = data.copy_sequences(symbols, 5, markers="paper")
    # copy_task.py: K symbols, L blanks, the marker, K - 1 blanks; targets: K + L blanks
    assert x[:, 0].tolist() == [1, 3, 0, 0, 0, 0, 0, 9, 0]
    assert y[:, 0].tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 3]
    xd, yd = data.copy_sequences(symbols, 5)
    assert int(np.flatnonzero(xd[:, 0] == data.MARKER)[0]) == 6
    assert (yd == y).all()  # the targets are the same
    assert data.copy_batch(3, 5, rng=0, markers="paper")[0].shape == (5 + 2 * data.N_COPY, 3)


@pytest.mark.parametrize("T", [8, 9, 200])
def test_adding_positions_of_the_paper_script(T):
    f, s = data.adding_positions(4000, T, rng=1, markers="paper")
    half = (T - 1) // 2  # adding_task.py: randint(0, h), randint(h, T)
    assert (f.min(), f.max(), s.min(), s.max()) == (0, half - 1, half, T - 1)
    f, s = data.adding_positions(4000, T, rng=1)
    assert (f.max(), s.min()) == (T // 2 - 1, T // 2)
    x, y = data.adding_batch(5, T, rng=2, markers="paper")
    assert (x[:, :, 1].sum(axis=0) == 2).all()
    assert np.allclose(y, (x[:, :, 0] * x[:, :, 1]).sum(axis=0))
    with pytest.raises(ValueError, match="markers"):
        data.adding_positions(2, T, markers="script")


def test_presets_follow_the_paper_and_its_scripts():
    cfg = default_config("pixels", "paper")
    assert (cfg.nonlinearity, cfg.method, cfg.init, cfg.rank, cfg.sampler) == (
        "modrelu", "project", "identity", 1, "lsi")
    assert (cfg.hidden, cfg.batch, cfg.lr, cfg.unitary_lr_divider) == (170, 128, 1e-3, 1.0)
    # 200 epochs of 422 steps (54 000 training images, batch 128); x 0.2 every 60 epochs
    assert (cfg.steps, cfg.epoch_steps, cfg.epoch_decay, cfg.eval_every) == (
        200 * 422, 60 * 422, 0.2, 422)
    assert (cfg.patience, cfg.output_bias, cfg.hidden_bias) == (None, "torch", True)
    cfg = default_config("copy", "paper")
    assert (cfg.train_size, cfg.markers, cfg.hidden_bias, cfg.output_bias) == (
        512000, "paper", False, "zero")
    assert cfg.train_size == cfg.epoch_steps * cfg.batch  # 4 000 steps an epoch
    cfg = default_config("adding", "paper")
    assert (cfg.train_size, cfg.markers, cfg.hidden_bias, cfg.output_bias) == (
        100000, "paper", False, "torch")
    assert cfg.train_size == cfg.epoch_steps * cfg.batch  # 2 000 steps an epoch
    assert default_config("pixels", "paper", method="transport").method == "transport"
    d = default_config("copy")
    assert (d.train_size, d.markers, d.hidden_bias, d.output_bias) == (
        None, "default", True, "zero")


@pytest.mark.parametrize("task", ["copy", "adding"])
def test_a_fixed_training_set_is_reshuffled_every_epoch(task):
    cfg = default_config(task, seq_len=5, hidden=4, batch=3, train_size=6)
    t = Task(cfg, XP, "cpu")
    rng = np.random.default_rng(0)
    seen = [np.asarray(t.batch(3, rng)[0]) for _ in range(8)]  # 4 epochs of 2 batches

    def epoch(i):
        x = np.concatenate(seen[2 * i: 2 * i + 2], axis=1)
        return sorted(map(tuple, np.moveaxis(x, 1, 0).reshape(6, -1).tolist()))

    assert epoch(0) == epoch(1) == epoch(2) == epoch(3)  # the same 6 sequences
    assert len(set(epoch(0))) == 6
    assert not all((seen[i] == seen[i + 2]).all() for i in range(0, 6, 2))  # new orders
    # without --train-size every batch is new
    fresh = Task(default_config(task, seq_len=5, hidden=4, batch=3), XP, "cpu")
    a, b = (np.asarray(fresh.batch(3, rng)[0]) for _ in range(2))
    assert not (a == b).all()


def _run(cfg):
    update = loop.UnitaryUpdate(cfg, XP)
    return loop._Run(cfg, XP, "cpu", io.StringIO(), True, update)


def test_no_hidden_bias_keeps_b_at_zero_and_output_bias_torch():
    cfg = default_config("adding", seq_len=6, hidden=6, batch=4, hidden_bias=False,
                         output_bias="torch", steps=3)
    cfg.validate()
    run = _run(cfg)
    assert float(np.abs(run.params["c"]).max()) > 0  # PyTorch's default, not zero
    assert float(np.abs(run.params["c"]).max()) <= 1 / np.sqrt(6)
    for step in range(1, 4):
        run.step(step)
    assert float(np.abs(run.params["b"]).max()) == 0.0
    cfg.hidden_bias = True
    run = _run(cfg)
    for step in range(1, 4):
        run.step(step)
    assert float(np.abs(run.params["b"]).max()) > 0
    p = rnn.init_params(2, 6, 1, rng=0)
    assert float(np.abs(p["c"]).max()) == 0.0


@pytest.mark.parametrize("task", ["copy", "adding"])
def test_the_new_settings_are_in_the_json(task, tmp_path, capsys):
    js = tmp_path / "s.json"
    assert main([task, "--preset", "paper", *TINY, "--train-size", "8", "--json", str(js)]) == 0
    s = json.loads(js.read_text())
    assert (s["train_size"], s["markers"], s["hidden_bias"]) == (8, "paper", False)
    assert s["output_bias"] == ("zero" if task == "copy" else "torch")
    assert main([task, *TINY, "--json", str(js)]) == 0
    s = json.loads(js.read_text())
    assert (s["train_size"], s["markers"], s["hidden_bias"], s["output_bias"]) == (
        None, "default", True, "zero")


def test_pixels_preset_in_the_json(tmp_path, capsys):
    js = tmp_path / "s.json"
    assert main(["pixels", "--preset", "paper", "--dataset", "digits", "--hidden", "6",
                 "--batch", "8", "--steps", "3", "--eval-every", "3", "--test-batch", "200",
                 "--quiet", "--json", str(js)]) == 0
    s = json.loads(js.read_text())
    assert (s["method"], s["nonlinearity"], s["init"], s["output_bias"]) == (
        "project", "modrelu", "identity", "torch")
    assert (s["epoch_steps"], s["epoch_decay"], s["markers"]) == (25320, 0.2, None)
    assert s["train_size"] == 1294  # pixels: the training images (digits, seed 0)


@pytest.mark.parametrize("argv, needle", [
    (["adding", "--train-size", "3", "--batch", "4"], "--train-size"),
    (["copy", "--train-size", "0"], "--train-size"),
    (["adding", "--markers", "script"], "--markers"),
    (["adding", "--markers", "paper", "--seq-len", "2"], "--seq-len"),
    (["copy", "--no-hidden-bias", "--nonlinearity", "modrelu"], "--no-hidden-bias"),
    (["pixels", "--output-bias", "ones"], "--output-bias"),
    (["pixels", "--train-size", "10"], "--train-size"),
])
def test_bad_new_options_one_line_exit_2(argv, needle, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "error" in lines[0] and needle in lines[0]


@pytest.mark.parametrize("task", ["copy", "adding", "pixels"])
def test_help_names_the_new_options(task, capsys):
    assert main([task, "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--hidden-bias", "--output-bias"):
        assert flag in out
    assert ("--train-size" in out) == (task != "pixels")
    assert ("--markers" in out) == (task != "pixels")
