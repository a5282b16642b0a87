"""Gradient-safe JAX translations that PyMC's JAX samplers need for ckmodel's models.

PyTensor rewrites ``log1p(exp(x))`` into its ``Softplus`` op, whose JAX translation nests
``jnp.where`` over branches containing ``exp(x)`` and ``exp(-x)``. For |x| above ~710 the untaken
branch overflows and reverse mode returns NaN (0 * inf), although the value is finite. The smooth
gates of the catalog (``gate_int``: softplus((t - tmax) / w) with w = 0.25 d) reach such
arguments at late times, so without this every gradient in ``tmax`` would be NaN under
numpyro, blackjax or pathfinder. ``(x + |x|)/2 + log1p(exp(-|x|))`` is exact and safe everywhere.
"""

from __future__ import annotations

from typing import Any

__all__ = ["register_jax_softplus"]

_DONE = False


def register_jax_softplus() -> None:
    """Register the safe softplus for PyTensor's JAX backend (idempotent; needs JAX)."""
    global _DONE
    if _DONE:
        return
    import jax.numpy as jnp
    from pytensor.link.jax.dispatch import jax_funcify
    from pytensor.scalar.math import Softplus

    @jax_funcify.register(Softplus)
    def _softplus(op: Any, **kwargs: Any) -> Any:
        def softplus(x: Any) -> Any:
            ax = jnp.abs(x)  # (x + |x|)/2 keeps the exact gradient 1/2 at x = 0
            return 0.5 * (x + ax) + jnp.log1p(jnp.exp(-ax))

        return softplus

    _DONE = True
