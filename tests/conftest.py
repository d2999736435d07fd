"""Backends, dtypes and hypothesis profiles shared by the whole test suite.

A test asks for the ``backend`` fixture to run on every installed array library:
NumPy, array-api-strict (its default device and its non-default ``device1``,
which refuses any conversion to NumPy, our stand-in for a GPU), torch on the
CPU, and, with the ``gpu`` marker, CuPy and torch on CUDA. Missing libraries
and devices become skips, never failures.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

# One BLAS thread for the test suite (set before NumPy is imported): the tests
# check results, not speed, and on a shared 2-core machine a second OpenBLAS
# thread made small products up to 27x slower. An explicit setting wins.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from unitary_lowrank.testing import DTYPE_NAMES, to_numpy  # noqa: E402

settings.register_profile(
    "ci",
    max_examples=25,
    deadline=None,
    derandomize=True,
    print_blob=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "dev",
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=1000,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("UNITARY_LOWRANK_HYPOTHESIS_PROFILE", "ci"))


@dataclass(frozen=True)
class Backend:
    """An array library on one device, as the tests see it."""

    name: str
    xp: ModuleType
    device: Any

    def asarray(self, x: Any) -> Any:
        """Move a NumPy array (built on the host from a seed) to this backend."""
        x = np.asarray(x)
        return self.xp.asarray(np.array(x, copy=True), device=self.device)

    def dtype(self, name: str) -> Any:
        """The dtype object of a dtype name, in this backend."""
        return getattr(self.xp, name)

    def numpy(self, x: Any) -> np.ndarray:
        """Host copy of a result (test code only)."""
        return to_numpy(x)

    def synchronize(self) -> None:
        """Wait for the device (GPU backends)."""
        if self.name.startswith("cupy"):
            import cupy

            cupy.cuda.get_current_stream().synchronize()
        elif self.name == "torch-cuda":
            import torch

            torch.cuda.synchronize()


def _make_backend(name: str) -> Backend:
    from array_api_compat import array_namespace

    if name == "numpy":
        return Backend(name, array_namespace(np.empty(0)), "cpu")
    if name.startswith("strict"):
        xps = pytest.importorskip("array_api_strict")
        dev = xps.Device("device1") if name == "strict-device1" else xps.Device("CPU_DEVICE")
        return Backend(name, xps, dev)
    if name == "torch":
        torch = pytest.importorskip("torch")
        return Backend(name, array_namespace(torch.empty(0)), torch.device("cpu"))
    if name == "torch-cuda":
        torch = pytest.importorskip("torch")
        if not torch.cuda.is_available():
            pytest.skip("no CUDA device for torch")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        return Backend(name, array_namespace(torch.empty(0)), torch.device("cuda"))
    if name == "cupy":
        cupy = pytest.importorskip("cupy")
        try:
            cupy.zeros(1).sum().get()  # importing alone does not prove there is a GPU
        except Exception as exc:  # noqa: BLE001 - any CUDA failure means "no GPU here"
            pytest.skip(f"no usable CUDA device for CuPy: {exc}")
        return Backend(name, array_namespace(cupy.empty(0)), cupy.cuda.Device())
    if name == "jax":  # x64 is turned on by the fixtures, around each test (_jax_x64)
        jax = pytest.importorskip("jax")
        return Backend(name, array_namespace(jax.numpy.empty(0)), jax.devices("cpu")[0])
    raise ValueError(name)


@contextlib.contextmanager
def _jax_x64():
    """JAX with ``jax_enable_x64`` on (float64 small cores need it), restored afterwards.

    No test sees the setting an earlier one left, so the tests pass in any order.
    """
    jax = pytest.importorskip("jax")
    old = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", True)
    try:
        yield jax
    finally:
        jax.config.update("jax_enable_x64", old)


@pytest.fixture
def jax_x64():
    """The jax module, with ``jax_enable_x64`` on for this test only."""
    with _jax_x64() as jax:
        yield jax


CPU_BACKENDS = ["numpy", "strict", "strict-device1", "torch"]
# JAX (a test dependency, optional for users): the core's backend tests (tests/test_backends.py)
# run on it too, and skip it where it is not installed; the JAX-specific behaviour (jit,
# keys, optax, default configuration) has its own files.
JAX = ["jax"] if importlib.util.find_spec("jax") is not None else []
GPU_BACKENDS = ["cupy", "torch-cuda"]


def _param(name: str):
    marks = [pytest.mark.gpu] if name in GPU_BACKENDS else []
    return pytest.param(name, id=name, marks=marks)


@pytest.fixture(params=[_param(b) for b in CPU_BACKENDS + GPU_BACKENDS])
def backend(request) -> Backend:
    """Every array library (and device) that is installed here."""
    return _make_backend(request.param)


@pytest.fixture(params=[_param(b) for b in CPU_BACKENDS + JAX + GPU_BACKENDS])
def core_backend(request):
    """Every installed array library, JAX included when it is installed (with x64 on)."""
    if request.param == "jax":
        with _jax_x64():
            yield _make_backend("jax")
    else:
        yield _make_backend(request.param)


@pytest.fixture(params=[_param(b) for b in GPU_BACKENDS])
def gpu_backend(request) -> Backend:
    """GPU backends only (skipped without a GPU)."""
    return _make_backend(request.param)


@pytest.fixture(params=DTYPE_NAMES)
def dtype(request) -> str:
    """The four supported dtypes, by name."""
    return request.param
