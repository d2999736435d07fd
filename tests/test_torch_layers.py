"""The PyTorch layers and initialisers of unitary_lowrank._torch_layers.

Each layer is checked against an independent dense reference: the convolution
against ``torch.nn.functional.conv2d`` of its spatial kernel with circular
padding (and that kernel against NumPy's DFT of the blocks), the RNN against a
NumPy loop in double precision, modReLU against its formula; then norm
preservation, gradients against finite differences (gradcheck in float64 and
complex128), state_dict round trips, dtype conversions, and a few ProjUNN steps
of rank 1 on the marked parameters.
"""

from __future__ import annotations

import copy
import io
import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402

import unitary_lowrank as ul  # noqa: E402
from unitary_lowrank._torch_layers import (  # noqa: E402
    ModReLU,
    OrthogonalConv2d,
    OrthogonalRNN,
    is_constrained,
    orthogonal_,
    param_groups,
    unitary_,
)
from unitary_lowrank.testing import (  # noqa: E402
    compare_tol,
    eps_of,
    rounded_unitarity_bound,
    unitarity_bound,
)
from unitary_lowrank.torch import ProjUNN  # noqa: E402

DTYPES = [torch.float32, torch.float64, torch.complex64, torch.complex128]
REAL = {torch.float32: torch.float32, torch.float64: torch.float64,
        torch.complex64: torch.float32, torch.complex128: torch.float64}


def ids(dtype) -> str:
    return str(dtype).rsplit(".", 1)[-1]


def host(t) -> np.ndarray:
    """A double-precision NumPy copy."""
    t = t.detach()
    return t.to(torch.complex128 if t.is_complex() else torch.float64).numpy()


def orth_error(W) -> float:
    """‖WᴴW − I‖₂ (tall) or ‖WWᴴ − I‖₂ (wide), worst over a batch."""
    W = W.detach()
    return float(ul.unitarity_error(W.mH if W.shape[-1] > W.shape[-2] else W).max())


def randn(shape, dtype, gen):
    return torch.randn(shape, dtype=dtype, generator=gen)


# ------------------------------------------------------------------- unitary_
@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
@pytest.mark.parametrize("shape", [(5, 5), (7, 3), (3, 7), (2, 3, 4, 4), (1, 1)])
def test_unitary_fills_in_place_with_orthonormal_columns_or_rows(dtype, shape):
    t = torch.full(shape, float("nan"), dtype=dtype)
    out = unitary_(t, generator=torch.Generator().manual_seed(0))
    assert out is t and t.dtype == dtype
    assert orth_error(t) <= rounded_unitarity_bound(max(shape[-2:]), dtype)


def test_unitary_follows_the_global_generator_and_a_given_one_leaves_it_alone():
    torch.manual_seed(5)
    a = unitary_(torch.empty(4, 4))
    torch.manual_seed(5)
    b = unitary_(torch.empty(4, 4))
    assert torch.equal(a, b)
    state = torch.get_rng_state()
    c = unitary_(torch.empty(4, 4, dtype=torch.float64), torch.Generator().manual_seed(1))
    d = unitary_(torch.empty(4, 4, dtype=torch.float64), torch.Generator().manual_seed(1))
    assert torch.equal(c, d) and torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128], ids=ids)
@pytest.mark.parametrize("shape", [(3, 3), (4, 2), (2, 4)])
def test_unitary_is_haar_distributed(dtype, shape):
    """Moments of Haar samples: E[Q₀₀] = 0 and, for square Q, E|tr Q|² = 1.

    A plain QR of a Gaussian (without the phases of R's diagonal) gives Q₀₀ < 0
    always, far outside these bounds.
    """
    N = 20000
    Q = unitary_(torch.empty(N, *shape, dtype=dtype), torch.Generator().manual_seed(3))
    n = max(shape)
    q00 = host(Q[:, 0, 0])
    assert abs(q00.mean()) < 5 * math.sqrt(1 / n / N)  # E|Q₀₀|² = 1/n
    if shape[0] == shape[1]:
        tr2 = np.abs(np.trace(host(Q), axis1=1, axis2=2)) ** 2
        assert abs(tr2.mean() - 1) < 5 * tr2.std() / math.sqrt(N)


