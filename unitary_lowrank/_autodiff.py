"""Derivative rules for torch autograd and JAX, attached to an array-agnostic forward pass.

The updates are smooth maps of (U, A, B), but the QR, eigh and SVD inside them are
not differentiable at degenerate steps (a zero or rank-deficient step, repeated
eigenvalues of the core), which every training run meets at its first step.
:func:`apply` runs a :class:`Rule`'s forward pass as it is (the same operations, so
the same values) and gives torch and JAX the rule's own derivative instead of the
one they would build through those decompositions:

- torch: a ``torch.autograd.Function`` with ``backward`` (the rule's VJP) and
  ``jvp`` (forward mode, ``torch.func.jvp``); ``setup_context`` style, so
  ``torch.func.grad`` works too. A backward with ``create_graph=True``
  recomputes the small residuals from the inputs, so second derivatives keep
  their dependence on them (they are what autograd gives through the
  decompositions: exact where those are differentiable).
- JAX: ``jax.custom_jvp`` with the rule's JVP; ``jax.grad`` transposes it, and
  ``jax.hessian`` differentiates the rule itself.
- any other library (no autodiff): the forward pass alone.
"""

from __future__ import annotations

import functools
import sys
from types import ModuleType
from typing import Any, Protocol

import array_api_compat

__all__ = ["Rule", "apply"]


class Rule(Protocol):
    """A forward pass and its derivatives, all written against the namespace `xp`.

    `arrays` are the differentiable inputs, `static` a hashable tuple of the
    others. ``forward`` returns ``(out, residuals)`` (a tuple of arrays the
    derivatives reuse); ``residuals`` recomputes them alone, differentiably.
    ``jvp`` maps input tangents (one per array) to the output tangent; ``vjp``
    maps the output cotangent to one cotangent per array (None: no derivative),
    both linear, with complex cotangents ``∂/∂Re + i ∂/∂Im``.
    """

    def forward(self, arrays: tuple, static: tuple, xp: ModuleType) -> tuple[Any, tuple]: ...

    def residuals(self, arrays: tuple, static: tuple, xp: ModuleType) -> tuple: ...

    def jvp(self, arrays: tuple, res: tuple, tangents: tuple, static: tuple,
            xp: ModuleType) -> Any: ...

    def vjp(self, arrays: tuple, res: tuple, cotangent: Any, static: tuple,
            xp: ModuleType) -> tuple: ...


def apply(rule: Rule, arrays: tuple, static: tuple, xp: ModuleType) -> Any:
    """``rule.forward(arrays, static, xp)[0]``, differentiable by the rule's derivatives."""
    if array_api_compat.is_torch_namespace(xp):
        torch = sys.modules["torch"]
        if torch.is_grad_enabled() or _has_forward_tangent(torch, arrays):
            return _torch_function().apply(rule, static, xp, *arrays)[0]
    elif array_api_compat.is_jax_namespace(xp):
        return _jax_function()(rule, static, xp, *arrays)
    return rule.forward(arrays, static, xp)[0]


def _has_forward_tangent(torch: Any, arrays: tuple) -> bool:
    """Whether a tensor carries a forward-mode tangent (``torch.autograd.forward_ad``)."""
    unpack = torch.autograd.forward_ad.unpack_dual
    return any(unpack(a).tangent is not None for a in arrays)


def _sum_to(x: Any, shape: tuple[int, ...], torch: Any) -> Any:
    """`x` summed over the axes that broadcasting added or stretched to reach its shape."""
    if tuple(x.shape) == tuple(shape):
        return x
    lead = x.ndim - len(shape)
    x = x.sum(dim=tuple(range(lead))) if lead else x
    stretched = tuple(i for i, (a, b) in enumerate(zip(x.shape, shape, strict=True)) if b == 1
                      and a != 1)
    return x.sum(dim=stretched, keepdim=True) if stretched else x


@functools.cache
def _torch_function() -> Any:
    torch: Any = sys.modules["torch"]  # imported by the caller; torch is optional here

    class RuleFunction(torch.autograd.Function):
        """``rule.forward`` with the rule's VJP and JVP; outputs ``(out, *residuals)``."""

        @staticmethod
        def forward(rule, static, xp, *arrays):
            out, res = rule.forward(arrays, static, xp)
            return (out, *res)

        @staticmethod
        def setup_context(ctx, inputs, output):
            rule, static, xp, *arrays = inputs
            res = output[1:]
            ctx.mark_non_differentiable(*res)
            ctx.rule, ctx.static, ctx.xp, ctx.count = rule, static, xp, len(arrays)
            ctx.shapes = [tuple(a.shape) for a in arrays]
            ctx.save_for_backward(*arrays, *res)
            ctx.save_for_forward(*arrays, *res)

        @staticmethod
        def backward(ctx, grad, *unused):
            saved = ctx.saved_tensors
            arrays, res = saved[:ctx.count], saved[ctx.count:]
            if torch.is_grad_enabled():  # create_graph: residuals as functions of the inputs
                res = ctx.rule.residuals(arrays, ctx.static, ctx.xp)
            grads = ctx.rule.vjp(arrays, res, grad, ctx.static, ctx.xp)
            grads = [None if g is None or not need else _sum_to(g, shape, torch)
                     for g, need, shape in zip(grads, ctx.needs_input_grad[3:], ctx.shapes,
                                               strict=True)]
            return (None, None, None, *grads)

        @staticmethod
        def jvp(ctx, _rule, _static, _xp, *tangents):
            saved = ctx.saved_tensors
            arrays, res = saved[:ctx.count], saved[ctx.count:]
            tangents = tuple(torch.zeros_like(a) if t is None else t
                             for a, t in zip(arrays, tangents, strict=True))
            out = ctx.rule.jvp(arrays, res, tangents, ctx.static, ctx.xp)
            return (out, *(None for _ in res))

    return RuleFunction


@functools.cache
def _jax_function() -> Any:
    import jax

    @functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2))
    def function(rule, static, xp, *arrays):
        return rule.forward(arrays, static, xp)[0]

    @function.defjvp
    def _jvp(rule, static, xp, primals, tangents):
        out, res = rule.forward(primals, static, xp)
        tangent = rule.jvp(primals, res, tangents, static, xp)
        return out, xp.broadcast_to(xp.astype(tangent, out.dtype), out.shape)

    return function
