"""Disk caching of ckmodel's compiled Ops in PyTensor's numba cache.

nutpie compiles the whole log-density graph with numba, which takes most of a minute for an ODE
model. PyTensor caches that compiled graph on disk, keyed by its Ops, but only when every Op in
it provides a cache key; an Op registered the legacy way has none and turns caching off for the
whole graph. ckmodel's Ops register here with a key made of

* the Op's ``key`` property, a hash of everything its numba function is built from: the spec,
  the data it closes over (records, grids, covariates) and the generated source text; and
* :data:`CODE_VERSION`, a hash of the ckmodel modules whose hand-written numba code wraps the
  generated functions, so that changed code never reuses a stale entry.

A second fit of the same model to the same data then loads the compiled log density from the
cache (PyTensor's ``compiledir``; set ``PYTENSOR_FLAGS=numba__cache=False`` to turn it off).
The cache holds compiled machine code written by numba for this user; nothing in it comes from
a data, model or fit file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytensor.link.numba.dispatch import numba_funcify

__all__ = ["CODE_VERSION", "register_cached"]

# hand-written numba code around the generated functions (and the constants it uses)
_SOURCES = ("codegen.py", "ode_kernel.py", "ode_op.py", "ode_loglik.py", "closed_kernel.py",
            "closed_loglik.py", "residual.py", "numba_cache.py", "whitening_op.py")


def _code_version() -> int:
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in _SOURCES:
        h.update((here / name).read_bytes())
    h.update((here.parent / "spec" / "expr.py").read_bytes())
    return int(h.hexdigest()[:12], 16)


#: Hash of the kernel-generating sources, part of every cache key.
CODE_VERSION = _code_version()


def register_cached(op_type: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a numba implementation of ``op_type`` that PyTensor may cache on disk.

    The Op must have ``__props__ = ("key",)`` with a key that identifies its numba function.
    """
    try:
        from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key
    except ImportError:  # pragma: no cover - PyTensor without numba caching
        return numba_funcify.register(op_type)
    if getattr(op_type, "__props__", None) != ("key",):
        raise TypeError(f"{op_type.__name__} needs __props__ = ('key',) to be cached")

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        def with_version(op: Any, node: Any = None, **kwargs: Any) -> tuple[Any, int]:
            return fn(op, node=node, **kwargs), CODE_VERSION

        register_funcify_default_op_cache_key(op_type)(with_version)
        return fn

    return decorator
