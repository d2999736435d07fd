"""The paper's experiments: toy, spectrum, cnn, the CIFAR-10 loader, the runtime section.

Each at a tiny size (seconds), on the command line where there is one.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest

import unitary_lowrank as ul
from unitary_lowrank.cli import main
from unitary_lowrank.cli.tasks import cifar, spectrum, toy
from unitary_lowrank.cli.tasks.datasets import DataError
from unitary_lowrank.testing import compare_tol, unitarity_bound
from unitary_lowrank.testing.reference import reference_step

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str, command: str) -> str:
    """The single line of a refused command line (exit status 2)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"unitary-lowrank {command}: error: "), err
    return lines[0]


# ------------------------------------------------------------------------------ toy
TOY = ["toy", "--n", 16, "--ranks", "1,16", "--steps", 12, "--eval-every", 4, "--quiet"]


def test_toy_writes_every_setting_the_runs_and_a_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    js, png = tmp_path / "toy.json", tmp_path / "toy.png"
    code, out, err = run([*TOY, "--json", js, "--plot", png], capsys)
    assert code == 0, err
    assert "toy (Fig. 2b)" in out and "column sampling" in out
    s = json.loads(js.read_text())
    for key, want in {"n": 16, "ranks": [1, 16], "batch": 16, "steps": 12, "lr": 8.0,
                      "method": "transport", "retraction": "exp", "sampler": "column",
                      "oversample": 0, "eval_every": 4, "dtype": "complex64", "seed": 0,
                      "threads": 1, "preset": None, "stop_reason": "done",
                      "iterations": 24}.items():
        assert s[key] == want, key
    assert [r["rank"] for r in s["runs"]] == [1, 16]
    for r in s["runs"]:
        assert [h["step"] for h in r["history"]] == [0, 4, 8, 12]
        assert r["unitarity_error"] <= unitarity_bound(16, "complex64")
        # the expected loss of two Haar-random matrices: 2 on average, up to sampling
        assert 1.0 < r["initial_loss"] < 3.0
    rank1, rank16 = s["runs"]
    assert rank1["initial_loss"] == rank16["initial_loss"]  # same start and target
    # the full sketch (k >= batch sees the whole gradient) learns much faster than k = 1
    assert rank16["final_loss"] < 0.2 * rank1["final_loss"] < rank1["initial_loss"]
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_toy_gradient_is_the_derivative_of_the_loss():
    """Re⟨G, E⟩ is the directional derivative of the batch loss (central differences)."""
    rng = np.random.default_rng(0)
    n, B = 6, 4
    U = ul.random_unitary(n, dtype="complex128", rng=1)
    X = toy.inputs(n, B, rng, "complex128")
    Y = ul.random_unitary(n, dtype="complex128", rng=2) @ X
    E = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
    loss, G = toy.loss_and_gradient(U, X, Y)
    assert loss == pytest.approx(np.sum(np.abs(U @ X - Y) ** 2) / B)
    t = 1e-6
    numeric = (toy.loss_and_gradient(U + t * E, X, Y)[0]
               - toy.loss_and_gradient(U - t * E, X, Y)[0]) / (2 * t)
    assert numeric == pytest.approx(float(np.real(np.vdot(G, E))), rel=1e-6)


@pytest.mark.parametrize("method", ["transport", "project"])
def test_toy_step_with_the_whole_gradient_is_the_dense_projunn_step(method):
    """With k >= batch the column sketch holds the whole rank-B gradient: the step is exact."""
    n, B = 8, 3
    cfg = toy.default_config(n=n, batch=B, dtype="complex128", lr=0.7, method=method)
    rng = np.random.default_rng(3)
    U = ul.random_unitary(n, dtype="complex128", rng=4)
    X = toy.inputs(n, B, rng, "complex128")
    Y = ul.random_unitary(n, dtype="complex128", rng=5) @ X
    G = (2 / B) * (U @ X - Y) @ X.conj().T
    got, _ = toy.train_step(U, X, Y, cfg, 4, np.random.default_rng(0))
    want = reference_step(U, -0.7 * G, toy.METHODS[method])
    assert np.abs(got - want).max() <= compare_tol(n, "complex128")


def test_toy_default_ranks_stop_at_n_and_the_paper_preset(capsys):
    assert toy.default_config(n=5).ranks == (1, 2, 4)
    paper = toy.default_config("paper")
    assert (paper.n, paper.batch, paper.sampler, paper.oversample) == (2048, 16, "column", 0)


