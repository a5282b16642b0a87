"""nutpie's compiled log density, with its C entry points cached on disk between fits.

nutpie samples a PyMC model through two C callbacks made with ``numba.cfunc``: the log density
with its gradient, and the "expand" function that computes every stored variable from the
unconstrained point. PyTensor already caches the compiled graphs behind them on disk
(:mod:`ckmodel.population.numba_cache`), but ``nutpie.compile_pymc_model`` wraps them in
callbacks that numba cannot cache (they close over Python objects), so every fit compiled
and linked them again: about 8 of the 10 s a warm ``blood_marrow`` fit spent compiling.

:func:`compile_nutpie` builds the same two callbacks from generated source whose only
globals are the graph functions and constants, registered in PyTensor's numba cache under a
key made of the graph's own cache key, a hash of this module, the sizes and the numba,
PyTensor and nutpie versions; a second fit of the same model and data loads them.

Models that nutpie must feed data at run time (``pm.Data`` containers, used by the centring
pilot run) and graphs that PyTensor cannot cache are compiled by ``nutpie.compile_pymc_model``
as before, as is everything when this nutpie's internals differ from those this module was
written against (with a warning).

The cache holds machine code compiled on this machine by numba; nothing in it is read from a
data, model or fit file.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from functools import wraps
from pathlib import Path
from typing import Any

__all__ = ["compile_nutpie"]

log = logging.getLogger("ckmodel.fitting")

# nutpie's callback contract: return 0 on success; -1 wrong sizes; 1 (logp) or -2 (expand)
# an exception inside the graph; 3 or 4 a non-finite gradient or log density
_LOGP_SRC = """
def ckmodel_nutpie_logp_KEY(dim, x_, out_, logp_, user_data_):
    if dim != N_DIM:
        return -1
    x = carray(x_, (N_DIM,))
    out = carray(out_, (N_DIM,))
    logp = carray(logp_, (1,))
    try:
        value_0d, grad = logp_graph(x)
    except Exception:
        return 1
    value = value_0d[()]
    logp[0] = value
    finite = True
    for i in range(N_DIM):
        out[i] = grad[i]
        if not isfinite(grad[i]):
            finite = False
    if not finite:
        return 3
    if not isfinite(value):
        return 4
    return 0
"""

_EXPAND_SRC = """
def ckmodel_nutpie_expand_KEY(dim, expanded, x_, out_, user_data_):
    if dim != N_DIM or expanded != N_EXPANDED:
        return -1
    x = carray(x_, (N_DIM,))
    out = carray(out_, (N_EXPANDED,))
    try:
        (values,) = expand_graph(x)
    except Exception:
        return -2
    for i in range(N_EXPANDED):
        out[i] = values[i]
    return 0