def test_unitary_refuses_bad_arguments():
    with pytest.raises(ValueError, match=r"tensor must have shape \(\.\.\., n, p\).*\(4,\)"):
        unitary_(torch.empty(4))
    with pytest.raises(TypeError, match="tensor must have a floating or complex dtype.*int64"):
        unitary_(torch.empty(3, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="tensor must be a torch.Tensor, got ndarray"):
        unitary_(np.eye(3))
    with pytest.raises(TypeError, match="generator must be None or a torch.Generator, got int"):
        unitary_(torch.empty(3, 3), generator=0)
    empty = torch.empty(0, 3, 3)
    assert unitary_(empty) is empty


# ---------------------------------------------------------- orthogonal_, marks
@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
@pytest.mark.parametrize("sizes", [(5, 5), (8, 3), (3, 8)])
def test_orthogonal_initialises_and_marks_a_linear_weight(dtype, sizes):
    lin = torch.nn.Linear(*sizes, dtype=dtype)
    assert orthogonal_(lin, generator=torch.Generator().manual_seed(0)) is lin
    assert orth_error(lin.weight) <= rounded_unitarity_bound(max(sizes), dtype)
    assert is_constrained(lin.weight) and not is_constrained(lin.bias)
    assert lin.weight.requires_grad


def test_orthogonal_takes_a_dotted_name_and_a_batch():
    model = torch.nn.Sequential(torch.nn.RNN(3, 6), torch.nn.Linear(6, 2))
    orthogonal_(model, "0.weight_hh_l0")
    assert is_constrained(model[0].weight_hh_l0)
    assert [is_constrained(p) for p in model.parameters()].count(True) == 1
    holder = torch.nn.Module()
    holder.w = torch.nn.Parameter(torch.zeros(2, 3, 5, 4, dtype=torch.float64))
    orthogonal_(holder, "w")
    assert orth_error(holder.w) <= rounded_unitarity_bound(5, torch.float64)


def test_orthogonal_refuses_convolutions_and_bad_parameters():
    with pytest.raises(TypeError, match="Conv2d.*OrthogonalConv2d"):
        orthogonal_(torch.nn.Conv2d(3, 3, 3))
    with pytest.raises(TypeError, match="Conv1d.*OrthogonalConv2d"):
        orthogonal_(torch.nn.Sequential(torch.nn.Conv1d(2, 2, 3)), "0.weight")
    lin = torch.nn.Linear(3, 3)
    with pytest.raises(ValueError, match=r"no parameter 'weigth' \(its parameters: weight, bias"):
        orthogonal_(lin, "weigth")
    with pytest.raises(ValueError, match=r"'bias' must be a matrix.*got shape \(3,\)"):
        orthogonal_(lin, "bias")
    with pytest.raises(ValueError, match="no submodule 'nope'"):
        orthogonal_(lin, "nope.weight")
    with pytest.raises(TypeError, match="module must be a torch.nn.Module, got Parameter"):
        orthogonal_(lin.weight)
    with pytest.raises(TypeError, match="name must be a non-empty str"):
        orthogonal_(lin, 0)
    with pytest.raises(TypeError, match="must be float32, float64.*got torch.float16"):
        orthogonal_(torch.nn.Linear(3, 3, dtype=torch.float16))
    with pytest.raises(TypeError, match="p must be a torch.Tensor"):
        is_constrained("weight")
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        param_groups([lin.weight])


def _marked(model) -> list[str]:
    return [name for name, p in model.named_parameters() if is_constrained(p)]


def test_marks_survive_in_place_conversions_and_module_pickling():
    model = torch.nn.Sequential(orthogonal_(torch.nn.Linear(4, 4)), OrthogonalRNN(4, 3))
    params = list(model.parameters())
    model.to(torch.float64)
    model.float()
    model.load_state_dict(copy.deepcopy(model.state_dict()))
    assert all(a is b for a, b in zip(params, model.parameters(), strict=True))
    assert _marked(model) == ["0.weight", "1.weight_hh"]
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert _marked(loaded) == ["0.weight", "1.weight_hh"]


def _swap_conversion(model):
    torch.__future__.set_swap_module_params_on_conversion(True)
    try:
        model.to(torch.float64)
    finally:
        torch.__future__.set_swap_module_params_on_conversion(False)


@pytest.mark.parametrize("recreate", [
    copy.deepcopy,
    lambda m: (m.load_state_dict(copy.deepcopy(m.state_dict()), assign=True), m)[1],
    lambda m: (_swap_conversion(m), m)[1],
], ids=["deepcopy", "assign", "swap"])
def test_marks_lost_with_a_new_parameter_come_back_from_the_module(recreate):
    """A new Parameter from torch: the attribute is gone, the module's record is not."""
    model = torch.nn.Sequential(orthogonal_(torch.nn.Linear(4, 4)),
                                OrthogonalConv2d(2, image_size=3), torch.nn.Linear(4, 1))
    other = recreate(model)
    assert _marked(other) == []  # what torch does to a Parameter's attributes
    groups = param_groups(other)
    assert [len(g["params"]) for g in groups] == [3, 3]
    assert _marked(other) == ["0.weight", "1.weight_real", "1.weight_complex"]


def test_param_groups_split_dedupe_and_skip_empty_groups():
    shared = torch.nn.Linear(3, 3)
    model = torch.nn.Sequential(shared, OrthogonalRNN(3, 5, output_size=2), shared)
    orthogonal_(shared)
    constrained, other = param_groups(model)
    assert constrained == {"params": [shared.weight, model[1].weight_hh], "constrained": True}
    assert other["constrained"] is False
    names = [n for n, p in model.named_parameters() if any(p is q for q in other["params"])]
    assert names == ["0.bias", "1.input_layer.weight", "1.activation.bias",
                     "1.output_layer.weight", "1.output_layer.bias"]
    only = param_groups(torch.nn.Linear(2, 2))
    assert len(only) == 1 and only[0]["constrained"] is False
    assert param_groups(torch.nn.ReLU()) == []


# --------------------------------------------------------------------- ModReLU
def modrelu_reference(z: np.ndarray, b: np.ndarray) -> np.ndarray:
    mag = np.abs(z)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.maximum(mag + b, 0) * z / mag
    return np.where(mag > 0, out, 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
def test_modrelu_matches_its_formula(dtype):
    gen = torch.Generator().manual_seed(0)
    act = ModReLU(6, dtype=dtype)
    with torch.no_grad():
        act.bias.copy_(torch.linspace(-1, 1, 6))
    z = randn((4, 6), dtype, gen)
    z[0, :3] = 0
    out = act(z)
    assert out.dtype == dtype and act.bias.dtype == REAL[dtype]
    want = modrelu_reference(host(z), host(act.bias))
    np.testing.assert_allclose(host(out), want, rtol=0, atol=compare_tol(1, dtype))
    if not dtype.is_complex:  # sign(z)·relu(|z| + b)
        ref = torch.sign(z) * torch.relu(z.abs() + act.bias)
        np.testing.assert_allclose(host(out), host(ref), atol=compare_tol(1, dtype))


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128], ids=ids)
def test_modrelu_gradients_and_the_safe_derivative_at_zero(dtype):
    gen = torch.Generator().manual_seed(1)
    act = ModReLU(5, dtype=dtype)
    b = torch.tensor([-0.3, 0.2, -0.1, 0.4, 0.05], dtype=torch.float64, requires_grad=True)
    z = randn((3, 5), dtype, gen).requires_grad_()
    f = lambda z, b: torch.func.functional_call(act, {"bias": b}, (z,))  # noqa: E731
    assert torch.autograd.gradcheck(f, (z, b))
    zero = torch.zeros(2, 5, dtype=dtype, requires_grad=True)
    bias = b.detach().clone().requires_grad_()
    out = f(zero, bias)
    (out.abs().sum() if dtype.is_complex else out.sum()).backward()
    assert torch.equal(out.detach(), torch.zeros_like(out))
    assert torch.equal(zero.grad, torch.zeros_like(zero)) and torch.equal(
        bias.grad, torch.zeros_like(bias))


