"""CIFAR-10 from the standard python-version archive, checked before anything is unpickled.

The archive ``cifar-10-python.tar.gz`` (170 498 071 bytes, MD5
``c58f30108f718f92721af3b95e74349a``, from https://www.cs.toronto.edu/~kriz/cifar.html)
holds ``cifar-10-batches-py/data_batch_1`` … ``data_batch_5`` (the 50 000
training images) and ``test_batch`` (10 000), each a pickled dict whose
``b"data"`` is a ``uint8`` array of shape (10000, 3072) — the red, green and
blue 32×32 planes of an image in a row — and ``b"labels"`` a list of 10 000
labels 0..9 (plus ``batches.meta``, the class names).

:func:`load_cifar10` refuses the archive unless its size and MD5 are the
published ones, *before* it opens the tar file, and reads the batches from
memory (nothing is extracted to disk) with :class:`RestrictedUnpickler`: it
refuses every global a pickle asks for, except the four names that a pickled
NumPy array of plain numbers needs (``numpy.core.multiarray._reconstruct``,
``numpy.ndarray``, ``numpy.dtype`` and, for pickles written by Python 3 at
protocol 2, ``_codecs.encode`` of latin-1 text; ``numpy.core.numeric._frombuffer``
at protocol 5). Even those are not NumPy's own functions: they are inert stand-ins
of this module that only record a shape, a dtype name and the raw bytes, from
which the array is rebuilt with :func:`numpy.frombuffer` after the pickle is
read. So a damaged or hostile batch can produce an error, never run code.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .datasets import DataError, data_dirs

__all__ = [
    "ARCHIVE",
    "MD5",
    "MEAN",
    "SIZE",
    "STD",
    "URL",
    "Cifar10",
    "RestrictedUnpickler",
    "find_archive",
    "load_cifar10",
    "restricted_loads",
    "verify_archive",
]

#: File name of the python-version archive.
ARCHIVE = "cifar-10-python.tar.gz"
#: Its published MD5 digest and size in bytes.
MD5 = "c58f30108f718f92721af3b95e74349a"
SIZE = 170_498_071
#: Where it is published.
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
#: Per-channel mean and standard deviation used to normalise the images (those of the
#: projUNN paper's public code, ``convolutional_experiment.py``).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)

_FOLDER = "cifar-10-batches-py"
_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST = "test_batch"
#: The largest member read (the real batches are 31 MB): bounds the memory a forged
#: archive with a caller-supplied checksum can ask for.
_MAX_MEMBER = 64 << 20
_CHUNK = 1 << 20
#: dtype names a pickled array may have (plain numbers only).
_DTYPES = {"u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f4", "f8", "b1"}


@dataclass(frozen=True)
class Cifar10:
    """The ten-class CIFAR images.

    Attributes
    ----------
    train_x, test_x : numpy.ndarray
        ``(N, 3, 32, 32)`` uint8 images (50 000 and 10 000 in the real archive).
    train_y, test_y : numpy.ndarray
        ``(N,)`` int64 labels 0..9.
    classes : tuple of str
        The class names from ``batches.meta`` (empty when it is absent).
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...] = ()


# --------------------------------------------------------------- restricted pickles
class _NDArrayToken:
    """Stands for ``numpy.ndarray`` in a pickle: only :func:`_reconstruct` accepts it."""


_NDARRAY = _NDArrayToken()


class _DType:
    """Stand-in of ``numpy.dtype(name, align, copy)``: records the name and byte order."""

    def __init__(self, name: Any, align: Any = False, copy: Any = False):
        text = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        if not isinstance(text, str) or text not in _DTYPES:
            raise pickle.UnpicklingError(f"refused array dtype {name!r}: only plain numbers")
        self.name = text
        self.order = "|" if text in ("u1", "i1", "b1") else "<"

    def __setstate__(self, state: Any) -> None:
        order = state[1] if isinstance(state, tuple) and len(state) > 1 else "|"
        order = order.decode("ascii", "replace") if isinstance(order, bytes) else order
        if order not in ("<", ">", "|", "="):
            raise pickle.UnpicklingError(f"refused array byte order {order!r}")
        self.order = order

    def numpy(self) -> np.dtype:
        return np.dtype(("=" if self.order == "|" else self.order) + self.name)