@pytest.mark.parametrize("argv, needle", [
    (["--n", 8, "--ranks", "2,9"], "--ranks must be at most --n (8), got 9"),
    (["--ranks", "0"], "--ranks"),
    (["--lr", "nan"], "--lr"),
    (["--dtype", "float32"], "--dtype"),
    (["--seed", "-1"], "--seed"),
])
def test_toy_bad_values_are_one_line_and_exit_2(argv, needle, capsys):
    code, out, err = run(["toy", *argv], capsys)
    assert code == 2 and out == ""
    assert needle in one_line_error(err, "toy")


def test_toy_ctrl_c_prints_the_summary_writes_json_exits_130(tmp_path, capsys, monkeypatch):
    real = toy.loss_and_gradient
    calls = []

    def interrupted(*a):
        calls.append(1)
        if len(calls) == 7:  # the 7th step of rank 1: steps 1-6 are done
            raise KeyboardInterrupt
        return real(*a)

    monkeypatch.setattr(toy, "loss_and_gradient", interrupted)
    js = tmp_path / "s.json"
    code, out, err = run([*TOY, "--json", js], capsys)
    assert code == 130
    assert err.strip().splitlines()[-1] == "unitary-lowrank toy: interrupted after 6 steps"
    assert "(stopped: interrupted)" in out and f"summary written to {js}" in out
    s = json.loads(js.read_text())
    assert s["stop_reason"] == "interrupted" and s["iterations"] == 6
    assert [r["rank"] for r in s["runs"]] == [1] and s["runs"][0]["steps_done"] == 6


# ------------------------------------------------------------------------- spectrum
def test_energy_fractions_are_the_share_of_the_best_rank_k_approximation():
    rng = np.random.default_rng(0)
    G = rng.standard_normal((9, 7)) @ np.diag(0.5 ** np.arange(7)) @ rng.standard_normal((7, 7))
    s = spectrum.singular_values(G)
    assert np.all(np.diff(s) <= 0)
    U, sv, Vh = np.linalg.svd(G)
    for k in (1, 3, 7, 20):
        kk = min(k, 7)
        Gk = U[:, :kk] * sv[:kk] @ Vh[:kk]
        err = np.linalg.norm(G - Gk) ** 2 / np.linalg.norm(G) ** 2
        assert spectrum.energy_fractions(s, (k,))[str(k)] == pytest.approx(1 - err, abs=1e-12)
    # a batch of blocks: the share of the whole, not the mean of the shares
    blocks = np.array([[3.0, 0.0], [1.0, 1.0]])
    assert spectrum.energy_fractions(blocks, (1,))["1"] == pytest.approx(10 / 11)
    assert spectrum.cumulative_energy(blocks) == pytest.approx([10 / 11, 1.0])


