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
import os
import sys
import tempfile
import urllib.error
import urllib.request
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
    "PAPER_PERMUTATION_SEED",
    "SYSTEM_DIRS",
    "DataError",
    "PixelData",
    "data_dirs",
    "fetch",
    "load_pixels",
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

#: IDX type codes (third byte of the magic number) and their big-endian dtypes.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_TYPES.items()}

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


def parse_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
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
        If the magic number is not an IDX one, or the data is shorter or longer
        than its header announces.

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
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    got = len(buf) - header
    if got < expected:
        raise DataError(f"{name}: truncated: {got} bytes of data, its header announces {expected}")
    if got > expected:
        raise DataError(f"{name}: {got - expected} bytes after the {expected} its header announces")
    values = np.frombuffer(buf, dtype, offset=header).reshape(shape)
    return values if dtype.itemsize == 1 else values.astype(dtype.newbyteorder("="))


def _read_bytes(path: Path, name: str | None = None) -> tuple[bytes, bytes]:
    """The bytes of `path` as stored and uncompressed (the same object for a raw file).

    `name` (default: the path) is what error messages call it; its ending
    ``.gz`` says whether the file is gzipped.
    """
    name = str(path) if name is None else name
    try:
        stored = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {name}: {exc.strerror or exc}") from None
    if not name.endswith(".gz"):
        return stored, stored
    try:
        return stored, gzip.decompress(stored)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{name}: not a complete gzip file ({exc})") from None


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
    values = np.asarray(array)
    code = _IDX_CODES.get(values.dtype.newbyteorder("="))
    if code is None:
        raise TypeError(f"array: dtype {values.dtype} has no IDX type code")
    header = bytes([0, 0, code, values.ndim]) + np.asarray(values.shape, ">u4").tobytes()
    data = header + np.ascontiguousarray(values, values.dtype.newbyteorder(">")).tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(data, mtime=0) if path.suffix == ".gz" else data)


# --------------------------------------------------------------------------- checksums


def _digest(algo: str, data: bytes) -> str:
    return hashlib.new(algo, data, usedforsecurity=False).hexdigest()