def test_modrelu_without_bias_is_the_identity_and_checks_its_input():
    act = ModReLU(3, bias=False, dtype=torch.complex64)
    z = torch.randn(2, 3, dtype=torch.complex64)
    assert act.bias is None and torch.equal(act(z), z)
    with pytest.raises(ValueError, match=r"z must have shape \(\.\.\., 3\), got \(2, 4\)"):
        act(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="features must be >= 1, got 0"):
        ModReLU(0)
    with pytest.raises(TypeError, match="dtype must be torch.float32.*float16"):
        ModReLU(2, dtype=torch.float16)


# ------------------------------------------------------------------------- RNN
def rnn_reference(rnn: OrthogonalRNN, x: np.ndarray, h0: np.ndarray | None = None):
    """The recurrence written out in NumPy, double precision, batch first."""
    W = host(rnn.weight_hh)
    V = host(rnn.input_layer.weight)
    c = host(rnn.input_layer.bias) if rnn.input_layer.bias is not None else 0
    batch, steps, _ = x.shape
    h = np.zeros((batch, W.shape[0]), W.dtype) if h0 is None else h0
    states = []
    for t in range(steps):
        pre = h @ W.T + x[:, t] @ V.T + c
        if rnn.nonlinearity == "relu":
            h = np.maximum(pre, 0)
        elif rnn.nonlinearity == "tanh":
            h = np.tanh(pre)
        else:
            b = host(rnn.activation.bias) if rnn.activation.bias is not None else 0
            h = modrelu_reference(pre, b)
        states.append(h)
    out = np.stack(states, 1)
    if rnn.output_layer is not None:
        out = np.real(out @ host(rnn.output_layer.weight).T + host(rnn.output_layer.bias))
    return out, h