class _Array:
    """Stand-in of a pickled ndarray: its shape, dtype, order and raw bytes."""

    def __init__(self) -> None:
        self.shape: tuple[int, ...] | None = None
        self.dtype: _DType | None = None
        self.fortran = False
        self.raw: bytes | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise pickle.UnpicklingError("refused array state: not (version, shape, dtype, "
                                         "fortran, data)")
        shape, dtype, fortran, raw = state[-4:]
        self._set(shape, dtype, fortran, raw)

    def _set(self, shape: Any, dtype: Any, fortran: Any, raw: Any) -> None:
        if not (isinstance(shape, tuple) and all(isinstance(d, int) and 0 <= d for d in shape)):
            raise pickle.UnpicklingError(f"refused array shape {shape!r}")
        if not isinstance(dtype, _DType):
            raise pickle.UnpicklingError("refused array: its dtype is not a plain number type")
        if isinstance(raw, bytearray):
            raw = bytes(raw)
        if not isinstance(raw, bytes):
            raise pickle.UnpicklingError("refused array: its data is not raw bytes")
        self.shape, self.dtype, self.fortran, self.raw = shape, dtype, bool(fortran), raw

    def numpy(self) -> np.ndarray:
        if self.raw is None or self.shape is None or self.dtype is None:
            raise pickle.UnpicklingError("an array without its data")
        dtype = self.dtype.numpy()
        count = int(np.prod(self.shape, dtype=np.int64))
        if count * dtype.itemsize != len(self.raw):
            raise pickle.UnpicklingError(f"array of shape {self.shape} and dtype {dtype} "
                                         f"with {len(self.raw)} bytes of data")
        flat = np.frombuffer(self.raw, dtype=dtype, count=count)
        return flat.reshape(self.shape, order="F" if self.fortran else "C").copy()


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> _Array:
    if cls is not _NDARRAY:
        raise pickle.UnpicklingError("refused _reconstruct of anything but numpy.ndarray")
    return _Array()


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> _Array:
    out = _Array()
    out._set(tuple(shape) if isinstance(shape, list) else shape, dtype, order == "F",
             bytes(buf) if isinstance(buf, bytes | bytearray) else buf)
    return out


def _encode(text: Any, encoding: Any = "latin1") -> bytes:
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refused _codecs.encode of anything but latin-1 text")
    return text.encode("latin1")


