r"""PyTorch layers and initialisers whose weights stay unitary, orthogonal or Stiefel.

Everything here is plain :mod:`torch.nn`: initialisers in the style of
:mod:`torch.nn.init`, a mark that tells which parameters are constrained, and
layers whose constrained weights are marked, so that
:class:`unitary_lowrank.torch.ProjUNN` steps them and any other optimizer the
rest::

    constrained, other = param_groups(model)       # the marked weights, the rest
    opt_u = ProjUNN([constrained], lr=1e-3, rank=1)
    opt_o = torch.optim.Adam([other], lr=1e-3)

- :func:`unitary_`: Haar initialiser of a tensor, in place.
- :func:`orthogonal_`: initialise a parameter of a module and mark it.
- :func:`is_constrained`, :func:`param_groups`: read the marks.
- :class:`ModReLU`: the modReLU nonlinearity.
- :class:`OrthogonalRNN`: a recurrent network with a unitary/orthogonal
  recurrent matrix, as in the projUNN paper.
- :class:`OrthogonalConv2d`: an exactly orthogonal (real) or unitary (complex)
  circular convolution, parameterised in the Fourier domain with
  :mod:`unitary_lowrank.conv`.

This module imports torch; the rest of the library does not need it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from . import conv

__all__ = [
    "ModReLU",
    "OrthogonalConv2d",
    "OrthogonalRNN",
    "is_constrained",
    "orthogonal_",
    "param_groups",
    "unitary_",
]

#: Attribute set to True on a constrained :class:`torch.nn.Parameter`.
_PARAM_MARK = "_unitary_lowrank"
#: Attribute of a module: the names of its constrained parameters (a tuple of str).
_MODULE_MARK = "_unitary_lowrank_constrained"
_SUPPORTED = (torch.float32, torch.float64, torch.complex64, torch.complex128)
_COMPLEX_OF = {torch.float32: torch.complex64, torch.float64: torch.complex128,
               torch.complex64: torch.complex64, torch.complex128: torch.complex128}
_REAL_OF = {torch.float32: torch.float32, torch.float64: torch.float64,
            torch.complex64: torch.float32, torch.complex128: torch.float64}
_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
               nn.ConvTranspose3d)


# ---------------------------------------------------------------------- checks
def _as_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def _pair(value: Any, name: str) -> tuple[int, int]:
    """``N`` or ``(H, W)`` as a pair of positive ints."""
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int N or a pair (H, W), got {value!r}")
        return (_as_int(value[0], name, 1), _as_int(value[1], name, 1))
    n = _as_int(value, name, 1)
    return (n, n)


def _check_dtype(dtype: Any, name: str = "dtype") -> torch.dtype:
    if dtype not in _SUPPORTED:
        raise TypeError(f"{name} must be torch.float32, torch.float64, torch.complex64 or "
                        f"torch.complex128, got {dtype!r}")
    return dtype


def _check_generator(generator: Any) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be None or a torch.Generator, got "
                        f"{type(generator).__name__}")


# ---------------------------------------------------------------- initialisers
def unitary_(tensor: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Fill a tensor with Haar-random orthonormal columns (or rows), in place.

    A real tensor gets a Haar-distributed orthogonal matrix, a complex one a
    Haar-distributed unitary matrix; a tall ``n × p`` tensor (``n > p``) gets
    orthonormal columns and a wide one (``p > n``) orthonormal rows, uniformly
    distributed on the Stiefel manifold. Leading axes are a batch of
    independent samples.

    Parameters
    ----------
    tensor : torch.Tensor, shape (..., n, p)
        The tensor to fill; any floating or complex dtype, any device.
    generator : torch.Generator, optional
        Source of randomness. None (the default) draws from torch's global
        generator of the tensor's device, as :mod:`torch.nn.init` does; a
        generator draws on its own device.

    Returns
    -------
    torch.Tensor
        `tensor` itself, filled (under :func:`torch.no_grad`).

    Raises
    ------
    TypeError
        If `tensor` is not a floating or complex tensor, or `generator` is not
        None or a :class:`torch.Generator`.
    ValueError
        If `tensor` has fewer than two dimensions.

    See Also
    --------
    orthogonal_ : Initialise a parameter of a module and mark it as constrained.
    unitary_lowrank.random_unitary : The same distribution, for any array library.

    Notes
    -----
    The sample is the Q factor of a Gaussian matrix (complex Gaussian for
    complex tensors) drawn in double precision, its columns multiplied by the
    phases of R's diagonal so that it is Haar distributed (Mezzadri 2007), then
    rounded to the tensor's dtype: ``‖QᴴQ − I‖₂`` is about the dtype's eps.

    Examples
    --------
    >>> import torch
    >>> from unitary_lowrank._torch_layers import unitary_
    >>> W = unitary_(torch.empty(4, 4, dtype=torch.complex128),
    ...              generator=torch.Generator().manual_seed(0))
    >>> bool(torch.allclose(W.mH @ W, torch.eye(4, dtype=torch.complex128)))
    True
    >>> V = unitary_(torch.empty(2, 3, 5))    # a batch of two 3×5: orthonormal rows
    >>> bool(torch.allclose(V @ V.mT, torch.eye(3).expand(2, 3, 3), atol=1e-6))
    True
    """
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}")
    if not (tensor.is_floating_point() or tensor.is_complex()):
        raise TypeError(f"tensor must have a floating or complex dtype, got {tensor.dtype}")
    if tensor.ndim < 2:
        raise ValueError(f"tensor must have shape (..., n, p) (at least 2 dimensions), got "
                         f"shape {tuple(tensor.shape)}")
    _check_generator(generator)
    if tensor.numel() == 0:
        return tensor
    *batch, n, p = tensor.shape
    dtype = torch.complex128 if tensor.is_complex() else torch.float64
    device = generator.device if generator is not None else tensor.device
    with torch.no_grad():
        Z = torch.randn((*batch, max(n, p), min(n, p)), dtype=dtype, device=device,
                        generator=generator)
        Q, R = torch.linalg.qr(Z)
        d = torch.diagonal(R, dim1=-2, dim2=-1)
        phase = torch.where(d == 0, torch.ones_like(d), torch.sgn(d))
        Q = Q * phase.unsqueeze(-2)
        tensor.copy_(Q.mT if p > n else Q)
    return tensor