RNN_CASES = [(torch.float32, "relu"), (torch.float64, "tanh"), (torch.float64, "modrelu"),
             (torch.complex64, "modrelu"), (torch.complex128, "modrelu")]


@pytest.mark.parametrize(("dtype", "nonlinearity"), RNN_CASES,
                         ids=[f"{ids(d)}-{n}" for d, n in RNN_CASES])
@pytest.mark.parametrize("output_size", [None, 3])
def test_rnn_matches_a_hand_written_loop(dtype, nonlinearity, output_size):
    torch.manual_seed(0)
    hidden, steps = 6, 5
    rnn = OrthogonalRNN(4, hidden, nonlinearity=nonlinearity, dtype=dtype,
                        output_size=output_size)
    x = torch.randn(2, steps, 4, dtype=REAL[dtype])
    out, h = rnn(x)
    want_out, want_h = rnn_reference(rnn, host(x))
    tol = compare_tol(hidden * steps, dtype)
    assert out.dtype == (REAL[dtype] if output_size else dtype) and h.dtype == dtype
    assert out.shape == (2, steps, output_size or hidden)
    np.testing.assert_allclose(host(out), want_out, rtol=0, atol=tol)
    np.testing.assert_allclose(host(h), want_h, rtol=0, atol=tol)


def test_rnn_time_first_and_initial_state():
    torch.manual_seed(1)
    rnn = OrthogonalRNN(3, 4, dtype=torch.float64, batch_first=False, nonlinearity="tanh")
    x = torch.randn(6, 2, 3, dtype=torch.float64)  # (T, batch, input)
    h0 = torch.randn(2, 4, dtype=torch.float64)
    out, h = rnn(x, h0)
    want_out, want_h = rnn_reference(rnn, host(x.transpose(0, 1)), host(h0))
    assert out.shape == (6, 2, 4)
    np.testing.assert_allclose(host(out.transpose(0, 1)), want_out, atol=1e-13)
    np.testing.assert_allclose(host(h), want_h, atol=1e-13)
    empty, last = rnn(torch.zeros(0, 2, 3, dtype=torch.float64), h0)
    assert empty.shape == (0, 2, 4) and last is h0