def verify(path: str | os.PathLike, sums: Mapping[str, str], *,
           content: tuple[bytes, bytes] | None = None) -> bytes:
    """Check a file against its known digests; return its uncompressed bytes.

    The file passes when any known digest matches: ``"raw-sha256"`` or
    ``"raw-md5"`` of the uncompressed content (whatever the gzip header holds),
    or, for a ``.gz`` file, ``"gz-sha256"`` or ``"gz-md5"`` of the file itself.
    With no known digest, nothing is checked.

    Parameters
    ----------
    path : str or os.PathLike
        The file (``.gz`` or raw).
    sums : mapping of str to str
        Known digests, keys among ``"raw-sha256"``, ``"raw-md5"``, ``"gz-sha256"``,
        ``"gz-md5"``; lowercase hex values.
    content : (bytes, bytes), optional
        The file's bytes as stored and uncompressed, when already read.

    Returns
    -------
    bytes
        The uncompressed content.

    Raises
    ------
    DataError
        On a mismatch, naming the file, the expected and the computed digest.

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
    stored, raw = _read_bytes(path) if content is None else content
    _check_sums(str(path), path.suffix == ".gz", stored, raw, sums)
    return raw


def _check_sums(name: str, gz: bool, stored: bytes, raw: bytes, sums: Mapping[str, str]) -> None:
    """Raise DataError unless a known digest in `sums` matches (see :func:`verify`)."""
    forms = {"raw": raw, "gz": stored if gz else None}
    checked = []
    for key in ("raw-sha256", "raw-md5", "gz-sha256", "gz-md5"):
        form, algo = key.split("-")
        if key not in sums or forms[form] is None:
            continue
        got = _digest(algo, forms[form])
        if got == sums[key].lower():
            return
        checked.append((key, got))
    if not checked:
        return
    found = dict(checked)
    preferred = ("gz-sha256", "raw-sha256") if gz else ("raw-sha256",)
    key = next((k for k in preferred if k in found), checked[0][0])
    form, algo = key.split("-")
    what = "" if form == ("gz" if gz else "raw") else " of its uncompressed content"
    raise DataError(
        f"{name}: {algo.upper().replace('SHA', 'SHA-')}{what} is {found[key]}, expected "
        f"{sums[key]}; delete it and run again with --download"
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


def _download(url: str, final: Path, sums: Mapping[str, str], progress: bool | None,
              timeout: float) -> None:
    """Fetch `url` into `final` through a temporary file renamed only once verified."""
    bar_wanted = _want_bar(progress)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    tmp = Path(tmp_name)
    bar = None
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    if bar_wanted:
                        from tqdm import tqdm

                        bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                                   desc=final.name, file=sys.stderr, leave=False)
                    elif progress is not False:
                        print(f"downloading {url}", file=sys.stderr, flush=True)
                    received = 0
                    while chunk := response.read(_CHUNK):
                        out.write(chunk)
                        received += len(chunk)
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
        content = _read_bytes(tmp, url)
        parse_idx(content[1], url)
        try:
            _check_sums(url, True, *content, sums)
        except DataError:
            raise DataError(
                f"{url}: the download does not match the known checksum "
                f"({_short_sums(sums)}; got gz-sha256 {_digest('sha256', content[0])}); "
                "nothing was saved; try again, or another --mirror"
            ) from None
        os.replace(tmp, final)
    finally:
        if bar is not None:
            bar.close()
        tmp.unlink(missing_ok=True)


def _short_sums(sums: Mapping[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sums.items() if k.endswith("sha256")) or ", ".join(
        f"{k} {v}" for k, v in sums.items())


def fetch(dataset: str, data_dir: str | os.PathLike, mirror: str | None = None, *,
          checksums: Mapping[str, Mapping[str, str]] | None = None,
          progress: bool | None = None, timeout: float = 60.0) -> list[Path]:
    """Download the missing IDX files of a dataset into a folder.

    Each missing file ``<name>`` (neither ``<name>`` nor ``<name>.gz`` present) is
    fetched from ``<mirror><name>.gz`` into a temporary file in `data_dir`, checked
    against its known digests, and only then renamed to ``<name>.gz``: a failed,
    corrupt or interrupted (Ctrl-C) download leaves no file behind.

    Parameters
    ----------
    dataset : str
        ``"mnist"`` or ``"fashion-mnist"``.
    data_dir : str or os.PathLike
        Folder to download into; created if needed.
    mirror : str, optional
        Base URL (``http(s)://`` or ``file://``); default :data:`MIRRORS` of the dataset.
    checksums : mapping, optional
        Known digests per file name (without ``.gz``), as in :data:`CHECKSUMS`
        (the default: ``CHECKSUMS[dataset]``). A file with no known digest is
        checked only for being a complete IDX file.
    progress : bool, optional
        True: a tqdm progress bar (a plain line without tqdm); False: silent;
        None: a bar when stderr is a terminal and tqdm is installed, else one
        plain line per file.
    timeout : float, default: 60
        Seconds to wait for the server on each connection or read.

    Returns
    -------
    list of pathlib.Path
        The files downloaded (none when all were present).

    Raises
    ------
    DataError
        On a network error (naming the URL), a download that does not match its
        checksum, or a folder that cannot be written.

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
    sums_all = CHECKSUMS[name] if checksums is None else checksums
    base = MIRRORS[name] if mirror is None else str(mirror)
    if not base.endswith("/"):
        base += "/"
    folder = Path(data_dir).expanduser()
    missing = [stem for stem in IDX_FILES if _find(folder, stem) is None]
    if not missing:
        return []
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the data folder {folder}: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK):
        raise DataError(f"cannot write to the data folder {folder}; give a writable --data-dir")
    fetched = []
    for stem in missing:
        final = folder / f"{stem}.gz"
        _download(base + final.name, final, sums_all.get(stem, {}), progress, timeout)
        fetched.append(final)
    return fetched


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
    return f"{name} data not found: missing {', '.join(missing)} {where}; {hint}"


def _load_idx_dataset(name: str, data_dir: Any, download: bool, mirror: str | None,
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
        arrays[stem] = (path, parse_idx(verify(path, CHECKSUMS[name][stem]), str(path)))
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
                download: bool = False, mirror: str | None = None, downsample: int = 1,
                permute: bool = True, val_fraction: float = 0.1, seed: int = 0,
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
    mirror : str, optional
        Base URL of the download; default :data:`MIRRORS`.
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
