r"""A recurrent network with an orthogonal recurrent matrix, and its hand-written BPTT.

The network is ``h_t = σ(W_in x_t + U h_{t−1} + b)`` with ``h_0 = 0`` and a
linear readout ``y_t = V h_t + c`` (at every step, or only the last one), with
σ = ReLU or the real modReLU ``σ(z) = sign(z) · relu(|z| + b)`` (where the bias
sits inside the nonlinearity). Everything is written against the array
namespace ``xp`` (NumPy, CuPy, torch, array-api-strict), time-major and
vectorised over the batch: a forward or backward pass costs one
``batch × hidden @ hidden × hidden`` product per time step and a handful of
element-wise operations.

The gradient with respect to `U` is returned as its factors: with row vectors
``δ_t = ∂L/∂z_t`` (batch × n), ``∂L/∂U = Σ_t δ_tᵀ h_{t−1} = X Yᵀ`` where the
columns of ``X`` (n × m) are all the δ's and those of ``Y`` (n × m) all the
previous hidden states, ``m = batch · T``. The n×n matrix is never formed
unless a dense method asks for it (:func:`dense_gradient`).
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

import unitary_lowrank as ul

__all__ = [
    "INITS",
    "OUTPUT_BIASES",
    "NONLINEARITIES",
    "Cache",
    "backward",
    "cross_entropy",
    "dense_gradient",
    "forward",
    "henaff_orthogonal",
    "init_params",
    "mean_squared_error",
]

NONLINEARITIES = ("relu", "modrelu")
INITS = ("henaff", "haar", "identity")
#: How the readout's bias ``c`` starts: zero, or PyTorch's ``nn.Linear`` default
#: U(±1/√hidden) (the projUNN paper's adding and permuted MNIST scripts).
OUTPUT_BIASES = ("zero", "torch")


def henaff_orthogonal(n: int, rng: Any = None) -> np.ndarray:
    """Henaff initialisation: block-diagonal 2×2 rotations, angles drawn from U(−π, π).

    Parameters
    ----------
    n : int
        Size; for odd `n` the last diagonal entry is 1.
    rng : None, int or numpy.random.Generator, optional
        Source of randomness.

    Returns
    -------
    numpy.ndarray, shape (n, n), float64
        An orthogonal matrix.

    Examples
    --------
    >>> import numpy as np
    >>> from unitary_lowrank.cli.tasks.rnn import henaff_orthogonal
    >>> W = henaff_orthogonal(5, rng=0)
    >>> bool(np.allclose(W.T @ W, np.eye(5))), float(W[4, 4]), float(W[0, 2])
    (True, 1.0, 0.0)
    """
    gen = np.random.default_rng(rng)
    W = np.eye(n)
    theta = gen.uniform(-math.pi, math.pi, size=n // 2)
    c, s = np.cos(theta), np.sin(theta)
    i = 2 * np.arange(n // 2)
    W[i, i] = c
    W[i, i + 1] = -s
    W[i + 1, i] = s
    W[i + 1, i + 1] = c
    return W


def init_params(
    n_in: int,
    hidden: int,
    n_out: int,
    *,
    init: str = "henaff",
    nonlinearity: str = "relu",
    dtype: str = "float32",
    rng: Any = None,
    xp: ModuleType | None = None,
    device: Any = None,
    output_bias: str = "zero",
) -> dict[str, Any]:
    """Initial parameters of the network.

    `U` is orthogonal (Henaff or Haar); ``W_in`` is He-normal, ``V`` is
    Glorot-normal, ``c`` is zero (or drawn from U(±1/√hidden), PyTorch's
    default, with ``output_bias="torch"``) and ``b`` is zero for ReLU and
    drawn from U(−0.01, 0.01) for modReLU. All are drawn in float64 on the host, then cast
    and moved to `device`.

    Parameters
    ----------
    n_in, hidden, n_out : int
        Input, hidden and output sizes.
    init : {"henaff", "haar", "identity"}, default: "henaff"
        Initialisation of `U` (identity: the projUNN paper's adding task).
    nonlinearity : {"relu", "modrelu"}, default: "relu"
        The nonlinearity the biases are made for.
    dtype : {"float32", "float64"}, default: "float32"
        Dtype of the parameters.
    rng : None, int or numpy.random.Generator, optional
        Source of randomness.
    xp : array namespace, optional
        Namespace of the result; default NumPy.
    device : device, optional
        Device of the result.
    output_bias : {"zero", "torch"}, default: "zero"
        How ``c`` starts (:data:`OUTPUT_BIASES`); ``"torch"`` draws it last.

    Returns
    -------
    dict
        ``W_in`` (hidden, n_in), ``U`` (hidden, hidden), ``b`` (hidden,),
        ``V`` (n_out, hidden), ``c`` (n_out,).

    Raises
    ------
    ValueError
        If `init` or `nonlinearity` is unknown.

    Examples
    --------
    >>> from unitary_lowrank.cli.tasks.rnn import init_params
    >>> p = init_params(10, 6, 9, rng=0)
    >>> {k: v.shape for k, v in p.items()}["U"], p["U"].dtype
    ((6, 6), dtype('float32'))
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be 'relu' or 'modrelu', got {nonlinearity!r}")
    if output_bias not in OUTPUT_BIASES:
        raise ValueError(f"output_bias must be 'zero' or 'torch', got {output_bias!r}")
    if xp is None:
        from array_api_compat import array_namespace

        xp = array_namespace(np.empty(0))
    gen = np.random.default_rng(rng)
    if init == "henaff":
        U = henaff_orthogonal(hidden, gen)
    elif init == "identity":  # the projUNN paper's adding task
        U = np.eye(hidden)
    else:
        U = ul.random_unitary(hidden, dtype="float64", rng=gen)
    host = {
        "W_in": gen.standard_normal((hidden, n_in)) * math.sqrt(2.0 / n_in),
        "U": U,
        "b": (
            np.zeros(hidden)
            if nonlinearity == "relu"
            else gen.uniform(-0.01, 0.01, size=hidden)
        ),
        "V": gen.standard_normal((n_out, hidden)) * math.sqrt(2.0 / (hidden + n_out)),
        "c": np.zeros(n_out),
    }
    if output_bias == "torch":  # nn.Linear's default: U(±1/√fan_in)
        bound = 1.0 / math.sqrt(hidden)
        host["c"] = gen.uniform(-bound, bound, size=n_out)
    target = getattr(xp, dtype)
    return {
        k: xp.asarray(np.ascontiguousarray(v.astype(dtype)), dtype=target, device=device)
        for k, v in host.items()
    }


class Cache(NamedTuple):
    """What the backward pass needs from the forward pass."""

    inputs: Any  # (T, batch, n_in)
    H: Any  # (T + 1, batch, n): h_0 = 0, h_1 .. h_T
    Z: Any  # (T, batch, n) pre-activations (modReLU only, else None)
    readout: str  # "all" or "last"


def _matT(x: Any, xp: ModuleType) -> Any:
    return xp.matrix_transpose(x)


def forward(
    params: dict[str, Any],
    inputs: Any,
    *,
    nonlinearity: str = "relu",
    readout: str = "all",
    xp: ModuleType,
) -> tuple[Any, Cache]:
    """Run the network over a batch of sequences.

    Parameters
    ----------
    params : dict
        Parameters as made by :func:`init_params`.
    inputs : array, shape (T, batch, n_in)
        Time-major inputs.
    nonlinearity : {"relu", "modrelu"}, default: "relu"
        The nonlinearity σ.
    readout : {"all", "last"}, default: "all"
        Read out every step (copy task) or only the last one (adding).
    xp : array namespace
        Namespace of the arrays.

    Returns
    -------
    outputs : array, shape (T, batch, n_out) or (batch, n_out)
        The readout.
    cache : Cache
        Hidden states (and pre-activations) for :func:`backward`.

    Examples
    --------
    >>> import numpy as np, array_api_compat.numpy as xp
    >>> from unitary_lowrank.cli.tasks.rnn import init_params, forward
    >>> p = init_params(2, 4, 1, rng=0, dtype="float64")
    >>> y, cache = forward(p, np.ones((5, 3, 2)), readout="last", xp=xp)
    >>> y.shape, cache.H.shape
    ((3, 1), (6, 3, 4))
    """
    W_in, U, b, V, c = (params[k] for k in ("W_in", "U", "b", "V", "c"))
    T, B, n_in = inputs.shape
    n = U.shape[0]
    E = xp.reshape(xp.reshape(inputs, (T * B, n_in)) @ _matT(W_in, xp), (T, B, n))
    UT = _matT(U, xp)
    dev = _device(U)
    zero = xp.zeros((), dtype=U.dtype, device=dev)
    # Preallocated and written step by step (NumPy, CuPy, torch and array-api-strict
    # all support item assignment): stacking T arrays at the end would copy them all.
    H = xp.zeros((T + 1, B, n), dtype=U.dtype, device=dev)
    Z = None
    if nonlinearity == "relu" and _is_numpy(xp):
        # The same recurrence with NumPy's out= (no temporaries): about 15 % less CPU
        # time per pass at the default sizes, where the loop is the whole cost.
        E = E + b
        for t in range(T):
            h = H[t + 1, ...]
            np.matmul(H[t, ...], UT, out=h)
            h += E[t, ...]
            np.maximum(h, zero, out=h)
    elif nonlinearity == "relu":
        E = E + b
        for t in range(T):
            H[t + 1, ...] = xp.maximum(E[t, ...] + H[t, ...] @ UT, zero)
    elif nonlinearity == "modrelu" and _is_numpy(xp):
        # The same recurrence with out= (no temporaries), as for ReLU above.
        Z = np.empty((T, B, n), dtype=U.dtype)
        sign = np.empty((B, n), dtype=U.dtype)
        for t in range(T):
            z, h = Z[t, ...], H[t + 1, ...]
            np.matmul(H[t, ...], UT, out=z)
            z += E[t, ...]
            np.abs(z, out=h)
            h += b
            np.maximum(h, zero, out=h)
            np.sign(z, out=sign)
            h *= sign
    elif nonlinearity == "modrelu":
        Z = xp.empty((T, B, n), dtype=U.dtype, device=dev)
        for t in range(T):
            z = E[t, ...] + H[t, ...] @ UT
            Z[t, ...] = z
            H[t + 1, ...] = xp.sign(z) * xp.maximum(xp.abs(z) + b, zero)
    else:
        raise ValueError(f"nonlinearity must be 'relu' or 'modrelu', got {nonlinearity!r}")
    if readout == "all":
        out = xp.reshape(
            xp.reshape(H[1:, ...], (T * B, n)) @ _matT(V, xp) + c, (T, B, V.shape[0])
        )
    elif readout == "last":
        out = H[T, ...] @ _matT(V, xp) + c
    else:
        raise ValueError(f"readout must be 'all' or 'last', got {readout!r}")
    return out, Cache(inputs, H, Z, readout)


def _is_numpy(xp: ModuleType) -> bool:
    from array_api_compat import is_numpy_namespace

    return bool(is_numpy_namespace(xp))


def _relu_bptt_numpy(U: Any, H: Any, dH: Any, carry: Any, dZ: Any) -> None:
    """The ReLU backward loop of :func:`backward` with NumPy's out= (writes dZ)."""
    T = dZ.shape[0]
    if carry is None:
        carry = np.zeros_like(dZ[0])
    for t in range(T - 1, -1, -1):
        dz = dZ[t, ...]
        if dH is not None:
            np.add(dH[t, ...], carry, out=dz)
        else:
            dz[...] = carry
        np.copyto(dz, 0, where=H[t + 1, ...] <= 0)
        if t > 0:
            np.matmul(dz, U, out=carry)


def _modrelu_bptt_numpy(U: Any, Z: Any, b: Any, dH: Any, carry: Any, dZ: Any) -> None:
    """The modReLU backward loop of :func:`backward` with NumPy's out= (writes dZ)."""
    T = dZ.shape[0]
    if carry is None:
        carry = np.zeros_like(dZ[0])
    live = np.empty_like(dZ[0])
    for t in range(T - 1, -1, -1):
        dz = dZ[t, ...]
        if dH is not None:
            np.add(dH[t, ...], carry, out=dz)
        else:
            dz[...] = carry
        np.abs(Z[t, ...], out=live)
        live += b
        np.copyto(dz, 0, where=live <= 0)
        if t > 0:
            np.matmul(dz, U, out=carry)


def _device(x: Any) -> Any:
    from array_api_compat import device

    return device(x)


def backward(
    params: dict[str, Any],
    cache: Cache,
    d_out: Any,
    *,
    nonlinearity: str = "relu",
    xp: ModuleType,
) -> dict[str, Any]:
    """Backpropagation through time.

    Parameters
    ----------
    params : dict
        Parameters of the forward pass.
    cache : Cache
        From :func:`forward`.
    d_out : array
        Gradient of the loss with respect to the outputs of :func:`forward`.
    nonlinearity : {"relu", "modrelu"}, default: "relu"
        As in the forward pass.
    xp : array namespace
        Namespace of the arrays.

    Returns
    -------
    dict
        Gradients of ``W_in``, ``b``, ``V``, ``c`` as arrays, and of ``U`` as
        the pair ``(X, Y)`` of n × (batch·T) factors with ``∂L/∂U = X @ Yᵀ``.

    Examples
    --------
    >>> import numpy as np, array_api_compat.numpy as xp
    >>> from unitary_lowrank.cli.tasks.rnn import init_params, forward, backward, dense_gradient
    >>> p = init_params(2, 4, 1, rng=0, dtype="float64")
    >>> y, cache = forward(p, np.ones((5, 3, 2)), readout="last", xp=xp)
    >>> g = backward(p, cache, np.ones_like(y), xp=xp)
    >>> X, Y = g["U"]
    >>> X.shape, dense_gradient(g["U"], xp=xp).shape
    ((4, 15), (4, 4))
    """
    U, V = params["U"], params["V"]
    H, Z = cache.H, cache.Z
    T, B, n_in = cache.inputs.shape
    n = U.shape[0]
    n_out = V.shape[0]
    zero = xp.zeros((), dtype=U.dtype, device=_device(U))
    if cache.readout == "all":
        d_flat = xp.reshape(d_out, (T * B, n_out))
        dV = _matT(d_flat, xp) @ xp.reshape(H[1:, ...], (T * B, n))
        dc = xp.sum(d_flat, axis=0)
        dH = xp.reshape(d_flat @ V, (T, B, n))
    else:
        dV = _matT(d_out, xp) @ H[T, ...]
        dc = xp.sum(d_out, axis=0)
        dH = None
    carry = d_out @ V if cache.readout == "last" else None
    dZ = xp.empty((T, B, n), dtype=U.dtype, device=_device(U))
    if nonlinearity == "relu" and _is_numpy(xp):
        _relu_bptt_numpy(U, H, dH, carry, dZ)
    elif nonlinearity == "modrelu" and _is_numpy(xp):
        _modrelu_bptt_numpy(U, Z, params["b"], dH, carry, dZ)
    else:
        for t in range(T - 1, -1, -1):
            if dH is not None:
                g = dH[t, ...] if carry is None else dH[t, ...] + carry
            else:
                g = carry
            if nonlinearity == "relu":
                dz = xp.where(H[t + 1, ...] > zero, g, zero)
            else:
                dz = xp.where(xp.abs(Z[t, ...]) + params["b"] > zero, g, zero)
            dZ[t, ...] = dz
            if t > 0:
                carry = dz @ U
    dZ_flat = xp.reshape(dZ, (T * B, n))
    if nonlinearity == "relu":
        db = xp.sum(dZ_flat, axis=0)
    else:
        db = xp.sum(dZ_flat * xp.sign(xp.reshape(Z, (T * B, n))), axis=0)
    dW_in = _matT(dZ_flat, xp) @ xp.reshape(cache.inputs, (T * B, n_in))
    X = _matT(dZ_flat, xp)
    Y = _matT(xp.reshape(H[:-1, ...], (T * B, n)), xp)
    return {"W_in": dW_in, "U": (X, Y), "b": db, "V": dV, "c": dc}


def dense_gradient(factors: tuple[Any, Any], *, xp: ModuleType) -> Any:
    """The n×n gradient ``X @ Yᵀ`` from its factors (costs n²·batch·T).

    Parameters
    ----------
    factors : tuple of arrays
        ``(X, Y)`` from :func:`backward`.
    xp : array namespace
        Namespace of the arrays.

    Returns
    -------
    array, shape (n, n)
        ``X @ Yᵀ``.

    Examples
    --------
    >>> import numpy as np, array_api_compat.numpy as xp
    >>> from unitary_lowrank.cli.tasks.rnn import dense_gradient
    >>> dense_gradient((np.ones((2, 3)), np.ones((2, 3))), xp=xp)
    array([[3., 3.],
           [3., 3.]])
    """
    X, Y = factors
    return X @ _matT(Y, xp)


def cross_entropy(logits: Any, targets: Any, *, xp: ModuleType) -> tuple[Any, Any]:
    """Mean cross-entropy over all steps and sequences, and its gradient.

    Parameters
    ----------
    logits : array, shape (T, batch, n_classes) or (batch, n_classes)
        Unnormalised log-probabilities: at every step (``readout="all"``) or at
        the last one only (``readout="last"``, e.g. classification).
    targets : array, same shape as `logits`
        One-hot targets, same dtype as `logits`.
    xp : array namespace
        Namespace of the arrays.

    Returns
    -------
    loss : array, shape ()
        The mean over T·batch (or batch) of ``−log p(target)``.
    d_logits : array
        Its gradient with respect to `logits`.

    Examples
    --------
    >>> import numpy as np, array_api_compat.numpy as xp
    >>> from unitary_lowrank.cli.tasks.rnn import cross_entropy
    >>> loss, d = cross_entropy(np.zeros((1, 1, 8)), np.eye(8)[None, :1], xp=xp)
    >>> round(float(loss), 4)  # ln 8
    2.0794
    """
    m = xp.max(logits, axis=-1, keepdims=True)
    z = logits - m
    logp = z - xp.log(xp.sum(xp.exp(z), axis=-1, keepdims=True))
    count = math.prod(logits.shape[:-1])
    loss = -xp.sum(targets * logp) / count
    return loss, (xp.exp(logp) - targets) / count


def mean_squared_error(pred: Any, targets: Any, *, xp: ModuleType) -> tuple[Any, Any]:
    """Mean squared error of a single output per sequence, and its gradient.

    Parameters
    ----------
    pred : array, shape (batch, 1)
        Predictions.
    targets : array, shape (batch,)
        Targets.
    xp : array namespace
        Namespace of the arrays.

    Returns
    -------
    loss : array, shape ()
        ``mean((pred − targets)²)``.
    d_pred : array, shape (batch, 1)
        Its gradient with respect to `pred`.

    Examples
    --------
    >>> import numpy as np, array_api_compat.numpy as xp
    >>> from unitary_lowrank.cli.tasks.rnn import mean_squared_error
    >>> loss, d = mean_squared_error(np.ones((2, 1)), np.array([1.0, 3.0]), xp=xp)
    >>> float(loss), d.ravel().tolist()
    (2.0, [0.0, -2.0])
    """
    r = pred[:, 0] - targets
    B = r.shape[0]
    return xp.sum(r * r) / B, xp.reshape(r * (2.0 / B), (B, 1))