@pytest.mark.parametrize("dtype", DTYPES, ids=ids)
@pytest.mark.parametrize("init", ["haar", "henaff", "identity"])
def test_rnn_initialisations(dtype, init):
    torch.manual_seed(2)
    hidden = 7
    W = OrthogonalRNN(2, hidden, init=init, dtype=dtype).weight_hh.detach()
    assert W.dtype == dtype
    assert orth_error(W) <= rounded_unitarity_bound(hidden, dtype)
    Wd = host(W)
    if init == "identity":
        assert np.array_equal(Wd, np.eye(hidden))
    elif init == "henaff" and dtype.is_complex:  # a diagonal of unit phases
        assert np.array_equal(Wd, np.diag(np.diag(Wd)))
    elif init == "henaff":  # 2×2 rotations on the diagonal, then a 1
        mask = np.kron(np.eye(hidden // 2), np.ones((2, 2)))
        mask = np.pad(mask, ((0, 1), (0, 1)))
        mask[-1, -1] = 1
        assert np.array_equal(Wd * (1 - mask), np.zeros_like(Wd))
        for i in range(0, hidden - 1, 2):
            block = Wd[i:i + 2, i:i + 2]
            assert block[0, 0] == block[1, 1] and block[0, 1] == -block[1, 0]
        assert Wd[-1, -1] == 1


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128], ids=ids)
def test_rnn_gradients_against_finite_differences(dtype):
    torch.manual_seed(3)
    rnn = OrthogonalRNN(2, 3, dtype=dtype, output_size=2)
    names = ["weight_hh", "input_layer.weight", "activation.bias", "output_layer.weight"]
    params = {n: p.detach().clone().requires_grad_() for n, p in rnn.named_parameters()
              if n in names}
    x = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)

    def f(x, *values):
        return torch.func.functional_call(rnn, dict(zip(names, values, strict=True)), (x,))[0]

    assert torch.autograd.gradcheck(f, (x, *params.values()))


def test_rnn_dtype_conversions_keep_complex_parameters_complex():
    torch.manual_seed(4)
    rnn = OrthogonalRNN(2, 4, dtype=torch.complex64, output_size=1)
    W = rnn.weight_hh
    rnn.to(torch.float64)  # plain torch would drop the imaginary parts here
    assert rnn.weight_hh is W and is_constrained(W) and rnn.dtype == torch.complex128
    kinds = {n: p.dtype for n, p in rnn.named_parameters()}
    assert kinds == {"input_layer.weight": torch.complex128, "weight_hh": torch.complex128,
                     "activation.bias": torch.float64, "output_layer.weight": torch.complex128,
                     "output_layer.bias": torch.complex128}
    assert orth_error(W) <= rounded_unitarity_bound(4, torch.complex64)
    x = torch.randn(3, 5, 2, dtype=torch.float64)
    want, _ = rnn_reference(rnn, host(x))
    np.testing.assert_allclose(host(rnn(x)[0]), want, atol=1e-13)
    with pytest.raises(ValueError, match="a real layer stays real"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's note on complex modules
        OrthogonalRNN(2, 3).to(torch.complex64)


def test_rnn_refuses_bad_arguments():
    with pytest.raises(ValueError, match="nonlinearity='relu' is for real layers"):
        OrthogonalRNN(2, 3, nonlinearity="relu", dtype=torch.complex64)
    with pytest.raises(ValueError, match="nonlinearity must be one of.*got 'gelu'"):
        OrthogonalRNN(2, 3, nonlinearity="gelu")
    with pytest.raises(ValueError, match="init must be one of.*got 'eye'"):
        OrthogonalRNN(2, 3, init="eye")
    with pytest.raises(TypeError, match="hidden_size must be an int, got float"):
        OrthogonalRNN(2, 3.0)
    with pytest.raises(TypeError, match="dtype must be.*torch.int32"):
        OrthogonalRNN(2, 3, dtype=torch.int32)
    rnn = OrthogonalRNN(2, 3)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, T, 2\), got \(4, 3\)"):
        rnn(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"h0 must have shape.*\(4, 3\), got \(3,\)"):
        rnn(torch.zeros(4, 5, 2), torch.zeros(3))