"""


#: Hash of this module: a changed wrapper never loads a callback cached by an older one.
_THIS_CODE = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


class _Unsupported(Exception):
    """A model, or a nutpie, that the cached path does not handle."""


def _graph_key(fn: Any) -> str:
    """PyTensor's numba cache key of a compiled function's graph (or refuse)."""
    from pytensor.link.numba.cache import CACHED_SRC_FUNCTIONS

    jit_fn = fn.vm.jit_fn
    key = CACHED_SRC_FUNCTIONS.get(getattr(jit_fn, "py_func", None))
    if key is None:
        raise _Unsupported("the graph is not cacheable by PyTensor")
    return key


def _cached_cfunc(src: str, name: str, signature: Any, env: dict[str, Any], graph_key: str
                  ) -> Any:
    """``numba.cfunc(signature, cache=True)`` of generated source, in PyTensor's cache.

    The function's name carries the key too, so that callbacks of two models never share a
    symbol name (numba names compiled code after the function).
    """
    import math
    import warnings

    import numba
    import nutpie
    import pytensor
    from pytensor.link.numba.cache import compile_numba_function_src

    constants = sorted((k, v) for k, v in env.items() if isinstance(v, int))
    key = hashlib.sha256(repr((graph_key, _THIS_CODE, constants, numba.__version__,
                               pytensor.__version__, nutpie.__version__)).encode()).hexdigest()
    name = f"{name}_{key[:24]}"
    fn = compile_numba_function_src(
        src.replace("_KEY(", f"_{key[:24]}("), name,
        global_env={"__name__": __name__, "carray": numba.carray, "isfinite": math.isfinite,
                    **env},
        cache_key=f"ckmodel_nutpie_{key}")
    with warnings.catch_warnings():
        # a graph holding a large constant cannot be cached: numba says so and compiles
        warnings.filterwarnings("ignore", message=".*Cannot cache compiled function",
                                category=numba.NumbaWarning)
        return numba.cfunc(signature, cache=True)(fn)


def _locked(fn: Any) -> Any:
    """``fn`` callable from several sampler threads at once."""
    lock = threading.Lock()

    @wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        with lock:
            return fn(*args, **kwargs)

    return call


def _compile_cached(model: Any) -> Any:
    import numba
    from nutpie import compile_pymc as cp
    from pymc.initial_point import make_initial_point_fn
    from pytensor import config

    if not config.numba__cache:
        raise _Unsupported("PyTensor's numba cache is turned off")
    if model.data_vars:
        raise _Unsupported("the model has data containers")
    initial_point = make_initial_point_fn(model=model, default_strategy="support_point",
                                          jitter_rvs=set(model.free_RVs),
                                          return_transformed=True)
    n_dim, n_expanded, logp_pt, expand_pt, initial_point_fn, shape_info = cp._make_functions(
        model, mode="NUMBA", compute_grad=True, join_expanded=True,
        pymc_initial_point_fn=_locked(initial_point), var_names=None)
    if logp_pt.get_shared() or expand_pt.get_shared():
        raise _Unsupported("the compiled graphs read shared variables")
    double_p = numba.types.CPointer(numba.types.double)
    logp_sig = numba.types.int64(numba.types.uint64, double_p, double_p, double_p,
                                 numba.types.voidptr)
    expand_sig = numba.types.int64(numba.types.uint64, numba.types.uint64, double_p, double_p,
                                   numba.types.voidptr)
    logp = _cached_cfunc(_LOGP_SRC, "ckmodel_nutpie_logp", logp_sig,
                         {"logp_graph": logp_pt.vm.jit_fn, "N_DIM": int(n_dim)},
                         _graph_key(logp_pt))
    expand = _cached_cfunc(_EXPAND_SRC, "ckmodel_nutpie_expand", expand_sig,
                           {"expand_graph": expand_pt.vm.jit_fn, "N_DIM": int(n_dim),
                            "N_EXPANDED": int(n_expanded)}, _graph_key(expand_pt))
    dims, coords = cp._prepare_dims_and_coords(model, shape_info)
    return cp.CompiledPyMCModel(
        _n_dim=n_dim, dims=dims, _coords=coords,
        _shapes={name: tuple(shape) for name, _, shape in zip(*shape_info, strict=True)},
        compiled_logp_func=logp, compiled_expand_func=expand,
        initial_point_func=initial_point_fn, shared_data={},
        user_data=cp.make_user_data({}, {}), n_expanded=n_expanded, shape_info=shape_info,
        logp_func=logp_pt, expand_func=expand_pt)


def compile_nutpie(model: Any) -> Any:
    """Compile a PyMC model for nutpie, loading its C callbacks from disk when cached.

    Parameters
    ----------
    model : pymc.Model
        The model.

    Returns
    -------
    nutpie.compile_pymc.CompiledPyMCModel
        What ``nutpie.compile_pymc_model(model)`` returns, for ``nutpie.sample``.
    """
    import nutpie

    try:
        return _compile_cached(model)
    except _Unsupported as exc:
        log.debug("nutpie callbacks not cached (%s): compiled by nutpie", exc)
    except Exception as exc:  # noqa: BLE001 - nutpie's own compile is the safe path
        # a nutpie or numba this module does not know: nutpie's compile raises again what
        # is wrong with the model itself
        log.warning("ckmodel's cached nutpie compile failed (%s: %s); compiled by nutpie, "
                    "without the cache", type(exc).__name__, exc, exc_info=True)
    return nutpie.compile_pymc_model(model)