#: The only globals a pickle may name, each mapped to an inert stand-in of this module.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DType,
    ("_codecs", "encode"): _encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler of plain data: dicts, lists, tuples, numbers, bytes, str and number arrays.

    Every global is refused (:class:`pickle.UnpicklingError`) except the few of
    :data:`_ALLOWED`, which map to stand-ins that record an array's shape, dtype
    and bytes (see the module docstring); :func:`restricted_loads` turns them into
    NumPy arrays afterwards. Python 2 strings are read as bytes
    (``encoding="bytes"``), as the CIFAR batches need.
    """

    def __init__(self, file: Any):
        super().__init__(file, encoding="bytes")

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - pickle's hook
        found = _ALLOWED.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: only plain data "
                                         "and number arrays are read")
        return found


def _materialise(obj: Any, depth: int = 0) -> Any:
    if depth > 50:
        raise pickle.UnpicklingError("nested too deeply")
    if isinstance(obj, _Array):
        return obj.numpy()
    if isinstance(obj, _DType | _NDArrayToken):
        raise pickle.UnpicklingError("a dtype or class where data was expected")
    if isinstance(obj, dict):
        return {k: _materialise(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialise(v, depth + 1) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialise(v, depth + 1) for v in obj)
    return obj


def restricted_loads(data: bytes) -> Any:
    """Unpickle plain data with :class:`RestrictedUnpickler`; arrays come back as NumPy.

    Parameters
    ----------
    data : bytes
        A pickle.

    Returns
    -------
    object
        Dicts, lists, tuples, numbers, bytes, str and NumPy arrays of numbers.

    Raises
    ------
    pickle.UnpicklingError
        For any global outside the allowed few, and for malformed arrays.

    Examples
    --------
    >>> import pickle, numpy as np
    >>> from unitary_lowrank.cli.tasks.cifar import restricted_loads
    >>> d = restricted_loads(pickle.dumps({b"data": np.arange(6, dtype=np.uint8).reshape(2, 3)},
    ...                                   protocol=2))
    >>> d[b"data"].tolist()
    [[0, 1, 2], [3, 4, 5]]
    >>> try:
    ...     restricted_loads(pickle.dumps(print))
    ... except pickle.UnpicklingError as exc:
    ...     print(exc)
    refused global builtins.print: only plain data and number arrays are read
    """
    return _materialise(RestrictedUnpickler(io.BytesIO(data)).load())


# -------------------------------------------------------------------------- archive
def find_archive(data_dir: str | os.PathLike | None = None) -> Path:
    """The path of ``cifar-10-python.tar.gz``, or :class:`DataError` saying where to put it.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        The folder to look in (``--data-dir``); default: the folders of
        :func:`~unitary_lowrank.cli.tasks.datasets.data_dirs` for ``cifar10``
        (``$UNITARY_LOWRANK_DATA/cifar10``, else ``~/.cache/unitary_lowrank/cifar10``).

    Returns
    -------
    pathlib.Path
    """
    dirs = data_dirs("cifar10", data_dir)
    for d in dirs:
        if (d / ARCHIVE).is_file():
            return d / ARCHIVE
    raise DataError(f"CIFAR-10 not found: put {ARCHIVE} (the python version, {SIZE} bytes, "
                    f"MD5 {MD5}, from {URL}) in {dirs[0]}, or give --data-dir the folder "
                    "that holds it")


def verify_archive(path: str | os.PathLike, *, md5: str = MD5, size: int = SIZE) -> None:
    """Raise :class:`DataError` unless the file has the expected size and MD5 digest.

    The size is checked first (no read), then the digest of the whole file.

    Parameters
    ----------
    path : str or os.PathLike
        The archive.
    md5 : str, default: :data:`MD5`
        Expected hexadecimal MD5 digest.
    size : int, default: :data:`SIZE`
        Expected size in bytes.
    """
    path = Path(path)
    try:
        actual = path.stat().st_size
        if actual != size:
            raise DataError(f"{path}: {actual} bytes, expected {size} (the python-version "
                            f"archive {ARCHIVE} from {URL}); a partial or different download?")
        digest = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if digest.hexdigest() != md5.lower():
        raise DataError(f"{path}: MD5 {digest.hexdigest()}, expected {md5} (a corrupt or "
                        f"different file; download {URL} again)")


def _read_members(path: Path) -> dict[str, bytes]:
    """The bytes of the batch files of the archive, by base name (nothing written to disk)."""
    wanted = set(_TRAIN) | {_TEST, "batches.meta"}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for member in tar:
                parts = member.name.split("/")
                base = parts[-1]
                if base not in wanted or not member.isfile() or base in found:
                    continue
                if len(parts) > 1 and parts[-2] != _FOLDER:
                    continue
                if member.size > _MAX_MEMBER:
                    raise DataError(f"{path}: member {member.name} is {member.size} bytes, "
                                    "more than a CIFAR-10 batch")
                handle = tar.extractfile(member)
                if handle is None:
                    continue
                found[base] = handle.read(_MAX_MEMBER + 1)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable tar.gz archive ({exc})") from None
    missing = [name for name in (*_TRAIN, _TEST) if name not in found]
    if missing:
        raise DataError(f"{path}: the archive has no {', '.join(missing)} in {_FOLDER}/")
    return found


def _batch(name: str, data: bytes, path: Path) -> tuple[np.ndarray, np.ndarray]:
    where = f"{path}: {name}"
    try:
        d = restricted_loads(data)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError,
            AttributeError, KeyError, MemoryError) as exc:
        raise DataError(f"{where}: not a CIFAR batch ({' '.join(str(exc).split())})") from None
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise DataError(f"{where}: not a CIFAR batch (a dict with b'data' and b'labels')")
    x, y = d[b"data"], d[b"labels"]
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        shape = getattr(x, "shape", None)
        raise DataError(f"{where}: b'data' must be uint8 of shape (N, 3072), got "
                        f"{getattr(x, 'dtype', type(x).__name__)} of shape {shape}")
    try:
        labels = np.asarray(y)
    except (TypeError, ValueError):
        labels = np.zeros(0)
    if labels.ndim != 1 or labels.shape[0] != x.shape[0] or labels.dtype.kind not in "iu":
        raise DataError(f"{where}: b'labels' must be {x.shape[0]} integers")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{where}: a label outside 0..9")
    return x.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def load_cifar10(data_dir: str | os.PathLike | None = None, *,
                 path: str | os.PathLike | None = None, md5: str | None = None,
                 size: int | None = None) -> Cifar10:
    """Load CIFAR-10 from the python-version archive, verified before it is read.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Folder holding ``cifar-10-python.tar.gz`` (see :func:`find_archive`).
    path : str or os.PathLike, optional
        The archive itself (overrides `data_dir`).
    md5, size : str, int, optional
        The expected MD5 digest and size; default: :data:`MD5` and :data:`SIZE`
        (the published ones, read when called). A test may supply those of an
        archive it built.

    Returns
    -------
    Cifar10
        uint8 images ``(N, 3, 32, 32)`` and int64 labels.

    Raises
    ------
    DataError
        A missing archive (saying where to put it), a wrong size or digest, an
        unreadable archive, a batch that is not plain data of the expected
        shapes; one line each.
    """
    archive = Path(path) if path is not None else find_archive(data_dir)
    if not archive.is_file():
        raise DataError(f"CIFAR-10 archive {archive} not found")
    verify_archive(archive, md5=MD5 if md5 is None else md5, size=SIZE if size is None else size)
    members = _read_members(archive)
    train = [_batch(name, members[name], archive) for name in _TRAIN]
    test_x, test_y = _batch(_TEST, members[_TEST], archive)
    classes: tuple[str, ...] = ()
    if "batches.meta" in members:
        try:
            meta = restricted_loads(members["batches.meta"])
            names = meta.get(b"label_names") if isinstance(meta, dict) else None
            if isinstance(names, list) and all(isinstance(n, bytes | str) for n in names):
                classes = tuple(n.decode("utf-8", "replace") if isinstance(n, bytes) else n
                                for n in names)
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError,
                AttributeError, KeyError):
            classes = ()
    return Cifar10(np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train]),
                   test_x, test_y, classes)