# ------------------------------------------------------------------------ conv
CONV_CASES = [(torch.float32, 6), (torch.float64, 5), (torch.float64, (4, 6)),
              (torch.complex64, 4), (torch.complex128, (3, 5))]


def conv_ids(case) -> str:
    return f"{ids(case[0])}-{case[1]}"


@pytest.mark.parametrize("case", CONV_CASES, ids=conv_ids)
def test_conv_matches_conv2d_with_circular_padding_of_its_kernel(case):
    dtype, size = case
    torch.manual_seed(0)
    C = 3
    layer = OrthogonalConv2d(C, image_size=size, dtype=dtype)
    H, W = layer.image_size
    x = torch.randn(2, C, H, W, dtype=dtype)
    y = layer(x)
    K = layer.kernel()
    assert K.shape == (C, C, H, W) and K.dtype == dtype and y.dtype == dtype
    want = F.conv2d(F.pad(x, layer.padding, mode="circular"), K)
    tol = compare_tol(C * H * W, dtype)
    np.testing.assert_allclose(host(y), host(want), rtol=0, atol=tol)
    same = torch.nn.Conv2d(C, C, (H, W), padding="same", padding_mode="circular", bias=False,
                           dtype=dtype)
    with torch.no_grad():
        same.weight.copy_(K)
    np.testing.assert_allclose(host(layer.to_conv2d()(x)), host(y), rtol=0, atol=tol)
    np.testing.assert_allclose(host(same(x)), host(y), rtol=0, atol=tol)


@pytest.mark.parametrize("case", CONV_CASES, ids=conv_ids)
def test_conv_blocks_are_the_dft_of_its_kernel(case):
    """NumPy's DFT of the true-convolution kernel gives the blocks at the stored frequencies."""
    dtype, size = case
    torch.manual_seed(1)
    layer = OrthogonalConv2d(2, image_size=size, dtype=dtype)
    H, W = layer.image_size
    K = host(layer.kernel())
    left, _, top, _ = layer.padding
    K0 = K[:, :, (top - np.arange(H)) % H][:, :, :, (left - np.arange(W)) % W]
    spectrum = np.fft.fft2(K0)  # (C, C, H, W), unnormalised
    f1, f2 = layer.layout.frequencies.T
    blocks = np.moveaxis(spectrum[:, :, f1, f2], -1, 0)
    tol = compare_tol(H * W, dtype)
    np.testing.assert_allclose(blocks, host(layer.blocks()), rtol=0, atol=tol)
    if not dtype.is_complex:
        S = layer.layout.n_real_blocks
        assert layer.weight_real.shape == (S, 2, 2) and not layer.weight_real.is_complex()
        np.testing.assert_allclose(blocks[:S].imag, 0, atol=tol)