def test_spectrum_records_normalised_spectra_of_both_networks(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    js, png = tmp_path / "s.json", tmp_path / "s.png"
    code, out, err = run(["spectrum", "--steps", 3, "--record-every", 2, "--hidden", 8,
                          "--seq-len", 3, "--rnn-batch", 4, "--channels", 4, "--depth", 2,
                          "--conv-batch", 8, "--ranks", "1,2", "--quiet", "--json", js,
                          "--plot", png], capsys)
    assert code == 0, err
    assert "spectrum (Fig. 1a)" in out and "a Gaussian matrix of the same shape" in out
    s = json.loads(js.read_text())
    assert s["parts"] == ["rnn", "conv"] and s["ranks"] == [1, 2] and s["steps"] == 3
    assert s["iterations"] == 6 and s["stop_reason"] == "done"
    for name, shape in (("rnn", [8, 8]), ("conv", [4, 4])):
        part = s["results"][name]
        assert part["shape"] == shape
        assert [r["step"] for r in part["records"]] == [1, 2, 3]
        for r in part["records"]:
            sv = r["singular_values"]
            assert len(sv) == shape[0] and sv[0] == pytest.approx(1.0)
            assert all(a >= b - 1e-12 for a, b in zip(sv, sv[1:], strict=False))  # descending
            assert 0 < r["energy"]["1"] <= r["energy"]["2"] <= 1 + 1e-12
            assert r["cumulative_energy"][-1] == pytest.approx(1.0)
            assert r["cumulative_energy"][0] == pytest.approx(r["energy"]["1"])
            assert r["gradient_norm"] > 0
        assert set(part["random_reference"]) == {"1", "2"}
    conv = s["results"]["conv"]["records"][0]
    assert conv["frequencies"] == 34  # 8×8 real: 4 self-conjugate + 30 conjugate pairs
    assert 0 < conv["median_energy"]["1"] <= 1
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_spectrum_rnn_record_is_the_gradient_of_the_recurrent_matrix(monkeypatch):
    """The recorded spectrum is that of weight_hh.grad as autograd computed it."""
    torch = pytest.importorskip("torch")
    seen = []
    real = spectrum.singular_values

    def spy(G):
        if isinstance(G, torch.Tensor):  # not the Gaussian reference
            seen.append(G.detach().clone())
        return real(G)

    monkeypatch.setattr(spectrum, "singular_values", spy)
    s = spectrum.run(spectrum.default_config(parts=["rnn"], steps=1, hidden=6, seq_len=2,
                                             rnn_batch=3), quiet=True)
    G = seen[0]
    assert G.shape == (6, 6) and G.dtype == torch.float32 and bool(G.abs().sum() > 0)
    want = np.linalg.svd(G.double().numpy(), compute_uv=False)
    got = s["results"]["rnn"]["records"][0]["singular_values"]
    assert np.allclose(got, want / want[0])


@pytest.mark.parametrize("argv, needle", [
    (["--parts", "rnn,lstm"], "--parts must be one of rnn, conv"),
    (["--channels", 3], "--channels must be even"),
    (["--steps", 0], "--steps"),
])
def test_spectrum_bad_values_are_one_line_and_exit_2(argv, needle, capsys):
    code, _, err = run(["spectrum", *argv], capsys)
    assert code == 2
    assert needle in one_line_error(err, "spectrum")


# ------------------------------------------------------------------------------ cnn
CNN = ["cnn", "--depth", 2, "--channels", 4, "--epochs", 1, "--max-steps", 3, "--batch", 16,
       "--quiet"]


def test_cnn_compares_the_methods_from_the_same_start(tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    pytest.importorskip("matplotlib")
    js, png = tmp_path / "c.json", tmp_path / "c.png"
    code, out, err = run([*CNN, "--method", "transport,project,unconstrained", "--lr", 0.05,
                          "--json", js, "--plot", png], capsys)
    assert code == 0, err
    assert "cnn (Fig. 5)" in out and "the paper" in out and "94.6" in out
    s = json.loads(js.read_text())
    for key, want in {"dataset": "digits", "arch": "plain", "depth": 2, "channels": 4,
                      "nonlinearity": "maxmin", "init": "haar", "downsample": 1, "rank": 1,
                      "sampler": "lsi", "direction": "rmsprop", "lr": 0.05, "lr_divider": 1.0,
                      "batch": 16, "epochs": 1, "max_steps": 3, "augment": False, "seed": 0,
                      "image_shape": [1, 8, 8], "train_size": 1438, "test_size": 359,
                      "iterations": 9, "stop_reason": "done"}.items():
        assert s[key] == want, key
    assert s["device"] in ("cpu", "cuda")  # "auto" resolved
    runs = {r["method"]: r for r in s["runs"]}
    assert list(runs) == ["transport", "project", "unconstrained"]
    starts = {r["history"][0]["test_loss"] for r in runs.values()}
    assert len(starts) == 1  # the same initial weights for every method
    bound = unitarity_bound(4, "float32")
    assert runs["transport"]["orthogonality_error"] <= bound
    assert runs["project"]["orthogonality_error"] <= bound
    assert runs["unconstrained"]["orthogonality_error"] > 100 * bound  # it left the group
    assert len({r["parameters"] for r in runs.values()}) == 1  # the same parameters
    for r in runs.values():
        assert r["steps_done"] == 3 and 0 <= r["test_accuracy"] <= 1
        assert r["history"][-1]["grad_norm_first"] > 0
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_plain_cnn_is_an_isometry_until_the_readout():
    torch = pytest.importorskip("torch")
    from unitary_lowrank.cli.tasks import cnn

    torch.manual_seed(0)
    net = cnn.build_model(cnn.default_config(depth=5, channels=6, dtype="float64"), (1, 8, 8))
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    ratio = net.features(x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
    assert torch.allclose(ratio, torch.ones(3, dtype=torch.float64), atol=1e-12)
    assert len(cnn.orthogonal_convs(net)) == 5


def test_identity_init_starts_the_plain_cnn_as_its_first_nonlinearity():
    torch = pytest.importorskip("torch")
    from unitary_lowrank.cli.tasks import cnn

    net = cnn.build_model(cnn.default_config(depth=4, channels=4, init="identity"), (1, 8, 8))
    x = torch.randn(2, 1, 8, 8)
    lifted = torch.cat([x, torch.zeros(2, 3, 8, 8)], dim=1)
    a, b = lifted.chunk(2, dim=1)
    assert torch.allclose(net.features(x), torch.cat([a.maximum(b), a.minimum(b)], 1), atol=1e-6)


def test_resnet9_has_orthogonal_convolutions_where_the_channels_stay_equal():
    torch = pytest.importorskip("torch")
    from unitary_lowrank.cli.tasks import cnn

    torch.manual_seed(0)
    net = cnn.build_model(cnn.default_config(dataset="cifar10", channels=4), (3, 32, 32))
    ortho = cnn.orthogonal_convs(net)
    assert [(c.channels, c.image_size) for c in ortho] == [
        (8, (16, 16)), (8, (16, 16)), (16, (8, 8)), (16, (8, 8)), (16, (8, 8))]
    plain = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(m.in_channels, m.out_channels) for m in plain] == [(3, 4), (4, 8), (8, 16)]
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_augment_takes_crops_of_the_reflected_image_and_flips():
    torch = pytest.importorskip("torch")
    from unitary_lowrank.cli.tasks import cnn

    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
    out = cnn.augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    for i in range(2):
        crops = [padded[i, :, a:a + 8, b:b + 8] for a in range(9) for b in range(9)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(-1)) for c in crops)


def test_cnn_paper_presets():
    from unitary_lowrank.cli.tasks import cnn

    fig5 = cnn.default_config("paper")
    assert (fig5.dataset, fig5.arch, fig5.depth, fig5.channels, fig5.epochs, fig5.rank,
            fig5.methods) == ("mnist", "plain", 100, 32, 100, 1, ("transport", "unconstrained"))
    c = cnn.default_config("paper", dataset="cifar10")
    assert (c.arch, c.lr, c.lr_divider, c.batch, c.direction, c.sampler, c.rank, c.methods,
            c.epochs, c.augment) == ("resnet9", 1e-3, 10.0, 256, "rmsprop", "lsi", 1,
                                     ("project",), 90, True)
    assert cnn.default_config("paper", dataset="cifar10", epochs=2).epochs == 2


@pytest.mark.parametrize("argv, needle", [
    (["--depth", 0], "--depth"),
    (["--method", "transport,sgd"], "--method must be one of"),
    (["--channels", 5], "--channels must be even"),
    (["--rank", 64], "--rank must be at most"),
    (["--arch", "resnet9"], "--arch resnet9 is for --dataset cifar10"),
    (["--augment"], "--augment is for --dataset cifar10"),
    (["--downsample", 3], "--downsample 3 does not divide the image side 8"),
])
def test_cnn_bad_values_are_one_line_and_exit_2(argv, needle, capsys):
    code, _, err = run(["cnn", *argv], capsys)
    assert code == 2
    assert needle in one_line_error(err, "cnn")


def test_cnn_missing_files_are_one_line_and_exit_2(tmp_path, capsys):
    code, _, err = run(["cnn", "--dataset", "mnist", "--data-dir", tmp_path], capsys)
    assert code == 2 and "mnist data not found" in one_line_error(err, "cnn")
    code, _, err = run(["cnn", "--dataset", "cifar10", "--data-dir", tmp_path], capsys)
    line = one_line_error(err, "cnn")
    assert code == 2 and "put cifar-10-python.tar.gz" in line and str(tmp_path) in line
    assert cifar.MD5 in line


def test_cnn_ctrl_c_reports_the_state_reached_and_exits_130(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from unitary_lowrank.cli.tasks import cnn

    real = cnn._optimizer

    def optimizer(*a):
        opt = real(*a)
        step, calls = opt.step, []

        def interrupted(*args, **kw):
            calls.append(1)
            if len(calls) == 3:
                raise KeyboardInterrupt
            return step(*args, **kw)

        opt.step = interrupted
        return opt

    monkeypatch.setattr(cnn, "_optimizer", optimizer)
    js = tmp_path / "c.json"
    code, out, err = run([*CNN, "--max-steps", 10, "--json", js], capsys)
    assert code == 130
    assert err.strip().splitlines()[-1] == "unitary-lowrank cnn: interrupted after 2 steps"
    s = json.loads(js.read_text())
    assert s["stop_reason"] == "interrupted" and [r["method"] for r in s["runs"]] == [
        "transport"]
    last = s["runs"][0]["history"][-1]
    assert last["step"] == 2 and 0 <= last["test_accuracy"] <= 1  # the state reached, tested


def test_cnn_a_diverged_run_stops_alone_and_the_summary_is_written(tmp_path, capsys,
                                                                  monkeypatch):
    """A step ProjUNN refuses (a gradient whose square overflows) ends that run, not the rest."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    from unitary_lowrank.cli.tasks import cnn

    real = cnn._optimizer

    def optimizer(cfg, method, model):
        opt = real(cfg, method, model)
        if method == "unconstrained":
            step, calls = opt.step, []

            def refused(*args, **kw):
                calls.append(1)
                if len(calls) == 2:
                    raise ValueError("ProjUNN: the step of parameter 1 was refused, nothing "
                                     "was changed: its gradient overflows")
                return step(*args, **kw)

            opt.step = refused
        return opt

    monkeypatch.setattr(cnn, "_optimizer", optimizer)
    js = tmp_path / "c.json"
    code, out, err = run([*CNN, "--method", "unconstrained,transport", "--json", js], capsys)
    assert code == 1
    assert err.strip().splitlines()[-1].startswith("unitary-lowrank cnn: error: a run diverged")
    assert "DIVERGED at step 2" in out and f"summary written to {js}" in out
    s = json.loads(js.read_text())
    assert s["stop_reason"] == "diverged"
    bad, good = s["runs"]
    assert bad["diverged_at"] == 2 and "overflows" in bad["diverged_because"]
    assert bad["steps_done"] == 1 and bad["history"][-1]["step"] == 1  # tested before it
    assert good["method"] == "transport" and good["steps_done"] == 3
    assert good["diverged_at"] is None


# ------------------------------------------------------------------------ CIFAR-10
def _batch_pickle(x: np.ndarray, y: list[int], protocol: int = 2) -> bytes:
    return pickle.dumps({b"batch_label": b"a batch", b"labels": y, b"data": x,
                         b"filenames": [b"f%d" % i for i in range(len(y))]},
                        protocol=protocol)


def _archive(folder: Path, per_batch: int = 3, *, test_member: bytes | None = None,
             protocol: int = 2, seed: int = 0) -> tuple[Path, dict, str, int]:
    """A small archive in the format of cifar-10-python.tar.gz: its path, arrays, MD5, size."""
    rng = np.random.default_rng(seed)
    arrays = {}
    path = folder / cifar.ARCHIVE
    with tarfile.open(path, "w:gz") as tar:
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for name in names:
            x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
            y = [int(v) for v in rng.integers(0, 10, per_batch)]
            arrays[name] = (x, y)
            data = (test_member if name == "test_batch" and test_member is not None
                    else _batch_pickle(x, y, protocol))
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        meta = pickle.dumps({b"label_names": [b"airplane", b"automobile"]}, protocol=2)
        info = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
    data = path.read_bytes()
    return path, arrays, hashlib.md5(data).hexdigest(), len(data)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_loader_reads_the_python_archive(tmp_path, protocol):
    path, arrays, md5, size = _archive(tmp_path, protocol=protocol)
    c = cifar.load_cifar10(tmp_path, md5=md5, size=size)
    assert c.train_x.shape == (15, 3, 32, 32) and c.train_x.dtype == np.uint8
    assert c.test_x.shape == (3, 3, 32, 32) and c.test_y.dtype == np.int64
    x, y = arrays["data_batch_2"]
    assert np.array_equal(c.train_x[3:6].reshape(3, 3072), x) and c.train_y[3:6].tolist() == y
    # a row is the red, green and blue 32×32 planes, each in reading order
    assert c.train_x[3, 1, 0, 5] == x[0, 1024 + 5] and c.train_x[3, 2, 1, 0] == x[0, 2048 + 32]
    assert np.array_equal(c.test_x.reshape(3, 3072), arrays["test_batch"][0])
    assert c.classes == ("airplane", "automobile")


def test_cifar_loader_reads_python_2_pickles():
    """The published batches were pickled by Python 2 (strings as SHORT_BINSTRING)."""
    raw = bytes(range(8))
    p2 = (b"\x80\x02}q\x00(U\x04dataq\x01cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\n"
          b"ndarray\nq\x03K\x00\x85U\x01b\x87Rq\x04(K\x01K\x02K\x04\x86cnumpy\ndtype\nq\x05"
          b"U\x02u1K\x00K\x01\x87Rq\x06(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
          b"\x89U\x08" + raw + b"tbU\x06labels]q\x07(K\x01K\x02eu.")
    d = cifar.restricted_loads(p2)
    assert d[b"data"].dtype == np.uint8 and d[b"data"].tolist() == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert d[b"labels"] == [1, 2]


class _Boom:
    def __reduce__(self):
        return (Path.touch, (Path("/nonexistent-dir/never-created"),))


@pytest.mark.parametrize("payload", [
    pickle.dumps({b"data": _Boom(), b"labels": []}, protocol=2),
    b"cos\nsystem\n(S'echo hacked'\ntR.",
    pickle.dumps({b"data": np.array([object()], dtype=object), b"labels": [0]}),
])
def test_cifar_unpickler_refuses_globals(tmp_path, payload):
    path, _, md5, size = _archive(tmp_path, test_member=payload)
    with pytest.raises(DataError, match="test_batch: not a CIFAR batch .*refused"):
        cifar.load_cifar10(path=path, md5=md5, size=size)


def test_cifar_archive_is_verified_before_anything_is_read(tmp_path, monkeypatch):
    path, _, md5, size = _archive(tmp_path)
    read = []
    monkeypatch.setattr(cifar, "_read_members", lambda p: read.append(p))
    with pytest.raises(DataError, match=f"{size} bytes, expected 170498071"):
        cifar.load_cifar10(tmp_path)  # the published size and digest
    with pytest.raises(DataError, match="MD5 .*expected 0123"):
        cifar.load_cifar10(tmp_path, md5="0123", size=size)
    assert read == []  # nothing opened, nothing unpickled


def test_cifar_damaged_batches_are_one_line_errors(tmp_path):
    x = np.zeros((2, 3071), np.uint8)
    path, _, md5, size = _archive(tmp_path, test_member=_batch_pickle(x, [0, 1]))
    with pytest.raises(DataError, match=r"b'data' must be uint8 of shape \(N, 3072\)"):
        cifar.load_cifar10(path=path, md5=md5, size=size)
    sub = tmp_path / "b"
    sub.mkdir()
    path, _, md5, size = _archive(sub, test_member=_batch_pickle(
        np.zeros((2, 3072), np.uint8), [0, 10]))
    with pytest.raises(DataError, match="a label outside 0..9"):
        cifar.load_cifar10(path=path, md5=md5, size=size)


def test_cnn_on_cifar10_trains_the_resnet(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    _, _, md5, size = _archive(tmp_path, per_batch=4)
    monkeypatch.setattr(cifar, "MD5", md5)
    monkeypatch.setattr(cifar, "SIZE", size)
    js = tmp_path / "c.json"
    code, out, err = run(["cnn", "--dataset", "cifar10", "--data-dir", tmp_path, "--channels",
                          4, "--epochs", 1, "--batch", 8, "--method", "project", "--augment",
                          "--lr-divider", 10, "--quiet", "--json", js], capsys)
    assert code == 0, err
    assert "ResNet-9" in out and "82.06" in out
    s = json.loads(js.read_text())
    assert (s["arch"], s["image_shape"], s["train_size"], s["test_size"]) == (
        "resnet9", [3, 32, 32], 20, 4)
    r = s["runs"][0]
    assert r["method"] == "project" and r["steps_done"] == 2
    assert r["orthogonality_error"] <= unitarity_bound(16, "float32")


# ------------------------------------------------------------------ runtime section
def test_runtime_benchmark_section(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    from benchmarks import bench_runtime

    rows = bench_runtime.run(True)
    assert {r["params"]["case"] for r in rows} == set(bench_runtime.CASES)
    assert sorted({r["params"]["n"] for r in rows}) == [8, 16]
    for r in rows:
        assert r["section"] == "runtime" and r["time_s"] > 0
        if r["params"]["case"] == "unconstrained":
            assert r["ratios"] == {}
        else:
            assert r["ratios"]["over_unconstrained"] == pytest.approx(
                r["time_s"] / r["params"]["unconstrained_s"])
            # every constrained parametrisation keeps W orthogonal
            assert r["params"]["unitarity_error"] <= unitarity_bound(16, "float32")
    png = tmp_path / "runtime.png"
    bench_runtime.plot_runtime(rows, str(png))
    assert png.read_bytes()[:8] == PNG_MAGIC