# ----------------------------------------------------------------------- marks
def _mark(module: nn.Module, name: str) -> None:
    """Mark ``module.<name>`` as constrained: on the Parameter and, by name, on the module."""
    param = module._parameters[name]
    setattr(param, _PARAM_MARK, True)
    names = getattr(module, _MODULE_MARK, ())
    if name not in names:
        object.__setattr__(module, _MODULE_MARK, (*names, name))


def _owner(module: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The submodule that owns the dotted parameter name, and the parameter's own name."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    path, _, leaf = name.rpartition(".")
    try:
        owner = module.get_submodule(path) if path else module
    except AttributeError:
        raise ValueError(f"name: {type(module).__name__} has no submodule {path!r} "
                         f"(from name={name!r})") from None
    return owner, leaf


def orthogonal_(module: nn.Module, name: str = "weight", *,
                generator: torch.Generator | None = None) -> nn.Module:
    r"""Initialise a parameter of a module on its manifold and mark it as constrained.

    The parameter, of shape ``(..., n, p)``, is filled by :func:`unitary_`
    (Haar orthogonal for real dtypes, Haar unitary for complex ones,
    orthonormal columns for tall and orthonormal rows for wide matrices,
    leading axes a batch) and marked, so that :func:`is_constrained` is True
    for it and :func:`param_groups` puts it with the weights for
    :class:`~unitary_lowrank.torch.ProjUNN`.

    Parameters
    ----------
    module : torch.nn.Module
        The module holding the parameter.
    name : str, default: "weight"
        Name of the parameter; a dotted path (``"rnn.weight_hh_l0"``) names a
        parameter of a submodule.
    generator : torch.Generator, optional
        Source of randomness; None uses torch's global generator.

    Returns
    -------
    torch.nn.Module
        `module` itself.

    Raises
    ------
    TypeError
        If `module` is not a module, is a convolution (whose 4-D kernel is not
        a matrix: use :class:`OrthogonalConv2d`), `name` is not a string, the
        parameter's dtype is not float32, float64, complex64 or complex128, or
        `generator` is not a :class:`torch.Generator`.
    ValueError
        If the module has no parameter `name`, or the parameter has fewer than
        two dimensions.

    See Also
    --------
    unitary_ : The initialiser alone, for any tensor.
    param_groups : Split a model's parameters into the marked ones and the rest.

    Notes
    -----
    **The mark** is kept in two places: an attribute ``_unitary_lowrank = True``
    on the :class:`~torch.nn.Parameter` object, which :func:`is_constrained`
    reads, and the parameter's name in the tuple
    ``module._unitary_lowrank_constrained``. The attribute lives as long as
    the Parameter object: it survives :meth:`~torch.nn.Module.to`,
    ``.double()``, ``.cuda()`` (which by default convert the parameter in
    place), :meth:`~torch.nn.Module.load_state_dict` and ``torch.save`` /
    ``torch.load`` of the module. It is lost when torch makes a new Parameter:
    :func:`copy.deepcopy`, ``load_state_dict(..., assign=True)``, and
    conversions under ``torch.__future__.set_swap_module_params_on_conversion``
    or ``set_overwrite_module_params_on_conversion``. The name on the module
    survives all of these (it is module state, not parameter state), and
    :func:`param_groups` reads it and sets the attribute again on the
    parameters it names. Since the module mark is by name, a parameter later
    assigned to that name counts as constrained; ProjUNN refuses it at its
    first step if it is not unitary.

    Examples
    --------
    >>> import torch
    >>> from unitary_lowrank._torch_layers import is_constrained, orthogonal_
    >>> lin = orthogonal_(torch.nn.Linear(6, 3, dtype=torch.float64))   # weight 3×6
    >>> W = lin.weight.detach()
    >>> bool(torch.allclose(W @ W.mT, torch.eye(3, dtype=torch.float64)))
    True
    >>> is_constrained(lin.weight), is_constrained(lin.bias)
    (True, False)
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    owner, leaf = _owner(module, name)
    if isinstance(owner, _CONV_TYPES):
        raise TypeError(
            f"orthogonal_: {name!r} belongs to a {type(owner).__name__}, whose weight is a "
            "convolution kernel (C_out, C_in, kH, kW), not a matrix: making its slices "
            "orthogonal does not make the convolution orthogonal. Use "
            "OrthogonalConv2d(channels, image_size=...) (unitary_lowrank.torch), an exactly "
            "orthogonal circular convolution parameterised in the Fourier domain")
    param = owner._parameters.get(leaf)
    if param is None:
        have = ", ".join(n for n, p in owner.named_parameters(recurse=False)) or "none"
        raise ValueError(f"name: {type(owner).__name__} has no parameter {leaf!r} (its "
                         f"parameters: {have})")
    if param.dtype not in _SUPPORTED:
        raise TypeError(f"orthogonal_: the parameter {name!r} must be float32, float64, "
                        f"complex64 or complex128 (what ProjUNN steps), got {param.dtype}")
    if param.ndim < 2:
        raise ValueError(f"orthogonal_: the parameter {name!r} must be a matrix or a batch "
                         f"of matrices (..., n, p), got shape {tuple(param.shape)}")
    unitary_(param, generator)
    _mark(owner, leaf)
    return module


def is_constrained(p: torch.Tensor) -> bool:
    """Whether a parameter is marked as constrained (unitary, orthogonal or Stiefel).

    Parameters
    ----------
    p : torch.Tensor
        A parameter.

    Returns
    -------
    bool
        True if `p` was marked by :func:`orthogonal_`, by a layer of this
        module, or by :func:`param_groups` from its module's mark.

    Raises
    ------
    TypeError
        If `p` is not a tensor.

    See Also
    --------
    orthogonal_ : Where the mark comes from, and what it survives.

    Examples
    --------
    >>> import torch
    >>> from unitary_lowrank._torch_layers import OrthogonalRNN, is_constrained
    >>> rnn = OrthogonalRNN(2, 4)
    >>> [name for name, p in rnn.named_parameters() if is_constrained(p)]
    ['weight_hh']
    """
    if not isinstance(p, torch.Tensor):
        raise TypeError(f"p must be a torch.Tensor, got {type(p).__name__}")
    return bool(getattr(p, _PARAM_MARK, False))


def param_groups(model: nn.Module) -> list[dict[str, Any]]:
    """The parameters of a model in two groups: the constrained weights, and the rest.

    Parameters
    ----------
    model : torch.nn.Module
        The model.

    Returns
    -------
    list of dict
        ``[{"params": [...], "constrained": True}, {"params": [...],
        "constrained": False}]``, each list in the order of
        ``model.parameters()``, a parameter shared by several modules listed
        once; a group with no parameter is left out. Give the first to
        :class:`~unitary_lowrank.torch.ProjUNN` and the second to any other
        optimizer (torch's optimizers keep the extra ``"constrained"`` key).

    Raises
    ------
    TypeError
        If `model` is not a module.

    See Also
    --------
    orthogonal_, is_constrained

    Notes
    -----
    A parameter is constrained when it carries the mark, or when its module
    lists its name as constrained; in the second case the mark is set on it
    again (it was lost when torch re-created the Parameter, see
    :func:`orthogonal_`).

    Examples
    --------
    >>> import torch
    >>> from unitary_lowrank._torch_layers import OrthogonalRNN, param_groups
    >>> from unitary_lowrank.torch import ProjUNN
    >>> model = OrthogonalRNN(3, 8, output_size=2)
    >>> constrained, other = param_groups(model)
    >>> [tuple(p.shape) for p in constrained["params"]], other["constrained"]
    ([(8, 8)], False)
    >>> opt_u = ProjUNN([constrained], lr=1e-3, generator=0)
    >>> opt_o = torch.optim.Adam([other], lr=1e-3)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for module in model.modules():
        for name in getattr(module, _MODULE_MARK, ()):
            param = module._parameters.get(name)
            if param is not None:
                setattr(param, _PARAM_MARK, True)
    constrained: list[nn.Parameter] = []
    other: list[nn.Parameter] = []
    for p in model.parameters():
        (constrained if is_constrained(p) else other).append(p)
    groups = [{"params": constrained, "constrained": True},
              {"params": other, "constrained": False}]
    return [g for g in groups if g["params"]]


# ----------------------------------------------------------- dtype conversions
class _KeepsKind(nn.Module):
    """Dtype conversions that keep real parameters real and complex ones complex.

    ``Module.to(torch.float64)`` would cast a complex parameter to float64
    (dropping its imaginary part) and ``.to(torch.complex64)`` a real one to
    complex, and ``.double()`` leaves complex parameters alone; any of these
    breaks a layer whose real and complex parameters must stay so, at one
    precision. Here a conversion sets the *precision*: a real parameter goes to
    the real dtype the conversion gives, a complex one to the complex dtype of
    that precision (for the layer and its submodules). Devices move as usual;
    the Parameter objects are kept (torch's default), so their marks survive.
    """

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> Any:
        probe = next(iter(self.parameters()), None)
        device = probe.device if probe is not None else None
        real = fn(torch.zeros((), dtype=torch.float32, device=device))
        target = real.dtype
        if target not in _SUPPORTED:
            raise ValueError(f"{type(self).__name__} supports float32 and float64 precision "
                             f"(complex64, complex128), got a conversion to {target}")
        if target.is_complex and not self._complex_layer():
            raise ValueError(f"{type(self).__name__}: a real layer stays real (a conversion "
                             f"to {target} was asked); build it with dtype={target} for a "
                             "complex (unitary) layer")
        return super()._apply(_kind_keeping(fn), recurse)

    def _complex_layer(self) -> bool:
        raise NotImplementedError


def _kind_keeping(fn: Callable[[torch.Tensor], torch.Tensor]
                  ) -> Callable[[torch.Tensor], torch.Tensor]:
    def wrapped(t: torch.Tensor) -> torch.Tensor:
        if t.is_complex():
            r = fn(torch.view_as_real(t))
            if r.is_complex():
                r = r.real
            return torch.view_as_complex(r.contiguous())
        r = fn(t)
        if t.is_floating_point() and r.is_complex():
            r = r.real.contiguous()
        return r
    return wrapped


# ---------------------------------------------------------------------- layers
class ModReLU(_KeepsKind):
    r"""The modReLU nonlinearity: ``z ↦ relu(|z| + b) · z/|z|``.

    For complex inputs it shrinks the modulus and keeps the phase (Arjovsky,
    Shah and Bengio 2016); for real inputs it is ``sign(z) · relu(|z| + b)``.
    ``b`` has one entry per feature (the last axis).

    Parameters
    ----------
    features : int
        Size of the last axis of the input.
    bias : bool, default: True
        Whether ``b`` is a learned parameter (initialised uniformly in
        [−0.01, 0.01], as in expRNN); without it the map is the identity.
    dtype : torch.dtype, optional
        Precision: ``b`` is real, float32 for float32/complex64, float64 for
        float64/complex128; default ``torch.get_default_dtype()``.
    device : torch.device, optional
        Device of ``b``.

    Attributes
    ----------
    bias : torch.nn.Parameter or None
        ``b``, shape (features,), real.

    Raises
    ------
    TypeError
        If `features` is not an int or `dtype` is not supported.
    ValueError
        If `features` < 1, or (when called) the input's last axis is not
        `features` long.

    Notes
    -----
    At ``z = 0`` the output is 0 and its derivative is taken as 0 (for ``b < 0``
    this is the true derivative, the output vanishing near 0; for ``b > 0`` the
    map jumps there and 0 is a choice): no NaN appears in the forward or
    backward pass. Elsewhere the derivative is the exact one.

    Examples
    --------
    >>> import torch
    >>> from unitary_lowrank._torch_layers import ModReLU
    >>> act = ModReLU(2, dtype=torch.float64)
    >>> with torch.no_grad():
    ...     _ = act.bias.copy_(torch.tensor([-1.0, 0.5]))
    >>> act(torch.tensor([[3 + 4j, 0j]], dtype=torch.complex128))
    tensor([[2.4000+3.2000j, 0.0000+0.0000j]], dtype=torch.complex128,
           grad_fn=<WhereBackward0>)
    >>> act(torch.tensor([[-3.0, 2.0]], dtype=torch.float64))
    tensor([[-2.0000,  2.5000]], dtype=torch.float64, grad_fn=<WhereBackward0>)
    """

    def __init__(self, features: int, *, bias: bool = True, dtype: torch.dtype | None = None,
                 device: Any = None) -> None:
        super().__init__()
        self.features = _as_int(features, "features", 1)
        dtype = _REAL_OF[_check_dtype(torch.get_default_dtype() if dtype is None else dtype)]
        if bias:
            self.bias = nn.Parameter(torch.empty(self.features, dtype=dtype, device=device))
            with torch.no_grad():
                self.bias.uniform_(-0.01, 0.01)
        else:
            self.register_parameter("bias", None)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``relu(|z| + b) · z/|z|``, 0 where ``z = 0``; shape (..., features)."""
        if z.ndim < 1 or z.shape[-1] != self.features:
            raise ValueError(f"z must have shape (..., {self.features}), got "
                             f"{tuple(z.shape)}")
        mag = z.abs()
        nonzero = mag > 0
        safe = torch.where(nonzero, mag, torch.ones_like(mag))
        shifted = mag if self.bias is None else mag + self.bias
        scale = torch.relu(shifted) / safe
        return torch.where(nonzero, z * scale, torch.zeros_like(z))

    def _complex_layer(self) -> bool:
        return True  # b is real; the layer takes complex inputs

    def extra_repr(self) -> str:
        """``features, bias``."""
        return f"{self.features}, bias={self.bias is not None}"


_NONLINEARITIES = ("modrelu", "relu", "tanh")
_RNN_INITS = ("haar", "henaff", "identity")


def _henaff(n: int, complex_: bool, device: Any) -> torch.Tensor:
    """Henaff et al.'s init: 2×2 rotations with angles U(−π, π) (complex: unit phases)."""
    if complex_:
        theta = (torch.rand(n, dtype=torch.float64, device=device) * 2 - 1) * math.pi
        return torch.diag(torch.polar(torch.ones_like(theta), theta))
    theta = (torch.rand(n // 2, dtype=torch.float64, device=device) * 2 - 1) * math.pi
    c, s = torch.cos(theta), torch.sin(theta)
    blocks = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)
    W = (torch.block_diag(*blocks) if n >= 2 else
         torch.zeros(0, 0, dtype=torch.float64, device=device))
    if n % 2:
        W = torch.block_diag(W, torch.ones(1, 1, dtype=torch.float64, device=device))
    return W


class OrthogonalRNN(_KeepsKind):
    r"""A recurrent network whose recurrent matrix is orthogonal (real) or unitary (complex).

    For an input sequence ``x_1, …, x_T`` and ``h_0`` (zero by default)::

        h_t = σ(W h_{t−1} + V x_t + b)          W orthogonal/unitary (marked)
        y_t = Re(U h_t + c)                      only with output_size

    as in the projUNN paper's RNN (after expRNN): ``V`` is an input
    :class:`~torch.nn.Linear` layer, ``σ`` the nonlinearity and ``U`` an
    optional output layer applied to every step's state. The recurrent matrix
    ``weight_hh`` is marked (:func:`is_constrained`), so :func:`param_groups`
    hands it to :class:`~unitary_lowrank.torch.ProjUNN`.

    Parameters
    ----------
    input_size : int
        Features of each input step.
    hidden_size : int
        Size ``h`` of the state.
    nonlinearity : {"modrelu", "relu", "tanh"}, default: "modrelu"
        ``σ``: :class:`ModReLU` (its bias is ``b``), or ReLU / tanh (real
        layers only), after a bias ``b`` in the input layer.
    init : {"haar", "henaff", "identity"}, default: "haar"
        Initial ``W``: Haar-random (:func:`unitary_`); Henaff et al.'s
        block-diagonal 2×2 rotations with angles uniform in (−π, π) (an odd
        size ends with a 1), for complex layers the analogous diagonal of
        unit phases ``e^{iθ}``, θ uniform in (−π, π); or the identity.
    dtype : torch.dtype, default: torch.float32
        float32/float64 (orthogonal ``W``) or complex64/complex128 (unitary
        ``W``, complex states; real inputs are converted to complex).
    batch_first : bool, default: True
        Inputs and outputs are (batch, T, features) (else (T, batch, features)).
    bias : bool, default: True
        Whether ``b`` is learned (with "modrelu" it is the bias of
        :class:`ModReLU`, without which modReLU is the identity).
    output_size : int, optional
        Size of the output layer ``U`` (real outputs: the real part for
        complex layers, i.e. a real linear map of ``(Re h, Im h)``). Default:
        none, the states are the outputs.
    device : torch.device, optional
        Device of the parameters.

    Attributes
    ----------
    input_layer : torch.nn.Linear
        ``V`` (and ``b`` for relu/tanh), ``input_size → hidden_size``, torch's
        default initialisation.
    weight_hh : torch.nn.Parameter, shape (hidden_size, hidden_size)
        ``W``, marked as constrained.
    activation : torch.nn.Module
        ``σ``.
    output_layer : torch.nn.Linear or None
        ``U`` and ``c``, ``hidden_size → output_size``, of the layer's dtype.

    Raises
    ------
    TypeError
        If a size is not an int or `dtype` is not supported.
    ValueError
        If a size is < 1, `nonlinearity` or `init` is unknown, or "relu"/"tanh"
        is asked of a complex layer.

    Notes
    -----
    :meth:`forward` loops over the steps in Python (one ``h×h`` product per
    step); the input layer is applied to all steps at once. Dtype conversions
    (``.to(torch.float64)``, ``.double()``) set the precision and keep complex
    parameters complex (plain torch would drop their imaginary part); a
    conversion to half precision, or of a real layer to a complex dtype,
    raises `ValueError` (ProjUNN steps float32 and float64 weights).

    Examples
    --------
    >>> import torch
    >>> import unitary_lowrank as ul
    >>> from unitary_lowrank._torch_layers import OrthogonalRNN, param_groups
    >>> from unitary_lowrank.torch import ProjUNN
    >>> _ = torch.manual_seed(0)
    >>> rnn = OrthogonalRNN(2, 16, dtype=torch.complex64, output_size=1)
    >>> x = torch.randn(4, 10, 2)                     # (batch, T, input)
    >>> y, h = rnn(x)
    >>> y.shape, y.dtype, h.shape, h.dtype
    (torch.Size([4, 10, 1]), torch.float32, torch.Size([4, 16]), torch.complex64)
    >>> constrained, other = param_groups(rnn)
    >>> opt_u = ProjUNN([constrained], lr=1e-3, generator=0)
    >>> opt_o = torch.optim.RMSprop([other], lr=1e-3)
    >>> loss = y[:, -1].square().mean()
    >>> loss.backward(); _ = opt_u.step(); opt_o.step()
    >>> bool(ul.unitarity_error(rnn.weight_hh.detach()) < 1e-5)
    True
    """

    def __init__(self, input_size: int, hidden_size: int, *,
                 nonlinearity: Literal["modrelu", "relu", "tanh"] = "modrelu",
                 init: Literal["haar", "henaff", "identity"] = "haar",
                 dtype: torch.dtype = torch.float32,
                 batch_first: bool = True, bias: bool = True, output_size: int | None = None,
                 device: Any = None) -> None:
        super().__init__()
        self.input_size = _as_int(input_size, "input_size", 1)
        self.hidden_size = h = _as_int(hidden_size, "hidden_size", 1)
        self.output_size = None if output_size is None else _as_int(output_size,
                                                                     "output_size", 1)
        _check_dtype(dtype)
        if nonlinearity not in _NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of {', '.join(map(repr, _NONLINEARITIES))}"
                             f", got {nonlinearity!r}")
        if init not in _RNN_INITS:
            raise ValueError(f"init must be one of {', '.join(map(repr, _RNN_INITS))}, got "
                             f"{init!r}")
        if dtype.is_complex and nonlinearity != "modrelu":
            raise ValueError(f"nonlinearity={nonlinearity!r} is for real layers; a complex "
                             f"layer ({dtype}) needs 'modrelu'")
        self.nonlinearity, self.init, self.batch_first = nonlinearity, init, bool(batch_first)
        modrelu = nonlinearity == "modrelu"
        self.input_layer = nn.Linear(self.input_size, h, bias=bool(bias) and not modrelu,
                                     dtype=dtype, device=device)
        self.weight_hh = nn.Parameter(torch.empty(h, h, dtype=dtype, device=device))
        with torch.no_grad():
            if init == "haar":
                unitary_(self.weight_hh)
            elif init == "henaff":
                self.weight_hh.copy_(_henaff(h, dtype.is_complex, device))
            else:
                self.weight_hh.copy_(torch.eye(h, dtype=dtype, device=device))
        _mark(self, "weight_hh")
        if modrelu:
            self.activation: nn.Module = ModReLU(h, bias=bool(bias), dtype=dtype,
                                                 device=device)
        else:
            self.activation = nn.ReLU() if nonlinearity == "relu" else nn.Tanh()
        self.output_layer = (None if self.output_size is None else
                             nn.Linear(h, self.output_size, dtype=dtype, device=device))

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the network over a batch of sequences.

        Parameters
        ----------
        x : torch.Tensor, shape (batch, T, input_size)
            Inputs ((T, batch, input_size) with ``batch_first=False``).
        h0 : torch.Tensor, shape (batch, hidden_size), optional
            Initial state; default zero.

        Returns
        -------
        outputs : torch.Tensor
            Shape (batch, T, hidden_size), the states ``h_1, …, h_T``; or
            (batch, T, output_size), real, with an output layer. (T first
            with ``batch_first=False``.)
        h : torch.Tensor, shape (batch, hidden_size)
            The last state ``h_T`` (``h0`` when T = 0).

        Raises
        ------
        ValueError
            If `x` or `h0` has the wrong shape.
        """
        if x.ndim != 3 or x.shape[-1] != self.input_size:
            order = "batch, T" if self.batch_first else "T, batch"
            raise ValueError(f"x must have shape ({order}, {self.input_size}), got "
                             f"{tuple(x.shape)}")
        if not self.batch_first:
            x = x.transpose(0, 1)
        if self.weight_hh.is_complex() and not x.is_complex():
            x = x.to(self.weight_hh.dtype)
        batch, steps = x.shape[:2]
        W = self.weight_hh
        if h0 is None:
            h = torch.zeros(batch, self.hidden_size, dtype=W.dtype, device=W.device)
        elif tuple(h0.shape) != (batch, self.hidden_size):
            raise ValueError(f"h0 must have shape (batch, hidden_size) = "
                             f"{(batch, self.hidden_size)}, got {tuple(h0.shape)}")
        else:
            h = h0
        u = self.input_layer(x)
        states = []
        for t in range(steps):
            h = self.activation(h @ W.mT + u[:, t])
            states.append(h)
        out = (torch.stack(states, 1) if states else
               u.new_zeros(batch, 0, self.hidden_size))
        if self.output_layer is not None:
            out = self.output_layer(out)
            if out.is_complex():
                out = out.real
        if not self.batch_first:
            out = out.transpose(0, 1)
        return out, h

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of ``weight_hh`` (that of the layer)."""
        return self.weight_hh.dtype

    def _complex_layer(self) -> bool:
        return self.weight_hh.is_complex()

    def extra_repr(self) -> str:
        """The constructor's arguments."""
        return (f"{self.input_size}, {self.hidden_size}, nonlinearity={self.nonlinearity!r}, "
                f"init={self.init!r}, dtype={self.dtype}, batch_first={self.batch_first}")


_CONV_INITS = ("haar", "identity")


class OrthogonalConv2d(_KeepsKind):
    r"""An exactly orthogonal (real) or unitary (complex) circular 2-D convolution.

    A circular convolution of ``C`` channels on an ``H × W`` image is block
    diagonal in the 2-D DFT: one ``C × C`` block ``W_f`` per frequency, and it
    is orthogonal (unitary) exactly when every block is unitary (Trockman and
    Kolter 2021). The layer stores the blocks themselves, as batches of
    ``C × C`` matrices that :class:`~unitary_lowrank.torch.ProjUNN` steps
    directly, in O(k·C²) per frequency for a rank-k step, and applies them
    with :func:`unitary_lowrank.conv.convolve` (FFT, one batched product, inverse
    FFT). So ``‖conv(x)‖ = ‖x‖`` for every input, to rounding, before and after
    training.

    **Supported:** stride 1; circular padding only (the image is a torus and
    the output has the input's size); the same number ``C`` of channels in and
    out (to widen, append zero channels to the input, an isometry; to narrow,
    keep some output channels); no bias (it would break norm preservation; add
    one after the layer if wanted); no dilation or groups. The kernel is the
    full ``H × W`` image: a Fourier-domain orthogonal convolution has a kernel
    of full support, as in the projUNN paper, so `kernel_size` may only be
    None or the image size.

    Parameters
    ----------
    channels : int
        ``C``, input and output channels.
    kernel_size : None, int or (int, int), optional
        Must be None or equal to `image_size` (see above).
    image_size : int or (int, int)
        ``N`` (an ``N × N`` image) or ``(H, W)``; inputs must have this size.
    dtype : torch.dtype, default: torch.float32
        float32/float64: a real, orthogonal convolution (real inputs give real
        outputs); complex64/complex128: a unitary one on complex images.
    init : {"haar", "identity"}, default: "haar"
        Haar-random blocks (:func:`unitary_`, torch's global generator: the
        Haar measure of the group of such convolutions) or the identity.
    device : torch.device, optional
        Device of the parameters.

    Attributes
    ----------
    layout : unitary_lowrank.conv.FourierLayout
        Which frequency each block stands for (``layout.frequencies``).
    weight_real : torch.nn.Parameter or None
        Real layers: the real orthogonal blocks (S, C, C) of the S
        self-conjugate frequencies (index 0 or N/2 on each axis), marked.
        None for complex layers.
    weight_complex : torch.nn.Parameter or None
        The complex unitary blocks: for real layers (F − S, C, C), one per pair
        ``{f, −f}`` of conjugate frequencies of the ``rfft2`` half-plane (the
        partner uses the conjugate block, so the kernel is real); for complex
        layers (H·W, C, C), one per frequency in ``fft2`` order. Marked. None
        when there is no such frequency (a 1×1, 1×2, 2×1 or 2×2 real image).

    Raises
    ------
    TypeError
        If a size is not an int or `dtype` is not supported.
    ValueError
        If a size is < 1, `kernel_size` is not None or the image size, or
        `init` is unknown.

    See Also
    --------
    unitary_lowrank.conv : The Fourier-domain machinery, as array functions.

    Notes
    -----
    **Gradients.** Autograd differentiates through the assembly of the
    half-plane spectrum, so ``weight_complex.grad`` of a real layer is the sum
    over both frequencies of each conjugate pair (twice the per-frequency
    gradient of :func:`unitary_lowrank.conv.gradient_factors`), and
    ``weight_real.grad`` is real. ProjUNN keeps ``weight_real`` real
    orthogonal and ``weight_complex`` unitary, which is exactly what keeps the
    real operator orthogonal.

    **Spatial kernel.** :meth:`kernel` gives the equivalent kernel in torch's
    convention, for :func:`torch.nn.functional.conv2d` after circular padding
    by :attr:`padding` (that of ``nn.Conv2d(..., padding="same",
    padding_mode="circular")``); :meth:`to_conv2d` builds that module.

    **Dtype conversions** (``.to(torch.float64)``, ``.double()``) set the
    precision and keep the real blocks real and the complex ones complex; a
    conversion to half precision, or of a real layer to a complex dtype,
    raises `ValueError`.

    Examples
    --------
    >>> import torch
    >>> from unitary_lowrank._torch_layers import OrthogonalConv2d
    >>> _ = torch.manual_seed(0)
    >>> layer = OrthogonalConv2d(3, image_size=8, dtype=torch.float64)
    >>> layer.weight_real.shape, layer.weight_complex.shape
    (torch.Size([4, 3, 3]), torch.Size([30, 3, 3]))
    >>> x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    >>> y = layer(x)
    >>> y.dtype, bool(torch.isclose(y.norm(), x.norm()))
    (torch.float64, True)
    >>> K = layer.kernel()                              # (C, C, H, W), real
    >>> z = torch.nn.functional.conv2d(torch.nn.functional.pad(x, layer.padding,
    ...                                                        mode="circular"), K)
    >>> bool(torch.allclose(z, y))
    True
    """

    # the blocks: real (self-conjugate frequencies) and complex ones, None when there are none
    weight_real: nn.Parameter | None
    weight_complex: nn.Parameter | None

    def __init__(self, channels: int, kernel_size: Any = None, *, image_size: Any,
                 dtype: torch.dtype = torch.float32, init: Literal["haar", "identity"] = "haar",
                 device: Any = None) -> None:
        super().__init__()
        self.channels = C = _as_int(channels, "channels", 1)
        self.image_size = _pair(image_size, "image_size")
        if kernel_size is not None and _pair(kernel_size, "kernel_size") != self.image_size:
            raise ValueError(
                f"kernel_size must be None or the image size {self.image_size}, got "
                f"{kernel_size!r}: a Fourier-domain orthogonal convolution has a full-size "
                "kernel (one C×C unitary block per frequency of the image's DFT); a small "
                "kernel cannot be both exactly orthogonal and parameterised this way")
        _check_dtype(dtype)
        if init not in _CONV_INITS:
            raise ValueError(f"init must be 'haar' or 'identity', got {init!r}")
        self.init = init
        self.layout = conv.FourierLayout(self.image_size, real=not dtype.is_complex)
        S, F = self.layout.n_real_blocks, self.layout.n_blocks
        cdtype = _COMPLEX_OF[dtype]
        for name, count, kind in (("weight_real", S, _REAL_OF[dtype]),
                                  ("weight_complex", F - S, cdtype)):
            if count == 0:
                self.register_parameter(name, None)
                continue
            param = nn.Parameter(torch.empty(count, C, C, dtype=kind, device=device))
            with torch.no_grad():
                if init == "haar":
                    unitary_(param)
                else:
                    param.copy_(torch.eye(C, dtype=kind, device=device).expand(count, C, C))
            self.register_parameter(name, param)
            _mark(self, name)

    def blocks(self) -> torch.Tensor:
        """The stored blocks as one complex stack, differentiable.

        Returns
        -------
        torch.Tensor, shape (F, C, C)
            ``weight_real`` (as complex) then ``weight_complex``, in the order
            of ``layout.frequencies``: the ``W`` of :mod:`unitary_lowrank.conv`.
        """
        parts = [p for p in (self.weight_real, self.weight_complex) if p is not None]
        cdtype = _COMPLEX_OF[parts[-1].dtype]
        return torch.cat([p.to(cdtype) for p in parts])

    @property
    def padding(self) -> tuple[int, int, int, int]:
        """Circular padding ``(left, right, top, bottom)`` that goes with :meth:`kernel`.

        That of ``nn.Conv2d(C, C, (H, W), padding="same", padding_mode="circular")``:
        ``(W − 1)//2`` left and the rest of ``W − 1`` right, likewise on top.
        """
        H, W = self.image_size
        return ((W - 1) // 2, W - 1 - (W - 1) // 2, (H - 1) // 2, H - 1 - (H - 1) // 2)

    def kernel(self) -> torch.Tensor:
        """The equivalent spatial kernel, in torch's (cross-correlation) convention.

        Returns
        -------
        torch.Tensor, shape (C, C, H, W)
            ``K`` with ``layer(x) == F.conv2d(F.pad(x, layer.padding,
            mode="circular"), K)``; real for real layers. Differentiable in
            the blocks.

        Notes
        -----
        :func:`unitary_lowrank.conv.blocks_to_kernel` gives the kernel ``K₀`` of
        a true convolution, ``y[i, j] = Σ_{a,b} K₀[:, :, a, b] x[i − a, j − b]``;
        this is ``K[:, :, a, b] = K₀[:, :, (t − a) mod H, (l − b) mod W]``
        with ``(l, r, t, b) = padding``.
        """
        K0 = conv.blocks_to_kernel(self.blocks(), self.layout)
        H, W = self.image_size
        left, _, top, _ = self.padding
        rows = (top - torch.arange(H, device=K0.device)) % H
        cols = (left - torch.arange(W, device=K0.device)) % W
        return K0[:, :, rows][:, :, :, cols]

    def to_conv2d(self) -> nn.Conv2d:
        """An ``nn.Conv2d`` that computes the same convolution (a copy, not trained with it).

        Returns
        -------
        torch.nn.Conv2d
            ``Conv2d(C, C, (H, W), padding="same", padding_mode="circular",
            bias=False)`` of the layer's real or complex dtype and device, its
            weight :meth:`kernel` (detached).
        """
        K = self.kernel().detach()
        layer = nn.Conv2d(self.channels, self.channels, self.image_size, padding="same",
                          padding_mode="circular", bias=False, dtype=K.dtype, device=K.device)
        with torch.no_grad():
            layer.weight.copy_(K)
        return layer

    def orthogonality_error(self) -> float:
        """``‖OᴴO − I‖₂`` of the convolution operator O the layer applies.

        Returns
        -------
        float
            The largest ``‖W_fᴴW_f − I‖₂`` over the frequencies
            (:func:`unitary_lowrank.conv.orthogonality_error`): about eps of the
            dtype for an orthogonal layer.
        """
        with torch.no_grad():
            return float(conv.orthogonality_error(self.blocks(), self.layout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve a batch of images.

        Parameters
        ----------
        x : torch.Tensor, shape (..., C, H, W)
            Images; leading axes are batch axes. A real layer takes real
            images (a complex image is convolved part by part).

        Returns
        -------
        torch.Tensor, shape (..., C, H, W)
            Real for a real layer and real `x`, complex otherwise.

        Raises
        ------
        ValueError
            If `x` does not have shape (..., C, H, W).
        """
        C, (H, W) = self.channels, self.image_size
        if x.ndim < 3 or tuple(x.shape[-3:]) != (C, H, W):
            raise ValueError(f"x must have shape (..., {C}, {H}, {W}) (channels, image size "
                             f"of the layer), got {tuple(x.shape)}")
        return conv.convolve(self.blocks(), x, self.layout)

    @property
    def dtype(self) -> torch.dtype:
        """The layer's dtype: that of ``weight_real`` (real layers) or ``weight_complex``."""
        w = self.weight_complex if self.weight_real is None else self.weight_real
        assert w is not None  # a layer stores at least one kind of block
        return w.dtype

    def _complex_layer(self) -> bool:
        return not self.layout.real

    def extra_repr(self) -> str:
        """The constructor's arguments."""
        return (f"{self.channels}, image_size={self.image_size}, dtype={self.dtype}, "
                f"init={self.init!r}")