@pytest.mark.parametrize("case", CONV_CASES, ids=conv_ids)
def test_conv_is_exactly_norm_preserving(case):
    """The dense operator (the layer applied to a basis) is orthogonal, and ‖conv(x)‖ = ‖x‖."""
    dtype, size = case
    torch.manual_seed(2)
    C = 2
    layer = OrthogonalConv2d(C, image_size=size, dtype=dtype)
    H, W = layer.image_size
    n = C * H * W
    basis = torch.eye(n, dtype=dtype).reshape(n, C, H, W)
    with torch.no_grad():
        op = layer(basis).reshape(n, n).T  # column j = layer(e_j)
    assert orth_error(op) <= unitarity_bound(n, dtype)
    x = torch.randn(8, C, H, W, dtype=dtype)
    with torch.no_grad():
        ratio = layer(x).flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)
    assert float((ratio - 1).abs().max()) <= unitarity_bound(n, dtype)
    assert layer.orthogonality_error() <= rounded_unitarity_bound(C, dtype)


@pytest.mark.parametrize("size", [1, 2, (1, 3), (2, 1)])
def test_conv_on_tiny_images(size):
    layer = OrthogonalConv2d(2, image_size=size, dtype=torch.float64)
    H, W = layer.image_size
    assert [n for n, p in layer.named_parameters()] == (
        ["weight_real"] if H * W <= 4 and max(H, W) <= 2 else ["weight_real", "weight_complex"])
    x = torch.randn(3, 2, H, W, dtype=torch.float64)
    np.testing.assert_allclose(float(layer(x).detach().norm()), float(x.norm()), rtol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128], ids=ids)
def test_conv_gradients_against_finite_differences(dtype):
    torch.manual_seed(3)
    layer = OrthogonalConv2d(2, image_size=(4, 3), dtype=dtype)
    names = [n for n, _ in layer.named_parameters()]
    values = [p.detach().clone().requires_grad_() for p in layer.parameters()]
    x = torch.randn(2, 2, 4, 3, dtype=dtype, requires_grad=True)

    def f(x, *values):
        return torch.func.functional_call(layer, dict(zip(names, values, strict=True)), (x,))

    assert torch.autograd.gradcheck(f, (x, *values))
    kernel = KernelOf(layer)  # the kernel is differentiable too
    assert torch.autograd.gradcheck(
        lambda *v: torch.func.functional_call(
            kernel, {f"layer.{n}": t for n, t in zip(names, v, strict=True)}, ()),
        tuple(values))


class KernelOf(torch.nn.Module):
    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self):
        return self.layer.kernel()


def test_conv_identity_init_and_kernel_size():
    layer = OrthogonalConv2d(2, 5, image_size=5, dtype=torch.float64, init="identity")
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    assert torch.allclose(layer(x), x, atol=1e-15)
    OrthogonalConv2d(2, (4, 6), image_size=(4, 6))
    with pytest.raises(ValueError, match=r"kernel_size must be None or the image size \(8, 8\)"
                                         r", got 3: .*full-size kernel"):
        OrthogonalConv2d(2, 3, image_size=8)
    with pytest.raises(ValueError, match="init must be 'haar' or 'identity', got 'eye'"):
        OrthogonalConv2d(2, image_size=4, init="eye")
    with pytest.raises(ValueError, match=r"image_size must be an int N or a pair"):
        OrthogonalConv2d(2, image_size=(4, 4, 4))
    with pytest.raises(ValueError, match="channels must be >= 1, got 0"):
        OrthogonalConv2d(0, image_size=4)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 2, 4, 4\).*\(1, 3, 4, 4\)"):
        OrthogonalConv2d(2, image_size=4)(torch.zeros(1, 3, 4, 4))


def test_conv_dtype_conversions_keep_the_kind_and_the_marks():
    torch.manual_seed(4)
    layer = OrthogonalConv2d(2, image_size=4)
    real, comp = layer.weight_real, layer.weight_complex
    layer.to(torch.float64)
    assert (real.dtype, comp.dtype) == (torch.float64, torch.complex128)
    assert layer.weight_real is real and layer.weight_complex is comp
    assert is_constrained(real) and is_constrained(comp) and layer.dtype == torch.float64
    layer.float()
    assert (real.dtype, comp.dtype) == (torch.float32, torch.complex64)
    x = torch.randn(3, 2, 4, 4)
    assert abs(float(layer(x).detach().norm() / x.norm()) - 1) <= unitarity_bound(32, torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's note on complex modules
        with pytest.raises(ValueError, match="a real layer stays real"):
            layer.to(torch.complex64)
    with pytest.raises(ValueError, match="float32 and float64 precision.*torch.float16"):
        layer.half()
    assert (real.dtype, comp.dtype) == (torch.float32, torch.complex64)
    unitary = OrthogonalConv2d(2, image_size=3, dtype=torch.complex64)
    unitary.double()
    assert unitary.weight_complex.dtype == torch.complex128


@pytest.mark.parametrize("make", [
    lambda: OrthogonalConv2d(3, image_size=4, dtype=torch.float64),
    lambda: OrthogonalConv2d(2, image_size=(3, 4), dtype=torch.complex64),
    lambda: OrthogonalRNN(2, 5, dtype=torch.complex128, output_size=2),
    lambda: OrthogonalRNN(2, 5, nonlinearity="relu"),
], ids=["conv-real", "conv-complex", "rnn-complex", "rnn-real"])
def test_state_dict_round_trip(make):
    torch.manual_seed(5)
    a = make()
    torch.manual_seed(6)
    b = make()
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.randn(2, 3, 2) if isinstance(a, OrthogonalRNN) else torch.randn(
        2, a.channels, *a.image_size, dtype=a.dtype)
    ya, yb = a(x), b(x)
    if isinstance(a, OrthogonalRNN):
        ya, yb = ya[0], yb[0]
    assert torch.equal(ya, yb)
    assert _marked(b) == _marked(a) != []


# -------------------------------------------------------------------- training
def test_projunn_keeps_the_marked_weights_unitary_and_the_conv_norm_preserving():
    """Rank-1 ProjUNN on the marked weights, Adam on the rest: a few steps, float32."""
    torch.manual_seed(7)
    C, N, steps = 3, 6, 6
    conv = OrthogonalConv2d(C, image_size=N)
    rnn = OrthogonalRNN(C * N, 8, dtype=torch.complex64, output_size=1)
    model = torch.nn.ModuleDict({"conv": conv, "rnn": rnn})
    constrained, other = param_groups(model)
    assert len(constrained["params"]) == 3  # weight_real, weight_complex, weight_hh
    opt_u = ProjUNN([constrained], lr=0.05, rank=1, generator=0)
    opt_o = torch.optim.Adam([other], lr=1e-2)
    x = torch.randn(16, C, N, N)
    target = torch.randn(16, 1)
    before = [p.detach().clone() for p in constrained["params"]]
    losses = []
    for _ in range(steps):
        opt_u.zero_grad()
        opt_o.zero_grad()
        feats = conv(x).permute(0, 3, 1, 2).reshape(16, N, C * N)  # image columns as steps
        loss = F.mse_loss(rnn(feats)[0][:, -1], target)
        loss.backward()
        opt_u.step()
        opt_o.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    for p, p0 in zip(constrained["params"], before, strict=True):
        assert not torch.equal(p.detach(), p0)  # it moved ...
        bound = rounded_unitarity_bound(p.shape[-1], p.dtype) + steps * unitarity_bound(
            p.shape[-1], p.dtype)
        assert orth_error(p) <= bound  # ... and stayed on the group
    assert not conv.weight_real.is_complex()
    probe = torch.randn(32, C, N, N)
    with torch.no_grad():
        ratio = conv(probe).flatten(1).norm(dim=1) / probe.flatten(1).norm(dim=1)
    assert float((ratio - 1).abs().max()) <= 30 * C * N * N * eps_of(torch.float32)
